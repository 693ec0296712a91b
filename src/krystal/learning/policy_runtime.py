"""The learned style policy at run time: an exported ONNX model on onnxruntime, one thread, no torch.

`LearnedPolicy` is the reasoning core's Chooser: it keeps the telemetry window from every frame and,
when asked, picks among the levels the rules allow. A model names its data (dataset sha256) and its
classes in the metadata inside the ONNX file; one that does not fit is refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from krystal.learning.features import (
    SCHEMA_VERSION,
    TELEMETRY,
    Window,
    class_of,
    feature_names,
    frame_row,
    normalize,
)
from krystal.reasoning.context import Context
from krystal.reasoning.styles import Style, quality

MODEL_FORMAT = "krystal-policy/1"
# trained on synthesized runs (docs/learning.md): it knows the simulated machine; retrain on yours
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "policy.onnx"


class ModelError(ValueError):
    """The file is not a usable policy model (missing, not ONNX, wrong metadata or classes)."""


@dataclass(frozen=True)
class Scores:
    met_probability: NDArray[np.float32]  # per class
    predicted_ms: NDArray[np.float32]  # per class


def _sigmoid(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


class LearnedPolicy:
    """Loads `path` (ONNX with "krystal_policy" metadata); ModelError when it cannot be used."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"onnxruntime is not installed ({exc})") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # one core: the node's budget
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            raw = self._session.get_modelmeta().custom_metadata_map.get("krystal_policy")
        except Exception as exc:  # onnxruntime raises its own kinds on a bad file
            raise ModelError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__})") from exc
        if raw is None:
            raise ModelError(f"{self.path}: no krystal_policy metadata (not exported by krystal train)")
        try:
            meta = json.loads(raw)
            self.classes = tuple(
                Style(
                    str(c["mode"]), str(c["kernel"]), int(c["kernel_size"]), int(c["columns"]), int(c["rows"])
                )
                for c in meta["classes"]
            )
            self.window_length = int(meta["window"])
            self.mean = np.asarray(meta["normalization"]["mean"], np.float32)
            self.std = np.asarray(meta["normalization"]["std"], np.float32)
            self.stay_threshold = float(meta["stay_threshold"])
            self.up_threshold = float(meta["up_threshold"])
            self.dataset_sha256 = str(meta["dataset_sha256"])
            names = list(meta["feature_names"])
            version = meta["format"], int(meta["schema_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{self.path}: bad krystal_policy metadata ({exc!r})") from exc
        if version != (MODEL_FORMAT, SCHEMA_VERSION):
            raise ModelError(
                f"{self.path}: model format {version}, this build reads {MODEL_FORMAT} v{SCHEMA_VERSION}"
            )
        if (
            names != feature_names(self.classes)
            or len(self.mean) != len(names)
            or len(self.std) != len(names)
        ):
            raise ModelError(f"{self.path}: feature names differ from this build's ({len(names)} features)")
        self.meta = meta
        self.window = Window(self.window_length, len(names))
        self.last: Scores | None = None
        self.calls = 0

    def check_ladders(self, ladders: dict[str, tuple[Style, ...]]) -> str | None:
        """None when the model knows every style of the calm ladder; else why it cannot serve."""
        unknown = [s.label() for s in ladders.get("calm", ()) if s not in self.classes]
        return f"styles the model was not trained on: {', '.join(unknown)}" if unknown else None

    def observe(
        self, ctx: Context, *, mode: str, kernel_size: int, columns: int, rows: int, render_ms: float
    ) -> None:
        values: dict[str, float] = {name: getattr(ctx, name, math.nan) for name in TELEMETRY}
        values["render_time_ms"] = render_ms
        cls = class_of(self.classes, mode, kernel_size, columns, rows)
        self.window.push(frame_row(values, cls, columns * rows / 1000, len(self.classes)))

    def scores(self, window: NDArray[np.float32]) -> Scores:
        """Model outputs for one raw window (window, features)."""
        x = normalize(window, self.mean, self.std)[None]
        logit, log_ms = self._session.run(None, {"window": x})
        self.calls += 1
        return Scores(_sigmoid(np.asarray(logit[0], np.float32)), np.exp(np.asarray(log_ms[0], np.float32)))

    def choose(
        self, styles: tuple[Style, ...], level: int, allowed: list[int]
    ) -> tuple[int, str, float] | None:
        """Keep the current style while it is likely to meet the budget; a cheaper one when not; a
        better one only when the model is sure of it. None until a window is full."""
        if not self.window.full():
            return None
        s = self.last = self.scores(self.window.array())
        index = {lv: self.classes.index(styles[lv]) for lv in allowed if styles[lv] in self.classes}
        if level not in index:
            return None
        base = styles[0].cells

        def p(lv: int) -> float:
            return float(s.met_probability[index[lv]])

        def why(lv: int, verb: str) -> str:
            c = index[lv]
            return (
                f"learned: {verb} p(budget met) {s.met_probability[c]:.2f}, predicted "
                f"{s.predicted_ms[c]:.1f} ms (current {p(level):.2f})"
            )

        q_now = quality(styles[level], base)
        if p(level) < self.stay_threshold:
            cheaper = [
                lv for lv in index if quality(styles[lv], base) < q_now and p(lv) >= self.stay_threshold
            ]
            if cheaper:
                pick = max(cheaper, key=lambda lv: (quality(styles[lv], base), -lv))
            else:
                pick = max(index, key=lambda lv: (p(lv), lv))
            return pick, why(pick, "down,"), p(pick)
        better = [lv for lv in index if quality(styles[lv], base) > q_now and p(lv) >= self.up_threshold]
        if better:
            pick = max(better, key=lambda lv: (quality(styles[lv], base), -lv))
            return pick, why(pick, "up,"), p(pick)
        return level, why(level, "keep,"), p(level)


def describe(policy: LearnedPolicy) -> dict[str, str]:
    """What /diagnostics shows about a loaded model."""
    return {
        "model_path": str(policy.path),
        "model_sha256": policy.sha256,
        "dataset_sha256": policy.dataset_sha256,
        "classes": str(len(policy.classes)),
        "window": str(policy.window_length),
    }


def model_error(path: str) -> str | None:
    """None when `path` is empty or a usable model; else the reason (for the parameter check)."""
    if not path:
        return None
    try:
        LearnedPolicy(path)
    except ModelError as exc:
        return str(exc)
    return None
