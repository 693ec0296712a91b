"""`make run` in a terminal stops its graph within 2 s when a signal is sent to make alone
(`timeout make run`, `kill -HUP`, a process supervisor), as it does on Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import CORE_ONLY, scaled

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
    # no ROS import, but `make run` starts the ROS graph from the main venv: nothing of a compat pin
    pytest.mark.skipif(CORE_ONLY, reason="make run is the ROS graph, not a core (make test runs it)"),
]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


MAKE_RUN = ["make", "--no-print-directory", "-o", "setup", "run"]  # setup ran before the tests


class Terminal:
    """A command (default `make run`) on a pseudo-terminal of its own (controlling tty, own session)."""

    def __init__(self, args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))

        def session() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            # as in a user's terminal: a run under nohup (or a background job) inherits SIGHUP/SIGINT
            # ignored, and make leaves an ignored signal ignored
            for sig in (signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)

        self.proc = subprocess.Popen(
            args or MAKE_RUN,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=session,  # noqa: PLW1509  (the tty must become controlling before exec)
            cwd=ROOT,
            env=env,
        )
        os.close(slave)
        self._master = master
        self.output = bytearray()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output.extend(data)

    def wait_for(self, text: bytes, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            time.sleep(0.1)
        return False

    def close(self, graph: list[int]) -> None:
        for pid in [*graph, self.proc.pid]:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(5)
        os.close(self._master)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_make_stops_the_graph_within_2_s(sig: signal.Signals) -> None:
    term = Terminal()
    graph: list[int] = []
    try:
        assert term.wait_for(b" fps | render", scaled(60.0)), bytes(term.output[-2000:])  # frames are drawn
        graph = _children(term.proc.pid)
        assert graph, "make has no child process"
        os.kill(term.proc.pid, sig)  # to make alone, not its process group
        t0 = time.monotonic()
        # 2 s on an idle machine (KRYSTAL_TEST_TIMEOUT_SCALE=1 checks it strictly); a loaded one
        # stretches the graph's own shutdown
        while time.monotonic() - t0 < scaled(2.0) and any(_running(pid) for pid in graph):
            time.sleep(0.05)
        left = [pid for pid in graph if _running(pid)]
        assert not left, f"graph still running {time.monotonic() - t0:.1f} s after {sig.name} to make"
        term.proc.wait(5)  # and make itself ends
    finally:
        term.close(graph)
