"""The learned glyph matcher: a small MLP picks each cell's glyph from the engine's sub-cell samples.

NumPy only, so the node never needs torch (train.py makes the weights; this is the run-time path).

Input per cell (INPUT_SPEC): the cell's sub_y x sub_x samples minus their mean, the mean, each of
the four neighbouring cells' means minus the cell's (edges repeat), the cell's structure relative
to the frame's strongest and the orientation of its sample gradients (edge_f1 calls an edge a
coherent gradient strong relative to the frame's).
Output: a score per glyph of the model's set. Only cells with structure (see cell_stats) of at least
`contrast_min` run the network, at most MAX_SHARE of them; flat cells take the network's answer for
a flat cell of their mean, tabulated once at load time (or the ramp's glyph, flat_cells="ramp").
A cell keeps last frame's glyph while it scores within `margin` of the best, and enters/leaves the
network through a Schmitt trigger, so sensor noise does not flicker a static scene.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

INPUT_SPEC = "centred-samples+mean+neighbour-means+relative-structure+orientation/v3"
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "glyph_matcher.npz"
MODEL_ENV = "KRYSTAL_GLYPH_MODEL"
WEIGHT_NAMES = ("w1", "b1", "w2", "b2")
FLAT_CELLS = ("model", "ramp")
ENTER, LEAVE = 1.4, 0.6  # Schmitt trigger on contrast_min after the first frame, as multiples of it
MAX_SHARE = 0.35  # at most this share of the cells runs the network: bounds the time on noise
REFERENCE_FLOOR = 0.05  # a nearly flat frame's noise is not strong structure
_LEVELS = 256  # flat-cell table resolution (8-bit luma)
_CHUNK = 2048  # cells per forward pass: the activations stay in cache


def feature_count(sub_x: int, sub_y: int) -> int:
    return sub_x * sub_y + 8


@dataclass(frozen=True)
class ModelInfo:
    """What a weights file says about itself; the input spec must match this module's."""

    glyphs: str
    input_spec: str
    sub_x: int
    sub_y: int
    font: str
    seed: int
    val_accuracy: float  # held-out cells whose label glyph the model picks
    ink_scale: float  # coverage that luma 1.0 is drawn with (the ramp's brightest glyph)
    contrast_min: float  # structure below which a cell counts as flat
    margin: float  # score margin by which a new glyph must beat the cell's previous one
    flat_cells: str = "model"  # flat cells: "model" (tabulated) or "ramp" (the engine's ramp glyph)
    notes: str = ""


def area_mean(image: NDArray[np.float32], width: int, height: int) -> NDArray[np.float32]:
    """Block means by INTER_AREA (OpenCV's fast path for integer factors)."""
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), np.float32)


class Workspace:
    """Per-grid arrays reused from frame to frame: glibc hands freed blocks of a cell plane's size back
    to the kernel, so fresh ones cost page faults that took three times the arithmetic here."""

    def __init__(self, sub_x: int, sub_y: int, rows: int, cols: int) -> None:
        f = np.float32
        self.grid = (sub_y, sub_x, rows, cols)
        self.samples = np.empty((sub_y, sub_x, rows, cols), f)
        self.row_means = np.empty((sub_y, rows, cols), f)
        self.col_means = np.empty((sub_x, rows, cols), f)
        self.mean = np.empty((rows, cols), f)
        self.structure = np.empty((rows, cols), f)
        self.neighbours = np.empty((4, rows, cols), f)
        self.beyond = np.empty((2 * (sub_x + sub_y), rows, cols), f)
        self.tmp = np.empty((6, rows, cols), f)
        self.planes = np.empty((sub_x * sub_y + 8, rows, cols), f)
        self.index = np.empty((3, rows * cols), np.intp)  # flat-table bins, last and new choice


