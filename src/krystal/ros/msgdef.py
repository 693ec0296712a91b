"""A message class from its type name, as `ros2 topic` resolves a topic's type at run time.

The definition text of a type (for MCAP and Foxglove schemas) is krystal.record.msgdefs.
"""

from __future__ import annotations

import importlib


def message_class(type_name: str) -> type:
    """The generated class of 'pkg/msg/Type' (or 'pkg/Type')."""
    parts = type_name.strip("/").split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or parts[1] != "msg":
        raise LookupError(f"{type_name!r} is not a message type name (pkg/msg/Type)")
    try:
        cls = getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError):
        raise LookupError(f"message type {type_name} is not importable here") from None
    return cls  # type: ignore[no-any-return]
