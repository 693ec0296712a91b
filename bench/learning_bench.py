"""The learned style policy against the rules, the TD policy and a fixed style, on the reasoning
benchmark's trace (60 s at 30 fps, three load steps; never a training trace), in the simulated
renderer; and what a decision costs on one core (onnxruntime, and TorchScript as the anchor).

The model is the shipped one (src/krystal/learning/models/policy.onnx, trained by
`krystal harvest --synthesize 40 --seed 1` + `krystal train policy`), or --model PATH.

    python -m bench.learning_bench [--quick] [--model PATH]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.common import emit
from krystal.learning.policy_eval import closed_loop
from krystal.learning.policy_runtime import LearnedPolicy
from krystal.learning.sim import DURATION_S, FPS, Trace, simulate
from krystal.reasoning.context import Context

SHIPPED = Path(__file__).resolve().parent.parent / "src" / "krystal" / "learning" / "models" / "policy.onnx"


def _one_core() -> str:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    except (AttributeError, OSError):
        return "affinity not settable"


def _median_us(fn: object, windows: list[NDArray[np.float32]], repeat: int) -> float:
    samples = []
    for i in range(repeat):
        w = windows[i % len(windows)]
        t0 = time.perf_counter()
        fn(w)  # type: ignore[operator]
        samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    return samples[len(samples) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 seed, short TD training, fewer timings")
    parser.add_argument("--model", type=Path, default=SHIPPED, help="ONNX policy (default: the shipped one)")
    args = parser.parse_args()
    core = _one_core()
    seeds = (1,) if args.quick else (1, 2, 3, 4, 5)
    results = {r.policy: r for r in closed_loop(args.model, seeds)}
    fixed, learned = results["fixed"], results["learned"]
    one_frame = 1.0 / (DURATION_S * FPS)
    for policy in ("learned", "rules", "rules_td"):
        r = results[policy]
        emit(
            "learning",
            f"over_budget_fraction/{policy}",
            max(r.over_fraction, one_frame),
            fixed.over_fraction,
            "fraction",
            anchor_name="fixed style edges k5 120x45",
            seeds=len(seeds),
        )
        emit(
            "learning",
            f"switches_per_60s/{policy}",
            max(r.switches, 1.0),
            DURATION_S / 5,
            "switches",
            anchor_name="goal: at most one switch per 5 s",
        )
        emit(
            "learning",
            f"mean_quality/{policy}",
            r.quality,
            fixed.quality,
            "quality 0..1",
            lower_is_better=False,
            anchor_name="fixed style edges k5 120x45",
        )
    for policy in ("rules", "rules_td"):
        r = results[policy]
        emit(
            "learning",
            f"learned_vs/{policy}/over_budget_fraction",
            max(learned.over_fraction, one_frame),
            max(r.over_fraction, one_frame),
            "fraction",
            anchor_name=policy,
        )
        emit(
            "learning",
            f"learned_vs/{policy}/mean_quality",
            learned.quality,
            r.quality,
            "quality 0..1",
            lower_is_better=False,
            anchor_name=policy,
        )
    # inference: one decision = one window through the model, on one core
    model = LearnedPolicy(args.model)
    trace_windows: list[NDArray[np.float32]] = []

    class Keep:
        def observe(self, ctx: object, **frame: object) -> None:
            model.observe(ctx, **frame)  # type: ignore[arg-type]  # the Chooser's keywords
            if model.window.full() and len(trace_windows) < 200:
                trace_windows.append(model.window.array())

        def choose(self, *a: object) -> None:
            return None

    simulate("learned", 1, Trace(duration_s=10.0), chooser=Keep())  # type: ignore[arg-type]
    normalized = [np.ascontiguousarray((w - model.mean) / model.std, np.float32) for w in trace_windows]
    normalized = [np.nan_to_num(w) for w in normalized]
    repeat = 200 if args.quick else 2000
    ort_us = _median_us(model.scores, trace_windows, repeat)
    decision_us = learned.choose_us_median
    try:
        from krystal.learning.policy_model import torchscript_scorer

        torch_us = _median_us(torchscript_scorer(args.model.with_suffix(".pt")), normalized, repeat)
        anchor, anchor_name = torch_us, "TorchScript (torch, 1 thread), same windows"
    except ImportError:
        anchor, anchor_name = math.nan, "torch not installed"
    emit(
        "learning",
        "inference_us_per_decision/onnxruntime",
        ort_us,
        anchor,
        "us",
        anchor_name=anchor_name,
        core=core,
    )
    emit(
        "learning",
        "choose_us_per_decision/in_loop",
        decision_us,
        anchor,
        "us",
        anchor_name=anchor_name,
        note="LearnedPolicy.choose in the closed loop",
    )
    frame_us = _median_us(
        lambda _w: model.observe(
            Context(), mode="edges", kernel_size=5, columns=120, rows=45, render_ms=15.0
        ),
        trace_windows,
        repeat,
    )
    emit(
        "learning",
        "observe_us_per_frame",
        frame_us,
        1000.0 / FPS * 1000,
        "us",
        anchor_name="one frame period at 30 fps",
    )


if __name__ == "__main__":
    main()
