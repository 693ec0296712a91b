"""Onsets and tempo from a spectral-flux onset detection function (ODF), streaming.

OnsetDetector: log-compressed spectral flux per hop (overall, and of the low and high bands), with
an adaptive threshold (median of the recent ODF times a factor plus a floor) and a refractory
time. TempoTracker: every `update_s` the autocorrelation of the last `window_s` of ODF is scored
with its harmonics (k * lag); the metrical level is chosen by ACF evidence, a tempo prior and the
backbeat cue (low-band hits answered by high-band hits half a bar-pulse later); the period is
refined from the peaks of several harmonics (sub-frame), and the beat phase found with a comb over
the same ODF. State is a few numpy arrays; work is per batch of hops, not per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from krystal.audio.spectrum import HOP, Frames, irfft, rfft

F64 = NDArray[np.float64]
CONTINUITY = 1.4
# the ACF's input fades from this weight (oldest frame) to 1 (newest): after a tempo change the new
# beat wins about 0.75 s sooner; 0.25 with CONTINUITY 1.4 chosen on seeds 1/7/11/99/2026 (docs/audio.md)
RECENCY = 0.25
COMPRESSION = 1e4  # log1p(C * band magnitude): magnitudes are shares of full scale, so -80 dB ~ 1
LOW_HZ, HIGH_HZ = 150.0, 1500.0  # kick-drum bands below, snare/hat bands above (backbeat cue)
BACKBEAT_GAIN = 3.0  # a level's score x (1 + gain * backbeat evidence), evidence in 0..1
BACKBEAT_SPREAD = 2.0  # evidence 1 when the lead is this many standard deviations of the correlation
LEVELS = np.array([1 / 3, 1 / 2, 1.0, 2.0, 3.0])  # metrical levels tried around the best lag
_PEAK = np.linspace(0.96, 1.04, 9)  # an ACF peak is looked for within +-4 % of a lag
_HARMONICS = np.arange(1, 5, dtype=np.float64)[:, None]
_REFINE = np.arange(1, 9, dtype=np.float64)

_MISSING = object()
_SMOOTH = np.exp(-0.5 * (np.arange(-3, 4) / 1.0) ** 2)
_SMOOTH /= _SMOOTH.sum()


class OnsetDetector:
    """Spectral flux of magnitude frames and onset flags with an adaptive threshold."""

    def __init__(
        self,
        frame_rate_hz: float,
        freqs_hz: F64,
        *,
        bin_scale: NDArray[np.float32] | None = None,
        bands: int = 40,
        threshold: float = 1.5,
        floor: float = 0.1,
        median_s: float = 0.5,
        refractory_s: float = 0.08,
    ) -> None:
        self.threshold, self.floor = threshold, floor
        # the ODF before this batch, a ring of floats: 20-50 values, whose median sorted() takes
        # in less time than numpy's copy and partition calls
        self._history: list[float] = [0.0] * max(3, int(median_s * frame_rate_hz))
        self._refractory = max(1, int(refractory_s * frame_rate_hz))
        self._seen = False
        self._prev = 0.0  # the ODF value before this batch (a rise is measured from it)
        self._pos = 0  # where the next value goes in the history ring
        self._since_onset = self._refractory
        # mel-spaced bands, each the mean of its bins, as librosa's onset strength weighs them
        freqs = np.asarray(freqs_hz, dtype=np.float64)
        top = min(float(freqs[-1]), 11025.0)
        mel = 2595.0 * np.log10(1.0 + freqs / 700.0)
        index = np.floor(bands * mel / (2595.0 * np.log10(1.0 + top / 700.0)))
        index = np.clip(index, 0, bands - 1).astype(np.int64)
        used = np.unique(index)
        matrix = (index[:, None] == used[None, :]).astype(np.float32)
        self._bands = matrix / matrix.sum(axis=0, keepdims=True)
        # the magnitude scale (share of full scale) and the log's compression folded into each
        # bin's weight in its band's mean. Bands are runs of adjacent bins: a sum over each run
        # (reduceat) does what a bins x bands matmul would, at a quarter of its cost on 5 rows
        scale = np.ones(len(freqs), np.float32) if bin_scale is None else np.sqrt(bin_scale)
        self._weights = (self._bands.sum(axis=1) * scale * np.float32(COMPRESSION)).astype(np.float32)
        self._starts = np.flatnonzero(np.diff(index, prepend=-1))
        # ODF columns: mean flux of all bands, of the low bands, of the high bands
        centre = freqs @ self._bands
        groups = np.stack([np.ones(len(used)), centre < LOW_HZ, centre >= HIGH_HZ], axis=1)
        self._groups = (groups / np.maximum(groups.sum(axis=0), 1.0)).astype(np.float32)
        self._logs: dict[int, NDArray[np.float32]] = {}
        self._last = np.zeros(len(used), np.float32)  # log band magnitudes of the latest frame
        self._seen_frame = False

    def flux(self, magnitudes: NDArray[np.float32]) -> NDArray[np.float32]:
        """ODF per frame (rows of `magnitudes`, Frames.magnitudes) x (all, low, high), >= 0: mean
        positive change of log band magnitude."""
        n = len(magnitudes)
        logs = self._logs.get(n)
        if logs is None:  # row 0: the previous batch's last frame; one buffer per batch size
            logs = self._logs[n] = np.zeros((n + 1, self._bands.shape[1]), np.float32)
        logs[0] = self._last
        body = logs[1:]
        np.add.reduceat(magnitudes * self._weights, self._starts, axis=1, out=body)
        np.log1p(body, out=body)
        if not self._seen_frame:
            logs[0], self._seen_frame = body[0], True
        self._last[:] = logs[n]
        diff = body - logs[:-1]
        np.maximum(diff, 0.0, out=diff)
        # float32, as computed (np.dot: less overhead than @); the tracker stores float64
        flux: NDArray[np.float32] = np.dot(diff, self._groups)
        return flux

    def onsets(self, odf: F64 | NDArray[np.float32]) -> NDArray[np.bool_]:
        """Onset flag per ODF value (the overall column): above the median of the preceding ODF
        (taken once per batch) times `threshold` plus `floor`, rising, and a refractory time after
        the previous onset."""
        return np.array(self.flags(odf), bool)

    def flags(self, odf: F64 | NDArray[np.float32]) -> list[bool]:
        """`onsets` as a list."""
        if odf.ndim == 2:
            odf = odf[:, 0]
        n, m = len(odf), len(self._history)
        if not n:
            return []
        history = self._history
        if not self._seen:  # no history yet: the first batch is its own reference
            self._prev = float(np.median(np.asarray(odf, np.float64)))
            history[:] = [self._prev] * m
        self._seen = True
        ref = sorted(history)[m // 2] * self.threshold + self.floor
        # a few values per call: plain floats cost less than a dozen numpy calls
        values: list[float] = odf.tolist()
        flags = [False] * n
        prev, last, refractory = self._prev, -self._since_onset, self._refractory
        for i, v in enumerate(values):
            if v > ref and v > prev and i - last >= refractory:
                flags[i], last = True, i
            prev = v
        self._prev, self._since_onset = prev, n - last
        # the history is a ring (its median does not care about order)
        if n >= m:
            history[:], self._pos = values[-m:], 0  # oldest first again
        else:
            pos = self._pos
            for v in values:
                history[pos] = v
                pos = pos + 1 if pos + 1 < m else 0
            self._pos = pos
        return flags


@dataclass(frozen=True)
class Tempo:
    bpm: float  # 0 until an estimate exists
    confidence: float  # 0..1
    last_beat_frame: float  # ODF frame index (since start) of the latest beat; phase reference

    def phase(self, frame: float, frame_rate_hz: float) -> float:
        """Position within the beat (0..1) at ODF frame `frame`, 0 without a tempo."""
        if self.bpm <= 0:
            return 0.0
        return float(((frame - self.last_beat_frame) * self.bpm / (frame_rate_hz * 60.0)) % 1.0)


class TempoTracker:
    """Tempo and beat phase from ODF values at `frame_rate_hz`."""

    def __init__(
        self,
        frame_rate_hz: float,
        min_bpm: float = 60.0,
        max_bpm: float = 180.0,
        *,
        window_s: float = 4.0,
        update_s: float = 0.75,
        prior_bpm: float = 120.0,
        prior_octaves: float = 0.7,
    ) -> None:
        self.prior_bpm, self.prior_octaves = prior_bpm, prior_octaves
        self.frame_rate_hz, self.min_bpm, self.max_bpm = frame_rate_hz, min_bpm, max_bpm
        self._size = int(window_s * frame_rate_hz)
        self._buf = np.zeros((3, self._size))  # ODF columns (all, low, high), oldest first
        self._frames = 0  # ODF frames seen since start
        self._update = max(1, int(update_s * frame_rate_hz))
        self._next_update = self._update
        self._nfft = 1 << int(np.ceil(np.log2(2 * self._size)))
        self._tempo = Tempo(0.0, 0.0, 0.0)
        self._candidate = 0.0  # a different tempo must win twice in a row before it is reported
        self._cross: F64 | None = None  # low-to-high band cross-correlation of the last estimate
        # what depends only on the window's fill and a candidate lag (a small, fixed set of values
        # once the window is full): computed once, not in every estimate
        self._memo: dict[tuple[object, ...], Any] = {}

    @property
    def tempo(self) -> Tempo:
        return self._tempo

    def reset(self) -> None:
        self._buf[:] = 0.0
        self._frames, self._next_update = 0, self._update
        self._tempo, self._candidate = Tempo(0.0, 0.0, 0.0), 0.0
        self._memo.clear()

    def process(self, odf: F64 | NDArray[np.float32]) -> Tempo:
        """Take new ODF values (n, or n x 3 columns all/low/high); re-estimate when an update is
        due; return the current tempo."""
        self._feed(odf)
        return self._tempo

    def track(self, odf: F64 | NDArray[np.float32], hops: int) -> list[Tempo]:
        """As `process`, and the tempo after each group of `hops` values (one per window)."""
        before = self._tempo
        events = self._feed(odf)
        out, current, e = [], before, 0
        for end in range(hops, len(odf) + 1, hops):
            while e < len(events) and events[e][0] <= end:
                current, e = events[e][1], e + 1
            out.append(current)
        return out

    def phase(self, frame: float) -> float:
        """Position within the beat (0..1) at ODF frame `frame`, 0 without a tempo."""
        return self._tempo.phase(frame, self.frame_rate_hz)

    def _feed(self, odf: F64 | NDArray[np.float32]) -> list[tuple[int, Tempo]]:
        values = odf  # float32 from the flux: the buffer's float64 takes it exactly
        if values.ndim == 1:  # the overall ODF only: no backbeat evidence
            values = np.asarray(np.column_stack([values, np.zeros((len(values), 2))]), np.float64)
        events: list[tuple[int, Tempo]] = []
        pos, n = 0, len(values)
        while pos < n:
            take = min(n - pos, self._next_update - self._frames)
            self._push(values[pos : pos + take])
            pos += take
            if self._frames >= self._next_update:
                self._next_update += self._update
                if self._frames >= self._size // 2:
                    self._estimate()
                events.append((pos, self._tempo))
        return events

    def _push(self, values: F64 | NDArray[np.float32]) -> None:
        n = len(values)
        if n >= self._size:
            self._buf[:] = values[-self._size :].T
        elif n:
            self._buf[:, :-n] = self._buf[:, n:]
            self._buf[:, -n:] = values.T
        self._frames += n

    def _estimate(self) -> None:
        filled = min(self._frames, self._size)
        # rows: the overall ODF (log over its median: a loud kick no longer hides the snare's
        # beats; smoothed, since a hit's ODF peak moves by a frame with its place in the hop),
        # the low and the high bands. One FFT call for the three, one inverse for ACF and cross
        x = self._buf[:, -filled:].copy()
        median = float(np.partition(x[0], filled // 2)[filled // 2])
        x[0] = np.log1p(x[0] * (1.0 / (median + 1e-9)))
        x[0] = np.convolve(x[0], _SMOOTH, "same")
        x -= np.add.reduce(x, axis=1, keepdims=True) * (1.0 / filled)
        lags, harmonics = self._cached(("lags", filled), self._lags, filled)
        x *= self._cached(("ramp", filled), np.linspace, RECENCY, 1.0, filled)
        spec = rfft(x, self._nfft)
        acf, cross = irfft(spec[[0, 2]] * spec[[0, 1]].conj(), self._nfft)
        acf = acf[:filled]
        if acf[0] <= 1e-12:
            return
        acf = acf / acf[0]
        energy = x[1:] @ x[1:].T
        self._cross = (
            cross / np.sqrt(energy[0, 0] * energy[1, 1]) if energy[0, 0] * energy[1, 1] > 1e-24 else None
        )
        fr = self.frame_rate_hz
        lo, hi = self._lag_range()
        if not len(lags):
            return
        score = np.dot(acf, harmonics)  # ACF at the lag's harmonics, weighted 1/sqrt(k)
        lag = self._metrical_level(acf, float(lags[score.argmax()]), filled)
        period = self._refine(acf, lag, filled)
        if not lo * 0.97 <= period <= hi * 1.03:
            return
        bpm = 60.0 * fr / period
        i = min(int(period), filled - 2)  # the ACF between the frames around the period
        at = float(acf[i]) * (i + 1 - period) + float(acf[i + 1]) * (period - i)
        confidence = min(max(at, 0.0), 1.0)
        current = self._tempo.bpm
        if current and abs(bpm - current) > 0.04 * current and abs(bpm - self._candidate) > 0.04 * bpm:
            self._candidate = bpm  # first sight of another tempo: wait for one confirmation
            self._tempo = Tempo(current, self._tempo.confidence, self._beat(60.0 * fr / current, filled))
            return
        self._candidate = bpm
        self._tempo = Tempo(float(bpm), confidence, self._beat(period, filled))

    def _cached(self, key: tuple[object, ...], make: Callable[..., Any], *args: Any) -> Any:
        # the tempo range and prior are public attributes: part of the key
        key = (*key, self.min_bpm, self.max_bpm, self.prior_bpm, self.prior_octaves)
        found = self._memo.get(key, _MISSING)
        if found is _MISSING:
            if len(self._memo) >= 4096:  # keys keep changing only while the window fills
                self._memo.clear()
            found = self._memo[key] = make(*args)
        return found

    def _lag_range(self) -> tuple[float, float]:
        """Beat periods in frames of max_bpm and min_bpm."""
        fr = self.frame_rate_hz
        return fr * 60.0 / self.max_bpm, fr * 60.0 / self.min_bpm

    def _lags(self, filled: int) -> tuple[F64, F64]:
        """Whole-frame candidate lags, and the matrix (filled x lags) that weighs an ACF at their
        harmonics k * lag by 1/sqrt(k) (those inside the window, normalised per lag), linearly
        interpolated: one product instead of gathers."""
        lo, hi = self._lag_range()
        lags: F64 = np.arange(int(np.floor(lo)), int(np.ceil(hi)) + 1, dtype=np.float64)
        lags = lags[(lags >= 2) & (lags < filled / 2)]
        pos = _HARMONICS * lags[None, :]
        ok = pos < filled - 1
        weight = ok / np.sqrt(_HARMONICS)
        weight = weight / np.maximum(weight.sum(axis=0), 1e-9)
        return lags, _Taps(np.where(ok, pos, 0.0), filled, weight).matrix()

    def _levels(self, lag: float, filled: int) -> tuple[F64, F64, _Taps, F64] | None:
        """The best lag's multiples and fractions in range, their tempi, the taps around each (+-4 %:
        the ACF's peak there, the cross-correlation one candidate beat later), their tempo prior."""
        lo, hi = self._lag_range()
        c = lag * LEVELS
        c = c[(c >= lo * 0.97) & (c <= hi * 1.03) & (c * 1.04 < filled - 1)]
        if not len(c):
            return None
        bpm = 60.0 * self.frame_rate_hz / c
        prior = np.exp(-0.5 * (np.log2(bpm / self.prior_bpm) / self.prior_octaves) ** 2)
        peaks = _Taps(c[:, None] * _PEAK[None, :], filled)
        return c, bpm, peaks, prior

    def _backbeat(self, around: _Taps, filled: int, count: int) -> F64:
        """Per candidate beat period: how much more the high bands answer a low-band hit one beat
        later than at once, in units of the cross-correlation's spread (0..1). Kick on 1 and 3
        with snare on 2 and 4 is a pulse at the beat, though each drum alone repeats every two."""
        r = self._cross  # r[k]: high k frames after low, normalised
        if r is None:
            return np.zeros(count)
        at_once = max(float(r[0]), float(r[1]), float(r[-1]))
        later = around(r).max(axis=1)
        body = r[1 : filled // 2]  # its spread: in noise the lead is small but clear
        mean = float(body.sum()) / len(body)
        spread = max(float(body @ body) / len(body) - mean * mean, 0.0) ** 0.5 + 1e-9
        lead: F64 = (later - at_once) * (1.0 / (BACKBEAT_SPREAD * spread))
        np.maximum(lead, 0.0, out=lead)  # np.clip's wrapper costs more than the two
        np.minimum(lead, 1.0, out=lead)
        return lead

    def _metrical_level(self, acf: F64, lag: float, filled: int) -> float:
        """Among the best lag's multiples and fractions in range, the one whose ACF peak, weighted
        by a log-normal tempo prior and the backbeat cue, is highest: picks the beat rather than
        the bar or the eighth."""
        levels = self._cached(("levels", lag, filled), self._levels, lag, filled)
        if levels is None:
            return lag
        c, bpm, around, prior = levels
        peak = around(acf).max(axis=1)
        current = self._tempo.bpm
        if current:  # the level we are on keeps winning ties: no octave flicker
            prior = np.where(np.abs(bpm - current) <= 0.04 * current, prior * CONTINUITY, prior)
        score = peak * prior * (1.0 + BACKBEAT_GAIN * self._backbeat(around, filled, len(c)))
        return float(c[int(score.argmax())])

    @staticmethod
    def _refine_plan(lag: float, filled: int) -> tuple[F64, NDArray[np.int64], NDArray[np.int64]] | None:
        ks = _REFINE[_REFINE * lag + 2 < filled * 0.75]
        width = int(np.ceil(0.3 * lag)) + 1
        if not len(ks) or width < 3:
            return None
        start = np.maximum(1, np.floor(ks * lag - 0.15 * lag).astype(np.int64))
        idx = np.minimum(start[:, None] + np.arange(width)[None, :], filled - 1)
        return ks, idx, np.arange(len(ks))

    def _refine(self, acf: F64, lag: float, filled: int) -> float:
        """Beat period (frames) fitted through the interpolated peaks near k * lag."""
        plan = self._cached(("refine", lag, filled), self._refine_plan, lag, filled)
        if plan is None:
            return lag
        ks, idx, rows = plan
        seg = acf[idx]
        top = np.argmax(seg, axis=1)
        i = np.minimum(np.maximum(top, 1), idx.shape[1] - 2)
        a, b, c = seg[rows, i - 1], seg[rows, i], seg[rows, i + 1]
        denom = a - 2 * b + c
        inner = (denom < 0) & (b >= a) & (b >= c)  # a true local maximum: parabola through it
        shift = np.where(inner, 0.5 * (a - c) / np.where(inner, denom, -1.0), 0.0)
        peaks = np.where(inner, idx[rows, i] + shift, idx[rows, top])
        w = np.maximum(seg[rows, top], 0.0) * ks
        den = float(np.dot(w, ks))
        return float(np.dot(w, peaks) / den) if den > 0 else lag

    def _beat(self, period: float, filled: int) -> float:
        """Frame index of the latest beat: the comb offset that collects the most ODF."""
        x = self._buf[0, -filled:]
        beats = int((filled - 1) // period)
        if beats < 1:
            return float(self._frames - 1)
        offsets = np.arange(int(np.ceil(period)), dtype=np.float64)
        ks = np.arange(beats, dtype=np.float64) * period
        positions = (filled - 1) - offsets[:, None] - ks[None, :]
        score = _interp(x, np.maximum(positions, 0.0)).sum(axis=1)
        return float(self._frames - 1 - offsets[int(score.argmax())])


class _Taps:
    """Linear interpolation at fixed fractional positions (>= 0), optionally weighted: the
    indices and weights are worked out once for values of a given length."""

    def __init__(self, positions: F64, size: int, weight: F64 | None = None) -> None:
        i = np.minimum(positions.astype(np.int64), size - 2)  # positions >= 0: truncation floors
        f = positions - i
        self._i, self._j, self._size = i, i + 1, size
        self._a, self._b = (1.0 - f, f) if weight is None else ((1.0 - f) * weight, f * weight)

    def __call__(self, values: F64) -> F64:
        return np.asarray(values[self._i] * self._a + values[self._j] * self._b)

    def matrix(self) -> F64:
        """M (size x columns) with values @ M == self(values).sum(axis=0), for 2-D positions."""
        out = np.zeros((self._size, self._i.shape[1]))
        cols = np.broadcast_to(np.arange(self._i.shape[1]), self._i.shape)
        np.add.at(out, (self._i, cols), self._a)
        np.add.at(out, (self._j, cols), self._b)
        return out


def _interp(values: F64, positions: F64) -> F64:
    """Linear interpolation of `values` at fractional indices, once."""
    return _Taps(positions, len(values))(values)


class BeatTracker:
    """Samples to ODF, onset flags and tempo: the whole real-time tempo pipeline of one stream."""

    def __init__(
        self,
        sample_rate: int,
        min_bpm: float = 60.0,
        max_bpm: float = 180.0,
        prior_bpm: float = 120.0,
        prior_octaves: float = 0.7,
    ) -> None:
        self.frame_rate_hz = sample_rate / HOP
        self.frames = Frames(sample_rate)
        self.onsets = OnsetDetector(
            self.frame_rate_hz, np.asarray(self.frames.freqs, dtype=np.float64), bin_scale=self.frames.scale
        )
        self.tempo = TempoTracker(
            self.frame_rate_hz, min_bpm, max_bpm, prior_bpm=prior_bpm, prior_octaves=prior_octaves
        )

    def process(self, samples: NDArray[np.float32]) -> Tempo:
        odf = self.onsets.flux(self.frames.magnitudes(samples))
        self.onsets.flags(odf)
        return self.tempo.process(odf)
