"""Listener side: every device seen on devices/status, and which ones missed their heartbeat.

Bond-style: a device whose last status is older than the timeout (4 s by default, 4 heartbeats)
is STALE, whatever level it last reported; it is fresh again on its next status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

STALE = 3


@dataclass(frozen=True)
class Entry:
    device_id: str
    driver: str
    hardware_id: str
    lifecycle_label: str
    level: int
    message: str
    heartbeat_seq: int
    heartbeat_period_s: float
    seen_s: float  # clock time of the last status
    values: tuple[tuple[str, str], ...] = ()

    def stale(self, now_s: float, timeout_s: float) -> bool:
        # Only active devices beat; an inactive one reports on change and is not expected to.
        return self.lifecycle_label == "active" and now_s - self.seen_s > timeout_s


class Registry:
    def __init__(self, timeout_s: float = 4.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._stale: set[str] = set()

    def update(self, entry: Entry) -> bool:
        """Record a status (seen now); True if what the registry reports changed."""
        entry = replace(entry, seen_s=self._clock())
        old = self._entries.get(entry.device_id)
        self._entries[entry.device_id] = entry
        was_stale = entry.device_id in self._stale
        self._stale.discard(entry.device_id)
        if old is None or was_stale:
            return True
        return (old.lifecycle_label, old.level, old.message) != (
            entry.lifecycle_label,
            entry.level,
            entry.message,
        )

    def check(self) -> bool:
        """Mark devices whose heartbeat is overdue; True if a device turned stale."""
        now = self._clock()
        newly = {d for d, e in self._entries.items() if e.stale(now, self.timeout_s)} - self._stale
        self._stale |= newly
        return bool(newly)

    def is_stale(self, device_id: str) -> bool:
        return device_id in self._stale

    def entries(self) -> list[Entry]:
        return [self._entries[k] for k in sorted(self._entries)]

    def age_s(self, device_id: str) -> float:
        return self._clock() - self._entries[device_id].seen_s
