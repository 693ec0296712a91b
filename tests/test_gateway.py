"""Gateway: a real graph (video_source -> ascii_renderer) behind the real HTTP server, driven by httpx,
a Foxglove protocol client, headless Chromium and schemathesis."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from krystal.gateway.access import Access, AccessError, RateLimiter, check_bind, load_tokens, parse_tokens
from krystal.gateway.frames import FrameRequest, Limits, UploadError, probe, process_frame
from krystal.gateway.health import ERROR, OK, STALE, WARN, HealthBook
from tests.conftest import PYTHON

OPERATOR = "operator:olga:" + "o" * 24
VIEWER = "viewer:victor:" + "v" * 24
AUTH_OP = {"Authorization": "Bearer " + "o" * 24}
AUTH_VIEW = {"Authorization": "Bearer " + "v" * 24}


def jpeg(width: int = 1920, height: int = 1080, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 40 + 1, width // 40 + 1, 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return bytes(cv2.imencode(".jpg", img)[1])


def encoded(fmt: str, width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (width, height), (200, 30, 90)).save(buf, fmt)
    return buf.getvalue()


# --- cores, no ROS ---------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_health_book_aggregates_per_node_and_marks_stale_after_5_s() -> None:
    clock = Clock()
    book = HealthBook(5.0, clock)
    book.update("video_source: source", OK, "streaming")
    book.update("video_source: camera_info", WARN, "no calibration")
    book.update("ascii_renderer: render", ERROR, "malformed image")
    h = book.snapshot()
    assert h.level == ERROR
    nodes = {n.name: n for n in h.nodes}
    assert nodes["video_source"].level == WARN and len(nodes["video_source"].tasks) == 2
    assert nodes["ascii_renderer"].message == "render: malformed image"
    clock.t += 4.9
    book.update("ascii_renderer: render", OK, "rendering")
    clock.t += 0.2  # video_source now 5.1 s old
    h = book.snapshot()
    assert {n.name: n.level for n in h.nodes} == {"ascii_renderer": OK, "video_source": STALE}
    assert h.level == STALE and "no update for 5 s" in h.nodes[1].tasks[0].message


def test_tokens_roles_and_rate_limit(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(f"# operators and viewers\n{OPERATOR}\n{VIEWER}\n")
    tokens = load_tokens(str(f), environ={})
    clock = Clock()
    access = Access(tokens, RateLimiter(2.0, 2, clock))
    with pytest.raises(AccessError) as e:
        access.require(None, "status:read")
    assert e.value.status == 401
    with pytest.raises(AccessError) as e:
        access.require("Bearer " + "x" * 24, "status:read")
    assert e.value.status == 401
    assert access.require(AUTH_VIEW["Authorization"], "status:read").name == "victor"
    with pytest.raises(AccessError) as e:
        access.require(AUTH_VIEW["Authorization"], "devices:command")
    assert e.value.status == 403 and "devices:command" in e.value.reason
    assert access.require(AUTH_OP["Authorization"], "devices:command").role == "operator"
    access.require(AUTH_OP["Authorization"], "style:set")
    with pytest.raises(AccessError) as e:  # burst of 2 spent
        access.require(AUTH_OP["Authorization"], "style:set")
    assert e.value.status == 429 and e.value.retry_after_s > 0
    clock.t += 0.5
    access.require(AUTH_OP["Authorization"], "style:set")
    with pytest.raises(ValueError, match="role"):
        parse_tokens("admin:a:" + "a" * 20, "x")
    with pytest.raises(ValueError, match="16"):
        parse_tokens("viewer:a:short", "x")


def test_no_tokens_only_on_loopback() -> None:
    assert check_bind("127.0.0.1", {}) is None and check_bind("::1", {}) is None
    reason = check_bind("0.0.0.0", {})
    assert reason is not None and "without tokens" in reason
    assert check_bind("0.0.0.0", parse_tokens(VIEWER, "x")) is None
    open_access = Access({}, RateLimiter(0, 1))
    assert open_access.require(None, "status:read").name == "anonymous"
    with pytest.raises(AccessError) as e:
        open_access.require(None, "devices:command")
    assert e.value.status == 403 and "no tokens are configured" in e.value.reason


def test_every_bad_upload_is_refused_with_its_reason() -> None:
    limits = Limits(max_body_bytes=2_000_000, max_pixels=5_000_000)
    good = jpeg(640, 480)
    bomb = io.BytesIO()
    PILImage.new("L", (3000, 3000)).save(bomb, "PNG")  # tiny file, 9 MP
    cases = {
        b"": 400,
        b"x" * 2_000_001: 413,
        b"GIF89a" + b"\0" * 100: 415,
        b"hello": 415,
        good[: len(good) // 2]: 422,
        encoded("PNG")[:-20]: 422,
        bomb.getvalue(): 413,
        encoded("GIF"): 415,
    }
    for data, status in cases.items():
        with pytest.raises(UploadError) as e:
            probe(data, limits)
        assert e.value.status == status, (data[:10], e.value.reason)
        assert e.value.reason
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert probe(encoded(fmt), limits)[0] == fmt
    with pytest.raises(UploadError) as e:
        process_frame(good, FrameRequest(columns=0), limits, _pool())
    assert e.value.status == 422 and "grid" in e.value.reason
    with pytest.raises(UploadError):
        process_frame(good, FrameRequest(mode="laser"), limits, _pool())


def _pool() -> Any:
    from krystal.gateway.frames import EnginePool

    return EnginePool()


def test_render_matches_the_engine_and_is_stateless() -> None:
    """The upload path renders what ascii_renderer's engine renders, and a request never inherits
    another's hysteresis (same image, same answer, whatever came before)."""
    from krystal.ascii.engine import Engine, Style

    pool = _pool()
    data = encoded("PNG", 320, 180)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    req = FrameRequest(mode="edges", columns=40, rows=12)
    first = process_frame(data, req, Limits(), pool)
    process_frame(jpeg(320, 180, seed=3), req, Limits(), pool)
    again = process_frame(data, req, Limits(), pool)
    assert first.lines == again.lines
    expected = Engine(Style(mode="edges", columns=40, rows=12)).render(pixels, "bgr8").lines()
    assert first.lines == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF"]))
