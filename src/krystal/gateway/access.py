"""Who may do what: bearer tokens with roles, permissions named as the roadmap does, rate limits.

Tokens come from a file or the environment, never from the committed config. Without tokens the
gateway only serves loopback, and then viewers are anonymous and operator endpoints are closed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOKENS_ENV = "KRYSTAL_GATEWAY_TOKENS"  # "role:name:token,role:name:token"

VIEWER_PERMISSIONS = frozenset({"status:read", "metrics:read", "stream:read", "frames:process"})
ROLES: dict[str, frozenset[str]] = {
    "viewer": VIEWER_PERMISSIONS,
    "operator": VIEWER_PERMISSIONS | {"devices:command", "style:set"},
}


class AccessError(Exception):
    """Refused: `status` 401 (who are you?), 403 (not allowed) or 429 (too many requests)."""

    def __init__(self, status: int, reason: str, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in ROLES.get(self.role, frozenset())


ANONYMOUS = Principal("anonymous", "viewer")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str, source: str) -> dict[bytes, Principal]:
    """Lines (or comma-separated items) of `role:name:token`; '#' starts a comment."""
    out: dict[bytes, Principal] = {}
    items = [i.strip() for line in text.splitlines() for i in line.split("#", 1)[0].split(",")]
    for n, item in enumerate(i for i in items if i):
        role, _, rest = item.partition(":")
        name, _, token = rest.partition(":")
        if role not in ROLES:
            raise ValueError(f"{source}: entry {n + 1}: role {role!r} is not one of {', '.join(ROLES)}")
        if not name or len(token) < 16:
            raise ValueError(f"{source}: entry {n + 1}: expected role:name:token with a token of 16+ chars")
        out[_digest(token)] = Principal(name, role)
    return out


def load_tokens(token_file: str = "", environ: dict[str, str] | None = None) -> dict[bytes, Principal]:
    env = os.environ if environ is None else environ
    tokens: dict[bytes, Principal] = {}
    if token_file:
        path = Path(token_file).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"token file {path} cannot be read: {exc.strerror or exc}") from None
        tokens.update(parse_tokens(text, str(path)))
    if env.get(TOKENS_ENV):
        tokens.update(parse_tokens(env[TOKENS_ENV], TOKENS_ENV))
    return tokens


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: dict[bytes, Principal]) -> str | None:
    """Why the gateway must not start on `host`, or None."""
    if not tokens and not is_loopback(host):
        return (
            f"refusing to bind {host} without tokens: anyone on the network could read the graph; "
            f"set token_file or {TOKENS_ENV}, or bind 127.0.0.1"
        )
    return None


class RateLimiter:
    """Token bucket per principal: `rate_hz` sustained, `burst` at once."""

    def __init__(self, rate_hz: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_hz = rate_hz
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if allowed now, else the seconds to wait."""
        if self.rate_hz <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            level, last = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate_hz)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate_hz


class Access:
    def __init__(self, tokens: dict[bytes, Principal], limiter: RateLimiter) -> None:
        self.tokens = tokens
        self.limiter = limiter

    def principal(self, authorization: str | None) -> Principal:
        if not authorization:
            if self.tokens:
                raise AccessError(401, "missing bearer token (Authorization: Bearer <token>)")
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AccessError(401, "the Authorization header must be 'Bearer <token>'")
        digest = _digest(token.strip())
        for known, who in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return who
        raise AccessError(401, "unknown token")

    def require(self, authorization: str | None, permission: str) -> Principal:
        who = self.principal(authorization)
        self.authorize(who, permission)
        return who

    def authorize(self, who: Principal, permission: str) -> None:
        """Refuses (403, 429) unless `who` holds `permission` within its rate."""
        if not who.may(permission):
            if not self.tokens:
                raise AccessError(403, f"{permission} needs an operator token; no tokens are configured")
            raise AccessError(403, f"{who.name} ({who.role}) lacks {permission}")
        wait = self.limiter.take(who.name)
        if wait > 0:
            raise AccessError(429, f"rate limit of {self.limiter.rate_hz:g} requests/s exceeded", wait)
