"""Every custom message and service: import, construct with non-default values, round-trip."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
from rclpy.serialization import deserialize_message, serialize_message

ROOT = Path(__file__).resolve().parent.parent


def get_message(name: str):
    """'pkg/Type' or 'pkg/msg/Type' to the class (rosidl_runtime_py is not among the wheels)."""
    parts = name.split("/")
    package, kind, type_name = (parts[0], "msg", parts[1]) if len(parts) == 2 else parts
    return getattr(importlib.import_module(f"{package}.{kind}"), type_name)


def get_service(name: str):
    return get_message(name)


MESSAGES = sorted(p.stem for p in (ROOT / "msg").glob("*.msg"))
SERVICES = sorted(p.stem for p in (ROOT / "srv").glob("*.srv"))


def _sample(type_name: str, index: int):
    """A non-default value for a rosidl field type string."""
    if type_name.startswith("sequence<"):
        inner = type_name[len("sequence<") : -1].split(",", maxsplit=1)[0]
        return [_sample(inner, index + k) for k in range(3)]
    if type_name == "boolean":
        return True
    if type_name in ("float", "double"):
        return 1.5 + index
    if type_name == "string":
        return f"value {index} ü"
    if type_name == "octet":
        return bytes([index % 256])
    if type_name.startswith(("int", "uint")):
        return 7 + index
    if "/" in type_name:
        nested = get_message(type_name)()
        _fill(nested)
        return nested
    raise AssertionError(f"no sample for {type_name}")


def _fill(msg) -> None:
    for i, (name, type_name) in enumerate(msg.get_fields_and_field_types().items()):
        if type_name == "builtin_interfaces/Time":
            value = get_message(type_name)(sec=12 + i, nanosec=345)
        else:
            value = _sample(type_name, i)
        setattr(msg, name, value)


def test_every_interface_file_is_built() -> None:
    assert set(MESSAGES) == {
        "AsciiFrame",
        "AudioFeatures",
        "AudioPcm",
        "DeviceStatus",
        "GpuTelemetry",
        "RenderStats",
        "StyleDecision",
        "TemporalVerdict",
        "ThermalState",
    }
    assert SERVICES == ["CheckTrace", "DeviceCommand"]


@pytest.mark.parametrize("name", MESSAGES)
def test_message_round_trip(name: str) -> None:
    cls = get_message(f"krystal/msg/{name}")
    msg = cls()
    assert "header" in msg.get_fields_and_field_types(), f"{name} lacks a std_msgs/Header"
    _fill(msg)
    back = deserialize_message(serialize_message(msg), cls)
    assert back == msg
    assert back.header.frame_id == msg.header.frame_id != ""


@pytest.mark.parametrize("name", SERVICES)
def test_service_round_trip(name: str) -> None:
    srv = get_service(f"krystal/srv/{name}")
    for cls in (srv.Request, srv.Response):
        msg = cls()
        _fill(msg)
        assert deserialize_message(serialize_message(msg), cls) == msg


def test_fields_carry_units_or_are_dimensionless() -> None:
    """Float fields name their unit (or say they are a ratio/count/etc.)."""
    suffixes = (
        "_ms",
        "_s",
        "_c",
        "_w",
        "_mhz",
        "_hz",
        "_bytes",
        "_dbfs",
        "_db",
        "_lufs",
        "_bpm",
        "_ratio",
        "_fps",
        "_penalty",
        "_confidence",
        "_phase",
        "_strength",
        "_flatness",
        "_value",
    )
    allowed = {"robustness", "value", "confidence", "throttle_penalty"}
    for name in MESSAGES:
        cls = get_message(f"krystal/msg/{name}")
        for field, type_name in cls.get_fields_and_field_types().items():
            base = type_name.replace("sequence<", "").rstrip(">")
            if base in ("float", "double") and field not in allowed:
                assert field.endswith(suffixes) or "_ms_" in field, f"{name}.{field} has no unit"


def test_nan_survives_round_trip() -> None:
    cls = get_message("krystal/msg/GpuTelemetry")
    msg = cls(temperature_c=math.nan)
    assert math.isnan(deserialize_message(serialize_message(msg), cls).temperature_c)
