"""temporal_solver: temporal-logic monitors, DTW pattern search and a chaos test over live topics.

Topics are found by name at run time and their message class imported from the type string, so any
message type works. Verdicts go to krystal/verdicts (TemporalVerdict, reliable) on every change and
at `verdict_rate_hz`; a violated spec turns its /diagnostics status WARN or ERROR with the sample
that decided it. `krystal/check_trace` (CheckTrace) checks a candidate sequence against a spec, on
its own thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from rclpy.subscription import Subscription
from rclpy.time import Time

from krystal.msg import TemporalVerdict
from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.msgdef import message_class
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import reliable_qos, sensor_qos
from krystal.ros.shedding import Shedding, shed_param
from krystal.srv import CheckTrace
from krystal.temporal.cdr import FieldReader, Unsupported
from krystal.temporal.chaos import chaos_test
from krystal.temporal.dtw import WindowMatcher
from krystal.temporal.monitor import OnlineError, to_ns
from krystal.temporal.patterns import PatternLine, parse_pattern_line
from krystal.temporal.spec import Signal, SpecError, parse, parse_signal
from krystal.temporal.watch import (
    MAX_TRACE_CELLS,
    SATISFIED,
    UNKNOWN,
    VERDICT_NAMES,
    VIOLATED,
    Decision,
    SpecWatch,
    check_trace,
    field_getter,
    format_robustness,
    parse_spec_line,
    stamp_ns,
)

DEFAULT_SPECS = [
    "thermal_limit: always[0:5s](thermal/state.max_temperature_c < 85)",
    "style_reacts: (krystal/render_stats.render_time_ms_p99 > 33)"
    " -> eventually[0:2s](krystal/style.kernel_size < 5)",
    "render_budget: historically[0:3s]"
    "(krystal/render_stats.render_time_ms_p99 <= krystal/render_stats.budget_ms)",
    "gpu_headroom: historically[0:10s](gpu/telemetry.utilization_ratio < 0.95)",
    "audio_no_clip: audio/features.peak_dbfs < -0.1",
]


def _specs_problem(value: Any) -> str | None:
    for line in value:
        try:
            parse_spec_line(line)
        except ValueError as exc:
            return str(exc)
    return None


def _patterns_problem(value: Any) -> str | None:
    """Also reads the recordings that lines cut from (cached), so a bad cut is refused with its reason."""
    for line in value:
        try:
            parse_pattern_line(line)
        except ValueError as exc:
            return str(exc)
    return None


def _signal_problem(value: Any) -> str | None:
    if not value:
        return None
    try:
        parse_signal(value)
    except SpecError as exc:
        return f"chaos_signal: {exc}"
    return None


PARAMS = (
    Param(
        "specs",
        DEFAULT_SPECS,
        "Specifications, 'name: formula' (MTL over topic.field; docs/temporal.md)",
        validate=_specs_problem,
        param_type=Parameter.Type.STRING_ARRAY,
    ),
    Param("violation_level", "warn", "Diagnostics level of a violated spec", choices=("warn", "error")),
    Param(
        "verdict_rate_hz",
        1.0,
        "Rate of repeated verdicts on krystal/verdicts (changes go out at once)",
        0.0,
        50.0,
    ),
    Param(
        "max_latency_s",
        0.05,
        "How long to wait for late messages before a time bound counts as passed",
        0.0,
        10.0,
    ),
    Param("stale_after_s", 5.0, "A topic silent this long turns its specs' health WARN", 0.1, 3600.0),
    Param(
        "patterns",
        [],
        "DTW patterns, 'name; topic.field; threshold; v1 v2 v3 ...' or '...; threshold; FILE.mcap[FROM:TO]'"
        " (a cut of a recording, seconds after its start); z-normalised sliding-window DTW",
        validate=_patterns_problem,
        param_type=Parameter.Type.STRING_ARRAY,
    ),
    Param(
        "pattern_band",
        10,
        "DTW band: how far a match may drift from its diagonal, samples (0: no band)",
        0,
        10000,
    ),
    Param(
        "chaos_signal",
        "krystal/render_stats.render_time_ms_mean",
        "Series tested for chaos (Lyapunov exponent, surrogate-gated); empty disables",
        validate=_signal_problem,
    ),
    Param("chaos_window", 512, "Samples in the chaos test's window", 64, 100000),
    Param("chaos_period_s", 10.0, "Seconds between chaos tests", 0.5, 3600.0),
    Param("discovery_period_s", 1.0, "Seconds between looks for topics not yet seen", 0.1, 60.0),
    Param(
        "input_poll_period_s",
        0.05,
        "Take the watched topics' messages in batches this often, merged in stamp order (one executor"
        " wake-up per period, not per message: 2.5x less CPU at 1 kHz; verdicts up to one period"
        " later); 0: a callback per message",
        0.0,
        1.0,
        read_only=True,
    ),
    Param(
        "input_depth",
        100,
        "Messages kept per watched topic until taken (at least rate x input_poll_period_s)",
        1,
        10000,
        read_only=True,
    ),
    shed_param("input batching (input_poll_period_s) and repeated verdicts (verdict_rate_hz)"),
)
_SHED_WORK = "input batching and repeated verdicts"


def fields_of(type_name: str) -> dict[str, str]:
    """A type's fields and their rosidl types, in order (cdr.FieldReader's layouts)."""
    fields: dict[str, str] = message_class(type_name).get_fields_and_field_types()  # type: ignore[attr-defined]
    return fields


class TemporalSolverNode(Node):
    def __init__(self, node_name: str = "temporal_solver", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, on_change=self._on_change)
        self._pub = self.create_publisher(TemporalVerdict, "krystal/verdicts", reliable_qos(50))
        self._subs: dict[str, Subscription[Any]] = {}
        self._last_seen: dict[str, float] = {}
        self._types: dict[str, str] = {}
        self._type_errors: dict[str, str] = {}
        self._watches: list[SpecWatch] = []
        self._spec_errors: list[str] = []
        self._patterns: list[tuple[PatternLine, WindowMatcher, Any]] = []
        self._pattern_matches: dict[str, Decision] = {}
        self._watch_routes: dict[str, list[SpecWatch]] = {}  # topic -> what reads it
        self._pattern_routes: dict[str, list[tuple[PatternLine, WindowMatcher, Any]]] = {}
        self._pattern_errors: list[str] = []
        self._match_counts: dict[str, int] = {}
        self._chaos_getter: Any = None
        self._chaos_values: deque[float] = deque()
        self._chaos_stamps: deque[int] = deque()  # ns
        self._chaos_result = "waiting for samples"
        self._chaos_flag = False
        self._callback_errors = 0
        self._full_decodes = 0  # raw messages deserialized whole (no FieldReader for their type)
        self._readers: dict[str, FieldReader | None] = {}
        self._chaos_signal: Signal | None = None  # its topic and path: the chaos test's series
        self._input_node: Node | None = None  # poll mode: holds the subscriptions, never spun
        self._configure()
        self._diagnostics = Diagnostics(self)
        self._diagnostics.add("inputs", self._inputs_health)
        self._diagnostics.add("specs", self._specs_health)
        self._diagnostics.add("patterns", self._patterns_health)
        self._diagnostics.add("chaos", lambda: Health(WARN if self._chaos_flag else OK, self._chaos_result))
        self._serve_check_trace()
        self._discovery = self.create_timer(self.params["discovery_period_s"], self._discover)
        # under pressure (StyleDecision shed) batches are taken less often (larger, same order) and
        # verdicts repeated less often; a change of verdict still goes out at the next batch
        self._shedding = Shedding(self, _SHED_WORK)
        poll = self.params["input_poll_period_s"]
        self._tick_timer_now = self._shedding.timer(lambda: poll if poll > 0 else 0.02, self._tick)
        rate = self.params["verdict_rate_hz"]
        if rate > 0:
            self._shedding.timer(lambda: 1.0 / rate, self._repeat_verdicts)
        self._chaos_timer = self.create_timer(self.params["chaos_period_s"], self._chaos)
        self._discover()

    @property
    def _tick_timer(self) -> Any:
        return self._tick_timer_now()

    @property
    def _chaos_topic(self) -> str:
        return self._chaos_signal.topic if self._chaos_signal is not None else ""

    # ---- configuration ----------------------------------------------------------------------------

    def _configure(self) -> None:
        self._watches, self._spec_errors = [], []
        for line in self.params["specs"]:
            try:
                self._watches.append(SpecWatch(parse_spec_line(line)))
            except (ValueError, OnlineError) as exc:
                self._spec_errors.append(str(exc))
                self.get_logger().error(f"spec refused: {exc}")
        self._patterns, self._pattern_errors = [], []
        if "patterns" in self.params.rejected:
            self._pattern_errors.append(
                f"patterns from the parameters file refused: {self.params.rejected['patterns']}"
            )
        for line in self.params["patterns"]:
            try:
                p = parse_pattern_line(line)  # a recording may have changed since validation
            except ValueError as exc:
                self._pattern_errors.append(str(exc))
                self.get_logger().error(f"pattern refused: {exc}")
                continue
            band = self.params["pattern_band"] or None
            matcher = WindowMatcher(np.asarray(p.values), p.threshold, band=band)
            self._patterns.append((p, matcher, field_getter(p.signal.path)))
        self._watch_routes = {}
        for w in self._watches:
            for topic in w.topics:
                self._watch_routes.setdefault(topic, []).append(w)
        self._pattern_routes = {}
        for entry in self._patterns:
            self._pattern_routes.setdefault(entry[0].signal.topic, []).append(entry)
        self._chaos_getter, self._chaos_signal = None, None
        if self.params["chaos_signal"]:
            self._chaos_signal = parse_signal(self.params["chaos_signal"])
            self._chaos_getter = field_getter(self._chaos_signal.path)
        self._readers = {}  # the fields read change with the specs
        self._chaos_values = deque(maxlen=self.params["chaos_window"])
        self._chaos_stamps = deque(maxlen=self.params["chaos_window"])

    def _on_change(self, changed: set[str]) -> None:
        if "shed_factor" in changed:
            self._shedding.retime()
        if "patterns" in changed:
            self.params.rejected.pop("patterns", None)  # a value set since replaces the refused one
        if changed & {"specs", "patterns", "pattern_band", "chaos_signal", "chaos_window"}:
            self._configure()
            self._discover()

    def _wanted_topics(self) -> list[str]:
        topics = [t for w in self._watches for t in w.topics]
        topics += [p.signal.topic for p, _, _ in self._patterns]
        if self._chaos_topic:
            topics.append(self._chaos_topic)
        return list(dict.fromkeys(topics))

    def _discover(self) -> None:
        try:
            wanted = {self.resolve_topic_name(t): t for t in self._wanted_topics() if t not in self._subs}
            if not wanted:
                return
            for name, types in self.get_topic_names_and_types():
                topic = wanted.get(name)
                if topic is None or not types:
                    continue
                try:
                    cls = message_class(types[0])
                except LookupError as exc:
                    self._type_errors[topic] = f"{types[0]}: {exc}"
                    continue
                self._types[topic] = types[0]
                qos = sensor_qos(depth=self.params["input_depth"])
                if self.params["input_poll_period_s"] > 0:
                    # no callback runs: _tick takes the messages (the input node is in no executor);
                    # the resolved name, so this node's remappings hold there too
                    # raw: _take_inputs reads only the watched fields from the CDR (cdr.py)
                    self._subs[topic] = self._inputs().create_subscription(
                        cls, name, lambda _: None, qos, raw=True
                    )
                else:
                    self._subs[topic] = self.create_subscription(
                        cls, topic, lambda msg, topic=topic: self._on_message(topic, msg), qos
                    )
                self._type_errors.pop(topic, None)
        except Exception as exc:  # discovery must keep running
            self.get_logger().error(f"topic discovery failed: {exc!r}", throttle_duration_sec=10.0)

    # ---- data path --------------------------------------------------------------------------------

    def _now_ns(self) -> int:
        return int(self.get_clock().now().nanoseconds)

    def _helper_node(self, suffix: str) -> Node:
        return Node(
            f"{self.get_name()}_{suffix}",
            namespace=self.get_namespace(),
            context=self.context,
            start_parameter_services=False,
            enable_rosout=False,
            use_global_arguments=False,  # a global __node:= would give it this node's name
        )

    def _inputs(self) -> Node:
        if self._input_node is None:
            self._input_node = self._helper_node("input")
        return self._input_node

    def _take_inputs(self) -> None:
        """Every message waiting on the watched topics (at most input_depth each), in stamp order."""
        batch: list[tuple[int, int, str, Any]] = []
        limit = self.params["input_depth"]
        now = self._now_ns()
        for topic, sub in list(self._subs.items()):
            taken_all: list[Any] = []
            try:
                with sub.handle:
                    take = sub.handle.take_message
                    for _ in range(limit):
                        taken = take(sub.msg_type, sub.raw)
                        if taken is None:
                            break
                        taken_all.append(taken)
            except Exception as exc:  # a destroyed handle
                self._callback_errors += 1
                self.get_logger().error(f"{topic}: take failed: {exc!r}", throttle_duration_sec=5.0)
            for taken in taken_all:
                msg = self._decode(topic, sub.msg_type, taken[0]) if sub.raw else taken[0]
                if msg is None:
                    continue
                t = stamp_ns(msg)
                if t is None:  # no header: when it arrived (received_timestamp, ns, system clock)
                    info = taken[1] if len(taken) > 1 and isinstance(taken[1], dict) else {}
                    received = info.get("received_timestamp", 0)
                    t = int(received) if received and not self._sim_time() else now
                batch.append((t, len(batch), topic, msg))
        batch.sort(key=lambda item: (item[0], item[1]))
        for t, _, topic, msg in batch:
            self._on_message(topic, msg, t)

    def _decode(self, topic: str, msg_type: Any, data: bytes) -> Any:
        """The watched fields of a raw message (or the whole message where the reader cannot walk
        its type, encoding or bytes); None, counted and logged, when rclpy cannot read it either."""
        if topic not in self._readers:
            self._readers[topic] = self._reader(topic)
        reader = self._readers[topic]
        try:
            if reader is not None:
                try:
                    return reader.read(data)
                except Unsupported:
                    pass
                except ValueError as exc:  # rclpy has the last word on whether the bytes are damaged
                    self.get_logger().warn(f"{topic}: {exc}; whole message tried", throttle_duration_sec=5.0)
            self._full_decodes += 1
            return deserialize_message(data, msg_type)
        except Exception as exc:
            self._callback_errors += 1
            self.get_logger().error(f"{topic}: message not decoded: {exc!r}", throttle_duration_sec=5.0)
            return None

    def _reader(self, topic: str) -> FieldReader | None:
        paths: list[tuple[str | int, ...]] = [
            s.path for w in self._watch_routes.get(topic, ()) for s in w.signals if s.topic == topic
        ]
        paths += [p.signal.path for p, _, _ in self._pattern_routes.get(topic, ())]
        if self._chaos_signal is not None and topic == self._chaos_signal.topic:
            paths.append(self._chaos_signal.path)
        type_name = self._types.get(topic, "")
        try:
            if "header" in fields_of(type_name):
                paths.append(("header", "stamp"))
            return FieldReader(type_name, paths, fields_of)
        except (Unsupported, LookupError) as exc:  # e.g. a misspelt field: whole messages, errors as before
            self.get_logger().info(f"{topic}: whole messages decoded ({exc})")
            return None

    def _sim_time(self) -> bool:
        return bool(self.get_parameter("use_sim_time").value)

    def destroy_node(self) -> None:
        self._service_executor.shutdown(timeout_sec=1.0)
        self._service_thread.join(timeout=5.0)
        self._service_node.destroy_node()
        if self._input_node is not None:
            self._input_node.destroy_node()
            self._input_node = None
        super().destroy_node()

    def _on_message(self, topic: str, msg: Any, t: int | None = None) -> None:
        """One message of `topic`; `t`: its sample time (int ns) when the caller has it (else its
        stamp, else now)."""
        try:
            if t is None:
                t = stamp_ns(msg)
                if t is None:
                    t = self._now_ns()
            self._last_seen[topic] = time.monotonic()
            for w in self._watch_routes.get(topic, ()):
                w.on_message(topic, t, msg)
                self._publish_changes(w)
            for p, matcher, get in self._pattern_routes.get(topic, ()):
                match = matcher.push(get(msg))
                if match is not None:
                    self._publish_pattern(p, match.distance, match.start, match.end, t)
            if self._chaos_getter is not None and topic == self._chaos_topic:
                v = self._chaos_getter(msg)
                if math.isfinite(v):
                    self._chaos_values.append(v)
                    self._chaos_stamps.append(t)
        except Exception as exc:
            self._callback_errors += 1
            self.get_logger().error(f"{topic}: message not used: {exc!r}", throttle_duration_sec=5.0)

    def _tick(self) -> None:
        if self._input_node is not None:
            self._take_inputs()
        try:
            horizon = self._now_ns() - round(self.params["max_latency_s"] * 1e9)
            for w in self._watches:
                if w.horizon_s > 0:
                    w.advance(horizon)
                    self._publish_changes(w)
        except Exception as exc:
            self._callback_errors += 1
            self.get_logger().error(f"advance failed: {exc!r}", throttle_duration_sec=5.0)

    def _verdict_msg(self, w: SpecWatch, d: Decision | None) -> TemporalVerdict:
        msg = TemporalVerdict()
        msg.monitor, msg.kind, msg.formula = w.spec.name, "stl", w.spec.text
        msg.topics = list(w.topics)
        msg.evaluated_stamp = self.get_clock().now().to_msg()
        if d is None:
            msg.header.stamp = msg.evaluated_stamp
            msg.verdict, msg.robustness, msg.value = UNKNOWN, math.nan, math.nan
            missing = [n for n, v in zip(w.names, w.held, strict=False) if math.isnan(v)]
            msg.message = f"waiting for {', '.join(missing)}" if missing else "waiting for the bound to pass"
            return msg
        msg.header.stamp = Time(nanoseconds=d.time_ns).to_msg()
        msg.verdict, msg.robustness, msg.value = d.verdict, d.robustness, d.decided_by_s
        sample = ", ".join(f"{k}={v:.6g}" for k, v in d.sample.items())
        how = "decided early, robustness bound" if d.early else "robustness"
        msg.message = (
            f"{VERDICT_NAMES[d.verdict]}: {how} {format_robustness(d.robustness)}; "
            f"deciding sample t={d.decided_by_s:.3f} {sample}"
        )
        return msg

    def _publish_changes(self, w: SpecWatch) -> None:
        changes = w.take_changes()
        for d in changes:
            self._pub.publish(self._verdict_msg(w, d))
        if changes:
            self._diagnostics.level_changed("specs", self._specs_health().level)

    def _repeat_verdicts(self) -> None:
        for w in self._watches:
            self._pub.publish(self._verdict_msg(w, w.last))

    def _publish_pattern(self, p: PatternLine, distance: float, start: int, end: int, t: int) -> None:
        msg = TemporalVerdict()
        msg.header.stamp = Time(nanoseconds=t).to_msg()
        msg.evaluated_stamp = self.get_clock().now().to_msg()
        msg.monitor, msg.kind, msg.formula, msg.topics = p.name, "pattern", p.signal.name, [p.signal.topic]
        msg.verdict, msg.robustness, msg.value = SATISFIED, p.threshold - distance, distance
        msg.message = f"match at samples {start}..{end}, DTW distance {distance:.4g} (limit {p.threshold:g})"
        self._pattern_matches[p.name] = Decision(p.name, SATISFIED, distance, t, t)
        self._match_counts[p.name] = self._match_counts.get(p.name, 0) + 1
        self._pub.publish(msg)

    def _chaos(self) -> None:
        try:
            n = len(self._chaos_values)
            if self._chaos_getter is None or n < self.params["chaos_window"]:
                self._chaos_result = (
                    f"{n} of {self.params['chaos_window']} samples of {self.params['chaos_signal']}"
                )
                return
            x = np.fromiter(self._chaos_values, dtype=np.float64, count=n)
            stamps = np.fromiter(self._chaos_stamps, dtype=np.int64, count=n)
            period = float(np.median(np.diff(stamps))) * 1e-9 if n > 1 else 1.0
            v = chaos_test(x, sample_period_s=period if period > 0 else 1.0)
            self._chaos_flag, self._chaos_result = v.chaotic, v.reason
            msg = TemporalVerdict()
            msg.header.stamp = Time(nanoseconds=int(stamps[-1])).to_msg()
            msg.evaluated_stamp = self.get_clock().now().to_msg()
            msg.monitor, msg.kind, msg.formula = "chaos", "chaos", self.params["chaos_signal"]
            msg.topics = [self._chaos_topic]
            msg.verdict = VIOLATED if v.chaotic else SATISFIED
            msg.robustness, msg.value, msg.message = -v.exponent_per_s, v.exponent_per_s, v.reason
            self._pub.publish(msg)
        except Exception as exc:
            self._callback_errors += 1
            self._chaos_result = f"chaos test failed: {exc!r}"
            self.get_logger().error(self._chaos_result, throttle_duration_sec=10.0)

    # ---- service ----------------------------------------------------------------------------------

    def _serve_check_trace(self) -> None:
        """CheckTrace on its own node, executor and thread: a long request shares the CPU (and the
        GIL) with the monitoring thread but never holds its executor, so the input tick keeps time."""
        self._service_node = self._helper_node("check_trace")
        self._service = self._service_node.create_service(
            CheckTrace, "krystal/check_trace", self._check_trace
        )
        self._service_executor = SingleThreadedExecutor(context=self.context)
        self._service_executor.add_node(self._service_node)
        self._service_thread = threading.Thread(
            target=self._service_spin, name=f"{self.get_name()}_check_trace", daemon=True
        )
        self._service_thread.start()

    def _service_spin(self) -> None:
        try:
            self._service_executor.spin()
        except Exception as exc:  # shutdown while waiting: the thread ends
            if self.context.ok():
                self.get_logger().error(f"check_trace thread stopped: {exc!r}")

    def _check_trace(self, request: Any, response: Any) -> Any:
        response.first_violation_ns = -1
        try:
            names = list(request.signals)
            n = len(request.times_ns) or len(request.times_s)
            if n * max(1, len(names)) > MAX_TRACE_CELLS:
                raise ValueError(
                    f"too large: {n} samples x {len(names)} signals;"
                    f" at most {MAX_TRACE_CELLS} values per request"
                )
            if request.spec:
                formula = parse(request.spec)
            else:
                found = [w for w in self._watches if w.spec.name == request.monitor]
                if not found:
                    raise ValueError(f"no spec named {request.monitor!r}")
                formula = found[0].spec.formula
            if len(request.times_ns):
                times = [int(t) for t in request.times_ns]
            else:
                times = [to_ns(float(t)) for t in request.times_s]
            values = list(request.values)
            if len(values) != len(times) * len(names):
                raise ValueError(f"values has {len(values)} numbers, expected {len(times)} x {len(names)}")
            k = len(names)
            rows = [values[i * k : (i + 1) * k] for i in range(len(times))]
            result = check_trace(formula, names, times, rows)
            response.ok, response.verdict, response.robustness = result.ok, result.verdict, result.robustness
            response.first_violation_s, response.message = result.first_violation_s, result.message
            if result.first_violation_ns is not None:
                response.first_violation_ns = result.first_violation_ns
        except (ValueError, OverflowError, SpecError) as exc:
            response.ok, response.verdict, response.robustness = False, UNKNOWN, math.nan
            response.first_violation_s, response.message = math.nan, str(exc)
        return response

    # ---- health -----------------------------------------------------------------------------------

    def _inputs_health(self) -> Health:
        wanted = self._wanted_topics()
        missing = [t for t in wanted if t not in self._subs]
        now = time.monotonic()
        stale = [t for t in self._subs if now - self._last_seen.get(t, now) > self.params["stale_after_s"]]
        values = {t: self._types.get(t, "not seen") for t in wanted}
        values["callback_errors"] = str(self._callback_errors)
        values["whole_message_decodes"] = str(self._full_decodes)
        if self._type_errors:
            return Health(ERROR, "cannot import " + "; ".join(self._type_errors.values()), values)
        if missing:
            return Health(OK, f"waiting for {', '.join(missing)} to appear", values)
        if stale:
            return Health(
                WARN, f"no message for {self.params['stale_after_s']} s on {', '.join(stale)}", values
            )
        return Health(OK, f"{len(wanted)} topics", values)

    def _patterns_health(self) -> Health:
        values: dict[str, str] = {}
        for p, _, _ in self._patterns:
            source = f"cut from {p.cut.text}" if p.cut is not None else "values in config"
            last = self._pattern_matches.get(p.name)
            seen = f", last at t={last.time_s:.3f} (distance {last.robustness:.4g})" if last else ""
            values[p.name] = (
                f"{len(p.values)} samples of {p.signal.name} ({source}); "
                f"{self._match_counts.get(p.name, 0)} matches{seen}"
            )
        if self._pattern_errors:
            return Health(ERROR, "; ".join(self._pattern_errors), values)
        return Health(OK, f"{len(self._patterns)} patterns", values)

    def _specs_health(self) -> Health:
        values: dict[str, str] = {}
        violated = []
        for w in self._watches:
            d = w.last
            state = VERDICT_NAMES[d.verdict] if d is not None else "unknown"
            values[w.spec.name] = (
                f"{state}; {w.decided} decided, {w.violations} violated, "
                f"{w.late} late, {w.bad_messages} unreadable"
            )
            if d is not None and d.verdict == VIOLATED:
                sample = ", ".join(f"{k}={v:.6g}" for k, v in d.sample.items())
                violated.append(
                    f"{w.spec.name} violated at t={d.time_s:.3f} (robustness {d.robustness:.4g}), "
                    f"decided by the sample at t={d.decided_by_s:.3f}: {sample}"
                )
            if w.last_error:
                values[f"{w.spec.name}.error"] = w.last_error
        if self._spec_errors:
            return Health(ERROR, "; ".join(self._spec_errors), values)
        if violated:
            level = ERROR if self.params["violation_level"] == "error" else WARN
            return Health(level, "; ".join(violated), values)
        return Health(OK, f"{len(self._watches)} specs hold or wait for data", values)