def test_fuzz_uploads_never_raise_anything_but_upload_error(data: bytes, magic: bytes) -> None:
    try:
        process_frame(magic + data, FrameRequest(columns=20, rows=5), Limits(), _POOL)
    except UploadError as e:
        assert 400 <= e.status < 500


_POOL = _pool()


# --- the running node ------------------------------------------------------------------------
class Graph:
    def __init__(self, nodes: list[Any]) -> None:
        from rclpy.executors import MultiThreadedExecutor

        self.nodes = nodes
        self.executor = MultiThreadedExecutor(num_threads=2)
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        for n in self.nodes:
            n.destroy_node()


@pytest.fixture
def graph(ros: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Graph, Path]]:
    from rclpy.parameter import Parameter

    from krystal.ascii.node import AsciiRendererNode
    from krystal.gateway.node import GatewayNode
    from krystal.video.node import VideoSourceNode

    monkeypatch.setenv("KRYSTAL_GATEWAY_TOKENS", f"{OPERATOR},{VIEWER}")
    audit = tmp_path / "audit.jsonl"
    video = VideoSourceNode(
        parameter_overrides=[Parameter("width", value=320), Parameter("height", value=240)]
    )
    renderer = AsciiRendererNode(
        parameter_overrides=[Parameter("columns", value=60), Parameter("rows", value=20)]
    )
    gateway = GatewayNode(
        parameter_overrides=[
            Parameter("port", value=0),
            Parameter("audit_log", value=str(audit)),
            Parameter("request_log", value=str(tmp_path / "requests.jsonl")),
            Parameter("foxglove", value=True),
            Parameter("foxglove_port", value=0),
            Parameter("rate_limit_hz", value=0.0),
        ]
    )
    g = Graph([video, renderer, gateway])
    try:
        yield gateway, g, audit
    finally:
        g.stop()


