"""Luminance ramp: each cell's brightness picks a glyph, calibrated by the glyphs' real ink.

With a glyph atlas the levels are the glyphs' measured coverages (so '@' really is the brightest),
without one they are evenly spaced in the given order. Hysteresis keeps a cell's glyph until another
level is better by a margin, so sensor noise does not flicker a static scene.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_CHARSET = " .:-=+*#%@"
_LUT_SIZE = 1024


def check_charset(charset: str) -> str | None:
    """Why `charset` cannot be a ramp, or None."""
    if len(charset) < 2:
        return "charset needs at least two glyphs, darkest first"
    if any(not c.isprintable() for c in charset):
        return "charset must hold printable, single-cell glyphs"
    if len(set(charset)) != len(charset):
        return "charset repeats a glyph"
    return None


class Ramp:
    """Maps cell luma (0..1) to glyphs of `charset`.

    coverage: ink of each glyph of `charset` (atlas), or None for evenly spaced levels in the given
    order. hysteresis: luma margin by which a new level must beat the cell's current one.
    """

    def __init__(
        self,
        charset: str = DEFAULT_CHARSET,
        invert: bool = False,
        coverage: NDArray[Any] | None = None,
        hysteresis: float = 0.0,
    ) -> None:
        reason = check_charset(charset)
        if reason:
            raise ValueError(reason)
        self.charset = charset
        n = len(charset)
        if coverage is None:
            targets = np.linspace(0.0, 1.0, n, dtype=np.float32)
        else:
            cov = np.asarray(coverage, dtype=np.float32)
            span = float(cov.max() - cov.min())
            targets = (cov - cov.min()) / span if span > 0 else np.linspace(0.0, 1.0, n, dtype=np.float32)
        if invert:
            targets = 1.0 - targets
        order = np.argsort(targets, kind="stable")
        self.targets = targets[order]  # ascending brightness
        self.codes = np.array([ord(charset[i]) for i in order], np.uint32)
        mids = (self.targets[1:] + self.targets[:-1]) / 2
        bins = (np.arange(_LUT_SIZE, dtype=np.float32) + 0.5) / _LUT_SIZE
        self._lut = np.searchsorted(mids, bins).astype(np.intp)  # luma bin -> nearest level
        self.hysteresis = float(hysteresis)
        self._previous: NDArray[np.intp] | None = None

    def reset(self) -> None:
        self._previous = None

    def levels(self, luma: NDArray[np.float32]) -> NDArray[np.intp]:
        """Level index (ascending brightness) per cell, with hysteresis against the last call."""
        bins = np.clip((luma * _LUT_SIZE).astype(np.intp), 0, _LUT_SIZE - 1)
        level = self._lut[bins]
        prev = self._previous
        if self.hysteresis > 0 and prev is not None and prev.shape == level.shape:
            gain = np.abs(luma - self.targets[prev]) - np.abs(luma - self.targets[level])
            level = np.where(gain > self.hysteresis, level, prev)
        self._previous = level
        return level  # type: ignore[no-any-return]

    def glyphs(self, luma: NDArray[np.float32]) -> NDArray[np.uint32]:
        return self.codes[self.levels(luma)]  # type: ignore[no-any-return]


class ToneMap:
    """Per-frame contrast stretch (1st..99th percentile of cell luma), smoothed so it never pumps."""

    def __init__(self, enabled: bool = True, smoothing: float = 0.15) -> None:
        self.enabled, self.smoothing = enabled, smoothing
        self._lo: float | None = None
        self._hi: float | None = None

    def reset(self) -> None:
        self._lo = self._hi = None

    def __call__(self, luma: NDArray[np.float32]) -> NDArray[np.float32]:
        if not self.enabled:
            return luma
        hist = np.bincount(np.clip((luma * 255).astype(np.intp), 0, 255).ravel(), minlength=256)
        cdf = np.cumsum(hist) / max(1, luma.size)
        lo, hi = float(np.searchsorted(cdf, 0.01)) / 255, float(np.searchsorted(cdf, 0.99)) / 255
        if hi - lo < 0.1:  # a nearly flat frame: do not amplify noise
            mid = (hi + lo) / 2
            lo, hi = max(0.0, mid - 0.05), min(1.0, mid + 0.05)
        if self._lo is None or self._hi is None:
            self._lo, self._hi = lo, hi
        else:
            a = self.smoothing
            self._lo += a * (lo - self._lo)
            self._hi += a * (hi - self._hi)
        return self.apply(luma)

    def apply(self, luma: NDArray[np.float32]) -> NDArray[np.float32]:
        """The current stretch, without updating it (e.g. for the sub-cell samples of a frame)."""
        if not self.enabled or self._lo is None or self._hi is None:
            return luma
        scale = np.float32(1.0 / max(self._hi - self._lo, 1e-3))
        return np.clip((luma - np.float32(self._lo)) * scale, 0.0, 1.0)  # type: ignore[no-any-return]


def codes_to_lines(codes: NDArray[np.uint32]) -> list[str]:
    """rows x columns uint32 code points to one str per row, without a Python loop per cell."""
    codes = np.ascontiguousarray(codes, dtype=np.uint32)
    return codes.view(f"<U{codes.shape[1]}").ravel().tolist()  # type: ignore[no-any-return]
