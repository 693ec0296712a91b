"""Adaptive policy: tabular double Q-learning over a discretized context, epsilon-greedy with a
decaying epsilon. The rules bound it: it only ever picks among the levels they allow."""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from krystal.reasoning.context import Context


@dataclass(frozen=True)
class TdConfig:
    alpha: float = 0.2  # learning rate
    gamma: float = 0.5  # discount: a style's worth shows within a few epochs
    epsilon_start: float = 0.3
    epsilon_end: float = 0.02
    epsilon_decay_steps: int = 500  # linear schedule from start to end over this many steps
    w_budget: float = 1.0  # reward weights: budget met, quality, context fit, switching cost
    w_quality: float = 0.5
    w_fit: float = 0.3
    w_switch: float = 0.2
    optimism: float = 3.0  # initial value per table: every allowed style gets tried before it is judged


def state_of(ctx: Context, load_factor: float, family: str, hot: bool) -> str:
    """A small discrete state: load bin (how much slower than the learned cost), tempo, heat."""
    if not math.isfinite(load_factor):
        load = "u"
    else:
        load = str(sum(load_factor > b for b in (1.25, 1.75, 2.5, 4.0)))
    return f"{family}:{'hot' if hot else 'cool'}:{load}"


def reward(config: TdConfig, budget_met_ratio: float, quality: float, fit: float, switched: bool) -> float:
    return (
        config.w_budget * (2.0 * budget_met_ratio - 1.0)
        + config.w_quality * quality
        + config.w_fit * fit
        - (config.w_switch if switched else 0.0)
    )


class DoubleQ:
    """Two tables Q_A, Q_B: one picks the best next action, the other values it (van Hasselt 2010)."""

    def __init__(self, n_actions: int, config: TdConfig | None = None, seed: int | None = None) -> None:
        self.n = n_actions
        self.config = config or TdConfig()
        self.qa: dict[str, list[float]] = {}
        self.qb: dict[str, list[float]] = {}
        self.steps = 0
        self._rng = random.Random(seed)

    def _row(self, table: dict[str, list[float]], s: str) -> list[float]:
        row = table.get(s)
        if row is None or len(row) != self.n:
            row = table[s] = [self.config.optimism] * self.n
        return row

    @property
    def epsilon(self) -> float:
        c = self.config
        f = min(1.0, self.steps / max(1, c.epsilon_decay_steps))
        return c.epsilon_start + (c.epsilon_end - c.epsilon_start) * f

    def value(self, s: str, a: int) -> float:
        return self._row(self.qa, s)[a] + self._row(self.qb, s)[a]

    def greedy(self, s: str, allowed: Sequence[int]) -> int:
        return max(allowed, key=lambda a: (self.value(s, a), -a))

    def choose(self, s: str, allowed: Sequence[int]) -> tuple[int, bool]:
        """(action, explored)."""
        if not allowed:
            raise ValueError("no allowed action")
        if self._rng.random() < self.epsilon:
            return self._rng.choice(list(allowed)), True
        return self.greedy(s, allowed), False

    def update(self, s: str, a: int, r: float, s2: str, allowed2: Sequence[int]) -> None:
        c = self.config
        upd, other = (self.qa, self.qb) if self._rng.random() < 0.5 else (self.qb, self.qa)
        row2 = self._row(upd, s2)
        best = max(allowed2 or range(self.n), key=lambda b: row2[b])
        target = r + c.gamma * self._row(other, s2)[best]
        row = self._row(upd, s)
        row[a] += c.alpha * (target - row[a])
        self.steps += 1

    def save(self, path: Path) -> None:
        """Atomically (write, fsync, rename): a crash leaves the old table or the new one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        data = json.dumps({"n_actions": self.n, "steps": self.steps, "qa": self.qa, "qb": self.qb})
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, path: Path) -> bool:
        """False (and the table unchanged) when the file is absent, unreadable or for another ladder."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if int(data["n_actions"]) != self.n:
                return False
            qa = {str(k): [float(x) for x in v] for k, v in data["qa"].items()}
            qb = {str(k): [float(x) for x in v] for k, v in data["qb"].items()}
            steps = int(data["steps"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if any(len(v) != self.n for v in (*qa.values(), *qb.values())):
            return False
        self.qa, self.qb, self.steps = qa, qb, steps
        return True
