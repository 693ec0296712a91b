"""What a probe reports about one GPU, merged per physical device. ROS-free."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from krystal.gpu.vkring import AppFrames

NAN = math.nan
VENDORS = {
    0x10DE: "nvidia",
    0x1002: "amd",
    0x8086: "intel",
    0x10005: "mesa",
    0x13B5: "arm",
    0x5143: "qualcomm",
}


def vendor_name(vendor_id: int) -> str:
    return VENDORS.get(vendor_id, f"0x{vendor_id:04x}" if vendor_id else "")


def pci_address(text: str) -> str:
    """'00000000:03:00.0' (NVML) or '0000:03:00.0' (sysfs) as '0000:03:00.0'; '' when unparsable."""
    parts = text.strip().lower().split(":")
    if len(parts) != 3 or "." not in parts[2]:
        return ""
    try:
        domain, bus = int(parts[0], 16), int(parts[1], 16)
        dev, fn = (int(x, 16) for x in parts[2].split("."))
    except ValueError:
        return ""
    return f"{domain:04x}:{bus:02x}:{dev:02x}.{fn}"


def uuid_text(text: str) -> str:
    """'GPU-1234...' (NVML) or 32 hex digits (Vulkan deviceUUID) as a lower-case 8-4-4-4-12 uuid."""
    hexdigits = "".join(c for c in text.lower().removeprefix("gpu-") if c in "0123456789abcdef")
    if len(hexdigits) != 32:
        return ""
    h = hexdigits
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class GpuDevice:
    """One device as one probe (or the merge of several) sees it; field meanings as GpuTelemetry's."""

    source: str  # "vulkan", "nvml", "drm", or several joined by "+" after a merge
    key: str  # the probe's own id for it: "vulkan:0", "nvml:GPU-…", "drm:card0"
    pci: str = ""  # "0000:03:00.0" where known
    uuid: str = ""  # where known
    device_name: str = ""
    vendor: str = ""
    vendor_id: int = 0
    device_id: int = 0
    device_type: str = "other"
    driver_version: str = ""
    api_version: str = ""
    heap_size_bytes: tuple[int, ...] = ()
    heap_budget_bytes: tuple[int, ...] = ()
    heap_usage_bytes: tuple[int, ...] = ()
    heap_device_local: tuple[bool, ...] = ()
    memory_total_bytes: int = 0
    memory_used_bytes: int = 0
    utilization_ratio: float = NAN
    memory_utilization_ratio: float = NAN
    temperature_c: float = NAN
    power_w: float = NAN
    power_limit_w: float = NAN
    clock_graphics_mhz: float = NAN
    clock_memory_mhz: float = NAN
    draw_calls: int = 0  # per frame, summed over `apps` (their latest frames)
    apps: tuple[AppFrames, ...] = ()  # processes drawing through the Krystal Vulkan layer on it
    throttle_reasons: tuple[str, ...] = ()  # NVML's names; diagnostics only
    errors: tuple[str, ...] = field(default_factory=tuple)  # queries that failed this cycle

    def fill_from(self, other: GpuDevice) -> GpuDevice:
        """Self's known values kept, the unknown ones (NaN, 0, '', empty) taken from `other`."""
        changes: dict[str, object] = {}
        for f in fields(self):
            if f.name in ("source", "key", "errors", "throttle_reasons", "draw_calls", "apps"):
                continue
            mine = getattr(self, f.name)
            theirs = getattr(other, f.name)
            if _unknown(mine, f.name) and not _unknown(theirs, f.name):
                changes[f.name] = theirs
        mine = self.source.split("+")
        sources = mine + [s for s in other.source.split("+") if s not in mine]
        changes["source"] = "+".join(sources)
        changes["errors"] = self.errors + other.errors
        changes["throttle_reasons"] = self.throttle_reasons or other.throttle_reasons
        return replace(self, **changes)  # type: ignore[arg-type]


def _unknown(value: object, name: str) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if name == "device_type":
        return value == "other"
    return value in (0, "", ())
