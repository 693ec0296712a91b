"""The growth loop: a small host with dormant seed slots, trained while a controller germinates
seeds, each trained in isolation, blended in and fossilized or culled by its measured effect.

The loop drives any `SlottedHost` through a `Fit` (its task's batch loss and held-out metric):
`SeededMLP` on the generated 2-D tasks here, the seeded style policy in kasmina/policy.py.

Seeded and bit-for-bit reproducible: one thread, deterministic algorithms, every random draw from
generators seeded by GrowthConfig.seed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from krystal.learning.datasets import Split, Task
from krystal.learning.kasmina.controller import Controller, ControllerView, HeuristicController, SlotView
from krystal.learning.kasmina.seeds import EventLog, SeedEvent, SeedSlot, SeedState


class SlottedHost(nn.Module):
    """What the loop grows: a host with seed slots, the gradient of the layer feeding each slot, and
    its own parameters (`own_parameters`, the subclass's); forward takes `ablate`, slots to skip."""

    slots: nn.ModuleList

    def slot(self, index: int) -> SeedSlot:
        s = self.slots[index]
        assert isinstance(s, SeedSlot)
        return s

    def region_grad(self, index: int) -> float:
        """Gradient norm of the host layer feeding slot `index`, from the last backward pass."""
        raise NotImplementedError

    def own_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def host_parameters(self) -> list[nn.Parameter]:
        """The host's own parameters and those of fossilized seeds."""
        params = self.own_parameters()
        for s in self.slots:
            assert isinstance(s, SeedSlot)
            if s.state is SeedState.FOSSILIZED and s.seed is not None:
                params.extend(s.seed.parameters())
        return params

    def live_parameters(self) -> int:
        """Parameters of the model as deployed: host plus fossilized seeds (dormant slots cost nothing)."""
        return sum(p.numel() for p in self.host_parameters())


class SeededMLP(SlottedHost):
    """in -> width (ReLU) x depth -> classes, a seed slot after each of the first `slots` hidden layers."""

    def __init__(self, n_in: int, width: int, classes: int, depth: int = 2, slots: int = 2) -> None:
        super().__init__()
        if not 0 <= slots <= depth:
            raise ValueError(f"slots must be within 0..depth ({depth}), got {slots}")
        self.layers = nn.ModuleList([nn.Linear(n_in if i == 0 else width, width) for i in range(depth)])
        self.slots = nn.ModuleList([SeedSlot(i, width) for i in range(slots)])
        self.head = nn.Linear(width, classes)

    def layer(self, index: int) -> nn.Linear:
        layer = self.layers[index]
        assert isinstance(layer, nn.Linear)
        return layer

    def forward(self, x: torch.Tensor, ablate: frozenset[int] = frozenset()) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = torch.relu(layer(h))
            if i < len(self.slots):
                h = self.slot(i)(h, ablate=i in ablate)
        return self.head(h)  # type: ignore[no-any-return]

    def region_grad(self, index: int) -> float:
        g = self.layer(index).weight.grad
        return 0.0 if g is None else float(g.norm())

    def own_parameters(self) -> list[nn.Parameter]:
        return [*self.layers.parameters(), *self.head.parameters()]


class Fit(Protocol):
    """A task as the loop sees it: the loss of a training batch (indices into the training set) and
    (loss, metric) on the validation or test split, `ablate` naming slots to skip."""

    @property
    def n_train(self) -> int: ...
    def batch_loss(self, model: SlottedHost, idx: torch.Tensor) -> torch.Tensor: ...
    def evaluate(
        self, model: SlottedHost, split: str, ablate: frozenset[int] = frozenset()
    ) -> tuple[float, float]: ...


@dataclass(frozen=True)
class GrowthConfig:
    """Everything a run depends on; `grow=False` trains the same host as a fixed model."""

    seed: int = 0
    width: int = 8
    depth: int = 2
    slots: int = 2
    max_seeds: int = 2
    blueprint: str = "mlp"
    grow: bool = True
    epochs: int = 120
    batch: int = 64
    lr: float = 0.01
    seed_lr: float = 0.01
    train_epochs: int = 10  # a seed's isolated training phase
    blend_epochs: int = 5  # alpha ramp 0 -> 1
    min_effect: float = 0.02  # relative val-loss improvement a seed must bring to be fossilized
    patience: int = 6
    min_delta: float = 0.02
    warmup: int = 10


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    params: int
    alphas: tuple[float, ...]
    states: tuple[str, ...]


class Callbacks(Protocol):
    """What a tracker sees of a run (tracking.py implements Rich, TensorBoard and MLflow)."""

    def on_start(self, config: GrowthConfig, model: SeededMLP, task: Task) -> None: ...
    def on_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None: ...
    def on_epoch(self, stats: EpochStats, model: SeededMLP) -> None: ...
    def on_event(self, event: SeedEvent) -> None: ...
    def on_end(self, result: GrowthResult[SeededMLP]) -> None: ...


class Stop(Exception):
    """Raised by a callback to end a run early (a pruned search trial)."""


H = TypeVar("H", bound=SlottedHost)


@dataclass
class GrowthResult(Generic[H]):
    config: GrowthConfig
    model: H
    history: list[EpochStats]
    events: list[SeedEvent]
    test_accuracy: float
    test_loss: float
    params: int
    digest: str = field(default="")  # sha256 of the final weights: equal digests, equal runs


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """One thread, deterministic kernels and a seeded global generator for the block."""
    threads, was = torch.get_num_threads(), torch.get_deterministic_debug_mode()
    torch.set_num_threads(1)
    # The same switch as use_deterministic_algorithms(True) for eager code, without its 10 s import
    # of the inductor compiler (which only needs to know for compiled graphs, unused here).
    torch.set_deterministic_debug_mode("error")
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_deterministic_debug_mode(was)


def weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def evaluate(model: SeededMLP, split: Split, ablate: frozenset[int] = frozenset()) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the live model on a split."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(split.x), ablate)
        y = torch.from_numpy(split.y)
        loss = float(nn.functional.cross_entropy(logits, y))
        return loss, float((logits.argmax(dim=1) == y).float().mean())


@dataclass(frozen=True)
class Classify:
    """The 2-D tasks' Fit: cross-entropy, and accuracy as the metric."""

    task: Task

    @property
    def n_train(self) -> int:
        return len(self.task.train.x)

    def batch_loss(self, model: SlottedHost, idx: torch.Tensor) -> torch.Tensor:
        x, y = torch.from_numpy(self.task.train.x), torch.from_numpy(self.task.train.y)
        return nn.functional.cross_entropy(model(x[idx]), y[idx])

    def evaluate(
        self, model: SlottedHost, split: str, ablate: frozenset[int] = frozenset()
    ) -> tuple[float, float]:
        assert isinstance(model, SeededMLP)
        return evaluate(model, self.task.val if split == "val" else self.task.test, ablate)


class Hooks(Protocol):
    """What the loop itself reports (Callbacks bound to their model, for SeededMLP runs)."""

    def on_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None: ...
    def on_epoch(self, stats: EpochStats) -> None: ...
    def on_event(self, event: SeedEvent) -> None: ...


@dataclass(frozen=True)
class _Bound:
    cb: Callbacks
    model: SeededMLP

    def on_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        self.cb.on_batch(epoch, batch, batches, loss)

    def on_epoch(self, stats: EpochStats) -> None:
        self.cb.on_epoch(stats, self.model)

    def on_event(self, event: SeedEvent) -> None:
        self.cb.on_event(event)


def _set_host_trainable(model: SlottedHost, trainable: bool) -> None:
    for p in model.host_parameters():
        p.requires_grad_(trainable)


def grow(
    task: Task,
    config: GrowthConfig,
    controller: Controller | None = None,
    callbacks: Callbacks | None = None,
    events_path: Path | None = None,
) -> GrowthResult[SeededMLP]:
    """Train the host on `task`, growing seeds as `controller` (default: heuristic) decides."""
    with deterministic(config.seed):
        c = config
        model = SeededMLP(task.features, c.width, task.classes, c.depth, c.slots if c.grow else 0)
        log = EventLog(events_path)
        if callbacks:
            callbacks.on_start(c, model, task)
        fit = Classify(task)
        history = train_growing(
            model, fit, c, controller, log=log, cb=_Bound(callbacks, model) if callbacks else None
        )
        result = tested(model, fit, c, history, log)
        if callbacks:
            callbacks.on_end(result)
        return result


def tested(model: H, fit: Fit, c: GrowthConfig, history: list[EpochStats], log: EventLog) -> GrowthResult[H]:
    """A finished run's result: its test loss and metric, live parameters and weights digest."""
    test_loss, test_acc = fit.evaluate(model, "test")
    return GrowthResult(
        c,
        model,
        history,
        list(log.events),
        test_acc,
        test_loss,
        model.live_parameters(),
        weights_digest(model),
    )


def train_growing(
    model: SlottedHost,
    fit: Fit,
    c: GrowthConfig,
    controller: Controller | None,
    *,
    log: EventLog,
    cb: Hooks | None = None,
) -> list[EpochStats]:
    """The loop itself, on any host and task: `c.epochs` epochs of host (or, while a seed is active,
    seed) training; returns the per-epoch stats, the events in `log` (closed at the end)."""
    if controller is None:
        controller = HeuristicController(c.blueprint, c.patience, c.min_delta, c.warmup)
    host_opt = torch.optim.Adam(model.host_parameters(), lr=c.lr)
    seed_opt: torch.optim.Optimizer | None = None
    gen = torch.Generator().manual_seed(c.seed)
    batches = max(1, (fit.n_train + c.batch - 1) // c.batch)
    history: list[EpochStats] = []
    since_decision: list[float] = []
    region: NDArray[np.float64] = np.zeros(len(model.slots))
    seeds_used = 0

    def event(epoch: int, slot: SeedSlot, name: str, val_loss: float, **detail: float) -> None:
        e = SeedEvent(
            epoch, slot.index, name, slot.blueprint, slot.alpha, val_loss, slot.seed_params(), detail
        )
        log.add(e)
        if cb:
            cb.on_event(e)

    try:
        for epoch in range(c.epochs):
            active = next((model.slot(i) for i in range(len(model.slots)) if model.slot(i).active), None)
            if active is not None and active.state is SeedState.BLENDING:
                active.alpha = min(1.0, (epoch - active.since_epoch + 1) / c.blend_epochs)
            model.train()
            order = torch.randperm(fit.n_train, generator=gen)
            total, grads = 0.0, np.zeros(len(model.slots))
            for b in range(batches):
                loss = fit.batch_loss(model, order[b * c.batch : (b + 1) * c.batch])
                opt = seed_opt if active is not None else host_opt
                assert opt is not None
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                if active is None:
                    for i in range(len(model.slots)):
                        grads[i] += model.region_grad(i)
                opt.step()
                total += float(loss.detach())
                if cb:
                    cb.on_batch(epoch, b, batches, float(loss.detach()))
            if active is None:
                region = grads / batches
            val_loss, val_acc = fit.evaluate(model, "val")
            since_decision.append(val_loss)
            if active is not None and active.state is SeedState.TRAINING:
                if epoch - active.since_epoch + 1 >= c.train_epochs:
                    active.start_blending(epoch + 1)
                    event(epoch, active, "blending", val_loss)
            elif active is not None and active.alpha >= 1.0:
                without, _ = fit.evaluate(model, "val", frozenset({active.index}))
                effect = (without - val_loss) / max(without, 1e-12)
                if effect >= c.min_effect:
                    active.fossilize(epoch)
                    assert active.seed is not None
                    host_opt.add_param_group({"params": list(active.seed.parameters())})
                    event(epoch, active, "fossilized", val_loss, effect=effect, without=without)
                else:
                    active.cull(epoch)
                    event(epoch, active, "culled", val_loss, effect=effect, without=without)
                _set_host_trainable(model, True)
                seed_opt, since_decision = None, [val_loss]
            elif active is None and c.grow:
                view = ControllerView(
                    epoch,
                    tuple(since_decision),
                    tuple(
                        SlotView(i, model.slot(i).state, float(region[i])) for i in range(len(model.slots))
                    ),
                    c.max_seeds - seeds_used,
                )
                decision = controller.decide(view)
                if decision is not None:
                    slot = model.slot(decision.slot)
                    slot.germinate(decision.blueprint, epoch + 1)
                    assert slot.seed is not None
                    _set_host_trainable(model, False)
                    seed_opt = torch.optim.Adam(slot.seed.parameters(), lr=c.seed_lr)
                    seeds_used += 1
                    event(epoch, slot, "germinated", val_loss, plateau_best=min(since_decision))
            stats = EpochStats(
                epoch,
                total / batches,
                val_loss,
                val_acc,
                model.live_parameters(),
                tuple(model.slot(i).alpha for i in range(len(model.slots))),
                tuple(model.slot(i).state.value for i in range(len(model.slots))),
            )
            history.append(stats)
            if cb:
                cb.on_epoch(stats)
    finally:
        log.close()
    return history


def fixed(task: Task, config: GrowthConfig, width: int | None = None) -> GrowthResult[SeededMLP]:
    """The same host trained without growth (at `width`, default the config's) for comparison."""
    return grow(task, replace(config, grow=False, width=width or config.width))
