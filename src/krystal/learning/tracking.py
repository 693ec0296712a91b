"""Experiment tracking for growth runs: Rich progress and a live table, TensorBoard, MLflow.

Each tracker implements kasmina.grow.Callbacks; `Fanout` hands one run to several. MLflow writes to a
local store (sqlite for runs and the model registry, files for artifacts) under one directory.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from krystal.learning.datasets import Task
from krystal.learning.kasmina.grow import Callbacks, EpochStats, GrowthConfig, GrowthResult, SeededMLP
from krystal.learning.kasmina.seeds import SeedEvent, SeedState


class Fanout:
    """Several trackers as one."""

    def __init__(self, *trackers: Callbacks) -> None:
        self.trackers = trackers

    def on_start(self, config: GrowthConfig, model: SeededMLP, task: Task) -> None:
        for t in self.trackers:
            t.on_start(config, model, task)

    def on_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        for t in self.trackers:
            t.on_batch(epoch, batch, batches, loss)

    def on_epoch(self, stats: EpochStats, model: SeededMLP) -> None:
        for t in self.trackers:
            t.on_epoch(stats, model)

    def on_event(self, event: SeedEvent) -> None:
        for t in self.trackers:
            t.on_event(event)

    def on_end(self, result: GrowthResult[SeededMLP]) -> None:
        for t in self.trackers:
            t.on_end(result)


def checkpoint(model: SeededMLP, config: GrowthConfig, stats: EpochStats | None = None) -> dict[str, Any]:
    """What a checkpoint holds: weights, the slots' states and blueprints (the architecture), config."""
    return {
        "state_dict": copy.deepcopy(model.state_dict()),
        "slots": [
            (s.state.value, s.blueprint, s.alpha) for s in (model.slot(i) for i in range(len(model.slots)))
        ],
        "config": asdict(config),
        "epoch": None if stats is None else stats.epoch,
        "val_loss": None if stats is None else stats.val_loss,
    }


def load_checkpoint(data: dict[str, Any], task: Task) -> SeededMLP:
    """The model a checkpoint describes, its seeds regrown from their blueprints, weights loaded."""
    c = GrowthConfig(**data["config"])
    model = SeededMLP(task.features, c.width, task.classes, c.depth, len(data["slots"]))
    for i, (state, blueprint, alpha) in enumerate(data["slots"]):
        slot = model.slot(i)
        if blueprint and state != SeedState.CULLED.value:
            slot.germinate(blueprint, 0)
        slot.state, slot.alpha = SeedState(state), float(alpha)
    model.load_state_dict(data["state_dict"])
    return model.eval()


class RichTracker:
    """Progress bars for epochs and batches, a live table of recent epochs, a line per seed event."""

    def __init__(self, console: Console | None = None, rows: int = 8, title: str = "kasmina") -> None:
        self.console = console or Console()
        self.rows, self.title = rows, title
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.recent: list[EpochStats] = []
        self.events: list[SeedEvent] = []
        self.live: Live | None = None
        self.epochs: TaskID | None = None
        self.batches: TaskID | None = None

    def table(self) -> Table:
        table = Table(title=self.title, expand=False)
        for name in ("epoch", "train loss", "val loss", "val acc", "params", "slots (alpha)"):
            table.add_column(name, justify="right" if name != "slots (alpha)" else "left")
        for s in self.recent[-self.rows :]:
            slots = " ".join(f"{st[:4]}({a:.2f})" for st, a in zip(s.states, s.alphas, strict=True))
            table.add_row(
                str(s.epoch),
                f"{s.train_loss:.4f}",
                f"{s.val_loss:.4f}",
                f"{s.val_accuracy:.3f}",
                str(s.params),
                slots,
            )
        return table

    def _render(self) -> Group:
        return Group(self.progress, self.table())

    def on_start(self, config: GrowthConfig, model: SeededMLP, task: Task) -> None:
        self.epochs = self.progress.add_task(f"{task.name} epochs", total=config.epochs)
        self.batches = self.progress.add_task("batches", total=1)
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def on_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        if self.batches is not None:
            self.progress.update(self.batches, completed=batch + 1, total=batches)

    def on_epoch(self, stats: EpochStats, model: SeededMLP) -> None:
        self.recent.append(stats)
        if self.epochs is not None:
            self.progress.update(self.epochs, advance=1)
        if self.live is not None:
            self.live.update(self._render())

    def on_event(self, event: SeedEvent) -> None:
        self.events.append(event)
        effect = f" effect {event.detail['effect']:+.3f}" if "effect" in event.detail else ""
        self.console.print(
            f"[bold]seed[/] epoch {event.epoch} slot {event.slot}: {event.event} {event.blueprint} "
            f"({event.params} params, val loss {event.val_loss:.4f}{effect})"
        )

    def on_end(self, result: GrowthResult[SeededMLP]) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()
            self.live = None
            self.console.line()
        self.console.print(
            f"test accuracy {result.test_accuracy:.3f}, {result.params} params, "
            f"{sum(e.event == 'fossilized' for e in result.events)} seeds fossilized"
        )


