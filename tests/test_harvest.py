"""Harvest: synthesized runs (the real reasoning core, node-format logs, MCAP recordings) give the
documented shapes and a stable hash; the readers never crash on torn logs or truncated recordings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krystal.learning import harvest
from krystal.learning.features import MISSING, TELEMETRY

DURATION_S = 20.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    return harvest.synthesize(tmp_path_factory.mktemp("synth"), 3, seed=4, duration_s=DURATION_S)


@pytest.fixture(scope="module")
def dataset(runs: tuple[list[Path], list[Path]]) -> harvest.Dataset:
    return harvest.harvest(*runs)


def test_harvest_gives_the_documented_shapes(dataset: harvest.Dataset) -> None:
    a, m = dataset.arrays, dataset.manifest
    n = m["counts"]["samples"]
    n_classes = len(m["classes"])
    n_features = len(TELEMETRY) + len(MISSING) + n_classes
    assert n > 50 and m["counts"]["decision_samples"] > 0 and m["counts"]["frame_samples"] > 0
    assert a["x"].shape == (n, 32, n_features) and a["x"].dtype == np.float32
    assert m["feature_names"][: len(TELEMETRY)] == list(TELEMETRY) and len(m["feature_names"]) == n_features
    for name, dtype in (("y_class", np.int16), ("y_met", np.int8), ("y_latency_ms", np.float32),
                        ("y_over_fraction", np.float32), ("y_quality", np.float32), ("switched", np.int8),
                        ("kind", np.int8), ("t_s", np.float64), ("source", np.int16)):  # fmt: skip
        assert a[name].shape == (n,) and a[name].dtype == dtype, name
        assert m["shapes"][name] == [n]
    assert set(np.unique(a["y_class"])) <= set(range(n_classes))
    # every window row names the style it was rendered in (one-hot) and its render time
    onehot = a["x"][:, :, len(TELEMETRY) + len(MISSING) :]
    assert np.all(onehot.sum(axis=2) == 1)
    assert np.all(np.isfinite(a["x"][:, :, 0]))
    # the outcome labels agree: met means at most 10 % of the frames over budget
    assert np.all((a["y_over_fraction"] <= 0.1) == (a["y_met"] == 1))
    lo, hi = m["time_range_s"]
    assert lo <= a["t_s"].min() and a["t_s"].max() <= hi
    kinds = {s["kind"] for s in m["sources"]}
    assert kinds == {"mcap", "decision_log"} and all(len(s["sha256"]) == 64 for s in m["sources"])


def test_hash_is_stable_and_names_the_data(
    tmp_path: Path, runs: tuple[list[Path], list[Path]], dataset: harvest.Dataset
) -> None:
    again = harvest.synthesize(tmp_path / "again", 3, seed=4, duration_s=DURATION_S)
    for a, b in zip([*runs[0], *runs[1]], [*again[0], *again[1]], strict=True):
        assert harvest.file_sha256(a) == harvest.file_sha256(b), a.name  # synthesized bytes are seeded
    assert harvest.harvest(*again).sha256 == dataset.sha256
    npz, man = harvest.save(dataset, tmp_path / "ds")
    assert json.loads(man.read_text())["dataset_sha256"] == dataset.sha256
    assert harvest.load(tmp_path / "ds").sha256 == dataset.sha256
    with np.load(npz) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["y_met"][0] ^= 1  # one label changed: another dataset
    np.savez(npz, **arrays)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dataset_sha256"):
        harvest.load(tmp_path / "ds")
    other = harvest.synthesize(tmp_path / "other", 1, seed=5, duration_s=DURATION_S)
    assert harvest.harvest(*other).sha256 != dataset.sha256


def test_cli_harvest_synthesizes_and_writes_the_files(tmp_path: Path) -> None:
    from krystal.cli import main

    out = tmp_path / "data" / "ds"
    assert main(["harvest", "--synthesize", "1", "--duration", "15", "--seed", "2", "-o", str(out)]) == 0
    ds = harvest.load(out)
    assert ds.manifest["counts"]["samples"] > 0
    assert (tmp_path / "data" / "synth" / "run-000.mcap").exists()
    assert main(["harvest", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "x")]) == 2


lines = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
            ["decision", "outcome", "timestamp", "decision_id", "mode", "frames", "budget_met", "latency"]
        ), c, max_size=4),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=st.lists(lines, max_size=8), cut=st.integers(1, 400))
def test_fuzz_log_reader_skips_and_counts(
    tmp_path_factory: pytest.TempPathFactory,
    runs: tuple[list[Path], list[Path]],
    garbage: list[bytes],
    cut: int,
) -> None:
    good = runs[0][0].read_bytes()
    clean = harvest.read_log(runs[0][0], harvest.Skips())
    path = tmp_path_factory.mktemp("fuzz") / "decisions.jsonl"
    torn = good[: min(cut, good.index(b"\n") - 1)]  # the start of a line: what a kill -9 leaves
    path.write_bytes(b"\n".join(garbage) + b"\n" + good + torn)
    skips = harvest.Skips()
    records = harvest.read_log(path, skips)
    assert {r["decision"]["decision_id"] for r in clean} <= {r["decision"]["decision_id"] for r in records}
    assert skips["log line not JSON (torn or garbled)"] >= 1  # the torn tail, at least


def test_harvest_of_a_damaged_log_keeps_the_good_decisions(
    tmp_path: Path, runs: tuple[list[Path], list[Path]]
) -> None:
    path = tmp_path / "decisions.jsonl"
    good = runs[0][0].read_bytes()
    noise = (
        b'{"decision": {"decision_id": "x"}}\n\xff\xfe\n{"timestamp": 1, "decision": {"decision_id": 999}}\n'
    )
    path.write_bytes(noise + good + good[:40])
    ds = harvest.harvest([path], [runs[1][0]])
    clean = harvest.harvest([runs[0][0]], [runs[1][0]])
    assert ds.manifest["counts"]["decision_samples"] == clean.manifest["counts"]["decision_samples"] > 0
    skipped = ds.manifest["skipped"]
    assert skipped["log line not JSON (torn or garbled)"] == 2
    assert skipped["log line without decision_id or timestamp"] == 1
    assert skipped["decision: no style"] == 1


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.floats(0.0, 0.999), flip=st.integers(0, 2**31))
def test_fuzz_truncated_or_corrupt_recording(
    tmp_path_factory: pytest.TempPathFactory, runs: tuple[list[Path], list[Path]], cut: float, flip: int
) -> None:
    data = runs[1][0].read_bytes()
    full = harvest.read_recording(runs[1][0], harvest.Skips())
    folder = tmp_path_factory.mktemp("mcap")
    truncated = folder / "cut.mcap"
    truncated.write_bytes(data[: int(len(data) * cut)])
    skips = harvest.Skips()
    tl = harvest.read_recording(truncated, skips)
    assert len(tl.frame_t) <= len(full.frame_t)
    assert sum(skips.values()) == 1  # no footer (or nothing at all): counted once
    corrupt = folder / "flip.mcap"
    damaged = bytearray(data)
    damaged[flip % len(damaged)] ^= 0xFF
    corrupt.write_bytes(bytes(damaged))
    harvest.read_recording(corrupt, harvest.Skips())  # never raises
