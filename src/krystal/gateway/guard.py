"""The gateway's front door, an ASGI middleware in front of every route, HTTP and WebSocket alike.

In order, before any route runs or any body byte is read: the Host header must name this gateway
(DNS rebinding), a browser's Origin must be this gateway's or a configured one (cross-site reads),
the caller must hold the route's permission (401/403) within its rate (429). Then the body is read
under a per-route byte limit (JSON routes are small) and an idle timeout (408). WebSockets are
refused after the handshake with a close code and a reason (4400 bad host, 4401 who are you, 4403
not allowed, 4429 too many) because a refused handshake reaches a browser as a bare 403. Every
refused operator action goes to the audit log with the caller; every request to the request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.exceptions import HTTPException

from krystal.gateway.access import Access, AccessError, Principal

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RequestLog = Callable[[str, str, str, int, float], None]  # (who, method, path, status, ms)
AuditLog = Callable[[dict[str, Any]], None]
Observe = Callable[[str, int, float], None]  # (route template, status, seconds)

OPERATOR_PERMISSIONS = frozenset({"devices:command", "style:set"})
CLOSE_CODES = {400: 4400, 401: 4401, 403: 4403, 408: 4408, 429: 4429}
# A refused body this small is read before the answer (see Guard._drain), for at most this long.
DRAIN_BYTES = 64 * 1024
DRAIN_TIMEOUT_S = 1.0


class BodyError(HTTPException):
    """The body broke its route's limit (413) or stalled (408); the connection is closed after."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason, headers={"Connection": "close"})


@dataclass(frozen=True)
class GuardPolicy:
    permissions: Mapping[str, str]  # route template -> permission; absent: open (page, docs)
    body_limits: Mapping[str, int]  # route template -> bytes; absent: json_body_bytes
    json_body_bytes: int = 16 * 1024
    body_idle_timeout_s: float = 10.0  # longest wait for the next piece of a body
    body_timeout_s: float = 30.0  # longest time for a whole body (a byte a second is not a client)
    allowed_hosts: frozenset[str] = frozenset()  # names besides localhost; IP literals always pass
    allowed_origins: frozenset[str] = frozenset()  # "scheme://host[:port]" besides the gateway's own


