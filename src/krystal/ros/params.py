"""Parameters declared from one table: descriptors with ranges and choices, validation with reasons.

A bad value given at start-up (parameters file, `-p`, a node's parameter_overrides) is logged and
replaced by the default instead of killing the node; a bad value set at run time is refused with the
reason (rqt and `ros2 param set` show it). Cross-checks over several parameters run once after all
are declared and on every change of a table parameter. Every refusal is WARN on the node's
/diagnostics ("parameters" task) with the parameter, the value, the reason and where it came from.
An integer is taken where a double is declared (`-p rate_hz:=10`, `ros2 param set ... 10`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
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

from krystal.ros.diagnostics import OK, WARN, Health, add_task, diagnostics_of


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

    def range_problem(self, value: Any) -> str | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        if self.min_value is not None and value < self.min_value:
            return f"{self.name}={value} is below {self.min_value}"
        if self.max_value is not None and value > self.max_value:
            return f"{self.name}={value} is above {self.max_value}"
        return None

    def check(self, value: Any) -> str | None:
        """The reason `value` is refused, or None."""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        problem = self.range_problem(value)
        if problem or self.validate is None or value is None:  # None: declared by type, value next
            return problem
        return self.validate(value)


Validator = Callable[[dict[str, Any]], str | None]

RUN_TIME = "run-time set_parameters"
_DOUBLES = (Parameter.Type.DOUBLE, Parameter.Type.DOUBLE_ARRAY)


def _as_declared(p: Param, value: Any) -> Any:
    """An integer (or a list of them) where a double is declared, as the double: integrators write
    `-p rate_hz:=10`. Anything else unchanged."""
    double = isinstance(p.default, float) or p.param_type in _DOUBLES
    double_list = p.param_type == Parameter.Type.DOUBLE_ARRAY or (
        isinstance(p.default, list) and bool(p.default) and all(isinstance(v, float) for v in p.default)
    )
    if double and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ints = isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )
    if double_list and value and ints:
        return [float(v) for v in value]
    return value


@dataclass(frozen=True)
class Refusal:
    """A value the node did not take: which parameter, the value, why, and where it came from."""

    name: str
    value: Any
    reason: str
    source: str

    def text(self) -> str:
        return f"{self.name}={self.value!r} refused ({self.reason}; from {self.source})"


class _Refusals:
    """One per node (several tables may share a node): the standing refusals, on /diagnostics as
    the "parameters" task, WARN while any stands. A later accepted value of a parameter clears it."""

    def __init__(self, node: Node) -> None:
        self._node = weakref.ref(node)
        self.standing: dict[str, Refusal] = {}
        self._task_added = False
        self.sources = _override_sources(node)
        self.tables: list[weakref.ref[ParamTable]] = []  # weak: _BOOKS must not keep the node alive
        # one pre-set callback per node: rclpy concatenates what each returns, so one per table
        # would hand every change over once per table
        node.add_pre_set_parameters_callback(self._pre_set)

    def _pre_set(self, changes: list[Parameter[Any]]) -> list[Parameter[Any]]:
        out = []
        tables = [t for t in (ref() for ref in self.tables) if t is not None]
        for change in changes:
            table = next((t for t in tables if change.name in t.names), None)
            out.append(table.pre_set(change) if table is not None else change)
        return out

    def refuse(self, refusal: Refusal, then: str = "") -> None:
        node = self._node()
        self.standing[refusal.name] = refusal
        if node is None:
            return
        node.get_logger().warning(f"parameter {refusal.text()}{then}")
        if not self._task_added:  # nodes without refusals keep their /diagnostics as they were
            self._task_added = True
            add_task(node, "parameters", self.health)
        diagnostics = diagnostics_of(node)
        if diagnostics is not None:
            diagnostics.level_changed("parameters", WARN)

    def accepted(self, names: set[str]) -> None:
        for name in names:
            self.standing.pop(name, None)

    def health(self) -> Health:
        if not self.standing:
            return Health(OK, "all parameter values taken")
        refusals = list(self.standing.values())
        values = {r.name: f"{r.value!r} refused: {r.reason} (from {r.source})" for r in refusals}
        return Health(WARN, "; ".join(r.text() for r in refusals), values)


_BOOKS: weakref.WeakKeyDictionary[Node, _Refusals] = weakref.WeakKeyDictionary()


def _book(node: Node) -> _Refusals:
    book = _BOOKS.get(node)
    if book is None:
        book = _BOOKS[node] = _Refusals(node)
    return book


def refusals(node: Node) -> dict[str, Refusal]:
    """The node's standing refusals by parameter name (what its "parameters" diagnostics show)."""
    return dict(_book(node).standing)


class _Allocator(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_void_p) for n in ("allocate", "deallocate", "reallocate", "zero_allocate", "state")
    ]


