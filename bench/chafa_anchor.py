"""The anchor: libchafa in-process through chafa.py, and the chafa CLI, on the same frames."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


def set_single_thread() -> None:
    from chafa.libraries import _Chafa

    _Chafa.chafa_set_n_threads.argtypes = [ctypes.c_int]
    _Chafa.chafa_set_n_threads(1)


@dataclass(frozen=True)
class ChafaGrid:
    codes: NDArray[np.uint32]  # rows x columns code points
    foreground: NDArray[np.uint8]  # rows x columns x 3 RGB
    background: NDArray[np.uint8] | None


class ChafaRenderer:
    """libchafa with ASCII symbols; mode "fgbg" (mono), "truecolor" or "256" (xterm-256 indexed);
    work 1..9 as the CLI's --work."""

    def __init__(self, columns: int, rows: int, mode: str = "fgbg", work: int = 1) -> None:
        from chafa import Canvas, CanvasConfig, CanvasMode, SymbolMap, SymbolTags

        config = CanvasConfig()
        config.width, config.height = columns, rows
        config.canvas_mode = {
            "fgbg": CanvasMode.CHAFA_CANVAS_MODE_FGBG,
            "truecolor": CanvasMode.CHAFA_CANVAS_MODE_TRUECOLOR,
            "256": CanvasMode.CHAFA_CANVAS_MODE_INDEXED_256,
        }[mode]
        config.work_factor = (work - 1) / 8.0
        symbols = SymbolMap()
        symbols.add_by_tags(SymbolTags.CHAFA_SYMBOL_TAG_ASCII)
        config.set_symbol_map(symbols)
        self.columns, self.rows, self.mode = columns, rows, mode
        self._canvas = Canvas(config)

    def render(self, bgr: NDArray[Any]) -> bytes:
        """Draw a bgr8 frame and print it as terminal bytes (what a user of chafa gets)."""
        from chafa import PixelType

        h, w = bgr.shape[:2]
        buf = (ctypes.c_uint8 * bgr.size).from_buffer(np.ascontiguousarray(bgr).data)
        self._canvas.draw_all_pixels(PixelType.CHAFA_PIXEL_BGR8, buf, w, h, w * 3)
        return bytes(self._canvas.print())

    def grid(self) -> ChafaGrid:
        """The glyphs and colours of the last render (slow: read cell by cell, outside timing)."""
        codes = np.zeros((self.rows, self.columns), np.uint32)
        fg = np.zeros((self.rows, self.columns, 3), np.uint8)
        bg = np.zeros((self.rows, self.columns, 3), np.uint8)
        for y in range(self.rows):
            for x in range(self.columns):
                cell = self._canvas[y, x]
                codes[y, x] = ord(cell.char)
                f, b = cell.fg_color, cell.bg_color
                fg[y, x] = f if f is not None else (255, 255, 255)
                bg[y, x] = b if b is not None else (0, 0, 0)
        return ChafaGrid(codes, fg, bg if self.mode != "fgbg" else None)


def cli_available() -> bool:
    return shutil.which("chafa") is not None


def cli_render(png_path: str, columns: int, rows: int, mode: str = "fgbg", work: int = 1) -> bytes:
    """The chafa command: start-up and decode included, as a user calling it per frame pays them."""
    colors = {"fgbg": "none", "truecolor": "full", "256": "256"}[mode]
    return subprocess.run(
        [
            "chafa",
            "--symbols",
            "ascii",
            "--colors",
            colors,
            "--work",
            str(work),
            "--threads",
            "1",
            "--size",
            f"{columns}x{rows}",
            "--stretch",
            "--animate",
            "off",
            png_path,
        ],
        capture_output=True,
        check=True,
    ).stdout
