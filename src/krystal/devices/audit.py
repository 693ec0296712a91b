"""The device audit log: every command, accepted or refused, and every lifecycle or fault event.

Written through krystal.journal.JsonLines (one os.write of one whole line per record, on
O_APPEND), so kill -9 loses at most the line being written; `fsync` also survives power loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from krystal.journal import JsonLines, read_json_lines


class AuditLog:
    def __init__(self, path: str | Path, fsync: bool = False, clock: Callable[[], float] = time.time) -> None:
        self._log = JsonLines(path, fsync=fsync)
        self.path = self._log.path
        self._clock = clock
        self.error: str | None = None  # why the last write failed (a full disk); None once one succeeds

    def write(self, record: dict[str, Any]) -> bool:
        """Append one record (a `time` field is added); False, never an exception, if it failed."""
        try:
            self._log.append({"time": round(self._clock(), 6), **record})
        except (OSError, ValueError) as exc:  # a full disk or a closed log must not fail a command
            self.error = f"audit log {self.path} write failed: {exc}"
            return False
        self.error = None
        return True

    def close(self) -> None:
        self._log.close()


def read_audit(path: str | Path) -> Iterator[dict[str, Any]]:
    """The complete records of a log; a last line cut short by a crash is skipped."""
    return read_json_lines(path)
