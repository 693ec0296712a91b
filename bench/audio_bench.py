"""Tempo accuracy, lock time and cost of krystal.audio against aubio (real time) and librosa
(offline), on generated clips with known tempo, plus loudness against pyloudnorm; same run.

Clips: click tracks (accented downbeat) and drum patterns (kick, snare, swung hi-hats), 60-180
BPM, clean and with noise; step clips change tempo mid-clip. Seeds differ from those the
tracker's constants were tuned on (tests/test_audio_core.py uses its own).

Cost: this thread's CPU time per 512-sample block of our tempo pipeline and of all features, at
the node's calling pattern (20 Hz ticks) at 48 and 22.05 kHz, against aubio's tempo at the same
rate on the same segments.

`python -m bench.audio_bench [--quick] [--cost] [--seed 1,7] [--verbose]`
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.common import emit
from krystal.audio.features import Analyzer, Chunk
from krystal.audio.generator import Segment, render
from krystal.audio.spectrum import HOP
from krystal.audio.tempo import BeatTracker

SR = 44100


@dataclass(frozen=True)
class Clip:
    name: str
    samples: NDArray[np.float32]
    bpm: float  # the tempo at the end of the clip
    step_s: float = 0.0  # time of a tempo change, 0 if none


def clips(quick: bool, seed: int = 2026, sr: int = SR) -> list[Clip]:
    rng = np.random.default_rng(seed)
    count = 6 if quick else 40
    duration = 10.0 if quick else 14.0
    out = []
    for i in range(count):
        bpm = float(rng.uniform(60.0, 180.0))
        pattern = "click" if i % 2 == 0 else "drums"
        swing = float(rng.uniform(0.0, 0.3)) if pattern == "drums" and i % 4 == 1 else 0.0
        noise = float(rng.choice([-120.0, -40.0, -28.0]))
        offset = float(rng.uniform(0.0, 0.5))
        x = render(pattern, sr, duration, (Segment(offset, bpm),), swing=swing, noise_dbfs=noise, seed=i)
        out.append(Clip(f"{pattern} {bpm:.1f} swing {swing:.2f} noise {noise:.0f}", x, bpm))
    for i in range(1 if quick else 10):
        a, b = (float(v) for v in rng.uniform(60.0, 180.0, 2))
        while abs(a - b) < 0.15 * min(a, b):
            b = float(rng.uniform(60.0, 180.0))
        pattern = "click" if i % 2 == 0 else "drums"
        x = render(pattern, sr, 16.0, (Segment(0.0, a), Segment(8.0, b)), noise_dbfs=-40.0, seed=100 + i)
        out.append(Clip(f"{pattern} step {a:.1f}->{b:.1f}", x, b, step_s=8.0))
    return out


HYDROGEN_SONGS = Path("/usr/share/hydrogen/data/demo_songs")
# Songs never looked at while choosing the tracker's constants; reported apart from the others.
HELD_OUT = ("GM_kit_demo2", "GM_kit_demo3", "tutorial_georgyporgy")
# Each song at its own tempo and re-tempoed (the song file's <bpm>): the same drumming at a slow
# and a fast tempo tests the metrical level, which a song at its own 98-125 BPM does not.
TEMPO_FACTORS = (0.65, 1.0, 1.4)
CACHE = Path(os.environ.get("KRYSTAL_BENCH_CACHE", Path(__file__).resolve().parent.parent / ".bench"))


def hydrogen_render(song: Path, bpm: float, cache: Path, render: bool = True) -> NDArray[np.float32] | None:
    """`song` rendered by Hydrogen's h2cli at `bpm` (mono, SR), cached; None without h2cli (or
    not cached when `render` is false)."""
    import soundfile

    out = cache / f"{song.stem}_{bpm:.1f}.wav"
    if not out.exists():
        if not render or shutil.which("h2cli") is None:
            return None
        cache.mkdir(parents=True, exist_ok=True)
        text = re.sub(r"<bpm>[^<]*</bpm>", f"<bpm>{bpm:.3f}</bpm>", song.read_text(), count=1)
        retempo = cache / f"{song.stem}_{bpm:.1f}.h2song"
        retempo.write_text(text)
        part = cache / f"{song.stem}_{bpm:.1f}.part.wav"
        subprocess.run(
            ["h2cli", "-s", str(retempo), "-o", str(part)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=900,
            check=False,
        )
        if not part.exists():
            return None
        part.rename(out)
    x, sr = soundfile.read(out, dtype="float32", always_2d=True)
    if sr != SR:
        raise ValueError(f"{out}: {sr} Hz, {SR} expected")
    return np.asarray(x.mean(axis=1), dtype=np.float32)


def song_bpm(song: Path) -> float:
    m = re.search(r"<bpm>([^<]*)</bpm>", song.read_text())
    return float(m.group(1)) if m else 0.0


def hydrogen_clips(
    quick: bool, held_out: bool, cache: Path = CACHE / "hydrogen", render: bool = True
) -> list[Clip]:
    """14 s clips of Hydrogen's demo songs at three tempi, and 16 s step clips (8 s of a song at
    one tempo, then 8 s of it at another); empty without the songs or h2cli."""
    songs = sorted(p for p in HYDROGEN_SONGS.glob("*.h2song") if (p.stem in HELD_OUT) == held_out)
    out: list[Clip] = []
    for song in songs[:1] if quick else songs:
        base = song_bpm(song)
        renders = {f: hydrogen_render(song, round(base * f, 1), cache, render) for f in TEMPO_FACTORS}
        for f, x in renders.items():
            if x is None:
                continue
            bpm = round(base * f, 1)
            starts = [2.0] if quick else [2.0, 18.0, 34.0]
            for t in starts:
                i = int(t * SR)
                if i + 14 * SR <= len(x):
                    out.append(Clip(f"{song.stem} {bpm:g} at {t:g} s", x[i : i + 14 * SR], bpm))
        for a, b in ((1.0, 1.4), (0.65, 1.0), (1.4, 0.65)):
            xa, xb = renders.get(a), renders.get(b)
            if xa is None or xb is None or len(xa) < 10 * SR or len(xb) < 10 * SR:
                continue
            x = np.concatenate([xa[2 * SR : 10 * SR], xb[2 * SR : 10 * SR]])
            bpm_a, bpm_b = round(base * a, 1), round(base * b, 1)
            out.append(Clip(f"{song.stem} step {bpm_a:g}->{bpm_b:g}", x, bpm_b, step_s=8.0))
    return out


def strict(est: float, truth: float) -> bool:
    return abs(est - truth) <= 2.0


def octave(est: float, truth: float) -> bool:
    return any(abs(est - truth * f) <= 0.04 * truth * f for f in (0.5, 1.0, 2.0))


def ours_track(x: NDArray[np.float32], chunk: int = 4 * HOP) -> list[tuple[float, float]]:
    """(time s, bpm) of our tracker through the clip, fed `chunk` samples at a time."""
    a = Analyzer(SR, window_samples=HOP)
    out = []
    for i in range(0, len(x) - chunk + 1, chunk):
        for f in a.push(Chunk(x[i : i + chunk], i, 0)):
            out.append(((f.first_sample_index + HOP) / SR, f.tempo_bpm))
    return out


def aubio_track(x: NDArray[np.float32]) -> list[tuple[float, float]]:
    import aubio

    t = aubio.tempo("default", 1024, HOP, SR)
    out = []
    for i in range(0, len(x) - HOP + 1, HOP):
        t(x[i : i + HOP])
        out.append(((i + HOP) / SR, float(t.get_bpm())))
    return out


def librosa_bpm(x: NDArray[np.float32]) -> float:
    import librosa

    tempo, _ = librosa.beat.beat_track(y=x, sr=SR, hop_length=HOP)
    return float(np.atleast_1d(tempo)[0])


def same_level_or_octave(est: float, truth: float) -> bool:
    """Within +-2 BPM of the tempo, its half or its double (the margin scaled with the level)."""
    return any(abs(est - truth * f) <= 2.0 * f for f in (0.5, 1.0, 2.0))


def lock_time(
    track: list[tuple[float, float]], clip: Clip, match: Callable[[float, float], bool] = strict
) -> float:
    """Seconds after the step from which the estimate stays within +-2 BPM (`match`) to the clip's
    end; never locking counts as the whole rest of the clip."""
    never = track[-1][0] if track else clip.step_s
    locked_at = never
    for t, bpm in track:
        if t < clip.step_s:
            continue
        if match(bpm, clip.bpm):
            locked_at = min(locked_at, t)
        else:
            locked_at = never
    return locked_at - clip.step_s


def node_chunks(n: int, sr: int = SR, rate_hz: float = 20.0) -> list[tuple[int, int]]:
    """(start, end) of what the node analyses per tick: whole 512-sample blocks due at each tick
    of `analysis_rate_hz` (default 20 Hz: 4 or 5 blocks at 44.1/48 kHz, 2 or 3 at 22.05 kHz), as
    its sources deliver."""
    out: list[tuple[int, int]] = []
    start, tick = 0, 1
    while True:
        end = int(tick * sr / rate_hz) // HOP * HOP
        if end > n:
            return out
        if end > start:
            out.append((start, end))
        start, tick = end, tick + 1


Runner = Callable[[int, int], object]  # processes x[i:j]


def ours_runner(x: NDArray[np.float32], features: bool, window: int, sr: int = SR) -> Runner:
    a = Analyzer(sr, window_samples=window)
    b = BeatTracker(sr)
    if features:
        return lambda i, j: a.push(Chunk(x[i:j], i, 0))
    return lambda i, j: b.process(x[i:j])


def aubio_runner(x: NDArray[np.float32], sr: int = SR) -> Runner:
    import aubio

    t = aubio.tempo("default", 1024, HOP, sr)

    def run(i: int, j: int) -> None:
        for k in range(i, j - HOP + 1, HOP):
            t(x[k : k + HOP])

    return run


def paired_costs(
    x: NDArray[np.float32], cases: dict[str, tuple[Runner, list[tuple[int, int]]]], sr: int = SR
) -> dict[str, float]:
    """Median us of this thread's CPU time per 512-sample block of each case, run in turns on the
    same 1 s segments of `x` (each case with its own call pattern inside a segment), so a load
    burst on this shared machine falls on all of them rather than on whichever ran then. CPU time,
    not wall time: on a loaded machine the wall time counts other processes' turns."""
    segment = sr // HOP * HOP
    times: dict[str, list[float]] = {name: [] for name in cases}
    for start in range(0, len(x) - segment + 1, segment):
        for name, (run, spans) in cases.items():
            inside = [(i, j) for i, j in spans if start <= i < start + segment]
            t0 = time.thread_time()
            for i, j in inside:
                run(i, j)
            blocks = sum(j - i for i, j in inside) / HOP
            times[name].append((time.thread_time() - t0) * 1e6 / max(blocks, 1.0))
    return {name: float(np.median(v)) for name, v in times.items()}


