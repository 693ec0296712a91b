"""The exported policy in a real reasoning node on DDS: it loads, decides within the budget against a
simulated renderer, reports its sha256 on /diagnostics; a bad model falls back to the rules with an
ERROR; the device agents' `model` driver deploys a new one and the node reports the new hash."""

from __future__ import annotations

import hashlib
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="training the policy for the test needs torch")
pytest.importorskip("onnxruntime", reason="the exported policy runs on onnxruntime")

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from krystal.msg import AsciiFrame, StyleDecision
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from krystal.learning import harvest, policy_model
from krystal.learning.sim import BUDGET_MS, cost_ms
from krystal.reasoning.node import ReasoningNode
from krystal.reasoning.styles import Style
from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos
from tests.conftest import spin_until

pytestmark = pytest.mark.usefixtures("ros")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = harvest.synthesize(tmp_path_factory.mktemp("synth"), 4, seed=3, duration_s=30.0)
    ds = harvest.harvest(*runs)
    t = policy_model.train(ds, policy_model.TrainConfig.quick(seed=0))
    return policy_model.export(t, ds, tmp_path_factory.mktemp("model"))["onnx"]


class SimRenderer:
    """Renders nothing: publishes AsciiFrames at 30 fps whose render time is the simulated cost of
    the decided style under a load the test sets; records frames, decisions and diagnostics."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("sim_renderer")
        self.style = Style("edges", "luminance", 5, 120, 45)
        self.load = 1.0
        self.frames: list[tuple[float, float]] = []
        self.decisions: list[StyleDecision] = []
        self.diagnostics: list[DiagnosticArray] = []
        self._rng = random.Random(1)
        self._pub = self.node.create_publisher(AsciiFrame, "krystal/ascii", sensor_qos(5))
        self.node.create_subscription(StyleDecision, "krystal/style", self._on_style, latched_qos(10))
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics.append, reliable_qos(50)
        )
        self.node.create_timer(1 / 30, self._frame)

    def _on_style(self, msg: StyleDecision) -> None:
        if not self.decisions or self.decisions[-1].decision_id != msg.decision_id:
            self.decisions.append(msg)
        self.style = Style(msg.mode, msg.kernel, msg.kernel_size, msg.columns, msg.rows)

    def _frame(self) -> None:
        ms = cost_ms(self.style, self.load, self._rng)
        s = self.style
        size = 0 if s.mode == "ramp" else s.kernel_size
        msg = AsciiFrame(columns=s.columns, rows=s.rows, mode=s.mode, kernel=s.kernel, kernel_size=size)
        msg.render_time_ms = ms
        self._pub.publish(msg)
        self.frames.append((time.monotonic(), ms))

    def model_status(self) -> tuple[int, str, dict[str, str]] | None:
        for d in reversed(self.diagnostics):
            for s in d.status:
                if s.name.endswith("reasoning: model"):
                    return int.from_bytes(s.level, "little"), s.message, {kv.key: kv.value for kv in s.values}
        return None


def _run(executor: SingleThreadedExecutor, seconds: float, until: Any = None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until is not None and until():
            return True
        executor.spin_once(timeout_sec=0.01)
    return bool(until()) if until is not None else True


def _reasoner(tmp_path: Path, **params: object) -> ReasoningNode:
    params = {"policy": "learned", "log_path": str(tmp_path / "d.jsonl"), **params}
    return ReasoningNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_exported_policy_decides_within_the_budget_and_reports_its_hash(tmp_path: Path, model: Path) -> None:
    reasoner = _reasoner(tmp_path, policy_model_path=str(model))
    r = SimRenderer()
    executor = SingleThreadedExecutor()
    for n in (reasoner, r.node):
        executor.add_node(n)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    try:
        reports = lambda: (s := r.model_status()) is not None and s[2].get("model_sha256") == sha  # noqa: E731
        assert _run(executor, 10.0, lambda: reports() and len(r.frames) >= 60)
        level, message, values = r.model_status() or (9, "", {})
        assert level == 0 and sha[:12] in message and values["dataset_sha256"]
        r.load = 4.0  # a load no input shows: the full style is ~2x over budget
        t_load = time.monotonic()
        _run(executor, 6.0)
        late = [ms for t, ms in r.frames if t > t_load + 3.0]
        assert len(late) > 30 and statistics.median(late) < BUDGET_MS, late[-10:]
        gate = reasoner.gate  # in shadow or acting (promotion.py), the model is asked every period
        assert gate is not None and getattr(gate.model, "calls", 0) > 5
        assert {d.policy for d in r.decisions} <= {"rules", "learned"}
    finally:
        executor.shutdown(timeout_sec=1.0)
        reasoner.destroy_node()
        r.node.destroy_node()


def test_bad_model_falls_back_to_the_rules_with_an_error(tmp_path: Path, model: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    reasoner = _reasoner(tmp_path, policy_model_path=str(junk))
    r = SimRenderer()
    nodes = [reasoner, r.node]
    try:
        error = lambda: (s := r.model_status()) is not None and s[0] == 2  # noqa: E731
        assert spin_until(nodes, lambda: error() and len(r.decisions) >= 1, 10.0)
        _, message, values = r.model_status() or (0, "", {})
        assert message.startswith("the rules decide alone; model refused")
        assert "not a loadable ONNX model" in values["error"]
        assert reasoner.reasoner.chooser is None and r.decisions[0].policy == "rules"  # still deciding
        for bad in (junk, tmp_path / "missing.onnx"):
            result = reasoner.set_parameters([Parameter("policy_model_path", value=str(bad))])[0]
            assert not result.successful and (
                "not a loadable" in result.reason or "cannot read" in result.reason
            )
        assert reasoner.set_parameters([Parameter("policy_model_path", value=str(model))])[0].successful
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        ok = lambda: (s := r.model_status()) is not None and s[0] == 0 and s[2].get("model_sha256") == sha  # noqa: E731
        assert spin_until(nodes, ok, 10.0)
        assert reasoner.gate is not None
    finally:
        reasoner.destroy_node()
        r.node.destroy_node()


def test_model_driver_deploys_a_new_policy(tmp_path: Path, model: Path) -> None:
    """The profile config/learned_policy.yaml as shipped: the shipped model first, then a deploy."""
    import onnx
    import yaml

    from krystal.learning.policy_runtime import SHIPPED_MODEL
    from tests.test_devices_node import Client, make_host

    profile = yaml.safe_load((Path(__file__).parent.parent / "config" / "learned_policy.yaml").read_text())
    reasoning = profile["/**/reasoning"]["ros__parameters"]
    agents = profile["/**/device_agents"]["ros__parameters"]
    second = tmp_path / "policy_v2.onnx"
    m = onnx.load(str(model))
    m.metadata_props.add(key="note", value="second deployment")  # other bytes, same weights
    onnx.save(m, str(second))
    reasoner = _reasoner(tmp_path, **reasoning)
    r = SimRenderer()
    name = agents["devices"][0]
    host = make_host(tmp_path, {name: (agents[f"{name}.driver"], agents[f"{name}.options"])})
    c = Client([*host.nodes(), reasoner, r.node])

    def reports(sha: str) -> bool:
        s = r.model_status()
        return s is not None and s[0] == 0 and s[2].get("model_sha256") == sha

    try:
        shipped = hashlib.sha256(SHIPPED_MODEL.read_bytes()).hexdigest()
        assert spin_until(c.nodes, lambda: reports(shipped), 10.0)  # empty path: the shipped model
        c.wait_status(lambda s: s.device_id == name and s.lifecycle_label == "active")
        answer = c.command(name, "deploy", "deploy-policy", path=str(second))
        sha = hashlib.sha256(second.read_bytes()).hexdigest()
        assert sha != shipped
        assert answer.accepted and answer.level == 0, answer.message
        assert {kv.key: kv.value for kv in answer.values}["model_sha256"] == sha
        assert spin_until(c.nodes, lambda: reports(sha), 10.0)
        wrong = c.command(name, "deploy", path=str(tmp_path / "d.jsonl"))
        assert wrong.level == 2 and "not a .onnx file" in wrong.message
    finally:
        host.destroy_node()
        reasoner.destroy_node()
        r.node.destroy_node()


def test_harvest_of_a_recorded_graph_run(tmp_path: Path) -> None:
    """`krystal record`'s recorder and the node's own decision log from a real run: harvest reads
    both (CDR from rclpy, the node's wall-clock timestamps) into the documented shapes."""
    from krystal.learning.features import classes_of, feature_names
    from krystal.learning.sim import LADDERS
    from krystal.record.node import RecorderNode

    reasoner = _reasoner(tmp_path, policy="rules")
    r = SimRenderer()
    topics = ["/krystal/ascii", "/krystal/style", "/krystal/render_stats", "/gpu/telemetry"]
    recorder = RecorderNode(tmp_path / "run.mcap", topics)
    executor = SingleThreadedExecutor()
    for n in (reasoner, r.node, recorder):
        executor.add_node(n)
    try:
        assert _run(executor, 10.0, lambda: "/krystal/ascii" in recorder.topics and len(r.frames) > 60)
        r.load = 4.0
        _run(executor, 4.0)
    finally:
        executor.shutdown(timeout_sec=1.0)
        reasoner.destroy_node()  # flushes the last outcome to the log
        recorder.destroy_node()  # finishes the MCAP
        r.node.destroy_node()
    ds = harvest.harvest([tmp_path / "d.jsonl"], [tmp_path / "run.mcap"])
    m, x = ds.manifest, ds.arrays["x"]
    assert m["counts"]["frame_samples"] > 3 and m["counts"]["decision_samples"] >= 1, m["skipped"]
    assert x.shape[1:] == (32, len(feature_names(classes_of(LADDERS)))) and x.dtype.name == "float32"
    assert m["sources"][0]["kind"] == "mcap" and m["sources"][0]["records"] > 100
    assert ds.arrays["y_met"].min() == 0  # the load step: some windows were followed by misses
