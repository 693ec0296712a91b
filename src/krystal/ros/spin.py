"""Process lifetime for one node or many: init with our transport, spin, stop cleanly on Ctrl-C."""

from __future__ import annotations

import signal
from collections.abc import Sequence

import rclpy
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node

from krystal.paths import apply_transport_env
from krystal.ros.compat import ExternalShutdownException


def init(args: Sequence[str] | None = None) -> None:
    """rclpy.init after pointing Fast DDS at our profile (it reads the variable at init)."""
    apply_transport_env()
    rclpy.init(args=list(args) if args is not None else None)


def spin(nodes: Sequence[Node], executor: Executor | None = None) -> int:
    """Spin until Ctrl-C/SIGTERM or rclpy shutdown, then destroy the nodes; returns exit status 0."""
    executor = executor or SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C shuts the context down under a running callback (a publish then fails with
        # "context is invalid"): that is the shutdown we asked for. While running, errors are real.
        if executor.context.ok():
            raise
    finally:
        # A second Ctrl-C while releasing devices must not leave a traceback or a half-closed node.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for node in reversed(list(nodes)):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown()
    return 0
