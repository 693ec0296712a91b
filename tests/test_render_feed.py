"""The render feed (issue 29): video_source scales each frame once, on its capture thread, to what
the renderer needs and publishes it on camera/image_render; the renderer takes it with `input:
render`; the full frame is not even converted while nobody subscribes to it; the reasoning node's
source actuators (StyleDecision source_width_px, source_fps) move it at run time."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from krystal.msg import AsciiFrame, StyleDecision
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from krystal.graph import stream
from krystal.ros.image import image_to_array
from krystal.ros.qos import latched_qos, sensor_qos
from krystal.video.pattern import TestPattern
from krystal.video.reconnect import Frame, Session
from krystal.video.sources import PatternSource, render_copy
from tests.conftest import spin_until
from tests.test_nodes import _renderer, _video

# -- core ------------------------------------------------------------------------------------------


def test_render_copy_keeps_the_published_aspect_and_never_upscales() -> None:
    frame = TestPattern(1920, 1080).frame(3)
    assert render_copy(frame, 0, 0, 0) is None  # off
    assert render_copy(frame, 480, 0, 0).shape == (270, 480, 3)
    assert render_copy(frame, 640, 0, 0).shape == (360, 640, 3)  # a fractional last step
    assert render_copy(frame, 320, 640, 480).shape == (240, 320, 3)  # the published image's aspect
    assert render_copy(frame, 4000, 0, 0).shape == (1080, 1920, 3)  # never upscaled
    grey = np.full((100, 200), 77, np.uint8)
    assert render_copy(grey, 50, 0, 0).shape == (25, 50, 3)  # bgr8 like the full frame
    with pytest.raises(ValueError):
        render_copy(np.zeros((10, 10, 3), np.float32), 5, 0, 0)


def test_render_copy_is_an_area_average_of_the_frame() -> None:
    """Within a grey level or two of one INTER_AREA resize (the reference), at 4x and at 3x."""
    import cv2

    frame = TestPattern(1920, 1080).frame(10)
    for width in (480, 640):
        height = round(width * 1080 / 1920)
        reference = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA).astype(int)
        ours = render_copy(frame, width, 0, 0).astype(int)
        assert np.abs(ours - reference).mean() < 2.0


def _first_frame(session: Session, woke: threading.Event, timeout_s: float = 10.0) -> Frame | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        woke.wait(0.2)
        woke.clear()
        frames = [e for e in session.take() if isinstance(e, Frame)]
        if frames:
            return frames[0]
    return None


def test_the_session_scales_on_its_capture_thread() -> None:
    threads: list[str] = []

    def derive(pixels: np.ndarray) -> np.ndarray | None:
        threads.append(threading.current_thread().name)
        return render_copy(pixels, 64, 0, 0)

    woke = threading.Event()
    session = Session(PatternSource(320, 240, 30.0), woke.set, lambda: 1 / 30, derive=derive)
    session.start()
    try:
        frame = _first_frame(session, woke)
        assert frame is not None, "no frame"
        assert frame.render is not None and frame.render.shape == (48, 64, 3)
        assert frame.pixels.shape == (240, 320, 3)
        assert threads and set(threads) == {session.thread.name}
    finally:
        session.stop.set()
        session.thread.join(2.0)


def test_a_failing_derive_leaves_the_full_frame() -> None:
    def derive(pixels: np.ndarray) -> np.ndarray | None:
        raise ValueError("bad")

    woke = threading.Event()
    session = Session(PatternSource(64, 48, 30.0), woke.set, lambda: 1 / 30, derive=derive)
    session.start()
    try:
        frame = _first_frame(session, woke)
        assert frame is not None and frame.render is None and session.thread.is_alive()
    finally:
        session.stop.set()
        session.thread.join(2.0)


def test_the_render_feed_is_a_declared_stream() -> None:
    s = stream("camera/image_render")
    assert (s.msg_type, s.publisher, s.rate_param) == ("sensor_msgs/msg/Image", "video_source", "fps")


# -- nodes -----------------------------------------------------------------------------------------


class FeedProbe:
    def __init__(self, raw: bool) -> None:
        self.node = rclpy.create_node("feed_probe")
        self.render: list[Image] = []
        self.raw: list[Image] = []
        self.frames: list[AsciiFrame] = []
        self.node.create_subscription(Image, "camera/image_render", self.render.append, sensor_qos(5))
        if raw:
            self.node.create_subscription(Image, "camera/image_raw", self.raw.append, sensor_qos(5))
        self.node.create_subscription(AsciiFrame, "krystal/ascii", self.frames.append, sensor_qos(5))
        self.style = self.node.create_publisher(StyleDecision, "krystal/style", latched_qos())


def test_renderer_takes_the_render_feed_and_the_full_frame_is_not_sent(ros) -> None:
    video = _video(width=640, height=480, fps=30.0, render_width=160)
    renderer = _renderer(columns=40, rows=12, input="render")
    probe = FeedProbe(raw=False)
    nodes = [video, renderer, probe.node]
    try:
        assert spin_until(nodes, lambda: len(probe.frames) >= 5 and len(probe.render) >= 5, 15.0)
        assert renderer.input_topic == "camera/image_render"
        img = probe.render[-1]
        assert (img.width, img.height, img.encoding) == (160, 120, "bgr8")
        assert float(image_to_array(img).std()) > 20  # the pattern, scaled
        stamps = {(i.header.stamp.sec, i.header.stamp.nanosec) for i in probe.render}
        assert any((f.header.stamp.sec, f.header.stamp.nanosec) in stamps for f in probe.frames)
        # nobody subscribes to camera/image_raw: those frames were not converted at all
        assert video._raw_skipped > 0
        assert video._pub.get_subscription_count() == 0
    finally:
        video.destroy_node()
        renderer.destroy_node()


def test_full_frames_still_flow_to_their_subscribers(ros) -> None:
    video = _video(width=320, height=240, fps=30.0, render_width=80)
    probe = FeedProbe(raw=True)
    nodes = [video, probe.node]
    try:
        assert spin_until(nodes, lambda: len(probe.raw) >= 3 and len(probe.render) >= 3, 15.0)
        assert (probe.raw[-1].width, probe.raw[-1].height) == (320, 240)
        assert (probe.render[-1].width, probe.render[-1].height) == (80, 60)
    finally:
        video.destroy_node()


def test_style_decisions_drive_the_source_actuators_within_bounds(ros) -> None:
    video = _video(width=640, height=480, fps=30.0, render_width=320)
    probe = FeedProbe(raw=False)
    nodes = [video, probe.node]
    try:
        assert spin_until(nodes, lambda: len(probe.render) >= 2, 15.0)
        probe.style.publish(StyleDecision(decision_id=1, mode="ramp", source_width_px=128, source_fps=15.0))
        assert spin_until(nodes, lambda: video.params["render_width"] == 128, 5.0)
        assert video.params["fps"] == 15.0
        probe.render.clear()
        assert spin_until(nodes, lambda: len(probe.render) >= 2, 5.0)
        assert (probe.render[-1].width, probe.render[-1].height) == (128, 96)
        # out of the node's bounds: refused as a whole, the feed keeps its size
        probe.style.publish(
            StyleDecision(decision_id=2, mode="ramp", source_width_px=100000, source_fps=30.0)
        )
        spin_until(nodes, lambda: False, 0.5)
        assert video.params["render_width"] == 128 and video.params["fps"] == 15.0
        # follow_style off: decisions are not applied
        video.set_parameters([Parameter("follow_style", value=False)])
        probe.style.publish(StyleDecision(decision_id=3, mode="ramp", source_width_px=200, source_fps=30.0))
        spin_until(nodes, lambda: False, 0.5)
        assert video.params["render_width"] == 128
    finally:
        video.destroy_node()


def test_a_feed_that_is_off_is_not_turned_on_by_a_decision(ros) -> None:
    video = _video(width=320, height=240, fps=30.0, render_width=0)
    probe = FeedProbe(raw=True)
    nodes = [video, probe.node]
    try:
        assert spin_until(nodes, lambda: len(probe.raw) >= 2, 15.0)
        probe.style.publish(StyleDecision(decision_id=1, mode="ramp", source_width_px=160))
        spin_until(nodes, lambda: False, 0.5)
        assert video.params["render_width"] == 0 and not probe.render
    finally:
        video.destroy_node()
