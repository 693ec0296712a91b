"""A full disk under the decision log: a real tmpfs of a few pages, filled; the reasoning node says
ERROR with the reason, keeps deciding, and writes again once space returns. Needs root (mount)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from krystal.msg import AudioFeatures

from krystal.reasoning.log import read_decisions
from krystal.reasoning.node import ReasoningNode
from tests.conftest import scaled, spin_until
from tests.test_nodes import Probe
from tests.test_reasoning_node import Watcher, _node

DECISIONS = "reasoning: decisions"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for this test only (unmounted afterwards, also on failure)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "krystal-test", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Write zeros until the disk refuses (ENOSPC)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_full_disk_under_the_decision_log(ros, small_disk: Path) -> None:
    log_path = small_disk / "decisions.jsonl"
    reasoner = _node(ReasoningNode, context_dwell_s=0.3, log_path=str(log_path), log_fsync="never")
    w, probe = Watcher(), Probe()
    nodes = [reasoner, w.node, probe.node]

    def tempo(bpm: float, mode: str) -> bool:
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            w.audio_pub.publish(AudioFeatures(tempo_bpm=bpm, tempo_confidence=0.9, rms_dbfs=-12.0))
            if spin_until(nodes, lambda: w.mode == mode, 0.1):
                return True
        return False

    filler = _fill(small_disk)
    assert tempo(170.0, "glitch"), "no decision while the disk is full: the node stopped deciding"
    assert spin_until(nodes, lambda: probe.level(DECISIONS) == DiagnosticStatus.ERROR, 5.0), probe.message(
        DECISIONS
    )
    assert "No space left" in probe.message(DECISIONS), probe.message(DECISIONS)
    filler.unlink()  # space returns
    assert tempo(80.0, "edges")
    assert spin_until(nodes, lambda: probe.level(DECISIONS) != DiagnosticStatus.ERROR, 5.0), probe.message(
        DECISIONS
    )
    logged = {r["decision"]["decision_id"] for r in read_decisions(log_path)}
    assert w.decisions[-1][1].decision_id in logged  # written again
    reasoner.destroy_node()


def test_full_disk_under_the_audit_log(small_disk: Path, tmp_path: Path) -> None:
    """With the audit log's disk full the node stays up and says why (a refused command's reason or
    ERROR on /diagnostics); once space returns, commands run and are audited again."""
    import rclpy
    from rclpy.parameter import Parameter

    from krystal.devices.audit import read_audit
    from krystal.devices.node import DeviceAgentsNode
    from tests.test_devices_node import Client

    rclpy.init()
    host = DeviceAgentsNode(
        parameter_overrides=[
            Parameter("state_dir", value=str(tmp_path / "state")),
            Parameter("audit_log", value=str(small_disk / "audit.jsonl")),
            Parameter("devices", value=["sim0"]),
            Parameter("heartbeat_period_s", value=0.2),
            Parameter("poll_period_s", value=0.05),
        ]
    )
    try:
        probe = Probe()
        c = Client([*host.nodes(), probe.node])
        c.wait_status(lambda m: m.lifecycle_label == "active")
        filler = _fill(small_disk)
        name = "device_agents: devices"
        # exactly once needs a command's record (the command book beside the audit log): with no
        # room left, a command with an id is refused with the reason, never run unrecorded; the
        # audit log's own failure is ERROR on /diagnostics. Whichever the disk hits first.
        refused: tuple[str, str] | None = None
        for n in range(40):
            done = c.command("sim0", "set_speed", f"full-{n}", speed_percent="40")
            if not done.accepted:
                refused = (f"full-{n}", done.message)
                break
            if spin_until(c.nodes, lambda: probe.level(name) == DiagnosticStatus.ERROR, 0.3):
                break
        said = refused[1] if refused else probe.message(name)
        assert "No space left" in said, said
        filler.unlink()
        if refused:  # it never ran, so its id is free: the retry runs
            assert c.command("sim0", "set_speed", refused[0], speed_percent="40").accepted
        assert c.command("sim0", "set_speed", "after", speed_percent="50").accepted
        assert spin_until(c.nodes, lambda: probe.level(name) != DiagnosticStatus.ERROR, scaled(5.0))
        ids = [r.get("command_id") for r in read_audit(small_disk / "audit.jsonl") if r["type"] == "command"]
        assert "after" in ids
    finally:
        host.destroy_node()
        rclpy.try_shutdown()


def _count(path: Path) -> int:
    from krystal.record.mcapio import iter_messages

    return sum(1 for _ in iter_messages(path))


def test_full_disk_under_the_mcap_recorder_core(small_disk: Path) -> None:
    """The recorder itself: a failed flush cuts the file back to its last whole chunk (readable),
    drops and counts, and a new file takes over once space returns."""
    from krystal.record.mcapio import McapRecorder, ReadNotes, iter_messages

    clock = [0.0]
    rec = McapRecorder(small_disk / "run.mcap", flush_period_s=0.0, retry_s=1.0, clock=lambda: clock[0])
    rec.add_topic("/t", "std_msgs/msg/String")
    payload = b"\x00\x01\x00\x00" + (500).to_bytes(4, "little") + b"x" * 500
    for i in range(5):
        rec.write("/t", payload, i)
    assert not rec.error and _count(rec.paths[0]) == 5
    filler = _fill(small_disk)
    n = 5
    while not rec.error and n < 500:
        rec.write("/t", payload, n)
        n += 1
    assert "No space left" in rec.error, rec.error
    first = rec.paths[0]
    kept = _count(first)
    assert kept >= 5 and kept + rec.dropped == n  # every message is in the file or counted as dropped
    notes = ReadNotes()  # cut back to whole records: the reader stops at the file's last byte, not
    # at a torn record before it (a summary-less file always 'ends inside a record' there)
    assert sum(1 for _ in iter_messages(first, notes=notes)) == kept
    assert notes.damage.startswith(f"stopped at byte {first.stat().st_size}:"), notes.damage
    clock[0] += 0.5
    rec.write("/t", payload, n)  # before retry_s: dropped, no new file
    assert rec.error and len(rec.paths) == 1
    filler.unlink()
    clock[0] += 1.0
    rec.write("/t", payload, n + 1)
    assert not rec.error and rec.paths[-1].name == "run_1.mcap"
    rec.close()
    assert _count(rec.paths[-1]) == 1 and rec.count == kept + 1


def test_full_disk_under_krystal_record(ros, small_disk: Path, tmp_path: Path) -> None:
    """`krystal record` onto a disk that fills: ERROR in its log and on /diagnostics, the recorder
    and the publisher keep running, the file written before stays readable, and recording resumes in
    a new file once space returns."""
    import signal
    import sys

    import rclpy
    from std_msgs.msg import String

    out = small_disk / "run.mcap"
    talker = rclpy.create_node("full_disk_talker")
    pub = talker.create_publisher(String, "full_disk/chatter", 50)
    probe = Probe()
    nodes = [talker, probe.node]
    with open(tmp_path / "record.log", "wb") as log:
        rec = subprocess.Popen(
            [sys.executable, "-m", "krystal.cli", "record", "full_disk/chatter", "-o", str(out)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    name = "krystal_record: recording"
    sent = [0]

    def talk(until: object, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pub.publish(String(data=f"{sent[0]:06d}" + "x" * 400))
            sent[0] += 1
            if spin_until(nodes, until, 0.05):  # type: ignore[arg-type]
                return True
        return False

    try:
        assert talk(lambda: probe.level(name) == DiagnosticStatus.OK and _count(out) > 10, scaled(20)), (
            tmp_path / "record.log"
        ).read_text()
        before = _count(out)
        filler = _fill(small_disk)
        assert talk(lambda: probe.level(name) == DiagnosticStatus.ERROR, scaled(10)), probe.message(name)
        assert "No space left" in probe.message(name), probe.message(name)
        assert rec.poll() is None, (tmp_path / "record.log").read_text()
        assert _count(out) >= before  # what was written before the fill is still there, readable
        talk(lambda: False, 1.0)  # the publisher goes on; the recorder drops and counts
        assert rec.poll() is None
        filler.unlink()
        resumed = small_disk / "run_1.mcap"
        assert talk(lambda: probe.level(name) == DiagnosticStatus.OK, scaled(10)), probe.message(name)
        assert talk(lambda: resumed.exists() and _count(resumed) > 5, scaled(10))
        assert "resumed in" in probe.message(name), probe.message(name)
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(scaled(10))
        talker.destroy_node()
    text = (tmp_path / "record.log").read_text()
    assert "No space left" in text and "recording again in" in text, text
    assert _count(out) >= before and _count(resumed) > 5
