"""Online frame-time prediction per candidate style: recursive least squares with forgetting.

Each style key (mode, kernel, kernel size) has its own linear model of render time on the load it
is rendered under (grid cells, CPU use, GPU use, temperature), so the graph learns what each style
costs on this machine. A shared residual, tracked fast on whatever style is rendering, carries load
the features do not see (another process, a throttled clock) over to every candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from krystal.reasoning.styles import Style

N_FEATURES = 6


@dataclass(frozen=True)
class Load:
    """What the cost depends on besides the style; NaN where unknown (then the feature is 0)."""

    cpu_ratio: float = math.nan  # 0..1 machine CPU use
    gpu_ratio: float = math.nan  # 0..1 GPU busy
    temperature_c: float = math.nan


def _z(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def features(cells: int, load: Load) -> NDArray[np.float64]:
    kc = cells / 1e4
    cpu = _z(load.cpu_ratio)
    temp = _z(load.temperature_c)
    return np.array([1.0, kc, cpu, kc * cpu, _z(load.gpu_ratio), max(0.0, temp - 40.0) / 50.0])


class _Rls:
    def __init__(self, forgetting: float, prior_ms_per_kcell: float) -> None:
        self.w: NDArray[np.float64] = np.zeros(N_FEATURES)
        self.w[1] = prior_ms_per_kcell
        self.p: NDArray[np.float64] = np.eye(N_FEATURES) * 100.0
        self.lam = forgetting
        self.n = 0

    def predict(self, x: NDArray[np.float64]) -> float:
        return float(self.w @ x)

    def update(self, x: NDArray[np.float64], y: float) -> None:
        px = self.p @ x
        gain = px / (self.lam + float(x @ px))
        self.w = self.w + gain * (y - float(self.w @ x))
        self.p = (self.p - np.outer(gain, px)) / self.lam
        # keep P bounded when one feature never varies (forgetting would blow it up)
        np.clip(self.p, -1e4, 1e4, out=self.p)
        self.n += 1


@dataclass(frozen=True)
class Prediction:
    ms: float  # predicted render time of the next frames
    known: bool  # the style's model has seen frames (else: a prior guess)


class FramePredictor:
    """`observe` each rendered frame; `predict` any candidate under the current load."""

    def __init__(
        self,
        forgetting: float = 0.995,
        residual_alpha: float = 0.3,
        prior_ms_per_kcell: float = 3.0,
        min_frames: int = 5,
    ) -> None:
        self._models: dict[tuple[str, str, int], _Rls] = {}
        self._forgetting = forgetting
        self._alpha = residual_alpha
        self._prior = prior_ms_per_kcell
        self._min_frames = min_frames
        self.residual_ms = 0.0  # load the features miss, shared by all styles
        self._last_key: tuple[str, str, int] | None = None

    def _model(self, key: tuple[str, str, int]) -> _Rls:
        m = self._models.get(key)
        if m is None:
            m = self._models[key] = _Rls(self._forgetting, self._prior)
        return m

    def observe(self, style: Style, load: Load, render_ms: float) -> None:
        if not math.isfinite(render_ms) or render_ms < 0:
            return
        x = features(style.cells, load)
        m = self._model(style.key)
        target = render_ms
        if m.n >= self._min_frames:
            base = m.predict(x)
            self.residual_ms += self._alpha * (render_ms - base - self.residual_ms)
            # a jump goes to the shared residual first; the style's own model moves by a bounded
            # step, so a few frames under a passing load do not teach it a wrong cost
            step = render_ms - self.residual_ms - base
            bound = 0.2 * abs(base) + 0.5
            target = base + max(-bound, min(bound, step)) + self.residual_ms
        m.update(x, target - self.residual_ms)
        self._last_key = style.key

    def predict(self, style: Style, load: Load) -> Prediction:
        m = self._models.get(style.key)
        x = features(style.cells, load)
        if m is None or m.n < self._min_frames:
            return Prediction(max(0.0, self._prior * style.cells / 1e4 + self.residual_ms), False)
        return Prediction(max(0.0, m.predict(x) + self.residual_ms), True)