def _param_files(node: Node) -> list[str] | None:
    """The --params-file paths of the node's context, in order (rcl keeps them; rclpy does not
    expose them). rcl_context_t starts with its global rcl_arguments_t, so the context pointer is
    the arguments pointer. None when rcl cannot be asked."""
    try:
        rcl = ctypes.CDLL("librcl.so")
        rcutils = ctypes.CDLL("librcutils.so")
        pointer = node.context.handle.pointer  # type: ignore[union-attr]
        count_fn = rcl.rcl_arguments_get_param_files_count
        count_fn.argtypes, count_fn.restype = [ctypes.c_void_p], ctypes.c_int
        count = count_fn(pointer)
        if count <= 0:
            return []
        rcutils.rcutils_get_default_allocator.restype = _Allocator
        files = ctypes.POINTER(ctypes.c_char_p)()
        get = rcl.rcl_arguments_get_param_files
        get.argtypes = [ctypes.c_void_p, _Allocator, ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p))]
        if get(pointer, rcutils.rcutils_get_default_allocator(), ctypes.byref(files)) != 0:
            return None
        return [(files[i] or b"").decode() for i in range(count)]  # a few bytes kept: once per node
    except (OSError, AttributeError, TypeError, ValueError):
        return None


def _node_key_matches(key: str, fqn: str) -> bool:
    """rcl's node-name match for a parameters file's top-level key: `*` one token, `**` any."""
    pattern = "".join(
        "(/[^/]+)*" if tok == "**" else "/[^/]+" if tok == "*" else "/" + re.escape(tok)
        for tok in key.strip("/").split("/")
        if tok
    )
    return re.fullmatch(pattern, fqn) is not None


def _flatten(prefix: str, tree: Any, out: dict[str, Any]) -> None:
    if isinstance(tree, dict):
        for k, v in tree.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = tree


@functools.lru_cache(maxsize=8)
def _load_yaml(path: str, mtime_ns: int) -> Any:
    """A parameters file parsed once per version (`krystal run` reads it for each of its nodes)."""
    del mtime_ns  # part of the cache key only
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None


def _file_values(path: str, fqn: str) -> dict[str, Any]:
    try:
        doc = _load_yaml(path, os.stat(path).st_mtime_ns)
    except OSError:
        return {}
    out: dict[str, Any] = {}
    for key, section in (doc or {}).items() if isinstance(doc, dict) else ():
        if isinstance(section, dict) and _node_key_matches(str(key), fqn):
            _flatten("", section.get("ros__parameters", {}), out)
    return out


def _override_sources(node: Node) -> dict[str, str]:
    """Where each start-up override of `node` came from: a parameters file (the last one giving
    the value rcl kept), the command line `-p` (rcl's value differs from every file's), or the
    parameter_overrides of the program that made the node (not in rcl's overrides at all)."""
    overrides: dict[str, Parameter[Any]] = getattr(node, "_parameter_overrides", {})
    try:
        with node.handle:
            from_rcl: dict[str, Parameter[Any]] = node.handle.get_parameters(Parameter)
    except Exception:  # an rclpy without it: say less, never fail
        from_rcl = dict(overrides)
    fqn = node.get_fully_qualified_name()
    paths = _param_files(node)
    files = [(path, _file_values(path, fqn)) for path in paths or ()]
    sources: dict[str, str] = {}
    for name, param in overrides.items():
        rcl_param = from_rcl.get(name)
        if rcl_param is None or rcl_param.value != param.value:
            sources[name] = "the node's parameter_overrides (set by the program that made it)"
            continue
        in_files = [path for path, values in files if name in values and values[name] == param.value]
        if in_files:
            sources[name] = f"parameters file {in_files[-1]}"
        else:  # without the file list, a file's value cannot be told from -p: say so
            sources[name] = "command line -p" if paths is not None else "a parameters file or -p"
    return sources


def _rclpy_reason(exc: Exception, name: str) -> str:
    """The reason inside rclpy's "Invalid parameter value (...) for parameter. Reason: R: NAME"."""
    text = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
    text = text.split("Reason: ", 1)[-1]
    return text[: -len(name) - 2] if text.endswith(f": {name}") else text


