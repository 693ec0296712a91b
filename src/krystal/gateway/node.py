"""gateway: the running graph over HTTP (API, live page, metrics) and, optionally, Foxglove.

uvicorn serves the app on its own thread and event loop; ROS callbacks only convert messages to
plain values and hand them to the Hub, so no HTTP client can stall the executor. Foxglove's
WebSocket protocol is served by the same app (behind the same tokens and Host/Origin checks) on
`foxglove_port` as well as on the HTTP port.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future as RosFuture
from std_msgs.msg import Header

from krystal.gateway.access import Access, RateLimiter, check_bind, load_tokens
from krystal.gateway.app import GatewaySettings, create_app
from krystal.gateway.frames import Limits
from krystal.gateway.hub import CommandRequest, CommandResult, Hub
from krystal.gateway.server import make_server
from krystal.journal import JsonLines, state_dir
from krystal.msg import AsciiFrame, AudioFeatures, GpuTelemetry, RenderStats, StyleDecision, ThermalState
from krystal.record.msgdefs import message_definition
from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.entry import StartRefused
from krystal.ros.msgdef import message_class
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos
from krystal.ros.shedding import Shedding, shed_param
from krystal.ros.streams import subscribe_stream
from krystal.srv import DeviceCommand

FOXGLOVE_TOPICS = (
    "krystal/ascii",
    "krystal/ascii/image",
    "krystal/render_stats",
    "krystal/style",
    "thermal/state",
    "gpu/telemetry",
    "audio/features",
    "/diagnostics",
)
MAX_DEVICE_CLIENTS = 64


def _port_ok(v: Any) -> str | None:
    return None if 0 <= int(v) <= 65535 else f"port {v} is outside 0..65535"


PARAMS = (
    Param("host", "127.0.0.1", "Address to bind; anything but loopback needs tokens", read_only=True),
    Param("port", 8080, "HTTP port (0: any free port, logged at start)", 0, 65535, read_only=True),
    Param(
        "tls_cert_file",
        "",
        "PEM certificate for HTTPS (with tls_key_file); empty: plain HTTP",
        read_only=True,
    ),
    Param("tls_key_file", "", "PEM private key for HTTPS", read_only=True),
    Param(
        "token_file",
        "",
        "Bearer tokens, one 'role:name:token' per line (also $KRYSTAL_GATEWAY_TOKENS)",
        read_only=True,
    ),
    Param("max_body_bytes", 16 * 1024 * 1024, "Largest accepted upload, bytes", 1024, 512 * 1024 * 1024),
    Param(
        "max_pixels", 40_000_000, "Largest accepted image, pixels (decompression bomb guard)", 1, 500_000_000
    ),
    Param(
        "render_processes",
        True,
        "Render uploads in 2 worker processes, away from the graph's GIL (false: threads here)",
        read_only=True,
    ),
    Param("rate_limit_hz", 20.0, "Requests per second per token (0: unlimited)", 0.0, 10000.0),
    Param("rate_limit_burst", 40, "Requests a token may make at once", 1, 100000),
    Param(
        "cors_origins",
        [],
        "Origins allowed by CORS (and by the Origin check), read at start; empty: CORS off",
        read_only=True,
        param_type=Parameter.Type.STRING_ARRAY,
    ),
    Param(
        "allowed_hosts",
        [],
        "Host names the gateway answers to besides localhost and IP addresses (DNS rebinding guard)",
        read_only=True,
        param_type=Parameter.Type.STRING_ARRAY,
    ),
    Param("stream_hz", 10.0, "ASCII frames per second sent to each live page", 0.5, 60.0),
    shed_param("the live pages' ASCII stream (stream_hz)"),
    Param("stale_after_s", 5.0, "A diagnostics task not heard from this long is STALE", 0.5, 600.0),
    Param("command_timeout_s", 5.0, "Default wait for a device command's answer", 0.1, 60.0),
    Param(
        "audit_log",
        "",
        "Operator actions, JSON Lines; empty: $XDG_STATE_HOME/krystal/gateway_audit.jsonl",
        read_only=True,
    ),
    Param(
        "request_log",
        "",
        "Every request, JSON Lines; empty: $XDG_STATE_HOME/krystal/gateway_requests.jsonl",
        read_only=True,
    ),
    Param(
        "foxglove",
        False,
        "Serve the graph's topics to Foxglove (WebSocket protocol, same tokens: ?token=)",
        read_only=True,
    ),
    Param("foxglove_port", 8765, "Foxglove WebSocket port (0: any free port)", 0, 65535, read_only=True),
    Param("foxglove_topics", list(FOXGLOVE_TOPICS), "Topics bridged to Foxglove", read_only=True),
)


def _frame_dict(msg: AsciiFrame) -> dict[str, Any]:
    return {
        "stamp": msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
        "columns": int(msg.columns),
        "rows": int(msg.rows),
        "lines": list(msg.lines),
        "mode": msg.mode,
        "kernel": msg.kernel,
        "kernel_size": int(msg.kernel_size),
        "render_time_ms": float(msg.render_time_ms),
        "latency_ms": float(msg.latency_ms),
    }


def _fields(msg: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for n in names:
        v = getattr(msg, n)
        out[n] = v if isinstance(v, (str, bool)) else float(v) if isinstance(v, float) else int(v)
    return out


class GatewayNode(Node):
    # Set before anything can fail in __init__, so destroy_node works on a node that refused to start.
    _server: Any = None
    _thread: threading.Thread | None = None
    _audit: JsonLines | None = None
    _requests: JsonLines | None = None

    def __init__(self, node_name: str = "gateway", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS)
        p = self.params
        try:
            tokens = load_tokens(p["token_file"])
        except ValueError as exc:
            raise StartRefused(str(exc)) from None
        self._open = not tokens
        refusal = check_bind(p["host"], tokens)
        if refusal:
            raise StartRefused(refusal)
        self.hub = Hub(stale_after_s=p["stale_after_s"])
        self.hub.device_commander = self._device_command
        self.hub.style_setter = self._set_style
        state = state_dir()
        self._audit = JsonLines(p["audit_log"] or state / "gateway_audit.jsonl")
        self._requests = JsonLines(p["request_log"] or state / "gateway_requests.jsonl", max_bytes=16 << 20)
        settings = GatewaySettings(
            limits=Limits(max_body_bytes=p["max_body_bytes"], max_pixels=p["max_pixels"]),
            cors_origins=tuple(o for o in p["cors_origins"] if o),
            allowed_hosts=tuple(
                h for h in (*p["allowed_hosts"], socket.gethostname(), socket.getfqdn()) if h
            ),
            stream_hz=p["stream_hz"],
            command_timeout_s=p["command_timeout_s"],
            render_processes=p["render_processes"],
        )
        access = Access(tokens, RateLimiter(p["rate_limit_hz"], p["rate_limit_burst"]))
        self.app = create_app(self.hub, access, settings, self._log_request, self._log_audit)
        self._device_clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._style_pub = self.create_publisher(StyleDecision, "krystal/style", latched_qos())
        self._frame_set_s = 0.0
        self._subscribe()
        self._http_error = ""
        self.requests_served = 0
        self.port = 0
        self.url = ""
        self._fox_channels: dict[str, int | None] = {}
        self.foxglove_port = 0
        self._fox_error = ""
        self._start_http(p["host"], p["port"], p["tls_cert_file"], p["tls_key_file"], p["foxglove"])
        if p["foxglove"]:
            self._bridge_new_topics()
        self._diagnostics = Diagnostics(self)
        self._diagnostics.add("http", self._http_health)
        if p["foxglove"]:
            self._diagnostics.add("foxglove", self._fox_health)
        self._shedding = Shedding(self, "the live pages' ASCII stream", subscribe=False)
        self.create_timer(1.0, self._refresh)

    # --- ROS inputs -------------------------------------------------------------------------
    def _subscribe(self) -> None:
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable_qos(100))
        self.create_subscription(AsciiFrame, "krystal/ascii", self._on_frame, sensor_qos(depth=1))
        self.create_subscription(StyleDecision, "krystal/style", self._on_style, latched_qos())
        subscribe_stream(self, RenderStats, "krystal/render_stats", self._on_stats, sensor_qos(depth=5))
        subscribe_stream(self, ThermalState, "thermal/state", self._on_thermal, sensor_qos(depth=5))
        subscribe_stream(self, GpuTelemetry, "gpu/telemetry", self._on_gpu, sensor_qos(depth=10))
        subscribe_stream(self, AudioFeatures, "audio/features", self._on_audio, sensor_qos(depth=10))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.hub.tick("/diagnostics")
        for s in msg.status:
            level = s.level[0] if isinstance(s.level, bytes) else int(s.level)
            self.hub.health.update(
                s.name, level, s.message, s.hardware_id, {kv.key: kv.value for kv in s.values}
            )

    def _on_frame(self, msg: AsciiFrame) -> None:
        self.hub.tick("krystal/ascii")
        now = time.monotonic()
        # shedding: pages get only what the hub holds, so fewer frames there are fewer sent
        shed_period_s = 1.0 / (self.params["stream_hz"] * self._shedding.factor)
        if self._shedding.active and now - self._frame_set_s < shed_period_s:
            return
        self._frame_set_s = now
        self.hub.set_frame(_frame_dict(msg))

    def _on_style(self, msg: StyleDecision) -> None:
        self.hub.tick("krystal/style")
        self._shedding.observe(msg)
        self.hub.set_style(
            _fields(
                msg,
                (
                    "decision_id",
                    "mode",
                    "kernel",
                    "kernel_size",
                    "columns",
                    "rows",
                    "policy",
                    "reason",
                    "confidence",
                    "predicted_frame_time_ms",
                ),
            )
        )

    def _on_stats(self, msg: RenderStats) -> None:
        self.hub.tick("krystal/render_stats")
        self.hub.set_render_stats(
            _fields(
                msg,
                (
                    "frames_rendered",
                    "frames_dropped",
                    "frames_invalid",
                    "input_fps",
                    "output_fps",
                    "render_time_ms_p50",
                    "render_time_ms_p99",
                    "latency_ms_p99",
                    "budget_ms",
                    "columns",
                    "rows",
                    "mode",
                    "kernel",
                    "kernel_size",
                ),
            )
        )

    def _on_thermal(self, msg: ThermalState) -> None:
        self.hub.tick("thermal/state")
        temps = dict(zip(msg.sensor_names, (float(t) for t in msg.temperatures_c), strict=False))
        self.hub.set_temperatures(temps, float(msg.max_temperature_c))

    def _on_gpu(self, msg: GpuTelemetry) -> None:
        self.hub.tick("gpu/telemetry")
        self.hub.set_gpu(msg.device_name or msg.source, float(msg.utilization_ratio))

    def _on_audio(self, msg: AudioFeatures) -> None:
        self.hub.tick("audio/features")
        self.hub.set_tempo(float(msg.tempo_bpm))

    def _refresh(self) -> None:
        names = [f"{ns.rstrip('/')}/{n}" for n, ns in self.get_node_names_and_namespaces()]
        self.hub.set_nodes(names)
        if self.params["foxglove"]:
            self._bridge_new_topics()

    # --- operator actions (called from the HTTP thread) -------------------------------------
    def _device_command(self, cmd: CommandRequest) -> Future[CommandResult]:
        out: Future[CommandResult] = Future()
        with self._clients_lock:
            client = self._device_clients.get(cmd.device_id)
            if client is None:
                if len(self._device_clients) >= MAX_DEVICE_CLIENTS:
                    old_id, old = next(iter(self._device_clients.items()))
                    del self._device_clients[old_id]
                    self.destroy_client(old)
                client = self._device_clients[cmd.device_id] = self.create_client(
                    DeviceCommand, f"devices/{cmd.device_id}/command"
                )
        if not client.service_is_ready():
            out.set_result(CommandResult(False, 2, f"no device agent serves devices/{cmd.device_id}/command"))
            return out
        req = DeviceCommand.Request(
            command=cmd.command,
            arguments=[KeyValue(key=k, value=v) for k, v in cmd.arguments.items()],
            timeout_s=float(cmd.timeout_s),
        )
        for name, value in (("command_id", cmd.command_id), ("caller", cmd.caller)):
            if hasattr(req, name):
                setattr(req, name, value)

        def done(f: RosFuture[Any]) -> None:
            try:
                r = f.result()
                if r is None:
                    raise RuntimeError("no response")
                out.set_result(
                    CommandResult(
                        bool(r.accepted), int(r.level), r.message, {kv.key: kv.value for kv in r.values}
                    )
                )
            except Exception as exc:  # the agent died mid-call
                out.set_result(CommandResult(False, 2, f"device command failed: {exc}"))

        client.call_async(req).add_done_callback(done)
        return out

    def _set_style(self, style: dict[str, Any], caller: str) -> None:
        now = self.get_clock().now()
        self._style_pub.publish(
            StyleDecision(
                header=Header(stamp=now.to_msg(), frame_id=self.get_name()),
                decision_id=now.nanoseconds,
                mode=style["mode"],
                kernel=style["kernel"],
                kernel_size=int(style["kernel_size"]),
                columns=int(style["columns"]),
                rows=int(style["rows"]),
                policy="manual",
                reason=f"set by {caller} through the gateway"
                + (f": {style['reason']}" if style["reason"] else ""),
                confidence=1.0,
            )
        )

    def _log_request(self, who: str, method: str, path: str, status: int, ms: float) -> None:
        self.requests_served += 1
        if self._requests is None:
            return
        self._requests.append(
            {
                "t": time.time(),
                "who": who,
                "method": method,
                "path": path,
                "status": status,
                "ms": round(ms, 2),
            }
        )
        if status >= 400:
            self.get_logger().info(f"{who} {method} {path} -> {status}", throttle_duration_sec=1.0)

    def _log_audit(self, record: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit.append({"t": time.time(), **record})
        self.get_logger().info(f"operator action: {record}")

    # --- servers ----------------------------------------------------------------------------
    def _bind(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise StartRefused(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
        sock.listen(128)
        return sock

    def _start_http(self, host: str, port: int, cert: str, key: str, foxglove: bool) -> None:
        tls = bool(cert and key)
        if bool(cert) != bool(key):
            raise StartRefused("TLS needs both tls_cert_file and tls_key_file")
        for f in (cert, key):
            if f and not Path(f).is_file():
                raise StartRefused(f"TLS file {f} does not exist")
        sockets = [self._bind(host, port)]
        self.port = sockets[0].getsockname()[1]
        if foxglove:
            try:
                sockets.append(self._bind(host, self.params["foxglove_port"]))
            except StartRefused:
                sockets[0].close()
                raise
            self.foxglove_port = sockets[1].getsockname()[1]
        self._server = make_server(self.app, ssl_certfile=cert or None, ssl_keyfile=key or None)
        shown = host if ":" not in host else f"[{host}]"
        self.url = f"{'https' if tls else 'http'}://{shown}:{self.port}/"

        def serve() -> None:
            try:
                self._server.run(sockets=sockets)
            except Exception as exc:  # shown on /diagnostics, never fatal for the node
                self._http_error = f"HTTP server stopped: {exc!r}"
            finally:
                for sock in sockets:
                    sock.close()

        self._thread = threading.Thread(target=serve, name="gateway-http", daemon=True)
        self._thread.start()
        note = " (no tokens: viewer endpoints open, operator endpoints closed)" if self._open else ""
        self.get_logger().info(f"serving {self.url}{note}")
        if foxglove:
            scheme = "wss" if tls else "ws"
            self.get_logger().info(f"Foxglove on {scheme}://{shown}:{self.foxglove_port}/ (token: ?token=)")

    def _bridge_new_topics(self) -> None:
        """Bridge each configured topic once its type is known from the graph."""
        wanted = {self.resolve_topic_name(t): t for t in self.params["foxglove_topics"] if t}
        for name, types in self.get_topic_names_and_types():
            if name not in wanted or name in self._fox_channels or not types:
                continue
            try:
                cls = message_class(types[0])
                schema = message_definition(types[0])
            except (LookupError, OSError, ValueError) as exc:
                self._fox_error = f"cannot bridge {name}: {exc}"
                self._fox_channels[name] = None
                continue
            cid = self.hub.foxglove.add(name, types[0], schema)
            self._fox_channels[name] = cid
            qos = reliable_qos(10) if name == "/diagnostics" else sensor_qos(depth=5)
            self.create_subscription(cls, name, self._fox_forwarder(cid), qos, raw=True)

    def _fox_forwarder(self, cid: int) -> Any:
        log = self.hub.foxglove.log
        return lambda raw: log(cid, raw, time.time_ns())

    # --- health -----------------------------------------------------------------------------
    def _http_health(self) -> Health:
        values = {"url": self.url, "requests": str(self.requests_served)}
        if self._http_error or (self._thread is not None and not self._thread.is_alive()):
            return Health(ERROR, self._http_error or "HTTP server thread ended", values)
        return Health(OK, f"serving {self.url}", values)

    def _fox_health(self) -> Health:
        bridged = sorted(n for n, c in self._fox_channels.items() if c is not None)
        values = {"port": str(self.foxglove_port), "topics": ", ".join(bridged)}
        values["clients"] = str(self.hub.streams.count("foxglove"))
        if self._fox_error:
            return Health(WARN, self._fox_error, values)
        return Health(OK, f"bridging {len(bridged)} topics", values)

    def destroy_node(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        workers = getattr(getattr(self, "app", None), "state", None)
        if workers is not None and workers.render_workers is not None:
            workers.render_workers.close()
        for journal in (self._audit, self._requests):
            if journal is not None:
                journal.close()
        super().destroy_node()
