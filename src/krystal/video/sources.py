"""Frame sources behind one small blocking interface; reconnect.py runs them off the executor.

A source's open() and read() may block (a device, a stream, a decoder): they run on a session's
thread, never on the executor. read() returns the next frame's pixels; it raises SourceError when
the device or stream is gone, and EndOfStream at the end of a file that does not loop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from krystal.video.controls import Control, ControlReport, configure
from krystal.video.pattern import TestPattern

SOURCE_TYPES = ("test_pattern", "file", "camera", "stream")
OPEN_TIMEOUT_S = 10.0  # a stream URL that has not answered by then is failed and retried


class SourceError(RuntimeError):
    """The source cannot deliver frames now (not found, unplugged, stream cut)."""


class EndOfStream(SourceError):
    """A file source reached its end and does not loop."""


class FrameSource(Protocol):
    description: str
    paced: bool  # True: frames are made on demand, the session paces read() at fps

    def open(self) -> None: ...

    def read(self) -> NDArray[Any]: ...

    def close(self) -> None: ...


class PatternSource:
    paced = True

    def __init__(self, width: int, height: int, fps: float) -> None:
        self._pattern = TestPattern(width or 640, height or 480, fps)
        self._index = 0
        self.description = f"test pattern {self._pattern.width}x{self._pattern.height}"

    def open(self) -> None:
        self._index = 0

    def read(self) -> NDArray[Any]:
        pixels = self._pattern.frame(self._index)
        self._index += 1
        return pixels

    def close(self) -> None:
        pass


class FileSource:
    """A video file decoded on demand, one frame per read (the session paces it at fps)."""

    paced = True

    def __init__(self, path: str, loop: bool = True) -> None:
        self.path, self.loop = path, loop
        self.description = f"file {path}"
        self._cap: cv2.VideoCapture | None = None
        self._index = 0

    def _capture(self) -> cv2.VideoCapture:
        if not os.path.isfile(self.path):
            raise SourceError(f"video file not found: {self.path}")
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()  # a capture that failed to open still holds its backend
            raise SourceError(f"cannot decode video file: {self.path}")
        return cap

    def open(self) -> None:
        self.close()
        self._cap, self._index = self._capture(), 0

    def read(self) -> NDArray[Any]:
        if self._cap is None:
            raise SourceError("file source is not open")
        ok, pixels = self._cap.read()
        if not ok and self.loop and self._index > 0:
            ok, pixels = self._rewind()
        if not ok:
            if self._index == 0 or not os.path.isfile(self.path):
                raise SourceError(f"cannot read frames from {self.path}")
            raise EndOfStream(f"end of {self.path} after {self._index} frames")
        self._index += 1
        return pixels  # type: ignore[no-any-return]

    def _rewind(self) -> tuple[bool, Any]:
        """Back to the first frame; a file that cannot seek (raw MJPEG, some streams) is reopened."""
        assert self._cap is not None
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            ok, pixels = self._cap.read()
            if ok:
                return ok, pixels
        self._cap.release()
        self._cap = None
        try:
            self._cap = self._capture()
        except SourceError as exc:
            raise SourceError(f"cannot loop {self.path}: {exc}") from exc
        ok, pixels = self._cap.read()
        if not ok:
            raise SourceError(f"cannot loop {self.path}: no frame after reopening it")
        return ok, pixels

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class CaptureSource:
    """Camera (index or /dev path) or stream (URL, GStreamer pipeline), read as fast as it delivers.

    Its session's thread drains the device continuously and keeps only the newest frame, so a slow
    consumer never sees a stale buffered frame (usb_cam #319). A read that blocks on a dead device
    blocks only that thread; the supervisor calls it stalled after `stall_timeout_s` without a frame.
    """

    paced = False

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
        self.controls_report: ControlReport | None = None  # what the last open made of the controls
        self._cap: cv2.VideoCapture | None = None

    def _open_capture(self) -> cv2.VideoCapture:
        spec = self.spec.strip()
        if spec.isdigit():
            return cv2.VideoCapture(int(spec))
        if "!" in spec:  # a GStreamer pipeline string
            return cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
        if "://" in spec:
            # FFmpeg would wait 30 s on a dead stream; a blocked read should end soon after the stall
            # is called. Opening is off the executor, so a slow open may take its time.
            read_ms = int((self.stall_timeout_s + 1.0) * 1000)
            open_ms = max(read_ms, int(OPEN_TIMEOUT_S * 1000))
            return cv2.VideoCapture(
                spec,
                cv2.CAP_ANY,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms],
            )
        return cv2.VideoCapture(spec)

    def open(self) -> None:
        self.close()
        spec = self.spec.strip()
        if spec.startswith("/") and not os.path.exists(spec):  # an unplugged camera's node is gone
            raise SourceError(f"cannot open {spec}: no such device or file")
        try:
            cap = self._open_capture()
            if not cap.isOpened():
                cap.release()
                raise SourceError(f"cannot open {self.spec}")
            self.controls_report = configure(cap, self.width, self.height, self.fps, self.controls)
        except cv2.error as exc:  # a backend that throws instead of failing
            raise SourceError(f"{self.spec}: {exc}") from exc
        self._cap = cap

    def read(self) -> NDArray[Any]:
        if self._cap is None:
            raise SourceError(f"{self.description} is not open")
        try:
            ok, pixels = self._cap.read()
        except cv2.error as exc:
            raise SourceError(f"{self.spec}: {exc}") from exc
        if not ok:
            raise SourceError(f"{self.spec} stopped delivering frames")
        return pixels  # type: ignore[no-any-return]

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


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


STALE_TOLERANCE = 0.25  # of a period: delivery jitter when the camera runs at the node's rate


def is_stale(age_s: float, fps: float) -> bool:
    """Older than one publication period (plus jitter): publishing it would show the past as now."""
    return age_s > (1.0 + STALE_TOLERANCE) / fps


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


def render_copy(pixels: NDArray[Any], render_width: int, width: int, height: int) -> NDArray[Any] | None:
    """The render feed's frame: `render_width` wide with the published image's aspect (width x
    height, or the frame's own when a side is 0), area-scaled once; never upscaled; None when off.
    Halvings with INTER_AREA first (OpenCV's 2x fast path: 3-5x faster than one INTER_AREA resize
    from 1080p, within one grey level of it), then bilinear for the last step of less than 2x
    (area at a fractional factor is OpenCV's slow path: 5x the cost for 1080p -> 640).

    Raises ValueError for what is not an 8-bit image (to_bgr8).
    """
    if render_width <= 0:
        return None
    pixels = to_bgr8(pixels)
    out_w, out_h = (width, height) if width and height else (pixels.shape[1], pixels.shape[0])
    if render_width >= out_w:
        return fit(pixels, width, height)
    size = (render_width, max(1, round(render_width * out_h / out_w)))
    while pixels.shape[1] >= 2 * size[0] and pixels.shape[0] >= 2 * size[1]:
        half = (pixels.shape[1] // 2, pixels.shape[0] // 2)
        pixels = cv2.resize(pixels, half, interpolation=cv2.INTER_AREA)
    if (pixels.shape[1], pixels.shape[0]) == size:
        return pixels
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)
