"""The device agent's state machine, ROS-free: lifecycle steps, health, reconnects, commands.

The shell (node.py) maps lifecycle transitions to `configure`/`activate`/..., a timer to `poll`
and the DeviceCommand service to `command`. Every driver call runs on a `Worker` with a timeout;
whatever a driver raises becomes health or an answer, never an exception out of here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from krystal.backoff import Backoff
from krystal.devices.audit import AuditLog
from krystal.devices.calls import CallTimeout, Worker
from krystal.devices.driver import ERROR, OK, WARN, Context, DeviceAbsent, DeviceGone, Driver, Reading
from krystal.devices.schema import Command, SchemaError, parse_options, validate
from krystal.devices.store import CommandBook

REMEMBERED_COMMANDS = 256  # answers kept for idempotent retries, per device


@dataclass(frozen=True)
class DeviceConfig:
    """One device from the config: a name (its id in topic and service names), kind and driver."""

    name: str
    driver: str
    kind: str = ""
    uuid: str = ""
    options: tuple[str, ...] = ()  # "key=value" items, typed by the driver's `options` schema
    frame_id: str = ""


@dataclass(frozen=True)
class Answer:
    accepted: bool
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Timing:
    call_timeout_s: float = 2.0  # open, status, close
    command_timeout_s: float = 2.0  # default when the request says 0
    max_command_timeout_s: float = 10.0  # a request cannot hold the agent longer
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 8.0


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return (
        text if isinstance(exc, (DeviceGone, CallTimeout, SchemaError)) else f"{type(exc).__name__}: {text}"
    )


def check_reading(reading: Any) -> Reading:
    """The driver's reading if well formed; a non-finite number or a foreign type is a bad value."""
    if not isinstance(reading, Reading):
        return Reading(ERROR, f"driver returned {type(reading).__name__}, not a Reading")
    if reading.level not in (OK, WARN, ERROR, 3):
        return Reading(ERROR, f"driver returned level {reading.level!r}", {})
    values: dict[str, str] = {}
    bad: list[str] = []
    for key, value in dict(reading.values).items():
        text = value if isinstance(value, str) else repr(value)
        if not isinstance(key, str) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
            bad.append(f"{key!r}={text}")
            continue
        try:
            number = float(value)
        except ValueError:
            number = 0.0
        if not math.isfinite(number):
            bad.append(f"{key}={text}")
            continue
        values[key] = str(value)
    if bad:
        return Reading(ERROR, f"bad values from the device: {', '.join(bad[:4])}", values)
    return Reading(reading.level, str(reading.message), values)


