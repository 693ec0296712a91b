"""The executor's parameters: the same `executor.*` names on every node (`/**:` in krystal.yaml).

Process-wide ones (type, threads, real-time setup) are read from the first node of a process;
budgets are read per node. All are read-only: they take effect when the node is added.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter

from krystal.ros.params import Param, ParamTable
from krystal.sched.timing import Budgets, parse_budgets

KINDS = ("edf", "single", "multi", "events")


def _budget_list(value: Any) -> str | None:
    _, problems = parse_budgets(list(value))
    return "; ".join(problems) or None


EXECUTOR_PARAMS: tuple[Param, ...] = (
    Param(
        "executor.type",
        "edf",
        "edf: krystal's deadline-aware executor; single, multi, events: rclpy's own",
        choices=KINDS,
        read_only=True,
    ),
    Param(
        "executor.threads",
        1,
        "callback threads: 1 runs callbacks in the spinning thread; more: a pool (edf, multi)",
        min_value=1,
        max_value=64,
        read_only=True,
    ),
    Param(
        "executor.sched_priority",
        0,
        "SCHED_FIFO priority of the executor's threads, 1-99; 0 keeps normal scheduling",
        min_value=0,
        max_value=99,
        read_only=True,
    ),
    Param(
        "executor.cpu_affinity",
        [],
        "CPUs the executor's threads may run on, e.g. [1]; empty: any",
        read_only=True,
        param_type=Parameter.Type.INTEGER_ARRAY,
    ),
    Param(
        "executor.mlockall",
        False,
        "lock the process's memory (no page faults on the callback path)",
        read_only=True,
    ),
    Param(
        "executor.spin_us",
        0,
        "busy-wait this long before a timer's release instead of sleeping through it: less "
        "wake-up jitter for CPU (about spin_us per release); for SCHED_FIFO setups. 0: sleep",
        min_value=0,
        max_value=2000,
        read_only=True,
    ),
    Param(
        "executor.timer_slack_ns",
        1000,
        "how late the kernel may end the executor threads' timed waits to merge wake-ups "
        "(Linux's default is 50000: every timeout and empty poll then runs up to 50 µs long); "
        "0: the thread's default (its creator's slack). SCHED_FIFO threads have none for sleeps and polls",
        min_value=0,
        max_value=50_000_000,
        read_only=True,
    ),
    Param(
        "executor.budget_ms",
        0.0,
        "deadline after release of this node's callbacks; 0: a timer's period, a stream's QoS "
        "deadline, else executor.default_budget_ms",
        min_value=0.0,
        max_value=60000.0,
        read_only=True,
    ),
    Param(
        "executor.default_budget_ms",
        100.0,
        "deadline after release of callbacks with no other budget (services, guard conditions, ...)",
        min_value=0.001,
        max_value=60000.0,
        read_only=True,
    ),
    Param(
        "executor.topic_budgets_ms",
        [],
        'per subscription, "topic=ms" (relative names resolve in the node\'s namespace)',
        read_only=True,
        validate=_budget_list,
        param_type=Parameter.Type.STRING_ARRAY,
    ),
    Param(
        "executor.group_budgets_ms",
        [],
        'per callback group named with krystal.sched.name_group, "name=ms"',
        read_only=True,
        validate=_budget_list,
        param_type=Parameter.Type.STRING_ARRAY,
    ),
)


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "edf"
    threads: int = 1
    sched_priority: int = 0
    cpu_affinity: tuple[int, ...] = ()
    mlockall: bool = False
    spin_us: int = 0
    timer_slack_ns: int = 1000
    budgets: Budgets = field(default_factory=Budgets)
    default_budget_ms: float = 100.0


_CACHE: weakref.WeakKeyDictionary[Node, ExecutorSettings] = weakref.WeakKeyDictionary()


def node_settings(node: Node) -> ExecutorSettings:
    """Declare (once) and read a node's `executor.*` parameters."""
    cached = _CACHE.get(node)
    if cached is not None:
        return cached
    if node.has_parameter("executor.type"):
        values = {p.name: _value(node, p) for p in EXECUTOR_PARAMS}
    else:
        values = dict(ParamTable(node, EXECUTOR_PARAMS).values)
    groups, _ = parse_budgets(list(values["executor.group_budgets_ms"]))
    topics, _ = parse_budgets(list(values["executor.topic_budgets_ms"]))
    settings = ExecutorSettings(
        kind=str(values["executor.type"]),
        threads=int(values["executor.threads"]),
        sched_priority=int(values["executor.sched_priority"]),
        cpu_affinity=tuple(int(c) for c in values["executor.cpu_affinity"]),
        mlockall=bool(values["executor.mlockall"]),
        spin_us=int(values["executor.spin_us"]),
        timer_slack_ns=int(values["executor.timer_slack_ns"]),
        budgets=Budgets(float(values["executor.budget_ms"]), groups, topics),
        default_budget_ms=float(values["executor.default_budget_ms"]),
    )
    _CACHE[node] = settings
    return settings


def _value(node: Node, p: Param) -> Any:
    """A declared parameter's value; an empty array the file left unset reads as the default."""
    value = node.get_parameter(p.name).value
    return p.default if value is None else value
