"""Online robustness monitor: a formula compiled to closures and streaming stages, O(1) amortised.

Semantics are pointwise over samples with real time stamps: the trace is the sequence of samples
(strictly increasing stamps, integer nanoseconds), and `always[a:b] p` at sample i is the minimum of p
over the samples j with t_i + a <= t_j <= t_i + b (+inf when there is none; `eventually`: maximum,
-inf). Stamps and bounds are Python ints, so window membership is exact at any magnitude (ROS stamps
near 1.7e18 ns included); on a uniformly sampled trace this is discrete-time STL, and robustness
equals rtamt's offline result.

Robustness 0 (equality): an atom whose two sides are equal has robustness +ZERO (the smallest
positive float) when it holds at equality (`<=`, `>=`, `==`) and -ZERO when it does not (`<`, `>`,
`!=`). Every later step is negation, min and max, which keep that sign, so the verdict is always
`robustness > 0`.

Subformulas without future operators compile to plain closures `f(t, values) -> float` evaluated at
once; future operators are stages that emit each sample's robustness when its window has closed
(the first sample at or past the bound, or `advance`), in time order. Sliding minima and maxima use
monotonic deques (Lemire), so `always`, `eventually`, `once`, `historically` and `since` cost O(1)
amortised per sample at any window; bounded `until` uses a two-stack sliding aggregate, O(1) too.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from krystal.temporal.spec import (
    FUTURE,
    Atom,
    Binary,
    Const,
    Formula,
    Interval2,
    Not,
    Number,
    Signal,
    Temporal,
    _has_future,
    signals,
)

INF = math.inf
ZERO = 5e-324  # robustness of an atom at equality: +ZERO holds, -ZERO does not (math.ulp(0.0))
NS = int | float  # a time in integer nanoseconds; +-INF only as an open bound or "the end"
Imm = Callable[[int, Sequence[float]], float]
Emit = Callable[[int, float], None]
Bounds = tuple[int, float, float]  # (time, lower bound, upper bound) of a pending sample's robustness


class OnlineError(ValueError):
    """The formula cannot be monitored online with bounded memory (an unbounded future operator)."""


# ---- step functions: the past operators, one call per sample in time order -----------------------


def _prev(before: float) -> Callable[[int, float], float]:
    last = before  # +inf: weak previous (rtamt's prev); -inf: strong (Reelay's pre)

    def step(t: int, x: float) -> float:
        nonlocal last
        y, last = last, x
        return y

    return step


def _running(is_max: bool) -> Callable[[int, float], float]:
    acc = -INF if is_max else INF

    def step_max(t: int, x: float) -> float:
        nonlocal acc
        acc = max(acc, x)
        return acc

    def step_min(t: int, x: float) -> float:
        nonlocal acc
        acc = min(acc, x)
        return acc

    return step_max if is_max else step_min


def _past_window(lo: NS, hi: NS, is_max: bool) -> Callable[[int, float], float]:
    """once[lo:hi] (max) / historically[lo:hi] (min) over the samples with t - hi <= t_j <= t - lo."""
    if lo == 0 and hi == INF:
        return _running(is_max)
    pt: deque[int] = deque()  # samples younger than lo, not yet in the window
    pv: deque[float] = deque()
    wt: deque[int] = deque()  # monotonic deque: values decreasing (max) or increasing (min)
    wv: deque[float] = deque()
    empty = -INF if is_max else INF

    def admit(tj: int, xj: float) -> None:
        if is_max:
            while wv and wv[-1] <= xj:
                wv.pop()
                wt.pop()
        else:
            while wv and wv[-1] >= xj:
                wv.pop()
                wt.pop()
        wt.append(tj)
        wv.append(xj)

    def step(t: int, x: float) -> float:
        if lo == 0:
            admit(t, x)
        else:
            pt.append(t)
            pv.append(x)
            while pt and t - pt[0] >= lo:
                admit(pt.popleft(), pv.popleft())
        while wt and t - wt[0] > hi:
            wt.popleft()
            wv.popleft()
        return wv[0] if wv else empty

    return step


def _since(lo: NS, hi: NS) -> Callable[[int, float, float], float]:
    """left since[lo:hi] right: max over j with t - t_j in [lo, hi] of min(right_j, left on (j, t]).

    Admitted candidates sit in a deque of decreasing values; each new left value caps them all,
    which only merges the front ones, so every sample costs O(1) amortised.
    """
    if lo == 0 and hi == INF:
        z = -INF

        def recur(t: int, x: float, y: float) -> float:
            nonlocal z
            z = x if x < z else z
            z = max(z, y)
            return z

        return recur
    pt: deque[int] = deque()  # candidates younger than lo: (time, right value)
    pv: deque[float] = deque()
    ft: deque[int] = deque()  # left values after the oldest pending candidate, min-deque
    fv: deque[float] = deque()
    ct: deque[int] = deque()  # admitted candidates, values strictly decreasing
    cv: deque[float] = deque()

    def step(t: int, x: float, y: float) -> float:
        while len(cv) >= 2 and cv[1] >= x:
            ct.popleft()
            cv.popleft()
        if cv and cv[0] > x:
            cv[0] = x
        while fv and fv[-1] >= x:
            fv.pop()
            ft.pop()
        ft.append(t)
        fv.append(x)
        pt.append(t)
        pv.append(y)
        while pt and t - pt[0] >= lo:
            tj = pt.popleft()
            c = pv.popleft()
            while ft and ft[0] <= tj:
                ft.popleft()
                fv.popleft()
            if fv and fv[0] < c:
                c = fv[0]
            while cv and cv[-1] <= c:
                cv.pop()
                ct.pop()
            ct.append(tj)
            cv.append(c)
        while ct and t - ct[0] > hi:
            ct.popleft()
            cv.popleft()
        return cv[0] if cv else -INF

    return step


def _combine(op: str) -> Callable[[float, float], float]:
    if op == "and":
        return lambda a, b: a if a < b else b
    if op == "or":
        return lambda a, b: a if a > b else b
    return lambda a, b: -a if -a > b else b  # implies


def _combine_bounds(op: str, left: tuple[float, float], right: tuple[float, float]) -> tuple[float, float]:
    (llo, lhi), (rlo, rhi) = left, right
    if op == "and":
        return min(llo, rlo), min(lhi, rhi)
    if op == "or":
        return max(llo, rlo), max(lhi, rhi)
    return max(-lhi, rlo), max(-llo, rhi)


# ---- streaming stages: subformulas whose value at t needs samples after t ------------------------


class _Stage:
    children: list[_Stage]

    def advance(self, complete_s: NS) -> NS:
        """Leaves are complete up to `complete_s` (ns); returns up to when this stage's output is."""
        c = complete_s
        for child in self.children:
            c = min(c, child.advance(complete_s))
        return c

    def bounds(self) -> Bounds | None:
        return None


