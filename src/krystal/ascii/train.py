"""Training the learned glyph matcher (needs torch; the node only loads the exported .npz).

    python -m krystal.ascii.train --out PATH [--seed N] [--steps N]

Data, all from this machine: glyph bitmaps of its monospace font (atlas), synthetic tiles (edges,
lines and ridges at any angle and along the grid's axes, gratings, corners, discs, gradients,
noise, text in the font) and crops of scikit-image's bundled photos, never the benchmark's
motorcycle. Everything is drawn at the metric's resolution (8x16 px per cell).

Label (GlyphCost): the blurred squared error of each glyph against the cell's pixels scaled to ink
(blurred by half a cell like quality.blurred_ssim; neighbours assumed drawn perfectly), plus a
penalty where the glyph would disagree with edge_f1 (an oriented glyph where the source has no edge
of its direction nearby, or a source edge without one). That search over full-resolution pixels
runs here only: the model sees what the engine has at run time (learned.INPUT_SPEC). Loss: cross-
entropy on the cheapest glyph plus the expected label cost; the glyph set is chosen greedily by
the label cost; seeded and deterministic.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from krystal.ascii.atlas import GlyphAtlas, load_atlas
from krystal.ascii.learned import (
    DEFAULT_MODEL,
    INPUT_SPEC,
    LEAVE,
    ModelInfo,
    area_mean,
    cell_stats,
    features,
    save_matcher,
)
from krystal.ascii.quality import (
    ANGLE_TOL_DEG,
    COHERENCE_MIN,
    ENERGY_FLOOR,
    ENERGY_REL,
    cell_structure,
)
from krystal.ascii.ramp import DEFAULT_CHARSET

SUB_X, SUB_Y = 2, 4
# scikit-image's bundled photos; motorcycle_left/right is the benchmark's and stays out.
PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "brick",
    "coins",
    "grass",
    "gravel",
    "moon",
    "page",
    "text",
    "clock",
    "horse",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)
TILE_COLS, TILE_ROWS = 6, 5  # cells per synthetic tile
FLAT_SHARE = 0.2  # fraction of flat cells kept


def blur_gram(cell_w: int, cell_h: int) -> NDArray[np.float64]:
    """K = B^T B for B: a cell's pixels -> the metric's half-cell Gaussian blur of them on black.

    d^T K d is the blurred squared error a cell's ink difference d adds, neighbours unchanged.
    """
    pad_x, pad_y = cell_w * 2, cell_h * 2  # four sigma each side
    h, w = cell_h + 2 * pad_y, cell_w + 2 * pad_x
    impulses = np.zeros((cell_h * cell_w, h, w), np.float32)
    ys, xs = np.divmod(np.arange(cell_h * cell_w), cell_w)
    impulses[np.arange(cell_h * cell_w), pad_y + ys, pad_x + xs] = 1.0
    blurred = [
        cv2.GaussianBlur(im, (0, 0), sigmaX=cell_w / 2, sigmaY=cell_h / 2, borderType=cv2.BORDER_CONSTANT)
        for im in impulses
    ]
    b = np.stack([x.ravel() for x in blurred], axis=1).astype(np.float64)
    return b.T @ b  # type: ignore[no-any-return]


def _angle_gap(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Distance of orientations in radians, modulo pi."""
    d = np.abs(a - b) % np.pi
    return np.minimum(d, np.pi - d)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class GlyphCost:
    """Label cost of each glyph for cells of a frame, the best glyph lowest.

    The blurred squared error of the glyph against the cell's target ink (neighbours drawn
    perfectly), plus edge_f1's view: a glyph that reads as an oriented edge when tiled (the metric's
    structure tensor, coherence >= `coherence`) costs `false_edge` unless the source has an edge at
    its orientation within one cell, and a source edge cell costs `missed_edge` unless the glyph is
    such an edge at the cell's orientation.
    """

    kg: NDArray[np.float32]  # (glyphs, cell pixels): K g
    gkg: NDArray[np.float32]  # (glyphs,): g^T K g
    oriented: NDArray[np.bool_]  # (glyphs,) reads as an edge
    angle: NDArray[np.float64]  # (glyphs,) its gradient orientation
    false_edge: float
    missed_edge: float

    @staticmethod
    def build(
        atlas: GlyphAtlas, false_edge: float = 0.0, missed_edge: float = 0.0, coherence: float = COHERENCE_MIN
    ) -> GlyphCost:
        k = blur_gram(atlas.cell_w, atlas.cell_h)
        g = atlas.bitmaps.reshape(len(atlas.glyphs), -1).astype(np.float64)
        kg = g @ k
        oriented, angle = [], []
        for bitmap in atlas.bitmaps:
            energy, tiled, theta = cell_structure(np.tile(bitmap, (3, 3)), atlas.cell_w, atlas.cell_h)
            # A faint glyph (', `, -) stays under the render's energy threshold: never an edge.
            oriented.append(tiled[1, 1] >= coherence and energy[1, 1] >= 2e-3)
            angle.append(theta[1, 1])
        return GlyphCost(
            kg.astype(np.float32),
            (kg * g).sum(axis=1).astype(np.float32),
            np.array(oriented),
            np.array(angle),
            false_edge,
            missed_edge,
        )

    def blurred(self, target: NDArray[np.float32]) -> NDArray[np.float32]:
        """(cells, glyphs) blurred squared error (up to a per-cell constant) for (cells, pixels) ink."""
        return self.gkg - 2.0 * (target @ self.kg.T)  # type: ignore[no-any-return]

    def edges(self, frame: NDArray[np.float32], cell_w: int, cell_h: int) -> NDArray[np.float32]:
        """(cells, glyphs) edge term for every cell of a full-resolution frame."""
        energy, coherence, theta = cell_structure(frame, cell_w, cell_h)
        threshold = max(ENERGY_REL * float(np.percentile(energy, 99)), ENERGY_FLOOR)
        edge = (coherence >= COHERENCE_MIN) & (energy >= threshold)
        tol = np.deg2rad(ANGLE_TOL_DEG)
        rows, cols = edge.shape
        j = np.flatnonzero(self.oriented)
        near = np.zeros((rows, cols, j.size), np.bool_)
        pad_edge, pad_theta = np.pad(edge, 1), np.pad(theta, 1)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                e = pad_edge[dy : dy + rows, dx : dx + cols, None]
                near |= e & (
                    _angle_gap(pad_theta[dy : dy + rows, dx : dx + cols, None], self.angle[j]) <= tol
                )
        cost = np.zeros((rows * cols, len(self.angle)), np.float32)
        cost[:, j] = self.false_edge * ~near.reshape(rows * cols, -1)
        matched = self.oriented & (_angle_gap(theta.reshape(-1, 1), self.angle) <= tol)
        cost += self.missed_edge * (edge.reshape(-1, 1) & ~matched)
        return cost

    def subset(self, index: NDArray[np.intp]) -> GlyphCost:
        return GlyphCost(
            self.kg[index],
            self.gkg[index],
            self.oriented[index],
            self.angle[index],
            self.false_edge,
            self.missed_edge,
        )


