"""POST /process_frame's core: an uploaded image, checked before it is decoded, rendered as ASCII.

Every bad input is an UploadError carrying the HTTP status and the reason, so the API answers 4xx
with a sentence, never 500. The container is walked first (JPEG segments, PNG chunks, the WebP
RIFF header) so that work is bounded before any pixel is decoded: pixels, decoded bytes (bit depth
and channels counted), frames, JPEG scans, and the PNG inflate ratio (its zlib stream may not hold
more data than the header's image needs). Bytes after the image's end (Motion Photos, phone
cameras) are ignored. The pixels are decoded by OpenCV, reduced at decode time when the grid needs
far fewer samples than the image has.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from krystal.ascii.engine import COLOR_DEPTHS, KERNELS, MODES, SUB_X, Engine, Style
from krystal.gateway.streams import strict

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
CONTENT_TYPES = frozenset(FORMATS.values())


class UploadError(Exception):
    """A refused upload: `status` is the HTTP status (4xx), `reason` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __reduce__(self) -> tuple[type[UploadError], tuple[int, str]]:  # across worker processes
        return UploadError, (self.status, self.reason)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 40_000_000  # 8K is 33 MP
    max_columns: int = 1000
    max_rows: int = 500
    max_cells: int = 40_000  # columns x rows: bounds render time and the answer's size
    max_output_bytes: int = 2 * 1024 * 1024  # the answer's estimated size (colours add ~34 B a cell)
    max_decoded_bytes: int = 128 * 1024 * 1024  # raw pixel data the decoder would produce
    max_frames: int = 1  # animated images are refused
    max_jpeg_scans: int = 64  # progressive JPEGs have ~10; each scan is a pass over the image
    max_jpeg_scan_pixels: int = 240_000_000  # scans x pixels: a 24 MP progressive photo has 10 scans


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
    cells = req.columns * req.rows
    if cells > limits.max_cells:
        raise UploadError(
            422, f"grid {req.columns}x{req.rows} has {cells} cells, over the {limits.max_cells} cell limit"
        )
    size = estimated_output_bytes(req)
    if size > limits.max_output_bytes:
        raise UploadError(
            422, f"the answer would be about {size} bytes, over the {limits.max_output_bytes} byte limit"
        )


def estimated_output_bytes(req: FrameRequest) -> int:
    """An upper estimate of the JSON answer: a character (up to 4 UTF-8 bytes) per cell, plus two
    `[r, g, b]` lists per cell when colours are asked for."""
    per_cell = 4 + (2 * len("[255, 255, 255], ") if req.colors else 0)
    return req.columns * req.rows * per_cell + 1024


_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_HEADER_JUNK = 1024
_JPEG_MAX_MARKERS = 2000  # real files have tens (hundreds with restart markers every few rows)
# SOF markers of DCT frames (not C4 DHT, C8 JPG, CC DAC); the first three are Huffman coded
_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


@dataclass
class _JpegWalk:
    frame: int = 0  # the SOF marker
    width: int = 0
    height: int = 0
    sampling: list[tuple[int, int]] = field(default_factory=list)  # (h, v) per component
    scans: int = 0
    entropy_bytes: int = 0  # coded data after every scan header, to the next marker


