"""The specification language: metric temporal logic over message fields, parsed to a small AST.

    always[0:5s](thermal/state.max_temperature_c < 85)
    (krystal/render_stats.render_time_ms_p99 > 33) -> eventually[0:1s](krystal/style.kernel_size < 5)
    historically[0:10s](gpu/telemetry.utilization_ratio < 0.9) since[0:2s] (audio/features.onset == 1)

A signal is `topic.field` (a field path, array elements by index: `thermal/state.temperatures_c[0]`).
Bounds are seconds unless a unit follows (`ns`, `us`, `ms`, `s`, `min`); `inf` leaves a bound open.
Bounds are held as integer nanoseconds (the decimal text is converted exactly, then rounded to the
nearest nanosecond), so that a window compares integer stamps without rounding.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

INF = math.inf


class SpecError(ValueError):
    """A parse error that points at its line and column (1-based)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.reason = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Signal:
    """A message field: topic name and the field path below it (names and integer indices)."""

    topic: str
    path: tuple[str | int, ...]

    @property
    def name(self) -> str:
        text = self.topic
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text


@dataclass(frozen=True)
class Number:
    value: float


Operand = Signal | Number


@dataclass(frozen=True)
class Atom:
    left: Operand
    op: str  # < <= > >= == !=
    right: Operand


@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class Not:
    child: Formula


@dataclass(frozen=True)
class Binary:
    op: str  # and, or, implies
    left: Formula
    right: Formula


NS = int | float  # integer nanoseconds, or INF for an open upper bound


@dataclass(frozen=True)
class Temporal:
    """always/eventually (future), historically/once (past); bounds lo_ns..hi_ns (int ns; hi_ns may be INF).

    `previous` (or `prev`) is weak, true before the first sample (as rtamt); `pre` is strong, false
    there (as Reelay).
    """

    op: str
    lo_ns: NS
    hi_ns: NS
    child: Formula


@dataclass(frozen=True)
class Interval2:
    """until (future) or since (past) with bounds lo_ns..hi_ns (int ns; hi_ns may be INF)."""

    op: str
    lo_ns: NS
    hi_ns: NS
    left: Formula
    right: Formula


Formula = Atom | Const | Not | Binary | Temporal | Interval2

