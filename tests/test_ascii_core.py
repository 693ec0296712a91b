"""ASCII core without ROS: the ramp maps brightness monotonically, the view redraws in place."""

from __future__ import annotations

import io

import numpy as np
import pytest

from krystal.ascii.decode import to_8bit
from krystal.ascii.grid import area_resize, sample
from krystal.ascii.ramp import DEFAULT_CHARSET, Ramp, ToneMap, check_charset, codes_to_lines
from krystal.ascii.terminal import CLEAR_EOL, SYNC_BEGIN, SYNC_END, TerminalView, fit_grid


def _render(ramp: Ramp, luma: np.ndarray, columns: int, rows: int) -> list[str]:
    cells = area_resize(luma, columns, rows).astype(np.float32) / 255
    return codes_to_lines(ramp.glyphs(cells))


def test_dark_to_light_follows_the_charset() -> None:
    gradient = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (16, 1))
    assert _render(Ramp(), gradient, len(DEFAULT_CHARSET), 1)[0] == DEFAULT_CHARSET
    assert _render(Ramp(invert=True), gradient, len(DEFAULT_CHARSET), 1)[0] == DEFAULT_CHARSET[::-1]


def test_calibrated_levels_follow_real_ink() -> None:
    """With measured coverage a glyph's level is its ink, not its place in the charset."""
    ramp = Ramp(" @.", coverage=np.array([0.0, 0.27, 0.03]))
    assert codes_to_lines(ramp.glyphs(np.array([[0.0, 0.1, 1.0]], np.float32))) == [" .@"]


def test_hysteresis_keeps_a_glyph_near_a_boundary() -> None:
    ramp = Ramp(" .:", hysteresis=0.05)
    first = ramp.glyphs(np.array([[0.26]], np.float32))  # just above the ' '/'.' midpoint: '.'
    assert chr(int(first[0, 0])) == "."
    assert chr(int(ramp.glyphs(np.array([[0.24]], np.float32))[0, 0])) == "."  # noise: stays
    assert chr(int(ramp.glyphs(np.array([[0.1]], np.float32))[0, 0])) == " "  # a real change: moves


def test_tone_map_stretches_and_smooths() -> None:
    tone = ToneMap(smoothing=0.5)
    low = np.linspace(0.2, 0.4, 100, dtype=np.float32).reshape(10, 10)
    out = tone(low)
    assert out.min() < 0.05 and out.max() > 0.95
    flat = tone(np.full((10, 10), 0.3, np.float32))  # a flat frame is not amplified into noise
    assert float(flat.std()) < 1e-6


def test_unicode_charset() -> None:
    lines = _render(Ramp(" ░▒▓█"), np.full((8, 8), 255, np.uint8), 4, 2)
    assert lines == ["████", "████"]


@pytest.mark.parametrize("bad", ["", "x", "a\tb", "aa"])
def test_bad_charsets_are_refused(bad: str) -> None:
    assert check_charset(bad)
    with pytest.raises(ValueError):
        Ramp(bad)


def test_codes_to_lines_keeps_spaces() -> None:
    codes = np.array([[32, 65, 32], [66, 32, 32]], np.uint32)
    assert codes_to_lines(codes) == [" A ", "B  "]


@pytest.mark.parametrize(
    ("encoding", "pixels"),
    [
        ("bgr8", np.full((4, 4, 3), (255, 0, 0), np.uint8)),
        ("rgb8", np.full((4, 4, 3), (0, 0, 255), np.uint8)),
        ("bgra8", np.full((4, 4, 4), (255, 0, 0, 255), np.uint8)),
        ("rgba8", np.full((4, 4, 4), (0, 0, 255, 255), np.uint8)),
        ("mono16", np.full((4, 4), 29 * 256, np.uint16)),
        ("yuyv", np.tile(np.array([[29, 128]], np.uint8), (4, 4, 1))),
        ("uyvy", np.tile(np.array([[128, 29]], np.uint8), (4, 4, 1))),
    ],
)
def test_luma_of_every_layout(encoding: str, pixels: np.ndarray) -> None:
    """Pure blue has luma ~29 (BT.601); every layout must agree, on the engine's own path."""
    luma = sample(*to_8bit(pixels, encoding, colour=False), 1, 1, sub_x=2, sub_y=2).gray
    assert luma.shape == (2, 2) and luma.dtype == np.uint8
    assert abs(int(luma.mean()) - 29) <= 1


def test_luma_refuses_unknown() -> None:
    with pytest.raises(ValueError, match="no 8-bit conversion"):
        to_8bit(np.zeros((2, 2), np.uint8), "bayer_rggb8")


@pytest.mark.parametrize("encoding", ["yuyv", "yuv422_yuy2", "uyvy", "yuv422"])
@pytest.mark.parametrize("colour", [True, False])
def test_odd_width_yuv_is_a_format_error_not_a_cv2_error(encoding: str, colour: bool) -> None:
    """cv2.cvtColor raises cv2.error (not ValueError) on an odd width: that killed the renderer."""
    with pytest.raises(ValueError, match="even W"):
        to_8bit(np.zeros((4, 3, 2), np.uint8), encoding, colour)


def test_view_redraws_in_place_without_clearing() -> None:
    out = io.StringIO()
    view = TerminalView(out, alternate_screen=False)
    frame = view.compose(["abc", "def", "ghi"], "status", size=(2, 3))
    assert frame.startswith(SYNC_BEGIN) and frame.endswith(SYNC_END)
    assert "\x1b[2J" not in frame  # clearing the screen each frame is what flickers
    body = frame[len(SYNC_BEGIN) : -len(SYNC_END)]
    assert body.split("\r\n") == ["\x1b[Hab" + CLEAR_EOL, "de" + CLEAR_EOL, "st" + CLEAR_EOL + "\x1b[J"]


def test_view_enter_and_leave_restore_the_terminal() -> None:
    out = io.StringIO()
    view = TerminalView(out, alternate_screen=True)
    view.enter()
    view.leave()
    text = out.getvalue()
    assert "\x1b[?1049h" in text and text.endswith("\x1b[?25h\x1b[?1049l")


@pytest.mark.parametrize(("term", "expected"), [((130, 40), (104, 39)), ((80, 60), (80, 30))])
def test_fit_grid_keeps_aspect(term: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_grid(*term, aspect=4 / 3) == expected
