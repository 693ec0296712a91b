"""ruff and mypy run with the tests so the style stays one across sessions."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

# The compat venvs (make test-compat) hold the runtime pins only, not the linters.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None or importlib.util.find_spec("mypy") is None,
    reason="ruff and mypy are not installed in this environment",
)

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["src", "tests", "bench", "launch", "tools"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint() -> None:
    result = _run("ruff", "check", "--no-cache", *PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run("ruff", "format", "--check", "--no-cache", *PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _run("mypy", "--cache-dir", str(ROOT / "build" / ".mypy_cache"))
    assert result.returncode == 0, result.stdout + result.stderr
