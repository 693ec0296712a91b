"""Benchmark output: one JSON object per line, ours beside the anchor measured in the same run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any


def time_ms(fn: Callable[[], Any], repeat: int = 30, warmup: int = 3) -> tuple[float, float]:
    """(min, median) wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return samples[0], samples[len(samples) // 2]


def emit(
    bench: str,
    case: str,
    ours: float,
    anchor: float,
    unit: str,
    *,
    lower_is_better: bool = True,
    **extra: Any,
) -> None:
    """Print one result; ratio > 1 means we are better than the anchor."""
    ratio = (
        (anchor / ours if ours else float("inf"))
        if lower_is_better
        else (ours / anchor if anchor else float("inf"))
    )
    print(
        json.dumps(
            {
                "bench": bench,
                "case": case,
                "ours": round(ours, 4),
                "anchor": round(anchor, 4),
                "ratio": round(ratio, 3),
                "unit": unit,
                **extra,
            }
        ),
        flush=True,
    )
