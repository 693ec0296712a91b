"""Live terminal view: redraws in place, never clears the screen between frames (no flicker).

Frames are wrapped in synchronized-output mode (DEC 2026) so terminals that support it swap the whole
frame at once; others ignore the sequence.
"""

from __future__ import annotations

import shutil
from typing import TextIO

import numpy as np
from numpy.typing import NDArray

from krystal.ascii.color import to_256
from krystal.ascii.ramp import codes_to_lines

ESC = "\x1b"
SYNC_BEGIN, SYNC_END = f"{ESC}[?2026h", f"{ESC}[?2026l"
ALT_SCREEN_ON, ALT_SCREEN_OFF = f"{ESC}[?1049h", f"{ESC}[?1049l"
CURSOR_HIDE, CURSOR_SHOW = f"{ESC}[?25l", f"{ESC}[?25h"
HOME, CLEAR_EOL, CLEAR_BELOW = f"{ESC}[H", f"{ESC}[K", f"{ESC}[J"


def terminal_size(default: tuple[int, int] = (80, 24)) -> tuple[int, int]:
    size = shutil.get_terminal_size(default)
    return size.columns, size.lines


def fit_grid(term_columns: int, term_rows: int, aspect: float = 4 / 3) -> tuple[int, int]:
    """Grid that fills the terminal (one row kept for the status line) for an image of `aspect`.

    Terminal cells are about twice as tall as wide, so a row covers two columns' worth of height.
    """
    rows = max(2, term_rows - 1)
    columns = max(8, term_columns)
    if columns / (rows * 2.0) > aspect:
        columns = max(8, int(rows * 2.0 * aspect))
    else:
        rows = max(2, int(columns / (2.0 * aspect)))
    return columns, rows


class TerminalView:
    """Draws frames of text plus a status line at the top left of a terminal."""

    def __init__(self, out: TextIO, alternate_screen: bool = True) -> None:
        self._out = out
        self._alt = alternate_screen
        self._entered = False

    def enter(self) -> None:
        prefix = ALT_SCREEN_ON if self._alt else ""
        self._out.write(prefix + CURSOR_HIDE + HOME + CLEAR_BELOW)
        self._out.flush()
        self._entered = True

    def leave(self) -> None:
        if not self._entered:
            return
        suffix = ALT_SCREEN_OFF if self._alt else ""
        self._out.write(SYNC_END + CURSOR_SHOW + suffix)
        self._out.flush()
        self._entered = False

    def compose(
        self, lines: list[str], status: str, size: tuple[int, int] | None = None, clip: bool = True
    ) -> str:
        """The bytes of one frame: lines clipped to the terminal, then the status line.

        clip=False for lines holding escape sequences: the caller clipped their cells already.
        """
        columns, rows = size or terminal_size()
        body = [(line[:columns] if clip else line) + CLEAR_EOL for line in lines[: max(0, rows - 1)]]
        body.append(status[:columns] + CLEAR_EOL)
        return SYNC_BEGIN + HOME + "\r\n".join(body) + CLEAR_BELOW + SYNC_END

    def draw(self, lines: list[str], status: str, clip: bool = True) -> None:
        self._out.write(self.compose(lines, status, clip=clip))
        self._out.flush()


COLOR_MODES = ("truecolor", "256", "none")
RESET = f"{ESC}[0m"
_DIGITS = np.array([[ord(c) for c in f"{v:03d}"] for v in range(256)], np.uint8)


def ansi_lines(
    codes: NDArray[np.uint32],
    foreground: NDArray[np.uint8] | None,
    background: NDArray[np.uint8] | None,
    depth: str = "truecolor",
) -> list[str]:
    """Lines with SGR colour codes, a sequence only where a cell's colours differ from its left
    neighbour's. Built in NumPy from digit tables: no Python loop per cell.

    Every cell is laid out at a fixed width (sequence, then glyph), cells that repeat their
    neighbour's colours are blanked to the glyph, and one mask drops the blanks.
    """
    if foreground is None or depth == "none":
        return codes_to_lines(codes)
    rows, cols = codes.shape
    if depth == "256":
        fg = to_256(foreground)[..., None]
        bg = to_256(background)[..., None] if background is not None else None
        fg_tpl, bg_tpl = "\x1b[38;5;000", ";48;5;000"
    else:
        fg, bg = foreground, background
        fg_tpl, bg_tpl = "\x1b[38;2;000;000;000", ";48;2;000;000;000"
    template = fg_tpl + (bg_tpl if bg is not None else "") + "m"
    wide = int(codes.max(initial=0)) > 127  # non-ASCII glyphs need code points, not bytes
    dtype = np.uint32 if wide else np.uint8
    width = len(template) + 1
    cells = np.empty((rows, cols, width), dtype)
    cells[...] = np.frombuffer((template + " ").encode("ascii"), np.uint8).astype(dtype)
    channels = fg.shape[-1]
    for k in range(channels):
        start = len(fg_tpl) - 4 * (channels - k) + 1
        cells[..., start : start + 3] = _DIGITS[fg[..., k]]
    if bg is not None:
        for k in range(channels):
            start = len(fg_tpl) + len(bg_tpl) - 4 * (channels - k) + 1
            cells[..., start : start + 3] = _DIGITS[bg[..., k]]
    cells[..., -1] = codes
    same = np.zeros((rows, cols), bool)
    same[:, 1:] = (foreground[:, 1:] == foreground[:, :-1]).all(axis=-1)
    if background is not None:
        same[:, 1:] &= (background[:, 1:] == background[:, :-1]).all(axis=-1)
    keep = np.ones((rows, cols, width), bool)
    keep[same, :-1] = False
    flat = cells[keep]
    ends = np.cumsum(keep.reshape(rows, -1).sum(axis=1)).tolist()
    text = flat.view(f"<U{flat.size}")[0] if wide else flat.tobytes().decode("ascii")
    starts = [0, *ends[:-1]]
    return [text[a:b] + RESET for a, b in zip(starts, ends, strict=True)]
