"""reasoning: GPU, thermal, audio and render telemetry in, StyleDecision on krystal/style out.

Every decision goes to the decision log (log.py) with the context it saw, and again with its
outcome once the following frames are known.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from krystal.ascii.engine import KERNELS, MODES
from krystal.msg import (
    AsciiFrame,
    AudioFeatures,
    GpuTelemetry,
    RenderStats,
    StyleDecision,
    TemporalVerdict,
    ThermalState,
)
from krystal.reasoning.context import NAN, Inputs
from krystal.reasoning.delivery import FrameBook, e2e_ms
from krystal.reasoning.log import FSYNC_POLICIES, DecisionIds, DecisionLog, default_log_dir
from krystal.reasoning.policy import (
    POLICIES,
    Decision,
    Outcome,
    Reasoner,
    ReasonerConfig,
    SourceConfig,
    log_record,
)
from krystal.reasoning.predictor import FramePredictor
from krystal.reasoning.promotion import (
    ACTING,
    SHADOW,
    ModelGate,
    Promotion,
    PromotionConfig,
    ShadowChoice,
    Transition,
)
from krystal.reasoning.rules import RuleConfig
from krystal.reasoning.styles import Style, ladder, quality
from krystal.reasoning.td import DoubleQ, TdConfig
from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos
from krystal.ros.streams import subscribe_stream
from krystal.sched.metrics import RateMeter, Window


def _policy_model_problem(path: str) -> str | None:
    """Loads the model to check it: onnxruntime is imported only when a path is set."""
    if not path:
        return None
    from krystal.learning.policy_runtime import model_error

    return model_error(path)


def _modes_problem(value: list[str]) -> str | None:
    bad = [m for m in value if m not in MODES]
    if bad:
        return f"unknown mode(s) {', '.join(bad)}; known: {', '.join(MODES)}"
    return None


def _sizes_problem(value: list[int]) -> str | None:
    return None if value and all(k in (3, 5, 7) for k in value) else "kernel sizes must be 3, 5 or 7"


def _scales_problem(value: list[float]) -> str | None:
    return None if all(0.1 <= s < 1.0 for s in value) else "grid scales must be in [0.1, 1)"


PARAMS = (
    Param(
        "policy",
        "rules",
        "rules: guardrail rules only; rules_td: TD policy bounded by the rules; "
        "learned: the model at policy_model_path, bounded by the rules",
        choices=POLICIES,
    ),
    Param(
        "policy_model_path",
        "",
        "ONNX policy from `krystal train policy` (policy: learned); empty: the shipped one; "
        "a bad file is refused",
        validate=lambda path: _policy_model_problem(path),  # noqa: PLW0108  (defined below)
    ),
    Param("learned_period_s", 0.5, "How often the learned policy is asked (one scored period)", 0.05, 60.0),
    Param(
        "promotion_decisions",
        60,
        "A deployed model acts after this many scored periods in shadow no worse than the rules",
        1,
        1_000_000,
    ),
    Param("promotion_min_shadow_s", 30.0, "And after at least this long in shadow", 0.0, 86400.0),
    Param(
        "promotion_budget_tolerance",
        0.02,
        "Shadow: on-budget fraction the model may lose against the rules",
        0.0,
        1.0,
    ),
    Param(
        "promotion_quality_tolerance",
        0.02,
        "Shadow: quality the model may lose against the rules (unless it gains 0.05 on budget)",
        0.0,
        1.0,
    ),
    Param(
        "promotion_rollback_margin",
        0.05,
        "Acting: this far behind the rules' shadow figures over a window rolls the model back",
        0.0,
        1.0,
    ),
    Param("promotion_max_rollbacks", 3, "After this many rollbacks the model stays in shadow", 1, 1000),
    Param(
        "model_audit_log",
        "",
        "Audit log for model promotion events; empty: the device agents' "
        "($XDG_STATE_HOME/krystal/devices/audit.jsonl)",
        read_only=True,
    ),
    Param(
        "budget_ms",
        33.0,
        "Frame budget (33 ms at 30 fps): capture -> AsciiFrame published under objective e2e",
        1.0,
        1000.0,
    ),
    Param(
        "objective",
        "e2e",
        "What a frame is judged by: e2e (its capture stamp -> AsciiFrame published, as the viewer "
        "gets it) or render (the renderer's time alone)",
        choices=("e2e", "render"),
    ),
    Param(
        "source_width_per_column",
        4.0,
        "Render feed width asked of video_source per grid column (the renderer samples 2 px a "
        "cell; 4 keeps 2x of that); 0: the width is not driven",
        0.0,
        32.0,
    ),
    Param("source_width_min_px", 160, "Narrowest render feed asked for", 16, 3840),
    Param("source_width_max_px", 1280, "Widest render feed asked for", 16, 3840),
    Param("source_fps", 30.0, "Source frame rate asked for normally", 1.0, 240.0),
    Param(
        "source_fps_min",
        15.0,
        "Source frame rate asked for under pressure (the cheapest style still over budget)",
        1.0,
        240.0,
    ),
    Param("over_frames", 3, "Frames over budget among the last over_window before a step down", 1, 1000),
    Param(
        "over_window",
        6,
        "Frames over budget are counted among the last this many (late frames come between frames "
        "on time under a CPU quota); at most over_frames: in a row",
        1,
        1000,
    ),
    Param(
        "pressure_window",
        30,
        "At the cheapest style: more than pressure_late_ratio of the last this many frames over "
        "budget is pressure too (late frames that never come 3 close together)",
        2,
        10000,
    ),
    Param("pressure_late_ratio", 0.1, "See pressure_window", 0.0, 1.0),
    Param("headroom_ratio", 0.5, "A frame under budget times this counts as headroom", 0.05, 1.0),
    Param("headroom_frames", 30, "Headroom frames in a row before a step up", 1, 10000),
    Param("min_dwell_s", 3.0, "No step up sooner than this after any change", 0.0, 600.0),
    Param("down_dwell_s", 0.3, "No step down sooner than this after a change", 0.0, 60.0),
    Param("context_dwell_s", 1.0, "No tempo or thermal switch sooner than this after a change", 0.0, 600.0),
    Param(
        "backoff_factor", 2.0, "A step up undone within backoff_window_s multiplies the up dwell", 1.0, 10.0
    ),
    Param("backoff_window_s", 10.0, "See backoff_factor", 0.0, 600.0),
    Param("max_dwell_s", 60.0, "Longest up dwell the backoff reaches", 0.0, 3600.0),
    Param("tempo_high_bpm", 140.0, "Tempo at or above: the fast (music) styles", 0.0, 400.0),
    Param("tempo_low_bpm", 120.0, "Tempo below: back to the calm styles", 0.0, 400.0),
    Param("thermal_high", 0.6, "Throttle penalty at or above: a cheaper mode", 0.0, 1.0),
    Param("thermal_low", 0.4, "Throttle penalty below: the restriction is lifted", 0.0, 1.0),
    Param("predict", True, "Act on predicted frame times (online regression), not only measured ones"),
    Param("predict_margin", 0.9, "Predicted over budget times this: step down before missing it", 0.1, 2.0),
    Param("fit_ratio", 0.75, "A target style must be predicted under budget times this", 0.1, 1.0),
    Param(
        "probe_factor", 3.0, "A step up predicted not to fit is tried after this many up dwells", 1.0, 100.0
    ),
    Param(
        "modes",
        ["edges", "ramp"],
        "Calm styles, preferred first, each cheaper",
        validate=_modes_problem,
        read_only=True,
    ),
    Param(
        "fast_modes",
        ["glitch", "ramp"],
        "Styles for fast music, preferred first",
        validate=_modes_problem,
        read_only=True,
    ),
    Param("kernel", "luminance", "Glyph kernel of every candidate style", choices=KERNELS, read_only=True),
    Param(
        "kernel_sizes",
        [5, 3],
        "Sobel sizes to step through, largest first",
        validate=_sizes_problem,
        read_only=True,
    ),
    Param("columns", 120, "Grid of the full-size styles (the renderer's)", 8, 1000, read_only=True),
    Param("rows", 45, "Lines of the full-size styles", 2, 500, read_only=True),
    Param(
        "grid_scales", [0.75, 0.5], "Smaller grids, the last resort", validate=_scales_problem, read_only=True
    ),
    Param("td_period_s", 1.0, "One TD step: choose, then learn from the frames that followed", 0.05, 60.0),
    Param("td_alpha", 0.2, "TD learning rate", 0.0, 1.0),
    Param("td_gamma", 0.5, "TD discount", 0.0, 0.99),
    Param("td_epsilon_start", 0.3, "Exploration at the start", 0.0, 1.0),
    Param("td_epsilon_end", 0.02, "Exploration after the schedule", 0.0, 1.0),
    Param("td_epsilon_decay_steps", 500, "TD steps from start to end exploration", 1, 10000000),
    Param("td_w_budget", 1.0, "Reward weight: budget met", 0.0, 10.0),
    Param("td_w_quality", 0.5, "Reward weight: measured quality of the style's mode", 0.0, 10.0),
    Param("td_w_fit", 0.3, "Reward weight: style fits the context", 0.0, 10.0),
    Param("td_w_switch", 0.2, "Reward weight: cost of a switch", 0.0, 10.0),
    Param(
        "td_optimism", 3.0, "Initial Q value: every allowed style is tried before it is judged", 0.0, 100.0
    ),
    Param("td_table_path", "", "Q table file; empty: $XDG_STATE_HOME/krystal/td_table.json", read_only=True),
    Param("td_save_period_s", 30.0, "Save the Q table this often (and at exit), 0 only at exit", 0.0, 3600.0),
    Param("outcome_frames", 30, "Frames after a decision that make its logged outcome", 1, 10000),
    Param("outcome_timeout_s", 3.0, "Outcome closed with what arrived by then", 0.1, 600.0),
    Param("gpu_timeout_s", 5.0, "GPU telemetry older than this is stale (NaN)", 0.1, 600.0),
    Param("thermal_timeout_s", 5.0, "Thermal state older than this is stale (NaN)", 0.1, 600.0),
    Param("audio_timeout_s", 2.0, "Audio features older than this are stale (NaN)", 0.1, 600.0),
    Param("render_timeout_s", 2.0, "Render frames/stats older than this are stale (NaN)", 0.1, 600.0),
    Param(
        "act_on_chaos",
        True,
        "A chaotic render time (temporal_solver's surrogate-tested flag): one step down, no step up",
    ),
    Param(
        "chaos_signals",
        ["krystal/render_stats.render_time_ms_mean", "krystal/render_stats.render_time_ms_p99"],
        "Series whose chaos verdicts (krystal/verdicts, kind chaos) count as the render time's",
        param_type=Parameter.Type.STRING_ARRAY,
    ),
    Param("chaos_timeout_s", 30.0, "A chaos flag not repeated for this long is dropped (NaN)", 1.0, 3600.0),
    Param("decision_rate_hz", 20.0, "How often the rules are evaluated", 1.0, 1000.0),
    Param("resend_period_s", 2.0, "The current decision is re-sent this often", 0.1, 3600.0),
    Param("manual_hold_s", 30.0, "A manual StyleDecision (gateway) pauses decisions this long", 0.0, 86400.0),
    Param("log_enabled", True, "Write the decision log", read_only=True),
    Param("log_path", "", "Decision log; empty: $XDG_STATE_HOME/krystal/decisions.jsonl", read_only=True),
    Param("log_max_bytes", 10_000_000, "Rotate the log past this size", 1000, 10_000_000_000, read_only=True),
    Param("log_keep", 3, "Rotated logs kept (decisions.jsonl.1 ..)", 0, 100, read_only=True),
    Param(
        "log_fsync", "interval", "fsync: always, interval or never", choices=FSYNC_POLICIES, read_only=True
    ),
    Param(
        "log_fsync_interval_s",
        1.0,
        "Longest time between fsyncs under 'interval'",
        0.0,
        3600.0,
        read_only=True,
    ),
)
_RULE_PARAMS = set(RuleConfig.__dataclass_fields__)
_TD_PARAMS = {f"td_{k}" for k in TdConfig.__dataclass_fields__}


def _f(x: Any) -> float:
    """A message number as float, NaN when it is not a finite number."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return NAN
    return v if math.isfinite(v) else NAN


