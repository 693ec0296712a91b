"""A moving test pattern: gradients, edges at several orientations and motion, without hardware."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray


class TestPattern:
    """Frame `i` of a deterministic moving scene, bgr8 of the given size."""

    __test__ = False  # not a pytest class

    def __init__(self, width: int, height: int, fps: float = 30.0) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"test pattern needs at least 16x16, got {width}x{height}")
        self.width, self.height, self.fps = width, height, fps
        self._background = self._make_background(width, height)

    @staticmethod
    def _make_background(width: int, height: int) -> NDArray[Any]:
        x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
        y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        bg = np.empty((height, width, 3), np.uint8)
        bg[..., 0] = (255 * (0.15 + 0.6 * y) * np.ones_like(x)).astype(np.uint8)  # blue: vertical
        bg[..., 1] = (255 * 0.8 * x * np.ones_like(y)).astype(np.uint8)  # green: horizontal
        bg[..., 2] = (255 * 0.5 * (1 - x) * y).astype(np.uint8)
        # a fixed checkerboard block: sharp horizontal and vertical edges
        s = max(4, min(width, height) // 24)
        y0, x0 = height // 8, width // 16
        block = ((np.indices((4 * s, 4 * s)) // s).sum(axis=0) % 2 * 255).astype(np.uint8)
        bg[y0 : y0 + 4 * s, x0 : x0 + 4 * s] = block[..., None]
        return bg

    def frame(self, index: int) -> NDArray[Any]:
        t = index / self.fps
        w, h = self.width, self.height
        img = self._background.copy()
        # scrolling bars: vertical edges in motion
        period = max(8, w // 10)
        shift = int(t * period) % period
        band = img[h - h // 6 :, :]
        cols = ((np.arange(w) + shift) % period) < period // 2
        band[:, cols] = 230
        band[:, ~cols] = 25
        # a ball on a Lissajous path
        r = max(3, min(w, h) // 10)
        cx = int(w / 2 + (w / 2 - r - 1) * math.sin(1.3 * t))
        cy = int(h / 2.5 + (h / 3 - r) * math.sin(2.1 * t + 0.5))
        cv2.circle(img, (cx, cy), r, (240, 240, 250), -1, lineType=cv2.LINE_AA)
        # a rotating bar: edges of every orientation
        L = min(w, h) // 4
        ox, oy = int(w * 0.75), int(h * 0.4)
        a = 0.8 * t
        p1 = (int(ox - L * math.cos(a)), int(oy - L * math.sin(a)))
        p2 = (int(ox + L * math.cos(a)), int(oy + L * math.sin(a)))
        cv2.line(img, p1, p2, (10, 10, 10), max(2, L // 8), lineType=cv2.LINE_AA)
        return img