class _Step(_Stage):
    """A past operator or a negation over a streamed child."""

    def __init__(self, fn: Callable[[int, float], float], emit: Emit, negation: bool = False) -> None:
        self.fn, self.emit, self.negation, self.children = fn, emit, negation, []

    def push(self, t: int, x: float) -> None:
        self.emit(t, self.fn(t, x))

    def bounds(self) -> Bounds | None:
        if not self.negation or not self.children:
            return None
        b = self.children[0].bounds()
        return None if b is None else (b[0], -b[2], -b[1])


class _Pair(_Stage):
    """Pairs two children's outputs sample by sample; one side may be an immediate source."""

    def __init__(self, emit2: Callable[[int, float, float], None], op: str = "") -> None:
        self.emit2, self.op = emit2, op
        self.left: _Stage | None = None
        self.right: _Stage | None = None
        self.children = []
        self.lt: deque[int] = deque()
        self.lv: deque[float] = deque()
        self.rt: deque[int] = deque()
        self.rv: deque[float] = deque()

    def push_left(self, t: int, x: float) -> None:
        if self.rt:
            self.rt.popleft()
            self.emit2(t, x, self.rv.popleft())
        else:
            self.lt.append(t)
            self.lv.append(x)

    def push_right(self, t: int, y: float) -> None:
        if self.lt:
            self.lt.popleft()
            self.emit2(t, self.lv.popleft(), y)
        else:
            self.rt.append(t)
            self.rv.append(y)

    def bounds(self) -> Bounds | None:
        if self.op not in ("and", "or", "implies"):
            return None
        unknown = (-INF, INF)
        if self.lt:
            t, lb = self.lt[0], (self.lv[0], self.lv[0])
            rb = self._side(self.right, t) or unknown
        elif self.rt:
            t, rb = self.rt[0], (self.rv[0], self.rv[0])
            lb = self._side(self.left, t) or unknown
        else:
            lb2 = self.left.bounds() if self.left else None
            rb2 = self.right.bounds() if self.right else None
            if lb2 is None or rb2 is None or lb2[0] != rb2[0]:
                return None
            t, lb, rb = lb2[0], (lb2[1], lb2[2]), (rb2[1], rb2[2])
        lo, hi = _combine_bounds(self.op, lb, rb)
        return t, lo, hi

    @staticmethod
    def _side(stage: _Stage | None, t: int) -> tuple[float, float] | None:
        b = stage.bounds() if stage is not None else None
        return (b[1], b[2]) if b is not None and b[0] == t else None


