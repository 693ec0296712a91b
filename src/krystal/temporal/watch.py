"""What the node and `krystal check` share: specs from config lines, message fields as numbers,
one SpecWatch per specification (held values, verdict changes, the deciding sample).

Policy for real streams (docs/temporal.md):
- the trace of a spec is the merged sequence of messages on its topics, in stamp order; between
  messages every signal holds its last value, and the spec is not evaluated before each has one;
- a message stamped at or before the newest sample already evaluated is late: it updates nothing
  and is counted (out-of-order samples are dropped, never reordered);
- a NaN field is a missing sample: the previous value is held;
- stamps are integer nanoseconds (`header.stamp.sec * 10**9 + nanosec`), never float seconds;
- windows close at the first sample past their bound or when `advance` says time has passed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from krystal.temporal.monitor import Early, Monitor
from krystal.temporal.spec import Formula, Signal, SpecError, horizon_s, parse, signals

UNKNOWN, SATISFIED, VIOLATED = 0, 1, 2  # as TemporalVerdict
VERDICT_NAMES = {UNKNOWN: "unknown", SATISFIED: "satisfied", VIOLATED: "violated"}


@dataclass(frozen=True)
class SpecLine:
    name: str
    text: str
    formula: Formula


def parse_spec_line(line: str) -> SpecLine:
    """`name: formula` (a config entry); SpecError or ValueError with the reason."""
    name, sep, text = line.partition(":")
    name = name.strip()
    if not sep or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"{line!r}: write a spec as 'name: formula'")
    try:
        formula = parse(text)
    except SpecError as exc:  # line and column in the entry, not in the formula after "name:"
        shift = len(line) - len(text) if exc.line == 1 else 0
        raise SpecError(exc.reason, exc.line, exc.column + shift) from None
    return SpecLine(name, text.strip(), formula)


def parse_spec_file(text: str) -> list[SpecLine]:
    """One `name: formula` per line; blank lines and lines starting with # are skipped. Errors
    point at the file's line and column."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(parse_spec_line(line))
        except SpecError as exc:
            indent = len(raw) - len(raw.lstrip())
            raise SpecError(exc.reason, number + exc.line - 1, exc.column + indent) from None
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from exc
    return out


def field_getter(path: Sequence[str | int]) -> Callable[[Any], float]:
    """Reads a field path of a message as a float (bools as 0/1); raises ValueError when it cannot."""
    parts = tuple(path)

    def get(msg: Any) -> float:
        value = msg
        for part in parts:
            try:
                value = value[part] if isinstance(part, int) else getattr(value, part)
            except (AttributeError, IndexError, TypeError, KeyError) as exc:
                raise ValueError(f"no field {part!r} in {type(value).__name__}") from exc
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)  # numpy scalars
        except (TypeError, ValueError) as exc:
            raise ValueError(f"field is {type(value).__name__}, not a number") from exc

    return get


