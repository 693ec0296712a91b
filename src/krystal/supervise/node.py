"""The supervisor's ROS shell: its parameters (the restart policy) and one /diagnostics status per
supervised node (`krystal_supervisor: <node>`); every start, death, restart and give-up is a log line
(and so on /rosout). The processes themselves are driven by `krystal.runner` on the main thread."""

from __future__ import annotations

import functools
from typing import Any

from rclpy.node import Node

from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.params import Param, ParamTable
from krystal.supervise.children import Event, Supervisor
from krystal.supervise.policy import RestartPolicy

NODE_NAME = "krystal_supervisor"
PARAMS = (
    Param("restart_initial_s", 0.5, "Delay before the first restart of a node that died", 0.0, 60.0),
    Param(
        "restart_max_s", 8.0, "Longest delay between restarts (doubled after each fast failure)", 0.0, 600.0
    ),
    Param(
        "fast_failure_s",
        10.0,
        "A node that dies sooner than this after its start failed fast; a longer run resets the count",
        0.0,
        3600.0,
    ),
    Param(
        "max_fast_failures",
        5,
        "Give up on a node (ERROR, the others go on) after this many fast failures in a row",
        1,
        1000,
    ),
    Param("stop_timeout_s", 5.0, "On stop, how long nodes get after the signal before SIGKILL", 0.1, 120.0),
)
_LEVELS = {0: OK, 1: WARN, 2: ERROR}


class SupervisorNode(Node):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check)
        self._diagnostics = Diagnostics(self, hardware_id="krystal run --isolate")
        self.supervisor: Supervisor | None = None

    @staticmethod
    def _cross_check(values: dict[str, Any]) -> str | None:
        if values["restart_initial_s"] > values["restart_max_s"]:
            return "restart_initial_s must not exceed restart_max_s"
        return None

    def policy(self) -> RestartPolicy:
        p = self.params
        return RestartPolicy(
            p["restart_initial_s"], p["restart_max_s"], p["fast_failure_s"], p["max_fast_failures"]
        )

    def watch(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        for name in supervisor.children:
            self._diagnostics.add(name, functools.partial(self._health, name))

    def _health(self, name: str) -> Health:
        assert self.supervisor is not None
        level, message, values = self.supervisor.children[name].health()
        return Health(_LEVELS[level], message, values)

    def report(self, events: list[Event]) -> None:
        log = self.get_logger()
        for e in events:
            {0: log.info, 1: log.warning, 2: log.error}[e.level](e.text)
        if events and self.supervisor is not None:
            self._diagnostics.publish()  # a death shows now, not at the next period