class _Window(_Stage):
    """always[lo:hi] (min) / eventually[lo:hi] (max): a sample's value is final once t_p + hi has passed."""

    def __init__(self, lo: NS, hi: NS, is_max: bool, emit: Emit) -> None:
        self.lo_ns, self.hi_ns, self.is_max, self.emit = lo, hi, is_max, emit
        self.empty = -INF if is_max else INF
        self.children = []
        self.pt: deque[int] = deque()  # samples whose value is pending
        self.wt: deque[int] = deque()  # monotonic deque of the child's values
        self.wv: deque[float] = deque()

    def push(self, t: int, x: float) -> None:
        if self.pt and self.pt[0] + self.hi_ns < t:
            self._finalize(t, strict=True)
        self.pt.append(t)
        wv, wt = self.wv, self.wt
        if self.is_max:
            while wv and wv[-1] <= x:
                wv.pop()
                wt.pop()
        else:
            while wv and wv[-1] >= x:
                wv.pop()
                wt.pop()
        wt.append(t)
        wv.append(x)
        if self.pt[0] + self.hi_ns <= t:
            self._finalize(t, strict=False)

    def _finalize(self, c: NS, strict: bool) -> None:
        pt, wt, wv, lo, hi = self.pt, self.wt, self.wv, self.lo_ns, self.hi_ns
        while pt:
            p = pt[0]
            end = p + hi
            if end < c if strict else end <= c:
                start = p + lo
                while wt and wt[0] < start:
                    wt.popleft()
                    wv.popleft()
                pt.popleft()
                self.emit(p, wv[0] if wv and wt[0] <= end else self.empty)
            else:
                return

    def advance(self, complete_s: NS) -> NS:
        c = super().advance(complete_s)
        self._finalize(c, strict=False)
        return c - self.hi_ns if c < INF else INF

    def bounds(self) -> Bounds | None:
        if not self.pt:
            return None
        p = self.pt[0]
        start, end = p + self.lo_ns, p + self.hi_ns
        while self.wt and self.wt[0] < start:
            self.wt.popleft()
            self.wv.popleft()
        partial = self.wv[0] if self.wv and self.wt[0] <= end else self.empty
        if self.children:  # the child's own pending sample may already bound it
            b = self.children[0].bounds()
            if b is not None and b[0] <= end:
                partial = max(partial, b[1]) if self.is_max else min(partial, b[2])
        return (p, partial, INF) if self.is_max else (p, -INF, partial)


