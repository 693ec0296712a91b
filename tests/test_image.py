"""sensor_msgs/Image <-> numpy: every encoding round-trips, views share memory, bad input says why."""

from __future__ import annotations

import array
import sys

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from krystal.ros.encodings import PAIRED
from krystal.ros.image import ENCODINGS, ImageFormatError, array_to_image, image_to_array


def _pixels(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    w += w % 2 if encoding in PAIRED else 0  # 4:2:2 pixels come in pairs
    shape = (h, w) if channels == 1 else (h, w, channels)
    rng = np.random.default_rng(1)
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip(encoding: str) -> None:
    pixels = _pixels(encoding)
    header = Header(frame_id="cam")
    header.stamp.sec = 42
    msg = array_to_image(pixels, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (5, pixels.shape[1], encoding)
    assert msg.header.stamp.sec == 42 and msg.header.frame_id == "cam"
    back = image_to_array(msg)
    assert back.dtype == pixels.dtype and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


def test_incoming_image_is_a_view_not_a_copy() -> None:
    msg = array_to_image(_pixels("bgr8"), "bgr8")
    view = image_to_array(msg)
    msg.data[0] = (int(msg.data[0]) + 1) % 256
    assert view[0, 0, 0] == msg.data[0]


def test_padded_rows_are_honoured() -> None:
    pixels = _pixels("mono8", 4, 6)
    padded = np.zeros((4, 8), np.uint8)
    padded[:, :6] = pixels
    msg = Image(height=4, width=6, encoding="mono8", step=8)
    msg.data = array.array("B", padded.tobytes())
    np.testing.assert_array_equal(image_to_array(msg), pixels)


def test_big_endian_mono16() -> None:
    pixels = np.array([[1, 256, 65535]], dtype=np.uint16)
    msg = Image(height=1, width=3, encoding="mono16", step=6, is_bigendian=sys.byteorder == "little")
    msg.data = array.array("B", pixels.byteswap().tobytes())
    np.testing.assert_array_equal(image_to_array(msg), pixels)


def _msg(**fields: object) -> Image:
    base = {"height": 4, "width": 4, "encoding": "bgr8", "step": 12}
    base.update(fields)
    data = base.pop("data", bytes(4 * 12))
    msg = Image(**base)  # type: ignore[arg-type]
    msg.data = array.array("B", data)  # type: ignore[arg-type]
    return msg


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"encoding": "weird42"}, "unsupported encoding"),
        ({"height": 0}, "empty image"),
        ({"width": 0}, "empty image"),
        ({"step": 5}, "step 5 < 12"),
        ({"data": bytes(20)}, "data has 20 bytes"),
        ({"encoding": "mono16", "step": 9, "data": bytes(36)}, "not a multiple"),
        # cv2.cvtColor raised cv2.error on these and the renderer died
        ({"encoding": "yuyv", "width": 3, "step": 6, "data": bytes(24)}, "even width"),
        ({"encoding": "yuv422", "width": 5, "step": 10, "data": bytes(40)}, "even width"),
    ],
)
def test_malformed_images_raise_with_reason(fields: dict, reason: str) -> None:
    with pytest.raises(ImageFormatError, match=reason):
        image_to_array(_msg(**fields))


def test_array_to_image_refuses_mismatch() -> None:
    with pytest.raises(ImageFormatError, match="shape"):
        array_to_image(np.zeros((4, 4), np.uint8), "bgr8")
    with pytest.raises(ImageFormatError, match="uint16"):
        array_to_image(np.zeros((4, 4, 3), np.uint16), "bgr8")
    with pytest.raises(ImageFormatError, match="unknown encoding"):
        array_to_image(np.zeros((4, 4, 3), np.uint8), "nope")
    with pytest.raises(ImageFormatError, match="even width"):
        array_to_image(np.zeros((4, 3, 2), np.uint8), "yuv422_yuy2")


def test_non_contiguous_input_is_packed() -> None:
    pixels = _pixels("bgr8", 6, 10)[:, ::2]
    msg = array_to_image(pixels, "bgr8")
    assert msg.step == 5 * 3
    np.testing.assert_array_equal(image_to_array(msg), pixels)
