"""Chosen fields straight from a serialized ROS 2 message (CDR as DDS delivers it), without building
the message.

At 1 kHz, taking a RenderStats as a Python object costs 30-45 µs (rmw's C struct, then every field
and the nested Header and Time objects converted); the same message taken raw costs 6-7 µs. The
monitors read two or three numbers of it, so `FieldReader` walks the bytes to the last field it
needs and returns only those, as attributes (`view.header.stamp.sec`), which is all
`watch.field_getter` and `watch.stamp_ns` use.

Encoding: XCDR1 (plain CDR, encapsulation 0x0000 big endian / 0x0001 little endian), as rmw_fastrtps
and rmw_cyclonedds publish ROS 2 types: primitives aligned to their size (at most 8) from the byte
after the 4-byte encapsulation header, strings and sequences a uint32 count first. Other
encapsulations raise `Unsupported` (the caller deserializes the whole message instead); bytes that
end too early raise `ValueError`. Type layouts come from `fields_of` ('pkg/Name' -> ordered
{field: rosidl type}, as the generated classes' get_fields_and_field_types()), so this module needs
no ROS.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

FieldsOf = Callable[[str], Mapping[str, str]]

PRIMITIVES = {
    "boolean": "?",
    "octet": "B",
    "uint8": "B",
    "int8": "b",
    "uint16": "H",
    "int16": "h",
    "uint32": "I",
    "int32": "i",
    "uint64": "Q",
    "int64": "q",
    "float": "f",
    "double": "d",
}
_ENDIAN = {b"\x00\x01": "<", b"\x00\x00": ">"}
_U32 = {e: struct.Struct(e + "I") for e in "<>"}
_ALL: dict[str, Any] = {}  # a subtree that wants every field below it


class Unsupported(ValueError):
    """The type or the encapsulation is one this reader does not walk (deserialize it instead)."""


def _tree(paths: Iterable[Sequence[str | int]]) -> dict[str, Any]:
    """Field paths -> nested {name: subtree}; an index reads the whole array (its elements' subtree
    below it), a path that ends (a leaf or a whole message) is _ALL."""
    root: dict[str, Any] = {}
    for path in paths:
        names = [p for p in path if isinstance(p, str)]
        node = root
        for i, name in enumerate(names):
            if node is _ALL:
                break
            if i == len(names) - 1:
                node[name] = _ALL
            else:
                child = node.get(name)
                if child is None:
                    child = node[name] = {}
                node = child
    return root


def _parse_type(t: str) -> tuple[str, str, int | None]:
    """rosidl type string -> (kind, element, count): kind one, array (count) or seq."""
    if t.startswith("sequence<"):
        return "seq", t[len("sequence<") : -1].split(",", maxsplit=1)[0].strip(), None
    if t.endswith("]"):
        base, _, n = t[:-1].partition("[")
        return "array", base, int(n)
    return "one", t, None


def _base(t: str) -> str:
    """'string<10>' -> 'string' (bounds do not change the encoding)."""
    return t.split("<", 1)[0] if t.startswith(("string<", "wstring<")) else t


def _layout(type_name: str, want: dict[str, Any], fields_of: FieldsOf) -> list[tuple[str, str]]:
    """The type's (field, rosidl type) pairs in order; Unsupported when there are none, or when a
    wanted field is not among them."""
    try:
        fields = list(fields_of(type_name).items())
    except Exception as exc:
        raise Unsupported(f"{type_name}: no layout ({exc})") from exc
    if want is not _ALL:
        missing = set(want) - {name for name, _ in fields}
        if missing:
            raise Unsupported(f"{type_name} has no field {sorted(missing)[0]!r}")
    return fields


class _Block:
    """Consecutive primitives: one struct per alignment phase of the block's start."""

    __slots__ = ("cache", "codes", "keep")

    def __init__(self) -> None:
        self.codes: list[str] = []
        self.keep: list[bool] = []
        self.cache: dict[tuple[str, int], tuple[struct.Struct, int]] = {}

    def layout(self, endian: str, phase: int) -> tuple[struct.Struct, int]:
        key = (endian, phase)
        hit = self.cache.get(key)
        if hit is None:
            fmt, pos = [endian], phase
            for code, keep in zip(self.codes, self.keep, strict=True):
                size = struct.calcsize(code)
                pad = -pos % min(size, 8)
                fmt.append("x" * pad + (code if keep else "x" * size))
                pos += pad + size
            hit = self.cache[key] = (struct.Struct("".join(fmt)), pos - phase)
        return hit


