"""Features of each analysis window: levels, BS.1770 loudness, spectrum, onsets, tempo and phase.

`Analyzer.push` takes chunks of mono float32 samples with their first sample's index and capture
time, and returns one `Features` per complete window. Work is batched: all windows a chunk
completes share one FFT call, so the cost per block falls as the batch grows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.signal
from numpy.typing import NDArray

from krystal.audio.spectrum import HOP
from krystal.audio.tempo import BeatTracker

SHORT_TERM_S = 3.0  # BS.1770 short-term loudness window
FLOOR_DB = -120.0
MAX_GAP_S = 2.0  # a longer gap restarts the analysis instead of filling silence

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
DEFAULT_BAND_EDGES_HZ = (0.0, 150.0, 400.0, 1000.0, 2500.0, 6000.0, 16000.0)


@dataclass(frozen=True)
class Chunk:
    """Consecutive mono samples from a source."""

    samples: F32
    first_sample_index: int  # since the source opened; a jump is a gap (dropped samples)
    capture_ns: int  # capture time of the first sample, ROS clock (ns)


class Features(NamedTuple):  # a tuple: built per window, cheaper than a dataclass
    capture_ns: int  # capture time of the window's first sample
    first_sample_index: int
    window_samples: int
    rms_dbfs: float
    peak_dbfs: float
    loudness_lufs: float
    spectral_centroid_hz: float
    spectral_flatness: float
    band_energy_db: tuple[float, ...]
    onset: bool
    onset_strength: float
    tempo_bpm: float
    tempo_confidence: float
    beat_phase: float


def k_weighting_sos(sample_rate: int) -> F64:
    """BS.1770 K-weighting (high shelf + RLB high-pass) as second-order sections for any rate.

    The same design pyloudnorm uses (shelf +4 dB at 1500 Hz, Q 1/sqrt 2; high-pass 38 Hz, Q 0.5),
    so 48 kHz matches the standard's published coefficients.
    """
    a_gain = 10 ** (4.0 / 40.0)
    w0 = 2 * np.pi * 1500.0 / sample_rate
    alpha = np.sin(w0) / (2 * (1 / np.sqrt(2)))
    cw, sa = np.cos(w0), 2 * np.sqrt(a_gain) * alpha
    shelf_b = [
        a_gain * ((a_gain + 1) + (a_gain - 1) * cw + sa),
        -2 * a_gain * ((a_gain - 1) + (a_gain + 1) * cw),
        a_gain * ((a_gain + 1) + (a_gain - 1) * cw - sa),
    ]
    shelf_a = [
        (a_gain + 1) - (a_gain - 1) * cw + sa,
        2 * ((a_gain - 1) - (a_gain + 1) * cw),
        (a_gain + 1) - (a_gain - 1) * cw - sa,
    ]
    w0 = 2 * np.pi * 38.0 / sample_rate
    alpha = np.sin(w0) / (2 * 0.5)
    cw = np.cos(w0)
    hp_b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
    hp_a = [1 + alpha, -2 * cw, 1 - alpha]
    sos = np.array([np.r_[shelf_b, shelf_a] / shelf_a[0], np.r_[hp_b, hp_a] / hp_a[0]])
    return np.asarray(sos, dtype=np.float64)


def _public_lfilter(b: F64, a: F64, x: F64, zi: F64) -> tuple[F64, F64]:
    y, zf = scipy.signal.lfilter(b, a, x, zi=zi)
    return y, zf


def _lfilter_binding() -> Callable[[F64, F64, F64, F64], tuple[F64, F64]]:
    """scipy.signal.lfilter of a 1-D float64 signal with state, through scipy's C routine where it
    takes the arguments lfilter gives it (lfilter's checks cost ~15 us a call, as much as filtering
    2 s of audio at 22 kHz). Checked at import against lfilter, which is used otherwise."""
    try:
        from scipy.signal import _sigtools

        def direct(b: F64, a: F64, x: F64, zi: F64) -> tuple[F64, F64]:
            y, zf = _sigtools._linear_filter(b, a, x, -1, zi)
            return y, zf

        b, a = scipy.signal.butter(4, 0.1)
        x = np.random.default_rng(0).standard_normal(300)
        zi: F64 = np.linspace(-0.5, 0.5, 4, dtype=np.float64)
        got, want = direct(b, a, x, zi), _public_lfilter(b, a, x, zi)
        if not all(np.allclose(g, w, rtol=1e-12, atol=1e-12) for g, w in zip(got, want, strict=True)):
            raise ValueError("_linear_filter differs")
        return direct
    except Exception:  # any change in a private routine: the public path
        return _public_lfilter


_lfilter = _lfilter_binding()


class Loudness:
    """Short-term loudness (ungated, 3 s, mono: channel weight 1) of a stream, window by window."""

    def __init__(self, sample_rate: int, window_samples: int) -> None:
        # both sections as one 4th-order filter: lfilter's call costs less than sosfilt's checks
        # (float64 holds the 38 Hz high-pass poles near z=1 well: within 0.01 LU of pyloudnorm)
        b, a = scipy.signal.sos2tf(k_weighting_sos(sample_rate))
        self._b, self._a = np.asarray(b, np.float64), np.asarray(a, np.float64)
        self._zi: F64 = np.zeros(len(self._a) - 1)
        self._size = max(1, round(SHORT_TERM_S * sample_rate / window_samples))
        self.reset()

    def reset(self) -> None:
        self._zi[:] = 0.0
        # the last `size` windows' mean squares as a ring of floats and their running sum (re-summed
        # each time the ring wraps, so rounding cannot build up): a few windows per call
        self._energy = [0.0] * self._size
        self._pos = self._filled = 0
        self._total = 0.0

    def process(self, windows: F32 | F64) -> list[float]:
        """LUFS at the end of each row of `windows` (M x window_samples)."""
        y, self._zi = _lfilter(self._b, self._a, np.asarray(windows, np.float64).ravel(), self._zi)
        squares = np.square(y).reshape(windows.shape)
        mean_sq: list[float] = np.add.reduce(squares, axis=1).tolist()
        scale, energy, size = 1.0 / windows.shape[1], self._energy, self._size
        out = []
        for total_sq in mean_sq:
            ms = total_sq * scale
            pos = self._pos
            self._total += ms - energy[pos]
            energy[pos] = ms
            self._pos = pos = pos + 1 if pos + 1 < size else 0
            if not pos:
                self._total = math.fsum(energy)
            self._filled = min(size, self._filled + 1)
            mean = self._total / self._filled
            out.append(max(FLOOR_DB, _db(mean) - 0.691))
        return out


def band_edges_problem(band_edges_hz: Sequence[float]) -> str | None:
    """Why these band edges are unusable, or None: at least two, rising, from >= 0."""
    edges = [float(e) for e in band_edges_hz]
    if len(edges) < 2 or edges[0] < 0 or any(b <= a for a, b in itertools.pairwise(edges)):
        return f"band_edges_hz must be at least two rising frequencies from >= 0, got {edges}"
    return None


class Analyzer:
    """Windows of `window_samples` from a chunk stream to Features (module docstring)."""

    def __init__(
        self,
        sample_rate: int,
        window_samples: int = 1024,
        band_edges_hz: Sequence[float] = DEFAULT_BAND_EDGES_HZ,
        min_bpm: float = 60.0,
        max_bpm: float = 180.0,
        *,
        prior_bpm: float = 120.0,
        prior_octaves: float = 0.7,
    ) -> None:
        if window_samples % HOP or window_samples <= 0:
            raise ValueError(f"window_samples={window_samples} must be a positive multiple of {HOP}")
        problem = band_edges_problem(band_edges_hz)
        if problem:
            raise ValueError(problem)
        edges = [float(e) for e in band_edges_hz]
        if sample_rate <= 0:
            raise ValueError(f"sample_rate={sample_rate} must be positive")
        self.sample_rate, self.window_samples = sample_rate, window_samples
        self.band_edges_hz = tuple(edges)
        self._tempo_args = (min_bpm, max_bpm, prior_bpm, prior_octaves)
        self.restarts = 0
        self.reset()
        freqs = self._beats.frames.freqs
        self._freqs = freqs.astype(np.float32)
        band = np.searchsorted(edges, freqs, side="right") - 1
        band[(freqs >= edges[-1]) | (freqs < edges[0])] = -1
        bands = (band[:, None] == np.arange(len(edges) - 1)[None, :]).astype(np.float32)
        # columns summed by one product each: power -> band energies and the total above DC
        # (flatness's mean); magnitude -> the centroid's weighted and plain sums
        above_dc = np.ones((len(freqs), 1), np.float32)
        above_dc[0] = 0.0
        self._power_cols = np.ascontiguousarray(np.hstack([bands, above_dc]))
        self._mag_cols = np.ascontiguousarray(np.stack([self._freqs, np.ones_like(self._freqs)], axis=1))

    def reset(self, next_index: int | None = None) -> None:
        self._pending: F32 = np.zeros(0, np.float32)
        self._next_index: int | None = next_index  # index of the first pending sample
        self._anchor = (0, 0)  # (sample index, capture ns) of the latest chunk
        self._beats = BeatTracker(self.sample_rate, *self._tempo_args)
        self._loudness = Loudness(self.sample_rate, self.window_samples)
        self._frames = 0  # ODF frames since reset

    def push(self, chunk: Chunk) -> list[Features]:
        samples: F32 = np.asarray(chunk.samples, dtype=np.float32).ravel()
        if self._next_index is None:
            self._next_index = chunk.first_sample_index
        gap = chunk.first_sample_index - (self._next_index + len(self._pending))
        first = chunk.first_sample_index
        if gap < 0 or gap > MAX_GAP_S * self.sample_rate:
            self.restarts += 1
            self.reset(chunk.first_sample_index)
        elif gap:  # silence keeps the time axis (and the tempo) honest across a short drop
            samples = np.concatenate([np.zeros(gap, np.float32), samples])
            first -= gap
        self._anchor = (chunk.first_sample_index, chunk.capture_ns)
        self._pending = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        count = len(self._pending) // self.window_samples
        if not count:
            return []
        used = count * self.window_samples
        block, self._pending = self._pending[:used], self._pending[used:]
        start_index = self._next_index
        assert start_index is not None
        self._next_index = start_index + used
        return self._analyse(block, start_index)

    def _analyse(self, block: F32, start_index: int) -> list[Features]:
        # the batch's windows go through each step together (one numpy call per step, not per
        # window), and the per-window values are taken out once as floats: per-call overhead,
        # not arithmetic, is the cost at the node's 1-5 windows per call
        n, hops = self.window_samples, self.window_samples // HOP
        count = len(block) // n
        beats = self._beats
        mags = beats.frames.magnitudes(block)
        odf = beats.onsets.flux(mags)
        flags = beats.onsets.flags(odf)
        strength: list[float] = odf[:, 0].tolist()
        windows = block.reshape(count, n)
        wide = windows.astype(np.float64)
        mean_sq: list[float] = np.add.reduce(wide * wide, axis=1).tolist()
        peak: list[float] = np.maximum.reduce(np.abs(windows), axis=1).tolist()
        lufs = self._loudness.process(wide)
        power = beats.frames.power(mags)
        if hops > 1:
            wpower = np.add.reduce(power.reshape(count, hops, -1), axis=1)
            wpower *= np.float32(1.0 / hops)
        else:
            wpower = power
        sums: list[list[float]] = np.dot(wpower, self._power_cols).tolist()
        centre: list[list[float]] = np.dot(np.sqrt(wpower), self._mag_cols).tolist()
        body = wpower[:, 1:] + np.float32(_TINY)
        log_sum: list[float] = np.add.reduce(np.log(body), axis=1).tolist()
        k = body.shape[1]
        tempos = beats.tempo.track(odf, hops)
        anchor_index, anchor_ns = self._anchor
        ns_per_sample = 1e9 / self.sample_rate
        fr = beats.frame_rate_hz
        out: list[Features] = []
        for w in range(count):
            index = start_index + w * n
            ms, (*bands, total), (weighted, plain) = mean_sq[w] * (1.0 / n), sums[w], centre[w]
            silent = ms < 1e-12
            flatness = math.exp(log_sum[w] / k) / ((total + k * _TINY) / k)
            tempo = tempos[w]
            frames = slice(w * hops, (w + 1) * hops)
            out.append(
                Features(
                    anchor_ns + int((index - anchor_index) * ns_per_sample),
                    index,
                    n,
                    _db(ms),
                    _db(peak[w] * peak[w]),
                    lufs[w],
                    0.0 if silent else weighted / max(plain, 1e-20),
                    0.0 if silent else min(max(flatness, 0.0), 1.0),
                    tuple(_db(b) for b in bands),
                    any(flags[frames]),
                    max(strength[frames]),
                    tempo.bpm,
                    tempo.confidence,
                    tempo.phase(self._frames + w * hops, fr),
                )
            )
        self._frames += count * hops
        return out


_TINY = 1e-20  # keeps the logarithm of an empty bin finite


def _db(power: float) -> float:
    return max(FLOOR_DB, 10.0 * math.log10(power)) if power > 1e-30 else FLOOR_DB
