"""Command and option schemas: names, types, ranges, choices and allowed lifecycle states.

Arguments arrive as strings (diagnostic_msgs/KeyValue); a schema turns them into typed values or
says, in one line, why it cannot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TYPES = ("float", "int", "bool", "str")
LIFECYCLE_LABELS = ("unconfigured", "inactive", "active", "finalized")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class SchemaError(ValueError):
    """A value, argument set or schema that does not fit; the message is the reason."""


@dataclass(frozen=True)
class Arg:
    """One named, typed argument (or driver option)."""

    name: str
    type: str = "float"
    description: str = ""
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    default: Any = None  # None: required

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise SchemaError(f"argument {self.name}: type {self.type!r} is not one of {', '.join(TYPES)}")

    @property
    def required(self) -> bool:
        return self.default is None

    def parse(self, text: str) -> Any:
        """The typed value of `text`, or SchemaError with the reason."""
        raw = text.strip()
        value: Any
        if self.type == "float":
            try:
                value = float(raw)
            except ValueError:
                raise SchemaError(f"{self.name}={text!r} is not a number") from None
            if not math.isfinite(value):
                raise SchemaError(f"{self.name}={text!r} is not a finite number")
        elif self.type == "int":
            try:
                value = int(raw)
            except ValueError:
                raise SchemaError(f"{self.name}={text!r} is not an integer") from None
        elif self.type == "bool":
            if raw.lower() in _TRUE:
                value = True
            elif raw.lower() in _FALSE:
                value = False
            else:
                raise SchemaError(f"{self.name}={text!r} is not a boolean (true/false)")
        else:
            value = text
        if self.choices and str(value) not in self.choices:
            raise SchemaError(f"{self.name}={text!r} is not one of {', '.join(self.choices)}")
        if self.type in ("float", "int"):
            if self.min_value is not None and value < self.min_value:
                raise SchemaError(f"{self.name}={value} is below {self.min_value:g}")
            if self.max_value is not None and value > self.max_value:
                raise SchemaError(f"{self.name}={value} is above {self.max_value:g}")
        return value

    def describe(self) -> str:
        parts = [self.type]
        if self.min_value is not None or self.max_value is not None:
            lo = "" if self.min_value is None else f"{self.min_value:g}"
            hi = "" if self.max_value is None else f"{self.max_value:g}"
            parts.append(f"[{lo}..{hi}]")
        if self.choices:
            parts.append("{" + "|".join(self.choices) + "}")
        if not self.required:
            parts.append(f"default {self.default}")
        return f"{self.name}: {' '.join(parts)}"


@dataclass(frozen=True)
class Command:
    """One command a driver accepts, with its arguments and the lifecycle states it runs in."""

    name: str
    args: tuple[Arg, ...] = ()
    description: str = ""
    states: tuple[str, ...] = ("active",)

    def parse(self, arguments: Mapping[str, str]) -> dict[str, Any]:
        """Typed arguments (defaults filled in), or SchemaError naming the first problem."""
        known = {a.name: a for a in self.args}
        unknown = sorted(set(arguments) - set(known))
        if unknown:
            allowed = ", ".join(known) or "none"
            raise SchemaError(f"{self.name}: unknown argument(s) {', '.join(unknown)} (accepts {allowed})")
        out: dict[str, Any] = {}
        for a in self.args:
            if a.name in arguments:
                out[a.name] = a.parse(arguments[a.name])
            elif a.required:
                raise SchemaError(f"{self.name}: missing argument {a.name} ({a.describe()})")
            else:
                out[a.name] = a.default
        return out

    def describe(self) -> str:
        args = ", ".join(a.describe() for a in self.args)
        return f"{self.name}({args}) in {'/'.join(self.states)}"


@dataclass(frozen=True)
class Accepted:
    command: Command
    args: dict[str, Any] = field(default_factory=dict)


def validate(commands: Sequence[Command], name: str, arguments: Mapping[str, str], state: str) -> Accepted:
    """The command and its typed arguments, or SchemaError: unknown, wrong state, bad arguments."""
    by_name = {c.name: c for c in commands}
    command = by_name.get(name)
    if command is None:
        raise SchemaError(f"unknown command {name!r} (accepts {', '.join(by_name) or 'none'})")
    if state not in command.states:
        raise SchemaError(f"{name} needs the device {' or '.join(command.states)}, it is {state}")
    return Accepted(command, command.parse(arguments))


def parse_pairs(items: Sequence[str]) -> dict[str, str]:
    """["key=value", ...] (the config's form) as a dict; SchemaError on an item without '='."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SchemaError(f"option {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def parse_options(specs: Sequence[Arg], items: Sequence[str]) -> dict[str, Any]:
    """A driver's typed options from config items; unknown or bad ones raise SchemaError."""
    return Command("options", tuple(specs), states=LIFECYCLE_LABELS).parse(parse_pairs(items))
