"""video_source never gives up: a camera that vanishes, a stream that is cut or stalls, turn the
source ERROR and come back OK with images once the device or server is back; device controls are
set again on every reopen; a frame older than a period is dropped, never published.

The camera is a named pipe playing a real MJPG AVI in real time; the stream is MJPEG over HTTP
from a server on 127.0.0.1 (tests/video_streams.py). Timeouts are generous: they bound a hang,
they do not measure speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter

from krystal.video.node import VideoSourceNode
from tests.conftest import spin_until
from tests.test_nodes import Probe, _video
from tests.video_streams import FifoCamera, MjpegServer

SOURCE = "video_source: source"
OK, ERROR = DiagnosticStatus.OK, DiagnosticStatus.ERROR
# fps 10 against a 30 fps source: the newest frame is always younger than a period
FAST_RECOVERY = {"fps": 10.0, "width": 0, "height": 0, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}


@pytest.fixture
def server() -> Iterator[MjpegServer]:
    s = MjpegServer()
    s.start()
    yield s
    s.stop()


@contextmanager
def _streaming_node(**params: object) -> Iterator[tuple[list, Probe]]:
    """A video_source with `params` and a probe, once images flow; the node is destroyed after."""
    video = _video(**{**FAST_RECOVERY, **params})
    probe = Probe()
    nodes = [video, probe.node]
    try:
        _streaming(nodes, probe)
        yield nodes, probe
    finally:
        video.destroy_node()


def _streaming(nodes: list, probe: Probe, images: int = 3, timeout_s: float = 15.0) -> None:
    """Wait for `images` new images and an OK source status."""
    probe.images.clear()
    assert spin_until(nodes, lambda: len(probe.images) >= images and probe.level(SOURCE) == OK, timeout_s), (
        f"no images or not OK: {probe.message(SOURCE)!r}"
    )


def _failed(nodes: list, probe: Probe, timeout_s: float = 10.0) -> None:
    """Wait for ERROR and check that no image is published while the source is down."""
    assert spin_until(nodes, lambda: probe.level(SOURCE) == ERROR, timeout_s), probe.message(SOURCE)
    spin_until(nodes, lambda: False, 0.3)  # images published before the failure still arrive
    probe.images.clear()
    spin_until(nodes, lambda: False, 1.0)
    assert not probe.images, "an image was published while the source was down"
    assert probe.level(SOURCE) == ERROR


def _error_then_ok(probe: Probe) -> bool:
    levels = [s.level for s in probe.history if s.name == SOURCE]
    return ERROR in levels and OK in levels[levels.index(ERROR) :]


def test_camera_that_vanishes_reports_error_and_recovers(ros, tmp_path: Path) -> None:
    camera = FifoCamera(tmp_path / "video0")
    camera.plug()
    params = {"source_type": "camera", "source": str(camera.path), "stall_timeout_s": 1.0}
    try:
        with _streaming_node(**params) as (nodes, probe):
            assert (probe.images[-1].width, probe.images[-1].height) == (160, 120)
            camera.unplug()
            _failed(nodes, probe)
            gone = spin_until(nodes, lambda: "cannot open" in probe.message(SOURCE), 5.0)
            assert gone, probe.message(SOURCE)
            camera.plug()
            _streaming(nodes, probe)
            assert _error_then_ok(probe)
            assert int(probe.values(SOURCE)["opens"]) >= 2
    finally:
        camera.unplug()


def test_stream_cut_recovers_with_controls_set_again(ros, server: MjpegServer) -> None:
    controls = ["brightness=0.5", "convert_rgb=1"]
    with _streaming_node(
        source_type="stream", source=server.url, stall_timeout_s=1.0, camera_controls=controls
    ) as (nodes, probe):
        assert spin_until(nodes, lambda: "controls_refused" in probe.values(SOURCE), 5.0)
        first = probe.values(SOURCE)
        # an HTTP stream has no brightness to set: refused and reported, not fatal
        assert first["controls_refused"] == "brightness=0.5"
        assert first["controls_applied"] == "convert_rgb=1"
        assert first["controls_applied_at_open"] == first["opens"]

        server.stop()
        _failed(nodes, probe)
        server.start()  # the same port
        _streaming(nodes, probe)
        assert _error_then_ok(probe)
        assert spin_until(nodes, lambda: int(probe.values(SOURCE).get("opens", 0)) > int(first["opens"]), 5.0)
        again = probe.values(SOURCE)
        assert again["controls_applied_at_open"] == again["opens"]  # set again by the reopen
        assert again["controls_refused"] == "brightness=0.5"

        def warnings() -> list[int]:
            return [
                m.level for m in probe.logs if m.name == "video_source" and "refused camera_controls" in m.msg
            ]

        assert spin_until(nodes, lambda: bool(warnings()), 5.0)
        assert warnings() == [Log.WARN], "one warning, not one per reopen"


def test_stalled_stream_reports_error_then_recovers(ros, server: MjpegServer) -> None:
    with _streaming_node(source_type="stream", source=server.url, stall_timeout_s=1.0) as (nodes, probe):
        server.hold()  # connection open, nothing sent
        _failed(nodes, probe)
        errors = [s.message for s in probe.history if s.name == SOURCE and s.level == ERROR]
        assert any("stalled: no frame for" in m for m in errors), errors
        server.stop()
        server.start()
        _streaming(nodes, probe)
        assert _error_then_ok(probe)


def test_frame_older_than_a_period_is_dropped(ros, server: MjpegServer) -> None:
    with _streaming_node(source_type="stream", source=server.url, stall_timeout_s=30.0) as (nodes, probe):
        server.hold()
        spin_until(nodes, lambda: False, 0.5)  # the last live frames are taken
        seen = len(probe.history)
        assert spin_until(nodes, lambda: any(s.name == SOURCE for s in probe.history[seen:]), 3.0)
        stale_before = int(probe.values(SOURCE)["frames_stale"])
        published_before = int(probe.values(SOURCE)["frames_published"])
        received = len(probe.images)
        assert received > 0, "the probe never received an image: this test would prove nothing"
        server.step()  # one frame reaches the capture thread...
        time.sleep(1.0)  # ...while the node does not spin: 10 periods old when it wakes
        assert spin_until(nodes, lambda: int(probe.values(SOURCE)["frames_stale"]) > stale_before, 5.0)
        values = probe.values(SOURCE)
        assert int(values["frames_stale"]) == stale_before + 1  # exactly the held frame
        assert int(values["frames_published"]) == published_before, "the stale frame was published"
        assert len(probe.images) == received
        assert probe.level(SOURCE) == OK  # a stale frame is not a failure
        server.step()  # a fresh frame, taken at once: published, and the probe still listens
        assert spin_until(nodes, lambda: len(probe.images) == received + 1, 5.0)
        assert int(probe.values(SOURCE)["frames_stale"]) == stale_before + 1


def test_bad_camera_controls_are_refused_with_a_reason(ros) -> None:
    video = VideoSourceNode(parameter_overrides=[Parameter("camera_controls", value=["loudness=11"])])
    try:
        assert video.params["camera_controls"] == []
        assert "loudness" in video.params.rejected["camera_controls"]
        (bad,) = video.set_parameters([Parameter("camera_controls", value=["exposure=-6", "gain=high"])])
        assert not bad.successful and "'high' is not a number" in bad.reason
        (good,) = video.set_parameters([Parameter("camera_controls", value=["exposure=-6", "fourcc=MJPG"])])
        assert good.successful and video.params["camera_controls"] == ["exposure=-6", "fourcc=MJPG"]
        (url,) = video.set_parameters([Parameter("camera_info_url", value="package://cam/cal.yaml")])
        assert not url.successful and "only file:// URLs" in url.reason
    finally:
        video.destroy_node()


def test_parameter_changes_while_a_camera_hangs_never_open_it_twice(ros, tmp_path: Path) -> None:
    """Each change of a reopening parameter used to make a fresh source and bypass the "not closed
    yet" guard: the blocked device was opened again and blocked capture threads piled up."""
    camera = FifoCamera(tmp_path / "video0")
    camera.plug()
    params = {"source_type": "camera", "source": str(camera.path), "stall_timeout_s": 0.5}

    def threads() -> int:
        return sum(str(camera.path) in t.name for t in threading.enumerate() if t.is_alive())

    try:
        with _streaming_node(**params) as (nodes, probe):
            camera.hold()
            _failed(nodes, probe)
            video = nodes[0]
            for width in (320, 0, 320, 0):
                assert video.set_parameters([Parameter("width", value=width)])[0].successful
                spin_until(nodes, lambda: False, 0.4)
                assert threads() <= 1, f"{threads()} capture threads on one device"
            assert spin_until(nodes, lambda: "has not closed yet" in probe.message(SOURCE), 5.0)
            camera.unplug()
            camera.plug()
            _streaming(nodes, probe)
            assert threads() == 1
    finally:
        camera.unplug()
