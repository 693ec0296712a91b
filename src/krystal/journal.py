"""Crash-safe JSON Lines: one os.write per record on an O_APPEND descriptor, size-based rotation.

A kill -9 loses at most the record being written (the kernel has every completed write); fsync per
record is optional, for power loss. Readers skip a torn last line.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def append_whole(fd: int, line: bytes) -> None:
    """Append `line` to an O_APPEND descriptor whole or not at all.

    On a nearly full disk write() can store part of a line and return the count: that torn tail
    would glue the next record onto it (both lost to readers). The file is cut back and ENOSPC
    raised instead, so the writer reports the full disk and the next line starts clean.
    """
    before = os.fstat(fd).st_size
    written = os.write(fd, line)
    if written != len(line):
        os.ftruncate(fd, before)
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (wrote {written} of {len(line)} bytes)")


def state_dir() -> Path:
    """$XDG_STATE_HOME/krystal (default ~/.local/state/krystal)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "krystal"


def open_append(path: Path) -> int:
    """An O_APPEND descriptor on `path`. A torn last line (the process died or the disk filled
    mid-record) is ended first: the next record starts a line of its own instead of being glued to
    it and skipped with it by every reader."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
    except OSError:
        os.close(fd)
        raise
    return fd


class JsonLines:
    def __init__(
        self, path: str | Path, max_bytes: int = 64 * 1024 * 1024, backups: int = 3, fsync: bool = False
    ) -> None:
        self.path = Path(path).expanduser()
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()

    def _open(self) -> int:
        return open_append(self.path)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str, allow_nan=False) + "\n").encode()
        with self._lock:
            if self.max_bytes and os.fstat(self._fd).st_size + len(line) > self.max_bytes:
                self._rotate()
            append_whole(self._fd, line)
            if self.fsync:
                os.fsync(self._fd)

    def _rotate(self) -> None:
        os.close(self._fd)
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_json_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete, valid record; a torn or corrupt line is skipped, never fatal."""
    try:
        with open(path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    return
                try:
                    record = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(record, dict):
                    yield record
    except OSError:
        return
