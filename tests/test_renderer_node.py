"""ascii_renderer on real DDS: colours, the rendered Image, StyleDecision, audio-driven glitch,
stale frames, and the colour terminal viewer."""

from __future__ import annotations

import io
import time

import cv2
import numpy as np
import rclpy
from bench.scenes import synthetic
from diagnostic_msgs.msg import DiagnosticStatus
from krystal.msg import AsciiFrame, AudioFeatures, StyleDecision
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import Image

from krystal.ascii.engine import Engine, Style
from krystal.ascii.node import AsciiRendererNode, AsciiViewNode
from krystal.ros.image import array_to_image
from krystal.ros.qos import latched_qos, sensor_qos
from krystal.ros.streams import stream_qos
from tests.conftest import spin_until
from tests.test_nodes import Probe

FRAME = cv2.resize(synthetic(), (640, 360), interpolation=cv2.INTER_AREA)


def _renderer(**params: object) -> AsciiRendererNode:
    params = {"input": "raw", **params}  # these tests feed camera/image_raw themselves
    return AsciiRendererNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def _image(stamp_ns: int | None = None) -> Image:
    msg = array_to_image(FRAME, "bgr8")
    msg.header.stamp = Time(nanoseconds=stamp_ns if stamp_ns is not None else time.time_ns()).to_msg()
    msg.header.frame_id = "cam"
    return msg


