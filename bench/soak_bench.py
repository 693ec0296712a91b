"""Soak: the whole graph at 1080p30 for a stated time, each node's resources sampled every 10 s.

    python -m bench.soak_bench [--minutes 30] [--split] [--quick]

Every node of graph.py runs as its own executable (as `ros2 launch` starts them), on one test host,
or with `--split` on three (krystal.hosts: video_source and audio_source on a; ascii_renderer,
reasoning, temporal_solver, thermal_monitor, gpu_telemetry on b; gateway and device_agents on c,
the image crossing as camera/image_raw/compressed). Each 10 s: RSS, open fds, threads and CPU of
every node (from /proc), and the capture-to-AsciiFrame latency p99 of the last 10 s (a probe on the
renderer's host). At the end, per node, the least-squares slopes after warm-up (the first quarter,
at least 30 s): RSS MB per 10 min, fds and threads per 10 min; and the e2e p99 drift (last third
against the first third after warm-up). Goals (issue 28): RSS growth < 1 MB / 10 min, no fd or
thread growth, p99 drift < 10 %. The "anchor" of each line is that goal; ratio > 1 means within it.
Without root (no namespaces) the graph runs in this host's network namespace instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.common import emit
from krystal.domain import isolated_domain_id
from krystal.graph import GRAPH
from krystal.hosts import Hosts, unavailable

SAMPLE_S = 10.0
FULL_HD = {"width": 1920, "height": 1080, "fps": 30.0, "compressed": True}
SPLIT = {
    "a": ("video_source", "audio_source"),
    "b": ("ascii_renderer", "reasoning", "temporal_solver", "thermal_monitor", "gpu_telemetry"),
    "c": ("gateway", "device_agents"),
}
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def node_params(name: str, split: bool) -> dict[str, object]:
    if name == "video_source":
        return dict(FULL_HD)
    if name == "ascii_renderer":
        return {"image_transport": "compressed" if split else "raw"}
    if name == "gateway":
        return {"port": 0}
    return {}


@dataclass
class Track:
    """One node's samples: (t_s, rss_mb, fds, threads, cpu_s)."""

    name: str
    pid: int
    samples: list[tuple[float, float, int, int, float]] = field(default_factory=list)

    def sample(self, t_s: float) -> bool:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            rss_mb = int(stat[21]) * PAGE / 2**20
            threads = int(stat[17])
            cpu_s = (int(stat[11]) + int(stat[12])) / TICK
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        except (OSError, IndexError, ValueError):
            return False
        self.samples.append((t_s, rss_mb, fds, threads, cpu_s))
        return True


def slope_per_10min(t: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    if len(t) < 3 or float(np.ptp(t)) == 0:
        return 0.0
    return float(np.polyfit(t, y, 1)[0]) * 600.0


@contextlib.contextmanager
def graph(split: bool, log_dir: Path) -> Iterator[tuple[dict[str, subprocess.Popen[str]], Any]]:
    """The graph's processes (name -> Popen) and a function that starts the probe on the renderer's host."""
    from tests.multihost import node_argv, probe_argv

    env_extra = {"XDG_STATE_HOME": str(log_dir / "state"), "PYTHONUNBUFFERED": "1"}
    why = unavailable()
    procs: dict[str, subprocess.Popen[str]] = {}
    if why is None:
        layout = SPLIT if split else {"a": tuple(e.name for e in GRAPH)}
        with Hosts(tuple(layout)) as hosts:
            env = hosts.env(env_extra)
            for host, names in layout.items():
                for name in names:
                    with open(log_dir / f"{name}.log", "w") as log:
                        procs[name] = hosts.start(host, node_argv(name, **node_params(name, split)), env=env,
                                                  stdout=log, stderr=log)  # fmt: skip
            renderer_host = "b" if split else "a"

            def probe(seconds: float, *extra: str, host: str = renderer_host) -> subprocess.Popen[str]:
                args = probe_argv(seconds, "--interval", str(SAMPLE_S), *extra)
                return hosts.start(host, args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

            yield procs, probe
        return
    if split:
        raise SystemExit(f"--split needs test hosts: {why}")
    print(f"soak: no namespaces ({why}); the graph runs on this host's network", file=sys.stderr)
    env = dict(os.environ, **env_extra)
    env.setdefault("ROS_DOMAIN_ID", isolated_domain_id())
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    try:
        for e in GRAPH:
            with open(log_dir / f"{e.name}.log", "w") as log:
                argv = node_argv(e.name, **node_params(e.name, False))
                procs[e.name] = subprocess.Popen(
                    argv, env=env, stdout=log, stderr=log, start_new_session=True, text=True
                )

        def probe(seconds: float, *extra: str, host: str = "") -> subprocess.Popen[str]:
            args = probe_argv(seconds, "--interval", str(SAMPLE_S), *extra)
            return subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )

        yield procs, probe
    finally:
        for p in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 2)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)


