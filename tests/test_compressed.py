"""image_transport's compressed transport: video_source publishes `<image>/compressed` as the plugin
does, ascii_renderer reads it (decoded at the size its grid needs), bad messages never crash it."""

from __future__ import annotations

import io
import time

import cv2
import numpy as np
import pytest
from bench.scenes import synthetic
from diagnostic_msgs.msg import DiagnosticStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage

from krystal.ascii.node import AsciiRendererNode
from krystal.graph import compressed_topic, stream, transport_topic
from krystal.ros.compressed import CompressedFormatError, decode, encode, parse_format, reduction_for
from krystal.ros.qos import sensor_qos
from krystal.ros.streams import declared_qos, stream_qos
from krystal.video.node import VideoSourceNode
from tests.conftest import spin_until
from tests.test_nodes import Probe

FRAME = cv2.resize(synthetic(), (640, 360), interpolation=cv2.INTER_AREA)
TOPIC = "camera/image_raw/compressed"


def test_the_compressed_stream_is_derived_from_the_image_stream() -> None:
    raw, packed = stream("camera/image_raw"), stream(TOPIC)
    assert compressed_topic("camera/image_raw") == TOPIC == transport_topic("camera/image_raw", "compressed")
    assert packed.msg_type == "sensor_msgs/msg/CompressedImage"
    assert (packed.publisher, packed.rate_hz, packed.deadline_s) == (
        raw.publisher,
        raw.rate_hz,
        raw.deadline_s,
    )
    assert declared_qos("/robot/" + TOPIC, sensor_qos()).deadline == stream_qos(TOPIC, sensor_qos()).deadline
    with pytest.raises(KeyError):
        stream("audio/features/compressed")  # not an image stream
    with pytest.raises(ValueError):
        transport_topic("camera/image_raw", "theora")


@pytest.mark.parametrize(
    ("encoding", "fmt", "channels"),
    [
        ("bgr8", "bgr8; jpeg compressed bgr8", 3),
        ("rgb8", "rgb8; jpeg compressed bgr8", 3),
        ("mono8", "mono8; jpeg compressed mono8", 1),
    ],
)
def test_format_and_pixels_as_the_plugin_writes_them(encoding: str, fmt: str, channels: int) -> None:
    """The format string of compressed_image_transport; Pillow (an independent decoder) reads it."""
    pixels = {
        "bgr8": FRAME,
        "rgb8": FRAME[..., ::-1].copy(),
        "mono8": cv2.cvtColor(FRAME, cv2.COLOR_BGR2GRAY),
    }[encoding]
    got_fmt, data = encode(pixels, encoding, quality=90)
    assert got_fmt == fmt and parse_format(got_fmt) == (encoding, "jpeg")
    pil = np.asarray(PILImage.open(io.BytesIO(data)))
    assert pil.shape[:2] == FRAME.shape[:2]
    expected_rgb = cv2.cvtColor(FRAME, cv2.COLOR_BGR2RGB) if channels == 3 else pixels
    assert np.abs(pil.astype(int) - expected_rgb.astype(int)).mean() < 4.0  # JPEG at 90: close
    ours, decoded_encoding = decode(got_fmt, data)
    assert decoded_encoding == ("bgr8" if channels == 3 else "mono8")
    assert ours.shape == (pixels.shape if channels == 1 else FRAME.shape)


def test_reduced_decode_is_the_size_the_grid_needs() -> None:
    _, data = encode(FRAME, "bgr8")
    small, _ = decode("bgr8; jpeg compressed bgr8", data, reduce=4)
    assert small.shape == (90, 160, 3)
    assert reduction_for(1920, 1080, 240, 180) == 4  # 120x45 cells at 2x4 samples
    assert reduction_for(640, 360, 240, 180) == 2
    assert reduction_for(320, 200, 240, 180) == 1
    assert decode("jpeg", data)[0].shape == FRAME.shape  # a bare format (older publishers)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["bgr8; jpeg compressed bgr8", "png", "jpeg", "rgb8; theora", "", "x;y"]),
       data=st.binary(max_size=600), cut=st.integers(0, 5000))  # fmt: skip