class _Until(_Stage):
    """left until[lo:hi] right: max over j with t_j - t in [lo, hi] of min(right_j, left on [t, t_j)).

    Split at t + lo: min(H, W), where H = min of left over [t, t + lo) (a monotonic min-deque) and
    W = max over j in [t + lo, t + hi] of min(right_j, left on [t + lo, t_j)). W is an associative
    aggregate of the samples in its window, (M, U) = (min left, until value), with
    (M1, U1) . (M2, U2) = (min(M1, M2), max(U1, min(M1, U2))); a two-stack queue keeps it over the
    sliding window (Tangwongsan et al., "Low-latency sliding-window aggregation in worst-case
    constant time", DEBS 2017, the amortised variant), so each sample costs O(1) amortised.
    """

    def __init__(self, lo: NS, hi: NS, emit: Emit) -> None:
        self.lo_ns, self.hi_ns, self.emit = lo, hi, emit
        self.children = []
        self.pt: deque[int] = deque()  # pending samples
        self.newest: NS = -INF  # samples and `advance` are complete up to here
        self.qt: deque[int] = deque()  # left values not yet admitted to H
        self.qv: deque[float] = deque()
        self.ht: deque[int] = deque()  # H: monotonic min-deque of left over [t, t + lo)
        self.hv: deque[float] = deque()
        self.bt: list[int] = []  # W's back stack: raw samples, and their running aggregate
        self.bl: list[float] = []
        self.br: list[float] = []
        self.bm, self.bu = INF, -INF
        self.ft: list[int] = []  # W's front stack, oldest last: suffix aggregates
        self.fm: list[float] = []
        self.fu: list[float] = []

    def push2(self, t: int, x: float, y: float) -> None:
        pt = self.pt
        if pt and pt[0] + self.hi_ns < t:
            self._finalize(t, strict=True)
        pt.append(t)
        self.newest = t
        if self.lo_ns:
            self.qt.append(t)
            self.qv.append(x)
        self.bt.append(t)
        self.bl.append(x)
        self.br.append(y)
        bm = self.bm
        u = y if y < bm else bm
        self.bu = max(self.bu, u)
        if x < bm:
            self.bm = x
        if pt[0] + self.hi_ns <= t:
            self._finalize(t, strict=False)

    def _query(self, p: int) -> tuple[float, float, float]:
        """(H, W's until value, W's min of left) for the oldest pending sample p."""
        start = p + self.lo_ns
        ft, fm, fu = self.ft, self.fm, self.fu
        while True:  # evict W's samples before start
            if not ft:
                if not self.bt:
                    break
                m, u = INF, -INF
                for t, x, y in zip(reversed(self.bt), reversed(self.bl), reversed(self.br), strict=True):
                    v = x if x < u else u
                    u = y if y > v else v
                    m = x if x < m else m
                    ft.append(t)
                    fm.append(m)
                    fu.append(u)
                self.bt, self.bl, self.br = [], [], []
                self.bm, self.bu = INF, -INF
            if ft[-1] >= start:
                break
            ft.pop()
            fm.pop()
            fu.pop()
        m1, u1 = (fm[-1], fu[-1]) if ft else (INF, -INF)
        bu = self.bu
        w = m1 if m1 < bu else bu
        w = u1 if u1 > w else w
        m = m1 if m1 < self.bm else self.bm
        h = INF
        if self.lo_ns:
            qt, qv, ht, hv = self.qt, self.qv, self.ht, self.hv
            while qt and qt[0] < start:
                tj, xj = qt.popleft(), qv.popleft()
                while hv and hv[-1] >= xj:
                    hv.pop()
                    ht.pop()
                ht.append(tj)
                hv.append(xj)
            while ht and ht[0] < p:
                ht.popleft()
                hv.popleft()
            if hv:
                h = hv[0]
        return h, w, m

    def _finalize(self, c: NS, strict: bool) -> None:
        pt, hi = self.pt, self.hi_ns
        while pt:
            p = pt[0]
            if not (p + hi < c if strict else p + hi <= c):
                return
            h, w, _ = self._query(p)
            pt.popleft()
            self.emit(p, h if h < w else w)

    def advance(self, complete_s: NS) -> NS:
        c = super().advance(complete_s)
        self.newest = max(self.newest, c)
        self._finalize(c, strict=False)
        return c - self.hi_ns if c < INF else INF

    def bounds(self) -> Bounds | None:
        """W only grows as its window fills, and a later j is capped by the left values so far."""
        if not self.pt:
            return None
        p = self.pt[0]
        h, w, m = self._query(p)
        lower = (h if h < w else w) if self.newest >= p + self.lo_ns else -INF
        upper = max(w, m)
        return p, lower, h if h < upper else upper


# ---- the compiler --------------------------------------------------------------------------------


def _operand(o: Signal | Number, slots: dict[str, int]) -> tuple[int, float]:
    return (slots[o.name], 0.0) if isinstance(o, Signal) else (-1, o.value)


def _atom(f: Atom, slots: dict[str, int]) -> Imm:
    """Robustness as rtamt's (`x < c`: c - x, `==`: -|x - y|), except exactly at equality, where it is
    +ZERO for `<=`, `>=`, `==` (they hold) and -ZERO for `<`, `>`, `!=` (they do not)."""
    li, lc = _operand(f.left, slots)
    ri, rc = _operand(f.right, slots)
    op = f.op
    if op in ("<", "<="):  # robustness right - left
        li, lc, ri, rc = ri, rc, li, lc
    z = ZERO if op in ("<=", ">=", "==") else -ZERO  # `d or z`: z when d is 0.0 or -0.0
    if op in ("<", "<=", ">", ">="):
        if li >= 0 and ri >= 0:
            return lambda t, v: v[li] - v[ri] or z
        if li >= 0:
            return lambda t, v: v[li] - rc or z
        if ri >= 0:
            return lambda t, v: lc - v[ri] or z
        k = lc - rc or z
        return lambda t, v: k
    sign = -1.0 if op == "==" else 1.0
    if li >= 0 and ri >= 0:
        return lambda t, v: sign * abs(v[li] - v[ri]) or z
    if li >= 0:
        return lambda t, v: sign * abs(v[li] - rc) or z
    if ri >= 0:
        return lambda t, v: sign * abs(lc - v[ri]) or z
    k = sign * abs(lc - rc) or z
    return lambda t, v: k


