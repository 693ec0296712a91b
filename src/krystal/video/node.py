"""video_source: frames from a camera, file, stream or test pattern as sensor_msgs/Image.

A failed, unplugged or stalled source is closed, reported as ERROR and reopened with backoff; its
device controls are set again on every open. CameraInfo, when asked for, shares each image's header.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.image import array_to_image
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import overridable, sensor_qos
from krystal.sched.metrics import RateMeter, Window
from krystal.video.calibration import Calibration, CalibrationError, load_calibration, url_problem
from krystal.video.controls import ControlReport, controls_problem, parse_controls
from krystal.video.sources import (
    SOURCE_TYPES,
    Backoff,
    CaptureSource,
    EndOfStream,
    Frame,
    FrameSource,
    SourceError,
    fit,
    is_stale,
    make_source,
    to_bgr8,
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
    Param(
        "stall_timeout_s",
        2.0,
        "A camera or stream that delivers no frame for this long is closed and reopened",
        0.1,
        60.0,
    ),
    Param(
        "camera_controls",
        [],
        "Device controls set after every open of a camera or stream, name=value with OpenCV "
        "CAP_PROP names in lower case: brightness=0.5, exposure=-6, autofocus=0, fourcc=MJPG",
        validate=controls_problem,
        param_type=Parameter.Type.STRING_ARRAY,
    ),
    Param(
        "camera_info_url",
        "",
        "Calibration file (file:///path or a path, camera_calibration_parsers YAML); empty: uncalibrated",
        validate=url_problem,
    ),
    Param(
        "publish_camera_info", False, "Publish sensor_msgs/CameraInfo with each image (camera/camera_info)"
    ),
)
_REOPEN = {"source_type", "source", "width", "height", "loop", "stall_timeout_s", "camera_controls"}


class VideoSourceNode(Node):
    def __init__(self, node_name: str = "video_source", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check, self._on_change)
        self._pub = self.create_publisher(
            Image, "camera/image_raw", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._info_pub = self.create_publisher(
            CameraInfo, "camera/camera_info", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._source: FrameSource | None = None  # made from the parameters, reused by reopens
        self._opened = False
        self._awaiting_first_frame = False
        self._backoff = Backoff(self.params["reconnect_initial_s"], self.params["reconnect_max_s"])
        self._health = Health(WARN, "starting")
        self._ended = False
        self._opens = self._published = self._skipped = self._stale = self._invalid = 0
        self._last_index = -1
        self._rate = RateMeter()
        self._latency_ms = Window(300)
        self._controls: ControlReport | None = None
        self._controls_open = 0  # the open that applied them: proves they are set again after a reopen
        self._refused_logged: tuple[str, ...] = ()
        self._calibration: Calibration | None = None
        self._calibration_error: str | None = None
        self._image_size = (0, 0)
        self._diagnostics = Diagnostics(self, hardware_id=self._describe())
        self._diagnostics.add("source", self._source_health)
        self._diagnostics.add("camera_info", self._camera_info_health)
        self._load_calibration()
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
            self._source, self._controls = None, None
            self._ended = False
            self._backoff.reset()
        if "fps" in changed:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / self.params["fps"], self._tick)
        if changed & {"reconnect_initial_s", "reconnect_max_s"}:
            self._backoff = Backoff(self.params["reconnect_initial_s"], self.params["reconnect_max_s"])
        if changed & {"camera_info_url", "publish_camera_info"}:
            self._load_calibration()

    def _set_health(self, health: Health) -> None:
        changed = health.level != self._health.level
        self._health = health
        if changed:
            self._diagnostics.level_changed("source", health.level)

    def _make_source(self) -> FrameSource:
        p = self.params
        return make_source(
            source_type=p["source_type"],
            spec=p["source"],
            width=p["width"],
            height=p["height"],
            fps=p["fps"],
            loop=p["loop"],
            controls=parse_controls(p["camera_controls"]),
            stall_timeout_s=p["stall_timeout_s"],
        )

    def _open_source(self, now_s: float) -> bool:
        try:
            if self._source is None:
                self._source = self._make_source()
            self._source.open()
        except (SourceError, ValueError) as exc:
            self._fail(now_s, str(exc))
            return False
        self._opened, self._awaiting_first_frame, self._last_index = True, True, -1
        self._opens += 1
        if self._health.level != ERROR:  # after a failure its reason stays until frames flow again
            self._set_health(
                Health(self._health.level, f"opened {self._source.description}; waiting for frames")
            )
        return True

    def _close_source(self) -> None:
        if self._opened and self._source is not None:
            self._source.close()
        self._opened = False

    def _fail(self, now_s: float, error: str) -> None:
        self._close_source()
        wait = self._backoff.failed(now_s)
        text = f"{error}; reopening in {wait:.1f} s (attempt {self._backoff.attempts})"
        self.get_logger().error(text, throttle_duration_sec=5.0)
        self._set_health(Health(ERROR, text))

    def _tick(self) -> None:
        now_s = time.monotonic()
        if not self._opened and (self._ended or not self._backoff.due(now_s) or not self._open_source(now_s)):
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
            self._fail(now_s, str(exc))
            return
        if frame is None:
            return
        if self._awaiting_first_frame:
            self._first_frame(self._source)
        if self._last_index >= 0 and frame.index > self._last_index + 1:
            self._skipped += frame.index - self._last_index - 1
        self._last_index = frame.index
        if is_stale(frame.capture_ns, time.time_ns(), self.params["fps"]):
            self._stale += 1
            return
        self._publish(frame, self._source.description)

    def _first_frame(self, source: FrameSource) -> None:
        self._awaiting_first_frame = False
        if self._backoff.attempts:
            attempts = self._backoff.attempts
            self.get_logger().info(f"{source.description} delivers again after {attempts} attempt(s)")
        else:
            self.get_logger().info(f"publishing {source.description}")
        self._backoff.reset()
        report = source.controls_report if isinstance(source, CaptureSource) else None
        if report is None:
            return
        self._controls, self._controls_open = report, self._opens
        if report.refused and report.refused != self._refused_logged:
            self.get_logger().warning(
                f"{source.description} refused camera_controls {', '.join(report.refused)} "
                "(not supported by this device or backend)"
            )
        self._refused_logged = report.refused

    def _publish(self, frame: Frame, description: str) -> None:
        p = self.params
        try:
            pixels = fit(to_bgr8(frame.pixels), p["width"], p["height"])
        except ValueError as exc:
            self._invalid += 1
            text = f"frame from {description} cannot be published: {exc}"
            self.get_logger().warning(text, throttle_duration_sec=5.0)
            self._set_health(Health(WARN, text))
            return
        encoding = p["encoding"]
        if encoding == "rgb8":
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        elif encoding == "mono8":
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
        header = Header(stamp=Time(nanoseconds=frame.capture_ns).to_msg(), frame_id=p["frame_id"])
        msg = array_to_image(pixels, encoding, header)
        self._pub.publish(msg)
        self._image_size = (msg.width, msg.height)
        if p["publish_camera_info"]:
            self._info_pub.publish(self._camera_info(header))
        self._published += 1
        self._rate.tick()
        self._latency_ms.add((time.time_ns() - frame.capture_ns) / 1e6)
        streaming = Health(OK, f"streaming {description}")
        if self._health != streaming:
            self._set_health(streaming)

    def _load_calibration(self) -> None:
        self._calibration = self._calibration_error = None
        if not self.params["publish_camera_info"]:
            return
        try:
            self._calibration = load_calibration(self.params["camera_info_url"])
        except CalibrationError as exc:
            self._calibration_error = str(exc)
            self.get_logger().warning(f"{exc}; publishing uncalibrated CameraInfo")
            self._diagnostics.level_changed("camera_info", WARN)

    def _camera_info(self, header: Header) -> CameraInfo:
        cal = self._calibration or Calibration(*self._image_size)
        return CameraInfo(
            header=header,
            width=cal.width,
            height=cal.height,
            distortion_model=cal.distortion_model,
            d=list(cal.d),
            k=list(cal.k),
            r=list(cal.r),
            p=list(cal.p),
        )

    def _source_health(self) -> Health:
        lat = self._latency_ms.summary()
        values = {
            "source": self._describe(),
            "fps_target": f"{self.params['fps']:.1f}",
            "fps_achieved": f"{self._rate.rate_hz():.1f}",
            "frames_published": str(self._published),
            "frames_dropped": str(self._skipped + self._stale),
            "frames_stale": str(self._stale),
            "frames_invalid": str(self._invalid),
            "capture_to_publish_ms_p50": f"{lat.p50:.2f}",
            "capture_to_publish_ms_p99": f"{lat.p99:.2f}",
            "opens": str(self._opens),
            "reconnect_attempts": str(self._backoff.attempts),
        }
        if self.params["camera_controls"] and self._controls is not None:
            values["controls_applied"] = ", ".join(self._controls.applied) or "none"
            values["controls_refused"] = ", ".join(self._controls.refused) or "none"
            values["controls_applied_at_open"] = str(self._controls_open)
        return Health(self._health.level, self._health.message, values)

    def _camera_info_health(self) -> Health:
        p = self.params
        if not p["publish_camera_info"]:
            return Health(OK, "not published (publish_camera_info is false)")
        values = {"camera_info_url": p["camera_info_url"]}
        if self._calibration_error is not None:
            return Health(WARN, f"{self._calibration_error}; publishing uncalibrated CameraInfo", values)
        cal = self._calibration
        if cal is None:
            return Health(OK, "uncalibrated (camera_info_url is empty)", values)
        values["calibration_size"] = f"{cal.width}x{cal.height}"
        if self._image_size not in ((0, 0), (cal.width, cal.height)):
            w, h = self._image_size
            return Health(WARN, f"calibration is for {cal.width}x{cal.height}, images are {w}x{h}", values)
        return Health(OK, f"calibrated ({cal.camera_name or 'unnamed camera'})", values)

    def destroy_node(self) -> None:
        self._close_source()
        super().destroy_node()
