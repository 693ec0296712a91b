"""Main of every installed node executable (lib/krystal/<executable>)."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from krystal.graph import by_executable, load_node_class
from krystal.ros import spin
from krystal.supervise.children import die_with_parent


class StartRefused(RuntimeError):
    """A node declines to start for a reason the user can fix (printed as one line, no traceback)."""


def main(executable: str, argv: Sequence[str]) -> int:
    die_with_parent()  # under `krystal run --isolate`: no orphan if the supervisor is killed
    entry = by_executable(executable)
    spin.init(argv)
    try:
        node = load_node_class(entry)(node_name=entry.name)
    except KeyboardInterrupt:
        return 0
    except StartRefused as exc:
        print(f"[{entry.name}] refusing to start: {exc}", file=sys.stderr)
        import rclpy

        rclpy.try_shutdown()
        return 1
    except Exception as exc:
        # The traceback, then one line that says who failed: a respawned node must not crash silently.
        traceback.print_exc()
        print(f"[{entry.name}] cannot start: {exc}", file=sys.stderr)
        import rclpy

        rclpy.try_shutdown()
        return 1
    try:
        return spin.spin([node])
    except Exception as exc:
        traceback.print_exc()
        print(f"[{entry.name}] died: {exc}", file=sys.stderr)
        return 1