def wait_for(predicate: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_status_metrics_and_access_on_the_running_graph(graph: tuple[Any, Graph, Path]) -> None:
    gateway, _, audit = graph
    with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
        assert http.get("/status").status_code == 401
        assert http.get("/status", headers={"Authorization": "Bearer nope"}).status_code == 401

        seen: list[Any] = []

        def healthy() -> Any:
            body = http.get("/status", headers=AUTH_VIEW).json()
            names = {n["name"]: n["level"] for n in body["health"]["nodes"]}
            seen[:] = [names, body["topic_rates_hz"]]
            # WARN is allowed: on a loaded 2-core machine a late camera frame is a deadline miss
            # (streams task); what the gateway must show is live, aggregated health, not ERROR/STALE.
            live = all(names.get(n) in ("OK", "WARN") for n in ("video_source", "ascii_renderer"))
            ok = live and body["topic_rates_hz"].get("krystal/ascii", 0) > 5 and bool(body["nodes"])
            return body if ok else None

        try:
            body = wait_for(healthy)
        except AssertionError as exc:
            raise AssertionError(f"graph not healthy in time; last levels and rates: {seen}") from exc
        assert {"/video_source", "/ascii_renderer", "/gateway"} <= set(body["nodes"])
        metrics = http.get("/metrics", headers=AUTH_VIEW)
        assert metrics.status_code == 200 and "krystal_render_time_seconds_bucket" in metrics.text
        count = [ln for ln in metrics.text.splitlines() if ln.startswith("krystal_render_time_seconds_count")]
        assert float(count[0].split()[-1]) > 5

        style = {"mode": "edges", "kernel": "luminance", "kernel_size": 5, "reason": "test"}
        assert http.post("/style", json=style, headers=AUTH_VIEW).status_code == 403
        r = http.post("/style", json=style, headers=AUTH_OP)
        assert r.status_code == 200, r.text

        def renderer_follows() -> Any:
            s = http.get("/status", headers=AUTH_VIEW).json()
            rs = s["render_stats"] or {}
            return s if rs.get("mode") == "edges" and rs.get("kernel_size") == 5 else None

        s = wait_for(renderer_follows)
        assert s["style"]["policy"] == "manual" and "olga" in s["style"]["reason"]
        assert http.post("/style", json={"mode": "laser"}, headers=AUTH_OP).status_code == 422

        r = http.post("/process_frame?columns=80&rows=24", content=jpeg(), headers=AUTH_VIEW)
        assert r.status_code == 200 and len(r.json()["lines"]) == 24
        assert all(len(line) == 80 for line in r.json()["lines"])
        r = http.post("/process_frame?format=text&mode=cyberpunk", content=jpeg(), headers=AUTH_VIEW)
        assert r.headers["content-type"].startswith("text/plain") and r.text.count("\n") == 45
        r = http.post(
            "/process_frame?mode=cyberpunk&colors=true&columns=10&rows=4",
            files={"image": ("x.png", encoded("PNG"), "image/png")},
            headers=AUTH_VIEW,
        )
        assert r.status_code == 200 and len(r.json()["foreground_rgb"]) == 40
        for bad, status in ((b"", 400), (b"not an image", 415), (jpeg()[:3000], 422)):
            r = http.post("/process_frame", content=bad, headers=AUTH_VIEW)
            assert r.status_code == status and r.json()["detail"]
        assert (
            http.post("/process_frame?columns=100000", content=jpeg(), headers=AUTH_VIEW).status_code == 422
        )

        r = http.post("/devices/fan0/command", json={"command": "set"}, headers=AUTH_VIEW)
        assert r.status_code == 403
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (records[0]["who"], records[0]["accepted"], records[0]["status"]) == ("victor", False, 403)
    accepted = [r for r in records if r["accepted"]]
    assert accepted[0]["who"] == "olga" and accepted[0]["action"] == "style:set"


def test_device_command_forwarded_to_the_agent_service(graph: tuple[Any, Graph, Path]) -> None:
    from diagnostic_msgs.msg import KeyValue
    from krystal.srv import DeviceCommand
    from rclpy.node import Node

    gateway, g, audit = graph
    agent = Node("fake_agent")
    seen: list[Any] = []

    def serve(req: Any, res: Any) -> Any:
        seen.append(req)
        res.accepted = req.command == "set_speed"
        res.level = 0 if res.accepted else 2
        res.message = "speed set" if res.accepted else f"unknown command {req.command}"
        res.values = [KeyValue(key="speed_ratio", value=req.arguments[0].value if req.arguments else "")]
        return res

    agent.create_service(DeviceCommand, "devices/fan0/command", serve)
    g.executor.add_node(agent)
    with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
        body = {"command": "set_speed", "arguments": {"speed_ratio": "0.5"}, "command_id": "c1"}

        def answered() -> Any:
            r = http.post("/devices/fan0/command", json=body, headers=AUTH_OP)
            return r if r.status_code == 200 else None

        r = wait_for(answered)
        assert r.json() == {
            "accepted": True,
            "level": 0,
            "message": "speed set",
            "values": {"speed_ratio": "0.5"},
        }
        r = http.post("/devices/fan0/command", json={"command": "explode"}, headers=AUTH_OP)
        assert r.status_code == 409 and "unknown command" in r.json()["message"]
        r = http.post("/devices/nobody/command", json={"command": "x"}, headers=AUTH_OP)
        assert r.status_code == 409 and "no device agent" in r.json()["message"]
        r = http.post("/devices/bad%20id/command", json={"command": "x"}, headers=AUTH_OP)
        assert r.status_code == 422
    assert seen[0].arguments[0].key == "speed_ratio"
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(x["command"], x["accepted"]) for x in lines if "command" in x][-3:] == [
        ("set_speed", True),
        ("explode", False),
        ("x", False),
    ]
    g.executor.remove_node(agent)
    agent.destroy_node()


