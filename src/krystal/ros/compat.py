"""The rclpy differences between Humble (3.10), Jazzy (3.12) and Kilted (3.11), in one place."""

from __future__ import annotations

try:  # Iron and later
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks

    HAS_DISCOVERY_RANGE = True
except ImportError:  # Humble
    from rclpy.qos_event import (  # type: ignore[no-redef]
        PublisherEventCallbacks,
        SubscriptionEventCallbacks,
    )

    HAS_DISCOVERY_RANGE = False

from rclpy.executors import ExternalShutdownException

__all__ = [
    "ExternalShutdownException",
    "PublisherEventCallbacks",
    "SubscriptionEventCallbacks",
    "localhost_discovery_env",
]


def localhost_discovery_env() -> dict[str, str]:
    """Environment that keeps discovery on this host (Humble has only ROS_LOCALHOST_ONLY)."""
    if HAS_DISCOVERY_RANGE:
        return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return {"ROS_LOCALHOST_ONLY": "1"}
