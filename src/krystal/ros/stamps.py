"""How old a received message is by its header stamp, against the receiver's own clock.

ROS-free. Stamps from another host with a skewed clock, or replayed from a bag without sim time,
are consistently far in the future or the past: then every frame would look too old (or never old).
Once the last SKEW_WINDOW stamps all sit beyond SKEW_S on the same side, the offset is called a
skew, reported, and ages are measured from the smallest delay seen instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

SKEW_S = 2.0  # no transport delays a frame this long; beyond it, the clocks disagree
SKEW_WINDOW = 10


@dataclass(frozen=True)
class StampStatus:
    skewed: bool
    offset_s: float  # median of (receiver's now - stamp): positive when stamps are in the past
    samples: int

    def describe(self) -> str:
        if not self.samples:
            return "no stamped input yet"
        if not self.skewed:
            return f"input stamps agree with this node's clock (median age {self.offset_s * 1e3:.1f} ms)"
        side = "behind" if self.offset_s > 0 else "ahead of"
        return (
            f"input stamps are {abs(self.offset_s):.1f} s {side} this node's clock (skewed clocks, or "
            "replayed stamps without use_sim_time?); frame age is measured from the smallest delay seen"
        )


class StampAge:
    """Ages of a stream's stamps in nanoseconds of the receiver's clock, corrected for a skew."""

    def __init__(self, window: int = SKEW_WINDOW, skew_s: float = SKEW_S) -> None:
        self._delays_ns: deque[int] = deque(maxlen=window)
        self._skew_ns = int(skew_s * 1e9)
        self.skewed = False

    def age_ns(self, stamp_ns: int, now_ns: int) -> int:
        """now - stamp; under a skew, the delay beyond the smallest one in the window."""
        delay = now_ns - stamp_ns
        self._delays_ns.append(delay)
        full = len(self._delays_ns) == self._delays_ns.maxlen
        if (full and all(d > self._skew_ns for d in self._delays_ns)) or (
            full and all(d < -self._skew_ns for d in self._delays_ns)
        ):
            self.skewed = True
        elif abs(delay) <= self._skew_ns:
            self.skewed = False
        return delay - min(self._delays_ns) if self.skewed else delay

    def status(self) -> StampStatus:
        delays = sorted(self._delays_ns)
        median_s = delays[len(delays) // 2] / 1e9 if delays else 0.0
        return StampStatus(self.skewed, median_s, len(delays))
