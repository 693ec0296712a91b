"""ascii_renderer: sensor_msgs/Image to AsciiFrame (+ a rendered Image for rqt, RenderStats), and the
terminal viewer node of `krystal view`."""

from __future__ import annotations

import array
import hashlib
import os
import sys
import time
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray
from rcl_interfaces.msg import Log
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from krystal.ascii import raster
from krystal.ascii.engine import COLOR_DEPTHS, KERNELS, MODES, SUB_X, SUB_Y, Engine, Render, Style
from krystal.ascii.glitch import EnergyFollower, audio_energy
from krystal.ascii.ramp import DEFAULT_CHARSET, check_charset
from krystal.ascii.terminal import COLOR_MODES, TerminalView, ansi_lines, terminal_size
from krystal.graph import IMAGE_TRANSPORTS, transport_topic
from krystal.msg import AsciiFrame, AudioFeatures, RenderStats, StyleDecision
from krystal.ros.compressed import CompressedFormatError, decode, reduction_for
from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.image import ImageFormatError, array_to_image, image_to_array
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import latched_qos, overridable, reliable_qos, sensor_qos
from krystal.ros.streams import publish_stream, subscribe_stream
from krystal.sched.metrics import RateMeter, Window

PARAMS = (
    Param("columns", 120, "Characters per line of the rendered grid", 8, 1000),
    Param("rows", 45, "Lines of the rendered grid", 2, 500),
    Param("mode", "ramp", "Style: ramp, edges, sketch, cyberpunk (colour) or glitch", choices=MODES),
    Param(
        "kernel",
        "luminance",
        "Glyph choice away from edges: calibrated ramp or learned matcher",
        choices=KERNELS,
    ),
    Param("kernel_size", 3, "Sobel kernel size for edge glyphs (3, 5 or 7): quality/cost knob", 3, 7),
    Param("charset", DEFAULT_CHARSET, "Glyphs of the luminance ramp, darkest first"),
    Param("invert", False, "Reverse the ramp (dark text on a light terminal)"),
    Param("color_depth", "truecolor", "Colours of the colour modes: truecolor or 256", choices=COLOR_DEPTHS),
    Param("auto_contrast", True, "Stretch each frame's contrast (smoothed over frames)"),
    Param("hysteresis", 0.02, "Luma margin a cell's new glyph must win by: stops flicker", 0.0, 0.5),
    Param(
        "edge_threshold", 0.25, "Edge glyph threshold, fraction of the frame's strong-edge energy", 0.01, 1.0
    ),
    Param("saturation", 1.3, "Chroma gain of the cyberpunk mode (brightness kept)", 0.0, 3.0),
    Param(
        "glyph_contrast", 0.6, "Cyberpunk: glyphs this much brighter than their cell (mean kept)", 0.0, 3.0
    ),
    Param("glitch_level", 0.25, "Glitch amount when no audio arrives (0..1)", 0.0, 1.0),
    Param("audio_timeout_s", 2.0, "Audio silent this long: glitch falls back to glitch_level", 0.1, 60.0),
    Param("follow_style", True, "Apply StyleDecision messages from the reasoning node"),
    Param(
        "max_frame_age_ms", 100.0, "Frames older than this on arrival are dropped, 0 keeps all", 0.0, 10000.0
    ),
    Param("image_rate_hz", 10.0, "Rate of the rendered Image on krystal/ascii/image, 0 disables", 0.0, 60.0),
    Param("image_cell_height", 16, "Pixel height of one character in the rendered Image", 8, 32),
    Param("budget_ms", 33.0, "Render time per frame above which health turns WARN", 1.0, 1000.0),
    Param("stats_period_s", 1.0, "Period of RenderStats messages", 0.1, 60.0),
    Param("input_timeout_s", 2.0, "No image for this long turns health WARN", 0.1, 60.0),
    Param(
        "model_path",
        "",
        "Learned-kernel weights (.npz); empty: $KRYSTAL_GLYPH_MODEL or the shipped model",
        validate=lambda path: _model_error(path),  # noqa: PLW0108  (defined below)
    ),
    Param("slowdown", 1.0, "Test/load knob: render stretched (sleep) to this times its cost", 1.0, 100.0),
    Param(
        "input",
        "render",
        "Images rendered: raw (camera/image_raw, full size) or render (camera/image_render, the "
        "source's render feed: scaled once near the capture, video_source render_width)",
        choices=("raw", "render"),
        read_only=True,
    ),
    Param(
        "follow_shed",
        True,
        "While a StyleDecision says shed, send no rendered Image (krystal/ascii/image): restored after",
    ),
    Param(
        "image_transport",
        "raw",
        "How camera images arrive: raw (sensor_msgs/Image) or compressed (<topic>/compressed, JPEG, "
        "decoded at the size the grid needs: the choice across hosts)",
        choices=IMAGE_TRANSPORTS,
        read_only=True,
    ),
)
INPUT_TOPICS = {"raw": "camera/image_raw", "render": "camera/image_render"}
_STYLE_PARAMS = {
    "columns", "rows", "mode", "kernel", "kernel_size", "charset", "invert", "color_depth",
    "auto_contrast", "hysteresis", "edge_threshold", "saturation", "glyph_contrast",
}  # fmt: skip


