"""`krystal check SPEC_FILE RECORDING.mcap`: the monitors over a recording, offline (full semantics)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from krystal.temporal.watch import SATISFIED, VERDICT_NAMES, VIOLATED, SpecLine, SpecWatch, stamp_s

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
    first_violation: tuple[float, float, dict[str, float]] | None
    history: tuple[tuple[float, float], ...]


def mcap_messages(path: str, notes: ReadNotes | None = None) -> Iterator[tuple[str, float, Any]]:
    """(topic without the leading slash, stamp in s, message) of every ROS 2 message in the file;
    a file without a summary is read up to where it is cut (`notes` says so)."""
    from mcap_ros2.decoder import DecoderFactory

    from krystal.record.mcapio import iter_messages

    factory = DecoderFactory()
    decoders: dict[int, Any] = {}
    for schema, channel, message in iter_messages(path, notes=notes):
        if schema is None:
            continue
        dec = decoders.get(schema.id)
        if dec is None:
            dec = decoders[schema.id] = factory.decoder_for(channel.message_encoding, schema)
        if dec is None:  # not ROS 2 CDR
            continue
        msg = dec(message.data)
        t = stamp_s(msg)
        yield channel.topic.lstrip("/"), (message.log_time * 1e-9 if t is None else t), msg


def check(
    specs: list[SpecLine], messages: Iterable[tuple[str, float, Any]], namespace: str = ""
) -> list[SpecReport]:
    watches = [SpecWatch(s, online=False, keep_history=True) for s in specs]
    prefix = namespace.strip("/") + "/" if namespace.strip("/") else ""
    for full, t, msg in messages:
        topic = full[len(prefix) :] if prefix and full.startswith(prefix) else full
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
        reports.append(
            SpecReport(w.spec.name, w.spec.text, verdict, rho, len(hist), w.late, w.bad_messages, fv, hist)
        )
    return reports


def print_reports(reports: list[SpecReport], out: TextIO, rows: int = 8) -> None:
    for r in reports:
        print(
            f"{r.name}: {VERDICT_NAMES[r.verdict].upper()}  robustness {r.robustness:.6g}"
            f"  ({r.samples} samples)",
            file=out,
        )
        print(f"  formula: {r.text}", file=out)
        if r.late or r.unreadable:
            print(f"  dropped: {r.late} late, {r.unreadable} unreadable", file=out)
        if r.first_violation is None:
            print("  first violation: none", file=out)
        else:
            t, rho, _ = r.first_violation
            print(f"  first violation: t={t:.6f} s, robustness {rho:.6g}", file=out)
        if r.history:
            values = [h[1] for h in r.history]
            print(f"  robustness over time: min {min(values):.6g}, max {max(values):.6g}", file=out)
            step = max(1, len(r.history) // rows)
            for t, rho in r.history[::step][:rows]:
                print(f"    t={t:.6f} s  {rho:.6g}", file=out)