def stamp_ns(msg: Any) -> int | None:
    """The header stamp in integer nanoseconds, or None when the message has none (or a zero one)."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None
    t = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return t if t > 0 else None


@dataclass(frozen=True)
class Decision:
    """A verdict of a spec at sample time `time_ns`, decided by the sample stamped `decided_by_ns`."""

    spec: str
    verdict: int
    robustness: float
    time_ns: int
    decided_by_ns: int
    sample: dict[str, float] = field(default_factory=dict)
    early: bool = False

    @property
    def time_s(self) -> float:
        return self.time_ns * 1e-9

    @property
    def decided_by_s(self) -> float:
        return self.decided_by_ns * 1e-9


class SpecWatch:
    """One specification over live messages: holds values, runs the monitor, reports changes."""

    def __init__(self, spec: SpecLine, online: bool = True, keep_history: bool = False) -> None:
        self.spec = spec
        self.history: list[tuple[int, float]] | None = [] if keep_history else None
        self.signals: list[Signal] = signals(spec.formula)
        self.names = [s.name for s in self.signals]
        self.topics = list(dict.fromkeys(s.topic for s in self.signals))
        self.horizon_s = horizon_s(spec.formula)
        self._getters = [(s.topic, i, field_getter(s.path)) for i, s in enumerate(self.signals)]
        self.held = [math.nan] * len(self.signals)
        self._missing = len(self.signals)
        self.changes: list[Decision] = []  # verdict changes since the caller last took them
        self.last: Decision | None = None
        self.first_violation: Decision | None = None
        self.decided = self.violations = self.bad_messages = 0
        self.last_error = ""
        self._sample_t = 0
        self.monitor = Monitor(spec.formula, self.names, on_output=self._output, online=online)

    @property
    def late(self) -> int:
        return self.monitor.late

    def _sample(self) -> dict[str, float]:
        return dict(zip(self.names, self.held, strict=False))

    def _decide(self, d: Decision) -> None:
        if self.last is None or self.last.verdict != d.verdict:
            self.changes.append(d)
        self.last = d

    def _output(self, t: int, rho: float) -> None:
        verdict = SATISFIED if rho > 0 else VIOLATED
        self.decided += 1
        if self.history is not None:
            self.history.append((t, rho))
        d = Decision(self.spec.name, verdict, rho, t, self._sample_t, self._sample())
        if verdict == VIOLATED:
            self.violations += 1
            if self.first_violation is None:
                self.first_violation = d
        if (
            self.last is not None
            and self.last.early
            and self.last.time_ns == t
            and self.last.verdict == verdict
        ):
            self.last = d  # the early verdict confirmed: no change
            return
        self._decide(d)

    def _check_early(self) -> None:
        e: Early | None = self.monitor.early()
        if e is None or (self.last is not None and self.last.time_ns >= e.time_ns):
            return
        verdict = SATISFIED if e.satisfied else VIOLATED
        self._decide(
            Decision(self.spec.name, verdict, e.bound, e.time_ns, self._sample_t, self._sample(), True)
        )

    def on_message(self, topic: str, t: int, msg: Any) -> bool:
        """Take one message of `topic` stamped `t` (int ns); False when it was late or unreadable."""
        if t <= self.monitor.last_t:
            self.monitor.late += 1
            return False
        try:
            values = [(i, get(msg)) for top, i, get in self._getters if top == topic]
        except ValueError as exc:
            self.bad_messages += 1
            self.last_error = f"{topic}: {exc}"
            return False
        for i, v in values:
            if not math.isnan(v):
                if math.isnan(self.held[i]):
                    self._missing -= 1
                self.held[i] = v
        if self._missing:
            return True  # not every signal has a value yet
        self._sample_t = t
        self.monitor.update(t, self.held)
        self._check_early()
        return True

    def advance(self, t: int) -> None:
        """No message stamped at or before `t` (int ns) will come."""
        self._sample_t = t
        self.monitor.advance(t)
        self._check_early()

    def take_changes(self) -> list[Decision]:
        out, self.changes = self.changes, []
        return out


MAX_TRACE_CELLS = 100_000  # CheckTrace: values (samples x signals) accepted in one request


@dataclass(frozen=True)
class TraceCheck:
    ok: bool
    verdict: int
    robustness: float
    first_violation_ns: int | None
    robustness_over_time: tuple[float, ...]
    message: str
    first_sample_ns: int | None = None  # the first sample at which every signal has a value

    @property
    def first_violation_s(self) -> float:
        return math.nan if self.first_violation_ns is None else self.first_violation_ns * 1e-9


def check_trace(
    formula: Formula, signal_names: Sequence[str], times_ns: Sequence[int], rows: Sequence[Sequence[float]]
) -> TraceCheck:
    """Offline verdict of `formula` over a finished sequence of samples (rows in signal order, stamps
    in int ns, strictly increasing). A NaN value is missing, as on live topics: the signal's previous
    value is held, and samples before every signal has a value are not evaluated."""

    def refuse(why: str) -> TraceCheck:
        return TraceCheck(False, UNKNOWN, math.nan, None, (), why)

    if len(times_ns) * max(1, len(signal_names)) > MAX_TRACE_CELLS:
        return refuse(f"too large: at most {MAX_TRACE_CELLS} values (samples x signals) per request")
    if len(rows) != len(times_ns):
        return refuse("one row of values per sample time")
    out: list[float] = []
    stamps: list[int] = []

    def output(t: int, rho: float) -> None:
        stamps.append(t)
        out.append(rho)

    try:
        mon = Monitor(formula, signal_names, on_output=output, online=False)
    except ValueError as exc:
        return refuse(str(exc))
    previous: float = -math.inf
    held = [math.nan] * len(signal_names)
    missing = len(held)
    for t, row in zip(times_ns, rows, strict=True):
        if not t > previous:
            return refuse("sample times must strictly increase (equal times are refused)")
        if len(row) != len(signal_names):
            return refuse("every sample needs one value per signal")
        previous = t
        for i, raw in enumerate(row):
            v = float(raw)
            if not math.isnan(v):
                if math.isnan(held[i]):
                    missing -= 1
                held[i] = v
        if not missing:
            mon.update(int(t), held)
    mon.finish()
    if not out:
        return TraceCheck(True, UNKNOWN, math.nan, None, (), "no sample where every signal has a value")
    first = next((t for t, r in zip(stamps, out, strict=True) if not r > 0), None)
    rho = out[0]
    verdict = SATISFIED if rho > 0 else VIOLATED
    text = f"{VERDICT_NAMES[verdict]} (robustness {format_robustness(rho)})"
    if first is not None:
        text += f"; first violated at t={first * 1e-9:.9f} s"
    return TraceCheck(True, verdict, rho, first, tuple(out), text, stamps[0])


def format_robustness(rho: float) -> str:
    """The robustness as text; the sign of an equality's +-ZERO is kept ("0" holds, "-0" does not)."""
    if rho != 0.0 and abs(rho) < 1e-300:
        return "0" if rho > 0 else "-0"
    return f"{rho:.6g}"