def _shift(plane: NDArray[np.float32], dy: int, dx: int, out: NDArray[np.float32]) -> NDArray[np.float32]:
    """out[y, x] = plane[y - dy, x - dx] (the neighbour cell's value), the frame's edge repeated."""
    rows, cols = plane.shape
    ys, yd = (slice(None, rows - dy), slice(dy, None)) if dy >= 0 else (slice(-dy, None), slice(None, dy))
    xs, xd = (slice(None, cols - dx), slice(dx, None)) if dx >= 0 else (slice(-dx, None), slice(None, dx))
    out[yd, xd] = plane[ys, xs]
    if dy > 0:
        out[:dy] = out[dy]
    elif dy < 0:
        out[dy:] = out[dy - 1]
    if dx > 0:
        out[:, :dx] = out[:, dx : dx + 1]
    elif dx < 0:
        out[:, dx:] = out[:, dx - 1 : dx]
    return out


def _total(planes: NDArray[np.float32], out: NDArray[np.float32], scale: float) -> NDArray[np.float32]:
    """out = scale x the sum of planes[0], planes[1], ... (each may be a stack of planes)."""
    np.copyto(out, planes[0])
    for plane in planes[1:]:
        out += plane
    out *= np.float32(scale)
    return out


def _span(
    planes: NDArray[np.float32], out: NDArray[np.float32], tmp: NDArray[np.float32]
) -> NDArray[np.float32]:
    """out = max - min over planes[0], planes[1], ..."""
    np.copyto(out, planes[0])
    np.copyto(tmp, planes[0])
    for plane in planes[1:]:
        np.maximum(out, plane, out=out)
        np.minimum(tmp, plane, out=tmp)
    out -= tmp
    return out


@dataclass(frozen=True)
class CellStats:
    """Per-cell statistics of a sample grid (views of `work`, valid until its next use) and one
    number for the frame."""

    work: Workspace
    reference: float  # high percentile of structure: what counts as strong in this frame

    @property
    def mean(self) -> NDArray[np.float32]:
        return self.work.mean

    @property
    def structure(self) -> NDArray[np.float32]:
        return self.work.structure


def cell_stats(
    sub_luma: NDArray[np.float32], sub_x: int, sub_y: int, work: Workspace | None = None
) -> CellStats:
    """Means and structure of the cells of a sample grid.

    structure: the largest of the span of the cell's row means, of its column means, and of its
    mean's difference to each neighbour's. Row and column means damp sensor noise that the span of
    single samples would amplify and keep the low-frequency shape the blurred metric sees; the
    neighbours catch a line thinner than a sample (a cell of flat samples brighter than both sides).
    After one pass over the sample grid everything works on cell-sized planes, which stay in cache.
    """
    h, w = sub_luma.shape
    rows, cols = h // sub_y, w // sub_x
    if work is None or work.grid != (sub_y, sub_x, rows, cols):
        work = Workspace(sub_x, sub_y, rows, cols)
    samples, structure, tmp = work.samples, work.structure, work.tmp[0]
    for dy in range(sub_y):
        for dx in range(sub_x):
            samples[dy, dx] = sub_luma[dy::sub_y, dx::sub_x]
    # Sums of planes, not numpy reductions over the short axes: those take a slow strided path.
    _total(samples.transpose(1, 0, 2, 3), work.row_means, 1 / sub_x)
    _total(samples, work.col_means, 1 / sub_y)
    _total(work.col_means, work.mean, 1 / sub_x)
    _span(work.row_means, structure, tmp)
    np.maximum(structure, _span(work.col_means, tmp, work.tmp[1]), out=structure)
    for k, (dy, dx) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1))):  # up, down, left, right
        neighbour = _shift(work.mean, dy, dx, work.neighbours[k])
        neighbour -= work.mean
        np.maximum(structure, np.abs(neighbour, out=tmp), out=structure)
    sample = structure.reshape(-1)[::7]  # a percentile of every seventh cell is close enough
    k = int(0.99 * (sample.size - 1))
    return CellStats(work, max(float(np.partition(sample, k)[k]), REFERENCE_FLOOR))