def _split_host(value: str) -> tuple[str, str]:
    """('host', 'port') of a Host header or an origin's netloc; IPv6 brackets removed."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest.lstrip(":")
    host, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    return host, port


def host_allowed(host_header: str, allowed: frozenset[str]) -> bool:
    """DNS rebinding needs a name the attacker controls: IP literals, localhost and the names the
    operator lists pass, any other name does not."""
    host, _ = _split_host(host_header)
    if not host:
        return False
    if host == "localhost" or host in allowed:
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def origin_allowed(origin: str | None, host_header: str, policy: GuardPolicy) -> bool:
    """No Origin: not a browser (curl, Python, Foxglove desktop). Else same origin or listed."""
    if origin is None:
        return True
    origin = origin.strip().lower()
    if origin in policy.allowed_origins:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (sandboxed frames, file:) and anything odd
    return _split_host(parts.netloc) == _split_host(host_header)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        access: Access,
        policy: GuardPolicy,
        routes: Callable[[Scope], str | None],
        request_log: RequestLog | None = None,
        audit: AuditLog | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.app = app
        self.access = access
        self.policy = policy
        self.routes = routes
        self.request_log = request_log
        self.audit = audit
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        route = self.routes(scope)
        state = scope.setdefault("state", {})
        status = [0]

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            elif message["type"] == "websocket.accept":
                status[0] = 101
            elif message["type"] == "websocket.close" and not status[0]:
                status[0] = 403
            await send(message)

        try:
            refusal = self._admit(scope, route, state)
            if refusal is not None:
                await self._refuse(scope, receive, logged_send, refusal)
                return
            if scope["type"] == "http":
                limit = self.policy.body_limits.get(route or "", self.policy.json_body_bytes)
                declared = _headers(scope).get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    refusal = AccessError(
                        413, f"body of {declared} bytes is over this route's {limit} byte limit"
                    )
                    await self._refuse(scope, receive, logged_send, refusal)
                    return
                receive = self._bounded(receive, limit)
            try:
                await self.app(scope, receive, logged_send)
            except BodyError as exc:  # raised where no exception handler runs (a plain ASGI route)
                if status[0]:
                    raise
                refusal = AccessError(exc.status_code, str(exc.detail))
                await self._refuse(scope, receive, logged_send, refusal, drain=False)
        finally:
            self._record(scope, route, state, status[0], time.perf_counter() - t0)

    def _admit(self, scope: Scope, route: str | None, state: dict[str, Any]) -> AccessError | None:
        headers = _headers(scope)
        host = headers.get("host", "")
        if not host_allowed(host, self.policy.allowed_hosts):
            return AccessError(400, f"host {host!r} is not this gateway's (set allowed_hosts)")
        if not origin_allowed(headers.get("origin"), host, self.policy):
            return AccessError(
                403, f"origin {headers.get('origin')!r} may not use this gateway (cors_origins)"
            )
        permission = self.policy.permissions.get(route or "")
        if permission is None:
            return None
        authorization = headers.get("authorization")
        if scope["type"] == "websocket" and not authorization:
            # A browser cannot set headers on a WebSocket: the token comes in the query.
            token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
            authorization = f"Bearer {token}" if token else None
        state["permission"] = permission
        try:
            who = self.access.principal(authorization)
            state["principal"] = who
            self.access.authorize(who, permission)
        except AccessError as exc:
            return exc
        return None

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, exc: AccessError, drain: bool = True
    ) -> None:
        scope["state"]["refusal"] = exc
        if scope["type"] == "websocket":
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send(
                    {
                        "type": "websocket.close",
                        "code": CLOSE_CODES.get(exc.status, 4400),
                        "reason": exc.reason[:120],
                    }
                )
            return
        import json

        if drain:
            await self._drain(scope, receive)
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        if exc.status == 429:
            headers.append((b"retry-after", f"{max(1, round(exc.retry_after_s))}".encode()))
        if exc.status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        body = json.dumps({"detail": exc.reason}).encode()
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drain(scope: Scope, receive: Receive) -> None:
        """Read a small refused body before answering: closing a socket with unread bytes in it
        sends a TCP reset, which can reach the client before the answer (it sees 'connection reset'
        instead of its 401/403). A large or undeclared body is never read (the refusal's point)."""
        declared = _headers(scope).get("content-length", "")
        if not declared.isdigit() or not 0 < int(declared) <= DRAIN_BYTES:
            return

        async def read_all() -> None:
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(read_all(), DRAIN_TIMEOUT_S)

    def _bounded(self, receive: Receive, limit: int) -> Receive:
        size = [0]
        idle, whole = self.policy.body_idle_timeout_s, self.policy.body_timeout_s
        deadline = time.monotonic() + whole

        async def bounded() -> Message:
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, min(idle, left)))
            except asyncio.TimeoutError:
                why = f"no body data for {idle:g} s" if left > idle else f"the body took over {whole:g} s"
                raise BodyError(408, why) from None
            if message["type"] == "http.request":
                size[0] += len(message.get("body", b""))
                if size[0] > limit:
                    raise BodyError(413, f"body is over this route's {limit} byte limit")
            return message

        return bounded

    def _record(
        self, scope: Scope, route: str | None, state: dict[str, Any], status: int, seconds: float
    ) -> None:
        who: Principal | None = state.get("principal")
        name = who.name if who else "-"
        refusal: AccessError | None = state.get("refusal")
        status = refusal.status if refusal is not None else status
        path = scope.get("path", "")
        method = scope.get("method", "WS")
        if self.observe is not None:
            self.observe(route or "unmatched", status, seconds)
        if self.request_log is not None:
            self.request_log(name, method, path, status, seconds * 1e3)
        permission = state.get("permission")
        if self.audit is None or permission not in OPERATOR_PERMISSIONS or state.get("audited"):
            return
        if status < 400:
            return
        client = scope.get("client") or ("", 0)
        self.audit(
            {
                "who": name,
                "role": who.role if who else "-",
                "client": f"{client[0]}:{client[1]}",
                "action": permission,
                "path": path,
                "accepted": False,
                "status": status,
                "message": refusal.reason if refusal else state.get("detail", ""),
            }
        )
