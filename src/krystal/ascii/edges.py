"""Edge glyphs: Sobel gradients at sub-cell resolution, a structure tensor per cell, and a line
glyph (| / - \\ _) along each coherent edge. Kernel size 3/5/7 trades cost for smoother orientation.

Edge cells are chosen with a Schmitt trigger (enter above the threshold, leave below 70 % of it) and
their orientation sticks until it moves past the bin by a margin, so a static edge does not flicker.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from krystal.ascii.grid import Samples

KERNEL_SIZES = (3, 5, 7)
# Line direction bins (degrees, image y down) -> glyph. 0 = horizontal.
_LINE_GLYPHS = np.array([ord("-"), ord("\\"), ord("|"), ord("/")], np.uint32)
_UNDERSCORE = ord("_")
_SCALE = {3: 1 / 8, 5: 1 / 128, 7: 1 / 2048}  # Sobel gain, so gradients read in luma per sample


@dataclass(frozen=True)
class EdgeField:
    """Per-cell edge evidence."""

    energy: NDArray[np.float32]  # mean squared gradient (luma per sample)^2
    coherence: NDArray[np.float32]  # 0 (isotropic) .. 1 (one orientation)
    line_angle: NDArray[np.float32]  # direction of the edge line, radians in [0, pi)
    low: NDArray[np.bool_]  # the edge lies in the bottom quarter of the cell


def edge_field(samples: Samples, kernel_size: int = 3) -> EdgeField:
    if kernel_size not in KERNEL_SIZES:
        raise ValueError(f"kernel_size must be one of {KERNEL_SIZES}")
    luma = samples.luma
    scale = _SCALE[kernel_size]
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=kernel_size, scale=scale, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=kernel_size, scale=scale, borderType=cv2.BORDER_REPLICATE)
    # Per-cell means of the tensor terms: one area resize by an integer factor (OpenCV's fast path).
    terms = cv2.merge([np.asarray(gx * gx), np.asarray(gy * gy), np.asarray(gx * gy)])
    cols, rows = samples.columns, samples.rows
    jxx, jyy, jxy = cv2.split(cv2.resize(terms, (cols, rows), interpolation=cv2.INTER_AREA))
    energy = jxx + jyy
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / np.maximum(energy, 1e-9)
    gradient_angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy)
    line_angle = np.mod(gradient_angle + np.pi / 2, np.pi)
    # A horizontal edge in the bottom quarter of its cell reads better as '_' than as '-'.
    sub_y = samples.sub_y
    bottom = max(1, sub_y // 4)
    row_energy = cv2.resize(np.asarray(gy * gy), (cols, rows * sub_y), interpolation=cv2.INTER_AREA).reshape(
        rows, sub_y, cols
    )
    low = row_energy[:, sub_y - bottom :, :].sum(axis=1) > 0.6 * row_energy.sum(axis=1)
    return EdgeField(
        energy.astype(np.float32), coherence.astype(np.float32), line_angle.astype(np.float32), low
    )


EDGE_GLYPHS = "-_=~|![]/\\"
# Nominal line angles (degrees, 0 = horizontal, image y down) when no atlas measures them.
_NOMINAL_DEG = {"-": 0, "_": 0, "=": 0, "~": 0, "|": 90, "!": 90, "[": 90, "]": 90, "/": 135, "\\": 45}
_NOMINAL_INK = {
    "-": 0.10,
    "_": 0.23,
    "=": 0.40,
    "~": 0.20,
    "|": 0.43,
    "!": 0.31,
    "[": 0.5,
    "]": 0.5,
    "/": 0.4,
    "\\": 0.4,
}


@dataclass(frozen=True)
class LineGlyphs:
    """Line glyphs with the direction and brightness they show (measured on the font when possible)."""

    codes: NDArray[np.uint32]
    angle: NDArray[np.float32]  # line direction, radians [0, pi)
    ink: NDArray[np.float32]  # brightness on the ramp's 0..1 scale

    @staticmethod
    def nominal(glyphs: str = EDGE_GLYPHS) -> LineGlyphs:
        return LineGlyphs(
            np.array([ord(g) for g in glyphs], np.uint32),
            np.deg2rad(np.array([_NOMINAL_DEG[g] for g in glyphs], np.float32)),
            np.array([_NOMINAL_INK[g] for g in glyphs], np.float32),
        )

    @staticmethod
    def measured(bitmaps: NDArray[np.float32], glyphs: str, ink_scale: float) -> LineGlyphs:
        """From atlas bitmaps (N, h, w): orientation by the same structure tensor as the metric."""
        angles = []
        for bitmap in bitmaps:
            smooth = cv2.GaussianBlur(bitmap, (0, 0), 1.0)
            gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
            jxx, jyy, jxy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
            angles.append(np.mod(0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2, np.pi))
        ink = bitmaps.mean(axis=(1, 2)) / ink_scale
        return LineGlyphs(
            np.array([ord(g) for g in glyphs], np.uint32),
            np.array(angles, np.float32),
            np.clip(ink, 0, 1).astype(np.float32),
        )


class EdgeGlyphs:
    """Chooses edge cells and their line glyphs, with temporal hysteresis.

    Among the line glyphs, a cell takes the one whose direction is within `angle_tol` of the edge
    and whose brightness is closest to the cell's; where none is within `ink_tol`, the ramp glyph
    stays (a thin line in a bright area would darken it).
    """

    def __init__(
        self,
        lines: LineGlyphs | None = None,
        *,
        threshold: float = 0.25,
        coherence_min: float = 0.45,
        angle_tol_deg: float = 20.0,
        ink_tol: float = 0.45,
        ink_weight: float = 0.5,
    ) -> None:
        self.lines = lines or LineGlyphs.nominal()
        self.threshold, self.coherence_min = threshold, coherence_min
        self.angle_tol = float(np.deg2rad(angle_tol_deg))
        self.ink_tol, self.ink_weight = ink_tol, ink_weight
        self._was_edge: NDArray[np.bool_] | None = None
        self._choice: NDArray[np.intp] | None = None
        self._level: float | None = None
        self._horizontal = np.abs(np.sin(self.lines.angle)) < 0.3
        self._underscore = self.lines.codes == _UNDERSCORE

    def reset(self) -> None:
        self._was_edge = self._choice = None
        self._level = None

    def _energy_threshold(self, energy: NDArray[np.float32]) -> float:
        level = float(np.percentile(energy, 98))
        self._level = level if self._level is None else self._level + 0.2 * (level - self._level)
        return max(self.threshold * self._level, 1e-4)

    def select(
        self, field: EdgeField, luma: NDArray[np.float32]
    ) -> tuple[NDArray[np.bool_], NDArray[np.uint32]]:
        """(edge mask, glyph per cell — valid where the mask is set); luma: cell brightness 0..1."""
        t = self._energy_threshold(field.energy)
        strong = (field.energy >= t) & (field.coherence >= self.coherence_min)
        prev_edge = self._was_edge
        if prev_edge is not None and prev_edge.shape == strong.shape:
            kept = (field.energy >= 0.7 * t) & (field.coherence >= 0.8 * self.coherence_min)
            edge = strong | (kept & prev_edge)
        else:
            edge = strong
        # Glyph costs only where an edge can be: a fraction of the cells.
        where = np.flatnonzero(edge)
        angle = field.line_angle.ravel()[where, None]
        d = np.abs(angle - self.lines.angle)
        d = np.minimum(d, np.pi - d)  # cells, N
        ink_err = np.abs(luma.ravel()[where, None] - self.lines.ink)
        low = field.low.ravel()[where, None]
        placement = np.where(self._underscore, ~low, low & self._horizontal)
        cost = d / self.angle_tol + self.ink_weight * ink_err / self.ink_tol + placement * 0.5
        cost = np.where((d <= self.angle_tol) & (ink_err <= self.ink_tol), cost, np.inf)
        pick = np.argmin(cost, axis=1)
        best = cost[np.arange(len(where)), pick]
        prev = self._choice
        if prev is not None and prev.shape == edge.shape:
            prev_pick = prev.ravel()[where]
            prev_cost = cost[np.arange(len(where)), prev_pick]
            pick = np.where(prev_cost <= best + 0.3, prev_pick, pick)
            best = np.minimum(best, prev_cost)
        flat_choice = (
            np.zeros(edge.size, np.intp) if prev is None or prev.shape != edge.shape else prev.ravel().copy()
        )
        flat_choice[where] = pick
        choice = flat_choice.reshape(edge.shape)
        edge = edge.copy()
        edge.ravel()[where] = np.isfinite(best)
        self._was_edge, self._choice = edge, choice
        return edge, self.lines.codes[choice]
