"""End to end: video_source -> ascii_renderer in separate processes, 1080p at 30 fps.

Capture-to-AsciiFrame latency (the renderer's own measure at publication, and at a third process's
receipt), the age of each frame when its render started, and whether output stamps are the input's.
Ours: the shipped transport profile and sensor-data QoS. Anchor, same run: Fast DDS defaults with
reliable QoS (set through the nodes' qos_overrides parameters), what users get without the profile. Then
the same graph with both nodes on rclpy's SingleThreadedExecutor (`executor.type:=single`) against
krystal's deadline executor, their default.

Where the time goes, per stage (p50 and p99 ms): `wait` (capture to video_source's callback),
`convert` (into the Image message), `publish` (rclpy serialization and the DDS write) from
video_source's /diagnostics; `dds_rclpy` (transport, deserialization and the renderer's executor:
the renderer's capture-to-publication latency less its render time and the video stages, a
difference of medians); `render` (AsciiFrame.render_time_ms); `ascii_delivery` (AsciiFrame
publication to this probe's receipt). `copy_1080p` is the cost of one memcpy of the frame, the floor.

The render feed (issue 29): video_source scales each frame once on its capture thread to
`render_width` (columns x 4 px here) and publishes it on camera/image_render; the renderer takes it
(`input: render`, the default config). Measured across two processes and composed in one
(`krystal run --nodes video_source,ascii_renderer`), beside the full 1080p path, with the floor of
each: a bare rclpy pub/sub across two processes of the same bytes (an Image of that size at 30 Hz,
stamp to receipt). The load average is printed with them: the machine is shared.

    python -m bench.e2e_bench [--seconds 10] [--mode edges] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import dies_with_us, emit, time_ms
from krystal.domain import isolated_domain_id

DEFAULTS_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <participant profile_name="fastdds_defaults" is_default_profile="true"><rtps/></participant>
</profiles></dds>
"""


def _executable(name: str) -> str:
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix("krystal")) / "lib" / "krystal" / name)


