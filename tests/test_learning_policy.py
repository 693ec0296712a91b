"""The learned style policy: seeded training is bit-for-bit reproducible, the ONNX export equals
torch, the runtime refuses files it cannot use, and in the simulated renderer it stays in budget."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training the policy needs torch")
pytest.importorskip("onnxruntime", reason="the exported policy runs on onnxruntime")

from krystal.learning import harvest, policy_model  # noqa: E402
from krystal.learning.policy_runtime import LearnedPolicy, ModelError  # noqa: E402
from krystal.learning.sim import LADDERS, Trace, simulate  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> harvest.Dataset:
    runs = harvest.synthesize(tmp_path_factory.mktemp("synth"), 4, seed=3, duration_s=30.0)
    return harvest.harvest(*runs)


@pytest.fixture(scope="module")
def exported(dataset: harvest.Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    t = policy_model.train(dataset, policy_model.TrainConfig.quick(seed=0))
    return policy_model.export(t, dataset, tmp_path_factory.mktemp("model"))


def test_seeded_training_is_bit_for_bit_reproducible(dataset: harvest.Dataset) -> None:
    cfg = policy_model.TrainConfig.quick(seed=11)
    a = policy_model.train(dataset, cfg)
    b = policy_model.train(dataset, cfg)
    assert a.state_sha256() == b.state_sha256()
    assert a.losses == b.losses and a.losses[-1] < a.losses[0]  # it learns, identically
    for (name, ta), tb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    other = policy_model.train(dataset, policy_model.TrainConfig.quick(seed=12))
    assert other.state_sha256() != a.state_sha256()
    assert a.held_out_sources and a.metrics["held_out_samples"] > 0  # whole recordings held out


def test_export_equals_torch_and_names_its_data(exported: dict[str, Path], dataset: harvest.Dataset) -> None:
    meta = json.loads(exported["metadata"].read_text())
    assert meta["dataset_sha256"] == dataset.sha256
    assert meta["feature_names"] == dataset.manifest["feature_names"]
    assert len(meta["normalization"]["mean"]) == len(meta["feature_names"])
    assert [c["label"] for c in meta["classes"]] == [c["label"] for c in dataset.manifest["classes"]]
    assert meta["export_max_abs_error"] <= 1e-4
    assert meta["onnx_sha256"] == hashlib.sha256(exported["onnx"].read_bytes()).hexdigest()
    # the runtime's own numbers (onnxruntime, NumPy normalization) against torch and TorchScript
    policy = LearnedPolicy(exported["onnx"])
    assert policy.sha256 == meta["onnx_sha256"] and policy.dataset_sha256 == dataset.sha256
    scripted = torch.jit.load(str(exported["torchscript"]))
    mean, std = policy.mean, policy.std
    for i in range(0, len(dataset.arrays["x"]), max(1, len(dataset.arrays["x"]) // 5)):
        window = dataset.arrays["x"][i]
        s = policy.scores(window)
        x = torch.from_numpy(np.nan_to_num((window - mean) / std).astype(np.float32))[None]
        with torch.no_grad():
            logit, log_ms = scripted(x)
        np.testing.assert_allclose(s.met_probability, torch.sigmoid(logit)[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(s.predicted_ms, torch.exp(log_ms)[0].numpy(), rtol=1e-4)
    assert policy.check_ladders(LADDERS) is None


def test_runtime_refuses_files_it_cannot_use(tmp_path: Path, exported: dict[str, Path]) -> None:
    import onnx

    with pytest.raises(ModelError, match="cannot read"):
        LearnedPolicy(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        LearnedPolicy(junk)
    bare = onnx.load(str(exported["onnx"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelError, match="no krystal_policy metadata"):
        LearnedPolicy(tmp_path / "bare.onnx")
    meta = json.loads(exported["metadata"].read_text())
    meta["feature_names"] = meta["feature_names"][:-1]
    bare.metadata_props.add(key="krystal_policy", value=json.dumps(meta))
    onnx.save(bare, str(tmp_path / "other.onnx"))
    with pytest.raises(ModelError, match="feature names"):
        LearnedPolicy(tmp_path / "other.onnx")


def test_learned_policy_in_the_simulated_renderer_stays_within_budget(exported: dict[str, Path]) -> None:
    policy = LearnedPolicy(exported["onnx"])
    learned = simulate("learned", 1, Trace(), chooser=policy)
    fixed = simulate("fixed", 1, Trace())
    assert policy.calls > 100  # it was asked, every learned_period_s once its window was full
    assert learned.over_fraction < fixed.over_fraction / 5
    assert learned.switches <= 60 / 5  # at most one switch per 5 s
    assert any(d.policy == "learned" for d in learned.decisions) or policy.calls > 0


def test_cli_train_policy_quick(tmp_path: Path, dataset: harvest.Dataset) -> None:
    from krystal.cli import main

    harvest.save(dataset, tmp_path / "ds")
    out = tmp_path / "model"
    assert main(["train", "policy", str(tmp_path / "ds.npz"), "-o", str(out), "--quick", "--no-eval"]) == 0
    assert {p.name for p in out.iterdir()} >= {"policy.onnx", "policy.pt", "policy.json"}
    assert main(["train", "policy", str(tmp_path / "missing"), "-o", str(out)]) == 2
