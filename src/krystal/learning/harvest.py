"""Harvest: decision logs (JSON Lines) and MCAP recordings -> a training set of telemetry windows.

Each sample is the last `window` frames before a moment (a logged decision, or every `stride`-th
frame of a recording), each frame a row of features.py's FEATURES, labelled with the style that
rendered next and how it went: budget met, mean latency, share of frames over budget, quality.
Readers never raise on bad input: a torn line or a truncated recording is skipped with a counted
reason (`Skips`). The dataset's hash is over its arrays (names, dtypes, shapes, bytes), not the
file, so it names the data whatever the container. Shapes: docs/learning.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from krystal.learning.features import (
    SCHEMA_VERSION,
    class_of,
    classes_of,
    feature_names,
    finite_or_nan,
    frame_row,
)
from krystal.reasoning.styles import Style, quality

KIND_DECISION, KIND_FRAME = 0, 1
# the reasoning node's input timeouts (s): older readings are stale, NaN in the context
TIMEOUTS_S = {"gpu": 5.0, "thermal": 5.0, "audio": 2.0, "render": 2.0}
TOPICS = {
    "krystal/ascii": "frame",
    "gpu/telemetry": "gpu",
    "thermal/state": "thermal",
    "audio/features": "audio",
    "krystal/render_stats": "render",
}
_TOPIC_NAMES = (*TOPICS, *(f"/{t}" for t in TOPICS))


class Skips(Counter[str]):
    """Why input was skipped, with counts (reported in the manifest)."""


@dataclass
class Timeline:
    """One recording: frames (time, AsciiFrame fields) and the slow inputs' readings over time."""

    frame_t: list[float] = field(default_factory=list)
    frame_style: list[tuple[str, int, int, int]] = field(default_factory=list)
    frame_ms: list[float] = field(default_factory=list)
    readings: list[tuple[float, str, dict[str, float]]] = field(default_factory=list)


def _stamp_s(msg: Any, log_time_ns: int) -> float:
    try:
        s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if s > 0:
            return float(s)
    except AttributeError:
        pass
    return log_time_ns * 1e-9


def _reading(kind: str, msg: Any) -> dict[str, float]:
    """The values the reasoning node takes from a message (node.py's gpu_values & co.)."""
    if kind == "gpu":
        total, used = int(msg.memory_total_bytes), int(msg.memory_used_bytes)
        return {
            "gpu_utilization_ratio": finite_or_nan(msg.utilization_ratio),
            "gpu_memory_used_ratio": used / total if total > 0 else math.nan,
        }
    if kind == "thermal":
        p = finite_or_nan(msg.throttle_penalty)
        return {
            "temperature_c": finite_or_nan(msg.max_temperature_c),
            "throttle_penalty": min(1.0, max(0.0, p)),
        }
    if kind == "audio":
        tempo = finite_or_nan(msg.tempo_bpm)
        return {
            "audio_rms_dbfs": finite_or_nan(msg.rms_dbfs),
            "audio_tempo_bpm": tempo if tempo > 0 else math.nan,
        }
    return {"render_fps": finite_or_nan(msg.output_fps)}


