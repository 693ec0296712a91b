"""A ROS_DOMAIN_ID that no other test run or benchmark on this machine holds.

Test runs and benchmarks that share a machine (several checkouts, CI beside a developer, a benchmark
beside the suite) must not see each other's nodes: a random id alone collides now and then (a
`make test-stress` run failed on another checkout's render feed and styles), so the claimant also
holds an flock on <tmp>/krystal-test-domain-<id>.lock for its lifetime; the kernel releases it when
the process exits, also after SIGKILL. Processes the claimant starts inherit the id from its
environment.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path
from typing import IO

FIRST, LAST = 1, 89  # within every RMW's range (Fast DDS ports stay below 65535 up to 232)
_HELD: list[IO[str]] = []


def claim_domain_id() -> str:
    """A free id in [FIRST, LAST], locked until this process exits; KRYSTAL_TEST_DOMAIN_ID pins one."""
    pinned = os.environ.get("KRYSTAL_TEST_DOMAIN_ID")
    if pinned:
        return pinned
    ids = list(range(FIRST, LAST + 1))
    random.SystemRandom().shuffle(ids)
    for domain_id in ids:
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
