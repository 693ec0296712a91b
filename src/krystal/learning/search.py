"""Optuna search over a growth run's learning rate, seed count and blueprint, with median pruning.

Every trial is an MLflow run (child of one run for the study); a trial reports its validation loss
each epoch and stops once it is worse than the median of earlier trials at that epoch. The best
trial's checkpoint becomes a registered model version.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from krystal.learning.datasets import Task
from krystal.learning.kasmina.blueprints import BLUEPRINTS
from krystal.learning.kasmina.grow import EpochStats, GrowthConfig, GrowthResult, SeededMLP, Stop, grow
from krystal.learning.kasmina.seeds import SeedEvent
from krystal.learning.tracking import Fanout, MLflowTracker, experiment_id, mlflow_client, register


@dataclass(frozen=True)
class SearchResult:
    best_params: dict[str, Any]
    best_value: float  # validation loss of the best trial's final model
    states: tuple[str, ...]  # each trial's final state: COMPLETE, PRUNED
    run_ids: tuple[str, ...]  # each trial's MLflow run
    parent_run_id: str
    model_version: str


class _Pruning:
    """Reports each epoch's validation loss to the trial and stops the run when Optuna prunes it."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_start(self, config: GrowthConfig, model: SeededMLP, task: Task) -> None:
        pass

    def on_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        pass

    def on_epoch(self, stats: EpochStats, model: SeededMLP) -> None:
        self.trial.report(stats.val_loss, stats.epoch)
        if self.trial.should_prune():
            raise Stop(f"pruned at epoch {stats.epoch}")

    def on_event(self, event: SeedEvent) -> None:
        pass

    def on_end(self, result: GrowthResult[SeededMLP]) -> None:
        pass


def suggest(trial: optuna.Trial, base: GrowthConfig, max_seeds: int = 2) -> GrowthConfig:
    return dataclasses.replace(
        base,
        lr=trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        max_seeds=trial.suggest_int("max_seeds", 0, max_seeds),
        blueprint=trial.suggest_categorical("blueprint", sorted(BLUEPRINTS)),
    )


def search(
    task: Task,
    base: GrowthConfig,
    trials: int,
    store: Path,
    *,
    seed: int = 0,
    enqueue: tuple[dict[str, Any], ...] = (),
    startup_trials: int = 2,
    warmup_epochs: int = 3,
    register_as: str = "kasmina-best",
    experiment: str = "kasmina-search",
) -> SearchResult:
    """Run `trials` growth runs chosen by TPE (seeded), pruned by the median rule; `enqueue` fixes the
    parameters of the first trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client = mlflow_client(store)
    parent = client.create_run(experiment_id(client, store, experiment), run_name=f"search-{task.name}")
    parent_id = parent.info.run_id
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs),
    )
    for params in enqueue:
        study.enqueue_trial(params)
    run_ids: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial, base)
        tracker = MLflowTracker(
            store, experiment, run_name=f"trial-{trial.number}", parent_run_id=parent_id, client=client
        )
        try:
            result = grow(task, config, callbacks=Fanout(tracker, _Pruning(trial)))
        except Stop:
            tracker.finish("KILLED", optuna_state="PRUNED")
            run_ids.append(tracker.run_id)
            raise optuna.TrialPruned() from None
        finally:
            trial.set_user_attr("mlflow_run_id", tracker.run_id)
        run_ids.append(tracker.run_id)
        client.set_tag(tracker.run_id, "optuna_state", "COMPLETE")
        return result.history[-1].val_loss

    study.optimize(objective, n_trials=trials)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    version = ""
    if done:
        best = study.best_trial
        version = str(register(client, register_as, best.user_attrs["mlflow_run_id"]).version)
        for k, v in best.params.items():
            client.log_param(parent_id, f"best_{k}", str(v))
        client.set_tag(parent_id, "best_run_id", best.user_attrs["mlflow_run_id"])
    client.set_terminated(parent_id)
    return SearchResult(
        study.best_params if done else {},
        study.best_value if done else float("nan"),
        tuple(t.state.name for t in study.trials),
        tuple(run_ids),
        parent_id,
        version,
    )
