"""Live terminal view: redraws in place, never clears the screen between frames (no flicker).

Frames are wrapped in synchronized-output mode (DEC 2026) so terminals that support it swap the whole
frame at once; others ignore the sequence.
"""

from __future__ import annotations

import shutil
from typing import TextIO

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

    def compose(self, lines: list[str], status: str, size: tuple[int, int] | None = None) -> str:
        """The bytes of one frame: lines clipped to the terminal, then the status line."""
        columns, rows = size or terminal_size()
        body = [line[:columns] + CLEAR_EOL for line in lines[: max(0, rows - 1)]]
        body.append(status[:columns] + CLEAR_EOL)
        return SYNC_BEGIN + HOME + "\r\n".join(body) + CLEAR_BELOW + SYNC_END

    def draw(self, lines: list[str], status: str) -> None:
        self._out.write(self.compose(lines, status))
        self._out.flush()
