"""The gateway's HTTP API, built by a factory so the node and the tests each make their own.

Routers per concern: the page and its stream, status and metrics, frame processing, operator
actions. Every refusal is a 4xx with a reason in `detail`; every request is logged with who asked.
No `from __future__ import annotations`: FastAPI must evaluate the dependency annotations, which
name closures of create_app.
"""

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, WebSocket
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from krystal.ascii.engine import KERNELS, MODES
from krystal.gateway.access import Access, AccessError, Principal
from krystal.gateway.foxglove_ws import SUBPROTOCOLS
from krystal.gateway.foxglove_ws import serve as serve_foxglove
from krystal.gateway.frames import (
    CONTENT_TYPES,
    EnginePool,
    FrameRequest,
    Limits,
    UploadError,
    check_request,
    encode_answer,
    process_frame,
)
from krystal.gateway.guard import AuditLog, Guard, GuardPolicy, RequestLog
from krystal.gateway.health import as_dict
from krystal.gateway.hub import CommandRequest, CommandResult, Hub
from krystal.gateway.streams import discard, dumps, run_stream, strict
from krystal.gateway.workers import RenderProcesses

# A device id becomes a ROS name token (devices/<id>/command): ASCII letters, digits and '_',
# starting with a letter, no '__' (reserved by ROS), at most 63 characters.
DEVICE_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,62}$"
DEVICE_ID_RULE = "a letter, then letters, digits or '_' (no '__'), at most 63 characters: a ROS name token"

PERMISSIONS = {
    "/status": "status:read",
    "/metrics": "metrics:read",
    "/process_frame": "frames:process",
    "/devices/{device_id}/command": "devices:command",
    "/style": "style:set",
    "WS /ws": "stream:read",
    "WS /": "stream:read",  # Foxglove
}


