"""Calibration files without ROS: the camera_calibration_parsers YAML is read, URLs resolved, and
malformed or missing files refused with a reason the node can show."""

from __future__ import annotations

from pathlib import Path

import pytest

from krystal.video.calibration import (
    Calibration,
    CalibrationError,
    calibration_path,
    load_calibration,
    parse_calibration,
    url_problem,
)

# as camera_calibration's cameracalibrator writes it (ost.yaml)
CALIBRATION_YAML = """\
image_width: 160
image_height: 120
camera_name: test_cam
camera_matrix:
  rows: 3
  cols: 3
  data: [200.5, 0, 80.25, 0, 201.0, 60.75, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.1, 0.01, 0.001, -0.002, 0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [190.0, 0, 79.5, 0, 0, 195.0, 61.0, 0, 0, 0, 1, 0]
"""


def test_standard_file_is_read() -> None:
    cal = parse_calibration(CALIBRATION_YAML)
    assert (cal.width, cal.height, cal.camera_name) == (160, 120, "test_cam")
    assert cal.k == (200.5, 0.0, 80.25, 0.0, 201.0, 60.75, 0.0, 0.0, 1.0)
    assert cal.distortion_model == "plumb_bob"
    assert cal.d == (-0.1, 0.01, 0.001, -0.002, 0.0)
    assert cal.r == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert cal.p[:3] == (190.0, 0.0, 79.5) and len(cal.p) == 12
    assert cal.calibrated


def test_optional_fields_take_the_parsers_defaults() -> None:
    text = "\n".join(
        line
        for line in CALIBRATION_YAML.splitlines()
        if not line.startswith(("camera_name", "distortion_model"))
    )
    text = text.split("rectification_matrix:")[0] + "projection_matrix:" + text.split("projection_matrix:")[1]
    cal = parse_calibration(text)
    assert cal.camera_name == "" and cal.distortion_model == "plumb_bob"  # 5 coefficients
    assert cal.r == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_uncalibrated_carries_only_the_size() -> None:
    cal = Calibration(640, 480)
    assert not cal.calibrated
    assert set(cal.k) == {0.0} and set(cal.p) == {0.0} and cal.d == () and cal.distortion_model == ""


def test_urls_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "cam.yaml"
    path.write_text(CALIBRATION_YAML)
    assert calibration_path(f"file://{path}") == str(path)
    assert calibration_path(str(path)) == str(path)
    assert calibration_path("~/cam.yaml") == str(Path.home() / "cam.yaml")
    assert calibration_path("  ") == ""
    assert load_calibration("") is None
    loaded = load_calibration(f"file://{path}")
    assert loaded is not None and loaded.camera_name == "test_cam"
    assert "only file:// URLs" in (url_problem("package://my_camera/calibration.yaml") or "")
    assert url_problem(f"file://{path}") is None


def _broken(old: str, new: str) -> str:
    assert old in CALIBRATION_YAML
    return CALIBRATION_YAML.replace(old, new)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("camera_matrix: [1, 2", "not YAML"),
        ("- 1\n- 2\n", "not a mapping"),
        (_broken("image_width: 160", "image_width: wide"), "image_width and image_height"),
        (_broken("camera_matrix:", "camera_matrx:"), "camera_matrix needs rows, cols and a data list"),
        (_broken("data: [200.5, 0, 80.25, 0,", "data: [200.5, 0,"), "camera_matrix must be 3x3"),
        (_broken("rows: 1\n  cols: 5", "rows: 1\n  cols: 4"), "distortion_coefficients must be 1xN"),
        (_broken("data: [190.0, 0,", "data: [f, 0,"), "projection_matrix has a value that is not a number"),
    ],
)
def test_malformed_files_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(CalibrationError, match=reason):
        parse_calibration(text)


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="cannot read calibration"):
        load_calibration(str(tmp_path / "none.yaml"))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CalibrationError, match="is not text"):
        load_calibration(str(binary))
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: 1\n")
    with pytest.raises(CalibrationError, match=f"calibration {bad}: image_width and image_height"):
        load_calibration(f"file://{bad}")
