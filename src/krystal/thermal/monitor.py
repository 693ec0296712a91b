"""thermal_monitor's core: rescans on a period, reads every sensor each cycle, says what changed.

ROS-free; the clock is injected so tests and the benchmark drive it without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from krystal.thermal import sensors
from krystal.thermal.policy import (
    DEFAULT_ERROR_C,
    DEFAULT_WARN_C,
    Summary,
    Thresholds,
    summarize,
    thresholds,
)
from krystal.thermal.sensors import Reading, SensorSpec


@dataclass(frozen=True)
class Cycle:
    specs: tuple[SensorSpec, ...]
    readings: tuple[Reading, ...]
    limits: tuple[Thresholds, ...]
    summary: Summary
    appeared: tuple[str, ...]  # sensors found by this cycle's rescan
    removed: tuple[str, ...]  # sensors this cycle's rescan no longer found
    root_missing: bool = False  # the root folder is not there: a wrong path, not a machine without sensors


class ThermalMonitor:
    def __init__(
        self,
        root: str = "/sys/class",
        *,
        overrides: Mapping[str, tuple[float, float]] | None = None,
        default_warn_c: float = DEFAULT_WARN_C,
        default_error_c: float = DEFAULT_ERROR_C,
        ramp_c: float = 15.0,
        rescan_period_s: float = 5.0,
        valid_min_c: float = -60.0,
        valid_max_c: float = 200.0,
        hysteresis_c: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.overrides = dict(overrides or {})
        self.default_warn_c, self.default_error_c = default_warn_c, default_error_c
        self.ramp_c, self.rescan_period_s = ramp_c, rescan_period_s
        self.valid_min_c, self.valid_max_c = valid_min_c, valid_max_c
        self.hysteresis_c = hysteresis_c
        self._levels: dict[str, int] = {}  # last level per sensor name, for the hysteresis
        self._clock = clock
        self._scan = sensors.Scan(())
        self._limits: tuple[Thresholds, ...] = ()
        self._next_scan_s = -float("inf")

    def _thresholds(self) -> tuple[Thresholds, ...]:
        return tuple(
            thresholds(s, self.overrides, self.default_warn_c, self.default_error_c)
            for s in self._scan.sensors
        )

    def configure(self, **changes: object) -> None:
        """Change settings (same names as __init__); the next cycle rescans."""
        for name, value in changes.items():
            setattr(self, name, dict(value) if name == "overrides" else value)  # type: ignore[call-overload]
        self._next_scan_s = -float("inf")

    def rescan(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(appeared, removed) sensor names."""
        before = {s.name for s in self._scan.sensors}
        self._scan = sensors.scan(self.root)
        self._limits = self._thresholds()
        after = {s.name for s in self._scan.sensors}
        return tuple(sorted(after - before)), tuple(sorted(before - after))

    def cycle(self) -> Cycle:
        now = self._clock()
        appeared: tuple[str, ...] = ()
        removed: tuple[str, ...] = ()
        if now >= self._next_scan_s:
            appeared, removed = self.rescan()
            self._next_scan_s = now + self.rescan_period_s
        specs = self._scan.sensors
        readings = tuple(sensors.read(s, self.valid_min_c, self.valid_max_c) for s in specs)
        if any(r.vanished for r in readings):
            self._next_scan_s = now  # a sensor went away: look again next cycle
        kernel = sensors.kernel_throttling(self._scan.cooling_states)
        before = [self._levels.get(s.name, 0) for s in specs]
        summary = summarize(
            specs,
            readings,
            self._limits,
            kernel,
            self.ramp_c,
            previous_levels=before,
            hysteresis_c=self.hysteresis_c,
        )
        self._levels = dict(zip(summary.names, summary.levels, strict=True))
        return Cycle(
            specs, readings, self._limits, summary, appeared, removed, root_missing=self._scan.root_missing
        )
