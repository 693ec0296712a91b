"""ascii_renderer: sensor_msgs/Image to AsciiFrame; and the terminal viewer node of `krystal view`."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rcl_interfaces.msg import Log
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from krystal.ascii.luma import to_luma
from krystal.ascii.ramp import DEFAULT_CHARSET, RampRenderer, check_charset
from krystal.ascii.terminal import TerminalView
from krystal.msg import AsciiFrame, RenderStats
from krystal.ros.compat import SubscriptionEventCallbacks
from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.image import ImageFormatError, image_to_array
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import overridable, reliable_qos, sensor_qos
from krystal.sched.metrics import RateMeter, Window

MODES = ("ramp",)

PARAMS = (
    Param("columns", 120, "Characters per line of the rendered grid", 8, 1000),
    Param("rows", 45, "Lines of the rendered grid", 2, 500),
    Param("mode", "ramp", "Rendering style", choices=MODES),
    Param("charset", DEFAULT_CHARSET, "Glyphs of the luminance ramp, darkest first"),
    Param("invert", False, "Reverse the ramp (dark text on a light terminal)"),
    Param("budget_ms", 33.0, "Render time per frame above which health turns WARN", 1.0, 1000.0),
    Param("stats_period_s", 1.0, "Period of RenderStats messages", 0.1, 60.0),
    Param("input_timeout_s", 2.0, "No image for this long turns health WARN", 0.1, 60.0),
)


class AsciiRendererNode(Node):
    def __init__(self, node_name: str = "ascii_renderer", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check, self._on_change)
        self._renderer = self._make_renderer()
        self._pub = self.create_publisher(
            AsciiFrame, "krystal/ascii", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._stats_pub = self.create_publisher(RenderStats, "krystal/render_stats", reliable_qos())
        self._lost = 0
        self.create_subscription(
            Image,
            "camera/image_raw",
            self._on_image,
            sensor_qos(depth=1),
            qos_overriding_options=overridable(),
            event_callbacks=SubscriptionEventCallbacks(message_lost=self._on_lost),
        )
        self._rendered = self._invalid = 0
        self._in_rate, self._out_rate = RateMeter(), RateMeter()
        self._render_ms, self._latency_ms = Window(300), Window(300)
        self._last_input_s = 0.0
        self._input_error: str | None = None
        self._diagnostics = Diagnostics(self)
        self._diagnostics.add("render", self._render_health)
        self._stats_timer = self.create_timer(self.params["stats_period_s"], self._publish_stats)

    @staticmethod
    def _cross_check(values: dict[str, Any]) -> str | None:
        return check_charset(values["charset"])

    def _make_renderer(self) -> RampRenderer:
        return RampRenderer(self.params["charset"], self.params["invert"])

    def _on_change(self, changed: set[str]) -> None:
        if changed & {"charset", "invert"}:
            self._renderer = self._make_renderer()
        if "stats_period_s" in changed:
            self.destroy_timer(self._stats_timer)
            self._stats_timer = self.create_timer(self.params["stats_period_s"], self._publish_stats)

    def _on_lost(self, info: Any) -> None:
        self._lost = int(info.total_count)

    def _on_image(self, msg: Image) -> None:
        self._in_rate.tick()
        self._last_input_s = time.monotonic()
        t0 = time.perf_counter()
        try:
            luma = to_luma(image_to_array(msg), msg.encoding)
        except (ImageFormatError, ValueError) as exc:
            self._invalid += 1
            self._input_error = f"malformed image: {exc}"
            self.get_logger().error(self._input_error, throttle_duration_sec=5.0)
            self._diagnostics.level_changed("render", ERROR)
            return
        p = self.params
        lines = self._renderer.render(luma, p["columns"], p["rows"])
        render_ms = (time.perf_counter() - t0) * 1e3
        out = AsciiFrame(
            header=msg.header,
            columns=p["columns"],
            rows=p["rows"],
            lines=lines,
            mode=p["mode"],
            kernel="luminance",
            kernel_size=0,
            charset=p["charset"],
            render_time_ms=render_ms,
        )
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        out.latency_ms = (time.time_ns() - stamp_ns) / 1e6 if stamp_ns else 0.0
        self._pub.publish(out)
        if self._input_error is not None:
            self._input_error = None
            self._diagnostics.level_changed("render", OK)
        self._rendered += 1
        self._out_rate.tick()
        self._render_ms.add(render_ms)
        if stamp_ns:
            self._latency_ms.add(out.latency_ms)

    def _publish_stats(self) -> None:
        r, lat, p = self._render_ms.summary(), self._latency_ms.summary(), self.params
        self._stats_pub.publish(
            RenderStats(
                header=self._header(),
                period_s=p["stats_period_s"],
                frames_rendered=self._rendered,
                frames_dropped=self._lost,
                frames_invalid=self._invalid,
                input_fps=self._in_rate.rate_hz(),
                output_fps=self._out_rate.rate_hz(),
                render_time_ms_mean=r.mean,
                render_time_ms_p50=r.p50,
                render_time_ms_p99=r.p99,
                render_time_ms_max=r.max,
                latency_ms_p50=lat.p50,
                latency_ms_p99=lat.p99,
                budget_ms=p["budget_ms"],
                columns=p["columns"],
                rows=p["rows"],
                mode=p["mode"],
                kernel="luminance",
                kernel_size=0,
            )
        )

    def _header(self) -> Any:
        from std_msgs.msg import Header

        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.get_name())

    def _render_health(self) -> Health:
        r = self._render_ms.summary()
        values = {
            "input_fps": f"{self._in_rate.rate_hz():.1f}",
            "output_fps": f"{self._out_rate.rate_hz():.1f}",
            "render_ms_p50": f"{r.p50:.2f}",
            "render_ms_p99": f"{r.p99:.2f}",
            "frames_rendered": str(self._rendered),
            "frames_invalid": str(self._invalid),
            "frames_lost": str(self._lost),
            "grid": f"{self.params['columns']}x{self.params['rows']}",
        }
        if self._input_error is not None:
            return Health(ERROR, self._input_error, values)
        idle_s = time.monotonic() - self._last_input_s
        if not self._last_input_s or idle_s > self.params["input_timeout_s"]:
            return Health(WARN, "no images on camera/image_raw", values)
        if r.count and r.p50 > self.params["budget_ms"]:
            return Health(
                WARN, f"render {r.p50:.1f} ms over the {self.params['budget_ms']:.0f} ms budget", values
            )
        return Health(OK, f"rendering {self._out_rate.rate_hz():.1f} fps", values)


class AsciiViewNode(Node):
    """Draws AsciiFrames live in the terminal with a status line (fps, render ms, last warning)."""

    def __init__(self, node_name: str = "krystal_view", out: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._out = out or sys.stdout
        self._view = TerminalView(self._out, alternate_screen=self._out.isatty())
        self._view.enter()
        self._rate = RateMeter()
        self._warning = ""
        self.frames = 0
        self.create_subscription(AsciiFrame, "krystal/ascii", self._on_frame, sensor_qos(depth=1))
        self.create_subscription(Log, "/rosout", self._on_log, reliable_qos(50))

    def _on_log(self, msg: Log) -> None:
        if msg.level >= Log.WARN and msg.name != self.get_name():
            self._warning = f"{msg.name}: {msg.msg}"

    def _on_frame(self, msg: AsciiFrame) -> None:
        self._rate.tick()
        self.frames += 1
        status = (
            f" {msg.mode}/{msg.kernel} {msg.columns}x{msg.rows} | {self._rate.rate_hz():4.1f} fps"
            f" | render {msg.render_time_ms:5.2f} ms | latency {msg.latency_ms:5.1f} ms | Ctrl-C quits"
        )
        if self._warning:
            status += f" | {self._warning}"
        self._view.draw(list(msg.lines), status)

    def destroy_node(self) -> None:
        self._view.leave()
        super().destroy_node()
