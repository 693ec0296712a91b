"""End to end: video_source -> ascii_renderer in separate processes, 1080p at 30 fps.

Capture-to-AsciiFrame latency (the renderer's own measure at publication, and at a third process's
receipt), the age of each frame when its render started, and whether output stamps are the input's.
Ours: the shipped transport profile and sensor-data QoS. Anchor, same run: Fast DDS defaults with
reliable QoS (set through the nodes' qos_overrides parameters), what users get without the profile.

    python -m bench.e2e_bench [--seconds 10] [--mode edges]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import emit

DEFAULTS_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <participant profile_name="fastdds_defaults" is_default_profile="true"><rtps/></participant>
</profiles></dds>
"""


def _executable(name: str) -> str:
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix("krystal")) / "lib" / "krystal" / name)


def probe(seconds: float, check_stamps: float) -> dict[str, Any]:
    """Runs in its own process: records AsciiFrames (and, briefly, images for the stamp check)."""
    import rclpy
    from krystal.msg import AsciiFrame
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.time import Time
    from sensor_msgs.msg import Image

    from krystal.ros.qos import sensor_qos

    rclpy.init()
    node = rclpy.create_node("e2e_probe")
    rows: list[tuple[int, float, float, float]] = []

    def on_frame(msg: AsciiFrame) -> None:
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        rows.append((stamp, (time.time_ns() - stamp) / 1e6, msg.latency_ms, msg.render_time_ms))

    node.create_subscription(AsciiFrame, "krystal/ascii", on_frame, sensor_qos(10))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.monotonic()
    while not rows and time.monotonic() - start < 30:
        executor.spin_once(timeout_sec=0.1)
    rows.clear()  # warm-up over: measure from here
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    measured = list(rows)
    image_stamps: set[int] = set()
    node.create_subscription(
        Image,
        "camera/image_raw",
        lambda m: image_stamps.add(Time.from_msg(m.header.stamp).nanoseconds),
        sensor_qos(5),
    )
    rows.clear()
    end = time.monotonic() + check_stamps
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    checked = [r[0] for r in rows if image_stamps and min(image_stamps) <= r[0] <= max(image_stamps)]
    node.destroy_node()
    rclpy.try_shutdown()
    return {
        "frames": measured,
        "stamp_matches": sum(s in image_stamps for s in checked),
        "stamp_checked": len(checked),
    }


def run_graph(
    env: dict[str, str], seconds: float, *, mode: str, columns: int, rows: int, qos: list[str]
) -> dict[str, Any]:
    video = subprocess.Popen(
        [_executable("video_source"), "--ros-args", "-p", "width:=1920", "-p", "height:=1080",
         "-p", "fps:=30.0", *qos],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    renderer = subprocess.Popen(
        [_executable("ascii_renderer"), "--ros-args", "-p", f"mode:={mode}", "-p", f"columns:={columns}",
         "-p", f"rows:={rows}", "-p", "max_frame_age_ms:=0.0", *qos],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.e2e_bench", "--probe", str(seconds)],
            env=env, capture_output=True, text=True, check=True, timeout=seconds + 60,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        for p in (renderer, video):
            os.killpg(p.pid, signal.SIGINT)
        for p in (renderer, video):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def summarize(result: dict[str, Any], period_ms: float) -> dict[str, float]:
    frames = np.array(result["frames"], dtype=np.float64).reshape(-1, 4)
    if not len(frames):
        return {"frames": 0}
    receipt, published, render = frames[:, 1], frames[:, 2], frames[:, 3]
    age_at_render = published - render
    return {
        "frames": float(len(frames)),
        "publish_p50_ms": float(np.percentile(published, 50)),
        "publish_p99_ms": float(np.percentile(published, 99)),
        "receipt_p99_ms": float(np.percentile(receipt, 99)),
        "render_p50_ms": float(np.percentile(render, 50)),
        "max_age_at_render_ms": float(age_at_render.max()),
        "older_than_period": float((age_at_render > period_ms).sum()),
        "stamps_matching": result["stamp_matches"] / max(1, result["stamp_checked"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mode", default="edges")
    parser.add_argument("--columns", type=int, default=160)
    parser.add_argument("--rows", type=int, default=45)
    parser.add_argument("--probe", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe is not None:
        print(json.dumps(probe(args.probe, check_stamps=3.0)))
        return
    from krystal.paths import PROFILES_ENV, transport_profile
    from krystal.ros.compat import localhost_discovery_env

    base = dict(
        os.environ, ROS_DOMAIN_ID=str(random.SystemRandom().randint(1, 100)), **localhost_discovery_env()
    )
    period_ms = 1000 / 30
    with tempfile.TemporaryDirectory() as tmp:
        defaults = Path(tmp) / "defaults.xml"
        defaults.write_text(DEFAULTS_PROFILE)
        reliable = [
            "-p", "qos_overrides./camera/image_raw.publisher.reliability:=reliable",
            "-p", "qos_overrides./camera/image_raw.subscription.reliability:=reliable",
        ]  # fmt: skip
        ours = summarize(
            run_graph({**base, PROFILES_ENV: str(transport_profile())}, args.seconds, mode=args.mode,
                      columns=args.columns, rows=args.rows, qos=[]),
            period_ms,
        )  # fmt: skip
        anchor = summarize(
            run_graph({**base, PROFILES_ENV: str(defaults)}, args.seconds, mode=args.mode,
                      columns=args.columns, rows=args.rows, qos=reliable),
            period_ms,
        )  # fmt: skip
    case = f"1080p30 -> {args.columns}x{args.rows} {args.mode}"
    emit("e2e", f"{case} capture-to-AsciiFrame p99", ours.get("publish_p99_ms", float("nan")),
         anchor.get("publish_p99_ms", float("nan")), "ms",
         anchor_name="Fast DDS defaults, reliable QoS", ours_detail=ours, anchor_detail=anchor)  # fmt: skip
    emit("e2e", f"{case} frames rendered in {args.seconds:.0f} s", ours.get("frames", 0),
         anchor.get("frames", 0), "frames", lower_is_better=False)  # fmt: skip


if __name__ == "__main__":
    main()
