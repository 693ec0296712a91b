"""Seed slots and their lifecycle: dormant -> training -> blending -> fossilized | culled.

training  the seed learns on the task loss through the frozen host (the host's parameters get no
          gradient, its activations reach the seed detached); the live model is still the host's.
blending  the live model becomes h + alpha * seed(h) with alpha ramped from 0 to 1, host frozen.
fossilized / culled  decided by the seed's measured effect on validation loss (with vs without it);
          a culled seed is dropped and the host is exactly what it was before germination.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from krystal.learning.kasmina import blueprints


class SeedState(str, enum.Enum):
    DORMANT = "dormant"
    TRAINING = "training"
    BLENDING = "blending"
    FOSSILIZED = "fossilized"
    CULLED = "culled"


@dataclass(frozen=True)
class SeedEvent:
    """One lifecycle event (what the JSON Lines log holds, one object a line)."""

    epoch: int
    slot: int
    event: str  # germinated, blending, fossilized, culled
    blueprint: str
    alpha: float
    val_loss: float
    params: int  # the seed's parameters
    detail: dict[str, float] = field(default_factory=dict)


class EventLog:
    """Lifecycle events in memory and, when given a path, appended to a JSON Lines file as they happen."""

    def __init__(self, path: Path | None = None) -> None:
        self.events: list[SeedEvent] = []
        self.path = path
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")

    def add(self, event: SeedEvent) -> None:
        self.events.append(event)
        if self._file is not None:
            self._file.write(json.dumps(asdict(event), sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @staticmethod
    def read(path: Path) -> list[SeedEvent]:
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                data: dict[str, Any] = json.loads(line)
                out.append(SeedEvent(**data))
        return out


class SeedSlot(nn.Module):
    """A place in the host where a seed can grow; the identity while dormant or culled."""

    def __init__(self, index: int, width: int) -> None:
        super().__init__()
        self.index, self.width = index, width
        self.state = SeedState.DORMANT
        self.blueprint = ""
        self.seed: nn.Module | None = None
        self.alpha = 0.0
        self.since_epoch = 0  # epoch the current state began

    def germinate(self, blueprint: str, epoch: int) -> None:
        if self.state is not SeedState.DORMANT:
            raise RuntimeError(f"slot {self.index} is {self.state.value}, not dormant")
        self.seed = blueprints.build(blueprint, self.width)
        self.blueprint, self.state, self.alpha, self.since_epoch = blueprint, SeedState.TRAINING, 0.0, epoch

    def start_blending(self, epoch: int) -> None:
        self.state, self.since_epoch = SeedState.BLENDING, epoch

    def fossilize(self, epoch: int) -> None:
        self.state, self.alpha, self.since_epoch = SeedState.FOSSILIZED, 1.0, epoch

    def cull(self, epoch: int) -> None:
        self.seed = None
        self.state, self.alpha, self.since_epoch = SeedState.CULLED, 0.0, epoch

    @property
    def active(self) -> bool:
        """Germinated and not yet decided: the phase in which the host stays frozen."""
        return self.state in (SeedState.TRAINING, SeedState.BLENDING)

    def seed_params(self) -> int:
        return 0 if self.seed is None else blueprints.parameter_count(self.seed)

    def forward(self, h: torch.Tensor, ablate: bool = False) -> torch.Tensor:
        seed = self.seed
        if seed is None or ablate or self.state in (SeedState.DORMANT, SeedState.CULLED):
            return h
        if self.state is SeedState.TRAINING:
            # Shadow training: the seed sees the host's activations detached; the live (eval) model is
            # the host alone until blending starts.
            return h + seed(h.detach()) if self.training else h
        if self.state is SeedState.BLENDING:
            return h + self.alpha * seed(h.detach())  # type: ignore[no-any-return]
        return h + seed(h)  # type: ignore[no-any-return]