def read_recording(path: Path, skips: Skips) -> Timeline:
    """The frames and readings of one MCAP file; a truncated or corrupt tail ends it, counted; a file
    without a summary (a recorder killed mid-run) is read up to where it is cut, counted."""
    from krystal.record.mcapio import Decoders, ReadNotes, RecordingError, iter_messages

    tl = Timeline()
    try:
        if path.stat().st_size == 0:
            skips["recording empty"] += 1
            return tl
    except OSError:
        skips["recording unreadable"] += 1
        return tl
    decoders = Decoders()
    notes = ReadNotes()
    try:
        for schema, channel, message in iter_messages(path, list(_TOPIC_NAMES), notes):
            kind = TOPICS.get(channel.topic.lstrip("/"))
            if kind is None:
                continue
            try:
                dec = decoders(schema, channel)
                if dec is None:
                    raise ValueError("no schema, or not CDR/ros2msg")
                msg = dec(message.data)
                t = _stamp_s(msg, message.log_time)
                if kind == "frame":
                    style = (str(msg.mode), int(msg.kernel_size), int(msg.columns), int(msg.rows))
                    ms = finite_or_nan(msg.render_time_ms)
                    if math.isnan(ms) or ms < 0:
                        skips["frame without a render time"] += 1
                        continue
                    tl.frame_t.append(t)
                    tl.frame_style.append(style)
                    tl.frame_ms.append(ms)
                else:
                    tl.readings.append((t, kind, _reading(kind, msg)))
            except Exception:  # a message its schema cannot decode: skip it, keep the file
                skips["undecodable message"] += 1
    except (OSError, RecordingError):
        skips["recording unreadable (not MCAP)"] += 1
        notes = ReadNotes()  # cut inside the header: unreadable, counted once
    if notes.summary_missing:
        skips["recording without a summary (read up to where it is cut)"] += 1
    elif notes.damage:
        skips["recording truncated or corrupt (read up to the damage)"] += 1
    order = sorted(range(len(tl.frame_t)), key=lambda i: tl.frame_t[i])
    tl.frame_t = [tl.frame_t[i] for i in order]
    tl.frame_style = [tl.frame_style[i] for i in order]
    tl.frame_ms = [tl.frame_ms[i] for i in order]
    tl.readings.sort(key=lambda r: r[0])
    return tl


def read_log(path: Path, skips: Skips) -> list[dict[str, Any]]:
    """Decision records of one log file, the last line per decision of every run (restarts and
    appends included: reasoning.log.latest_per_decision); shadow and model lines are not decisions."""
    from krystal.reasoning.log import decision_key, latest_per_decision

    try:
        data = path.read_bytes()
    except OSError:
        skips["log unreadable"] += 1
        return []
    records: list[dict[str, Any]] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            skips["log line not JSON (torn or garbled)"] += 1
            continue
        if isinstance(rec, dict) and rec.get("kind", "decision") != "decision":
            continue
        key = decision_key(rec) if isinstance(rec, dict) else None
        if (
            not isinstance(key, int)
            or isinstance(key, bool)
            or not isinstance(rec.get("timestamp"), (int, float))
        ):
            skips["log line without decision_id or timestamp"] += 1
            continue
        records.append(rec)
    return latest_per_decision(records)


