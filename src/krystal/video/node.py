"""video_source: frames from a camera, file, stream or test pattern as sensor_msgs/Image."""

from __future__ import annotations

import time
from typing import Any

import cv2
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.image import array_to_image
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import overridable, sensor_qos
from krystal.sched.metrics import RateMeter, Window
from krystal.video.sources import (
    SOURCE_TYPES,
    Backoff,
    EndOfStream,
    FrameSource,
    SourceError,
    fit,
    make_source,
)

ENCODINGS = ("bgr8", "rgb8", "mono8")

PARAMS = (
    Param("source_type", "test_pattern", "Where frames come from", choices=SOURCE_TYPES),
    Param(
        "source",
        "",
        "File path, camera index or device path (/dev/v4l/by-id/...), stream URL or GStreamer "
        "pipeline; unused by test_pattern",
    ),
    Param("width", 640, "Output width in pixels, 0 for the source's own", 0, 7680),
    Param("height", 480, "Output height in pixels, 0 for the source's own", 0, 4320),
    Param("fps", 30.0, "Publication rate in frames per second", 1.0, 240.0),
    Param("encoding", "bgr8", "Encoding of the published image", choices=ENCODINGS),
    Param("frame_id", "camera_optical_frame", "frame_id of the published images"),
    Param("loop", True, "Start a video file again at its end"),
    Param("reconnect_initial_s", 0.5, "First delay before reopening a failed source", 0.05, 60.0),
    Param("reconnect_max_s", 8.0, "Longest delay between reopen attempts", 0.1, 600.0),
)
_REOPEN = {"source_type", "source", "width", "height", "loop"}


class VideoSourceNode(Node):
    def __init__(self, node_name: str = "video_source", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check, self._on_change)
        self._pub = self.create_publisher(
            Image, "camera/image_raw", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._source: FrameSource | None = None
        self._backoff = Backoff(self.params["reconnect_initial_s"], self.params["reconnect_max_s"])
        self._health = Health(WARN, "starting")
        self._ended = False
        self._published = 0
        self._dropped = 0
        self._last_index = -1
        self._rate = RateMeter()
        self._latency_ms = Window(300)
        self._diagnostics = Diagnostics(self, hardware_id=self._describe())
        self._diagnostics.add("source", self._source_health)
        self._timer = self.create_timer(1.0 / self.params["fps"], self._tick)

    def _describe(self) -> str:
        p = self.params
        return p["source_type"] if p["source_type"] == "test_pattern" else f"{p['source_type']}:{p['source']}"

    @staticmethod
    def _cross_check(values: dict[str, Any]) -> str | None:
        if values["source_type"] != "test_pattern" and not str(values["source"]).strip():
            return f"source_type {values['source_type']} needs a source (path, index or URL)"
        if values["reconnect_initial_s"] > values["reconnect_max_s"]:
            return "reconnect_initial_s must not exceed reconnect_max_s"
        return None

    def _on_change(self, changed: set[str]) -> None:
        if changed & _REOPEN:
            self._close_source()
            self._ended = False
            self._backoff.reset()
        if "fps" in changed:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / self.params["fps"], self._tick)
        if changed & {"reconnect_initial_s", "reconnect_max_s"}:
            self._backoff = Backoff(self.params["reconnect_initial_s"], self.params["reconnect_max_s"])

    def _set_health(self, health: Health) -> None:
        changed = health.level != self._health.level
        self._health = health
        if changed:
            self._diagnostics.level_changed("source", health.level)

    def _open(self, now_s: float) -> bool:
        p = self.params
        source = make_source(
            source_type=p["source_type"],
            spec=p["source"],
            width=p["width"],
            height=p["height"],
            fps=p["fps"],
            loop=p["loop"],
        )
        try:
            source.open()
        except SourceError as exc:
            wait = self._backoff.failed(now_s)
            self.get_logger().error(f"{exc}; retrying in {wait:.1f} s", throttle_duration_sec=5.0)
            self._set_health(Health(ERROR, f"{exc}; retry {self._backoff.attempts} in {wait:.1f} s"))
            return False
        if self._backoff.attempts:
            self.get_logger().info(
                f"{source.description} open again after {self._backoff.attempts} attempt(s)"
            )
        else:
            self.get_logger().info(f"publishing {source.description}")
        self._backoff.reset()
        self._source, self._last_index = source, -1
        self._set_health(Health(OK, f"streaming {source.description}"))
        return True

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def _tick(self) -> None:
        now_s = time.monotonic()
        if self._source is None and (self._ended or not self._backoff.due(now_s) or not self._open(now_s)):
            return
        assert self._source is not None
        try:
            frame = self._source.read()
        except EndOfStream as exc:
            self._close_source()
            self._ended = True
            self.get_logger().warning(f"{exc}; set loop:=true to repeat")
            self._set_health(Health(WARN, str(exc)))
            return
        except SourceError as exc:
            self._close_source()
            wait = self._backoff.failed(now_s)
            self.get_logger().error(f"{exc}; reopening in {wait:.1f} s", throttle_duration_sec=5.0)
            self._set_health(Health(ERROR, f"{exc}; reopening in {wait:.1f} s"))
            return
        if frame is None:
            return
        if self._last_index >= 0 and frame.index > self._last_index + 1:
            self._dropped += frame.index - self._last_index - 1
        self._last_index = frame.index
        p = self.params
        pixels = fit(frame.pixels, p["width"], p["height"])
        encoding = p["encoding"]
        if encoding == "rgb8":
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        elif encoding == "mono8":
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
        msg = array_to_image(pixels, encoding)
        msg.header.stamp = Time(nanoseconds=frame.capture_ns).to_msg()
        msg.header.frame_id = p["frame_id"]
        self._pub.publish(msg)
        self._published += 1
        self._rate.tick()
        self._latency_ms.add((time.time_ns() - frame.capture_ns) / 1e6)

    def _source_health(self) -> Health:
        lat = self._latency_ms.summary()
        values = {
            "source": self._describe(),
            "fps_target": f"{self.params['fps']:.1f}",
            "fps_achieved": f"{self._rate.rate_hz():.1f}",
            "frames_published": str(self._published),
            "frames_dropped": str(self._dropped),
            "capture_to_publish_ms_p50": f"{lat.p50:.2f}",
            "capture_to_publish_ms_p99": f"{lat.p99:.2f}",
            "reconnect_attempts": str(self._backoff.attempts),
        }
        return Health(self._health.level, self._health.message, values)

    def destroy_node(self) -> None:
        self._close_source()
        super().destroy_node()
