"""Controllers decide when and where a seed germinates; the heuristic one watches for a plateau.

A learned controller implements the same `Controller` protocol: it sees a `ControllerView` once per
epoch and answers with a `Germinate` or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
