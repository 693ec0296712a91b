"""Image conversion cost at 640x480 and 1080p: ours against the plain rclpy way, in the same run.

Anchor (outgoing): `msg.data = frame.tobytes()`, what cam2image-style Python publishers do (about
4 ms at 1080p on a 2-core machine). Anchor (incoming): `np.array(msg.data).reshape(...)`, a copy per frame as
cv_bridge's imgmsg_to_cv2 makes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sensor_msgs.msg import Image

from bench.common import emit, time_ms
from krystal.ros.image import array_to_image, image_to_array


def anchor_out(frame: NDArray[np.uint8]) -> Image:
    msg = Image(height=frame.shape[0], width=frame.shape[1], encoding="bgr8", step=frame.shape[1] * 3)
    msg.data = frame.tobytes()
    return msg


def anchor_in(msg: Image) -> NDArray[Any]:
    return np.array(msg.data, dtype=np.uint8).reshape(msg.height, msg.width, 3)


def compare(
    case: str, ours: Callable[[], object], anchor: Callable[[], object], anchor_name: str, repeat: int = 30
) -> None:
    ours_min, ours_med = time_ms(ours, repeat)
    anchor_min, anchor_med = time_ms(anchor, repeat)
    emit("image", case, ours_med, anchor_med, "ms", ours_min=round(ours_min, 4),
         anchor_min=round(anchor_min, 4), anchor_name=anchor_name)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 repetitions instead of 30")
    repeat = 5 if parser.parse_args().quick else 30
    for name, (w, h) in {"640x480": (640, 480), "1080p": (1920, 1080)}.items():
        frame = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
        compare(f"to_msg {name}", partial(array_to_image, frame, "bgr8"), partial(anchor_out, frame),
                "msg.data = frame.tobytes()", repeat)  # fmt: skip
        msg = array_to_image(frame, "bgr8")
        compare(f"from_msg {name}", partial(image_to_array, msg), partial(anchor_in, msg),
                "np.array(msg.data) (copy)", repeat)  # fmt: skip


if __name__ == "__main__":
    main()
