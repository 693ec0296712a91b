"""Process lifetime for one node or many: init with our transport, spin, stop cleanly on Ctrl-C.

The executor is krystal's deadline-aware one unless the nodes' `executor.type` parameter (or the
caller) picks one of rclpy's; see docs/sched.md.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

import rclpy
from rclpy.executors import Executor
from rclpy.node import Node

from krystal.paths import apply_transport_env
from krystal.ros.compat import ExternalShutdownException
from krystal.sched.executor import DeadlineExecutor, make_executor, setup_realtime
from krystal.sched.settings import ExecutorSettings, node_settings


def init(args: Sequence[str] | None = None) -> None:
    """rclpy.init after pointing Fast DDS at our profile (it reads the variable at init)."""
    apply_transport_env()
    rclpy.init(args=list(args) if args is not None else None)


def executor_for(nodes: Sequence[Node], kind: str | None = None) -> tuple[Executor, ExecutorSettings]:
    """The executor the first node's `executor.*` parameters ask for (`kind` overrides the type)."""
    settings = node_settings(nodes[0]) if nodes else ExecutorSettings()
    kind = kind or settings.kind
    if kind == "events" and any(list(n.guards) for n in nodes):
        # rclpy 9.1.2's EventsExecutor raises "Guard conditions not supported" on the first trigger
        rclpy.logging.get_logger("krystal.sched").warning(
            "executor.type events: rclpy's EventsExecutor does not support guard conditions, "
            "which these nodes use; using single"
        )
        kind = "single"
    executor = make_executor(kind, settings.threads)
    return executor, settings


def spin(nodes: Sequence[Node], executor: Executor | None = None, *, kind: str | None = None) -> int:
    """Spin until Ctrl-C/SIGTERM or rclpy shutdown, then destroy the nodes; returns exit status 0."""
    settings: ExecutorSettings | None = None
    if executor is None:
        executor, settings = executor_for(nodes, kind)
    for node in nodes:
        executor.add_node(node)
    if settings is not None:
        if isinstance(executor, DeadlineExecutor):
            executor.configure_realtime(settings)
        else:
            setup_realtime(settings, lock_memory=settings.mlockall)
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
        if isinstance(executor, DeadlineExecutor):
            rclpy.logging.get_logger("krystal.sched").info(executor.summary_text())
        for node in reversed(list(nodes)):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown()
    return 0
