"""Framing and power spectra shared by the onset/tempo pipeline and the window features."""

from __future__ import annotations

import numpy as np
import scipy.fft
from numpy.typing import NDArray

HOP = 512  # onset/tempo hop; analysis windows are whole numbers of hops
FFT_SIZE = 1024


class Frames:
    """Hann-windowed FFT frames ending at every hop; power per bin as a share of mean square."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.freqs = np.fft.rfftfreq(FFT_SIZE, 1.0 / sample_rate)
        self._hann = np.hanning(FFT_SIZE).astype(np.float32)
        scale = np.full(len(self.freqs), 2.0)
        scale[0] = scale[-1] = 1.0  # Parseval with the window's energy: sum of bins = mean square
        self.scale = (scale / (FFT_SIZE * float(np.sum(self._hann.astype(np.float64) ** 2)))).astype(
            np.float32
        )
        self._buf: NDArray[np.float32] = np.zeros(
            FFT_SIZE - HOP, np.float32
        )  # the history the next frame needs, and more

    def magnitudes(self, samples: NDArray[np.float32]) -> NDArray[np.float32]:
        """|FFT| (hops x bins, unscaled) of every hop that `samples` completes; `power` scales it."""
        joined = np.concatenate((self._buf, np.asarray(samples, dtype=np.float32)))
        hops = (len(joined) - (FFT_SIZE - HOP)) // HOP
        self._buf = joined[hops * HOP :]
        if hops <= 0:
            return np.zeros((0, len(self.freqs)), np.float32)
        # a strided view of the overlapping frames (np.ndarray: as_strided's Python costs more)
        frames: NDArray[np.float32] = np.ndarray((hops, FFT_SIZE), np.float32, joined, 0, (HOP * 4, 4))
        spec = scipy.fft.rfft(frames * self._hann, axis=1, overwrite_x=True)
        return np.asarray(np.abs(spec), dtype=np.float32)

    def power(self, magnitudes: NDArray[np.float32]) -> NDArray[np.float32]:
        """Power per bin as a share of the mean square (Parseval with the window's energy)."""
        power = np.square(magnitudes)
        power *= self.scale
        return power

    def push(self, samples: NDArray[np.float32]) -> NDArray[np.float32]:
        """Power spectra (hops x bins) of every hop that `samples` completes."""
        return self.power(self.magnitudes(samples))
