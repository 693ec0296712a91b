"""What the Krystal Vulkan layer costs the application it is loaded into, beside the same program
without it (the anchor), in the same run.

layer/test/draw_test (installed under share/krystal/vulkan/test) records N vkCmdDraw into one command
buffer, 5 times, timed in batches of 500 (the fastest batch per draw is kept: most batches on a shared
machine are preempted), then runs its frames (4 draws, 2 indexed, 1 indirect, 2 dispatches, an image
copy and a fenced submit each) and reports the median frame time and the fastest vkQueueSubmit (where
the layer closes a frame into its ring). Three configurations, interleaved over several rounds, the
best round kept: no layer; the layer with no reader; the layer with a reader (krystal.gpu.vkring, as
gpu_telemetry reads) polling its ring at 50 Hz, gpu_telemetry's highest rate.

Goals: < 50 ns added per draw, < 1 % frame time. The measured frame time of this tiny llvmpipe frame
(~0.1 ms) varies by more than 1 % between runs on a shared machine, so a last row adds up the layer's
own measured costs (its commands and its submit) against the frame.
`--quick` finishes in a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from bench.common import emit
from krystal.gpu import layer
from krystal.gpu.vkring import RingSet

BENCH = "vulkan"
CALLS_PER_FRAME = 11  # draw_test's intercepted commands per frame: 7 draws, 2 dispatches, 2 binds
POLL_HZ = 50.0  # gpu_telemetry's highest rate_hz (default 2)


def _run(exe: Path, draws: int, frames: int, with_layer: bool, reader: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VK_INSTANCE_LAYERS", "VK_LOADER_"))}
    if with_layer:
        directory = layer.layer_dir()
        assert directory is not None
        env.update(layer.env(directory))
    stop = threading.Event()
    polls = [0]

    def read() -> None:
        rings = RingSet()
        while not stop.wait(1.0 / POLL_HZ):
            rings.poll()
            polls[0] += 1
        rings.close()

    t = threading.Thread(target=read, daemon=True)
    if reader:
        t.start()
    try:
        res = subprocess.run(
            [str(exe), "--bench", str(draws), "--frames", str(frames), "--app", "krystal-vulkan-bench"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    finally:
        stop.set()
        if reader:
            t.join()
    out: dict[str, Any] = json.loads(res.stdout.splitlines()[-1])
    out["polls"] = polls[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer draws, frames and rounds (a few seconds)")
    args = ap.parse_args()
    draws, frames, rounds = (50_000, 100, 3) if args.quick else (200_000, 500, 7)
    exe = layer.draw_test()
    if exe is None or layer.layer_dir() is None:
        why = "the Vulkan layer or draw_test is not built (no libvulkan-dev when CMake ran)"
        emit(BENCH, "not built", 0.0, 0.0, "ns/draw", anchor_name="no layer", skipped=why)
        return 0
    configs = {"no layer": (False, False), "layer": (True, False), "layer + reader": (True, True)}
    keys = ("record_ns_per_draw", "frame_ms_median", "submit_us_min")
    best = {name: dict.fromkeys(keys, float("inf")) for name in configs}
    polls = 0
    for _ in range(rounds):
        for name, (with_layer, reader) in configs.items():
            r = _run(exe, draws, frames, with_layer, reader)
            for k in keys:
                best[name][k] = min(best[name][k], float(r[k]))
            polls += int(r["polls"])
    plain = best["no layer"]
    same: dict[str, Any] = {"anchor_name": "same program without the layer", "rounds": rounds}
    for name in ("layer", "layer + reader"):
        ours = best[name]
        added_ns = ours["record_ns_per_draw"] - plain["record_ns_per_draw"]
        emit(
            BENCH,
            f"vkCmdDraw recording, {name}",
            ours["record_ns_per_draw"],
            plain["record_ns_per_draw"],
            "ns/draw",
            added_ns_per_draw=round(added_ns, 2),
            goal_added_ns_per_draw=50,
            draws=draws,
            **same,
        )
        added_submit_us = ours["submit_us_min"] - plain["submit_us_min"]
        emit(
            BENCH,
            f"vkQueueSubmit (the layer closes the frame), {name}",
            ours["submit_us_min"],
            plain["submit_us_min"],
            "us/submit",
            added_us=round(added_submit_us, 3),
            **same,
        )
        emit(
            BENCH,
            f"frame time, {name}",
            ours["frame_ms_median"],
            plain["frame_ms_median"],
            "ms/frame",
            change_percent=round((ours["frame_ms_median"] / plain["frame_ms_median"] - 1.0) * 100.0, 2),
            goal_change_percent=1,
            frames=frames,
            reader_polls=polls if "reader" in name else 0,
            **same,
        )
        # the frame-time change the layer's own costs make: its commands and its submit, against the
        # frame; a direct measure of what the line above sees through this machine's noise
        added_ms = (max(added_ns, 0.0) * CALLS_PER_FRAME * 1e-6) + max(added_submit_us, 0.0) * 1e-3
        emit(
            BENCH,
            f"frame time from the layer's measured costs, {name}",
            plain["frame_ms_median"] + added_ms,
            plain["frame_ms_median"],
            "ms/frame",
            change_percent=round(added_ms / plain["frame_ms_median"] * 100.0, 3),
            goal_change_percent=1,
            **same,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
