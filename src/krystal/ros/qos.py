"""QoS profiles of the graph (docs/architecture.md, QoS and transport)."""

from __future__ import annotations

from rclpy.duration import Duration
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.qos_overriding_options import QoSOverridingOptions


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