def probe(seconds: float, check_stamps: float) -> dict[str, Any]:
    """Runs in its own process: records AsciiFrames (and, briefly, images for the stamp check)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from krystal.msg import AsciiFrame
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.time import Time
    from sensor_msgs.msg import Image

    from krystal.ros.qos import reliable_qos, sensor_qos

    rclpy.init()
    node = rclpy.create_node("e2e_probe")
    rows: list[tuple[int, float, float, float]] = []

    def on_frame(msg: AsciiFrame) -> None:
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        rows.append((stamp, (time.time_ns() - stamp) / 1e6, msg.latency_ms, msg.render_time_ms))

    node.create_subscription(AsciiFrame, "krystal/ascii", on_frame, sensor_qos(10))
    video_values: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "video_source: source":
                video_values.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable_qos(10))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.monotonic()
    while not rows and time.monotonic() - start < 30:
        executor.spin_once(timeout_sec=0.1)
    rows.clear()  # warm-up over: measure from here
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    measured = list(rows)
    image_stamps: set[int] = set()
    node.create_subscription(
        Image,
        "camera/image_raw",
        lambda m: image_stamps.add(Time.from_msg(m.header.stamp).nanoseconds),
        sensor_qos(5),
    )
    rows.clear()
    end = time.monotonic() + check_stamps
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    checked = [r[0] for r in rows if image_stamps and min(image_stamps) <= r[0] <= max(image_stamps)]
    node.destroy_node()
    rclpy.try_shutdown()
    return {
        "frames": measured,
        "stamp_matches": sum(s in image_stamps for s in checked),
        "stamp_checked": len(checked),
        "video": video_values,  # the last 300 frames' stages, as video_source reports them
    }


def _probe_with(
    env: dict[str, str], commands: list[list[str]], probe_args: list[str], timeout_s: float
) -> Any:
    """Start `commands` (each in its own session), run the probe, stop them as Ctrl-C would."""
    procs = [
        subprocess.Popen(
            c,
            env=dies_with_us(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for c in commands
    ]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.e2e_bench", *probe_args],
            env=env, capture_output=True, text=True, check=True, timeout=timeout_s,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _video_args(render_width: int) -> list[str]:
    return [
        "-p",
        "width:=1920",
        "-p",
        "height:=1080",
        "-p",
        "fps:=30.0",
        "-p",
        f"render_width:={render_width}",
    ]


def _renderer_args(mode: str, columns: int, rows: int, render: bool) -> list[str]:
    return ["-p", f"mode:={mode}", "-p", f"columns:={columns}", "-p", f"rows:={rows}",
            "-p", "max_frame_age_ms:=0.0", "-p", f"input:={'render' if render else 'raw'}"]  # fmt: skip


def run_graph(
    env: dict[str, str],
    seconds: float,
    *,
    mode: str,
    columns: int,
    rows: int,
    qos: list[str],
    check_stamps: float = 3.0,
    render_width: int = 0,
) -> dict[str, Any]:
    """video_source and ascii_renderer as two processes; render_width > 0: the render feed."""
    video = [_executable("video_source"), "--ros-args", *_video_args(render_width), *qos]
    renderer = [
        _executable("ascii_renderer"), "--ros-args",
        *_renderer_args(mode, columns, rows, render_width > 0), *qos,
    ]  # fmt: skip
    probe_args = ["--probe", str(seconds), "--check-stamps", str(check_stamps)]
    return _probe_with(env, [video, renderer], probe_args, seconds + 60)  # type: ignore[no-any-return]


def run_composed(
    env: dict[str, str], seconds: float, *, mode: str, columns: int, rows: int, render_width: int, tmp: Path
) -> dict[str, Any]:
    """The same two nodes composed in one process on one executor, as `krystal run` starts them."""
    params = tmp / "composed.yaml"
    video = dict(width=1920, height=1080, fps=30.0, render_width=render_width)
    renderer = dict(mode=mode, columns=columns, rows=rows, max_frame_age_ms=0.0,
                    input="render" if render_width else "raw")  # fmt: skip
    params.write_text(
        json.dumps(
            {
                "/**/video_source": {"ros__parameters": video},
                "/**/ascii_renderer": {"ros__parameters": renderer},
            }
        )
    )  # JSON is YAML
    command = [sys.executable, "-m", "krystal.cli", "run", "--nodes", "video_source,ascii_renderer",
               "--params-file", str(params), "--log-level", "warn"]  # fmt: skip
    probe_args = ["--probe", str(seconds), "--check-stamps", "0"]
    return _probe_with(env, [command], probe_args, seconds + 60)  # type: ignore[no-any-return]


def floor_publisher(width: int, height: int) -> None:
    """Runs in its own process: an Image of width x height at 30 Hz, stamped at publication."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from krystal.ros.image import array_to_image
    from krystal.ros.qos import sensor_qos

    rclpy.init()
    node = rclpy.create_node("e2e_floor_pub")
    pub = node.create_publisher(Image, "e2e_floor/image", sensor_qos(1))
    msg: Image = array_to_image(
        np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8), "bgr8"
    )

    def tick() -> None:
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)

    node.create_timer(1 / 30, tick)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, Exception):
        pass
    finally:
        rclpy.try_shutdown()