def _decided(rec: Mapping[str, Any]) -> tuple[str, int, int, int] | None:
    d = rec.get("decision")
    try:
        assert isinstance(d, dict)
        return (str(d["mode"]), int(d["kernel_size"]), int(d["columns"]), int(d["rows"]))
    except (AssertionError, KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class HarvestConfig:
    window: int = 32  # frames per window (about 1 s at 30 fps)
    stride: int = 15  # a frame sample every this many frames
    horizon: int = 30  # frames after the window that make a frame sample's outcome
    min_outcome_frames: int = 10
    max_gap_s: float = 1.0  # a window or outcome must not span a gap in the recording
    budget_ms: float = 33.0


def _rows(tl: Timeline, classes: Sequence[Style]) -> NDArray[np.float32]:
    """One feature row per frame: its own fields and the newest fresh reading of each input."""
    n_classes = len(classes)
    rows = np.zeros((len(tl.frame_t), len(feature_names(classes))), np.float32)
    held: dict[str, tuple[float, dict[str, float]]] = {}
    j = 0
    for i, t in enumerate(tl.frame_t):
        while j < len(tl.readings) and tl.readings[j][0] <= t:
            held[tl.readings[j][1]] = (tl.readings[j][0], tl.readings[j][2])
            j += 1
        values: dict[str, float] = {}
        for kind, (seen, vals) in held.items():
            if t - seen <= TIMEOUTS_S[kind]:
                values.update(vals)
        values["render_time_ms"] = tl.frame_ms[i]
        mode, k, cols, nrows = tl.frame_style[i]
        rows[i] = frame_row(values, class_of(classes, mode, k, cols, nrows), cols * nrows / 1000, n_classes)
    return rows


@dataclass
class Dataset:
    arrays: dict[str, NDArray[Any]]
    manifest: dict[str, Any]

    @property
    def sha256(self) -> str:
        return str(self.manifest["dataset_sha256"])


def content_hash(arrays: Mapping[str, NDArray[Any]]) -> str:
    """sha256 over (name, dtype, shape, C-order bytes) of every array, names sorted."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def harvest(
    logs: Iterable[Path],
    recordings: Iterable[Path],
    classes: Sequence[Style] | None = None,
    config: HarvestConfig | None = None,
) -> Dataset:
    """Every sample the files hold; `classes` default: the reasoning node's default ladders."""
    cfg = config or HarvestConfig()
    if classes is None:
        from krystal.learning.sim import LADDERS

        classes = classes_of(LADDERS)
    classes = tuple(classes)
    base_cells = classes[0].cells
    names = feature_names(classes)
    skips = Skips()
    sources: list[dict[str, Any]] = []
    xs: list[NDArray[np.float32]] = []
    keys = ("y_class", "y_met", "y_latency_ms", "y_over_fraction", "y_quality", "switched", "kind", "t_s")
    labels: dict[str, list[Any]] = {k: [] for k in (*keys, "source")}
    timelines: list[tuple[int, Timeline, NDArray[np.float32]]] = []
    for path in sorted(Path(p) for p in recordings):
        before = sum(skips.values())
        tl = read_recording(path, skips)
        sources.append(
            _source(path, "mcap", len(tl.frame_t) + len(tl.readings), sum(skips.values()) - before)
        )
        timelines.append((len(sources) - 1, tl, _rows(tl, classes)))

    def add(src: int, window: NDArray[np.float32], *values: Any) -> None:
        """values: class, met, latency ms, over fraction, time, kind, switched."""
        cls, met, ms, over, t, kind, switched = values
        xs.append(window)
        row = (cls, met, ms, over, quality(classes[cls], base_cells), switched, kind, t)
        for k, v in zip(keys, row, strict=True):
            labels[k].append(v)
        labels["source"].append(src)

    w = cfg.window
    for src, tl, rows in timelines:
        t = tl.frame_t
        cls_of = [class_of(classes, *s) for s in tl.frame_style]
        for i in range(w - 1, len(t) - 1, cfg.stride):
            if t[i] - t[i - w + 1] > cfg.max_gap_s * w / 2 or any(
                t[k + 1] - t[k] > cfg.max_gap_s for k in range(i - w + 1, i + 1)
            ):
                skips["frame sample: gap in the recording"] += 1
                continue
            c = cls_of[i + 1]
            if c < 0:
                skips["frame sample: style not among the classes"] += 1
                continue
            ms: list[float] = []
            for k in range(i + 1, min(len(t), i + 1 + cfg.horizon)):
                if cls_of[k] != c or t[k] - t[k - 1] > cfg.max_gap_s:
                    break
                ms.append(tl.frame_ms[k])
            if len(ms) < cfg.min_outcome_frames:
                skips["frame sample: outcome too short"] += 1
                continue
            over = sum(m > cfg.budget_ms for m in ms)
            met = over <= 0.1 * len(ms)
            window = rows[i - w + 1 : i + 1]
            add(src, window, c, met, sum(ms) / len(ms), over / len(ms), t[i], KIND_FRAME, c != cls_of[i])
    for path in sorted(Path(p) for p in logs):
        before = sum(skips.values())
        records = read_log(path, skips)
        sources.append(_source(path, "decision_log", len(records), 0))
        for rec in records:
            _decision_sample(rec, timelines, classes, cfg=cfg, skips=skips, add=add)
        sources[-1]["skipped"] = sum(skips.values()) - before
    n = len(xs)
    arrays: dict[str, NDArray[Any]] = {
        "x": np.stack(xs).astype(np.float32) if xs else np.zeros((0, w, len(names)), np.float32),
        "y_class": np.asarray(labels["y_class"], np.int16),
        "y_met": np.asarray(labels["y_met"], np.int8),
        "y_latency_ms": np.asarray(labels["y_latency_ms"], np.float32),
        "y_over_fraction": np.asarray(labels["y_over_fraction"], np.float32),
        "y_quality": np.asarray(labels["y_quality"], np.float32),
        "switched": np.asarray(labels["switched"], np.int8),
        "kind": np.asarray(labels["kind"], np.int8),
        "t_s": np.asarray(labels["t_s"], np.float64),
        "source": np.asarray(labels["source"], np.int16),
    }
    ts = arrays["t_s"]
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "dataset_sha256": content_hash(arrays),
        "window": w,
        "config": cfg.__dict__,
        "feature_names": names,
        "classes": [_style_dict(s) | {"label": s.label()} for s in classes],
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "counts": {
            "samples": n,
            "decision_samples": int((arrays["kind"] == KIND_DECISION).sum()),
            "frame_samples": int((arrays["kind"] == KIND_FRAME).sum()),
            "budget_met": int(arrays["y_met"].sum()),
            "per_class": [int((arrays["y_class"] == i).sum()) for i in range(len(classes))],
        },
        "time_range_s": [float(ts.min()), float(ts.max())] if n else None,
        "sources": sources,
        "skipped": dict(sorted(skips.items())),
    }
    return Dataset(arrays, manifest)


