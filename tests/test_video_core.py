"""Video sources without ROS: the test pattern moves, files play and loop or end, failures are typed,
device controls are parsed and their refusals reported."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from krystal.video.controls import ControlReport, controls_problem, parse_controls
from krystal.video.pattern import TestPattern
from krystal.video.reconnect import Frame, Session
from krystal.video.sources import (
    CaptureSource,
    EndOfStream,
    FileSource,
    SourceError,
    fit,
    is_stale,
    make_source,
    to_bgr8,
)
from tests.video_streams import jpeg_frame, write_video


def test_pattern_moves_and_is_deterministic() -> None:
    p = TestPattern(320, 240, 30.0)
    a, b = p.frame(0), p.frame(15)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert np.mean(np.abs(a.astype(int) - b.astype(int))) > 1.0
    np.testing.assert_array_equal(a, TestPattern(320, 240, 30.0).frame(0))


def test_pattern_has_edges_and_gradients() -> None:
    gray = cv2.cvtColor(TestPattern(640, 480).frame(3), cv2.COLOR_BGR2GRAY)
    assert gray.std() > 30
    edges = cv2.Canny(gray, 50, 150)
    assert edges.mean() > 1.0


def test_pattern_rejects_tiny_sizes() -> None:
    with pytest.raises(ValueError, match="16x16"):
        TestPattern(8, 8)


def test_file_source_plays_then_ends(tmp_path: Path) -> None:
    src = FileSource(str(write_video(tmp_path / "v.avi", frames=5)), loop=False)
    src.open()
    levels = [int(src.read().mean().round()) for _ in range(5)]
    assert levels == pytest.approx([0, 20, 40, 60, 80], abs=3)
    with pytest.raises(EndOfStream):
        src.read()
    src.close()


def test_file_source_loops(tmp_path: Path) -> None:
    src = FileSource(str(write_video(tmp_path / "v.avi", frames=3)), loop=True)
    src.open()
    levels = [float(src.read().mean()) for _ in range(7)]
    assert levels == pytest.approx([0, 20, 40, 0, 20, 40, 0], abs=3)
    src.close()


def test_file_that_cannot_seek_still_loops(tmp_path: Path) -> None:
    """Raw MJPEG has no index: seeking to frame 0 'succeeds' and the next read fails. The file is
    reopened instead of ending (before, a looping file ended and said "set loop:=true")."""
    path = tmp_path / "raw.mjpeg"
    path.write_bytes(b"".join(jpeg_frame(2 * i) for i in range(3)))  # levels 0, 20, 40
    src = FileSource(str(path), loop=True)
    src.open()
    levels = [float(src.read().mean()) for _ in range(7)]
    assert levels == pytest.approx([0, 20, 40, 0, 20, 40, 0], abs=3)
    src.close()


def test_file_source_missing_or_garbage(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        FileSource(str(tmp_path / "none.mp4")).open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(SourceError):
        src = FileSource(str(junk))
        src.open()
        src.read()


def test_file_source_releases_a_capture_that_failed_to_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error's traceback keeps the failed capture alive for as long as the error is kept (the
    reconnect core keeps the last one), so open must release it itself, not leave it to the GC."""
    real = cv2.VideoCapture

    class Recorded:  # the real capture, with its release calls recorded (a cv2 subclass crashes GC on 4.5)
        def __init__(self, *args: object) -> None:
            self.cap = real(*args)
            captures.append(self)

        def __getattr__(self, name: str) -> object:
            return getattr(self.cap, name)

        def release(self) -> None:
            released.append(self)
            self.cap.release()

    captures: list[Recorded] = []
    released: list[Recorded] = []
    monkeypatch.setattr(cv2, "VideoCapture", Recorded)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(SourceError, match="cannot decode") as caught:
        FileSource(str(junk)).open()
    assert caught.value.__traceback__ is not None and len(captures) == 1
    assert captures[0] in released, "the capture that failed to open was not released"


def test_capture_source_keeps_only_the_newest_frame(tmp_path: Path) -> None:
    """A stream read by its session's thread: a slow consumer gets the newest frame, not a backlog."""
    src = CaptureSource(str(write_video(tmp_path / "s.avi", frames=60)))
    session = Session(src, notify=lambda: None, period_s=lambda: 1 / 30)
    session.start()
    frames: list[Frame] = []
    failures: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not failures:
        time.sleep(0.02)
        for event in session.take():
            if isinstance(event, Frame):
                frames.append(event)
            elif hasattr(event, "reason"):
                failures.append(event.reason)  # the file ends: the last frame came before it
    session.stop.set()
    assert failures == [f"{src.spec} stopped delivering frames"]
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and len(indices) < 60  # older frames were superseded
    assert indices[-1] == 59, "the newest frame was lost"
    assert float(frames[-1].pixels.mean()) == pytest.approx((20 * 59) % 256, abs=3)


