"""video_source on real DDS: source_type switches at run time, every encoding carries the frame's
pixels, frames wake any executor, stamps follow the node's clock (sim time too), and the renderer
judges frame age on its own clock and says when the stamps look skewed."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from krystal.ros.image import array_to_image, image_to_array
from krystal.ros.qos import sensor_qos
from krystal.ros.stamps import StampAge
from krystal.ros.streams import stream_qos
from tests.conftest import spin_until
from tests.test_nodes import Probe, _renderer, _video

SOURCE = "video_source: source"
BGR = (200, 100, 30)


def _coloured_video(path: Path, frames: int = 60) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (64, 48))
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), BGR, np.uint8))
    writer.release()
    return path


def _new_images(nodes: list, probe: Probe, count: int = 3, timeout_s: float = 10.0) -> None:
    probe.images.clear()
    assert spin_until(nodes, lambda: len(probe.images) >= count, timeout_s), "no images"


def test_source_type_switches_at_run_time(ros, tmp_path: Path) -> None:
    path = _coloured_video(tmp_path / "c.avi")
    video, probe = _video(width=0, height=0, fps=30.0), Probe()
    nodes = [video, probe.node]
    try:
        _new_images(nodes, probe)
        assert (probe.images[-1].width, probe.images[-1].height) == (640, 480)
        assert float(image_to_array(probe.images[-1]).std()) > 30  # the pattern, not a flat field
        ok = video.set_parameters_atomically(
            [Parameter("source_type", value="file"), Parameter("source", value=str(path))]
        )
        assert ok.successful, ok.reason
        spin_until(nodes, lambda: False, 0.2)  # a pattern frame already in flight
        _new_images(nodes, probe)
        assert all((i.width, i.height) == (64, 48) for i in probe.images)
        np.testing.assert_allclose(image_to_array(probe.images[-1]).mean(axis=(0, 1)), BGR, atol=6)
        assert spin_until(
            nodes, lambda: probe.level(SOURCE) == DiagnosticStatus.OK and "file" in probe.message(SOURCE), 5.0
        )
        (back,) = video.set_parameters([Parameter("source_type", value="test_pattern")])
        assert back.successful
        spin_until(nodes, lambda: False, 0.2)
        _new_images(nodes, probe)
        assert (probe.images[-1].width, probe.images[-1].height) == (640, 480)
    finally:
        video.destroy_node()


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("bgr8", BGR), ("rgb8", BGR[::-1]), ("mono8", (0.114 * BGR[0] + 0.587 * BGR[1] + 0.299 * BGR[2],))],
)
def test_every_encoding_carries_the_frame_pixels(ros, tmp_path: Path, encoding: str, expected: tuple) -> None:
    path = _coloured_video(tmp_path / "c.avi")
    video = _video(source_type="file", source=str(path), width=32, height=24, encoding=encoding)
    probe = Probe()
    try:
        _new_images([video, probe.node], probe)
        msg = probe.images[-1]
        channels = len(expected)
        assert (msg.encoding, msg.width, msg.height, msg.step) == (encoding, 32, 24, 32 * channels)
        pixels = image_to_array(msg).reshape(24, 32, channels)
        np.testing.assert_allclose(pixels.mean(axis=(0, 1)), expected, atol=6)
        assert float(pixels.std(axis=(0, 1)).max()) < 4  # a flat field stays flat
    finally:
        video.destroy_node()


def test_frames_wake_a_multithreaded_executor(ros) -> None:
    video, probe = _video(width=160, height=120, fps=30.0), Probe()
    executor = MultiThreadedExecutor(num_threads=3)
    for n in (video, probe.node):
        executor.add_node(n)
    try:
        deadline = time.monotonic() + 10
        while len(probe.images) < 15 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert len(probe.images) >= 15
    finally:
        executor.shutdown(timeout_sec=1.0)
        video.destroy_node()


def _stamp_s(msg_stamp: TimeMsg) -> float:
    return Time.from_msg(msg_stamp).nanoseconds / 1e9


def test_under_sim_time_stamps_are_sim_time_and_frames_flow(ros) -> None:
    """A bag replay's /clock at 1000 s: the source stamps sim time, the renderer keeps the frames
    (measured on the wall clock they were all 'hours old' and dropped)."""
    sim = [Parameter("use_sim_time", value=True)]
    video = _video(width=160, height=120)
    video.set_parameters(sim)
    renderer = _renderer(columns=20, rows=6, max_frame_age_ms=500.0)
    renderer.set_parameters(sim)
    probe = Probe()
    clock_pub = probe.node.create_publisher(Clock, "/clock", 10)
    sim_ns = [1000 * 10**9]

    def tick() -> None:
        sim_ns[0] += 10_000_000
        clock_pub.publish(Clock(clock=Time(nanoseconds=sim_ns[0]).to_msg()))

    probe.node.create_timer(0.01, tick)
    nodes = [video, renderer, probe.node]
    try:
        assert spin_until(nodes, lambda: len(probe.frames) >= 5, 15.0), (len(probe.images), len(probe.frames))
        stamps = [_stamp_s(i.header.stamp) for i in probe.images[-3:]]
        assert all(999.0 < s < 1100.0 for s in stamps), stamps
    finally:
        video.destroy_node()
        renderer.destroy_node()


def test_renderer_reports_skewed_stamps_and_keeps_rendering(ros) -> None:
    """Images stamped an hour in the past (another host's clock): not all dropped as stale, and
    /diagnostics says the stamps look skewed."""
    renderer, probe = _renderer(columns=16, rows=4, max_frame_age_ms=500.0), Probe()
    pub = probe.node.create_publisher(
        Image, "camera/image_raw", stream_qos("camera/image_raw", sensor_qos(1))
    )
    nodes = [renderer, probe.node]
    name = "ascii_renderer: input_stamps"
    image = array_to_image(np.full((24, 32, 3), 128, np.uint8), "bgr8")

    def send() -> None:
        image.header.stamp = Time(nanoseconds=time.time_ns() - 3600 * 10**9).to_msg()
        pub.publish(image)

    probe.node.create_timer(0.02, send)
    try:
        assert spin_until(nodes, lambda: len(probe.frames) >= 5, 15.0), "every skewed frame was dropped"
        assert spin_until(nodes, lambda: probe.level(name) == DiagnosticStatus.WARN, 5.0), probe.status.keys()
        assert "3600" in probe.message(name) and "behind" in probe.message(name)
    finally:
        renderer.destroy_node()


def test_stamp_age_detects_skew_either_way_and_recovers() -> None:
    ms = 1_000_000
    for offset_ns in (3600 * 10**9, -50 * 10**9):
        stamps = StampAge()
        now = 10**18
        ages = [
            stamps.age_ns(now + i * 33 * ms - offset_ns - (i % 3) * ms, now + i * 33 * ms) for i in range(12)
        ]
        assert stamps.skewed and stamps.status().skewed
        assert max(ages[10:]) <= 2 * ms  # measured from the smallest delay once skewed
        assert ("behind" if offset_ns > 0 else "ahead of") in stamps.status().describe()
    ok = StampAge()
    assert [ok.age_ns(10**18 - 5 * ms, 10**18) for _ in range(12)][-1] == 5 * ms
    assert not ok.skewed and "agree" in ok.status().describe()
    stamps.age_ns(10**18, 10**18 + 3 * ms)  # clocks agree again
    assert not stamps.skewed
