"""Decision log: JSON Lines, crash-safe, size-rotated (schema: docs/reasoning.md).

Each record is one line written with a single os.write on an O_APPEND descriptor, so a kill -9
leaves whole lines plus at most one partial last line, which the reader skips. A decision is
written twice: when made (outcome null), and again with its outcome once the following frames are
known; readers keep the last line per decision (run_id, decision_id), so every run's decisions
survive restarts and appends. Decision ids come from a persisted counter (`DecisionIds`), so they
are unique across restarts too.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from krystal.journal import append_whole, open_append

FSYNC_POLICIES = ("always", "interval", "never")
SCHEMA_VERSION = 2  # 1: no schema_version/run_id/boot_id/mono_s (still read)
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID_PATH) -> str | None:
    """The kernel's boot id (Linux), None elsewhere: with mono_s it orders lines of one boot."""
    try:
        return path.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def new_run_id() -> str:
    return uuid.uuid4().hex


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
        *,
        run_id: str | None = None,
        boot: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """run_id, boot (the boot id) and monotonic: this process's unless given (a simulation
        gives its own, so its files are the same bytes for the same seed)."""
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        self.run_id = run_id or new_run_id()
        self.boot_id = boot or boot_id()
        self._monotonic = monotonic
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
        return open_append(self.path)  # a run after a kill starts on a line of its own

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
        """One line: the envelope (schema_version, run_id, boot_id, mono_s) and `record`, whose
        `timestamp` is the wall time."""
        line = encode(
            {
                "schema_version": SCHEMA_VERSION,
                "run_id": self.run_id,
                "boot_id": self.boot_id,
                "mono_s": round(self._monotonic(), 6),
                **record,
            }
        )
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


class DecisionIds:
    """Decision ids unique across restarts: a counter file beside the log reserves blocks of ids.

    At start the file's value is the first id of this run, and value + block is written (write,
    fsync, rename) before any id of the block is used; past it, the next block. A crash skips the
    rest of a block, never reuses an id. A missing or garbled counter file starts after the largest
    decision_id in the log files (a log from before the counter, or a deleted counter).
    """

    def __init__(self, log_path: Path, block: int = 1000) -> None:
        self.path = log_path.with_name(log_path.stem + ".next_id")
        self.block = max(1, block)
        try:
            start = int(self.path.read_text(encoding="ascii").strip())
            if start < 1:
                raise ValueError(start)
        except (OSError, ValueError):
            start = 1 + max(
                (k for r in read_decisions(log_path) if isinstance(k := decision_key(r), int)), default=0
            )
        self.start = start
        self.limit = start  # ids below it are reserved on disk
        self.ensure(start)

    def ensure(self, next_id: int) -> None:
        """Reserve on disk before `next_id` is used (OSError when the folder is not writable)."""
        if next_id < self.limit:
            return
        limit = next_id + self.block
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{limit}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self.limit = limit


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


def decision_key(rec: dict[str, Any]) -> Any:
    """decision_id of a decision line, None for anything else (a shadow choice, a model event)."""
    if rec.get("kind", "decision") != "decision":
        return None
    decision = rec.get("decision")
    return decision.get("decision_id") if isinstance(decision, dict) else None


def latest_per_decision(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per decision, its last line, in the order decisions were first seen.

    The key is (run_id, decision_id). Lines of schema 1 have no run_id: a restart shows as the
    first line (outcome null) of a decision_id already seen since the last restart, which starts a
    new run there, so an old log's restarts keep their decisions too.
    """
    by_key: dict[Any, dict[str, Any]] = {}
    legacy_run = 0
    legacy_seen: set[Any] = set()
    for rec in records:
        key = decision_key(rec)
        if key is None or isinstance(key, (dict, list)):
            continue
        run = rec.get("run_id")
        if not isinstance(run, str):
            if rec.get("outcome") is None:
                if key in legacy_seen:
                    legacy_run += 1
                    legacy_seen = set()
                legacy_seen.add(key)
            run = legacy_run
        by_key[(run, key)] = rec  # an update keeps the key's first position
    return list(by_key.values())


def read_decisions(path: Path) -> list[dict[str, Any]]:
    """The log and its rotated files, oldest first, one record per decision (its last line);
    every decision of every run (see `latest_per_decision`)."""
    files = [*sorted(path.parent.glob(path.name + ".*"), key=lambda p: -_suffix(p)), path]
    return latest_per_decision(rec for f in files if _suffix(f) >= 0 or f == path for rec in read_lines(f))


def _suffix(p: Path) -> int:
    tail = p.name.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else -1
