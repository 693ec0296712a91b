"""The context a decision sees: the newest value of every input, NaN when missing or stale."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

NAN = math.nan


@dataclass(frozen=True)
class Context:
    gpu_utilization_ratio: float = NAN
    gpu_memory_used_ratio: float = NAN
    gpu_draw_calls: float = NAN  # per frame, over the applications the Krystal Vulkan layer counts
    gpu_vertex_count: float = NAN  # per frame, likewise; NaN with no application attached
    gpu_shader: str = ""  # dominant kind of work: "graphics", "compute", "" unknown
    gpu_source: str = ""
    temperature_c: float = NAN
    throttle_penalty: float = NAN
    audio_rms_dbfs: float = NAN
    audio_tempo_bpm: float = NAN
    render_time_ms: float = NAN
    render_fps: float = NAN
    cpu_ratio: float = NAN
    e2e_latency_ms: float = NAN  # the newest frame's capture stamp -> AsciiFrame published
    delivered_fps: float = NAN  # AsciiFrames per second reaching the reasoning node
    # temporal_solver's surrogate-tested chaos flag on the render time: its Lyapunov exponent (1/s)
    # while the flag stands and is fresh; NaN otherwise
    render_chaos_per_s: float = NAN
    stale: tuple[str, ...] = field(default_factory=tuple)  # inputs missing or older than their timeout


class Inputs:
    """Newest reading per input with its arrival time; `context(now)` blanks the stale ones."""

    NAMES = ("gpu", "thermal", "audio", "render")

    def __init__(self, timeouts_s: dict[str, float]) -> None:
        self.timeouts_s = dict(timeouts_s)
        self._values: dict[str, dict[str, float | str]] = {}
        self._seen_s: dict[str, float] = {}
        self.cpu_ratio = NAN
        self.chaos_timeout_s = 30.0
        self._chaos: tuple[float, float] = (NAN, -math.inf)  # (exponent per s or NaN, when heard)

    def chaos(self, now_s: float, exponent_per_s: float) -> None:
        """A chaos verdict: the exponent of a flagged series, NaN when it is not chaotic."""
        self._chaos = (exponent_per_s, now_s)

    def update(self, name: str, now_s: float, **values: float | str) -> None:
        self._values[name] = values
        self._seen_s[name] = now_s

    def fresh(self, name: str, now_s: float) -> bool:
        seen = self._seen_s.get(name)
        return seen is not None and now_s - seen <= self.timeouts_s.get(name, 2.0)

    def context(self, now_s: float) -> Context:
        merged: dict[str, float | str] = {}
        stale: list[str] = []
        for name in self.NAMES:
            if self.fresh(name, now_s):
                merged.update(self._values[name])
            else:
                stale.append(name)
        fields = Context.__dataclass_fields__
        kwargs = {k: v for k, v in merged.items() if k in fields}
        chaos, heard = self._chaos
        chaos = chaos if now_s - heard <= self.chaos_timeout_s else NAN
        kwargs["render_chaos_per_s"] = chaos
        return Context(cpu_ratio=self.cpu_ratio, stale=tuple(stale), **kwargs)  # type: ignore[arg-type]
