"""The chaos test against the signals that fooled it: chaos (logistic, Henon, noisy logistic) is
flagged; noise (AR(1), white), periodic (sine, a noisy sawtooth of period 23.7) and quasi-periodic
(two incommensurate tones) never are."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from krystal.temporal import chaos

CHAOTIC = ("logistic", "henon", "noisy logistic")


def signals(n: int, seed: int) -> dict[str, NDArray[np.float64]]:
    """The benchmark's table of signals (bench/temporal_bench.py uses the same)."""
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


@pytest.mark.parametrize("n", [512, 2000])
def test_chaos_is_flagged_and_rhythm_and_noise_are_not(n: int) -> None:
    for seed in range(4 if n < 1000 else 2):
        for name, x in signals(n, seed).items():
            v = chaos.chaos_test(x, seed=seed)
            assert v.chaotic == (name in CHAOTIC), (n, seed, name, v.reason)
            if name == "logistic":
                assert abs(v.exponent_per_sample - math.log(2)) < 0.05, v.reason
            if name in ("sine", "two-tone"):
                assert v.k < 0.5, v.reason  # the 0-1 test says regular


def test_zero_one_test_alone() -> None:
    s = signals(2000, 0)
    assert chaos.zero_one_k(s["logistic"]) > 0.95
    assert abs(chaos.zero_one_k(s["sine"])) < 0.1 and abs(chaos.zero_one_k(s["two-tone"])) < 0.1
    assert chaos.zero_one_k(s["white noise"]) > 0.9  # the 0-1 test cannot tell noise from chaos...
    assert not chaos.chaos_test(s["white noise"]).chaotic  # ...the surrogate gate can
    with pytest.raises(ValueError):
        chaos.zero_one_k(np.zeros(50))
