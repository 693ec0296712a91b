"""Kasmina growth and the retrained glyph matcher, beside their anchors measured in the same run.

Growth (spirals, moons, clusters; held-out test split): the grown model against the same small host
trained fixed (anchor: fixed-small; ratio = accuracy ratio) and against a fixed host 4x as wide
(anchor: fixed-large; ratio = accuracy per parameter ratio, and accuracy ratio).
Policy (a synthesized harvest, test recordings held out): the seeded style policy grown with extra
attention heads against the same policy fixed and one with 4x d_model; metric: 'budget met'
accuracy for the rendered style, and the masked policy loss.
Glyphs (held-out images, 100x40 cells, mono): blurred SSIM and edge F1 of the learned kernel with
the pipeline's model against today's shipped matcher and against libchafa (ASCII symbols, fgbg,
work 1). --quick: spirals only on the quick schedule; the glyph rows score the shipped matcher (or
--glyph-model) against libchafa without training; the policy on 4 runs of 30 s.

    python -m bench.kasmina_bench [--quick] [--glyph-model PATH] [--seeds N] [--only-policy|--no-policy]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from bench.chafa_anchor import ChafaRenderer, set_single_thread
from bench.common import emit
from krystal.ascii.atlas import load_atlas
from krystal.learning import glyphs
from krystal.learning.datasets import TASKS
from krystal.learning.kasmina.commands import config_for, task_for
from krystal.learning.kasmina.grow import fixed, grow
from krystal.learning.kasmina.policy import (
    POLICY,
    POLICY_QUICK,
    fixed_policy,
    grow_policy,
    policy_task,
    synthesized_dataset,
)

BENCH = "kasmina"


def growth(task_name: str, quick: bool, seeds: int) -> None:
    grown, small, large = [], [], []
    for seed in range(seeds):
        task, config = task_for(task_name, quick, seed), config_for(quick, seed, "mlp")
        g, s, lg = grow(task, config), fixed(task, config), fixed(task, config, width=4 * config.width)
        grown.append((g.test_accuracy, g.params))
        small.append((s.test_accuracy, s.params))
        large.append((lg.test_accuracy, lg.params))
    _growth_rows(task_name, seeds, grown=grown, small=small, large=large, large_name="fixed host 4x as wide")


def policy_growth(quick: bool, seeds: int) -> None:
    """The seeded style policy (extra attention heads) on a synthesized harvest, split by recording."""
    ds = synthesized_dataset(quick)
    grown, small, large, losses = [], [], [], []
    for seed in range(seeds):
        task = policy_task(ds, seed)
        config = dataclasses.replace(POLICY_QUICK if quick else POLICY, seed=seed)
        g, s = grow_policy(task, config), fixed_policy(task, config)
        lg = fixed_policy(task, config, width=4 * config.width)
        grown.append((g.test_accuracy, g.params))
        small.append((s.test_accuracy, s.params))
        large.append((lg.test_accuracy, lg.params))
        losses.append((g.test_loss, s.test_loss))
    _growth_rows(
        "policy", seeds, grown=grown, small=small, large=large, large_name="fixed policy, d_model 4x"
    )
    emit(
        BENCH,
        f"policy grown vs fixed-small test loss ({seeds} seed{'s' if seeds > 1 else ''})",
        float(np.mean([g for g, _ in losses])),
        float(np.mean([s for _, s in losses])),
        "held-out masked policy loss",
        anchor_name="fixed small policy (same host, no seeds)",
    )


def _growth_rows(
    task_name: str,
    seeds: int,
    *,
    grown: list[tuple[float, int]],
    small: list[tuple[float, int]],
    large: list[tuple[float, int]],
    large_name: str,
) -> None:
    acc = {k: float(np.mean([a for a, _ in v])) for k, v in (("g", grown), ("s", small), ("l", large))}
    par = {k: float(np.mean([p for _, p in v])) for k, v in (("g", grown), ("s", small), ("l", large))}
    n = f"{seeds} seed{'s' if seeds > 1 else ''}"
    emit(
        BENCH,
        f"{task_name} grown vs fixed-small ({n})",
        acc["g"],
        acc["s"],
        "test accuracy",
        lower_is_better=False,
        anchor_name="fixed small host (same width, no seeds)",
        params_ours=par["g"],
        params_anchor=par["s"],
    )
    emit(
        BENCH,
        f"{task_name} grown vs fixed-large ({n})",
        acc["g"],
        acc["l"],
        "test accuracy",
        lower_is_better=False,
        anchor_name=large_name,
        params_ours=par["g"],
        params_anchor=par["l"],
    )
    emit(
        BENCH,
        f"{task_name} grown vs fixed-large per parameter ({n})",
        1000 * acc["g"] / par["g"],
        1000 * acc["l"] / par["l"],
        "test accuracy per 1000 parameters",
        lower_is_better=False,
        anchor_name=large_name,
    )


def glyph_rows(model: Path | None, label: str, columns: int, rows: int, size: int | None) -> None:
    images = glyphs.holdout_images()
    if size:
        images = {k: v[:size, :size] for k, v in images.items()}
    atlas = load_atlas()
    set_single_thread()
    ours = glyphs.evaluate_model(model, images, columns, rows)
    shipped = glyphs.evaluate_model(None, images, columns, rows) if model is not None else None
    for i, (name, frame) in enumerate(images.items()):
        renderer = ChafaRenderer(columns, rows, "fgbg", 1)
        renderer.render(frame)
        chafa_ssim, chafa_f1 = glyphs.mono_quality(renderer.grid().codes, frame, atlas)
        for metric, mine, anchor in (
            ("blurred SSIM", ours[i].ssim, chafa_ssim),
            ("edge F1", ours[i].edge_f1, chafa_f1),
        ):
            if mine == anchor == 0.0:
                continue  # no edge cells in the source: nothing to compare
            emit(
                BENCH,
                f"{name} {label} vs libchafa {metric}",
                mine,
                anchor,
                metric,
                lower_is_better=False,
                anchor_name="libchafa fgbg ASCII work 1",
            )
        if shipped is not None:
            for metric, mine, anchor in (
                ("blurred SSIM", ours[i].ssim, shipped[i].ssim),
                ("edge F1", ours[i].edge_f1, shipped[i].edge_f1),
            ):
                if mine == anchor == 0.0:
                    continue
                emit(
                    BENCH,
                    f"{name} {label} vs shipped matcher {metric}",
                    mine,
                    anchor,
                    metric,
                    lower_is_better=False,
                    anchor_name="today's 6 KB learned matcher",
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--glyph-model", type=Path, help="evaluate this .npz instead of training one")
    parser.add_argument("--seeds", type=int, default=3, help="growth runs per task (full mode)")
    parser.add_argument("--only-policy", action="store_true", help="just the policy growth rows")
    parser.add_argument("--no-policy", action="store_true", help="skip the policy growth rows")
    args = parser.parse_args()
    if args.only_policy:
        policy_growth(args.quick, 1 if args.quick else args.seeds)
        return
    for name in ("spirals",) if args.quick else TASKS:
        growth(name, args.quick, 1 if args.quick else args.seeds)
    if not args.no_policy:
        policy_growth(args.quick, 1 if args.quick else args.seeds)
    if args.glyph_model is not None:
        glyph_rows(args.glyph_model, "glyph model", 100, 40, None)
    elif args.quick:
        glyph_rows(None, "shipped matcher", 48, 20, 240)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "glyph_matcher.npz"
            glyphs.train_glyphs(path, 0, dataclasses.replace(glyphs.GlyphRecipe()))
            glyph_rows(path, "glyph model", 100, 40, None)


if __name__ == "__main__":
    main()
