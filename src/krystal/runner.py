"""`krystal run`: the nodes of graph.py composed in one process (default), or with `isolate` each in
its own process under a supervisor that restarts a node that dies; optionally with the live view."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from rclpy.parameter import Parameter

from krystal.ascii.terminal import fit_grid, terminal_size
from krystal.graph import NodeEntry, load_node_class, select
from krystal.paths import default_params_file
from krystal.ros import spin


def _overrides(entry: NodeEntry, drawing: bool, fit: bool, mode: str | None) -> dict[str, Any]:
    """Parameters `krystal run` sets on a node: the renderer's grid fits the terminal, and the
    reasoning node's full-size styles are the renderer's grid and mode."""
    values: dict[str, Any] = {}
    if entry.name not in ("ascii_renderer", "reasoning"):
        return values
    if drawing and fit:
        values["columns"], values["rows"] = fit_grid(*terminal_size())
    if mode and entry.name == "ascii_renderer":
        values["mode"] = mode
    if mode and entry.name == "reasoning":
        values["modes"] = [mode] if mode == "ramp" else [mode, "ramp"]
    return values


def run(
    *,
    params_file: str | None = None,
    nodes: list[str] | None = None,
    namespace: str = "",
    view: bool = False,
    fit: bool = True,
    log_level: str = "info",
    mode: str | None = None,
    executor: str | None = None,
    isolate: bool = False,
) -> int:
    entries = select(nodes)
    params = params_file or str(default_params_file())
    if not os.path.isfile(params):
        print(f"krystal run: parameters file not found: {params}", file=sys.stderr)
        return 2
    args = ["krystal", "--ros-args", "--params-file", params, "--log-level", log_level]
    drawing = view and sys.stdout.isatty()
    if drawing:
        args.append("--disable-stdout-logs")  # the view shows the last warning from /rosout
    if isolate:
        return _run_isolated(entries, args, namespace, view, drawing, fit, mode, executor)
    spin.init(args)
    created: list[Any] = []
    own_thread: list[Any] = []
    try:
        for entry in entries:
            overrides = [Parameter(k, value=v) for k, v in _overrides(entry, drawing, fit, mode).items()]
            cls = load_node_class(entry)
            created.append(cls(node_name=entry.name, namespace=namespace, parameter_overrides=overrides))
            if entry.own_thread:
                own_thread.append(created[-1])
        if view:
            from krystal.ascii.node import AsciiViewNode

            created.append(AsciiViewNode(namespace=namespace))
    except KeyboardInterrupt:
        pass
    # One executor for the whole graph: its type and real-time setup come from the first node's
    # executor.* parameters (the `/**` section of the parameters file), `executor` overrides the type;
    # the nodes graph.py marks own_thread (the controller) on executors of their own.
    return spin.spin(created, kind=executor, own_thread=own_thread)


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_param_text(v) for v in value) + "]"
    return str(value)


def child_argv(
    entry: NodeEntry, ros_args: list[str], namespace: str, overrides: dict[str, Any], executor: str | None
) -> list[str]:
    """The installed executable of a node (as `ros2 run` starts it) with the run's ROS arguments."""
    from ament_index_python.packages import get_package_prefix

    exe = os.path.join(get_package_prefix("krystal"), "lib", "krystal", entry.executable)
    argv = [exe, *ros_args[1:]]
    if namespace:
        argv += ["-r", f"__ns:=/{namespace.strip('/')}"]
    if executor:
        overrides = {**overrides, "executor.type": executor}
    for key, value in overrides.items():
        argv += ["-p", f"{key}:={_param_text(value)}"]
    return argv


# A stop signal to the supervisor is forwarded to the nodes as this one (they live in their own
# sessions, so the terminal's signals reach only the supervisor).
_FORWARD: dict[int, int] = {
    signal.SIGINT: signal.SIGINT,
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGHUP: signal.SIGTERM,
}


def _run_isolated(  # noqa: PLR0917 (one caller, the arguments of run())
    entries: list[NodeEntry],
    args: list[str],
    namespace: str,
    view: bool,
    drawing: bool,
    fit: bool,
    mode: str | None,
    executor: str | None,
) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from krystal.paths import apply_transport_env
    from krystal.supervise.children import ChildSpec, Supervisor
    from krystal.supervise.node import SupervisorNode

    stop: list[int] = []
    woken = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.append(signum)
        woken.set()

    for sig in _FORWARD:
        signal.signal(sig, on_signal)
    apply_transport_env()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)  # we stop the nodes first
    shell = SupervisorNode(namespace=namespace)
    ros_nodes: list[Any] = [shell]
    if view:
        from krystal.ascii.node import AsciiViewNode

        ros_nodes.append(AsciiViewNode(namespace=namespace))
    specs = [
        ChildSpec(e.name, child_argv(e, args, namespace, _overrides(e, drawing, fit, mode), executor))
        for e in entries
    ]
    supervisor = Supervisor(specs, shell.policy)
    shell.watch(supervisor)
    ros = SingleThreadedExecutor()
    for n in ros_nodes:
        ros.add_node(n)
    spinner = threading.Thread(target=ros.spin, name="supervisor-ros", daemon=True)
    spinner.start()
    code = 0
    try:
        # Children are started and restarted from this thread only: PR_SET_PDEATHSIG fires when the
        # thread that forked a child ends, and the main thread lives as long as the supervisor.
        shell.report(supervisor.start())
        while not stop:
            woken.wait(0.05)
            shell.report(supervisor.poll())
            if not supervisor.alive():
                shell.get_logger().error("every node has been given up on: stopping")
                code = 1
                break
        received = stop[0] if stop else signal.SIGTERM
        forward = _FORWARD.get(received, received)
        shell.get_logger().info(
            f"{signal.Signals(received).name}: stopping {len(supervisor.children)} nodes "
            f"({signal.Signals(forward).name} forwarded)"
        )
        shell.report(supervisor.stop(forward, shell.params["stop_timeout_s"]))
    finally:
        supervisor.stop(signal.SIGKILL, 1.0)  # only if an error got here first: nothing left behind
        ros.shutdown(timeout_sec=1.0)
        spinner.join(timeout=2.0)
        for n in ros_nodes:
            n.destroy_node()
        rclpy.try_shutdown()
    return code
