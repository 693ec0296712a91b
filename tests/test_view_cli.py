"""The terminal viewer: 256-colour, truecolor and auto colour output, the /rosout warning in its
status line; `krystal view` and `krystal run --view --mode` as a user runs them, on a terminal."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import time
from collections.abc import Callable

import numpy as np
import pytest
import rclpy
from krystal.msg import AsciiFrame

from krystal.ascii.engine import Engine, Style
from krystal.ascii.node import AsciiViewNode
from krystal.ascii.terminal import ansi_lines, fit_grid
from krystal.ros.qos import sensor_qos
from tests.conftest import spin_until
from tests.test_cli_make_run import Terminal
from tests.test_renderer_node import FRAME

KRYSTAL = shutil.which("krystal")
STATUS = re.compile(rb" (\w+)/(\w+) (\d+)x(\d+) \| +([\d.]+) fps")


def _colour_frame() -> tuple[AsciiFrame, np.ndarray, np.ndarray, np.ndarray]:
    render = Engine(Style(mode="cyberpunk", columns=20, rows=4)).render(FRAME, "bgr8")
    assert render.foreground is not None and render.background is not None
    msg = AsciiFrame(columns=20, rows=4, lines=render.lines(), mode="cyberpunk", kernel="luminance")
    msg.foreground_rgb = render.foreground.tobytes()
    msg.background_rgb = render.background.tobytes()
    return msg, render.codes, render.foreground, render.background


def _show(viewer: AsciiViewNode, msg: AsciiFrame, until: Callable[[], bool] | None = None) -> None:
    """Publish `msg` to the viewer until it drew one frame (and `until()` holds, when given)."""
    pub_node = rclpy.create_node("frame_source")
    pub = pub_node.create_publisher(AsciiFrame, "krystal/ascii", sensor_qos(1))
    try:
        assert spin_until([viewer, pub_node], lambda: pub.get_subscription_count() > 0, 5.0)
        start = viewer.frames

        def drawn() -> bool:
            pub.publish(msg)
            return viewer.frames > start and (until is None or until())

        assert spin_until([viewer, pub_node], drawn, 5.0)
    finally:
        pub_node.destroy_node()


@pytest.mark.parametrize(
    ("colors", "colorterm", "depth"),
    [("256", "truecolor", "256"), ("auto", "truecolor", "truecolor"), ("auto", "24bit", "truecolor"),
     ("auto", None, "256"), ("none", "truecolor", "none")],
)  # fmt: skip
def test_viewer_colour_paths(ros, monkeypatch, colors: str, colorterm: str | None, depth: str) -> None:
    """Each frame line is drawn exactly as ansi_lines makes it at the chosen depth; auto follows
    COLORTERM and falls back to 256 colours, which every colour terminal has."""
    if colorterm is None:
        monkeypatch.delenv("COLORTERM", raising=False)
    else:
        monkeypatch.setenv("COLORTERM", colorterm)
    msg, codes, fg, bg = _colour_frame()
    out = io.StringIO()
    viewer = AsciiViewNode(out=out, colors=colors)
    try:
        _show(viewer, msg)
    finally:
        viewer.destroy_node()
    text = out.getvalue()
    for line in ansi_lines(codes, fg, bg, depth):
        assert line + "\x1b[K" in text, (depth, line[:60])
    assert ("\x1b[38;2;" in text) == (depth == "truecolor")
    assert ("\x1b[38;5;" in text) == (depth == "256")
    assert "cyberpunk/luminance 20x4" in text


def test_viewer_status_line_shows_the_last_warning_from_rosout(ros, monkeypatch) -> None:
    """A WARN logged by another node (through its real logger, to /rosout) appears in the status
    line of an 80-column terminal; INFO does not replace it, and the viewer's own warnings are not
    echoed."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    msg, *_ = _colour_frame()
    out = io.StringIO()
    viewer = AsciiViewNode(out=out, colors="none")
    camera = rclpy.create_node("camera_driver")
    try:
        _show(viewer, msg)  # matched on /rosout too, before anything is logged
        viewer.get_logger().warning("the viewer itself")

        def told() -> bool:  # said again until /rosout has matched the new node's log publisher
            camera.get_logger().warning("lens cap on")
            return "camera_driver: lens cap on" in out.getvalue()

        _show(viewer, msg, until=told)
        camera.get_logger().info("all good")
        camera.get_logger().warning("lens cap off")  # /rosout is reliable: "all good" came first
        _show(viewer, msg, until=lambda: "camera_driver: lens cap off" in out.getvalue())
    finally:
        camera.destroy_node()
        viewer.destroy_node()
    text = out.getvalue()
    last_status = text.rsplit("\r\n", 1)[-1]
    assert "cyberpunk/luminance 20x4" in last_status and "camera_driver: lens cap off" in last_status
    assert "all good" not in text and "the viewer itself" not in text and "Ctrl-C" not in last_status


needs_krystal = pytest.mark.skipif(KRYSTAL is None, reason="the krystal command is not on PATH")


def _stop(term: Terminal) -> int:
    os.kill(term.proc.pid, signal.SIGINT)
    return term.proc.wait(10)


@needs_krystal
def test_krystal_run_view_mode_draws_the_chosen_mode_fitted_to_the_terminal() -> None:
    assert KRYSTAL
    term = Terminal([KRYSTAL, "run", "--view", "--mode", "sketch", "--nodes", "video_source,ascii_renderer",
                     "--namespace", "viewrun"])  # fmt: skip
    try:
        assert term.wait_for(b" fps | render", 60.0), bytes(term.output[-2000:])
        deadline = time.monotonic() + 10.0  # the first frames show 0 fps: wait for a measured rate
        while not any(float(s[4]) > 0 for s in STATUS.findall(bytes(term.output))):
            assert time.monotonic() < deadline, bytes(term.output[-2000:])
            time.sleep(0.1)
        mode, kernel, columns, rows, _ = STATUS.findall(bytes(term.output))[-1]
        assert (mode, kernel) == (b"sketch", b"luminance")
        assert (int(columns), int(rows)) == fit_grid(160, 40)  # the 160x40 terminal, not 120x45
        assert _stop(term) == 0
        out = bytes(term.output)  # the terminal is given back after the last frame
        assert out.rfind(b"\x1b[?25h\x1b[?1049l") > out.rfind(b"\x1b[?2026h"), out[-200:]
    finally:
        term.close([])


@needs_krystal
def test_krystal_view_watches_a_running_graph_in_colour(procs) -> None:
    """`krystal view` in another process: auto colour takes truecolor from COLORTERM."""
    assert KRYSTAL
    procs([KRYSTAL, "run", "--nodes", "video_source,ascii_renderer", "--namespace", "watched",
           "--mode", "cyberpunk"])  # fmt: skip
    term = Terminal([KRYSTAL, "view", "--namespace", "watched"], env=dict(os.environ, COLORTERM="truecolor"))
    try:
        assert term.wait_for(b"cyberpunk/luminance 120x45", 60.0), bytes(term.output[-2000:])
        assert b"\x1b[38;2;" in term.output and b";48;2;" in term.output
        assert b"\x1b[38;5;" not in term.output
        assert _stop(term) == 0
    finally:
        term.close([])
