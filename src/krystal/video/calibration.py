"""Camera calibration files (camera_calibration_parsers' YAML) read without ROS.

The node turns a Calibration into sensor_msgs/CameraInfo; an uncalibrated one carries only the
image size, as camera_info_manager publishes before a camera is calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# name in the file -> (rows, cols); None: any number of columns (distortion models differ)
_MATRICES: dict[str, tuple[int, int | None]] = {
    "camera_matrix": (3, 3),
    "distortion_coefficients": (1, None),
    "rectification_matrix": (3, 3),
    "projection_matrix": (3, 4),
}
_IDENTITY_3X3 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


class CalibrationError(ValueError):
    """The calibration cannot be used: the text says why."""


@dataclass(frozen=True)
class Calibration:
    width: int
    height: int
    camera_name: str = ""
    k: tuple[float, ...] = (0.0,) * 9  # camera matrix, row-major
    distortion_model: str = ""
    d: tuple[float, ...] = ()
    r: tuple[float, ...] = (0.0,) * 9  # rectification
    p: tuple[float, ...] = (0.0,) * 12  # projection, 3x4

    @property
    def calibrated(self) -> bool:
        return self.k[0] != 0.0


def calibration_path(url: str) -> str:
    """The file a camera_info_url names: file:///path or a plain path; "" when none is set."""
    url = url.strip()
    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url:
        raise CalibrationError(f"camera_info_url {url!r}: only file:// URLs and paths are supported")
    return str(Path(url).expanduser()) if url else ""


def url_problem(url: str) -> str | None:
    try:
        calibration_path(url)
    except CalibrationError as exc:
        return str(exc)
    return None


def _matrix(doc: dict[str, Any], name: str) -> tuple[float, ...]:
    rows, cols = _MATRICES[name]
    m = doc.get(name)
    if not isinstance(m, dict) or not isinstance(m.get("data"), list):
        raise CalibrationError(f"{name} needs rows, cols and a data list")
    data = m["data"]
    want_cols = len(data) if cols is None else cols
    if m.get("rows") != rows or m.get("cols") != want_cols or len(data) != rows * want_cols:
        shape = f"{rows}x{cols}" if cols is not None else f"{rows}xN"
        raise CalibrationError(
            f"{name} must be {shape}, got rows={m.get('rows')} cols={m.get('cols')} and {len(data)} values"
        )
    try:
        return tuple(float(v) for v in data)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} has a value that is not a number") from None


def parse_calibration(text: str) -> Calibration:
    """A Calibration from the YAML text; raises CalibrationError naming what is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CalibrationError(f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise CalibrationError("not a calibration: the YAML is not a mapping")
    width, height = doc.get("image_width"), doc.get("image_height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise CalibrationError(f"image_width and image_height must be positive integers: {width}, {height}")
    d = _matrix(doc, "distortion_coefficients")
    r = _matrix(doc, "rectification_matrix") if "rectification_matrix" in doc else _IDENTITY_3X3
    return Calibration(
        width=width,
        height=height,
        camera_name=str(doc.get("camera_name") or ""),
        k=_matrix(doc, "camera_matrix"),
        distortion_model=str(doc.get("distortion_model") or ("plumb_bob" if len(d) == 5 else "")),
        d=d,
        r=r,
        p=_matrix(doc, "projection_matrix"),
    )


def load_calibration(url: str) -> Calibration | None:
    """The calibration at `url`, None when the url is empty; raises CalibrationError."""
    path = calibration_path(url)
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CalibrationError(f"calibration {path} is not text") from None
    try:
        return parse_calibration(text)
    except CalibrationError as exc:
        raise CalibrationError(f"calibration {path}: {exc}") from None