def _loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> NDArray[np.float64]:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _col(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-tile values broadcast over pixels."""
    return x[:, None, None]


class Synth:
    """Batches of synthetic tiles (n, h, w) in 0..1 at the metric's resolution."""

    # Tile kinds, drawn uniformly; line art along the grid's axes three times as often.
    KINDS = ("edge", "line", *("axis",) * 3, "grating", "corner", "disc", "gradient", "noise", "text", "flat")
    OVERLAYS = ("edge", "line", "axis", "grating", "corner", "disc")  # blended over a third of tiles
    # Line normals the grid and man-made scenes favour: vertical and horizontal lines, the cells'
    # diagonals (one cell across per cell down: normal at atan(1/2)) and 45 degrees.
    AXES = (0.0, np.pi / 2, np.arctan(0.5), np.pi - np.arctan(0.5), np.pi / 4, 3 * np.pi / 4)

    def __init__(self, rng: np.random.Generator, atlas: GlyphAtlas, h: int, w: int) -> None:
        self.rng, self.atlas, self.h, self.w = rng, atlas, h, w
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        self.ys, self.xs = ys[None], xs[None]

    def _levels(self, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        a = self.rng.uniform(0, 1, n)
        b = np.clip(a + self.rng.choice([-1, 1], n) * _loguniform(self.rng, 0.04, 1.0, n), 0, 1)
        return _col(a), _col(b)

    def _distance(self, n: int, axis: bool = False) -> NDArray[np.float64]:
        """Signed distance (px) to a random line through the tile's middle (along AXES, jittered)."""
        r = self.rng
        cx, cy = r.uniform(0.3, 0.7, n) * self.w, r.uniform(0.3, 0.7, n) * self.h
        if axis:
            theta = r.choice(self.AXES, n) + r.normal(0, 0.03, n)
            # Through a cell centre half the time: where a thin line falls between the samples.
            centred = r.random(n) < 0.5
            cw, ch = self.atlas.cell_w, self.atlas.cell_h
            cx = np.where(centred, (np.floor(cx / cw) + 0.5) * cw, cx)
            cy = np.where(centred, (np.floor(cy / ch) + 0.5) * ch, cy)
        else:
            theta = r.uniform(0, np.pi, n)
        d = (self.xs - _col(cx)) * _col(np.cos(theta)) + (self.ys - _col(cy)) * _col(np.sin(theta))
        return d  # type: ignore[no-any-return]

    def _step(self, d: NDArray[np.float64], n: int) -> NDArray[np.float64]:
        return 0.5 * (1 + np.tanh(d / _col(_loguniform(self.rng, 0.2, 6.0, n))))  # type: ignore[no-any-return]

    def _ridge(self, d: NDArray[np.float64], n: int, thin: bool = False) -> NDArray[np.float64]:
        half = _col(_loguniform(self.rng, 0.4, 2.0 if thin else 5.0, n))
        soft = _col(_loguniform(self.rng, 0.2, 3.0, n))
        return 0.5 * (np.tanh((d + half) / soft) - np.tanh((d - half) / soft))  # type: ignore[no-any-return]

    def shape(self, kind: str, n: int) -> NDArray[np.float64]:
        """Pattern in 0..1 (before levels)."""
        r = self.rng
        if kind == "edge":
            return self._step(self._distance(n), n)
        if kind == "line":
            return self._ridge(self._distance(n), n)
        if kind == "axis":
            d = self._distance(n, axis=True)
            return self._ridge(d, n, thin=True) if r.random() < 0.7 else self._step(d, n)
        if kind == "grating":
            # Sine to square wave by the sharpness k, normalised back to 0..1.
            period = _col(_loguniform(r, 3.0, 40.0, n))
            k = _col(_loguniform(r, 0.5, 8.0, n))
            wave = np.tanh(k * np.sin(2 * np.pi * self._distance(n) / period)) / np.tanh(k)
            return 0.5 + 0.5 * wave  # type: ignore[no-any-return]
        if kind == "corner":
            return np.minimum(self._step(self._distance(n), n), self._step(self._distance(n), n))
        if kind == "disc":
            cx, cy = r.uniform(0.2, 0.8, n) * self.w, r.uniform(0.2, 0.8, n) * self.h
            radius = np.hypot(self.xs - _col(cx), self.ys - _col(cy)) - _col(_loguniform(r, 1.0, 40.0, n))
            return self._ridge(radius, n) if r.random() < 0.5 else self._step(-radius, n)
        if kind == "gradient":
            d = self._distance(n) / _col(_loguniform(r, 10.0, 200.0, n))
            return np.clip(0.5 + d + _col(r.uniform(-2, 2, n)) * d * d, 0, 1)
        if kind == "noise":
            return self._noise(n)
        if kind == "text":
            return self._text(n)
        return np.zeros((n, self.h, self.w))

    def _noise(self, n: int) -> NDArray[np.float64]:
        sigma = float(_loguniform(self.rng, 0.5, 10.0, 1)[0])
        field = self.rng.standard_normal((n, self.h, self.w)).astype(np.float32)
        smooth = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in field]).astype(np.float64)
        smooth /= smooth.std(axis=(1, 2), keepdims=True) + 1e-9
        return np.clip(0.5 + 0.25 * smooth, 0, 1)

    def _text(self, n: int) -> NDArray[np.float64]:
        """Random glyphs of the atlas on a grid, at 1-3x and an arbitrary offset."""
        r, a = self.rng, self.atlas
        out = np.empty((n, self.h, self.w))
        for i in range(n):
            scale = float(r.choice([1.0, 1.0, 1.5, 2.0, 3.0]))
            gh, gw = (
                int(np.ceil(self.h / (a.cell_h * scale))) + 1,
                int(np.ceil(self.w / (a.cell_w * scale))) + 1,
            )
            tiles = a.bitmaps[r.integers(0, len(a.glyphs), gh * gw)]
            sheet: NDArray[Any] = tiles.reshape(gh, gw, a.cell_h, a.cell_w).transpose(0, 2, 1, 3)
            sheet = sheet.reshape(gh * a.cell_h, gw * a.cell_w)
            if scale != 1.0:
                sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            aligned = scale == 1.0 and r.random() < 0.5
            dy = 0 if aligned else int(r.integers(0, sheet.shape[0] - self.h + 1))
            dx = 0 if aligned else int(r.integers(0, sheet.shape[1] - self.w + 1))
            out[i] = sheet[dy : dy + self.h, dx : dx + self.w] / max(float(sheet.max()), 1e-6)
        return out

    def tiles(self, n: int) -> NDArray[np.float32]:
        """n tiles: a random kind each, sometimes blended with a second, random levels and noise."""
        r = self.rng
        kinds = r.integers(0, len(self.KINDS), n)
        out = np.empty((n, self.h, self.w))
        for k, kind in enumerate(self.KINDS):
            idx = np.flatnonzero(kinds == k)
            if idx.size:
                out[idx] = self.shape(kind, idx.size)
        second = np.flatnonzero(r.random(n) < 0.3)
        if second.size:
            mix = self.shape(str(r.choice(self.OVERLAYS)), second.size)
            out[second] = np.maximum(out[second], mix) if r.random() < 0.5 else 0.5 * (out[second] + mix)
        lo, hi = self._levels(n)
        tiles = lo + (hi - lo) * out
        noisy = r.random(n) < 0.4
        tiles[noisy] += _col(r.uniform(0, 0.08, int(noisy.sum()))) * r.standard_normal(tiles[noisy].shape)
        return np.clip(tiles, 0, 1).astype(np.float32)


