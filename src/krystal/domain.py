"""A ROS_DOMAIN_ID that no other test run or benchmark on this machine holds.

Test runs and benchmarks that share a machine (several checkouts, CI beside a developer, a benchmark
beside the suite) must not see each other's nodes: a random id alone collides now and then (a
`make test-stress` run failed on another checkout's render feed and styles), so the claimant also
holds an flock on <tmp>/krystal-test-domain-<id>.lock for its lifetime; the kernel releases it when
the process exits, also after SIGKILL. Processes the claimant starts inherit the id from its
environment but not the lock, so an id that a live process carries in its environment (the nodes
of a run killed mid-test) is not claimed either.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

FIRST, LAST = 1, 89  # within every RMW's range (Fast DDS ports stay below 65535 up to 232)
_HELD: list[IO[str]] = []


def process_environs() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, its environment's NAME=value entries) for each process on this machine we may read
    (none without /proc)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        yield int(entry), environ.split(b"\0")


def domains_in_use() -> set[int]:
    """The ROS_DOMAIN_IDs in the environments of the processes on this machine."""
    return {
        int(var[14:])
        for _, environ in process_environs()
        for var in environ
        if var.startswith(b"ROS_DOMAIN_ID=") and var[14:].isdigit()
    }


def claim_domain_id(first: int = FIRST, last: int = LAST) -> str:
    """A free id in [first, last], locked until this process exits; KRYSTAL_TEST_DOMAIN_ID pins one."""
    pinned = os.environ.get("KRYSTAL_TEST_DOMAIN_ID")
    if pinned:
        return pinned
    ids = list(range(first, last + 1))
    random.SystemRandom().shuffle(ids)
    used = domains_in_use()
    for domain_id in sorted(ids, key=lambda i: i in used):  # a carried id only when all are
        path = Path(tempfile.gettempdir()) / f"krystal-test-domain-{domain_id}.lock"
        lock = path.open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        _HELD.append(lock)
        return str(domain_id)
    return str(ids[0])  # every id held: share one rather than refuse to run


def isolated_domain_id() -> str:
    """ROS_DOMAIN_ID for a benchmark's graph: the inherited one when a claimant (a test run, a
    calling benchmark) set it, else a freshly claimed one."""
    return os.environ.get("ROS_DOMAIN_ID") or claim_domain_id()
