"""Objective quality of a text rendering against its source image, side by side with any renderer.

The grid is drawn back to pixels with the glyph atlas (8x16 cells), the source is area-resized to
the same size, then:
  blurred SSIM  both lumas blurred with sigma = half a cell (4 px across, 8 px down), the render
                rescaled to the source's mean and std, SSIM with Gaussian weights (sigma 1.5);
                a flat render scores 0 — it carries no structure at all;
  edge F1       per-cell structure tensors (line glyphs are ridges, not steps: the tensor sees a
                ridge and a step alike); coherent cells of source and render matched within one
                cell and 22.5 degrees;
  flicker       fraction of cells whose glyph changes between two noise realisations of one scene;
  delta E       mean CIELAB distance (CIE76) of the blurred colour render and source, colour modes.
The settings are fixed here, before any renderer was tuned against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # truncate 3.5 sigma, an 11x11 window as in Wang et al. and scikit-image
COHERENCE_MIN = 0.5
ENERGY_REL = 0.15  # an edge cell holds at least this fraction of the image's 99th-percentile energy
ENERGY_FLOOR = 0.03**2  # ... and at least the energy of a 3 % contrast step
ANGLE_TOL_DEG = 22.5
NOISE_SIGMA = 8.0  # 8-bit units, about 3 % sensor noise, for the flicker test


@dataclass(frozen=True)
class EdgeScore:
    f1: float
    precision: float
    recall: float
    source_cells: int
    render_cells: int


def source_at_cells(
    source: NDArray[Any], columns: int, rows: int, cell_w: int = 8, cell_h: int = 16
) -> NDArray[Any]:
    """The source area-resized to the render's pixel size."""
    return cv2.resize(source, (columns * cell_w, rows * cell_h), interpolation=cv2.INTER_AREA)


def luma01(image: NDArray[Any], order: str = "bgr") -> NDArray[np.float32]:
    """Luma in 0..1 of a grey (any dtype) or 3-channel 8-bit image."""
    if image.ndim == 3:
        code = cv2.COLOR_BGR2GRAY if order == "bgr" else cv2.COLOR_RGB2GRAY
        image = cv2.cvtColor(image, code)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32)


def _blur_half_cell(image: NDArray[Any], cell_w: int, cell_h: int) -> NDArray[Any]:
    return cv2.GaussianBlur(
        image, (0, 0), sigmaX=cell_w / 2, sigmaY=cell_h / 2, borderType=cv2.BORDER_REFLECT
    )


