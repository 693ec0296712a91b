"""Timing metrics shared by nodes and benchmarks: rates and latency percentiles over a window."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np


class RateMeter:
    """Events per second over the last `window_s` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._stamps: deque[float] = deque()

    def tick(self, now_s: float | None = None) -> None:
        now = time.monotonic() if now_s is None else now_s
        self._stamps.append(now)
        self._trim(now)

    def rate_hz(self, now_s: float | None = None) -> float:
        now = time.monotonic() if now_s is None else now_s
        self._trim(now)
        if len(self._stamps) < 2:
            return 0.0
        span = now - self._stamps[0]
        return (len(self._stamps) - 1) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self._window_s:
            self._stamps.popleft()


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    p50: float
    p99: float
    max: float


class Window:
    """The last `size` samples of a quantity (ms, say) and their summary."""

    def __init__(self, size: int = 300) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._samples.append(value)

    def __len__(self) -> int:
        return len(self._samples)

    def summary(self) -> Summary:
        if not self._samples:
            nan = math.nan
            return Summary(0, nan, nan, nan, nan)
        a = np.fromiter(self._samples, dtype=np.float64, count=len(self._samples))
        p50, p99 = np.percentile(a, [50, 99])
        return Summary(len(a), float(a.mean()), float(p50), float(p99), float(a.max()))
