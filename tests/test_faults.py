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
