"""The ASCII engine without ROS: every mode and encoding, edge glyph orientation, stability targets,
colours that keep each cell's mean, glitch, ANSI output."""

from __future__ import annotations

import itertools
import math
import re

import cv2
import numpy as np
import pytest
from bench.scenes import photo, synthetic

from krystal.ascii import quality as q
from krystal.ascii import raster
from krystal.ascii.atlas import load_atlas
from krystal.ascii.color import palette_256, to_256
from krystal.ascii.engine import MODES, Engine, Style, fill_charset
from krystal.ascii.glitch import audio_energy
from krystal.ascii.terminal import ansi_lines
from krystal.ros.encodings import ENCODINGS

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _widen(eight: np.ndarray) -> np.ndarray:
    """8-bit to 16-bit with a low byte that is not the high one: decoding must take the high byte."""
    return (eight.astype(np.uint16) << 8) | (255 - eight).astype(np.uint16)


def _with_alpha(three: np.ndarray) -> np.ndarray:
    """A fourth channel of varying alpha, which the engine must ignore (not read as colour)."""
    alpha = np.indices(three.shape[:2]).sum(axis=0).astype(np.uint8)
    return np.dstack([three, alpha])


def _frame(encoding: str, bgr: np.ndarray) -> np.ndarray:
    """The same picture in `encoding`'s layout."""
    if encoding in ("bgr8", "8UC3"):
        return bgr
    if encoding == "rgb8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if encoding in ("bgra8", "8UC4"):
        return _with_alpha(bgr)
    if encoding == "rgba8":
        return _with_alpha(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if encoding in ("mono8", "8UC1"):
        return gray
    if encoding in ("mono16", "16UC1"):
        return _widen(gray)
    if encoding == "32FC1":
        return gray.astype(np.float32) / 255
    if encoding in ("bgr16", "rgb16", "bgra16", "rgba16"):
        return _widen(_frame(encoding.replace("16", "8"), bgr))
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
        y, u, v = yuv[..., 0], yuv[:, ::2, 1], yuv[:, ::2, 2]
        chroma = np.empty_like(y)
        chroma[:, ::2], chroma[:, 1::2] = u, v
        first, second = (chroma, y) if encoding in ("yuv422", "uyvy") else (y, chroma)
        return np.stack([first, second], axis=-1)
    raise AssertionError(encoding)


@pytest.fixture(scope="module")
def small_scene() -> np.ndarray:
    return cv2.resize(synthetic(), (640, 360), interpolation=cv2.INTER_AREA)


# A picture with known regions: dark | white | red over blue (BGR), 640x360 -> 40x12 cells
DARK = (slice(0, 12), slice(1, 12))  # (rows, columns) of cells well inside each region
WHITE = (slice(0, 12), slice(15, 26))
RED = (slice(0, 4), slice(29, 40))
BLUE = (slice(8, 12), slice(29, 40))
GREY_ENCODINGS = {"mono8", "8UC1", "mono16", "16UC1", "32FC1"}


@pytest.fixture(scope="module")
def regions() -> np.ndarray:
    img = np.zeros((360, 640, 3), np.uint8)
    img[:, :213] = 12
    img[:, 213:427] = 235
    img[:180, 427:] = (0, 0, 220)  # red: grey 66, so its cells are denser than blue's (grey 25)
    img[180:, 427:] = (220, 0, 0)
    return img


@pytest.fixture(scope="module")
def ink() -> np.ndarray:
    atlas = load_atlas()
    table = np.zeros(256, np.float32)
    for glyph, coverage in zip(atlas.glyphs, atlas.coverage, strict=True):
        if ord(glyph) < 256:
            table[ord(glyph)] = coverage
    return table


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_and_encoding_gives_the_configured_grid(
    mode: str, encoding: str, small_scene: np.ndarray, regions: np.ndarray, ink: np.ndarray
) -> None:
    """Shape, and content: each region's glyph density and colour, and the picture's detail as the
    reference encoding (bgr8, or mono8 for grey ones) draws it."""
    grey = encoding in GREY_ENCODINGS
    engine = Engine(Style(mode=mode, columns=40, rows=12))
    render = engine.render(_frame(encoding, regions), encoding)
    assert render.codes.shape == (12, 40)
    lines = render.lines()
    assert len(lines) == 12 and all(len(line) == 40 for line in lines)
    areas = {"dark": DARK, "white": WHITE, "red": RED, "blue": BLUE}
    density = {name: float(ink[render.codes[area]].mean()) for name, area in areas.items()}
    # a swapped channel order turns red into blue; a wrong scale or byte makes it all dark or noise
    assert density["dark"] <= density["blue"] < density["red"] < density["white"], density
    if mode == "cyberpunk":
        assert render.foreground is not None and render.foreground.shape == (12, 40, 3)
        assert render.background is not None and render.background.shape == (12, 40, 3)
        for cells in (render.foreground, render.background):
            red, blue = cells[RED].reshape(-1, 3).astype(int), cells[BLUE].reshape(-1, 3).astype(int)
            if grey:  # no colour invented, and the red region stays the brighter grey
                assert np.ptp(cells.astype(int), axis=2).max() <= 1
                assert red.mean() > blue.mean() + 10
            else:  # RGB out: red is (high, low, low), blue (low, low, high)
                assert (red[:, 0] > 180).all() and (red[:, 2] < 60).all(), red[:3]
                assert (blue[:, 2] > 180).all() and (blue[:, 0] < 60).all(), blue[:3]
            assert cells[WHITE].min() > 180 and cells[DARK].max() < 60
    else:
        assert render.foreground is None
    reference = "mono8" if grey else "bgr8"
    ref_frame = cv2.cvtColor(small_scene, cv2.COLOR_BGR2GRAY) if grey else small_scene
    expect = Engine(Style(mode=mode, columns=40, rows=12)).render(ref_frame, reference)
    got = Engine(Style(mode=mode, columns=40, rows=12)).render(_frame(encoding, small_scene), encoding)
    lossy = encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")  # chroma at half width
    assert np.mean(got.codes == expect.codes) >= (0.9 if lossy else 1.0), (encoding, reference)
    if got.foreground is not None and expect.foreground is not None:
        err = np.abs(got.foreground.astype(int) - expect.foreground.astype(int)).mean()
        assert err <= (12 if lossy else 0.5), err


def test_encodings_agree_on_the_picture(small_scene: np.ndarray) -> None:
    base = Engine(Style(columns=40, rows=12)).render(small_scene, "bgr8").codes
    for encoding in ("rgb8", "rgba8", "mono8", "mono16", "yuyv", "uyvy"):
        other = Engine(Style(columns=40, rows=12)).render(_frame(encoding, small_scene), encoding).codes
        assert np.mean(other == base) > 0.9, encoding


def _line_image(angle_deg: float, size: int = 480) -> np.ndarray:
    """A bright straight line through the centre at `angle_deg` (0 = horizontal, counter-clockwise
    as seen on screen, so 45 degrees rises to the right)."""
    img = np.full((size, size, 3), 20, np.uint8)
    a = math.radians(angle_deg)
    c, r = size // 2, size
    p1 = (int(c - r * math.cos(a)), int(c + r * math.sin(a)))
    p2 = (int(c + r * math.cos(a)), int(c - r * math.sin(a)))
    cv2.line(img, p1, p2, (230, 230, 230), 6, cv2.LINE_AA)
    return img


@pytest.mark.parametrize(
    ("angle_deg", "family"),
    [(0, set("-_=~")), (90, set("|![]")), (63.4, {"/"}), (116.6, {"\\"})],
)
def test_edge_mode_draws_lines_of_the_right_orientation(angle_deg: float, family: set[str]) -> None:
    """Diagonals at the glyphs' own slope in a 1:2 cell (63.4 degrees), as a terminal shows them."""
    # 40 x 20 cells of 12 x 24 px: one pixel of the picture per cell unit in both directions
    engine = Engine(Style(mode="edges", columns=40, rows=20, edge_threshold=0.2))
    img = cv2.resize(_line_image(angle_deg), (480, 480))
    codes = engine.render(img, "bgr8").codes
    line_cells = [chr(c) for c in codes.ravel() if chr(c) in "-_=~|![]/\\"]
    assert len(line_cells) >= 8, "the line produced no edge glyphs"
    share = sum(ch in family for ch in line_cells) / len(line_cells)
    assert share > 0.8, (angle_deg, "".join(line_cells))


def test_fill_leaves_line_glyphs_to_edges() -> None:
    assert fill_charset(" .:-=+*#%@", "edges") == " .:+*#%@"
    assert fill_charset(" .:-=+*#%@", "ramp") == " .:-=+*#%@"
    assert fill_charset(" -", "edges") == " -"  # too few left: keep the user's choice


@pytest.fixture(scope="module")
def hd_synthetic() -> np.ndarray:
    return synthetic()


@pytest.mark.parametrize("mode", ["ramp", "edges", "sketch", "glitch"])
def test_mono_flicker_under_one_percent(mode: str, hd_synthetic: np.ndarray) -> None:
    engine = Engine(Style(mode=mode, columns=160, rows=45))
    a = engine.render(q.add_noise(hd_synthetic, 1), "bgr8").codes
    b = engine.render(q.add_noise(hd_synthetic, 2), "bgr8").codes
    assert q.flicker(a, b) < 0.01


def test_static_scene_stays_still_over_many_frames(hd_synthetic: np.ndarray) -> None:
    engine = Engine(Style(mode="edges", columns=160, rows=45))
    frames = [engine.render(q.add_noise(hd_synthetic, seed), "bgr8").codes for seed in range(8)]
    changes = [q.flicker(a, b) for a, b in itertools.pairwise(frames)]
    assert max(changes) < 0.01


@pytest.mark.parametrize("depth", ["truecolor", "256"])
def test_colour_mode_fidelity_and_stability(depth: str) -> None:
    atlas = load_atlas()
    frame = photo()
    style = Style(mode="cyberpunk", columns=160, rows=45, color_depth=depth, saturation=1.0)
    engine = Engine(style, atlas)
    r = engine.render(frame, "bgr8")
    rgb = raster.colour(r.codes, atlas, r.foreground, r.background)
    source = q.source_at_cells(frame, 160, 45)
    assert q.blurred_ssim(q.luma01(rgb, "rgb"), q.luma01(source)) >= 0.97
    noisy = Engine(style, atlas)
    first = noisy.render(q.add_noise(frame, 1), "bgr8")
    second = noisy.render(q.add_noise(frame, 2), "bgr8")
    assert q.flicker(first.codes, second.codes) < 0.05
    # colours must not jump either: a palette step is visible where a truecolor +-1 is not
    changed = (first.background != second.background).any(axis=-1) | (
        first.foreground != second.foreground
    ).any(axis=-1)
    if depth == "256":
        assert float(changed.mean()) < 0.05
        palette = {tuple(c) for c in palette_256()}
        assert {tuple(c) for c in r.foreground.reshape(-1, 3)} <= palette


def test_colour_blend_keeps_each_cells_mean() -> None:
    """bg + ink * (fg - bg) over a cell equals the cell's mean colour (truecolor, no saturation)."""
    atlas = load_atlas()
    rng = np.random.default_rng(5)
    frame = cv2.resize(
        rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (320, 180), interpolation=cv2.INTER_NEAREST
    )
    frame = cv2.GaussianBlur(frame, (0, 0), 3)
    engine = Engine(Style(mode="cyberpunk", columns=16, rows=9, saturation=1.0, auto_contrast=False), atlas)
    r = engine.render(frame, "bgr8")
    ink = np.array([atlas.coverage[atlas.glyphs.index(chr(c))] for c in r.codes.ravel()]).reshape(9, 16, 1)
    blend = r.background + ink * (r.foreground.astype(float) - r.background)
    mean = cv2.resize(
        cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32), (16, 9), interpolation=cv2.INTER_AREA
    )
    assert np.abs(blend - mean).mean() < 3.0