def gpu_values(msg: GpuTelemetry) -> dict[str, float | str]:
    total, used = int(msg.memory_total_bytes), int(msg.memory_used_bytes)
    return {
        "gpu_utilization_ratio": _f(msg.utilization_ratio),
        "gpu_memory_used_ratio": used / total if total > 0 else NAN,
        "gpu_draw_calls": float(msg.draw_calls) if msg.draw_calls else NAN,
        "gpu_vertex_count": float(msg.vertex_count) if len(msg.app_pids) else NAN,
        "gpu_shader": str(msg.shader)[:16],
        "gpu_source": str(msg.source)[:32],
    }


def thermal_values(msg: ThermalState) -> dict[str, float | str]:
    penalty = _f(msg.throttle_penalty)
    return {
        "temperature_c": _f(msg.max_temperature_c),
        "throttle_penalty": min(1.0, max(0.0, penalty)) if not math.isnan(penalty) else NAN,
    }


def audio_values(msg: AudioFeatures) -> dict[str, float | str]:
    tempo = _f(msg.tempo_bpm)
    return {
        "audio_rms_dbfs": _f(msg.rms_dbfs),
        "audio_tempo_bpm": tempo if tempo > 0 else NAN,  # 0: no estimate yet
    }


def rule_config(v: dict[str, Any]) -> RuleConfig:
    return RuleConfig(**{k: v[k] for k in _RULE_PARAMS})


