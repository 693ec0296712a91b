"""thermal_monitor on real DDS over real sysfs-shaped folders, in process and as the installed executable."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import rclpy
from bench.sysfs_tree import hwmon_chip, thermal_zone
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from krystal.msg import ThermalState
from rclpy.parameter import Parameter
from sensor_msgs.msg import Temperature

from krystal.ros.qos import reliable_qos, sensor_qos
from krystal.thermal.node import ThermalMonitorNode
from tests.conftest import executable, spin_until

OK, WARN, ERROR, STALE = (
    DiagnosticStatus.OK,
    DiagnosticStatus.WARN,
    DiagnosticStatus.ERROR,
    DiagnosticStatus.STALE,
)


class Listener:
    def __init__(self, name: str = "thermal_probe") -> None:
        self.node = rclpy.create_node(name)
        self.states: list[ThermalState] = []
        self.temps: dict[str, list[float]] = {}
        self.status: dict[str, DiagnosticStatus] = {}
        self.node.create_subscription(ThermalState, "thermal/state", self.states.append, sensor_qos(5))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, reliable_qos())

    def _diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            self.status[s.name] = s

    def listen(self, topic: str) -> None:
        self.temps[topic] = []
        self.node.create_subscription(
            Temperature, topic, lambda m, t=topic: self.temps[t].append(m.temperature), sensor_qos(5)
        )

    def level(self, name: str) -> bytes | None:
        s = self.status.get(name)
        return s.level if s else None


def _tree(root: Path) -> Path:
    thermal_zone(root, 0, "x86_pkg_temp", 55000, [("passive", 90000), ("critical", 100000)])
    hwmon_chip(root, 0, "coretemp", [("Package id 0", 50000, 100000, 100000)])
    hwmon_chip(root, 1, "nvme", [("Composite", 38000, None, None)])  # no threshold: 90/95
    hwmon_chip(root, 2, "broken", [("x", "garbage", None, None)])
    return root


def test_states_temperatures_and_levels_per_sensor(ros, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    node = ThermalMonitorNode(
        parameter_overrides=[
            Parameter("root", value=str(root)),
            Parameter("rate_hz", value=10.0),
            Parameter("rescan_period_s", value=0.2),
            Parameter("overrides", value=["nvme/Composite=60,70"]),
            Parameter("frame_id", value="chassis"),
        ]
    )
    probe = Listener()
    probe.listen("thermal/thermal_zone0_x86_pkg_temp")
    probe.listen("thermal/hwmon1_nvme_composite")
    try:
        assert spin_until(
            [node, probe.node],
            lambda: (
                bool(probe.states and probe.temps["thermal/hwmon1_nvme_composite"])
                and probe.level("thermal_monitor: hwmon2:broken/x") is not None
            ),
            20.0,
        )
        s = probe.states[-1]
        assert s.header.frame_id == "chassis"
        assert list(s.sensor_names) == [
            "thermal_zone0:x86_pkg_temp",
            "hwmon0:coretemp/Package id 0",
            "hwmon1:nvme/Composite",
            "hwmon2:broken/x",
        ]
        assert list(s.temperatures_c)[:3] == [55.0, 50.0, 38.0] and math.isnan(s.temperatures_c[3])
        assert list(s.critical_c)[:3] == [100.0, 100.0, 70.0]  # the override gives nvme its own
        assert s.max_temperature_c == 55.0 and s.hottest_sensor == "thermal_zone0:x86_pkg_temp"
        assert s.throttle_penalty == 0.0 and not s.throttling
        assert probe.temps["thermal/thermal_zone0_x86_pkg_temp"][-1] == 55.0
        assert probe.level("thermal_monitor: hwmon1:nvme/Composite") == OK
        broken = probe.status["thermal_monitor: hwmon2:broken/x"]
        assert broken.level == ERROR and "garbage" in broken.message
        # heat it up: zone at its passive trip (WARN, penalty 1), nvme above its override's error
        (root / "thermal/thermal_zone0/temp").write_text("90000\n")
        (root / "hwmon/hwmon1/temp1_input").write_text("75000\n")
        assert spin_until(
            [node, probe.node],
            lambda: (
                probe.level("thermal_monitor: hwmon1:nvme/Composite") == ERROR
                and probe.level("thermal_monitor: thermal_zone0:x86_pkg_temp") == WARN
                and probe.states[-1].throttling
            ),
            20.0,
        )
        assert probe.states[-1].throttle_penalty == 1.0
        assert probe.status["thermal_monitor: sensors"].level == ERROR
        # a sensor vanishes and one appears: picked up by the rescan
        shutil.rmtree(root / "hwmon/hwmon2")
        hwmon_chip(root, 3, "amdgpu", [("edge", 47000, None, 110000)])
        assert spin_until(
            [node, probe.node],
            lambda: (
                "hwmon3:amdgpu/edge" in probe.states[-1].sensor_names
                and "hwmon2:broken/x" not in probe.states[-1].sensor_names
                and probe.level("thermal_monitor: hwmon2:broken/x") == STALE
            ),
            20.0,
        )
    finally:
        probe.node.destroy_node()
        node.destroy_node()


def test_no_sensors_is_ok_with_empty_arrays(ros, tmp_path: Path) -> None:
    node = ThermalMonitorNode(parameter_overrides=[Parameter("root", value=str(tmp_path))])
    probe = Listener()
    try:
        assert spin_until(
            [node, probe.node],
            lambda: bool(probe.states) and probe.level("thermal_monitor: sensors") is not None,
            20.0,
        )
        s = probe.states[-1]
        assert list(s.sensor_names) == [] and list(s.temperatures_c) == [] and list(s.critical_c) == []
        assert math.isnan(s.max_temperature_c) and math.isnan(s.headroom_c) and s.hottest_sensor == ""
        status = probe.status["thermal_monitor: sensors"]
        assert status.level == OK and status.message == "no thermal sensors found"
        result = node.set_parameters([Parameter("overrides", value=["nonsense"])])[0]
        assert not result.successful and "SENSOR=WARN_C,ERROR_C" in result.reason
    finally:
        probe.node.destroy_node()
        node.destroy_node()


def test_installed_executable_publishes(ros, procs, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    proc = procs([executable("thermal_monitor"), "--ros-args", "-p", f"root:={root}", "-p", "rate_hz:=5.0"])
    probe = Listener("thermal_exe_probe")
    try:
        assert spin_until([probe.node], lambda: len(probe.states) >= 2, 30.0), proc.stderr
        assert len(probe.states[-1].sensor_names) == 4
    finally:
        probe.node.destroy_node()
    code, _ = proc.interrupt(10.0)
    assert code == 0, proc.stderr


def test_summary_takes_the_worst_level_and_a_missing_root_warns(ros, tmp_path: Path) -> None:
    """An unreadable sensor in ERROR makes the summary ERROR (it counts it); a root that does not
    exist is WARN naming the path, not OK "no thermal sensors found"."""
    root = _tree(tmp_path / "sys")
    missing = tmp_path / "nonexistent"
    node = ThermalMonitorNode(parameter_overrides=[Parameter("root", value=str(root))])
    other = ThermalMonitorNode(
        "thermal_elsewhere", parameter_overrides=[Parameter("root", value=str(missing))]
    )
    probe = Listener()
    summary, elsewhere = "thermal_monitor: sensors", "thermal_elsewhere: sensors"
    try:
        nodes = [node, other, probe.node]
        assert spin_until(nodes, lambda: summary in probe.status and elsewhere in probe.status, 20.0)
        s = probe.status[summary]
        assert s.level == ERROR and "1 unreadable" in s.message, s
        assert {kv.key: kv.value for kv in s.values}["unreadable"] == "1"
        e = probe.status[elsewhere]
        assert e.level == WARN and str(missing) in e.message and "does not exist" in e.message, e
    finally:
        probe.node.destroy_node()
        other.destroy_node()
        node.destroy_node()
