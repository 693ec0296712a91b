"""The gateway app behind the real uvicorn server (as the node serves it), attacked as the issue did:
no token, hostile Origin and Host, huge and slow bodies, idle and greedy WebSockets, NaN, bad ids.

ROS-free: the hub is fed plain values; clients are httpx, `websockets` and raw sockets.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from krystal.gateway.access import Access, RateLimiter, parse_tokens
from krystal.gateway.app import GatewaySettings, create_app
from krystal.gateway.hub import CommandRequest, CommandResult, Hub
from krystal.gateway.server import make_server
from tests.conftest import scaled

OPERATOR = "operator:olga:" + "o" * 24
VIEWER = "viewer:victor:" + "v" * 24
OP = {"Authorization": "Bearer " + "o" * 24}
VIEW = {"Authorization": "Bearer " + "v" * 24}


class Served:
    """create_app + make_server on a free loopback port, in a thread, as GatewayNode runs it."""

    def __init__(self, tokens: str = f"{OPERATOR},{VIEWER}", header_timeout_s: float = 10.0, **kw: Any):
        self.hub = Hub()
        self.audit: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, str, int]] = []
        self.commands: list[CommandRequest] = []

        def commander(cmd: CommandRequest) -> Future[CommandResult]:
            self.commands.append(cmd)
            f: Future[CommandResult] = Future()
            f.set_result(CommandResult(True, 0, "done"))
            return f

        self.hub.device_commander = commander
        self.hub.style_setter = lambda style, who: None
        access = Access(parse_tokens(tokens, "t") if tokens else {}, RateLimiter(0, 1))
        self.app = app = create_app(
            self.hub,
            access,
            GatewaySettings(**kw),
            request_log=lambda who, method, path, status, ms: self.requests.append(
                (who, method, path, status)
            ),
            audit=self.audit.append,
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(app, header_timeout_s=header_timeout_s)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        workers = self.app.state.render_workers  # as GatewayNode.destroy_node does
        if workers is not None:
            workers.close()


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served(body_idle_timeout_s=1.0)
    try:
        yield s
    finally:
        s.stop()


def ws_close(url: str, listen_s: float = 2.5, **kw: Any) -> tuple[int, str, list[str]]:
    """Connect, read until the server closes or `listen_s` passes: (close code or 0 while open,
    reason, messages received)."""

    async def go() -> tuple[int, str, list[str]]:
        got: list[str] = []
        end = time.monotonic() + listen_s
        async with websockets.connect(url, open_timeout=10, **kw) as ws:
            try:
                while time.monotonic() < end:
                    got.append(str(await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))))
                return 0, "still open", got
            except websockets.ConnectionClosed as exc:
                rcvd = exc.rcvd
                return (rcvd.code if rcvd else 1006), (rcvd.reason if rcvd else ""), got
            except asyncio.TimeoutError:
                return 0, "still open", got

    return asyncio.run(go())


def raw_request(port: int, head: bytes, body: bytes = b"", wait_s: float = 10.0) -> tuple[bytes, float]:
    """Send `head` (and `body`), then read until the server answers and closes or `wait_s` passes."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(head + body)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data and b"connection: close" in data.lower():
                    break
        except TimeoutError:
            pass
    return data, time.monotonic() - t0


# --- 1, 3, 12: every listener behind the tokens and the Host/Origin checks -------------------------
def test_websockets_need_a_token_and_a_friendly_origin_and_say_why(served: Served) -> None:
    served.hub.set_frame({"lines": ["ab"], "columns": 2, "rows": 1, "render_time_ms": 1.0})
    base = f"ws://127.0.0.1:{served.port}"
    for path in ("/ws", "/"):
        code, reason, got = ws_close(base + path)
        assert (code, got) == (4401, []) and "missing bearer token" in reason, (path, code, reason)
        code, reason, got = ws_close(f"{base}{path}?token={'v' * 24}", origin="https://evil.example")
        assert (code, got) == (4403, []) and "origin" in reason, (path, code, reason)
    code, reason, got = ws_close(f"{base}/ws?token={'v' * 24}", origin=f"http://127.0.0.1:{served.port}")
    assert code == 0 and any(json.loads(m)["type"] == "frame" for m in got), (code, reason)
    code, reason, got = ws_close(f"{base}/?token={'v' * 24}", subprotocols=["foxglove.websocket.v1"])
    assert code == 0 and json.loads(got[0])["op"] == "serverInfo"


