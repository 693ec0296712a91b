"""Luma (8-bit grey) from any decoded image layout, without a copy when it already is grey."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

_TO_GRAY = {
    "bgr8": cv2.COLOR_BGR2GRAY,
    "8UC3": cv2.COLOR_BGR2GRAY,
    "rgb8": cv2.COLOR_RGB2GRAY,
    "bgra8": cv2.COLOR_BGRA2GRAY,
    "8UC4": cv2.COLOR_BGRA2GRAY,
    "rgba8": cv2.COLOR_RGBA2GRAY,
    "yuv422": cv2.COLOR_YUV2GRAY_UYVY,
    "uyvy": cv2.COLOR_YUV2GRAY_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2GRAY_YUYV,
    "yuyv": cv2.COLOR_YUV2GRAY_YUYV,
}


def to_luma(pixels: NDArray[Any], encoding: str) -> NDArray[Any]:
    """H x W uint8 luma of an image array as image_to_array returns it."""
    if encoding in ("mono8", "8UC1"):
        return pixels
    if encoding in ("mono16", "16UC1"):
        return (pixels >> 8).astype(np.uint8)
    if encoding in ("bgr16", "rgb16", "bgra16", "rgba16"):
        eight = (pixels >> 8).astype(np.uint8)
        return to_luma(eight, encoding.replace("16", "8"))
    if encoding == "32FC1":
        return np.clip(pixels * 255.0, 0, 255).astype(np.uint8)
    code = _TO_GRAY.get(encoding)
    if code is None:
        raise ValueError(f"no luma conversion for {encoding!r}")
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and not pixels.flags.c_contiguous:
        pixels = np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, code)
