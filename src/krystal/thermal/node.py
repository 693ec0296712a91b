"""thermal_monitor: thermal zones and hwmon sensors to ThermalState, sensor_msgs/Temperature, /diagnostics.

No sensors at all is OK ("no thermal sensors found"), a missing root WARN naming the path; an
unreadable sensor is NaN with its reason and the others go on, an implausibly hot one counts as hot;
new sensors are picked up at the next rescan. docs/thermal.md has every edge.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from sensor_msgs.msg import Temperature
from std_msgs.msg import Header

from krystal.msg import ThermalState
from krystal.ros.compat import PublisherEventCallbacks
from krystal.ros.diagnostics import ERROR, OK, STALE, WARN, Diagnostics, Health
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import overridable, sensor_qos
from krystal.ros.shedding import Shedding, shed_param
from krystal.ros.streams import publish_stream
from krystal.thermal.monitor import Cycle, ThermalMonitor
from krystal.thermal.policy import LEVEL_ERROR, LEVEL_WARN, overrides_problem, parse_overrides

PARAMS = (
    Param("root", "/sys/class", "Folder shaped like /sys/class holding thermal/ and hwmon/"),
    Param("rate_hz", 2.0, "Sensor read and publication rate", 0.1, 100.0),
    Param("rescan_period_s", 5.0, "How often sensors are looked for again (new, removed)", 0.1, 3600.0),
    Param("warn_c", 90.0, "WARN threshold for sensors without their own trip points", -50.0, 250.0),
    Param("error_c", 95.0, "ERROR threshold for sensors without their own trip points", -50.0, 250.0),
    Param(
        "overrides",
        [],
        "Per-sensor thresholds, SENSOR=WARN_C,ERROR_C; SENSOR is the full name "
        "(hwmon1:coretemp/Package id 0) or the part after the colon (coretemp/Package id 0)",
        validate=overrides_problem,
        param_type=Parameter.Type.STRING_ARRAY,
    ),
    Param(
        "penalty_ramp_c",
        15.0,
        "throttle_penalty rises from 0 to 1 over this many °C below throttling",
        0.0,
        100.0,
    ),
    Param("valid_min_c", -60.0, "Readings below this are reported as out of range (NaN)", -273.0, 100.0),
    Param(
        "valid_max_c",
        200.0,
        "Readings above this are implausible: NaN, the sensor counted at its error threshold (fail safe)",
        0.0,
        1000.0,
    ),
    Param(
        "hysteresis_c",
        2.0,
        "A sensor leaves WARN/ERROR only this many °C below the threshold (no flapping at a threshold)",
        0.0,
        50.0,
    ),
    Param("frame_id", "base_link", "frame_id of ThermalState and the per-sensor Temperature messages"),
    Param(
        "publish_temperatures",
        True,
        "Also publish sensor_msgs/Temperature per sensor on thermal/<sensor>, while it has subscribers",
    ),
    shed_param("the sensor read and publication"),
)
_LEVELS: dict[int, bytes] = {0: OK, LEVEL_WARN: WARN, LEVEL_ERROR: ERROR}
_NO_EVENTS = PublisherEventCallbacks(use_default_callbacks=False)
_TRANSIENT = ("vanished", "EAGAIN")  # unreadable for a moment: WARN; anything else is broken: ERROR


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.1f}"


class ThermalMonitorNode(Node):
    def __init__(self, node_name: str = "thermal_monitor", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check, self._on_change)
        p = self.params
        self.monitor = ThermalMonitor(root=p["root"])
        self._configure()
        self._state_pub = publish_stream(
            self, ThermalState, "thermal/state", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._temp_pubs: dict[str, Publisher[Temperature]] = {}
        self._subscribed: dict[str, tuple[bool, float]] = {}  # topic -> (has subscribers, asked at)
        self._last: Cycle | None = None
        self._failures = 0
        self._diagnostics = Diagnostics(self, hardware_id=f"thermal:{p['root']}")
        self._diagnostics.add("sensors", self._summary_health)
        self._sensor_tasks: set[str] = set()
        self._shedding = Shedding(self, "the sensor read and publication")
        self._shedding.timer(lambda: 1.0 / self.params["rate_hz"], self._tick)
        self._tick()

    @staticmethod
    def _cross_check(values: dict[str, Any]) -> str | None:
        if values["warn_c"] > values["error_c"]:
            return "warn_c must not exceed error_c"
        if values["valid_min_c"] >= values["valid_max_c"]:
            return "valid_min_c must be below valid_max_c"
        return None

    def _configure(self) -> None:
        p = self.params
        self.monitor.configure(
            root=p["root"],
            overrides=parse_overrides(p["overrides"]),
            default_warn_c=p["warn_c"],
            default_error_c=p["error_c"],
            ramp_c=p["penalty_ramp_c"],
            rescan_period_s=p["rescan_period_s"],
            valid_min_c=p["valid_min_c"],
            valid_max_c=p["valid_max_c"],
            hysteresis_c=p["hysteresis_c"],
        )

    def _on_change(self, changed: set[str]) -> None:
        self._configure()
        if changed & {"rate_hz", "shed_factor"}:
            self._shedding.retime()

    def _tick(self) -> None:
        try:
            cycle = self.monitor.cycle()
        except Exception as exc:  # the core never raises on bad files; this is a bug, not a crash
            self._failures += 1
            self.get_logger().error(f"thermal cycle failed: {exc!r}", throttle_duration_sec=10.0)
            return
        for name in cycle.appeared:
            if self._last is not None:
                self.get_logger().info(f"new thermal sensor {name}")
        for name in cycle.removed:
            self.get_logger().warning(f"thermal sensor {name} is gone")
        self._last = cycle
        self._publish(cycle)
        for spec in cycle.specs:
            if spec.name not in self._sensor_tasks:
                self._sensor_tasks.add(spec.name)
                self._diagnostics.add(spec.name, self._sensor_task(spec.name))
        for i, spec in enumerate(cycle.specs):
            self._diagnostics.level_changed(spec.name, self._sensor_level(cycle, i))

    def _publish(self, cycle: Cycle) -> None:
        s = cycle.summary
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.params["frame_id"])
        msg = ThermalState(
            header=header,
            sensor_names=list(s.names),
            temperatures_c=list(s.temperatures_c),
            critical_c=list(s.critical_c),
            max_temperature_c=s.max_temperature_c,
            hottest_sensor=s.hottest_sensor,
            headroom_c=s.headroom_c,
            throttle_penalty=s.throttle_penalty,
            throttling=s.throttling,
        )
        self._state_pub.publish(msg)
        if not self.params["publish_temperatures"]:
            return
        for spec, reading in zip(cycle.specs, cycle.readings, strict=True):
            pub = self._temp_pubs.get(spec.topic)
            if pub is None:
                # no QoS event handlers: 2 per publisher would join the executor's wait set every spin
                pub = self.create_publisher(
                    Temperature,
                    f"thermal/{spec.topic}",
                    sensor_qos(depth=1),
                    event_callbacks=_NO_EVENTS,
                )
                self._temp_pubs[spec.topic] = pub
            if self._listened(spec.topic, pub):
                pub.publish(Temperature(header=header, temperature=reading.temperature_c, variance=0.0))

    def _listened(self, topic: str, pub: Publisher[Temperature]) -> bool:
        """Whether `topic` has subscribers, asked once a second: 32 sensors at 10 Hz cost ~1 % of a
        core when published for nobody, and asking every cycle costs a fifth of that."""
        now = time.monotonic()
        known = self._subscribed.get(topic)
        if known is None or now - known[1] >= 1.0:
            known = (pub.get_subscription_count() > 0, now)
            self._subscribed[topic] = known
        return known[0]

    @staticmethod
    def _sensor_level(cycle: Cycle, i: int) -> bytes:
        """The level _sensor_health gives, without building its values (runs every cycle)."""
        error = cycle.readings[i].error
        if error:
            return _LEVELS[LEVEL_WARN if error.startswith(_TRANSIENT) else LEVEL_ERROR]
        return _LEVELS[cycle.summary.levels[i]]

    def _sensor_task(self, name: str) -> Callable[[], Health]:
        return lambda: self._sensor_health(name)

    def _sensor_health(self, name: str) -> Health:
        cycle = self._last
        if cycle is None or name not in cycle.summary.names:
            return Health(STALE, "sensor removed (no longer found by the rescan)")
        i = cycle.summary.names.index(name)
        spec, reading, th = cycle.specs[i], cycle.readings[i], cycle.limits[i]
        values = {
            "temperature_c": _fmt(reading.temperature_c),
            "warn_c": _fmt(th.warn_c),
            "error_c": _fmt(th.error_c),
            "throttle_c": _fmt(th.throttle_c),
            "thresholds_from": th.origin,
            "file": spec.path,
            "topic": f"thermal/{spec.topic}",
        }
        lvl = self._sensor_level(cycle, i)
        if reading.error:
            values["error"] = reading.error
            return Health(lvl, f"unreadable: {reading.error}", values)
        text = f"{reading.temperature_c:.1f} °C"
        if lvl == ERROR:
            text += f" at or above error {th.error_c:.1f} °C"
        elif lvl == WARN:
            text += f" at or above warn {th.warn_c:.1f} °C"
        return Health(lvl, text, values)

    def _summary_health(self) -> Health:
        cycle = self._last
        if cycle is None:
            return Health(WARN, "starting")
        s = cycle.summary
        kernel = s.kernel_throttling
        gone = len(self._sensor_tasks - set(s.names))  # removed sensors, STALE in their own tasks
        values = {
            "root": self.monitor.root,
            "sensors": str(len(s.names)),
            "unreadable": str(s.unreadable),
            "gone": str(gone),
            "max_temperature_c": _fmt(s.max_temperature_c),
            "hottest_sensor": s.hottest_sensor,
            "headroom_c": _fmt(s.headroom_c),
            "throttle_penalty": f"{s.throttle_penalty:.3f}",
            "throttling": str(s.throttling).lower(),
            "kernel_throttling": "unknown" if kernel is None else str(kernel).lower(),
        }
        if cycle.root_missing:
            return Health(WARN, f"root {self.monitor.root} does not exist: no sensors can be read", values)
        levels = [self._sensor_level(cycle, i) for i in range(len(s.names))]
        worst = max([*levels, *([WARN] if gone else [])], default=OK)
        if not s.names:
            return Health(worst, "no thermal sensors found" + (f", {gone} gone" if gone else ""), values)
        text = f"{len(s.names)} sensors"
        if s.unreadable:
            text += f", {s.unreadable} unreadable"
        if gone:
            text += f", {gone} gone"
        text += f", hottest {s.hottest_sensor or 'none'} {_fmt(s.max_temperature_c)} °C"
        if s.throttling:
            text += ", throttling"
        return Health(worst, text, values)
