"""Fuzz ascii_renderer through its real subscription: any Image message, in any mode and kernel,
is either rendered or counted invalid with the reason on /diagnostics; the node never dies."""

from __future__ import annotations

import array
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from krystal.ascii.engine import COLOR_DEPTHS, KERNELS, MODES
from krystal.ascii.node import AsciiRendererNode
from krystal.ros.encodings import ENCODINGS, layout_problem
from krystal.ros.image import array_to_image
from krystal.ros.qos import sensor_qos
from tests.conftest import spin_until
from tests.test_nodes import Probe

DIAG = "ascii_renderer: render"
UNKNOWN = ["bayer_rggb8", "nv12", "BGR8", "rgb8 ", "", "64FC1"]


@st.composite
def images(draw: st.DrawFn) -> Image:
    encoding = draw(st.sampled_from(sorted(ENCODINGS) + UNKNOWN) | st.text("abcdefghuvy0123468", max_size=8))
    width, height = draw(st.integers(0, 33)), draw(st.integers(0, 17))
    dtype, channels = ENCODINGS.get(encoding, (np.dtype(np.uint8), 3))
    row_bytes = width * channels * dtype.itemsize
    step = max(0, row_bytes + draw(st.sampled_from([0, 0, 0, -1, 1, 2, 3, 5, -3])))
    needed = step * max(height - 1, 0) + row_bytes
    size = max(0, needed + draw(st.sampled_from([0, 0, 0, -1, 1, -7, 16])))
    data = (
        draw(st.binary(min_size=size, max_size=size))
        if size < 64
        else np.random.default_rng(draw(st.integers(0, 2**16)))
        .integers(0, 256, size, dtype=np.uint8)
        .tobytes()
    )
    msg = Image(height=height, width=width, encoding=encoding, step=step)
    msg.is_bigendian = draw(st.booleans())
    msg.data = array.array("B", data)
    return msg


def _expected_problem(msg: Image) -> str | None:
    """What the renderer must say about `msg`, or None when it must render it."""
    if msg.width == 0 or msg.height == 0:
        return "empty image"
    if msg.encoding not in ENCODINGS:
        return "unsupported encoding"
    return layout_problem(msg.encoding, msg.width, msg.height, msg.step, len(msg.data))


def test_no_image_message_kills_the_renderer(ros) -> None:
    renderer = AsciiRendererNode(
        parameter_overrides=[
            Parameter("columns", value=16),
            Parameter("rows", value=6),
            Parameter("max_frame_age_ms", value=0.0),
            Parameter("image_rate_hz", value=60.0),
            Parameter("input", value="raw"),
        ]
    )
    probe = Probe()
    probe.node.create_subscription(Image, "krystal/ascii/image", lambda _m: None, sensor_qos(1))
    nodes = [renderer, probe.node]
    good = array_to_image(np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8), "bgr8")
    assert spin_until(nodes, lambda: probe.image_pub.get_subscription_count() > 0, 5.0)
    counted = {"invalid": 0, "republished": 0, "examples": 0}

    def deliver(msg: Image, arrived) -> None:  # type: ignore[no-untyped-def]
        """Publish until `arrived()`: best effort may lose one on a loaded machine."""
        for attempt in range(4):
            if attempt:
                counted["republished"] += 1
            probe.image_pub.publish(msg)
            if spin_until(nodes, arrived, 2.0):
                return
        raise AssertionError(f"the renderer never answered {msg.header.frame_id}")

    def rendered(frame_id: str):  # type: ignore[no-untyped-def]
        return lambda: any(f.header.frame_id == frame_id for f in probe.frames)

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,  # the same 60 examples every run: the mix of valid and malformed is fixed
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        msg=images(),
        mode=st.sampled_from(MODES),
        kernel=st.sampled_from(KERNELS),
        depth=st.sampled_from(COLOR_DEPTHS),
    )
    def check(msg: Image, mode: str, kernel: str, depth: str) -> None:
        counted["examples"] += 1
        n = counted["examples"]
        result = renderer.set_parameters_atomically(
            [
                Parameter("mode", value=mode),
                Parameter("kernel", value=kernel),
                Parameter("color_depth", value=depth),
            ]
        )
        assert result.successful, result.reason
        # A good frame first, so the fuzzed one's verdict is a level change, published at once.
        good.header.frame_id = f"good{n}"
        deliver(good, lambda: rendered(f"good{n}")() and probe.level(DIAG) == DiagnosticStatus.OK)
        msg.header.frame_id = f"fuzz{n}"
        problem = _expected_problem(msg)
        if problem is None:
            deliver(msg, rendered(msg.header.frame_id))
            frame = next(f for f in probe.frames if f.header.frame_id == msg.header.frame_id)
            assert frame.mode == mode and len(frame.lines) == 6
            return
        deliver(msg, lambda: f"'fuzz{n}'" in probe.message(DIAG))
        counted["invalid"] += 1
        assert probe.level(DIAG) == DiagnosticStatus.ERROR
        message = probe.message(DIAG)
        assert message.startswith("malformed image") and problem in message, (problem, message)
        invalid = int(probe.values(DIAG)["frames_invalid"])
        assert counted["invalid"] <= invalid <= counted["invalid"] + counted["republished"]

    check()
    assert counted["invalid"] > 5  # the strategy reaches both outcomes
    assert counted["examples"] - counted["invalid"] > 2
    # still alive and counting: RenderStats agrees with /diagnostics
    probe.stats.clear()
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end and not probe.stats:
        spin_until(nodes, lambda: bool(probe.stats), 0.5)
    assert probe.stats and probe.stats[-1].frames_invalid >= counted["invalid"]
    renderer.destroy_node()