def feature_planes(stats: CellStats) -> NDArray[np.float32]:
    """(features, cells) model input of every cell, one contiguous plane per feature (a view of the
    workspace)."""
    work = stats.work
    sub_y, sub_x, rows, cols = work.grid
    n_sub = sub_x * sub_y
    planes = work.planes
    np.subtract(work.samples.reshape(n_sub, rows, cols), work.mean, out=planes[:n_sub])
    planes[n_sub] = work.mean
    planes[n_sub + 1 : n_sub + 5] = work.neighbours
    np.multiply(work.structure, np.float32(1.0 / stats.reference), out=planes[n_sub + 5])
    np.minimum(planes[n_sub + 5], 2.0, out=planes[n_sub + 5])
    _orientation(stats, planes[n_sub + 6], planes[n_sub + 7])
    return planes.reshape(n_sub + 8, rows * cols)


def _orientation(stats: CellStats, cos2: NDArray[np.float32], sin2: NDArray[np.float32]) -> None:
    """The cell's gradient orientation as edge_f1 sees edges: the mean structure tensor of central
    differences at its samples (neighbour cells' samples across its border), as coherence x
    (cos, sin) of twice the angle; weak cells are damped towards 0."""
    work = stats.work
    s = work.samples
    sub_y, sub_x = s.shape[:2]
    gx, gy, jxx, jyy, jxy, t = work.tmp
    b = iter(work.beyond)  # the samples just outside the cell, from the neighbouring cells
    left = [_shift(s[r, -1], 0, 1, next(b)) for r in range(sub_y)]
    right = [_shift(s[r, 0], 0, -1, next(b)) for r in range(sub_y)]
    up = [_shift(s[-1, c], 1, 0, next(b)) for c in range(sub_x)]
    down = [_shift(s[0, c], -1, 0, next(b)) for c in range(sub_x)]
    jxx.fill(0)
    jyy.fill(0)
    jxy.fill(0)
    for r in range(sub_y):
        for c in range(sub_x):
            np.subtract(s[r, c + 1] if c < sub_x - 1 else right[r], s[r, c - 1] if c > 0 else left[r], out=gx)
            np.subtract(s[r + 1, c] if r < sub_y - 1 else down[c], s[r - 1, c] if r > 0 else up[c], out=gy)
            jxx += np.multiply(gx, gx, out=t)
            jyy += np.multiply(gy, gy, out=t)
            jxy += np.multiply(gx, gy, out=t)
    # Central differences span two samples: the floor is 2 x (a tenth of a strong span) squared.
    np.subtract(jxx, jyy, out=cos2)
    np.multiply(jxy, 2, out=sin2)
    energy = np.add(jxx, jyy, out=t)
    energy += np.float32(sub_x * sub_y * (0.2 * stats.reference) ** 2)
    cos2 /= energy
    sin2 /= energy


def features(
    sub_luma: NDArray[np.float32],
    sub_x: int,
    sub_y: int,
    stats: CellStats | None = None,
    index: NDArray[np.intp] | None = None,
) -> NDArray[np.float32]:
    """(cells, feature_count) model input of the cells `index` (flat, row-major; all when None)."""
    planes = feature_planes(stats or cell_stats(sub_luma, sub_x, sub_y))
    return np.ascontiguousarray((planes if index is None else planes.take(index, axis=1)).T)


