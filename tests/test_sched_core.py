"""The scheduler's ROS-free parts: timing stats, budgets, the deferral rule, real-time setup."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from krystal.sched.realtime import apply_realtime
from krystal.sched.timing import (
    Budgets,
    CallbackStats,
    format_summary,
    parse_budgets,
    resolve_budget_ns,
    should_defer,
    topic_matches,
)

MS = 1_000_000


def test_stats_count_misses_and_lateness() -> None:
    s = CallbackStats("timer 10ms tick", "timer", "n")
    s.record(release_ns=0, deadline_ns=2 * MS, start_ns=100_000, end_ns=1 * MS)  # on time
    s.record(release_ns=10 * MS, deadline_ns=12 * MS, start_ns=13 * MS, end_ns=14 * MS)  # late
    summary = s.summary()
    assert (summary.count, summary.misses, summary.miss_rate) == (2, 1, 0.5)
    assert summary.start_max_ms == pytest.approx(3.0)
    assert summary.finish_p99_ms > 0  # the late one finished after its deadline
    assert "<=100:1" in summary.histogram_text() and "<=5000:1" in summary.histogram_text()
    text = format_summary([summary])
    assert "n: timer 10ms tick: n=2 miss=1" in text


def test_budgets_most_specific_wins() -> None:
    assert resolve_budget_ns(natural_ns=10 * MS) == 10 * MS  # a timer's period
    assert resolve_budget_ns(node_ms=5, natural_ns=10 * MS) == 5 * MS
    assert resolve_budget_ns(group_ms=3, node_ms=5) == 3 * MS
    assert resolve_budget_ns(topic_ms=2, group_ms=3) == 2 * MS
    assert resolve_budget_ns(explicit_ms=1, topic_ms=2) == 1 * MS
    assert resolve_budget_ns(default_ms=100) == 100 * MS
    b = Budgets(groups_ms=(("critical", 2.0),), topics_ms=(("camera/image_raw", 33.3),))
    assert b.for_group("critical") == 2.0 and b.for_group(None) == 0.0
    assert b.for_topic("/robot1/camera/image_raw", "/robot1") == 33.3
    assert b.for_topic("/other/camera/image_raw", "/robot1") == 0.0
    assert topic_matches("/abs", "/abs", "/ns") and not topic_matches("/abs", "/ns/abs", "/ns")
    assert topic_matches("camera/image_raw", "/camera/image_raw", "/")


def test_budget_lists_refuse_malformed_items_with_a_reason() -> None:
    parsed, problems = parse_budgets(["a=1.5", "b=0", "c", "=3", "d=x", "e/f=2"])
    assert parsed == (("a", 1.5), ("e/f", 2.0))
    assert len(problems) == 4 and all("NAME=MILLISECONDS" in p for p in problems)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=5))
def test_budget_lists_never_raise(items: list[str]) -> None:
    parsed, problems = parse_budgets(items)
    assert len(parsed) + len(problems) == len(items)
    assert all(ms > 0 for _, ms in parsed)


def test_defer_for_a_critical_timer_released_before_the_candidate_would_end() -> None:
    # Candidate: 1.5 ms of work, deadline 10 ms away; a 0.1 ms timer with a 2 ms deadline is
    # released in 0.2 ms: wait for it, as a preemptive EDF scheduler would run it at release.
    upcoming = [(200_000, 2_200_000, 100_000.0, 10 * MS)]
    assert should_defer(0, 10 * MS, 1.5 * MS, upcoming) == 200_000
    # The earliest of several such releases is the one to wait for.
    assert should_defer(0, 10 * MS, 1.5 * MS, [(900_000, 3 * MS, 1.0, 10 * MS), *upcoming]) == 200_000
    # Released after the candidate ends, or with a later deadline: start now.
    assert should_defer(0, 10 * MS, 1.5 * MS, [(2 * MS, 4 * MS, 100_000.0, 10 * MS)]) == 0
    assert should_defer(0, 10 * MS, 1.5 * MS, [(200_000, 20 * MS, 100_000.0, 10 * MS)]) == 0
    # A 1 kHz timer beside a 1.5 ms candidate: its next release is hit anyway, so no waiting.
    assert should_defer(0, 10 * MS, 1.5 * MS, [(200_000, 1_200_000, 20_000.0, 1 * MS)]) == 0
    # Released already (ready, not yet taken: the caller asked rcl): its past release, a poll now;
    # for the 1 kHz timer too, since polling costs no idle time.
    assert should_defer(300_000, 10 * MS, 1.5 * MS, upcoming) == 200_000
    assert should_defer(300_000, 10 * MS, 1.5 * MS, [(200_000, 1_200_000, 20_000.0, 1 * MS)]) == 200_000
    # Waiting would make the candidate itself miss: start it.
    assert should_defer(0, 1.6 * MS, 1.5 * MS, upcoming) == 0
    # ... also for a timer released already: it runs from now, not from its release (at 0.3 ms,
    # 0.1 ms + 1.5 ms would end at 1.9 ms, past the candidate's 1.85 ms)
    released = [(200_000, 1 * MS, 100_000.0, 10 * MS)]
    assert should_defer(300_000, 1_850_000, 1.5 * MS, released) == 0
    assert should_defer(300_000, 1_950_000, 1.5 * MS, released) == 200_000


def test_impossible_requests_are_refused_with_one_line_and_nothing_raised() -> None:
    before = os.sched_getscheduler(0), os.sched_getaffinity(0)
    result = apply_realtime(priority=1000, cpus=[100_000])
    assert result.applied == ()
    assert len(result.refused) == 2
    line = result.refusal_line()
    assert line is not None and "\n" not in line
    assert "SCHED_FIFO priority 1000" in line and "CPU affinity" in line and "normal scheduling" in line
    assert (os.sched_getscheduler(0), os.sched_getaffinity(0)) == before
    assert apply_realtime().refusal_line() is None


_PROBE = (
    "import os; from krystal.sched.realtime import apply_realtime; "
    "r = apply_realtime(priority=1, cpus=[0], lock_memory=True); "
    "print(repr(r.applied)); print(r.refusal_line()); "
    "print(os.sched_getscheduler(0) == os.SCHED_FIFO); "
    "print([l for l in open('/proc/self/status') if l.startswith('VmLck')][0].split()[1])"
)


def _probe(prefix: list[str]) -> list[str]:
    cmd = [*prefix, sys.executable, "-c", _PROBE]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_realtime_setup_does_what_it_reports() -> None:
    """In a child process (never this one): whatever the OS allows, the report matches reality."""
    applied, refusal, fifo, locked_kb = _probe([])
    assert (fifo == "True") == ("SCHED_FIFO priority 1" in applied)
    assert (int(locked_kb) > 0) == ("mlockall" in applied)
    assert (refusal == "None") == ("mlockall" in applied and fifo == "True")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_sched_fifo_refused_without_cap_sys_nice() -> None:
    """The refusal path for real: a child without CAP_SYS_NICE/CAP_IPC_LOCK and RLIMIT_MEMLOCK 0."""
    drop = "-sys_nice,-ipc_lock"
    prefix = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"]
    prefix += ["prlimit", "--memlock=0:0", "--rtprio=0:0"]
    if shutil.which("prlimit") is None:
        prefix = prefix[:3]
    applied, refusal, fifo, _ = _probe(prefix)
    assert "SCHED_FIFO" not in applied and fifo == "False"
    assert "SCHED_FIFO priority 1: not permitted" in refusal
    assert "CPUs [0]" in applied  # affinity needs no privilege: the rest still applies
