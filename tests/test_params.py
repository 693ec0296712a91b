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
from tests.conftest import spin_until
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
        assert spin_until([*nodes, client_node], client.service_is_ready, 5.0)
        future = client.call_async(SetParameters.Request(parameters=[p.to_parameter_msg() for p in params]))
        assert spin_until([*nodes, client_node], future.done, 5.0)
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
