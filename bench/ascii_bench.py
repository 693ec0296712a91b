"""ASCII rendering against chafa, on one core, 1920x1080 frames to 160x45 and 320x90.

Anchors, measured in the same run: libchafa in-process via chafa.py (ASCII symbols; FGBG and
truecolor; work 1 and 9; draw + print, what a chafa user gets) and the chafa CLI (start-up and
decode included). Ours: Engine.render plus the output a terminal needs (lines; ANSI colour codes in
colour modes). Both sides are timed on two noise realisations of each frame in turn, as frames
from a live camera differ, so no renderer gains from seeing one identical frame again. Quality for
both with krystal.ascii.quality: blurred SSIM, edge F1, flicker (two noise realisations rendered in
sequence), CIELAB delta E in colour; and, independent of the metric the learned kernel was trained
on, scikit-image's SSIM of the full-resolution render-back against the source, no blur (ssim_full).
The 256-colour rows are compared with libchafa's indexed 256-colour mode, truecolor with truecolor.

    python -m bench.ascii_bench [--quick]   (--quick: one scene, one size, fewer cases; < 20 s)
Each line: {"bench": "ascii", "case", "ours", "anchor", "ratio" (anchor ms / our ms), "unit": "ms", ...}
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, like the anchor; before numpy loads
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from skimage.metrics import structural_similarity

from bench.chafa_anchor import ChafaRenderer, cli_available, cli_render, set_single_thread
from bench.common import emit, time_ms
from bench.scenes import SCENES
from krystal.ascii import quality as q
from krystal.ascii import raster
from krystal.ascii.atlas import GlyphAtlas, load_atlas
from krystal.ascii.engine import Engine, Render, Style
from krystal.ascii.terminal import ansi_lines

SIZES = ((160, 45), (320, 90))


@dataclass(frozen=True)
class Scores:
    ms_min: float
    ms_median: float
    ssim: float
    edge_f1: float
    flicker: float
    delta_e: float
    ssim_full: float


def quality_of(
    codes: NDArray[np.uint32],
    fg: NDArray[np.uint8] | None,
    bg: NDArray[np.uint8] | None,
    source: NDArray[np.uint8],
    atlas: GlyphAtlas,
) -> tuple[float, float, float, float]:
    """(blurred SSIM, edge F1, delta E or NaN, full-resolution SSIM) of a grid against the source
    (bgr8, at the render's pixel size)."""
    src_luma = q.luma01(source)
    if fg is None:  # white glyphs on black, scaled as the rendered Image on krystal/ascii/image
        render_luma = raster.ink(codes, atlas) / max(float(atlas.coverage.max()), 1e-3)
        de = float("nan")
    else:
        rgb = raster.colour(codes, atlas, fg, bg)
        render_luma = q.luma01(rgb, "rgb")
        de = q.delta_e(rgb, cv2.cvtColor(source, cv2.COLOR_BGR2RGB))
    full = float(structural_similarity(render_luma, src_luma, data_range=1.0))
    return q.blurred_ssim(render_luma, src_luma), q.edge_f1(render_luma, src_luma).f1, de, full


Pair = tuple[NDArray[np.uint8], NDArray[np.uint8]]


def noisy_pair(frame: NDArray[np.uint8]) -> Pair:
    """Two noise realisations: timed renders alternate them, as a live camera's frames differ; the
    flicker is measured between them. Made once per scene (0.25 s each at 1080p)."""
    return q.add_noise(frame, 1), q.add_noise(frame, 2)


def ours(
    frame: NDArray[np.uint8],
    frames: Pair,
    style: Style,
    atlas: GlyphAtlas,
    repeat: int,
    *,
    energy: float = 0.0,
) -> Scores:
    engine = Engine(style, atlas, seed=1)
    engine.energy = energy
    depth = style.color_depth
    count = [0]

    def run() -> Render:
        count[0] += 1
        render = engine.render(frames[count[0] % 2], "bgr8")
        if render.foreground is not None:
            ansi_lines(render.codes, render.foreground, render.background, depth)
        else:
            render.lines()
        return render

    ms_min, ms_med = time_ms(run, repeat)
    first = Engine(style, atlas, seed=1)
    first.energy = energy
    r = first.render(frame, "bgr8")
    source = q.source_at_cells(frame, style.columns, style.rows)
    ssim, f1, de, full = quality_of(r.codes, r.foreground, r.background, source, atlas)
    noisy = Engine(style, atlas, seed=1)
    noisy.energy = energy
    a = noisy.render(frames[0], "bgr8").codes
    b = noisy.render(frames[1], "bgr8").codes
    return Scores(ms_min, ms_med, ssim, f1, q.flicker(a, b), de, full)


def chafa(
    frame: NDArray[np.uint8],
    frames: Pair,
    columns: int,
    rows: int,
    *,
    mode: str,
    work: int,
    atlas: GlyphAtlas,
    repeat: int,
) -> Scores:
    renderer = ChafaRenderer(columns, rows, mode, work)
    count = [0]

    def run() -> bytes:
        count[0] += 1
        return renderer.render(frames[count[0] % 2])

    ms_min, ms_med = time_ms(run, repeat)
    renderer.render(frame)
    g = renderer.grid()
    source = q.source_at_cells(frame, columns, rows)
    colour = g.foreground if mode != "fgbg" else None
    ssim, f1, de, full = quality_of(g.codes, colour, g.background, source, atlas)
    fresh = ChafaRenderer(columns, rows, mode, work)
    fresh.render(frames[0])
    a = fresh.grid().codes
    fresh.render(frames[1])
    b = fresh.grid().codes
    return Scores(ms_min, ms_med, ssim, f1, q.flicker(a, b), de, full)


def r4(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)


def report(case: str, mine: Scores, anchor: Scores, anchor_name: str, **extra: Any) -> None:
    emit(
        "ascii",
        case,
        mine.ms_median,
        anchor.ms_median,
        "ms",
        ours_min=r4(mine.ms_min),
        anchor_min=r4(anchor.ms_min),
        anchor_name=anchor_name,
        ssim=r4(mine.ssim),
        anchor_ssim=r4(anchor.ssim),
        ssim_full=r4(mine.ssim_full),
        anchor_ssim_full=r4(anchor.ssim_full),
        edge_f1=r4(mine.edge_f1),
        anchor_edge_f1=r4(anchor.edge_f1),
        flicker=r4(mine.flicker),
        anchor_flicker=r4(anchor.flicker),
        delta_e=r4(mine.delta_e),
        anchor_delta_e=r4(anchor.delta_e),
        **extra,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one scene, one size, fewer cases (< 20 s)")
    args = parser.parse_args()
    quick = args.quick
    repeat = 3 if quick else 20
    cv2.setNumThreads(1)
    set_single_thread()
    atlas = load_atlas()
    scenes = {"synthetic": SCENES["synthetic"]} if quick else SCENES
    sizes = SIZES[:1] if quick else SIZES
    mono = [("ramp", 3), ("edges", 3), ("edges", 5), ("edges", 7), ("sketch", 3), ("glitch", 3)]
    if quick:
        mono = [("ramp", 3), ("edges", 3), ("sketch", 3)]
    saturations = (1.3,) if quick else (1.3, 1.0)
    kernels = ["luminance"]
    if Engine(Style(kernel="learned"), atlas).learned_matcher() is not None:
        kernels.append("learned")
    with tempfile.TemporaryDirectory() as tmp:
        for scene, make in scenes.items():
            frame = make()
            pair = noisy_pair(frame)
            png = str(Path(tmp) / f"{scene}.png")
            cv2.imwrite(png, frame)
            for columns, rows in sizes:
                size = f"{columns}x{rows}"
                anchors = {
                    mode: chafa(frame, pair, columns, rows, mode=mode, work=1, atlas=atlas, repeat=repeat)
                    for mode in ("fgbg", "truecolor", "256")
                }
                for mode in () if quick else ("fgbg", "truecolor", "256"):
                    w9 = chafa(
                        frame, pair, columns, rows, mode=mode, work=9, atlas=atlas, repeat=max(3, repeat // 4)
                    )
                    report(
                        f"{scene} {size} chafa-{mode}-w9 vs w1", anchors[mode], w9, f"libchafa {mode} work 9"
                    )
                if cli_available():
                    for mode, base in anchors.items():
                        cli = partial(cli_render, png, columns, rows, mode)
                        _, cli_med = time_ms(cli, max(3, repeat // 4), warmup=1)
                        emit(
                            "ascii",
                            f"{scene} {size} chafa-cli-{mode} vs libchafa",
                            base.ms_median,
                            cli_med,
                            "ms",
                            ours_name=f"libchafa {mode} w1 in-process",
                            anchor_name=f"chafa CLI {mode} w1",
                        )
                for kernel in kernels:
                    for mode, k in mono:
                        style = Style(mode=mode, kernel=kernel, kernel_size=k, columns=columns, rows=rows)
                        report(
                            f"{scene} {size} {mode} k{k} {kernel}",
                            ours(frame, pair, style, atlas, repeat),
                            anchors["fgbg"],
                            "libchafa fgbg work 1",
                        )
                    style = Style(mode="glitch", kernel=kernel, columns=columns, rows=rows)
                    report(
                        f"{scene} {size} glitch@0.5 {kernel}",
                        ours(frame, pair, style, atlas, repeat, energy=0.5),
                        anchors["fgbg"],
                        "libchafa fgbg work 1",
                        note="audio energy 0.5: flicker is the effect",
                    )
                    for depth in ("truecolor", "256"):
                        for saturation in saturations:
                            style = Style(
                                mode="cyberpunk",
                                kernel=kernel,
                                columns=columns,
                                rows=rows,
                                color_depth=depth,
                                saturation=saturation,
                            )
                            report(
                                f"{scene} {size} cyberpunk {depth} sat{saturation} {kernel}",
                                ours(frame, pair, style, atlas, repeat),
                                anchors[depth],
                                f"libchafa {'truecolor' if depth == 'truecolor' else 'indexed 256'} work 1",
                            )


if __name__ == "__main__":
    main()
