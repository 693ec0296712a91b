"""Separate processes over real DDS: the installed executables, `krystal run`, 1080p across processes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import rclpy
from krystal.msg import AsciiFrame
from sensor_msgs.msg import Image

from krystal.graph import GRAPH
from krystal.ros.qos import sensor_qos
from tests.conftest import executable, spin_until

ROOT = Path(__file__).resolve().parent.parent
PARAMS = str(ROOT / "config" / "krystal.yaml")


def test_executables_deliver_ascii_frames(ros, procs) -> None:
    video = procs([executable("video_source"), "--ros-args", "--params-file", PARAMS])
    renderer = procs(
        [
            executable("ascii_renderer"),
            "--ros-args",
            "--params-file",
            PARAMS,
            "-p",
            "columns:=64",
            "-p",
            "rows:=20",
        ]
    )
    node = rclpy.create_node("exe_probe")
    frames: list[AsciiFrame] = []
    image_stamps: set[tuple[int, int]] = set()
    node.create_subscription(AsciiFrame, "krystal/ascii", frames.append, sensor_qos(5))
    node.create_subscription(
        Image,
        "camera/image_raw",
        lambda m: image_stamps.add((m.header.stamp.sec, m.header.stamp.nanosec)),
        sensor_qos(5),
    )
    ok = spin_until([node], lambda: len(frames) >= 3, 10.0)
    node.destroy_node()
    assert ok, f"no AsciiFrame within 10 s\nvideo: {video.popen.poll()}\nrenderer: {renderer.popen.poll()}"
    assert (frames[-1].columns, frames[-1].rows) == (64, 20)  # the -p overrides, not the file's 120x45
    assert all(len(line) == 64 for line in frames[-1].lines) and len(frames[-1].lines) == 20
    # the frames are renders of video_source's images: their stamps, and the moving pattern's content
    rendered = {(f.header.stamp.sec, f.header.stamp.nanosec) for f in frames}
    assert rendered & image_stamps, "no AsciiFrame carries the stamp of an image video_source published"
    assert all("".join(f.lines).strip() for f in frames), "a blank render of the test pattern"
    assert len({tuple(f.lines) for f in frames}) > 1, "the moving test pattern rendered the same every frame"
    for p in (video, renderer):
        code, _ = p.interrupt(timeout_s=5.0)
        assert code == 0, p.stderr
        assert "Traceback" not in p.stderr


def test_krystal_run_starts_the_graph_and_stops_on_sigint(ros, procs) -> None:
    krystal = shutil.which("krystal")
    assert krystal, "the krystal command is not on PATH"
    run = procs([krystal, "run", "--namespace", "composed"])
    node = rclpy.create_node("graph_probe")
    expected = {("/composed", e.name) for e in GRAPH}

    def seen() -> bool:
        return expected <= {(ns, name) for name, ns in node.get_node_names_and_namespaces()}

    ok = spin_until([node], seen, 15.0)
    names = node.get_node_names_and_namespaces()
    frames: list[AsciiFrame] = []
    node.create_subscription(AsciiFrame, "/composed/krystal/ascii", frames.append, sensor_qos(5))
    got_frames = spin_until([node], lambda: len(frames) >= 2, 10.0)
    node.destroy_node()
    assert ok, f"graph nodes not all seen: {names}"
    assert got_frames, "the composed graph published no AsciiFrame"
    code, took = run.interrupt(timeout_s=5.0)
    assert code == 0, f"exit {code}\n{run.stderr}"
    assert took < 2.0, f"stopping took {took:.2f} s"
    # the exit code is not the graph: every node must leave it (no orphaned process keeps one alive)
    watcher = rclpy.create_node("graph_watcher")
    left = spin_until(
        [watcher],
        lambda: not any(ns == "/composed" for _, ns in watcher.get_node_names_and_namespaces()),
        10.0,
    )
    still = [n for n, ns in watcher.get_node_names_and_namespaces() if ns == "/composed"]
    watcher.destroy_node()
    assert left, f"nodes still in the graph after krystal run exited: {still}"
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout


def test_1080p_best_effort_crosses_processes(ros, procs) -> None:
    """With the shipped transport profile, best-effort 1080p arrives (Fast DDS defaults drop ~all)."""
    video = procs(
        [
            executable("video_source"),
            "--ros-args",
            "-p",
            "width:=1920",
            "-p",
            "height:=1080",
            "-p",
            "fps:=15.0",
        ]
    )
    node = rclpy.create_node("hd_probe")
    images: list[tuple[int, int, int]] = []
    node.create_subscription(
        Image, "camera/image_raw", lambda m: images.append((m.width, m.height, len(m.data))), sensor_qos(1)
    )
    assert spin_until([node], lambda: len(images) >= 1, 10.0), "no 1080p image arrived"
    images.clear()
    t0 = time.monotonic()
    spin_until([node], lambda: False, 3.0)
    rate = len(images) / (time.monotonic() - t0)
    node.destroy_node()
    assert images[0] == (1920, 1080, 1920 * 1080 * 3)
    assert rate >= 10.0, f"only {rate:.1f} of 15 frames/s arrived"
    code, _ = video.interrupt(timeout_s=5.0)
    assert code == 0, video.stderr
