"""`krystal play`'s timing rule (src/krystal/record/playback.py, docs/record.md), on a clock the test
controls: a stall is injected at a chosen message, so the timeline after it is exact, not a
wall-clock span on a machine that may be busy."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from krystal.record.playback import ON_STALL, PlaybackSummary, Timeline, combine, play_pass

MS = 1_000_000  # ns


class StallingClock:
    """A monotonic clock that moves only when the player waits or a publication stalls."""

    def __init__(self, stalls_s: dict[int, float]) -> None:
        self.now_s = 100.0
        self.stalls_s = stalls_s  # message index -> seconds its publish blocks
        self.published: list[tuple[int, float]] = []  # (index, clock when publish returned)

    def clock(self) -> float:
        return self.now_s

    def wait(self, delay_s: float) -> bool:
        self._advance(delay_s)
        return False

    def _advance(self, delay_s: float) -> None:
        # a real clock has moved on when a wait returns; a float sum may not (100.1 + 1e-14 == 100.1)
        self.now_s = max(self.now_s + delay_s, math.nextafter(self.now_s, math.inf))

    def publish(self, index: int) -> None:
        self.now_s += self.stalls_s.get(index, 0.0)
        self.published.append((index, self.now_s))


def _play(log_ms: list[int], rate: float, on_stall: str, stalls_s: dict[int, float], stall_s: float = 0.1):
    c = StallingClock(stalls_s)
    timeline = Timeline(c.clock(), rate, on_stall, stall_s)
    assert play_pass(((t * MS, i) for i, t in enumerate(log_ms)), timeline, c.publish, c.clock, c.wait)
    return [round(t - 100.0, 9) for _, t in c.published], timeline.summary()


RECORDED_MS = [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]


def test_catch_up_publishes_what_fell_due_at_once_and_keeps_the_end() -> None:
    # message 2's publish blocks 0.35 s: 3, 4 and 5 fell due meanwhile
    times, summary = _play(RECORDED_MS, 1.0, "catch-up", {2: 0.35})
    assert times == [0.0, 0.1, 0.55, 0.55, 0.55, 0.55, 0.6, 0.7, 0.8, 0.9]
    assert summary == PlaybackSummary(10, pytest.approx(0.9), 0.0, 0.0, pytest.approx(0.35))


def test_shift_keeps_the_recorded_gaps_after_a_stall() -> None:
    times, summary = _play(RECORDED_MS, 1.0, "shift", {2: 0.35})
    assert times == pytest.approx([0.0, 0.1, 0.55, 0.65, 0.75, 0.85, 0.95, 1.05, 1.15, 1.25])
    assert summary == PlaybackSummary(10, pytest.approx(1.25), pytest.approx(0.35), 0.0, pytest.approx(0.35))


def test_rate_scales_the_timeline_and_stalls_are_in_player_seconds() -> None:
    times, _ = _play(RECORDED_MS, 2.0, "catch-up", {2: 0.35})
    assert times == pytest.approx([0.0, 0.05, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45])
    times, summary = _play(RECORDED_MS, 2.0, "shift", {2: 0.35})
    assert times == pytest.approx([0.0, 0.05, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8])
    assert summary.due_span_s == pytest.approx(0.45 + 0.35)


def test_shift_ignores_lateness_up_to_stall_s() -> None:
    assert _play(RECORDED_MS, 1.0, "shift", {2: 0.08})[0] == _play(RECORDED_MS, 1.0, "catch-up", {2: 0.08})[0]


def test_a_wait_that_ends_early_never_publishes_early() -> None:
    class EarlyWaits(StallingClock):
        def wait(self, delay_s: float) -> bool:  # ends 1 ms early (a timer that fires early)
            self._advance(delay_s - 1e-3 if delay_s > 1e-3 else delay_s)
            return False

    c = EarlyWaits({})
    timeline = Timeline(c.clock(), 1.0)
    assert play_pass(((t * MS, i) for i, t in enumerate(RECORDED_MS)), timeline, c.publish, c.clock, c.wait)
    assert timeline.summary().late_min_s >= 0


def test_a_stop_ends_the_pass() -> None:
    timeline = Timeline(0.0)
    now = [0.0]
    assert not play_pass([(0, 0), (5 * MS, 1)], timeline, lambda i: None, lambda: now[0], lambda d: True)
    assert timeline.messages == 1


def test_bad_settings_are_refused() -> None:
    for kwargs in ({"rate": 0.0}, {"on_stall": "burst"}, {"stall_s": -1.0}):
        with pytest.raises(ValueError):
            Timeline(0.0, **kwargs)  # type: ignore[arg-type]


def test_loop_passes_combine() -> None:
    a, b = _play(RECORDED_MS, 1.0, "shift", {2: 0.35})[1], _play(RECORDED_MS, 1.0, "catch-up", {})[1]
    assert combine([a, b]) == PlaybackSummary(
        20, pytest.approx(1.25 + 0.9), pytest.approx(0.35), 0.0, pytest.approx(0.35)
    )
    assert combine([]) == PlaybackSummary(0, 0.0, 0.0, 0.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    gaps_ms=st.lists(st.integers(0, 500), min_size=1, max_size=30),
    stalls=st.dictionaries(st.integers(0, 29), st.floats(0.0, 2.0), max_size=5),
    rate=st.floats(0.25, 8.0),
    on_stall=st.sampled_from(ON_STALL),
)
def test_the_rule_holds_for_any_recording_and_stalls(gaps_ms, stalls, rate, on_stall) -> None:
    log_ms = [sum(gaps_ms[: i + 1]) for i in range(len(gaps_ms))]
    times, summary = _play(log_ms, rate, on_stall, stalls)
    eps = 1e-6
    assert summary.late_min_s >= -eps  # never early
    assert all(b >= a - eps for a, b in itertools.pairwise(times))  # in order
    recorded_span_s = (log_ms[-1] - log_ms[0]) / 1e3 / rate
    assert summary.due_span_s == pytest.approx(recorded_span_s + summary.shifted_s, abs=eps)
    if on_stall == "catch-up":
        # each message at its due time, or at once when the one before it was later than that
        for i, t in enumerate(times):
            due = (log_ms[i] - log_ms[0]) / 1e3 / rate
            before = times[i - 1] if i else 0.0
            assert t == pytest.approx(max(due, before) + stalls.get(i, 0.0), abs=eps)
        assert summary.shifted_s == 0.0
    else:
        # a gap after a publication is never shorter than the recorded one, scaled
        for i in range(1, len(times)):
            gap = (log_ms[i] - log_ms[i - 1]) / 1e3 / rate
            assert times[i] - times[i - 1] >= gap - 0.1 - eps  # less only by lateness under stall_s
