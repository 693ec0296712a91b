"""`sysfs_pwm`: a fan through Linux hwmon files: pwmN (0-255 duty), pwmN_enable, fanN_input (rpm).

hwmon's pwmN_enable: 0 full speed, 1 manual (pwmN applies), 2 and up automatic (chip or firmware).
The chip is found under `root` (default /sys/class/hwmon) by its `name` file, or the first chip
with pwmN. Closing gives the fan back to the mode it was in when opened (`restore_on_close`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from krystal.devices.driver import OK, WARN, Context, DeviceAbsent, DeviceGone, Opened, Outcome, Reading
from krystal.devices.schema import Arg, Command

MODES = {"full": 0, "manual": 1, "auto": 2}


class SysfsPwmDriver:
    options: ClassVar[Sequence[Arg]] = (
        Arg("root", "str", "folder holding hwmonN folders", default="/sys/class/hwmon"),
        Arg(
            "chip", "str", "hwmon chip name (its `name` file); empty: first chip with the channel", default=""
        ),
        Arg("channel", "int", "pwm/fan channel number", 1, 32, default=1),
        Arg("restore_on_close", "bool", "give the fan back to its previous mode on close", default=True),
    )

    def __init__(self, options: dict[str, Any], context: Context) -> None:
        self._opt = options
        self._n = int(options["channel"])
        self._dir: Path | None = None
        self._saved_enable: str | None = None

    def _find(self) -> Path:
        root = Path(self._opt["root"])
        if not root.is_dir():
            raise DeviceAbsent(f"no hwmon folder {root}")
        chip = self._opt["chip"]
        for d in sorted(root.iterdir()):
            if not (d / f"pwm{self._n}").exists():
                continue
            name = (d / "name").read_text().strip() if (d / "name").exists() else ""
            if not chip or name == chip:
                return d
        which = f"chip {chip!r}" if chip else "any chip"
        raise DeviceAbsent(f"no pwm{self._n} on {which} under {root}")

    def _file(self, stem: str) -> Path:
        assert self._dir is not None
        return self._dir / stem

    def _read(self, stem: str) -> str:
        try:
            return self._file(stem).read_text().strip()
        except FileNotFoundError as exc:
            raise DeviceGone(f"{self._file(stem)} vanished") from exc

    def _write(self, stem: str, value: int) -> None:
        try:
            self._file(stem).write_text(f"{value}\n")
        except FileNotFoundError as exc:
            raise DeviceGone(f"{self._file(stem)} vanished") from exc

    def open(self) -> Opened:
        self._dir = self._find()
        if self._saved_enable is None and self._file(f"pwm{self._n}_enable").exists():
            self._saved_enable = self._read(f"pwm{self._n}_enable")
        return Opened(hardware_id=str(self._file(f"pwm{self._n}")), message=f"fan on {self._dir.name}")

    def read_status(self) -> Reading:
        raw = int(self._read(f"pwm{self._n}"))
        values = {"pwm_raw": str(raw), "duty_percent": f"{raw * 100.0 / 255.0:.1f}"}
        enable_file = f"pwm{self._n}_enable"
        if self._file(enable_file).exists():
            enable = int(self._read(enable_file))
            values["mode"] = {0: "full", 1: "manual"}.get(enable, "auto")
        if self._file(f"fan{self._n}_input").exists():
            values["fan_rpm"] = self._read(f"fan{self._n}_input")
            if int(values["fan_rpm"]) == 0 and raw > 0 and values.get("mode") != "auto":
                return Reading(WARN, f"fan {self._n} stopped at {values['duty_percent']} % duty", values)
        return Reading(OK, f"fan {self._n} at {values['duty_percent']} %", values)

    def commands(self) -> Sequence[Command]:
        return (
            Command(
                "set_duty",
                (Arg("duty_percent", "float", "fan duty cycle", 0.0, 100.0),),
                "manual mode at this duty cycle",
            ),
            Command(
                "set_mode", (Arg("mode", "str", "hwmon control mode", choices=tuple(MODES)),), "control mode"
            ),
        )

    def apply(self, command: str, args: dict[str, Any]) -> Outcome:
        enable = f"pwm{self._n}_enable"
        if command == "set_duty":
            raw = round(float(args["duty_percent"]) * 255.0 / 100.0)
            if self._file(enable).exists():
                self._write(enable, MODES["manual"])
            self._write(f"pwm{self._n}", raw)
            return Outcome(OK, f"pwm{self._n}={raw}", {"pwm_raw": str(raw)})
        if command == "set_mode":
            self._write(enable, MODES[str(args["mode"])])
            return Outcome(OK, f"pwm{self._n}_enable={MODES[str(args['mode'])]}")
        raise ValueError(f"unknown command {command}")

    def close(self) -> None:
        if self._dir is not None and self._saved_enable is not None and self._opt["restore_on_close"]:
            with contextlib.suppress(OSError):
                self._file(f"pwm{self._n}_enable").write_text(self._saved_enable + "\n")
