"""When `krystal play` publishes each message: the recording's timeline scaled by 1/rate, and what
happens after a stall (the player fell behind: a loaded machine, a process stopped for a while).

ROS-free: the player asks `due_s` before a message and reports `published` after it, on whatever
monotonic clock it uses, so tests drive it with a clock that stalls when they say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# catch-up: the timeline stays anchored to the start (rosbag2's behaviour): messages that fell due
#   during a stall go out at once, back to back, and the play ends when it would have.
# shift: a message published more than `stall_s` late moves the rest of the timeline by its
#   lateness, so the gaps after a stall are the recorded ones and the play ends that much later.
ON_STALL = ("catch-up", "shift")


@dataclass(frozen=True)
class PlaybackSummary:
    """What a play did, on the player's clock (seconds)."""

    messages: int
    due_span_s: float  # last due time - first due time, summed over passes: recorded span / rate + shifts
    shifted_s: float  # how far `shift` moved the timeline (0 under catch-up)
    late_min_s: float  # publication - due time; never below 0: a message is never published early
    late_max_s: float

    def describe(self) -> str:
        return (
            f"{self.messages} messages over {self.due_span_s:.3f} s of timeline "
            f"(shifted {self.shifted_s:.3f} s), late {self.late_min_s:.3f}-{self.late_max_s:.3f} s"
        )


class Timeline:
    """Due times of one pass over a recording: `start_s + (t - t_first) / rate`, moved by stalls
    under `shift`. Log times are nanoseconds; the clock is seconds."""

    def __init__(self, start_s: float, rate: float = 1.0, on_stall: str = "catch-up", stall_s: float = 0.1):
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if on_stall not in ON_STALL:
            raise ValueError(f"on_stall must be one of {', '.join(ON_STALL)}, got {on_stall!r}")
        if not stall_s >= 0:
            raise ValueError(f"stall_s must be >= 0, got {stall_s}")
        self.rate = rate
        self.on_stall = on_stall
        self.stall_s = stall_s
        self._origin_s = start_s
        self._first_ns: int | None = None
        self._first_due_s: float | None = None
        self._last_due_s = start_s
        self.shifted_s = 0.0
        self.messages = 0
        self.late_min_s = float("inf")
        self.late_max_s = float("-inf")

    def due_s(self, log_time_ns: int) -> float:
        """When the message logged at `log_time_ns` is due on the player's clock."""
        if self._first_ns is None:
            self._first_ns = log_time_ns
        return self._origin_s + (log_time_ns - self._first_ns) / 1e9 / self.rate

    def published(self, log_time_ns: int, now_s: float) -> float:
        """Record that the message was published at `now_s`; returns how late it was."""
        due = self.due_s(log_time_ns)
        if self._first_due_s is None:
            self._first_due_s = due
        late = now_s - due
        self.messages += 1
        self.late_min_s = min(self.late_min_s, late)
        self.late_max_s = max(self.late_max_s, late)
        if self.on_stall == "shift" and late > self.stall_s:
            self._origin_s += late
            self.shifted_s += late
            due = now_s
        self._last_due_s = max(self._last_due_s, due)
        return late

    def summary(self) -> PlaybackSummary:
        if self._first_due_s is None:
            return PlaybackSummary(0, 0.0, 0.0, 0.0, 0.0)
        return PlaybackSummary(
            self.messages,
            self._last_due_s - self._first_due_s,
            self.shifted_s,
            self.late_min_s,
            self.late_max_s,
        )


def play_pass(
    records: Iterable[tuple[int, T]],
    timeline: Timeline,
    publish: Callable[[T], None],
    clock: Callable[[], float],
    wait: Callable[[float], bool],
) -> bool:
    """Publish each (log time ns, item) at its due time: `wait(seconds)` sleeps (True: stop),
    `clock()` reads the same monotonic clock. Returns False when stopped before the end."""
    for log_time_ns, item in records:
        due = timeline.due_s(log_time_ns)
        while (delay := due - clock()) > 0:  # a wait may end early: never publish before due
            if wait(delay):
                return False
        publish(item)
        timeline.published(log_time_ns, clock())
    return True


def combine(passes: list[PlaybackSummary]) -> PlaybackSummary:
    """One summary for several passes (`--loop`)."""
    played = [p for p in passes if p.messages]
    if not played:
        return PlaybackSummary(0, 0.0, 0.0, 0.0, 0.0)
    return PlaybackSummary(
        sum(p.messages for p in played),
        sum(p.due_span_s for p in played),
        sum(p.shifted_s for p in played),
        min(p.late_min_s for p in played),
        max(p.late_max_s for p in played),
    )
