"""The chaos test against the signals that fooled it: chaos (logistic, Henon, noisy logistic) is
flagged; noise (AR(1), white), periodic (sine, a noisy sawtooth of period 23.7) and quasi-periodic
(two incommensurate tones) never are."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench.chaos_signals import CHAOTIC, signals

from krystal.temporal import chaos


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