def test_decode_refuses_garbage_with_a_reason(fmt: str, data: bytes, cut: int) -> None:
    """Random bytes, and truncated or corrupted real JPEGs: a CompressedFormatError or an image."""
    _, real = encode(FRAME[:64, :64], "bgr8")
    for blob in (data, real[:cut], real[:20] + data + real[20 + len(data) :]):
        try:
            pixels, _ = decode(fmt, blob)
        except CompressedFormatError as exc:
            assert str(exc)
        else:
            assert pixels.size > 0


def test_video_source_publishes_compressed_frames(ros) -> None:
    video = VideoSourceNode(
        parameter_overrides=[
            Parameter("compressed", value=True),
            Parameter("jpeg_quality", value=70),
            Parameter("width", value=320),
            Parameter("height", value=240),
        ]
    )
    probe = Probe()
    got: list[CompressedImage] = []
    probe.node.create_subscription(CompressedImage, TOPIC, got.append, sensor_qos(5))
    nodes = [video, probe.node]
    assert spin_until(nodes, lambda: len(got) >= 3 and len(probe.images) >= 3, 10.0), (
        len(got),
        len(probe.images),
    )
    msg = got[-1]
    assert msg.format == "bgr8; jpeg compressed bgr8"
    assert msg.header.frame_id == "camera_optical_frame"
    assert bytes(msg.data[:3]) == b"\xff\xd8\xff"
    pixels = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    assert pixels.shape == (240, 320, 3)
    # the same frame as the raw image of that stamp, up to JPEG's loss
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in probe.images}
    key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
    if key in stamps:
        raw = np.frombuffer(bytes(stamps[key].data), np.uint8).reshape(240, 320, 3)
        assert np.abs(raw.astype(int) - pixels.astype(int)).mean() < 6.0
    name = "video_source: compressed camera/image_raw"
    assert spin_until(nodes, lambda: int(probe.values(name).get("frames_published", "0")) >= 3, 5.0)
    assert float(probe.values(name)["bytes_per_frame"]) > 0 and probe.level(name) == DiagnosticStatus.OK
    video.destroy_node()


def _renderer(**params: object) -> AsciiRendererNode:
    return AsciiRendererNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_renderer_reads_the_compressed_transport_and_rejects_malformed(ros) -> None:
    renderer = _renderer(image_transport="compressed", input="raw", columns=40, rows=12)
    probe = Probe()
    pub = probe.node.create_publisher(CompressedImage, TOPIC, stream_qos(TOPIC, sensor_qos(1)))
    nodes = [renderer, probe.node]
    fmt, data = encode(FRAME, "bgr8")

    def feed(fmt: str, data: bytes, until, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = CompressedImage(format=fmt)
            msg.header.stamp = Time(nanoseconds=time.time_ns()).to_msg()
            msg.data = data
            pub.publish(msg)
            if spin_until(nodes, until, 0.05):
                return True
        return until()

    assert feed(fmt, data, lambda: len(probe.frames) >= 2)
    assert (probe.frames[-1].columns, probe.frames[-1].rows) == (40, 12)
    # the same frame raw gives (nearly) the same text: JPEG and the reduced decode change little
    assert renderer._source_size == (640, 360)
    # malformed: counted, ERROR on /diagnostics with the reason, and the node renders on afterwards
    assert feed(fmt, data[: len(data) // 3] + b"\x00" * 50, lambda: renderer._undecodable >= 1)
    assert feed("rgb8; theora compressed", data, lambda: renderer._undecodable >= 2)
    assert spin_until(nodes, lambda: probe.level("ascii_renderer: render") == DiagnosticStatus.ERROR, 5.0), (
        probe.message("ascii_renderer: render")
    )
    assert "compressed" in probe.message("ascii_renderer: render")
    probe.frames.clear()
    assert feed(fmt, data, lambda: len(probe.frames) >= 2)
    assert spin_until(nodes, lambda: probe.level("ascii_renderer: render") != DiagnosticStatus.ERROR, 5.0)
    values = probe.values("ascii_renderer: render")
    assert values["image_topic"] == "/" + TOPIC and int(values["frames_undecodable"]) >= 2
    renderer.destroy_node()