def test_host_and_origin_allowlist_on_http(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        r = http.get("/status", headers={**VIEW, "Host": "attacker.example"})
        assert r.status_code == 400 and "attacker.example" in r.json()["detail"]
        r = http.get("/status", headers={**VIEW, "Origin": "https://evil.example"})
        assert r.status_code == 403 and "origin" in r.json()["detail"]
        assert http.get("/", headers={"Host": "rebound.example:8080"}).status_code == 400
        for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "192.168.1.20"):
            assert http.get("/status", headers={**VIEW, "Host": host}).status_code == 200, host
        same = {**VIEW, "Origin": served.url}
        assert http.get("/status", headers=same).status_code == 200


def test_no_token_deployment_refuses_cross_site_pages() -> None:
    """The default (no tokens, loopback): a page on another site cannot read the stream."""
    s = Served(tokens="")
    try:
        base = f"ws://127.0.0.1:{s.port}/ws"
        code, reason, _ = ws_close(base, origin="https://evil.example")
        assert code == 4403, reason
        code, _, got = ws_close(base, origin=f"http://127.0.0.1:{s.port}")  # the page itself
        assert code == 0 and got
    finally:
        s.stop()


# --- 2, 8: authorization before any body byte, small JSON bodies, timeouts -------------------------
def test_authorization_comes_before_the_body(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        r = http.post("/style", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 401
        r = http.post("/devices/fan0/command", json={"timeout_s": "x"}, headers=VIEW)
        assert r.status_code == 403
        big = b'{"mode": "ramp", "reason": "' + b"x" * (11 << 20) + b'"}'
        r = http.post("/style", content=big, headers={**OP, "content-type": "application/json"})
        assert r.status_code == 413
    # a 200 MB declaration is answered at once, without a byte of it read
    head = (
        b"POST /style HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200000000\r\n\r\n"
    )
    data, took = raw_request(served.port, head)
    assert data.startswith(b"HTTP/1.1 401") and took < 5, (data[:80], took)
    data, took = raw_request(
        served.port, head.replace(b"Host", b"Authorization: Bearer " + b"o" * 24 + b"\r\nHost")
    )
    assert data.startswith(b"HTTP/1.1 413") and took < 5, (data[:80], took)
    assert not [a for a in served.audit if a.get("accepted")]  # nothing reached the handler


def test_a_stalled_body_and_slow_headers_are_cut_off() -> None:
    s = Served(header_timeout_s=1.0, body_idle_timeout_s=1.0, body_timeout_s=2.0)
    try:
        head = (
            b"POST /style HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + b"o" * 24
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", s.port), timeout=0.3) as sock:
            t0, reply = time.monotonic(), b""
            sock.sendall(head)
            while not reply and time.monotonic() - t0 < 8:  # a byte every 0.3 s: never idle 1 s
                try:
                    reply = sock.recv(1024)
                except TimeoutError:
                    sock.sendall(b" ")
            took = time.monotonic() - t0
            sock.settimeout(scaled(2.0))
            try:  # the body can come in a segment of its own (seen under load): read to the close
                while chunk := sock.recv(1024):
                    reply += chunk
            except OSError:
                pass
            assert reply.startswith(b"HTTP/1.1 408") and b"over 2 s" in reply, reply[:200]
            assert took < 5
        head = (
            b"POST /process_frame HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + b"v" * 24
            + b"\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
        )
        data, took = raw_request(s.port, head, b"\xff\xd8" * 5)
        assert data.startswith(b"HTTP/1.1 408") and took < 6, (data[:80], took)
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            t0 = time.monotonic()
            sock.sendall(b"GET /status HTTP/1.1\r\n")
            closed = False
            for _ in range(40):  # one header byte every 0.25 s: never a whole request
                try:
                    sock.sendall(b"X")
                    sock.settimeout(0.25)
                    if sock.recv(1024) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
            assert closed and time.monotonic() - t0 < 6
    finally:
        s.stop()


# --- 4: refused operator actions are audited with the caller --------------------------------------
def test_refused_actions_are_audited_with_the_caller(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        assert http.post("/style", json={"mode": "edges"}, headers=VIEW).status_code == 403
        assert http.post("/devices/fan0/command", json={"command": "x"}).status_code == 401
        assert http.post("/style", json={"mode": "laser"}, headers=OP).status_code == 422
        assert http.post("/style", json={"mode": "edges"}, headers=OP).status_code == 200
    refused = [a for a in served.audit if not a["accepted"]]
    assert [(a["who"], a["action"], a["status"]) for a in refused] == [
        ("victor", "style:set", 403),
        ("-", "devices:command", 401),
        ("olga", "style:set", 422),
    ]
    assert "lacks style:set" in refused[0]["message"] and refused[0]["client"].startswith("127.0.0.1:")
    assert "laser" in refused[2]["message"]
    assert served.audit[-1]["who"] == "olga" and served.audit[-1]["accepted"]
    assert served.requests[:2] == [
        ("victor", "POST", "/style", 403),
        ("-", "POST", "/devices/fan0/command", 401),
    ]


# --- 5: idle WebSockets cost no thread; caps with reasons -----------------------------------------
def test_idle_websockets_hold_no_thread_and_are_capped() -> None:
    s = Served(max_streams=40, max_streams_per_caller=30)
    s.hub.set_frame({"lines": ["ab"], "columns": 2, "rows": 1, "render_time_ms": 1.0})
    url = f"ws://127.0.0.1:{s.port}/ws?token={'v' * 24}"

    async def go() -> tuple[int, int, float, tuple[int, str]]:
        before = threading.active_count()
        socks = [await websockets.connect(url) for _ in range(30)]  # idle: they never read
        await asyncio.sleep(1.5)
        during = threading.active_count()
        t0 = time.perf_counter()
        async with httpx.AsyncClient(base_url=s.url, timeout=10) as http:
            for _ in range(5):
                assert (await http.get("/status", headers=VIEW)).status_code == 200
        status_ms = (time.perf_counter() - t0) / 5 * 1e3
        extra = await websockets.connect(url)
        try:
            await asyncio.wait_for(extra.recv(), 5)
            refused = (0, "accepted")
        except websockets.ConnectionClosed as exc:
            refused = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
        for ws in socks:
            await ws.close()
        return before, during, status_ms, refused

    try:
        before, during, status_ms, refused = asyncio.run(go())
    finally:
        s.stop()
    assert during - before < 5, (before, during)  # the old stream held a worker thread each
    assert status_ms < 2000
    assert refused[0] == 4429 and "victor has 30 streams open" in refused[1]


def profile_loop(loop: asyncio.AbstractEventLoop, profile: Any) -> None:
    """sys.setprofile(profile) on the loop's own thread."""
    done = threading.Event()

    def install() -> None:
        sys.setprofile(profile)
        done.set()

    loop.call_soon_threadsafe(install)
    assert done.wait(scaled(5))


@pytest.mark.parametrize("render_processes", [True, False], ids=["processes", "threads"])
def test_a_large_answer_is_encoded_off_the_event_loop(render_processes: bool) -> None:
    """A 200x200 colour answer (40 000 cells, 1 MB of JSON) was built on the event loop through
    `asdict` and a Python walk for NaN: 2.6 s at load 6 in which no other client was served.
    Counted, not timed: the Python calls the loop's thread makes while serving it stay far below
    one per cell (it made over a million), with workers in processes and in threads alike."""
    served = Served(render_processes=render_processes)
    try:
        _serve_a_large_answer(served)
    finally:
        served.stop()


def _serve_a_large_answer(served: Served) -> None:
    import cv2
    import numpy as np

    small = np.random.default_rng(3).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    image = bytes(cv2.imencode(".jpg", cv2.resize(small, (800, 600)))[1])
    path = "/process_frame?mode=cyberpunk&columns=200&rows=200&colors=true"
    headers = {**VIEW, "content-type": "image/jpeg"}
    loop = served.server.servers[0].get_loop()
    calls = [0]

    def count(frame: Any, event: str, arg: Any) -> None:
        calls[0] += event == "call"

    with httpx.Client(base_url=served.url, timeout=60) as http:
        assert http.post(path, content=image, headers=headers).status_code == 200  # warm
        profile_loop(loop, count)
        try:
            r = http.post(path, content=image, headers=headers)
        finally:
            profile_loop(loop, None)
    body = r.json()
    assert r.status_code == 200 and len(body["foreground_rgb"]) == 40_000 and len(body["lines"]) == 200
    assert calls[0] < 40_000, calls[0]


def test_authorization_takes_no_worker_thread(served: Served) -> None:
    """Each trip to a worker thread waits for that thread to be scheduled and then for the loop:
    the permission check (a dictionary lookup) made one per request. With the only worker thread
    held by an operator's style change, a request refused by its grid is still answered."""
    import anyio.to_thread

    async def one_thread() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1

    loop = served.server.servers[0].get_loop()
    asyncio.run_coroutine_threadsafe(one_thread(), loop).result(10)
    held, release = threading.Event(), threading.Event()

    def slow_setter(style: dict[str, Any], who: str) -> None:
        held.set()
        release.wait(30)

    served.hub.style_setter = slow_setter
    with httpx.Client(base_url=served.url, timeout=60) as http, ThreadPoolExecutor(1) as pool:
        style = pool.submit(http.post, "/style", json={"mode": "ramp"}, headers=OP)
        assert held.wait(scaled(5)), "the style change did not reach its worker thread"
        try:
            r = http.post("/process_frame?columns=5000", content=b"x", headers=VIEW, timeout=scaled(3))
        finally:
            release.set()
        assert style.result().status_code == 200
    assert r.status_code == 422 and "grid 5000x45" in r.json()["detail"]


def test_uploads_render_in_worker_processes_that_are_replaced_when_they_die(served: Served) -> None:
    """Decoding and rendering run in worker processes, not under the GIL of the process that
    serves HTTP (in `krystal run`, every node's). A worker that dies mid-render (a decoder crash,
    the OOM killer) costs a 503; the next upload gets new workers."""
    import os
    import signal

    import cv2
    import numpy as np

    image = bytes(cv2.imencode(".jpg", np.full((60, 80, 3), 128, np.uint8))[1])
    headers = {**VIEW, "content-type": "image/jpeg"}
    workers = served.app.state.render_workers
    statuses = []
    with httpx.Client(base_url=served.url, timeout=60) as http:
        statuses.append(
            http.post("/process_frame?columns=20&rows=5", content=image, headers=headers).status_code
        )
        first = workers.pids()
        assert first and os.getpid() not in first
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        for _ in range(2):
            r = http.post("/process_frame?columns=20&rows=5", content=image, headers=headers)
            statuses.append(r.status_code)
    assert statuses == [200, 503, 200], statuses
    assert workers.pids() and not set(workers.pids()) & set(first)


# --- 9, 10: no 500s, strict JSON ------------------------------------------------------------------
def test_device_ids_follow_ros_names_and_nan_is_refused(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for bad in ("sim-0", "ünï", "٣fan", "x" * 300, "a__b", "9fan"):
            r = http.post(f"/devices/{bad}/command", json={"command": "set"}, headers=OP)
            assert r.status_code == 422, (bad, r.status_code, r.text[:200])
        r = http.post(
            "/devices/fan0/command",
            content=b'{"command": "set", "timeout_s": NaN}',
            headers={**OP, "content-type": "application/json"},
        )
        assert r.status_code == 422
        json.loads(r.text, parse_constant=_no_constants)  # strict JSON, NaN reported as null
        r = http.post("/devices/sim_0/command", json={"command": "set"}, headers=OP)
        assert r.status_code == 200 and served.commands[-1].device_id == "sim_0"


def _no_constants(name: str) -> Any:
    raise AssertionError(f"not strict JSON: {name}")


def test_every_json_the_gateway_emits_is_strict(served: Served) -> None:
    served.hub.set_style({"mode": "ramp", "predicted_frame_time_ms": math.nan, "confidence": math.inf})
    served.hub.set_render_stats({"frames_dropped": 3, "input_fps": math.nan})
    served.hub.set_frame({"lines": ["ab"], "columns": 2, "rows": 1, "render_time_ms": math.nan})
    with httpx.Client(base_url=served.url, timeout=10) as http:
        body = json.loads(http.get("/status", headers=VIEW).text, parse_constant=_no_constants)
        assert body["style"]["predicted_frame_time_ms"] is None and body["render_stats"]["input_fps"] is None
    _, _, got = ws_close(f"ws://127.0.0.1:{served.port}/ws?token={'v' * 24}")
    kinds = {json.loads(m, parse_constant=_no_constants)["type"] for m in got}
    assert kinds == {"frame", "status"}


# --- 13: Prometheus conventions -------------------------------------------------------------------
def test_metrics_follow_prometheus_conventions(served: Served) -> None:
    served.hub.set_render_stats({"frames_dropped": 3, "frames_invalid": 1})
    served.hub.set_frame({"lines": [], "render_time_ms": 12.0})
    served.hub.set_temperatures({"cpu": 51.0}, 51.0)
    served.hub.set_tempo(120.0)
    served.hub.health.update("video_source: executor", 0, "ok", "", {"deadline_misses": "4"})
    with httpx.Client(base_url=served.url, timeout=10) as http:
        http.get("/status", headers=VIEW)
        text = http.get("/metrics", headers=VIEW).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {s.name: s for f in families.values() for s in f.samples}
    for name, family in families.items():
        assert not name.endswith(("_ms", "_c", "_bpm")), name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
    assert families["krystal_frames_dropped"].type == "counter"
    assert samples["krystal_frames_dropped_total"].value == 3
    assert samples["krystal_deadline_misses_total"].labels == {"node": "video_source"}
    assert families["krystal_render_time_seconds"].type == "histogram"
    assert samples["krystal_render_time_seconds_sum"].value == pytest.approx(0.012)
    assert samples["krystal_temperature_celsius"].value == 51.0
    assert samples["krystal_audio_tempo_hertz"].value == 2.0
    assert families["krystal_gateway_request_duration_seconds"].type == "histogram"
    assert "process_cpu_seconds_total" in samples and "process_resident_memory_bytes" in samples


def test_every_route_but_the_page_needs_a_permission() -> None:
    """A route added later without an entry in PERMISSIONS would be open: the table must cover all."""
    from fastapi.routing import APIRoute, APIWebSocketRoute

    from krystal.gateway.app import PERMISSIONS

    app = create_app(Hub(), Access({}, RateLimiter(0, 1)))
    paths = set()
    for router in app.router.routes:
        for route in getattr(getattr(router, "original_router", None), "routes", [router]):
            if isinstance(route, APIWebSocketRoute):
                paths.add(f"WS {route.path}")
            elif isinstance(route, APIRoute):
                paths.add(route.path)
    assert paths - set(PERMISSIONS) == {"/", "/static/app.js"}, paths
