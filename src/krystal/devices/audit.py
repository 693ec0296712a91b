"""Crash-safe JSON Lines audit log: one os.write of one whole line per record, on O_APPEND.

kill -9 loses at most the line being written (the kernel keeps what write() returned); `fsync`
also survives power loss, at a disk flush per record. `read_audit` skips a torn last line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: str | Path, fsync: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> bool:
        """Append one record (a `time` field is added); False (never an exception) if it failed."""
        line = {"time": round(self._clock(), 6), **record}
        data = (json.dumps(line, sort_keys=True, default=str, ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._fd < 0:
                return False
            try:
                written = os.write(self._fd, data)  # O_APPEND: one write is one atomic append
                if self._fsync:
                    os.fsync(self._fd)
            except OSError:
                return False
        return written == len(data)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_audit(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a log, skipping a last line cut short by a crash (or any garbled line)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record
