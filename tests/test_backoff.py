"""The shared reconnect backoff: doubling, cap, reset; and the rooms that use it stay free of cv2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from krystal.backoff import Backoff


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    waits = [b.failed(now_s=0.0) for _ in range(5)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not b.due(2.9) and b.due(3.0)
    b.reset()
    assert b.attempts == 0 and b.due(0.0) and b.failed(0.0) == 0.5


@pytest.mark.parametrize("module", ["krystal.backoff", "krystal.devices.agent"])
def test_backoff_users_outside_video_do_not_load_opencv(module: str) -> None:
    """Reconnecting a device must not pull in the video room's OpenCV."""
    code = f"import sys, {module}; sys.exit(3 if 'cv2' in sys.modules else 0)"
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr or f"{module} imported cv2"
