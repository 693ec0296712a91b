"""Thresholds per sensor, warn/error levels and the throttle penalty. ROS-free, pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from krystal.thermal.sensors import Reading, SensorSpec

NAN = math.nan
LEVEL_OK, LEVEL_WARN, LEVEL_ERROR = 0, 1, 2
DEFAULT_WARN_C, DEFAULT_ERROR_C = 90.0, 95.0  # Autoware's defaults for sensors that have none


@dataclass(frozen=True)
class Thresholds:
    warn_c: float
    error_c: float
    throttle_c: float  # where the penalty reaches 1
    origin: str  # "override", "sensor" (its own trip/crit/max files) or "default"


def parse_overrides(entries: Sequence[str]) -> dict[str, tuple[float, float]]:
    """'SENSOR=WARN,ERROR' entries (SENSOR: full name or the part after 'hwmonN:'); raises ValueError."""
    out: dict[str, tuple[float, float]] = {}
    for entry in entries:
        name, sep, values = entry.rpartition("=")
        parts = values.split(",")
        if not sep or not name.strip() or len(parts) != 2:
            raise ValueError(f"{entry!r} is not SENSOR=WARN_C,ERROR_C")
        try:
            warn, error = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"{entry!r}: WARN_C and ERROR_C must be numbers") from None
        if not (math.isfinite(warn) and math.isfinite(error)) or warn > error:
            raise ValueError(f"{entry!r}: need finite WARN_C <= ERROR_C")
        out[name.strip()] = (warn, error)
    return out


def overrides_problem(entries: Sequence[str]) -> str | None:
    try:
        parse_overrides(entries)
    except ValueError as exc:
        return str(exc)
    return None


def thresholds(
    spec: SensorSpec,
    overrides: Mapping[str, tuple[float, float]],
    default_warn_c: float = DEFAULT_WARN_C,
    default_error_c: float = DEFAULT_ERROR_C,
) -> Thresholds:
    """Config override first, then the sensor's own files, then the defaults."""
    override = overrides.get(spec.name, overrides.get(spec.key))
    if override is not None:
        return Thresholds(override[0], override[1], override[1], "override")
    crit = spec.critical_c
    warn_candidates = [t for t in (spec.passive_c, spec.high_c) if not math.isnan(t)]
    if math.isnan(crit) and not warn_candidates:
        return Thresholds(default_warn_c, default_error_c, default_error_c, "default")
    if math.isnan(crit):
        crit = max(warn_candidates) + (default_error_c - default_warn_c)
    warn = min(warn_candidates) if warn_candidates else crit - (default_error_c - default_warn_c)
    if warn >= crit:  # coretemp often has max == crit: warn a little before
        warn = crit - (default_error_c - default_warn_c)
    throttle = spec.passive_c if not math.isnan(spec.passive_c) and spec.passive_c <= crit else crit
    return Thresholds(warn, crit, throttle, "sensor")


def level(temperature_c: float, th: Thresholds, previous: int = LEVEL_OK, hysteresis_c: float = 0.0) -> int:
    """OK/WARN/ERROR from the thresholds; a level is left only `hysteresis_c` below its threshold,
    so a sensor sitting at a threshold does not flap between levels every cycle."""
    if math.isnan(temperature_c):
        return LEVEL_OK
    now = (
        LEVEL_ERROR if temperature_c >= th.error_c else LEVEL_WARN if temperature_c >= th.warn_c else LEVEL_OK
    )
    if previous == LEVEL_ERROR and now < LEVEL_ERROR and temperature_c > th.error_c - hysteresis_c:
        return LEVEL_ERROR
    if previous >= LEVEL_WARN and now < LEVEL_WARN and temperature_c > th.warn_c - hysteresis_c:
        return LEVEL_WARN
    return now


def effective_c(reading: Reading, th: Thresholds) -> float:
    """The temperature the summary goes by: an implausibly hot reading counts as at its error
    threshold (fail safe: level ERROR, penalty 1, throttling), other unreadable ones as unknown."""
    if reading.implausibly_hot:
        return max(th.error_c, th.throttle_c)
    return reading.temperature_c


def penalty(temperature_c: float, throttle_c: float, ramp_c: float) -> float:
    """0 below throttle_c - ramp_c, 1 at or beyond throttle_c, smoothstep between (C1-continuous)."""
    if math.isnan(temperature_c):
        return 0.0
    if temperature_c >= throttle_c:
        return 1.0
    if ramp_c <= 0:
        return 0.0
    x = (temperature_c - (throttle_c - ramp_c)) / ramp_c
    if x <= 0:
        return 0.0
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class Summary:
    """One cycle's aggregate, as ThermalState carries it."""

    names: tuple[str, ...]
    temperatures_c: tuple[float, ...]
    critical_c: tuple[float, ...]
    levels: tuple[int, ...]
    max_temperature_c: float
    hottest_sensor: str
    headroom_c: float
    throttle_penalty: float
    throttling: bool
    kernel_throttling: bool | None
    unreadable: int = 0  # sensors without a plausible value this cycle (implausibly hot included)


def summarize(
    specs: Sequence[SensorSpec],
    readings: Sequence[Reading],
    limits: Sequence[Thresholds],
    kernel_throttling: bool | None,
    ramp_c: float,
    *,
    previous_levels: Sequence[int] = (),
    hysteresis_c: float = 0.0,
) -> Summary:
    """One cycle's aggregate; `previous_levels` (same order as `specs`) for the hysteresis."""
    published = tuple(r.temperature_c for r in readings)
    temps = tuple(effective_c(r, th) for r, th in zip(readings, limits, strict=True))
    before = tuple(previous_levels) if len(previous_levels) == len(specs) else (LEVEL_OK,) * len(specs)
    crits = tuple(
        t.error_c if t.origin == "override" else s.critical_c for s, t in zip(specs, limits, strict=True)
    )
    hottest, max_t = "", NAN
    headroom, worst, past = NAN, 0.0, False
    for spec, temp, crit, th in zip(specs, temps, crits, limits, strict=True):
        if math.isnan(temp):
            continue
        if math.isnan(max_t) or temp > max_t:
            hottest, max_t = spec.name, temp
        if not math.isnan(crit) and (math.isnan(headroom) or crit - temp < headroom):
            headroom = crit - temp
        worst = max(worst, penalty(temp, th.throttle_c, ramp_c))
        past = past or temp >= th.throttle_c
    return Summary(
        names=tuple(s.name for s in specs),
        temperatures_c=published,
        critical_c=crits,
        levels=tuple(level(t, th, b, hysteresis_c) for t, th, b in zip(temps, limits, before, strict=True)),
        max_temperature_c=max_t,
        hottest_sensor=hottest,
        headroom_c=headroom,
        throttle_penalty=worst,
        throttling=past or bool(kernel_throttling),
        kernel_throttling=kernel_throttling,
        unreadable=sum(1 for r in readings if r.error),
    )
