"""The driver interface every device implements, and how drivers are found (built-ins, entry points).

A driver is a class with `options` (its config schema) whose instances open, read status, list
commands, apply one and close. It may raise anything: the agent turns exceptions into health, and
`DeviceGone` into a reconnect with backoff. Third-party packages add drivers through the
`krystal.device_drivers` entry-point group, as ros2cli finds its verbs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from krystal.devices.schema import Arg, Command

ENTRY_POINT_GROUP = "krystal.device_drivers"
OK, WARN, ERROR = 0, 1, 2  # DeviceStatus / DiagnosticStatus levels

# Registered in code: the package is ament_cmake, so it installs no entry points of its own.
BUILTIN: dict[str, str] = {
    "simulated": "krystal.devices.drivers.simulated:SimulatedDriver",
    "sysfs_pwm": "krystal.devices.drivers.sysfs_pwm:SysfsPwmDriver",
    "nvml_power": "krystal.devices.drivers.nvml_power:NvmlPowerDriver",
    "model": "krystal.devices.drivers.model:ModelDriver",
}


class DeviceGone(RuntimeError):
    """The device is absent or vanished (unplugged, file gone): retried with backoff."""


class DeviceAbsent(DeviceGone):
    """The hardware does not exist on this machine (no NVML, no hwmon): reported, retried slowly."""


@dataclass(frozen=True)
class Opened:
    hardware_id: str  # serial, bus address or path
    message: str = "open"


@dataclass(frozen=True)
class Reading:
    """One status read: level, a short message and readings with units in the keys."""

    level: int = OK
    message: str = "ok"
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What a command did; `values` are its results (units in the keys)."""

    level: int = OK
    message: str = "done"
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """What the host gives a driver beyond its options: who it is, and services the shell offers."""

    device_id: str
    # name -> callable; e.g. "parameters": a RemoteParameters for drivers that set ROS parameters
    services: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Driver(Protocol):
    options: ClassVar[Sequence[Arg]]

    def open(self) -> Opened: ...

    def read_status(self) -> Reading: ...

    def commands(self) -> Sequence[Command]: ...

    def apply(self, command: str, args: dict[str, Any]) -> Outcome: ...

    def close(self) -> None: ...


DriverFactory = Callable[[dict[str, Any], Context], Driver]


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def third_party() -> dict[str, Any]:
    """Entry points of the group, by name (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}  # the 3.10+ selection API


def available() -> list[str]:
    """Every driver name this process can use: built-ins, then installed entry points."""
    return sorted(set(BUILTIN) | set(third_party()))


def find_driver(name: str) -> Any:
    """The driver class for `name`; built-ins win over an entry point of the same name."""
    if name in BUILTIN:
        return _load(BUILTIN[name])
    ep = third_party().get(name)
    if ep is None:
        raise LookupError(f"no device driver {name!r} (available: {', '.join(available())})")
    return ep.load()