def source_config(v: dict[str, Any]) -> SourceConfig:
    return SourceConfig(
        width_per_column_px=v["source_width_per_column"],
        width_min_px=v["source_width_min_px"],
        width_max_px=v["source_width_max_px"],
        fps=v["source_fps"],
        fps_min=v["source_fps_min"],
    )


def td_config(v: dict[str, Any]) -> TdConfig:
    return TdConfig(**{k: v[f"td_{k}"] for k in TdConfig.__dataclass_fields__})


def promotion_config(v: dict[str, Any]) -> PromotionConfig:
    names = [k for k in PromotionConfig.__dataclass_fields__ if f"promotion_{k}" in v]
    return PromotionConfig(**{k: v[f"promotion_{k}"] for k in names})


def ladders_of(v: dict[str, Any]) -> dict[str, tuple[Style, ...]]:
    common = {
        "kernel": v["kernel"],
        "kernel_sizes": list(v["kernel_sizes"]),
        "columns": v["columns"],
        "rows": v["rows"],
        "grid_scales": list(v["grid_scales"]),
    }
    return {"calm": ladder(list(v["modes"]), **common), "fast": ladder(list(v["fast_modes"]), **common)}


def decision_msg(d: Decision, stamp: Any) -> StyleDecision:
    c, s = d.context, d.style
    return StyleDecision(
        header=Header(stamp=stamp, frame_id="reasoning"),
        decision_id=d.decision_id,
        mode=s.mode,
        kernel=s.kernel,
        kernel_size=s.kernel_size,
        columns=s.columns,
        rows=s.rows,
        policy=d.policy,
        reason=d.reason[:200],
        confidence=d.confidence,
        predicted_frame_time_ms=d.predicted_ms,
        budget_ms=d.budget_ms,
        source_width_px=d.source_width_px,
        source_fps=d.source_fps,
        shed=d.shed,
        gpu_utilization_ratio=c.gpu_utilization_ratio,
        gpu_memory_used_ratio=c.gpu_memory_used_ratio,
        temperature_c=c.temperature_c,
        throttle_penalty=c.throttle_penalty,
        audio_rms_dbfs=c.audio_rms_dbfs,
        audio_tempo_bpm=c.audio_tempo_bpm,
        render_time_ms=c.render_time_ms,
        render_fps=c.render_fps,
        e2e_latency_ms=c.e2e_latency_ms,
        delivered_fps=c.delivered_fps,
    )


