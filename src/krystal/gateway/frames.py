"""POST /process_frame's core: an uploaded image, checked before it is decoded, rendered as ASCII.

Every bad input is an UploadError carrying the HTTP status and the reason, so the API answers 4xx
with a sentence, never 500. The header is read first (Pillow, lazily) so a decompression bomb is
refused before any pixel is allocated; the pixels are decoded by OpenCV, reduced at decode time
when the grid needs far fewer samples than the image has.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from krystal.ascii.engine import COLOR_DEPTHS, KERNELS, MODES, SUB_X, Engine, Style

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
CONTENT_TYPES = frozenset(FORMATS.values())


class UploadError(Exception):
    """A refused upload: `status` is the HTTP status (4xx), `reason` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 40_000_000  # 8K is 33 MP
    max_columns: int = 1000
    max_rows: int = 500


@dataclass(frozen=True)
class FrameRequest:
    mode: str = "ramp"
    kernel: str = "luminance"
    kernel_size: int = 3
    columns: int = 160
    rows: int = 45
    color_depth: str = "truecolor"
    colors: bool = False  # include per-cell colours in the answer (colour modes)


@dataclass(frozen=True)
class FrameResult:
    lines: list[str]
    columns: int
    rows: int
    mode: str
    kernel: str
    kernel_size: int
    image_width: int
    image_height: int
    image_format: str
    decode_ms: float
    render_ms: float
    foreground_rgb: list[list[int]] | None = None  # rows*columns [r, g, b], row-major
    background_rgb: list[list[int]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def check_request(req: FrameRequest, limits: Limits) -> None:
    if req.mode not in MODES:
        raise UploadError(422, f"mode {req.mode!r} is not one of {', '.join(MODES)}")
    if req.kernel not in KERNELS:
        raise UploadError(422, f"kernel {req.kernel!r} is not one of {', '.join(KERNELS)}")
    if req.kernel_size not in (3, 5, 7):
        raise UploadError(422, f"kernel_size {req.kernel_size} is not one of 3, 5, 7")
    if req.color_depth not in COLOR_DEPTHS:
        raise UploadError(422, f"color_depth {req.color_depth!r} is not one of {', '.join(COLOR_DEPTHS)}")
    if not (1 <= req.columns <= limits.max_columns and 1 <= req.rows <= limits.max_rows):
        raise UploadError(
            422,
            f"grid {req.columns}x{req.rows} is outside 1..{limits.max_columns} columns "
            f"and 1..{limits.max_rows} rows",
        )


def _complete(data: bytes, fmt: str) -> bool:
    """Whether the container ends where its format says it must (truncated uploads do not)."""
    if fmt == "JPEG":
        return data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "PNG":
        return b"IEND" in data[-16:]
    if fmt == "WEBP":
        return len(data) >= 12 and int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return True


def probe(data: bytes, limits: Limits) -> tuple[str, int, int]:
    """(format, width, height) from the header only; refuses empty, unknown, huge and cut images."""
    if not data:
        raise UploadError(400, "empty body: send a JPEG, PNG or WebP image")
    if len(data) > limits.max_body_bytes:
        raise UploadError(413, f"body of {len(data)} bytes is over the {limits.max_body_bytes} byte limit")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = str(im.format), im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadError(415, f"not a JPEG, PNG or WebP image ({type(exc).__name__})") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, before ours
        raise UploadError(413, f"image refused as a decompression bomb: {exc}") from None
    if fmt not in FORMATS:
        raise UploadError(415, f"{fmt} images are not accepted: send JPEG, PNG or WebP")
    if width < 1 or height < 1:
        raise UploadError(422, f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise UploadError(
            413, f"image of {width}x{height} = {width * height} pixels is over the {limits.max_pixels} limit"
        )
    if not _complete(data, fmt):
        raise UploadError(422, f"truncated {fmt} image: the data ends before the image does")
    return fmt, width, height


def _reduction(fmt: str, width: int, columns: int) -> int:
    """JPEG decode-time reduction (1, 2, 4, 8) that still leaves 1.5 pixels per sample."""
    if fmt != "JPEG":
        return 1
    factor = 1
    while factor < 8 and width / (factor * 2) >= 1.5 * SUB_X * columns:
        factor *= 2
    return factor


_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def decode(data: bytes, fmt: str, width: int, columns: int) -> NDArray[np.uint8]:
    flag = _REDUCED[_reduction(fmt, width, columns)]
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if pixels is None or pixels.size == 0:
        raise UploadError(422, f"the {fmt} data could not be decoded")
    return np.asarray(pixels, dtype=np.uint8)


class EnginePool:
    """Engines reused across requests (an engine costs ~15 ms to make), each reset per render."""

    def __init__(self, size: int = 4) -> None:
        self._free: list[Engine] = []
        self._lock = threading.Lock()
        self._size = size

    def render(self, pixels: NDArray[np.uint8], style: Style) -> Any:
        with self._lock:
            engine = self._free.pop() if self._free else None
        if engine is None:
            engine = Engine(style)
        else:
            engine.set_style(style)
            engine.reset()
        try:
            return engine.render(pixels, "bgr8")
        finally:
            with self._lock:
                if len(self._free) < self._size:
                    self._free.append(engine)


def process_frame(data: bytes, req: FrameRequest, limits: Limits, pool: EnginePool) -> FrameResult:
    check_request(req, limits)
    t0 = time.perf_counter()
    fmt, width, height = probe(data, limits)
    pixels = decode(data, fmt, width, req.columns)
    t1 = time.perf_counter()
    style = Style(
        mode=req.mode,
        kernel=req.kernel,
        kernel_size=req.kernel_size,
        columns=req.columns,
        rows=req.rows,
        color_depth=req.color_depth,
    )
    render = pool.render(pixels, style)
    t2 = time.perf_counter()
    fg = bg = None
    if req.colors and render.foreground is not None:
        fg = render.foreground.reshape(-1, 3).tolist()
        bg = render.background.reshape(-1, 3).tolist() if render.background is not None else None
    return FrameResult(
        lines=render.lines(),
        columns=req.columns,
        rows=req.rows,
        mode=req.mode,
        kernel=render.kernel,
        kernel_size=req.kernel_size,
        image_width=width,
        image_height=height,
        image_format=fmt,
        decode_ms=(t1 - t0) * 1e3,
        render_ms=(t2 - t1) * 1e3,
        foreground_rgb=fg,
        background_rgb=bg,
    )
