"""Parameters declared from one table: descriptors with ranges and choices, validation with reasons.

A bad value in the parameters file is logged and replaced by the default instead of killing the
node; a bad value set at run time is refused with the reason (rqt and `ros2 param set` show it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False
    validate: Callable[[Any], str | None] | None = None  # the reason a value is refused, or None
    # declared type where the default cannot tell it (an empty list would become a byte array)
    param_type: Parameter.Type | None = None

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.min_value is not None and self.max_value is not None:
            if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
                raise TypeError(f"{self.name}: a range needs a numeric default")
            if isinstance(self.default, int):
                d.integer_range = [
                    IntegerRange(from_value=int(self.min_value), to_value=int(self.max_value), step=0)
                ]
            else:
                d.floating_point_range = [
                    FloatingPointRange(
                        from_value=float(self.min_value), to_value=float(self.max_value), step=0.0
                    )
                ]
        return d

    def check(self, value: Any) -> str | None:
        """The reason `value` is refused, or None."""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        if self.min_value is not None and isinstance(value, (int, float)) and value < self.min_value:
            return f"{self.name}={value} is below {self.min_value}"
        if self.max_value is not None and isinstance(value, (int, float)) and value > self.max_value:
            return f"{self.name}={value} is above {self.max_value}"
        if self.validate is None or value is None:  # None: declared by type, its value comes next
            return None
        return self.validate(value)


Validator = Callable[[dict[str, Any]], str | None]


class ParamTable:
    """Declares `params` on `node` and keeps their current values in `values`.

    `cross_check` sees the would-be values of all parameters and may refuse a combination;
    `on_change` gets the changed names after a run-time update was accepted.
    """

    def __init__(
        self,
        node: Node,
        params: Sequence[Param],
        cross_check: Validator | None = None,
        on_change: Callable[[set[str]], None] | None = None,
    ) -> None:
        self._node = node
        self._params = {p.name: p for p in params}
        self._cross_check = cross_check
        self._on_change = on_change
        self.values: dict[str, Any] = {}
        self.rejected: dict[str, str] = {}  # parameters-file values replaced by defaults, and why
        self._declared = False  # while declaring, the callback checks values but applies nothing
        node.add_on_set_parameters_callback(self._validate)
        for p in params:
            self.values[p.name] = self._declare(p)
        self._declared = True

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def _declare(self, p: Param) -> Any:
        try:
            return self._declare_one(p, ignore_override=False)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            reason = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
            self.rejected[p.name] = reason
            self._node.get_logger().error(
                f"parameter {p.name}: value from the parameters file refused ({reason}); "
                f"using the default {p.default!r}"
            )
            return self._declare_one(p, ignore_override=True)

    def _declare_one(self, p: Param, ignore_override: bool) -> Any:
        if p.param_type is None:
            return self._node.declare_parameter(p.name, p.default, p.descriptor(), ignore_override).value
        final = p.descriptor()
        final.type = p.param_type.value
        writable = p.descriptor()
        writable.type, writable.read_only = final.type, False
        value: Any = self._node.declare_parameter(p.name, p.param_type, writable, ignore_override).value
        if value is None:  # declared by type, no value in the file (rcl reads `[]` as no value)
            result = self._node.set_parameters([Parameter(p.name, p.param_type, p.default)])[0]
            if not result.successful:
                raise RuntimeError(f"{p.name}: the default {p.default!r} is refused: {result.reason}")
            value = p.default
        if p.read_only:  # read-only only now: a read-only parameter cannot be given its default above
            self._node.set_descriptor(p.name, final)
        return value

    def _validate(self, changes: list[Parameter[Any]]) -> SetParametersResult:
        proposed = dict(self.values)
        for change in changes:
            spec = self._params.get(change.name)
            if spec is None:
                continue  # qos_overrides.*, use_sim_time: rclpy checks those
            if spec.read_only and self._declared:
                return SetParametersResult(successful=False, reason=f"{spec.name} is read-only")
            reason = spec.check(change.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            proposed[change.name] = change.value
        if self._cross_check is not None and self._declared:
            reason = self._cross_check(proposed)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if self._declared:
            changed = {c.name for c in changes if c.name in self._params}
            self.values = proposed
            if changed and self._on_change is not None:
                self._on_change(changed)
        return SetParametersResult(successful=True)
