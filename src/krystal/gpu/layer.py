"""Where the installed Krystal Vulkan layer is, and the environment that enables it. ROS-free."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LAYER_NAME = "VK_LAYER_KRYSTAL_draws"
MANIFEST = "VkLayer_krystal_draws.json"
LIBRARY = "libVkLayer_krystal_draws.so"
SHARE = Path("share", "krystal", "vulkan")


def _prefixes() -> list[Path]:
    out: list[Path] = []
    try:  # the ROS way; absent outside a ROS environment
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        with contextlib.suppress(PackageNotFoundError):
            out.append(Path(get_package_prefix("krystal")))
    except ImportError:
        pass
    out += [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    # <prefix>/lib/pythonX.Y/site-packages/krystal/gpu/layer.py in an install tree
    out.append(Path(__file__).absolute().parents[5])
    return out


def layer_dir() -> Path | None:
    """The folder with the layer's manifest and library (share/krystal/vulkan), None if not built."""
    for prefix in _prefixes():
        d = prefix / SHARE
        if (d / MANIFEST).is_file() and (d / LIBRARY).is_file():
            return d
    return None


def draw_test() -> Path | None:
    """The offscreen test program (layer/test/draw_test.c) installed beside the layer."""
    d = layer_dir()
    exe = d / "test" / "draw_test" if d else None
    return exe if exe and os.access(exe, os.X_OK) else None


# The loader's own explicit-layer folders: VK_LAYER_PATH replaces them, so they are named again
# to keep other layers (VK_LAYER_KHRONOS_validation) loadable beside ours.
SYSTEM_LAYER_DIRS = (
    "/usr/local/etc/vulkan/explicit_layer.d",
    "/usr/local/share/vulkan/explicit_layer.d",
    "/etc/vulkan/explicit_layer.d",
    "/usr/share/vulkan/explicit_layer.d",
)


def env(directory: Path, others: str = "") -> dict[str, str]:
    """The variables that make the Vulkan loader load the layer (first, then `others`' layers)."""
    given = [p for p in os.environ.get("VK_LAYER_PATH", "").split(os.pathsep) if p]
    rest = given or [d for d in SYSTEM_LAYER_DIRS if os.path.isdir(d)]
    path = [str(directory), *(p for p in rest if p != str(directory))]
    return {
        "VK_LAYER_PATH": os.pathsep.join(path),
        "VK_INSTANCE_LAYERS": ":".join(x for x in (LAYER_NAME, others) if x),
    }
