"""POST /process_frame with a 1080p JPEG at 160x45 over loopback, against the gateway node as a user
runs it, beside the chafa CLI on the same image in the same run.

`--graph full` (the default): `krystal run` with the shipped config/krystal.yaml, every node of the
graph composed in one process as `make run` starts it (test pattern 640x480 at 30 fps with the
render feed, ascii_renderer, reasoning, audio_source, temporal_solver, gpu_telemetry,
thermal_monitor, device_agents and the gateway serving HTTP); `--graph processes`: the same nodes,
one process each, as `ros2 launch` starts them; `--graph gateway`: the gateway node alone
(`--quick`'s default). Tokens come from a token file, as a deployment would configure them, so
every request passes the access checks: the access matrix is checked first (401/403/200).

Phases, each one JSON line with the 1-minute load average: the paced client (10 req/s, open loop:
a slow answer does not slow the sender) gives p50/p99 calm, and again beside an abuse process (idle
WebSockets that never read, slow clients trickling headers and bodies a byte at a time, a 16 MB
body and a 200 MB declaration, an oversized grid), calm and abused blocks taking turns (`--rounds`)
so that both see the same machine; the abused p99 is compared with the calm p99 (goal: at most
2x). Then two clients back to back give throughput, against the chafa CLI run two at a time. The
anchor is what a service without Krystal would do per frame: run the chafa command on the image
file, start-up and decode included, measured while the graph runs.

    python -m bench.gateway_bench [--graph full|processes|gateway] [--seconds 20] [--rounds 2] [--quick]
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import emit, graph_env, processes

COLUMNS, ROWS = 160, 45
# name -> (role, token): one token per client, so each has its own rate bucket (20 req/s)
TOKENS = {
    "paced": ("viewer", "paced-client-token-0001"),
    "client0": ("viewer", "throughput-client-token-0"),
    "client1": ("viewer", "throughput-client-token-1"),
    "abuser": ("viewer", "abusive-client-token-0001"),
    "ops": ("operator", "operator-client-token-001"),
}


def auth(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[name][1]}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _params(tmp: Path, port: int, render_threads: bool = False) -> Path:
    """The shipped parameters with the gateway on `port` and the token file; nothing else changed
    (`render_threads`: uploads rendered by threads in the gateway's process, for comparison)."""
    import yaml

    from krystal.paths import default_params_file

    tokens = tmp / "tokens"
    tokens.write_text("".join(f"{role}:{name}:{token}\n" for name, (role, token) in TOKENS.items()))
    params = yaml.safe_load(default_params_file().read_text())
    params["/**/gateway"]["ros__parameters"].update(port=port, token_file=str(tokens))
    if render_threads:
        params["/**/gateway"]["ros__parameters"]["render_processes"] = False
    path = tmp / "krystal.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _commands(graph: str, params: Path) -> list[list[str]]:
    run = [sys.executable, "-m", "krystal.cli", "run", "--params-file", str(params), "--log-level", "warn"]
    if graph == "full":
        return [run]
    if graph == "gateway":
        return [[*run, "--nodes", "gateway"]]
    from ament_index_python.packages import get_package_prefix

    from krystal.graph import GRAPH

    lib = Path(get_package_prefix("krystal")) / "lib" / "krystal"
    return [[str(lib / e.executable), "--ros-args", "--params-file", str(params)] for e in GRAPH]


def _status(url: str) -> dict[str, Any] | None:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        r = httpx.get(url + "/status", headers=auth("paced"), timeout=2.0)
        if r.status_code == 200:
            return r.json()  # type: ignore[no-any-return]
    return None


def graph_figures(status: dict[str, Any] | None) -> dict[str, Any]:
    """What /status says was running: nodes heard, and the rate of the ASCII stream."""
    if not status:
        return {"graph_nodes": 0, "ascii_hz": 0.0}
    rates = status.get("topic_rates_hz") or {}
    return {
        "graph_nodes": len(status.get("nodes") or []),
        "ascii_hz": round(float(rates.get("krystal/ascii") or 0.0), 1),
    }


@contextlib.contextmanager
def gateway(graph: str, tmp: Path, render_threads: bool = False, wait_s: float = 90.0) -> Iterator[str]:
    """Start the graph; yield the gateway's URL once it answers (and, with the graph, once frames
    flow through it); every process is stopped on the way out, failures included."""
    port = _free_port()
    params = _params(tmp, port, render_threads)
    url = f"http://127.0.0.1:{port}"
    with (
        open(tmp / "graph.log", "w") as log,
        processes(_commands(graph, params), graph_env(tmp), log) as procs,
    ):
        deadline = time.monotonic() + wait_s
        while True:
            status = _status(url)
            if status is not None and (graph == "gateway" or graph_figures(status)["ascii_hz"] > 0):
                break
            dead = [p.args for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                log.flush()
                tail = (tmp / "graph.log").read_text()[-2000:]
                raise RuntimeError(f"the graph did not serve {url} (exited: {dead}): {tail}")
            time.sleep(0.5)
        yield url


def access_matrix(url: str) -> dict[str, int]:
    """The documented answers: no token 401, viewer 200 on reads and 403 on operator routes,
    operator through to the device agent (200: the simulated device's reset; 409 without one)."""
    command = {"command": "reset", "arguments": {}}
    with httpx.Client(base_url=url, timeout=10.0) as http:
        return {
            "status_no_token": http.get("/status").status_code,
            "status_viewer": http.get("/status", headers=auth("paced")).status_code,
            "metrics_viewer": http.get("/metrics", headers=auth("paced")).status_code,
            "command_viewer": http.post(
                "/devices/sim0/command", json=command, headers=auth("paced")
            ).status_code,
            "command_operator": http.post(
                "/devices/sim0/command", json=command, headers=auth("ops")
            ).status_code,
        }


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else float("nan")


def paced(url: str, body: bytes, rate_hz: float, count: int) -> list[float]:
    """Latency of `count` requests sent at `rate_hz` (open loop: a slow answer does not slow the sender)."""
    latencies: list[float] = []
    lock = threading.Lock()
    path = f"{url}/process_frame?columns={COLUMNS}&rows={ROWS}&mode=ramp"
    headers = {"content-type": "image/jpeg", **auth("paced")}
    clients = [httpx.Client(timeout=30.0) for _ in range(4)]

    def one(i: int) -> None:
        t0 = time.perf_counter()
        r = clients[i % len(clients)].post(path, content=body, headers=headers)
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


def throughput(url: str, body: bytes, clients: int, seconds: float) -> tuple[float, int]:
    """(requests/s answered 200, answers 429) of `clients` clients back to back, each its own token."""
    path = f"{url}/process_frame?columns={COLUMNS}&rows={ROWS}&mode=ramp"
    done, limited = [0] * clients, [0] * clients
    end = time.perf_counter() + seconds

    def loop(k: int) -> None:
        headers = {"content-type": "image/jpeg", **auth(f"client{k}")}
        with httpx.Client(timeout=30.0) as http:
            while time.perf_counter() < end:
                r = http.post(path, content=body, headers=headers)
                if r.status_code == 429:
                    limited[k] += 1
                    time.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                r.raise_for_status()
                done[k] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(loop, range(clients)))
    return sum(done) / (time.perf_counter() - t0), sum(limited)


class Abuse:
    """Hostile clients against `url` until stopped: idle WebSockets, slow headers and bodies, huge
    bodies, oversized grids, all with a viewer's token (an authorized abuser gets furthest). Counts
    how each was answered."""

    def __init__(self, url: str, idle_sockets: int = 60, slow_clients: int = 10) -> None:
        self.host, self.port = url.removeprefix("http://").split(":")
        self.idle_sockets = idle_sockets
        self.slow_clients = slow_clients
        self.token = TOKENS["abuser"][1]
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

    def join(self, timeout_s: float = 3.0) -> None:
        """Stop; a thread still inside a huge upload is left to die with the process."""
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def _idle_ws(self) -> None:
        import websockets

        async def go() -> None:
            socks = []
            for _ in range(self.idle_sockets):
                try:
                    ws = await websockets.connect(
                        f"ws://{self.host}:{self.port}/ws?token={self.token}", max_queue=1
                    )
                    socks.append(ws)
                    self.note("idle websocket handshakes")
                except (OSError, websockets.WebSocketException):
                    self.note("idle websocket refused")
            while not self.stop.is_set():
                await asyncio.sleep(0.2)
            for ws in socks:
                code = ws.close_code  # 4429: over the per-caller cap; 4408: did not read
                self.note(f"idle websocket closed {code}" if code else "idle websocket open at the end")
                ws.transport.abort()  # no closing handshake: the server is still stuck sending to it

        asyncio.run(go())

    def _trickle(self, head: bytes, what: str) -> None:
        """Send `head`, then a byte every 0.5 s, until the server answers or cuts the connection."""
        while not self.stop.is_set():
            try:
                with socket.create_connection((self.host, int(self.port)), timeout=0.5) as s:
                    s.sendall(head)
                    while True:
                        if self.stop.is_set():
                            self.note(f"{what}: still trickling at the end")
                            return
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
            b"Authorization: Bearer " + self.token.encode() + b"\r\nContent-Length: 1000000\r\n\r\n"
        )
        self._trickle(head, "slow body")

    def _huge(self) -> None:
        blob = b"\xff\xd8" + os.urandom(15 << 20)
        declared = b"POST /style HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000000\r\n\r\n{"
        headers = {"authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=f"http://{self.host}:{self.port}", timeout=30, headers=headers) as http:
            while not self.stop.is_set():
                try:
                    self.note(f"16 MB body: {http.post('/process_frame', content=blob).status_code}")
                    grid = "/process_frame?columns=1000&rows=500&mode=cyberpunk"
                    self.note(f"1000x500 grid: {http.post(grid, content=b'x').status_code}")
                    with socket.create_connection((self.host, int(self.port)), timeout=10) as s:
                        s.sendall(declared)  # no token: refused before a byte of the body is read
                        self.note(f"200 MB declared: {s.recv(12).decode(errors='replace')}")
                except (httpx.HTTPError, OSError) as exc:
                    self.note(f"huge: {type(exc).__name__}")
                self.stop.wait(5.0)  # one huge request now and then, not a flood (the rate limit's job)


def abuse_main(idle: int, slow: int) -> None:
    """The abuse process: reads the URL to attack from stdin; then on each "go" line starts the
    hostile clients and says "started", on each "stop" line stops them and prints their outcomes
    as one JSON line; ends with its stdin."""
    url = sys.stdin.readline().strip()
    abuse: Abuse | None = None
    for line in sys.stdin:
        if line.strip() == "go":
            abuse = Abuse(url, idle, slow)
            abuse.start()
            print("started", flush=True)
        elif abuse is not None:
            abuse.join()
            print(json.dumps(abuse.outcomes), flush=True)
            abuse = None


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def chafa(body: bytes, calls: int) -> tuple[float, float]:
    """(median ms of one call, calls/s two at a time) of the chafa CLI on the image file."""
    from bench.chafa_anchor import cli_available, cli_render

    if not cli_available():
        return float("nan"), float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame.jpg"
        path.write_bytes(body)
        cli_render(str(path), COLUMNS, ROWS)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            cli_render(str(path), COLUMNS, ROWS)
            times.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda _: cli_render(str(path), COLUMNS, ROWS), range(2 * calls)))
        return float(np.median(times)), 2 * calls / (time.perf_counter() - t0)