class ReasoningNode(Node):
    def __init__(self, node_name: str = "reasoning", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check, self._on_change)
        v = self.params.values
        self.inputs = Inputs(self._timeouts())
        self.inputs.chaos_timeout_s = v["chaos_timeout_s"]
        self._table_path = Path(v["td_table_path"] or default_log_dir() / "td_table.json")
        q = DoubleQ(max(len(x) for x in ladders_of(v).values()), td_config(v))
        self._table_note = "rules only"
        if v["policy"] == "rules_td":
            self._table_note = (
                f"loaded {self._table_path}"
                if q.load(self._table_path)
                else f"new table ({self._table_path})"
            )
        self.reasoner = Reasoner(
            ReasonerConfig(
                rules=rule_config(v),
                policy=v["policy"],
                td=td_config(v),
                td_period_s=v["td_period_s"],
                outcome_frames=v["outcome_frames"],
                outcome_timeout_s=v["outcome_timeout_s"],
                learned_period_s=v["learned_period_s"],
                source=source_config(v),
            ),
            ladders_of(v),
            FramePredictor(),
            q,
        )
        self.log: DecisionLog | None = None
        self._log_error: str | None = None
        self._ids: DecisionIds | None = None
        if v["log_enabled"]:
            path = Path(v["log_path"] or default_log_dir() / "decisions.jsonl")
            try:
                self.log = DecisionLog(
                    path, v["log_max_bytes"], v["log_keep"], v["log_fsync"], v["log_fsync_interval_s"]
                )
                self._ids = DecisionIds(path)  # ids unique across restarts
                self.reasoner.next_id = self._ids.start
            except OSError as exc:
                self._log_error = f"decision log {path} unusable: {exc}"
                self.get_logger().error(self._log_error)
        self._first_id = self.reasoner.next_id
        self.book = FrameBook()
        self._ratings: dict[int, float] = {}  # user_rating by decision_id (manual overrides)
        self._written: dict[int, dict[str, Any]] = {}  # last outcome line of recent decisions
        self.gate: ModelGate | None = None  # the loaded model and its promotion; it acts once promoted
        self._model_at = -math.inf
        self._audit: Any = None
        self._model_info: dict[str, str] = {}
        self._model_error: str | None = None
        self._load_policy_model(self.params.rejected.get("policy_model_path"))
        self._input_error: str | None = None
        self._pub = self.create_publisher(StyleDecision, "krystal/style", latched_qos())
        subscribe_stream(self, GpuTelemetry, "gpu/telemetry", self._on_gpu, sensor_qos(depth=5))
        subscribe_stream(self, ThermalState, "thermal/state", self._on_thermal, sensor_qos(depth=5))
        subscribe_stream(self, AudioFeatures, "audio/features", self._on_audio, sensor_qos(depth=5))
        subscribe_stream(self, RenderStats, "krystal/render_stats", self._on_stats, sensor_qos(depth=5))
        self.create_subscription(AsciiFrame, "krystal/ascii", self._on_frame, sensor_qos(depth=5))
        self.create_subscription(StyleDecision, "krystal/style", self._on_style, latched_qos(5))
        self.create_subscription(TemporalVerdict, "krystal/verdicts", self._on_verdict, reliable_qos(20))
        self._manual_until = 0.0
        self._delivered = RateMeter()
        self._step_late_ms = Window(600)  # the step's start after its due time: is the controller starved?
        self._step_due_s = 0.0
        self.published = 0
        self._last_cpu_s = 0.0
        self._last_save_s = time.monotonic()
        self._diagnostics = Diagnostics(self)
        self._diagnostics.add("inputs", self._inputs_health)
        self._diagnostics.add("decisions", self._decisions_health)
        self._diagnostics.add("model", self._model_health)
        self._step_timer = self.create_timer(1.0 / v["decision_rate_hz"], self._step)
        self._resend_timer = self.create_timer(v["resend_period_s"], self._resend)

    # -- parameters ----------------------------------------------------------------------------
    @staticmethod
    def _cross_check(v: dict[str, Any]) -> str | None:
        if v["tempo_low_bpm"] > v["tempo_high_bpm"]:
            return "tempo_low_bpm must not exceed tempo_high_bpm (hysteresis)"
        if v["thermal_low"] > v["thermal_high"]:
            return "thermal_low must not exceed thermal_high (hysteresis)"
        return None

    def _timeouts(self) -> dict[str, float]:
        v = self.params.values
        return {n: v[f"{n}_timeout_s"] for n in Inputs.NAMES}

    def _on_change(self, changed: set[str]) -> None:
        v = self.params.values
        if changed & _RULE_PARAMS:
            self.reasoner.rules.config = rule_config(v)
            self.reasoner.config = _replace(self.reasoner.config, rules=rule_config(v))
        if changed & _TD_PARAMS:
            self.reasoner.q.config = td_config(v)
        if changed & {n for n in v if n.startswith("source_")}:
            self.reasoner.config = _replace(self.reasoner.config, source=source_config(v))
        if changed & {"policy", "td_period_s", "outcome_frames", "outcome_timeout_s", "learned_period_s"}:
            self.reasoner.config = _replace(
                self.reasoner.config,
                policy=v["policy"],
                td_period_s=v["td_period_s"],
                outcome_frames=v["outcome_frames"],
                outcome_timeout_s=v["outcome_timeout_s"],
                learned_period_s=v["learned_period_s"],
            )
        if changed & {"policy", "policy_model_path"}:
            self._load_policy_model()
        elif self.gate is not None and any(k.startswith("promotion_") for k in changed):
            self.gate.promotion.config = promotion_config(v)
        if any(k.endswith("_timeout_s") and k != "outcome_timeout_s" for k in changed):
            self.inputs.timeouts_s = self._timeouts()
            self.inputs.chaos_timeout_s = v["chaos_timeout_s"]
        if "decision_rate_hz" in changed:
            self.destroy_timer(self._step_timer)
            self._step_timer = self.create_timer(1.0 / v["decision_rate_hz"], self._step)
        if "resend_period_s" in changed:
            self.destroy_timer(self._resend_timer)
            self._resend_timer = self.create_timer(v["resend_period_s"], self._resend)

    def _load_policy_model(self, rejected: str | None = None) -> None:
        """policy learned: load the model; any problem is logged, shown as ERROR, and the rules
        decide alone until a good model is set (the node never stops for a model). A loaded
        model starts in shadow (`promotion.py`): it acts only once it has proved itself."""
        v = self.params.values
        self.reasoner.chooser = None
        self.gate = None
        self._model_info, self._model_error = {"model_path": v["policy_model_path"]}, None
        if v["policy"] != "learned":
            return
        from krystal.learning.policy_runtime import SHIPPED_MODEL, LearnedPolicy, ModelError, describe

        path = v["policy_model_path"] or str(SHIPPED_MODEL)
        if rejected:  # rclpy wraps the table's reason: keep ours
            self._model_error = "model refused: " + rejected.split("Reason: ", 1)[-1]
        else:
            try:
                model = LearnedPolicy(path)
                problem = model.check_ladders(self.reasoner.rules.ladders)
                if problem:
                    raise ModelError(f"{path}: {problem}")
            except ModelError as exc:
                self._model_error = f"model refused: {exc}"
            else:
                self._model_info = describe(model)
                promotion = Promotion(promotion_config(v), time.monotonic)
                self.gate = ModelGate(model, promotion, self.reasoner, self.book)
                self.get_logger().info(f"learned policy {path} (sha256 {model.sha256[:12]}) loaded")
                self._model_event(
                    Transition(
                        time.monotonic(), "", SHADOW, "shadow", "deployed: in shadow until it proves itself"
                    )
                )
        if self._model_error:
            self.get_logger().error(f"{self._model_error}; the rules decide alone")
            self._model_info["error"] = self._model_error
            self._diagnostics_level("model", ERROR)

    def _diagnostics_level(self, task: str, level: bytes) -> None:
        diagnostics = getattr(self, "_diagnostics", None)  # absent while __init__ runs
        if diagnostics is not None:
            diagnostics.level_changed(task, level)

    # -- inputs --------------------------------------------------------------------------------
    def _guard(self, what: str, fn: Any, *args: Any) -> None:
        """Bad input never crashes the node: one throttled line and a diagnostics status."""
        try:
            fn(*args)
        except Exception as exc:
            self._input_error = f"bad {what} message: {exc!r}"
            self.get_logger().error(self._input_error, throttle_duration_sec=5.0)
            self._diagnostics.level_changed("inputs", ERROR)

    def _on_gpu(self, msg: GpuTelemetry) -> None:
        self._guard("gpu/telemetry", lambda: self.inputs.update("gpu", time.monotonic(), **gpu_values(msg)))

    def _on_thermal(self, msg: ThermalState) -> None:
        self._guard(
            "thermal/state", lambda: self.inputs.update("thermal", time.monotonic(), **thermal_values(msg))
        )

    def _on_audio(self, msg: AudioFeatures) -> None:
        self._guard(
            "audio/features", lambda: self.inputs.update("audio", time.monotonic(), **audio_values(msg))
        )

    def _on_stats(self, msg: RenderStats) -> None:
        def apply() -> None:
            now = time.monotonic()
            fps = _f(msg.output_fps)
            if not self.inputs.fresh("render", now):  # no frames: the period's mean stands in
                self.inputs.update("render", now, render_time_ms=_f(msg.render_time_ms_mean), render_fps=fps)
            self._render_fps = fps

        self._guard("krystal/render_stats", apply)

    def _on_frame(self, msg: AsciiFrame) -> None:
        def apply() -> None:
            now = time.monotonic()
            ms = _f(msg.render_time_ms)
            stamp_ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            self.book.add(now, e2e_ms(self.get_clock().now().nanoseconds, stamp_ns), ms)
            e2e = _f(msg.latency_ms) if msg.latency_ms > 0 else NAN  # 0: the frame had no stamp
            self._delivered.tick(now)
            self.inputs.update(
                "render",
                now,
                render_time_ms=ms,
                render_fps=getattr(self, "_render_fps", NAN),
                e2e_latency_ms=e2e,
                delivered_fps=self._delivered.rate_hz(),
            )
            fields = {
                "mode": str(msg.mode),
                "kernel_size": int(msg.kernel_size),
                "columns": int(msg.columns),
                "rows": int(msg.rows),
                "render_ms": ms,
            }
            self.reasoner.frame(now, e2e_ms=e2e, **fields)  # type: ignore[arg-type]
            if self.gate is not None and math.isfinite(ms) and ms >= 0:
                self.gate.observe(self.inputs.context(now), **fields)  # in shadow the model sees every frame

        self._guard("krystal/ascii", apply)

    def _on_verdict(self, msg: TemporalVerdict) -> None:
        """temporal_solver's chaos test of a render-time series: a flag stands until a verdict
        clears it or chaos_timeout_s passes; every other verdict is not for us."""

        def apply() -> None:
            if msg.kind != "chaos" or str(msg.formula) not in self.params["chaos_signals"]:
                return
            exponent = _f(msg.value)
            chaotic = msg.verdict == TemporalVerdict.VIOLATED and exponent > 0
            self.inputs.chaos(time.monotonic(), exponent if chaotic else NAN)

        self._guard("krystal/verdicts", apply)

    def _on_style(self, msg: StyleDecision) -> None:
        """An operator's manual choice wins for manual_hold_s: no decisions, no re-sends. It rates
        the decision it replaced -1 (user_rating, docs/reasoning.md)."""
        if msg.policy == "manual":
            replaced = self.reasoner.current
            if replaced is not None and time.monotonic() >= self._manual_until:
                self._rate(replaced.decision_id, -1.0)
            self._manual_until = time.monotonic() + self.params["manual_hold_s"]
            self.get_logger().info(
                f"manual style {msg.mode}: holding decisions for {self.params['manual_hold_s']} s"
            )

    # -- decisions -----------------------------------------------------------------------------
    def _step(self) -> None:
        now = time.monotonic()
        period_s = 1.0 / self.params["decision_rate_hz"]
        if self._step_due_s:  # lateness: the gap since the previous step beyond one period
            self._step_late_ms.add(max(0.0, now - self._step_due_s) * 1e3)
        self._step_due_s = now + period_s
        if now < self._manual_until:
            return
        if now - self._last_cpu_s >= 0.5:
            self._last_cpu_s = now
            self.inputs.cpu_ratio = _cpu_ratio()
        self._reserve_ids()
        decision = self.reasoner.step(now, self.inputs.context(now))
        if decision is not None:
            self._write(log_record(decision, time.time()))  # logged before anyone can act on it
            self._publish(decision)
            self.get_logger().info(
                f"decision {decision.decision_id} ({decision.policy}): "
                f"{decision.style.label()}: {decision.reason}"
            )
        for outcome in self.reasoner.outcomes():
            self._write_outcome(outcome, now)
        if self.gate is not None and now - self._model_at >= self.params["learned_period_s"]:
            self._model_at = now
            self._model_period(now)
        period = self.params["td_save_period_s"]
        if self.params["policy"] == "rules_td" and period > 0 and now - self._last_save_s >= period:
            self._save_table()

    # -- decision log: ids, outcomes, ratings -----------------------------------------------------
    def _reserve_ids(self) -> None:
        if self._ids is None:
            return
        try:
            self._ids.ensure(self.reasoner.next_id)
        except OSError as exc:  # ids stay unique within this run; the log says why not across runs
            self._log_error = f"decision id counter {self._ids.path} not writable: {exc}"
            self.get_logger().error(self._log_error, throttle_duration_sec=30.0)

    def _write_outcome(self, outcome: Outcome, now: float) -> None:
        """The outcome line: render times (the Reasoner's), plus what the viewer got in the same
        span (capture -> receipt e2e, delivered fps, on-budget fraction), quality and the rating."""
        d = outcome.decision
        record = log_record(d, time.time(), outcome)
        got = self.book.between(d.time_s, now, d.budget_ms)
        out = record["outcome"]
        assert isinstance(out, dict)
        out.update(
            {
                "e2e_ms_mean": got.e2e_ms_mean,
                "e2e_ms_p95": got.e2e_ms_p95,
                "e2e_ms_max": got.e2e_ms_max,
                "delivered_fps": got.delivered_fps,
                "delivered_frames": got.frames,
                "on_budget_fraction": got.on_budget_fraction,
                "quality": quality(d.style, self.reasoner.base_cells),
                "span_s": now - d.time_s,
                "user_rating": self._ratings.get(d.decision_id),
            }
        )
        self._written[d.decision_id] = record
        while len(self._written) > 16:
            self._written.pop(next(iter(self._written)))
        self._write(record)

    def _rate(self, decision_id: int, rating: float) -> None:
        """A rating after the outcome line was written: the line again with it (the last wins)."""
        self._ratings[decision_id] = rating
        while len(self._ratings) > 64:
            self._ratings.pop(next(iter(self._ratings)))
        record = self._written.get(decision_id)
        if record is not None and isinstance(record.get("outcome"), dict):
            self._write(
                {**record, "timestamp": time.time(), "outcome": {**record["outcome"], "user_rating": rating}}
            )

    # -- model promotion (promotion.py) ------------------------------------------------------------
    def _model_period(self, now: float) -> None:
        """One scored period of the deployed model (promotion.ModelGate); the shadow choice is
        logged, a transition logged, audited and shown on /diagnostics."""
        assert self.gate is not None
        try:
            shadow, transition = self.gate.period(now, self.params["budget_ms"])
        except Exception as exc:  # a model that fails at run time never stops the rules
            self.get_logger().error(f"learned policy failed: {exc!r}", throttle_duration_sec=30.0)
            return
        if shadow is not None:
            self._write_shadow(shadow)
        if transition is not None:
            self._model_event(transition)

    def _write_shadow(self, shadow: ShadowChoice) -> None:
        assert self.gate is not None
        self._write(
            {
                "kind": "shadow",
                "timestamp": time.time(),
                "model_sha256": self._model_info.get("model_sha256"),
                "phase": self.gate.promotion.phase,
                "model_choice": shadow.model_choice.label(),
                "rules_style": shadow.rules_style.label(),
                "score": asdict(shadow.score),
            }
        )

    def _model_event(self, t: Transition) -> None:
        """Apply a phase change: the model acts only while ACTING; log, audit, diagnostics."""
        sha = self._model_info.get("model_sha256", "")
        self._model_info["phase"] = t.phase_to
        line = f"learned policy {sha[:12]}: {t.event} ({t.reason})"
        if t.event in ("rolled_back", "held"):
            self.get_logger().warning(line)
        else:
            self.get_logger().info(line)
        record = {"event": f"model_{t.event}", "phase": t.phase_to, "reason": t.reason, "figures": t.figures}
        self._write({"kind": "model", "timestamp": time.time(), "model_sha256": sha, **record})
        self._audit_write(
            {
                "type": "event",
                "device": f"{self.get_fully_qualified_name()}/policy",
                "event": f"model_{t.event}",
                "detail": t.reason,
                "model_sha256": sha,
                "model_path": self._model_info.get("model_path", ""),
                "figures": {k: round(v, 4) for k, v in t.figures.items() if math.isfinite(v)},
            }
        )
        self._diagnostics_level("model", WARN if t.event in ("rolled_back", "held") else OK)

    def _audit_write(self, record: dict[str, Any]) -> None:
        from krystal.journal import JsonLines, state_dir

        try:
            if self._audit is None:
                self._audit = JsonLines(
                    Path(self.params["model_audit_log"] or state_dir() / "devices" / "audit.jsonl")
                )
            self._audit.append({"time": round(time.time(), 6), **record})
        except (OSError, ValueError) as exc:  # an audit log that cannot be written never stops a decision
            self.get_logger().error(f"model audit log: {exc}", throttle_duration_sec=30.0)

    def _publish(self, decision: Decision) -> None:
        self._pub.publish(decision_msg(decision, self.get_clock().now().to_msg()))
        self.published += 1

    def _resend(self) -> None:
        if self.reasoner.current is not None and time.monotonic() >= self._manual_until:
            self._publish(self.reasoner.current)

    def _write(self, record: dict[str, object]) -> None:
        if self.log is None:
            return
        try:
            self.log.write(record)
            self._log_error = None
        except (OSError, ValueError) as exc:
            self._log_error = f"decision log write failed: {exc}"
            self.get_logger().error(self._log_error, throttle_duration_sec=5.0)
            self._diagnostics.level_changed("decisions", ERROR)

    def _save_table(self) -> None:
        self._last_save_s = time.monotonic()
        try:
            self.reasoner.q.save(self._table_path)
            self._table_note = f"saved {self._table_path}"
        except OSError as exc:
            self._table_note = f"cannot save {self._table_path}: {exc}"
            self.get_logger().error(self._table_note, throttle_duration_sec=30.0)

    # -- health --------------------------------------------------------------------------------
    def _inputs_health(self) -> Health:
        now = time.monotonic()
        ctx = self.inputs.context(now)
        values = {n: ("fresh" if n not in ctx.stale else "stale (NaN)") for n in Inputs.NAMES}
        if self._input_error:
            msg, self._input_error = self._input_error, None
            return Health(ERROR, msg, values)
        if "render" in ctx.stale:
            return Health(WARN, "no frames from the renderer on krystal/ascii", values)
        missing = [n for n in ctx.stale if n != "render"]
        if missing:
            return Health(OK, f"deciding without {', '.join(missing)} (NaN in the context)", values)
        return Health(OK, "all inputs fresh", values)

    def _decisions_health(self) -> Health:
        d = self.reasoner.current
        late = self._step_late_ms.summary()
        values = {
            "style": d.style.label() if d else "none",
            "decisions": str(self.reasoner.next_id - self._first_id),
            "run_id": self.log.run_id if self.log else "",
            "policy": self.params["policy"],
            "td_table": self._table_note,
            "log": str(self.log.path) if self.log else "disabled",
            "step_lateness_ms_p50": f"{late.p50:.2f}",
            "step_lateness_ms_p99": f"{late.p99:.2f}",
            "step_lateness_ms_max": f"{late.max:.2f}",
        }
        if self._log_error:
            return Health(ERROR, self._log_error, values)
        if time.monotonic() < self._manual_until:
            return Health(OK, "manual style override: decisions paused", values)
        if d is None:
            return Health(WARN, "no decision yet", values)
        return Health(OK, f"{d.style.label()} ({d.policy}): {d.reason}"[:200], values)

    def _model_health(self) -> Health:
        values = dict(self._model_info)
        if self._model_error:
            return Health(ERROR, f"the rules decide alone; {self._model_error}"[:200], values)
        if self.gate is None:
            return Health(OK, f"no learned policy in use (policy {self.params['policy']})", values)
        p = self.gate.promotion
        figures = p.figures()
        values.update({k: f"{v:.3f}" for k, v in figures.items()})
        values.update(
            {"phase": p.phase, "rollbacks": str(p.rollbacks), "periods_needed": str(p.config.decisions)}
        )
        sha = values.get("model_sha256", "")[:12]
        shown = (
            f"model {figures['model_on_budget']:.2f} on budget, quality {figures['model_quality']:.2f};"
            f" rules {figures['rules_on_budget']:.2f}, {figures['rules_quality']:.2f}"
        )
        if p.phase == ACTING:
            return Health(OK, f"learned policy sha256 {sha} acting; {shown}", values)
        level = WARN if p.phase != SHADOW else OK
        return Health(level, f"learned policy sha256 {sha} in {p.phase} (the rules act); {shown}", values)

    def destroy_node(self) -> None:
        for outcome in self.reasoner.flush():
            self._write_outcome(outcome, time.monotonic())
        if self.params["policy"] == "rules_td":
            self._save_table()
        if self.log is not None:
            self.log.close()
        if self._audit is not None:
            self._audit.close()
        super().destroy_node()


def _replace(config: ReasonerConfig, **changes: Any) -> ReasonerConfig:
    from dataclasses import replace

    return replace(config, **changes)


def _cpu_ratio() -> float:
    try:
        import psutil

        return float(psutil.cpu_percent(interval=None)) / 100.0
    except Exception:  # psutil absent or /proc unreadable: unknown, not a guess
        return NAN


__all__ = ["PARAMS", "Parameter", "ReasoningNode"]
