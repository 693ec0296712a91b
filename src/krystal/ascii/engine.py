"""The ASCII engine: one object per renderer that turns frames into glyph grids in a Style.

mode     the look: ramp | edges | sketch | cyberpunk (colour) | glitch
kernel   how a cell's glyph is picked where no edge glyph goes: luminance (calibrated ramp) or
         learned (the glyph matcher of learned.py)
kernel_size  Sobel size 3/5/7 for the edge glyphs: the quality/cost knob
State (tone map, hysteresis, glitch history) lives here, so consecutive frames are stable.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from krystal.ascii.atlas import FontNotFoundError, GlyphAtlas, load_atlas
from krystal.ascii.color import Fit256State, cell_contrast, fit_256, saturate, split_colours
from krystal.ascii.decode import to_8bit
from krystal.ascii.edges import EDGE_GLYPHS, KERNEL_SIZES, EdgeGlyphs, LineGlyphs, edge_field
from krystal.ascii.glitch import Glitch
from krystal.ascii.grid import Samples, sample
from krystal.ascii.ramp import DEFAULT_CHARSET, Ramp, ToneMap, check_charset, codes_to_lines

MODES = ("ramp", "edges", "sketch", "cyberpunk", "glitch")
COLOUR_MODES = ("cyberpunk",)
KERNELS = ("luminance", "learned")
COLOR_DEPTHS = ("truecolor", "256")
SKETCH_CHARSET = " .,:;io*"  # light tone under the lines, no line glyphs: best SSIM at equal F1
SUB_X, SUB_Y = 2, 4  # samples per cell
LINE_LIKE = set("-=_|/\\~!()<>[]")  # reserved for edges in the edge modes


@dataclass(frozen=True)
class Style:
    mode: str = "ramp"
    kernel: str = "luminance"
    kernel_size: int = 3
    columns: int = 120
    rows: int = 45
    charset: str = DEFAULT_CHARSET
    invert: bool = False
    color_depth: str = "truecolor"
    auto_contrast: bool = True
    hysteresis: float = 0.02  # luma margin a new ramp level must win by
    edge_threshold: float = 0.25  # fraction of the frame's strong-edge energy
    saturation: float = 1.3  # cyberpunk chroma gain (luma kept)
    glyph_contrast: float = 0.6  # cyberpunk: glyphs this much brighter than their cell, blend kept

    def check(self) -> str | None:
        """Why this style cannot be rendered, or None."""
        if self.mode not in MODES:
            return f"mode {self.mode!r} is not one of {', '.join(MODES)}"
        if self.kernel not in KERNELS:
            return f"kernel {self.kernel!r} is not one of {', '.join(KERNELS)}"
        if self.kernel_size not in KERNEL_SIZES:
            return f"kernel_size {self.kernel_size} is not one of {KERNEL_SIZES}"
        if self.color_depth not in COLOR_DEPTHS:
            return f"color_depth {self.color_depth!r} is not one of {', '.join(COLOR_DEPTHS)}"
        if self.columns < 1 or self.rows < 1:
            return "the grid needs at least one column and one row"
        return check_charset(self.charset)


@dataclass(frozen=True)
class Render:
    codes: NDArray[np.uint32]  # rows x columns code points
    foreground: NDArray[np.uint8] | None = None  # rows x columns x RGB, colour modes
    background: NDArray[np.uint8] | None = None
    kernel: str = "luminance"

    def lines(self) -> list[str]:
        return codes_to_lines(self.codes)


def fill_charset(charset: str, mode: str) -> str:
    """The ramp between edges: in the edge modes a line glyph must mean an edge, so the charset's
    line-like glyphs are left out (unless that would leave fewer than two)."""
    if mode == "ramp":
        return charset
    kept = "".join(c for c in charset if c not in LINE_LIKE)
    return kept if len(kept) >= 2 else charset


def default_atlas() -> tuple[GlyphAtlas | None, str | None]:
    """The machine's atlas, or None and why (the node reports it on /rosout and /diagnostics)."""
    try:
        return load_atlas(), None
    except (FontNotFoundError, OSError, ImportError) as exc:
        return None, f"no glyph atlas ({exc}): ramps use even levels, edge glyphs nominal angles"


