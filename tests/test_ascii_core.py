"""ASCII core without ROS: the ramp maps brightness monotonically, the view redraws in place."""

from __future__ import annotations

import io

import numpy as np
import pytest

from krystal.ascii.luma import to_luma
from krystal.ascii.ramp import DEFAULT_CHARSET, RampRenderer, check_charset, codes_to_lines
from krystal.ascii.terminal import CLEAR_EOL, SYNC_BEGIN, SYNC_END, TerminalView, fit_grid


def test_grid_has_configured_size() -> None:
    lines = RampRenderer().render(np.zeros((480, 640), np.uint8), 80, 24)
    assert len(lines) == 24 and all(len(line) == 80 for line in lines)


def test_dark_to_light_follows_the_charset() -> None:
    gradient = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (16, 1))
    line = RampRenderer().render(gradient, len(DEFAULT_CHARSET), 1)[0]
    assert line == DEFAULT_CHARSET
    assert RampRenderer(invert=True).render(gradient, len(DEFAULT_CHARSET), 1)[0] == DEFAULT_CHARSET[::-1]


def test_unicode_charset() -> None:
    lines = RampRenderer(" ░▒▓█").render(np.full((8, 8), 255, np.uint8), 4, 2)
    assert lines == ["████", "████"]


@pytest.mark.parametrize("bad", ["", "x", "a\tb"])
def test_bad_charsets_are_refused(bad: str) -> None:
    assert check_charset(bad)
    with pytest.raises(ValueError):
        RampRenderer(bad)


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
    """Pure blue has luma ~29 (BT.601); every layout must agree."""
    luma = to_luma(pixels, encoding)
    assert luma.shape == (4, 4) and luma.dtype == np.uint8
    assert abs(int(luma.mean()) - 29) <= 1


def test_luma_refuses_unknown() -> None:
    with pytest.raises(ValueError, match="no 8-bit conversion"):
        to_luma(np.zeros((2, 2), np.uint8), "bayer_rggb8")


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
