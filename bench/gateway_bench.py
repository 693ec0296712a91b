"""POST /process_frame with a 1080p JPEG at 160x45 over loopback, beside the chafa CLI on the same image.

The gateway app runs under uvicorn in a server process of its own (as the node does); the load
generator, in this process, sends requests at a fixed rate (latency under load) and back to back
from two clients (throughput). The anchor is what a service without Krystal would do per frame:
run the chafa command on the image file, start-up and decode included, measured in the same run
at the same concurrency.
"""

from __future__ import annotations

import argparse
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

COLUMNS, ROWS = 160, 45


def serve_forever() -> None:
    """The server process: prints its port, serves until killed."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    app = create_app(Hub(), Access({}, RateLimiter(0, 1)))
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")).run(
        sockets=[sock]
    )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever()
        return
    image = photo()
    body = bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
    url, server = start_server()
    count, seconds, chafa_calls = (30, 2.0, 5) if args.quick else (200, 10.0, 30)
    paced(url, body, 10.0, 5)  # warm: engines, decoder
    lat = paced(url, body, 10.0, count)
    rps = throughput(url, body, 2, seconds)
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
