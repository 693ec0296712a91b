"""The supervisor of `krystal run --isolate` without ROS: its restart policy on a fake clock, and real
child processes restarted, given up on, stopped by a forwarded signal, and never left orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from krystal.supervise.children import ERROR, OK, WARN, ChildSpec, Supervisor, describe_exit
from krystal.supervise.policy import RestartPolicy
from tests.conftest import wait_until


def test_restarts_back_off_and_give_up_after_fast_failures() -> None:
    p = RestartPolicy(initial_s=0.5, max_s=2.0, fast_s=10.0, max_fast_failures=4)
    now, waits = 0.0, []
    for _ in range(3):
        p.started(now)
        now += 1.0  # died 1 s after its start: fast
        v = p.died(now)
        assert v.restart_at_s is not None
        waits.append(v.restart_at_s - now)
        now = v.restart_at_s
    assert waits == [0.5, 1.0, 2.0]
    p.started(now)
    v = p.died(now + 1.0)
    assert v.restart_at_s is None and v.fast_failures == 4 and "gave up" in v.reason


def test_a_long_run_resets_the_count_and_the_backoff() -> None:
    p = RestartPolicy(initial_s=0.5, max_s=8.0, fast_s=10.0, max_fast_failures=2)
    p.started(0.0)
    assert p.died(1.0).restart_at_s == 1.5  # one fast failure
    p.started(1.5)
    v = p.died(100.0)  # ran 98.5 s: healthy, so not the second fast failure in a row
    assert v.fast_failures == 0 and v.restart_at_s == 100.5


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _reap_all(s: Supervisor) -> None:
    s.stop(signal.SIGKILL, 5.0)


def test_a_dying_child_is_restarted_then_given_up_while_the_other_runs() -> None:
    clock = Clock()
    s = Supervisor(
        [ChildSpec("crash", _py("import sys; sys.exit(3)")), ChildSpec("steady", ["sleep", "60"])],
        lambda: RestartPolicy(0.5, 8.0, fast_s=10.0, max_fast_failures=3),
        clock,
    )
    try:
        started = s.start()
        assert [e.kind for e in started] == ["started", "started"]
        steady = s.children["steady"].pid
        crash = s.children["crash"]
        for n in range(1, 4):
            died: list = []
            assert wait_until(lambda: bool(died.extend(s.poll()) or died), 10.0)  # noqa: B023
            assert died[0].name == "crash" and "exited with status 3" in died[0].text, died
            if n < 3:
                assert died[0].kind == "died" and crash.health()[0] == WARN
                clock.now = crash.restart_at_s or 0.0  # its backoff has passed
                assert [e.kind for e in s.poll()] == ["started"] and crash.starts == n + 1
        assert died[0].kind == "gave_up" and died[0].level == ERROR
        level, message, values = crash.health()
        assert level == ERROR and "gave up after 3" in message and values["restarts"] == "2"
        clock.now += 100.0
        assert s.poll() == [] and s.alive() == ["steady"]  # never started again
        assert s.children["steady"].pid == steady and s.children["steady"].health()[0] == OK
    finally:
        _reap_all(s)


def test_stop_forwards_the_signal_waits_and_kills_what_stays(tmp_path: Path) -> None:
    polite = tmp_path / "polite"
    s = Supervisor(
        [
            ChildSpec(
                "polite",
                _py(
                    "import signal, sys, time\n"
                    f"bye = lambda *a: (open({str(polite)!r}, 'w').write('bye'), sys.exit(0))\n"
                    "signal.signal(signal.SIGTERM, bye)\n"
                    "print('ready', flush=True); time.sleep(60)"
                ),
            ),
            ChildSpec(
                "stubborn",
                _py("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"),
            ),
        ],
        output=subprocess.DEVNULL,
    )
    s.start()
    time.sleep(1.0)  # both have set their handlers (python starts in well under that here)
    pids = [c.pid for c in s.children.values()]
    events = s.stop(signal.SIGTERM, timeout_s=1.0)
    assert polite.read_text() == "bye"
    text = {e.name: e.text for e in events}
    assert "exited with status 0" in text["polite"], text
    assert "SIGKILL" in text["stubborn"] and "still running" in text["stubborn"], text
    for pid in pids:  # reaped: no zombie left
        assert not Path(f"/proc/{pid}").exists()


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """SIGKILL of the supervisor: its child gets SIGTERM from the kernel (PR_SET_PDEATHSIG)."""
    child = (
        "from krystal.supervise.children import die_with_parent; die_with_parent(); "
        "import time; time.sleep(60)"
    )
    boss = subprocess.Popen(
        _py(
            "import sys, time\n"
            "from krystal.supervise.children import ChildSpec, Supervisor\n"
            f"s = Supervisor([ChildSpec('c', [sys.executable, '-c', {child!r}])]); s.start()\n"
            "print(s.children['c'].pid, flush=True); time.sleep(60)"
        ),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pid = 0
    try:
        assert boss.stdout is not None
        pid = int(boss.stdout.readline())
        time.sleep(1.0)  # the child is past its prctl
        assert _running(pid)
        boss.kill()
        boss.wait()
        assert wait_until(lambda: not _running(pid), 5.0), f"child {pid} outlived its supervisor"
    finally:
        for left in (boss.pid, pid):
            if left and _running(left):  # only when the test failed: leave nothing behind
                os.kill(left, signal.SIGKILL)
        boss.wait()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize(("code", "text"), [(3, "exited with status 3"), (-9, "killed by SIGKILL")])
def test_exits_are_described(code: int, text: str) -> None:
    assert describe_exit(code) == text
