"""Sampling a frame onto the character grid: one fast area-downscale, then per-cell statistics.

Every style starts here. A 1080p frame is first halved with INTER_AREA (OpenCV's 2x fast path,
0.5 ms) until it is less than twice the target, then area-resized to `sub` samples per cell, so the
cost is nearly independent of the input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray


def area_resize(image: NDArray[Any], width: int, height: int) -> NDArray[Any]:
    """INTER_AREA to width x height, halving first while the image is at least twice as large."""
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Samples:
    """A frame sampled at `sub_x` x `sub_y` points per cell.

    luma: (rows*sub_y, columns*sub_x) float32 in 0..1; colour: same grid, RGB uint8, or None.
    """

    luma: NDArray[np.float32]
    colour: NDArray[Any] | None
    columns: int
    rows: int
    sub_x: int
    sub_y: int
    gray: NDArray[np.uint8]  # the same luma in 8 bits, for cheap comparisons

    def cell_mean_luma(self) -> NDArray[np.float32]:
        """Per-cell mean: an area resize by the integer sample factor (OpenCV's fast path)."""
        return cv2.resize(self.luma, (self.columns, self.rows), interpolation=cv2.INTER_AREA)  # type: ignore[return-value]


def sample(
    image: NDArray[Any],
    order: str,
    columns: int,
    rows: int,
    *,
    sub_x: int = 2,
    sub_y: int = 4,
    colour: bool = False,
) -> Samples:
    """Sample an 8-bit image ("bgr", "rgb" or "gray" channel order) onto the grid.

    Without colour the image turns grey after the first halvings, so the last resize moves a third
    of the bytes.
    """
    width, height = columns * sub_x, rows * sub_y
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    rgb: NDArray[Any] | None = None
    if image.ndim == 3:
        if colour:
            # Less than 2x is left after the halvings: bilinear is 6x cheaper than area here and
            # the colour statistics are per cell anyway; luma keeps area resampling.
            small = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB) if order == "bgr" else small
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if order == "bgr" else cv2.COLOR_RGB2GRAY)
    gray = area_resize(image, width, height)
    if colour and rgb is None:
        rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    luma = gray.astype(np.float32) * np.float32(1 / 255)
    return Samples(luma, rgb, columns, rows, sub_x, sub_y, gray)
