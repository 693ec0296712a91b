"""Device controls ("brightness=0.5", "fourcc=MJPG") parsed once and applied after every open.

Names are OpenCV's CAP_PROP_* names in lower case without the prefix, so every backend control
OpenCV knows can be set without a new parameter per control.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2


@dataclass(frozen=True)
class Control:
    name: str  # "brightness"
    prop: int  # cv2.CAP_PROP_BRIGHTNESS
    value: float
    text: str  # "brightness=0.5", as the user wrote it (without spaces)


@dataclass(frozen=True)
class ControlReport:
    """What one open made of the controls: cap.set returned True (applied) or False (refused)."""

    applied: tuple[str, ...]
    refused: tuple[str, ...]


def parse_control(item: str) -> Control:
    """One "name=value" item; raises ValueError with the reason."""
    name, sep, raw = (part.strip() for part in item.partition("="))
    if not sep or not name or not raw:
        raise ValueError(f"camera_controls item {item!r} is not name=value")
    prop = getattr(cv2, f"CAP_PROP_{name.upper()}", None)
    if not name.islower() or not isinstance(prop, int):
        raise ValueError(
            f"camera_controls item {item!r}: {name!r} is not an OpenCV CAP_PROP name in lower case"
        )
    try:
        value = float(raw)
    except ValueError:
        if name != "fourcc" or len(raw) != 4:
            raise ValueError(f"camera_controls item {item!r}: {raw!r} is not a number") from None
        value = float(cv2.VideoWriter.fourcc(*raw))
    return Control(name, prop, value, f"{name}={raw}")


def parse_controls(items: Sequence[str]) -> tuple[Control, ...]:
    controls = tuple(parse_control(item) for item in items)
    names = [c.name for c in controls]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"camera_controls sets {', '.join(twice)} more than once")
    return controls


def controls_problem(items: Sequence[str]) -> str | None:
    """Why `items` cannot be used as camera_controls, or None."""
    try:
        parse_controls(items)
    except ValueError as exc:
        return str(exc)
    return None


def configure(
    cap: cv2.VideoCapture, width: int, height: int, fps: float, controls: Sequence[Control]
) -> ControlReport:
    """Size, rate and controls of a freshly opened capture; only the controls are reported.

    The pixel format goes first: V4L2 drivers reset the frame size when it changes.
    """
    applied: list[str] = []
    refused: list[str] = []

    def set_prop(prop: int, value: float) -> bool:
        try:
            return bool(cap.set(prop, value))
        except cv2.error:  # some backends throw instead of returning False
            return False

    def apply(selected: list[Control]) -> None:
        for c in selected:
            (applied if set_prop(c.prop, c.value) else refused).append(c.text)

    set_prop(cv2.CAP_PROP_BUFFERSIZE, 1)
    apply([c for c in controls if c.name == "fourcc"])
    if width and height:
        set_prop(cv2.CAP_PROP_FRAME_WIDTH, width)
        set_prop(cv2.CAP_PROP_FRAME_HEIGHT, height)
    if fps:
        set_prop(cv2.CAP_PROP_FPS, fps)
    apply([c for c in controls if c.name != "fourcc"])
    return ControlReport(tuple(applied), tuple(refused))
