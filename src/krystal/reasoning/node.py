"""reasoning: GPU, thermal, audio and render telemetry in, StyleDecision on krystal/style out.

Every decision goes to the decision log (log.py) with the context it saw, and again with its
outcome once the following frames are known.
"""

from __future__ import annotations

import math
import time
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
from krystal.reasoning.log import FSYNC_POLICIES, DecisionLog, default_log_dir
from krystal.reasoning.policy import (
    POLICIES,
    Decision,
    Reasoner,
    ReasonerConfig,
    SourceConfig,
    log_record,
)
from krystal.reasoning.predictor import FramePredictor
from krystal.reasoning.rules import RuleConfig
from krystal.reasoning.styles import Style, ladder
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
    Param("learned_period_s", 0.5, "How often the learned policy is asked", 0.05, 60.0),
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
    Param("over_frames", 3, "Frames in a row over budget before a step down", 1, 1000),
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
        self._model_info: dict[str, str] = {}
        self._model_error: str | None = None
        self._load_policy_model(self.params.rejected.get("policy_model_path"))
        self.log: DecisionLog | None = None
        self._log_error: str | None = None
        if v["log_enabled"]:
            path = Path(v["log_path"] or default_log_dir() / "decisions.jsonl")
            try:
                self.log = DecisionLog(
                    path, v["log_max_bytes"], v["log_keep"], v["log_fsync"], v["log_fsync_interval_s"]
                )
            except OSError as exc:
                self._log_error = f"decision log {path} unusable: {exc}"
                self.get_logger().error(self._log_error)
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
        decide alone until a good model is set (the node never stops for a model)."""
        v = self.params.values
        self.reasoner.chooser = None
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
                self.reasoner.chooser = model
                self._model_info = describe(model)
                self.get_logger().info(f"learned policy {path} (sha256 {model.sha256[:12]}) loaded")
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
            self.reasoner.frame(
                now,
                mode=str(msg.mode),
                kernel_size=int(msg.kernel_size),
                columns=int(msg.columns),
                rows=int(msg.rows),
                render_ms=ms,
                e2e_ms=e2e,
            )

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
        """An operator's manual choice wins for manual_hold_s: no decisions, no re-sends."""
        if msg.policy == "manual":
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
        decision = self.reasoner.step(now, self.inputs.context(now))
        if decision is not None:
            self._write(log_record(decision, time.time()))  # logged before anyone can act on it
            self._publish(decision)
            self.get_logger().info(
                f"decision {decision.decision_id} ({decision.policy}): "
                f"{decision.style.label()}: {decision.reason}"
            )
        for outcome in self.reasoner.outcomes():
            self._write(log_record(outcome.decision, time.time(), outcome))
        period = self.params["td_save_period_s"]
        if self.params["policy"] == "rules_td" and period > 0 and now - self._last_save_s >= period:
            self._save_table()

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
            "decisions": str(self.reasoner.next_id - 1),
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
        if self.reasoner.chooser is None:
            return Health(OK, f"no learned policy in use (policy {self.params['policy']})", values)
        return Health(OK, f"learned policy sha256 {values.get('model_sha256', '')[:12]}", values)

    def destroy_node(self) -> None:
        for outcome in self.reasoner.flush():
            self._write(log_record(outcome.decision, time.time(), outcome))
        if self.params["policy"] == "rules_td":
            self._save_table()
        if self.log is not None:
            self.log.close()
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
