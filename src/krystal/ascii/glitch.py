"""Glitch: temporal displacement (bands of rows from earlier frames, shifted sideways), glyph noise
and colour-channel splits, with an amount driven by audio energy. At energy 0 it changes nothing."""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray

GLITCH_GLYPHS = np.array([ord(c) for c in "#$%&@!?/\\|<>^~=+*"], np.uint32)


def audio_energy(rms_dbfs: float, onset_strength: float = 0.0) -> float:
    """0..1 from a window's RMS level (-50 dBFS quiet .. -10 dBFS loud) plus a kick on onsets."""
    level = (rms_dbfs + 50.0) / 40.0
    return float(np.clip(level + 0.3 * min(onset_strength, 1.0), 0.0, 1.0))


class EnergyFollower:
    """Fast attack, slow release, so a beat glitches at once and fades over a few frames."""

    def __init__(self, attack: float = 0.7, release: float = 0.08) -> None:
        self.attack, self.release, self.value = attack, release, 0.0

    def update(self, target: float) -> float:
        rate = self.attack if target > self.value else self.release
        self.value += rate * (target - self.value)
        return self.value


class Glitch:
    def __init__(self, history: int = 8, seed: int | None = None) -> None:
        self._history: deque[NDArray[np.uint32]] = deque(maxlen=history)
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self._history.clear()

    def apply(
        self,
        codes: NDArray[np.uint32],
        energy: float,
        foreground: NDArray[np.uint8] | None = None,
    ) -> tuple[NDArray[np.uint32], NDArray[np.uint8] | None]:
        past = list(self._history)
        self._history.append(codes)
        if energy <= 0.01:
            return codes, foreground
        rng = self._rng
        rows, cols = codes.shape
        out = codes.copy()
        fg = foreground.copy() if foreground is not None else None
        max_shift = max(1, int(cols * 0.08 * energy))
        for _ in range(rng.poisson(1 + 5 * energy)):
            top = int(rng.integers(0, rows))
            bottom = min(rows, top + int(rng.integers(1, 1 + max(1, rows // 12))))
            source = past[-int(rng.integers(1, len(past) + 1))] if past else codes
            if source.shape != codes.shape:
                source = codes
            shift = int(rng.integers(-max_shift, max_shift + 1))
            out[top:bottom] = np.roll(source[top:bottom], shift, axis=1)
            if fg is not None:
                fg[top:bottom, :, 0] = np.roll(fg[top:bottom, :, 0], shift + 1, axis=1)  # red split
        noise = rng.random((rows, cols)) < 0.04 * energy
        out[noise] = GLITCH_GLYPHS[rng.integers(0, len(GLITCH_GLYPHS), int(noise.sum()))]
        return out, fg
