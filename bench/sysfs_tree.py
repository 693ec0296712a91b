"""Folders shaped like /sys/class (thermal zones, hwmon chips, DRM cards) for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def thermal_zone(
    root: Path, index: int, kind: str, temp_mc: int | str, trips: Sequence[tuple[str, int]] = ()
) -> Path:
    """root/thermal/thermal_zoneN with type, temp (millidegrees) and trip_point_K_{type,temp}."""
    zone = root / "thermal" / f"thermal_zone{index}"
    _write(zone / "type", kind)
    _write(zone / "temp", str(temp_mc))
    for k, (trip_type, trip_mc) in enumerate(trips):
        _write(zone / f"trip_point_{k}_type", trip_type)
        _write(zone / f"trip_point_{k}_temp", str(trip_mc))
    return zone


def cooling_device(root: Path, index: int, kind: str, cur_state: int, max_state: int = 10) -> Path:
    dev = root / "thermal" / f"cooling_device{index}"
    _write(dev / "type", kind)
    _write(dev / "cur_state", str(cur_state))
    _write(dev / "max_state", str(max_state))
    return dev


def hwmon_chip(
    root: Path,
    index: int,
    name: str,
    temps: Sequence[tuple[str | None, int | str, int | None, int | None]],
) -> Path:
    """root/hwmon/hwmonN with name and, per (label, input, max, crit), tempK_* files (K from 1)."""
    chip = root / "hwmon" / f"hwmon{index}"
    _write(chip / "name", name)
    for k, (label, value, high, crit) in enumerate(temps, start=1):
        _write(chip / f"temp{k}_input", str(value))
        if label is not None:
            _write(chip / f"temp{k}_label", label)
        if high is not None:
            _write(chip / f"temp{k}_max", str(high))
        if crit is not None:
            _write(chip / f"temp{k}_crit", str(crit))
    return chip


def sensors_tree(root: Path, chips: int = 4, per_chip: int = 8) -> Path:
    """chips x per_chip hwmon sensors with labels, max and crit, as a desktop board has."""
    for c in range(chips):
        hwmon_chip(
            root,
            c,
            f"chip{c}",
            [(f"Core {k}", 40000 + 1000 * k + 100 * c, 90000, 100000) for k in range(per_chip)],
        )
    return root


def drm_card(
    drm_root: Path,
    index: int,
    pci: str,
    *,
    vendor_id: int = 0x1002,
    device_id: int = 0x73BF,
    driver: str = "amdgpu",
    busy_percent: int | None = 37,
    vram_used: int | None = 1 << 30,
    vram_total: int | None = 8 << 30,
    temp_mc: int | None = 51000,
    power_uw: int | None = 45_000_000,
    power_cap_uw: int | None = 200_000_000,
) -> Path:
    """drm_root/cardN/device with uevent, vendor, device, AMD-style counters and a hwmon chip."""
    dev = drm_root / f"card{index}" / "device"
    _write(dev / "uevent", f"DRIVER={driver}\nPCI_SLOT_NAME={pci}")
    _write(dev / "vendor", f"0x{vendor_id:04x}")
    _write(dev / "device", f"0x{device_id:04x}")
    for name, value in (
        ("gpu_busy_percent", busy_percent),
        ("mem_info_vram_used", vram_used),
        ("mem_info_vram_total", vram_total),
    ):
        if value is not None:
            _write(dev / name, str(value))
    hw = dev / "hwmon" / "hwmon0"
    _write(hw / "name", driver)
    for name, value in (("temp1_input", temp_mc), ("power1_average", power_uw), ("power1_cap", power_cap_uw)):
        if value is not None:
            _write(hw / name, str(value))
    (drm_root / f"card{index}-DP-1").mkdir(parents=True, exist_ok=True)  # a connector, not a card
    return dev
