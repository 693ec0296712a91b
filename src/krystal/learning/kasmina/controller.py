"""Controllers decide when and where a seed germinates; the heuristic one watches for a plateau.

A learned controller implements the same `Controller` protocol: it sees a `ControllerView` once per
epoch and answers with a `Germinate` or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from krystal.learning.kasmina.seeds import SeedState


@dataclass(frozen=True)
class SlotView:
    index: int
    state: SeedState
    region_grad: float  # mean gradient norm of the host layer feeding the slot, last host epoch


@dataclass(frozen=True)
class ControllerView:
    epoch: int
    val_losses: tuple[float, ...]  # validation loss per epoch since the last lifecycle decision
    slots: tuple[SlotView, ...]
    seeds_left: int  # germinations the run still allows


@dataclass(frozen=True)
class Germinate:
    slot: int
    blueprint: str


class Controller(Protocol):
    def decide(self, view: ControllerView) -> Germinate | None: ...


@dataclass(frozen=True)
class HeuristicController:
    """Germinate `blueprint` when the best validation loss of the last `patience` epochs is not
    `min_delta` (relative) better than the best before them, in the dormant slot whose region
    still gets the largest gradients (where the host keeps pushing but no longer gets anywhere)."""

    blueprint: str = "mlp"
    patience: int = 6
    min_delta: float = 0.02
    warmup: int = 10  # epochs after a decision before a plateau can count

    def plateaued(self, losses: tuple[float, ...]) -> bool:
        if len(losses) < max(self.warmup, self.patience + 1):
            return False
        before, recent = min(losses[: -self.patience]), min(losses[-self.patience :])
        return recent > before * (1.0 - self.min_delta)

    def decide(self, view: ControllerView) -> Germinate | None:
        dormant = [s for s in view.slots if s.state is SeedState.DORMANT]
        busy = any(s.state in (SeedState.TRAINING, SeedState.BLENDING) for s in view.slots)
        if busy or not dormant or view.seeds_left <= 0 or not self.plateaued(view.val_losses):
            return None
        slot = max(dormant, key=lambda s: (s.region_grad, -s.index))
        return Germinate(slot.index, self.blueprint)


def view_features(view: ControllerView) -> NDArray[np.float64]:
    """What a learned controller sees: how long since the last decision, the relative improvement of
    the recent window over the best before it, the loss level, the largest dormant region gradient."""
    losses = view.val_losses
    window = max(1, min(6, len(losses) // 2))
    before = min(losses[:-window]) if len(losses) > window else losses[0]
    recent = min(losses[-window:])
    grads = [s.region_grad for s in view.slots if s.state is SeedState.DORMANT] or [0.0]
    return np.array(
        [1.0, np.log1p(len(losses)), (before - recent) / max(before, 1e-9), losses[-1], np.log1p(max(grads))]
    )


@dataclass(frozen=True)
class LearnedController:
    """Germinates where a logistic model of view_features says a seed would be fossilized.

    Trained by `fit_learned` from (view, outcome) pairs, e.g. from `ExploringController` runs.
    """

    weights: tuple[float, ...]
    blueprint: str = "mlp"
    threshold: float = 0.5
    min_epochs: int = 4

    def probability(self, view: ControllerView) -> float:
        z = float(view_features(view) @ np.asarray(self.weights))
        return float(1.0 / (1.0 + np.exp(-z)))

    def decide(self, view: ControllerView) -> Germinate | None:
        dormant = [s for s in view.slots if s.state is SeedState.DORMANT]
        busy = any(s.state in (SeedState.TRAINING, SeedState.BLENDING) for s in view.slots)
        if busy or not dormant or view.seeds_left <= 0 or len(view.val_losses) < self.min_epochs:
            return None
        if self.probability(view) < self.threshold:
            return None
        slot = max(dormant, key=lambda s: (s.region_grad, -s.index))
        return Germinate(slot.index, self.blueprint)


class ExploringController:
    """Germinates at seeded random moments and keeps the view of each: training data for a learned
    controller (pair `views` with the run's fossilized/culled events)."""

    def __init__(self, seed: int, rate: float = 0.15, blueprint: str = "mlp", min_epochs: int = 4) -> None:
        self.rng = np.random.default_rng(seed)
        self.rate, self.blueprint, self.min_epochs = rate, blueprint, min_epochs
        self.views: list[ControllerView] = []

    def decide(self, view: ControllerView) -> Germinate | None:
        dormant = [s for s in view.slots if s.state is SeedState.DORMANT]
        if not dormant or view.seeds_left <= 0 or len(view.val_losses) < self.min_epochs:
            return None
        if self.rng.random() >= self.rate:
            return None
        self.views.append(view)
        return Germinate(dormant[int(self.rng.integers(0, len(dormant)))].index, self.blueprint)


def fit_learned(
    views: list[ControllerView], fossilized: list[bool], steps: int = 2000, lr: float = 0.5, l2: float = 1e-3
) -> tuple[float, ...]:
    """Logistic-regression weights (NumPy gradient descent, deterministic) for LearnedController."""
    x = np.stack([view_features(v) for v in views])
    y = np.asarray(fossilized, np.float64)
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w -= lr * (x.T @ (p - y) / len(y) + l2 * w)
    return tuple(float(v) for v in w)
