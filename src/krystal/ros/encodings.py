"""sensor_msgs/Image encodings and their memory layout, without rclpy (the cores and tests use it).

Names as in cv_bridge's image_encodings.h: yuv422 is UYVY and yuv422_yuy2 is YUYV.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype[Any], int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgra8": (np.dtype(np.uint8), 4),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgr16": (np.dtype(np.uint16), 3),
    "rgb16": (np.dtype(np.uint16), 3),
    "bgra16": (np.dtype(np.uint16), 4),
    "rgba16": (np.dtype(np.uint16), 4),
    "yuv422": (np.dtype(np.uint8), 2),
    "uyvy": (np.dtype(np.uint8), 2),
    "yuv422_yuy2": (np.dtype(np.uint8), 2),
    "yuyv": (np.dtype(np.uint8), 2),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "8UC4": (np.dtype(np.uint8), 4),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
# 4:2:2 formats share one chroma pair between two pixels: a row holds an even number of them.
PAIRED = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})


def layout_problem(encoding: str, width: int, height: int, step: int, size: int) -> str | None:
    """Why a buffer of `size` bytes cannot hold this image, or None (for encodings in ENCODINGS)."""
    if height <= 0 or width <= 0:
        return f"empty image {width}x{height}"
    dtype, channels = ENCODINGS[encoding]
    if encoding in PAIRED and width % 2:
        return f"{encoding} needs an even width (pixels come in pairs), got {width}"
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        return f"step {step} < {row_bytes} bytes needed for {width} px of {encoding}"
    needed = step * (height - 1) + row_bytes
    if size < needed:
        return f"data has {size} bytes, {encoding} {width}x{height} step {step} needs {needed}"
    if step % dtype.itemsize:
        return f"step {step} is not a multiple of {dtype.itemsize}-byte pixels"
    return None
