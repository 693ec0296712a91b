"""`krystal health`: the graph's /diagnostics in the terminal, aggregated as the gateway does.

A live Rich table of nodes, levels, messages and update rates; `--once` listens until discovery
has settled (every /diagnostics publisher heard from, or known for a while without a word, and no
new one for `SETTLE_S`) or `--wait` seconds pass, then prints one table. The exit status is 1 when
any node is ERROR (usable in scripts), 3 when nothing was heard (no table then), else 0.
"""

from __future__ import annotations

import os
import time
from typing import Any

from krystal.gateway.health import ERROR, GraphHealth, HealthBook
from krystal.sched.metrics import RateMeter

_STYLE = {"OK": "green", "WARN": "yellow", "ERROR": "bold red", "STALE": "dim"}
SETTLE_S = 1.5  # no new publisher for this long: discovery has settled
QUIET_S = 5.0  # a publisher known this long without a word is not waited for (nodes publish at 1 Hz)


def load_scale() -> float:
    """1 on an idle machine, up to 2 when the run queue is longer than the cores: discovery and
    first messages come later under load."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return min(2.0, max(1.0, load / (os.cpu_count() or 1)))


def settled(
    publishers: dict[str, float],
    heard: set[str],
    last_new_s: float,
    now: float,
    heard_any: bool,
    *,
    scale: float = 1.0,
) -> bool:
    """Whether `--once` has heard enough: `publishers` maps each /diagnostics publisher's node name
    to when it was discovered, `heard` holds the node names heard so far."""
    if not heard_any or now - last_new_s < SETTLE_S * scale:
        return False
    return all(name in heard or now - t >= QUIET_S * scale for name, t in publishers.items())


def table(health: GraphHealth, rates: dict[str, float]) -> Any:
    from rich.table import Table

    t = Table(title=f"Krystal graph health: {health.level_name}", title_justify="left")
    for col in ("node", "level", "message", "task", "age s", "updates/s"):
        t.add_column(col, overflow="fold")
    for node in health.nodes:
        for i, task in enumerate(node.tasks):
            style = _STYLE.get(task.level_name, "")
            t.add_row(
                node.name if i == 0 else "",
                f"[{style}]{task.level_name}[/]",
                task.message,
                task.name,
                f"{task.age_s:.1f}",
                f"{rates.get(node.name, 0.0):.1f}" if i == 0 else "",
            )
    return t


def exit_status(health: GraphHealth) -> int:
    if not health.nodes:
        return 3
    return 1 if any(n.level == ERROR for n in health.nodes) else 0


def main(namespace: str = "", once: bool = False, wait_s: float = 3.0, stale_after_s: float = 5.0) -> int:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rich.console import Console
    from rich.live import Live

    from krystal.gateway.health import split_name
    from krystal.ros import spin
    from krystal.ros.qos import reliable_qos

    spin.init(["krystal", "--ros-args", "--disable-stdout-logs"])
    book = HealthBook(stale_after_s)
    meters: dict[str, RateMeter] = {}
    node = Node("krystal_health", namespace=namespace)

    def on_diagnostics(msg: DiagnosticArray) -> None:
        seen = set()
        for s in msg.status:
            level = s.level[0] if isinstance(s.level, bytes) else int(s.level)
            book.update(s.name, level, s.message, s.hardware_id, {kv.key: kv.value for kv in s.values})
            seen.add(split_name(s.name)[0])
        for name in seen:
            meters.setdefault(name, RateMeter(5.0)).tick()

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable_qos(100))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    console = Console()
    status = 3
    try:
        if once:
            start = time.monotonic()
            end = start + wait_s
            publishers: dict[str, float] = {}
            last_new, scale = start, load_scale()
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
                now = time.monotonic()
                for info in node.get_publishers_info_by_topic("/diagnostics"):
                    if info.node_name not in publishers:
                        publishers[info.node_name] = last_new = now
                if settled(publishers, set(meters), last_new, now, bool(meters), scale=scale):
                    break
            health = book.snapshot()
            if not health.nodes:
                console.print(
                    f"no /diagnostics heard in {wait_s:g} s (is the graph running, same ROS_DOMAIN_ID?)"
                )
                return exit_status(health)
            console.print(table(health, {n: m.rate_hz() for n, m in meters.items()}))
            return exit_status(health)
        with Live(console=console, refresh_per_second=2, screen=False) as live:
            last = 0.0
            while True:
                executor.spin_once(timeout_sec=0.1)
                if time.monotonic() - last >= 0.5:
                    last = time.monotonic()
                    health = book.snapshot()
                    status = exit_status(health)
                    live.update(table(health, {n: m.rate_hz() for n, m in meters.items()}))
    except KeyboardInterrupt:
        return status
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown(timeout_sec=0.5)
        import rclpy

        rclpy.try_shutdown()
