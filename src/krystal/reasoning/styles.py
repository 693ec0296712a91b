"""The style ladder: every candidate style, most expensive first, each step down cheaper.

Step-down order (issue 9): smaller kernel first, then a cheaper mode, a smaller grid last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Per-mode quality, the mean of blurred SSIM and edge F1 that bench/ascii_bench.py measured with
# src/krystal/ascii/quality.py (README table, midpoints). glitch is edges degraded on purpose.
MODE_QUALITY: dict[str, float] = {
    "ramp": 0.60,
    "edges": 0.87,
    "sketch": 0.85,
    "cyberpunk": 0.87,
    "glitch": 0.80,
}
LEARNED_BONUS = 0.08  # learned kernel: edge F1 0.59-0.75 against 0.15-0.35 for the ramp
KERNEL_SIZE_BONUS = 0.01  # per size step above 3: slightly cleaner edges


@dataclass(frozen=True)
class Style:
    """One candidate: what a StyleDecision carries."""

    mode: str
    kernel: str
    kernel_size: int
    columns: int
    rows: int

    @property
    def cells(self) -> int:
        return self.columns * self.rows

    @property
    def key(self) -> tuple[str, str, int]:
        """What the cost depends on besides the grid (the predictor keeps one model per key)."""
        return (self.mode, self.kernel, 0 if self.mode == "ramp" else self.kernel_size)

    def rendered_as(self, mode: str, kernel_size: int, columns: int, rows: int) -> bool:
        """A frame with these fields was rendered in this style (the ramp reports kernel size 0;
        the kernel name is not compared: a renderer may fall back from the learned one)."""
        return (
            mode == self.mode
            and (mode == "ramp" or kernel_size == self.kernel_size)
            and columns == self.columns
            and rows == self.rows
        )

    def label(self) -> str:
        return f"{self.mode}/{self.kernel}/k{self.kernel_size} {self.columns}x{self.rows}"


def quality(style: Style, base_cells: int) -> float:
    """0..1: measured per-mode quality, a little more for the learned kernel and bigger kernels,
    scaled by the square root of the grid kept (fewer cells, less detail)."""
    q = MODE_QUALITY.get(style.mode, 0.5)
    if style.kernel == "learned":
        q += LEARNED_BONUS
    q += KERNEL_SIZE_BONUS * (style.kernel_size - 3) / 2
    scale = (style.cells / base_cells) ** 0.5 if base_cells > 0 else 1.0
    return min(1.0, q) * min(1.0, scale)


def ladder(
    modes: Sequence[str],
    *,
    kernel: str,
    kernel_sizes: Sequence[int],
    columns: int,
    rows: int,
    grid_scales: Sequence[float],
) -> tuple[Style, ...]:
    """modes in preference order; the ramp has no edge kernel, so it takes one size only."""
    sizes = sorted({int(k) for k in kernel_sizes}, reverse=True) or [3]
    out: list[Style] = []
    for mode in modes:
        for size in sizes if mode != "ramp" else sizes[-1:]:
            out.append(Style(mode, kernel, size, columns, rows))
    if out:
        last = out[-1]
        for scale in sorted((s for s in grid_scales if 0 < s < 1), reverse=True):
            out.append(
                Style(
                    last.mode,
                    last.kernel,
                    last.kernel_size,
                    max(8, round(columns * scale)),
                    max(2, round(rows * scale)),
                )
            )
    return tuple(out)


def mode_floor(styles: Sequence[Style]) -> int:
    """Index of the first style of the second mode: 'cheaper mode' for the thermal rule."""
    if not styles:
        return 0
    first = styles[0].mode
    for i, s in enumerate(styles):
        if s.mode != first:
            return i
    return 0
