"""ROS 2 message definitions as rosbag2 writes them into MCAP (and Foxglove reads them as ros2msg).

The text of a type's .msg file, followed by every type it uses, each after a separator line and
`MSG: pkg/Type`. The .msg files come from each package's share/<pkg>/msg/ (the ament index), so
this works for our own messages and for any installed package's.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

SEPARATOR = "=" * 80
_BUILTIN = {
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
}
_FIELD = re.compile(r"^\s*([A-Za-z_][\w/]*)(?:<=\d+)?(?:\[[^\]]*\])?\s+\w+")


def normalize(type_name: str) -> str:
    """'pkg/msg/Type' or 'pkg/Type' -> 'pkg/msg/Type'."""
    parts = type_name.strip("/").split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and parts[1] == "msg":
        return "/".join(parts)
    raise ValueError(f"{type_name!r} is not a message type name (pkg/msg/Type)")


def _msg_file(pkg: str, name: str) -> Path:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory(pkg))
    except (PackageNotFoundError, LookupError, ValueError):
        raise LookupError(f"package {pkg} is not installed (no share/{pkg} in the ament index)") from None
    path = share / "msg" / f"{name}.msg"
    if not path.is_file():
        raise LookupError(f"{path} does not exist")
    return path


def _dependencies(text: str, pkg: str) -> list[str]:
    out = []
    for line in text.splitlines():
        m = _FIELD.match(line.split("#", 1)[0])
        if not m:
            continue
        field_type = m.group(1)
        if field_type in _BUILTIN:
            continue
        if field_type == "Header":
            out.append("std_msgs/msg/Header")
        elif "/" in field_type:
            out.append(normalize(field_type))
        else:
            out.append(f"{pkg}/msg/{field_type}")
    return out


@lru_cache(maxsize=256)
def message_definition(type_name: str) -> str:
    """The concatenated definition of `type_name` and its dependencies (depth first, each once)."""
    root = normalize(type_name)
    seen: list[str] = []
    texts: dict[str, str] = {}

    def visit(full: str) -> None:
        if full in texts:
            return
        pkg, _, name = full.split("/")
        texts[full] = _msg_file(pkg, name).read_text()
        seen.append(full)
        for dep in _dependencies(texts[full], pkg):
            visit(dep)

    visit(root)
    parts = [texts[root].rstrip("\n")]
    for full in seen[1:]:
        pkg, _, name = full.split("/")
        parts.append(f"{SEPARATOR}\nMSG: {pkg}/{name}\n{texts[full].rstrip()}")
    return "\n".join(parts) + "\n"


def type_name_of(msg_class: type) -> str:
    """'pkg/msg/Type' of a generated message class."""
    module = msg_class.__module__.split(".")
    return f"{module[0]}/msg/{msg_class.__name__}"


def message_class(type_name: str) -> type:
    """The generated class of 'pkg/msg/Type' (as `ros2 topic` resolves a topic's type)."""
    import importlib

    pkg, _, name = normalize(type_name).split("/")
    try:
        cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise LookupError(f"message type {type_name} is not importable here") from None
    return cls  # type: ignore[no-any-return]
