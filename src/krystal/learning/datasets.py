"""Seeded 2-D classification tasks of the roadmap: two spirals, moons and clusters (NumPy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TASKS = ("spirals", "moons", "clusters")


@dataclass(frozen=True)
class Split:
    x: NDArray[np.float32]  # (n, features)
    y: NDArray[np.int64]  # (n,) class index


@dataclass(frozen=True)
class Task:
    """A generated task: train, validation (drives the controller) and test (reported only) splits."""

    name: str
    classes: int
    train: Split
    val: Split
    test: Split

    @property
    def features(self) -> int:
        return int(self.train.x.shape[1])


def spirals(rng: np.random.Generator, n: int, noise: float = 0.15, turns: float = 1.75) -> Split:
    """Two interleaved Archimedean spirals, n points in all."""
    half = n // 2
    t = np.sqrt(rng.uniform(0, 1, (2, half))) * turns * 2 * np.pi
    arms = []
    for k in range(2):
        r = t[k] / (turns * 2 * np.pi)
        phase = t[k] + k * np.pi
        arms.append(np.stack([r * np.cos(phase), r * np.sin(phase)], axis=1))
    x = np.concatenate(arms) * 2.0 + rng.normal(0, noise * 0.5, (2 * half, 2))
    y = np.repeat(np.arange(2), half)
    return _shuffled(rng, x, y)


def moons(rng: np.random.Generator, n: int, noise: float = 0.2) -> Split:
    """Two interleaved half circles (scikit-learn's make_moons shape)."""
    half = n // 2
    a, b = rng.uniform(0, np.pi, half), rng.uniform(0, np.pi, half)
    upper = np.stack([np.cos(a), np.sin(a)], axis=1)
    lower = np.stack([1 - np.cos(b), 0.5 - np.sin(b)], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(0, noise, (2 * half, 2))
    return _shuffled(rng, x - np.array([0.5, 0.25]), np.repeat(np.arange(2), half))


def clusters(
    rng: np.random.Generator, n: int, classes: int = 4, per_class: int = 3, spread: float = 0.35
) -> Split:
    """Gaussian blobs, `per_class` of them per class at random centres: not linearly separable."""
    centres = rng.uniform(-2.5, 2.5, (classes * per_class, 2))
    owner = np.arange(classes * per_class) % classes
    which = rng.integers(0, len(centres), n)
    x = centres[which] + rng.normal(0, spread, (n, 2))
    return _shuffled(rng, x, owner[which])


def _shuffled(rng: np.random.Generator, x: NDArray[np.float64], y: NDArray[np.int64]) -> Split:
    order = rng.permutation(len(x))
    return Split(x[order].astype(np.float32), y[order].astype(np.int64))


def make_task(name: str, seed: int = 0, n_train: int = 800, n_val: int = 400, n_test: int = 800) -> Task:
    """The task `name` (one of TASKS), every split drawn from one generator seeded with `seed`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: one of {', '.join(TASKS)}")
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    total = spirals(rng, n) if name == "spirals" else moons(rng, n) if name == "moons" else clusters(rng, n)
    cut = np.cumsum([n_train, n_val])
    parts = [Split(x, y) for x, y in zip(np.split(total.x, cut), np.split(total.y, cut), strict=True)]
    train, val, test = parts
    return Task(name, int(total.y.max()) + 1, train, val, test)
