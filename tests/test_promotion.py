"""A deployed model goes live only after it proves itself (reasoning/promotion.py, no ROS):
shadow until it is no worse than the rules over the window and the minimum time; then acting;
rolled back when it falls behind; held in shadow after max_rollbacks. The clock is the test's."""

from __future__ import annotations

import math

import pytest

from krystal.reasoning.promotion import (
    ACTING,
    HELD,
    SHADOW,
    Promotion,
    PromotionConfig,
    Score,
    counterfactual_on_budget,
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


CONFIG = PromotionConfig(decisions=10, min_shadow_s=5.0, max_rollbacks=2)


def _feed(p: Promotion, clock: Clock, score: Score, n: int) -> list[str]:
    events = []
    for _ in range(n):
        clock.t += 0.5
        t = p.score(score)
        if t is not None:
            events.append(t.event)
    return events


def test_a_model_as_good_as_the_rules_is_promoted_after_the_window_and_the_time() -> None:
    clock = Clock()
    p = Promotion(CONFIG, clock)
    same = Score(0.95, 0.8, 0.95, 0.8)
    assert _feed(p, clock, same, 9) == [] and p.phase == SHADOW  # window not full
    assert p.score(Score(math.nan, 0.8, 0.9, 0.8)) is None  # no frames: not counted
    clock.t = 4.0
    assert p.score(same) is None and p.phase == SHADOW  # full, but under min_shadow_s
    clock.t = 5.0
    t = p.score(same)
    assert t is not None and (t.phase_from, t.phase_to, t.event) == (SHADOW, ACTING, "promoted")
    assert t.time_s == 5.0 and t.figures["model_on_budget"] == 0.95
    assert p.baseline is not None and p.baseline == pytest.approx((0.95, 0.8))


def test_a_model_worse_on_budget_or_quality_stays_in_shadow() -> None:
    for worse in (Score(0.80, 0.8, 0.95, 0.8), Score(0.95, 0.55, 0.95, 0.8)):  # budget; quality (ramp)
        clock = Clock()
        p = Promotion(CONFIG, clock)
        assert _feed(p, clock, worse, 200) == [] and p.phase == SHADOW
        assert p.figures()["periods"] == 10


def test_cheaper_but_on_budget_buys_its_quality_loss() -> None:
    clock = Clock()
    p = Promotion(CONFIG, clock)
    assert _feed(p, clock, Score(0.99, 0.6, 0.80, 0.8), 12) == ["promoted"]


def test_an_acting_model_that_falls_behind_is_rolled_back_then_held() -> None:
    clock = Clock()
    p = Promotion(CONFIG, clock)
    assert _feed(p, clock, Score(0.95, 0.8, 0.95, 0.8), 12) == ["promoted"]
    assert _feed(p, clock, Score(0.93, 0.8), 20) == [] and p.acting  # within the rollback margin
    assert _feed(p, clock, Score(0.50, 0.8), 10) == ["rolled_back"]
    assert p.phase == SHADOW and p.rollbacks == 1
    assert _feed(p, clock, Score(0.95, 0.8, 0.95, 0.8), 10) == ["promoted"]  # proves itself again
    assert _feed(p, clock, Score(0.95, 0.5), 10) == ["held"]  # quality behind, budget no better
    assert p.phase == HELD and _feed(p, clock, Score(0.95, 0.8, 0.95, 0.8), 50) == []


def test_counterfactual_on_budget_scales_the_render_part_only() -> None:
    frames = [(30.0, 10.0), (25.0, 5.0), (math.nan, 20.0)]  # (e2e, render)
    assert counterfactual_on_budget(frames, 1.0, 33.0) == 1.0
    assert counterfactual_on_budget(frames, 2.0, 33.0) == 1 / 3  # 40, 30, 40
    assert counterfactual_on_budget(frames, 0.5, 33.0) == 1.0
    assert math.isnan(counterfactual_on_budget([], 1.0, 33.0))
    assert math.isnan(counterfactual_on_budget(frames, math.nan, 33.0))
