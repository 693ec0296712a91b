"""Thermal read cost: ours against psutil.sensors_temperatures() on the same 32-sensor hwmon tree.

psutil reads /sys/class/hwmon with hard-coded paths. To run it on the same tree, its module's
`glob` is swapped for one that maps "/sys/class/" to the tree's root; every file psutil then opens
and parses is the tree's, by psutil's own code (only three glob patterns are rewritten per call).
The node's CPU share at 10 Hz is compared with a plain rclpy node that publishes psutil's reading
as ThermalState at 10 Hz; `idle_node` is an empty node's 10 Hz timer, the floor under both.
`--quick` finishes in well under 20 s.
"""

from __future__ import annotations

import argparse
import glob as _glob
import math
import tempfile
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from psutil import _pslinux
from rclpy.node import Node
from rclpy.parameter import Parameter

from bench.common import emit, time_ms
from bench.node_cpu import cpu_percent, ensure_init
from bench.sysfs_tree import sensors_tree
from krystal.thermal import sensors
from krystal.thermal.monitor import ThermalMonitor


@contextmanager
def psutil_root(root: Path) -> Iterator[None]:
    """psutil's sensors read `root` as if it were /sys/class (no chroot, psutil's own parsing)."""
    prefix = str(root).rstrip("/") + "/"
    shim = types.SimpleNamespace(
        glob=lambda pattern, **kw: _glob.glob(pattern.replace("/sys/class/", prefix), **kw),
        iglob=lambda pattern, **kw: _glob.iglob(pattern.replace("/sys/class/", prefix), **kw),
    )
    saved = _pslinux.glob
    _pslinux.glob = shim  # type: ignore[assignment]
    try:
        yield
    finally:
        _pslinux.glob = saved


def _tree_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary folder whose path has no '_' (psutil splits sysfs names there)."""
    while True:
        tmp = tempfile.TemporaryDirectory(prefix="krystal-thermal-")
        if "_" not in tmp.name:
            return tmp
        tmp.cleanup()


class IdleNode(Node):
    """What any rclpy node with a 10 Hz timer costs here: the floor under both figures."""

    def __init__(self) -> None:
        super().__init__("idle_10hz")
        self.create_timer(0.1, lambda: None)


class PsutilThermalNode(Node):
    """The anchor node: psutil at each tick, its readings as ThermalState."""

    def __init__(self, rate_hz: float) -> None:
        from krystal.msg import ThermalState

        super().__init__("psutil_thermal")
        self._msg = ThermalState
        self._pub = self.create_publisher(ThermalState, "thermal/state", 1)
        self.create_timer(1.0 / rate_hz, self._tick)

    def _tick(self) -> None:
        names, temps, crits = [], [], []
        for chip, entries in psutil.sensors_temperatures().items():
            for e in entries:
                names.append(f"{chip}/{e.label}")
                temps.append(e.current)
                crits.append(e.critical if e.critical is not None else math.nan)
        hottest = max(temps, default=math.nan)
        self._pub.publish(
            self._msg(sensor_names=names, temperatures_c=temps, critical_c=crits, max_temperature_c=hottest)
        )


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    repeat = 30 if args.quick else 300
    seconds = 2.0 if args.quick else 10.0
    with _tree_dir() as tmp:
        root = sensors_tree(Path(tmp))
        specs = sensors.scan(str(root)).sensors
        assert len(specs) == 32
        with psutil_root(root):
            found = sum(len(v) for v in psutil.sensors_temperatures().values())
            assert found == 32, found

            def ours_read() -> Any:
                return [sensors.read(s, -60.0, 200.0) for s in specs]

            monitor = ThermalMonitor(str(root), rescan_period_s=1e9)
            monitor.cycle()
            compare("read 32 sensors", ours_read, psutil.sensors_temperatures, repeat)
            compare(
                "cycle 32 sensors (read, thresholds, penalty)",
                monitor.cycle,
                psutil.sensors_temperatures,
                repeat,
            )
            rescanning = ThermalMonitor(str(root), rescan_period_s=0.0)
            compare("rescan + cycle 32 sensors", rescanning.cycle, psutil.sensors_temperatures, repeat)
            ensure_init()
            ours_cpu = cpu_percent(lambda: _our_node(root), seconds)
            anchor_cpu = cpu_percent(lambda: PsutilThermalNode(10.0), seconds)
            floor_cpu = cpu_percent(IdleNode, seconds)
        emit("thermal", "node CPU at 10 Hz, 32 sensors", ours_cpu, anchor_cpu, "% of one core",
             anchor_name="rclpy node publishing psutil's reading at 10 Hz", goal=2.0,
             idle_node=round(floor_cpu, 3))  # fmt: skip
    real = ThermalMonitor("/sys/class", rescan_period_s=1e9)
    real.cycle()
    n_real = len(real.cycle().specs)
    compare(f"this machine /sys/class ({n_real} sensors)", real.cycle, psutil.sensors_temperatures, repeat)


def _our_node(root: Path) -> Node:
    from krystal.thermal.node import ThermalMonitorNode

    return ThermalMonitorNode(
        parameter_overrides=[Parameter("root", value=str(root)), Parameter("rate_hz", value=10.0)]
    )


def compare(case: str, ours: Any, anchor: Any, repeat: int) -> None:
    ours_min, ours_med = time_ms(ours, repeat=repeat)
    anchor_min, anchor_med = time_ms(anchor, repeat=repeat)
    emit("thermal", case, ours_med, anchor_med, "ms", ours_min=round(ours_min, 4),
         anchor_min=round(anchor_min, 4), anchor_name="psutil.sensors_temperatures()")  # fmt: skip


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="thermal read cost against psutil")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 2 s CPU windows")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
