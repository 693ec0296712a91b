"""The quality metric itself: a correct SSIM, and rankings that mean what they claim."""

from __future__ import annotations

import numpy as np
import pytest
from bench.scenes import synthetic

from krystal.ascii import quality as q
from krystal.ascii import raster
from krystal.ascii.atlas import load_atlas
from krystal.ascii.engine import Engine, Style

COLS, ROWS = 120, 34


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return synthetic()


@pytest.fixture(scope="module")
def source(scene: np.ndarray) -> np.ndarray:
    return q.luma01(q.source_at_cells(scene, COLS, ROWS))


def test_ssim_matches_scikit_image() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((64, 96)).astype(np.float32)
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ref = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert q.ssim(a, b) == pytest.approx(ref, abs=2e-3)
    assert q.ssim(a, a) == pytest.approx(1.0)


def test_flat_render_scores_zero(source: np.ndarray) -> None:
    assert q.blurred_ssim(np.full_like(source, 0.3), source) == 0.0
    assert q.edge_f1(np.full_like(source, 0.3), source).f1 == 0.0


def test_ramp_beats_random_glyphs(scene: np.ndarray, source: np.ndarray) -> None:
    atlas = load_atlas()
    ramp = Engine(Style(columns=COLS, rows=ROWS), atlas).render(scene, "bgr8").codes
    rng = np.random.default_rng(0)
    noise = rng.integers(32, 127, ramp.shape).astype(np.uint32)
    s_ramp = q.blurred_ssim(raster.ink(ramp, atlas), source)
    s_noise = q.blurred_ssim(raster.ink(noise, atlas), source)
    # SSIM's stabilising constant keeps smooth regions near 1 whatever the render: rank, don't bound
    assert s_ramp > 0.9 and s_noise < s_ramp - 0.4


def test_edge_f1_rewards_oriented_lines(scene: np.ndarray, source: np.ndarray) -> None:
    atlas = load_atlas()
    plain = Engine(Style(columns=COLS, rows=ROWS), atlas).render(scene, "bgr8").codes
    edges = Engine(Style(mode="edges", columns=COLS, rows=ROWS), atlas).render(scene, "bgr8").codes
    f_plain = q.edge_f1(raster.ink(plain, atlas), source).f1
    f_edges = q.edge_f1(raster.ink(edges, atlas), source).f1
    assert f_edges > 3 * f_plain


def test_ridge_and_step_give_the_same_orientation() -> None:
    """A line glyph (ridge) must match a step edge of the same direction: the tensor sees both."""
    step = np.zeros((32, 32), np.float32)
    step[:, 16:] = 1.0
    ridge = np.zeros((32, 32), np.float32)
    ridge[:, 15:17] = 1.0
    for img in (step, ridge):
        _, coherence, angle = q.cell_structure(img, 16, 32)
        assert coherence[0, 0] > 0.9
        assert abs(np.cos(angle[0, 0])) > 0.99  # gradient along x: a vertical edge


def test_flicker_and_noise() -> None:
    a = np.array([[1, 2], [3, 4]])
    assert q.flicker(a, a) == 0.0
    assert q.flicker(a, np.array([[1, 2], [3, 5]])) == 0.25
    img = np.full((8, 8), 128, np.uint8)
    n1, n2 = q.add_noise(img, 1), q.add_noise(img, 2)
    assert not np.array_equal(n1, n2) and np.array_equal(n1, q.add_noise(img, 1))


def test_delta_e_zero_for_identical_and_grows_with_shift() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert q.delta_e(rgb, rgb) == pytest.approx(0.0, abs=1e-4)
    shifted = np.clip(rgb.astype(int) + 30, 0, 255).astype(np.uint8)
    assert q.delta_e(shifted, rgb) > 5.0
