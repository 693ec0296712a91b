"""Per-cell colours: a background and a glyph colour whose blend keeps each cell's mean colour.

For a glyph of ink coverage c, background = mean - c * d and foreground = mean + (1 - c) * d, where
d is the cell's contrast (bright samples minus dark samples): the blend bg + c * (fg - bg) equals
the mean exactly, so colour fidelity holds at cell scale while the glyph shows the texture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from krystal.ascii.grid import Samples

_THIRDS = np.full(3, 1 / 3, np.float32)
_INPUT_TOLERANCE = 3.0  # 8-bit levels: a cell whose mean moved less since its fit is not refitted
# xterm 256-colour palette: 16 system colours, a 6x6x6 cube, 24 greys.
_CUBE = np.array([0, 95, 135, 175, 215, 255], np.float32)
_GREYS = np.arange(24, dtype=np.float32) * 10 + 8


def cell_contrast(samples: Samples) -> tuple[NDArray[Any], NDArray[Any]]:
    """(mean RGB, bright-minus-dark RGB) per cell; bright = samples above their cell's mean luma.

    All in 8 bits: a compare, an AND and area resizes by the integer sample factor, so the
    per-cell sums cost about what one resize costs.
    """
    if samples.colour is None:
        raise ValueError("sampled without colour")
    cols, rows = samples.columns, samples.rows
    size = (cols, rows)
    rgb, gray = samples.colour, samples.gray
    cell_gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    up = cv2.resize(cell_gray, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST)
    bright = cv2.compare(gray, up, cv2.CMP_GT)
    mean = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    # the mask is 0 or 255: a broadcast AND keeps or zeroes each sample (OpenCV's masked AND is 20x slower)
    bright_part = cv2.resize(np.bitwise_and(rgb, bright[..., None]), size, interpolation=cv2.INTER_AREA)
    frac = cv2.resize(bright, size, interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255
    bright_sum = bright_part.astype(np.float32)  # mean over the cell of the bright samples only
    bright_mean = np.where(frac > 0, bright_sum / np.maximum(frac, 1e-6), mean)
    dark_mean = np.where(frac < 1, (mean - bright_sum) / np.maximum(1 - frac, 1e-6), mean)
    return mean, bright_mean - dark_mean


def split_colours(
    mean: NDArray[Any], contrast: NDArray[Any], coverage: NDArray[Any]
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """(foreground, background) RGB per cell keeping `mean` for glyphs of `coverage` (0..1)."""
    c = coverage[..., None]
    fg_c = np.clip(mean + (1 - c) * contrast, 0, 255)
    # bg from the clipped fg, so the blend still hits the mean where fg saturated.
    bg_c = np.clip((mean - c * fg_c) / np.maximum(1 - c, 1e-3), 0, 255)
    return (fg_c + 0.5).astype(np.uint8), (bg_c + 0.5).astype(np.uint8)


def saturate(rgb: NDArray[np.float32], factor: float) -> NDArray[np.float32]:
    """Scale chroma around each colour's own luma (BT.601), so brightness stays put."""
    if factor == 1.0:
        return rgb
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return luma[..., None] + (rgb - luma[..., None]) * np.float32(factor)


def _nearest_level_lut() -> NDArray[np.uint8]:
    """Channel value -> index of the nearest cube level."""
    return np.abs(np.arange(256, dtype=np.float32)[:, None] - _CUBE).argmin(axis=1).astype(np.uint8)  # type: ignore[no-any-return]


_LEVEL = _nearest_level_lut()
_GREY_OF = np.clip(np.rint((np.arange(256, dtype=np.float32) - 8) / 10), 0, 23).astype(np.uint8)