def test_glitch_is_silent_at_zero_energy_and_loud_at_one(hd_synthetic: np.ndarray) -> None:
    style = Style(mode="glitch", columns=80, rows=24)
    edges = Engine(Style(mode="edges", columns=80, rows=24)).render(hd_synthetic, "bgr8").codes
    quiet = Engine(style, seed=3)
    assert np.array_equal(quiet.render(hd_synthetic, "bgr8").codes, edges)
    loud = Engine(style, seed=3)
    loud.energy = 1.0
    first = loud.render(hd_synthetic, "bgr8").codes
    assert np.mean(first != edges) > 0.02
    again = Engine(style, seed=3)
    again.energy = 1.0
    assert np.array_equal(again.render(hd_synthetic, "bgr8").codes, first)  # seeded: reproducible


def test_audio_energy_mapping() -> None:
    assert audio_energy(-90.0) == 0.0
    assert audio_energy(-5.0) == 1.0
    assert 0.4 < audio_energy(-30.0) < 0.6
    assert audio_energy(-30.0, onset_strength=1.0) > audio_energy(-30.0)


def test_style_change_applies_to_the_next_frame(small_scene: np.ndarray) -> None:
    engine = Engine(Style(columns=40, rows=12))
    engine.render(small_scene, "bgr8")
    engine.set_style(Style(mode="cyberpunk", columns=30, rows=10))
    r = engine.render(small_scene, "bgr8")
    assert r.codes.shape == (10, 30) and r.foreground is not None
    with pytest.raises(ValueError, match="mode"):
        engine.set_style(Style(mode="vaporwave"))


