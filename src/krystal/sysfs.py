"""Reading sysfs attribute files: one os.read each, and a short reason when a read fails.

ROS-free; shared by the thermal and GPU rooms. Values are re-read every cycle (sysfs regenerates
them on each open), and a file that fails says why in words a diagnostics line can carry.
"""

from __future__ import annotations

import errno
import os

_REASONS = {
    errno.EIO: "EIO (input/output error)",
    errno.EAGAIN: "EAGAIN (try again)",
    errno.ENODATA: "ENODATA (no data)",
    errno.EINVAL: "EINVAL (invalid argument)",
    errno.EACCES: "EACCES (permission denied)",
    errno.EPERM: "EPERM (not permitted)",
    errno.ETIMEDOUT: "ETIMEDOUT (timed out)",
    errno.ENXIO: "ENXIO (no such device)",
}
_VANISHED = (errno.ENOENT, errno.ENODEV, errno.ENOTDIR)
_MAX_BYTES = 4096


class Garbage(ValueError):
    """The file was read but does not hold what it should."""


def read_bytes(path: str) -> bytes:
    # O_NONBLOCK: a FIFO or device node in a tree must never stall the executor
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return os.read(fd, _MAX_BYTES)
    finally:
        os.close(fd)


def read_int(path: str) -> int:
    """The integer in `path`; OSError when unreadable, Garbage when it holds something else."""
    raw = read_bytes(path)
    try:
        return int(raw.strip())
    except ValueError:
        raise Garbage(f"garbage {raw[:16]!r}") from None


def read_text(path: str, fallback: str | None = None) -> str | None:
    """The stripped text of `path` (undecodable bytes replaced), or `fallback` when unreadable."""
    try:
        return read_bytes(path).decode("utf-8", "replace").strip()
    except OSError:
        return fallback


def read_int_or_none(path: str) -> int | None:
    try:
        return read_int(path)
    except (OSError, ValueError):
        return None


def is_vanished(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _VANISHED


def reason(exc: BaseException) -> str:
    """A short reason for a failed read: 'vanished', 'EIO (input/output error)', 'garbage b"x"'."""
    if isinstance(exc, Garbage):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.errno in _VANISHED:
            return "vanished"
        if exc.errno in _REASONS:
            return _REASONS[exc.errno]
        name = errno.errorcode.get(exc.errno or 0, "OSError")
        return f"{name} ({exc.strerror or 'error'})"
    return f"{type(exc).__name__}: {exc}"
