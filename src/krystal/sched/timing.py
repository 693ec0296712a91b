"""Per-callback timing (ROS-free): lateness, deadline misses, jitter histogram, summaries.

All times are integer nanoseconds on one monotonic clock; the executor converts stamps to it.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from krystal.sched.metrics import Window

# Upper edges of the start-lateness histogram buckets (µs); the last bucket is "above 50 ms".
HIST_EDGES_US: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
_HIST_EDGES_NS = tuple(e * 1000 for e in HIST_EDGES_US)


class CallbackStats:
    """Counters and recent samples of one callback; `record` is on the executor's hot path."""

    __slots__ = (
        "count",
        "errors",
        "finish_late_us",
        "hist",
        "kind",
        "last_error_ns",
        "max_run_ns",
        "max_start_ns",
        "misses",
        "misses_reported",
        "name",
        "node",
        "run_ewma_ns",
        "start_late_us",
    )

    def __init__(self, name: str, kind: str, node: str, window: int = 300) -> None:
        self.name = name
        self.kind = kind
        self.node = node
        self.count = 0
        self.misses = 0
        self.errors = 0
        self.hist = [0] * (len(_HIST_EDGES_NS) + 1)
        self.start_late_us = Window(window)  # start - release
        self.finish_late_us = Window(window)  # completion - deadline (negative: slack left)
        self.max_start_ns = 0
        self.max_run_ns = 0
        self.run_ewma_ns = 0.0  # how long it usually runs: the scheduler's cost estimate
        self.misses_reported = 0
        self.last_error_ns = -1

    def record(self, release_ns: int, deadline_ns: int, start_ns: int, end_ns: int) -> None:
        late = start_ns - release_ns
        late = max(late, 0)
        run = end_ns - start_ns
        self.count += 1
        self.hist[bisect_left(_HIST_EDGES_NS, late)] += 1
        self.start_late_us.add(late / 1000.0)
        self.finish_late_us.add((end_ns - deadline_ns) / 1000.0)
        if end_ns > deadline_ns:
            self.misses += 1
        self.max_start_ns = max(self.max_start_ns, late)
        self.max_run_ns = max(self.max_run_ns, run)
        self.run_ewma_ns = run if self.count == 1 else 0.9 * self.run_ewma_ns + 0.1 * run

    def summary(self) -> CallbackSummary:
        start = self.start_late_us.summary()
        finish = self.finish_late_us.summary()
        return CallbackSummary(
            name=self.name,
            kind=self.kind,
            node=self.node,
            count=self.count,
            misses=self.misses,
            errors=self.errors,
            start_p50_ms=start.p50 / 1000.0,
            start_p99_ms=start.p99 / 1000.0,
            start_max_ms=self.max_start_ns / 1e6,
            finish_p99_ms=finish.p99 / 1000.0,
            run_max_ms=self.max_run_ns / 1e6,
            hist=tuple(self.hist),
        )


@dataclass(frozen=True)
class CallbackSummary:
    name: str
    kind: str
    node: str
    count: int
    misses: int
    errors: int
    start_p50_ms: float  # start - release over the recent window
    start_p99_ms: float
    start_max_ms: float  # since start
    finish_p99_ms: float  # completion - deadline; > 0 is a miss
    run_max_ms: float
    hist: tuple[int, ...]

    @property
    def miss_rate(self) -> float:
        return self.misses / self.count if self.count else 0.0

    def histogram_text(self) -> str:
        """Non-empty buckets as `≤edge_us:count`, the overflow as `>50000:count`."""
        parts = []
        for i, n in enumerate(self.hist):
            if n:
                label = f"<={HIST_EDGES_US[i]}" if i < len(HIST_EDGES_US) else f">{HIST_EDGES_US[-1]}"
                parts.append(f"{label}:{n}")
        return " ".join(parts)

    def line(self) -> str:
        return (
            f"n={self.count} miss={self.misses} err={self.errors} "
            f"start_ms p50={_f(self.start_p50_ms)} p99={_f(self.start_p99_ms)} max={_f(self.start_max_ms)} "
            f"finish-deadline_ms p99={_f(self.finish_p99_ms)} run_max_ms={_f(self.run_max_ms)} "
            f"hist_us {self.histogram_text()}"
        )


