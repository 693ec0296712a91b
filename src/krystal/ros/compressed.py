"""image_transport's `compressed` transport: sensor_msgs/CompressedImage on `<image topic>/compressed`.

The format string is written as compressed_image_transport writes it ("bgr8; jpeg compressed bgr8",
"rgb8; jpeg compressed bgr8", "mono8; jpeg compressed mono8"), so rqt_image_view and
image_transport republishers read our stream, and we read theirs (a bare "jpeg" or "png" too).
Encoding runs on a thread of its own (OpenCV releases the GIL): the executor only hands the newest
frame over, and a frame the encoder had no time for is superseded, never queued.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from krystal.graph import compressed_topic
from krystal.ros.diagnostics import ERROR, OK, Health
from krystal.ros.qos import overridable
from krystal.ros.streams import publish_stream
from krystal.sched.metrics import RateMeter, Window

CODECS = ("jpeg", "png")
# what the publisher writes after "; <codec> compressed ": 8-bit colour goes out as bgr8, as the plugin does
_TARGET = {"bgr8": "bgr8", "rgb8": "bgr8", "mono8": "mono8"}
_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
# a truncated file decodes "successfully" into a half-grey image (libjpeg only warns): look for the end
_END = {"jpeg": b"\xff\xd9", "png": b"IEND"}
# decoded (dtype, channels) -> the encoding of the array we hand on
_DECODED = {
    (np.dtype(np.uint8), 1): "mono8",
    (np.dtype(np.uint8), 3): "bgr8",
    (np.dtype(np.uint8), 4): "bgra8",
    (np.dtype(np.uint16), 1): "mono16",
    (np.dtype(np.uint16), 3): "bgr16",
    (np.dtype(np.uint16), 4): "bgra16",
}
_REDUCED = {1: cv2.IMREAD_UNCHANGED, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip


class CompressedFormatError(ValueError):
    """The message cannot be decoded as an image: the text says why."""


def compressed_format(encoding: str, codec: str = "jpeg") -> str:
    """The format field compressed_image_transport writes for an image of `encoding`."""
    target = _TARGET.get(encoding)
    if target is None or codec not in CODECS:
        raise CompressedFormatError(f"cannot compress {encoding!r} as {codec!r}")
    return f"{encoding}; {codec} compressed {target}"


def encode(pixels: NDArray[Any], encoding: str, quality: int = 80, codec: str = "jpeg") -> tuple[str, bytes]:
    """(format, bytes) of `pixels` (bgr8, rgb8 or mono8) compressed; JPEG quality 1..100."""
    fmt = compressed_format(encoding, codec)
    if encoding == "rgb8":
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if codec == "jpeg":
        ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise CompressedFormatError(f"OpenCV could not encode a {pixels.shape} {encoding} image")
    return fmt, buf.tobytes()


def parse_format(fmt: str) -> tuple[str, str]:
    """(original image encoding or "", codec) of a format string; raises CompressedFormatError."""
    text = fmt.strip().lower()
    head, sep, tail = text.partition(";")
    if not sep:  # a bare "jpeg" / "png" (older publishers, other tools)
        codec = "jpeg" if text in ("jpeg", "jpg") else text
        if codec not in CODECS:
            raise CompressedFormatError(f"unknown compressed format {fmt!r}")
        return "", codec
    words = tail.split()
    codec = words[0] if words else ""
    codec = "jpeg" if codec == "jpg" else codec
    if codec not in CODECS or "compressed" not in words:
        raise CompressedFormatError(f"unknown compressed format {fmt!r} (jpeg or png expected)")
    return head.strip(), codec


def decode(fmt: str, data: bytes | bytearray | memoryview, reduce: int = 1) -> tuple[NDArray[Any], str]:
    """(pixels, encoding) of a CompressedImage's format and data; raises CompressedFormatError.

    `reduce` (1, 2, 4 or 8) decodes a JPEG at that fraction of its size (libjpeg's DCT scaling: a
    fraction of the work), as colour; a viewer that needs few pixels asks for it.
    """
    _, codec = parse_format(fmt)
    buf = np.frombuffer(data, dtype=np.uint8)
    magic = _MAGIC[codec]
    if buf.size < len(magic) + 8 or bytes(buf[: len(magic)]) != magic:
        raise CompressedFormatError(f"{buf.size} bytes are not a {codec} image (bad header)")
    if _END[codec] not in bytes(buf[-16:]):
        raise CompressedFormatError(f"{buf.size} bytes of {codec} are truncated (no end-of-image marker)")
    flag = _REDUCED.get(reduce) if codec == "jpeg" else cv2.IMREAD_UNCHANGED
    if flag is None:
        raise CompressedFormatError(f"reduce={reduce} is not one of {', '.join(map(str, _REDUCED))}")
    try:
        pixels = cv2.imdecode(buf, flag)
    except cv2.error as exc:
        raise CompressedFormatError(f"{codec} image cannot be decoded: {exc}") from exc
    if pixels is None or pixels.size == 0:
        raise CompressedFormatError(f"{buf.size} bytes do not decode as a {codec} image")
    channels = 1 if pixels.ndim == 2 else int(pixels.shape[2])
    encoding = _DECODED.get((pixels.dtype, channels))
    if encoding is None:
        raise CompressedFormatError(f"decoded {pixels.dtype} image with {channels} channels is not supported")
    return pixels, encoding


def reduction_for(width: int, height: int, need_width: int, need_height: int) -> int:
    """The largest JPEG reduction (1, 2, 4, 8) that still leaves need_width x need_height pixels."""
    for factor in (8, 4, 2):
        if width // factor >= need_width and height // factor >= need_height:
            return factor
    return 1


@dataclass(frozen=True)
class EncoderStats:
    published: int
    superseded: int  # frames replaced by a newer one before the encoder took them
    failed: int
    encode_ms_p50: float
    encode_ms_p99: float
    bytes_per_frame: float
    fps: float
    last_error: str | None


class CompressedPublisher:
    """Publishes `<topic>/compressed` for an image stream, encoding on its own thread.

    `submit()` is cheap (it keeps a reference to the newest frame); nothing is encoded while no one
    subscribes, as image_transport's publishers do. `quality()` is read for each frame.
    """

    def __init__(
        self, node: Node, topic: str, profile: QoSProfile, quality: Callable[[], int], codec: str = "jpeg"
    ) -> None:
        self.topic = compressed_topic(topic)
        self._pub = publish_stream(
            node, CompressedImage, self.topic, profile, qos_overriding_options=overridable()
        )
        self._quality = quality
        self._codec = codec
        self._cond = threading.Condition()
        self._pending: tuple[NDArray[Any], str, Header] | None = None
        self._closed = False
        self._published = self._superseded = self._failed = 0
        self._bytes = 0
        self._last_error: str | None = None
        self._encode_ms = Window(300)
        self._rate = RateMeter()
        self._stats_lock = threading.Lock()  # the meters are not thread-safe; diagnostics read them
        self._thread = threading.Thread(target=self._run, name=f"compress {self.topic}", daemon=True)
        self._thread.start()

    def wanted(self) -> bool:
        return self._pub.get_subscription_count() > 0

    def submit(self, pixels: NDArray[Any], encoding: str, header: Header) -> None:
        """Hand the newest frame over (the array must not be written afterwards)."""
        if not self.wanted():
            return
        with self._cond:
            if self._pending is not None:
                self._superseded += 1
            self._pending = (pixels, encoding, header)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                pixels, encoding, header = self._pending  # type: ignore[misc]
                self._pending = None
            t0 = time.perf_counter()
            try:
                fmt, data = encode(pixels, encoding, self._quality(), self._codec)
                msg = CompressedImage(header=header, format=fmt)
                msg.data = data  # bytes: one copy into the message (a list would cost 10x)
                self._pub.publish(msg)
            except Exception as exc:  # a bad frame or a publisher gone at shutdown: count, say, go on
                self._failed += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                continue
            with self._stats_lock:
                self._encode_ms.add((time.perf_counter() - t0) * 1e3)
                self._published += 1
                self._bytes += len(data)
                self._rate.tick()
                self._last_error = None

    def stats(self) -> EncoderStats:
        with self._stats_lock:
            ms = self._encode_ms.summary()
            fps = self._rate.rate_hz()
        return EncoderStats(
            published=self._published,
            superseded=self._superseded,
            failed=self._failed,
            encode_ms_p50=ms.p50,
            encode_ms_p99=ms.p99,
            bytes_per_frame=self._bytes / self._published if self._published else 0.0,
            fps=fps,
            last_error=self._last_error,
        )

    def health(self) -> Health:
        st = self.stats()
        values = {
            "topic": self.topic,
            "subscribers": str(self._pub.get_subscription_count()),
            "frames_published": str(st.published),
            "frames_superseded": str(st.superseded),
            "frames_failed": str(st.failed),
            "encode_ms_p50": f"{st.encode_ms_p50:.2f}",
            "encode_ms_p99": f"{st.encode_ms_p99:.2f}",
            "bytes_per_frame": f"{st.bytes_per_frame:.0f}",
            "fps": f"{st.fps:.1f}",
        }
        if st.last_error is not None:
            return Health(ERROR, f"{self.topic}: {st.last_error}", values)
        if not self.wanted():
            return Health(OK, f"{self.topic}: no subscribers, not encoding", values)
        return Health(
            OK, f"{self.topic}: {st.fps:.1f} fps, {st.bytes_per_frame / 1024:.0f} KiB/frame", values
        )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2.0)