def ssim(a: NDArray[np.float32], b: NDArray[np.float32], data_range: float = 1.0) -> float:
    """Mean SSIM with Gaussian weights (population covariance), borders of the window cropped."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    k = 2 * SSIM_RADIUS + 1

    def g(x: NDArray[Any]) -> NDArray[Any]:
        return cv2.GaussianBlur(x, (k, k), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = g(a64), g(b64)
    var_a = g(a64 * a64) - mu_a * mu_a
    var_b = g(b64 * b64) - mu_b * mu_b
    cov = g(a64 * b64) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    r = SSIM_RADIUS
    return float(s[r:-r, r:-r].mean())


def blurred_ssim(
    render: NDArray[np.float32], source: NDArray[np.float32], cell_w: int = 8, cell_h: int = 16
) -> float:
    """SSIM of the half-cell-blurred lumas after matching the render's mean and std to the source's."""
    rb = _blur_half_cell(render, cell_w, cell_h)
    sb = _blur_half_cell(source, cell_w, cell_h)
    r_std = float(rb.std())
    if r_std < 1e-6:
        return 0.0
    rb = (rb - rb.mean()) / r_std * sb.std() + sb.mean()
    return ssim(rb.astype(np.float32), sb)


def cell_structure(luma: NDArray[np.float32], cell_w: int, cell_h: int) -> tuple[NDArray[np.float64], ...]:
    """Per-cell (energy per pixel, coherence 0..1, gradient orientation in radians 0..pi)."""
    smooth = cv2.GaussianBlur(luma, (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    rows, cols = luma.shape[0] // cell_h, luma.shape[1] // cell_w

    def per_cell(x: NDArray[Any]) -> NDArray[np.float64]:
        x = x[: rows * cell_h, : cols * cell_w].astype(np.float64)
        return x.reshape(rows, cell_h, cols, cell_w).mean(axis=(1, 3))  # type: ignore[no-any-return]

    jxx, jyy, jxy = per_cell(gx * gx), per_cell(gy * gy), per_cell(gx * gy)
    energy = jxx + jyy
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / np.maximum(energy, 1e-12)
    angle = np.mod(0.5 * np.arctan2(2 * jxy, jxx - jyy), np.pi)
    return energy, coherence, angle


def edge_cells(
    luma: NDArray[np.float32], cell_w: int, cell_h: int
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    energy, coherence, angle = cell_structure(luma, cell_w, cell_h)
    threshold = max(ENERGY_REL * float(np.percentile(energy, 99)), ENERGY_FLOOR)
    return (coherence >= COHERENCE_MIN) & (energy >= threshold), angle


def _matched(
    a_mask: NDArray[np.bool_],
    a_angle: NDArray[np.float64],
    b_mask: NDArray[np.bool_],
    b_angle: NDArray[np.float64],
) -> NDArray[np.bool_]:
    """Cells of `a` that have a `b` cell within one cell whose orientation is within tolerance."""
    tol = np.deg2rad(ANGLE_TOL_DEG)
    rows, cols = a_mask.shape
    pad_mask = np.pad(b_mask, 1)
    pad_angle = np.pad(b_angle, 1)
    hit = np.zeros_like(a_mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            m = pad_mask[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
            ang = pad_angle[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
            diff = np.abs(a_angle - ang)
            diff = np.minimum(diff, np.pi - diff)
            hit |= m & (diff <= tol)
    return hit & a_mask


def edge_f1(
    render: NDArray[np.float32], source: NDArray[np.float32], cell_w: int = 8, cell_h: int = 16
) -> EdgeScore:
    s_mask, s_angle = edge_cells(source, cell_w, cell_h)
    r_mask, r_angle = edge_cells(render, cell_w, cell_h)
    n_s, n_r = int(s_mask.sum()), int(r_mask.sum())
    recall = float(_matched(s_mask, s_angle, r_mask, r_angle).sum()) / n_s if n_s else 0.0
    precision = float(_matched(r_mask, r_angle, s_mask, s_angle).sum()) / n_r if n_r else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return EdgeScore(f1, precision, recall, n_s, n_r)


def flicker(glyphs_a: NDArray[Any], glyphs_b: NDArray[Any]) -> float:
    """Fraction of cells whose glyph differs between two renders of the same scene."""
    return float(np.mean(np.asarray(glyphs_a) != np.asarray(glyphs_b)))


def add_noise(image: NDArray[np.uint8], seed: int, sigma: float = NOISE_SIGMA) -> NDArray[np.uint8]:
    """One noise realisation of `image` (Gaussian, 8-bit units)."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def delta_e(render_rgb: NDArray[Any], source_rgb: NDArray[Any], cell_w: int = 8, cell_h: int = 16) -> float:
    """Mean CIE76 colour difference of the half-cell-blurred images (both RGB, same size)."""

    def lab(x: NDArray[np.uint8]) -> NDArray[np.float32]:
        blurred = _blur_half_cell(x.astype(np.float32) / 255.0, cell_w, cell_h)
        return cv2.cvtColor(np.clip(blurred, 0, 1), cv2.COLOR_RGB2Lab)  # type: ignore[return-value]

    diff = lab(render_rgb) - lab(source_rgb)
    return float(np.sqrt((diff**2).sum(axis=2)).mean())