def _to_256_exact(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Nearest xterm-256 palette index (cube 16..231 or grey 232..255) per RGB colour."""
    idx = _LEVEL[rgb]  # ..., 3 via lookup
    cube = _CUBE[idx]
    x = rgb.astype(np.float32)
    grey_level = _GREY_OF[(rgb.astype(np.uint16).sum(axis=-1) // 3).astype(np.uint8)]
    grey = _GREYS[grey_level]
    d_cube = ((x - cube) ** 2).sum(axis=-1)
    d_grey = ((x - grey[..., None]) ** 2).sum(axis=-1)
    cube_index = 16 + 36 * idx[..., 0].astype(np.int32) + 6 * idx[..., 1] + idx[..., 2]
    return np.where(d_grey < d_cube, 232 + grey_level.astype(np.int32), cube_index).astype(np.uint8)  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def _lut_256() -> NDArray[np.uint8]:
    """Palette index for every colour at 6 bits per channel: one gather instead of distances."""
    levels = (np.arange(64, dtype=np.uint16) * 4 + 2).astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)
    return _to_256_exact(grid).reshape(-1)


def to_256(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Nearest xterm-256 palette index (cube 16..231 or grey 232..255) per RGB colour."""
    q = (rgb >> 2).astype(np.intp)
    return _lut_256()[(q[..., 0] << 12) | (q[..., 1] << 6) | q[..., 2]]  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def palette_256() -> NDArray[np.uint8]:
    """RGB of the 256 xterm colours (system colours as xterm's defaults)."""
    system = [
        (0, 0, 0),
        (205, 0, 0),
        (0, 205, 0),
        (205, 205, 0),
        (0, 0, 238),
        (205, 0, 205),
        (0, 205, 205),
        (229, 229, 229),
        (127, 127, 127),
        (255, 0, 0),
        (0, 255, 0),
        (255, 255, 0),
        (92, 92, 255),
        (255, 0, 255),
        (0, 255, 255),
        (255, 255, 255),
    ]
    cube = [(int(r), int(g), int(b)) for r in _CUBE for g in _CUBE for b in _CUBE]
    greys = [(int(v), int(v), int(v)) for v in _GREYS]
    return np.array(system + cube + greys, np.uint8)


def _blend_error(
    fg: NDArray[np.float32],
    bg: NDArray[np.float32],
    *,
    keep_c: NDArray[np.float32],
    c: NDArray[np.float32],
    target: NDArray[np.float32],
    weights: NDArray[np.float32],
) -> NDArray[np.float32]:
    """How far a cell's blend lands from its mean: luma 4x, plus the mean channel difference."""
    diff = keep_c * bg + c * fg - target
    return 4 * np.abs(diff @ weights) + np.abs(diff) @ _THIRDS  # type: ignore[no-any-return]


def _search(
    ideal: NDArray[np.uint8],
    target: NDArray[np.float32],
    *,
    keep_c: NDArray[np.float32],
    inv_c: NDArray[np.float32],
    c: NDArray[np.float32],
    palette: NDArray[np.float32],
    weights: NDArray[np.float32],
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Best of three backgrounds, each with the glyph colour that compensates it."""

    def fit(bg: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        exact = (target - keep_c * bg) * inv_c
        np.clip(exact, 0, 255, out=exact)
        fg = palette[to_256(exact.astype(np.uint8))]
        return fg, _blend_error(fg, bg, keep_c=keep_c, c=c, target=target, weights=weights)

    best_bg = palette[to_256(ideal)]
    best_fg, best_err = fit(best_bg)
    short = (target - (keep_c * best_bg + c * best_fg)) @ weights > 0
    step = np.clip(_LEVEL[best_bg.astype(np.uint8)].astype(np.intp) + np.where(short, 1, -1)[:, None], 0, 5)
    grey = _GREYS[_GREY_OF[(ideal.astype(np.uint16).sum(axis=-1) // 3).astype(np.uint8)]]
    for bg in (_CUBE[step], np.repeat(grey[:, None], 3, axis=1)):
        fg, err = fit(bg)
        better = err < best_err
        best_err[better] = err[better]
        best_fg[better] = fg[better]
        best_bg[better] = bg[better]
    return best_fg, best_bg


@dataclass
class Fit256State:
    """What fit_256 decided last, and for which inputs (each cell's mean when it was last fitted)."""

    foreground: NDArray[np.uint8]
    background: NDArray[np.uint8]
    fitted_mean: NDArray[np.float32]  # cells x 3
    fitted_ink: NDArray[np.float32]  # cells x 1


def fit_256(
    mean: NDArray[Any],
    background: NDArray[np.uint8],
    coverage: NDArray[Any],
    state: Fit256State | None = None,
    *,
    margin: float = 10.0,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], Fit256State]:
    """Palette colours for each cell whose blend lands nearest the cell's mean colour.

    The background dominates a cell (glyphs cover under 30 %), so three backgrounds are tried —
    the nearest palette colour, the cube colour one level toward the blend's error, and the
    nearest grey (four times finer than the cube) — each with the glyph colour that compensates
    its error; the closest blend wins, luma counting most as the eye (and the metric's SSIM)
    weighs it most. A cell keeps its previous pair unless the best is better by `margin` (near
    ties must not flip colours under noise), and a cell whose mean moved less than the noise
    tolerance since it was fitted is not searched again: in video most cells are as a frame ago.
    """
    shape = background.shape
    c = np.asarray(coverage, np.float32).reshape(-1, 1)
    keep_c = 1 - c
    inv_c = (1 / np.maximum(c, np.float32(1e-3))).astype(np.float32)
    target = np.asarray(mean, np.float32).reshape(-1, 3)
    palette = palette_256().astype(np.float32)
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    ideal = background.reshape(-1, 3)
    if state is None or state.fitted_mean.shape != target.shape:
        fg, bg = _search(ideal, target, keep_c=keep_c, inv_c=inv_c, c=c, palette=palette, weights=weights)
        out_fg, out_bg = fg.astype(np.uint8), bg.astype(np.uint8)
        fitted_mean: NDArray[np.float32] = target.copy()
        fitted_ink: NDArray[np.float32] = c.copy()
    else:
        out_fg = state.foreground.reshape(-1, 3).copy()
        out_bg = state.background.reshape(-1, 3).copy()
        fitted_mean, fitted_ink = state.fitted_mean.copy(), state.fitted_ink.copy()
        moved = (np.abs(target - fitted_mean) > _INPUT_TOLERANCE).any(axis=1) | (c[:, 0] != fitted_ink[:, 0])
        todo = np.flatnonzero(moved)
        if todo.size:
            t_keep, t_c, t_target = keep_c[todo], c[todo], target[todo]
            fg, bg = _search(
                ideal[todo],
                t_target,
                keep_c=t_keep,
                inv_c=inv_c[todo],
                c=t_c,
                palette=palette,
                weights=weights,
            )
            p_fg, p_bg = out_fg[todo].astype(np.float32), out_bg[todo].astype(np.float32)
            prev_err = _blend_error(p_fg, p_bg, keep_c=t_keep, c=t_c, target=t_target, weights=weights)
            new_err = _blend_error(fg, bg, keep_c=t_keep, c=t_c, target=t_target, weights=weights)
            keep = prev_err <= new_err + margin
            fg[keep], bg[keep] = p_fg[keep], p_bg[keep]
            out_fg[todo], out_bg[todo] = fg.astype(np.uint8), bg.astype(np.uint8)
            fitted_mean[todo], fitted_ink[todo] = t_target, t_c
    out_fg, out_bg = out_fg.reshape(shape), out_bg.reshape(shape)
    return out_fg, out_bg, Fit256State(out_fg, out_bg, fitted_mean, fitted_ink)
