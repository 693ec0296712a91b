"""The renderer across hosts against the renderer on the camera's host, at 1080p30.

    python -m bench.hosts_bench [--seconds 20] [--quick]

Anchor: video_source and ascii_renderer on one host (raw sensor_msgs/Image over shared memory, the
graph's default). Ours: video_source on host a, ascii_renderer on host b, the image crossing the link
as `camera/image_raw/compressed` (JPEG; krystal.hosts: namespaces on a bridge, each with its own
/dev/shm and machine id, so Fast DDS sends UDP). Reported: the renderer's output rate (ratio =
ours / anchor, the goal >= 0.95), capture-to-AsciiFrame latency p50/p99 (ratio = anchor / ours),
and the link's bytes per second (from the bridge port's counters). Needs root for namespaces.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit
from krystal.hosts import Hosts, unavailable

FULL_HD = {"width": 1920, "height": 1080, "fps": 30.0}
# every frame that arrives is rendered (no drop for age): the rate measures what the path carries,
# the latency what it costs; with the default 100 ms limit a loaded machine drops most frames
RENDER = {"max_frame_age_ms": 0.0}


def _port_bytes(hosts: Hosts, name: str) -> int:
    """Bytes the bridge port of host `name` has sent and received (from the switch's side)."""
    stats = Path("/proc/net/dev")
    import subprocess

    out = subprocess.run(
        ["ip", "netns", "exec", hosts.switch, "cat", str(stats)], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if line.strip().startswith(hosts.hosts[name].port + ":"):
            fields = line.split(":", 1)[1].split()
            return int(fields[0]) + int(fields[8])
    return 0


def measure(case: str, seconds: float, quality: int) -> dict[str, Any]:
    """case: "single" (one host, raw), "compressed" (two hosts), "raw" (two hosts, raw across)."""
    from tests.multihost import logs, run_probe, start_nodes

    with Hosts(("a", "b")) as hosts, tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        if case == "single":
            start_nodes(hosts, "a", [("video_source", FULL_HD), ("ascii_renderer", RENDER)], log_dir)
        else:
            packed = case == "compressed"
            video = {**FULL_HD, "compressed": packed, "jpeg_quality": quality}
            start_nodes(hosts, "a", [("video_source", video)], log_dir)
            transport = "compressed" if packed else "raw"
            start_nodes(hosts, "b", [("ascii_renderer", {**RENDER, "image_transport": transport})], log_dir)
        before = _port_bytes(hosts, "a")
        t0 = time.monotonic()
        # up to 40 s for the nodes to start on a loaded machine; 3 s of warm-up; then `seconds`
        result = run_probe(hosts, "a" if case == "single" else "b", 40.0 + seconds, "--skip", "3",
                           "--measure", str(seconds))  # fmt: skip
        link_bps = (_port_bytes(hosts, "a") - before) / (time.monotonic() - t0)
        summary = result.summary
        if not summary["frames"]:
            print(logs(log_dir), file=sys.stderr)
        return {**summary, "link_bytes_per_s": link_bps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per case")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality of the compressed stream")
    parser.add_argument("--quick", action="store_true", help="6 s per case, for CI")
    args = parser.parse_args()
    seconds = 6.0 if args.quick else args.seconds
    why = unavailable()
    if why:
        # still one line per case, so a CI without namespaces sees the bench run (and why it did not)
        emit("hosts", "renderer_fps_1080p30", 0.0, 0.0, "fps", lower_is_better=False,
             anchor_name="single host", skipped=why)  # fmt: skip
        return
    single = measure("single", seconds, args.quality)
    split = measure("compressed", seconds, args.quality)
    raw_across = {} if args.quick else measure("raw", seconds, args.quality)
    load = os.getloadavg()[0]
    common = {"load_1min": round(load, 2), "seconds": seconds, "jpeg_quality": args.quality}
    emit("hosts", "renderer_fps_1080p30", split["fps"], single["fps"], "fps", lower_is_better=False,
         anchor_name="single host (raw over shared memory)", **common)  # fmt: skip
    if raw_across:  # what crossing hosts costs without the compressed transport
        emit("hosts", "renderer_fps_1080p30_vs_raw_across", split["fps"], raw_across["fps"], "fps",
             lower_is_better=False, anchor_name="two hosts, raw Image over UDP",
             raw_link_mbit_per_s=round(raw_across["link_bytes_per_s"] * 8e-6, 1), **common)  # fmt: skip
    for q in ("p50", "p99"):
        ours, anchor = split[f"latency_ms_{q}"] or 0.0, single[f"latency_ms_{q}"] or 0.0
        emit("hosts", f"e2e_latency_{q}", ours, anchor, "ms",
             anchor_name="single host (raw over shared memory)", **common)  # fmt: skip
    raw_mbit = FULL_HD["width"] * FULL_HD["height"] * 3 * FULL_HD["fps"] * 8e-6
    emit("hosts", "link_mbit_per_s", split["link_bytes_per_s"] * 8e-6, raw_mbit, "Mbit/s",
         anchor_name="raw 1080p30 bgr8 (what the raw stream would need)", **common)  # fmt: skip


if __name__ == "__main__":
    main()