def _parse_ansi(line: str) -> list[tuple[str, tuple[int, ...]]]:
    """(glyph, active SGR parameters) per visible character."""
    out, params, pos = [], (), 0
    for m in SGR.finditer(line):
        out.extend((ch, params) for ch in line[pos : m.start()])
        params = tuple(int(p) for p in m.group(1).split(";") if p) if m.group(1) else ()
        pos = m.end()
    out.extend((ch, params) for ch in line[pos:])
    return out


@pytest.mark.parametrize("depth", ["truecolor", "256"])
def test_ansi_lines_carry_glyphs_and_colours(depth: str) -> None:
    rng = np.random.default_rng(2)
    codes = rng.integers(33, 127, (3, 5)).astype(np.uint32)
    codes[0, 0] = ord("█")  # a non-ASCII glyph takes the code-point path
    fg = palette_256()[to_256(rng.integers(0, 255, (3, 5, 3), dtype=np.uint8))]  # as the terminal shows them
    fg[:, 1] = fg[:, 0]  # repeated colours: no new sequence
    bg = palette_256()[to_256(rng.integers(0, 255, (3, 5, 3), dtype=np.uint8))]
    bg[:, 1] = bg[:, 0]
    lines = ansi_lines(codes, fg, bg, depth)
    for r, line in enumerate(lines):
        cells = _parse_ansi(line)
        assert "".join(ch for ch, _ in cells) == "".join(chr(c) for c in codes[r])
        for c, (_, params) in enumerate(cells):
            if depth == "truecolor":
                assert params == (38, 2, *fg[r, c], 48, 2, *bg[r, c])
            else:
                assert params == (38, 5, int(to_256(fg[r, c])), 48, 5, int(to_256(bg[r, c])))
        assert line.count("\x1b[") == 5  # 4 colour changes + the reset


