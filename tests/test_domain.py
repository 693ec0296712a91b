"""claim_domain_id: an id no other run holds, nor any live process carries (a killed run's nodes)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from krystal.domain import LAST, domains_in_use

CLAIM = "import sys; from krystal.domain import claim_domain_id as c; print(c(*map(int, sys.argv[1:])))"


def _unlocked_pair() -> int:
    """An id `i` with i and i + 1 not held by another run right now."""
    for first in range(LAST - 1, 0, -2):
        free = True
        for domain_id in (first, first + 1):
            with (Path(tempfile.gettempdir()) / f"krystal-test-domain-{domain_id}.lock").open("a") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                except OSError:
                    free = False
        if free and not {first, first + 1} & domains_in_use():
            return first
    raise AssertionError("no two neighbouring domain ids free")


def _with_domain(domain_id: int) -> subprocess.Popen:
    env = os.environ | {"ROS_DOMAIN_ID": str(domain_id)}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)


def test_an_id_a_live_process_carries_is_not_claimed() -> None:
    first = _unlocked_pair()
    env = {k: v for k, v in os.environ.items() if k != "KRYSTAL_TEST_DOMAIN_ID"}

    def claims() -> set[str]:  # 8 claims: a random pick of the two ids would give both
        return {
            subprocess.run(
                [sys.executable, "-c", CLAIM, str(first), str(first + 1)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout.strip()
            for _ in range(8)
        }  # fmt: skip

    orphan = _with_domain(first)  # the flock died with its run; its node did not
    try:
        assert first in domains_in_use()
        assert claims() == {str(first + 1)}
    finally:
        orphan.kill()
        orphan.wait()
    assert first not in domains_in_use()
