"""video_source: frames from a camera, file, stream or test pattern as sensor_msgs/Image.

A failed, unplugged or stalled source is closed, reported as ERROR and reopened with backoff; its
device controls are set again on every open. Sources are opened and read on their own thread
(reconnect.py); a frame is published as soon as it arrives, woken by a guard condition.
CameraInfo, when asked for, shares each image's header.
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

from krystal.msg import StyleDecision
from krystal.ros.compressed import CompressedPublisher
from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.image import array_to_image
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import latched_qos, overridable, sensor_qos
from krystal.ros.streams import publish_stream
from krystal.sched.metrics import RateMeter, Window
from krystal.video.calibration import Calibration, CalibrationError, load_calibration, url_problem
from krystal.video.controls import ControlReport, controls_problem, parse_controls
from krystal.video.reconnect import Frame, RateCap, Report, Supervisor
from krystal.video.sources import (
    SOURCE_TYPES,
    FrameSource,
    fit,
    is_stale,
    make_source,
    render_copy,
    to_bgr8,
)

ENCODINGS = ("bgr8", "rgb8", "mono8")
# capture -> executor callback, conversion into the message, rclpy publish (serialization, DDS write)
STAGES = ("wait", "convert", "publish")
SUPERVISE_PERIOD_S = 0.05  # stall checks and reopen delays; frames wake the node themselves

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
    Param(
        "fps",
        30.0,
        "Frames per second: the rate of test_pattern and file, a cap on camera and stream",
        1.0,
        240.0,
    ),
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
    Param(
        "render_width",
        480,
        "Width of the render feed on camera/image_render, scaled once on the capture thread (area, "
        "aspect of the published image, never upscaled); 0: off. An actuator of the reasoning node",
        0,
        3840,
    ),
    Param(
        "follow_style",
        True,
        "Apply source_width_px (as render_width, when the feed is on) and source_fps of StyleDecision",
    ),
    Param(
        "compressed",
        False,
        "Also publish <image topic>/compressed (sensor_msgs/CompressedImage, JPEG, image_transport's "
        "format) for each image topic, encoded on its own thread while someone subscribes: the stream "
        "for other hosts",
    ),
    Param("jpeg_quality", 80, "JPEG quality of the compressed topics (1..100)", 1, 100),
)
_REOPEN = {"source_type", "source", "width", "height", "loop", "stall_timeout_s", "camera_controls"}


class VideoSourceNode(Node):
    def __init__(self, node_name: str = "video_source", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check, self._on_change)
        self._pub = publish_stream(
            self, Image, "camera/image_raw", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._render_pub = publish_stream(
            self, Image, "camera/image_render", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._raw_skipped = 0  # full frames not converted: the render feed was on and nobody subscribed
        self.create_subscription(StyleDecision, "krystal/style", self._on_style, latched_qos())
        self._info_pub = self.create_publisher(
            CameraInfo, "camera/camera_info", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._health = Health(WARN, "starting")
        self._published = self._skipped = self._stale = self._capped = self._invalid = self._errors = 0
        self._last_index = -1
        self._rate = RateMeter()
        self._latency_ms = Window(300)
        self._stage_ms = {stage: Window(300) for stage in STAGES}
        self._cap = RateCap(self.params["fps"])
        self._controls: ControlReport | None = None
        self._controls_open = 0  # the open that applied them: proves they are set again after a reopen
        self._refused_logged: tuple[str, ...] = ()
        self._calibration: Calibration | None = None
        self._calibration_error: str | None = None
        self._image_size = (0, 0)
        self._diagnostics = Diagnostics(self, hardware_id=self._describe())
        self._diagnostics.add("source", self._source_health)
        self._diagnostics.add("camera_info", self._camera_info_health)
        self._compressed: dict[str, CompressedPublisher] = {}  # image topic -> its compressed publisher
        self._load_calibration()
        # the session's thread wakes the executor when a frame arrives: published at once, not polled
        self._wake = self.create_guard_condition(self._step)
        p = self.params
        self._supervisor = Supervisor(
            self._make_source,
            self._wake.trigger,
            fps=p["fps"],
            reconnect_initial_s=p["reconnect_initial_s"],
            reconnect_max_s=p["reconnect_max_s"],
            stall_timeout_s=p["stall_timeout_s"],
            stamp_clock=self._stamp_ns,
            derive=self._render_copy,
        )
        self._timer = self.create_timer(SUPERVISE_PERIOD_S, self._step)  # stalls and reopen delays

    def _stamp_ns(self) -> int:
        """Header stamps from the node's clock (sim time under use_sim_time); called by the session."""
        return int(self.get_clock().now().nanoseconds)

    def _render_copy(self, pixels: Any) -> Any:
        """On the capture thread: the frame at render size (parameters read live), or None."""
        p = self.params
        return render_copy(pixels, p["render_width"], p["width"], p["height"])

    def _on_style(self, msg: StyleDecision) -> None:
        """The reasoning node's source actuators; each value is bounded by this node's table."""
        p = self.params
        if not p["follow_style"]:
            return
        updates: list[Parameter[Any]] = []
        width = int(msg.source_width_px)
        if width and p["render_width"] and width != p["render_width"]:
            updates.append(Parameter("render_width", value=width))
        fps = float(msg.source_fps)
        if fps > 0 and abs(fps - p["fps"]) > 1e-6:
            updates.append(Parameter("fps", value=fps))
        if updates:
            result = self.set_parameters_atomically(updates)
            if not result.successful:
                self.get_logger().warning(
                    f"refused source actuators of decision {msg.decision_id}: {result.reason}",
                    throttle_duration_sec=5.0,
                )

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
        p = self.params
        if changed & _REOPEN:
            self._supervisor.replace(self._make_source, p["stall_timeout_s"])
            self._controls = None
            self._wake.trigger()
        if "fps" in changed:
            self._supervisor.set_fps(p["fps"])
            self._cap = RateCap(p["fps"])
        if changed & {"reconnect_initial_s", "reconnect_max_s"}:
            self._supervisor.set_backoff(p["reconnect_initial_s"], p["reconnect_max_s"])
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

    def _step(self) -> None:
        try:
            reports, frame = self._supervisor.step(time.monotonic())
            for report in reports:
                self._on_report(report)
            if frame is not None:
                self._on_frame(frame)
        except Exception as exc:  # a bug here must not stop the executor's other nodes
            self._errors += 1
            text = f"video_source step failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(text, throttle_duration_sec=5.0)
            self._set_health(Health(ERROR, text))

    def _on_report(self, report: Report) -> None:
        description = self._supervisor.description
        if report.kind == "opening":
            if self._health.level != ERROR:  # after a failure its reason stays until frames flow again
                self._set_health(Health(self._health.level, report.text))
        elif report.kind == "opened":
            self._last_index = -1
            if self._health.level != ERROR:
                self._set_health(Health(self._health.level, f"{report.text}; waiting for frames"))
            self._controls_opened(report.controls, description)
        elif report.kind == "delivering":
            if report.attempts:
                self.get_logger().info(f"{description} delivers again after {report.attempts} attempt(s)")
            else:
                self.get_logger().info(f"publishing {description}")
        elif report.kind == "ended":
            hint = "" if self.params["loop"] else "; set loop:=true to repeat"
            self.get_logger().warning(f"{report.text}{hint}")
            self._set_health(Health(WARN, report.text))
        elif report.kind == "failed":
            text = f"{report.text}; reopening in {report.wait_s:.1f} s (attempt {report.attempts})"
            self.get_logger().error(text, throttle_duration_sec=5.0)
            self._set_health(Health(ERROR, text))

    def _controls_opened(self, report: ControlReport | None, description: str) -> None:
        if report is None:
            return
        self._controls, self._controls_open = report, self._supervisor.opens
        if report.refused and report.refused != self._refused_logged:
            self.get_logger().warning(
                f"{description} refused camera_controls {', '.join(report.refused)} "
                "(not supported by this device or backend)"
            )
        self._refused_logged = report.refused

    def _on_frame(self, frame: Frame) -> None:
        if self._last_index >= 0 and frame.index > self._last_index + 1:
            self._skipped += frame.index - self._last_index - 1
        self._last_index = frame.index
        now_s = time.monotonic()
        session = self._supervisor.session
        if session is not None and not session.source.paced and not self._cap.admit(now_s):
            self._capped += 1  # a camera faster than fps: this frame is over the rate cap
            return
        if is_stale(now_s - frame.captured_s, self.params["fps"]):
            self._stale += 1
            return
        self._publish(frame, self._supervisor.description, now_s)

    def _publish(self, frame: Frame, description: str, start_s: float) -> None:
        """The render feed first (the renderer waits for it), then the full frame, which is not
        even converted while the render feed is on and nobody subscribes to camera/image_raw."""
        p = self.params
        encoding = p["encoding"]
        header = Header(stamp=Time(nanoseconds=frame.stamp_ns).to_msg(), frame_id=p["frame_id"])
        converted_s = published_s = start_s
        if frame.render is not None:
            small_pixels = _encoded(frame.render, encoding)
            small = array_to_image(small_pixels, encoding, header)
            converted_s = time.monotonic()
            self._render_pub.publish(small)
            self._offer_compressed("camera/image_render", small_pixels, encoding, header)
            published_s = time.monotonic()  # the stages time the frame the renderer takes
        if (
            frame.render is None
            or self._pub.get_subscription_count() > 0
            or self._compressed_wanted("camera/image_raw")
        ):
            try:
                pixels = _encoded(fit(to_bgr8(frame.pixels), p["width"], p["height"]), encoding)
            except ValueError as exc:
                self._invalid += 1
                text = f"frame from {description} cannot be published: {exc}"
                self.get_logger().warning(text, throttle_duration_sec=5.0)
                self._set_health(Health(WARN, text))
                return
            msg = array_to_image(pixels, encoding, header)
            self._image_size = (msg.width, msg.height)
            if frame.render is None:
                converted_s = time.monotonic()
            self._pub.publish(msg)
            self._offer_compressed("camera/image_raw", pixels, encoding, header)
            if frame.render is None:
                published_s = time.monotonic()
        else:
            self._raw_skipped += 1
        if p["publish_camera_info"]:
            self._info_pub.publish(self._camera_info(header))
        self._published += 1
        self._rate.tick(published_s)
        for stage, ms in zip(
            STAGES,
            (start_s - frame.captured_s, converted_s - start_s, published_s - converted_s),
            strict=True,
        ):
            self._stage_ms[stage].add(ms * 1e3)
        self._latency_ms.add((published_s - frame.captured_s) * 1e3)
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
            "frames_dropped": str(self._skipped + self._stale + self._capped),
            "frames_superseded": str(self._skipped),
            "frames_stale": str(self._stale),
            "frames_over_rate_cap": str(self._capped),
            "frames_invalid": str(self._invalid),
            "render_width": str(self.params["render_width"]),
            "full_frames_not_sent": str(self._raw_skipped),
            "capture_to_publish_ms_p50": f"{lat.p50:.2f}",
            "capture_to_publish_ms_p99": f"{lat.p99:.2f}",
            "opens": str(self._supervisor.opens),
            "reconnect_attempts": str(self._supervisor.reconnect.backoff.attempts),
            "state": self._supervisor.reconnect.state,
        }
        for stage, window in self._stage_ms.items():
            summary = window.summary()
            values[f"{stage}_ms_p50"] = f"{summary.p50:.2f}"
            values[f"{stage}_ms_p99"] = f"{summary.p99:.2f}"
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

    def _offer_compressed(self, topic: str, pixels: Any, encoding: str, header: Header) -> None:
        """Hand a published frame of image `topic` to its `<topic>/compressed` encoder (when asked for)."""
        if not self.params["compressed"]:
            return
        encoder = self._compressed.get(topic)
        if encoder is None:
            encoder = self._compressed[topic] = CompressedPublisher(
                self, topic, sensor_qos(depth=1), lambda: int(self.params["jpeg_quality"])
            )
            self._diagnostics.add(f"compressed {topic}", encoder.health)
        encoder.submit(pixels, encoding, header)

    def _compressed_wanted(self, topic: str) -> bool:
        """Whether `<topic>/compressed` has an encoder (it is made on first offer) with a subscriber."""
        if not self.params["compressed"]:
            return False
        encoder = self._compressed.get(topic)
        return encoder is None or encoder.wanted()

    def destroy_node(self) -> None:
        self._supervisor.close()
        for encoder in self._compressed.values():
            encoder.close()
        super().destroy_node()


def _encoded(pixels: Any, encoding: str) -> Any:
    """bgr8 pixels in the published encoding."""
    if encoding == "rgb8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if encoding == "mono8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    return pixels
