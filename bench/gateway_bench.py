"""POST /process_frame with a 1080p JPEG at 160x45 over loopback, beside the chafa CLI on the same image.

The gateway app runs under uvicorn in a server process of its own, configured as the node serves it
(`gateway.server.make_server`), with a hub fed 10 frames/s; the load generator, in this process,
sends requests at a fixed rate (latency under load) and back to back from two clients
(throughput). Then the abuse phase: the same paced client beside 60 idle WebSockets that never
read, slow clients (headers and bodies trickled a byte at a time), one huge body and an oversized
grid: its p99 is compared with its calm p99 (goal: at most 2x). The anchor is what a service
without Krystal would do per frame: run the chafa command on the image file, start-up and decode
included, measured in the same run at the same concurrency. The 1-minute load average is reported
beside each number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np

from bench.chafa_anchor import cli_available, cli_render
from bench.common import emit
from bench.scenes import photo
from krystal.gateway.access import Access, RateLimiter
from krystal.gateway.app import create_app
from krystal.gateway.hub import Hub
from krystal.gateway.server import make_server

COLUMNS, ROWS = 160, 45


def serve_forever() -> None:
    """The server process: prints its port, serves until killed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    hub = Hub()
    app = create_app(hub, Access({}, RateLimiter(0, 1)))

    def frames() -> None:  # what ascii_renderer would publish: 160x45 at 10 Hz
        n = 0
        while True:
            n += 1
            lines = [("#." * 80)[n % 2 :][:160]] * 45
            hub.set_frame({"lines": lines, "columns": 160, "rows": 45, "render_time_ms": 3.0})
            time.sleep(0.1)

    threading.Thread(target=frames, daemon=True).start()
    make_server(app).run(sockets=[sock])


def start_server() -> tuple[str, subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.gateway_bench", "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = f"http://127.0.0.1:{int(proc.stdout.readline())}"
    for _ in range(200):
        try:
            httpx.get(url + "/openapi.json", timeout=1.0)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return url, proc


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else float("nan")


def paced(url: str, body: bytes, rate_hz: float, count: int) -> list[float]:
    """Latency of `count` requests sent at `rate_hz` (open loop: a slow answer does not slow the sender)."""
    latencies: list[float] = []
    lock = threading.Lock()
    path = f"{url}/process_frame?columns={COLUMNS}&rows={ROWS}&mode=ramp"
    clients = [httpx.Client(timeout=30.0) for _ in range(4)]

    def one(i: int) -> None:
        t0 = time.perf_counter()
        r = clients[i % len(clients)].post(path, content=body, headers={"content-type": "image/jpeg"})
        r.raise_for_status()
        with lock:
            latencies.append((time.perf_counter() - t0) * 1e3)

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        start = time.perf_counter()
        futures = []
        for i in range(count):
            delay = start + i / rate_hz - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, i))
        for f in futures:
            f.result()
    for c in clients:
        c.close()
    return latencies


def throughput(url: str, body: bytes, clients: int, seconds: float) -> float:
    path = f"{url}/process_frame?columns={COLUMNS}&rows={ROWS}&mode=ramp"
    done = [0] * clients
    end = time.perf_counter() + seconds

    def loop(k: int) -> None:
        with httpx.Client(timeout=30.0) as http:
            while time.perf_counter() < end:
                http.post(path, content=body, headers={"content-type": "image/jpeg"}).raise_for_status()
                done[k] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(loop, range(clients)))
    return sum(done) / (time.perf_counter() - t0)


