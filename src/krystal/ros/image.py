"""sensor_msgs/Image <-> numpy without cv_bridge's copies, with cv_bridge's encoding names.

Incoming images become a zero-copy view of the message buffer; outgoing arrays are copied once into
the message. The PyPI cv_bridge breaks on NumPy 2; a real cv_bridge (ROS install) is used only for
encodings this table lacks (Bayer patterns, YUV 4:2:0, ...).
"""

from __future__ import annotations

import array
import sys
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from krystal.ros.encodings import ENCODINGS, PAIRED, layout_problem

__all__ = ["ENCODINGS", "ImageFormatError", "array_to_image", "image_to_array"]


class ImageFormatError(ValueError):
    """The message cannot be read as an image: the text says why."""


def image_to_array(msg: Image) -> NDArray[Any]:
    """A view of the message's pixels shaped (H, W) or (H, W, C); raises ImageFormatError."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageFormatError(f"empty image {width}x{height}")
    spec = ENCODINGS.get(msg.encoding)
    if spec is None:
        return _via_cv_bridge(msg)
    problem = layout_problem(msg.encoding, width, height, step, len(msg.data))
    if problem:
        raise ImageFormatError(problem)
    dtype, channels = spec
    if msg.is_bigendian != (sys.byteorder == "big") and dtype.itemsize > 1:
        dtype = dtype.newbyteorder()
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
    strides: tuple[int, ...] = (step, channels * dtype.itemsize)
    if channels > 1:
        strides += (dtype.itemsize,)
    return np.ndarray(shape=shape, dtype=dtype, buffer=buf, strides=strides)


def array_to_image(pixels: NDArray[Any], encoding: str, header: Header | None = None) -> Image:
    """An Image holding a copy of `pixels` (one memcpy; the setter's list path costs 10x more)."""
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ImageFormatError(f"unknown encoding {encoding!r}")
    dtype, channels = spec
    if (
        pixels.ndim not in (2, 3)
        or (pixels.ndim == 3 and pixels.shape[2] != channels)
        or (pixels.ndim == 2 and channels != 1)
    ):
        raise ImageFormatError(f"array of shape {pixels.shape} is not {encoding}")
    if pixels.dtype != dtype:
        raise ImageFormatError(f"array of {pixels.dtype} is not {encoding} ({dtype})")
    if encoding in PAIRED and pixels.shape[1] % 2:
        raise ImageFormatError(
            f"{encoding} needs an even width (pixels come in pairs), got {pixels.shape[1]}"
        )
    pixels = np.ascontiguousarray(pixels)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = int(pixels.strides[0])
    data = array.array("B")
    data.frombytes(pixels.reshape(-1).view(np.uint8).data)
    msg.data = data
    return msg


@lru_cache(maxsize=1)
def _cv_bridge() -> Any | None:
    """A working cv_bridge, or None (absent, or the PyPI port that fails on NumPy 2)."""
    try:
        from cv_bridge import CvBridge  # type: ignore[import-not-found]

        bridge = CvBridge()
        probe = Image(height=1, width=1, encoding="bayer_rggb8", step=1)
        probe.data = array.array("B", [0])
        bridge.imgmsg_to_cv2(probe)
        return bridge
    except Exception:  # any failure means: not usable here
        return None


def _via_cv_bridge(msg: Image) -> NDArray[Any]:
    bridge = _cv_bridge()
    if bridge is None:
        raise ImageFormatError(f"unsupported encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    try:
        return np.asarray(bridge.imgmsg_to_cv2(msg))
    except Exception as exc:
        raise ImageFormatError(f"cv_bridge cannot read {msg.encoding!r}: {exc}") from exc
