"""Real-time setup of the calling thread (ROS-free): SCHED_FIFO, CPU affinity, mlockall.

Each step is tried on its own; a refusal by the OS is reported, never raised, so a process that
may not be real-time still runs with normal scheduling.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass

_MCL_CURRENT = 1
_MCL_FUTURE = 2
_PR_SET_TIMERSLACK = 29
_PR_GET_TIMERSLACK = 30


@dataclass(frozen=True)
class RealtimeResult:
    applied: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()

    def refusal_line(self) -> str | None:
        """The one log line a refusal deserves, or None when everything asked for was applied."""
        if not self.refused:
            return None
        return "real-time setup refused: " + "; ".join(self.refused) + " (running with normal scheduling)"


def apply_realtime(priority: int = 0, cpus: Sequence[int] = (), lock_memory: bool = False) -> RealtimeResult:
    """Apply what is asked to the calling thread (Linux: pid 0 is the calling thread)."""
    applied: list[str] = []
    refused: list[str] = []
    if priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            applied.append(f"SCHED_FIFO priority {priority}")
        except (OSError, AttributeError, ValueError) as exc:
            refused.append(f"SCHED_FIFO priority {priority}: {_reason(exc)}")
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
            applied.append(f"CPUs {sorted(set(cpus))}")
        except (OSError, AttributeError, ValueError) as exc:
            refused.append(f"CPU affinity {list(cpus)}: {_reason(exc)}")
    if lock_memory:
        reason = _mlockall()
        if reason is None:
            applied.append("mlockall")
        else:
            refused.append(f"mlockall: {reason}")
    return RealtimeResult(tuple(applied), tuple(refused))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def set_timer_slack(ns: int) -> bool:
    """Set the calling thread's timer slack (how late the kernel may end its timed waits, to
    merge wake-ups; Linux's default is 50 µs, SCHED_FIFO threads have none for sleeps and polls);
    0 restores the thread's default (its creator's slack when it was created). False where there
    is no such control."""
    try:
        return bool(_libc().prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(max(0, ns)), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def timer_slack() -> int | None:
    """The calling thread's timer slack in ns, or None where there is no such control."""
    try:
        slack = int(_libc().prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0))
    except (OSError, AttributeError):
        return None
    return slack if slack >= 0 else None


def _mlockall() -> str | None:
    try:
        if _libc().mlockall(_MCL_CURRENT | _MCL_FUTURE) == 0:
            return None
        err = ctypes.get_errno()
        return f"{os.strerror(err)} (errno {err}; raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK)"
    except (OSError, AttributeError) as exc:
        return _reason(exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "not permitted (needs CAP_SYS_NICE or an RLIMIT_RTPRIO; in a container: --cap-add SYS_NICE)"
    return str(exc) or type(exc).__name__
