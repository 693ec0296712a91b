"""Onsets and tempo from a spectral-flux onset detection function (ODF), streaming.

OnsetDetector: log-compressed spectral flux per hop, with an adaptive threshold (median of the
recent ODF times a factor plus a floor) and a refractory time. TempoTracker: every `update_s` the
autocorrelation of the last `window_s` of ODF is scored with its harmonics (k * lag), the beat
period refined from the peaks of several harmonics (sub-frame), and the beat phase found with a
comb over the same ODF. State is a few numpy arrays; work is per batch of hops, not per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from krystal.audio.spectrum import HOP, Frames

F64 = NDArray[np.float64]
CONTINUITY = 1.25
COMPRESSION = 1e4  # log1p(C * band magnitude): magnitudes are shares of full scale, so -80 dB ~ 1


_SMOOTH = np.exp(-0.5 * (np.arange(-3, 4) / 1.0) ** 2)
_SMOOTH /= _SMOOTH.sum()


class OnsetDetector:
    """Spectral flux of magnitude frames and onset flags with an adaptive threshold."""

    def __init__(
        self,
        frame_rate_hz: float,
        freqs_hz: F64,
        *,
        bands: int = 40,
        threshold: float = 1.5,
        floor: float = 0.1,
        median_s: float = 0.5,
        refractory_s: float = 0.08,
    ) -> None:
        self.threshold, self.floor = threshold, floor
        self._history: F64 = np.zeros(max(3, int(median_s * frame_rate_hz)))  # ODF before this batch
        self._refractory = max(1, int(refractory_s * frame_rate_hz))
        self._seen = False
        self._since_onset = self._refractory
        self._prev_log: NDArray[np.float32] | None = None
        # mel-spaced bands, each the mean of its bins, as librosa's onset strength weighs them
        top = min(float(freqs_hz[-1]), 11025.0)
        mel = 2595.0 * np.log10(1.0 + np.asarray(freqs_hz) / 700.0)
        index = np.floor(bands * mel / (2595.0 * np.log10(1.0 + top / 700.0)))
        index = np.clip(index, 0, bands - 1).astype(np.int64)
        used = np.unique(index)
        matrix = (index[:, None] == used[None, :]).astype(np.float32)
        self._bands = matrix / matrix.sum(axis=0, keepdims=True)

    def flux(self, power: NDArray[np.float32]) -> F64:
        """ODF value per frame (rows of `power`), >= 0: mean positive change of log magnitude."""
        logs = np.log1p(np.sqrt(power @ self._bands) * np.float32(COMPRESSION))
        diff = np.empty_like(logs)
        diff[0] = logs[0] - (logs[0] if self._prev_log is None else self._prev_log)
        np.subtract(logs[1:], logs[:-1], out=diff[1:])
        self._prev_log = logs[-1].copy()
        np.maximum(diff, 0.0, out=diff)
        return np.asarray(diff.sum(axis=1) * (1.0 / logs.shape[1]), dtype=np.float64)

    def onsets(self, odf: F64) -> NDArray[np.bool_]:
        """Onset flag per ODF value: above the median of the preceding ODF (taken once per batch)
        times `threshold` plus `floor`, rising, and a refractory time after the previous onset."""
        n, m = len(odf), len(self._history)
        if not n:
            return np.zeros(0, bool)
        if not self._seen:  # no history yet: the first batch is its own reference
            self._history[:] = np.median(odf)
        self._seen = True
        ref = float(np.partition(self._history, m // 2)[m // 2]) * self.threshold + self.floor
        joined = np.concatenate([self._history, odf])
        rising = odf > joined[m - 1 : m - 1 + n]
        candidates = np.flatnonzero((odf > ref) & rising)
        flags = np.zeros(n, bool)
        last = -self._since_onset
        for i in candidates.tolist():  # onsets are rare: a short loop
            if i - last >= self._refractory:
                flags[i], last = True, i
        self._since_onset = n - last
        self._history = joined[-m:]
        return flags


@dataclass(frozen=True)
class Tempo:
    bpm: float  # 0 until an estimate exists
    confidence: float  # 0..1
    last_beat_frame: float  # ODF frame index (since start) of the latest beat; phase reference


class TempoTracker:
    """Tempo and beat phase from ODF values at `frame_rate_hz`."""

    def __init__(
        self,
        frame_rate_hz: float,
        min_bpm: float = 60.0,
        max_bpm: float = 180.0,
        *,
        window_s: float = 4.0,
        update_s: float = 0.5,
        prior_bpm: float = 120.0,
        prior_octaves: float = 0.7,
    ) -> None:
        self.prior_bpm, self.prior_octaves = prior_bpm, prior_octaves
        self.frame_rate_hz, self.min_bpm, self.max_bpm = frame_rate_hz, min_bpm, max_bpm
        self._size = int(window_s * frame_rate_hz)
        self._buf = np.zeros(self._size)
        self._frames = 0  # ODF frames seen since start
        self._update = max(1, int(update_s * frame_rate_hz))
        self._next_update = self._update
        self._nfft = 1 << int(np.ceil(np.log2(2 * self._size)))
        self._tempo = Tempo(0.0, 0.0, 0.0)
        self._candidate = 0.0  # a different tempo must win twice in a row before it is reported

    @property
    def tempo(self) -> Tempo:
        return self._tempo

    def reset(self) -> None:
        self._buf[:] = 0.0
        self._frames, self._next_update = 0, self._update
        self._tempo, self._candidate = Tempo(0.0, 0.0, 0.0), 0.0

    def process(self, odf: F64) -> Tempo:
        """Take new ODF values; re-estimate when an update is due; return the current tempo."""
        pos = 0
        while pos < len(odf):
            take = min(len(odf) - pos, self._next_update - self._frames)
            self._push(odf[pos : pos + take])
            pos += take
            if self._frames >= self._next_update:
                self._next_update += self._update
                if self._frames >= self._size // 2:
                    self._estimate()
        return self._tempo

    def phase(self, frame: float) -> float:
        """Position within the beat (0..1) at ODF frame `frame`, 0 without a tempo."""
        t = self._tempo
        if t.bpm <= 0:
            return 0.0
        period = self.frame_rate_hz * 60.0 / t.bpm
        return float(((frame - t.last_beat_frame) / period) % 1.0)

    def _push(self, values: F64) -> None:
        n = len(values)
        if n >= self._size:
            self._buf[:] = values[-self._size :]
        elif n:
            self._buf[:-n] = self._buf[n:]
            self._buf[-n:] = values
        self._frames += n

    def _estimate(self) -> None:
        filled = min(self._frames, self._size)
        # smoothing: a hit's ODF peak moves by a frame with its position in the hop
        # log of the ODF over its median: a loud kick no longer hides the snare's beats
        raw = self._buf[-filled:]
        x = np.convolve(np.log1p(raw / (float(np.median(raw)) + 1e-9)), _SMOOTH, "same")
        x -= x.mean()
        spec = np.fft.rfft(x, self._nfft)
        acf = np.fft.irfft(spec * np.conj(spec), self._nfft)[:filled]
        if acf[0] <= 1e-12:
            return
        acf = acf / acf[0]
        fr = self.frame_rate_hz
        lo, hi = fr * 60.0 / self.max_bpm, fr * 60.0 / self.min_bpm
        lags: F64 = np.arange(int(np.floor(lo)), int(np.ceil(hi)) + 1, dtype=np.float64)
        lags = lags[(lags >= 2) & (lags < filled / 2)]
        if not len(lags):
            return
        score = self._harmonic_score(acf, lags)
        lag = self._metrical_level(acf, float(lags[np.argmax(score)]), lo, hi)
        period = self._refine(acf, lag, filled)
        if not lo * 0.97 <= period <= hi * 1.03:
            return
        bpm = 60.0 * fr / period
        confidence = float(np.clip(_interp(acf, np.array([period]))[0], 0.0, 1.0))
        current = self._tempo.bpm
        if current and abs(bpm - current) > 0.04 * current and abs(bpm - self._candidate) > 0.04 * bpm:
            self._candidate = bpm  # first sight of another tempo: wait for one confirmation
            self._tempo = Tempo(current, self._tempo.confidence, self._beat(60.0 * fr / current, filled))
            return
        self._candidate = bpm
        self._tempo = Tempo(float(bpm), confidence, self._beat(period, filled))

    def _metrical_level(self, acf: F64, lag: float, lo: float, hi: float) -> float:
        """Among the best lag's multiples and fractions in range, the one whose ACF peak, weighted
        by a log-normal tempo prior, is highest: picks the beat rather than the bar or the eighth."""
        best, best_score = lag, -np.inf
        for factor in (1 / 3, 1 / 2, 1.0, 2.0, 3.0):
            c = lag * factor
            if not lo * 0.97 <= c <= hi * 1.03 or c * 1.04 >= len(acf) - 1:
                continue
            peak = float(_interp(acf, np.linspace(c * 0.96, c * 1.04, 9, dtype=np.float64)).max())
            bpm = 60.0 * self.frame_rate_hz / c
            prior = np.exp(-0.5 * (np.log2(bpm / self.prior_bpm) / self.prior_octaves) ** 2)
            current = self._tempo.bpm
            if current and abs(bpm - current) <= 0.04 * current:
                prior *= CONTINUITY  # the level we are on keeps winning ties: no octave flicker
            if peak * prior > best_score:
                best, best_score = c, peak * prior
        return best

    @staticmethod
    def _harmonic_score(acf: F64, lags: F64) -> F64:
        total = np.zeros(len(lags))
        weight = np.zeros(len(lags))
        for k in range(1, 5):
            ok = k * lags < len(acf) - 1
            total[ok] += _interp(acf, k * lags[ok]) / k**0.5
            weight[ok] += 1.0 / k**0.5
        return np.asarray(total / np.maximum(weight, 1e-9))

    @staticmethod
    def _refine(acf: F64, lag: float, filled: int) -> float:
        """Beat period (frames) fitted through the interpolated peaks near k * lag."""
        num = den = 0.0
        for k in range(1, 9):
            centre = k * lag
            if centre + 2 >= filled * 0.75:
                break
            lo_i, hi_i = int(np.floor(centre - 0.15 * lag)), int(np.ceil(centre + 0.15 * lag))
            seg = acf[max(1, lo_i) : hi_i + 1]
            if len(seg) < 3:
                break
            i = int(np.argmax(seg))
            peak = max(1, lo_i) + i
            if 0 < i < len(seg) - 1:
                a, b, c = seg[i - 1], seg[i], seg[i + 1]
                denom = a - 2 * b + c
                if denom < 0:
                    peak += 0.5 * (a - c) / denom
            w = max(float(seg[i]), 0.0) * k
            num += w * peak
            den += w * k
        return num / den if den > 0 else lag

    def _beat(self, period: float, filled: int) -> float:
        """Frame index of the latest beat: the comb offset that collects the most ODF."""
        x = self._buf[-filled:]
        beats = int((filled - 1) // period)
        if beats < 1:
            return float(self._frames - 1)
        offsets = np.arange(int(np.ceil(period)), dtype=np.float64)
        ks = np.arange(beats, dtype=np.float64) * period
        positions = (filled - 1) - offsets[:, None] - ks[None, :]
        score = _interp(x, positions.clip(0, filled - 1)).sum(axis=1)
        return float(self._frames - 1 - offsets[int(np.argmax(score))])


def _interp(values: F64, positions: F64) -> F64:
    """Linear interpolation of `values` at fractional indices."""
    i = np.floor(positions).astype(np.int64)
    i = np.clip(i, 0, len(values) - 2)
    f = positions - i
    return np.asarray(values[i] * (1 - f) + values[i + 1] * f)


class BeatTracker:
    """Samples to ODF, onset flags and tempo: the whole real-time tempo pipeline of one stream."""

    def __init__(self, sample_rate: int, min_bpm: float = 60.0, max_bpm: float = 180.0) -> None:
        self.frame_rate_hz = sample_rate / HOP
        self.frames = Frames(sample_rate)
        self.onsets = OnsetDetector(self.frame_rate_hz, np.asarray(self.frames.freqs, dtype=np.float64))
        self.tempo = TempoTracker(self.frame_rate_hz, min_bpm, max_bpm)

    def process(self, samples: NDArray[np.float32]) -> Tempo:
        power = self.frames.push(samples)
        odf = self.onsets.flux(power)
        self.onsets.onsets(odf)
        return self.tempo.process(odf)