def photo_frames(rng: np.random.Generator, per_photo: int) -> list[NDArray[np.float32]]:
    """Grey crops of the bundled photos at random scales, flips and contrast stretches."""
    import skimage.data

    frames = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage.data, name)())
        if image.dtype == np.bool_:
            image = image.astype(np.uint8) * 255
        if image.ndim == 3:
            image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
        grey = image.astype(np.float32) / 255.0
        for _ in range(per_photo):
            scale = float(_loguniform(rng, 0.3, 3.0, 1)[0])  # metric pixels per photo pixel
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            im = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=interp)
            if rng.random() < 0.5:
                im = im[:, ::-1]
            lo = rng.uniform(-0.2, 0.4)
            im = np.clip((im - lo) / rng.uniform(0.3, 1.2), 0, 1)
            frames.append(np.ascontiguousarray(im, dtype=np.float32))
    return frames


@dataclass(frozen=True)
class Cells:
    """Model inputs and label costs (relative to each cell's best glyph) of a set of cells."""

    x: NDArray[np.float32]  # (cells, features)
    cost: NDArray[np.float32]  # (cells, glyphs), 0 at the best glyph

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labels(self) -> NDArray[np.intp]:
        return self.cost.argmin(axis=1)  # type: ignore[no-any-return]

    def take(self, index: NDArray[np.intp]) -> Cells:
        return Cells(self.x[index], self.cost[index])

    @staticmethod
    def join(parts: list[Cells]) -> Cells:
        return Cells(np.concatenate([p.x for p in parts]), np.concatenate([p.cost for p in parts]))


