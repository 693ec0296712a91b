"""Shedding: non-critical work slowed while the frame path is under pressure, restored after.

The reasoning node says so in its `StyleDecision` (`shed`, docs/reasoning.md). A node with
non-critical periodic work (telemetry, temporal batching, the gateway's live stream) follows it
through one `Shedding`: it subscribes to `krystal/style` (reliable, transient local, as the decision
is published: a node that starts during pressure sheds at once), and while the current decision
says `shed` its timers run at `shed_factor` times their rate (`period / shed_factor`); `shed`
false restores them. The state is the node's `shed` task on /diagnostics.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.timer import Timer

from krystal.msg import StyleDecision
from krystal.ros.diagnostics import OK, Health, add_task, diagnostics_of
from krystal.ros.params import Param
from krystal.ros.qos import latched_qos

STYLE_TOPIC = "krystal/style"  # the reasoning node's decisions (reliable, transient local)
FACTOR_PARAM = "shed_factor"


def shed_param(what: str, default: float = 0.5) -> Param:
    """The `shed_factor` entry of a node's parameter table; `what` names the work it slows."""
    return Param(
        FACTOR_PARAM,
        default,
        f"While a StyleDecision says shed (the frame path under pressure), {what} runs at this "
        "times its rate; restored when shed is false. 1: never slowed",
        0.05,
        1.0,
    )


_BY_NODE: weakref.WeakKeyDictionary[Node, Shedding] = weakref.WeakKeyDictionary()


def rate_factor(node: Node) -> float:
    """The factor the node's shed work runs at now (1.0: not shedding, or no Shedding)."""
    shedding = _BY_NODE.get(node)
    return shedding.factor if shedding is not None else 1.0


class Shedding:
    """Follows `StyleDecision.shed` for one node: owns its shed timers and its `shed` diagnostics."""

    def __init__(self, node: Node, what: str, *, subscribe: bool = True) -> None:
        """`subscribe` False: the node already subscribes to STYLE_TOPIC and calls `observe`."""
        self._node = node
        self.what = what
        self.active = False
        self.episodes = 0
        self.changed_s = time.monotonic()
        self._timers: list[tuple[Callable[[], float], Callable[[], None], list[Timer]]] = []
        if subscribe:
            node.create_subscription(StyleDecision, STYLE_TOPIC, self.observe, latched_qos())
        add_task(node, "shed", self.health)
        _BY_NODE[node] = self

    @property
    def factor(self) -> float:
        if not self.active:
            return 1.0
        return float(self._node.get_parameter(FACTOR_PARAM).value)

    def period_s(self, base_period_s: float) -> float:
        """A period of shed work as it runs now."""
        return base_period_s / self.factor

    def timer(self, base_period_s: Callable[[], float], callback: Callable[[], None]) -> Callable[[], Timer]:
        """A node timer at `base_period_s()` (read again on every `retime`), slowed while shedding.
        Returns a getter of the current rclpy timer (it is replaced when the period changes)."""
        holder = [self._node.create_timer(self.period_s(base_period_s()), callback)]
        self._timers.append((base_period_s, callback, holder))
        return lambda: holder[0]

    def retime(self) -> None:
        """Re-create the shed timers with their current periods (after a change of shed state,
        factor or the node's own rate parameter)."""
        for base_period_s, callback, holder in self._timers:
            holder[0].cancel()
            self._node.destroy_timer(holder[0])
            holder[0] = self._node.create_timer(self.period_s(base_period_s()), callback)

    def observe(self, msg: Any) -> None:
        """A StyleDecision: its `shed` is the state from now on (bad input changes nothing)."""
        try:
            shed = bool(msg.shed)
        except Exception:  # not a StyleDecision: nothing to follow
            return
        if shed == self.active:
            return
        self.active = shed
        self.changed_s = time.monotonic()
        if shed:
            self.episodes += 1
        self.retime()
        diagnostics = diagnostics_of(self._node)
        if diagnostics is not None:  # the change is on /diagnostics at once, not at the next report
            diagnostics.publish()
        log = self._node.get_logger()
        log.info(f"shedding: {self.what} at {self.factor:g}x its rate" if shed else f"{self.what} restored")

    def health(self) -> Health:
        factor = float(self._node.get_parameter(FACTOR_PARAM).value)
        values = {
            "shed": str(self.active).lower(),
            FACTOR_PARAM: f"{factor:g}",
            "rate_factor_now": f"{self.factor:g}",
            "episodes": str(self.episodes),
            "since_s": f"{time.monotonic() - self.changed_s:.1f}",
            "work": self.what,
        }
        if self.active:
            text = f"shedding (frame path under pressure): {self.what} at {factor:g}x its rate"
            return Health(OK, text, values)
        return Health(OK, f"not shedding: {self.what} at its full rate", values)
