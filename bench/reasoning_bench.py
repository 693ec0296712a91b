"""Reasoning policies on one replayed load trace, in a simulated renderer-cost model.

Each policy (a fixed style: what a user has today; rules only; rules + prediction; rules + TD)
sees the same 60 s trace at 30 fps with load steps (one the CPU-use input shows, one ramp, one it
does not show). Per-style costs are this project's measured render times (README, 160x45 scaled to
the grid) on a machine 8x slower than the development box, so the styles straddle the 33 ms budget.
Figures: fraction of frames over budget, switches in 60 s, time from the first over-budget frame of
a load step to the decision (0 when prediction acted before any frame was over).

    python -m bench.reasoning_bench [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import dataclass

from bench.common import emit
from krystal.learning.sim import BENCH_STEPS, BUDGET_MS, DURATION_S, FPS, LADDERS, Trace, cost_ms
from krystal.learning.sim import load_at as sim_load_at
from krystal.reasoning.context import Context
from krystal.reasoning.policy import Reasoner, ReasonerConfig
from krystal.reasoning.rules import RuleConfig
from krystal.reasoning.styles import quality
from krystal.reasoning.td import DoubleQ, TdConfig

# the simulated renderer and its trace live in krystal.learning.sim (the learning pipeline
# synthesizes its data there); this bench keeps its own figures of reaction time
STEPS = tuple((start, end, kind) for start, end, kind, _ in BENCH_STEPS)


def load_at(t: float) -> tuple[float, float]:
    """(cost multiplier, CPU use the node would see) at time t on the benchmark's trace."""
    return sim_load_at(Trace(), t)


@dataclass(frozen=True)
class Run:
    over_fraction: float
    switches: int
    reaction_ms: float  # mean over load steps
    reactions_ms: tuple[float, ...]  # per load step
    preempted: int  # load steps where a decision came before any over-budget frame
    quality: float  # mean per-frame quality of the styles rendered (styles.quality)


def run(policy: str, seed: int, q: DoubleQ | None = None) -> Run:
    rng = random.Random(seed)
    fixed = policy == "fixed"
    cfg = ReasonerConfig(
        rules=RuleConfig(budget_ms=BUDGET_MS, predict=policy in ("rules_predict", "rules_td")),
        policy="rules_td" if policy == "rules_td" else "rules",
    )
    r = Reasoner(cfg, LADDERS, q=q)
    n = int(DURATION_S * FPS)
    over = switches = 0
    quality_sum = 0.0
    base_cells = LADDERS["calm"][0].cells
    decisions: list[float] = []
    over_times: list[float] = []
    style = LADDERS["calm"][0]
    for i in range(n):
        t = i / FPS
        mult, cpu = load_at(t)
        if not fixed:
            d = r.step(t, Context(cpu_ratio=cpu, audio_tempo_bpm=math.nan))
            if d is not None and d.rule != "start":
                switches += 1
                decisions.append(t)
            style = r.rules.style
        ms = cost_ms(style, mult, rng)
        quality_sum += quality(style, base_cells)
        if ms > BUDGET_MS:
            over += 1
            over_times.append(t)
        if not fixed:
            r.frame(
                t,
                mode=style.mode,
                kernel_size=style.kernel_size,
                columns=style.columns,
                rows=style.rows,
                render_ms=ms,
            )
    reactions: list[float] = []
    preempted = 0
    for start, end, _ in STEPS:
        early = [d for d in decisions if start <= d < end]
        first_over = next((x for x in over_times if start <= x < end), None)
        if first_over is None:
            preempted += bool(early)
            reactions.append(0.0)
            continue
        if any(d <= first_over for d in early):
            preempted += 1
            reactions.append(0.0)
            continue
        after = next((d for d in decisions if d > first_over), None)
        reactions.append((after - first_over) * 1e3 if after is not None else math.inf)
    return Run(
        over / n, switches, sum(reactions) / len(reactions), tuple(reactions), preempted, quality_sum / n
    )


def _emit(case: str, ours: float, anchor: float, unit: str, floor: float, **extra: object) -> None:
    """emit, with the ratio taken against `floor` when ours is 0 (JSON has no Infinity)."""
    if ours > 0:
        emit("reasoning", case, ours, anchor, unit, **extra)  # type: ignore[arg-type]
        return
    print(
        json.dumps(
            {
                "bench": "reasoning",
                "case": case,
                "ours": 0.0,
                "anchor": round(anchor, 4),
                "ratio": round(anchor / floor, 3),
                "unit": unit,
                "ratio_against": floor,
                **extra,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 seed, short TD training (< 20 s)")
    args = parser.parse_args()
    seeds = [1] if args.quick else [1, 2, 3, 4, 5]
    train_runs = 3 if args.quick else 20
    n_actions = max(len(v) for v in LADDERS.values())
    q = DoubleQ(n_actions, TdConfig(epsilon_decay_steps=60 * train_runs), seed=0)
    for k in range(train_runs):  # TD learns online over earlier runs of the same kind of day
        run("rules_td", 100 + k, q)
    q.config = TdConfig(epsilon_start=0.0, epsilon_end=0.0)  # evaluation: greedy
    results: dict[str, list[Run]] = {p: [] for p in ("fixed", "rules", "rules_predict", "rules_td")}
    for seed in seeds:
        for policy, runs in results.items():
            runs.append(run(policy, seed, q if policy == "rules_td" else None))

    def mean(policy: str, field: str) -> float:
        return float(sum(getattr(x, field) for x in results[policy])) / len(results[policy])

    fixed_over = mean("fixed", "over_fraction")
    rules_reaction = mean("rules", "reaction_ms")
    one_frame = 1.0 / (DURATION_S * FPS)
    fixed_quality = mean("fixed", "quality")
    for policy in ("rules", "rules_predict", "rules_td"):
        _emit(
            f"over_budget_fraction/{policy}",
            mean(policy, "over_fraction"),
            fixed_over,
            "fraction",
            one_frame,
            anchor_name="fixed style edges k5 120x45",
            seeds=len(seeds),
        )
        _emit(
            f"switches_per_60s/{policy}",
            mean(policy, "switches"),
            DURATION_S / 5.0,
            "switches",
            1.0,
            anchor_name="goal: at most one switch per 5 s",
        )
        per_step = [
            round(sum(x.reactions_ms[i] for x in results[policy]) / len(seeds), 1) for i in range(len(STEPS))
        ]
        _emit(
            f"reaction_ms/{policy}",
            mean(policy, "reaction_ms"),
            rules_reaction,
            "ms",
            1000.0 / FPS,
            anchor_name="rules only (measured)",
            preempted_steps=mean(policy, "preempted"),
            per_step_ms=per_step,
            steps="visible, ramp, hidden",
        )
    for policy in ("rules", "rules_predict", "rules_td"):
        _emit(
            f"mean_quality/{policy}",
            mean(policy, "quality"),
            fixed_quality,
            "quality 0..1",
            1.0,
            lower_is_better=False,
            anchor_name=f"fixed style edges k5 120x45 (over budget in {fixed_over:.0%} of frames)",
        )
    _emit(
        "over_budget_fraction/fixed",
        fixed_over,
        fixed_over,
        "fraction",
        one_frame,
        anchor_name="fixed style edges k5 120x45",
    )


if __name__ == "__main__":
    main()
