"""Process lifetime for one node or many: init with our transport, spin, stop cleanly on Ctrl-C.

The executor is krystal's deadline-aware one unless the nodes' `executor.type` parameter (or the
caller) picks one of rclpy's; see docs/sched.md.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Collection, Sequence

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


def _spin_until_stopped(executor: Executor) -> None:
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C shuts the context down under a running callback (a publish then fails with
        # "context is invalid"): that is the shutdown we asked for. While running, errors are real.
        if executor.context.ok():
            raise


def _own_executor(node: Node) -> tuple[Executor, threading.Thread]:
    """An executor for `node` alone, from its own executor.* parameters, spinning on its own thread."""
    executor, settings = executor_for([node])
    executor.add_node(node)
    if isinstance(executor, DeadlineExecutor):
        executor.configure_realtime(settings)  # applied by the thread that spins it

    def run() -> None:
        if not isinstance(executor, DeadlineExecutor):
            setup_realtime(settings, lock_memory=False)
        _spin_until_stopped(executor)

    thread = threading.Thread(target=run, name=f"executor {node.get_name()}", daemon=True)
    return executor, thread


def spin(
    nodes: Sequence[Node],
    executor: Executor | None = None,
    *,
    kind: str | None = None,
    own_thread: Collection[Node] = (),
) -> int:
    """Spin until Ctrl-C/SIGTERM or rclpy shutdown, then destroy the nodes; returns exit status 0.

    Nodes in `own_thread` (when others share the process) spin on an executor and thread of their
    own, set up from their own executor.* parameters: a long callback of another node (Python
    cannot preempt it) then delays them by at most a GIL switch, not by its whole run."""
    apart = [n for n in nodes if n in own_thread] if len(nodes) > 1 else []
    shared = [n for n in nodes if n not in apart] or list(nodes)
    apart = [n for n in apart if n not in shared]
    settings: ExecutorSettings | None = None
    if executor is None:
        executor, settings = executor_for(shared, kind)
    side = [_own_executor(n) for n in apart]
    spun_by = {**{n: executor for n in shared}, **{n: own for n, (own, _) in zip(apart, side, strict=True)}}
    for node in shared:
        executor.add_node(node)
    # Started before the shared executor's real-time setup: scheduling policy and affinity are per
    # thread on Linux and a new thread inherits its creator's, which would override the controller's.
    for _, thread in side:
        thread.start()
    if settings is not None:
        if isinstance(executor, DeadlineExecutor):
            executor.configure_realtime(settings)
        else:
            setup_realtime(settings, lock_memory=settings.mlockall)
    try:
        _spin_until_stopped(executor)
    finally:
        # A second Ctrl-C while releasing devices must not leave a traceback or a half-closed node.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for own, thread in side:
            own.shutdown(timeout_sec=1.0)
            thread.join(timeout=2.0)
        log = rclpy.logging.get_logger("krystal.sched")
        for ex in (executor, *(own for own, _ in side)):
            if isinstance(ex, DeadlineExecutor):
                log.info(ex.summary_text())
        for node in reversed(list(nodes)):
            spun_by[node].remove_node(node)
            node.destroy_node()
        executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown()
    return 0
