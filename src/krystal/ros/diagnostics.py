"""Health on /diagnostics, one task per concern, as rqt_robot_monitor expects.

Each task returns a Health (always with a summary message), published at 1 Hz and on demand when a
task's level changes, so an ERROR shows within one callback, not one period.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from krystal.ros.qos import reliable_qos

OK, WARN, ERROR, STALE = (
    DiagnosticStatus.OK,
    DiagnosticStatus.WARN,
    DiagnosticStatus.ERROR,
    DiagnosticStatus.STALE,
)
_LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


@dataclass(frozen=True)
class Health:
    level: bytes
    message: str
    values: dict[str, str] = field(default_factory=dict)


# Lets code that did not create a node's Diagnostics (the executor) add its own task to it.
_BY_NODE: weakref.WeakKeyDictionary[Node, weakref.ref[Diagnostics]] = weakref.WeakKeyDictionary()


# Tasks added before the node made its Diagnostics (helpers called early in a node's __init__).
_PENDING: weakref.WeakKeyDictionary[Node, list[tuple[str, Callable[[], Health]]]] = (
    weakref.WeakKeyDictionary()
)


def diagnostics_of(node: Node) -> Diagnostics | None:
    """The Diagnostics a node created, if any."""
    ref = _BY_NODE.get(node)
    return ref() if ref is not None else None


def add_task(node: Node, name: str, task: Callable[[], Health]) -> None:
    """Add a task to the node's Diagnostics, now or when the node creates it."""
    diagnostics = diagnostics_of(node)
    if diagnostics is not None:
        diagnostics.add(name, task)
    else:
        _PENDING.setdefault(node, []).append((name, task))


def level_name(level: bytes) -> str:
    return _LEVEL_NAMES.get(level, repr(level))


class Diagnostics:
    """Owns a node's tasks and its /diagnostics publisher (absolute: the aggregator listens there)."""

    def __init__(self, node: Node, hardware_id: str = "", period_s: float = 1.0) -> None:
        self._node = node
        self._hardware_id = hardware_id or node.get_fully_qualified_name()
        self._tasks: list[tuple[str, Callable[[], Health]]] = []
        self._last_levels: dict[str, bytes] = {}
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self._timer = node.create_timer(period_s, self.publish)
        _BY_NODE[node] = weakref.ref(self)
        for name, task in _PENDING.pop(node, ()):
            self.add(name, task)

    def add(self, name: str, task: Callable[[], Health]) -> None:
        self._tasks.append((name, task))

    def publish(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        prefix = self._node.get_name()
        for name, task in self._tasks:
            try:
                health = task()
            except Exception as exc:  # a broken task must not silence the others
                health = Health(ERROR, f"diagnostic task failed: {exc!r}")
            status = DiagnosticStatus(
                level=health.level,
                name=f"{prefix}: {name}",
                message=health.message,
                hardware_id=self._hardware_id,
                values=[KeyValue(key=k, value=str(v)) for k, v in health.values.items()],
            )
            self._last_levels[name] = health.level
            msg.status.append(status)
        self._pub.publish(msg)

    def level_changed(self, name: str, level: bytes) -> None:
        """Publish now if `name` moved to another level since the last publication."""
        if self._last_levels.get(name) != level:
            self.publish()