def frame_cells(
    image: NDArray[np.float32],
    cost: GlyphCost,
    rng: np.random.Generator,
    *,
    ink_scale: float,
    contrast_min: float,
    cell_w: int,
    cell_h: int,
) -> Cells:
    """The cells of one full-resolution frame (0..1) that the network runs on, and a few flat ones.

    The samples get a little noise (sensor noise at run time); the labels see the clean pixels.
    """
    rows, cols = image.shape[0] // cell_h, image.shape[1] // cell_w
    image = np.ascontiguousarray(image[: rows * cell_h, : cols * cell_w])
    samples = area_mean(image, cols * SUB_X, rows * SUB_Y)
    samples += np.float32(rng.uniform(0, 0.012)) * rng.standard_normal(samples.shape, np.float32)
    np.clip(samples, 0, 1, out=samples)
    stats = cell_stats(samples, SUB_X, SUB_Y)
    # Cells the network runs on, and some flat ones: its flat-cell table is its answer to those.
    shaped = stats.structure.reshape(-1) >= contrast_min * LEAVE
    keep = np.flatnonzero(shaped | (rng.random(shaped.size) < FLAT_SHARE))
    pixels = image.reshape(rows, cell_h, cols, cell_w).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    c = cost.blurred(pixels[keep] * np.float32(ink_scale)) + cost.edges(image, cell_w, cell_h)[keep]
    return Cells(features(samples, SUB_X, SUB_Y, stats, keep), c - c.min(axis=1, keepdims=True))