def _feed(nodes: list, probe: Probe, until, timeout_s: float = 5.0, **image_kw: object) -> bool:
    """Publish the frame every 50 ms until `until()` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe.image_pub.publish(_image(**image_kw))
        if spin_until(nodes, until, 0.05):
            return True
    return until()


def test_colour_frames_and_rendered_image(ros) -> None:
    renderer = _renderer(mode="cyberpunk", columns=32, rows=10, image_rate_hz=30.0)
    probe = Probe()
    images: list[Image] = []
    probe.node.create_subscription(Image, "krystal/ascii/image", images.append, sensor_qos(5))
    nodes = [renderer, probe.node]
    assert _feed(nodes, probe, lambda: len(probe.frames) >= 2 and len(images) >= 1)
    frame = probe.frames[-1]
    assert frame.mode == "cyberpunk" and (frame.columns, frame.rows) == (32, 10)
    assert len(frame.foreground_rgb) == len(frame.background_rgb) == 32 * 10 * 3
    image = images[-1]
    assert (image.width, image.height, image.encoding) == (32 * 8, 10 * 16, "rgb8")
    assert image.header.frame_id == "cam"
    renderer.destroy_node()


def test_style_decisions_apply_on_the_next_frame_and_bad_ones_are_refused(ros) -> None:
    renderer, probe = _renderer(columns=24, rows=8), Probe()
    style_pub = probe.node.create_publisher(StyleDecision, "krystal/style", latched_qos(10))
    nodes = [renderer, probe.node]
    assert _feed(nodes, probe, lambda: bool(probe.frames))
    assert spin_until(nodes, lambda: style_pub.get_subscription_count() > 0, 5.0)
    style_pub.publish(
        StyleDecision(decision_id=7, mode="edges", kernel="luminance", kernel_size=5, policy="rules")
    )
    assert spin_until(nodes, lambda: renderer.engine.style.mode == "edges", 5.0)
    probe.frames.clear()
    assert _feed(nodes, probe, lambda: bool(probe.frames))
    assert probe.frames[0].mode == "edges" and probe.frames[0].kernel_size == 5
    assert renderer.get_parameter("mode").value == "edges"  # visible to rqt / ros2 param
    style_pub.publish(StyleDecision(decision_id=8, mode="vaporwave", kernel="luminance", kernel_size=3))
    name = "ascii_renderer: render"
    assert spin_until(nodes, lambda: "refused style decision 8" in probe.message(name), 5.0)
    assert probe.level(name) == DiagnosticStatus.WARN
    assert renderer.engine.style.mode == "edges"
    renderer.destroy_node()


def test_loud_audio_glitches_and_silence_does_not(ros) -> None:
    renderer, probe = _renderer(mode="glitch", columns=48, rows=14, glitch_level=0.0), Probe()
    audio_pub = probe.node.create_publisher(
        AudioFeatures, "audio/features", stream_qos("audio/features", sensor_qos(5))
    )
    nodes = [renderer, probe.node]
    calm = Engine(Style(mode="edges", columns=48, rows=14)).render(FRAME, "bgr8").lines()
    assert _feed(nodes, probe, lambda: len(probe.frames) >= 3)
    assert list(probe.frames[-1].lines) == calm
    probe.frames.clear()

    def loud_frame() -> bool:
        audio_pub.publish(AudioFeatures(rms_dbfs=-6.0, onset=True, onset_strength=1.0))
        return any(list(f.lines) != calm for f in probe.frames)

    assert _feed(nodes, probe, loud_frame)
    renderer.destroy_node()


def test_frames_older_than_the_limit_are_dropped(ros) -> None:
    renderer, probe = _renderer(columns=16, rows=4, max_frame_age_ms=50.0), Probe()
    nodes = [renderer, probe.node]
    assert spin_until(nodes, lambda: probe.image_pub.get_subscription_count() > 0, 5.0)
    old = time.time_ns() - 2_000_000_000
    for _ in range(5):
        probe.image_pub.publish(_image(stamp_ns=old))
        spin_until(nodes, lambda: False, 0.05)
    assert not probe.frames
    assert spin_until(nodes, lambda: bool(probe.stats) and probe.stats[-1].frames_dropped >= 1, 3.0)
    assert _feed(nodes, probe, lambda: bool(probe.frames))  # fresh frames still render
    renderer.destroy_node()


def test_viewer_draws_colour_frames_in_place(ros) -> None:
    out = io.StringIO()
    viewer = AsciiViewNode(out=out, colors="truecolor")
    pub_node = rclpy.create_node("frame_source")
    pub = pub_node.create_publisher(AsciiFrame, "krystal/ascii", sensor_qos(1))
    render = Engine(Style(mode="cyberpunk", columns=20, rows=4)).render(FRAME, "bgr8")
    msg = AsciiFrame(columns=20, rows=4, lines=render.lines(), mode="cyberpunk", kernel="luminance")
    msg.foreground_rgb = render.foreground.tobytes()
    msg.background_rgb = render.background.tobytes()
    assert spin_until([viewer, pub_node], lambda: pub.get_subscription_count() > 0, 5.0)

    def drawn() -> bool:
        pub.publish(msg)
        return viewer.frames >= 1

    assert spin_until([viewer, pub_node], drawn, 5.0)
    text = out.getvalue()
    assert "\x1b[38;2;" in text and "\x1b[2J" not in text and "cyberpunk/luminance 20x4" in text
    viewer.destroy_node()
    pub_node.destroy_node()
    assert out.getvalue().endswith("\x1b[?25h")


def test_learned_fallback_is_told_on_ros_channels(ros, tmp_path) -> None:
    """RenderStats, AsciiFrame and /diagnostics agree on the kernel used; the reason is on /rosout."""
    from krystal.ascii.learned import DEFAULT_MODEL

    model = tmp_path / "model.npz"
    model.write_bytes(DEFAULT_MODEL.read_bytes())  # valid when the parameter is checked...
    renderer = _renderer(kernel="learned", model_path=str(model), columns=16, rows=4, stats_period_s=0.2)
    model.write_bytes(b"not a weights file")  # ...unusable when the engine loads it on first use
    probe = Probe()
    nodes = [renderer, probe.node]
    assert _feed(nodes, probe, lambda: bool(probe.frames))
    assert probe.frames[-1].kernel == "luminance"
    assert spin_until(nodes, lambda: bool(probe.stats), 3.0)
    assert probe.stats[-1].kernel == "luminance"  # was "learned": the configured, not the used one
    name = "ascii_renderer: render"
    assert _feed(nodes, probe, lambda: "learned kernel unavailable" in probe.message(name))
    assert probe.level(name) == DiagnosticStatus.WARN
    assert "/luminance/" in probe.values(name)["style"]
    assert spin_until(nodes, lambda: any("learned kernel unavailable" in log.msg for log in probe.logs), 3.0)
    renderer.destroy_node()


def test_superseded_frames_are_counted_from_stamp_gaps(ros) -> None:
    """A 20 fps source (stamps 50 ms apart) that skips 4 frames twice: 8 frames superseded."""
    renderer, probe = _renderer(columns=16, rows=4, max_frame_age_ms=0.0), Probe()
    nodes = [renderer, probe.node]
    assert spin_until(nodes, lambda: probe.image_pub.get_subscription_count() > 0, 5.0)
    base = time.time_ns()
    indices = [*range(10), *range(14, 24), *range(28, 38)]  # frames 10-13 and 24-27 never sent
    for sent, i in enumerate(indices, 1):
        probe.image_pub.publish(_image(stamp_ns=base + i * 50_000_000))
        spin_until(nodes, lambda n=sent: len(probe.frames) >= n, 1.0)
    rendered = len(probe.frames)
    assert rendered >= len(indices) - 3
    name = "ascii_renderer: render"
    assert spin_until(nodes, lambda: int(probe.values(name).get("frames_rendered", 0)) >= rendered, 3.0)
    superseded = int(probe.values(name)["frames_superseded"])
    assert 8 <= superseded <= 8 + (len(indices) - rendered), superseded  # a frame lost here counts too
    assert spin_until(nodes, lambda: bool(probe.stats) and probe.stats[-1].frames_dropped >= 8, 3.0)
    renderer.destroy_node()


def test_mono_rendered_image_follows_image_rate_hz(ros) -> None:
    renderer = _renderer(mode="edges", columns=20, rows=5, image_rate_hz=2.0, image_cell_height=8)
    probe = Probe()
    images: list[Image] = []
    probe.node.create_subscription(Image, "krystal/ascii/image", images.append, sensor_qos(5))
    nodes = [renderer, probe.node]
    t0 = time.monotonic()
    assert _feed(nodes, probe, lambda: len(probe.frames) >= 20 and len(images) >= 2, timeout_s=10.0)
    elapsed = time.monotonic() - t0
    image = images[-1]
    assert (image.encoding, image.width, image.height) == ("mono8", 20 * 4, 5 * 8)
    pixels = np.frombuffer(image.data, np.uint8)
    assert pixels.max() > 100 and pixels.min() == 0  # white glyphs on black, the text drawn back
    assert len(images) <= 2.0 * elapsed + 2  # at most image_rate_hz, while frames ran faster
    assert len(probe.frames) > len(images)
    renderer.set_parameters([Parameter("image_rate_hz", value=0.0)])
    spin_until(nodes, lambda: False, 0.3)  # an image published just before the change may be in flight
    count = len(images)
    assert _feed(nodes, probe, lambda: False, timeout_s=1.5) is False
    assert len(images) == count  # 0 disables it
    renderer.destroy_node()
