"""`krystal train glyphs`: the retrained matcher exports to the .npz the renderer loads, a seeded run
is reproducible, the held-out images are outside both models' training photos, and the comparison
with the shipped matcher runs on them."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from krystal.ascii import learned  # noqa: E402
from krystal.ascii import train as base  # noqa: E402
from krystal.ascii.atlas import load_atlas  # noqa: E402
from krystal.ascii.engine import Engine, Style  # noqa: E402
from krystal.learning import glyphs  # noqa: E402

TINY = dataclasses.replace(
    glyphs.GlyphRecipe.quick(), steps=120, synthetic_tiles=500, photo_frames=2, batch=512
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, glyphs.GlyphFit]:
    path = tmp_path_factory.mktemp("glyphs") / "glyph_matcher.npz"
    return path, glyphs.train_glyphs(path, 0, TINY)


@pytest.fixture(scope="module")
def holdout() -> dict[str, np.ndarray]:
    images = glyphs.holdout_images()
    return {k: v[:256, :256] for k, v in images.items()}  # a corner each keeps the test short


def test_export_is_the_format_the_renderer_loads(trained: tuple[Path, glyphs.GlyphFit]) -> None:
    path, fit = trained
    matcher = learned.load_matcher(path)
    assert matcher.info.input_spec == learned.INPUT_SPEC and matcher.info.glyphs == fit.glyphs
    assert (
        len(fit.glyphs) == TINY.glyph_count
        and json.loads(matcher.info.notes)["pipeline"] == "krystal train glyphs"
    )
    with np.load(path) as npz:
        assert {"w1", "b1", "w2", "b2"} <= set(npz.files)
        assert npz["w1"].shape == (learned.feature_count(base.SUB_X, base.SUB_Y), TINY.hidden)
    # Learns something: far better than guessing among the glyphs.
    assert fit.val_accuracy > 1.5 / TINY.glyph_count
    assert fit.history[-1][2] < fit.history[0][2]  # held-out regret falls


def test_renderer_draws_with_the_new_model_on_unseen_images(
    trained: tuple[Path, glyphs.GlyphFit], holdout: dict[str, np.ndarray]
) -> None:
    path, fit = trained
    engine = Engine(Style(kernel="learned", columns=32, rows=16), load_atlas(), seed=1)
    engine.set_model(str(path))
    codes = engine.render(holdout["motorcycle"], "bgr8").codes
    assert codes.shape == (16, 32)
    assert {chr(int(c)) for c in np.unique(codes)} <= set(fit.glyphs) | set(engine.style.charset)
    mine = glyphs.evaluate_model(path, holdout, columns=32, rows=16)
    shipped = glyphs.evaluate_model(None, holdout, columns=32, rows=16)
    assert [m.image for m in mine] == [s.image for s in shipped] == list(glyphs.HOLDOUT)
    assert all(math.isfinite(m.ssim) and 0 <= m.edge_f1 <= 1 for m in mine + shipped)


def test_holdout_is_outside_every_training_photo() -> None:
    assert not set(glyphs.HOLDOUT) & set(base.PHOTOS)
    assert "motorcycle_left" not in base.PHOTOS and "motorcycle_right" not in base.PHOTOS


def test_augment_is_seeded_and_bounded() -> None:
    frame = np.random.default_rng(0).random((32, 48), dtype=np.float32)
    a = glyphs.augment(frame, np.random.default_rng(5))
    b = glyphs.augment(frame, np.random.default_rng(5))
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    shapes = {glyphs.augment(frame, np.random.default_rng(s)).shape for s in range(40)}
    assert shapes == {(32, 48), (48, 32)}  # quarter turns happen


def test_seeded_training_is_reproducible(tmp_path: Path) -> None:
    tiny = dataclasses.replace(TINY, steps=30, synthetic_tiles=200, photo_frames=1)
    glyphs.train_glyphs(tmp_path / "a.npz", 3, tiny)
    glyphs.train_glyphs(tmp_path / "b.npz", 3, tiny)
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        for name in learned.WEIGHT_NAMES:
            assert np.array_equal(a[name], b[name]), name