def build_cells(
    rng: np.random.Generator,
    atlas: GlyphAtlas,
    cost: GlyphCost,
    *,
    ink_scale: float,
    contrast_min: float,
    synthetic_tiles: int,
    photo_scales: int,
) -> Cells:
    """Synthetic tiles (stacked into frames of 500) and photo crops, cut into labelled cells."""
    h, w = TILE_ROWS * atlas.cell_h, TILE_COLS * atlas.cell_w
    synth = Synth(rng, atlas, h, w)
    frames = [synth.tiles(min(500, synthetic_tiles - i)) for i in range(0, synthetic_tiles, 500)]
    frames = [f.reshape(-1, w) for f in frames]
    for frame in photo_frames(rng, photo_scales):
        dy, dx = int(rng.integers(0, atlas.cell_h)), int(rng.integers(0, atlas.cell_w))
        frames.append(frame[dy:, dx:])
    return Cells.join(
        [
            frame_cells(
                f,
                cost,
                rng,
                ink_scale=ink_scale,
                contrast_min=contrast_min,
                cell_w=atlas.cell_w,
                cell_h=atlas.cell_h,
            )
            for f in frames
        ]
    )


def select_glyphs(data: Cells, glyphs: str, start: str, count: int) -> str:
    """Greedy forward selection: from `start`, add the glyph of `glyphs` that most lowers the mean
    best-glyph cost of `data` (whose costs are over `glyphs`), until `count` glyphs."""
    chosen = [glyphs.index(g) for g in start]
    best = data.cost[:, chosen].min(axis=1) if chosen else np.full(len(data), np.inf, np.float32)
    while len(chosen) < count:
        gain = [np.minimum(best, data.cost[:, g]).mean() for g in range(len(glyphs))]
        pick = int(np.argmin(np.where(np.isin(np.arange(len(glyphs)), chosen), np.inf, gain)))
        chosen.append(pick)
        best = np.minimum(best, data.cost[:, pick])
    return "".join(glyphs[i] for i in chosen)


class Net(torch.nn.Module):
    """The matcher: features -> hidden (ReLU) -> one score per glyph."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(n_in, hidden)
        self.l2 = torch.nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(x)))  # type: ignore[no-any-return]

    def export(self) -> dict[str, NDArray[np.float32]]:
        """Weights in learned.py's layout (inputs @ w)."""

        def arr(t: torch.Tensor) -> NDArray[np.float32]:
            return np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)

        return {
            "w1": arr(self.l1.weight.T),
            "b1": arr(self.l1.bias),
            "w2": arr(self.l2.weight.T),
            "b2": arr(self.l2.bias),
        }


@dataclass(frozen=True)
class Fit:
    net: Net
    val_accuracy: float  # held-out cells whose label glyph the model picks
    val_regret: float  # their mean label cost over the best glyph's
    constant_regret: float  # the same for always drawing the most common label, for scale
    seconds: float


