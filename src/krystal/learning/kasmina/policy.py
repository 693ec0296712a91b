"""Kasmina on the style policy: PolicyNet with a dormant seed slot after each block, grown on
harvested telemetry windows by the same loop as the 2-D tasks (grow.train_growing).

The task splits whole recordings into train, validation (drives the controller) and test; the loss
is the policy's masked loss, the metric the held-out 'budget met' accuracy for the rendered style.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from krystal.learning.features import normalize
from krystal.learning.harvest import Dataset
from krystal.learning.kasmina.controller import Controller
from krystal.learning.kasmina.grow import (
    GrowthConfig,
    GrowthResult,
    SlottedHost,
    deterministic,
    tested,
    train_growing,
)
from krystal.learning.kasmina.seeds import EventLog, SeedSlot
from krystal.learning.policy_model import (
    Block,
    PolicyNet,
    TrainConfig,
    feature_stats,
    masked_loss,
    offline_metrics,
    split,
    split_sources,
    targets,
)

# A policy two blocks deep at d_model 16 (width), an extra attention head as the seed; the loop's
# Adam at the policy's learning rate.
POLICY = GrowthConfig(
    width=16,
    depth=2,
    slots=2,
    blueprint="head",
    epochs=40,
    batch=64,
    lr=3e-3,
    seed_lr=3e-3,
    patience=4,
    warmup=6,
    train_epochs=5,
    blend_epochs=3,
    min_effect=0.01,
)
POLICY_QUICK = replace(POLICY, epochs=16, patience=3, warmup=4, train_epochs=3, blend_epochs=2)


def host_config(c: GrowthConfig) -> TrainConfig:
    """The PolicyNet shape a growth config names: d_model = width, layers = depth."""
    return TrainConfig(d_model=c.width, heads=2, layers=c.depth, ff=2 * c.width)


class SeededPolicy(PolicyNet, SlottedHost):
    """PolicyNet (embed + positions, pre-norm Blocks, head over last + mean token) with a seed slot
    on the (batch, window, d_model) activations after each of the first `slots` blocks."""

    def __init__(self, window: int, n_features: int, n_classes: int, cfg: TrainConfig, slots: int) -> None:
        super().__init__(window, n_features, n_classes, cfg)
        if not 0 <= slots <= cfg.layers:
            raise ValueError(f"slots must be within 0..layers ({cfg.layers}), got {slots}")
        self.slots = torch.nn.ModuleList([SeedSlot(i, cfg.d_model) for i in range(slots)])

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, ablate: frozenset[int] = frozenset()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x) + self.pos
        for i, block in enumerate(self.blocks):
            z = block(z)
            if i < len(self.slots):
                z = self.slot(i)(z, ablate=i in ablate)
        z = self.ln(z)
        out = self.head(torch.cat([z[:, -1], z.mean(dim=1)], dim=1))
        return out[:, : self.n_classes], out[:, self.n_classes :]

    def region_grad(self, index: int) -> float:
        block = self.blocks[index]
        assert isinstance(block, Block)
        last = block.mlp[2]
        assert isinstance(last, torch.nn.Linear)
        g = last.weight.grad
        return 0.0 if g is None else float(g.norm())

    def own_parameters(self) -> list[torch.nn.Parameter]:
        modules = (self.embed, self.blocks, self.ln, self.head)
        return [self.pos, *(p for m in modules for p in m.parameters())]


@dataclass(frozen=True)
class PolicyTask:
    """A harvested dataset as the growth loop's Fit: normalized windows (train statistics), the
    loss targets, and sample indices per split of whole recordings."""

    name: str
    x: torch.Tensor
    cls: torch.Tensor
    met: torch.Tensor
    log_ms: torch.Tensor
    arrays: dict[str, NDArray[Any]]
    train: NDArray[np.int64]
    val: NDArray[np.bool_]
    test: NDArray[np.bool_]
    n_classes: int

    @property
    def n_train(self) -> int:
        return len(self.train)

    def batch_loss(self, model: SlottedHost, idx: torch.Tensor) -> torch.Tensor:
        j = torch.from_numpy(self.train)[idx]
        logit, pred = model(self.x[j])
        return masked_loss(logit, pred, self.cls[j], self.met[j], self.log_ms[j])

    def evaluate(
        self, model: SlottedHost, split: str, ablate: frozenset[int] = frozenset()
    ) -> tuple[float, float]:
        """(masked loss, held-out budget-met accuracy) on the validation or test recordings."""
        mask = self.val if split == "val" else self.test
        j = torch.from_numpy(np.flatnonzero(mask))
        model.eval()
        with torch.no_grad():
            logit, pred = model(self.x[j], ablate)
            loss = float(masked_loss(logit, pred, self.cls[j], self.met[j], self.log_ms[j]))
        return loss, offline_metrics(logit, pred, self.arrays, mask)["held_out_met_accuracy"]


def policy_task(ds: Dataset, seed: int, held_out: float = 0.25) -> PolicyTask:
    """Test recordings held out first, then validation recordings from the rest (policy_model.split)."""
    a = ds.arrays
    rest_mask, _ = split(ds, held_out, seed)
    rest = np.flatnonzero(rest_mask)
    keep, _ = split_sources(a["source"][rest], held_out, seed + 1)
    train = rest[keep]
    val = np.zeros(len(rest_mask), bool)
    val[rest[~keep]] = True
    if not len(train) or not val.any() or rest_mask.all():
        raise ValueError("the dataset needs at least three recordings for train, validation and test")
    mean, std = feature_stats(a["x"][train])
    cls, met, log_ms = targets(a)
    x = torch.from_numpy(normalize(a["x"], mean, std))
    return PolicyTask(
        "policy", x, cls, met, log_ms, a, train.astype(np.int64), val, ~rest_mask, len(ds.manifest["classes"])
    )


def grow_policy(
    task: PolicyTask,
    config: GrowthConfig,
    controller: Controller | None = None,
    events_path: Path | None = None,
) -> GrowthResult[SeededPolicy]:
    """Grow the seeded policy on `task` (config.grow=False: the same host trained fixed)."""
    with deterministic(config.seed):
        window, n_features = task.x.shape[1], task.x.shape[2]
        slots = config.slots if config.grow else 0
        model = SeededPolicy(window, n_features, task.n_classes, host_config(config), slots)
        log = EventLog(events_path)
        history = train_growing(model, task, config, controller, log=log)
        return tested(model, task, config, history, log)


def fixed_policy(
    task: PolicyTask, config: GrowthConfig, width: int | None = None
) -> GrowthResult[SeededPolicy]:
    """The same policy trained without growth (at `width` = d_model, default the config's)."""
    return grow_policy(task, replace(config, grow=False, width=width or config.width))


def synthesized_dataset(quick: bool, seed: int = 1) -> Dataset:
    """A harvested dataset from simulated runs (harvest.synthesize): 4 runs of 30 s for --quick,
    else 12 of 60 s (the shipped policy's is 40 of 60 s; this keeps a growth run near seconds)."""
    import tempfile

    from krystal.learning.harvest import harvest, synthesize

    runs, duration = (4, 30.0) if quick else (12, 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        return harvest(*synthesize(Path(tmp), runs, seed=seed, duration_s=duration))
