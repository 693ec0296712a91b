"""Experiment tooling: a growth run's MLflow run, artifacts and registry entry read back with MLflow's
own client, its TensorBoard file with TensorBoard's EventAccumulator, Rich's live output, and an
Optuna search that prunes a deliberately bad trial (each trial an MLflow run)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")
optuna = pytest.importorskip("optuna")
pytest.importorskip("tensorboard")

from rich.console import Console  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from krystal.learning.datasets import make_task  # noqa: E402
from krystal.learning.kasmina.grow import GrowthConfig, GrowthResult, Task, evaluate, grow  # noqa: E402
from krystal.learning.search import search  # noqa: E402
from krystal.learning.tracking import (  # noqa: E402
    Fanout,
    MLflowTracker,
    RichTracker,
    TensorBoardTracker,
    load_checkpoint,
    mlflow_client,
)

QUICK = GrowthConfig(
    epochs=20, batch=100, lr=0.03, seed_lr=0.03, patience=4, warmup=6, train_epochs=5, blend_epochs=3
)


@pytest.fixture(scope="module")
def task() -> Task:
    return make_task("spirals", 0, n_train=400, n_val=200, n_test=400)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def tracked(
    task: Task, store: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[GrowthResult, MLflowTracker, Path, str]:
    logdir = tmp_path_factory.mktemp("tb")
    text = io.StringIO()
    ml = MLflowTracker(store, "kasmina-test", run_name="spirals", register_as="kasmina-spirals")
    rich = RichTracker(Console(file=text, width=140, force_terminal=False))
    result = grow(task, QUICK, callbacks=Fanout(rich, TensorBoardTracker(logdir, histogram_every=5), ml))
    return result, ml, logdir, text.getvalue()


def test_mlflow_run_artifacts_and_registry_read_back(
    tracked: tuple[GrowthResult, MLflowTracker, Path, str], store: Path, task: Task, tmp_path: Path
) -> None:
    result, ml, _, _ = tracked
    client = mlflow_client(store)  # a fresh client: only what reached the store counts
    experiment = client.get_experiment_by_name("kasmina-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == ml.run_id and run.info.status == "FINISHED"
    assert run.data.params["lr"] == str(QUICK.lr) and run.data.params["task"] == "spirals"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [s.val_loss for s in result.history]
    assert run.data.metrics["test_accuracy"] == result.test_accuracy
    assert run.data.tags["weights_sha256"] == result.digest
    assert any(k.startswith("event.") and v == "germinated" for k, v in run.data.tags.items())
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert files == {"events.jsonl", "checkpoint"}
    (version,) = client.search_model_versions("name='kasmina-spirals'")
    assert version.run_id == run.info.run_id and int(version.version) == 1
    local = Path(client.download_artifacts(run.info.run_id, "checkpoint/model.pt", str(tmp_path)))
    data = torch.load(local, weights_only=False)
    best = min(
        (s for s in result.history if "training" not in s.states and "blending" not in s.states),
        key=lambda s: s.val_loss,
    )
    assert data["epoch"] == best.epoch
    model = load_checkpoint(data, task)
    assert evaluate(model, task.val)[0] == pytest.approx(best.val_loss, abs=1e-6)


def test_tensorboard_scalars_histograms_and_graph(
    tracked: tuple[GrowthResult, MLflowTracker, Path, str],
) -> None:
    result, _, logdir, _ = tracked
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("loss/train", "loss/val", "accuracy/val", "params", "alpha/slot0", "alpha/slot1"):
        assert tag in tags["scalars"], tag
    assert [e.value for e in acc.Scalars("loss/val")] == pytest.approx([s.val_loss for s in result.history])
    alphas = [e.value for e in acc.Scalars(f"alpha/slot{result.events[0].slot}")]
    assert 0 < min(a for a in alphas if a > 0) < 1 and max(alphas) == 1.0  # the ramp
    assert any(t.startswith("weights/layers.0") for t in tags["histograms"])
    assert tags["graph"]


def test_rich_shows_progress_table_and_seed_events(
    tracked: tuple[GrowthResult, MLflowTracker, Path, str],
) -> None:
    result, _, _, text = tracked
    assert "val loss" in text and "spirals epochs" in text
    assert f"slot {result.events[0].slot}: germinated" in text
    assert f"test accuracy {result.test_accuracy:.3f}" in text


def test_optuna_prunes_a_bad_trial_and_each_trial_is_an_mlflow_run(task: Task, store: Path) -> None:
    good = {"lr": 0.03, "max_seeds": 1, "blueprint": "mlp"}
    bad = {"lr": 1e-4, "max_seeds": 0, "blueprint": "adapter"}  # learns nothing in 12 epochs
    base = dataclasses.replace(QUICK, epochs=12)
    result = search(task, base, 3, store, enqueue=(good, good, bad), startup_trials=2, warmup_epochs=3)
    assert result.states == ("COMPLETE", "COMPLETE", "PRUNED")
    assert result.best_params == good and result.model_version == "1"
    client = mlflow_client(store)
    runs = {
        r.info.run_id: r
        for r in client.search_runs([client.get_experiment_by_name("kasmina-search").experiment_id])
    }
    assert set(result.run_ids) | {result.parent_run_id} == set(runs)
    pruned = runs[result.run_ids[2]]
    assert pruned.info.status == "KILLED" and pruned.data.tags["optuna_state"] == "PRUNED"
    assert all(runs[r].data.tags["mlflow.parentRunId"] == result.parent_run_id for r in result.run_ids)
    assert len(client.get_metric_history(pruned.info.run_id, "val_loss")) < base.epochs
    (version,) = client.search_model_versions("name='kasmina-best'")
    assert version.run_id in result.run_ids[:2]