def _jpeg_work(walk: _JpegWalk, limits: Limits) -> None:
    """Decode work from the frame header, before libjpeg sees it. Each scan is a pass over every
    block (a 4 KB progressive file declaring 6000x6000 took 1.1 s and +100 MB in OpenCV; with 64
    scans 2.9 s), so scans x pixels is bounded; and Huffman coding spends at least one bit per
    block of the full-resolution component, so data shorter than that cannot hold the image: libjpeg
    would pad it and still do all the work."""
    blocks = math.ceil(walk.width / 8) * math.ceil(walk.height / 8)
    if walk.frame in _JPEG_HUFFMAN_FRAMES and walk.entropy_bytes * 8 < blocks:
        raise UploadError(
            422,
            f"JPEG data of {walk.entropy_bytes} bytes is too short for its {walk.width}x{walk.height} "
            f"image ({blocks} blocks need at least a bit each): cut or crafted",
        )
    pixels = walk.width * walk.height
    if walk.scans * pixels > limits.max_jpeg_scan_pixels:
        raise UploadError(
            413,
            f"{walk.width}x{walk.height} JPEG in {walk.scans} scans is {walk.scans * pixels} pixel passes, "
            f"over the {limits.max_jpeg_scan_pixels} limit",
        )
    if walk.frame == 0xC2 and walk.sampling:  # progressive: libjpeg keeps every coefficient
        hmax, vmax = max(h for h, _ in walk.sampling), max(v for _, v in walk.sampling)
        coefficients = 128 * sum(
            math.ceil(walk.width * h / hmax / 8) * math.ceil(walk.height * v / vmax / 8)
            for h, v in walk.sampling
        )
        if coefficients > limits.max_decoded_bytes:
            raise UploadError(
                413,
                f"progressive {walk.width}x{walk.height} JPEG needs {coefficients} bytes of coefficients, "
                f"over the {limits.max_decoded_bytes} byte limit",
            )


def _check_jpeg(data: bytes, limits: Limits) -> None:
    """Walk the segments to the EOI marker: refuses a cut image, too many scans, more work than
    its data can justify (`_jpeg_work`) and junk in the header (Pillow would skip it byte by byte
    in Python, holding the GIL); bytes after EOI (a Motion Photo's video, padding) are ignored."""
    pos, n, junk = 2, len(data), 0
    walk = _JpegWalk()
    for _ in range(_JPEG_MAX_MARKERS):
        if pos + 1 >= n:
            break
        if data[pos] != 0xFF:  # stray bytes between segments: libjpeg skips them too
            m = _JPEG_MARKER.search(data, pos)
            if m is None:
                break
            junk += m.start() - pos
            if walk.scans == 0 and junk > _JPEG_HEADER_JUNK:
                raise UploadError(422, f"malformed JPEG: over {_JPEG_HEADER_JUNK} stray bytes in its header")
            pos = m.start()
            continue
        marker = data[pos + 1]
        if marker == 0xD9:
            _jpeg_work(walk, limits)
            return
        if marker == 0xFF:
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker in (0x01, 0xD8):
            pos += 2
            continue
        if pos + 4 > n:
            break
        seg_end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _JPEG_FRAMES and not walk.frame:
            _read_frame(walk, marker, data[pos + 4 : seg_end])
        if marker != 0xDA:
            pos = seg_end
            continue
        walk.scans += 1
        if walk.scans > limits.max_jpeg_scans:
            raise UploadError(422, f"JPEG with more than {limits.max_jpeg_scans} scans is not accepted")
        m = _JPEG_MARKER.search(data, seg_end)
        if m is None:
            break
        walk.entropy_bytes += m.start() - seg_end
        pos = m.start()
    else:
        raise UploadError(422, f"malformed JPEG: over {_JPEG_MAX_MARKERS} markers")
    raise UploadError(422, "truncated JPEG image: the data ends before the image does")


