"""Closed-loop evaluation of a learned policy in the simulated renderer (no torch): the reasoning
benchmark's held-out trace (never a training trace), against the rules, the TD policy and a fixed
style. Figures: frames over budget, switches, mean quality, inference time per decision."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krystal.learning.policy_runtime import LearnedPolicy
from krystal.learning.sim import LADDERS, Trace, simulate
from krystal.reasoning.context import Context
from krystal.reasoning.styles import Style
from krystal.reasoning.td import DoubleQ, TdConfig

POLICIES = ("fixed", "rules", "rules_td", "learned")


class Timed:
    """A chooser wrapper that measures each choose() call (the per-decision inference cost)."""

    def __init__(self, inner: LearnedPolicy) -> None:
        self.inner = inner
        self.samples_us: list[float] = []

    def observe(
        self, ctx: Context, *, mode: str, kernel_size: int, columns: int, rows: int, render_ms: float
    ) -> None:
        self.inner.observe(
            ctx, mode=mode, kernel_size=kernel_size, columns=columns, rows=rows, render_ms=render_ms
        )

    def choose(
        self, styles: tuple[Style, ...], level: int, allowed: list[int]
    ) -> tuple[int, str, float] | None:
        t0 = time.perf_counter()
        out = self.inner.choose(styles, level, allowed)
        if self.inner.window.full():
            self.samples_us.append((time.perf_counter() - t0) * 1e6)
        return out


@dataclass(frozen=True)
class Result:
    policy: str
    over_fraction: float
    switches: float
    quality: float
    choose_us_median: float  # learned only; NaN otherwise


def trained_td(runs: int) -> DoubleQ:
    """TD trained online over earlier runs of the same trace, then greedy (as bench/reasoning_bench)."""
    q = DoubleQ(max(len(v) for v in LADDERS.values()), TdConfig(epsilon_decay_steps=60 * runs), seed=0)
    for k in range(runs):
        simulate("rules_td", 100 + k, Trace(), q=q)
    q.config = TdConfig(epsilon_start=0.0, epsilon_end=0.0)
    return q


def closed_loop(
    model: Path, seeds: tuple[int, ...] = (1, 2, 3, 4, 5), td_runs: int | None = None
) -> list[Result]:
    q = trained_td(td_runs if td_runs is not None else (3 if len(seeds) == 1 else 20))
    out: list[Result] = []
    for policy in POLICIES:
        runs: list[Any] = []
        us: list[float] = []
        for seed in seeds:
            chooser = Timed(LearnedPolicy(model)) if policy == "learned" else None
            name = "rules_predict" if policy == "rules" else policy
            runs.append(simulate(name, seed, Trace(), q=q if policy == "rules_td" else None, chooser=chooser))
            if chooser is not None:
                us += chooser.samples_us
        us.sort()
        out.append(
            Result(
                policy,
                sum(r.over_fraction for r in runs) / len(runs),
                sum(r.switches for r in runs) / len(runs),
                sum(r.quality for r in runs) / len(runs),
                us[len(us) // 2] if us else float("nan"),
            )
        )
    return out


def format_table(results: list[Result]) -> str:
    lines = ["  policy     over budget  switches/60s  quality  choose us"]
    for r in results:
        lines.append(
            f"  {r.policy:10} {r.over_fraction:10.2%}  {r.switches:12.1f}  {r.quality:7.3f}"
            f"  {r.choose_us_median:9.0f}"
        )
    return "\n".join(lines)
