"""AMD and Intel GPUs through sysfs DRM (a folder shaped like /sys/class/drm). ROS-free.

Cards are listed every cycle (one listdir), so a card that appears or goes away is seen at once;
static facts (PCI address, ids, driver, hwmon folder) are read once per card.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace

from krystal import sysfs
from krystal.gpu.model import GpuDevice, pci_address, vendor_name

NAN = math.nan
_CARD = re.compile(r"^card(\d+)$")


@dataclass(frozen=True)
class _Card:
    name: str
    device_dir: str
    hwmon_dir: str
    static: GpuDevice


def _uevent(path: str) -> dict[str, str]:
    text = sysfs.read_text(path) or ""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def _hex(path: str) -> int:
    text = sysfs.read_text(path) or ""
    try:
        value = int(text, 16)
    except ValueError:
        return 0
    return value if 0 <= value <= 0xFFFF else 0  # PCI ids are 16 bits


def _int(path: str, problems: list[str], low: int | None = None, high: int | None = None) -> int | None:
    """The integer in `path`, None when absent (many cards lack many files: not a problem) or when it
    holds garbage or a value outside [low, high] (a problem: `problems` gets the file and value)."""
    try:
        value = sysfs.read_int(path)
    except sysfs.Garbage as exc:
        problems.append(f"{path}: {exc}")
        return None
    except OSError:
        return None
    if (low is not None and value < low) or (high is not None and value > high):
        problems.append(f"{path}: {value} outside {low}..{high}")
        return None
    return value


def _bytes(path: str, problems: list[str]) -> int:
    """A byte count that fits uint64, 0 when unknown."""
    value = _int(path, problems, 0, (1 << 64) - 1)
    return 0 if value is None else value


def _number(
    path: str, scale: float, problems: list[str], low: int | None = None, high: int | None = None
) -> float:
    value = _int(path, problems, low, high)
    return NAN if value is None else value * scale


class DrmProbe:
    def __init__(self, root: str = "/sys/class/drm") -> None:
        self.root = root
        self.absent_reason = ""
        self._cards: dict[str, _Card] = {}

    @property
    def root_missing(self) -> bool:
        """drm_root itself is not there: a wrong path, not a machine without cards."""
        return not os.path.isdir(self.root)

    def cards(self) -> list[str]:
        try:
            names = [n for n in os.listdir(self.root) if _CARD.match(n)]
        except OSError:
            return []
        return sorted(names, key=lambda n: int(n[4:]))

    def _describe(self, name: str) -> _Card | None:
        device_dir = os.path.join(self.root, name, "device")
        if not os.path.isdir(device_dir):
            return None
        uevent = _uevent(os.path.join(device_dir, "uevent"))
        pci = pci_address(uevent.get("PCI_SLOT_NAME", "")) or pci_address(
            os.path.basename(os.path.realpath(device_dir))
        )
        vendor_id = _hex(os.path.join(device_dir, "vendor"))
        driver_link = os.path.join(device_dir, "driver")
        driver = uevent.get("DRIVER", "") or (
            os.path.basename(os.readlink(driver_link)) if os.path.islink(driver_link) else ""
        )
        hwmon_dir = ""
        try:
            chips = sorted(os.listdir(os.path.join(device_dir, "hwmon")))
            if chips:
                hwmon_dir = os.path.join(device_dir, "hwmon", chips[0])
        except OSError:
            pass
        static = GpuDevice(
            source="drm",
            key=f"drm:{name}",
            pci=pci,
            device_name=f"{driver or 'drm'} {pci or name}",
            vendor=vendor_name(vendor_id),
            vendor_id=vendor_id,
            device_id=_hex(os.path.join(device_dir, "device")),
            device_type="discrete"
            if os.path.exists(os.path.join(device_dir, "mem_info_vram_total"))
            else "other",
            driver_version=driver,
        )
        return _Card(name, device_dir, hwmon_dir, static)

    def sample(self) -> list[GpuDevice]:
        """Every card now; a card whose files vanish mid-read is left out (it is gone)."""
        present = self.cards()
        for gone in set(self._cards) - set(present):
            del self._cards[gone]
        out = []
        for name in present:
            card = self._cards.get(name)
            if card is None:
                card = self._describe(name)
                if card is None:
                    continue
                self._cards[name] = card
            if not os.path.isdir(card.device_dir):
                del self._cards[name]
                continue
            out.append(self._read(card))
        return out

    def _read(self, card: _Card) -> GpuDevice:
        d, hw = card.device_dir, card.hwmon_dir
        bad: list[str] = []  # files holding garbage or impossible values, with the value
        busy = _number(os.path.join(d, "gpu_busy_percent"), 0.01, bad, 0, 100)
        mem_busy = _number(os.path.join(d, "mem_busy_percent"), 0.01, bad, 0, 100)
        total = _bytes(os.path.join(d, "mem_info_vram_total"), bad)
        used = _bytes(os.path.join(d, "mem_info_vram_used"), bad)
        temp = power = limit = sclk = mclk = NAN
        if hw:
            temp = _number(os.path.join(hw, "temp1_input"), 1e-3, bad, -60_000, 200_000)
            power = _number(os.path.join(hw, "power1_average"), 1e-6, bad, 0)
            if math.isnan(power):
                power = _number(os.path.join(hw, "power1_input"), 1e-6, bad, 0)
            limit = _number(os.path.join(hw, "power1_cap"), 1e-6, bad, 0)
            sclk = _number(os.path.join(hw, "freq1_input"), 1e-6, bad, 0)
            mclk = _number(os.path.join(hw, "freq2_input"), 1e-6, bad, 0)
        if math.isnan(sclk):  # Intel keeps its GT clock beside the card
            sclk = _number(os.path.join(self.root, card.name, "gt_act_freq_mhz"), 1.0, bad, 0)
        return replace(
            card.static,
            utilization_ratio=busy,
            memory_utilization_ratio=mem_busy,
            memory_total_bytes=total,
            memory_used_bytes=used,
            temperature_c=temp,
            power_w=power,
            power_limit_w=limit,
            clock_graphics_mhz=sclk,
            clock_memory_mhz=mclk,
            errors=tuple(bad),
        )