class GlyphMatcher:
    """NumPy forward pass of the matcher plus its per-grid state (reset on a new shape)."""

    def __init__(self, weights: dict[str, NDArray[np.float32]], info: ModelInfo) -> None:
        self.info = info
        self.w1, self.b1 = weights["w1"], weights["b1"]
        self.w2, self.b2 = weights["w2"], weights["b2"]
        self.codes = np.array([ord(g) for g in info.glyphs], np.uint32)
        # Code point -> glyph index, -1 for others (the last slot catches every larger code).
        self._index = np.full(int(self.codes.max()) + 2, -1, np.intp)
        self._index[self.codes] = np.arange(len(self.codes))
        n_in = feature_count(info.sub_x, info.sub_y)
        flat = np.zeros((_LEVELS, n_in), np.float32)
        flat[:, info.sub_x * info.sub_y] = (np.arange(_LEVELS, dtype=np.float32) + 0.5) / _LEVELS
        self._flat_scores = self.scores(flat)  # (levels, glyphs)
        self._flat_best = self._flat_scores.argmax(axis=1)
        # Buffers reused across chunks and frames (see Workspace).
        self._x = np.empty(n_in * _CHUNK, np.float32)
        self._hidden = np.empty((_CHUNK, self.w1.shape[1]), np.float32)
        self._out = np.empty((_CHUNK, len(self.codes)), np.float32)
        self._work: Workspace | None = None
        self._engaged: NDArray[np.bool_] | None = None  # cells the network ran on last frame
        self._fresh = True  # no last frame for this grid: no hysteresis
        self._slot = 1  # which row of the workspace's index holds the last frame's glyphs

    def reset(self) -> None:
        self._fresh = True

    def scores(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """(cells, glyphs) logits for (cells, features) inputs."""
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        return hidden @ self.w2 + self.b2  # type: ignore[no-any-return]

    def _scores_t(self, xt: NDArray[np.float32]) -> NDArray[np.float32]:
        """scores() for (features, cells) inputs (cells <= _CHUNK), into the reused buffers."""
        n = xt.shape[1]
        hidden, out = self._hidden[:n], self._out[:n]
        np.matmul(xt.T, self.w1, out=hidden)
        hidden += self.b1
        np.maximum(hidden, 0.0, out=hidden)
        np.matmul(hidden, self.w2, out=out)
        out += self.b2
        return out

    def _hold(
        self,
        scores: NDArray[np.float32],
        best: NDArray[np.intp],
        old: NDArray[np.intp],
        rows: NDArray[np.intp] | None = None,
        where: NDArray[np.bool_] | None = None,
    ) -> None:
        """Keep the old glyph (index, -1 = none) in `best` where it scores within the margin.

        Cell i's scores are scores[i], or scores[rows[i]] (a table) when rows is given; only the
        cells in `where` when given.
        """
        changed = (best != old) & (old >= 0)
        moved = np.flatnonzero(changed if where is None else changed & where)
        if moved.size:
            s = scores[moved if rows is None else rows[moved]]
            b, o = best[moved], old[moved]
            at = np.arange(moved.size)
            keep = s[at, o] >= s[at, b] - np.float32(self.info.margin)
            best[moved[keep]] = o[keep]

    def glyphs(
        self,
        sub_luma: NDArray[np.float32],
        sub_x: int,
        sub_y: int,
        base_codes: NDArray[np.uint32] | None = None,
    ) -> NDArray[np.uint32]:
        """(rows, columns) code points for a tone-mapped sample grid; base_codes, the ramp's glyphs,
        are needed only by a model whose flat cells take the ramp (info.flat_cells == "ramp")."""
        info = self.info
        if (sub_x, sub_y) != (info.sub_x, info.sub_y):
            raise ValueError(f"model wants {info.sub_x}x{info.sub_y} samples per cell, got {sub_x}x{sub_y}")
        sub = np.ascontiguousarray(sub_luma, dtype=np.float32)
        stats = cell_stats(sub, sub_x, sub_y, self._work)
        if info.flat_cells == "ramp" and base_codes is None:
            raise ValueError("this model draws flat cells with the ramp: pass the ramp's glyphs")
        if base_codes is not None and base_codes.shape != stats.mean.shape:
            raise ValueError(f"samples for {stats.mean.shape} cells, ramp glyphs for {base_codes.shape}")
        work = stats.work
        if work is not self._work:  # a new grid
            self._work, self._fresh = work, True
        span = stats.structure.reshape(-1)
        t = np.float32(info.contrast_min)
        bins, last, choice = work.index[0], work.index[self._slot], work.index[3 - self._slot]
        if self._fresh or self._engaged is None:
            active = span >= t
            last.fill(-1)
        else:  # Schmitt trigger around the threshold the first frame used
            active = (span >= t * np.float32(ENTER)) | (self._engaged & (span >= t * np.float32(LEAVE)))
        cells = np.flatnonzero(active)
        limit = int(MAX_SHARE * span.size)
        if cells.size > limit:  # busy texture: the network runs on the most structured cells only
            active &= span >= np.partition(span, span.size - limit)[span.size - limit]
            cells = np.flatnonzero(active)
        if info.flat_cells == "model":
            level = np.multiply(stats.mean.reshape(-1), _LEVELS, out=work.tmp[0].reshape(-1))
            np.copyto(bins, level, casting="unsafe")
            np.minimum(bins, _LEVELS - 1, out=bins)
            self._flat_best.take(bins, out=choice)
            self._hold(self._flat_scores, choice, last, bins, ~active)
        else:
            assert base_codes is not None
            self._index.take(np.minimum(base_codes.reshape(-1), len(self._index) - 1), out=choice)
        if cells.size:
            planes = feature_planes(stats)
            for start in range(0, cells.size, _CHUNK):
                idx = cells[start : start + _CHUNK]
                xt = self._x[: idx.size * len(planes)].reshape(len(planes), idx.size)
                np.take(planes, idx, axis=1, out=xt, mode="clip")  # "clip": no hidden copy
                s = self._scores_t(xt)
                best = s.argmax(axis=1)
                self._hold(s, best, last.take(idx))
                choice[idx] = best
        out: NDArray[np.uint32]
        if info.flat_cells == "model":
            out = self.codes.take(choice)
        else:
            out = np.array(base_codes, np.uint32).reshape(-1)
            out[cells] = self.codes.take(choice.take(cells))
        self._slot = 3 - self._slot  # this frame's choice is the next one's last
        self._engaged, self._fresh = active, False
        return out.reshape(stats.mean.shape)


def save_matcher(path: Path, weights: dict[str, NDArray[np.float32]], info: ModelInfo) -> None:
    """Write weights and metadata as one .npz (the format load_matcher reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {k: np.asarray(weights[k], np.float32) for k in WEIGHT_NAMES}
    arrays["info"] = np.array(json.dumps(asdict(info), sort_keys=True))
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)


def load_matcher(path: str | Path | None = None) -> GlyphMatcher:
    """The matcher in `path`, else $KRYSTAL_GLYPH_MODEL, else the shipped model.

    Raises OSError (missing or unreadable), KeyError (an array or field is missing) or ValueError
    (another input spec, bad shapes or settings), so the engine can fall back to the ramp with the
    reason.
    """
    chosen = Path(path or os.environ.get(MODEL_ENV) or DEFAULT_MODEL)
    try:
        with np.load(chosen, allow_pickle=False) as data:
            info = ModelInfo(**json.loads(str(data["info"])))
            weights = {k: np.ascontiguousarray(data[k], dtype=np.float32) for k in WEIGHT_NAMES}
    except (TypeError, json.JSONDecodeError) as exc:  # missing, unknown or garbled metadata
        raise ValueError(f"{chosen}: bad metadata ({exc})") from exc
    except (zipfile.BadZipFile, EOFError) as exc:  # a truncated or foreign file
        raise ValueError(f"{chosen}: not a weights file ({exc})") from exc
    if info.input_spec != INPUT_SPEC:
        raise ValueError(
            f"{chosen}: input spec {info.input_spec!r} does not match this matcher's {INPUT_SPEC!r}"
        )
    if info.flat_cells not in FLAT_CELLS or not info.glyphs:
        raise ValueError(f"{chosen}: flat_cells {info.flat_cells!r} or an empty glyph set")
    n_in, n_hidden, n_out = feature_count(info.sub_x, info.sub_y), weights["b1"].shape[0], len(info.glyphs)
    expected = {"w1": (n_in, n_hidden), "w2": (n_hidden, n_out), "b2": (n_out,)}
    for name, shape in expected.items():
        if weights[name].shape != shape:
            raise ValueError(f"{chosen}: {name} has shape {weights[name].shape}, expected {shape}")
    return GlyphMatcher(weights, info)
