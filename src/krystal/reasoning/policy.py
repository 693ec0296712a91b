"""The reasoner: rules always on, frame-time prediction, optional TD policy, decision outcomes.

ROS-free: the node feeds it frames and context with a time, and publishes what `step` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from krystal.reasoning.context import Context
from krystal.reasoning.predictor import FramePredictor, Load, Prediction
from krystal.reasoning.rules import Proposal, RuleConfig, Rules
from krystal.reasoning.styles import Style, quality
from krystal.reasoning.td import DoubleQ, TdConfig, reward, state_of

POLICIES = ("rules", "rules_td", "learned")


class Chooser(Protocol):
    """A learned policy (krystal.learning.policy_runtime): sees every frame, picks among allowed levels."""

    def observe(
        self, ctx: Context, *, mode: str, kernel_size: int, columns: int, rows: int, render_ms: float
    ) -> None:
        """One rendered frame, with the newest context."""

    def choose(
        self, styles: tuple[Style, ...], level: int, allowed: list[int]
    ) -> tuple[int, str, float] | None:
        """(level, reason, confidence) among `allowed` of `styles`, or None (no opinion yet)."""


@dataclass(frozen=True)
class SourceConfig:
    """The source actuators: render feed width from the grid, frame rate lowered under pressure."""

    width_per_column_px: float = 4.0  # render feed px per grid column (2 samples a cell, 2x); 0: not driven
    width_min_px: int = 160
    width_max_px: int = 1920
    fps: float = 30.0  # the rate sent normally
    fps_min: float = 15.0  # the rate sent under pressure (the cheapest style still over budget)

    def width_px(self, columns: int) -> int:
        if self.width_per_column_px <= 0:
            return 0
        px = round(columns * self.width_per_column_px / 2) * 2
        return int(min(self.width_max_px, max(self.width_min_px, px)))


@dataclass(frozen=True)
class ReasonerConfig:
    rules: RuleConfig = field(default_factory=RuleConfig)
    policy: str = "rules"  # "rules", "rules_td" or "learned"
    td: TdConfig = field(default_factory=TdConfig)
    td_period_s: float = 1.0  # one TD step (choose, then learn from the epoch's frames)
    outcome_frames: int = 30  # frames after a decision that make its outcome
    outcome_timeout_s: float = 3.0  # outcome closed with what arrived by then
    learned_period_s: float = 0.5  # how often a learned policy is asked
    source: SourceConfig = field(default_factory=SourceConfig)


@dataclass(frozen=True)
class Decision:
    decision_id: int
    style: Style
    policy: str  # "rules", "td" or "learned"
    rule: str  # which rule (or "td") made it
    reason: str
    confidence: float
    predicted_ms: float
    budget_ms: float
    context: Context
    time_s: float
    source_width_px: int = 0  # render feed width video_source is asked for; 0: keep its own
    source_fps: float = 0.0  # source frame rate asked for; 0: keep its own
    shed: bool = False  # non-critical work shed (pressure)


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    frames: int
    latency_ms: float  # mean render time of the frames in the decided style, NaN if none came
    latency_max_ms: float
    over_budget_frames: int
    budget_met: bool | None  # None when no frame arrived


@dataclass
class _Pending:
    decision: Decision
    render_ms: list[float] = field(default_factory=list)


def context_load(ctx: Context) -> Load:
    return Load(ctx.cpu_ratio, ctx.gpu_utilization_ratio, ctx.temperature_c)


class Reasoner:
    def __init__(
        self,
        config: ReasonerConfig,
        ladders: dict[str, tuple[Style, ...]],
        predictor: FramePredictor | None = None,
        q: DoubleQ | None = None,
        chooser: Chooser | None = None,
    ) -> None:
        if config.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        self.config = config
        self.rules = Rules(config.rules, ladders)
        self.predictor = predictor or FramePredictor()
        n = max(len(v) for v in self.rules.ladders.values())
        self.q = q if q is not None else DoubleQ(n, config.td)
        self.base_cells = self.rules.ladders["calm"][0].cells
        self.current: Decision | None = None
        self.next_id = 1
        self._pending: _Pending | None = None
        self._done: list[Outcome] = []
        self._load = Load()
        self._epoch_start = -math.inf
        self._epoch_ms: list[float] = []
        self._epoch_switched = False
        self._prev_sa: tuple[str, int] | None = None
        self.chooser = chooser  # policy "learned" without one: the rules alone (fallback)
        self._ctx = Context()
        self._learned_at = -math.inf

    # -- inputs --------------------------------------------------------------------------------
    def frame(
        self,
        now_s: float,
        *,
        mode: str,
        kernel_size: int,
        columns: int,
        rows: int,
        render_ms: float,
        e2e_ms: float = math.nan,
    ) -> None:
        """A frame the renderer published (AsciiFrame fields; e2e_ms: capture stamp -> published)."""
        if not math.isfinite(render_ms) or render_ms < 0:
            return
        if self.chooser is not None:
            self.chooser.observe(
                self._ctx, mode=mode, kernel_size=kernel_size, columns=columns, rows=rows, render_ms=render_ms
            )
        style = self.rules.style
        matches = style.rendered_as(mode, kernel_size, columns, rows)
        seen = style if matches else self._seen_style(mode, kernel_size, columns, rows)
        self.predictor.observe(seen, self._load, render_ms)
        if not matches:
            return
        self.rules.frame(render_ms, e2e_ms)
        self._epoch_ms.append(render_ms)
        p = self._pending
        if p is not None and p.decision.style == style:
            p.render_ms.append(render_ms)
            if len(p.render_ms) >= self.config.outcome_frames:
                self._close(p)

    def _seen_style(self, mode: str, kernel_size: int, columns: int, rows: int) -> Style:
        for styles in self.rules.ladders.values():
            for s in styles:
                if s.rendered_as(mode, kernel_size, columns, rows):
                    return s
        kernel = self.rules.style.kernel
        return Style(mode, kernel, kernel_size if mode != "ramp" else 3, columns, rows)

    def predict(self, style: Style) -> Prediction:
        return self.predictor.predict(style, self._load)

    # -- decisions -----------------------------------------------------------------------------
    def step(self, now_s: float, ctx: Context) -> Decision | None:
        """The new decision, if any (the first call always makes one)."""
        self._load = context_load(ctx)
        self._ctx = ctx
        p = self._pending
        if p is not None and now_s - p.decision.time_s >= self.config.outcome_timeout_s:
            self._close(p)
        predict = self.predict if self.config.rules.predict else None
        if self.current is None:
            start = Proposal("calm", 0, "start", "start")
            proposal: Proposal | None = start
        else:
            # under TD or a learned policy the rules keep the guardrails; stepping up is the policy's
            rules_step_up = self.config.policy == "rules" or (
                self.config.policy == "learned" and self.chooser is None
            )
            proposal = self.rules.propose(now_s, ctx, predict, step_up=rules_step_up)
        if proposal is not None:
            if proposal.rule == "start":
                self._epoch_start = now_s  # the first TD step sees frames of the first style
            return self._decide(
                now_s,
                ctx,
                proposal.family,
                proposal.level,
                policy="rules",
                rule=proposal.rule,
                reason=proposal.reason,
                pressure=proposal.pressure,
            )
        if self.config.policy == "rules_td" and now_s - self._epoch_start >= self.config.td_period_s:
            return self._td_step(now_s, ctx, predict)
        if (
            self.config.policy == "learned"
            and self.chooser is not None
            and now_s - self._learned_at >= self.config.learned_period_s
        ):
            return self._learned_step(now_s, ctx)
        return None

    def _learned_step(self, now_s: float, ctx: Context) -> Decision | None:
        """The learned policy picks among the levels the rules allow (the guardrails stay first)."""
        assert self.chooser is not None
        self._learned_at = now_s
        r = self.rules
        allowed = r.allowed(now_s, self.predict if self.config.rules.predict else None)
        pick = self.chooser.choose(r.styles, r.level, allowed)
        if pick is None or pick[0] == r.level or pick[0] not in allowed:
            return None
        level, why, confidence = pick
        return self._decide(
            now_s, ctx, r.family, level, policy="learned", rule="learned", reason=why, confidence=confidence
        )

    def _td_step(self, now_s: float, ctx: Context, predict: object) -> Decision | None:
        r = self.rules
        cfg = self.config
        style = r.style
        load_factor = self._load_factor(style)
        s = state_of(ctx, load_factor, r.family, r.hot)
        allowed = r.allowed(now_s, self.predict if cfg.rules.predict else None)
        if self._prev_sa is not None and self._epoch_ms:
            met = sum(ms <= cfg.rules.budget_ms for ms in self._epoch_ms) / len(self._epoch_ms)
            fit = 0.0 if (r.hot and r.level < r.floor()) else 1.0
            rw = reward(cfg.td, met, quality(style, self.base_cells), fit, self._epoch_switched)
            s0, _ = self._prev_sa
            self.q.update(s0, r.level, rw, s, allowed)
        self._epoch_start = now_s
        self._epoch_ms = []
        self._epoch_switched = False
        action, explored = self.q.choose(s, allowed)
        # a switch costs w_switch now: a greedy move must be worth more than that
        if not explored and self.q.value(s, action) - self.q.value(s, r.level) <= 2 * cfg.td.w_switch:
            action = r.level
        self._prev_sa = (s, action)
        if action == r.level:
            return None
        eps = self.q.epsilon
        why = "explore" if explored else f"Q {self.q.value(s, action):.2f} in state {s}"
        return self._decide(
            now_s,
            ctx,
            r.family,
            action,
            policy="td",
            rule="td",
            reason=f"td: {why}",
            confidence=eps if explored else 1 - eps,
        )

    def _load_factor(self, style: Style) -> float:
        p = self.predict(style)
        base = p.ms - self.predictor.residual_ms
        if not p.known or base <= 0:
            return math.nan
        return p.ms / base

    def _decide(
        self,
        now_s: float,
        ctx: Context,
        family: str,
        level: int,
        *,
        policy: str,
        rule: str,
        reason: str,
        confidence: float | None = None,
        pressure: bool | None = None,
    ) -> Decision | None:
        changed = self.rules.apply(now_s, family, level, pressure)
        if not changed and self.current is not None:
            return None
        self._epoch_switched = True
        style = self.rules.style
        if ctx.stale:
            reason += f"; stale: {', '.join(ctx.stale)}"
        pred = self.predict(style)
        decision = Decision(
            decision_id=self.next_id,
            style=style,
            policy=policy,
            rule=rule,
            reason=reason,
            confidence=confidence if confidence is not None else (0.8 if rule == "predict" else 1.0),
            predicted_ms=pred.ms if pred.known else math.nan,
            budget_ms=self.config.rules.budget_ms,
            context=ctx,
            time_s=now_s,
            **self.actuators(style),  # type: ignore[arg-type]
        )
        self.next_id += 1
        if self._pending is not None:
            self._close(self._pending)
        self._pending = _Pending(decision)
        self.current = decision
        return decision

    def actuators(self, style: Style) -> dict[str, object]:
        """What the decision asks of the source and of non-critical work, besides the style."""
        src = self.config.source
        pressed = self.rules.pressure
        return {
            "source_width_px": src.width_px(style.columns),
            "source_fps": src.fps_min if pressed else src.fps,
            "shed": pressed,
        }

    # -- outcomes ------------------------------------------------------------------------------
    def _close(self, p: _Pending) -> None:
        ms = p.render_ms
        budget = p.decision.budget_ms
        over = sum(x > budget for x in ms)
        self._done.append(
            Outcome(
                decision=p.decision,
                frames=len(ms),
                latency_ms=sum(ms) / len(ms) if ms else math.nan,
                latency_max_ms=max(ms) if ms else math.nan,
                over_budget_frames=over,
                budget_met=(over <= 0.1 * len(ms)) if ms else None,
            )
        )
        if self._pending is p:
            self._pending = None

    def outcomes(self) -> list[Outcome]:
        """Outcomes completed since the last call."""
        done, self._done = self._done, []
        return done

    def flush(self) -> list[Outcome]:
        """Close the open outcome too (shutdown)."""
        if self._pending is not None:
            self._close(self._pending)
        return self.outcomes()


def log_record(decision: Decision, timestamp: float, outcome: Outcome | None = None) -> dict[str, object]:
    """One decision log line in the roadmap's shape (docs/reasoning.md); NaN becomes null."""
    c, s = decision.context, decision.style
    return {
        "timestamp": timestamp,
        "vulkan_state": {
            # from the Krystal Vulkan layer (gpu_telemetry); null with no application attached
            "vertex_count": c.gpu_vertex_count,
            "shader": c.gpu_shader or None,
            "gpu_source": c.gpu_source or None,
            "gpu_utilization": c.gpu_utilization_ratio,
            "gpu_memory_used_ratio": c.gpu_memory_used_ratio,
            "draw_calls": c.gpu_draw_calls,
        },
        "thermal_state": {"cpu_temp": c.temperature_c, "penalty": c.throttle_penalty},
        "audio_state": {"bpm": c.audio_tempo_bpm, "rms_dbfs": c.audio_rms_dbfs},
        "render_state": {
            "render_time_ms": c.render_time_ms,
            "fps": c.render_fps,
            "cpu_use": c.cpu_ratio,
            "e2e_latency_ms": c.e2e_latency_ms,
            "delivered_fps": c.delivered_fps,
        },
        "stale": list(c.stale),
        "decision": {
            "decision_id": decision.decision_id,
            "mode": s.mode,
            "kernel": s.kernel,
            "kernel_size": s.kernel_size,
            "columns": s.columns,
            "rows": s.rows,
            "policy": decision.policy,
            "rule": decision.rule,
            "reason": decision.reason,
            "predicted_ms": decision.predicted_ms,
            "budget_ms": decision.budget_ms,
            "source_width_px": decision.source_width_px,
            "source_fps": decision.source_fps,
            "shed": decision.shed,
        },
        "outcome": None
        if outcome is None
        else {
            "latency": outcome.latency_ms,
            "latency_max": outcome.latency_max_ms,
            "frames": outcome.frames,
            "over_budget_frames": outcome.over_budget_frames,
            "budget_met": outcome.budget_met,
            "user_rating": None,
        },
    }