def test_foxglove_client_receives_ascii_frames(graph: tuple[Any, Graph, Path]) -> None:
    """With tokens set, the Foxglove listener wants one (?token=) and a friendly Origin, and says
    why it refuses; with the token a client gets the channels and CDR messages."""
    import websockets
    from krystal.msg import AsciiFrame
    from rclpy.serialization import deserialize_message

    gateway = graph[0]
    url = f"ws://127.0.0.1:{gateway.foxglove_port}"

    async def refused(url: str, **kw: Any) -> tuple[int, str, list[Any]]:
        got: list[Any] = []
        async with websockets.connect(url, subprotocols=["foxglove.sdk.v1"], **kw) as ws:
            try:
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), timeout=15))
            except websockets.ConnectionClosed as exc:
                return (exc.rcvd.code if exc.rcvd else 1006), (exc.rcvd.reason if exc.rcvd else ""), got

    code, reason, got = asyncio.run(refused(url))
    assert (code, got) == (4401, []) and "bearer token" in reason
    code, reason, got = asyncio.run(refused(f"{url}/?token={'v' * 24}", origin="https://evil.example"))
    assert (code, got) == (4403, []) and "origin" in reason

    async def client() -> AsciiFrame:
        async with websockets.connect(f"{url}/?token={'v' * 24}", subprotocols=["foxglove.sdk.v1"]) as ws:
            assert ws.subprotocol == "foxglove.sdk.v1"
            channels: dict[str, Any] = {}
            deadline = time.monotonic() + 15
            subscribed = False
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(ws.recv(), timeout=15)
                if isinstance(raw, str):
                    msg = json.loads(raw)
                    if msg.get("op") == "advertise":
                        channels.update({c["topic"]: c for c in msg["channels"]})
                    if not subscribed and "/krystal/ascii" in channels:
                        ch = channels["/krystal/ascii"]
                        assert ch["schemaEncoding"] == "ros2msg" and ch["encoding"] == "cdr"
                        assert "MSG: std_msgs/Header" in ch["schema"]
                        await ws.send(
                            json.dumps(
                                {"op": "subscribe", "subscriptions": [{"id": 7, "channelId": ch["id"]}]}
                            )
                        )
                        subscribed = True
                elif raw[0] == 0x01 and int.from_bytes(raw[1:5], "little") == 7:
                    return deserialize_message(raw[13:], AsciiFrame)  # type: ignore[no-any-return]
            raise AssertionError(f"no message; channels {sorted(channels)}")

    frame = asyncio.run(client())
    assert frame.rows == 20 and len(frame.lines) == 20 and len(frame.lines[0]) == 60


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_browser_sees_the_ascii_stream_change_and_the_style(
    graph: tuple[Any, Graph, Path], tmp_path: Path
) -> None:
    from krystal.msg import StyleDecision
    from rclpy.node import Node

    from krystal.ros.qos import latched_qos

    gateway, g, _ = graph
    helper = Node("style_source")
    pub = helper.create_publisher(StyleDecision, "krystal/style", latched_qos())
    pub.publish(  # a policy without a prediction sends NaN: the page must still show the style
        StyleDecision(
            mode="sketch",
            kernel="luminance",
            kernel_size=3,
            policy="rules",
            reason="headroom, line art",
            predicted_frame_time_ms=float("nan"),
        )
    )
    g.executor.add_node(helper)
    token = "v" * 24
    wait_for(lambda: "sketch" in repr(gateway.hub.style) and gateway.hub.frame is not None)

    def dom(n: int) -> str:
        cmd = [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / f'profile{n}'}",
            "--virtual-time-budget=4000",
            "--run-all-compositor-stages-before-draw",
            "--dump-dom",
            f"{gateway.url}#token={token}",
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout

    def ascii_text(page: str) -> str:
        start = page.index('<pre id="ascii">') + len('<pre id="ascii">')
        return page[start : page.index("</pre>", start)]

    # a loaded machine may need more than one virtual-time budget to connect and get a frame (the
    # first message may be a status: a message counted is not yet a frame shown)
    first = dom(1)
    for _ in range(3):
        if ascii_text(first).strip():
            break
        first = dom(1)
    second = dom(2)
    for _ in range(3):
        if "sketch/luminance/k3 (rules)" in second and ascii_text(second).strip():
            break
        second = dom(2)
    g.executor.remove_node(helper)
    helper.destroy_node()

    assert len(ascii_text(first).splitlines()) == 20, first[:500]
    assert ascii_text(first) != ascii_text(second)  # the test pattern moves
    assert "sketch/luminance/k3 (rules)" in second and "headroom, line art" in second
    assert 'class="OK"' in second  # per-node health rendered
    # every message parsed by the browser's strict JSON.parse (app.js counts both on <body>)
    assert 'data-messages="' in second and "data-unparsed" not in first + second


