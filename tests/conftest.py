"""Test isolation: a random ROS_DOMAIN_ID per run, discovery on localhost only, our transport profile.

The variables are set before any rclpy import so the test process and every subprocess it starts
share them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from krystal.domain import claim_domain_id, process_environs

ROOT = Path(__file__).resolve().parent.parent


os.environ["ROS_DOMAIN_ID"] = claim_domain_id()
# carried by every process this run starts, and only by those: the leak check below finds them by it
os.environ["KRYSTAL_TEST_RUN"] = f"{os.getpid()}-{time.time_ns()}"
os.environ.setdefault("PYTHONUNBUFFERED", "1")

# KRYSTAL_TEST_TIMEOUT_SCALE multiplies every deadline a test waits on (discovery, a node's first
# message, a process's exit). A deadline only costs time when the test fails, so the default is
# generous: 3 lets a 2-core machine pass with two busy loops and other test runs beside it
# (`make test-stress`). Set it higher on slower runners; durations a test *observes* (spin 0.3 s and
# count what arrived) are not deadlines and are not scaled.
TIMEOUT_SCALE = float(os.environ.get("KRYSTAL_TEST_TIMEOUT_SCALE", "3"))
if not TIMEOUT_SCALE > 0:
    raise ValueError(f"KRYSTAL_TEST_TIMEOUT_SCALE must be > 0, got {TIMEOUT_SCALE}")

# KRYSTAL_CORE_ONLY=1 (make test-compat): only the modules that need no ROS, on a plain Python.
CORE_ONLY = os.environ.get("KRYSTAL_CORE_ONLY") == "1"

if not CORE_ONLY:
    try:
        import krystal.msg  # noqa: F401  (built by colcon: proves the environment is set up)
    except ImportError:
        pytest.exit(
            "krystal's messages are not importable: run the tests with `make test` "
            "(or `source tools/env.sh` after `make setup`)",
            returncode=4,
        )

    from krystal.paths import apply_transport_env
    from krystal.ros.compat import localhost_discovery_env

    os.environ.update(localhost_discovery_env())
    apply_transport_env()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under KRYSTAL_CORE_ONLY, leave out every test module that imports ROS (tests/ros_free.py)."""
    if not CORE_ONLY or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    from tests.ros_free import missing_packages, needs_ros

    if needs_ros(collection_path):
        return True
    missing = missing_packages(collection_path)
    if missing:
        print(f"compat: leaving out {collection_path.name} (not installed here: {', '.join(missing)})")
        return True
    return None


def scaled(seconds: float) -> float:
    """A deadline of `seconds` on an idle machine, scaled by KRYSTAL_TEST_TIMEOUT_SCALE."""
    return seconds * TIMEOUT_SCALE


