"""A simulated renderer under load traces: the reasoning benchmark's world, and a data source.

Per-style costs are this project's measured render times (README, 160x45 scaled to the grid) on a
machine 8x slower than the development box, so the styles straddle the 33 ms budget. Until real
recordings exist, `synthesize` runs the real reasoning core here and writes what the graph would:
a decision log in the node's format and an MCAP recording of the telemetry topics.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from krystal.reasoning.context import Context
from krystal.reasoning.log import DecisionLog
from krystal.reasoning.policy import Chooser, Decision, Reasoner, ReasonerConfig, log_record
from krystal.reasoning.rules import RuleConfig
from krystal.reasoning.styles import Style, ladder, quality
from krystal.reasoning.td import DoubleQ

FPS = 30.0
DURATION_S = 60.0
BUDGET_MS = 33.0
MACHINE_SLOWDOWN = 8.0
# ms per 1000 cells at kernel 3, from the README's 160x45 (7200 cells) figures
MS_PER_KCELL = {"ramp": 0.174, "edges": 0.32, "sketch": 0.33, "glitch": 0.35, "cyberpunk": 0.80}
_COMMON: dict[str, Any] = {"kernel": "luminance", "kernel_sizes": [5, 3], "columns": 120, "rows": 45}
LADDERS = {
    "calm": ladder(["edges", "ramp"], grid_scales=[0.75, 0.5], **_COMMON),
    "fast": ladder(["glitch", "ramp"], grid_scales=[0.75, 0.5], **_COMMON),
}
BASE_CELLS = LADDERS["calm"][0].cells
# the reasoning benchmark's trace: (start s, end s, kind, peak multiplier); "visible" load shows in
# CPU use, "ramp" grows, "hidden" does not show
BENCH_STEPS = ((8.0, 20.0, "visible", 2.5), (28.0, 36.0, "ramp", 3.0), (44.0, 54.0, "hidden", 4.0))
WALL_BASE_S = 1_800_000_000.0  # synthesized runs start here (wall clock), so their bytes are stable


@dataclass(frozen=True)
class Trace:
    steps: tuple[tuple[float, float, str, float], ...] = BENCH_STEPS
    fast: tuple[tuple[float, float], ...] = ()  # intervals of fast music (tempo 160 BPM)
    duration_s: float = DURATION_S


def random_trace(seed: int, duration_s: float = DURATION_S) -> Trace:
    """2-4 load steps of random kind, length and strength; sometimes a stretch of fast music."""
    rng = random.Random(seed)
    steps: list[tuple[float, float, str, float]] = []
    t = rng.uniform(2.0, 8.0)
    for _ in range(rng.randint(2, 4)):
        length = rng.uniform(4.0, 14.0)
        if t + length > duration_s:
            break
        steps.append((t, t + length, rng.choice(["visible", "ramp", "hidden"]), rng.uniform(1.5, 4.5)))
        t += length + rng.uniform(3.0, 10.0)
    fast: tuple[tuple[float, float], ...] = ()
    if rng.random() < 0.3:
        a = rng.uniform(0.0, duration_s / 2)
        fast = ((a, a + rng.uniform(8.0, 20.0)),)
    return Trace(tuple(steps), fast, duration_s)


def load_at(trace: Trace, t: float) -> tuple[float, float]:
    """(cost multiplier, CPU use the node would see) at time t."""
    for start, end, kind, peak in trace.steps:
        if start <= t < end:
            if kind == "visible":
                return peak, 0.1 + 0.6 * (peak - 1) / 1.5 if peak < 2.5 else 0.7
            if kind == "ramp":
                f = (t - start) / (end - start)
                return 1.0 + (peak - 1.0) * f, 0.1 + 0.8 * f
            return peak, 0.1
    return 1.0, 0.1


def cost_ms(style: Style, multiplier: float, rng: random.Random) -> float:
    base = MS_PER_KCELL[style.mode] * (1 + 0.12 * (style.kernel_size - 3) * (style.mode != "ramp"))
    return base * style.cells / 1000 * MACHINE_SLOWDOWN * multiplier * (1 + 0.05 * rng.gauss(0, 1))


class RandomChooser:
    """Exploration for data: now and then a random allowed level (the rules still guard)."""

    def __init__(self, seed: int, rate: float = 0.25) -> None:
        self._rng = random.Random(seed)
        self.rate = rate

    def observe(
        self, ctx: Context, *, mode: str, kernel_size: int, columns: int, rows: int, render_ms: float
    ) -> None:
        pass

    def choose(
        self, styles: tuple[Style, ...], level: int, allowed: list[int]
    ) -> tuple[int, str, float] | None:
        if self._rng.random() >= self.rate:
            return None
        return self._rng.choice(allowed), "explore", 0.0


@dataclass
class RunStats:
    frames: int = 0
    over: int = 0
    switches: int = 0
    quality_sum: float = 0.0
    decisions: list[Decision] = field(default_factory=list)

    @property
    def over_fraction(self) -> float:
        return self.over / self.frames if self.frames else math.nan

    @property
    def quality(self) -> float:
        return self.quality_sum / self.frames if self.frames else math.nan


class Sink:
    """What a synthesized run leaves: a decision log (node format) and an MCAP of the topics."""

    def __init__(self, log_path: Path, mcap_path: Path) -> None:
        from mcap_ros2.writer import Writer

        from krystal.record.msgdefs import message_definition

        self.wall_s = 0.0  # the simulated clock: the last published message's time
        self.log = DecisionLog(
            log_path,
            max_bytes=0,
            fsync="never",
            run_id=f"sim-{log_path.stem}",
            boot="synthesized",
            monotonic=lambda: self.wall_s,
        )
        mcap_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(mcap_path, "wb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._file)
        self._schemas = {
            t: self._writer.register_msgdef(f"krystal/msg/{t}", message_definition(f"krystal/msg/{t}"))
            for t in (
                "AsciiFrame",
                "GpuTelemetry",
                "ThermalState",
                "AudioFeatures",
                "RenderStats",
                "StyleDecision",
            )
        }
        self._seq: dict[str, int] = {}

    def publish(self, topic: str, type_name: str, wall_s: float, fields: dict[str, Any]) -> None:
        self.wall_s = wall_s
        ns = round(wall_s * 1e9)
        msg = {
            "header": {"stamp": {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}, "frame_id": ""}
        }
        msg.update(fields)
        self._seq[topic] = self._seq.get(topic, 0) + 1
        self._writer.write_message(topic, self._schemas[type_name], msg, ns, ns, self._seq[topic])

    def close(self) -> None:
        self.log.close()
        self._writer.finish()
        self._file.close()


def _telemetry(
    sink: Sink | None, wall: float, rng: random.Random, *, tempo: float, period: Sequence[float], style: Style
) -> dict[str, float]:
    """The slow topics every 0.5 s: GPU, thermal, audio, render stats (uninformative but real);
    returns what the reasoning node's context would hold from them."""
    util = 0.25 + 0.05 * rng.random()
    used = int((2 + rng.random()) * (1 << 30))
    temp = 45.0 + 3.0 * rng.random()
    rms = -20.0 + 2.0 * rng.gauss(0, 1)
    fps = len(period) / 0.5
    if sink is not None:
        sink.publish("/gpu/telemetry", "GpuTelemetry", wall, {
            "source": "sim", "utilization_ratio": util,
            "memory_total_bytes": 8 << 30, "memory_used_bytes": used,
        })  # fmt: skip
        sink.publish(
            "/thermal/state", "ThermalState", wall, {"max_temperature_c": temp, "throttle_penalty": 0.0}
        )
        sink.publish("/audio/features", "AudioFeatures", wall, {
            "sample_rate_hz": 48000, "rms_dbfs": rms, "tempo_bpm": 0.0 if math.isnan(tempo) else tempo,
        })  # fmt: skip
        sink.publish("/krystal/render_stats", "RenderStats", wall, {
            "period_s": 0.5, "output_fps": fps, "render_time_ms_mean": sum(period) / max(1, len(period)),
            "render_time_ms_max": max(period, default=math.nan), "budget_ms": BUDGET_MS,
            "columns": style.columns, "rows": style.rows, "mode": style.mode, "kernel": style.kernel,
            "kernel_size": style.kernel_size,
        })  # fmt: skip
    return {
        "gpu_utilization_ratio": util,
        "gpu_memory_used_ratio": used / (8 << 30),
        "temperature_c": temp,
        "throttle_penalty": 0.0,
        "audio_rms_dbfs": rms,
        "render_fps": fps,
    }