def _f(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.3f}"


def format_summary(summaries: Iterable[CallbackSummary]) -> str:
    """One line per callback that ran, worst miss rate first: the shutdown report."""
    ran = sorted((s for s in summaries if s.count), key=lambda s: (-s.miss_rate, s.node, s.name))
    if not ran:
        return "executor summary: no callback ran"
    lines = [f"executor summary: {len(ran)} callbacks"]
    lines += [f"  {s.node}: {s.name}: {s.line()}" for s in ran]
    return "\n".join(lines)


@dataclass(frozen=True)
class Budgets:
    """Budgets (ms) from config: per node, per named callback group, per topic (relative or absolute)."""

    node_ms: float = 0.0  # 0: the default rule (a timer's period, a topic's deadline, default_ms)
    groups_ms: tuple[tuple[str, float], ...] = ()
    topics_ms: tuple[tuple[str, float], ...] = ()

    def for_topic(self, full_name: str, namespace: str) -> float:
        for key, ms in self.topics_ms:
            if topic_matches(key, full_name, namespace):
                return ms
        return 0.0

    def for_group(self, group_name: str | None) -> float:
        if group_name:
            for key, ms in self.groups_ms:
                if key == group_name:
                    return ms
        return 0.0


def parse_budgets(items: Sequence[str]) -> tuple[tuple[tuple[str, float], ...], list[str]]:
    """`["camera/image_raw=33.3", ...]` → ((key, ms), ...) and the reasons for refused items."""
    parsed: list[tuple[str, float]] = []
    problems: list[str] = []
    for item in items:
        key, sep, value = item.rpartition("=")
        key = key.strip()
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if not sep or not key or not math.isfinite(ms) or ms <= 0:
            problems.append(f"{item!r} is not NAME=MILLISECONDS with a positive number")
            continue
        parsed.append((key, ms))
    return tuple(parsed), problems


def topic_matches(key: str, full_name: str, namespace: str) -> bool:
    """An absolute key names one topic; a relative one is resolved in the node's namespace."""
    if key.startswith("/"):
        return key == full_name
    return full_name == namespace.rstrip("/") + "/" + key


def resolve_budget_ns(
    *,
    explicit_ms: float = 0.0,
    topic_ms: float = 0.0,
    group_ms: float = 0.0,
    node_ms: float = 0.0,
    natural_ns: int = 0,
    default_ms: float = 100.0,
) -> int:
    """The most specific budget wins: code, topic, group, node, then the callback's own period."""
    for ms in (explicit_ms, topic_ms, group_ms, node_ms):
        if ms > 0:
            return int(ms * 1e6)
    if natural_ns > 0:
        return natural_ns
    return int(default_ms * 1e6)


def should_defer(
    now_ns: int,
    candidate_deadline_ns: int,
    candidate_cost_ns: float,
    upcoming: Iterable[tuple[int, int, float, int]],
) -> int:
    """Release time to wait for instead of starting the candidate now, or 0 to start it.

    `upcoming` holds (release, deadline, cost, period) of timers not yet taken; one whose release
    is past is ready now (the caller asked rcl) and gives that release: poll for it now. Waiting
    (idle-time insertion: what a preemptive EDF scheduler would do) pays when one with an earlier
    deadline is released before the candidate would end, and the candidate can still meet its own
    deadline after it. Not for a timer whose period is shorter than the candidate: its next
    release would be hit anyway, and waiting for each one only pushes the candidate to its latest
    start, where it blocks whatever is released then.
    """
    end = now_ns + candidate_cost_ns
    best = 0
    for release, deadline, cost, period in upcoming:
        if release >= end or deadline >= candidate_deadline_ns:
            continue
        if release > now_ns and 0 < period < candidate_cost_ns + cost:
            continue
        if max(release, now_ns) + cost + candidate_cost_ns > candidate_deadline_ns:
            continue  # waiting would make the candidate miss instead (a released timer runs from now)
        if best == 0 or release < best:
            best = release
    return best
