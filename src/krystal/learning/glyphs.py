"""`krystal train glyphs`: the learned glyph matcher retrained through the learning pipeline.

Same model and .npz format as krystal.ascii.train (the renderer loads either), with: augmentations
of the photo crops (gamma, blur, noise, quarter turns) on top of train.py's; the quality metric as a
differentiable loss where it can be (the expected label cost under the model's softmax: the blurred
squared error that blurred SSIM rewards and edge_f1's edge disagreement, per cell); Rich progress,
TensorBoard scalars and an MLflow run with the model registered; and a held-out comparison on
images neither this model nor the shipped one ever saw (HOLDOUT, not in train.PHOTOS).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from krystal.ascii import quality as q
from krystal.ascii import raster
from krystal.ascii import train as base
from krystal.ascii.atlas import GlyphAtlas, load_atlas
from krystal.ascii.engine import Engine, Style
from krystal.ascii.learned import DEFAULT_MODEL, INPUT_SPEC, ModelInfo, save_matcher
from krystal.ascii.ramp import DEFAULT_CHARSET

# Bundled scikit-image images outside train.PHOTOS: never in either model's training data.
HOLDOUT = ("motorcycle", "cell", "logo", "microaneurysms", "phantom")


def holdout_images() -> dict[str, NDArray[np.uint8]]:
    """The held-out images as bgr8."""
    import skimage.data

    loaders: dict[str, Callable[[], Any]] = {
        "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
        "cell": skimage.data.cell,
        "logo": skimage.data.logo,
        "microaneurysms": skimage.data.microaneurysms,
        "phantom": skimage.data.shepp_logan_phantom,
    }
    out: dict[str, NDArray[np.uint8]] = {}
    for name in HOLDOUT:
        image = np.asarray(loaders[name]())
        if image.dtype != np.uint8:
            image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        out[name] = np.ascontiguousarray(image, dtype=np.uint8)
    return out


def augment(frame: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
    """Gamma, optical blur, sensor noise and quarter turns: what a camera does that crops do not."""
    out = np.power(frame, np.float32(np.exp(rng.normal(0, 0.35))))
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 1.5)))
    if rng.random() < 0.3:
        out = out + np.float32(rng.uniform(0, 0.05)) * rng.standard_normal(out.shape, np.float32)
    out = np.rot90(out, int(rng.integers(0, 4))) if rng.random() < 0.25 else out
    return np.ascontiguousarray(np.clip(out, 0, 1), dtype=np.float32)


@dataclass(frozen=True)
class GlyphRecipe:
    """A training run besides its seed; quick() finishes in seconds."""

    steps: int = 12000
    glyph_count: int = 32
    hidden: int = 24
    synthetic_tiles: int = 20000
    photo_scales: int = 4
    augmented_share: float = 0.5  # photo crops that get `augment`
    photo_frames: int = 0  # keep only this many photo crops (0: all)
    lr: float = 3e-3
    batch: int = 2048
    cost_weight: float = 0.3

    @staticmethod
    def quick() -> GlyphRecipe:
        return GlyphRecipe(steps=400, synthetic_tiles=1000, photo_scales=1, photo_frames=6, batch=1024)


def build_cells(
    rng: np.random.Generator, atlas: GlyphAtlas, cost: base.GlyphCost, r: GlyphRecipe
) -> base.Cells:
    """train.build_cells with a share of the photo crops augmented."""
    t = base.Recipe()
    h, w = base.TILE_ROWS * atlas.cell_h, base.TILE_COLS * atlas.cell_w
    synth = base.Synth(rng, atlas, h, w)
    frames: list[NDArray[np.float32]] = [
        synth.tiles(min(500, r.synthetic_tiles - i)).reshape(-1, w) for i in range(0, r.synthetic_tiles, 500)
    ]
    photos = base.photo_frames(rng, r.photo_scales)
    for frame in photos[: r.photo_frames or len(photos)]:
        f = augment(frame, rng) if rng.random() < r.augmented_share else frame
        dy, dx = int(rng.integers(0, atlas.cell_h)), int(rng.integers(0, atlas.cell_w))
        frames.append(f[dy:, dx:])
    ink = float(atlas.subset(DEFAULT_CHARSET).coverage.max())
    return base.Cells.join(
        [
            base.frame_cells(
                f,
                cost,
                rng,
                ink_scale=ink,
                contrast_min=t.contrast_min,
                cell_w=atlas.cell_w,
                cell_h=atlas.cell_h,
            )
            for f in frames
        ]
    )


Progress = Callable[[int, int, float], None]  # (step, steps, loss)


@dataclass(frozen=True)
class GlyphFit:
    net: base.Net
    val_accuracy: float
    val_regret: float  # mean label cost over the best glyph's on held-out cells
    history: tuple[tuple[int, float, float], ...]  # (step, train loss, val regret) every log_every
    glyphs: str
    cells: int
    seconds: float


def fit(
    data: base.Cells, seed: int, r: GlyphRecipe, progress: Progress | None = None, log_every: int = 50
) -> tuple[base.Net, float, float, list[tuple[int, float, float]]]:
    """Cross-entropy on the best glyph plus the expected label cost (the differentiable quality term)."""
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, len(data) // 10)
    val, tr = data.take(order[:n_val]), data.take(order[n_val:])
    x, y, cost = torch.from_numpy(tr.x), torch.from_numpy(tr.labels), torch.from_numpy(tr.cost)
    vx, vcost = torch.from_numpy(val.x), torch.from_numpy(val.cost)
    scale = float(np.partition(tr.cost, 1, axis=1)[:, 1].mean())
    net = base.Net(x.shape[1], r.hidden, tr.cost.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=r.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=max(r.steps, 1))
    gen = torch.Generator().manual_seed(seed)
    history: list[tuple[int, float, float]] = []
    for step in range(r.steps):
        idx = torch.randint(0, len(x), (r.batch,), generator=gen)
        logits = net(x[idx])
        expected = (torch.softmax(logits, dim=1) * cost[idx]).sum(dim=1).mean()
        loss = torch.nn.functional.cross_entropy(logits, y[idx]) + r.cost_weight * expected / scale
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        if progress:
            progress(step, r.steps, float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == r.steps:
            with torch.no_grad():
                pick = net(vx).argmax(dim=1)
            regret = float(vcost[torch.arange(len(pick)), pick].mean())
            history.append((step + 1, float(loss.detach()), regret))
    with torch.no_grad():
        pick_np = net(vx).argmax(dim=1).numpy()
    accuracy = float((pick_np == val.labels).mean())
    return net, accuracy, float(val.cost[np.arange(len(val)), pick_np].mean()), history


def train_glyphs(
    out: Path, seed: int = 0, recipe: GlyphRecipe | None = None, progress: Progress | None = None
) -> GlyphFit:
    """Data, glyph set, fit and export to `out` (learned.py's .npz), seeded and deterministic."""
    from krystal.learning.kasmina.grow import deterministic

    r = recipe or GlyphRecipe()
    t0 = time.perf_counter()
    with deterministic(seed):
        rng = np.random.default_rng(seed)
        atlas = load_atlas()
        t = base.Recipe()
        cost = base.GlyphCost.build(atlas, t.false_edge, t.missed_edge, t.oriented_coherence)
        data = build_cells(rng, atlas, cost, r)
        glyphs = base.select_glyphs(data.take(np.arange(0, len(data), 4)), atlas.glyphs, " ", r.glyph_count)
        chosen = atlas.indices(np.array([ord(g) for g in glyphs]))
        subset = data.cost[:, chosen]
        data = base.Cells(data.x, subset - subset.min(axis=1, keepdims=True))
        net, accuracy, regret, history = fit(data, seed, r, progress)
    info = ModelInfo(
        glyphs=glyphs,
        input_spec=INPUT_SPEC,
        sub_x=base.SUB_X,
        sub_y=base.SUB_Y,
        font=Path(atlas.font).name,
        seed=seed,
        val_accuracy=round(accuracy, 4),
        ink_scale=float(atlas.subset(DEFAULT_CHARSET).coverage.max()),
        contrast_min=t.contrast_min,
        margin=t.margin,
        notes=json.dumps({"pipeline": "krystal train glyphs", **asdict(r), "cells": len(data)}),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_matcher(out, net.export(), info)
    return GlyphFit(net, accuracy, regret, tuple(history), glyphs, len(data), time.perf_counter() - t0)


@dataclass(frozen=True)
class HeldOut:
    image: str
    ssim: float  # blurred SSIM (quality.py)
    edge_f1: float


def mono_quality(
    codes: NDArray[np.uint32], frame: NDArray[np.uint8], atlas: GlyphAtlas
) -> tuple[float, float]:
    """(blurred SSIM, edge F1) of a mono grid against its bgr8 source, as bench/ascii_bench.py scores."""
    rows, columns = codes.shape
    source = q.luma01(q.source_at_cells(frame, columns, rows, atlas.cell_w, atlas.cell_h))
    render = raster.ink(codes, atlas) / max(float(atlas.coverage.max()), 1e-3)
    return q.blurred_ssim(render, source), q.edge_f1(render, source).f1


def evaluate_model(
    model: Path | None, images: dict[str, NDArray[np.uint8]], columns: int = 100, rows: int = 40
) -> list[HeldOut]:
    """Quality of the learned kernel with `model` (None: the shipped one) on each image."""
    atlas = load_atlas()
    out = []
    for name, frame in images.items():
        engine = Engine(Style(kernel="learned", columns=columns, rows=rows), atlas, seed=1)
        engine.set_model(str(model or DEFAULT_MODEL))
        if engine.learned_matcher() is None:
            raise ValueError(f"cannot load glyph model {model}")
        ssim, f1 = mono_quality(engine.render(frame, "bgr8").codes, frame, atlas)
        out.append(HeldOut(name, ssim, f1))
    return out


def main(
    out: Path, seed: int, *, quick: bool, steps: int | None, store: Path | None, columns: int, rows: int
) -> int:
    """The CLI verb: train with Rich progress, track in MLflow, compare with the shipped model."""
    import dataclasses

    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.table import Table

    recipe = GlyphRecipe.quick() if quick else GlyphRecipe()
    if steps:
        recipe = dataclasses.replace(recipe, steps=steps)
    console = Console()
    with RichProgress(console=console) as bar:
        task = bar.add_task("glyph matcher steps", total=recipe.steps)
        result = train_glyphs(out, seed, recipe, lambda s, n, loss: bar.update(task, completed=s + 1))
    console.print(
        f"{result.cells} cells, glyphs {result.glyphs!r}: val accuracy {result.val_accuracy:.3f}, "
        f"regret {result.val_regret:.4g}, {result.seconds:.1f} s -> {out}"
    )
    images = holdout_images()
    mine, shipped = evaluate_model(out, images, columns, rows), evaluate_model(None, images, columns, rows)
    table = Table(title=f"held-out images ({columns}x{rows} cells)")
    for col in ("image", "SSIM new", "SSIM shipped", "edge F1 new", "edge F1 shipped"):
        table.add_column(col)
    for a, b in zip(mine, shipped, strict=True):
        table.add_row(a.image, f"{a.ssim:.4f}", f"{b.ssim:.4f}", f"{a.edge_f1:.4f}", f"{b.edge_f1:.4f}")
    console.print(table)
    if store is not None:
        _track(store, out, seed, recipe, result, mine=mine, shipped=shipped)
        console.print(f"MLflow run and model version in {store}")
    return 0


def _track(
    store: Path,
    out: Path,
    seed: int,
    r: GlyphRecipe,
    result: GlyphFit,
    *,
    mine: list[HeldOut],
    shipped: list[HeldOut],
) -> None:
    from mlflow.entities import Metric, Param

    from krystal.learning.tracking import experiment_id, mlflow_client, register

    client = mlflow_client(store)
    run = client.create_run(experiment_id(client, store, "glyphs"), run_name=f"glyphs-seed{seed}")
    rid, now = run.info.run_id, int(time.time() * 1000)
    params = [Param(k, str(v)) for k, v in asdict(r).items()] + [Param("seed", str(seed))]
    metrics = [Metric("train_loss", loss, now, step) for step, loss, _ in result.history]
    metrics += [Metric("val_regret", regret, now, step) for step, _, regret in result.history]
    metrics += [Metric("val_accuracy", result.val_accuracy, now, 0)]
    for a, b in zip(mine, shipped, strict=True):
        metrics += [
            Metric(f"holdout_ssim_{a.image}", a.ssim, now, 0),
            Metric(f"shipped_ssim_{b.image}", b.ssim, now, 0),
        ]
    client.log_batch(rid, metrics=metrics, params=params)
    client.log_artifact(rid, str(out), "model")
    register(client, "glyph-matcher", rid, "model")
    client.set_terminated(rid)
