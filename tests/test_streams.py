"""QoS deadlines of the rated streams (graph.STREAMS) on real DDS: the graph's publishers and
subscriptions match, a stalled publisher shows as deadline misses on /diagnostics, and a publisher
that offers no deadline is named (and can be let in with a qos_overrides parameter)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from krystal.ascii.node import AsciiRendererNode
from krystal.audio.node import AudioSourceNode
from krystal.gpu.node import GpuTelemetryNode
from krystal.graph import STREAMS, stream
from krystal.reasoning.node import ReasoningNode
from krystal.ros.diagnostics import WARN
from krystal.ros.image import array_to_image
from krystal.ros.qos import sensor_qos
from krystal.ros.streams import StreamCounter, watch_of
from krystal.sched.executor import DeadlineExecutor
from krystal.thermal.node import ThermalMonitorNode
from krystal.video.node import VideoSourceNode
from tests.conftest import scaled, spin_until
from tests.test_nodes import Probe

STREAM = "ascii_renderer: streams"


def _counter(node: rclpy.node.Node, side: str, topic: str) -> StreamCounter:
    return next(c for c in watch_of(node).counters if c.side == side and c.topic == "/" + topic)


def _spin(executor: DeadlineExecutor, until, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if until():
            return True
        executor.spin_once(timeout_sec=0.05)
    return until()


def test_graph_streams_match_and_a_stalled_publisher_counts_misses(ros, tmp_path) -> None:
    video = VideoSourceNode(parameter_overrides=[Parameter("width", value=64), Parameter("height", value=48)])
    renderer = AsciiRendererNode(
        parameter_overrides=[
            Parameter("columns", value=16),
            Parameter("rows", value=4),
            Parameter("input", value="raw"),
        ]
    )
    audio = AudioSourceNode()
    thermal = ThermalMonitorNode()
    gpu = GpuTelemetryNode(parameter_overrides=[Parameter("vulkan", value=False)])
    reasoning = ReasoningNode(parameter_overrides=[Parameter("log_path", value=str(tmp_path / "d.jsonl"))])
    probe = Probe()
    publishers = [video, renderer, audio, thermal, gpu]
    nodes = [*publishers, reasoning, probe.node]
    executor = DeadlineExecutor()
    for n in nodes:
        executor.add_node(n)
    subscribed = {
        renderer: ("camera/image_raw", "audio/features"),
        reasoning: ("gpu/telemetry", "thermal/state", "audio/features", "krystal/render_stats"),
    }
    try:

        def all_flowing() -> bool:
            return len(probe.frames) >= 3 and len(probe.stats) >= 2 and reasoning.published >= 1

        assert _spin(executor, all_flowing, 30.0), (len(probe.frames), len(probe.stats))
        # every declared stream: one publisher offering the declared deadline, requested as much
        for s in STREAMS:
            offered = probe.node.get_publishers_info_by_topic("/" + s.topic)
            requested = probe.node.get_subscriptions_info_by_topic("/" + s.topic)
            ours = [i for i in offered if i.node_name == s.publisher]
            assert ours and all(i.qos_profile.deadline.nanoseconds == int(s.deadline_s * 1e9) for i in ours)
            for i in requested:
                d = i.qos_profile.deadline.nanoseconds
                assert d == 0 or d >= int(s.deadline_s * 1e9), (s.topic, i.node_name, d)
        for node, topics in subscribed.items():
            for topic in topics:
                c = _counter(node, "subscription", topic)
                assert c.incompatible == 0 and c.deadline_ms == stream(topic).deadline_s * 1e3
        assert all(c.incompatible == 0 for n in publishers for c in watch_of(n).counters)
        assert all(c.incompatible == 0 for c in watch_of(reasoning).counters)
        image = _counter(renderer, "subscription", "camera/image_raw")
        missed_while_flowing = image.missed

        # the camera stalls: the node stays (its writer too) but publishes nothing more
        executor.remove_node(video)
        deadline_s = stream("camera/image_raw").deadline_s

        def missed_and_reported() -> bool:
            values = probe.values(STREAM)
            return image.missed >= missed_while_flowing + 3 and int(values.get("deadline_misses", "0")) >= 3

        assert _spin(executor, missed_and_reported, 10.0 + 10 * deadline_s), image.missed
        assert any(
            s.name == STREAM and s.level == WARN and "camera/image_raw" in s.message for s in probe.history
        )
        assert "missed=" in probe.values(STREAM)["subscription /camera/image_raw"]
    finally:
        executor.shutdown(timeout_sec=1.0)
        for n in nodes:
            n.destroy_node()


def test_a_publisher_offering_no_deadline_is_named_and_can_be_let_in(ros) -> None:
    """A plain publisher (a third-party camera driver) does not match the renderer's deadline: the
    renderer says so on /diagnostics; `qos_overrides...subscription.deadline: 0` lets it in."""
    probe = Probe()
    plain = probe.node.create_publisher(Image, "camera/image_raw", sensor_qos(1))
    image = array_to_image(np.full((24, 32, 3), 90, np.uint8), "bgr8")
    strict = AsciiRendererNode(
        parameter_overrides=[
            Parameter("columns", value=8),
            Parameter("rows", value=2),
            Parameter("input", value="raw"),
        ]
    )
    try:
        counter = _counter(strict, "subscription", "camera/image_raw")

        def named() -> bool:
            plain.publish(image)
            return "incompatible" in probe.message(STREAM) and "DEADLINE" in probe.message(STREAM)

        assert spin_until([strict, probe.node], named, 15.0), probe.message(STREAM)
        assert counter.incompatible >= 1 and not probe.frames
        assert probe.level(STREAM) == WARN
    finally:
        strict.destroy_node()
    lifted = AsciiRendererNode(
        parameter_overrides=[
            Parameter("columns", value=8),
            Parameter("rows", value=2),
            Parameter("input", value="raw"),
            Parameter("qos_overrides./camera/image_raw.subscription.deadline", value=0),
        ]
    )
    try:

        def rendered() -> bool:
            plain.publish(image)
            return len(probe.frames) >= 2

        assert spin_until([lifted, probe.node], rendered, 15.0)
        assert _counter(lifted, "subscription", "camera/image_raw").incompatible == 0
    finally:
        lifted.destroy_node()
        probe.node.destroy_node()


def test_an_undeclared_topic_is_refused_by_name() -> None:
    with pytest.raises(KeyError, match="camera/image_raw"):
        stream("camera/imag_raw")


def test_a_publisher_set_slower_than_its_deadline_does_not_flap(ros, tmp_path) -> None:
    """thermal_monitor at rate_hz 0.4 (a value its table allows) misses the 1.5 s deadline the graph
    offers for thermal/state on every message, by design: its streams task stays OK instead of
    turning WARN and back every other report."""
    from diagnostic_msgs.msg import DiagnosticArray

    from krystal.ros.qos import reliable_qos

    node = ThermalMonitorNode(
        parameter_overrides=[Parameter("rate_hz", value=0.4), Parameter("root", value=str(tmp_path))]
    )
    probe = rclpy.create_node("streams_probe")
    levels: list[bytes] = []
    name = "thermal_monitor: streams"
    probe.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: levels.extend(s.level for s in m.status if s.name == name),
        reliable_qos(),
    )
    try:
        counter = _counter(node, "publisher", "thermal/state")
        # three messages 2.5 s apart: at least two offered-deadline misses, each reported
        assert spin_until([node, probe], lambda: counter.missed >= 2 and len(levels) >= 6, scaled(10.0))
        assert WARN not in levels, levels
    finally:
        probe.destroy_node()
        node.destroy_node()
