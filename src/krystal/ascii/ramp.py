"""Luminance-ramp renderer: each cell's mean brightness picks a glyph from a dark-to-light ramp."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

DEFAULT_CHARSET = " .:-=+*#%@"


def check_charset(charset: str) -> str | None:
    """Why `charset` cannot be a ramp, or None."""
    if len(charset) < 2:
        return "charset needs at least two glyphs, darkest first"
    if any(not c.isprintable() for c in charset):
        return "charset must hold printable, single-cell glyphs"
    return None


class RampRenderer:
    """Renders luma to `rows` strings of `columns` glyphs (cell mean by area averaging)."""

    def __init__(self, charset: str = DEFAULT_CHARSET, invert: bool = False) -> None:
        reason = check_charset(charset)
        if reason:
            raise ValueError(reason)
        self.charset = charset
        codes = np.array([ord(c) for c in (charset[::-1] if invert else charset)], np.uint32)
        levels = np.minimum(np.arange(256) * len(codes) // 256, len(codes) - 1)
        self._lut = codes[levels]  # luma -> code point, so one gather renders the whole grid

    def cells(self, luma: NDArray[Any], columns: int, rows: int) -> NDArray[Any]:
        """Mean luma per cell, rows x columns uint8."""
        return cv2.resize(luma, (columns, rows), interpolation=cv2.INTER_AREA)  # type: ignore[return-value]

    def render(self, luma: NDArray[Any], columns: int, rows: int) -> list[str]:
        codes = self._lut[self.cells(luma, columns, rows)]
        return codes_to_lines(codes)


def codes_to_lines(codes: NDArray[np.uint32]) -> list[str]:
    """rows x columns uint32 code points to one str per row, without a Python loop per cell."""
    codes = np.ascontiguousarray(codes, dtype=np.uint32)
    return codes.view(f"<U{codes.shape[1]}").ravel().tolist()  # type: ignore[no-any-return]