def jpeg_1080p() -> bytes:
    import cv2

    from bench.scenes import photo

    return bytes(cv2.imencode(".jpg", photo(), [cv2.IMWRITE_JPEG_QUALITY, 90])[1])


def run(args: argparse.Namespace) -> None:
    count = round(args.seconds * 10)
    # the abusers run in a process of their own, so they do not slow this client's Python; started
    # (imports and all) while the graph starts, they wait for the URL
    idle, slow = (20, 3) if args.quick else (60, 10)
    abuse_cmd = [sys.executable, "-m", "bench.gateway_bench", "--abuse", str(idle), str(slow)]
    making = ThreadPoolExecutor(1).submit(jpeg_1080p)  # while the graph starts
    with (
        subprocess.Popen(abuse_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as abusers,
        tempfile.TemporaryDirectory() as tmp,
        gateway(args.graph, Path(tmp), args.render_threads) as url,
    ):
        assert abusers.stdin is not None and abusers.stdout is not None
        body = making.result()
        matrix = access_matrix(url)
        paced(url, body, 10.0, 3)  # warm: engines, decoder
        abusers.stdin.write(url + "\n")
        lat: list[float] = []
        abused: list[float] = []
        loads: dict[str, list[float]] = {"calm": [], "abuse": []}
        outcomes: dict[str, int] = {}
        # calm and abused blocks take turns, so both see the same machine (other work comes and goes)
        for _ in range(args.rounds):
            loads["calm"].append(load1())
            lat += paced(url, body, 10.0, count // args.rounds)
            abusers.stdin.write("go\n")
            abusers.stdin.flush()
            abusers.stdout.readline()  # started
            time.sleep(1.0)  # the sockets connect, the slow clients are under way
            loads["abuse"].append(load1())
            abused += paced(url, body, 10.0, count // args.rounds)
            abusers.stdin.write("stop\n")
            abusers.stdin.flush()
            for what, n in json.loads(abusers.stdout.readline()).items():
                outcomes[what] = outcomes.get(what, 0) + n
        graph = graph_figures(_status(url))
        rps_load = load1()
        rps, limited = throughput(url, body, 2, args.seconds / 2)
        chafa_load = load1()
        chafa_ms, chafa_rps = chafa(body, 2 if args.quick else 30)  # beside the graph, same run
        abusers.stdin.close()
    calm_load, abuse_load = (round(float(np.mean(v)), 2) for v in loads.values())
    found = not np.isnan(chafa_ms)
    anchor_name = "chafa CLI, one call per image (1 thread)" if found else "chafa CLI not installed"
    case = (
        f"process_frame 1080p JPEG 160x45 ({args.graph}{', render threads' if args.render_threads else ''})"
    )
    calm_p99 = percentile(lat, 99)
    emit("gateway", f"{case} p50 at 10 req/s", percentile(lat, 50), chafa_ms, "ms", anchor_name=anchor_name,
         requests=len(lat), graph=args.graph, access=matrix, load1=calm_load, chafa_load1=chafa_load,
         **graph)  # fmt: skip
    emit("gateway", f"{case} p99 at 10 req/s", calm_p99, chafa_ms, "ms", anchor_name=anchor_name,
         goal_ms=33.0, graph=args.graph, load1=calm_load, **graph)  # fmt: skip
    emit("gateway", f"{case} throughput, 2 clients back to back", rps, chafa_rps, "requests/s",
         lower_is_better=False, anchor_name=anchor_name + ", 2 at a time", goal_ratio=3.0,
         rate_limited=limited, graph=args.graph, load1=rps_load)  # fmt: skip
    emit("gateway", f"{case} p99 at 10 req/s under abuse (idle sockets, slow clients, huge bodies)",
         percentile(abused, 99), chafa_ms, "ms", anchor_name=anchor_name, calm_p99_ms=round(calm_p99, 2),
         abuse_p50_ms=round(percentile(abused, 50), 2),
         abuse_over_calm=round(percentile(abused, 99) / calm_p99, 2), goal_abuse_over_calm=2.0,
         abuse_outcomes=outcomes, rounds=args.rounds, graph=args.graph, load1=abuse_load)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="the gateway alone, 1.5 s phases (< 20 s), for the tests"
    )
    parser.add_argument(
        "--graph", choices=["full", "processes", "gateway"], help="what runs beside the bench"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of each paced phase")
    parser.add_argument("--rounds", type=int, default=2, help="calm and abused blocks, taking turns")
    parser.add_argument(
        "--render-threads",
        action="store_true",
        help="render uploads in threads of the gateway's process (render_processes: false), to compare",
    )
    parser.add_argument("--abuse", nargs=2, help=argparse.SUPPRESS)  # IDLE SLOW
    args = parser.parse_args()
    if args.abuse:
        idle, slow = args.abuse
        abuse_main(int(idle), int(slow))
        return
    if args.quick:
        args.seconds, args.rounds = 1.5, 1
    args.graph = args.graph or ("gateway" if args.quick else "full")
    run(args)


if __name__ == "__main__":
    main()