def soak(minutes: float, split: bool) -> tuple[list[Track], list[float], dict[str, int | None]]:
    seconds = minutes * 60.0
    with tempfile.TemporaryDirectory() as tmp, graph(split, Path(tmp)) as (procs, start_probe):
        (Path(tmp) / "state").mkdir(exist_ok=True)
        tracks = [Track(name, p.pid) for name, p in procs.items()]
        probe = start_probe(seconds + 5.0)
        t0 = time.monotonic()
        next_s = 0.0
        while True:
            now = time.monotonic() - t0
            if now >= next_s:
                for track in tracks:
                    track.sample(now)
                next_s += SAMPLE_S
            if now > seconds:
                break
            time.sleep(min(1.0, max(0.05, next_s - now)))
        out, _ = probe.communicate(timeout=60)
        p99 = [
            line["lat_p99"] for line in map(json.loads, out.splitlines()) if line.get("lat_p99") is not None
        ]
        exits = {name: p.poll() for name, p in procs.items()}
        if any(code is not None for code in exits.values()):
            for name in (n for n, code in exits.items() if code is not None):
                print(f"--- {name} exited {exits[name]}:\n{(Path(tmp) / f'{name}.log').read_text()[-2000:]}",
                      file=sys.stderr)  # fmt: skip
    return tracks, p99, exits


def report(
    tracks: list[Track], p99: list[float], exits: dict[str, int | None], minutes: float, split: bool
) -> None:
    load = round(os.getloadavg()[0], 2)
    common: dict[str, Any] = {
        "minutes": minutes,
        "split": split,
        "load_1min": load,
        "anchor_name": "goal (issue 28)",
    }
    for track in tracks:
        a = np.array(track.samples, dtype=np.float64)
        if len(a) < 4:
            emit(
                "soak",
                f"{track.name}_samples",
                float(len(a)),
                4.0,
                "samples",
                lower_is_better=False,
                **common,
            )
            continue
        warm = max(30.0, a[-1, 0] / 4)
        k = a[a[:, 0] >= warm]
        t = k[:, 0]
        cpu_pct = 100.0 * (a[-1, 4] - a[0, 4]) / max(a[-1, 0] - a[0, 0], 1e-9)
        extra: dict[str, Any] = {
            **common,
            "exit": exits.get(track.name),
            "rss_mb_last": round(float(a[-1, 1]), 1),
            "fds_last": int(a[-1, 2]),
            "threads_last": int(a[-1, 3]),
            "cpu_pct": round(cpu_pct, 1),
        }
        rss = slope_per_10min(t, k[:, 1])
        emit(
            "soak", f"{track.name}_rss_mb_per_10min", abs(rss), 1.0, "MB/10min", slope=round(rss, 3), **extra
        )
        for col, what in ((2, "fds"), (3, "threads")):
            growth = slope_per_10min(t, k[:, col])
            # "no growth": the goal is 0; as a ratio, 0.5 per 10 min (one more fd every 20 min) is the bar
            emit("soak", f"{track.name}_{what}_per_10min", abs(round(growth, 4)), 0.5, f"{what}/10min",
                 slope=round(growth, 3), **extra)  # fmt: skip
    if len(p99) >= 3:
        skip = max(1, len(p99) // 4)
        kept = p99[skip:]
        third = max(1, len(kept) // 3)
        first, last = float(np.median(kept[:third])), float(np.median(kept[-third:]))
        drift = abs(last - first) / first * 100.0 if first else 0.0
        emit("soak", "e2e_p99_drift_pct", drift, 10.0, "%", first_p99_ms=round(first, 2),
             last_p99_ms=round(last, 2), **common)  # fmt: skip
    else:
        emit("soak", "e2e_p99_windows", float(len(p99)), 3.0, "windows", lower_is_better=False, **common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--split", action="store_true", help="three test hosts (needs root)")
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    args = parser.parse_args()
    minutes = 2.0 if args.quick else args.minutes
    tracks, p99, exits = soak(minutes, args.split)
    report(tracks, p99, exits, minutes, args.split)


if __name__ == "__main__":
    main()
