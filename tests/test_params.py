"""Parameters: bad values in the file fall back to defaults with a reason; run-time changes are
validated over the real set_parameters service and refused with a reason."""

from __future__ import annotations

from pathlib import Path

import rclpy
import yaml
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.time import Time

from krystal.ascii.node import AsciiRendererNode
from krystal.video.node import VideoSourceNode
from tests.conftest import scaled, spin_until
from tests.test_nodes import Probe


def test_bad_file_values_fall_back_to_defaults(tmp_path: Path) -> None:
    params = tmp_path / "bad.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "/**/video_source": {
                    "ros__parameters": {"fps": 1000.0, "source_type": "laser", "width": "wide", "height": 240}
                }
            }
        )
    )
    rclpy.init(args=["--ros-args", "--params-file", str(params)])
    try:
        node = VideoSourceNode()
        assert node.params["fps"] == 30.0 and node.params["source_type"] == "test_pattern"
        assert node.params["width"] == 640 and node.params["height"] == 240
        assert set(node.params.rejected) == {"fps", "source_type", "width"}
        assert "not one of" in node.params.rejected["source_type"]
        node.destroy_node()
    finally:
        rclpy.try_shutdown()


def _set(node_name: str, nodes: list, *params: Parameter) -> list:
    client_node = rclpy.create_node("param_setter")
    try:
        client = client_node.create_client(SetParameters, f"/{node_name}/set_parameters")
        assert spin_until([*nodes, client_node], client.service_is_ready, scaled(5.0))
        future = client.call_async(SetParameters.Request(parameters=[p.to_parameter_msg() for p in params]))
        assert spin_until([*nodes, client_node], future.done, scaled(5.0))
        return list(future.result().results)
    finally:
        client_node.destroy_node()


def test_run_time_changes_are_validated(ros) -> None:
    video = VideoSourceNode()
    try:
        cases = [
            (Parameter("fps", value=500.0), "fps"),
            (Parameter("source_type", value="laser"), "not one of"),
            (Parameter("source_type", value="file"), "needs a source"),
            (Parameter("encoding", value="bayer_rggb8"), "not one of"),
        ]
        for param, reason in cases:
            (result,) = _set("video_source", [video], param)
            assert not result.successful and reason in result.reason, (param.name, result.reason)
        (ok,) = _set("video_source", [video], Parameter("fps", value=15.0))
        assert ok.successful and video.params["fps"] == 15.0
        assert video.get_parameter("fps").value == 15.0
        # the stored value is not enough: the images must come at the new rate
        probe = Probe()
        nodes = [video, probe.node]
        for fps, low, high in ((5.0, 3.5, 6.5), (25.0, 15.0, 30.0)):
            (ok,) = _set("video_source", nodes, Parameter("fps", value=fps))
            assert ok.successful
            assert spin_until(nodes, lambda: False, 0.3) is False  # frames of the old rate drain
            probe.images.clear()
            assert spin_until(nodes, lambda: len(probe.images) >= 8, 10.0)
            stamps = [Time.from_msg(i.header.stamp).nanoseconds / 1e9 for i in probe.images]
            rate_hz = (len(stamps) - 1) / (stamps[-1] - stamps[0])
            assert low < rate_hz < high, (fps, rate_hz)
        probe.node.destroy_node()
    finally:
        video.destroy_node()


def test_renderer_refuses_bad_charset_and_applies_good_one(ros) -> None:
    node = AsciiRendererNode()
    try:
        (bad,) = _set("ascii_renderer", [node], Parameter("charset", value="x"))
        assert not bad.successful and "at least two" in bad.reason
        (good,) = _set("ascii_renderer", [node], Parameter("charset", value=" #"))
        assert good.successful and node.params["charset"] == " #"
    finally:
        node.destroy_node()


