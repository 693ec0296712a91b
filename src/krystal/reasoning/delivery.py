"""The frames as the viewer gets them: end-to-end latency and delivered rate over a time span.

ROS-free: the node adds each AsciiFrame it receives (receipt time, capture stamp → receipt in ms,
render time) and asks for a span; decision outcomes and the model's shadow scoring read it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

NAN = math.nan


@dataclass(frozen=True)
class Delivery:
    frames: int
    delivered_fps: float  # frames received in the span / its length; NaN for an empty span
    e2e_ms_mean: float  # capture stamp -> receipt, NaN when no frame carried a stamp
    e2e_ms_p95: float
    e2e_ms_max: float
    on_budget_fraction: float  # frames whose e2e (render time where no stamp) is within the budget


class FrameBook:
    """The frames of the last `horizon_s` seconds."""

    def __init__(self, horizon_s: float = 60.0) -> None:
        self.horizon_s = horizon_s
        self._frames: deque[tuple[float, float, float]] = deque()

    def add(self, t_s: float, e2e_ms: float, render_ms: float) -> None:
        self._frames.append((t_s, e2e_ms, render_ms))
        while self._frames and self._frames[0][0] < t_s - self.horizon_s:
            self._frames.popleft()

    def frames(self, t0_s: float, t1_s: float) -> list[tuple[float, float]]:
        """(e2e ms, render ms) of the frames received in (t0_s, t1_s]."""
        return [(e, r) for t, e, r in self._frames if t0_s < t <= t1_s]

    def between(self, t0_s: float, t1_s: float, budget_ms: float) -> Delivery:
        """The frames received in (t0_s, t1_s]."""
        span = self.frames(t0_s, t1_s)
        e2e = sorted(e for e, _ in span if math.isfinite(e))
        cost = [e if math.isfinite(e) else r for e, r in span]
        known = [c for c in cost if math.isfinite(c)]
        return Delivery(
            frames=len(span),
            delivered_fps=len(span) / (t1_s - t0_s) if t1_s > t0_s else NAN,
            e2e_ms_mean=sum(e2e) / len(e2e) if e2e else NAN,
            e2e_ms_p95=e2e[min(len(e2e) - 1, math.ceil(0.95 * len(e2e)) - 1)] if e2e else NAN,
            e2e_ms_max=e2e[-1] if e2e else NAN,
            on_budget_fraction=sum(c <= budget_ms for c in known) / len(known) if known else NAN,
        )


def e2e_ms(now_ns: int, stamp_ns: int) -> float:
    """Capture stamp -> now in ms; NaN for no stamp (0) or a stamp from another clock (negative or
    over a minute: the source's clock is not ours)."""
    if stamp_ns <= 0:
        return NAN
    ms = (now_ns - stamp_ns) / 1e6
    return ms if 0.0 <= ms <= 60_000.0 else NAN
