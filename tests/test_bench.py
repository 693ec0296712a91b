"""Every benchmark runs: `python -m bench.<name> --quick` exits 0 and prints one JSON result per line
with the keys docs/architecture.md names, so a broken benchmark fails CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("*_bench.py"))
REQUIRED = {"bench", "case", "ours", "anchor", "anchor_name", "ratio", "unit"}
# Benchmarks whose --quick mode another change is adding; removed from here when it lands. A pending
# bench that has --quick already is run like the others.
PENDING_QUICK: set[str] = set()
# Their --quick runs take minutes (a 2-minute soak; two 1080p graphs on test hosts): `make test-hosts`.
HOSTS_BENCHES = {"hosts_bench", "soak_bench"}

pytestmark = pytest.mark.skipif(
    os.environ.get("KRYSTAL_CORE_ONLY") == "1", reason="benchmarks need the ROS environment and chafa"
)


def test_benchmarks_are_found() -> None:
    assert {"ascii_bench", "image_bench"} <= set(BENCHES)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.timeout(330)) if n in HOSTS_BENCHES else n for n in BENCHES]
)
def test_quick_benchmark_prints_json_results(name: str) -> None:
    if name in HOSTS_BENCHES and os.environ.get("KRYSTAL_TEST_HOSTS") != "1":
        pytest.skip(f"{name} --quick takes minutes: run by `make test-hosts`")
    source = (ROOT / "bench" / f"{name}.py").read_text(encoding="utf-8")
    if "--quick" not in source:
        if name in PENDING_QUICK:
            pytest.skip(f"{name} has no --quick mode yet")
        pytest.fail(f"bench/{name}.py has no --quick mode: every benchmark needs one (< 20 s)")
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300 if name in HOSTS_BENCHES else 180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines, f"{name} printed nothing"
    for line in lines:
        row = json.loads(line)  # every stdout line is one JSON object
        assert isinstance(row, dict), line
        assert row.keys() >= REQUIRED, f"{name}: {sorted(REQUIRED - row.keys())} missing in {line}"
        assert isinstance(row["ours"], (int, float)) and isinstance(row["anchor"], (int, float)), line
