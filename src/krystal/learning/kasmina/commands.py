"""`krystal train grow` and `krystal train search`: the growth demo and the Optuna search."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from krystal.learning.datasets import Task, make_task
from krystal.learning.kasmina.grow import Callbacks, GrowthConfig, fixed, grow

# Seconds, for tests and a first look: a smaller task and a shorter schedule.
QUICK = GrowthConfig(
    epochs=50, batch=100, lr=0.03, seed_lr=0.03, patience=4, warmup=6, train_epochs=5, blend_epochs=3
)


def config_for(quick: bool, seed: int, blueprint: str) -> GrowthConfig:
    return dataclasses.replace(QUICK if quick else GrowthConfig(), seed=seed, blueprint=blueprint)


def task_for(name: str, quick: bool, seed: int) -> Task:
    sizes = {"n_train": 400, "n_val": 200, "n_test": 400} if quick else {}
    return make_task(name, seed, **sizes)


def grow_main(
    task_name: str, out: Path, seed: int, *, quick: bool, blueprint: str, mlflow: bool, tensorboard: bool
) -> int:
    """Grow a model on `task_name` with Rich progress (TensorBoard and MLflow under `out`), then train
    the fixed small and large hosts the same way and print the comparison."""
    if task_name == "policy":
        return grow_policy_main(out, seed, quick=quick, blueprint=blueprint)
    from krystal.learning.tracking import Fanout, MLflowTracker, RichTracker, TensorBoardTracker

    task, config = task_for(task_name, quick, seed), config_for(quick, seed, blueprint)
    trackers: list[Callbacks] = [RichTracker(title=f"kasmina {task_name}")]
    if tensorboard:
        trackers.append(TensorBoardTracker(out / "tensorboard" / f"{task_name}-seed{seed}"))
    if mlflow:
        trackers.append(
            MLflowTracker(
                out / "mlflow", run_name=f"{task_name}-seed{seed}", register_as=f"kasmina-{task_name}"
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    grown = grow(
        task, config, callbacks=Fanout(*trackers), events_path=out / f"events-{task_name}-seed{seed}.jsonl"
    )
    small, large = fixed(task, config), fixed(task, config, width=4 * config.width)
    rows = {
        "grown": (grown.test_accuracy, grown.params),
        "fixed-small": (small.test_accuracy, small.params),
        "fixed-large": (large.test_accuracy, large.params),
    }
    for name, (acc, params) in rows.items():
        print(
            json.dumps({"task": task_name, "model": name, "test_accuracy": round(acc, 4), "params": params})
        )
    return 0


def grow_policy_main(out: Path, seed: int, *, quick: bool, blueprint: str) -> int:
    """Grow the seeded style policy on a synthesized harvest beside the fixed small and 4x d_model
    policies (no trackers: they follow SeededMLP runs); events under `out`."""
    import sys

    from krystal.learning.kasmina.policy import (
        POLICY,
        POLICY_QUICK,
        fixed_policy,
        grow_policy,
        policy_task,
        synthesized_dataset,
    )

    if blueprint == "attention":
        print("krystal train grow: the policy's seeds work on tokens: mlp, adapter or head", file=sys.stderr)
        return 2
    config = dataclasses.replace(POLICY_QUICK if quick else POLICY, seed=seed, blueprint=blueprint)
    task = policy_task(synthesized_dataset(quick), seed)
    grown = grow_policy(task, config, events_path=out / f"events-policy-seed{seed}.jsonl")
    small, large = fixed_policy(task, config), fixed_policy(task, config, width=4 * config.width)
    for e in grown.events:
        print(f"seed epoch {e.epoch} slot {e.slot}: {e.event} {e.blueprint} ({e.params} params)")
    for name, r in (("grown", grown), ("fixed-small", small), ("fixed-large", large)):
        row = {"model": name, "test_accuracy": round(r.test_accuracy, 4), "test_loss": round(r.test_loss, 4)}
        print(json.dumps({"task": "policy", **row, "params": r.params}))
    return 0


def search_main(task_name: str, out: Path, seed: int, quick: bool, trials: int) -> int:
    from krystal.learning.search import search

    task, base = task_for(task_name, quick, seed), config_for(quick, seed, "mlp")
    if quick:
        base = dataclasses.replace(base, epochs=20)
    result = search(task, base, trials, out / "mlflow", seed=seed, register_as=f"kasmina-{task_name}-best")
    print(
        json.dumps(
            {
                "best_params": result.best_params,
                "best_val_loss": round(result.best_value, 4),
                "trials": result.states,
                "model_version": result.model_version,
                "store": str(out / "mlflow"),
            }
        )
    )
    return 0