class Agent:
    """One device: its driver, lifecycle label, health and the answers to its recent commands."""

    def __init__(
        self,
        config: DeviceConfig,
        driver_class: Any,
        uuid: str,
        *,
        timing: Timing = Timing(),
        audit: AuditLog | None = None,
        services: Mapping[str, Any] | None = None,
        commands: CommandBook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.uuid = uuid
        self.timing = timing
        self._driver_class = driver_class
        self._audit = audit
        self._services = dict(services or {})
        self._clock = clock
        self._worker = Worker(f"device-{config.name}")
        self._backoff = Backoff(timing.reconnect_initial_s, timing.reconnect_max_s)
        self._driver: Driver | None = None
        # answers by command id, on disk when given (a retry after a restart is still a duplicate)
        self._commands = commands if commands is not None else CommandBook(None, REMEMBERED_COMMANDS)
        self.state = "unconfigured"
        self.connected = False
        self.hardware_id = ""
        self.level, self.message = OK, "unconfigured"
        self.values: dict[str, str] = {}
        self.schema: tuple[Command, ...] = ()
        self.last_command = ""
        self.lost_at_s: float | None = None
        self.reconnects = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def configure(self) -> str | None:
        """Create the driver and open the device; the reason it failed, or None."""
        try:
            options = parse_options(getattr(self._driver_class, "options", ()), self.config.options)
            self._driver = self._driver_class(options, Context(self.config.name, self._services))
        except Exception as exc:
            return self._fail_configure(f"bad driver options: {_error_text(exc)}", ERROR)
        reason = self._open()
        if reason is not None:
            self._driver = None
            absent = reason.startswith("absent")
            return self._fail_configure(reason, OK if absent else ERROR)
        self.state = "inactive"
        self._event("configured", self.message)
        return None

    def _fail_configure(self, reason: str, level: int) -> str:
        if reason != self.message:  # a supervisor retrying an absent device logs it once
            self._event("configure_failed", reason)
        self.level, self.message = level, reason
        return reason

    def activate(self) -> None:
        self.state = "active"
        self._event("activated", self.message)

    def deactivate(self) -> None:
        self.state = "inactive"
        self._event("deactivated", self.message)

    def cleanup(self) -> None:
        self._close()
        self._driver = None
        self.state, self.level, self.message = "unconfigured", OK, "unconfigured"
        self._event("cleaned_up", "driver closed")

    def shutdown(self) -> None:
        if self.state == "finalized":
            return
        self._close()
        self._driver = None
        self.state, self.level, self.message = "finalized", OK, "finalized"
        self._event("shut_down", "driver closed")
        self._worker.stop()
        self._commands.close()

    # -- driver calls --------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any], timeout_s: float | None = None) -> Any:
        return self._worker.call(fn, self.timing.call_timeout_s if timeout_s is None else timeout_s)

    def _open(self) -> str | None:
        driver = self._driver
        assert driver is not None
        try:
            opened = self._call(driver.open)
            schema = tuple(self._call(driver.commands))
            for c in schema:
                if not isinstance(c, Command):
                    raise TypeError(f"commands() gave {type(c).__name__}, not a Command")
            reading = check_reading(self._call(driver.read_status))
        except DeviceAbsent as exc:
            self._close()
            return f"absent: {_error_text(exc)}"
        except Exception as exc:
            self._close()
            return f"cannot open: {_error_text(exc)}"
        self.schema = schema
        self.hardware_id = str(getattr(opened, "hardware_id", "") or "")
        self.connected = True
        self.level, self.message, self.values = reading.level, reading.message, reading.values
        return None

    def _close(self) -> None:
        driver, self.connected = self._driver, False
        if driver is None:
            return
        with contextlib.suppress(Exception):  # closing a vanished device fails: it is closed either way
            self._call(driver.close)

    def _read(self) -> None:
        driver = self._driver
        assert driver is not None
        try:
            reading = check_reading(self._call(driver.read_status))
        except Exception as exc:
            self._lost(_error_text(exc))
            return
        self.level, self.message, self.values = reading.level, reading.message, reading.values

    def _lost(self, reason: str) -> None:
        self._close()
        if self.lost_at_s is None:
            self.lost_at_s = self._clock()
            self._event("lost", reason)
        wait = self._backoff.failed(self._clock())
        self.level = ERROR
        self.message = f"device lost: {reason}; reopening in {wait:.1f} s (attempt {self._backoff.attempts})"

    def poll(self) -> None:
        """Read status, or retry a lost device when its backoff is due (configured states only)."""
        if self._driver is None or self.state not in ("inactive", "active"):
            return
        if self.connected:
            self._read()
            return
        if not self._backoff.due(self._clock()):
            return
        reason = self._open()
        if reason is None:
            self._backoff.reset()
            self.reconnects += 1
            self.lost_at_s = None
            self._event("reconnected", self.message)
        else:
            self._lost(reason)

    # -- commands ------------------------------------------------------------------------------

    def command(
        self,
        name: str,
        arguments: Sequence[tuple[str, str]],
        command_id: str = "",
        caller: str = "",
        timeout_s: float = 0.0,
    ) -> Answer:
        """Validate, run (bounded by the timeout) and audit one command; always answers."""
        t0 = self._clock()
        key = (name, tuple(arguments))
        known = self._commands.get(command_id) if command_id else None
        duplicate = known is not None
        if known is not None:
            first_key, first = known
            if first_key != key:
                answer = Answer(
                    False, ERROR, f"command id {command_id!r} was already used for another command"
                )
            elif first is None:
                answer = Answer(
                    False,
                    ERROR,
                    f"command id {command_id!r}: the agent stopped while it ran; "
                    "its outcome is unknown and it is not run again",
                )
            else:
                answer = Answer(**first)
        else:
            answer = self._run_once(name, arguments, command_id, key, timeout_s)
            self.last_command = name
        self._audit_command(name, arguments, command_id, caller, answer, duplicate, self._clock() - t0)
        return answer

    def _run_once(
        self,
        name: str,
        arguments: Sequence[tuple[str, str]],
        command_id: str,
        key: tuple[str, tuple[tuple[str, str], ...]],
        timeout_s: float,
    ) -> Answer:
        """Run with its id recorded first: no record, no run (exactly once is the promise)."""
        if not command_id:
            return self._run(name, arguments, timeout_s)
        try:
            self._commands.start(command_id, key)
        except (OSError, ValueError) as exc:
            return Answer(False, ERROR, f"{name}: command id {command_id!r} cannot be recorded ({exc})")
        answer = self._run(name, arguments, timeout_s)
        with contextlib.suppress(OSError, ValueError):  # lost on disk only: a retry gets "unknown"
            self._commands.finish(command_id, key, dataclasses.asdict(answer))
        return answer

    def _run(self, name: str, arguments: Sequence[tuple[str, str]], timeout_s: float) -> Answer:
        names = [k for k, _ in arguments]
        if len(set(names)) != len(names):
            return Answer(False, ERROR, f"{name}: an argument is given twice")
        if self._driver is None:
            return Answer(False, ERROR, f"{name}: the device is {self.state}, not configured")
        try:
            accepted = validate(self.schema, name, dict(arguments), self.state)
        except SchemaError as exc:
            return Answer(False, ERROR, str(exc))
        if not self.connected:
            return Answer(False, ERROR, f"{name}: the device is disconnected ({self.message})")
        if not math.isfinite(timeout_s) or timeout_s <= 0:
            timeout_s = self.timing.command_timeout_s
        timeout_s = min(timeout_s, self.timing.max_command_timeout_s)
        driver = self._driver
        try:
            outcome = self._call(lambda: driver.apply(name, accepted.args), timeout_s)
        except CallTimeout as exc:
            self.level, self.message = WARN, f"command {name} timed out"
            return Answer(False, ERROR, f"{name}: {exc}")
        except DeviceGone as exc:
            self._lost(_error_text(exc))
            return Answer(False, ERROR, f"{name}: device lost ({_error_text(exc)})")
        except Exception as exc:
            return Answer(False, ERROR, f"{name} failed: {_error_text(exc)}")
        level = getattr(outcome, "level", ERROR)
        level = level if level in (OK, WARN, ERROR) else ERROR
        values = {str(k): str(v) for k, v in dict(getattr(outcome, "values", {}) or {}).items()}
        return Answer(True, level, str(getattr(outcome, "message", "done")), values)

    # -- audit ---------------------------------------------------------------------------------

    def _audit_command(  # noqa: PLR0917  (one record's fields)
        self,
        name: str,
        arguments: Sequence[tuple[str, str]],
        command_id: str,
        caller: str,
        answer: Answer,
        duplicate: bool,
        duration_s: float,
    ) -> None:
        if self._audit is None:
            return
        self._audit.write(
            {
                "type": "command",
                "device": self.config.name,
                "uuid": self.uuid,
                "caller": caller,
                "command_id": command_id,
                "command": name,
                "arguments": dict(arguments),
                "state": self.state,
                "accepted": answer.accepted,
                "level": answer.level,
                "result": answer.message,
                "values": answer.values,
                "duplicate": duplicate,
                "duration_ms": round(duration_s * 1e3, 3),
            }
        )

    def _event(self, event: str, detail: str) -> None:
        if self._audit is not None:
            self._audit.write(
                {
                    "type": "event",
                    "device": self.config.name,
                    "uuid": self.uuid,
                    "event": event,
                    "detail": detail,
                }
            )

    def capabilities(self) -> list[str]:
        return [c.describe() for c in self.schema]