def simulate(
    policy: str,
    seed: int,
    trace: Trace | None = None,
    *,
    q: DoubleQ | None = None,
    chooser: Chooser | None = None,
    fixed_level: int = 0,
    sink: Sink | None = None,
    wall_base_s: float = WALL_BASE_S,
) -> RunStats:
    """One run at 30 fps. policy: fixed, rules (no prediction), rules_predict, rules_td, learned."""
    trace = trace or Trace()
    rng = random.Random(seed)
    tel_rng = random.Random(seed + 7919)
    fixed = policy == "fixed"
    cfg = ReasonerConfig(
        rules=RuleConfig(budget_ms=BUDGET_MS, predict=policy != "rules"),
        policy={"rules_td": "rules_td", "learned": "learned"}.get(policy, "rules"),
    )
    r = Reasoner(cfg, LADDERS, q=q, chooser=chooser)
    stats = RunStats()
    style = LADDERS["calm"][min(fixed_level, len(LADDERS["calm"]) - 1)]
    period: list[float] = []
    render_ms = math.nan
    held: dict[str, float] = {}
    for i in range(int(trace.duration_s * FPS)):
        t = i / FPS
        wall = wall_base_s + t
        mult, cpu = load_at(trace, t)
        tempo = 160.0 if any(a <= t < b for a, b in trace.fast) else math.nan
        if not fixed:
            ctx = Context(cpu_ratio=cpu, audio_tempo_bpm=tempo, render_time_ms=render_ms, **held)  # type: ignore[arg-type]
            d = r.step(t, ctx)
            if d is not None:
                stats.decisions.append(d)
                if d.rule != "start":
                    stats.switches += 1
                if sink is not None:
                    sink.log.write(log_record(d, wall))
                    sink.publish("/krystal/style", "StyleDecision", wall, {
                        "decision_id": d.decision_id, "mode": d.style.mode, "kernel": d.style.kernel,
                        "kernel_size": d.style.kernel_size, "columns": d.style.columns, "rows": d.style.rows,
                        "policy": d.policy, "reason": d.reason[:200], "budget_ms": d.budget_ms,
                    })  # fmt: skip
            if sink is not None:
                for o in r.outcomes():
                    sink.log.write(log_record(o.decision, wall, o))
            style = r.rules.style
        render_ms = cost_ms(style, mult, rng)
        stats.frames += 1
        stats.quality_sum += quality(style, BASE_CELLS)
        stats.over += render_ms > BUDGET_MS
        period.append(render_ms)
        if sink is not None:
            sink.publish("/krystal/ascii", "AsciiFrame", wall + 1e-4, {
                "columns": style.columns, "rows": style.rows, "mode": style.mode, "kernel": style.kernel,
                "kernel_size": 0 if style.mode == "ramp" else style.kernel_size, "render_time_ms": render_ms,
            })  # fmt: skip
        if i % int(FPS / 2) == int(FPS / 2) - 1:
            held = _telemetry(sink, wall + 2e-4, tel_rng, tempo=tempo, period=period, style=style)
            period = []
        if not fixed:
            r.frame(
                t,
                mode=style.mode,
                kernel_size=style.kernel_size,
                columns=style.columns,
                rows=style.rows,
                render_ms=render_ms,
            )
    if sink is not None and not fixed:
        end = wall_base_s + trace.duration_s
        for o in r.flush():
            sink.log.write(log_record(o.decision, end, o))
    return stats