FUTURE = frozenset({"always", "eventually", "until"})
PAST = frozenset({"historically", "once", "since", "previous", "pre"})
_UNARY = {
    "always": "always",
    "eventually": "eventually",
    "historically": "historically",
    "once": "once",
    "previous": "previous",
    "prev": "previous",
    "pre": "pre",
}
_BINARY_TEMPORAL = {"until": "until", "since": "since"}
_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1, "min": 60 * 10**9}  # in ns
_CMP = ("<=", ">=", "==", "!=", "<", ">")

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n]+|\#[^\n]*)
      | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<name>[~/]?[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<op>->|=>|<=|>=|==|!=|&&|\|\||[<>!&|()\[\]:.,-])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line, col = _line_col(text, pos)
            raise SpecError(f"unexpected character {text[pos]!r}", line, col)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok: _Tok | None = None) -> SpecError:
        tok = tok or self.peek()
        line, col = _line_col(self.text, tok.pos)
        return SpecError(message, line, col)

    def expect(self, text: str) -> _Tok:
        tok = self.peek()
        if tok.text != text:
            found = "end of text" if tok.kind == "end" else repr(tok.text)
            raise self.fail(f"expected {text!r}, found {found}")
        return self.take()

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "name" and tok.text in words

    def parse(self) -> Formula:
        if self.peek().kind == "end":
            raise self.fail("empty specification")
        f = self.implies()
        if self.peek().kind != "end":
            raise self.fail(f"unexpected {self.peek().text!r}")
        return f

    def implies(self) -> Formula:
        left = self.disjunction()
        if self.peek().text in ("->", "=>") or self.at_word("implies"):
            self.take()
            return Binary("implies", left, self.implies())
        return left

    def disjunction(self) -> Formula:
        left = self.conjunction()
        while self.peek().text in ("|", "||") or self.at_word("or"):
            self.take()
            left = Binary("or", left, self.conjunction())
        return left

    def conjunction(self) -> Formula:
        left = self.binary_temporal()
        while self.peek().text in ("&", "&&") or self.at_word("and"):
            self.take()
            left = Binary("and", left, self.binary_temporal())
        return left

    def binary_temporal(self) -> Formula:
        left = self.unary()
        while self.peek().kind == "name" and self.peek().text in _BINARY_TEMPORAL:
            op = _BINARY_TEMPORAL[self.take().text]
            lo, hi = self.interval()
            left = Interval2(op, lo, hi, left, self.unary())
        return left

    def interval(self) -> tuple[NS, NS]:
        if self.peek().text != "[":
            return 0, INF
        start = self.take()
        lo = self.bound(allow_inf=False)
        self.expect(":")
        hi = self.bound(allow_inf=True)
        self.expect("]")
        if hi < lo:
            raise self.fail(f"interval [{lo}ns:{hi}ns] is empty", start)
        return lo, hi

    def bound(self, allow_inf: bool) -> NS:
        tok = self.peek()
        if tok.kind == "name" and tok.text == "inf":
            if not allow_inf:
                raise self.fail("a lower bound must be finite")
            self.take()
            return INF
        if tok.kind != "num":
            raise self.fail("expected a time bound (a number, optionally with ns, us, ms, s or min)")
        value = Decimal(self.take().text)
        unit = self.peek()
        scale = _UNITS["s"]
        if unit.kind == "name" and unit.text in _UNITS and unit.pos == tok.pos + len(tok.text):
            scale = _UNITS[self.take().text]
        elif unit.kind == "name" and unit.pos == tok.pos + len(tok.text):
            raise self.fail(f"unknown time unit {unit.text!r} (ns, us, ms, s, min)", unit)
        return int((value * scale).to_integral_value(ROUND_HALF_EVEN))

    def unary(self) -> Formula:
        tok = self.peek()
        if tok.text == "!" or (tok.kind == "name" and tok.text == "not"):
            self.take()
            return Not(self.unary())
        if tok.kind == "name" and tok.text in _UNARY and self.toks[self.i + 1].text != ".":
            op = _UNARY[self.take().text]
            if op in ("previous", "pre"):
                return Temporal(op, 0, 0, self.unary())
            lo, hi = self.interval()
            return Temporal(op, lo, hi, self.unary())
        if tok.text == "(":
            # a parenthesis opens a formula, or an arithmetic-free operand: try the formula first
            self.take()
            inner = self.implies()
            self.expect(")")
            return inner
        if tok.kind == "name" and tok.text in ("true", "false"):
            self.take()
            return Const(tok.text == "true")
        return self.atom()

    def atom(self) -> Formula:
        left = self.operand()
        tok = self.peek()
        if tok.text not in _CMP:
            found = "end of text" if tok.kind == "end" else repr(tok.text)
            raise self.fail(f"expected a comparison (<, <=, >, >=, ==, !=), found {found}")
        op = self.take().text
        return Atom(left, op, self.operand())

    def operand(self) -> Operand:
        tok = self.peek()
        sign = 1.0
        if tok.text == "-":
            self.take()
            sign = -1.0
            tok = self.peek()
            if tok.kind != "num":
                raise self.fail("expected a number after '-'")
        if tok.kind == "num":
            return Number(sign * float(self.take().text))
        if tok.kind == "name" and tok.text == "inf":
            self.take()
            return Number(sign * INF)
        if tok.kind != "name":
            found = "end of text" if tok.kind == "end" else repr(tok.text)
            raise self.fail(f"expected a signal (topic.field) or a number, found {found}")
        topic = self.take().text
        if self.peek().text != ".":
            raise self.fail(f"{topic!r} needs a field: write {topic}.field", tok)
        path: list[str | int] = []
        while self.peek().text in (".", "["):
            if self.take().text == ".":
                name = self.peek()
                if name.kind != "name" or "/" in name.text:
                    raise self.fail("expected a field name after '.'")
                path.append(self.take().text)
            else:
                index = self.peek()
                if index.kind != "num" or not index.text.isdigit():
                    raise self.fail("expected an array index (a non-negative integer)")
                path.append(int(self.take().text))
                self.expect("]")
        return Signal(topic, tuple(path))