class TensorBoardTracker:
    """Scalars (losses, accuracy, parameters, blend alphas), weight histograms and the grown model's graph."""

    def __init__(self, logdir: Path, histogram_every: int = 10) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(logdir))
        self.logdir, self.histogram_every = logdir, histogram_every
        self.example: torch.Tensor | None = None

    def on_start(self, config: GrowthConfig, model: SeededMLP, task: Task) -> None:
        self.example = torch.from_numpy(task.val.x[:8])
        self.writer.add_text("config", json.dumps(asdict(config)))

    def on_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        pass

    def on_epoch(self, stats: EpochStats, model: SeededMLP) -> None:
        w, e = self.writer, stats.epoch
        w.add_scalar("loss/train", stats.train_loss, e)
        w.add_scalar("loss/val", stats.val_loss, e)
        w.add_scalar("accuracy/val", stats.val_accuracy, e)
        w.add_scalar("params", stats.params, e)
        for i, alpha in enumerate(stats.alphas):
            w.add_scalar(f"alpha/slot{i}", alpha, e)
        if e % self.histogram_every == 0:
            for name, p in model.named_parameters():
                w.add_histogram(f"weights/{name}", p.detach(), e)

    def on_event(self, event: SeedEvent) -> None:
        self.writer.add_text("seed_events", json.dumps(asdict(event)), event.epoch)

    def on_end(self, result: GrowthResult[SeededMLP]) -> None:
        if self.example is not None:
            model = result.model.eval()
            with torch.no_grad():
                self.writer.add_graph(model, self.example)
        self.writer.add_scalar("test/accuracy", result.test_accuracy, len(result.history))
        self.writer.close()


def mlflow_client(store: Path) -> Any:
    """An MLflow client on a local store: sqlite runs and registry in store/mlflow.db."""
    from mlflow.tracking import MlflowClient

    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store.resolve() / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: Any, store: Path, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(
        client.create_experiment(name, artifact_location=(store.resolve() / "artifacts" / name).as_uri())
    )


def register(client: Any, name: str, run_id: str, artifact: str = "checkpoint") -> Any:
    """A new version of registered model `name` from a run's artifact folder."""
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already registered: add a version
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact}"
    return client.create_model_version(name, source, run_id)


class MLflowTracker:
    """One MLflow run: the config as parameters, per-epoch metrics, the event log and the best
    checkpoint (lowest validation loss) as artifacts, optionally registered as a model version."""

    def __init__(
        self,
        store: Path,
        experiment: str = "kasmina",
        *,
        run_name: str | None = None,
        register_as: str | None = None,
        parent_run_id: str | None = None,
        client: Any = None,
    ) -> None:
        self.store, self.experiment, self.run_name = store, experiment, run_name
        self.register_as, self.parent_run_id = register_as, parent_run_id
        self.client = client or mlflow_client(store)
        self.run_id = ""
        self.best: dict[str, Any] | None = None
        self.config: GrowthConfig | None = None
        self.version: Any = None

    def on_start(self, config: GrowthConfig, model: SeededMLP, task: Task) -> None:
        from mlflow.entities import Param

        tags = {"task": task.name}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run = self.client.create_run(
            experiment_id(self.client, self.store, self.experiment), run_name=self.run_name, tags=tags
        )
        self.run_id, self.config = run.info.run_id, config
        params = [Param(k, str(v)) for k, v in asdict(config).items()] + [Param("task", task.name)]
        self.client.log_batch(self.run_id, params=params)

    def on_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        pass

    def on_epoch(self, stats: EpochStats, model: SeededMLP) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {
            "train_loss": stats.train_loss,
            "val_loss": stats.val_loss,
            "val_accuracy": stats.val_accuracy,
            "params": float(stats.params),
        } | {f"alpha_slot{i}": a for i, a in enumerate(stats.alphas)}
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, v, now, stats.epoch) for k, v in values.items()]
        )
        live = all(s not in (SeedState.TRAINING.value, SeedState.BLENDING.value) for s in stats.states)
        if live and (self.best is None or stats.val_loss < self.best["val_loss"]):
            assert self.config is not None
            self.best = checkpoint(model, self.config, stats)

    def on_event(self, event: SeedEvent) -> None:
        self.client.set_tag(self.run_id, f"event.{event.epoch}.slot{event.slot}", event.event)

    def finish(self, status: str = "FINISHED", **tags: str) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)
        self.client.set_terminated(self.run_id, status)

    def on_end(self, result: GrowthResult[SeededMLP]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        final = {
            "test_accuracy": result.test_accuracy,
            "test_loss": result.test_loss,
            "final_params": result.params,
        }
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in final.items()])
        self.client.set_tag(self.run_id, "weights_sha256", result.digest)
        with tempfile.TemporaryDirectory() as tmp:
            events = Path(tmp) / "events.jsonl"
            events.write_text("".join(json.dumps(asdict(e), sort_keys=True) + "\n" for e in result.events))
            self.client.log_artifact(self.run_id, str(events))
            folder = Path(tmp) / "checkpoint"
            folder.mkdir()
            torch.save(self.best or checkpoint(result.model, result.config), folder / "model.pt")
            self.client.log_artifacts(self.run_id, str(folder), "checkpoint")
        if self.register_as:
            self.version = register(self.client, self.register_as, self.run_id)
        self.finish()
