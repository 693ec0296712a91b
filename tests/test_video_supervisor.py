"""The reconnect core without ROS: the state machine on a fake clock, then the supervisor running
real sources (files, a named-pipe camera, an HTTP stream) on their own threads.

Timeouts are generous: they bound a hang. The bounds on step() and close() are what the design
promises (never block the executor; close waits at most CLOSE_WAIT_S), with room for a loaded machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from krystal.video.reconnect import (
    BACKOFF,
    CLOSE_WAIT_S,
    ENDED,
    OPENING,
    STREAMING,
    Frame,
    RateCap,
    Reconnect,
    Report,
    Supervisor,
)
from krystal.video.sources import CaptureSource, FileSource, FrameSource, PatternSource
from tests.video_streams import FifoCamera, MjpegServer, write_video


def test_stall_clock_starts_when_the_open_completes() -> None:
    rc = Reconnect(0.5, 8.0, stall_timeout_s=2.0)
    assert rc.may_open(0.0)
    rc.opening()
    assert rc.state == OPENING and rc.stalled_for(10.0) is None  # a slow open is not a stall
    rc.opened(at_s=10.0)
    assert rc.state == STREAMING
    assert rc.stalled_for(11.9) is None
    assert rc.stalled_for(12.5) == pytest.approx(2.5)
    assert rc.frame(12.0) == 0  # the first frame after an open: no failed attempt before it
    assert rc.stalled_for(13.9) is None and rc.stalled_for(14.1) == pytest.approx(2.1)


def test_failures_back_off_and_the_first_frame_resets_the_backoff() -> None:
    rc = Reconnect(0.5, 2.0, stall_timeout_s=1.0)
    waits = []
    for now_s in (0.0, 1.0, 3.0, 6.0):
        rc.opening()
        waits.append(rc.failed(now_s))
    assert waits == [0.5, 1.0, 2.0, 2.0] and rc.state == BACKOFF
    assert not rc.may_open(7.9) and rc.may_open(8.0)
    rc.opening()
    rc.opened(8.2)
    assert rc.frame(8.3) == 4  # recovered after 4 failed attempts
    assert rc.frame(8.4) is None and rc.backoff.attempts == 0
    rc.ended()
    assert not rc.may_open(100.0)
    rc.restart()
    assert rc.may_open(0.0)


def test_rate_cap_keeps_the_average_rate() -> None:
    def admitted(source_hz: float, cap_hz: float, jitter_s: float = 0.0) -> int:
        cap, rng = RateCap(cap_hz), np.random.default_rng(1)
        times = np.arange(0, 10, 1 / source_hz) + rng.uniform(-jitter_s, jitter_s, int(10 * source_hz))
        return sum(cap.admit(float(t)) for t in times)

    assert admitted(60, 25) == pytest.approx(250, abs=2)
    assert admitted(30, 10) == pytest.approx(100, abs=2)
    assert admitted(30, 30, jitter_s=0.005) == 300  # a camera at the cap's rate loses nothing
    assert admitted(15, 30) == 150  # a slower camera is never capped


class _Events:
    """Collects a supervisor's reports and frames; wakes when a session posts."""

    def __init__(self) -> None:
        self.woken = threading.Event()
        self.reports: list[Report] = []
        self.frames: list[Frame] = []
        self.step_s: list[float] = []

    def notify(self) -> None:
        self.woken.set()

    def run(self, sup: Supervisor, until: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if until():
                return True
            self.woken.wait(0.02)
            self.woken.clear()
            t0 = time.perf_counter()
            reports, frame = sup.step(time.monotonic())
            self.step_s.append(time.perf_counter() - t0)
            self.reports += reports
            if frame is not None:
                self.frames.append(frame)
        return until()

    def failures(self) -> list[str]:
        return [r.text for r in self.reports if r.kind == "failed"]


def _supervisor(make: Callable[[], FrameSource], events: _Events, **kwargs: Any) -> Supervisor:
    options: dict[str, Any] = {"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3, **kwargs}
    return Supervisor(make, events.notify, **options)


class _SlowOpen(PatternSource):
    """A pattern whose open takes `open_s`, as a camera's or a far stream's does."""

    def __init__(self, open_s: float) -> None:
        super().__init__(32, 24, 30.0)
        self.open_s = open_s

    def open(self) -> None:
        time.sleep(self.open_s)
        super().open()


def test_a_slow_open_neither_blocks_step_nor_counts_as_a_stall() -> None:
    events = _Events()
    sup = _supervisor(lambda: _SlowOpen(1.0), events, stall_timeout_s=0.3)
    try:
        assert events.run(sup, lambda: len(events.frames) >= 5)
        assert not events.failures(), events.failures()
        assert sup.opens == 1
        assert max(events.step_s) < 0.1, "step() waited for the open"
    finally:
        sup.close()


class _Crashes(PatternSource):
    """Delivers three frames, then its read raises what no source is expected to raise."""

    def read(self) -> NDArray[Any]:
        if self._index == 3:
            raise KeyError("no such plane")
        return super().read()


def test_an_unexpected_exception_in_the_thread_is_reported_and_the_source_reopened() -> None:
    events = _Events()
    sup = _supervisor(lambda: _Crashes(32, 24, 60.0), events, stall_timeout_s=30.0)
    try:
        assert events.run(sup, lambda: sup.opens >= 2 and len(events.frames) >= 4)
        (reason, *_) = events.failures()
        assert "KeyError" in reason and "no such plane" in reason  # not a stall, seconds later
        assert [r.kind for r in events.reports][:4] == ["opening", "opened", "delivering", "failed"]
    finally:
        sup.close()


def test_a_file_plays_paced_at_fps_and_its_end_is_reported_once(tmp_path: Path) -> None:
    path = str(write_video(tmp_path / "v.avi", frames=8))
    events = _Events()
    sup = _supervisor(lambda: FileSource(path, loop=False), events, fps=20.0)
    try:
        assert events.run(sup, lambda: sup.reconnect.state == ENDED)
        levels = [round(float(f.pixels.mean()) / 20) for f in events.frames]
        assert levels == list(range(8)), "frames were skipped or repeated"  # paced: none superseded
        span_s = events.frames[-1].captured_s - events.frames[0].captured_s
        assert 7 / 20 * 0.8 < span_s < 7 / 20 * 3  # 20 fps pacing, not a decoder's burst
        assert [r.kind for r in events.reports].count("ended") == 1
        sup.set_fps(60.0)
    finally:
        sup.close()


def _capture_threads(camera: FifoCamera) -> int:
    return sum(str(camera.path) in t.name for t in threading.enumerate() if t.is_alive())


def test_a_stalled_camera_is_never_opened_twice_whatever_replaces_it(tmp_path: Path) -> None:
    """A camera that hangs: the stall is reported, close() waits at most CLOSE_WAIT_S, and while the
    blocked read holds the device no new session opens it, even after the source is replaced."""
    camera = FifoCamera(tmp_path / "video0")
    camera.plug()
    events = _Events()

    def make() -> FrameSource:
        return CaptureSource(str(camera.path), stall_timeout_s=0.5)

    sup = _supervisor(make, events, stall_timeout_s=0.5)
    try:
        assert events.run(sup, lambda: len(events.frames) >= 3)
        camera.hold()
        assert events.run(sup, lambda: any("stalled: no frame for" in f for f in events.failures()))
        for _ in range(4):  # parameter changes, each with a fresh source object
            sup.replace(make, 0.5)
            assert events.run(sup, lambda: False, 0.3) is False
        assert events.run(sup, lambda: any("has not closed yet" in f for f in events.failures()))
        assert _capture_threads(camera) == 1 and sup.alive_threads() == 1
        assert max(events.step_s) < 0.1, "step() waited for the blocked thread"
        t0 = time.monotonic()
        sup.close()
        assert time.monotonic() - t0 < CLOSE_WAIT_S + 0.5
        camera.unplug()  # the blocked read ends: the device is free
        camera.plug()
        events.frames.clear()
        sup.replace(make, 0.5)
        assert events.run(sup, lambda: len(events.frames) >= 3), events.failures()[-3:]
        assert _capture_threads(camera) == 1
    finally:
        sup.close()
        camera.unplug()


def test_a_stream_slower_to_open_than_the_stall_timeout_opens() -> None:
    server = MjpegServer(answer_delay_s=1.5)
    server.start()
    events = _Events()
    url = server.url
    sup = _supervisor(lambda: CaptureSource(url, stall_timeout_s=0.5), events, stall_timeout_s=0.5)
    try:
        assert events.run(sup, lambda: len(events.frames) >= 3, 15.0), events.failures()
        assert not events.failures() and sup.opens == 1
    finally:
        sup.close()
        server.stop()
