"""temporal_solver cores against their anchors, measured in the same run.

Monitor: our online monitor per sample against rtamt's online monitor (discrete time, bounded
future rewritten to past by rtamt) and Reelay's robustness monitor on the past-time specs it can
express. DTW: SPRING per sample and batch subsequence search against dtaidistance's C code.
`until` at windows of 10 to 10,000 samples: flat cost (anchor: ours at 10 samples, and rtamt where
it finishes). Lyapunov: our Rosenstein estimate against nolds' lyap_r with the same (tuned)
parameters. Chaos table: our three-criteria chaos test on chaotic, noisy, periodic and
quasi-periodic signals, with nolds' lyap_r (and what a positive exponent alone would say) beside it.
`--quick` is a smoke run (fewer samples, one repeat) that finishes in a few seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
import warnings

import numpy as np

from bench.chaos_signals import CHAOTIC, signals
from bench.common import emit, time_ms
from krystal.temporal import chaos, dtw
from krystal.temporal.monitor import Monitor
from krystal.temporal.spec import parse

# (case, our text, rtamt text, reelay text or None); bounds in samples (1 s sampling)
MONITOR_CASES = [
    ("predicate", "a.x < 0.5", "x < 0.5", "{x < 0.5}"),
    (
        "historically[0:500]",
        "historically[0:500](a.x < 0.9)",
        "historically[0:500](x < 0.9)",
        "historically[0:500]{x < 0.9}",
    ),
    ("once[0:500]", "once[0:500](a.x > 0.9)", "once[0:500](x > 0.9)", "once[0:500]{x > 0.9}"),
    (
        "since[0:100]",
        "(a.x < 0.95) since[0:100] (a.y > 0.9)",
        "(x < 0.95) since[0:100] (y > 0.9)",
        "{x < 0.95} since[0:100] {y > 0.9}",
    ),
    ("always[0:500]", "always[0:500](a.x < 0.9)", "always[0:500](x < 0.9)", None),
    ("eventually[0:500]", "eventually[0:500](a.x > 0.9)", "eventually[0:500](x > 0.9)", None),
    ("until[0:50]", "(a.x < 0.95) until[0:50] (a.y > 0.9)", "(x < 0.95) until[0:50] (y > 0.9)", None),
    (
        "p->eventually[0:50]q",
        "(a.x > 0.5) -> eventually[0:50](a.y > 0.9)",
        "(x > 0.5) -> eventually[0:50](y > 0.9)",
        None,
    ),
]


def _ours_us(text: str, xs: list[float], ys: list[float], repeat: int) -> float:
    rows = [[x, y] for x, y in zip(xs, ys, strict=False)]
    best = math.inf
    for _ in range(repeat):
        mon = Monitor(parse(text), ["a.x", "a.y"])
        up = mon.update
        t0 = time.perf_counter()
        for i, row in enumerate(rows):
            up(i * 1_000_000_000, row)
        best = min(best, (time.perf_counter() - t0) / len(rows) * 1e6)
    return best


def _rtamt_us(text: str, xs: list[float], ys: list[float], warmup: int) -> float:
    """Per sample over the samples after `warmup` (once the window is full: rtamt's cost grows
    with the samples inside it)."""
    import rtamt

    spec = rtamt.StlDiscreteTimeSpecification()
    spec.declare_var("x", "float")
    spec.declare_var("y", "float")
    spec.spec = text
    spec.parse()
    if any(op in text for op in ("always", "eventually", "until")):
        spec.pastify()  # rtamt's online monitor rewrites bounded future to past time
    for i in range(warmup):
        spec.update(i, [("x", xs[i]), ("y", ys[i])])
    t0 = time.perf_counter()
    for i in range(warmup, len(xs)):
        spec.update(i, [("x", xs[i]), ("y", ys[i])])
    return (time.perf_counter() - t0) / (len(xs) - warmup) * 1e6


def _reelay_us(text: str, xs: list[float], ys: list[float], repeat: int) -> float:
    import reelay

    best = math.inf
    for _ in range(repeat):
        mon = reelay.discrete_timed_monitor(pattern=text, semantics="robustness", condense=False)
        up = mon.update
        t0 = time.perf_counter()
        for x, y in zip(xs, ys, strict=False):
            up({"x": x, "y": y})
        best = min(best, (time.perf_counter() - t0) / len(xs) * 1e6)
    return best


def _window(case: str) -> int:
    """The case's bound in samples (0 for a predicate)."""
    return int(case.partition(":")[2].partition("]")[0]) if ":" in case else 0


