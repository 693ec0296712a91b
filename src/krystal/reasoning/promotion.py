"""A deployed model goes live only after it proves itself: shadow, then acting, rolled back if it
falls behind (docs/reasoning.md, "Model promotion").

ROS-free, with an injectable clock. The node scores one period (`learned_period_s`) at a time:
in shadow the rules act and the model's choice is scored counterfactually on the same frames; once
acting, the model's own frames are scored against what the rules achieved in the shadow window.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from krystal.reasoning.context import Context
from krystal.reasoning.delivery import FrameBook
from krystal.reasoning.policy import Chooser, Reasoner
from krystal.reasoning.styles import Style, quality

SHADOW, ACTING, HELD = "shadow", "acting", "held"


@dataclass(frozen=True)
class PromotionConfig:
    decisions: int = 60  # scored periods in the window that decides (60 x 0.5 s = 30 s)
    min_shadow_s: float = 30.0  # and at least this long in shadow
    budget_tolerance: float = 0.02  # the model's on-budget fraction may be this much below the rules'
    quality_tolerance: float = 0.02  # and its quality this much below, unless it buys budget_gain
    budget_gain: float = 0.05
    rollback_margin: float = 0.05  # acting: this far behind the rules' shadow-window figures
    max_rollbacks: int = 3  # then held in shadow until a model is deployed again


@dataclass(frozen=True)
class Score:
    """One period: on-budget fraction and quality of the model's style and of the rules' style
    (NaN where not measured: once acting, only the model's own frames are)."""

    model_on_budget: float
    model_quality: float
    rules_on_budget: float = math.nan
    rules_quality: float = math.nan


@dataclass(frozen=True)
class Transition:
    time_s: float
    phase_from: str
    phase_to: str
    event: str  # "promoted", "rolled_back", "held"
    reason: str
    figures: dict[str, float] = field(default_factory=dict)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


class Promotion:
    """The state machine of one deployed model: shadow -> acting -> (rolled back) shadow ... held."""

    def __init__(self, config: PromotionConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.phase = SHADOW
        self.since_s = clock()
        self.rollbacks = 0
        self.baseline: tuple[float, float] | None = None  # rules' (on-budget, quality) at promotion
        self._window: deque[Score] = deque(maxlen=max(1, config.decisions))
        self.scored = 0

    @property
    def acting(self) -> bool:
        return self.phase == ACTING

    def figures(self) -> dict[str, float]:
        """Means over the current window (what /diagnostics shows)."""
        w = list(self._window)
        out = {
            "periods": float(len(w)),
            "model_on_budget": _mean([s.model_on_budget for s in w]),
            "model_quality": _mean([s.model_quality for s in w]),
        }
        if self.phase == ACTING and self.baseline is not None:
            out["rules_on_budget"], out["rules_quality"] = self.baseline
        else:
            out["rules_on_budget"] = _mean([s.rules_on_budget for s in w])
            out["rules_quality"] = _mean([s.rules_quality for s in w])
        return out

    def score(self, s: Score) -> Transition | None:
        """Add one period; the transition it caused, if any. A period without a measurable
        on-budget fraction (no frames) does not count."""
        if not math.isfinite(s.model_on_budget) or not math.isfinite(s.model_quality):
            return None
        if self.phase != ACTING and not (math.isfinite(s.rules_on_budget) and math.isfinite(s.rules_quality)):
            return None
        self._window.append(s)
        self.scored += 1
        if len(self._window) < self._window.maxlen:  # type: ignore[operator]
            return None
        if self.phase == SHADOW:
            return self._judge_shadow()
        if self.phase == ACTING:
            return self._judge_acting()
        return None  # held: scored and shown, never promoted again

    def _judge_shadow(self) -> Transition | None:
        c = self.config
        if self.clock() - self.since_s < c.min_shadow_s:
            return None
        f = self.figures()
        budget_ok = f["model_on_budget"] >= f["rules_on_budget"] - c.budget_tolerance
        quality_ok = f["model_quality"] >= f["rules_quality"] - c.quality_tolerance
        buys_budget = f["model_on_budget"] >= f["rules_on_budget"] + c.budget_gain
        if not (budget_ok and (quality_ok or buys_budget)):
            return None
        self.baseline = (f["rules_on_budget"], f["rules_quality"])
        return self._move(ACTING, "promoted", "no worse than the rules over the shadow window", f)

    def _judge_acting(self) -> Transition | None:
        assert self.baseline is not None
        c = self.config
        f = self.figures()
        rules_budget, rules_quality = self.baseline
        behind_budget = f["model_on_budget"] < rules_budget - c.rollback_margin
        behind_quality = f["model_quality"] < rules_quality - c.rollback_margin and not (
            f["model_on_budget"] > rules_budget
        )
        if not (behind_budget or behind_quality):
            return None
        self.rollbacks += 1
        what = "on-budget fraction" if behind_budget else "quality"
        if self.rollbacks >= c.max_rollbacks:
            return self._move(HELD, "held", f"{what} behind the rules; rollback {self.rollbacks}: held", f)
        return self._move(SHADOW, "rolled_back", f"{what} behind the rules (rollback {self.rollbacks})", f)

    def _move(self, phase: str, event: str, reason: str, figures: dict[str, float]) -> Transition:
        t = Transition(self.clock(), self.phase, phase, event, reason, figures)
        self.phase = phase
        self.since_s = t.time_s
        self._window.clear()
        return t


def counterfactual_on_budget(frames: list[tuple[float, float]], cost_ratio: float, budget_ms: float) -> float:
    """Share of `frames` (e2e ms, render ms) within the budget had each rendered `cost_ratio` times
    as long (the predicted cost of another style over the current one's): e2e - render +
    render x ratio; the render time alone where a frame has no e2e. NaN without frames."""
    if not math.isfinite(cost_ratio) or cost_ratio <= 0:
        return math.nan
    costs = []
    for e2e, render in frames:
        if not math.isfinite(render):
            continue
        costs.append((e2e - render if math.isfinite(e2e) else 0.0) + render * cost_ratio)
    return sum(c <= budget_ms for c in costs) / len(costs) if costs else math.nan


@dataclass(frozen=True)
class ShadowChoice:
    """One scored shadow period: what the model picked, what the rules rendered, the score."""

    model_choice: Style
    rules_style: Style
    score: Score


class ModelGate:
    """A deployed model beside the Reasoner, through its promotion: the Reasoner gets the model as
    its chooser only while acting; in shadow the gate feeds it frames and asks it each period."""

    def __init__(self, model: Chooser, promotion: Promotion, reasoner: Reasoner, book: FrameBook) -> None:
        self.model = model
        self.promotion = promotion
        self.reasoner = reasoner
        self.book = book
        self._pick: tuple[Style, Style] | None = None  # (model's pick, rules' style) for this period
        self._period_start = -math.inf
        reasoner.chooser = None  # the rules act until the model is promoted

    def observe(self, ctx: Context, **frame: Any) -> None:
        """A rendered frame (AsciiFrame fields): acting, the Reasoner passes it on itself."""
        if not self.promotion.acting:
            self.model.observe(ctx, **frame)

    def period(self, now_s: float, budget_ms: float) -> tuple[ShadowChoice | None, Transition | None]:
        """Score the period that ends now and, in shadow, let the model pick for the next one.
        Model errors propagate (the node logs them); the rules act either way."""
        start, self._period_start = self._period_start, now_s
        r = self.reasoner.rules
        base = self.reasoner.base_cells
        shadow: ShadowChoice | None = None
        if self.promotion.acting:
            got = self.book.between(start, now_s, budget_ms)
            transition = self.promotion.score(Score(got.on_budget_fraction, quality(r.style, base)))
        else:
            transition = None
            if self._pick is not None:
                pick, rendered = self._pick
                frames = self.book.frames(start, now_s)
                cost = self.reasoner.predict(rendered).ms  # the model's style costs `ratio` x this
                ratio = self.reasoner.predict(pick).ms / cost if cost > 0 else math.nan
                score = Score(
                    counterfactual_on_budget(frames, ratio, budget_ms),
                    quality(pick, base),
                    counterfactual_on_budget(frames, 1.0, budget_ms),
                    quality(rendered, base),
                )
                transition = self.promotion.score(score)
                shadow = ShadowChoice(pick, rendered, score)
            self._pick = None
            if not self.promotion.acting:  # shadow (or held): pick again, logged, not applied
                allowed = r.allowed(now_s, self.reasoner.predict if r.config.predict else None)
                choice = self.model.choose(r.styles, r.level, allowed)
                if choice is not None and choice[0] in allowed:
                    self._pick = (r.styles[choice[0]], r.style)
        if transition is not None:
            self.reasoner.chooser = self.model if self.promotion.acting else None
        return shadow, transition
