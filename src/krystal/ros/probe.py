"""A listening probe for multi-host tests and measurements: `python -m krystal.ros.probe`.

Counts AsciiFrames (rate, capture-to-frame latency from their `latency_ms`), follows /diagnostics
levels of the statuses named, and reports whether latched (transient-local) topics arrived. Prints
one JSON object per interval and a summary at the end, so a test on another host (network
namespace) reads what this host saw, and when (`mono`: the box's monotonic clock).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage

from krystal.msg import AsciiFrame, StyleDecision
from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos

LATCHED = {"krystal/style": StyleDecision, "devices/registry": DiagnosticArray}
# what may cross a link between hosts, for --bandwidth: topic -> (type, reliable)
TRAFFIC = {
    "camera/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", False),
    "audio/features": ("krystal/msg/AudioFeatures", False),
    "thermal/state": ("krystal/msg/ThermalState", False),
    "gpu/telemetry": ("krystal/msg/GpuTelemetry", False),
    "krystal/ascii": ("krystal/msg/AsciiFrame", False),
    "krystal/render_stats": ("krystal/msg/RenderStats", True),
    "krystal/style": ("krystal/msg/StyleDecision", True),
    "krystal/verdicts": ("krystal/msg/TemporalVerdict", True),
    "devices/status": ("krystal/msg/DeviceStatus", True),
    "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", True),
}


def _print(obj: dict[str, Any]) -> None:
    """One JSON line; `mono` is CLOCK_MONOTONIC, shared by every process (and namespace) of the box."""
    sys.stdout.write(json.dumps({**obj, "mono": round(time.monotonic(), 3)}) + "\n")
    sys.stdout.flush()


class Probe:
    def __init__(self, node: Node, diag: Sequence[str], latched: Sequence[str], compressed: str = "") -> None:
        self.t0 = time.monotonic()
        self.latencies: list[float] = []
        self.window: list[float] = []
        self.frames = 0
        self.first_frame_s: float | None = None
        self.levels: dict[str, int] = {}
        self.diag = set(diag)
        self.latched: dict[str, float] = {}
        self.images = 0
        self.traffic: dict[str, list[int]] = {}  # topic -> [messages, serialized bytes]
        if compressed:  # raw CompressedImage arrivals, e.g. camera/image_raw/compressed
            node.create_subscription(CompressedImage, compressed, self._on_image, sensor_qos(5))
        node.create_subscription(AsciiFrame, "krystal/ascii", self._on_frame, sensor_qos(5))
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(50))
        for topic in latched:
            node.create_subscription(
                LATCHED[topic], topic, lambda _msg, t=topic: self._on_latched(t), latched_qos(10)
            )

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def _on_frame(self, msg: AsciiFrame) -> None:
        self.frames += 1
        if self.first_frame_s is None:
            self.first_frame_s = self.now()
        if msg.latency_ms > 0:
            self.latencies.append(float(msg.latency_ms))
            self.window.append(float(msg.latency_ms))

    def count_traffic(self, node: Node) -> None:
        """Serialized bytes of each TRAFFIC topic (subscribed raw: nothing is deserialized)."""
        for topic, (type_name, reliable) in TRAFFIC.items():
            tally = self.traffic[topic] = [0, 0]

            def on_bytes(data: bytes, tally: list[int] = tally) -> None:
                tally[0] += 1
                tally[1] += len(data)

            qos = reliable_qos(50) if reliable else sensor_qos(5)
            package, _, name = type_name.split("/")
            msg_type = getattr(importlib.import_module(f"{package}.msg"), name)
            node.create_subscription(msg_type, topic, on_bytes, qos, raw=True)

    def _on_image(self, _msg: CompressedImage) -> None:
        self.images += 1

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name in self.diag and self.levels.get(s.name) != s.level[0]:
                self.levels[s.name] = s.level[0]
                _print({"t": self.now(), "diag": s.name, "level": s.level[0], "message": s.message})

    def _on_latched(self, topic: str) -> None:
        if topic not in self.latched:
            self.latched[topic] = self.now()
            _print({"t": self.now(), "latched": topic})


def _p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="krystal-probe", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to listen")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between reports")
    parser.add_argument(
        "--skip", type=float, default=0.0, help="seconds after the first frame left out of the summary"
    )
    parser.add_argument(
        "--measure", type=float, default=0.0, help="end this long after the skip (--seconds stays the limit)"
    )
    parser.add_argument("--diag", action="append", default=[], help="/diagnostics status name to follow")
    parser.add_argument("--latched", action="append", default=[], choices=sorted(LATCHED))
    parser.add_argument("--bandwidth", action="store_true", help="bytes/s of the topics that may cross hosts")
    parser.add_argument("--compressed", default="", help="also count CompressedImage on this topic")
    args = parser.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node("krystal_probe")
    probe = Probe(node, args.diag, args.latched, args.compressed)
    if args.bandwidth:
        probe.count_traffic(node)
    end = time.monotonic() + args.seconds
    next_report = time.monotonic() + args.interval
    counted_from: tuple[float, int] | None = None
    kept: list[float] = []
    try:
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
            now = time.monotonic()
            first = probe.first_frame_s
            if counted_from is None and first is not None and now - probe.t0 >= first + args.skip:
                counted_from = (now, probe.frames)
                probe.latencies.clear()
                if args.measure > 0:
                    end = min(end, now + args.measure)
            if now >= next_report:
                _print(
                    {
                        "t": probe.now(),
                        "frames": probe.frames,
                        "images": probe.images,
                        "lat_p99": _p(probe.window, 99),
                    }
                )
                probe.window.clear()
                next_report += args.interval
        kept = list(probe.latencies)
        elapsed = max(time.monotonic() - probe.t0, 1e-9)
        span = time.monotonic() - counted_from[0] if counted_from else 0.0
        fps = (probe.frames - counted_from[1]) / span if counted_from and span > 0 else 0.0
        _print(
            {
                "summary": True,
                "frames": probe.frames,
                "images": probe.images,
                "fps": round(fps, 2),
                "latency_ms_p50": _p(kept, 50),
                "latency_ms_p99": _p(kept, 99),
                "first_frame_s": probe.first_frame_s,
                "latched": probe.latched,
                "levels": probe.levels,
                "bytes_per_s": {t: round(n / elapsed) for t, (_, n) in probe.traffic.items()},
                "messages": {t: m for t, (m, _) in probe.traffic.items()},
            }
        )
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