def bench_monitor(quick: bool) -> None:
    rng = random.Random(0)
    # quick: a smoke run (fewer samples, one repeat); the figures in docs/temporal.md are full runs
    n, timed_rtamt, repeat = (3000, 100, 1) if quick else (100000, 5000, 3)
    xs = [rng.random() for _ in range(n)]
    ys = [rng.random() for _ in range(n)]
    for case, ours_text, rtamt_text, reelay_text in MONITOR_CASES:
        ours = _ours_us(ours_text, xs, ys, repeat)
        w = _window(case)
        rt = _rtamt_us(rtamt_text, xs[: w + timed_rtamt], ys[: w + timed_rtamt], w)
        emit("temporal", f"monitor {case}", ours, rt, "us/sample", anchor_name="rtamt online (discrete time)")
        if reelay_text is not None:
            re = _reelay_us(reelay_text, xs, ys, repeat)
            emit("temporal", f"monitor {case}", ours, re, "us/sample", anchor_name="reelay robustness (C++)")


def bench_until(quick: bool) -> None:
    """`left until[0:W] right` in the ordinary case (left true, right rarely), W = 10 .. 10,000
    samples on a 10 ms grid at ROS-sized stamps: the cost per sample stays flat."""
    rng = random.Random(1)
    windows = (10, 100, 1000, 10000)
    n = 12000 if quick else 60000
    xs = [rng.uniform(-1, 1) for _ in range(n)]
    ys = [rng.uniform(-1, 1) for _ in range(n)]
    t0 = 1_700_000_000 * 10**9
    costs: dict[int, float] = {}
    for w in windows:
        f = parse(f"(a.x > -2) until[0:{w * 10}ms] (a.y > 0.999)")
        best = math.inf
        for _ in range(1 if quick else 3):
            mon = Monitor(f, ["a.x", "a.y"])
            up = mon.update
            start = time.perf_counter()
            for i in range(n):
                up(t0 + i * 10_000_000, [xs[i], ys[i]])
            best = min(best, (time.perf_counter() - start) / n * 1e6)
        costs[w] = best
    for w in windows:
        emit(
            "temporal",
            f"monitor until[0:{w}] (window {w} samples)",
            costs[w],
            costs[windows[0]],
            "us/sample",
            anchor_name="ours at a 10-sample window (flat cost: ratio near 1)",
        )
    for w in windows[:1] if quick else windows[:3]:  # rtamt's cost grows with the window
        text = f"(x > -2) until[0:{w}] (y > 0.999)"
        rt = _rtamt_us(text, xs[: w + 200], ys[: w + 200], w)
        emit(
            "temporal",
            f"monitor until[0:{w}] (window {w} samples)",
            costs[w],
            rt,
            "us/sample",
            anchor_name="rtamt online (discrete time)",
        )


