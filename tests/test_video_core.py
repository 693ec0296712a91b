"""Video sources without ROS: the test pattern moves, files play and loop or end, failures are typed."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from krystal.video.pattern import TestPattern
from krystal.video.sources import (
    Backoff,
    CaptureSource,
    EndOfStream,
    FileSource,
    SourceError,
    fit,
    make_source,
)


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (160, 120), fps: float = 30.0) -> Path:
    """An MJPG AVI whose frame i is uniformly grey at level 20 * i (decodable by any OpenCV build)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (20 * i) % 256, np.uint8))
    writer.release()
    return path


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
    levels = [int(src.read().pixels.mean().round()) for _ in range(5)]
    assert levels == pytest.approx([0, 20, 40, 60, 80], abs=3)
    with pytest.raises(EndOfStream):
        src.read()
    src.close()


def test_file_source_loops(tmp_path: Path) -> None:
    src = FileSource(str(write_video(tmp_path / "v.avi", frames=3)), loop=True)
    src.open()
    frames = [src.read() for _ in range(7)]
    assert [f.index for f in frames] == list(range(7))
    assert frames[3].pixels.mean() == pytest.approx(frames[0].pixels.mean(), abs=3)
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


def test_capture_source_keeps_only_the_newest_frame(tmp_path: Path) -> None:
    """A stream read by the capture thread: reads skip frames the consumer was too slow for."""
    src = CaptureSource(str(write_video(tmp_path / "s.avi", frames=60)))
    src.open()
    deadline = time.monotonic() + 5
    frames = []
    while time.monotonic() < deadline:
        try:
            f = src.read()
        except SourceError:
            break  # the stream ended: the thread reports it once the last frame was taken
        if f is not None:
            frames.append(f)
        time.sleep(0.02)
    src.close()
    assert frames, "no frame from the capture thread"
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    assert len(indices) < 60  # the file decodes faster than we read: older frames were dropped


def test_capture_source_that_cannot_open() -> None:
    with pytest.raises(SourceError, match="cannot open"):
        CaptureSource("/nonexistent/stream.mkv").open()


def test_make_source_types(tmp_path: Path) -> None:
    common = {"spec": "", "width": 64, "height": 48, "fps": 10.0, "loop": True}
    assert make_source(source_type="test_pattern", **common).read().pixels.shape == (48, 64, 3)
    assert isinstance(make_source(source_type="file", **common), FileSource)
    assert isinstance(make_source(source_type="camera", **common), CaptureSource)
    with pytest.raises(ValueError, match="unknown source_type"):
        make_source(source_type="laser", **common)


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    waits = [b.failed(now_s=0.0) for _ in range(5)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not b.due(2.9) and b.due(3.0)
    b.reset()
    assert b.attempts == 0 and b.due(0.0) and b.failed(0.0) == 0.5


def test_fit_resizes_only_when_needed() -> None:
    img = np.zeros((10, 20, 3), np.uint8)
    assert fit(img, 0, 0) is img
    assert fit(img, 20, 10) is img
    assert fit(img, 8, 4).shape == (4, 8, 3)
