"""A deployed model in a real reasoning node on DDS starts in shadow: a model worse than the rules
(it wants the cheapest style while the full one fits, as the shipped model did under no load)
stays in shadow, its choices logged and never applied; a model as good as the rules is promoted.
Each step is on /diagnostics, in the decision log and in the audit log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx", reason="the test writes its own ONNX policy")
pytest.importorskip("onnxruntime", reason="the policy runs on onnxruntime")

from onnx import TensorProto, helper  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from krystal.learning.policy_runtime import SHIPPED_MODEL  # noqa: E402
from krystal.reasoning.log import read_lines  # noqa: E402
from tests.conftest import scaled  # noqa: E402
from tests.test_learning_policy_node import SimRenderer, _reasoner, _run  # noqa: E402

pytestmark = pytest.mark.usefixtures("ros")


def constant_policy(path: Path, met_probability: dict[str, float]) -> Path:
    """An ONNX policy with the shipped model's metadata (classes, features, window) whose outputs
    are constants: p(budget met) per class label (0.01 for the others)."""
    shipped = onnx.load(str(SHIPPED_MODEL))
    meta = json.loads({p.key: p.value for p in shipped.metadata_props}["krystal_policy"])
    labels = [c["label"] for c in meta["classes"]]
    p = [met_probability.get(label, 0.01) for label in labels]
    logit = [math.log(x / (1 - x)) for x in p]
    n = len(labels)
    window = helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, meta["window"], None])
    outputs = [
        helper.make_tensor_value_info("met_logit", TensorProto.FLOAT, [1, n]),
        helper.make_tensor_value_info("log_ms", TensorProto.FLOAT, [1, n]),
    ]
    nodes = [
        helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [1, n], values)
        )
        for name, values in (("met_logit", logit), ("log_ms", [1.0] * n))
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "constant_policy", [window], outputs),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=shipped.ir_version,
    )
    helper.set_model_props(model, {"krystal_policy": json.dumps(meta)})
    onnx.save(model, str(path))
    return path


CHEAPEST = "ramp/luminance/k3 60x22"
FULL = "edges/luminance/k5 120x45"


@pytest.mark.parametrize(
    ("probabilities", "promoted"),
    [({CHEAPEST: 0.99}, False), ({FULL: 0.99, CHEAPEST: 0.99}, True)],
    ids=["worse-stays-in-shadow", "as-good-is-promoted"],
)
def test_a_deployed_model_runs_in_shadow_until_it_proves_itself(
    tmp_path: Path, probabilities: dict[str, float], promoted: bool
) -> None:
    model = constant_policy(tmp_path / "policy.onnx", probabilities)
    audit = tmp_path / "audit.jsonl"
    reasoner = _reasoner(
        tmp_path,
        policy_model_path=str(model),
        promotion_decisions=8,
        promotion_min_shadow_s=2.0,
        learned_period_s=0.25,
        model_audit_log=str(audit),
    )
    r = SimRenderer()  # load 1.0: the full style fits the budget, the rules keep it
    executor = SingleThreadedExecutor()
    for n in (reasoner, r.node):
        executor.add_node(n)
    try:
        assert reasoner.gate is not None and reasoner.gate.promotion.phase == "shadow"
        assert reasoner.reasoner.chooser is None  # the rules act
        shadow_lines = lambda: [x for x in read_lines(tmp_path / "d.jsonl") if x.get("kind") == "shadow"]  # noqa: E731
        # 8 scored periods of 0.25 s after the model's 32-frame window, and 2 s: ~4 s
        p = reasoner.gate.promotion
        assert _run(executor, scaled(20.0), lambda: p.acting if promoted else p.scored >= 12), p.scored
        _run(executor, 0.5)
        # /diagnostics says so at its next 1 Hz report (a promotion keeps the level OK: no report at once)
        phase = "acting" if promoted else "shadow"
        shown = lambda: (s := r.model_status()) is not None and s[2].get("phase") == phase  # noqa: E731
        assert _run(executor, scaled(3.0), shown), r.model_status()
        lines = shadow_lines()
        assert len(lines) >= 8 and {x["rules_style"] for x in lines} == {FULL}
        status = r.model_status()
        assert status is not None
        events = [x["event"] for x in read_lines(audit)]
        if promoted:
            assert p.phase == "acting" and reasoner.reasoner.chooser is reasoner.gate.model
            assert events == ["model_shadow", "model_promoted"]
            assert "acting" in status[1] or status[2].get("phase") == "acting"
        else:
            assert p.phase == "shadow" and reasoner.reasoner.chooser is None
            assert {x["model_choice"] for x in lines} == {CHEAPEST}  # logged...
            assert {d.policy for d in r.decisions} == {"rules"} and r.style.label() == FULL  # ...not applied
            assert events == ["model_shadow"]
            assert "in shadow" in status[1] and float(status[2]["model_quality"]) < float(
                status[2]["rules_quality"]
            )
        model_lines = [x for x in read_lines(tmp_path / "d.jsonl") if x.get("kind") == "model"]
        assert [x["event"] for x in model_lines] == events
    finally:
        executor.shutdown(timeout_sec=1.0)
        reasoner.destroy_node()
        r.node.destroy_node()