def parse(text: str) -> Formula:
    """The AST of `text`; SpecError with line and column when it is not a specification."""
    return _Parser(text).parse()


def parse_signal(text: str) -> Signal:
    """A lone `topic.field` (config entries that name a series, not a formula)."""
    p = _Parser(text)
    s = p.operand()
    if not isinstance(s, Signal) or p.peek().kind != "end":
        raise p.fail(f"{text!r} is not a topic.field")
    return s


def signals(f: Formula) -> list[Signal]:
    """The signals `f` reads, in order of first appearance."""
    out: dict[str, Signal] = {}

    def visit(g: Formula) -> None:
        if isinstance(g, Atom):
            for o in (g.left, g.right):
                if isinstance(o, Signal):
                    out.setdefault(o.name, o)
        elif isinstance(g, Not | Temporal):
            visit(g.child)
        elif isinstance(g, Binary | Interval2):
            visit(g.left)
            visit(g.right)

    visit(f)
    return list(out.values())


def topics(f: Formula) -> list[str]:
    return list(dict.fromkeys(s.topic for s in signals(f)))


def horizon_ns(f: Formula) -> NS:
    """How far into the future `f` looks: its verdict at t is decided by samples up to t + horizon."""
    if isinstance(f, Atom | Const):
        return 0
    if isinstance(f, Not):
        return horizon_ns(f.child)
    if isinstance(f, Binary):
        return max(horizon_ns(f.left), horizon_ns(f.right))
    if isinstance(f, Temporal):
        own = f.hi_ns if f.op in FUTURE else 0
        return own + horizon_ns(f.child)
    own = f.hi_ns if f.op in FUTURE else 0
    return own + max(horizon_ns(f.left), horizon_ns(f.right))


def horizon_s(f: Formula) -> float:
    return horizon_ns(f) / 1e9


def is_past(f: Formula) -> bool:
    """True when no future operator appears: the verdict at t needs samples up to t only."""
    return horizon_ns(f) == 0 and not _has_future(f)


def _has_future(f: Formula) -> bool:
    if isinstance(f, Atom | Const):
        return False
    if isinstance(f, Not):
        return _has_future(f.child)
    if isinstance(f, Binary):
        return _has_future(f.left) or _has_future(f.right)
    if isinstance(f, Temporal):
        return f.op in FUTURE or _has_future(f.child)
    return f.op in FUTURE or _has_future(f.left) or _has_future(f.right)


def to_text(f: Formula) -> str:
    """Canonical text of `f`, parseable again (bounds in nanoseconds)."""

    def b(lo: NS, hi: NS) -> str:
        return "" if lo == 0 and hi == INF else f"[{lo}ns:{'inf' if hi == INF else f'{hi}ns'}]"

    def o(x: Operand) -> str:
        return x.name if isinstance(x, Signal) else repr(x.value) if x.value != -INF else "-inf"

    if isinstance(f, Atom):
        return f"({o(f.left)} {f.op} {o(f.right)})"
    if isinstance(f, Const):
        return "true" if f.value else "false"
    if isinstance(f, Not):
        return f"(not {to_text(f.child)})"
    if isinstance(f, Binary):
        return f"({to_text(f.left)} {f.op} {to_text(f.right)})"
    if isinstance(f, Temporal):
        if f.op in ("previous", "pre"):
            return f"({f.op} {to_text(f.child)})"
        return f"({f.op}{b(f.lo_ns, f.hi_ns)} {to_text(f.child)})"
    return f"({to_text(f.left)} {f.op}{b(f.lo_ns, f.hi_ns)} {to_text(f.right)})"
