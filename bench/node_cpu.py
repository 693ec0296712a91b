"""CPU share of a node spinning in this process: process CPU seconds per wall second, in percent."""

from __future__ import annotations

import time
from collections.abc import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


def cpu_percent(make_node: Callable[[], Node], seconds: float, warmup_s: float = 0.5) -> float:
    """% of one core the process uses while `make_node()` spins alone (its DDS threads included)."""
    node = make_node()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        end = time.monotonic() + warmup_s
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        cpu0, wall0 = time.process_time(), time.monotonic()
        end = wall0 + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        return 100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown(timeout_sec=0.5)


def ensure_init() -> None:
    if not rclpy.ok():
        rclpy.init()
