"""Finding and reading temperature sensors under a sysfs-shaped root (default /sys/class).

`scan` walks thermal/thermal_zone* and hwmon/hwmon* once and keeps each sensor's static facts
(name, trip points, crit/max); `read` then costs one small file read per sensor. ROS-free.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from krystal import sysfs

NAN = math.nan
_TEMP_INPUT = re.compile(r"^temp(\d+)_input$")
_TRIP_TYPE = re.compile(r"^trip_point_(\d+)_type$")
_ZONE = re.compile(r"^thermal_zone(\d+)$")
_HWMON = re.compile(r"^hwmon(\d+)$")
_COOLING = re.compile(r"^cooling_device(\d+)$")


@dataclass(frozen=True)
class SensorSpec:
    """What a scan found for one sensor; temperatures in °C, NaN where the files have none."""

    name: str  # "thermal_zone0:x86_pkg_temp", "hwmon1:coretemp/Package id 0"
    key: str  # name without the "thermal_zoneN:"/"hwmonN:" prefix, stable across reboots
    path: str  # the file read every cycle (millidegrees Celsius)
    topic: str  # a valid ROS topic token derived from the name
    critical_c: float = NAN  # critical trip point / tempN_crit
    passive_c: float = NAN  # zone: where the kernel starts passive cooling (throttling)
    high_c: float = NAN  # zone "hot"/"high" trip point / tempN_max


@dataclass(frozen=True)
class Scan:
    sensors: tuple[SensorSpec, ...]
    cooling_states: tuple[str, ...] = field(default_factory=tuple)  # cur_state files of non-fan coolers
    root_missing: bool = False  # the root folder itself is not there (a wrong path, not "no sensors")


@dataclass(frozen=True)
class Reading:
    temperature_c: float  # NaN when unreadable
    error: str = ""  # why it is NaN: "vanished", "EIO (...)", "garbage b'..'", "out of range ...", ...
    vanished: bool = False
    implausibly_hot: bool = False  # above valid_max_c: taken as hot (fail safe), never as cool


def topic_token(name: str) -> str:
    """`name` as one valid ROS topic token: [a-z0-9_], no leading digit, no empty name."""
    token = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not token:
        return "sensor"
    return f"s_{token}" if token[0].isdigit() else token


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _millideg(path: str) -> float:
    value = sysfs.read_int_or_none(path)
    return NAN if value is None else value / 1000.0


def _zone_sensors(root: str) -> list[SensorSpec]:
    base = os.path.join(root, "thermal")
    found: list[tuple[int, SensorSpec]] = []
    for entry in _listdir(base):
        m = _ZONE.match(entry)
        if not m:
            continue
        zone = os.path.join(base, entry)
        kind = sysfs.read_text(os.path.join(zone, "type")) or "unknown"
        trips: dict[str, float] = {}
        for f in _listdir(zone):
            t = _TRIP_TYPE.match(f)
            if not t:
                continue
            trip_type = (sysfs.read_text(os.path.join(zone, f)) or "").lower()
            temp = _millideg(os.path.join(zone, f"trip_point_{t.group(1)}_temp"))
            if not math.isnan(temp) and temp > 0:  # firmware leaves unused trips at 0 or negative
                trips[trip_type] = min(temp, trips.get(trip_type, math.inf))
        name = f"{entry}:{kind}"
        spec = SensorSpec(
            name=name,
            key=kind,
            path=os.path.join(zone, "temp"),
            topic=topic_token(name),
            critical_c=trips.get("critical", NAN),
            passive_c=trips.get("passive", NAN),
            high_c=trips.get("hot", trips.get("high", NAN)),
        )
        found.append((int(m.group(1)), spec))
    return [s for _, s in sorted(found, key=lambda x: x[0])]


def _hwmon_sensors(root: str) -> list[SensorSpec]:
    base = os.path.join(root, "hwmon")
    found: list[tuple[int, int, SensorSpec]] = []
    for entry in _listdir(base):
        m = _HWMON.match(entry)
        if not m:
            continue
        chip_dir = os.path.join(base, entry)
        chip = sysfs.read_text(os.path.join(chip_dir, "name")) or sysfs.read_text(
            os.path.join(chip_dir, "device", "name")
        )
        chip = chip or entry
        seen: set[str] = set()
        # Older kernels keep the attributes in device/ (psutil issue 971)
        for folder in (chip_dir, os.path.join(chip_dir, "device")):
            for f in _listdir(folder):
                t = _TEMP_INPUT.match(f)
                if not t or f in seen:
                    continue
                seen.add(f)
                stem = os.path.join(folder, f"temp{t.group(1)}")
                label = sysfs.read_text(stem + "_label") or f"temp{t.group(1)}"
                key = f"{chip}/{label}"
                name = f"{entry}:{key}"
                spec = SensorSpec(
                    name=name,
                    key=key,
                    path=stem + "_input",
                    topic=topic_token(name),
                    critical_c=_millideg(stem + "_crit"),
                    high_c=_millideg(stem + "_max"),
                )
                found.append((int(m.group(1)), int(t.group(1)), spec))
    return [s for _, _, s in sorted(found, key=lambda x: (x[0], x[1]))]


def _cooling_states(root: str) -> list[str]:
    base = os.path.join(root, "thermal")
    states = []
    for entry in sorted(_listdir(base)):
        if not _COOLING.match(entry):
            continue
        kind = (sysfs.read_text(os.path.join(base, entry, "type")) or "").lower()
        if "fan" not in kind:  # a spinning fan is cooling, not throttling
            states.append(os.path.join(base, entry, "cur_state"))
    return states


def _unique(specs: list[SensorSpec]) -> tuple[SensorSpec, ...]:
    """Names and topics made unique (two chips may share a label), first one keeps its own."""
    names: set[str] = set()
    topics: set[str] = {"state"}  # thermal/state is the aggregate
    out = []
    for s in specs:
        name, topic, n = s.name, s.topic, 1
        while name in names:
            n += 1
            name = f"{s.name} #{n}"
        n = 1
        while topic in topics:
            n += 1
            topic = f"{s.topic}_{n}"
        names.add(name)
        topics.add(topic)
        out.append(SensorSpec(name, s.key, s.path, topic, s.critical_c, s.passive_c, s.high_c))
    return tuple(out)


def scan(root: str) -> Scan:
    """All sensors under `root` (a folder shaped like /sys/class), zones first, in index order."""
    return Scan(
        _unique(_zone_sensors(root) + _hwmon_sensors(root)),
        tuple(_cooling_states(root)),
        root_missing=not os.path.isdir(root),
    )


def read(spec: SensorSpec, valid_min_c: float, valid_max_c: float) -> Reading:
    """One sensor now; never raises."""
    try:
        millideg = sysfs.read_int(spec.path)
    except (OSError, ValueError) as exc:
        return Reading(NAN, sysfs.reason(exc), sysfs.is_vanished(exc))
    temp = millideg / 1000.0
    if temp > valid_max_c:  # a failing sensor reading "hot" must not let the machine look cool
        return Reading(
            NAN, f"implausibly hot ({temp:g} °C above valid_max_c {valid_max_c:g}): taken as hot", False, True
        )
    if temp < valid_min_c:
        return Reading(NAN, f"out of range ({temp:g} °C below valid_min_c {valid_min_c:g})")
    return Reading(temp)


def kernel_throttling(cooling_states: tuple[str, ...]) -> bool | None:
    """True when a non-fan cooling device is active, None when none is readable."""
    known = False
    for path in cooling_states:
        state = sysfs.read_int_or_none(path)
        if state is None:
            continue
        if state > 0:
            return True
        known = True
    return False if known else None
