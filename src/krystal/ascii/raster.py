"""Text grids back to pixels with a glyph atlas: for the quality metric and the rendered Image."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from krystal.ascii.atlas import GlyphAtlas


def lines_to_codes(lines: list[str]) -> NDArray[np.uint32]:
    """rows x columns code points of equal-length lines."""
    if not lines:
        return np.zeros((0, 0), np.uint32)
    width = len(lines[0])
    if any(len(line) != width for line in lines):
        raise ValueError("lines differ in length")
    joined = "".join(lines)
    return np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).reshape(len(lines), width)


def ink(codes: NDArray[Any], atlas: GlyphAtlas) -> NDArray[np.float32]:
    """Ink coverage image (rows*cell_h, cols*cell_w) in 0..1: light glyphs on a dark terminal."""
    rows, cols = codes.shape
    tiles = atlas.bitmaps[atlas.indices(codes)]  # rows, cols, ch, cw
    return tiles.transpose(0, 2, 1, 3).reshape(rows * atlas.cell_h, cols * atlas.cell_w)


def colour(
    codes: NDArray[Any],
    atlas: GlyphAtlas,
    foreground: NDArray[np.uint8],
    background: NDArray[np.uint8] | None = None,
) -> NDArray[np.uint8]:
    """RGB image of glyphs in per-cell `foreground` colours over `background` (black when None)."""
    alpha = ink(codes, atlas)[..., None]
    ch, cw = atlas.cell_h, atlas.cell_w
    fg = np.repeat(np.repeat(foreground.astype(np.float32), ch, axis=0), cw, axis=1)
    if background is None:
        out = fg * alpha
    else:
        bg = np.repeat(np.repeat(background.astype(np.float32), ch, axis=0), cw, axis=1)
        out = bg + (fg - bg) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
