"""Write and read MCAP files of ROS 2 CDR messages, as rosbag2's MCAP storage does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from mcap.exceptions import EndOfFile
from mcap.reader import SeekingReader
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
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
    """One MCAP file: a schema per type, a channel per topic, CDR payloads.

    The writer keeps the open chunk in memory; `flush_period_s` bounds what a killed recorder loses:
    at least that often (checked on each write, and by `flush_due()`) the chunk is closed and handed
    to the kernel, so a SIGKILL leaves every message older than that in the file (without a summary:
    `iter_messages` reads such a file).
    """

    def __init__(self, path: Path, flush_period_s: float = 1.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._file)
        self._writer.start(profile="ros2", library="krystal record")
        self._file.flush()  # the header is on disk even if nothing ever comes
        self.flush_period_s = flush_period_s
        self._flushed_at = time.monotonic()
        self._unflushed = 0
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
        self._unflushed += 1
        self.flush_due()

    def flush_due(self) -> bool:
        """Close the open chunk and write it out if flush_period_s has passed; True if it did."""
        if self._unflushed == 0 or self._file.closed:
            return False
        now = time.monotonic()
        if now - self._flushed_at < self.flush_period_s:
            return False
        self._writer.flush()  # ends the chunk (with its message index) and flushes the file
        self._flushed_at, self._unflushed = now, 0
        return True

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


@dataclass
class ReadNotes:
    """What `iter_messages` found besides the messages: a file without a summary (a recorder that
    was killed or is still writing) is read in file order up to where it is cut."""

    summary_missing: bool = False
    damage: str = ""  # why the read stopped before the end ("" when it reached the end)
    messages: int = 0

    def text(self, path: Path | str) -> str:
        """One line for the user, "" when the file was whole."""
        if not self.summary_missing and not self.damage:
            return ""
        what = "summary missing (the recorder did not finish it)" if self.summary_missing else "damaged"
        cut = f", {self.damage}" if self.damage else ""
        return f"{path}: {what}; read {self.messages} messages up to where it is cut{cut}"


def _has_summary(f: IO[bytes]) -> bool:
    try:
        return SeekingReader(f).get_summary() is not None
    except Exception:  # no footer, bad magic, a cut file: the mcap reader raises many kinds
        return False
    finally:
        f.seek(0)


def iter_messages(
    path: Path | str, topics: list[str] | None = None, notes: ReadNotes | None = None
) -> Iterator[tuple[Schema | None, Channel, Message]]:
    """Every message of an MCAP file, the one reader of play, harvest and check.

    A whole file (footer and summary): the seeking reader, in log-time order. Without a summary:
    mcap's stream reader, in file order (the order a recorder wrote), up to the first torn or
    corrupt record; `notes` says which happened. Raises RecordingError only when not even the
    header can be read (not MCAP at all).
    """
    notes = notes if notes is not None else ReadNotes()
    wanted = set(topics) if topics is not None else None
    with open(path, "rb") as f:
        if _has_summary(f):
            try:
                for schema, channel, message in SeekingReader(f).iter_messages(
                    topics=topics, log_time_order=True
                ):
                    notes.messages += 1
                    yield schema, channel, message
                return
            except Exception as exc:  # a summary that lies about its chunks: report, stop
                notes.damage = f"stopped at a damaged record ({type(exc).__name__}: {exc})"
                return
        notes.summary_missing = True
        schemas: dict[int, Schema] = {}
        channels: dict[int, Channel] = {}
        started = False
        try:
            for record in StreamReader(f, validate_crcs=True).records:
                started = True
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    on = channels.get(record.channel_id)
                    if on is None:
                        raise ValueError(f"message on unknown channel {record.channel_id}")
                    if wanted is not None and on.topic not in wanted:
                        continue
                    notes.messages += 1
                    yield schemas.get(on.schema_id), on, record
        except Exception as exc:  # the end of a cut file, or a torn record: read up to it
            if not started:
                raise RecordingError(
                    f"{path}: not a readable MCAP recording ({type(exc).__name__}: {exc})"
                ) from exc
            end = "the file ends inside a record" if isinstance(exc, EndOfFile) else repr(exc)
            notes.damage = f"stopped at byte {f.tell()}: {end}"


def read_mcap(
    path: Path, topics: list[str] | None = None, notes: ReadNotes | None = None
) -> Iterator[Recorded]:
    """Every CDR message of the file (see `iter_messages` for the order and a file without a
    summary); RecordingError when it is not MCAP at all."""
    for schema, channel, message in iter_messages(path, topics, notes):
        if channel.message_encoding != "cdr" or schema is None:
            continue
        yield Recorded(
            channel.topic,
            schema.name,
            channel.metadata.get("offered_qos_profiles", ""),
            message.log_time,
            bytes(message.data),
        )


def type_class(type_name: str) -> Any:
    """The rosidl Python class of "pkg/msg/Name" (ImportError/AttributeError when not installed)."""
    import importlib

    from krystal.record.msgdefs import split_type

    package, name = split_type(type_name)
    return getattr(importlib.import_module(f"{package}.msg"), name)
