"""`nvml_power`: a GPU's power limit through NVML (nvidia-ml-py); absent NVML is said plainly.

The limit's range comes from the GPU itself (power management limit constraints), so the command
schema is built after open. Setting a limit needs root on most drivers: refused with NVML's reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

from krystal.devices.driver import OK, Context, DeviceAbsent, DeviceGone, Opened, Outcome, Reading
from krystal.devices.schema import Arg, Command


class NvmlPowerDriver:
    options: ClassVar[Sequence[Arg]] = (
        Arg("index", "int", "GPU index as NVML counts them", 0, 63, default=0),
    )

    def __init__(self, options: dict[str, Any], context: Context) -> None:
        self._index = int(options["index"])
        self._nvml: Any = None
        self._handle: Any = None
        self._min_w, self._max_w = 0.0, 0.0

    def open(self) -> Opened:
        try:
            import pynvml
        except ImportError as exc:
            raise DeviceAbsent(f"nvidia-ml-py not installed ({exc})") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise DeviceAbsent(f"NVML not available on this machine ({exc})") from exc
        self._nvml = pynvml
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self._index)
            uuid = pynvml.nvmlDeviceGetUUID(self._handle)
            name = pynvml.nvmlDeviceGetName(self._handle)
        except pynvml.NVMLError as exc:
            raise DeviceGone(f"GPU {self._index}: {exc}") from exc
        try:
            lo, hi = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(self._handle)
            self._min_w, self._max_w = lo / 1000.0, hi / 1000.0
        except pynvml.NVMLError:
            self._min_w = self._max_w = 0.0  # no power management on this GPU: read-only
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731  (old bindings give bytes)
        return Opened(hardware_id=text(uuid), message=f"GPU {self._index} {text(name)}")

    def read_status(self) -> Reading:
        nv = self._nvml
        try:
            values = {
                "power_w": f"{nv.nvmlDeviceGetPowerUsage(self._handle) / 1000.0:.1f}",
                "power_limit_w": f"{nv.nvmlDeviceGetPowerManagementLimit(self._handle) / 1000.0:.1f}",
            }
        except nv.NVMLError as exc:
            if "GPU is lost" in str(exc) or "Uninitialized" in str(exc):
                raise DeviceGone(str(exc)) from exc
            return Reading(OK, f"GPU {self._index}: power readings not supported ({exc})")
        if self._max_w:
            values["limit_min_w"], values["limit_max_w"] = f"{self._min_w:.1f}", f"{self._max_w:.1f}"
        return Reading(
            OK, f"GPU {self._index} at {values['power_w']} W of {values['power_limit_w']} W", values
        )

    def commands(self) -> Sequence[Command]:
        if not self._max_w:
            return ()
        limit = Arg("limit_w", "float", "board power limit", self._min_w, self._max_w)
        return (Command("set_power_limit", (limit,), "set the GPU's power limit"),)

    def apply(self, command: str, args: dict[str, Any]) -> Outcome:
        if command != "set_power_limit":
            raise ValueError(f"unknown command {command}")
        milliwatts = round(float(args["limit_w"]) * 1000.0)
        self._nvml.nvmlDeviceSetPowerManagementLimit(self._handle, milliwatts)
        return Outcome(
            OK, f"power limit {milliwatts / 1000.0:g} W", {"power_limit_w": f"{milliwatts / 1000.0:g}"}
        )

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
            self._nvml = None