def test_capture_source_that_cannot_open() -> None:
    with pytest.raises(SourceError, match="cannot open"):
        CaptureSource("/nonexistent/stream.mkv").open()


def test_make_source_types(tmp_path: Path) -> None:
    common = {"spec": "", "width": 64, "height": 48, "fps": 10.0, "loop": True}
    assert make_source(source_type="test_pattern", **common).read().shape == (48, 64, 3)
    assert isinstance(make_source(source_type="file", **common), FileSource)
    assert isinstance(make_source(source_type="camera", **common), CaptureSource)
    with pytest.raises(ValueError, match="unknown source_type"):
        make_source(source_type="laser", **common)


def test_fit_resizes_only_when_needed() -> None:
    img = np.zeros((10, 20, 3), np.uint8)
    assert fit(img, 0, 0) is img
    assert fit(img, 20, 10) is img
    assert fit(img, 8, 4).shape == (4, 8, 3)


def test_capture_source_applies_controls_and_reports_refusals(tmp_path: Path) -> None:
    """Each control is reported as the backend answered it: a file backend has no brightness and
    seeks (every OpenCV); it confirms convert_rgb from OpenCV 4.7 on, so that one is asked of it."""
    path = str(write_video(tmp_path / "c.avi", frames=30))
    controls = parse_controls(["brightness=0.5", "pos_frames=0", "convert_rgb=1"])
    src = CaptureSource(path, controls=controls)
    assert src.controls_report is None  # until the device is open
    src.open()
    assert src.read().shape == (120, 160, 3)
    probe = cv2.VideoCapture(path)
    converts = bool(probe.set(cv2.CAP_PROP_CONVERT_RGB, 1))
    probe.release()
    applied = ("pos_frames=0", "convert_rgb=1") if converts else ("pos_frames=0",)
    refused = ("brightness=0.5",) if converts else ("brightness=0.5", "convert_rgb=1")
    assert src.controls_report == ControlReport(applied=applied, refused=refused)
    src.close()


def test_controls_parse_into_opencv_properties() -> None:
    controls = parse_controls(["brightness=0.5", " exposure = -6 ", "fourcc=MJPG"])
    assert [(c.name, c.prop, c.value, c.text) for c in controls] == [
        ("brightness", cv2.CAP_PROP_BRIGHTNESS, 0.5, "brightness=0.5"),
        ("exposure", cv2.CAP_PROP_EXPOSURE, -6.0, "exposure=-6"),
        ("fourcc", cv2.CAP_PROP_FOURCC, float(cv2.VideoWriter.fourcc(*"MJPG")), "fourcc=MJPG"),
    ]
    assert parse_controls([]) == ()
    assert controls_problem(["autofocus=0", "fourcc=1196444237"]) is None


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        (["brightness"], "is not name=value"),
        (["=1"], "is not name=value"),
        (["shiny=1"], "not an OpenCV CAP_PROP name"),
        (["BRIGHTNESS=1"], "in lower case"),
        (["gain=high"], "'high' is not a number"),
        (["fourcc=MJPEG"], "is not a number"),
        (["gain=1", "gain=2"], "sets gain more than once"),
    ],
)
def test_bad_controls_are_refused_with_a_reason(items: list[str], reason: str) -> None:
    assert reason in (controls_problem(items) or "")


def test_stale_means_older_than_a_period_plus_jitter() -> None:
    assert not is_stale(0.030, 30.0)
    assert not is_stale(0.040, 30.0)  # a quarter period of delivery jitter
    assert is_stale(0.045, 30.0)
    assert not is_stale(0.240, 5.0)
    assert is_stale(0.260, 5.0)


def test_to_bgr8_converts_grey_and_bgra_and_refuses_the_rest() -> None:
    bgr = np.zeros((4, 6, 3), np.uint8)
    assert to_bgr8(bgr) is bgr
    grey = np.full((4, 6), 7, np.uint8)
    assert to_bgr8(grey).shape == (4, 6, 3) and int(to_bgr8(grey)[0, 0, 2]) == 7
    assert to_bgr8(grey[..., None]).shape == (4, 6, 3)
    assert to_bgr8(np.zeros((4, 6, 4), np.uint8)).shape == (4, 6, 3)
    with pytest.raises(ValueError, match="not 8-bit"):
        to_bgr8(np.zeros((4, 6, 3), np.float32))
    with pytest.raises(ValueError, match="not an image"):
        to_bgr8(np.zeros((4, 6, 2), np.uint8))
