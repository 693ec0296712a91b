"""Decision log: JSON Lines, crash-safe, size-rotated (schema: docs/reasoning.md).

Each record is one line written with a single os.write on an O_APPEND descriptor, so a kill -9
leaves whole lines plus at most one partial last line, which the reader skips. A decision is
written twice: when made (outcome null), and again with its outcome once the following frames are
known; readers keep the last line per decision_id.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from krystal.journal import append_whole

FSYNC_POLICIES = ("always", "interval", "never")


def default_log_dir() -> Path:
    """$XDG_STATE_HOME/krystal, else ~/.local/state/krystal (XDG Base Directory)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "krystal"


def _clean(value: Any) -> Any:
    """JSON has no NaN: unknown numbers become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(_clean(record), separators=(",", ":"), allow_nan=False) + "\n").encode()


class DecisionLog:
    """Appends records to `path`; rotates to path.1 .. path.<keep> past `max_bytes`.

    fsync policy: "always" (each line on disk before write returns), "interval" (at most every
    fsync_interval_s; a power cut may lose that much, a process crash nothing: the kernel has the
    bytes), "never" (the kernel decides).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 10_000_000,
        keep: int = 3,
        fsync: str = "interval",
        fsync_interval_s: float = 1.0,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._last_sync = 0.0
        self._fd = -1  # opened on the first write: a node that decides nothing leaves no file
        self.lines = 0

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _rotate(self) -> None:
        os.close(self._fd)
        for i in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.keep > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()

    def write(self, record: dict[str, Any]) -> None:
        line = encode(record)
        if self._fd < 0:
            self._fd = self._open()
        size = os.fstat(self._fd).st_size
        if self.max_bytes > 0 and size > 0 and size + len(line) > self.max_bytes:
            self._rotate()
        append_whole(self._fd, line)  # the line is whole in the file or not there at all
        self.lines += 1
        now = time.monotonic()
        if self.fsync == "always" or (
            self.fsync == "interval" and now - self._last_sync >= self.fsync_interval_s
        ):
            os.fsync(self._fd)
            self._last_sync = now

    def close(self) -> None:
        if self._fd >= 0:
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete, valid record of one file; a torn or garbled line is skipped."""
    try:
        data = path.read_bytes()
    except OSError:
        return
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(record, dict):
            yield record


def read_decisions(path: Path) -> list[dict[str, Any]]:
    """The log and its rotated files, oldest first, one record per decision (its last line)."""
    files = [*sorted(path.parent.glob(path.name + ".*"), key=lambda p: -_suffix(p)), path]
    by_id: dict[Any, dict[str, Any]] = {}
    order: list[Any] = []
    for f in files:
        if _suffix(f) < 0 and f != path:
            continue
        for rec in read_lines(f):
            decision = rec.get("decision")
            key = decision.get("decision_id") if isinstance(decision, dict) else None
            if key is None:
                key = ("line", len(order))
            if key not in by_id:
                order.append(key)
            by_id[key] = rec
    return [by_id[k] for k in order]


def _suffix(p: Path) -> int:
    tail = p.name.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else -1
