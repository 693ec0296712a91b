"""Frame sources behind one small interface, and the reconnect policy for the ones that fail.

A source's read() returns the newest frame not yet returned, or None when none is new; it raises
SourceError when the device or stream is gone or stalled, and EndOfStream at the end of a file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from krystal.video.controls import Control, ControlReport, configure
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


OPEN_WAIT_S = 0.25  # open() waits this long for the outcome; a slower open finishes in the thread
CLOSE_WAIT_S = 0.25  # close() waits this long; a read blocked on a dead stream ends on its own


class _Session:
    """One open of a capture: what its thread shares with read(), never reused by a later open."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.opening_done = threading.Event()
        self.lock = threading.Lock()
        self.latest: Frame | None = None
        self.error: str | None = None
        self.report: ControlReport | None = None
        self.last_frame_s = time.monotonic()  # the open's start until the first frame
        self.index = 0

    def deliver(self, pixels: NDArray[Any]) -> None:
        with self.lock:
            self.latest = Frame(pixels, time.time_ns(), self.index)
            self.index += 1
            self.last_frame_s = time.monotonic()

    def fail(self, error: str) -> None:
        with self.lock:
            self.error = self.error or error

    def idle_s(self) -> float:
        with self.lock:
            return time.monotonic() - self.last_frame_s


class CaptureSource:
    """Camera (index or /dev path) or stream (URL, GStreamer pipeline) opened and read by a thread.

    The thread drains the device continuously and keeps only the newest frame, so a slow consumer
    never sees a stale buffered frame (usb_cam #319). Opening, reading and releasing all happen in
    the thread, so a dead device or stream never blocks the caller for more than OPEN_WAIT_S or
    CLOSE_WAIT_S; no frame for `stall_timeout_s` counts as a failure.
    """

    def __init__(
        self,
        spec: str,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        *,
        controls: Sequence[Control] = (),
        stall_timeout_s: float = 2.0,
    ) -> None:
        self.spec, self.width, self.height, self.fps = spec, width, height, fps
        self.controls, self.stall_timeout_s = tuple(controls), stall_timeout_s
        self.description = f"capture {spec}"
        self._session: _Session | None = None
        self._thread: threading.Thread | None = None

    def _open_capture(self) -> cv2.VideoCapture:
        spec = self.spec.strip()
        if spec.isdigit():
            return cv2.VideoCapture(int(spec))
        if "!" in spec:  # a GStreamer pipeline string
            return cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
        if "://" in spec:  # FFmpeg would wait 30 s on a dead server; the thread should end sooner
            timeout_ms = int((self.stall_timeout_s + 1.0) * 1000)
            return cv2.VideoCapture(
                spec,
                cv2.CAP_ANY,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms],
            )
        return cv2.VideoCapture(spec)

    def open(self) -> None:
        self.close()
        spec = self.spec.strip()
        if spec.startswith("/") and not os.path.exists(spec):  # an unplugged camera's node is gone
            raise SourceError(f"cannot open {spec}: no such device or file")
        if self._thread is not None:
            self._thread.join(CLOSE_WAIT_S)
            if self._thread.is_alive():  # still blocked on the old device: opening it twice may fail
                raise SourceError(f"the previous capture of {self.spec} has not closed yet")
        session = self._session = _Session()
        self._thread = threading.Thread(
            target=self._run, args=(session,), name=f"capture {self.spec}", daemon=True
        )
        self._thread.start()
        session.opening_done.wait(OPEN_WAIT_S)
        with session.lock:
            error = session.error if session.report is None else None  # later errors: read() tells
        if error:
            raise SourceError(error)

    def _run(self, session: _Session) -> None:
        cap: cv2.VideoCapture | None = None
        try:
            cap = self._open_capture()
            if not cap.isOpened():
                session.fail(f"cannot open {self.spec}")
                return
            report = configure(cap, self.width, self.height, self.fps, self.controls)
            with session.lock:
                session.report = report
            session.opening_done.set()
            while not session.stop.is_set():
                ok, pixels = cap.read()
                if session.stop.is_set():
                    return
                if not ok:
                    idle_s = session.idle_s()
                    stalled = idle_s >= self.stall_timeout_s
                    session.fail(
                        self._stalled(idle_s) if stalled else f"{self.spec} stopped delivering frames"
                    )
                    return
                session.deliver(pixels)
        except cv2.error as exc:  # a backend that throws instead of failing
            session.fail(f"{self.spec}: {exc}")
        finally:
            session.opening_done.set()
            if cap is not None:
                cap.release()  # here, not in close(): it can block as long as a read on a dead stream

    def _stalled(self, idle_s: float) -> str:
        return f"{self.spec} stalled: no frame for {idle_s:.1f} s"

    @property
    def controls_report(self) -> ControlReport | None:
        """What the current open made of the controls; None until the device is open."""
        session = self._session
        if session is None:
            return None
        with session.lock:
            return session.report

    def read(self) -> Frame | None:
        session = self._session
        if session is None:
            raise SourceError(f"{self.description} is not open")
        with session.lock:
            frame, session.latest, error = session.latest, None, session.error
        if frame is not None:
            return frame
        if error:
            raise SourceError(error)
        idle_s = session.idle_s()
        if idle_s > self.stall_timeout_s:
            raise SourceError(self._stalled(idle_s))
        return None

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.stop.set()
            if self._thread is not None:
                self._thread.join(CLOSE_WAIT_S)


def make_source(
    *,
    source_type: str,
    spec: str,
    width: int,
    height: int,
    fps: float,
    loop: bool,
    controls: Sequence[Control] = (),
    stall_timeout_s: float = 2.0,
) -> FrameSource:
    if source_type == "test_pattern":
        return PatternSource(width, height, fps)
    if source_type == "file":
        return FileSource(spec, loop)
    if source_type in ("camera", "stream"):
        return CaptureSource(spec, width, height, fps, controls=controls, stall_timeout_s=stall_timeout_s)
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


STALE_TOLERANCE = 0.25  # of a period: delivery jitter when the camera runs at the node's rate


def is_stale(capture_ns: int, now_ns: int, fps: float) -> bool:
    """Older than one publication period (plus jitter): publishing it would show the past as now."""
    return now_ns - capture_ns > (1.0 + STALE_TOLERANCE) * 1e9 / fps


def to_bgr8(pixels: NDArray[Any]) -> NDArray[Any]:
    """A captured frame as bgr8; grey or BGRA frames (some controls ask for them) are converted.

    Raises ValueError for what is not an 8-bit image.
    """
    if pixels.dtype != np.uint8:
        raise ValueError(f"frame of {pixels.dtype} is not 8-bit")
    channels = 1 if pixels.ndim == 2 else (pixels.shape[2] if pixels.ndim == 3 else 0)
    if channels == 3:
        return pixels
    if channels == 1:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"frame of shape {pixels.shape} is not an image")


def fit(pixels: NDArray[Any], width: int, height: int) -> NDArray[Any]:
    """Resize to width x height (area interpolation) unless a side is 0 or it already fits."""
    if not width or not height or (pixels.shape[1] == width and pixels.shape[0] == height):
        return pixels
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
