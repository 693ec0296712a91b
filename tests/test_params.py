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
