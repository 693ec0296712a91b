"""The ROS side of `krystal record` and `krystal play`: raw (serialized) subscriptions and
publishers, so messages go to and from the file byte for byte."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rclpy._rclpy_pybind11 import RCLError  # what a failed publish raises (Humble to Kilted)
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from krystal.record.mcapio import (
    McapRecorder,
    ReadNotes,
    qos_from_metadata,
    qos_metadata,
    read_mcap,
    type_class,
)
from krystal.record.playback import Timeline, combine, play_pass
from krystal.ros.diagnostics import ERROR, OK, Diagnostics, Health
from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos
from krystal.ros.streams import declared_qos

SKIPPED_BY_ALL = ("/rosout", "/parameter_events")


def _profile(reliability: str, durability: str, depth: int) -> QoSProfile:
    if durability == "transient_local":
        profile = latched_qos(depth)
    elif reliability == "reliable":
        profile = reliable_qos(depth)
    else:
        profile = sensor_qos(depth)
    if reliability == "best_effort":
        profile.reliability = ReliabilityPolicy.BEST_EFFORT
    return profile


def _replay_profile(qos: str) -> QoSProfile:
    """The recorded profile, but a reliable volatile topic keeps every unacknowledged message: with
    the recorded KEEP_LAST depth a subscriber that stalls while the player publishes (a loaded
    machine) loses all but the last `depth` once the transport's buffers overflow, and a player,
    unlike a live source, has no newer data that makes the old worthless. Latched topics keep their
    depth: a late joiner gets the last `depth`, as it would from the original publisher."""
    rel, dur, depth = qos_from_metadata(qos)
    profile = _profile(rel, dur, depth)
    if rel == "reliable" and dur != "transient_local":
        profile.history = HistoryPolicy.KEEP_ALL
    return profile


class RecorderNode(Node):
    """Subscribes to `topics` (all but /rosout and /parameter_events when empty) as they appear,
    with QoS that matches their publishers, and writes every message to `path`; at least every
    `flush_period_s` what arrived is in the file, so a killed recorder loses no more than that.
    A failed write (a full disk) is an ERROR line and ERROR on /diagnostics (`<node>: recording`);
    the node keeps running and recording resumes in a new file once writing works again."""

    def __init__(
        self,
        path: Path,
        topics: Sequence[str] = (),
        node_name: str = "krystal_record",
        flush_period_s: float = 1.0,
    ) -> None:
        self.recorder = McapRecorder(path, flush_period_s)  # first: a file it cannot open makes no node
        self._lock = threading.Lock()
        super().__init__(node_name)
        self._wanted = [t if t.startswith("/") else self.resolve_topic_name(t) for t in topics]
        self._subs: dict[str, Any] = {}
        self.errors: list[str] = []
        self._reported = ""  # the recorder's error as last logged
        self._diagnostics = Diagnostics(self, hardware_id=f"file:{path}")
        self._diagnostics.add("recording", self._health)
        self._discover()
        self._timer = self.create_timer(0.2, self._discover)

    def _health(self) -> Health:
        r = self.recorder
        values = {
            "files": ", ".join(str(p) for p in r.paths),
            "messages": str(r.count),
            "dropped": str(r.dropped),
        }
        if r.error:
            return Health(
                ERROR, f"{r.error}; {r.dropped} messages dropped, retrying every {r.retry_s:g} s", values
            )
        lost = f"; resumed in {r.paths[-1]} after {r.dropped} dropped" if r.failures else ""
        return Health(OK, f"{r.count} messages on {len(self.topics)} topics{lost}", values)

    def _report(self) -> None:
        """One log line per change between writing and failing (called with the lock held)."""
        error = self.recorder.error
        if error == self._reported or (error and self._reported and "could not be started" in error):
            return
        if error:
            self.get_logger().error(f"{error}: dropping messages until writing works again")
        else:
            self.get_logger().warning(
                f"recording again in {self.recorder.paths[-1]} ({self.recorder.dropped} messages dropped)"
            )
        self._reported = error
        self._diagnostics.level_changed("recording", ERROR if error else OK)

    def _discover(self) -> None:
        with self._lock:  # the last messages before a quiet spell reach the file too
            self.recorder.flush_due()
            self._report()
        for topic, types in self.get_topic_names_and_types():
            if topic in self._subs or not types:
                continue
            if self._wanted and topic not in self._wanted:
                continue
            if not self._wanted and topic in SKIPPED_BY_ALL:
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            type_name = types[0]
            try:
                msg_type = type_class(type_name)
                reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
                latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
                rel, dur = (
                    ("reliable" if reliable else "best_effort"),
                    ("transient_local" if latched else "volatile"),
                )
                self.recorder.add_topic(topic, type_name, qos_metadata(rel, dur, 10))
            except (ImportError, AttributeError, OSError, ValueError) as exc:
                note = f"cannot record {topic} ({type_name}): {exc}"
                if note not in self.errors:
                    self.errors.append(note)
                    self.get_logger().error(note)
                self._subs[topic] = None
                continue
            self._subs[topic] = self.create_subscription(
                msg_type,
                topic,
                lambda data, t=topic: self._on_message(t, data),
                _profile(rel, dur, 100),
                raw=True,
            )
            self.get_logger().info(f"recording {topic} ({type_name})")

    def _on_message(self, topic: str, data: bytes) -> None:
        with self._lock:
            self.recorder.write(topic, data, time.time_ns())
            if self.recorder.error != self._reported:
                self._report()

    @property
    def topics(self) -> list[str]:
        return [t for t, s in self._subs.items() if s is not None]

    def destroy_node(self) -> None:
        with self._lock:
            self.recorder.close()
            if self.recorder.error and self.recorder.error != self._reported:  # no room for the summary
                self.get_logger().error(self.recorder.error)
        super().destroy_node()


class Player:
    """Publishes a recording back with its original timing, scaled by 1/`rate` (playback.py)."""

    def __init__(
        self,
        node: Node,
        path: Path,
        topics: Sequence[str] | None = None,
        max_unacked_bytes: int = 64 << 20,
    ) -> None:
        self.node = node
        self.path = path
        self.topics = list(topics) if topics else None
        self.publishers: dict[str, Any] = {}
        self.published = 0
        self.waits = 0  # times the player waited for subscribers' acknowledgements
        # KEEP_ALL history is bounded in samples (5000), not bytes: past this many bytes published
        # on a topic since its subscribers last acknowledged everything, wait for them
        self.max_unacked_bytes = max_unacked_bytes
        self._keep_all: set[str] = set()  # topics replayed with KEEP_ALL history
        self._unacked: dict[str, int] = {}  # KEEP_ALL topic -> bytes published since all acknowledged
        self.summary = combine([])
        self.notes = ReadNotes()  # a file without a summary is played up to where it is cut
        for rec in read_mcap(path, self.topics, self.notes):
            if rec.topic not in self.publishers:
                profile = _replay_profile(rec.qos)
                self.publishers[rec.topic] = node.create_publisher(
                    type_class(rec.type_name), rec.topic, declared_qos(rec.topic, profile)
                )
                if profile.history == HistoryPolicy.KEEP_ALL:
                    self._keep_all.add(rec.topic)

    def _wait_for_acks(self, topic: str, stop: threading.Event) -> bool:
        """Until every subscriber of `topic` acknowledged what it was sent (False: stopped)."""
        pub = self.publishers[topic]
        while not pub.wait_for_all_acked(Duration(seconds=0.5)):
            if not self.waits:
                self.node.get_logger().warning(
                    f"{topic}: subscribers have not acknowledged what was published; "
                    "waiting for them (a reliable replay loses nothing)"
                )
            self.waits += 1
            if stop.is_set():
                return False
        self._unacked[topic] = 0
        return True

    def wait_for_subscribers(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self.publishers.values()):
                return
            time.sleep(0.02)

    def flush(self, timeout_s: float) -> bool:
        """Wait until reliable subscribers have acknowledged what was published: a player that exits
        right after its last publish would otherwise drop what is still in flight."""
        deadline = time.monotonic() + timeout_s
        ok = True
        for pub in self.publishers.values():  # best effort ones answer at once
            left = max(0.0, deadline - time.monotonic())
            ok = pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))) and ok
        return ok

    def play(
        self,
        rate: float = 1.0,
        loop: bool = False,
        stop: threading.Event | None = None,
        on_stall: str = "catch-up",
        stall_s: float = 0.1,
    ) -> int:
        """Blocks until the end (or `stop`); returns the messages published. Each message waits for
        its due time (playback.Timeline: never early; after a stall as `on_stall` says)."""
        stop = stop or threading.Event()
        passes: list[Timeline] = []

        def publish(rec: Any) -> None:  # a mcapio.Recorded
            topic, size = rec.topic, len(rec.data)
            unacked = self._unacked.get(topic, 0)
            if unacked and unacked + size > self.max_unacked_bytes and not self._wait_for_acks(topic, stop):
                return
            refused = 0  # publishes refused with nothing left unacknowledged
            while True:
                try:
                    self.publishers[topic].publish(rec.data)
                    break
                except RCLError:
                    # a full KEEP_ALL history (5000 unacknowledged) frees up as subscribers acknowledge;
                    # any other failure, or one that persists once all is acknowledged, is real
                    if topic not in self._keep_all or refused >= 3:
                        raise
                    if not self._wait_for_acks(topic, stop):
                        return
                    refused += 1
                    stop.wait(0.01 * refused)
            if topic in self._keep_all:
                self._unacked[topic] = self._unacked.get(topic, 0) + size
            self.published += 1

        while not stop.is_set():
            passes.append(Timeline(time.monotonic(), rate, on_stall, stall_s))
            records = ((rec.log_time_ns, rec) for rec in read_mcap(self.path, self.topics))
            finished = play_pass(records, passes[-1], publish, time.monotonic, stop.wait)
            if not (finished and loop and passes[-1].messages):
                break
        self.summary = combine([t.summary() for t in passes])
        return self.published
