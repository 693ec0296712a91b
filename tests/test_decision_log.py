"""The decision log learning can trust: every line carries schema version, run id, boot id,
monotonic and wall time; decision ids are unique across restarts; the readers (read_decisions and
the harvester) keep every decision of every run, old logs (schema 1) included."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from krystal.learning import harvest
from krystal.reasoning.context import Context
from krystal.reasoning.delivery import FrameBook, e2e_ms
from krystal.reasoning.log import SCHEMA_VERSION, DecisionIds, DecisionLog, boot_id, read_decisions
from krystal.reasoning.policy import Outcome, Reasoner, ReasonerConfig, log_record
from krystal.reasoning.styles import ladder

LADDERS = {
    "calm": ladder(
        ["edges", "ramp"], kernel="luminance", kernel_sizes=[5, 3], columns=120, rows=45, grid_scales=[0.5]
    ),
    "fast": ladder(
        ["glitch", "ramp"], kernel="luminance", kernel_sizes=[5, 3], columns=120, rows=45, grid_scales=[0.5]
    ),
}
RESTARTS = [14, 9, 20, 11, 15]  # 69 decisions over 5 runs, as in the issue


def _run(path: Path, decisions: int, wall0: float, *, legacy: bool = False) -> list[int]:
    """One process lifetime as the node lives it: ids from the counter (reserved before use), each
    decision written when made and again with its outcome; `legacy` writes schema-1 lines (ids
    from 1, no envelope)."""
    log = DecisionLog(path, fsync="never")
    ids = None if legacy else DecisionIds(path, block=8)  # a small block: several reservations per run
    first = Reasoner(ReasonerConfig(), LADDERS).step(0.0, Context())
    assert first is not None
    next_id = 1 if ids is None else ids.start
    made = []
    for k in range(decisions):
        if ids is not None:
            ids.ensure(next_id)
        d = replace(first, decision_id=next_id, time_s=float(k))
        next_id += 1
        made.append(d.decision_id)
        outcome = Outcome(
            d, frames=30, latency_ms=5.0, latency_max_ms=9.0, over_budget_frames=0, budget_met=True
        )
        for rec in (log_record(d, wall0 + k), log_record(d, wall0 + k + 0.5, outcome)):
            if legacy:
                with path.open("ab") as f:
                    f.write((json.dumps(rec) + "\n").encode())
            else:
                log.write(rec)
    log.close()
    return made


def test_restarts_and_appends_keep_every_decision_with_unique_ids(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    made: list[int] = []
    for run, n in enumerate(RESTARTS):
        made += _run(path, n, 1000.0 * run)
    assert len(made) == sum(RESTARTS) == 69 and len(set(made)) == 69  # unique across restarts
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len({line["run_id"] for line in lines}) == 5
    for line in lines:  # the envelope on every line
        assert line["schema_version"] == SCHEMA_VERSION and isinstance(line["mono_s"], float)
        assert line["boot_id"] == boot_id() and isinstance(line["timestamp"], float)
    records = read_decisions(path)
    assert [r["decision"]["decision_id"] for r in records] == made
    assert all(r["outcome"] is not None for r in records)  # the last line of each: its outcome
    skips = harvest.Skips()
    assert [r["decision"]["decision_id"] for r in harvest.read_log(path, skips)] == made
    assert not skips


def test_a_lost_counter_file_starts_after_the_logged_ids(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    first = _run(path, 5, 0.0)
    (tmp_path / "decisions.next_id").unlink()
    second = _run(path, 5, 100.0)
    assert min(second) > max(first)
    (tmp_path / "decisions.next_id").write_text("garbage")
    third = _run(path, 3, 200.0)
    assert min(third) > max(second) and len(read_decisions(path)) == 13


def test_old_logs_without_the_new_fields_still_read_every_run(tmp_path: Path) -> None:
    """Schema 1 (ids restart at 1, no run_id): a restart is seen where an id is decided again."""
    path = tmp_path / "old.jsonl"
    for run, n in enumerate(RESTARTS):
        _run(path, n, 1000.0 * run, legacy=True)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert all("run_id" not in line for line in lines) and len(lines) == 2 * 69
    records = read_decisions(path)
    assert len(records) == 69 and all(r["outcome"] is not None for r in records)
    assert len(harvest.read_log(path, harvest.Skips())) == 69
    # appending new-schema runs to the old file keeps both
    _run(path, 4, 9000.0)
    assert len(read_decisions(path)) == 73


def test_shadow_and_model_lines_are_not_decisions(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    _run(path, 3, 0.0)
    log = DecisionLog(path, fsync="never")
    log.write({"kind": "shadow", "timestamp": 5.0, "model_choice": "ramp", "decision": {"decision_id": 1}})
    log.write({"kind": "model", "timestamp": 6.0, "event": "model_promoted"})
    log.close()
    assert len(read_decisions(path)) == 3
    skips = harvest.Skips()
    assert len(harvest.read_log(path, skips)) == 3 and not skips


def test_delivery_span_and_e2e() -> None:
    book = FrameBook(horizon_s=10.0)
    for i in range(30):  # 30 frames in 1 s, e2e 20..49 ms
        book.add(i / 30, 20.0 + i, 3.0)
    got = book.between(-0.001, 29 / 30, budget_ms=33.0)
    assert got.frames == 30 and abs(got.delivered_fps - 30 / (29 / 30 + 0.001)) < 0.1
    assert got.e2e_ms_mean == 34.5 and got.e2e_ms_max == 49.0 and got.e2e_ms_p95 == 48.0
    assert got.on_budget_fraction == 14 / 30  # e2e 20..33
    assert e2e_ms(2_000_000_000, 1_990_000_000) == 10.0
    for stamp in (0, 300 * 10**9, 10**9):  # no stamp; from the future; over a minute old: not ours
        assert math.isnan(e2e_ms(200 * 10**9, stamp))


def test_a_run_after_a_torn_last_line_keeps_its_first_line(tmp_path: Path) -> None:
    """The last run died mid-line (kill -9 or a full disk): the next run's first decision must
    not be glued to that torn line and lost with it."""
    path = tmp_path / "decisions.jsonl"
    first = DecisionLog(path, fsync="never")
    first.write({"timestamp": 1.0, "decision": {"decision_id": 1}, "outcome": None})
    first.close()
    with path.open("ab") as f:
        f.write(b'{"schema_version": 2, "run_id": "dead", "decision": {"decision_')  # torn
    second = DecisionLog(path, fsync="never")
    second.write({"timestamp": 2.0, "decision": {"decision_id": 2}, "outcome": None})
    second.close()
    assert [r["decision"]["decision_id"] for r in read_decisions(path)] == [1, 2]
    assert [r["decision"]["decision_id"] for r in harvest.read_log(path, harvest.Skips())] == [1, 2]
