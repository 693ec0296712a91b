"""QoS profiles of the graph (docs/architecture.md, QoS and transport)."""

from __future__ import annotations

from typing import Any

from rclpy.duration import Duration
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.qos_overriding_options import QoSOverridingOptions

from krystal.ros.compat import SubscriptionEventCallbacks


def sensor_qos(depth: int = 1, deadline_s: float = 0.0) -> QoSProfile:
    """Best effort, newest only: a stale frame is worth less than a dropped one."""
    profile = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )
    if deadline_s > 0:
        profile.deadline = Duration(seconds=deadline_s)
    return profile


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Decisions, verdicts, frames for viewers: every message counts."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos(depth: int = 1) -> QoSProfile:
    """Status a late joiner must see (device status, registry): reliable, transient local."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def overridable() -> QoSOverridingOptions:
    """Let users change reliability/depth/history with qos_overrides parameters, no rebuild.

    Fixed QoS is the top "no image in rqt" complaint of camera drivers (usb_cam issues 194, 375, 165).
    """
    return QoSOverridingOptions.with_default_policies()


def with_deadline(profile: QoSProfile, rate_hz: float, tolerance: float = 2.0) -> QoSProfile:
    """`profile` with a QoS deadline of `tolerance` periods of a stream published at `rate_hz`.

    Set it on both sides: DDS matches a subscription that requests a deadline only with
    publishers that offer one at least as short (a plain publisher offers none and never matches).
    The deadline-aware executor also takes it as the subscription's default budget.
    """
    out = QoSProfile(
        history=profile.history,
        depth=profile.depth,
        reliability=profile.reliability,
        durability=profile.durability,
    )
    if rate_hz > 0:
        out.deadline = Duration(nanoseconds=int(tolerance * 1e9 / rate_hz))
    return out


class DeadlineMisses:
    """Counts deadline-missed events of subscriptions: `node.create_subscription(...,
    event_callbacks=misses.callbacks())`, then report `total` (and `since_last()`) on diagnostics."""

    def __init__(self) -> None:
        self.total = 0
        self._reported = 0

    def _on_missed(self, status: Any) -> None:
        self.total += max(1, int(getattr(status, "total_count_change", 1)))

    def callbacks(self) -> SubscriptionEventCallbacks:
        return SubscriptionEventCallbacks(deadline=self._on_missed)

    def since_last(self) -> int:
        """Misses since the previous call (a diagnostics task's WARN condition)."""
        new = self.total - self._reported
        self._reported = self.total
        return new