def _model_error(path: str) -> str | None:
    """Why the weights in `path` cannot be used, or None: a deployment is refused, not half-applied."""
    from krystal.ascii.learned import load_matcher

    try:
        load_matcher(path or None)
    except (OSError, ValueError, KeyError) as exc:
        return f"model_path={path!r}: {exc}"
    return None


def _model_file(path: str) -> str:
    from krystal.ascii.learned import DEFAULT_MODEL, MODEL_ENV

    return path or os.environ.get(MODEL_ENV) or str(DEFAULT_MODEL)


def style_of(values: dict[str, Any]) -> Style:
    return Style(**{k: values[k] for k in _STYLE_PARAMS})


def _as_bytes(pixels: NDArray[np.uint8] | None) -> array.array[int]:
    out = array.array("B")
    if pixels is not None:
        out.frombytes(np.ascontiguousarray(pixels).data)
    return out


class AsciiRendererNode(Node):
    def __init__(self, node_name: str = "ascii_renderer", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check, self._on_change)
        self.engine = Engine(style_of(self.params.values))
        self.engine.set_model(self.params["model_path"])
        self._model_sha256 = _sha256(_model_file(self.params["model_path"]))
        if self.engine.atlas_error is not None:
            self.get_logger().warning(f"{self.engine.atlas_error}; no rendered Image")
        self._pub = self.create_publisher(
            AsciiFrame, "krystal/ascii", sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        self._image_pub = self.create_publisher(Image, "krystal/ascii/image", sensor_qos(depth=1))
        self._stats_pub = publish_stream(self, RenderStats, "krystal/render_stats", reliable_qos())
        self.input_topic = INPUT_TOPICS[self.params["input"]]
        self._shed = False
        self._image_topic = self._subscribe_image(self.input_topic)
        self.create_subscription(StyleDecision, "krystal/style", self._on_style, latched_qos())
        subscribe_stream(self, AudioFeatures, "audio/features", self._on_audio, sensor_qos(depth=5))
        self._rendered = self._invalid = self._dropped = self._stale = 0
        self._in_rate, self._out_rate = RateMeter(), RateMeter()
        self._render_ms, self._latency_ms = Window(300), Window(300)
        self._last_input_s = 0.0
        self._last_stamp_ns = 0
        self._period_ns = 0.0
        self._last_image_s = 0.0
        self._last_audio_s = 0.0
        self._energy = EnergyFollower()
        self._input_error: str | None = None
        self._undecodable = 0
        self._source_size = (0, 0)  # full size of the compressed images: how far to reduce the decode
        self._style_note: str | None = None
        self._fallback_note: str | None = None
        self._diagnostics = Diagnostics(self)
        self._diagnostics.add("render", self._render_health)
        self._diagnostics.add("model", self._model_health)
        self._stats_timer = self.create_timer(self.params["stats_period_s"], self._publish_stats)

    @staticmethod
    def _cross_check(values: dict[str, Any]) -> str | None:
        if values["kernel_size"] not in (3, 5, 7):
            return f"kernel_size={values['kernel_size']} is not one of 3, 5, 7"
        return check_charset(values["charset"]) or style_of(values).check()

    def _on_change(self, changed: set[str]) -> None:
        if "model_path" in changed:
            self.engine.set_model(self.params["model_path"])
            self._model_sha256 = _sha256(_model_file(self.params["model_path"]))
            self._diagnostics.publish()
        if changed & _STYLE_PARAMS:
            self.engine.set_style(style_of(self.params.values))
        if "stats_period_s" in changed:
            self.destroy_timer(self._stats_timer)
            self._stats_timer = self.create_timer(self.params["stats_period_s"], self._publish_stats)

    def _on_style(self, msg: StyleDecision) -> None:
        self._shed = bool(msg.shed) and self.params["follow_shed"]
        if not self.params["follow_style"]:
            return
        updates = [
            Parameter("mode", value=msg.mode),
            Parameter("kernel", value=msg.kernel or self.params["kernel"]),
            Parameter("kernel_size", value=int(msg.kernel_size) or self.params["kernel_size"]),
        ]
        if msg.columns and msg.rows:
            updates += [Parameter("columns", value=int(msg.columns)), Parameter("rows", value=int(msg.rows))]
        result = self.set_parameters_atomically(updates)
        if result.successful:
            self._style_note = None
            self.get_logger().info(
                f"style decision {msg.decision_id} by {msg.policy or '?'}: {msg.mode}/{msg.kernel}"
                f" ({msg.reason or 'no reason given'})"
            )
        else:
            self._style_note = f"refused style decision {msg.decision_id}: {result.reason}"
            self.get_logger().warning(self._style_note, throttle_duration_sec=5.0)
            self._diagnostics.level_changed("render", WARN)

    def _on_audio(self, msg: AudioFeatures) -> None:
        self._last_audio_s = time.monotonic()
        self._energy.update(
            audio_energy(float(msg.rms_dbfs), float(msg.onset_strength) if msg.onset else 0.0)
        )

    def _glitch_energy(self) -> float:
        if time.monotonic() - self._last_audio_s > self.params["audio_timeout_s"]:
            return float(self.params["glitch_level"])
        return self._energy.value

    def _track_input(self, stamp_ns: int) -> bool:
        """Count superseded frames from gaps in input stamps; False if this frame is too old."""
        if stamp_ns and self._last_stamp_ns and stamp_ns > self._last_stamp_ns:
            gap = stamp_ns - self._last_stamp_ns
            if self._period_ns:
                missed = round(gap / self._period_ns) - 1
                if missed > 0 and gap < 10 * self._period_ns:
                    self._dropped += missed
                self._period_ns += 0.05 * (min(gap, 3 * self._period_ns) - self._period_ns)
            else:
                self._period_ns = float(gap)
        if stamp_ns:
            self._last_stamp_ns = stamp_ns
        if not stamp_ns:
            return True
        stamps = getattr(self, "_stamp_age", None)
        if stamps is None:  # created here so that this check stays in one place
            from krystal.ros.stamps import StampAge

            stamps = self._stamp_age = StampAge()

            def stamp_health() -> Health:
                st = stamps.status()
                return Health(
                    WARN if st.skewed else OK, st.describe(), {"stamp_offset_s": f"{st.offset_s:.3f}"}
                )

            self._diagnostics.add("input_stamps", stamp_health)
        # the node's clock, as the stamps are (sim time under use_sim_time), not the wall clock
        was_skewed = stamps.skewed
        age_ms = stamps.age_ns(stamp_ns, self.get_clock().now().nanoseconds) / 1e6
        if stamps.skewed != was_skewed:
            text = stamps.status().describe()
            (self.get_logger().warning if stamps.skewed else self.get_logger().info)(text)
            self._diagnostics.level_changed("input_stamps", WARN if stamps.skewed else OK)
        max_age_ms = self.params["max_frame_age_ms"]
        if max_age_ms > 0 and age_ms > max_age_ms:
            self._stale += 1
            return False
        return True

    def _on_image(self, msg: Image) -> None:
        self._in_rate.tick()
        self._last_input_s = time.monotonic()
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        if not self._track_input(stamp_ns):
            return
        t0 = time.perf_counter()
        try:
            pixels = image_to_array(msg)
            self.engine.energy = self._glitch_energy()
            render = self.engine.render(pixels, msg.encoding)
            out = self._frame(msg.header, render)
            image = self._rendered_image(msg.header, render)
        except ImageFormatError as exc:
            self._reject(f"malformed image (frame_id {msg.header.frame_id!r}): {exc}")
            return
        except Exception as exc:  # cv2.error and the like: one bad frame must not stop the renderer
            self._reject(
                f"cannot render image (frame_id {msg.header.frame_id!r}, {msg.encoding!r}"
                f" {msg.width}x{msg.height} step {msg.step}, {len(msg.data)} bytes):"
                f" {type(exc).__name__}: {exc}"
            )
            return
        if self.params["slowdown"] > 1.0:  # a slower machine, for closed-loop tests
            time.sleep((time.perf_counter() - t0) * (self.params["slowdown"] - 1.0))
        render_ms = (time.perf_counter() - t0) * 1e3
        out.render_time_ms = render_ms
        out.latency_ms = (time.time_ns() - stamp_ns) / 1e6 if stamp_ns else 0.0
        self._pub.publish(out)
        if image is not None:
            self._image_pub.publish(image)
        if self._input_error is not None:
            self._input_error = None
            self._diagnostics.level_changed("render", OK)
        self._note_fallback()
        self._rendered += 1
        self._out_rate.tick()
        self._render_ms.add(render_ms)
        if stamp_ns:
            self._latency_ms.add(out.latency_ms)

    def _subscribe_image(self, topic: str) -> str:
        """Subscribe to image `topic` with the configured transport; the resolved name it reads."""
        name = transport_topic(topic, self.params["image_transport"])
        msg_type, callback = (
            (Image, self._on_image) if name == topic else (CompressedImage, self._on_compressed)
        )
        sub = subscribe_stream(
            self, msg_type, name, callback, sensor_qos(depth=1), qos_overriding_options=overridable()
        )
        return str(sub.topic_name)

    def _on_compressed(self, msg: CompressedImage) -> None:
        """Decode (at the size the grid needs) and render; a malformed one is counted and rejected."""
        st = self.engine.style
        reduce = reduction_for(*self._source_size, st.columns * SUB_X, st.rows * SUB_Y)
        try:
            pixels, encoding = decode(msg.format, msg.data, reduce)
            image = array_to_image(pixels, encoding, msg.header)
        except (CompressedFormatError, ImageFormatError) as exc:
            self._in_rate.tick()
            self._last_input_s = time.monotonic()
            self._undecodable += 1
            self._reject(
                f"undecodable compressed image (format {msg.format!r}, {len(msg.data)} bytes): {exc}"
            )
            return
        self._source_size = (image.width * reduce, image.height * reduce)
        self._on_image(image)

    def _reject(self, reason: str) -> None:
        self._invalid += 1
        self._input_error = reason
        self.get_logger().error(reason, throttle_duration_sec=5.0)
        self._diagnostics.level_changed("render", ERROR)

    def _note_fallback(self) -> None:
        """Say once on /rosout (and on /diagnostics, as WARN) that the learned kernel fell back."""
        error = self.engine.learned_error if self.engine.style.kernel == "learned" else None
        if error is not None and error != self._fallback_note:
            self.get_logger().warning(error)
            self._fallback_note = error
            self._diagnostics.level_changed("render", WARN)
        elif error is None:
            self._fallback_note = None

    def _frame(self, header: Header, render: Render) -> AsciiFrame:
        st = self.engine.style
        return AsciiFrame(
            header=header,
            columns=st.columns,
            rows=st.rows,
            lines=render.lines(),
            mode=st.mode,
            kernel=render.kernel,
            kernel_size=st.kernel_size if st.mode != "ramp" else 0,
            charset=st.charset,
            foreground_rgb=_as_bytes(render.foreground),
            background_rgb=_as_bytes(render.background),
        )

    def _rendered_image(self, header: Header, render: Render) -> Image | None:
        """The text drawn back to pixels for rqt_image_view, at most image_rate_hz, when someone listens."""
        rate = self.params["image_rate_hz"]
        now = time.monotonic()
        if rate <= 0 or self._shed or self.engine.atlas is None or now - self._last_image_s < 1.0 / rate:
            return None
        if self._image_pub.get_subscription_count() == 0:
            return None
        self._last_image_s = now
        height = self.params["image_cell_height"]
        atlas = self.engine.atlas
        if atlas.cell_h != height:
            from krystal.ascii.atlas import load_atlas

            atlas = load_atlas(atlas.glyphs, height // 2, height, atlas.font)
        if render.foreground is not None:
            pixels = raster.colour(render.codes, atlas, render.foreground, render.background)
            return array_to_image(pixels, "rgb8", header)
        ink = raster.ink(render.codes, atlas)
        return array_to_image(
            (ink * (255.0 / max(float(atlas.coverage.max()), 1e-3))).clip(0, 255).astype(np.uint8),
            "mono8",
            header,
        )

    def _publish_stats(self) -> None:
        r, lat, p = self._render_ms.summary(), self._latency_ms.summary(), self.params
        st = self.engine.style
        self._stats_pub.publish(
            RenderStats(
                header=Header(stamp=self.get_clock().now().to_msg(), frame_id=self.get_name()),
                period_s=p["stats_period_s"],
                frames_rendered=self._rendered,
                frames_dropped=self._dropped + self._stale,
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
                columns=st.columns,
                rows=st.rows,
                mode=st.mode,
                kernel=self.engine.kernel_in_use(),  # as AsciiFrame says: the fallback, not the wish
                kernel_size=st.kernel_size,
            )
        )

    def _model_health(self) -> Health:
        path = _model_file(self.params["model_path"])
        values = {"model_path": path, "model_sha256": self._model_sha256, "kernel": self.engine.style.kernel}
        if self.engine.style.kernel == "learned" and self.engine.learned_matcher() is None:
            return Health(WARN, self.engine.learned_error or f"learned model unusable: {path}", values)
        return Health(OK, f"model {os.path.basename(path)} sha256 {self._model_sha256[:12]}", values)

    def _render_health(self) -> Health:
        r = self._render_ms.summary()
        st = self.engine.style
        values = {
            "style": f"{st.mode}/{self.engine.kernel_in_use()}/k{st.kernel_size}",
            "grid": f"{st.columns}x{st.rows}",
            "input_fps": f"{self._in_rate.rate_hz():.1f}",
            "output_fps": f"{self._out_rate.rate_hz():.1f}",
            "render_ms_p50": f"{r.p50:.2f}",
            "render_ms_p99": f"{r.p99:.2f}",
            "frames_rendered": str(self._rendered),
            "frames_invalid": str(self._invalid),
            "frames_superseded": str(self._dropped),
            "frames_too_old": str(self._stale),
            "image_topic": self._image_topic,
            "shedding": str(self._shed).lower(),
            "frames_undecodable": str(self._undecodable),
        }
        if self._input_error is not None:
            return Health(ERROR, self._input_error, values)
        idle_s = time.monotonic() - self._last_input_s
        if not self._last_input_s or idle_s > self.params["input_timeout_s"]:
            hint = " (video_source render_width is 0?)" if self.params["input"] == "render" else ""
            return Health(WARN, f"no images on {self._image_topic}{hint}", values)
        if self._style_note:
            return Health(WARN, self._style_note, values)
        if self._fallback_note:
            return Health(WARN, self._fallback_note, values)
        budget = self.params["budget_ms"]
        if r.count and r.p50 > budget:
            return Health(WARN, f"render {r.p50:.1f} ms over the {budget:.0f} ms budget", values)
        return Health(OK, f"rendering {self._out_rate.rate_hz():.1f} fps", values)


def _sha256(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return ""


def terminal_colors(choice: str = "auto") -> str:
    """truecolor where the terminal says so (COLORTERM), else 256."""
    if choice != "auto":
        return choice
    return "truecolor" if os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit") else "256"


class AsciiViewNode(Node):
    """Draws AsciiFrames live in the terminal with a status line (fps, render ms, last warning)."""

    def __init__(
        self, node_name: str = "krystal_view", out: TextIO | None = None, colors: str = "auto", **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._out = out or sys.stdout
        self._colors = terminal_colors(colors)
        if self._colors not in COLOR_MODES:
            raise ValueError(f"colors must be auto or one of {', '.join(COLOR_MODES)}")
        self._view = TerminalView(self._out, alternate_screen=self._out.isatty())
        self._view.enter()
        self._rate = RateMeter()
        self._warning = ""
        self.frames = 0
        self.drawn_ms: float | None = None  # capture stamp -> the last frame drawn (issue 29)
        self.create_subscription(AsciiFrame, "krystal/ascii", self._on_frame, sensor_qos(depth=1))
        self.create_subscription(Log, "/rosout", self._on_log, reliable_qos(50))

    def _on_log(self, msg: Log) -> None:
        if msg.level >= Log.WARN and msg.name != self.get_name():
            self._warning = f"{msg.name}: {msg.msg}"

    def _on_frame(self, msg: AsciiFrame) -> None:
        self._rate.tick()
        self.frames += 1
        columns, rows = int(msg.columns), int(msg.rows)
        term_cols, term_rows = terminal_size()
        status = f" {msg.mode}/{msg.kernel} {columns}x{rows} | {self._rate.rate_hz():4.1f} fps"
        timing = f" | render {msg.render_time_ms:5.2f} ms | latency {msg.latency_ms:5.1f} ms"
        if self.drawn_ms is not None:  # the previous frame's capture -> drawn: what the viewer saw
            timing += f" | drawn {self.drawn_ms:5.1f} ms"
        if self._warning:  # the warning in the hint's place; timings give way on a narrow terminal
            status += (timing if len(status + timing) + 40 <= term_cols else "") + f" | {self._warning}"
        else:
            status += timing + " | Ctrl-C quits"
        cells = rows * columns
        if len(msg.foreground_rgb) == 3 * cells and self._colors != "none" and len(msg.lines) == rows:
            keep_r, keep_c = min(rows, max(1, term_rows - 1)), min(columns, term_cols)
            codes = raster.lines_to_codes(list(msg.lines))[:keep_r, :keep_c]
            fg = np.frombuffer(msg.foreground_rgb, np.uint8).reshape(rows, columns, 3)[:keep_r, :keep_c]
            bg = None
            if len(msg.background_rgb) == 3 * cells:
                bg = np.frombuffer(msg.background_rgb, np.uint8).reshape(rows, columns, 3)[:keep_r, :keep_c]
            self._view.draw(ansi_lines(codes, fg, bg, self._colors), status, clip=False)
        else:
            self._view.draw(list(msg.lines), status)
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        self.drawn_ms = (time.time_ns() - stamp_ns) / 1e6 if stamp_ns else None

    def destroy_node(self) -> None:
        self._view.leave()
        super().destroy_node()
