"""The upload core's bounds: work per request is bounded before decoding, trailing bytes are fine.

ROS-free: frames.probe/process_frame with real encoders (Pillow, OpenCV, zlib) building the files.
"""

from __future__ import annotations

import io
import re
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from krystal.gateway.frames import EnginePool, FrameRequest, Limits, UploadError, probe, process_frame


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, depth: int, color: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def refused(data: bytes, limits: Limits | None = None) -> UploadError:
    with pytest.raises(UploadError) as e:
        probe(data, limits or Limits())
    return e.value


def test_png_whose_data_inflates_past_its_image_is_refused_before_decoding() -> None:
    raw = b"\x00" + b"\x00" * 64 * 3  # one row: filter byte + 64 RGB pixels
    bomb = png(64, 64, 8, 2, zlib.compress(raw * 64 + b"\x00" * 200_000_000, 9))
    assert len(bomb) < 600_000
    t0 = time.perf_counter()
    e = refused(bomb)
    assert e.status == 413 and "inflates to more than" in e.reason
    assert time.perf_counter() - t0 < 0.5  # inflated only what the 64x64 image needs
    assert probe(png(64, 64, 8, 2, zlib.compress(raw * 64)), Limits())[1:] == (64, 64)


def test_deep_png_under_the_pixel_limit_is_refused_by_its_decoded_size() -> None:
    """6300x6300 16-bit RGBA is 39.7 MP (under max_pixels) but 318 MB of raw samples."""
    e = refused(png(6300, 6300, 16, 6, zlib.compress(b"\x00" * 1000)))
    assert e.status == 413 and "16 bits x 4 channels" in e.reason
    e = refused(png(64, 64, 8, 2, b""), Limits(max_decoded_bytes=1000))
    assert e.status == 413


def test_animated_images_are_refused() -> None:
    frames = [Image.new("RGB", (32, 32), (i * 60, 0, 0)) for i in range(3)]
    for fmt in ("PNG", "WEBP"):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100)
        e = refused(buf.getvalue())
        assert e.status == 422 and "animated" in e.reason, (fmt, e.reason)


def test_jpeg_scans_are_counted() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, "JPEG", progressive=True)
    assert probe(buf.getvalue(), Limits())[0] == "JPEG"
    e = refused(buf.getvalue(), Limits(max_jpeg_scans=2))
    assert e.status == 422 and "scans" in e.reason


def progressive_jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", progressive=True)  # libjpeg's scan script: 10 scans for colour
    return buf.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment to EOI; a scan's end includes its coded data."""
    out, pos = [], 2
    while data[pos + 1] != 0xD9:
        marker, end = data[pos + 1], pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            end = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(data, end).start()  # type: ignore[union-attr]
        out.append((marker, pos, end))
        pos = end
    return out


def test_jpeg_declaring_a_huge_image_over_tiny_data_is_refused() -> None:
    """A 4 KB progressive JPEG whose frame header says 6000x6000 (under max_pixels) cost OpenCV
    1.1 s and +100 MB, padding the missing data: Huffman data needs a bit per block at least."""
    rng = np.random.default_rng(2)
    small = progressive_jpeg(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    assert probe(small, Limits())[1:] == (64, 64)
    big = bytearray(small)
    for marker, start, _ in jpeg_segments(small):
        if marker == 0xC2:  # SOF2: precision, then height and width
            big[start + 5 : start + 9] = struct.pack(">HH", 6000, 6000)
    e = refused(bytes(big))
    assert e.status == 422 and "too short" in e.reason


def test_jpeg_scans_times_pixels_are_bounded() -> None:
    """Each scan is a pass over every block: a real 12 MP progressive JPEG (10 scans) with its last
    scan repeated to 24 scans decoded in 1.9 s here (0.5 s as made); refused by its work before decoding."""
    made = progressive_jpeg(Image.new("RGB", (4000, 3000), (90, 120, 60)))
    assert probe(made, Limits())[1:] == (4000, 3000)
    scans = [(start, end) for marker, start, end in jpeg_segments(made) if marker == 0xDA]
    assert len(scans) == 10
    start, end = scans[-1]
    crafted = made[:end] + made[start:end] * 14 + made[end:]
    e = refused(crafted)
    assert e.status == 413 and "24 scans" in e.reason and "pixel passes" in e.reason


def test_progressive_jpeg_coefficients_are_bounded_by_the_decoded_size() -> None:
    """libjpeg keeps every coefficient of a progressive image (2 bytes each) until its last scan."""
    made = progressive_jpeg(Image.new("RGB", (2000, 2000), (90, 120, 60)))
    e = refused(made, Limits(max_decoded_bytes=8 << 20))
    assert e.status == 413 and "coefficients" in e.reason
    assert probe(made, Limits(max_decoded_bytes=16 << 20))[0] == "JPEG"  # 4:2:0: 12 MB


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_trailing_bytes_after_the_image_are_accepted(fmt: str) -> None:
    """A Motion Photo is a JPEG followed by an MP4; many cameras pad files."""
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, 32:] = (0, 0, 255)
    ext = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[fmt]
    data = bytes(cv2.imencode(ext, img)[1]) + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    result = process_frame(data, FrameRequest(columns=16, rows=6), Limits(), EnginePool(1))
    assert result.image_format == fmt and (result.image_width, result.image_height) == (64, 48)
    cut = bytes(cv2.imencode(ext, img)[1])
    with pytest.raises(UploadError) as e:
        probe(cut[: len(cut) - 12], Limits())
    if fmt != "WEBP":  # Pillow already refuses a cut WebP header (415)
        assert e.value.status == 422 and "truncated" in e.value.reason


def test_grid_and_answer_size_are_bounded() -> None:
    """The issue's 1000x500 cyberpunk request (14 MB of JSON, 8 s) is refused before any work."""
    cases = (
        (FrameRequest(mode="cyberpunk", columns=1000, rows=500), Limits(), "cells"),
        (
            FrameRequest(mode="cyberpunk", columns=200, rows=100, colors=True),
            Limits(max_output_bytes=10**5),
            "bytes",
        ),
    )
    for req, limits, word in cases:
        with pytest.raises(UploadError) as e:
            process_frame(b"", req, limits, EnginePool(1))
        assert e.value.status == 422 and word in e.value.reason


def test_junk_in_a_jpeg_header_is_refused_without_a_python_byte_scan() -> None:
    """Pillow skips stray header bytes one at a time in Python (0.3 s of GIL for 15 MB, stalling
    every other request): the walk refuses them first."""
    rng = np.random.default_rng(1)
    data = b"\xff\xd8" + bytes(rng.integers(0, 256, 15 << 20, dtype=np.uint8))
    probe(bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1]), Limits())  # imports done
    t0 = time.perf_counter()
    e = refused(data)
    assert e.status == 422 and "stray bytes" in e.reason
    assert time.perf_counter() - t0 < 0.1
