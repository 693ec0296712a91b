"""Process lifetime: a callback cut short by shutdown is a clean exit, a real error is not."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from krystal.ros import spin


def test_publish_after_shutdown_inside_a_callback_is_a_clean_exit() -> None:
    """Ctrl-C shuts the context down while a timer is publishing (seen with 1080p video)."""
    spin.init([])
    node = rclpy.create_node("shutdown_race")
    pub = node.create_publisher(String, "race", 1)

    def tick() -> None:
        rclpy.shutdown()  # what the SIGINT handler does, here at the worst moment
        pub.publish(String(data="late"))  # raises: the publisher's context is invalid

    node.create_timer(0.01, tick)
    assert spin.spin([node]) == 0


def test_errors_while_running_are_not_swallowed() -> None:
    """On one of rclpy's executors (executor.type single) an escaping error ends the spin, as before."""
    spin.init([])
    node = rclpy.create_node("real_error")

    def broken() -> None:
        raise RuntimeError("a bug in a callback")

    node.create_timer(0.01, broken)
    with pytest.raises(RuntimeError, match="a bug"):
        spin.spin([node], SingleThreadedExecutor())


def test_the_default_executor_isolates_an_escaping_error_and_keeps_spinning() -> None:
    spin.init([])
    node = rclpy.create_node("isolated_error")
    ticks: list[int] = []

    def broken() -> None:
        raise RuntimeError("a bug in a callback")

    def healthy() -> None:
        ticks.append(1)
        if len(ticks) == 20:
            rclpy.shutdown()  # enough: the spin went on after the errors

    node.create_timer(0.005, broken)
    node.create_timer(0.005, healthy)
    assert spin.spin([node]) == 0
    assert len(ticks) == 20