def test_array_parameters_declared_by_type_can_be_read_only(tmp_path: Path) -> None:
    """An empty-list default is declared by type; read-only must still hold, and the value be set."""
    from krystal.devices.node import PARAMS as DEVICE_PARAMS
    from krystal.gateway.node import PARAMS as GATEWAY_PARAMS
    from krystal.ros.params import ParamTable
    from krystal.sched.settings import EXECUTOR_PARAMS

    by_name = {p.name: p for p in (*GATEWAY_PARAMS, *DEVICE_PARAMS, *EXECUTOR_PARAMS)}
    arrays = ["cors_origins", "devices", "executor.cpu_affinity", "executor.topic_budgets_ms"]
    assert all(by_name[n].read_only and by_name[n].param_type is not None for n in arrays)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"/table": {"ros__parameters": {"devices": ["fan0", "gpu0"]}}}))
    rclpy.init(args=["--ros-args", "--params-file", str(params)])
    try:
        node = rclpy.create_node("table")
        table = ParamTable(node, [by_name[n] for n in arrays])
        assert table["devices"] == ["fan0", "gpu0"] and table["cors_origins"] == []
        # the node itself holds the default, not "not set" (what `ros2 param get` shows)
        assert list(node.get_parameter("executor.cpu_affinity").value) == []
        assert list(node.get_parameter("devices").value) == ["fan0", "gpu0"]
        assert all(d.read_only for d in node.describe_parameters(arrays))
        for name, value in (
            ("cors_origins", ["http://x"]),
            ("devices", ["sim1"]),
            ("executor.cpu_affinity", [0]),
        ):
            (result,) = _set("table", [node], Parameter(name, value=value))
            assert not result.successful and "read-only" in result.reason, (name, result.reason)
        assert table["devices"] == ["fan0", "gpu0"] and list(node.get_parameter("cors_origins").value) == []
        node.destroy_node()
    finally:
        rclpy.try_shutdown()