def wait_until(cond: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> bool:
    """Poll `cond()` until it holds or `scaled(timeout_s)` passes; returns its last value.

    `timeout_s` is the idle-machine deadline: do not pass `scaled(...)` here, this scales it.
    """
    deadline = time.monotonic() + scaled(timeout_s)
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step_s)
    return bool(cond())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The per-test hang guard (pytest-timeout: pyproject's `timeout`, --timeout or PYTEST_TIMEOUT)
    scales too: mypy over the tree took over 120 s at load average 10 on 2 cores."""
    if not config.pluginmanager.hasplugin("timeout"):
        return
    base = config.getvalue("timeout") or os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout")
    if not base or float(base) <= 0:
        return
    guard = pytest.mark.timeout(scaled(float(base)))
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(guard)


@pytest.fixture
def ros() -> Iterator[None]:
    """An rclpy context for one test."""
    import rclpy

    rclpy.init()
    try:
        yield
    finally:
        # rclpy's own shutdown destroys the context's nodes while it removes each from the list it
        # walks, so it skips every other one (Kilted's Context._cleanup). A failed test's nodes, kept
        # alive by its traceback, then served their latched messages to the tests after it (a manual
        # 'sketch' StyleDecision failed 8 tests of a run). Destroy them all first.
        context = rclpy.utilities.get_default_context()
        for ref in list(getattr(context, "_Context__node_weak_ref_list", [])):
            node = ref()
            if node is not None:
                node.destroy_node()
        rclpy.try_shutdown()


def spin_until(nodes: list, predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Spin `nodes` on one executor until `predicate()` holds or the timeout passes.

    The timeout is used as given (a test may spin for a fixed span to observe): pass
    `scaled(seconds)` when it is a deadline for a condition.
    """
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    for n in nodes:
        executor.add_node(n)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if predicate():
                return True
            executor.spin_once(timeout_sec=0.05)
        return predicate()
    finally:
        for n in nodes:
            executor.remove_node(n)
        executor.shutdown(timeout_sec=0.5)


class Proc:
    """A subprocess started with the test environment; stopped and reaped at teardown."""

    def __init__(self, args: list[str], **kwargs: object) -> None:
        self.args = args
        options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        self.popen = subprocess.Popen(args, start_new_session=True, **(options | kwargs))
        self.stdout = ""
        self.stderr = ""

    def interrupt(self, timeout_s: float) -> tuple[int | None, float]:
        """SIGINT, then wait; returns (exit code or None if still running, seconds taken)."""
        t0 = time.monotonic()
        self.popen.send_signal(signal.SIGINT)
        try:
            self.stdout, self.stderr = self.popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - t0
        return self.popen.returncode, time.monotonic() - t0

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stdout, self.stderr = self.popen.communicate(timeout=5)
        # the leader may have exited (or been interrupted) with children of its group still up
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.popen.returncode is None:
            self.stdout, self.stderr = self.popen.communicate()


def _run_processes() -> dict[int, tuple[int, str]]:
    """Every other process this run started (and theirs): pid -> (parent pid, command line)."""
    mark = f"KRYSTAL_TEST_RUN={os.environ['KRYSTAL_TEST_RUN']}".encode()
    found: dict[int, tuple[int, str]] = {}
    for pid, environ in process_environs():
        if pid == os.getpid() or mark not in environ:
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone
            continue
        found[pid] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd.strip()[:200])
    return found


def _reap_leaks(before: set[int], keep_children: bool) -> list[str]:
    """Processes of this run (on its ROS_DOMAIN_ID) started since `before` and up after a grace period:
    killed, and described. A leaked node publishes into every later test (a latched StyleDecision,
    camera images, 45-row frames) and the failures land far from their cause."""
    deadline = time.monotonic() + scaled(2.0)
    while True:
        new = {pid: v for pid, v in _run_processes().items() if pid not in before}
        # this process still owns its multiprocessing helpers (a pool's workers, the resource
        # tracker) for its lifetime, and after a test its other children too (a module's server)
        new = {
            pid: (ppid, cmd)
            for pid, (ppid, cmd) in new.items()
            if ppid != os.getpid() or not (keep_children or "from multiprocessing." in cmd)
        }
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in new:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [f"pid {pid} (parent {ppid}): {cmd}" for pid, (ppid, cmd) in sorted(new.items())]


def _leak_guard(keep_children: bool, what: str) -> Iterator[None]:
    if CORE_ONLY:
        yield
        return
    before = set(_run_processes())
    yield
    leaked = _reap_leaks(before, keep_children)
    if leaked:
        pytest.fail(f"processes outlived {what} (killed now):\n" + "\n".join(leaked))


@pytest.fixture(autouse=True, scope="module")
def _no_leaked_processes_per_module() -> Iterator[None]:
    yield from _leak_guard(keep_children=False, what="this module's tests")


@pytest.fixture(autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    yield from _leak_guard(keep_children=True, what="this test")


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(args: list[str], **kwargs: object) -> Proc:
        p = Proc(args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def executable(name: str) -> str:
    """Path of an installed node executable (lib/krystal/<name>)."""
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix("krystal")) / "lib" / "krystal" / name
    assert path.is_file(), f"{path} not installed"
    return str(path)


PYTHON = sys.executable
