"""`simulated`: a fan-like device with injectable faults, so the graph always has a device to drive.

Faults (option `fault` at start, or the `inject_fault` command, optionally for `duration_s`):
`timeout` (open and status reads hang), `disconnect` (the device vanishes), `bad_values` (readings
turn NaN), `slow_commands` (commands take `slow_command_s`). With `present_file` set, the device
exists only while that file does: an unplug a test or an operator can do from outside.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from krystal.devices.driver import OK, Context, DeviceGone, Opened, Outcome, Reading
from krystal.devices.schema import Arg, Command

FAULTS = ("none", "timeout", "disconnect", "bad_values", "slow_commands")


class SimulatedDriver:
    options: ClassVar[Sequence[Arg]] = (
        Arg("fault", "str", "fault active from the start", choices=FAULTS, default="none"),
        Arg("hang_s", "float", "how long a call hangs under the timeout fault", 0.0, 3600.0, default=30.0),
        Arg("slow_command_s", "float", "command duration under slow_commands", 0.0, 3600.0, default=5.0),
        Arg("present_file", "str", "the device exists only while this file does; empty: always", default=""),
        Arg("max_rpm", "float", "speed at 100 %", 1.0, 100000.0, default=3000.0),
    )

    def __init__(self, options: dict[str, Any], context: Context) -> None:
        self._opt = options
        self._id = context.device_id
        self._fault = str(options["fault"])
        self._fault_until = float("inf")
        self._speed_percent = 30.0
        self._open = False
        self._commands = 0
        self._lock = threading.Lock()

    def _active_fault(self) -> str:
        with self._lock:
            if self._fault != "none" and time.monotonic() >= self._fault_until:
                self._fault, self._fault_until = "none", float("inf")
            return self._fault

    def _check_present(self) -> None:
        path = self._opt["present_file"]
        if path and not os.path.exists(path):
            raise DeviceGone(f"{path} is gone (unplugged)")
        fault = self._active_fault()
        if fault == "disconnect":
            raise DeviceGone("simulated disconnect")
        if fault == "timeout":
            time.sleep(float(self._opt["hang_s"]))
            raise DeviceGone("simulated hang ended")

    def open(self) -> Opened:
        self._check_present()
        self._open = True
        return Opened(hardware_id=f"sim:{self._id}", message="simulated device open")

    def read_status(self) -> Reading:
        self._check_present()
        rpm = self._speed_percent / 100.0 * float(self._opt["max_rpm"])
        values = {
            "speed_percent": f"{self._speed_percent:.1f}",
            "fan_rpm": f"{rpm:.0f}",
            "commands_applied": str(self._commands),
            "fault": self._active_fault(),
        }
        if self._active_fault() == "bad_values":
            values["fan_rpm"] = "nan"
        return Reading(OK, f"simulated fan at {self._speed_percent:.0f} %", values)

    def commands(self) -> Sequence[Command]:
        return (
            Command(
                "set_speed",
                (Arg("speed_percent", "float", "fan duty", 0.0, 100.0),),
                "set the fan's duty cycle",
            ),
            Command("reset", (), "back to 30 % and no fault", states=("inactive", "active")),
            Command(
                "inject_fault",
                (
                    Arg("fault", "str", "fault to inject", choices=FAULTS),
                    Arg("duration_s", "float", "0: until cleared", 0.0, 3600.0, default=0.0),
                ),
                "make the simulated device misbehave",
                states=("inactive", "active"),
            ),
        )

    def apply(self, command: str, args: dict[str, Any]) -> Outcome:
        if command == "inject_fault":
            with self._lock:
                self._fault = str(args["fault"])
                duration = float(args["duration_s"])
                self._fault_until = time.monotonic() + duration if duration > 0 else float("inf")
            return Outcome(OK, f"fault {self._fault}" + (f" for {duration:g} s" if duration > 0 else ""))
        self._check_present()
        if self._active_fault() == "slow_commands":
            time.sleep(float(self._opt["slow_command_s"]))
        self._commands += 1
        if command == "reset":
            self._speed_percent = 30.0
            with self._lock:
                self._fault, self._fault_until = "none", float("inf")
            return Outcome(OK, "reset", {"speed_percent": "30.0"})
        if command == "set_speed":
            self._speed_percent = float(args["speed_percent"])
            return Outcome(
                OK, f"speed {self._speed_percent:g} %", {"speed_percent": f"{self._speed_percent:.1f}"}
            )
        raise ValueError(f"unknown command {command}")

    def close(self) -> None:
        self._open = False