def bench_chaos_table(quick: bool) -> None:
    """Each signal of bench/chaos_signals.py: our verdict and exponent, nolds' exponent and the
    verdict of its sign alone; time for ours (the whole test) against nolds' lyap_r."""
    import nolds

    n = 512 if quick else 2000
    for name, x in signals(n, 0).items():
        v = chaos.chaos_test(x)
        est: list[float] = []

        def ours(x: chaos.F64 = x) -> None:
            chaos.chaos_test(x)

        def theirs(x: chaos.F64 = x, est: list[float] = est) -> None:
            est.append(float(nolds.lyap_r(x, emb_dim=2, lag=1, min_tsep=10, trajectory_len=8, fit="poly")))

        o, _ = time_ms(ours, repeat=1 if quick else 3, warmup=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t, _ = time_ms(theirs, repeat=1 if quick else 3, warmup=0)
        emit(
            "temporal",
            f"chaos table: {name} ({n} samples)",
            o,
            t,
            "ms",
            anchor_name="nolds lyap_r (tuned)",
            chaotic_truth=name in CHAOTIC,
            ours_flag=v.chaotic,
            ours_exponent=round(v.exponent_per_sample, 4),
            ours_k=round(v.k, 3),
            ours_error_ratio=round(v.prediction_error / v.surrogate_error_min, 3)
            if v.surrogate_error_min > 0
            else None,
            nolds_exponent=round(est[0], 4),
            nolds_flag_by_sign=est[0] > 0.01,
        )


def bench_dtw(quick: bool) -> None:
    from dtaidistance import dtw as dd
    from dtaidistance.subsequence.dtw import subsequence_alignment

    rng = np.random.default_rng(0)
    q, x = rng.normal(size=100), rng.normal(size=10000)

    def theirs() -> float:
        return float(subsequence_alignment(q, x, penalty=0.0, use_c=True).best_match().distance)

    def ours() -> float:
        return dtw.search(q, x, normalize=False).distance

    assert abs(ours() - theirs()) < 1e-6
    repeat = 3 if quick else 10
    o, _ = time_ms(ours, repeat=repeat, warmup=1)
    t, _ = time_ms(theirs, repeat=repeat, warmup=1)
    emit(
        "temporal",
        "dtw subsequence 100 in 10000 (batch)",
        o,
        t,
        "ms",
        anchor_name="dtaidistance subsequence_alignment (C)",
    )
    dtw.Spring(q, threshold=0.0).push(0.0)  # load the compiled kernels outside the timing
    dtw.WindowMatcher(q, threshold=0.0).push(0.0)
    n = 5000 if quick else 10000
    values = [float(v) for v in x[:n]]
    per = math.inf
    for _ in range(repeat):
        push = dtw.Spring(q, threshold=0.0).push
        t0 = time.perf_counter()
        for v in values:
            push(v)
        per = min(per, (time.perf_counter() - t0) / n * 1e6)
    batch_per_sample = t * 1e3 / len(x)
    emit(
        "temporal",
        "dtw streaming SPRING, query 100, one sample per call",
        per,
        batch_per_sample,
        "us/sample",
        anchor_name="dtaidistance subsequence_alignment (C, batch) per sample",
    )
    block = x[:n]
    o, _ = time_ms(lambda: dtw.Spring(q, threshold=0.0).extend(block), repeat=repeat, warmup=1)
    emit(
        "temporal",
        "dtw streaming SPRING, query 100, a block per call",
        o * 1e3 / n,
        batch_per_sample,
        "us/sample",
        anchor_name="dtaidistance subsequence_alignment (C, batch) per sample",
    )
    # the node's pattern search: every window z-normalised on its own, banded DTW (band 10)
    zq = dtw.znorm(q)
    k = 300 if quick else 2000
    t0 = time.perf_counter()
    for j in range(k):
        dd.distance_fast(zq, dtw.znorm(x[j : j + 100]), window=11)
    theirs_window = (time.perf_counter() - t0) / k * 1e6
    for threshold, what in ((math.inf, "no match possible to abandon"), (5.0, "threshold 5")):
        per = math.inf
        for _ in range(repeat):
            push = dtw.WindowMatcher(q, threshold, band=10).push
            t0 = time.perf_counter()
            for v in values[: k * 3]:
                push(v)
            per = min(per, (time.perf_counter() - t0) / (k * 3) * 1e6)
        emit(
            "temporal",
            f"dtw z-normalised sliding window, query 100, band 10 ({what})",
            per,
            theirs_window,
            "us/sample",
            anchor_name="dtaidistance distance_fast (C) on each z-normalised window",
        )
    a, b = rng.normal(size=1000), rng.normal(size=1000)
    o, _ = time_ms(lambda: dtw.distance(a, b), repeat=repeat, warmup=1)
    t, _ = time_ms(lambda: dd.distance_fast(a, b), repeat=repeat, warmup=1)
    emit("temporal", "dtw pairwise 1000x1000", o, t, "ms", anchor_name="dtaidistance distance_fast (C)")


def bench_lyapunov(quick: bool) -> None:
    import nolds

    x = np.empty(2000)
    x[0] = 0.1234
    for i in range(1, 2000):
        x[i] = 4 * x[i - 1] * (1 - x[i - 1])
    params = dict(emb_dim=2, lag=1, min_tsep=10, trajectory_len=8)
    repeat, warm = (1, 0) if quick else (10, 1)
    ours_est = chaos.lyapunov_r(x, dim=2, lag=1, min_tsep=10, trajectory_len=8).exponent_per_sample
    o, _ = time_ms(
        lambda: chaos.lyapunov_r(x, dim=2, lag=1, min_tsep=10, trajectory_len=8), repeat=repeat, warmup=warm
    )
    theirs: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t, _ = time_ms(
            lambda: theirs.append(float(nolds.lyap_r(x, fit="poly", **params))),  # type: ignore[arg-type]
            repeat=repeat,
            warmup=warm,
        )
    theirs_est = theirs[0]
    emit(
        "temporal",
        "lyapunov logistic r=4, 2000 samples",
        o,
        t,
        "ms",
        anchor_name="nolds lyap_r (tuned)",
        ours_estimate=round(ours_est, 4),
        anchor_estimate=round(theirs_est, 4),
        truth=round(math.log(2), 4),
    )
    g, _ = time_ms(lambda: chaos.chaos_test(x), repeat=repeat, warmup=warm)
    emit(
        "temporal",
        "chaos test with 9 surrogates, 2000 samples",
        g,
        t,
        "ms",
        anchor_name="nolds lyap_r (tuned, no gate)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats (a few seconds)")
    args = parser.parse_args(argv)
    print(f"# load average {os.getloadavg()}", file=sys.stderr)
    bench_monitor(args.quick)
    bench_until(args.quick)
    bench_dtw(args.quick)
    bench_lyapunov(args.quick)
    bench_chaos_table(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