def _read_frame(walk: _JpegWalk, marker: int, body: bytes) -> None:
    """SOF: precision, height, width, component count, then (id, h<<4|v, table) per component."""
    if len(body) < 6:
        return
    walk.frame = marker
    walk.height, walk.width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
    count = min(body[5], (len(body) - 6) // 3)
    walk.sampling = [(max(1, b >> 4), max(1, b & 15)) for b in body[7 : 7 + 3 * count : 3]]


def _png_raw_bytes(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """Bytes the PNG's zlib stream must inflate to: filter byte + packed samples per row (per pass)."""

    def rows(w: int, h: int) -> int:
        return h * (1 + math.ceil(w * bits_per_pixel / 8)) if w and h else 0

    if not interlaced:
        return rows(width, height)
    return sum(
        rows(max(0, math.ceil((width - x0) / dx)), max(0, math.ceil((height - y0) / dy)))
        for x0, y0, dx, dy in _ADAM7
    )


def _check_png(data: bytes, limits: Limits) -> None:
    """Walk the chunks to IEND: refuses a cut image, too many decoded bytes (16-bit and alpha
    count), animation, and an IDAT stream that inflates to more than the image needs (a zlib bomb
    hidden behind a small image: libpng would inflate all of it)."""
    pos, n = 8, len(data)
    header: tuple[int, int, int, int, int] | None = None
    idat: list[bytes] = []
    ended = False
    while pos + 8 <= n and not ended:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            break
        pos += 12 + length
        if kind == b"IHDR" and length >= 13:
            width, height = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big")
            header = (width, height, body[8], body[9], body[12])
        elif kind == b"acTL" and length >= 8 and int.from_bytes(body[0:4], "big") > limits.max_frames:
            frames = int.from_bytes(body[0:4], "big")
            raise UploadError(422, f"animated PNG with {frames} frames is not accepted (a single image only)")
        elif kind == b"IDAT":
            idat.append(body)
        ended = kind == b"IEND"
    if not ended or header is None:
        raise UploadError(422, "truncated PNG image: the data ends before the image does")
    width, height, depth, color, interlace = header
    if color not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise UploadError(422, f"PNG colour type {color} with bit depth {depth} is not valid")
    raw = _png_raw_bytes(width, height, _PNG_CHANNELS[color] * depth, interlace == 1)
    if raw > limits.max_decoded_bytes:
        raise UploadError(
            413,
            f"{width}x{height} PNG at {depth} bits x {_PNG_CHANNELS[color]} channels decodes to {raw} bytes, "
            f"over the {limits.max_decoded_bytes} byte limit",
        )
    inflater = zlib.decompressobj()
    try:
        produced = 0
        for chunk in idat:  # inflate at most what the image needs (+1 byte to see any excess)
            produced += len(inflater.decompress(chunk, raw + 1 - produced))
            if inflater.unconsumed_tail or produced > raw:
                raise UploadError(
                    413, f"PNG data inflates to more than the {raw} bytes its {width}x{height} image needs"
                )
    except zlib.error as exc:
        raise UploadError(422, f"PNG image data is corrupt ({exc})") from None


def _check_webp(data: bytes, limits: Limits) -> None:
    if len(data) < 12 or int.from_bytes(data[4:8], "little") + 8 > len(data):
        raise UploadError(422, "truncated WEBP image: the data ends before the image does")
    if data[12:16] == b"VP8X" and len(data) > 20 and data[20] & 0x02 and limits.max_frames <= 1:
        raise UploadError(422, "animated WebP is not accepted (a single image only)")


_CHECKS = {"PNG": _check_png, "WEBP": _check_webp}


def probe(data: bytes, limits: Limits) -> tuple[str, int, int]:
    """(format, width, height) from the header only; refuses empty, unknown, huge and cut images."""
    if not data:
        raise UploadError(400, "empty body: send a JPEG, PNG or WebP image")
    if len(data) > limits.max_body_bytes:
        raise UploadError(413, f"body of {len(data)} bytes is over the {limits.max_body_bytes} byte limit")
    from PIL import Image, UnidentifiedImageError

    if data.startswith(b"\xff\xd8"):  # walked first: the walk is bounded, Pillow's header scan is not
        _check_jpeg(data, limits)
    try:
        Image.init()  # registers WEBP, so `formats` can name it (JPEG opens MPO files too)
        # Only our formats' parsers: another plugin may scan a hostile body byte by byte in Python.
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "WEBP")) as im:
            fmt, (width, height) = str(im.format), im.size
        fmt = "JPEG" if fmt == "MPO" else fmt  # a JPEG with more pictures after it (phone cameras)
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
    if fmt != "JPEG":
        _CHECKS[fmt](data, limits)
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


_COLOUR_FIELDS = frozenset({"foreground_rgb", "background_rgb"})


def encode_answer(result: FrameResult, text: bool) -> bytes:
    """The answer's bytes, made by the worker that rendered it, never on the event loop: the colour
    lists of a 200x200 grid took 2.6 s there through `asdict` and a Python walk for NaN (load 6),
    stalling every other client. Colours are integers, so they go to the C encoder as they are."""
    if text:
        return ("\n".join(result.lines) + "\n").encode()
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    body = strict({k: v for k, v in fields.items() if k not in _COLOUR_FIELDS})
    body.update((k, fields[k]) for k in _COLOUR_FIELDS)
    return json.dumps(body, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode()
