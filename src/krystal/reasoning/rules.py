"""The guardrail rules: budget, headroom, tempo and thermal, with hysteresis and minimum dwell.

A state machine over a ladder of styles (styles.py). Time comes in as an argument (seconds on
any monotonic clock), so tests drive it frame by frame.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from krystal.reasoning.context import Context
from krystal.reasoning.predictor import Prediction
from krystal.reasoning.styles import Style, mode_floor

Predict = Callable[[Style], Prediction]


@dataclass(frozen=True)
class RuleConfig:
    budget_ms: float = 33.0
    over_frames: int = 3  # K frames over budget among the last over_window: step down
    # late frames under a CPU quota come between frames on time (the box runs, then is throttled):
    # counting them in a window, not only in a row, steps down in a fraction of a second, not seconds
    over_window: int = 6
    # at the bottom, pressure also when frames are late too often, even if never 3 close together:
    # more than pressure_late_ratio of the last pressure_window frames (the on-budget goal is a rate)
    pressure_window: int = 30
    pressure_late_ratio: float = 0.1
    headroom_ratio: float = 0.5  # a frame under budget * ratio counts as headroom
    headroom_frames: int = 30  # this many headroom frames in a row: step up
    min_dwell_s: float = 3.0  # no step up sooner than this after any change
    down_dwell_s: float = 0.3  # no step down sooner (frames of the old style are still arriving)
    context_dwell_s: float = 1.0  # tempo/thermal switches no sooner than this after a change
    backoff_factor: float = 2.0  # a step up undone within backoff_window_s multiplies the up dwell
    backoff_window_s: float = 10.0
    max_dwell_s: float = 60.0
    tempo_high_bpm: float = 140.0  # above: the fast (music) ladder
    tempo_low_bpm: float = 120.0  # below: back to the calm ladder
    thermal_high: float = 0.6  # throttle penalty at or above: cheaper modes
    thermal_low: float = 0.4  # below: the restriction is lifted
    predict: bool = True  # act on predicted frame times, not only measured ones
    predict_margin: float = 0.9  # predicted > budget * margin: step down before the budget is missed
    fit_ratio: float = 0.75  # a target style must be predicted under budget * fit_ratio
    probe_factor: float = 3.0  # a step up predicted not to fit is tried after this many up dwells
    act_on_chaos: bool = True  # a chaotic render time (surrogate-tested): one step down, no step up
    objective: str = "e2e"  # "e2e": frames judged by capture -> AsciiFrame published; "render": render time


@dataclass(frozen=True)
class Proposal:
    family: str
    level: int
    reason: str
    rule: str  # "budget", "predict", "headroom", "tempo", "thermal", "chaos", "start", "pressure", "relief"
    pressure: bool | None = None  # "pressure"/"relief": shed work and lower the source rate, or restore


class Rules:
    """Holds the current (family, level) and proposes changes; `apply` commits one."""

    def __init__(self, config: RuleConfig, ladders: dict[str, tuple[Style, ...]]) -> None:
        if not ladders.get("calm"):
            raise ValueError("the calm ladder is empty")
        self.config = config
        self.ladders = {k: v for k, v in ladders.items() if v}
        self.family = "calm"
        self.level = 0
        self.hot = False
        self.last_change_s = -math.inf
        self.last_up_s = -math.inf
        self.up_dwell_s = config.min_dwell_s
        self.over = 0  # frames over budget among the last over_window in this style
        self._overs: deque[bool] = deque(maxlen=max(config.over_window, config.over_frames))
        self._lates: deque[bool] = deque(maxlen=config.pressure_window)  # the same flags, longer
        self.headroom = 0
        self.chaotic = False  # the render time is flagged chaotic now (and act_on_chaos)
        self.pressure = False  # at the bottom and still over: non-critical work shed, source rate lowered
        self.overhead_ms = 0.0  # frame time outside the render (capture, transport), smoothed
        self._chaos_acted = False  # this chaos episode had its step down

    @property
    def styles(self) -> tuple[Style, ...]:
        return self.ladders[self.family]

    @property
    def style(self) -> Style:
        return self.styles[self.level]

    def floor(self, family: str | None = None) -> int:
        return mode_floor(self.ladders[family or self.family]) if self.hot else 0

    def frame(self, render_ms: float, e2e_ms: float = math.nan) -> None:
        """One frame rendered in the current style: its render time and, when the frame's capture
        stamp is known, its capture -> AsciiFrame time, which is what the objective judges."""
        c = self.config
        cost = e2e_ms if c.objective == "e2e" and math.isfinite(e2e_ms) else render_ms
        if math.isfinite(e2e_ms) and math.isfinite(render_ms):
            self.overhead_ms += 0.1 * (max(0.0, e2e_ms - render_ms) - self.overhead_ms)
        window = max(c.over_window, c.over_frames)
        if self._overs.maxlen != window:
            self._overs = deque(self._overs, maxlen=window)
        if self._lates.maxlen != c.pressure_window:
            self._lates = deque(self._lates, maxlen=c.pressure_window)
        self._overs.append(cost > c.budget_ms)
        self._lates.append(cost > c.budget_ms)
        self.over = sum(self._overs)
        self.headroom = self.headroom + 1 if cost < c.budget_ms * c.headroom_ratio else 0

    def fit_limit_ms(self) -> float:
        """A render time predicted under this fits: the budget's fit share less the time outside
        the render (under objective e2e)."""
        c = self.config
        overhead = self.overhead_ms if c.objective == "e2e" else 0.0
        return c.budget_ms * c.fit_ratio - overhead

    def _fitting(self, styles: tuple[Style, ...], start: int, predict: Predict | None) -> int:
        """One rung (`start`) unless its prediction is known not to fit: then further down, past
        rungs known not to fit, to the first known to fit or never measured; the bottom when all
        are known not to fit. A rung never measured is never skipped."""
        if predict is None or not self.config.predict:
            return min(start, len(styles) - 1)
        limit = self.fit_limit_ms()
        for i in range(start, len(styles)):
            p = predict(styles[i])
            if not p.known or p.ms <= limit:
                return i
        return len(styles) - 1

    def _context(self, ctx: Context) -> tuple[str, str]:
        c = self.config
        tempo, family = ctx.audio_tempo_bpm, self.family
        if math.isnan(tempo):
            family = "calm"
        elif tempo >= c.tempo_high_bpm:
            family = "fast"
        elif tempo < c.tempo_low_bpm:
            family = "calm"
        if family not in self.ladders:
            family = "calm"
        if family == self.family:
            return family, ""
        if family == "fast":
            return family, f"tempo {tempo:.0f} BPM >= {c.tempo_high_bpm:.0f}"
        why = "audio stale" if math.isnan(tempo) else f"tempo {tempo:.0f} BPM < {c.tempo_low_bpm:.0f}"
        return family, why

    def _thermal(self, ctx: Context) -> bool:
        p = ctx.throttle_penalty
        if math.isnan(p):
            return self.hot  # unknown: keep what we had, no guess
        if p >= self.config.thermal_high:
            return True
        if p < self.config.thermal_low:
            return False
        return self.hot

    def propose(
        self, now_s: float, ctx: Context, predict: Predict | None = None, step_up: bool = True
    ) -> Proposal | None:
        """The change the rules want now, if any; `step_up` False leaves steps up to a policy."""
        c = self.config
        since = now_s - self.last_change_s
        family, why = self._context(ctx)
        if why and since >= c.context_dwell_s:
            start = max(self.floor(family), min(self.level, len(self.ladders[family]) - 1))
            if family != "calm":
                start = self.floor(family)  # a mode change: take the new family's best fitting style
            return Proposal(family, self._fitting(self.ladders[family], start, predict), why, "tempo")
        hot = self._thermal(ctx)
        if hot != self.hot:
            self.hot = hot
        floor = self.floor()
        if self.level < floor and since >= c.context_dwell_s:
            return Proposal(
                self.family,
                floor,
                f"thermal penalty {ctx.throttle_penalty:.2f} >= {c.thermal_high}",
                "thermal",
            )
        bottom = len(self.styles) - 1
        chaos = ctx.render_chaos_per_s
        self.chaotic = c.act_on_chaos and not math.isnan(chaos)
        if not self.chaotic:
            self._chaos_acted = False  # the episode is over: the next one steps down again
        elif not self._chaos_acted and since >= c.down_dwell_s:
            # frame times that are chaotic cannot be predicted: a cheaper style, held while it lasts
            self._chaos_acted = True
            if self.level < bottom:
                return Proposal(
                    self.family,
                    self.level + 1,
                    f"render time chaotic (Lyapunov exponent {chaos:.3g}/s, surrogate-tested)",
                    "chaos",
                )
        if self.level < bottom and since >= c.down_dwell_s:
            if self.over >= c.over_frames:
                target = self._fitting(self.styles, self.level + 1, predict)
                return Proposal(
                    self.family,
                    target,
                    f"render {ctx.render_time_ms:.1f} ms over the {c.budget_ms:.0f} ms budget "
                    f"for {self.over} of the last {len(self._overs)} frames",
                    "budget",
                )
            if predict is not None and c.predict:
                p = predict(self.style)
                if p.known and p.ms > c.budget_ms * c.predict_margin:
                    return Proposal(
                        self.family,
                        self._fitting(self.styles, self.level + 1, predict),
                        f"predicted {p.ms:.1f} ms > {c.predict_margin:.0%} of the "
                        f"{c.budget_ms:.0f} ms budget",
                        "predict",
                    )
        late = sum(self._lates)
        often = len(self._lates) == c.pressure_window and late > c.pressure_late_ratio * c.pressure_window
        if (
            self.level == bottom
            and not self.pressure
            and (self.over >= c.over_frames or often)
            and since >= c.down_dwell_s
        ):
            return Proposal(
                self.family,
                self.level,
                f"frames still over the {c.budget_ms:.0f} ms budget at the cheapest style "
                f"({late} of the last {len(self._lates)}): "
                "shedding non-critical work, lowering the source rate",
                "pressure",
                pressure=True,
            )
        if self.pressure and self.headroom >= c.headroom_frames and since >= self.up_dwell_s:
            return Proposal(
                self.family,
                self.level,
                f"headroom: {self.headroom} frames under {c.headroom_ratio:.0%} of the budget; "
                "restoring shed work and the source rate",
                "relief",
                pressure=False,
            )
        if (
            step_up
            and not self.chaotic
            and not self.pressure
            and self.level > floor
            and self.headroom >= c.headroom_frames
            and since >= self.up_dwell_s
        ):
            target = self.level - 1
            if predict is not None and c.predict:
                p = predict(self.styles[target])
                # a prediction can be stale (that style was last seen under load): it holds the
                # step up back for at most probe_factor dwells, then the style is tried again
                if p.known and p.ms > self.fit_limit_ms() and since < c.probe_factor * self.up_dwell_s:
                    return None
            return Proposal(
                self.family,
                target,
                f"headroom: {self.headroom} frames under {c.headroom_ratio:.0%} of the budget",
                "headroom",
            )
        return None

    def apply(self, now_s: float, family: str, level: int, pressure: bool | None = None) -> bool:
        """Commit a change (from the rules or a policy they bounded); False if nothing changed."""
        level = max(0, min(level, len(self.ladders[family]) - 1))
        if pressure is not None and pressure != self.pressure:
            self.pressure = pressure
            self.last_change_s = now_s
            self._reset_counts()
            if pressure:  # undone soon after a relief: the relief waits longer next time
                if now_s - self.last_up_s < self.config.backoff_window_s:
                    self.up_dwell_s = min(
                        self.config.max_dwell_s, self.up_dwell_s * self.config.backoff_factor
                    )
            else:
                self.last_up_s = now_s
            return True
        if family == self.family and level == self.level:
            return False
        c = self.config
        down = family == self.family and level > self.level
        up = family == self.family and level < self.level
        if down and now_s - self.last_up_s < c.backoff_window_s:
            self.up_dwell_s = min(c.max_dwell_s, self.up_dwell_s * c.backoff_factor)  # it flapped
        elif up:
            if now_s - self.last_change_s > c.backoff_window_s:
                self.up_dwell_s = c.min_dwell_s  # held well: forget the backoff
            self.last_up_s = now_s
        self.family, self.level = family, level
        self.last_change_s = now_s
        self._reset_counts()
        return True

    def _reset_counts(self) -> None:
        self.over = self.headroom = 0
        self._overs.clear()
        self._lates.clear()

    def allowed(self, now_s: float, predict: Predict | None) -> list[int]:
        """Levels a learning policy may pick now: at or above the floor, within the dwell rules,
        and predicted to fit (a style never measured: downwards, or one step up with headroom)."""
        c = self.config
        since = now_s - self.last_change_s
        out = [self.level]
        for lv in range(self.floor(), len(self.styles)):
            if lv == self.level:
                continue
            if lv < self.level and (since < self.up_dwell_s or self.chaotic or self.pressure):
                continue
            if lv > self.level and since < c.down_dwell_s:
                continue
            if predict is not None and c.predict:
                p = predict(self.styles[lv])
                # a style never measured: one step up, with the headroom the rules ask for
                if (
                    not p.known
                    and lv < self.level
                    and (lv < self.level - 1 or self.headroom < c.headroom_frames)
                ):
                    continue
                if p.known and p.ms > self.fit_limit_ms():
                    continue
            out.append(lv)
        return sorted(out)
