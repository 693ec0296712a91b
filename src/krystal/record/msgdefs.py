"""ROS 2 message definitions as rosbag2 writes them into MCAP (schema encoding "ros2msg").

The .msg text of the type, then every type it uses, each after a line of 80 '=' and
"MSG: pkg/Name". The texts come from the installed share/<pkg>/msg/ (ament index), since the
rosidl runtime does not carry them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

SEPARATOR = "=" * 80
PRIMITIVES = frozenset(
    [
        "bool",
        "byte",
        "char",
        "float32",
        "float64",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "string",
        "wstring",
    ]
)


def _share_msg_file(package: str, name: str) -> Path:
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"


def split_type(type_name: str) -> tuple[str, str]:
    """ "std_msgs/msg/Header" or "std_msgs/Header" -> ("std_msgs", "Header")."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"not a message type name: {type_name!r}")


def field_types(text: str, package: str) -> list[tuple[str, str]]:
    """(package, name) of the non-primitive field types of a .msg text, in order."""
    out: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        base = re.split(r"[\[<]", line.split()[0], maxsplit=1)[0]
        if base in PRIMITIVES:
            continue
        dep = split_type(base) if "/" in base else (package, base)
        if dep not in out:
            out.append(dep)
    return out


def message_definition(type_name: str, read: Callable[[str, str], str] | None = None) -> str:
    """The full definition text of `type_name` with its dependencies (depth first, each once)."""
    read = read or (lambda pkg, name: _share_msg_file(pkg, name).read_text(encoding="utf-8"))
    package, name = split_type(type_name)
    main = read(package, name)
    seen: set[tuple[str, str]] = {(package, name)}
    parts = [main.rstrip("\n")]
    stack = list(reversed(field_types(main, package)))
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        text = read(*dep)
        parts.append(f"{SEPARATOR}\nMSG: {dep[0]}/{dep[1]}\n{text.rstrip(chr(10))}")
        stack.extend(reversed([d for d in field_types(text, dep[0]) if d not in seen]))
    return "\n".join(parts) + "\n"
