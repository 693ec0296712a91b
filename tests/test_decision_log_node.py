"""The reasoning node's decision log across restarts, on real DDS: three lifetimes of the node append
to one log; every decision of every run reads back with a unique id and its run's id; the outcome
holds capture -> receipt latency from the frames' stamps and the delivered rate; an operator's
manual style rates the decision it replaced -1."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import rclpy
from krystal.msg import AsciiFrame, StyleDecision
from rclpy.parameter import Parameter
from rclpy.time import Time

from krystal.reasoning.log import read_decisions, read_lines
from krystal.reasoning.node import ReasoningNode
from krystal.ros.qos import latched_qos, sensor_qos
from tests.conftest import scaled, spin_until

pytestmark = pytest.mark.usefixtures("ros")


class Frames:
    """30 fps of the full style, each stamped now (as a camera stamps its capture), 5 ms render."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("frames")
        self.pub = self.node.create_publisher(AsciiFrame, "krystal/ascii", sensor_qos(5))
        self.decisions: list[StyleDecision] = []
        self.node.create_subscription(StyleDecision, "krystal/style", self.decisions.append, latched_qos(10))
        self.node.create_timer(1 / 30, self._frame)

    def _frame(self) -> None:
        msg = AsciiFrame(columns=120, rows=45, mode="edges", kernel="luminance", kernel_size=5)
        msg.header.stamp = Time(nanoseconds=time.time_ns() - 12_000_000).to_msg()  # captured 12 ms ago
        msg.render_time_ms = 5.0
        self.pub.publish(msg)


def _lifetime(log: Path, frames: Frames, *, override: bool) -> int:
    """One start-to-stop of the node; the id of its first decision."""
    node = ReasoningNode(
        parameter_overrides=[
            Parameter("log_path", value=str(log)),
            Parameter("outcome_frames", value=15),
            Parameter("log_fsync", value="never"),
        ]
    )
    nodes = [node, frames.node]
    mine = lambda: [d for d in frames.decisions if d.decision_id >= node._first_id]  # noqa: E731
    assert spin_until(nodes, lambda: len(mine()) >= 1, scaled(10.0))
    first = mine()[0].decision_id
    if override:  # the operator overrides through the gateway: a manual StyleDecision
        op = rclpy.create_node("operator")
        manual = op.create_publisher(StyleDecision, "krystal/style", latched_qos())
        spin_until([*nodes, op], lambda: manual.get_subscription_count() >= 2, scaled(5.0))
        manual.publish(StyleDecision(policy="manual", mode="ramp", kernel="luminance", kernel_size=3))
        assert spin_until([*nodes, op], lambda: node._manual_until > time.monotonic(), scaled(5.0))
        op.destroy_node()
    spin_until(nodes, lambda: False, 1.0)  # frames for the outcome
    node.destroy_node()  # closes the open outcome
    return first


def test_restarts_append_every_decision_with_e2e_outcome_and_manual_rating(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    frames = Frames()
    runs = [_lifetime(log, frames, override=run == 1) for run in range(3)]
    frames.node.destroy_node()

    assert len(set(runs)) == 3  # ids unique across restarts
    records = read_decisions(log)
    by_id = {r["decision"]["decision_id"]: r for r in records}
    assert set(runs) <= set(by_id) and len({by_id[i]["run_id"] for i in runs}) == 3
    for i in runs:
        out = by_id[i]["outcome"]
        assert out is not None and out["frames"] > 5
        # every frame was captured 12 ms before it was sent (a p95 may sit below the mean: a few
        # frames delayed by a loaded machine pull the mean up, seen at load average 6)
        assert 12.0 <= out["e2e_ms_mean"] < 1000.0 and 12.0 <= out["e2e_ms_p95"] < 1000.0
        assert 5.0 < out["delivered_fps"] < 60.0 and out["quality"] > 0.8
        assert out["on_budget_fraction"] is not None
    assert by_id[runs[1]]["outcome"]["user_rating"] == -1.0  # the style the operator replaced
    assert by_id[runs[0]]["outcome"]["user_rating"] is None
    assert all(not math.isnan(x["mono_s"]) and x["boot_id"] for x in read_lines(log))
