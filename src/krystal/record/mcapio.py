"""Write and read MCAP files of ROS 2 CDR messages, as rosbag2's MCAP storage does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from mcap.reader import make_reader
from mcap.writer import Writer

from krystal.record.msgdefs import message_definition

# rmw enum values, as rosbag2 stores offered_qos_profiles
RELIABILITY = {"reliable": 1, "best_effort": 2}
DURABILITY = {"transient_local": 1, "volatile": 2}
_INFINITE = {"sec": 2147483647, "nsec": 4294967295}


def qos_metadata(reliability: str, durability: str, depth: int) -> str:
    """offered_qos_profiles in rosbag2's YAML shape (one profile)."""
    profile = {
        "history": 1,  # keep last
        "depth": depth,
        "reliability": RELIABILITY[reliability],
        "durability": DURABILITY[durability],
        "deadline": dict(_INFINITE),
        "lifespan": dict(_INFINITE),
        "liveliness": 1,
        "liveliness_lease_duration": dict(_INFINITE),
        "avoid_ros_namespace_conventions": False,
    }
    return str(yaml.safe_dump([profile], sort_keys=False))


def qos_from_metadata(text: str) -> tuple[str, str, int]:
    """(reliability, durability, depth) of the first profile; reliable/volatile/10 when unknown."""
    try:
        profiles = yaml.safe_load(text) or []
        p = profiles[0]
        rel = {1: "reliable", 2: "best_effort", "reliable": "reliable", "best_effort": "best_effort"}
        dur = {
            1: "transient_local",
            2: "volatile",
            "transient_local": "transient_local",
            "volatile": "volatile",
        }
        return (
            rel.get(p.get("reliability"), "reliable"),
            dur.get(p.get("durability"), "volatile"),
            int(p.get("depth") or 10),
        )
    except (yaml.YAMLError, IndexError, KeyError, TypeError, ValueError, AttributeError):
        return "reliable", "volatile", 10


class McapRecorder:
    """One MCAP file: a schema per type, a channel per topic, CDR payloads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._file)
        self._writer.start(profile="ros2", library="krystal record")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self.count = 0

    def add_topic(self, topic: str, type_name: str, qos: str = "") -> None:
        if topic in self._channels:
            return
        schema = self._schemas.get(type_name)
        if schema is None:
            schema = self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding="ros2msg", data=message_definition(type_name).encode()
            )
        metadata = {"offered_qos_profiles": qos} if qos else {}
        self._channels[topic] = self._writer.register_channel(
            topic=topic, message_encoding="cdr", schema_id=schema, metadata=metadata
        )
        self._seq[topic] = 0

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        self._seq[topic] += 1
        self._writer.add_message(
            channel_id=self._channels[topic],
            log_time=log_time_ns,
            data=data,
            publish_time=publish_time_ns if publish_time_ns is not None else log_time_ns,
            sequence=self._seq[topic],
        )
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            self._writer.finish()
            self._file.close()


@dataclass(frozen=True)
class Recorded:
    topic: str
    type_name: str
    qos: str  # offered_qos_profiles YAML, "" if absent
    log_time_ns: int
    data: bytes  # CDR, as published


class RecordingError(ValueError):
    """The file is not a readable MCAP recording (truncated, corrupt, not MCAP)."""


def read_mcap(path: Path, topics: list[str] | None = None) -> Iterator[Recorded]:
    """Every CDR message of the file in log-time order; RecordingError when it cannot be read."""
    with open(path, "rb") as f:
        try:
            reader = make_reader(f)
            for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=True):
                if channel.message_encoding != "cdr" or schema is None:
                    continue
                yield Recorded(
                    channel.topic,
                    schema.name,
                    channel.metadata.get("offered_qos_profiles", ""),
                    message.log_time,
                    bytes(message.data),
                )
        except RecordingError:
            raise
        except Exception as exc:  # the mcap reader raises many kinds on a bad file
            raise RecordingError(
                f"{path}: not a readable MCAP recording ({type(exc).__name__}: {exc})"
            ) from exc


def type_class(type_name: str) -> Any:
    """The rosidl Python class of "pkg/msg/Name" (ImportError/AttributeError when not installed)."""
    import importlib

    from krystal.record.msgdefs import split_type

    package, name = split_type(type_name)
    return getattr(importlib.import_module(f"{package}.msg"), name)
