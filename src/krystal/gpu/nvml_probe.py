"""NVIDIA GPUs through NVML (`nvidia-ml-py`), polled the way nvidia-smi does. ROS-free.

No library or no driver is "absent" ("no NVIDIA driver"), never an error. A query that raises
mid-run leaves its field NaN and is named in the device's errors; the other fields and devices go on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from krystal.gpu.model import GpuDevice, pci_address, uuid_text, vendor_name

NAN = math.nan
_ABSENT_ERRORS = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded", "NVMLError_NoPermission")
_REASONS = (  # NVML clocks-event (throttle) reason bits, nvml.h
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)


def throttle_reason_names(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in _REASONS if mask & bit)


def load_nvml() -> tuple[Any, str]:
    try:
        import pynvml
    except Exception as exc:
        return None, f"no NVIDIA driver (nvidia-ml-py not importable: {type(exc).__name__})"
    return pynvml, ""


@dataclass
class _Handle:
    index: int
    handle: Any
    static: GpuDevice


def _ask(errors: list[str], what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), or None with the failure named in `errors` (NotSupported is not a failure)."""
    try:
        return fn(*args)
    except Exception as exc:
        if type(exc).__name__ != "NVMLError_NotSupported":
            errors.append(f"{what}: {exc}")
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlProbe:
    def __init__(self, nvml_module: Any = None, absent_reason: str = "") -> None:
        self.absent_reason = absent_reason
        self.failure = ""  # NVML was there and init or enumeration failed
        self._nvml = nvml_module
        self._handles: list[_Handle] = []
        self._initialized = False
        if self._nvml is None and not absent_reason:
            self._nvml, self.absent_reason = load_nvml()
        if self._nvml is not None:
            self._open()

    @property
    def available(self) -> bool:
        return self._initialized

    def _open(self) -> None:
        nv = self._nvml
        try:
            nv.nvmlInit()
        except Exception as exc:
            if type(exc).__name__ in _ABSENT_ERRORS or isinstance(exc, OSError):
                self.absent_reason = "no NVIDIA driver"
            else:
                self.failure = f"NVML init failed: {exc}"
            return
        self._initialized = True
        try:
            driver = _text(nv.nvmlSystemGetDriverVersion())
        except Exception:
            driver = ""
        try:
            count = int(nv.nvmlDeviceGetCount())
        except Exception as exc:
            self.failure = f"NVML device count failed: {exc}"
            return
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                pci = nv.nvmlDeviceGetPciInfo(h)
                ids = int(getattr(pci, "pciDeviceId", 0))
                vendor_id, device_id = ids & 0xFFFF, ids >> 16
                static = GpuDevice(
                    source="nvml",
                    key=f"nvml:{i}",
                    pci=pci_address(_text(getattr(pci, "busId", ""))),
                    uuid=uuid_text(_text(nv.nvmlDeviceGetUUID(h))),
                    device_name=_text(nv.nvmlDeviceGetName(h)),
                    vendor=vendor_name(vendor_id or 0x10DE),
                    vendor_id=vendor_id or 0x10DE,
                    device_id=device_id,
                    device_type="discrete",
                    driver_version=driver,
                )
            except Exception as exc:
                self.failure = f"NVML device {i} not described: {exc}"
                continue
            self._handles.append(_Handle(i, h, static))
        if not self._handles and not self.failure:
            self.absent_reason = "no NVIDIA GPU"

    def sample(self) -> list[GpuDevice]:
        nv = self._nvml
        out = []
        for dev in self._handles:
            errors: list[str] = []

            h = dev.handle
            util = _ask(errors, "utilization", nv.nvmlDeviceGetUtilizationRates, h)
            mem = _ask(errors, "memory", nv.nvmlDeviceGetMemoryInfo, h)
            temp = _ask(errors, "temperature", nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
            power = _ask(errors, "power", nv.nvmlDeviceGetPowerUsage, h)
            limit = _ask(errors, "power limit", nv.nvmlDeviceGetEnforcedPowerLimit, h)
            gclk = _ask(errors, "graphics clock", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_GRAPHICS)
            mclk = _ask(errors, "memory clock", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM)
            reasons = _ask(errors, "throttle reasons", nv.nvmlDeviceGetCurrentClocksThrottleReasons, h)
            reason_names = throttle_reason_names(int(reasons)) if reasons is not None else ()
            s = dev.static
            out.append(
                GpuDevice(
                    **{
                        **s.__dict__,
                        "utilization_ratio": util.gpu / 100.0 if util is not None else NAN,
                        "memory_utilization_ratio": util.memory / 100.0 if util is not None else NAN,
                        "memory_total_bytes": int(mem.total) if mem is not None else 0,
                        "memory_used_bytes": int(mem.used) if mem is not None else 0,
                        "temperature_c": float(temp) if temp is not None else NAN,
                        "power_w": power / 1000.0 if power is not None else NAN,
                        "power_limit_w": limit / 1000.0 if limit is not None else NAN,
                        "clock_graphics_mhz": float(gclk) if gclk is not None else NAN,
                        "clock_memory_mhz": float(mclk) if mclk is not None else NAN,
                        "throttle_reasons": reason_names,
                        "errors": tuple(errors),
                    }
                )
            )
        return out

    def close(self) -> None:
        if self._initialized:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
        self._initialized = False
        self._handles = []
