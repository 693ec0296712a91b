"""Write and read MCAP files of ROS 2 CDR messages, as rosbag2's MCAP storage does."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
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
    """MCAP files of one recording: a schema per type, a channel per topic, CDR payloads.

    The writer keeps the open chunk in memory; `flush_period_s` bounds what a killed recorder loses:
    at least that often (checked on each write, and by `flush_due()`) the chunk is closed and handed
    to the kernel, so a SIGKILL leaves every message older than that in the file (without a summary:
    `iter_messages` reads such a file).

    A write that fails (a full disk) never raises: the file is cut back to its last whole chunk and
    closed as it is (readable without a summary), `error` says why, messages are dropped and counted,
    and every `retry_s` a new file `<stem>_<n><suffix>` is tried, with every topic registered again;
    `paths` lists the files written.
    """

    def __init__(
        self,
        path: Path,
        flush_period_s: float = 1.0,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.paths: list[Path] = []
        self.flush_period_s = flush_period_s
        self.retry_s = retry_s
        self._clock = clock
        self._topics: dict[str, tuple[str, str]] = {}  # topic -> (type, qos), to register in a new file
        self._seq: dict[str, int] = {}
        self.count = 0  # messages in the files (or in the open chunk)
        self.dropped = 0  # messages lost to failed writes
        self.error = ""  # why the recording is not being written now; "" while it is
        self.failures = 0
        self._retry_at = 0.0
        self._open(path)  # a failure here (no such folder, no space at all) is the caller's to report

    def _open(self, path: Path) -> None:
        file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in _abandon or close)
        try:
            writer = Writer(file)
            writer.start(profile="ros2", library="krystal record")
            self._schemas: dict[str, int] = {}
            self._channels: dict[str, int] = {}
            self._file, self._writer = file, writer
            for topic, (type_name, qos) in self._topics.items():
                self._register(topic, type_name, qos)
            writer.flush()  # the header (and the topics) is on disk even if nothing ever comes
        except BaseException:
            with contextlib.suppress(OSError):
                file.close()
            path.unlink(missing_ok=True)
            raise
        self.paths.append(path)
        self._good_size = file.tell()
        self._flushed_at = self._clock()
        self._unflushed = 0

    def add_topic(self, topic: str, type_name: str, qos: str = "") -> None:
        if topic in self._topics:
            return
        self._topics[topic] = (type_name, qos)
        self._seq[topic] = 0
        if not self.error:
            self._guard(lambda: self._register(topic, type_name, qos))

    def _register(self, topic: str, type_name: str, qos: str) -> None:
        schema = self._schemas.get(type_name)
        if schema is None:
            schema = self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding="ros2msg", data=message_definition(type_name).encode()
            )
        metadata = {"offered_qos_profiles": qos} if qos else {}
        self._channels[topic] = self._writer.register_channel(
            topic=topic, message_encoding="cdr", schema_id=schema, metadata=metadata
        )

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        self._seq[topic] += 1
        if self.error and not self._resume():
            self.dropped += 1
            return
        self._guard(
            lambda: self._writer.add_message(
                channel_id=self._channels[topic],
                log_time=log_time_ns,
                data=data,
                publish_time=publish_time_ns if publish_time_ns is not None else log_time_ns,
                sequence=self._seq[topic],
            )
        )
        if self.error:
            self.dropped += 1
            return
        self.count += 1
        self._unflushed += 1
        self.flush_due()

    def flush_due(self) -> bool:
        """Close the open chunk and write it out if flush_period_s has passed; True if it did.
        After a failure, try a new file when retry_s has passed."""
        if self.error:
            self._resume()
            return False
        if self._unflushed == 0:
            return False
        now = self._clock()
        if now - self._flushed_at < self.flush_period_s:
            return False
        if not self._guard(self._writer.flush):  # ends the chunk (with its message index), flushes the file
            return False
        self._good_size = self._file.tell()
        self._flushed_at, self._unflushed = now, 0
        return True

    def _guard(self, write: Callable[[], object]) -> bool:
        try:
            write()
        except OSError as exc:
            self._abandon(exc)
            return False
        return True

    def _abandon(self, exc: OSError) -> None:
        """Close the current file as it is, cut back to its last whole chunk, and wait to retry."""
        path = self.paths[-1]
        self.dropped += self._unflushed  # the chunk that could not be written
        self.count -= self._unflushed
        self._unflushed = 0
        self.failures += 1
        self.error = f"writing {path} failed: {exc}"
        self._retry_at = self._clock() + self.retry_s
        with contextlib.suppress(OSError):
            self._file.close()  # its buffer may fail to flush again: the cut below removes it
        with contextlib.suppress(OSError):
            os.truncate(path, self._good_size)

    def _resume(self) -> bool:
        if self._clock() < self._retry_at:
            return False
        stem, suffix = self.path.stem, self.path.suffix
        path = self.path.with_name(f"{stem}_{len(self.paths)}{suffix}")
        try:
            self._open(path)
        except OSError as exc:
            self.error = f"{self.error.split('; ')[0]}; {path} could not be started either: {exc}"
            self._retry_at = self._clock() + self.retry_s
            return False
        self.error = ""
        return True

    def close(self) -> None:
        if self.error or self._file.closed:
            return
        try:
            self._writer.finish()
            self._file.close()
        except OSError as exc:  # no room for the summary: the file stays readable without one
            self._abandon(exc)


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


class Decoders:
    """mcap_ros2's decoders, one per schema of a file: the readers that decode (check, harvest,
    pattern cut) share it. Calling it gives the decoder of a message, None when there is none (no
    schema, not ROS 2 CDR)."""

    def __init__(self) -> None:
        from mcap_ros2.decoder import DecoderFactory

        self._factory = DecoderFactory()
        self._cache: dict[int, Callable[[bytes], Any] | None] = {}

    def __call__(self, schema: Schema | None, channel: Channel) -> Callable[[bytes], Any] | None:
        if schema is None:
            return None
        if schema.id not in self._cache:
            self._cache[schema.id] = self._factory.decoder_for(channel.message_encoding, schema)
        return self._cache[schema.id]


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