class _Walk:
    """The operations that step over one message type's fields in order, keeping the wanted ones."""

    def __init__(self, type_name: str, want: dict[str, Any], fields_of: FieldsOf, depth: int = 0) -> None:
        fields = _layout(type_name, want, fields_of)
        self.ops: list[tuple[Any, ...]] = []
        self.names: list[tuple[str, ...]] = []  # the stored values' paths, in store order
        self._fields_of = fields_of
        self._view: Callable[[Sequence[Any]], SimpleNamespace] | None = None
        if want is not _ALL and depth == 0:  # only the root may stop early
            last = max((i for i, (name, _) in enumerate(fields) if name in want), default=-1)
            fields = fields[: last + 1]
        self._add(fields, want, (), depth)

    def _block(self) -> _Block:
        if not self.ops or self.ops[-1][0] != "block":
            self.ops.append(("block", _Block()))
        block: _Block = self.ops[-1][1]
        return block

    def _add(
        self, fields: list[tuple[str, str]], want: dict[str, Any], prefix: tuple[str, ...], depth: int
    ) -> None:
        if depth > 16:
            raise Unsupported(f"{'.'.join(prefix)}: nested too deep")
        for name, t in fields:
            sub = _ALL if want is _ALL else want.get(name)
            keep = sub is not None
            path = (*prefix, name)
            kind, elem, count = _parse_type(t)
            elem = _base(elem)
            if kind == "one" and elem in PRIMITIVES:
                block = self._block()
                block.codes.append(PRIMITIVES[elem])
                block.keep.append(keep)
                if keep:
                    self.names.append(path)
            elif kind == "one" and elem == "string":
                self.ops.append(("string", keep))
                if keep:
                    self.names.append(path)
            elif kind == "one" and "/" in elem:  # a nested message is its fields, inline
                sub = sub if sub is not None else {}
                self._add(_layout(elem, sub, self._fields_of), sub, path, depth + 1)
            elif elem in PRIMITIVES:
                code = PRIMITIVES[elem]
                op = "parray" if kind == "array" else "pseq"
                self.ops.append((op, code, struct.calcsize(code), count, keep))
                if keep:
                    self.names.append(path)
            elif elem == "string":
                self.ops.append(("sarray" if kind == "array" else "sseq", count, keep))
                if keep:
                    self.names.append(path)
            elif "/" in elem:
                walk = _Walk(elem, sub if sub is not None else {}, self._fields_of, depth + 1)
                self.ops.append(("marray" if kind == "array" else "mseq", walk, count, keep))
                if keep:
                    self.names.append(path)
            else:
                raise Unsupported(f"field {'.'.join(path)}: type {t!r}")

    def run(self, data: bytes, off: int, endian: str, out: list[Any]) -> int:
        """Walks from payload offset `off` (data[4 + off]); appends kept values; returns the end."""
        u32 = _U32[endian]
        end = len(data) - 4
        for op in self.ops:
            kind = op[0]
            if kind == "block":
                layout, size = op[1].layout(endian, off % 8)
                if off + size > end:
                    raise ValueError("message ends inside a field")
                out.extend(layout.unpack_from(data, 4 + off))
                off += size
            elif kind == "string":
                off += -off % 4
                text, off = _string(data, off, end, u32)
                if op[1]:
                    out.append(text)
            elif kind in ("parray", "pseq"):
                _, code, size, n, keep = op
                if kind == "pseq":
                    off, n = _count(data, off, end, u32)
                if n:
                    off += -off % min(size, 8)
                if off + n * size > end:
                    raise ValueError("message ends inside an array")
                if keep:
                    out.append(list(struct.unpack_from(f"{endian}{n}{code}", data, 4 + off)))
                off += n * size
            elif kind in ("sarray", "sseq"):
                _, n, keep = op
                if kind == "sseq":
                    off, n = _count(data, off, end, u32)
                items = []
                for _ in range(n):
                    off += -off % 4
                    text, off = _string(data, off, end, u32)
                    items.append(text)
                if keep:
                    out.append(items)
            else:  # message array / sequence: each element walked whole
                _, walk, n, keep = op
                if kind == "mseq":
                    off, n = _count(data, off, end, u32)
                views = []
                for _ in range(n):
                    values: list[Any] = []
                    off = walk.run(data, off, endian, values)
                    if keep:
                        views.append(walk.view(values))
                if keep:
                    out.append(views)
        return off

    def view(self, values: Sequence[Any]) -> SimpleNamespace:
        if self._view is None:
            self._view = _view_builder(self.names)
        return self._view(values)


def _view_builder(names: Sequence[tuple[str, ...]]) -> Callable[[Sequence[Any]], SimpleNamespace]:
    """values -> nested namespaces, as one generated expression (field names are identifiers)."""
    tree: dict[str, Any] = {}
    for i, path in enumerate(names):
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = i

    def expr(node: dict[str, Any]) -> str:
        parts = []
        for name, sub in node.items():
            if not name.isidentifier():
                raise Unsupported(f"field name {name!r}")
            parts.append(f"{name}={expr(sub) if isinstance(sub, dict) else f'v[{sub}]'}")
        return f"NS({', '.join(parts)})"

    build: Callable[[Sequence[Any]], SimpleNamespace] = eval(  # field names checked to be identifiers above
        f"lambda v: {expr(tree)}", {"NS": SimpleNamespace}
    )
    return build


def _string(data: bytes, off: int, end: int, u32: struct.Struct) -> tuple[str, int]:
    if off + 4 > end:
        raise ValueError("message ends inside a string length")
    (n,) = u32.unpack_from(data, 4 + off)
    off += 4
    if off + n > end:
        raise ValueError("message ends inside a string")
    text = data[4 + off : 4 + off + max(n - 1, 0)].decode("utf-8", errors="replace")
    return text, off + n


def _count(data: bytes, off: int, end: int, u32: struct.Struct) -> tuple[int, int]:
    off += -off % 4
    if off + 4 > end:
        raise ValueError("message ends inside a sequence length")
    (n,) = u32.unpack_from(data, 4 + off)
    if n > end - off:  # every element takes at least a byte: a count past the end is damage
        raise ValueError(f"sequence of {n} elements in {end - off} bytes")
    return off + 4, n


class FieldReader:
    """Reads `paths` (field paths as watch.field_getter takes them) of `type_name` from CDR bytes.

    Raises Unsupported at construction when the type holds something it does not walk (wstring,
    char), and from read() for an encapsulation other than XCDR1."""

    def __init__(self, type_name: str, paths: Iterable[Sequence[str | int]], fields_of: FieldsOf) -> None:
        self._walk = _Walk(type_name, _tree(paths), fields_of)

    def read(self, data: bytes) -> SimpleNamespace:
        endian = _ENDIAN.get(bytes(data[:2]))
        if endian is None:
            raise Unsupported(f"encapsulation {bytes(data[:2]).hex()} (XCDR1 only)")
        values: list[Any] = []
        self._walk.run(data, 0, endian, values)
        return self._walk.view(values)
