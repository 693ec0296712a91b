"""Synthetic audio: click tracks, tones, noise and drum-like patterns, streamed block by block.

The generator source makes the graph testable (and `make run` audible) without a microphone; the
same signals are the benchmark's material, so their ground truth (beat times, BPM) is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

PATTERNS = ("click", "drums", "tone", "noise")

F32 = NDArray[np.float32]


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _click(sample_rate: int, freq_hz: float, length_s: float = 0.03) -> F32:
    t = np.arange(int(sample_rate * length_s)) / sample_rate
    return np.asarray(np.sin(2 * np.pi * freq_hz * t) * np.exp(-t / (length_s / 5)), dtype=np.float32)


def _kick(sample_rate: int) -> F32:
    t = np.arange(int(sample_rate * 0.15)) / sample_rate
    freq = 50 + 100 * np.exp(-t / 0.02)
    return np.asarray(np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / 0.05), dtype=np.float32)


def _noise_burst(sample_rate: int, length_s: float, decay_s: float, seed: int) -> F32:
    rng = np.random.default_rng(seed)
    n = int(sample_rate * length_s)
    t = np.arange(n) / sample_rate
    burst = rng.standard_normal(n) * np.exp(-t / decay_s)
    if n > 1:  # brighter: first difference tilts the spectrum up
        burst = np.concatenate([[0.0], np.diff(burst)])
    return np.asarray(burst / max(1e-9, float(np.abs(burst).max())), dtype=np.float32)


@dataclass(frozen=True)
class Segment:
    """A stretch of constant tempo: `bpm` from `start_s` (the first beat) on."""

    start_s: float
    bpm: float


def beat_times(segments: Sequence[Segment], duration_s: float) -> NDArray[np.float64]:
    """Beat instants of a piecewise-constant tempo, each segment starting on a beat."""
    times: list[float] = []
    for i, seg in enumerate(segments):
        end = segments[i + 1].start_s if i + 1 < len(segments) else duration_s
        t = seg.start_s
        while t < end - 1e-9:
            times.append(t)
            t += 60.0 / seg.bpm
    return np.asarray(times)


def render(
    pattern: str,
    sample_rate: int,
    duration_s: float,
    segments: Sequence[Segment] = (Segment(0.0, 120.0),),
    *,
    level_dbfs: float = -12.0,
    tone_hz: float = 440.0,
    swing: float = 0.0,
    noise_dbfs: float = -120.0,
    seed: int = 0,
) -> F32:
    """A whole clip: `pattern` at the tempo `segments` give, with optional swing and added noise.

    click: accented 1 of 4 (higher pitch, louder); drums: kick on 1 and 3, snare on 2 and 4,
    hi-hat on eighths, the off-beat eighth delayed by `swing` (0..0.5 of half a beat).
    """
    n = int(sample_rate * duration_s)
    out: F32 = np.zeros(n + sample_rate, np.float32)  # tail room for the last hit
    rng = np.random.default_rng(seed)
    if pattern == "tone":
        t = np.arange(n) / sample_rate
        out[:n] = np.sin(2 * np.pi * tone_hz * t)
    elif pattern == "noise":
        out[:n] = rng.standard_normal(n) / 3.0
    elif pattern in ("click", "drums"):
        beats = beat_times(segments, duration_s)
        periods = np.diff(np.append(beats, beats[-1] + (beats[-1] - beats[-2] if len(beats) > 1 else 0.5)))
        hi, lo = _click(sample_rate, 1760.0), _click(sample_rate, 880.0)
        kick, snare = _kick(sample_rate), _noise_burst(sample_rate, 0.12, 0.04, seed + 1)
        hat = _noise_burst(sample_rate, 0.04, 0.008, seed + 2)
        for i, (bt, period) in enumerate(zip(beats, periods, strict=True)):
            start = round(bt * sample_rate)
            if pattern == "click":
                hit, gain = (hi, 1.0) if i % 4 == 0 else (lo, 0.6)
                _add(out, start, hit * gain)
                continue
            _add(out, start, (kick if i % 2 == 0 else snare * 0.7) * (1.0 if i % 4 == 0 else 0.8))
            _add(out, start, hat * 0.25)
            off = round((bt + period * (0.5 + swing * 0.5)) * sample_rate)
            _add(out, off, hat * 0.18)
    else:
        raise ValueError(f"unknown pattern {pattern!r}; one of {', '.join(PATTERNS)}")
    out = out[:n]
    peak = float(np.abs(out).max()) if n else 0.0
    if peak > 0:
        out *= db_to_gain(level_dbfs) / peak
    if noise_dbfs > -120.0:
        out += (rng.standard_normal(n) * db_to_gain(noise_dbfs)).astype(np.float32)
    return out.astype(np.float32)


def _add(out: F32, start: int, hit: F32) -> None:
    end = min(len(out), start + len(hit))
    if 0 <= start < end:
        out[start:end] += hit[: end - start]


class Generator:
    """An endless stream of `pattern`, rendered a bar cycle at a time and served in blocks."""

    def __init__(
        self,
        pattern: str,
        sample_rate: int,
        bpm: float = 120.0,
        level_dbfs: float = -12.0,
        tone_hz: float = 440.0,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"unknown generator pattern {pattern!r}; one of {', '.join(PATTERNS)}")
        # 16 beats loop seamlessly (a whole number of bars); tones and noise loop every 4 s
        cycle_s = 16 * 60.0 / bpm if pattern in ("click", "drums") else 4.0
        if pattern == "tone":  # a whole number of periods, so the loop does not click
            cycle_s = round(cycle_s * tone_hz) / tone_hz
        self._cycle = render(
            pattern, sample_rate, cycle_s, (Segment(0.0, bpm),), level_dbfs=level_dbfs, tone_hz=tone_hz
        )
        self._pos = 0

    def read(self, frames: int) -> F32:
        idx = (self._pos + np.arange(frames)) % len(self._cycle)
        self._pos = (self._pos + frames) % len(self._cycle)
        return np.asarray(self._cycle[idx], dtype=np.float32)
