"""The loop's objective and actuators (issue 29), ROS-free: frames judged by capture -> AsciiFrame
time, one rung at a time unless a prediction is known to fit, the source actuators and shedding
under pressure in every decision."""

from __future__ import annotations

import itertools
import math

from krystal.reasoning.context import Context
from krystal.reasoning.policy import Reasoner, ReasonerConfig, SourceConfig, log_record
from krystal.reasoning.predictor import Prediction
from krystal.reasoning.rules import RuleConfig, Rules
from krystal.reasoning.styles import Style, ladder

CALM = ladder(
    ["edges", "ramp"], kernel="luminance", kernel_sizes=[5, 3], columns=120, rows=45, grid_scales=[0.75, 0.5]
)
LADDERS = {"calm": CALM}
CFG = RuleConfig(predict=True, over_frames=3, headroom_frames=10, min_dwell_s=2.0, down_dwell_s=0.3)


def _frames(rules: Rules, render_ms: float, e2e_ms: float, n: int) -> None:
    for _ in range(n):
        rules.frame(render_ms, e2e_ms)


def test_frames_are_judged_by_their_end_to_end_time() -> None:
    """A fast render of frames that arrive late is over budget (it was not before: render only)."""
    r = Rules(RuleConfig(predict=False, over_frames=3), LADDERS)
    _frames(r, 2.0, 50.0, 3)
    p = r.propose(10.0, Context())
    assert p is not None and p.rule == "budget" and p.level == 1
    old = Rules(RuleConfig(predict=False, over_frames=3, objective="render"), LADDERS)
    _frames(old, 2.0, 50.0, 3)
    assert old.propose(10.0, Context()) is None
    # no stamp (e2e NaN): the render time stands in
    r2 = Rules(RuleConfig(predict=False, over_frames=3), LADDERS)
    _frames(r2, 50.0, math.nan, 3)
    assert r2.propose(10.0, Context()) is not None


def test_a_step_down_is_one_rung_unless_the_target_is_known_to_fit() -> None:
    """Never measured rungs are not skipped (the old rule fell from edges k5 to the bottom)."""
    r = Rules(CFG, LADDERS)
    unknown = lambda s: Prediction(40.0, False)  # noqa: E731  a prior guess over budget
    _frames(r, 40.0, 40.0, 3)
    p = r.propose(10.0, Context(), unknown)
    assert p is not None and p.level == 1, p
    # rungs 1 and 2 known not to fit, rung 3 known to fit: a jump is justified
    known = {CALM[1]: 40.0, CALM[2]: 30.0, CALM[3]: 5.0}
    predict = lambda s: Prediction(known.get(s, 40.0), s in known)  # noqa: E731
    p = r.propose(10.0, Context(), predict)
    assert p is not None and p.level == 3, p
    # rung 1 known not to fit, rung 2 never measured: stop there
    known2 = {CALM[1]: 40.0}
    predict2 = lambda s: Prediction(known2.get(s, 1.0), s in known2)  # noqa: E731
    p = r.propose(10.0, Context(), predict2)
    assert p is not None and p.level == 2, p


def test_the_fit_limit_leaves_room_for_the_time_outside_the_render() -> None:
    r = Rules(CFG, LADDERS)
    _frames(r, 4.0, 24.0, 60)  # 20 ms outside the render
    assert 15.0 < r.overhead_ms <= 20.0
    assert r.fit_limit_ms() < 33.0 * 0.75 - 15.0


def test_pressure_at_the_bottom_sheds_and_lowers_the_rate_then_relief_restores() -> None:
    cfg = ReasonerConfig(
        rules=RuleConfig(predict=False, over_frames=3, headroom_frames=10, min_dwell_s=1.0, down_dwell_s=0.1),
        source=SourceConfig(width_per_column_px=4.0, fps=30.0, fps_min=15.0),
    )
    reasoner = Reasoner(cfg, LADDERS)
    t = 0.0
    first = reasoner.step(t, Context())
    assert first is not None and first.source_width_px == 480 and first.source_fps == 30.0 and not first.shed
    decisions = [first]

    def run(e2e_ms: float, seconds: float) -> None:
        nonlocal t
        end = t + seconds
        while t < end:
            d = reasoner.step(t, Context())
            if d is not None:
                decisions.append(d)
            s = reasoner.rules.style
            reasoner.frame(t, mode=s.mode, kernel_size=s.kernel_size, columns=s.columns, rows=s.rows,
                           render_ms=2.0, e2e_ms=e2e_ms)  # fmt: skip
            t += 0.033

    run(60.0, 3.0)  # over budget whatever the style
    levels = [CALM.index(d.style) for d in decisions]
    assert levels == sorted(levels) and all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
    assert reasoner.rules.level == len(CALM) - 1
    last = decisions[-1]
    assert last.rule == "pressure" and last.shed and last.source_fps == 15.0
    assert last.source_width_px == 240  # the 60-column grid's feed
    record = log_record(last, 0.0)
    assert record["decision"]["shed"] is True and record["decision"]["source_fps"] == 15.0  # type: ignore[index]
    n = len(decisions)
    run(5.0, 3.0)  # headroom again
    relief = decisions[n]
    assert relief.rule == "relief" and not relief.shed and relief.source_fps == 30.0
    assert relief.style == CALM[-1]  # the ladder is climbed only after the relief
    ups = [CALM.index(d.style) for d in decisions[n + 1 :]]
    assert ups and all(b == a - 1 for a, b in zip([len(CALM) - 1, *ups], ups, strict=False)), ups


def test_source_width_follows_the_grid_within_bounds() -> None:
    src = SourceConfig(width_per_column_px=4.0, width_min_px=160, width_max_px=640)
    assert src.width_px(120) == 480
    assert src.width_px(30) == 160
    assert src.width_px(400) == 640
    assert SourceConfig(width_per_column_px=0.0).width_px(120) == 0  # not driven


def test_a_learned_policy_may_not_climb_while_under_pressure() -> None:
    r = Rules(CFG, LADDERS)
    bottom = len(CALM) - 1
    r.apply(0.0, "calm", bottom)
    r.apply(1.0, "calm", bottom, pressure=True)
    r.headroom = 100
    assert r.allowed(100.0, None) == [bottom]
    assert Style("ramp", "luminance", 3, 60, 22) == CALM[-1]


def test_late_frames_spread_out_at_the_bottom_are_pressure_too() -> None:
    """Under a CPU quota with a hog, single stalls (one frame in six late) never make 3 of 6; more
    than 10 % of the last 30 frames late at the cheapest style is pressure all the same."""
    bottom = len(CALM) - 1

    def rules_after(late_every: int) -> Rules:
        r = Rules(RuleConfig(predict=False, over_frames=3), LADDERS)
        r.apply(0.0, "calm", bottom)
        for i in range(30):
            r.frame(2.0, 80.0 if i % late_every == 0 else 10.0)
        return r

    r = rules_after(6)  # 5 of 30 late, never 2 within 6
    assert r.over < 3
    p = r.propose(10.0, Context())
    assert p is not None and p.rule == "pressure" and p.pressure and "5 of the last 30" in p.reason
    assert rules_after(15).propose(10.0, Context()) is None  # 2 of 30: within the 10 %