def fit(
    data: Cells,
    seed: int,
    steps: int,
    *,
    hidden: int = 32,
    batch: int = 2048,
    lr: float = 3e-3,
    cost_weight: float = 0.3,
) -> Fit:
    """Cross-entropy on the best glyph plus `cost_weight` x the expected label cost under the
    model's softmax (in units of the mean runner-up cost): where the samples cannot tell two labels
    apart, that term prefers the glyph that is cheaper on average over the one that wins more often.
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, len(data) // 10)
    val, tr = data.take(order[:n_val]), data.take(order[n_val:])
    x, y, cost = torch.from_numpy(tr.x), torch.from_numpy(tr.labels), torch.from_numpy(tr.cost)
    scale = float(np.partition(tr.cost, 1, axis=1)[:, 1].mean())
    net = Net(x.shape[1], hidden, tr.cost.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        logits = net(x[idx])
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        if cost_weight > 0:
            expected = (torch.softmax(logits, dim=1) * cost[idx]).sum(dim=1).mean()
            loss = loss + cost_weight * expected / scale
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
    with torch.no_grad():
        pick = net(torch.from_numpy(val.x)).argmax(dim=1).numpy()
    at = np.arange(len(val))
    common = int(np.bincount(tr.labels).argmax())
    return Fit(
        net,
        float((pick == val.labels).mean()),
        float(val.cost[at, pick].mean()),
        float(val.cost[:, common].mean()),
        time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class Recipe:
    """Everything a training run depends on besides the seed (the defaults make the shipped model)."""

    steps: int = 12000
    glyph_count: int = 32  # chosen greedily from the atlas by the label cost
    hidden: int = 24
    synthetic_tiles: int = 20000
    photo_scales: int = 4
    contrast_min: float = 0.2
    margin: float = 1.0
    false_edge: float = 0.05
    missed_edge: float = 0.05
    oriented_coherence: float = 0.4  # a little under the metric's 0.5: glyphs near it read as edges
    cost_weight: float = 0.3


def train(out: Path, seed: int = 0, recipe: Recipe | None = None, log: bool = True) -> Fit:
    """Build the data, choose the glyph set, fit and export to `out`."""
    r = recipe or Recipe()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    atlas = load_atlas()
    ink_scale = float(atlas.subset(DEFAULT_CHARSET).coverage.max())
    cost = GlyphCost.build(atlas, r.false_edge, r.missed_edge, r.oriented_coherence)
    data = build_cells(
        rng,
        atlas,
        cost,
        ink_scale=ink_scale,
        contrast_min=r.contrast_min,
        synthetic_tiles=r.synthetic_tiles,
        photo_scales=r.photo_scales,
    )
    glyphs = select_glyphs(data.take(np.arange(0, len(data), 4)), atlas.glyphs, " ", r.glyph_count)
    chosen = atlas.indices(np.array([ord(g) for g in glyphs]))
    subset = data.cost[:, chosen]
    data = Cells(data.x, subset - subset.min(axis=1, keepdims=True))
    if log:
        print(f"{len(data)} cells, glyphs {glyphs!r} in {time.perf_counter() - t0:.1f} s", flush=True)
    result = fit(data, seed, r.steps, hidden=r.hidden, cost_weight=r.cost_weight)
    info = ModelInfo(
        glyphs=glyphs,
        input_spec=INPUT_SPEC,
        sub_x=SUB_X,
        sub_y=SUB_Y,
        font=Path(atlas.font).name,
        seed=seed,
        val_accuracy=round(result.val_accuracy, 4),
        ink_scale=ink_scale,
        contrast_min=r.contrast_min,
        margin=r.margin,
        notes=json.dumps({**asdict(r), "cells": len(data), "val_regret": round(result.val_regret, 6)}),
    )
    save_matcher(out, result.net.export(), info)
    if log:
        print(
            f"val accuracy {result.val_accuracy:.3f}, regret {result.val_regret:.3g} "
            f"(most common glyph: {result.constant_regret:.3g}); fit {result.seconds:.1f} s, "
            f"total {time.perf_counter() - t0:.1f} s -> {out}",
            flush=True,
        )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=Recipe.steps)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    train(args.out, args.seed, Recipe(steps=args.steps))


if __name__ == "__main__":
    main()
