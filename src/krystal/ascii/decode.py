"""Decoded image arrays (as image_to_array returns them) to 8-bit grey or colour for the engine."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

_YUV_TO_BGR = {
    "yuv422": cv2.COLOR_YUV2BGR_UYVY,
    "uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUYV,
    "yuyv": cv2.COLOR_YUV2BGR_YUYV,
}
_YUV_TO_GRAY = {
    "yuv422": cv2.COLOR_YUV2GRAY_UYVY,
    "uyvy": cv2.COLOR_YUV2GRAY_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2GRAY_YUYV,
    "yuyv": cv2.COLOR_YUV2GRAY_YUYV,
}


def to_8bit(pixels: NDArray[Any], encoding: str, colour: bool = True) -> tuple[NDArray[Any], str]:
    """(8-bit image, channel order "bgr" | "rgb" | "gray"); grey sources stay grey.

    With colour=False a YUV source is converted straight to grey (half the work).
    """
    if encoding in ("mono8", "8UC1"):
        return pixels, "gray"
    if encoding in ("mono16", "16UC1"):
        return (pixels >> 8).astype(np.uint8), "gray"
    if encoding == "32FC1":
        return np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8), "gray"
    if encoding in ("bgr8", "8UC3"):
        return pixels, "bgr"
    if encoding == "rgb8":
        return pixels, "rgb"
    if encoding in ("bgra8", "8UC4"):
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR), "bgr"
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB), "rgb"
    if encoding in ("bgr16", "rgb16", "bgra16", "rgba16"):
        eight, order = to_8bit((pixels >> 8).astype(np.uint8), encoding.replace("16", "8"), colour)
        return eight, order
    if encoding in _YUV_TO_BGR:
        if pixels.ndim != 3 or pixels.shape[2] != 2 or pixels.shape[1] % 2:
            # OpenCV would raise cv2.error deep in cvtColor: say what is wrong instead.
            raise ValueError(f"{encoding} needs (H, even W, 2) samples, got shape {pixels.shape}")
        packed = np.ascontiguousarray(pixels)
        if colour:
            return cv2.cvtColor(packed, _YUV_TO_BGR[encoding]), "bgr"
        return cv2.cvtColor(packed, _YUV_TO_GRAY[encoding]), "gray"
    raise ValueError(f"no 8-bit conversion for {encoding!r}")
