"""Reasoning core without DDS: each rule and its hysteresis, the predictor on a load step, TD on a
simulated environment with a known answer, and the decision log (crash-safe lines, rotation)."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from krystal.reasoning.context import Context, Inputs
from krystal.reasoning.log import DecisionLog, read_decisions, read_lines
from krystal.reasoning.policy import Reasoner, ReasonerConfig, log_record
from krystal.reasoning.predictor import FramePredictor, Load
from krystal.reasoning.rules import RuleConfig, Rules
from krystal.reasoning.styles import Style, ladder, mode_floor
from krystal.reasoning.td import DoubleQ, TdConfig, reward

CALM = ladder(
    ["edges", "ramp"], kernel="luminance", kernel_sizes=[5, 3], columns=120, rows=45, grid_scales=[0.5]
)
FAST = ladder(
    ["glitch", "ramp"], kernel="luminance", kernel_sizes=[5, 3], columns=120, rows=45, grid_scales=[0.5]
)
LADDERS = {"calm": CALM, "fast": FAST}
NO_PREDICT = RuleConfig(predict=False, over_frames=3, headroom_frames=10, min_dwell_s=2.0, down_dwell_s=0.3)


def test_ladder_steps_kernel_then_mode_then_grid() -> None:
    assert [(s.mode, s.kernel_size, s.columns) for s in CALM] == [
        ("edges", 5, 120),
        ("edges", 3, 120),
        ("ramp", 3, 120),
        ("ramp", 3, 60),
    ]
    assert mode_floor(CALM) == 2


def _frames(rules: Rules, ms: float, n: int) -> None:
    for _ in range(n):
        rules.frame(ms)


def test_over_budget_for_k_frames_steps_down_one_level_and_not_before() -> None:
    r = Rules(NO_PREDICT, LADDERS)
    _frames(r, 50.0, 2)
    assert r.propose(10.0, Context()) is None  # K-1 frames: nothing
    _frames(r, 50.0, 1)
    p = r.propose(10.0, Context(render_time_ms=50.0))
    assert p is not None and p.rule == "budget" and p.level == 1 and "over the 33 ms budget" in p.reason
    assert r.apply(10.0, p.family, p.level)
    _frames(r, 50.0, 3)
    assert r.propose(10.1, Context()) is None  # down dwell: old-style frames may still arrive
    p = r.propose(10.4, Context())
    assert p is not None and p.level == 2


def test_a_frame_under_budget_resets_the_count_in_a_row() -> None:
    """over_window <= over_frames: K frames in a row (the rules before issue 29's window)."""
    r = Rules(replace(NO_PREDICT, over_window=3), LADDERS)
    for ms in (50, 50, 10, 50, 50):
        r.frame(ms)
    assert r.propose(5.0, Context()) is None


def test_over_budget_frames_between_frames_on_time_count_in_the_window() -> None:
    """Under a CPU quota late frames alternate with frames on time: K of the last over_window
    (default 6) step down; fewer than K of them do not."""
    r = Rules(NO_PREDICT, LADDERS)
    for ms in (50, 10, 50, 10, 50):
        r.frame(ms)
    p = r.propose(5.0, Context())
    assert p is not None and p.rule == "budget" and "3 of the last 5 frames" in p.reason
    r2 = Rules(NO_PREDICT, LADDERS)
    for ms in (50, 10, 10, 50, 10, 10, 10, 50):  # 2 of the last 6
        r2.frame(ms)
    assert r2.propose(5.0, Context()) is None


def test_headroom_steps_up_after_dwell_and_a_flap_doubles_the_dwell() -> None:
    r = Rules(NO_PREDICT, LADDERS)
    r.apply(0.0, "calm", 2)
    _frames(r, 5.0, 10)
    assert r.propose(1.0, Context()) is None  # dwell 2 s not over
    p = r.propose(2.5, Context())
    assert p is not None and p.rule == "headroom" and p.level == 1
    r.apply(2.5, "calm", 1)
    _frames(r, 50.0, 3)  # the step up did not fit: back down, and wait longer next time
    p = r.propose(3.0, Context())
    assert p is not None and p.level == 2
    r.apply(3.0, "calm", 2)
    assert r.up_dwell_s == 4.0
    _frames(r, 5.0, 10)
    assert r.propose(6.0, Context()) is None
    assert r.propose(7.5, Context()) is not None


def test_tempo_switches_family_with_hysteresis() -> None:
    r = Rules(NO_PREDICT, LADDERS)
    r.apply(0.0, "calm", 0)
    assert r.propose(5.0, Context(audio_tempo_bpm=130.0)) is None  # between low and high: calm stays
    p = r.propose(5.0, Context(audio_tempo_bpm=170.0))
    assert p is not None and (p.family, p.rule) == ("fast", "tempo") and FAST[p.level].mode == "glitch"
    r.apply(5.0, p.family, p.level)
    assert r.propose(5.5, Context(audio_tempo_bpm=80.0)) is None  # context dwell
    assert r.propose(7.0, Context(audio_tempo_bpm=130.0)) is None  # hysteresis band: fast stays
    p = r.propose(7.0, Context(audio_tempo_bpm=80.0))
    assert p is not None and p.family == "calm" and "< 120" in p.reason
    r.apply(7.0, "fast", 0)
    r.apply(7.0, p.family, p.level)
    r.apply(9.0, "fast", 0)
    p = r.propose(11.0, Context())  # audio gone (NaN): calm, and the reason says so
    assert p is not None and p.family == "calm" and p.reason == "audio stale"


def test_thermal_penalty_forces_a_cheaper_mode_with_hysteresis() -> None:
    r = Rules(NO_PREDICT, LADDERS)
    r.apply(0.0, "calm", 0)
    p = r.propose(5.0, Context(throttle_penalty=0.7))
    assert p is not None and p.rule == "thermal" and CALM[p.level].mode == "ramp"
    r.apply(5.0, p.family, p.level)
    _frames(r, 1.0, 20)
    assert r.propose(10.0, Context(throttle_penalty=0.5)) is None  # still hot inside the band
    assert r.propose(10.0, Context(throttle_penalty=math.nan)) is None  # unknown: no guess, keep
    p = r.propose(10.0, Context(throttle_penalty=0.2))
    assert p is not None and p.rule == "headroom" and p.level == 1


def test_every_threshold_is_a_parameter() -> None:
    r = Rules(RuleConfig(predict=False, budget_ms=10.0, over_frames=1), LADDERS)
    r.frame(12.0)
    assert r.propose(1.0, Context()) is not None


def test_a_chaotic_render_time_steps_down_once_and_holds_step_ups() -> None:
    """temporal_solver's surrogate-gated chaos flag: one step down per episode, no step up while it
    stands (headroom or not), the normal rules again once it clears; act_on_chaos=False ignores it."""
    r = Rules(NO_PREDICT, LADDERS)
    assert r.apply(0.0, "calm", 1)
    chaotic = Context(render_time_ms=5.0, render_chaos_per_s=69.3)
    p = r.propose(5.0, chaotic)
    assert p is not None and p.rule == "chaos" and p.level == 2 and "chaotic" in p.reason
    assert r.apply(5.0, p.family, p.level)
    _frames(r, 5.0, 50)  # headroom: the rules would step up
    assert r.propose(20.0, chaotic) is None  # the same episode: no second step, no step up
    assert r.allowed(20.0, None) == [2, 3]  # nor may a learning policy climb
    p = r.propose(21.0, Context(render_time_ms=5.0))  # cleared
    assert p is not None and p.rule == "headroom" and p.level == 1
    assert r.apply(21.0, p.family, p.level)
    p = r.propose(30.0, chaotic)  # a new episode steps down again
    assert p is not None and p.rule == "chaos" and p.level == 2
    off = Rules(RuleConfig(predict=False, act_on_chaos=False), LADDERS)
    assert off.propose(5.0, chaotic) is None


def test_inputs_drop_a_chaos_flag_that_is_not_repeated() -> None:
    inputs = Inputs({n: 2.0 for n in Inputs.NAMES})
    inputs.chaos_timeout_s = 30.0
    assert math.isnan(inputs.context(0.0).render_chaos_per_s)
    inputs.chaos(10.0, 50.0)
    assert inputs.context(39.0).render_chaos_per_s == 50.0
    assert math.isnan(inputs.context(41.0).render_chaos_per_s)
    inputs.chaos(42.0, math.nan)  # a verdict that clears it
    assert math.isnan(inputs.context(42.0).render_chaos_per_s)
    assert "chaos" not in inputs.context(42.0).stale  # optional: not a missing input


# -- prediction -----------------------------------------------------------------------------------
def _cost(style: Style, load: float) -> float:
    per_kcell = {"edges": 0.32, "ramp": 0.17, "glitch": 0.35}[style.mode] * (
        1 + 0.1 * (style.kernel_size - 3)
    )
    return per_kcell * style.cells / 1000 * (1 + 2 * load)


def test_predictor_tracks_a_load_step_and_carries_it_to_other_styles() -> None:
    rng = random.Random(1)
    pred = FramePredictor()
    errors: list[float] = []
    naive: list[float] = []
    last = 0.0
    for i in range(600):
        load_ratio = 0.0 if i < 300 else 0.6  # the CPU load steps up at frame 300
        style = CALM[(i // 25) % len(CALM)]  # the loop visits every style
        truth = _cost(style, load_ratio)
        measured = truth * (1 + 0.03 * rng.gauss(0, 1))
        p = pred.predict(style, Load(cpu_ratio=load_ratio))
        if i > 330:
            errors.append(abs(p.ms - truth) / truth)
            naive.append(abs(last - truth) / truth)
        pred.observe(style, Load(cpu_ratio=load_ratio), measured)
        last = measured
    mean_error = sum(errors) / len(errors)
    assert mean_error < 0.10, mean_error
    assert mean_error < 0.5 * sum(naive) / len(naive)  # better than "the last frame again"
    for s in CALM:  # every candidate under the new load
        assert abs(pred.predict(s, Load(cpu_ratio=0.6)).ms - _cost(s, 0.6)) / _cost(s, 0.6) < 0.15


def test_unmeasured_load_reaches_every_style_through_the_residual() -> None:
    pred = FramePredictor()
    for i in range(200):
        for s in CALM:
            pred.observe(s, Load(), _cost(s, 0.0) + (15.0 if i >= 150 else 0.0))
    p = pred.predict(CALM[2], Load())
    assert abs(p.ms - (_cost(CALM[2], 0.0) + 15.0)) < 1.5


def test_prediction_steps_down_before_the_budget_is_missed() -> None:
    """CPU use rises; the predictor, having learned its effect, acts before a frame is over."""
    cfg = ReasonerConfig(rules=RuleConfig(budget_ms=33.0, predict=True, headroom_frames=10_000))
    reasoner = Reasoner(cfg, LADDERS)
    t = 0.0
    for i in range(400):  # learn: the CPU load comes and goes
        load = 0.4 * (i // 40 % 2)
        reasoner.step(t, Context(cpu_ratio=load))
        s = reasoner.rules.style
        reasoner.frame(t, mode=s.mode, kernel_size=s.kernel_size, columns=s.columns, rows=s.rows,
                       render_ms=_cost(s, load) * 6)  # fmt: skip
        t += 0.033
    reasoner.rules.apply(t, "calm", 0)
    reasoner.rules.last_change_s = -100
    over = 0
    for _ in range(30):
        ctx = Context(cpu_ratio=0.9)
        reasoner.step(t, ctx)
        s = reasoner.rules.style
        ms = _cost(s, 0.9) * 6
        over += ms > 33.0
        reasoner.frame(
            t, mode=s.mode, kernel_size=s.kernel_size, columns=s.columns, rows=s.rows, render_ms=ms
        )
        t += 0.033
    assert reasoner.current is not None and reasoner.current.rule in ("predict", "budget")
    assert over <= 1


# -- TD -------------------------------------------------------------------------------------------
def test_double_q_converges_to_the_known_best_style() -> None:
    """Two loads; the best level is 0 when light (highest quality that fits), 2 when heavy."""
    quality = [1.0, 0.5, 0.4, 0.0]
    cost = [20.0, 18.0, 8.0, 4.0]
    for seed in range(3):
        rng = random.Random(seed)
        cfg = TdConfig(epsilon_decay_steps=1500)
        q = DoubleQ(4, cfg, seed=seed)
        for _ in range(3000):
            s = "heavy" if rng.random() < 0.5 else "light"
            a, _ = q.choose(s, range(4))
            ms = cost[a] * (2.0 if s == "heavy" else 1.0) * (1 + 0.05 * rng.gauss(0, 1))
            r = reward(cfg, 1.0 if ms <= 33 else 0.0, quality[a], 1.0, switched=False)
            q.update(s, a, r, "light" if rng.random() < 0.5 else "heavy", range(4))
        assert q.greedy("light", range(4)) == 0
        assert q.greedy("heavy", range(4)) == 2
        assert math.isclose(q.epsilon, cfg.epsilon_end)


def test_q_table_saves_and_loads_and_refuses_another_ladder(tmp_path: Path) -> None:
    q = DoubleQ(3, seed=1)
    q.update("s", 1, 1.0, "s", [0, 1, 2])
    q.save(tmp_path / "q.json")
    q2 = DoubleQ(3)
    assert q2.load(tmp_path / "q.json") and q2.value("s", 1) == q.value("s", 1) and q2.steps == 1
    assert not DoubleQ(4).load(tmp_path / "q.json")
    (tmp_path / "bad.json").write_text("{nope")
    assert not q2.load(tmp_path / "bad.json") and not q2.load(tmp_path / "absent.json")


def test_td_policy_stays_inside_the_rules() -> None:
    cfg = ReasonerConfig(rules=RuleConfig(predict=True), policy="rules_td", td_period_s=0.2)
    reasoner = Reasoner(cfg, LADDERS, q=DoubleQ(4, TdConfig(epsilon_start=1.0, epsilon_end=1.0), seed=2))
    t = 0.0
    for _ in range(600):
        reasoner.step(t, Context(throttle_penalty=0.9))  # hot: only the cheaper mode is allowed
        s = reasoner.rules.style
        reasoner.frame(t, mode=s.mode, kernel_size=s.kernel_size, columns=s.columns, rows=s.rows,
                       render_ms=_cost(s, 0.0))  # fmt: skip
        if t > 2.0:
            assert s.mode == "ramp"
        t += 0.05


# -- context and log ------------------------------------------------------------------------------
def test_stale_inputs_are_nan_and_named() -> None:
    inputs = Inputs({"gpu": 1.0, "thermal": 1.0, "audio": 1.0, "render": 1.0})
    inputs.update("audio", 0.0, audio_tempo_bpm=170.0, audio_rms_dbfs=-20.0)
    inputs.update("render", 0.0, render_time_ms=10.0, render_fps=30.0)
    ctx = inputs.context(0.5)
    assert ctx.audio_tempo_bpm == 170.0 and ctx.stale == ("gpu", "thermal")
    inputs.update("render", 1.4, render_time_ms=11.0, render_fps=30.0)
    ctx = inputs.context(1.5)
    assert math.isnan(ctx.audio_tempo_bpm) and "audio" in ctx.stale and ctx.render_time_ms == 11.0
    reasoner = Reasoner(ReasonerConfig(), LADDERS)
    d = reasoner.step(1.5, ctx)
    assert d is not None and "stale: gpu, thermal, audio" in d.reason


def test_log_outcome_is_filled_from_the_following_frames(tmp_path: Path) -> None:
    reasoner = Reasoner(ReasonerConfig(outcome_frames=5), LADDERS)
    log = DecisionLog(tmp_path / "d.jsonl", fsync="always")
    d = reasoner.step(0.0, Context())
    assert d is not None
    log.write(log_record(d, 100.0))
    for ms in (10.0, 12.0, 14.0, 40.0, 12.0, 99.0):
        reasoner.frame(0.1, mode="edges", kernel_size=5, columns=120, rows=45, render_ms=ms)
    (outcome,) = reasoner.outcomes()
    log.write(log_record(outcome.decision, 101.0, outcome))
    log.close()
    lines = list(read_lines(tmp_path / "d.jsonl"))
    assert len(lines) == 2 and lines[0]["outcome"] is None
    (rec,) = read_decisions(tmp_path / "d.jsonl")
    assert rec["decision"]["mode"] == "edges" and rec["thermal_state"] == {"cpu_temp": None, "penalty": None}
    assert rec["outcome"]["latency"] == 17.6 and rec["outcome"]["frames"] == 5
    assert rec["outcome"]["budget_met"] is False and rec["outcome"]["over_budget_frames"] == 1
    assert set(rec) >= {"timestamp", "vulkan_state", "thermal_state", "audio_state", "decision", "outcome"}
    assert set(rec["vulkan_state"]) >= {"vertex_count", "shader"}


def test_log_rotates_by_size_and_reads_across_files(tmp_path: Path) -> None:
    reasoner = Reasoner(ReasonerConfig(), LADDERS)
    log = DecisionLog(tmp_path / "d.jsonl", max_bytes=3000, keep=2, fsync="never")
    d = reasoner.step(0.0, Context())
    assert d is not None
    for i in range(12):
        rec = log_record(d, float(i))
        rec["decision"]["decision_id"] = i
        log.write(rec)
    log.close()
    assert (tmp_path / "d.jsonl.1").exists() and (tmp_path / "d.jsonl").stat().st_size <= 3000
    ids = [r["decision"]["decision_id"] for r in read_decisions(tmp_path / "d.jsonl")]
    assert ids == sorted(ids) and ids[-1] == 11 and not (tmp_path / "d.jsonl.3").exists()


@settings(max_examples=60, deadline=None)
@given(tail=st.binary(max_size=200), cut=st.integers(0, 400))
def test_fuzz_log_reader_survives_torn_and_garbage_lines(tmp_path_factory, tail: bytes, cut: int) -> None:
    path = tmp_path_factory.mktemp("log") / "d.jsonl"
    log = DecisionLog(path, fsync="never")
    reasoner = Reasoner(ReasonerConfig(), LADDERS)
    d = reasoner.step(0.0, Context())
    assert d is not None
    log.write(log_record(d, 1.0))
    log.close()
    whole = path.read_bytes()
    torn = log_record(d, 2.0)
    torn["decision"]["decision_id"] = 2
    from krystal.reasoning.log import encode

    path.write_bytes(whole + encode(torn)[:cut] + tail)
    records = read_decisions(path)
    assert records and records[0]["decision"]["decision_id"] == 1
    assert all(isinstance(r, dict) for r in records)