def accuracy_and_lock(label: str, material: list[Clip], verbose: bool) -> None:
    """Strict and octave accuracy of ours, aubio and librosa on the fixed-tempo clips of a set,
    and the lock time after a step on its step clips."""
    static = [c for c in material if not c.step_s]
    steps = [c for c in material if c.step_s]
    ours = [ours_track(c.samples)[-1][1] for c in static]
    aub = [aubio_track(c.samples)[-1][1] for c in static]
    lib = [librosa_bpm(c.samples) for c in static]
    truth = [c.bpm for c in static]
    if verbose:
        for c, o, a, b in zip(static, ours, aub, lib, strict=True):
            print(f"# {label} {c.name}: ours {o:.1f} aubio {a:.1f} librosa {b:.1f}", file=sys.stderr)
    n = len(static)
    for kind, test in (("strict_2bpm", strict), ("octave_4pct", octave)):
        share = {
            name: sum(test(e, t) for e, t in zip(est, truth, strict=True)) / max(n, 1)
            for name, est in (("ours", ours), ("aubio", aub), ("librosa", lib))
        }
        for anchor, anchor_name in (
            ("aubio", "aubio tempo (default, 1024/512)"),
            ("librosa", "librosa.beat.beat_track"),
        ):
            emit(
                "audio",
                f"{label}: tempo accuracy {kind} ({n} clips)",
                share["ours"],
                share[anchor],
                "share",
                lower_is_better=False,
                anchor_name=anchor_name,
            )
    if not steps:
        return
    ours_tracks = [ours_track(c.samples) for c in steps]
    ours_lock = [lock_time(t, c) for t, c in zip(ours_tracks, steps, strict=True)]
    ours_any = [lock_time(t, c, same_level_or_octave) for t, c in zip(ours_tracks, steps, strict=True)]
    aub_lock = [lock_time(aubio_track(c.samples), c) for c in steps]
    if verbose:
        for c, o, a in zip(steps, ours_lock, aub_lock, strict=True):
            print(f"# {label} {c.name}: lock ours {o:.2f} s aubio {a:.2f} s", file=sys.stderr)
    ends = [len(c.samples) / SR - c.step_s - 0.1 for c in steps]
    emit(
        "audio",
        f"{label}: lock after tempo step, median ({len(steps)} clips)",
        float(np.median(ours_lock)),
        float(np.median(aub_lock)),
        "s",
        anchor_name="aubio tempo (default, 1024/512)",
        ours_locked=sum(t < end for t, end in zip(ours_lock, ends, strict=True)),
        ours_locked_within_4s=sum(t <= 4.0 for t in ours_lock),
        ours_locked_within_4s_at_tempo_half_or_double=sum(t <= 4.0 for t in ours_any),
        anchor_locked=sum(t < end for t, end in zip(aub_lock, ends, strict=True)),
        ours_worst_s=round(float(max(ours_lock)), 2),
    )


