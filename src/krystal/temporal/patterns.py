"""The DTW pattern library: config lines, and patterns cut from an MCAP recording.

A line is `name; topic.field; threshold; SHAPE`, where SHAPE is either the values
(`v1 v2 v3 ...`) or a cut of a recording, `FILE.mcap[FROM:TO]`: the values of topic.field in the
messages logged between FROM and TO seconds after the recording's first message (the timeline
`ros2 bag info` and Foxglove show; `ms`, `us`, `min` units allowed; an empty FROM is the start,
an empty TO the end). A relative FILE is relative to the working directory. `krystal pattern cut` prints
the values form of the same cut.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from krystal.temporal.spec import Signal, SpecError, parse_signal
from krystal.temporal.watch import field_getter

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0}
_TIME = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(s|ms|us|min)?\s*$")
_CUT = re.compile(r"^(?P<path>.+)\[(?P<start>[^\[\]:]*):(?P<end>[^\[\]:]*)\]$")
MIN_VALUES = 3


class PatternError(ValueError):
    """A pattern line or a cut that cannot be used, with the reason."""


@dataclass(frozen=True)
class Cut:
    """Where a pattern's values come from: a recording and a time range after its start."""

    path: str
    start_s: float
    end_s: float

    @property
    def text(self) -> str:
        end = f"{self.end_s:g}s" if math.isfinite(self.end_s) else ""
        return f"{self.path}[{self.start_s:g}s:{end}]"


@dataclass(frozen=True)
class PatternLine:
    name: str
    signal: Signal
    threshold: float
    values: tuple[float, ...]
    cut: Cut | None = None  # None: the values were written out in the line


