"""Reference signals for the chaos test and its benchmark: chaos (logistic, Henon, noisy logistic),
noise (AR(1), white), periodic (sine, a noisy sawtooth of period 23.7) and quasi-periodic (two
incommensurate tones). tests/test_temporal_chaos.py and bench/temporal_bench.py share this table."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

CHAOTIC = ("logistic", "henon", "noisy logistic")


def signals(n: int, seed: int) -> dict[str, NDArray[np.float64]]:
    """Each signal of the table, `n` samples, seeded."""
    rng = np.random.default_rng(seed)
    out: dict[str, NDArray[np.float64]] = {}
    x = np.empty(n)
    x[0] = 0.1234 + 0.01 * seed
    for i in range(1, n):
        x[i] = 4 * x[i - 1] * (1 - x[i - 1])
    out["logistic"] = x
    h = np.empty(n)
    hx, hy = 0.1 + 0.01 * seed, 0.0
    for i in range(n):
        hx, hy = 1 - 1.4 * hx * hx + hy, 0.3 * hx
        h[i] = hx
    out["henon"] = h
    out["noisy logistic"] = x + 0.01 * float(np.std(x)) * rng.normal(size=n)
    ar = np.zeros(n)
    e = rng.normal(size=n)
    for i in range(1, n):
        ar[i] = 0.7 * ar[i - 1] + e[i]
    out["ar1"] = ar
    out["white noise"] = rng.normal(size=n)
    t = np.arange(n)
    out["sine"] = np.sin(2 * np.pi * t / 37 + seed)
    out["sawtooth 23.7"] = (t / 23.7 + 0.1 * seed) % 1.0 + 0.01 * rng.normal(size=n)
    out["two-tone"] = np.sin(2 * np.pi * t / 23.7) + np.sin(2 * np.pi * t * (math.sqrt(5) - 1) / 20 + seed)
    return out
