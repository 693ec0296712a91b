"""The nodes in one process on real DDS: frames flow, health is reported, bad input is survived."""

from __future__ import annotations

import array
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from krystal.msg import AsciiFrame, RenderStats
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from krystal.ascii.node import AsciiRendererNode
from krystal.ros.image import array_to_image
from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos
from krystal.ros.streams import stream_qos
from krystal.video.node import VideoSourceNode
from tests.conftest import spin_until
from tests.test_calibration import CALIBRATION_YAML
from tests.video_streams import write_video


class Probe:
    """A test node that records what the graph publishes."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("probe")
        self.images: list[Image] = []
        self.frames: list[AsciiFrame] = []
        self.stats: list[RenderStats] = []
        self.status: dict[str, DiagnosticStatus] = {}
        self.history: list[DiagnosticStatus] = []
        self.infos: list[CameraInfo] = []
        self.logs: list[Log] = []
        n = self.node
        n.create_subscription(Image, "camera/image_raw", self.images.append, sensor_qos(5))
        n.create_subscription(CameraInfo, "camera/camera_info", self.infos.append, sensor_qos(5))
        # transient local: log lines written before discovery matched still arrive
        n.create_subscription(Log, "/rosout", self.logs.append, latched_qos(100))
        n.create_subscription(AsciiFrame, "krystal/ascii", self.frames.append, sensor_qos(5))
        n.create_subscription(RenderStats, "krystal/render_stats", self.stats.append, reliable_qos())
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos())
        self.image_pub = n.create_publisher(
            Image, "camera/image_raw", stream_qos("camera/image_raw", sensor_qos(1))
        )

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            self.status[s.name] = s
            self.history.append(s)

    def level(self, name: str) -> bytes | None:
        s = self.status.get(name)
        return s.level if s else None

    def message(self, name: str) -> str:
        s = self.status.get(name)
        return s.message if s else ""

    def values(self, name: str) -> dict[str, str]:
        s = self.status.get(name)
        return {kv.key: kv.value for kv in s.values} if s else {}


def _video(**params: object) -> VideoSourceNode:
    return VideoSourceNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def _renderer(**params: object) -> AsciiRendererNode:
    params = {"input": "raw", **params}  # these tests feed camera/image_raw themselves
    return AsciiRendererNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_video_to_ascii_in_one_process(ros) -> None:
    video = _video(width=320, height=240, fps=30.0)
    renderer = _renderer(columns=40, rows=12)
    probe = Probe()
    nodes = [video, renderer, probe.node]
    assert spin_until(nodes, lambda: len(probe.frames) >= 10, 10.0)
    frame = probe.frames[-1]
    assert (frame.columns, frame.rows) == (40, 12)
    assert len(frame.lines) == 12 and all(len(line) == 40 for line in frame.lines)
    assert len(set("".join(frame.lines))) > 3, "a moving pattern must use several glyphs"
    image_stamps = {(i.header.stamp.sec, i.header.stamp.nanosec) for i in probe.images}
    assert (frame.header.stamp.sec, frame.header.stamp.nanosec) in image_stamps
    assert frame.header.frame_id == "camera_optical_frame"
    assert frame.render_time_ms > 0 and frame.latency_ms >= 0
    assert spin_until(
        nodes,
        lambda: (
            probe.level("video_source: source") == DiagnosticStatus.OK
            and probe.level("ascii_renderer: render") == DiagnosticStatus.OK
            and bool(probe.stats)
            and probe.stats[-1].frames_rendered > 0
        ),
        5.0,
    ), probe.status
    for node in (video, renderer):
        node.destroy_node()


def test_parameter_change_applies_to_next_frame(ros) -> None:
    video, renderer, probe = _video(width=160, height=120), _renderer(columns=20, rows=6), Probe()
    nodes = [video, renderer, probe.node]
    assert spin_until(nodes, lambda: len(probe.frames) >= 2, 10.0)
    renderer.set_parameters([Parameter("charset", value="01"), Parameter("columns", value=30)])
    probe.frames.clear()
    # a frame already in flight may still show the old style; the next rendered one must not
    assert spin_until(nodes, lambda: any(f.columns == 30 for f in probe.frames), 5.0)
    first_new = next(f for f in probe.frames if f.columns == 30)
    assert all(len(line) == 30 and set(line) <= {"0", "1"} for line in first_new.lines)
    for node in (video, renderer):
        node.destroy_node()


def _bad_image(kind: str) -> Image:
    msg = Image(height=4, width=4, encoding="bgr8", step=12)
    if kind == "truncated":
        msg.data = array.array("B", bytes(10))
    elif kind == "encoding":
        msg.encoding = "weird42"
        msg.data = array.array("B", bytes(48))
    elif kind == "empty":
        msg.height = 0
    elif kind == "step":
        msg.step = 3
        msg.data = array.array("B", bytes(48))
    return msg


def test_malformed_images_are_reported_and_survived(ros) -> None:
    import numpy as np

    renderer, probe = _renderer(columns=16, rows=4), Probe()
    nodes = [renderer, probe.node]
    name = "ascii_renderer: render"
    assert spin_until(nodes, lambda: probe.image_pub.get_subscription_count() > 0, 5.0)
    for kind in ("truncated", "encoding", "empty", "step"):
        probe.image_pub.publish(_bad_image(kind))
        assert spin_until(nodes, lambda: probe.level(name) == DiagnosticStatus.ERROR, 5.0), kind
        assert "malformed image" in probe.message(name)
        probe.status.clear()
    good = array_to_image(np.full((32, 64, 3), 200, np.uint8), "bgr8")
    probe.image_pub.publish(good)
    assert spin_until(nodes, lambda: len(probe.frames) == 1, 5.0)
    assert spin_until(nodes, lambda: probe.level(name) == DiagnosticStatus.OK, 5.0), probe.message(name)
    assert spin_until(nodes, lambda: bool(probe.stats) and probe.stats[-1].frames_invalid == 4, 3.0)
    renderer.destroy_node()


def test_missing_file_reports_error_then_recovers(ros, tmp_path: Path) -> None:
    path = tmp_path / "late.avi"
    video = _video(
        source_type="file", source=str(path), width=0, height=0, reconnect_initial_s=0.1, reconnect_max_s=0.2
    )
    probe = Probe()
    nodes = [video, probe.node]
    name = "video_source: source"
    assert spin_until(nodes, lambda: probe.level(name) == DiagnosticStatus.ERROR, 5.0)
    assert "not found" in probe.message(name)
    assert not probe.images
    write_video(path, frames=30)
    assert spin_until(nodes, lambda: len(probe.images) >= 3, 5.0)
    assert spin_until(nodes, lambda: probe.level(name) == DiagnosticStatus.OK, 5.0), probe.message(name)
    assert (probe.images[0].width, probe.images[0].height) == (160, 120)
    video.destroy_node()


def test_file_that_ends_warns_and_stops(ros, tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.avi", frames=4)
    video, probe = _video(source_type="file", source=str(path), loop=False, width=80, height=60), Probe()
    nodes = [video, probe.node]
    name = "video_source: source"
    assert spin_until(
        nodes, lambda: probe.level(name) == DiagnosticStatus.WARN and "end of" in probe.message(name), 5.0
    )
    assert len(probe.images) == 4
    assert (probe.images[0].width, probe.images[0].height) == (80, 60)
    assert spin_until(nodes, lambda: any("set loop:=true" in m.msg for m in probe.logs), 5.0)
    video.destroy_node()


def _stamp(header) -> tuple[int, int, str]:
    return (header.stamp.sec, header.stamp.nanosec, header.frame_id)


def test_camera_info_shares_each_image_header(ros, tmp_path: Path) -> None:
    calibration = tmp_path / "cam.yaml"
    calibration.write_text(CALIBRATION_YAML)
    video = _video(
        width=160,
        height=120,
        publish_camera_info=True,
        camera_info_url=f"file://{calibration}",
        frame_id="cam",
    )
    probe = Probe()
    nodes = [video, probe.node]
    assert spin_until(nodes, lambda: len(probe.infos) >= 5 and len(probe.images) >= 5, 10.0)
    image_headers = {_stamp(i.header) for i in probe.images}
    matched = [info for info in probe.infos if _stamp(info.header) in image_headers]
    assert len(matched) >= 3, "CameraInfo stamps must be those of the images"
    info = matched[-1]
    assert info.header.frame_id == "cam" and (info.width, info.height) == (160, 120)
    assert list(info.k) == [200.5, 0.0, 80.25, 0.0, 201.0, 60.75, 0.0, 0.0, 1.0]
    assert info.distortion_model == "plumb_bob" and list(info.d) == [-0.1, 0.01, 0.001, -0.002, 0.0]
    assert info.p[0] == 190.0 and info.r[0] == 1.0
    name = "video_source: camera_info"
    assert spin_until(nodes, lambda: probe.level(name) == DiagnosticStatus.OK, 5.0)
    assert "test_cam" in probe.message(name)
    video.set_parameters([Parameter("width", value=80), Parameter("height", value=60)])
    assert spin_until(nodes, lambda: "images are 80x60" in probe.message(name), 5.0), probe.message(name)
    assert probe.level(name) == DiagnosticStatus.WARN and "calibration is for 160x120" in probe.message(name)
    video.destroy_node()


def test_bad_calibration_warns_and_images_go_on(ros, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(CALIBRATION_YAML.replace("rows: 3\n  cols: 4", "rows: 2\n  cols: 4"))
    video = _video(width=160, height=120, publish_camera_info=True, camera_info_url=str(broken))
    probe = Probe()
    nodes = [video, probe.node]
    name = "video_source: camera_info"
    assert spin_until(
        nodes, lambda: probe.level(name) == DiagnosticStatus.WARN and len(probe.infos) >= 3, 10.0
    ), probe.message(name)
    assert "projection_matrix must be 3x4" in probe.message(name)
    assert probe.level("video_source: source") == DiagnosticStatus.OK and len(probe.images) >= 3
    uncalibrated = probe.infos[-1]
    assert (uncalibrated.width, uncalibrated.height) == (160, 120) and not any(uncalibrated.k)

    def warnings() -> list[Log]:
        return [m for m in probe.logs if m.name == "video_source" and "projection_matrix" in m.msg]

    assert spin_until(nodes, lambda: bool(warnings()), 5.0)
    assert warnings()[0].level == Log.WARN

    video.set_parameters([Parameter("camera_info_url", value=str(tmp_path / "missing.yaml"))])
    assert spin_until(nodes, lambda: "cannot read calibration" in probe.message(name), 5.0)
    assert probe.level(name) == DiagnosticStatus.WARN

    broken.write_text(CALIBRATION_YAML)
    video.set_parameters([Parameter("camera_info_url", value=str(broken))])
    assert spin_until(nodes, lambda: probe.level(name) == DiagnosticStatus.OK, 5.0), probe.message(name)
    probe.infos.clear()
    assert spin_until(nodes, lambda: len(probe.infos) >= 1, 5.0)
    assert probe.infos[-1].k[0] == 200.5
    video.destroy_node()
