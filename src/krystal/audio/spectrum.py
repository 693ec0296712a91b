"""Framing and power spectra shared by the onset/tempo pipeline and the window features."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.fft
from numpy.typing import NDArray

HOP = 512  # onset/tempo hop; analysis windows are whole numbers of hops
FFT_SIZE = 1024

Transform = Callable[[Any, int], Any]


def _public_rfft(x: Any, n: int) -> Any:
    return scipy.fft.rfft(x, n, axis=-1)


def _public_irfft(spec: Any, n: int) -> Any:
    return scipy.fft.irfft(spec, n, axis=-1)


def _bindings() -> tuple[Transform, Transform]:
    """scipy.fft's rfft and irfft of float32/float64 along the last axis. Where scipy's pocketfft
    binding takes the arguments scipy's own wrapper gives it (checked on 1.8, 1.11 and 1.17), it is
    called directly: the public functions' backend dispatch costs ~15 us a call, more than the
    transforms of one 4-5 frame block (scipy.fft.set_backend/set_workers do not apply to it).
    Checked at import against the public functions, which are used otherwise."""
    try:
        from scipy.fft._pocketfft import pypocketfft as pocket

        def rfft(x: Any, n: int) -> Any:
            if x.shape[-1] != n:
                padded = np.zeros((*x.shape[:-1], n), x.dtype)
                padded[..., : min(n, x.shape[-1])] = x[..., :n]
                x = padded
            return pocket.r2c(x, (x.ndim - 1,), True, 0, None, 1)

        def irfft(spec: Any, n: int) -> Any:
            return pocket.c2r(spec, (spec.ndim - 1,), n, False, 2, None, 1)

        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            probe = rng.standard_normal((3, 700)).astype(dtype)
            got, want = rfft(probe, 1024), _public_rfft(probe, 1024)
            if got.dtype != want.dtype or not np.allclose(got, want, atol=1e-3):
                raise ValueError("r2c differs")
            back, ref = irfft(got, 1024), _public_irfft(want, 1024)
            if back.dtype != ref.dtype or not np.allclose(back, ref, atol=1e-4):
                raise ValueError("c2r differs")
        return rfft, irfft
    except Exception:  # any change in a private binding: the public path
        return _public_rfft, _public_irfft


rfft, irfft = _bindings()


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
        joined = np.concatenate((self._buf, samples), dtype=np.float32)
        hops = (len(joined) - (FFT_SIZE - HOP)) // HOP
        self._buf = joined[hops * HOP :]
        if hops <= 0:
            return np.zeros((0, len(self.freqs)), np.float32)
        # a strided view of the overlapping frames (np.ndarray: as_strided's Python costs more)
        frames: NDArray[np.float32] = np.ndarray((hops, FFT_SIZE), np.float32, joined, 0, (HOP * 4, 4))
        magnitudes: NDArray[np.float32] = np.abs(rfft(frames * self._hann, FFT_SIZE))  # of complex64
        return magnitudes

    def power(self, magnitudes: NDArray[np.float32]) -> NDArray[np.float32]:
        """Power per bin as a share of the mean square (Parseval with the window's energy)."""
        power = np.square(magnitudes)
        power *= self.scale
        return power

    def push(self, samples: NDArray[np.float32]) -> NDArray[np.float32]:
        """Power spectra (hops x bins) of every hop that `samples` completes."""
        return self.power(self.magnitudes(samples))