class _Diagnostics:
    """/diagnostics and thermal/state as a user's tools see them."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from krystal.msg import ThermalState

        from krystal.ros.qos import reliable_qos, sensor_qos

        self.node = rclpy.create_node("param_diag_probe")
        self.status: dict[str, object] = {}
        self.states: list[ThermalState] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, reliable_qos())
        self.node.create_subscription(ThermalState, "thermal/state", self.states.append, sensor_qos(20))

    def _diag(self, msg) -> None:
        for s in msg.status:
            self.status[s.name] = s

    def values(self, name: str) -> dict[str, str]:
        status = self.status[name]
        return {kv.key: kv.value for kv in status.values}  # type: ignore[attr-defined]


def test_startup_refusals_named_on_diagnostics_with_their_source(procs, ros, tmp_path: Path) -> None:
    """warn_c > error_c from -p: no traceback, defaults kept, WARN on /diagnostics naming warn_c and
    error_c (not a QoS parameter) and `-p` as the source; a bad file value names the file; an
    integer rate from -p is taken as a double (the node publishes at 10 Hz, not its default 2)."""
    from bench.sysfs_tree import thermal_zone

    from tests.conftest import executable

    thermal_zone(tmp_path / "sys", 0, "x86_pkg_temp", 55000, [("critical", 100000)])
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"/**/thermal_monitor": {"ros__parameters": {"valid_max_c": -5.0}}}))
    proc = procs(
        [
            executable("thermal_monitor"),
            "--ros-args",
            "--params-file",
            str(params),
            "-p",
            "warn_c:=99.0",
            "-p",
            "error_c:=95.0",
            "-p",
            "rate_hz:=10",
            "-p",
            f"root:={tmp_path / 'sys'}",
        ]
    )
    probe = _Diagnostics()
    name = "thermal_monitor: parameters"
    try:
        assert spin_until([probe.node], lambda: name in probe.status and len(probe.states) >= 12, 30.0), (
            proc.popen.poll(),
            proc.stderr,
        )
        assert proc.popen.poll() is None
        status = probe.status[name]
        assert status.level == b"\x01", status  # type: ignore[attr-defined]
        values = probe.values(name)
        assert set(values) == {"warn_c", "error_c", "valid_max_c"}, values
        assert "99.0" in values["warn_c"] and "warn_c must not exceed error_c" in values["warn_c"]
        assert "from command line -p" in values["warn_c"] and "from command line -p" in values["error_c"]
        assert f"from parameters file {params}" in values["valid_max_c"] and "-5.0" in values["valid_max_c"]
        assert "qos" not in str(status)
        stamps = [Time.from_msg(s.header.stamp).nanoseconds / 1e9 for s in probe.states[-10:]]
        assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) > 6.0  # 10 Hz, not the default 2
    finally:
        probe.node.destroy_node()
    code, _ = proc.interrupt(10.0)
    assert code == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_integers_for_doubles_from_a_file_keep_the_file_as_source(tmp_path: Path) -> None:
    from krystal.ros.params import refusals
    from krystal.thermal.node import ThermalMonitorNode

    params = tmp_path / "p.yaml"
    section = {"rate_hz": 5, "penalty_ramp_c": 10, "valid_min_c": 500, "root": str(tmp_path)}
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": section}}))
    rclpy.init(args=["--ros-args", "--params-file", str(params), "-p", "warn_c:=80"])
    try:
        node = ThermalMonitorNode()
        assert node.params["rate_hz"] == 5.0 and node.params["penalty_ramp_c"] == 10.0
        assert node.params["warn_c"] == 80.0 and isinstance(node.get_parameter("warn_c").value, float)
        refused = refusals(node)
        assert set(refused) == {"valid_min_c"} and node.params["valid_min_c"] == -60.0
        assert refused["valid_min_c"].source == f"parameters file {params}"
        assert refused["valid_min_c"].value == 500
        node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_run_time_integer_for_double_and_refusals_on_diagnostics(ros, tmp_path: Path) -> None:
    from krystal.thermal.node import ThermalMonitorNode

    node = ThermalMonitorNode(parameter_overrides=[Parameter("root", value=str(tmp_path))])
    probe = _Diagnostics()
    name = "thermal_monitor: parameters"
    try:
        nodes = [node, probe.node]
        (ok,) = _set("thermal_monitor", nodes, Parameter("rate_hz", value=10))  # INTEGER, as `ros2 param set`
        assert ok.successful, ok.reason
        assert node.params["rate_hz"] == 10.0 and node.get_parameter("rate_hz").value == 10.0
        assert name not in probe.status  # nothing refused yet: no parameters task
        (bad,) = _set("thermal_monitor", nodes, Parameter("warn_c", value=99.0))
        assert not bad.successful and "warn_c must not exceed error_c" in bad.reason
        (bad_range,) = _set("thermal_monitor", nodes, Parameter("rate_hz", value=500))
        assert not bad_range.successful and node.params["rate_hz"] == 10.0
        assert spin_until(
            nodes, lambda: name in probe.status and "rate_hz" in probe.values(name), scaled(5.0)
        )
        values = probe.values(name)
        assert probe.status[name].level == b"\x01"  # type: ignore[attr-defined]
        assert "99.0" in values["warn_c"] and "from run-time set_parameters" in values["warn_c"]
        assert "500" in values["rate_hz"] and "above 100.0" in values["rate_hz"]
        # accepted values clear their refusals
        for param in (Parameter("warn_c", value=92), Parameter("rate_hz", value=4.0)):
            (ok,) = _set("thermal_monitor", nodes, param)
            assert ok.successful, ok.reason
        assert spin_until(nodes, lambda: probe.status[name].level == b"\x00", scaled(5.0))  # type: ignore[attr-defined]
    finally:
        probe.node.destroy_node()
        node.destroy_node()


def test_every_refused_combination_at_start_up_is_put_back(tmp_path: Path) -> None:
    """The cross-check names one problem at a time: with two (warn_c > error_c and valid_min_c >=
    valid_max_c, all from -p) both pairs go back to their defaults, not only the first."""
    from krystal.ros.params import refusals
    from krystal.thermal.node import ThermalMonitorNode

    given = ("warn_c:=99.0", "error_c:=96.0", "valid_min_c:=50.0", "valid_max_c:=40.0", f"root:={tmp_path}")
    rclpy.init(args=["--ros-args", *(a for p in given for a in ("-p", p))])
    try:
        node = ThermalMonitorNode()
        v = node.params.values
        assert (v["warn_c"], v["error_c"], v["valid_min_c"], v["valid_max_c"]) == (90.0, 95.0, -60.0, 200.0)
        assert node.get_parameter("valid_max_c").value == 200.0
        refused = refusals(node)
        assert set(refused) == {"warn_c", "error_c", "valid_min_c", "valid_max_c"}, refused
        assert "valid_min_c must be below valid_max_c" in refused["valid_max_c"].reason
        assert refused["valid_max_c"].source == "command line -p"
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