class StrictJSON(JSONResponse):
    """JSON without NaN or infinities (they become null): every client's parser reads it."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


@dataclass(frozen=True)
class GatewaySettings:
    limits: Limits = field(default_factory=Limits)
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # names (besides localhost and IP literals) this gateway answers to
    stream_hz: float = 10.0  # ASCII frames per second to each page
    command_timeout_s: float = 5.0
    json_body_bytes: int = 16 * 1024
    body_idle_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_streams: int = 32  # open WebSockets, page and Foxglove together
    max_streams_per_caller: int = 8
    send_timeout_s: float = 5.0  # a client that takes longer to read a message is closed (4408)
    render_concurrency: int = 2  # /process_frame renders at once; more wait their turn
    render_processes: bool = True  # render in worker processes (workers.py), not threads here


class DeviceCommandBody(BaseModel):
    command: str = Field(min_length=1, max_length=128, description="a capability of the device")
    arguments: dict[str, str] = Field(default_factory=dict, description="named arguments, units in keys")
    timeout_s: float = Field(0.0, ge=0.0, le=60.0, allow_inf_nan=False, description="0: the agent's default")
    command_id: str = Field("", max_length=128, description="idempotency key: a repeat is not re-applied")


class StyleBody(BaseModel):
    mode: str = Field(description=f"one of {', '.join(MODES)}")
    kernel: str = Field("luminance", description=f"one of {', '.join(KERNELS)}")
    kernel_size: int = Field(3, description="3, 5 or 7")
    columns: int = Field(0, ge=0, le=1000, description="0 keeps the current grid")
    rows: int = Field(0, ge=0, le=500)
    reason: str = Field("", max_length=200)


def _page(name: str) -> str:
    return resources.files("krystal.gateway").joinpath("static").joinpath(name).read_text()


def create_app(
    hub: Hub,
    access: Access,
    settings: GatewaySettings | None = None,
    request_log: RequestLog | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    cfg = settings or GatewaySettings()
    pool = EnginePool()
    hub.streams.max_total = cfg.max_streams
    hub.streams.max_per_principal = cfg.max_streams_per_caller
    app = FastAPI(
        title="Krystal gateway",
        description="The running Krystal graph over HTTP: health, metrics, ASCII frames, operator actions.",
        version="0.1.0",
        default_response_class=StrictJSON,
    )

    routers: list[APIRouter] = []  # filled below; included without prefixes

    def route_of(scope: dict[str, Any]) -> str | None:
        for route in (r for router in routers for r in router.routes):
            if route.matches(scope)[0] == Match.FULL:
                path = str(getattr(route, "path", ""))
                return f"WS {path}" if scope["type"] == "websocket" else path
        return None

    app.add_middleware(
        Guard,
        access=access,
        policy=GuardPolicy(
            permissions=PERMISSIONS,
            body_limits={"/process_frame": cfg.limits.max_body_bytes},
            json_body_bytes=cfg.json_body_bytes,
            body_idle_timeout_s=cfg.body_idle_timeout_s,
            body_timeout_s=cfg.body_timeout_s,
            allowed_hosts=frozenset(h.lower() for h in cfg.allowed_hosts),
            allowed_origins=frozenset(o.lower().rstrip("/") for o in cfg.cors_origins),
        ),
        routes=route_of,
        request_log=request_log,
        audit=audit,
        observe=hub.metrics.observe_request,
    )
    if cfg.cors_origins:  # outside the guard: a preflight carries no token
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(AccessError)
    async def _access_error(_: Request, exc: AccessError) -> JSONResponse:
        headers = {"Retry-After": f"{max(1, round(exc.retry_after_s))}"} if exc.status == 429 else {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return StrictJSON({"detail": exc.reason}, status_code=exc.status, headers=headers)

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
        request.state.detail = exc.reason
        return StrictJSON({"detail": exc.reason}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = strict(jsonable_encoder(exc.errors()))
        request.state.detail = "; ".join(str(e.get("msg", "")) for e in errors if isinstance(e, dict))
        return StrictJSON({"detail": errors}, status_code=422)

    def need(permission: str) -> Callable[..., Awaitable[Principal]]:
        # async: FastAPI runs a plain `def` dependency in a worker thread, a trip (a thread to
        # schedule, then the loop again) that every request paid for a dictionary lookup
        async def dependency(
            request: Request,
            authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
        ) -> Principal:
            who: Principal | None = getattr(request.state, "principal", None)
            return who if who is not None else access.require(authorization, permission)

        return dependency

    viewer = Depends(need("status:read"))

    # --- page and streams ---------------------------------------------------------------------
    page = APIRouter(tags=["page"])

    # The page and its script hold no data (a browser cannot send a bearer header on navigation);
    # the stream they open checks the token given after '#token=' in the page's address.
    @page.get("/", response_class=HTMLResponse, summary="Live page: ASCII stream, style, plots, health")
    def index() -> HTMLResponse:
        return HTMLResponse(_page("index.html"))

    @page.get("/static/app.js", response_class=PlainTextResponse, summary="The live page's script")
    def script() -> Response:
        return Response(_page("app.js"), media_type="text/javascript")

    pump: list[asyncio.Task[None]] = []

    async def pump_pages() -> None:
        """One task for every page: each frame and status is serialized once, then offered."""
        seq, last_status, period = 0, 0.0, 1.0 / max(cfg.stream_hz, 0.1)
        while hub.streams.count("page"):
            if hub.frame_seq > seq and hub.frame is not None:
                seq = hub.frame_seq
                hub.streams.publish("page", dumps({"type": "frame", "seq": seq, **hub.frame}))
            now = time.monotonic()
            if now - last_status >= 1.0:
                last_status = now
                hub.streams.publish("page", dumps({"type": "status", **status_body()}))
            await asyncio.sleep(period)

    async def refuse_stream(ws: WebSocket, exc: AccessError, subprotocol: str | None = None) -> None:
        ws.scope["state"]["refusal"] = exc
        await ws.accept(subprotocol)
        await ws.close(4429 if exc.status == 429 else 4403, exc.reason[:120])

    @page.websocket("/ws")
    async def stream(ws: WebSocket) -> None:
        who: Principal = ws.state.principal
        try:
            sub = hub.streams.open("page", who.name)
        except AccessError as exc:
            await refuse_stream(ws, exc)
            return
        try:
            await ws.accept()
            sub.offer(dumps({"type": "status", **status_body()}))
            if not pump or pump[0].done():
                pump[:] = [asyncio.ensure_future(pump_pages())]
            await run_stream(ws, sub, discard(ws), cfg.send_timeout_s)
        finally:
            hub.streams.close(sub)

    @page.websocket("/")
    async def foxglove(ws: WebSocket) -> None:
        who: Principal = ws.state.principal
        offered = list(ws.scope.get("subprotocols") or [])
        subprotocol = next((p for p in offered if p in SUBPROTOCOLS), None)
        try:
            sub = hub.streams.open("foxglove", who.name, queue_size=64)
        except AccessError as exc:
            await refuse_stream(ws, exc, subprotocol)
            return
        try:
            await ws.accept(subprotocol)
            await serve_foxglove(ws, sub, hub.foxglove, cfg.send_timeout_s)
        finally:
            hub.streams.close(sub)

    # --- status and metrics -------------------------------------------------------------------
    info = APIRouter(tags=["status"])

    def status_body() -> dict[str, Any]:
        health = hub.health.snapshot()
        return {
            "health": as_dict(health),
            "nodes": hub.nodes,
            "topic_rates_hz": hub.rates(),
            "style": hub.style,
            "render_stats": hub.render_stats,
            "history": hub.series(),
        }

    @info.get("/status", summary="Graph health per node and task, nodes, topic rates, current style")
    def status(_: Annotated[Principal, viewer]) -> dict[str, Any]:
        return status_body()

    @info.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def metrics(_: Annotated[Principal, Depends(need("metrics:read"))]) -> Response:
        return Response(hub.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # --- frames -------------------------------------------------------------------------------
    frames = APIRouter(tags=["frames"])
    body_doc: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {
                **{t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(CONTENT_TYPES)},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"image": {"type": "string", "format": "binary"}},
                        "required": ["image"],
                    }
                },
            },
        },
        "responses": {
            "200": {"description": "the ASCII frame", "content": {"application/json": {}, "text/plain": {}}},
            "400": {"description": "empty or unreadable body"},
            "413": {"description": "body or image too large"},
            "415": {"description": "not a JPEG, PNG or WebP image"},
            "422": {"description": "truncated image or invalid options"},
            "503": {"description": "the render worker stopped during this image: try again"},
        },
    }

    async def image_bytes(request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            body = await request.body()  # the guard bounds its size and its pace
        except ClientDisconnect:
            raise UploadError(400, "the client left before sending the whole body") from None
        if ctype != "multipart/form-data":
            return body
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartException, MultiPartParser

        try:
            parser = MultiPartParser(request.headers, _replay(body), max_files=2, max_fields=20)
            form = await parser.parse()
        except (MultiPartException, ValueError, KeyError) as exc:
            raise UploadError(400, f"malformed multipart body: {exc}") from None
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            upload = next((v for _, v in form.multi_items() if isinstance(v, UploadFile)), None)
        if upload is None:
            raise UploadError(400, "multipart body has no file field (send it as 'image')")
        return await upload.read()

    renders: list[asyncio.Semaphore] = []  # made on the server's loop
    workers = RenderProcesses(cfg.render_concurrency) if cfg.render_processes else None
    app.state.render_workers = workers

    @frames.post("/process_frame", summary="Render an uploaded image as ASCII", openapi_extra=body_doc)
    async def process(
        request: Request,
        *,
        _: Annotated[Principal, Depends(need("frames:process"))],
        mode: Annotated[str, Query(description=f"one of {', '.join(MODES)}")] = "ramp",
        kernel: Annotated[str, Query(description=f"one of {', '.join(KERNELS)}")] = "luminance",
        kernel_size: Annotated[int, Query(description="3, 5 or 7")] = 3,
        columns: Annotated[int, Query(description="characters per line")] = 160,
        rows: Annotated[int, Query(description="lines")] = 45,
        color_depth: Annotated[str, Query(description="truecolor or 256")] = "truecolor",
        colors: Annotated[bool, Query(description="include per-cell RGB (colour modes)")] = False,
        format: Annotated[str, Query(description="json or text")] = "json",
    ) -> Response:
        if format not in ("json", "text"):
            raise UploadError(422, f"format {format!r} is not json or text")
        req = FrameRequest(mode, kernel, kernel_size, columns, rows, color_depth, colors)
        check_request(req, cfg.limits)  # an absurd grid costs nothing, not even reading the body
        data = await image_bytes(request)
        wants_text = format == "text" or request.headers.get("accept", "").startswith("text/plain")

        def render() -> bytes:  # in a worker thread, the answer's encoding included
            return encode_answer(process_frame(data, req, cfg.limits, pool), wants_text)

        if not renders:
            renders.append(asyncio.Semaphore(cfg.render_concurrency))
        async with renders[0]:
            if workers is not None:
                answer = await workers.render(data, req, cfg.limits, wants_text)
            else:
                answer = await run_in_threadpool(render)
        return Response(answer, media_type="text/plain" if wants_text else "application/json")

    # --- operator actions ---------------------------------------------------------------------
    ops = APIRouter(tags=["operator"])

    @ops.post("/devices/{device_id}/command", summary="Send a DeviceCommand to a device agent")
    async def device_command(
        request: Request,
        device_id: Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description=DEVICE_ID_RULE)],
        body: DeviceCommandBody,
        who: Annotated[Principal, Depends(need("devices:command"))],
    ) -> JSONResponse:
        if "__" in device_id or not re.fullmatch(DEVICE_ID_PATTERN, device_id):
            raise UploadError(422, f"device id {device_id!r} is not {DEVICE_ID_RULE}")
        if hub.device_commander is None:
            raise UploadError(409, "device commands are not available in this gateway")
        timeout = body.timeout_s or cfg.command_timeout_s
        command = CommandRequest(device_id, body.command, body.arguments, timeout, who.name, body.command_id)
        future = hub.device_commander(command)
        try:
            result: CommandResult = await asyncio.wait_for(asyncio.wrap_future(future), timeout + 1.0)
        except (TimeoutError, asyncio.TimeoutError):
            result = CommandResult(False, 2, f"no answer from devices/{device_id}/command in {timeout:g} s")
        record = {
            "who": who.name,
            "role": who.role,
            "action": "devices:command",
            "device": device_id,
            "command": body.command,
            "arguments": body.arguments,
            "command_id": body.command_id,
            "accepted": result.accepted,
            "message": result.message,
        }
        if audit is not None:
            audit(record)
            request.state.audited = True
        status = 200 if result.accepted else 409
        return StrictJSON(asdict(result), status_code=status)

    @ops.post("/style", summary="Override the rendering style (a manual StyleDecision)")
    def set_style(
        request: Request, body: StyleBody, who: Annotated[Principal, Depends(need("style:set"))]
    ) -> dict[str, Any]:
        if body.mode not in MODES:
            raise UploadError(422, f"mode {body.mode!r} is not one of {', '.join(MODES)}")
        if body.kernel not in KERNELS:
            raise UploadError(422, f"kernel {body.kernel!r} is not one of {', '.join(KERNELS)}")
        if body.kernel_size not in (3, 5, 7):
            raise UploadError(422, f"kernel_size {body.kernel_size} is not one of 3, 5, 7")
        if (body.columns == 0) != (body.rows == 0) or (body.columns and body.columns < 8):
            raise UploadError(422, "give both columns (8..1000) and rows (2..500), or neither")
        if hub.style_setter is None:
            raise UploadError(409, "style overrides are not available in this gateway")
        style = body.model_dump()
        hub.style_setter(style, who.name)
        if audit is not None:
            audit({"who": who.name, "role": who.role, "action": "style:set", "accepted": True, **style})
            request.state.audited = True
        return {"accepted": True, "style": style}

    routers.extend((page, info, frames, ops))
    for router in routers:
        app.include_router(router)
    return app


def _replay(body: bytes) -> Any:
    async def gen() -> Any:
        yield body

    return gen()
