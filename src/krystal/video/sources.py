"""Frame sources behind one small interface, and the reconnect policy for the ones that fail.

A source's read() returns the newest frame not yet returned, or None when none is new; it raises
SourceError when the device or stream is gone, and EndOfStream at the end of a file.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
from numpy.typing import NDArray

from krystal.video.pattern import TestPattern

SOURCE_TYPES = ("test_pattern", "file", "camera", "stream")


class SourceError(RuntimeError):
    """The source cannot deliver frames now (not found, unplugged, stream cut)."""


class EndOfStream(SourceError):
    """A file source reached its end and does not loop."""


@dataclass(frozen=True)
class Frame:
    pixels: NDArray[Any]  # bgr8, H x W x 3
    capture_ns: int  # time.time_ns() when the frame was captured or generated
    index: int  # frames delivered by this source since it opened


class FrameSource(Protocol):
    description: str

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class PatternSource:
    def __init__(self, width: int, height: int, fps: float) -> None:
        self._pattern = TestPattern(width or 640, height or 480, fps)
        self._index = 0
        self.description = f"test pattern {self._pattern.width}x{self._pattern.height}"

    def open(self) -> None:
        self._index = 0

    def read(self) -> Frame:
        frame = Frame(self._pattern.frame(self._index), time.time_ns(), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        pass


class FileSource:
    """A video file decoded on demand, one frame per read (the node's timer paces it)."""

    def __init__(self, path: str, loop: bool = True) -> None:
        self.path, self.loop = path, loop
        self.description = f"file {path}"
        self._cap: cv2.VideoCapture | None = None
        self._index = 0

    def open(self) -> None:
        if not os.path.isfile(self.path):
            raise SourceError(f"video file not found: {self.path}")
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            raise SourceError(f"cannot decode video file: {self.path}")
        self._cap, self._index = cap, 0

    @property
    def file_fps(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0

    def read(self) -> Frame:
        if self._cap is None:
            raise SourceError("file source is not open")
        ok, pixels = self._cap.read()
        if not ok and self.loop and self._index > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, pixels = self._cap.read()
        if not ok:
            if self._index == 0 or not os.path.isfile(self.path):
                raise SourceError(f"cannot read frames from {self.path}")
            raise EndOfStream(f"end of {self.path} after {self._index} frames")
        frame = Frame(pixels, time.time_ns(), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class CaptureSource:
    """Camera (index or /dev path) or stream (URL, GStreamer pipeline) read by a thread.

    The thread drains the device continuously and keeps only the newest frame, so a slow consumer
    never sees a stale buffered frame (usb_cam #319).
    """

    def __init__(self, spec: str, width: int = 0, height: int = 0, fps: float = 0.0) -> None:
        self.spec, self.width, self.height, self.fps = spec, width, height, fps
        self.description = f"capture {spec}"
        self._cap: cv2.VideoCapture | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._error: str | None = None
        self._index = 0

    def _open_capture(self) -> cv2.VideoCapture:
        spec = self.spec.strip()
        if spec.isdigit():
            return cv2.VideoCapture(int(spec))
        if "!" in spec:  # a GStreamer pipeline string
            return cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
        return cv2.VideoCapture(spec)

    def open(self) -> None:
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.spec}")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        self._cap, self._error, self._latest, self._index = cap, None, None, 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"capture {self.spec}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cap = self._cap
        assert cap is not None
        while not self._stop.is_set():
            ok, pixels = cap.read()
            if not ok:
                with self._lock:
                    self._error = f"{self.spec} stopped delivering frames"
                return
            with self._lock:
                self._latest = Frame(pixels, time.time_ns(), self._index)
                self._index += 1

    def read(self) -> Frame | None:
        with self._lock:
            frame, self._latest, error = self._latest, None, self._error
        if frame is None and error:
            raise SourceError(error)
        return frame

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def make_source(
    *, source_type: str, spec: str, width: int, height: int, fps: float, loop: bool
) -> FrameSource:
    if source_type == "test_pattern":
        return PatternSource(width, height, fps)
    if source_type == "file":
        return FileSource(spec, loop)
    if source_type in ("camera", "stream"):
        return CaptureSource(spec, width, height, fps)
    raise ValueError(f"unknown source_type {source_type!r}; one of {', '.join(SOURCE_TYPES)}")


class Backoff:
    """Delays between reconnect attempts: initial, doubled each failure, capped; reset on success."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 8.0) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self.delay_s = initial_s
        self.attempts = 0
        self.next_attempt_s = 0.0

    def failed(self, now_s: float) -> float:
        self.attempts += 1
        wait = self.delay_s
        self.next_attempt_s = now_s + wait
        self.delay_s = min(self.max_s, self.delay_s * 2)
        return wait

    def due(self, now_s: float) -> bool:
        return now_s >= self.next_attempt_s

    def reset(self) -> None:
        self.delay_s, self.attempts, self.next_attempt_s = self.initial_s, 0, 0.0


def fit(pixels: NDArray[Any], width: int, height: int) -> NDArray[Any]:
    """Resize to width x height (area interpolation) unless a side is 0 or it already fits."""
    if not width or not height or (pixels.shape[1] == width and pixels.shape[0] == height):
        return pixels
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
