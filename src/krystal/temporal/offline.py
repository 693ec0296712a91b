"""`krystal check SPEC_FILE RECORDING.mcap`: the monitors over a recording, offline (full semantics).

Exit codes (`run_check`): 0 every spec SATISFIED; 1 some spec VIOLATED; 3 no VIOLATED but some spec
UNKNOWN (its topic is not in the recording, a field it names is not in the type, or no sample had
every signal); 2 the spec file or the recording cannot be used (one plain line on stderr).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from krystal.temporal.watch import (
    SATISFIED,
    UNKNOWN,
    VERDICT_NAMES,
    VIOLATED,
    SpecLine,
    SpecWatch,
    format_robustness,
    parse_spec_file,
    stamp_ns,
)

EXIT_OK, EXIT_VIOLATED, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2, 3

if TYPE_CHECKING:
    from krystal.record.mcapio import ReadNotes


@dataclass(frozen=True)
class SpecReport:
    name: str
    text: str
    verdict: int
    robustness: float
    samples: int
    late: int
    unreadable: int
    first_violation: tuple[int, float, dict[str, float]] | None  # (stamp ns, robustness, sample)
    history: tuple[tuple[int, float], ...]
    why_unknown: str = ""  # for an UNKNOWN verdict: what the recording lacks


@dataclass
class Seen:
    """The recording's topics as `check` met them: type name and top-level field names."""

    types: dict[str, tuple[str, tuple[str, ...]]]

    def note(self, topic: str, msg: Any) -> None:
        if topic not in self.types:
            fields = getattr(type(msg), "__slots__", None) or tuple(vars(msg))
            self.types[topic] = (str(getattr(msg, "_type", type(msg).__name__)), tuple(fields))


def mcap_messages(path: str, notes: ReadNotes | None = None) -> Iterator[tuple[str, int, Any]]:
    """(topic without the leading slash, stamp in int ns, message) of every ROS 2 message in the file;
    a file without a summary is read up to where it is cut (`notes` says so)."""
    from krystal.record.mcapio import Decoders, iter_messages

    decoders = Decoders()
    for schema, channel, message in iter_messages(path, notes=notes):
        dec = decoders(schema, channel)
        if dec is None:  # no schema, or not ROS 2 CDR
            continue
        msg = dec(message.data)
        t = stamp_ns(msg)
        yield channel.topic.lstrip("/"), (int(message.log_time) if t is None else t), msg


def check(
    specs: list[SpecLine],
    messages: Iterable[tuple[str, int, Any]],
    namespace: str = "",
    seen: Seen | None = None,
) -> list[SpecReport]:
    watches = [SpecWatch(s, online=False, keep_history=True) for s in specs]
    prefix = namespace.strip("/") + "/" if namespace.strip("/") else ""
    seen = seen if seen is not None else Seen({})
    for full, t, msg in messages:
        topic = full[len(prefix) :] if prefix and full.startswith(prefix) else full
        seen.note(topic, msg)
        for w in watches:
            if topic in w.topics:
                w.on_message(topic, t, msg)
    reports = []
    for w in watches:
        w.monitor.finish()
        hist = tuple(w.history or ())
        rho = hist[0][1] if hist else math.nan
        verdict = 0 if not hist else SATISFIED if rho > 0 else VIOLATED
        first = next(((t, r) for t, r in hist if not r > 0), None)
        fv = None
        if first is not None:
            fv = (first[0], first[1], dict(w.first_violation.sample) if w.first_violation else {})
        why = _why_unknown(w, seen) if verdict == UNKNOWN else ""
        reports.append(
            SpecReport(
                w.spec.name, w.spec.text, verdict, rho, len(hist), w.late, w.bad_messages, fv, hist, why
            )
        )
    return reports


def _why_unknown(w: SpecWatch, seen: Seen) -> str:
    absent = [t for t in w.topics if t not in seen.types]
    if absent:
        have = ", ".join(sorted(seen.types)) or "none"
        return f"topic {', '.join(absent)} not in the recording; its topics: {have}"
    for s in w.signals:
        type_name, fields = seen.types[s.topic]
        if s.path and s.path[0] not in fields:
            return f"{s.topic} ({type_name}) has no field {s.path[0]!r}; its fields: {', '.join(fields)}"
    if w.last_error:
        topic = w.last_error.partition(":")[0]
        type_name, fields = seen.types.get(topic, ("?", ()))
        return f"{w.last_error} ({type_name}; its fields: {', '.join(fields)})"
    return "no sample had a value for every signal"


def print_reports(reports: list[SpecReport], out: TextIO, rows: int = 8) -> None:
    for r in reports:
        print(
            f"{r.name}: {VERDICT_NAMES[r.verdict].upper()}  robustness {format_robustness(r.robustness)}"
            f"  ({r.samples} samples)",
            file=out,
        )
        print(f"  formula: {r.text}", file=out)
        if r.why_unknown:
            print(f"  unknown: {r.why_unknown}", file=out)
        if r.late or r.unreadable:
            print(f"  dropped: {r.late} late, {r.unreadable} unreadable", file=out)
        if r.first_violation is None:
            print("  first violation: none", file=out)
        else:
            t, rho, _ = r.first_violation
            print(f"  first violation: t={_seconds(t)} s, robustness {format_robustness(rho)}", file=out)
        if r.history:
            values = [h[1] for h in r.history]
            print(f"  robustness over time: min {min(values):.6g}, max {max(values):.6g}", file=out)
            step = max(1, len(r.history) // rows)
            for t, rho in r.history[::step][:rows]:
                print(f"    t={_seconds(t)} s  {format_robustness(rho)}", file=out)


def _seconds(t_ns: int) -> str:
    """A stamp in seconds with its nanoseconds, exact (a float would round a ROS stamp)."""
    sign, t = ("-", -t_ns) if t_ns < 0 else ("", t_ns)
    return f"{sign}{t // 10**9}.{t % 10**9:09d}"


def run_check(spec_file: str, recording: str, namespace: str, out: TextIO, err: TextIO) -> int:
    """`krystal check`: the reports on `out`, problems as one plain line on `err`; the exit code."""
    try:
        with open(spec_file, encoding="utf-8") as f:
            specs = parse_spec_file(f.read())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"krystal check: {spec_file}: {exc}", file=err)
        return EXIT_ERROR
    if not specs:
        print(f"krystal check: {spec_file}: no specification in it (write 'name: formula' lines)", file=err)
        return EXIT_ERROR
    from krystal.record.mcapio import ReadNotes

    notes = ReadNotes()
    try:
        reports = check(specs, mcap_messages(recording, notes), namespace)
    except OSError as exc:
        print(f"krystal check: {recording}: {exc.strerror or exc}", file=err)
        return EXIT_ERROR
    except Exception as exc:  # the MCAP readers raise their own kinds on a file that is not MCAP
        print(
            f"krystal check: {recording}: not a readable MCAP recording ({type(exc).__name__}: {exc})",
            file=err,
        )
        return EXIT_ERROR
    if notes.text(recording):
        print(f"krystal check: {notes.text(recording)}", file=err)
    print_reports(reports, out)
    if any(r.verdict == VIOLATED for r in reports):
        return EXIT_VIOLATED
    unknown = [r.name for r in reports if r.verdict == UNKNOWN]
    if unknown:
        print(f"krystal check: not decided (UNKNOWN): {', '.join(unknown)}", file=err)
        return EXIT_UNKNOWN
    return EXIT_OK
