"""Shedding (issue 29): a StyleDecision with `shed` true slows the non-critical work of
gpu_telemetry, thermal_monitor, temporal_solver (batches, repeated verdicts) and the gateway's live
stream to `shed_factor` of its rate; `shed` false restores it; each node says so on /diagnostics
(`<node>: shed`). Real nodes on real DDS; rates counted over the same window in each phase."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from krystal.msg import AsciiFrame, GpuTelemetry, StyleDecision, TemporalVerdict, ThermalState
from rclpy.node import Node
from rclpy.parameter import Parameter

from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos
from tests.conftest import scaled, spin_until

RATE_HZ = 20.0
FACTOR = 0.25


@dataclass
class Case:
    node: Node
    count: Callable[[], int]  # what the node sent so far (its shed work's output)


class Probe:
    """Publishes StyleDecisions (latched, as the reasoning node does), counts messages, reads /diagnostics."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("shed_probe")
        self.pub = self.node.create_publisher(StyleDecision, "krystal/style", latched_qos())
        self.counts: dict[str, int] = {}
        self.shed: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, reliable_qos(50))
        self.decision_id = 0

    def _diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name.endswith(": shed"):
                self.shed[s.name] = {kv.key: kv.value for kv in s.values}.get("shed", "")

    def count(self, msg_type: Any, topic: str, qos: Any) -> Callable[[], int]:
        self.counts[topic] = 0

        def tick(_: Any) -> None:
            self.counts[topic] += 1

        self.node.create_subscription(msg_type, topic, tick, qos)
        return lambda: self.counts[topic]

    def decide(self, shed: bool) -> None:
        self.decision_id += 1
        msg = StyleDecision(decision_id=self.decision_id, mode="ramp", kernel="luminance", kernel_size=3,
                            columns=60, rows=22, policy="rules", shed=shed)  # fmt: skip
        self.pub.publish(msg)


def _rates(rate_param: str) -> list[Parameter]:
    return [Parameter(rate_param, value=RATE_HZ), Parameter("shed_factor", value=FACTOR)]


def _thermal(probe: Probe, tmp_path: Path) -> Case:
    from krystal.thermal.node import ThermalMonitorNode

    node = ThermalMonitorNode(
        parameter_overrides=[
            Parameter("root", value=str(tmp_path)),  # no sensors: ThermalState is still sent each cycle
            *_rates("rate_hz"),
        ]
    )
    return Case(node, probe.count(ThermalState, "thermal/state", sensor_qos(20)))


def _gpu(probe: Probe, tmp_path: Path) -> Case:
    from krystal.gpu.node import GpuTelemetryNode

    off = [Parameter(name, value=False) for name in ("vulkan", "nvml", "drm", "vulkan_layer")]
    node = GpuTelemetryNode(
        parameter_overrides=[*off, *_rates("rate_hz")],
    )
    return Case(node, probe.count(GpuTelemetry, "gpu/telemetry", sensor_qos(20)))


def _temporal(probe: Probe, tmp_path: Path) -> Case:
    from krystal.temporal.node import TemporalSolverNode

    node = TemporalSolverNode(
        parameter_overrides=[
            Parameter("specs", Parameter.Type.STRING_ARRAY, ["a: x/y.v < 1"]),
            Parameter("chaos_signal", Parameter.Type.STRING, ""),
            *_rates("verdict_rate_hz"),
        ]
    )
    return Case(node, probe.count(TemporalVerdict, "krystal/verdicts", reliable_qos(50)))


def _gateway(probe: Probe, tmp_path: Path) -> Case:
    """The live pages get what the hub holds (one frame per new frame_seq): its rate is theirs."""
    from krystal.gateway.node import GatewayNode

    node = GatewayNode(
        parameter_overrides=[
            Parameter("port", value=0),
            Parameter("audit_log", value=str(tmp_path / "audit.jsonl")),
            Parameter("request_log", value=str(tmp_path / "requests.jsonl")),
            *_rates("stream_hz"),
        ]
    )
    frames = probe.node.create_publisher(AsciiFrame, "krystal/ascii", sensor_qos(1))
    probe.node.create_timer(1.0 / 30.0, lambda: frames.publish(AsciiFrame(columns=1, rows=1, lines=["x"])))
    return Case(node, lambda: int(node.hub.frame_seq))


@pytest.fixture
def probe(ros, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    monkeypatch.delenv("KRYSTAL_GATEWAY_TOKENS", raising=False)  # an open gateway on loopback
    p = Probe()
    yield p
    p.node.destroy_node()


@pytest.mark.parametrize(
    "make", [_thermal, _gpu, _temporal, _gateway], ids=["thermal", "gpu", "temporal", "gateway"]
)
def test_shed_slows_the_nodes_rate_and_unshed_restores_it(
    probe: Probe, tmp_path: Path, make: Callable[[Probe, Path], Case]
) -> None:
    case = make(probe, tmp_path)
    nodes = [case.node, probe.node]
    name = f"{case.node.get_name()}: shed"
    window_s = scaled(0.3)

    def rate_over_window() -> float:
        n0 = case.count()
        spin_until(nodes, lambda: False, window_s)
        return (case.count() - n0) / window_s

    try:
        assert spin_until(nodes, lambda: case.count() > 2 and probe.shed.get(name) == "false", scaled(10.0))
        full = rate_over_window()
        probe.decide(shed=True)
        assert spin_until(nodes, lambda: probe.shed.get(name) == "true", scaled(5.0)), probe.shed
        shed = rate_over_window()
        probe.decide(shed=False)
        assert spin_until(nodes, lambda: probe.shed.get(name) == "false", scaled(5.0)), probe.shed
        restored = rate_over_window()
        # FACTOR 0.25 of 20 Hz: 5 Hz; half the full rate leaves room for a loaded machine
        assert shed <= 0.5 * full, (full, shed, restored)
        assert shed <= RATE_HZ * FACTOR * 1.5, (full, shed, restored)
        assert restored >= 2 * shed and restored >= 0.7 * full, (full, shed, restored)
    finally:
        case.node.destroy_node()
