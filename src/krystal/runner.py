"""`krystal run`: the nodes of graph.py composed in one process, optionally with the live view."""

from __future__ import annotations

import os
import sys
from typing import Any

from rclpy.parameter import Parameter

from krystal.ascii.terminal import fit_grid, terminal_size
from krystal.graph import load_node_class, select
from krystal.paths import default_params_file
from krystal.ros import spin


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
    spin.init(args)
    created: list[Any] = []
    own_thread: list[Any] = []
    try:
        for entry in entries:
            overrides: list[Parameter[Any]] = []
            if entry.name == "ascii_renderer":
                if drawing and fit:
                    columns, rows = fit_grid(*terminal_size())
                    overrides += [Parameter("columns", value=columns), Parameter("rows", value=rows)]
                if mode:
                    overrides.append(Parameter("mode", value=mode))
            if entry.name == "reasoning":  # its full-size styles are the renderer's grid and mode
                if drawing and fit:
                    columns, rows = fit_grid(*terminal_size())
                    overrides += [Parameter("columns", value=columns), Parameter("rows", value=rows)]
                if mode:
                    overrides.append(Parameter("modes", value=[mode] if mode == "ramp" else [mode, "ramp"]))
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
