"""The graph's health from /diagnostics, aggregated per node and task as ROS's aggregator does.

Statuses are named "<node>: <task>" by krystal.ros.diagnostics; other publishers' names without a
colon count as a task of their own name. A task not heard from for `stale_after_s` (5 s, the
aggregator's default) is STALE. ROS-free: the gateway and `krystal health` feed it plain values.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}
_SEVERITY = {OK: 0, WARN: 1, STALE: 2, ERROR: 3}  # ERROR is worse than not hearing


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(level, str(level))


def worst(levels: Iterable[int]) -> int:
    return max(levels, key=lambda lv: _SEVERITY.get(lv, 3), default=OK)


@dataclass(frozen=True)
class TaskHealth:
    name: str
    level: int
    message: str
    age_s: float
    hardware_id: str = ""
    values: dict[str, str] = field(default_factory=dict)

    @property
    def level_name(self) -> str:
        return level_name(self.level)


@dataclass(frozen=True)
class NodeHealth:
    name: str
    level: int
    tasks: tuple[TaskHealth, ...]

    @property
    def level_name(self) -> str:
        return level_name(self.level)

    @property
    def message(self) -> str:
        bad = [t for t in self.tasks if t.level != OK]
        return "; ".join(f"{t.name}: {t.message}" for t in bad) if bad else "OK"


@dataclass(frozen=True)
class GraphHealth:
    level: int
    nodes: tuple[NodeHealth, ...]

    @property
    def level_name(self) -> str:
        return level_name(self.level)


def split_name(status_name: str) -> tuple[str, str]:
    node, sep, task = status_name.partition(": ")
    return (node, task) if sep else (status_name, status_name)


@dataclass
class _Entry:
    level: int
    message: str
    hardware_id: str
    values: dict[str, str]
    received_s: float


class HealthBook:
    """Latest status of every (node, task), thread-safe: ROS callbacks write, HTTP handlers read."""

    def __init__(self, stale_after_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def update(
        self,
        status_name: str,
        level: int,
        message: str,
        hardware_id: str = "",
        values: dict[str, str] | None = None,
    ) -> None:
        key = split_name(status_name)
        entry = _Entry(int(level), message, hardware_id, dict(values or {}), self._clock())
        with self._lock:
            self._entries[key] = entry

    def snapshot(self) -> GraphHealth:
        now = self._clock()
        with self._lock:
            items = sorted(self._entries.items())
        by_node: dict[str, list[TaskHealth]] = {}
        for (node, task), e in items:
            age = now - e.received_s
            stale = age > self.stale_after_s
            message = f"no update for {age:.0f} s (last: {e.message})" if stale else e.message
            by_node.setdefault(node, []).append(
                TaskHealth(task, STALE if stale else e.level, message, age, e.hardware_id, e.values)
            )
        nodes = tuple(NodeHealth(n, worst(t.level for t in ts), tuple(ts)) for n, ts in by_node.items())
        return GraphHealth(worst(n.level for n in nodes), nodes)

    def values(self, key: str) -> dict[str, str]:
        """The value named `key` of every node's tasks that report it: {node: value}."""
        out: dict[str, str] = {}
        with self._lock:
            for (node, _task), e in self._entries.items():
                if key in e.values:
                    out[node] = e.values[key]
        return out


def as_dict(health: GraphHealth) -> dict[str, object]:
    return {
        "level": health.level_name,
        "nodes": [
            {
                "name": n.name,
                "level": n.level_name,
                "message": n.message,
                "tasks": [
                    {
                        "name": t.name,
                        "level": t.level_name,
                        "message": t.message,
                        "age_s": round(t.age_s, 3),
                        "values": t.values,
                    }
                    for t in n.tasks
                ],
            }
            for n in health.nodes
        ],
    }
