"""What the gateway knows about the running graph: written by ROS callbacks, read by HTTP handlers.

Thread-safe and ROS-free: the node converts messages to plain values before handing them over, so
the HTTP side never touches rclpy objects and a slow client never blocks the executor.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric

from krystal.gateway.foxglove_ws import Channels
from krystal.gateway.health import HealthBook
from krystal.gateway.streams import Streams
from krystal.sched.metrics import RateMeter

SERIES = ("render_time_ms", "temperature_c", "tempo_bpm")


@dataclass(frozen=True)
class CommandResult:
    accepted: bool
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandRequest:
    device_id: str
    command: str
    arguments: dict[str, str]
    timeout_s: float
    caller: str
    command_id: str = ""


DeviceCommander = Callable[[CommandRequest], "Future[CommandResult]"]
StyleSetter = Callable[[dict[str, Any], str], None]  # (style fields, caller)


class _Totals:
    """Counters whose totals arrive from elsewhere (RenderStats, /diagnostics), read at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        stats = self.hub.render_stats or {}
        for name, key, doc in (
            (
                "krystal_frames_dropped",
                "frames_dropped",
                "Frames superseded or too old, since the renderer started",
            ),
            ("krystal_frames_invalid", "frames_invalid", "Malformed frames, since the renderer started"),
        ):
            family = CounterMetricFamily(name, doc)
            if key in stats:
                family.add_metric([], float(stats[key]))
            yield family
        misses = CounterMetricFamily(
            "krystal_deadline_misses", "Callback deadline misses reported on /diagnostics", labels=["node"]
        )
        for node, value in self.hub.health.values("deadline_misses").items():
            try:
                misses.add_metric([node], float(value))
            except ValueError:
                continue
        yield misses


class Metrics:
    """The Prometheus view of the graph, one registry per gateway (tests make their own). Names
    follow Prometheus conventions: base units (seconds, celsius, hertz), `_total` on counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.render_seconds = Histogram(
            "krystal_render_time_seconds",
            "ASCII render time per frame",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.033, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.temperature = Gauge("krystal_temperature_celsius", "Sensor temperature", ["sensor"], registry=r)
        self.gpu_util = Gauge("krystal_gpu_utilization_ratio", "GPU busy fraction", ["device"], registry=r)
        self.tempo = Gauge(
            "krystal_audio_tempo_hertz", "Tempo of the room's audio, beats per second", registry=r
        )
        self.decisions = Counter(
            "krystal_style_decisions", "Style decisions received, by policy", ["policy"], registry=r
        )
        self.requests = Counter(
            "krystal_gateway_requests",
            "HTTP requests and WebSockets, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "krystal_gateway_request_duration_seconds",
            "HTTP request duration, from the first byte seen to the last byte sent",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        if not route.startswith("WS "):  # a WebSocket's duration is its whole session
            self.request_seconds.labels(route=route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class Hub:
    def __init__(
        self,
        stale_after_s: float = 5.0,
        history_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._frame_cond = threading.Condition(self._lock)
        self.health = HealthBook(stale_after_s, clock)
        self.metrics = Metrics()
        self.metrics.registry.register(_Totals(self))
        self.streams = Streams()
        self.foxglove = Channels(self.streams)
        self.history_s = history_s
        self.frame: dict[str, Any] | None = None
        self.frame_seq = 0
        self.style: dict[str, Any] | None = None
        self.render_stats: dict[str, Any] | None = None
        self.nodes: list[str] = []
        self._rates: dict[str, RateMeter] = {}
        self._series: dict[str, deque[tuple[float, float]]] = {k: deque(maxlen=2000) for k in SERIES}
        self.device_commander: DeviceCommander | None = None
        self.style_setter: StyleSetter | None = None

    # ROS side -------------------------------------------------------------------------------
    def tick(self, topic: str) -> None:
        with self._lock:
            meter = self._rates.get(topic)
            if meter is None:
                meter = self._rates[topic] = RateMeter(5.0)
            meter.tick(self._clock())

    def add_point(self, series: str, value: float) -> None:
        if not math.isfinite(value):
            return
        now = self._clock()
        with self._lock:
            points = self._series[series]
            if points and now - points[-1][0] < 0.5:  # 2 points/s is plenty for a plot
                return
            points.append((now, value))
            while points and now - points[0][0] > self.history_s:
                points.popleft()

    def set_frame(self, frame: dict[str, Any]) -> None:
        with self._frame_cond:
            self.frame = frame
            self.frame_seq += 1
            self._frame_cond.notify_all()
        render_ms = float(frame.get("render_time_ms", math.nan))
        if math.isfinite(render_ms):
            self.metrics.render_seconds.observe(render_ms / 1e3)
        self.add_point("render_time_ms", float(frame.get("render_time_ms", math.nan)))

    def set_style(self, style: dict[str, Any]) -> None:
        with self._lock:
            self.style = style
        self.metrics.decisions.labels(policy=str(style.get("policy") or "unknown")).inc()

    def set_render_stats(self, stats: dict[str, Any]) -> None:
        with self._lock:
            self.render_stats = stats

    def set_temperatures(self, sensors: dict[str, float], hottest_c: float) -> None:
        for name, t in sensors.items():
            if math.isfinite(t):
                self.metrics.temperature.labels(sensor=name).set(t)
        self.add_point("temperature_c", hottest_c)

    def set_gpu(self, device: str, utilization: float) -> None:
        if math.isfinite(utilization):
            self.metrics.gpu_util.labels(device=device).set(utilization)

    def set_tempo(self, bpm: float) -> None:
        if math.isfinite(bpm) and bpm > 0:
            self.metrics.tempo.set(bpm / 60.0)
            self.add_point("tempo_bpm", bpm)

    def set_nodes(self, nodes: list[str]) -> None:
        with self._lock:
            self.nodes = sorted(nodes)

    # HTTP side ------------------------------------------------------------------------------
    def wait_frame(self, after_seq: int, timeout_s: float) -> tuple[int, dict[str, Any] | None]:
        """The newest frame once its sequence passes `after_seq` (or the current one on timeout)."""
        with self._frame_cond:
            self._frame_cond.wait_for(lambda: self.frame_seq > after_seq, timeout=timeout_s)
            return self.frame_seq, self.frame

    def rates(self) -> dict[str, float]:
        now = self._clock()
        with self._lock:
            return {t: round(m.rate_hz(now), 2) for t, m in sorted(self._rates.items())}

    def series(self) -> dict[str, list[tuple[float, float]]]:
        now = self._clock()
        with self._lock:
            return {k: [(round(t - now, 2), v) for t, v in pts] for k, pts in self._series.items()}
