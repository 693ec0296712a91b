"""Repair the ROS 2 PyPI wheels inside a venv so ament/rosidl CMake builds work here. Idempotent.

The wheels' exported CMake targets name the wheel builder's Python and NumPy include directories
(/opt/python/cp311-cp311/...), which do not exist on this machine; CMake refuses such targets.
Only files under the venv are touched.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

BUILDER_PREFIX = "/opt/python/cp311-cp311"


def replacements() -> dict[str, str]:
    import numpy

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        raise SystemExit(f"Python headers missing in {include}: install python3-dev for {sys.executable}")
    site = sysconfig.get_paths()["purelib"]
    return {
        f"{BUILDER_PREFIX}/include/{version}": include,
        f"{BUILDER_PREFIX}/lib/{version}/site-packages/numpy/_core/include": numpy.get_include(),
        f"{BUILDER_PREFIX}/lib/{version}/site-packages": site,
    }


def main() -> int:
    prefix = Path(sys.prefix)
    if prefix == Path(sys.base_prefix):
        raise SystemExit("run this with the venv's python, not the system's")
    subs = replacements()
    fixed = 0
    for path in (prefix / "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        if BUILDER_PREFIX not in text:
            continue
        for old, new in subs.items():
            text = text.replace(old, new)
        path.write_text(text)
        fixed += 1
    # colcon warns about a prefix without setup scripts; the venv needs none.
    for name in ("local_setup.sh", "local_setup.bash"):
        hook = prefix / name
        if not hook.exists():
            hook.write_text("# ROS 2 wheels: the venv's activate script sets up the environment\n")
    print(f"fix_ros_wheels: {fixed} CMake file(s) repaired in {prefix}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