def _decision_sample(
    rec: dict[str, Any],
    timelines: Sequence[tuple[int, Timeline, NDArray[np.float32]]],
    classes: Sequence[Style],
    *,
    cfg: HarvestConfig,
    skips: Skips,
    add: Any,
) -> None:
    out = rec.get("outcome")
    style = _decided(rec)
    if style is None:
        skips["decision: no style"] += 1
        return
    if not isinstance(out, dict) or not isinstance(out.get("frames"), int) or out["frames"] <= 0:
        skips["decision: no outcome"] += 1
        return
    c = class_of(classes, *style)
    if c < 0:
        skips["decision: style not among the classes"] += 1
        return
    t = float(rec["timestamp"])
    for src, tl, rows in timelines:
        if not tl.frame_t or not tl.frame_t[0] <= t <= tl.frame_t[-1] + cfg.max_gap_s:
            continue
        i = int(np.searchsorted(np.asarray(tl.frame_t), t, side="right")) - 1
        if i < cfg.window - 1:
            skips["decision: fewer frames than a window before it"] += 1
            return
        frames = int(out["frames"])
        over = finite_or_nan(out.get("over_budget_frames"))
        met = out.get("budget_met")
        ms = finite_or_nan(out.get("latency"))
        if not isinstance(met, bool) or math.isnan(over) or math.isnan(ms):
            skips["decision: outcome fields missing"] += 1
            return
        prev = class_of(classes, *tl.frame_style[i])
        add(src, rows[i - cfg.window + 1 : i + 1], c, met, ms, over / frames, t, KIND_DECISION, c != prev)
        return
    skips["decision: no recording covers it"] += 1


def _style_dict(s: Style) -> dict[str, Any]:
    return {
        "mode": s.mode,
        "kernel": s.kernel,
        "kernel_size": s.kernel_size,
        "columns": s.columns,
        "rows": s.rows,
    }


def _source(path: Path, kind: str, records: int, skipped: int) -> dict[str, Any]:
    try:
        sha, size = file_sha256(path), path.stat().st_size
    except OSError:
        sha, size = "", 0
    return {
        "path": str(path),
        "kind": kind,
        "sha256": sha,
        "bytes": size,
        "records": records,
        "skipped": skipped,
    }


def save(ds: Dataset, out: Path) -> tuple[Path, Path]:
    """dataset .npz and its manifest .json beside it (same stem)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    npz = out.with_suffix(".npz")
    np.savez_compressed(npz, **ds.arrays)  # type: ignore[arg-type]
    man = out.with_suffix(".json")
    man.write_text(json.dumps(ds.manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return npz, man


def load(path: Path) -> Dataset:
    """A saved dataset; ValueError when its arrays do not match the manifest's hash."""
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    manifest = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    if content_hash(arrays) != manifest.get("dataset_sha256"):
        raise ValueError(f"{path}: arrays do not match the manifest's dataset_sha256")
    return Dataset(arrays, manifest)


