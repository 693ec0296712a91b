"""The telemetry window a learned policy sees: one place for feature names and their order.

Harvest (offline, from recordings) and the runtime (in the reasoning node) both build each frame's
feature row with `frame_row`, so a model trained on harvested windows sees the same numbers live.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from krystal.reasoning.styles import Style

SCHEMA_VERSION = 1
# per-frame telemetry (NaN when the input is missing or stale), then missing flags, then the
# one-hot class of the style the frame was rendered in
TELEMETRY = (
    "render_time_ms",
    "render_fps",
    "gpu_utilization_ratio",
    "gpu_memory_used_ratio",
    "temperature_c",
    "throttle_penalty",
    "audio_rms_dbfs",
    "audio_tempo_bpm",
    "render_kcells",
)
MISSING = ("gpu_missing", "thermal_missing", "audio_missing")
_GROUPS = {
    "gpu_missing": "gpu_utilization_ratio",
    "thermal_missing": "throttle_penalty",
    "audio_missing": "audio_rms_dbfs",
}


def feature_names(classes: Sequence[Style]) -> list[str]:
    return [*TELEMETRY, *MISSING, *(f"style={s.label()}" for s in classes)]


def class_of(classes: Sequence[Style], mode: str, kernel_size: int, columns: int, rows: int) -> int:
    """Index of the class a frame with these AsciiFrame fields was rendered in, -1 if none."""
    for i, s in enumerate(classes):
        if s.rendered_as(mode, kernel_size, columns, rows):
            return i
    return -1


def classes_of(ladders: Mapping[str, Sequence[Style]]) -> tuple[Style, ...]:
    """Every style of the ladders once, in ladder order (calm first)."""
    out: list[Style] = []
    for name in sorted(ladders, key=lambda k: (k != "calm", k)):
        for s in ladders[name]:
            if s not in out:
                out.append(s)
    return tuple(out)


def finite_or_nan(x: Any) -> float:
    """A number as float, NaN when it is not a finite number."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def frame_row(
    values: Mapping[str, Any], style_index: int, kcells: float, n_classes: int
) -> NDArray[np.float32]:
    """One frame's features: telemetry values (keys of TELEMETRY; absent = NaN), flags, one-hot."""
    row = np.zeros(len(TELEMETRY) + len(MISSING) + n_classes, np.float32)
    for i, name in enumerate(TELEMETRY):
        row[i] = finite_or_nan(values.get(name))
    row[len(TELEMETRY) - 1] = finite_or_nan(kcells)
    for j, name in enumerate(MISSING):
        row[len(TELEMETRY) + j] = float(math.isnan(row[TELEMETRY.index(_GROUPS[name])]))
    if 0 <= style_index < n_classes:
        row[len(TELEMETRY) + len(MISSING) + style_index] = 1.0
    return row


def normalize(
    x: NDArray[np.float32], mean: NDArray[np.float32], std: NDArray[np.float32]
) -> NDArray[np.float32]:
    """(x - mean) / std with unknown values at 0 (the training mean): what the model is fed."""
    z = (x - mean) / std
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


class Window:
    """The last `length` frame rows, oldest first (a ring kept as a deque)."""

    def __init__(self, length: int, n_features: int) -> None:
        self.length = length
        self.n_features = n_features
        self._rows: deque[NDArray[np.float32]] = deque(maxlen=length)

    def push(self, row: NDArray[np.float32]) -> None:
        self._rows.append(row)

    def full(self) -> bool:
        return len(self._rows) == self.length

    def array(self) -> NDArray[np.float32]:
        return np.stack(list(self._rows)).astype(np.float32)