def floor_probe(seconds: float) -> list[float]:
    """Runs in its own process: stamp -> receipt (ms) of the floor publisher's images."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.time import Time
    from sensor_msgs.msg import Image

    from krystal.ros.qos import sensor_qos

    rclpy.init()
    node = rclpy.create_node("e2e_floor_sub")
    ages: list[float] = []
    node.create_subscription(
        Image,
        "e2e_floor/image",
        lambda m: ages.append((time.time_ns() - Time.from_msg(m.header.stamp).nanoseconds) / 1e6),
        sensor_qos(1),
    )
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.monotonic()
    while not ages and time.monotonic() - start < 30:
        executor.spin_once(timeout_sec=0.1)
    ages.clear()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    rclpy.try_shutdown()
    return ages


def run_floor(env: dict[str, str], seconds: float, width: int, height: int) -> list[float]:
    publisher = [sys.executable, "-m", "bench.e2e_bench", "--floor-pub", f"{width}x{height}"]
    return _probe_with(env, [publisher], ["--floor-probe", str(seconds)], seconds + 60)  # type: ignore[no-any-return]


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(result: dict[str, Any], period_ms: float) -> dict[str, Any]:
    frames = np.array(result["frames"], dtype=np.float64).reshape(-1, 4)
    if not len(frames):
        return {"frames": 0}
    receipt, published, render = frames[:, 1], frames[:, 2], frames[:, 3]
    age_at_render = published - render
    video = result.get("video", {})

    def stage(name: str, q: str) -> float:
        return float(video.get(f"{name}_ms_{q}", "nan"))

    video_p50 = sum(stage(name, "p50") for name in ("wait", "convert", "publish"))
    delivery = receipt - published
    stages = {
        **{name: [stage(name, "p50"), stage(name, "p99")] for name in ("wait", "convert", "publish")},
        "dds_rclpy": [float(np.percentile(published - render, 50)) - video_p50, float("nan")],
        "render": [float(np.percentile(render, 50)), float(np.percentile(render, 99))],
        "ascii_delivery": [float(np.percentile(delivery, 50)), float(np.percentile(delivery, 99))],
    }
    return {
        "frames": float(len(frames)),
        "stages_p50_p99_ms": {k: [round(v, 2) for v in pair] for k, pair in stages.items()},
        "video_frames_dropped": float(video.get("frames_dropped", "nan")),
        "publish_p50_ms": float(np.percentile(published, 50)),
        "publish_p99_ms": float(np.percentile(published, 99)),
        "receipt_p99_ms": float(np.percentile(receipt, 99)),
        "render_p50_ms": float(np.percentile(render, 50)),
        "max_age_at_render_ms": float(age_at_render.max()),
        "older_than_period": float((age_at_render > period_ms).sum()),
        "stamps_matching": result["stamp_matches"] / max(1, result["stamp_checked"]),
    }


def camera_wakeup(seconds: float) -> tuple[list[float], list[float]]:
    """Capture-to-receipt (ms) of a 30 fps MJPEG stream, in one process: video_source publishing on
    arrival, then the previous design (a 30 Hz timer polling the capture thread's newest frame)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.time import Time
    from sensor_msgs.msg import Image
    from tests.video_streams import MjpegServer

    from krystal.ros.image import array_to_image
    from krystal.ros.qos import sensor_qos
    from krystal.video.node import VideoSourceNode
    from krystal.video.reconnect import Frame, Session
    from krystal.video.sources import CaptureSource

    class Polling(Node):
        def __init__(self, url: str) -> None:
            super().__init__("polling_source")
            self.pub = self.create_publisher(Image, "camera/image_raw", sensor_qos(1))
            self.session = Session(CaptureSource(url), notify=lambda: None, period_s=lambda: 1 / 30)
            self.session.start()
            self.create_timer(1 / 30, self.tick)

        def tick(self) -> None:
            frames = [e for e in self.session.take() if isinstance(e, Frame)]
            if frames:
                stamp = Time(nanoseconds=frames[-1].stamp_ns).to_msg()
                msg = array_to_image(frames[-1].pixels, "bgr8")
                msg.header.stamp = stamp
                self.pub.publish(msg)

    def measure(make: Any) -> list[float]:
        server = MjpegServer(fps=30.0)
        server.start()
        rclpy.init()
        try:
            source = make(server.url)
            sink = rclpy.create_node("sink")
            ages: list[float] = []
            sink.create_subscription(
                Image,
                "camera/image_raw",
                lambda m: ages.append((time.time_ns() - Time.from_msg(m.header.stamp).nanoseconds) / 1e6),
                sensor_qos(1),
            )
            executor = SingleThreadedExecutor()
            for n in (source, sink):
                executor.add_node(n)
            end = time.monotonic() + 0.5 + seconds
            while time.monotonic() < end:
                if time.monotonic() < end - seconds:
                    ages.clear()  # warm-up
                executor.spin_once(timeout_sec=0.05)
            if isinstance(source, Polling):
                source.session.stop.set()
                source.session.thread.join(2.0)
            executor.shutdown(timeout_sec=1.0)
            for n in (source, sink):
                n.destroy_node()
            return ages
        finally:
            rclpy.try_shutdown()
            server.stop()

    stream = [Parameter(k, value=v) for k, v in (("source_type", "stream"), ("width", 0), ("height", 0))]
    ours = measure(lambda url: VideoSourceNode(parameter_overrides=[*stream, Parameter("source", value=url)]))
    anchor = measure(Polling)
    return ours, anchor


def render_cases(
    args: argparse.Namespace,
    env: dict[str, str],
    tmp: Path,
    period_ms: float,
    full: dict[str, Any] | None = None,
) -> None:
    """The render feed, two processes and composed, against the full 1080p path (`full`: already
    measured in this run) and the floors."""
    width = args.columns * 4  # what the reasoning node asks for (source_width_per_column 4)
    height = round(width * 1080 / 1920)
    load_before = os.getloadavg()
    kw: dict[str, Any] = dict(mode=args.mode, columns=args.columns, rows=args.rows)
    if full is None:
        full = summarize(run_graph(env, args.seconds, qos=[], check_stamps=0, **kw), period_ms)
    feed = summarize(
        run_graph(env, args.seconds, qos=[], check_stamps=0, render_width=width, **kw), period_ms
    )
    floor_feed = run_floor(env, args.seconds, width, height)
    composed: dict[str, Any] = {}
    floor_full: list[float] = []
    if not args.quick:  # CI's --quick keeps the first row's cases (its time limit is 120 s in all)
        composed = summarize(run_composed(env, args.seconds, render_width=width, tmp=tmp, **kw), period_ms)
        floor_full = run_floor(env, args.seconds, 1920, 1080)
    load = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    case = f"1080p30 -> {args.columns}x{args.rows} {args.mode}"
    floors: dict[str, Any] = {
        "floor_1080p_pubsub_p50_p99_ms": [round(_p(floor_full, q), 2) for q in (50, 99)],
        f"floor_{width}x{height}_pubsub_p50_p99_ms": [round(_p(floor_feed, q), 2) for q in (50, 99)],
        "loadavg_before_after": load,
    }
    emit("e2e", f"{case} capture-to-AsciiFrame p99, render feed {width}x{height} (two processes)",
         feed.get("publish_p99_ms", float("nan")), full.get("publish_p99_ms", float("nan")), "ms",
         anchor_name="the same graph on the full 1080p frame (input raw)",
         ratio_to_floor=round(feed.get("publish_p99_ms", float("nan")) / _p(floor_feed, 99), 2),
         ours_detail=feed, anchor_detail=full, **floors)  # fmt: skip
    if args.quick:
        return
    emit("e2e", f"{case} capture-to-AsciiFrame p99, render feed {width}x{height} (composed, krystal run)",
         composed.get("publish_p99_ms", float("nan")), full.get("publish_p99_ms", float("nan")), "ms",
         anchor_name="two processes on the full 1080p frame (input raw)",
         ours_detail=composed, **floors)  # fmt: skip
    emit("e2e", f"{case} capture-to-AsciiFrame p99 vs a bare 1080p pub/sub (two processes)",
         feed.get("publish_p99_ms", float("nan")), _p(floor_full, 99), "ms",
         anchor_name="bare rclpy pub/sub of a 1080p Image across two processes (the old path's floor)",
         frames=[feed.get("frames", 0), len(floor_full)], **floors)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mode", default="edges")
    parser.add_argument("--columns", type=int, default=160)
    parser.add_argument("--rows", type=int, default=45)
    parser.add_argument("--quick", action="store_true", help="2.5 s per graph, for CI (< 20 s in all)")
    parser.add_argument("--probe", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--check-stamps", type=float, default=3.0, help=argparse.SUPPRESS)
    parser.add_argument("--floor-pub", help=argparse.SUPPRESS)
    parser.add_argument("--floor-probe", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--render-only", action="store_true", help="only the render feed cases and floors")
    args = parser.parse_args()
    if args.floor_pub:
        w, h = (int(x) for x in args.floor_pub.split("x"))
        floor_publisher(w, h)
        return
    if args.floor_probe is not None:
        print(json.dumps(floor_probe(args.floor_probe)))
        return
    if args.quick:
        args.seconds, args.check_stamps = 2.5, 0.3
    if args.probe is not None:
        print(json.dumps(probe(args.probe, check_stamps=args.check_stamps)))
        return
    from krystal.paths import PROFILES_ENV, transport_profile
    from krystal.ros.compat import localhost_discovery_env

    domain = isolated_domain_id()
    base = dict(os.environ, ROS_DOMAIN_ID=domain, **localhost_discovery_env())
    period_ms = 1000 / 30
    with tempfile.TemporaryDirectory() as tmp:
        if args.render_only:
            render_cases(args, {**base, PROFILES_ENV: str(transport_profile())}, Path(tmp), period_ms)
            return
        defaults = Path(tmp) / "defaults.xml"
        defaults.write_text(DEFAULTS_PROFILE)
        reliable = [
            "-p", "qos_overrides./camera/image_raw.publisher.reliability:=reliable",
            "-p", "qos_overrides./camera/image_raw.subscription.reliability:=reliable",
        ]  # fmt: skip
        ours = summarize(
            run_graph({**base, PROFILES_ENV: str(transport_profile())}, args.seconds, mode=args.mode,
                      columns=args.columns, rows=args.rows, qos=[], check_stamps=args.check_stamps),
            period_ms,
        )  # fmt: skip
        render_cases(args, {**base, PROFILES_ENV: str(transport_profile())}, Path(tmp), period_ms, full=ours)
        anchor = summarize(
            run_graph({**base, PROFILES_ENV: str(defaults)}, args.seconds, mode=args.mode,
                      columns=args.columns, rows=args.rows, qos=reliable, check_stamps=args.check_stamps),
            period_ms,
        )  # fmt: skip
        # the same graph with both nodes on rclpy's SingleThreadedExecutor instead of ours (the default)
        single = summarize(
            run_graph({**base, PROFILES_ENV: str(transport_profile())}, args.seconds, mode=args.mode,
                      columns=args.columns, rows=args.rows, qos=["-p", "executor.type:=single"],
                      check_stamps=args.check_stamps),
            period_ms,
        )  # fmt: skip
    case = f"1080p30 -> {args.columns}x{args.rows} {args.mode}"
    rows = (
        ("publish_p99_ms", "capture-to-AsciiFrame p99"),
        ("receipt_p99_ms", "capture-to-receipt p99"),
        ("max_age_at_render_ms", "frame age at render max"),
    )
    for metric, label in rows:
        emit("e2e", f"{case} {label}, krystal's executor vs rclpy's", ours.get(metric, float("nan")),
             single.get(metric, float("nan")), "ms",
             anchor_name="rclpy SingleThreadedExecutor (executor.type single)",
             frames=[ours.get("frames", 0), single.get("frames", 0)])  # fmt: skip
    emit("e2e", f"{case} capture-to-AsciiFrame p99", ours.get("publish_p99_ms", float("nan")),
         anchor.get("publish_p99_ms", float("nan")), "ms",
         anchor_name="Fast DDS defaults, reliable QoS", ours_detail=ours, anchor_detail=anchor)  # fmt: skip
    emit("e2e", f"{case} frames rendered in {args.seconds:g} s", ours.get("frames", 0),
         anchor.get("frames", 0), "frames", lower_is_better=False,
         anchor_name="Fast DDS defaults, reliable QoS")  # fmt: skip
    frame = np.zeros((1080, 1920, 3), np.uint8)
    copy_ms = time_ms(frame.copy, repeat=20)[1]
    emit("e2e", f"{case} capture-to-AsciiFrame p50",
         ours.get("publish_p50_ms", float("nan")), anchor.get("publish_p50_ms", float("nan")), "ms",
         anchor_name="Fast DDS defaults, reliable QoS", copy_1080p_ms=round(copy_ms, 3))  # fmt: skip
    ours_ms, anchor_ms = camera_wakeup(max(1.5, args.seconds / 3))
    for q in (50, 99):
        emit("e2e", f"stream 30 fps -> video_source, capture-to-receipt p{q} (one process)",
             float(np.percentile(ours_ms, q)) if ours_ms else float("nan"),
             float(np.percentile(anchor_ms, q)) if anchor_ms else float("nan"), "ms",
             anchor_name="a 30 Hz timer polling the capture thread (the previous design)",
             frames=[len(ours_ms), len(anchor_ms)])  # fmt: skip


if __name__ == "__main__":
    main()