def style_from(d: Mapping[str, Any]) -> Style:
    return Style(str(d["mode"]), str(d["kernel"]), int(d["kernel_size"]), int(d["columns"]), int(d["rows"]))


def synthesize(
    out_dir: Path, runs: int, seed: int = 0, duration_s: float = 60.0
) -> tuple[list[Path], list[Path]]:
    """Runs of the real reasoning core in the simulated renderer under random load traces, each
    leaving a decision log and an MCAP recording; policies vary (rules, TD, exploring, fixed) so
    every style is seen under load. Returns (logs, recordings)."""
    import random

    from krystal.learning.sim import LADDERS, WALL_BASE_S, RandomChooser, Sink, random_trace, simulate
    from krystal.reasoning.td import DoubleQ, TdConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    q = DoubleQ(
        max(len(v) for v in LADDERS.values()), TdConfig(epsilon_decay_steps=60 * max(runs, 1)), seed=seed
    )
    rng = random.Random(seed)
    logs, recs = [], []
    plan = ("explore", "rules_predict", "explore", "rules_td", "fixed")
    for k in range(runs):
        run_seed = seed * 100_000 + k
        policy = plan[k % len(plan)]
        log, rec = out_dir / f"run-{k:03d}.decisions.jsonl", out_dir / f"run-{k:03d}.mcap"
        log.unlink(missing_ok=True)
        sink = Sink(log, rec)
        try:
            simulate(
                "learned" if policy == "explore" else policy,
                run_seed,
                random_trace(run_seed, duration_s),
                q=q if policy == "rules_td" else None,
                chooser=RandomChooser(run_seed) if policy == "explore" else None,
                fixed_level=rng.randrange(len(LADDERS["calm"])),
                sink=sink,
                wall_base_s=WALL_BASE_S + k * (duration_s + 10.0),
            )
        finally:
            sink.close()
        if log.exists():  # a fixed-style run decides nothing: no log
            logs.append(log)
        recs.append(rec)
    return logs, recs


def inputs_of(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(decision logs, recordings) among files and folders: *.jsonl (and rotated .jsonl.N), *.mcap."""
    logs: list[Path] = []
    recs: list[Path] = []
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.suffix == ".mcap":
                recs.append(f)
            elif f.suffix == ".jsonl" or (".jsonl." in f.name and f.name.rsplit(".", 1)[-1].isdigit()):
                logs.append(f)
    return logs, recs


def cli(args: Any) -> int:
    """`krystal harvest`: see cli.py for the options."""
    import sys

    paths = [Path(p) for p in args.inputs]
    if args.synthesize:
        synth_dir = Path(args.synth_dir or Path(args.output).parent / "synth")
        synthesize(synth_dir, args.synthesize, args.seed, args.duration)
        paths.append(synth_dir)
    logs, recs = inputs_of(paths)
    if not recs:
        print("krystal harvest: no MCAP recordings among the inputs (or use --synthesize N)", file=sys.stderr)
        return 2
    cfg = HarvestConfig(window=args.window, stride=args.stride, horizon=args.horizon)
    ds = harvest(logs, recs, config=cfg)
    npz, man = save(ds, Path(args.output))
    c = ds.manifest["counts"]
    print(
        f"krystal harvest: {c['samples']} samples ({c['decision_samples']} decisions,"
        f" {c['frame_samples']} frames)"
        f" x {cfg.window} frames x {len(ds.manifest['feature_names'])} features from {len(logs)} logs and"
        f" {len(recs)} recordings -> {npz}, {man}; dataset sha256 {ds.sha256}"
    )
    for reason, n in ds.manifest["skipped"].items():
        print(f"  skipped {n}: {reason}")
    return 0 if c["samples"] else 1
