"""cdr.FieldReader against rclpy's own deserialization of the same bytes: random messages of types
that hold every kind of field (nested messages, strings, fixed arrays, sequences of primitives,
strings and messages), any subset of fields read; damaged bytes give ValueError, never a crash."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from krystal.msg import AudioFeatures, RenderStats
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import BatteryState, Imu, JointState

from krystal.ros.msgdef import message_class
from krystal.temporal.cdr import FieldReader, Unsupported
from krystal.temporal.node import fields_of

TYPES = [RenderStats, AudioFeatures, DiagnosticArray, JointState, Imu, BatteryState]
INTS = {
    "uint8": (0, 2**8 - 1), "int8": (-(2**7), 2**7 - 1), "uint16": (0, 2**16 - 1),
    "int16": (-(2**15), 2**15 - 1), "uint32": (0, 2**32 - 1), "int32": (-(2**31), 2**31 - 1),
    "uint64": (0, 2**64 - 1), "int64": (-(2**63), 2**63 - 1),
}  # fmt: skip


def type_name(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}/{cls.__name__}"


def _read(cls: type, paths: list[tuple[str | int, ...]], raw: bytes) -> Any:
    return FieldReader(type_name(cls), paths, fields_of).read(raw)


def _value(draw: Any, t: str) -> Any:
    if t.startswith("sequence<") or t.endswith("]"):
        if t.endswith("]"):
            base, _, n = t[:-1].partition("[")
            size = int(n)
        else:
            base, size = t[len("sequence<") : -1].split(",", maxsplit=1)[0], draw(st.integers(0, 4))
        return [_value(draw, base) for _ in range(size)]
    if t in INTS:
        return draw(st.integers(*INTS[t]))
    if t == "float":
        return draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
    if t == "double":
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    if t == "boolean":
        return draw(st.booleans())
    if t == "octet":
        return draw(st.binary(min_size=1, max_size=1))
    if t.startswith("string"):
        return draw(st.text(max_size=9))
    return _message(draw, message_class(t))


def _message(draw: Any, cls: type) -> Any:
    msg = cls()
    for name, t in cls.get_fields_and_field_types().items():  # type: ignore[attr-defined]
        setattr(msg, name, _value(draw, t))
    return msg


@st.composite
def messages(draw: Any) -> Any:
    return _message(draw, draw(st.sampled_from(TYPES)))


def _plain(value: Any) -> Any:
    """rclpy's values as the reader gives them: lists for arrays, ints for octets."""
    if isinstance(value, bytes) and len(value) == 1:
        return value[0]
    if hasattr(value, "get_fields_and_field_types"):
        return {n: _plain(getattr(value, n)) for n in value.get_fields_and_field_types()}
    if isinstance(value, (str, bytes)):
        return value
    if hasattr(value, "tolist"):  # numpy arrays and scalars, array.array
        return _plain(value.tolist())
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return value


def _view_plain(value: Any) -> Any:
    if hasattr(value, "__dict__"):
        return {n: _view_plain(v) for n, v in vars(value).items()}
    if isinstance(value, list):
        return [_view_plain(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=messages(), data=st.data())
def test_any_fields_read_equal_rclpys_deserialization(msg: Any, data: Any) -> None:
    cls = type(msg)
    raw = serialize_message(msg)
    truth = _plain(deserialize_message(raw, cls))
    names = list(cls.get_fields_and_field_types())
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    view = _view_plain(FieldReader(type_name(cls), [(n,) for n in chosen], fields_of).read(raw))
    assert view.keys() == set(chosen)
    for n in chosen:
        assert _same(view[n], truth[n]), (n, view[n], truth[n])


@settings(max_examples=100, deadline=None)
@given(msg=messages())
def test_nested_paths_and_indices(msg: Any) -> None:
    """Paths as the specs write them: a leaf inside nested messages, an element of an array."""
    cls = type(msg)
    raw = serialize_message(msg)
    truth = _plain(deserialize_message(raw, cls))
    view = _read(cls, [("header", "stamp", "sec"), ("header", "stamp", "nanosec")], raw)
    assert (view.header.stamp.sec, view.header.stamp.nanosec) == (
        truth["header"]["stamp"]["sec"],
        truth["header"]["stamp"]["nanosec"],
    )
    assert not hasattr(view.header, "frame_id")
    if cls is DiagnosticArray and truth["status"]:
        v = _read(cls, [("status", 0, "level"), ("status", 0, "values")], raw)
        assert [s.level for s in v.status] == [s["level"] for s in truth["status"]]
        assert _same(_view_plain(v.status[0].values), truth["status"][0]["values"])
    if cls is Imu:
        got = _read(cls, [("angular_velocity_covariance", 4), ("linear_acceleration", "z")], raw)
        assert got.angular_velocity_covariance[4] == truth["angular_velocity_covariance"][4]
        assert got.linear_acceleration.z == truth["linear_acceleration"]["z"]


@settings(max_examples=150, deadline=None)
@given(msg=messages(), data=st.data())
def test_damaged_bytes_give_value_error_never_a_crash(msg: Any, data: Any) -> None:
    cls = type(msg)
    raw = bytearray(serialize_message(msg))
    reader = FieldReader(type_name(cls), [(n,) for n in cls.get_fields_and_field_types()], fields_of)
    cut = data.draw(st.integers(0, len(raw) - 1))
    flips = data.draw(st.lists(st.tuples(st.integers(4, len(raw) - 1), st.integers(0, 255)), max_size=4))
    damaged = bytearray(raw)
    for at, byte in flips:
        damaged[at] = byte
    for case in (bytes(raw[:cut]), bytes(damaged)):
        with suppress(ValueError):  # Unsupported is one: a cut inside the encapsulation header
            reader.read(case)


def test_reads_only_to_the_last_field_it_needs() -> None:
    """A cut after the wanted fields still reads them: the walk stops there."""
    msg = RenderStats(render_time_ms_p99=21.5, mode="edges", kernel="sobel")
    msg.header.frame_id = "renderer"
    raw = serialize_message(msg)
    view = FieldReader("krystal/RenderStats", [("render_time_ms_p99",)], fields_of).read(raw[:-16])
    assert view.render_time_ms_p99 == 21.5
    with pytest.raises(ValueError, match="ends"):
        FieldReader("krystal/RenderStats", [("kernel_size",)], fields_of).read(raw[:-1])


def test_what_it_does_not_walk_is_refused_clearly() -> None:
    raw = bytearray(serialize_message(RenderStats()))
    raw[1] = 0x07  # XCDR2
    reader = FieldReader("krystal/RenderStats", [("budget_ms",)], fields_of)
    with pytest.raises(Unsupported, match="encapsulation 0007"):
        reader.read(bytes(raw))
    with pytest.raises(Unsupported, match="no field 'budget'"):
        FieldReader("krystal/RenderStats", [("budget",)], fields_of)
    with pytest.raises(Unsupported, match="'wstring'"):
        FieldReader("x/Wide", [("a",)], lambda t: {"a": "wstring"})