def parse_time(text: str) -> float:
    """Seconds of `12.5`, `12.5s`, `800ms`, `2min`."""
    m = _TIME.match(text)
    if m is None:
        raise PatternError(f"{text!r} is not a time (a number, optionally with s, ms, us or min)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_cut(text: str) -> Cut | None:
    """`FILE[FROM:TO]`, or None when `text` is not one (the values form)."""
    m = _CUT.match(text.strip())
    if m is None:
        return None
    start = parse_time(m.group("start")) if m.group("start").strip() else 0.0
    end = parse_time(m.group("end")) if m.group("end").strip() else math.inf
    if not 0.0 <= start < end:
        raise PatternError(f"{text!r}: the range must be FROM:TO with 0 <= FROM < TO")
    return Cut(m.group("path").strip(), start, end)


def parse_pattern_line(line: str) -> PatternLine:
    """A config entry; a cut is read from its recording (PatternError with the reason)."""
    parts = [p.strip() for p in line.split(";")]
    if len(parts) != 4 or not parts[0]:
        raise PatternError(
            f"{line!r}: write a pattern as 'name; topic.field; threshold; v1 v2 v3 ...' "
            "or 'name; topic.field; threshold; FILE.mcap[FROM:TO]'"
        )
    try:
        signal = parse_signal(parts[1])
    except SpecError as exc:
        raise PatternError(f"pattern {parts[0]}: {exc}") from exc
    try:
        threshold = float(parts[2])
    except ValueError:
        raise PatternError(f"pattern {parts[0]}: threshold {parts[2]!r} is not a number") from None
    if not threshold >= 0.0 or not math.isfinite(threshold):
        raise PatternError(f"pattern {parts[0]}: threshold must be a finite number >= 0")
    cut = parse_cut(parts[3])
    if cut is not None:
        values = cut_values(cut.path, signal, cut.start_s, cut.end_s)
    else:
        try:
            values = tuple(float(v) for v in parts[3].replace(",", " ").split())
        except ValueError:
            raise PatternError(
                f"pattern {parts[0]}: {parts[3]!r} is neither numbers nor FILE.mcap[FROM:TO]"
            ) from None
        if not all(math.isfinite(v) for v in values):
            raise PatternError(f"pattern {parts[0]}: values must be finite")
    if len(values) < MIN_VALUES:
        raise PatternError(f"pattern {parts[0]}: at least {MIN_VALUES} values")
    return PatternLine(parts[0], signal, threshold, values, cut)


def format_pattern_line(name: str, signal: Signal, threshold: float, values: tuple[float, ...]) -> str:
    """The values form of a pattern, as the `patterns` parameter takes it."""
    return f"{name}; {signal.name}; {threshold:.6g}; " + " ".join(f"{v:.9g}" for v in values)


# ---- cutting --------------------------------------------------------------------------------------


def _channel_topic(topics: list[str], topic: str) -> str:
    """The recorded topic of `topic`: `/topic` itself, else the one topic under a namespace."""
    want = "/" + topic.lstrip("/")
    if want in topics:
        return want
    under = [t for t in topics if t.endswith(want)]
    if len(under) == 1:
        return under[0]
    if under:
        raise PatternError(f"{topic} is recorded under several namespaces: {', '.join(sorted(under))}")
    raise PatternError(f"no topic {want} in the recording (it has {', '.join(sorted(topics)) or 'none'})")


def _messages(path: str, topic: str) -> Iterator[tuple[float, Any]]:
    """(seconds since the recording's first message, decoded message) of `topic`, in log order.

    One pass through krystal.record.mcapio.iter_messages, the reader play, harvest and check use,
    so a recording without a summary (a killed recorder) is cut up to where it ends."""
    from krystal.record.mcapio import Decoders, iter_messages

    want = "/" + topic.lstrip("/")
    topics: list[str] = []
    first_ns: int | None = None
    candidates: list[tuple[int, Any, Any, bytes]] = []  # the topics `topic` may resolve to
    for schema, channel, message in iter_messages(path):
        if channel.topic not in topics:
            topics.append(channel.topic)
        first_ns = message.log_time if first_ns is None else min(first_ns, message.log_time)
        if channel.topic.endswith(want):
            candidates.append((message.log_time, schema, channel, message.data))
    name = _channel_topic(topics, topic)
    decoders = Decoders()
    picked: list[tuple[int, Any]] = []
    for log_time, schema, channel, data in candidates:
        dec = decoders(schema, channel) if channel.topic == name else None
        if dec is not None:
            picked.append((log_time, dec(data)))
    picked.sort(key=lambda item: item[0])  # a summary-less file is in write order
    for log_time, msg in picked:
        yield (log_time - (first_ns or 0)) * 1e-9, msg


@lru_cache(maxsize=32)
def _cut_cached(  # noqa: PLR0917
    path: str, mtime_ns: int, size: int, signal: Signal, start_s: float, end_s: float
) -> tuple[float, ...]:
    get = field_getter(signal.path)
    values: list[float] = []
    seen: list[float] = []
    for rel, msg in _messages(path, signal.topic):
        seen.append(rel)
        if start_s <= rel <= end_s:
            try:
                v = get(msg)
            except ValueError as exc:
                raise PatternError(f"{signal.name}: {exc}") from None
            if math.isfinite(v):  # a NaN field is a missing sample
                values.append(v)
    if len(values) < MIN_VALUES:
        span = f"it has samples from {seen[0]:.3f} to {seen[-1]:.3f} s" if seen else "it has no samples"
        raise PatternError(
            f"{path}: {len(values)} samples of {signal.name} between {start_s:g} and {end_s:g} s "
            f"(at least {MIN_VALUES} needed; {span} after the recording's start)"
        )
    return tuple(values)


def cut_values(path: str, signal: Signal, start_s: float, end_s: float) -> tuple[float, ...]:
    """The finite values of `signal` logged between start_s and end_s after the recording's start."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PatternError(f"cannot read the recording {path}: {exc.strerror or exc}") from None
    try:
        return _cut_cached(str(Path(path)), st.st_mtime_ns, st.st_size, signal, start_s, end_s)
    except PatternError:
        raise
    except Exception as exc:  # the MCAP readers raise many kinds on a damaged file
        raise PatternError(f"{path}: not a readable MCAP recording ({type(exc).__name__}: {exc})") from None
