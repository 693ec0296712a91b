"""The learned glyph matcher: NumPy inference matches torch, training learns, the shipped model draws
lines as lines, bad weight files are refused, and the engine runs it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from krystal.ascii import learned, quality
from krystal.ascii.atlas import GlyphAtlas, load_atlas
from krystal.ascii.engine import Engine, Style

CELL_W, CELL_H = 8, 16


@pytest.fixture(scope="module")
def atlas() -> GlyphAtlas:
    return load_atlas()


@pytest.fixture(scope="module")
def shipped() -> learned.GlyphMatcher:
    return learned.load_matcher(learned.DEFAULT_MODEL)


def _samples(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """The engine's 2x4 samples per cell of a full-resolution (8x16 px per cell) image."""
    h, w = image.shape
    return np.asarray(cv2.resize(image, (w // 4, h // 4), interpolation=cv2.INTER_AREA), np.float32)


def _line_image(
    angle_deg: float, rows: int = 7, cols: int = 9, y_px: float | None = None
) -> NDArray[np.float32]:
    """A bright 2 px line on a dark frame, through the centre cell's middle (or at row y_px).

    angle_deg: the line's direction as edge_f1 measures it (image y down, 0 = horizontal).
    """
    s = 4  # drawn at 4x and area-averaged: anti-aliased like a camera would see it
    big = np.zeros((rows * CELL_H * s, cols * CELL_W * s), np.uint8)
    cx, cy = big.shape[1] / 2, big.shape[0] / 2 if y_px is None else y_px * s
    t, reach = np.deg2rad(angle_deg), 10 * big.shape[0]
    p1 = (round(cx - reach * np.cos(t)), round(cy - reach * np.sin(t)))
    p2 = (round(cx + reach * np.cos(t)), round(cy + reach * np.sin(t)))
    cv2.line(big, p1, p2, 255, 2 * s)
    size = (cols * CELL_W, rows * CELL_H)
    small = cv2.resize(big.astype(np.float32) / 255, size, interpolation=cv2.INTER_AREA)
    return np.asarray(0.1 + 0.8 * small, np.float32)


def _line_angle(atlas: GlyphAtlas, glyph: str) -> tuple[float, float]:
    """(coherence, line direction in degrees) of a glyph tiled 3x3, as edge_f1 measures a render."""
    bitmap = atlas.bitmaps[atlas.glyphs.index(glyph)]
    _, coherence, gradient = quality.cell_structure(np.tile(bitmap, (3, 3)), CELL_W, CELL_H)
    return float(coherence[1, 1]), float(np.rad2deg(gradient[1, 1]) + 90) % 180


@pytest.mark.parametrize(
    ("name", "angle", "y_px"),
    [
        ("vertical", 90.0, None),
        ("horizontal at the bottom", 0.0, 3 * CELL_H + 14.0),
        ("diagonal \\", 63.4, None),  # one cell across per cell down: the cell's diagonal
        ("diagonal /", 116.6, None),
    ],
)
def test_shipped_model_draws_lines_along_their_direction(
    shipped: learned.GlyphMatcher, atlas: GlyphAtlas, name: str, angle: float, y_px: float | None
) -> None:
    rows, cols = 7, 9
    sub = _samples(_line_image(angle, rows, cols, y_px))
    codes = shipped.glyphs(sub, 2, 4, np.zeros((rows, cols), np.uint32))
    glyph = chr(int(codes[rows // 2, cols // 2]))
    coherence, direction = _line_angle(atlas, glyph)
    gap = abs(direction - angle) % 180
    assert coherence >= 0.4 and min(gap, 180 - gap) <= quality.ANGLE_TOL_DEG, (
        f"{name} line drawn with {glyph!r} (coherence {coherence:.2f}, direction {direction:.0f} deg)"
    )


def test_flat_frame_takes_the_tabulated_glyphs_and_keeps_them(shipped: learned.GlyphMatcher) -> None:
    shipped.reset()
    sub = np.full((4 * 6, 2 * 10), 0.5, np.float32)
    first = shipped.glyphs(sub, 2, 4, np.zeros((6, 10), np.uint32))
    assert len(set(first.ravel().tolist())) == 1
    # A sub-margin change (sensor noise) keeps every glyph.
    noisy = np.clip(sub + np.random.default_rng(0).normal(0, 0.004, sub.shape).astype(np.float32), 0, 1)
    assert np.array_equal(shipped.glyphs(noisy, 2, 4, first), first)
    # A new grid shape starts afresh instead of failing.
    assert shipped.glyphs(np.full((8, 6), 0.5, np.float32), 2, 4, np.zeros((2, 3), np.uint32)).shape == (2, 3)


def test_ramp_flat_cells_keep_the_ramp_glyph(shipped: learned.GlyphMatcher) -> None:
    matcher = learned.GlyphMatcher(
        {"w1": shipped.w1, "b1": shipped.b1, "w2": shipped.w2, "b2": shipped.b2},
        dataclasses.replace(shipped.info, flat_cells="ramp"),
    )
    sub = _samples(_line_image(90.0))
    base = np.full((7, 9), ord("#"), np.uint32)
    codes = matcher.glyphs(sub, 2, 4, base)
    assert codes[0, 0] == ord("#") and codes[3, 4] != ord("#")


def _copy_with(source: Path, target: Path, **changes: str) -> Path:
    """A copy of a weights file with some metadata changed."""
    with np.load(source) as data:
        arrays = {k: data[k] for k in data.files}
    info = learned.ModelInfo(**json.loads(str(arrays.pop("info"))))
    learned.save_matcher(target, arrays, dataclasses.replace(info, **changes))
    return target


def test_load_refuses_another_input_spec(tmp_path: Path) -> None:
    bad = _copy_with(learned.DEFAULT_MODEL, tmp_path / "old.npz", input_spec="cell-means/v0")
    with pytest.raises(ValueError, match="input spec 'cell-means/v0' does not match"):
        learned.load_matcher(bad)


def test_load_refuses_wrong_shapes_and_missing_files(tmp_path: Path) -> None:
    bad = _copy_with(learned.DEFAULT_MODEL, tmp_path / "short.npz", glyphs=" .:")
    with pytest.raises(ValueError, match="expected"):
        learned.load_matcher(bad)
    with pytest.raises(OSError):
        learned.load_matcher(tmp_path / "missing.npz")


def test_model_path_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy_with(learned.DEFAULT_MODEL, tmp_path / "copy.npz", notes="from env")
    monkeypatch.setenv(learned.MODEL_ENV, str(copy))
    assert learned.load_matcher().info.notes == "from env"


@pytest.mark.parametrize("mode", ["ramp", "edges"])
def test_engine_renders_the_grid_with_the_learned_kernel(mode: str) -> None:
    frame = cv2.cvtColor((_line_image(30.0, 12, 20) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    frame = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_CUBIC)
    engine = Engine(Style(mode=mode, kernel="learned", columns=48, rows=20))
    render = engine.render(frame, "bgr8")
    assert render.kernel == "learned"  # a fallback to the ramp would report "luminance"
    assert render.codes.shape == (20, 48)
    again = engine.render(quality.add_noise(frame, 1), "bgr8")
    assert quality.flicker(render.codes, again.codes) < 0.02


@pytest.fixture
def torch() -> Any:
    """Per test, not at module level: without torch only the training tests may skip."""
    return pytest.importorskip("torch", reason="torch is only needed for training (krystal.ascii.train)")


def test_numpy_inference_equals_torch(shipped: learned.GlyphMatcher, torch: Any) -> None:
    from krystal.ascii.train import Net

    torch.manual_seed(3)
    n_in = learned.feature_count(2, 4)
    net = Net(n_in, 32, len(shipped.info.glyphs))
    matcher = learned.GlyphMatcher(net.export(), shipped.info)
    sub = _samples(_line_image(40.0, 12, 16)) + np.random.default_rng(1).normal(0, 0.05, (48, 32)).astype(
        np.float32
    )
    x = learned.features(np.clip(sub, 0, 1), 2, 4)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(matcher.scores(x), expected, rtol=1e-5, atol=1e-5)
    # The engine's path (feature planes, chunked buffers, flat-cell table) picks the same glyphs.
    codes = matcher.glyphs(np.clip(sub, 0, 1), 2, 4, np.zeros((12, 16), np.uint32))
    stats = learned.cell_stats(np.clip(sub, 0, 1), 2, 4)
    engaged = stats.structure.reshape(-1) >= shipped.info.contrast_min
    assert 0 < engaged.mean() < learned.MAX_SHARE  # the first frame runs the network on exactly these
    picked = matcher.codes[expected.argmax(axis=1)]
    assert np.array_equal(codes.reshape(-1)[engaged], picked[engaged])


def test_short_training_beats_chance_on_held_out_cells(tmp_path: Path, atlas: GlyphAtlas, torch: Any) -> None:
    from krystal.ascii import train

    torch.set_num_threads(2)
    out = tmp_path / "tiny.npz"
    train.train(out, seed=1, recipe=train.Recipe(steps=300, synthetic_tiles=1500, photo_scales=1), log=False)
    model = learned.load_matcher(out)
    assert model.info.seed == 1 and model.info.input_spec == learned.INPUT_SPEC
    # Held out: synthetic tiles from another seed, labelled by the training objective.
    rng = np.random.default_rng(12345)
    cost = train.GlyphCost.build(atlas.subset(model.info.glyphs), 0.05, 0.05, 0.4)
    tiles = train.Synth(rng, atlas, 5 * CELL_H, 6 * CELL_W).tiles(300)
    cells = train.frame_cells(
        tiles.reshape(-1, 6 * CELL_W),
        cost,
        rng,
        ink_scale=model.info.ink_scale,
        contrast_min=model.info.contrast_min,
        cell_w=CELL_W,
        cell_h=CELL_H,
    )
    pick = model.scores(cells.x).argmax(axis=1)
    accuracy = float((pick == cells.labels).mean())
    common = float(np.bincount(cells.labels).max() / len(cells))
    at = np.arange(len(cells))
    regret = float(cells.cost[at, pick].mean())
    constant = float(cells.cost[:, np.bincount(cells.labels).argmax()].mean())
    assert accuracy > max(3 / len(model.info.glyphs), 1.5 * common), (accuracy, common)
    assert regret < 0.25 * constant, (regret, constant)