def _past_step(f: Temporal) -> Callable[[int, float], float]:
    if f.op in ("previous", "pre"):
        return _prev(INF if f.op == "previous" else -INF)
    return _past_window(f.lo_ns, f.hi_ns, f.op == "once")


def _imm(f: Formula, slots: dict[str, int]) -> Imm:
    """A closure for a subformula without future operators."""
    if isinstance(f, Atom):
        return _atom(f, slots)
    if isinstance(f, Const):
        k = INF if f.value else -INF
        return lambda t, v: k
    if isinstance(f, Not):
        g = _imm(f.child, slots)
        return lambda t, v: -g(t, v)
    if isinstance(f, Binary):
        g, h = _imm(f.left, slots), _imm(f.right, slots)
        if f.op == "and":

            def conj(t: int, v: Sequence[float]) -> float:
                a = g(t, v)
                b = h(t, v)
                return a if a < b else b

            return conj
        if f.op == "or":

            def disj(t: int, v: Sequence[float]) -> float:
                a = g(t, v)
                b = h(t, v)
                return a if a > b else b

            return disj

        def impl(t: int, v: Sequence[float]) -> float:
            a = -g(t, v)
            b = h(t, v)
            return a if a > b else b

        return impl
    if isinstance(f, Temporal):
        g = _imm(f.child, slots)
        s1 = _past_step(f)
        return lambda t, v: s1(t, g(t, v))
    g, h = _imm(f.left, slots), _imm(f.right, slots)
    s2 = _since(f.lo_ns, f.hi_ns)
    return lambda t, v: s2(t, g(t, v), h(t, v))


class _Builder:
    def __init__(self, slots: dict[str, int], online: bool) -> None:
        self.slots, self.online = slots, online
        self.sources: list[tuple[Imm, Emit]] = []

    def feed(self, f: Formula, push: Emit) -> _Stage | None:
        """Connect `f`'s output to `push`: a stage when `f` looks ahead, else an immediate source."""
        if _has_future(f):
            return self.build(f, push)
        self.sources.append((_imm(f, self.slots), push))
        return None

    def build(self, f: Formula, emit: Emit) -> _Stage:
        if isinstance(f, Not):
            neg = _Step(lambda t, x: -x, emit, negation=True)
            self._attach(neg, self.build(f.child, neg.push))
            return neg
        if isinstance(f, Temporal):
            if f.op in FUTURE:
                if self.online and f.hi_ns == INF:
                    raise OnlineError(f"unbounded {f.op} cannot be monitored online: give it a bound")
                w = _Window(f.lo_ns, f.hi_ns, f.op == "eventually", emit)
                self._attach(w, self.feed(f.child, w.push))
                return w
            st = _Step(_past_step(f), emit)
            self._attach(st, self.build(f.child, st.push))
            return st
        if isinstance(f, Binary):
            combine = _combine(f.op)
            pair = _Pair(lambda t, a, b: emit(t, combine(a, b)), f.op)
        elif isinstance(f, Interval2) and f.op == "until":
            if self.online and f.hi_ns == INF:
                raise OnlineError("unbounded until cannot be monitored online: give it a bound")
            until = _Until(f.lo_ns, f.hi_ns, emit)
            pair = _Pair(until.push2)
            self._attach(until, pair)
            pair.left = self.feed(f.left, pair.push_left)
            pair.right = self.feed(f.right, pair.push_right)
            pair.children = [s for s in (pair.left, pair.right) if s is not None]
            return until
        else:  # since over a streamed side
            assert isinstance(f, Interval2)
            s2 = _since(f.lo_ns, f.hi_ns)
            pair = _Pair(lambda t, a, b: emit(t, s2(t, a, b)))
        assert isinstance(f, Binary | Interval2)
        pair.left = self.feed(f.left, pair.push_left)
        pair.right = self.feed(f.right, pair.push_right)
        pair.children = [s for s in (pair.left, pair.right) if s is not None]
        return pair

    @staticmethod
    def _attach(stage: _Stage, child: _Stage | None) -> None:
        if child is not None:
            stage.children.append(child)