class Abuse:
    """Hostile clients against `url` until stopped: idle WebSockets, slow headers and bodies, huge
    bodies, oversized grids. Counts how each was answered."""

    def __init__(self, url: str, idle_sockets: int = 60, slow_clients: int = 10) -> None:
        self.host, self.port = url.removeprefix("http://").split(":")
        self.idle_sockets = idle_sockets
        self.slow_clients = slow_clients
        self.stop = threading.Event()
        self.outcomes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def note(self, what: str) -> None:
        with self._lock:
            self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def start(self) -> None:
        targets = [self._idle_ws, self._huge] + [self._slow_header, self._slow_body] * self.slow_clients
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in self._threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _idle_ws(self) -> None:
        import websockets

        async def go() -> None:
            socks = []
            for _ in range(self.idle_sockets):
                try:
                    socks.append(await websockets.connect(f"ws://{self.host}:{self.port}/ws", max_queue=1))
                    self.note("idle websocket handshakes")
                except (OSError, websockets.WebSocketException):
                    self.note("idle websocket refused")
            while not self.stop.is_set():
                await asyncio.sleep(0.2)
            for ws in socks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)

        asyncio.run(go())

    def _trickle(self, head: bytes, what: str) -> None:
        """Send `head`, then a byte every 0.5 s, until the server answers or cuts the connection."""
        while not self.stop.is_set():
            try:
                with socket.create_connection((self.host, int(self.port)), timeout=0.5) as s:
                    s.sendall(head)
                    while not self.stop.is_set():
                        try:
                            reply = s.recv(4096)
                        except TimeoutError:
                            s.sendall(b"a")
                            continue
                        self.note(f"{what}: {reply[:12].decode(errors='replace') or 'closed'}")
                        break
            except OSError:
                self.note(f"{what}: reset")
                self.stop.wait(0.2)

    def _slow_header(self) -> None:
        self._trickle(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", "slow header")

    def _slow_body(self) -> None:
        head = (
            b"POST /process_frame HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        self._trickle(head, "slow body")

    def _huge(self) -> None:
        blob = b"\xff\xd8" + os.urandom(15 << 20)
        declared = b"POST /style HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000000\r\n\r\n{"
        with httpx.Client(base_url=f"http://{self.host}:{self.port}", timeout=30) as http:
            while not self.stop.is_set():
                try:
                    self.note(f"16 MB body: {http.post('/process_frame', content=blob).status_code}")
                    grid = "/process_frame?columns=1000&rows=500&mode=cyberpunk"
                    self.note(f"1000x500 grid: {http.post(grid, content=b'x').status_code}")
                    with socket.create_connection((self.host, int(self.port)), timeout=10) as s:
                        s.sendall(declared)
                        self.note(f"200 MB declared: {s.recv(12).decode(errors='replace')}")
                except (httpx.HTTPError, OSError) as exc:
                    self.note(f"huge: {type(exc).__name__}")
                self.stop.wait(5.0)  # one huge request now and then, not a flood (the rate limit's job)


def abuse_main(url: str, seconds: float, idle: int, slow: int) -> None:
    """The abuse process: hostile clients for `seconds`, then their outcomes as one JSON line."""
    abuse = Abuse(url, idle, slow)
    abuse.start()
    time.sleep(seconds)
    abuse.join()
    print(json.dumps(abuse.outcomes), flush=True)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--abuse", nargs=4, help=argparse.SUPPRESS)  # URL SECONDS IDLE SLOW
    args = parser.parse_args()
    if args.serve:
        serve_forever()
        return
    if args.abuse:
        url, seconds, idle, slow = args.abuse
        abuse_main(url, float(seconds), int(idle), int(slow))
        return
    image = photo()
    body = bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
    url, server = start_server()
    count, seconds, chafa_calls = (30, 2.0, 5) if args.quick else (200, 10.0, 30)
    paced(url, body, 10.0, 5)  # warm: engines, decoder
    calm_load = load1()
    lat = paced(url, body, 10.0, count)
    rps = throughput(url, body, 2, seconds)
    # the abusers run in a process of their own, so they do not slow this client's Python
    idle, slow = (20, 3) if args.quick else (60, 10)
    abusers = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.gateway_bench",
            "--abuse",
            url,
            str(count / 10.0 + 3.0),
            str(idle),
            str(slow),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    abuse_load = load1()
    abused = paced(url, body, 10.0, count)
    outcomes = json.loads(abusers.communicate(timeout=120)[0] or "{}")
    server.terminate()
    server.wait(timeout=10)
    chafa_ms = chafa_rps = float("nan")
    anchor_name = "chafa CLI not installed"
    if cli_available():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "frame.jpg"
            path.write_bytes(body)
            cli_render(str(path), COLUMNS, ROWS)
            times = []
            for _ in range(chafa_calls):
                t0 = time.perf_counter()
                cli_render(str(path), COLUMNS, ROWS)
                times.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(lambda _: cli_render(str(path), COLUMNS, ROWS), range(2 * chafa_calls)))
            chafa_rps = 2 * chafa_calls / (time.perf_counter() - t0)
        chafa_ms = float(np.median(times))
        anchor_name = "chafa CLI, one call per image (1 thread)"
    emit(
        "gateway",
        "process_frame 1080p JPEG 160x45 p50 at 10 req/s",
        percentile(lat, 50),
        chafa_ms,
        "ms",
        anchor_name=anchor_name,
        requests=len(lat),
    )
    emit(
        "gateway",
        "process_frame 1080p JPEG 160x45 p99 at 10 req/s",
        percentile(lat, 99),
        chafa_ms,
        "ms",
        anchor_name=anchor_name,
        goal_ms=33.0,
        load1=calm_load,
    )
    emit(
        "gateway",
        "process_frame p99 at 10 req/s under abuse (idle sockets, slow clients, huge bodies)",
        percentile(abused, 99),
        chafa_ms,
        "ms",
        anchor_name=anchor_name,
        calm_p99_ms=round(percentile(lat, 99), 2),
        abuse_over_calm=round(percentile(abused, 99) / percentile(lat, 99), 2),
        goal_abuse_over_calm=2.0,
        abuse_outcomes=outcomes,
        load1=abuse_load,
    )
    emit(
        "gateway",
        "process_frame throughput, 2 clients back to back",
        rps,
        chafa_rps,
        "requests/s",
        lower_is_better=False,
        anchor_name=anchor_name + ", 2 at a time",
        goal_ratio=3.0,
    )


if __name__ == "__main__":
    main()
