"""Benchmark frames at 1920x1080: a real photo (bundled with scikit-image, no download) and a
generated synthetic scene with edges at every orientation, gradients, fine and coarse texture."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

WIDTH, HEIGHT = 1920, 1080


@lru_cache(maxsize=1)
def photo() -> NDArray[Any]:
    """scikit-image's motorcycle_left.png (741x500), cropped to 16:9 and scaled to 1080p, bgr8."""
    import skimage.data

    path = Path(skimage.data.__file__).parent / "motorcycle_left.png"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    h, w = img.shape[:2]
    crop_h = int(w * HEIGHT / WIDTH)
    top = (h - crop_h) // 2
    return cv2.resize(img[top : top + crop_h], (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=1)
def synthetic() -> NDArray[Any]:
    """Spokes (all orientations), rings, a colour gradient, checkers and text, bgr8."""
    x = np.linspace(0, 1, WIDTH, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None]
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[..., 0] = np.broadcast_to(200 * y + 30, (HEIGHT, WIDTH)).astype(np.uint8)
    img[..., 1] = np.broadcast_to(180 * x + 20, (HEIGHT, WIDTH)).astype(np.uint8)
    img[..., 2] = (120 * (1 - x) * (1 - y) + 40).astype(np.uint8)
    cx, cy, r = 480, 540, 420
    for k in range(24):
        a = k * math.pi / 12
        cv2.line(
            img,
            (cx, cy),
            (int(cx + r * math.cos(a)), int(cy + r * math.sin(a))),
            (250, 250, 250),
            9,
            cv2.LINE_AA,
        )
    for rr in range(60, 420, 70):
        cv2.circle(img, (cx, cy), rr, (20, 20, 20), 7, cv2.LINE_AA)
    s = 60
    board = ((np.indices((6 * s, 6 * s)) // s).sum(axis=0) % 2 * 220 + 20).astype(np.uint8)
    img[120 : 120 + 6 * s, 1050 : 1050 + 6 * s] = board[..., None]
    cv2.rectangle(img, (1500, 120), (1820, 480), (40, 40, 200), -1)
    cv2.circle(img, (1660, 300), 120, (60, 220, 240), -1, cv2.LINE_AA)
    cv2.putText(
        img, "KRYSTAL 2026", (1000, 700), cv2.FONT_HERSHEY_SIMPLEX, 3.6, (255, 255, 255), 14, cv2.LINE_AA
    )
    cv2.putText(
        img, "edge / ridge | step", (1000, 900), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (10, 10, 10), 8, cv2.LINE_AA
    )
    return img


SCENES = {"photo": photo, "synthetic": synthetic}