COST_RATES = (48000, 22050)  # the node's usual device rate, and a low one: 2-3 blocks per tick


def costs(sr: int, quick: bool) -> None:
    """Cost per block of our tempo pipeline and of all features against aubio's tempo, at `sr`,
    each with its own call pattern, on the same 1 s segments in turn."""
    static = [c for c in clips(quick, sr=sr) if not c.step_s]
    x = np.concatenate([c.samples for c in static[: 3 if quick else 6]])
    n = len(x)

    def every(blocks: int) -> list[tuple[int, int]]:
        return [(i, i + blocks * HOP) for i in range(0, n - blocks * HOP + 1, blocks * HOP)]

    node = node_chunks(n, sr)  # the node's 20 Hz ticks
    per_tick = sorted({(j - i) // HOP for i, j in node})
    pattern = f"node pattern (20 Hz ticks, {per_tick[0]}-{per_tick[-1]} blocks per call)"
    tempo_what = "tempo pipeline (FFT, flux, onsets, tempo)"
    cases: dict[str, tuple[Runner, list[tuple[int, int]]]] = {"aubio": (aubio_runner(x, sr), every(1))}
    if sr == COST_RATES[0]:
        for blocks in (1, 4, 16):
            runner = ours_runner(x, False, HOP, sr)
            cases[f"{tempo_what}, {blocks} block(s) per call"] = (runner, every(blocks))
    cases[f"{tempo_what}, {pattern}"] = (ours_runner(x, False, HOP, sr), node)
    cases[f"all features, {pattern}, 1024-sample windows"] = (ours_runner(x, True, 2 * HOP, sr), node)
    measured = paired_costs(x, cases, sr)
    anchor = measured.pop("aubio")
    for what, ours_us in measured.items():
        emit(
            "audio",
            f"cost per 512-sample block at {sr / 1000:g} kHz, {what}",
            ours_us,
            anchor,
            "us",
            anchor_name=f"aubio tempo (default, 1024/512) at {sr / 1000:g} kHz, 1 block per call, "
            "same 1 s segments in turn",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter clips (< 20 s)")
    parser.add_argument(
        "--seed", default="2026", help="material seed, or several comma-separated: their clips pooled"
    )
    parser.add_argument("--verbose", action="store_true", help="print each clip's estimates")
    parser.add_argument("--cost", action="store_true", help="the cost cases only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.cost:
        for sr in COST_RATES:
            costs(sr, args.quick)
        return
    material = [c for seed in args.seed.split(",") if seed.strip() for c in clips(args.quick, int(seed))]
    sets = {"synthetic": material}
    # Hydrogen's demo songs: rendered on first use (about 30 s a render); --quick only if cached
    for held_out, label in ((False, "hydrogen (tuning songs)"), (True, "hydrogen (held-out songs)")):
        songs = hydrogen_clips(args.quick, held_out, render=not args.quick)
        if songs:
            sets[label] = songs
        else:
            print(
                f"# {label}: no songs (needs Debian hydrogen's h2cli; --quick uses cached renders only)",
                file=sys.stderr,
            )
    for label, clip_set in sets.items():
        accuracy_and_lock(label, clip_set, args.verbose)
    for sr in COST_RATES:
        costs(sr, args.quick)
    import pyloudnorm

    meter = pyloudnorm.Meter(SR, block_size=3.0)
    errors = []
    rng = np.random.default_rng(7)
    for kind in ("tone", "noise", "drums", "click"):
        for level in (-30.0, -12.0):
            x = render(kind, SR, 3.0, level_dbfs=level, tone_hz=float(rng.uniform(50, 8000)), seed=3)
            ours_lufs = Analyzer(SR, window_samples=HOP * 3).push(Chunk(x, 0, 0))[-1].loudness_lufs
            errors.append(abs(ours_lufs - meter.integrated_loudness(x.astype(np.float64))))
    emit(
        "audio",
        "short-term loudness max |error| vs pyloudnorm (8 signals, 3 s)",
        max(errors),
        0.5,
        "LU",
        anchor_name="pyloudnorm (goal: within 0.5 LU)",
    )


if __name__ == "__main__":
    main()
