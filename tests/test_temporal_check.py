"""`krystal check` never passes silently: UNKNOWN has its own exit code and says what the recording
lacks (its topics, the type's fields); an empty spec file and a file that is not MCAP get one plain
line and exit 2; stamps are printed exactly (integer ns) at ROS magnitude."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tests.test_temporal_node import HEADER

T0_S = 1_700_000_000  # a ROS-sized stamp


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    from mcap_ros2.writer import Writer

    rec = tmp_path / "run.mcap"
    with rec.open("wb") as f:
        w = Writer(f)
        schema = w.register_msgdef("krystal/msg/ThermalState", HEADER)
        for i in range(20):  # a 10 ms grid at 1.7e9 s: 90 degrees at sample 1 only
            ns = i * 10_000_000
            temp = 90.0 if i == 1 else 70.0
            w.write_message(
                "/thermal/state",
                schema,
                {
                    "header": {"stamp": {"sec": T0_S, "nanosec": ns}, "frame_id": ""},
                    "max_temperature_c": temp,
                    "temperatures_c": [temp],
                },
                log_time=T0_S * 10**9 + ns,
                publish_time=T0_S * 10**9 + ns,
            )
        w.finish()
    return rec


def _check(tmp_path: Path, specs: str, rec: Path) -> tuple[int, str, str]:
    from krystal.cli import main

    spec_file = tmp_path / "specs.txt"
    spec_file.write_text(specs)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["check", str(spec_file), str(rec)])
    return code, out.getvalue(), err.getvalue()


def test_windows_on_a_10ms_grid_at_ros_stamps(tmp_path: Path, recording: Path) -> None:
    # sample 1 (90 degrees) lies in the window [t + 50ms, t + 60ms] of no sample on the grid
    code, out, _ = _check(
        tmp_path, "w: always[50ms:60ms] (thermal/state.max_temperature_c < 85)\n", recording
    )
    assert code == 0 and "w: SATISFIED" in out
    # sample 0 sees sample 1 exactly 10 ms later
    code, out, _ = _check(
        tmp_path, "w: eventually[10ms:10ms] (thermal/state.max_temperature_c > 85)\n", recording
    )
    assert code == 0 and "w: SATISFIED  robustness 5" in out
    code, out, _ = _check(tmp_path, "w: always[0:20ms] (thermal/state.max_temperature_c < 85)\n", recording)
    assert code == 1 and "first violation: t=1700000000.000000000 s" in out
    assert "t=1700000000.020000000 s  15" in out  # each sample's stamp to the ns


def test_unknown_topic_and_field_fail_with_their_own_code(tmp_path: Path, recording: Path) -> None:
    code, out, err = _check(tmp_path, "a: always (gpu/telemetry.utilization_ratio < 1)\n", recording)
    assert code == 3
    assert "a: UNKNOWN" in out and "gpu/telemetry not in the recording; its topics: thermal/state" in out
    assert "UNKNOWN" in err and "a" in err
    code, out, _ = _check(tmp_path, "b: always (thermal/state.max_temp < 85)\n", recording)
    assert code == 3
    assert "has no field 'max_temp'; its fields: header, max_temperature_c, temperatures_c" in out
    # a violated spec beside an unknown one: violated wins (1)
    code, _, _ = _check(
        tmp_path,
        "a: always (gpu/telemetry.utilization_ratio < 1)\nc: always (thermal/state.max_temperature_c < 80)\n",
        recording,
    )
    assert code == 1
    code, _, _ = _check(tmp_path, "c: always (thermal/state.max_temperature_c < 95)\n", recording)
    assert code == 0


def test_empty_spec_file_and_non_mcap_file_get_one_plain_line(tmp_path: Path, recording: Path) -> None:
    code, _, err = _check(tmp_path, "# nothing but comments\n\n", recording)
    assert code == 2 and "no specification" in err and len(err.strip().splitlines()) == 1
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all\n" * 3)
    code, _, err = _check(tmp_path, "c: always (thermal/state.max_temperature_c < 95)\n", junk)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "not a readable MCAP recording" in err
    code, _, err = _check(
        tmp_path, "c: always (thermal/state.max_temperature_c < 95)\n", tmp_path / "none.mcap"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "No such file" in err