def test_openapi_fuzzed_by_schemathesis_finds_no_5xx(tmp_path: Path) -> None:
    """schemathesis generates requests for every operation of the OpenAPI document."""
    import schemathesis

    from krystal.gateway.app import GatewaySettings, create_app
    from krystal.gateway.hub import Hub

    hub = Hub()
    cfg = GatewaySettings(allowed_hosts=("testserver",))  # the ASGI test client's Host
    app = create_app(hub, Access(parse_tokens(OPERATOR, "t"), RateLimiter(0, 1)), cfg)
    hub.style_setter = lambda style, who: None
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/process_frame",
        "/status",
        "/metrics",
        "/devices/{device_id}/command",
        "/style",
    }
    failures: list[str] = []
    for operation in operations:
        strategy = operation.as_strategy()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case: Any) -> None:
            case.headers = {**(case.headers or {}), **AUTH_OP}
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path}: {response.status_code}")

        check()
    assert not failures, failures


def test_non_loopback_bind_without_tokens_refuses_to_start(procs: Any) -> None:
    import os

    from tests.conftest import executable

    env = {k: v for k, v in os.environ.items() if k != "KRYSTAL_GATEWAY_TOKENS"}
    p = procs([executable("gateway"), "--ros-args", "-p", "host:=0.0.0.0", "-p", "port:=0"], env=env)
    p.stdout, p.stderr = p.popen.communicate(timeout=60)
    assert p.popen.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "refusing to bind 0.0.0.0 without tokens" in lines[0], p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def test_krystal_health_exit_status_follows_the_graph(ros: None) -> None:
    """`krystal health --once` prints the table and exits 1 while a node reports ERROR, 0 when OK."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node

    from krystal.ros.qos import reliable_qos
    from tests.conftest import ROOT

    node = Node("pretend_sensor")
    pub = node.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
    level = [DiagnosticStatus.ERROR]

    def timer_cb() -> None:
        status = DiagnosticStatus(level=level[0], name="pretend_sensor: probe", message="probe failed: EIO")
        pub.publish(DiagnosticArray(status=[status]))

    node.create_timer(0.2, timer_cb)
    graph = Graph([node])
    try:
        krystal = str(Path(shutil.which("krystal") or ROOT / "install/krystal/bin/krystal"))
        run = [PYTHON, krystal, "health", "--once", "--wait", "15"]
        out = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "pretend_sensor" in out.stdout and "probe failed: EIO" in out.stdout
        level[0] = DiagnosticStatus.OK
        time.sleep(0.5)
        out = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        graph.stop()


def test_krystal_health_once_waits_for_a_late_node_and_never_calls_nothing_ok(ros: None) -> None:
    """A node whose first /diagnostics comes 3 s after `krystal health --once` starts listening
    (a slow start under load) is in the table; with nothing on the graph there is no table and
    no "health: OK"."""
    import os

    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node

    from krystal.ros.qos import reliable_qos
    from tests.conftest import ROOT

    nodes = [Node("quick_node"), Node("late_node")]
    pubs = [n.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10)) for n in nodes]
    late_since: list[float] = []

    def tick() -> None:
        pubs[0].publish(DiagnosticArray(status=[DiagnosticStatus(name="quick_node: probe", message="fine")]))
        if not late_since and pubs[0].get_subscription_count() > 0:
            late_since.append(time.monotonic())  # the CLI is listening
        if late_since and time.monotonic() - late_since[0] > 3.0:
            pubs[1].publish(DiagnosticArray(status=[DiagnosticStatus(name="late_node: probe", message="up")]))

    nodes[0].create_timer(0.2, tick)
    graph = Graph(nodes)
    krystal = str(Path(shutil.which("krystal") or ROOT / "install/krystal/bin/krystal"))

    def health_once(wait_s: str, env: dict[str, str] | None = None) -> Any:
        run = [PYTHON, krystal, "health", "--once", "--wait", wait_s]
        return subprocess.run(run, capture_output=True, text=True, timeout=60, check=False, env=env)

    try:
        out = health_once("20")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "quick_node" in out.stdout and "late_node" in out.stdout, out.stdout
    finally:
        graph.stop()
    env = {**os.environ, "ROS_DOMAIN_ID": str((int(os.environ["ROS_DOMAIN_ID"]) + 50) % 100 + 101)}
    out = health_once("2", env)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "no /diagnostics heard" in out.stdout and "OK" not in out.stdout, out.stdout