def _named(reason: str, names: Sequence[str]) -> list[str]:
    """The parameters a cross-check's reason names (it names those it involves)."""
    return [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", reason)]


class ParamTable:
    """Declares `params` on `node` and keeps their current values in `values`.

    `cross_check` sees the would-be values of all parameters and may refuse a combination with a
    reason that names the parameters involved; `on_change` gets the changed names after a run-time
    update was accepted.
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
        self._book = _book(node)
        self.values: dict[str, Any] = {}
        self.rejected: dict[str, str] = {}  # start-up values replaced by defaults, and why
        self._declared = False  # while declaring, the callback checks values but applies nothing
        self._refused_why = ""  # our reason for the refusal rclpy is about to raise
        self.names = frozenset(self._params)
        self._book.tables.append(weakref.ref(self))
        node.add_on_set_parameters_callback(self._validate)
        for p in params:
            self.values[p.name] = self._declare(p)
        self._check_combination()
        self._declared = True

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def _declare(self, p: Param) -> Any:
        overrides: dict[str, Parameter[Any]] = getattr(self._node, "_parameter_overrides", {})
        given = overrides.get(p.name)
        if given is not None:
            value = _as_declared(p, given.value)
            if value is not given.value:
                overrides[p.name] = Parameter(p.name, value=value)
        try:
            return self._declare_one(p, ignore_override=False)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            reason = self._refused_why or _rclpy_reason(exc, p.name)
            self._refused_why = ""
            self.rejected[p.name] = reason
            source = self._book.sources.get(p.name, "start-up overrides")
            value = given.value if given else None
            self._book.refuse(Refusal(p.name, value, reason, source), f"; using the default {p.default!r}")
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

    def _check_combination(self) -> None:
        """The cross-check over the start-up values: a refused combination puts the parameters it
        names that came from outside back to their defaults, never a traceback; again while the
        cross-check finds another (it names one problem at a time)."""
        if self._cross_check is None:
            return
        done: set[str] = set()  # reset to their defaults already
        reset: list[str] = []
        reason = self._cross_check(self.values)
        while reason:
            named = _named(reason, list(self._params))
            given = [n for n in named if n in self._book.sources and n not in self.rejected]
            now = [n for n in (given or named or list(self._book.sources)) if n in self._params]
            now = [n for n in now if n not in done]
            if not now:  # nothing left to put back: the defaults themselves disagree
                break
            for name in now:
                self.rejected[name] = reason
                self._book.refuse(
                    Refusal(name, self.values[name], reason, self._book.sources.get(name, "defaults"))
                )
            defaults = [
                Parameter(n, value=self._params[n].default) for n in now if not self._params[n].read_only
            ]
            results = self._node.set_parameters(defaults) if defaults else []
            for param, result in zip(defaults, results, strict=True):
                if result.successful:
                    self.values[param.name] = param.value
            done.update(now)
            reset += now
            reason = self._cross_check(self.values)
        if reason:
            self._node.get_logger().error(f"parameters still inconsistent after taking defaults: {reason}")
        elif reset:
            self._node.get_logger().warning(
                "parameters " + ", ".join(f"{n}={self.values[n]!r}" for n in reset) + " (defaults) kept"
            )

    def pre_set(self, change: Parameter[Any]) -> Parameter[Any]:
        """Run-time: an integer for a double; refusals rclpy makes before our callback (type, range,
        read-only) recorded here, as rclpy gives no hook after them."""
        spec = self._params[change.name]
        if not self._declared:
            return change
        value = _as_declared(spec, change.value)
        taken = change if value is change.value else Parameter(change.name, value=value)
        declared = self._node.describe_parameter(taken.name)
        reason = None
        if declared.read_only:
            reason = f"{spec.name} is read-only"
        elif (
            not declared.dynamic_typing  # its type is the last value's: any type is taken
            and taken.type_ != Parameter.Type.NOT_SET
            and taken.type_.value != declared.type
        ):
            reason = f"wrong type {taken.type_.name}, expected {Parameter.Type(declared.type).name}"
        elif declared.floating_point_range or declared.integer_range:
            reason = spec.range_problem(taken.value)
        if reason:
            self._book.refuse(Refusal(spec.name, taken.value, reason, RUN_TIME))
        return taken

    def _validate(self, changes: list[Parameter[Any]]) -> SetParametersResult:
        proposed = dict(self.values)
        mine = [c for c in changes if c.name in self._params]  # qos_overrides.*, use_sim_time: rclpy's
        for change in mine:
            spec = self._params[change.name]
            if spec.read_only and self._declared:
                return self._refuse(change, f"{spec.name} is read-only")
            reason = spec.check(change.value)
            if reason:
                return self._refuse(change, reason)
            proposed[change.name] = change.value
        if not self._declared or not mine:
            return SetParametersResult(successful=True)
        if self._cross_check is not None:
            reason = self._cross_check(proposed)
            if reason:
                for change in mine:
                    self._book.refuse(Refusal(change.name, change.value, reason, RUN_TIME))
                return SetParametersResult(successful=False, reason=reason)
        changed = {c.name for c in mine}
        self.values = proposed
        self._book.accepted(changed)
        for name in changed:
            self.rejected.pop(name, None)
        if self._on_change is not None:
            self._on_change(changed)
        return SetParametersResult(successful=True)

    def _refuse(self, change: Parameter[Any], reason: str) -> SetParametersResult:
        if self._declared:
            self._book.refuse(Refusal(change.name, change.value, reason, RUN_TIME))
        else:
            self._refused_why = reason  # _declare records it with the value's source
        return SetParametersResult(successful=False, reason=reason)
