"""The gateway's HTTP API, built by a factory so the node and the tests each make their own.

Routers per concern: the page and its stream, status and metrics, frame processing, operator
actions. Every refusal is a 4xx with a reason in `detail`; every request is logged with who asked.
No `from __future__ import annotations`: FastAPI must evaluate the dependency annotations, which
name closures of create_app.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from krystal.ascii.engine import KERNELS, MODES
from krystal.gateway.access import Access, AccessError, Principal
from krystal.gateway.frames import CONTENT_TYPES, EnginePool, FrameRequest, Limits, UploadError, process_frame
from krystal.gateway.health import as_dict
from krystal.gateway.hub import CommandRequest, CommandResult, Hub

RequestLog = Callable[[str, str, str, int, float], None]  # (who, method, path, status, ms)
AuditLog = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class GatewaySettings:
    limits: Limits = field(default_factory=Limits)
    cors_origins: tuple[str, ...] = ()
    stream_hz: float = 10.0  # ASCII frames per second to each page
    command_timeout_s: float = 5.0


class DeviceCommandBody(BaseModel):
    command: str = Field(min_length=1, max_length=128, description="a capability of the device")
    arguments: dict[str, str] = Field(default_factory=dict, description="named arguments, units in keys")
    timeout_s: float = Field(0.0, ge=0.0, le=60.0, description="0: the agent's default")
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
    app = FastAPI(
        title="Krystal gateway",
        description="The running Krystal graph over HTTP: health, metrics, ASCII frames, operator actions.",
        version="0.1.0",
    )
    if cfg.cors_origins:
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
        return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=headers)

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.middleware("http")
    async def _log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        hub.metrics.requests.labels(route=path, status=str(response.status_code)).inc()
        if request_log is not None:
            who: Principal | None = getattr(request.state, "principal", None)
            request_log(
                who.name if who else "-",
                request.method,
                request.url.path,
                response.status_code,
                (time.perf_counter() - t0) * 1e3,
            )
        return response

    def need(permission: str) -> Callable[..., Principal]:
        def dependency(
            request: Request,
            authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
        ) -> Principal:
            who = access.require(authorization, permission)
            request.state.principal = who
            return who

        return dependency

    viewer = Depends(need("status:read"))

    # --- page and stream ----------------------------------------------------------------------
    page = APIRouter(tags=["page"])

    # The page and its script hold no data (a browser cannot send a bearer header on navigation);
    # the stream they open checks the token given after '#token=' in the page's address.
    @page.get("/", response_class=HTMLResponse, summary="Live page: ASCII stream, style, plots, health")
    def index() -> HTMLResponse:
        return HTMLResponse(_page("index.html"))

    @page.get("/static/app.js", response_class=PlainTextResponse, summary="The live page's script")
    def script() -> Response:
        return Response(_page("app.js"), media_type="text/javascript")

    @page.websocket("/ws")
    async def stream(ws: WebSocket, token: str = "") -> None:
        try:
            access.require(f"Bearer {token}" if token else ws.headers.get("authorization"), "stream:read")
        except AccessError as exc:
            await ws.close(code=4401 if exc.status == 401 else 4403, reason=exc.reason)
            return
        await ws.accept()
        seq, period = 0, 1.0 / max(cfg.stream_hz, 0.1)
        last_status = 0.0
        try:
            while True:
                seq, frame = await run_in_threadpool(hub.wait_frame, seq, 1.0)
                if frame is not None:
                    await ws.send_text(json.dumps({"type": "frame", "seq": seq, **frame}))
                now = time.monotonic()
                if now - last_status >= 1.0:
                    last_status = now
                    await ws.send_text(json.dumps({"type": "status", **status_body()}))
                await asyncio.sleep(period)
        except (WebSocketDisconnect, RuntimeError):
            return

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
        hub.refresh_metrics()
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
        },
    }

    async def read_body(request: Request) -> bytes:
        limit = cfg.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise UploadError(413, f"body of {declared} bytes is over the {limit} byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadError(413, f"body is over the {limit} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def image_bytes(request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await read_body(request)
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
        data = await image_bytes(request)
        result = await run_in_threadpool(process_frame, data, req, cfg.limits, pool)
        wants_text = format == "text" or request.headers.get("accept", "").startswith("text/plain")
        if wants_text:
            return PlainTextResponse("\n".join(result.lines) + "\n")
        return JSONResponse(asdict(result))

    # --- operator actions ---------------------------------------------------------------------
    ops = APIRouter(tags=["operator"])

    @ops.post("/devices/{device_id}/command", summary="Send a DeviceCommand to a device agent")
    async def device_command(
        device_id: str,
        body: DeviceCommandBody,
        who: Annotated[Principal, Depends(need("devices:command"))],
    ) -> JSONResponse:
        if hub.device_commander is None:
            raise UploadError(409, "device commands are not available in this gateway")
        if not device_id.replace("-", "").replace("_", "").isalnum():
            raise UploadError(422, f"device id {device_id!r} must be letters, digits, - and _")
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
        status = 200 if result.accepted else 409
        return JSONResponse(asdict(result), status_code=status)

    @ops.post("/style", summary="Override the rendering style (a manual StyleDecision)")
    def set_style(body: StyleBody, who: Annotated[Principal, Depends(need("style:set"))]) -> dict[str, Any]:
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
            audit({"who": who.name, "role": who.role, "action": "style:set", **style})
        return {"accepted": True, "style": style}

    for router in (page, info, frames, ops):
        app.include_router(router)
    return app


def _replay(body: bytes) -> Any:
    async def gen() -> Any:
        yield body

    return gen()