class Engine:
    def __init__(
        self, style: Style | None = None, atlas: GlyphAtlas | str | None = "auto", seed: int | None = None
    ) -> None:
        self.atlas_error: str | None = None
        if isinstance(atlas, str):
            self.atlas, self.atlas_error = default_atlas()
        else:
            self.atlas = atlas
        self._seed = seed
        self.style = style or Style()
        reason = self.style.check()
        if reason:
            raise ValueError(reason)
        self.energy = 0.0
        self._learned: Any = None
        self._learned_error: str | None = None
        self.model_path = ""  # learned matcher weights; empty: $KRYSTAL_GLYPH_MODEL or the shipped one
        self._build()

    def _coverage(self, glyphs: str) -> NDArray[np.float32] | None:
        if self.atlas is None or any(g not in self.atlas.glyphs for g in glyphs):
            return None
        return self.atlas.subset(glyphs).coverage

    def _build(self) -> None:
        st = self.style
        fill = fill_charset(st.charset, st.mode)
        cov = self._coverage(fill)
        self.ramp = Ramp(fill, st.invert, cov, st.hysteresis)
        self.sketch_ramp = Ramp(SKETCH_CHARSET, st.invert, self._coverage(SKETCH_CHARSET), st.hysteresis)
        self.tone = ToneMap(st.auto_contrast)
        ink_scale = float(cov.max()) if cov is not None else 1.0
        if self.atlas is not None and all(g in self.atlas.glyphs for g in EDGE_GLYPHS):
            lines = LineGlyphs.measured(self.atlas.subset(EDGE_GLYPHS).bitmaps, EDGE_GLYPHS, ink_scale)
        else:
            lines = LineGlyphs.nominal()
        threshold = st.edge_threshold * (0.6 if st.mode == "sketch" else 1.0)
        self.edges = EdgeGlyphs(lines, threshold=threshold)
        self.glitch = Glitch(seed=self._seed)
        self._ink = self._glyph_ink()
        self._fit_256: Fit256State | None = None

    def _glyph_ink(self) -> NDArray[np.float32]:
        """Absolute ink coverage by code point (0..255; others 0.15) for the colour split."""
        ink = np.full(256, 0.15, np.float32)
        if self.atlas is not None:
            for g, c in zip(self.atlas.glyphs, self.atlas.coverage, strict=True):
                if ord(g) < 256:
                    ink[ord(g)] = c
        return ink

    def reset(self) -> None:
        """Fresh state: a one-shot render (gateway upload) must not inherit another frame's."""
        self._build()

    def set_style(self, style: Style) -> None:
        reason = style.check()
        if reason:
            raise ValueError(reason)
        old, self.style = self.style, style
        if replace(old, columns=style.columns, rows=style.rows) != style:
            self._build()  # different look: fresh components and state
        elif (old.columns, old.rows) != (style.columns, style.rows):
            self.ramp.reset()
            self.sketch_ramp.reset()
            self.edges.reset()
            self.glitch.reset()
            self._fit_256 = None

    def set_model(self, path: str) -> None:
        """Use the learned matcher in `path` (loaded on next use); a deployment changes it live."""
        self.model_path, self._learned, self._learned_error = path, None, None

    def learned_matcher(self) -> Any:
        """The learned glyph matcher, loaded on first use; None if unavailable (learned_error says why)."""
        if self._learned is None and self._learned_error is None:
            try:
                from krystal.ascii.learned import load_matcher

                self._learned = load_matcher(self.model_path or None)
            except (OSError, ValueError, KeyError) as exc:
                self._learned_error = f"learned kernel unavailable ({exc}); using luminance"
        return self._learned

    @property
    def learned_error(self) -> str | None:
        return self._learned_error

    def kernel_in_use(self) -> str:
        """The kernel the next frame is drawn with: the style's, unless it falls back to luminance."""
        st = self.style
        if st.mode == "sketch" or st.kernel != "learned" or self.learned_matcher() is None:
            return "luminance"
        return "learned"

    def render(self, pixels: NDArray[Any], encoding: str) -> Render:
        st = self.style
        colour = st.mode in COLOUR_MODES
        image, order = to_8bit(pixels, encoding, colour)
        s = sample(image, order, st.columns, st.rows, sub_x=SUB_X, sub_y=SUB_Y, colour=colour)
        luma = self.tone(s.cell_mean_luma())
        codes, kernel = self._fill(s, luma)
        if st.mode != "ramp":
            mask, line_codes = self.edges.select(edge_field(s, st.kernel_size), luma)
            codes = np.where(mask, line_codes, codes)
        if st.mode == "glitch":
            codes, _ = self.glitch.apply(codes, self.energy)
        if colour:
            fg, bg = self._colours(s, codes)
            return Render(codes, fg, bg, kernel)
        return Render(codes, kernel=kernel)

    def _fill(self, s: Samples, luma: NDArray[np.float32]) -> tuple[NDArray[np.uint32], str]:
        """Glyphs between edges, and the kernel that chose them (luminance if learned is missing)."""
        st = self.style
        if st.mode == "sketch":
            return self.sketch_ramp.glyphs(luma), "luminance"
        if self.kernel_in_use() != "learned":
            return self.ramp.glyphs(luma), "luminance"
        matcher = self.learned_matcher()
        base = self.ramp.glyphs(luma) if matcher.info.flat_cells == "ramp" else None
        return matcher.glyphs(self.tone.apply(s.luma), s.sub_x, s.sub_y, base), "learned"

    def _colours(self, s: Samples, codes: NDArray[np.uint32]) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        mean, contrast = cell_contrast(s)
        mean = np.clip(saturate(mean, self.style.saturation), 0, 255)
        contrast = saturate(contrast, self.style.saturation) + np.float32(self.style.glyph_contrast) * mean
        coverage = self._ink[np.minimum(codes, 255)]
        fg, bg = split_colours(mean, contrast, coverage)
        if self.style.color_depth == "256":
            fg, bg, self._fit_256 = fit_256(mean, bg, coverage, self._fit_256)
        return fg, bg
