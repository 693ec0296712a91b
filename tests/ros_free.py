"""Which test modules run without ROS: the ROS-free cores, for `make test-compat`.

A module needs ROS when it, or any krystal/tests/bench module it imports (followed transitively,
imports inside functions included), imports a ROS package. Decided from the source, so a new room's
core tests join the compat run without a list to keep.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROS_PACKAGES = frozenset(
    {
        "rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "diagnostic_msgs", "builtin_interfaces",
        "lifecycle_msgs", "geometry_msgs", "ament_index_python", "launch", "launch_ros", "launch_testing",
        "rosidl_runtime_py", "cv_bridge", "diagnostic_updater", "krystal.msg", "krystal.srv",
    }
)  # fmt: skip
_LOCAL_ROOTS = {"krystal": ROOT / "src", "tests": ROOT, "bench": ROOT}
_HANDLED = frozenset({"__future__", "torch"})  # tests skip their torch parts themselves


def _local_file(module: str) -> Path | None:
    root = _LOCAL_ROOTS.get(module.split(".", maxsplit=1)[0])
    if root is None:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_ros(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in ROS_PACKAGES for i in range(1, len(parts) + 1))


@cache
def needs_ros(path: Path) -> bool:
    seen: set[Path] = set()
    todo = [path.resolve()]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in _imports(current):
            if _is_ros(module):
                return True
            local = _local_file(module)
            if local is not None:
                todo.append(local.resolve())
    return False


@cache
def missing_packages(path: Path) -> tuple[str, ...]:
    """Third-party packages the module (or a local module it imports) needs that are not installed.

    The compat venvs carry the distro's core libraries, not every node's optional stack (web,
    audio anchors, temporal anchors); such modules are left out there and listed, not failed.
    """
    import importlib.util
    import sys

    seen: set[Path] = set()
    todo = [path.resolve()]
    missing: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in _imports(current):
            top = module.split(".", maxsplit=1)[0]
            local = _local_file(module)
            if local is not None:
                todo.append(local.resolve())
            elif top not in _LOCAL_ROOTS and top not in sys.stdlib_module_names and top not in _HANDLED:
                try:
                    found = importlib.util.find_spec(top) is not None
                except (ImportError, ValueError):
                    found = False
                if not found:
                    missing.add(top)
    return tuple(sorted(missing))
