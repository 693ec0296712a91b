"""A deployed model goes live only after it proves itself (reasoning/promotion.py, no ROS):
shadow until it is no worse than the rules over the window and the minimum time; then acting;
rolled back when it falls behind; held in shadow after max_rollbacks. The clock is the test's."""

from __future__ import annotations

import math

import pytest

from krystal.reasoning.context import Context
from krystal.reasoning.delivery import FrameBook
from krystal.reasoning.policy import Reasoner, ReasonerConfig
from krystal.reasoning.promotion import (
    ACTING,
    HELD,
    SHADOW,
    ModelGate,
    Promotion,
    PromotionConfig,
    Score,
    counterfactual_on_budget,
)
from krystal.reasoning.styles import ladder


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


class FixedChooser:
    """A stand-in model that always wants one ladder level (the gate, not the model, is tested)."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.frames = 0

    def observe(self, ctx: Context, **frame: object) -> None:
        self.frames += 1

    def choose(self, styles: tuple, level: int, allowed: list[int]) -> tuple[int, str, float]:  # type: ignore[type-arg]
        return (self.level if self.level in allowed else level), "fixed", 1.0


@pytest.mark.parametrize(("wanted", "promoted"), [(-1, False), (0, True)], ids=["cheapest", "full"])
def test_model_gate_scores_shadow_periods_on_the_rules_frames(wanted: int, promoted: bool) -> None:
    """A real Reasoner and FrameBook: the rules keep the full style (frames at 5 ms); a model that
    wants the cheapest style is worse on quality and stays in shadow; one that keeps it is promoted."""
    ladder_ = ladder(
        ["edges", "ramp"], kernel="luminance", kernel_sizes=[5, 3], columns=120, rows=45, grid_scales=[0.5]
    )
    reasoner = Reasoner(ReasonerConfig(policy="learned"), {"calm": ladder_, "fast": ladder_})
    clock = Clock()
    chooser = FixedChooser(wanted % len(ladder_))
    book = FrameBook()
    gate = ModelGate(chooser, Promotion(CONFIG, clock), reasoner, book)
    assert reasoner.step(0.0, Context()) is not None and reasoner.chooser is None
    shadows = []
    for i in range(1, 30 * 20):  # 20 s at 30 fps, a period every 0.5 s
        clock.t = i / 30
        frame = {"mode": "edges", "kernel_size": 5, "columns": 120, "rows": 45, "render_ms": 5.0}
        reasoner.frame(clock.t, **frame)  # type: ignore[arg-type]
        gate.observe(Context(), **frame)
        book.add(clock.t, 15.0, 5.0)
        assert reasoner.step(clock.t, Context()) is None or promoted  # the rules keep the full style
        if i % 15 == 0:
            shadow, _ = gate.period(clock.t, 33.0)
            shadows += [shadow] if shadow is not None else []
    assert gate.promotion.acting is promoted and (reasoner.chooser is chooser) is promoted
    assert shadows and shadows[0].rules_style == ladder_[0] and shadows[0].model_choice == ladder_[wanted]
    assert shadows[0].score.model_on_budget == 1.0 and shadows[0].score.rules_on_budget == 1.0
    assert chooser.frames > 0
