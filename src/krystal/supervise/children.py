"""The supervisor's child processes: each node its own process in its own session, restarted by the
policy when it dies, stopped by forwarding a signal and reaped. No ROS: the clock is injected; what
happens is returned as events (the shell logs them and reports them on /diagnostics).

No orphans: children are stopped and reaped on a normal stop, and each asks the kernel for SIGTERM
when the supervisor dies (PR_SET_PDEATHSIG, `die_with_parent`), which covers a SIGKILLed supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from krystal.supervise.policy import RestartPolicy

SUPERVISOR_ENV = "KRYSTAL_SUPERVISOR_PID"  # tells a child which parent to die with
_PR_SET_PDEATHSIG = 1
OK, WARN, ERROR = 0, 1, 2


def die_with_parent() -> None:
    """Called first thing in a node's process: if a supervisor started it, get SIGTERM (a clean stop)
    when the supervisor dies, and exit now if it is already gone (it died before the prctl)."""
    supervisor = os.environ.pop(SUPERVISOR_ENV, "")  # not inherited by the node's own children
    if not supervisor.isdigit() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(supervisor):
        raise SystemExit(f"supervisor {supervisor} is gone: not starting")


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]


@dataclass(frozen=True)
class Event:
    name: str
    kind: str  # started | died | gave_up | stopped
    level: int  # OK / WARN / ERROR: how the shell logs it
    text: str


@dataclass
class Child:
    spec: ChildSpec
    policy: RestartPolicy
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    restart_at_s: float | None = None
    last_death: str = ""
    gave_up: str = ""

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.returncode is None else None

    def health(self) -> tuple[int, str, dict[str, str]]:
        """(level, message, values) for /diagnostics: OK while running (naming the last death, if
        any), WARN while it waits for its restart, ERROR once given up."""
        values = {"pid": str(self.pid or ""), "restarts": str(max(0, self.starts - 1))}
        if self.gave_up:
            return ERROR, f"not running: {self.last_death}; {self.gave_up}", values
        if self.pid is None:
            return WARN, f"down: {self.last_death or 'not started yet'}", values
        if self.last_death:
            return (
                OK,
                f"running (pid {self.pid}), restarted {self.starts - 1}x; last: {self.last_death}",
                values,
            )
        return OK, f"running (pid {self.pid})", values


class Supervisor:
    """Starts every child, and on each `poll()` reaps the dead, restarts those whose time has come."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        policy: Callable[[], RestartPolicy] = RestartPolicy,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        output: IO[Any] | int | None = None,
    ) -> None:
        self.children = {s.name: Child(s, policy()) for s in specs}
        self.clock = clock
        self.env = dict(os.environ if env is None else env)
        self.output = output  # children's stdout and stderr (None: ours)

    def start(self) -> list[Event]:
        return [self._spawn(c) for c in self.children.values()]

    def _spawn(self, child: Child) -> Event:
        now = self.clock()
        child.policy.started(now)
        child.restart_at_s = None
        child.starts += 1
        again = f" (restart {child.starts - 1})" if child.starts > 1 else ""
        try:
            child.popen = subprocess.Popen(
                list(child.spec.argv),
                env={**self.env, SUPERVISOR_ENV: str(os.getpid())},
                start_new_session=True,  # terminal signals reach the supervisor only; it forwards them
                stdin=subprocess.DEVNULL,
                stdout=self.output,
                stderr=self.output,
            )
        except OSError as exc:
            child.popen = None
            return self._died(child, f"cannot start: {exc}")
        return Event(
            child.spec.name, "started", OK, f"{child.spec.name} started (pid {child.popen.pid}){again}"
        )

    def _died(self, child: Child, how: str) -> Event:
        now = self.clock()
        ran_s = now - child.policy.started_at_s
        verdict = child.policy.died(now)
        child.last_death = f"{how} after {ran_s:.1f} s"
        name = child.spec.name
        if verdict.restart_at_s is None:
            child.gave_up = verdict.reason
            return Event(
                name, "gave_up", ERROR, f"{name} {child.last_death}; {verdict.reason}; the others go on"
            )
        child.restart_at_s = verdict.restart_at_s
        return Event(name, "died", WARN, f"{name} {child.last_death}; {verdict.reason}")

    def poll(self) -> list[Event]:
        events = []
        for child in self.children.values():
            if child.popen is not None and child.popen.returncode is None:
                code = child.popen.poll()
                if code is not None:
                    events.append(self._died(child, f"(pid {child.popen.pid}) {describe_exit(code)}"))
            if child.restart_at_s is not None and self.clock() >= child.restart_at_s:
                events.append(self._spawn(child))
        return events

    def alive(self) -> list[str]:
        """Children running or waiting for their restart (not given up)."""
        return [n for n, c in self.children.items() if not c.gave_up]

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 5.0) -> list[Event]:
        """Forward `sig` to every running child, wait up to `timeout_s` (real time, whatever the
        policy's clock) for them, SIGKILL the rest; every child is reaped before this returns."""
        running = [c for c in self.children.values() if c.pid is not None]
        for child in self.children.values():
            child.restart_at_s = None
        for child in running:
            _signal(child, sig)
        deadline = time.monotonic() + timeout_s
        while any(c.popen is not None and c.popen.poll() is None for c in running):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        events = []
        for child in running:
            assert child.popen is not None
            how = "stopped"
            if child.popen.poll() is None:
                _signal(child, signal.SIGKILL)
                how = f"killed: still running {timeout_s:g} s after {signal.Signals(sig).name}"
            code = child.popen.wait()
            text = f"{child.spec.name} {how} ({describe_exit(code)})"
            events.append(Event(child.spec.name, "stopped", OK if how == "stopped" else WARN, text))
        return events


def _signal(child: Child, sig: int) -> None:
    if child.popen is not None:
        with contextlib.suppress(ProcessLookupError):
            child.popen.send_signal(sig)