@dataclass(frozen=True)
class Early:
    """A verdict decided before the robustness is final: the bound already has its sign."""

    time_ns: int
    satisfied: bool
    bound: float  # robustness >= bound when satisfied, <= bound when violated


class Monitor:
    """Robustness of one formula at every sample, online, with bounded memory.

    `update(t, values)` takes one sample (values in `signal_names` order, held between messages);
    outputs arrive in time order through `on_output(t, robustness)`, at once for past-time formulas,
    for others as soon as the window has closed. Online, a top-level unbounded `always` is the
    formula checked at every sample; other unbounded future operators are refused (OnlineError).
    """

    def __init__(
        self,
        formula: Formula,
        signal_names: Sequence[str] | None = None,
        on_output: Emit | None = None,
        online: bool = True,
    ) -> None:
        self.signal_names = (
            list(signal_names) if signal_names is not None else [s.name for s in signals(formula)]
        )
        slots = {name: i for i, name in enumerate(self.signal_names)}
        missing = [s.name for s in signals(formula) if s.name not in slots]
        if missing:
            raise ValueError(f"no value for signal(s) {', '.join(missing)}")
        self.every_sample = False
        if (
            online
            and isinstance(formula, Temporal)
            and formula.op == "always"
            and formula.lo_ns == 0
            and formula.hi_ns == INF
        ):
            formula, self.every_sample = formula.child, True
        self.formula = formula
        self.on_output = on_output
        self.last_t = -INF  # newest sample accepted
        self.late = 0  # samples refused: stamp not after the newest one
        self.last_output: tuple[float, float] | None = None
        builder = _Builder(slots, online)
        self._root: _Stage | None = None
        self._imm: Imm | None = None
        if _has_future(formula):
            self._root = builder.build(formula, self._emit)
            self._sources = tuple(builder.sources)
        else:
            self._imm = _imm(formula, slots)
            self._sources = ()

    def _emit(self, t: int, rho: float) -> None:
        self.last_output = (t, rho)
        if self.on_output is not None:
            self.on_output(t, rho)

    def update(self, t: int, values: Sequence[float]) -> bool:
        """Feed one sample stamped `t` (int ns); False (and counted) when not after the newest one."""
        if t <= self.last_t:
            self.late += 1
            return False
        self.last_t = t
        if self._imm is not None:
            rho = self._imm(t, values)
            self.last_output = (t, rho)
            if self.on_output is not None:
                self.on_output(t, rho)
            return True
        for fn, push in self._sources:
            push(t, fn(t, values))
        return True

    def advance(self, t: int) -> None:
        """No sample stamped at or before `t` (ns) will come: decide every window that has closed by then."""
        if self._root is None:
            return
        self.last_t = max(self.last_t, t)
        self._root.advance(t)

    def finish(self) -> None:
        """End of the trace: decide everything still pending (windows truncated at the end)."""
        if self._root is not None:
            self._root.advance(INF)

    def early(self) -> Early | None:
        """The oldest pending sample's verdict when its bounds already decide it, else None."""
        if self._root is None:
            return None
        b = self._root.bounds()
        if b is None:
            return None
        t, lo, hi = b
        if hi < 0:
            return Early(t, False, hi)
        if lo > 0:
            return Early(t, True, lo)
        return None


def to_ns(seconds: float) -> int:
    """Seconds as integer nanoseconds, rounded: exact for stamps on a ns grid up to about 4e6 s;
    ROS stamps (sec, nanosec) should be converted as sec * 10**9 + nanosec instead."""
    return round(seconds * 1e9)


def evaluate(formula: Formula, times_ns: Sequence[int], columns: dict[str, Sequence[float]]) -> list[float]:
    """Robustness at every sample of a finished trace (stamps in int ns; offline: unbounded operators
    allowed)."""
    out: list[float] = []
    names = list(columns)
    mon = Monitor(formula, names, on_output=lambda t, r: out.append(r), online=False)
    cols = [columns[n] for n in names]
    for i, t in enumerate(times_ns):
        mon.update(int(t), [float(c[i]) for c in cols])
    mon.finish()
    return out
