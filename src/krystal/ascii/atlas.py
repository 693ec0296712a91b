"""Glyph atlas: each glyph of a monospace font rendered into a cell (8x16 px by default).

Used to calibrate ramps by real ink coverage, to draw text back to pixels (quality metric, the
rendered Image for rqt) and to train the learned glyph matcher. Fonts come from the machine
(DejaVu Sans Mono from Debian's fonts-dejavu-core, or whatever fontconfig calls monospace): no download.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

PRINTABLE_ASCII = "".join(chr(c) for c in range(32, 127))
CELL_W, CELL_H = 8, 16
_KNOWN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/usr/share/fonts/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
)
_SUPERSAMPLE = 4


class FontNotFoundError(RuntimeError):
    """No monospace TrueType font on this machine."""


def find_monospace_font() -> Path:
    """KRYSTAL_FONT if set, else a known DejaVu/Liberation path, else fontconfig's monospace."""
    env = os.environ.get("KRYSTAL_FONT")
    if env:
        if Path(env).is_file():
            return Path(env)
        raise FontNotFoundError(f"KRYSTAL_FONT={env} is not a file")
    for path in _KNOWN_FONTS:
        if Path(path).is_file():
            return Path(path)
    if shutil.which("fc-match"):
        out = subprocess.run(
            ["fc-match", "-f", "%{file}", "monospace"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if out.endswith((".ttf", ".otf")) and Path(out).is_file():
            return Path(out)
    raise FontNotFoundError("no monospace font found: install fonts-dejavu-core or set KRYSTAL_FONT")


@dataclass(frozen=True)
class GlyphAtlas:
    """Glyph bitmaps (ink coverage 0..1), one per character of `glyphs`, all cell_h x cell_w."""

    glyphs: str
    bitmaps: NDArray[np.float32]  # (N, cell_h, cell_w)
    font: str

    @property
    def cell_w(self) -> int:
        return int(self.bitmaps.shape[2])

    @property
    def cell_h(self) -> int:
        return int(self.bitmaps.shape[1])

    @property
    def coverage(self) -> NDArray[np.float32]:
        """Mean ink per glyph: how bright each glyph looks from afar."""
        return self.bitmaps.mean(axis=(1, 2))  # type: ignore[no-any-return]

    def indices(self, codes: NDArray[Any]) -> NDArray[np.intp]:
        """Atlas index of each code point; unknown characters map to the space (or glyph 0)."""
        points = np.fromiter((ord(c) for c in self.glyphs), dtype=np.int64, count=len(self.glyphs))
        order = np.argsort(points)
        sorted_points = points[order]
        flat = np.asarray(codes, dtype=np.int64)
        pos = np.clip(np.searchsorted(sorted_points, flat), 0, len(points) - 1)
        found = sorted_points[pos] == flat
        blank = self.glyphs.find(" ")
        return np.where(found, order[pos], max(blank, 0)).astype(np.intp)  # type: ignore[no-any-return]

    def subset(self, glyphs: str) -> GlyphAtlas:
        idx = self.indices(np.array([ord(c) for c in glyphs]))
        return GlyphAtlas(glyphs, self.bitmaps[idx], self.font)


def render_glyphs(
    glyphs: str, font_path: Path, cell_w: int = CELL_W, cell_h: int = CELL_H
) -> NDArray[np.float32]:
    """Bitmaps of `glyphs`, drawn at 4x and area-averaged so thin strokes keep their true coverage."""
    from PIL import Image, ImageDraw, ImageFont

    s = _SUPERSAMPLE
    probe = ImageFont.truetype(str(font_path), 100)
    ascent, descent = probe.getmetrics()
    advance = probe.getlength("M")
    # Whole points: Pillow < 10.1 (Ubuntu 22.04's 9.0.1) refuses a float size with TypeError.
    size = int(100 * min(cell_h * s / (ascent + descent), cell_w * s / advance))
    font = ImageFont.truetype(str(font_path), size)
    ascent, descent = font.getmetrics()
    out = np.zeros((len(glyphs), cell_h, cell_w), np.float32)
    for i, ch in enumerate(glyphs):
        canvas = Image.new("L", (cell_w * s, cell_h * s), 0)
        draw = ImageDraw.Draw(canvas)
        x = (cell_w * s - font.getlength(ch)) / 2
        y = (cell_h * s - (ascent + descent)) / 2 + ascent
        draw.text((x, y), ch, fill=255, font=font, anchor="ls")
        big = np.asarray(canvas, dtype=np.float32) / 255.0
        out[i] = cv2.resize(big, (cell_w, cell_h), interpolation=cv2.INTER_AREA)
    return out


@lru_cache(maxsize=16)
def load_atlas(
    glyphs: str = PRINTABLE_ASCII, cell_w: int = CELL_W, cell_h: int = CELL_H, font: str | None = None
) -> GlyphAtlas:
    path = Path(font) if font else find_monospace_font()
    return GlyphAtlas(glyphs, render_glyphs(glyphs, path, cell_w, cell_h), str(path))
