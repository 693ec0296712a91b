"""`krystal run` stops when the process that started it exits, says why first, and does so whether
that process exits before the graph has loaded or long after (no start-up race)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CORE_ONLY
from tests.test_cli_make_run import _running

pytestmark = pytest.mark.skipif(CORE_ONLY, reason="krystal run starts the ROS graph")

ROOT = Path(__file__).resolve().parent.parent

# The parent: starts `krystal run`, prints its pid, and exits at once or once rclpy is loaded
# (librcl mapped: the graph's process is past its start-up check and loading nodes).
_PARENT = """
import subprocess, sys, time
log = open(sys.argv[2], "w")
child = subprocess.Popen([sys.argv[1], "run", "--nodes", "thermal_monitor"], stdout=log, stderr=log)
print(child.pid, flush=True)
if sys.argv[3] == "late":
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if "librcl" in open(f"/proc/{child.pid}/maps").read():
                break
        except OSError:
            break
        time.sleep(0.05)
    time.sleep(1.0)
"""


@pytest.mark.parametrize("when", ["early", "late"])
def test_parent_exit_is_logged_then_the_graph_stops(tmp_path: Path, when: str) -> None:
    krystal = str(Path(shutil.which("krystal") or ROOT / "install/krystal/bin/krystal"))
    log = tmp_path / "run.log"
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, krystal, str(log), when],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the graph's session is the parent's: an adopter's is not
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.wait(60)
    deadline = time.monotonic() + 60.0
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = not _running(pid)
    if not stopped:
        subprocess.run(["kill", "-KILL", str(pid)], check=False)
    text = log.read_text()
    assert stopped, text
    assert "stopping the graph" in text and "parent process" in text, text
    if when == "late":
        assert f"parent process {parent.pid} exited" in text, text