def test_palette_round_trip() -> None:
    palette = palette_256()
    idx = np.arange(16, 256)
    assert np.array_equal(palette[to_256(palette[idx])], palette[idx])


def test_fit_256_reuses_unchanged_cells_and_refits_changed_ones() -> None:
    from krystal.ascii.color import fit_256

    rng = np.random.default_rng(11)
    mean = rng.uniform(0, 255, (30, 40, 3)).astype(np.float32)
    cov = rng.uniform(0, 0.27, (30, 40)).astype(np.float32)
    bg = np.clip(mean * 0.9, 0, 255).astype(np.uint8)
    first_fg, first_bg, state = fit_256(mean, bg, cov)
    fresh_fg, fresh_bg, _ = fit_256(mean, bg, cov)  # no state: the full search
    assert np.array_equal(first_fg, fresh_fg) and np.array_equal(first_bg, fresh_bg)
    again_fg, again_bg, state = fit_256(mean, bg, cov, state)  # same inputs: same answer
    assert np.array_equal(again_fg, first_fg) and np.array_equal(again_bg, first_bg)
    moved = mean.copy()
    moved[:10] = 255 - moved[:10]  # a third of the picture changes
    moved_bg = np.clip(moved * 0.9, 0, 255).astype(np.uint8)
    new_fg, new_bg, _ = fit_256(moved, moved_bg, cov, state)
    full_fg, full_bg, _ = fit_256(moved, moved_bg, cov)
    # changed cells are refitted (to the full search's answer or an equally good kept pair)...
    changed_rows = (new_bg[:10] != first_bg[:10]).any(axis=-1).mean()
    assert changed_rows > 0.5
    # ...and unchanged ones keep exactly their pair
    assert np.array_equal(new_fg[10:], first_fg[10:]) and np.array_equal(new_bg[10:], first_bg[10:])
    blend = lambda f, b: (1 - cov[..., None]) * b + cov[..., None] * f.astype(np.float32)  # noqa: E731
    err_new = np.abs(blend(new_fg, new_bg) - moved)[:10].mean()
    err_full = np.abs(blend(full_fg, full_bg) - moved)[:10].mean()
    assert err_new < err_full + 3.0
