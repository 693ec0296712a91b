"""The monitor on the stamps ROS produces: integer-nanosecond windows against rtamt (discrete time,
all operators) and Reelay (past time) over non-integer sample periods and ROS-sized stamps, at every
sample; the rule at robustness 0; `until` early and at flat cost."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from krystal.temporal.monitor import ZERO, Monitor, OnlineError, evaluate, to_ns
from krystal.temporal.spec import parse
from krystal.temporal.watch import SATISFIED, VIOLATED, SpecWatch, check_trace, parse_spec_line, stamp_ns

ROS_T0 = 1_700_000_000 * 10**9  # a ROS-sized stamp (2023), in ns

# (sample period in ns, our bound text for k periods, rtamt's bound text, rtamt's period and unit)
GRIDS: dict[str, tuple[int, Callable[[int], str], Callable[[int], str], tuple[int, str]]] = {
    "10ms": (10_000_000, lambda k: f"{10 * k}ms", lambda k: f"{10 * k}ms", (10, "ms")),
    "33.3ms": (
        33_300_000,
        lambda k: f"{Decimal('33.3') * k}ms",  # 99.9ms, 133.2ms: decimal text, exact in ns
        lambda k: f"{33300 * k}us",  # rtamt converts bounds through Fraction(float): give it integers
        (33300, "us"),
    ),
    "1ms": (1_000_000, lambda k: f"{k / 1000}s", lambda k: f"{k}ms", (1, "ms")),
}


def _gen(
    rng: random.Random,
    depth: int,
    past_only: bool,
    ours_b: Callable[[int], str],
    theirs_b: Callable[[int], str],
) -> tuple[str, str]:
    """(our text, the anchor's text) of a random formula over a.x, a.y; bounds of whole periods."""
    if depth == 0 or rng.random() < 0.25:
        v = rng.choice("xy")
        op = rng.choice(["<", ">"] if past_only else ["<", ">", "<=", ">="])
        c = f"{rng.uniform(-1, 1):.3f}"
        if not past_only and rng.random() < 0.3:
            w = "y" if v == "x" else "x"
            return f"(a.{v} {op} a.{w})", f"({v} {op} {w})"
        return f"(a.{v} {op} {c})", ("{" + f"{v} {op} {c}" + "}") if past_only else f"({v} {op} {c})"
    kinds = ["not", "and", "or", "implies", "H", "O", "S", "Hu", "Ou", "Su", "P"]
    if not past_only:
        kinds += ["G", "F", "U", "U", "U", "Gu", "Fu", "Uu"]
    k = rng.choice(kinds)
    a = rng.randint(0, 4)
    b = a + rng.randint(0, 6)
    if past_only:
        b = max(b, 1)  # Reelay reads [a:0] as unbounded
    names = {"G": "always", "F": "eventually", "H": "historically", "O": "once"}
    one = lambda: _gen(rng, depth - 1, past_only, ours_b, theirs_b)  # noqa: E731
    ours_iv = f"[{ours_b(a)}:{ours_b(b)}]"
    theirs_iv = f"[{a}:{b}]" if past_only else f"[{theirs_b(a)}:{theirs_b(b)}]"
    if k == "not":
        o, r = one()
        return f"(not {o})", f"(not {r})"
    if k in ("and", "or", "implies"):
        (o1, r1), (o2, r2) = one(), one()
        return f"({o1} {k} {o2})", f"({r1} {k if past_only or k != 'implies' else '->'} {r2})"
    if k in names:
        o, r = one()
        return f"({names[k]}{ours_iv} {o})", f"({names[k]}{theirs_iv} {r})"
    if k[0] in names:
        o, r = one()
        return f"({names[k[0]]} {o})", f"({names[k[0]]} {r})"
    if k == "P":
        o, r = one()
        return (f"(pre {o})", f"(pre {r})") if past_only else (f"(prev {o})", f"(prev {r})")
    (o1, r1), (o2, r2) = one(), one()
    op = {"S": "since", "U": "until", "Su": "since", "Uu": "until"}[k]
    bounded = len(k) == 1
    return (
        f"({o1} {op}{ours_iv if bounded else ''} {o2})",
        f"({r1} {op}{theirs_iv if bounded else ''} {r2})",
    )


def rtamt_robustness(
    text: str, xs: list[float], ys: list[float], period: tuple[int, str] = (1, "s")
) -> list[float]:
    """rtamt's discrete-time offline robustness of `text` over x, y at every sample."""
    import rtamt

    spec = rtamt.StlDiscreteTimeSpecification()
    spec.declare_var("x", "float")
    spec.declare_var("y", "float")
    spec.set_sampling_period(period[0], period[1], 0.1)
    spec.spec = text
    spec.parse()
    times_s = [i * rtamt_period_s(period) for i in range(len(xs))]
    return [r for _, r in spec.evaluate({"time": times_s, "x": xs, "y": ys})]


def rtamt_period_s(period: tuple[int, str]) -> float:
    return period[0] * {"s": 1.0, "ms": 1e-3, "us": 1e-6}[period[1]]


def _stamps(rng: random.Random, n: int, period_ns: int) -> list[int]:
    t0 = ROS_T0 + rng.randrange(10**9)
    return [t0 + i * period_ns for i in range(n)]


@pytest.mark.parametrize("grid", list(GRIDS))
def test_robustness_equals_rtamt_on_real_periods_and_ros_stamps(grid: str) -> None:
    period_ns, ours_b, theirs_b, period = GRIDS[grid]
    rng = random.Random(len(grid) + 3)
    specs = samples = online_checked = 0
    for _ in range(60):
        ours, theirs = _gen(rng, 3, False, ours_b, theirs_b)
        n = rng.randint(2, 40)
        xs = [rng.uniform(-1, 1) for _ in range(n)]
        ys = [rng.uniform(-1, 1) for _ in range(n)]
        ref = rtamt_robustness(theirs, xs, ys, period)
        stamps = _stamps(rng, n, period_ns)
        got = evaluate(parse(ours), stamps, {"a.x": xs, "a.y": ys})
        assert len(got) == len(ref)
        for i, (g, r) in enumerate(zip(got, ref, strict=True)):
            assert g == r or abs(g - r) <= 1e-9, (ours, theirs, i, got, ref)
        try:  # online, where the spec is bounded: the same values, in order
            out: list[float] = []
            mon = Monitor(parse(ours), ["a.x", "a.y"], on_output=lambda t, r, out=out: out.append(r))
        except OnlineError:
            pass
        else:
            for t, x, y in zip(stamps, xs, ys, strict=True):
                mon.update(t, [x, y])
            mon.finish()
            # (a top-level unbounded `always` is, online, its body checked at every sample)
            assert out == got or mon.every_sample, ours
            online_checked += not mon.every_sample
        specs += 1
        samples += n
    assert specs == 60 and online_checked > 20


@pytest.mark.parametrize("grid", ["10ms", "33.3ms"])
def test_verdicts_equal_reelay_on_real_periods_and_ros_stamps(grid: str) -> None:
    import reelay

    period_ns, ours_b, theirs_b, _ = GRIDS[grid]
    rng = random.Random(len(grid) + 17)
    for _ in range(40):  # Reelay compiles each spec: about 0.1 s each
        ours, theirs = _gen(rng, 3, True, ours_b, theirs_b)
        n = rng.randint(2, 40)
        xs = [rng.uniform(-1, 1) for _ in range(n)]
        ys = [rng.uniform(-1, 1) for _ in range(n)]
        mon = reelay.discrete_timed_monitor(pattern=theirs, semantics="boolean", condense=False)
        ref = [bool(mon.update({"x": xs[i], "y": ys[i]})["value"]) for i in range(n)]
        stamps = _stamps(rng, n, period_ns)
        got = [r > 0 for r in evaluate(parse(ours), stamps, {"a.x": xs, "a.y": ys})]
        assert got == ref, (ours, theirs)


def test_the_issue_example_on_a_10ms_grid() -> None:
    x = [1.0] * 20
    x[7] = -1.0
    for t0 in (0, ROS_T0 + 123_456_789):
        stamps = [t0 + i * 10_000_000 for i in range(20)]
        got = evaluate(parse("always[50ms:60ms] (a.x > 0)"), stamps, {"a.x": x})
        assert got[0] == 1.0 and got[1] == -1.0 and got[2] == -1.0 and got[3] == 1.0
        r = check_trace(parse("always[50ms:60ms] (a.x > 0)"), ["a.x"], stamps, [[v] for v in x])
        assert r.first_violation_ns == t0 + 10_000_000
    # float seconds on a 10 ms grid are rounded to the ns they stand for
    assert [to_ns(i * 0.01) for i in range(1000)] == [i * 10_000_000 for i in range(1000)]


def test_header_stamps_are_integer_nanoseconds() -> None:
    class Stamp:
        sec, nanosec = 1_700_000_000, 10_000_001

    class Header:
        stamp = Stamp()

    class Msg:
        header = Header()
        x = 2.0

    assert stamp_ns(Msg()) == 1_700_000_000_010_000_001  # float seconds would round this by ~100 ns
    w = SpecWatch(parse_spec_line("s: once[1ns:1ns] (a.x > 1)"), keep_history=True)
    w.on_message("a", 1_700_000_000_010_000_001, Msg())
    w.on_message("a", 1_700_000_000_010_000_002, Msg())
    assert w.history is not None and [r > 0 for _, r in w.history] == [False, True]


# ---- robustness 0 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "holds"), [("<=", True), (">=", True), ("==", True), ("<", False), (">", False), ("!=", False)]
)
def test_equality_rule(op: str, holds: bool) -> None:
    """At equality non-strict comparisons and `==` hold, strict ones and `!=` do not; negation, min,
    max and windows keep the sign, so the verdict follows through every operator."""
    stamps = [i * 10**9 for i in range(3)]
    for value in (1.0, 0.0, -3.0):  # ints, bools (0/1) and enums are held as exact floats
        f = f"(a.x {op} {value!r})"
        cases = {
            f: holds,
            f"not {f}": not holds,
            f"always {f}": holds,
            f"historically[0:1] {f}": holds,
            f"eventually[0:1] {f}": holds,
            f"{f} and (a.x > -10)": holds,
            f"{f} or (a.x < -10)": holds,
            f"(a.x > -10) until[0:1] {f}": holds,
            f"(a.x > -10) since[0:1] {f}": holds,
            f"{f} and not {f}": False,
            f"{f} or not {f}": True,
        }
        for text, want in cases.items():
            rho = evaluate(parse(text), stamps, {"a.x": [value] * 3})
            assert all((r > 0) == want for r in rho), (text, rho)
    rho = evaluate(parse("(a.x == a.y)"), stamps, {"a.x": [2.0] * 3, "a.y": [2.0] * 3})
    assert rho == [ZERO] * 3
    r = check_trace(parse("always (a.x == 1)"), ["a.x"], stamps, [[1.0]] * 3)
    assert r.verdict == SATISFIED and "robustness 0" in r.message
    r = check_trace(parse("always (a.x < 1)"), ["a.x"], stamps, [[1.0]] * 3)
    assert r.verdict == VIOLATED and "robustness -0" in r.message
    # the docs' example: `onset == 1` can hold
    r = check_trace(
        parse("historically[0:1s](a.u < 0.9) since[0:200ms] (a.onset == 1)"),
        ["a.u", "a.onset"],
        [0, 100_000_000, 200_000_000],
        [[0.5, 1.0], [0.5, 0.0], [0.5, 0.0]],
    )
    assert r.verdict == SATISFIED and r.first_violation_ns is None


# ---- until ---------------------------------------------------------------------------------------


def test_until_is_decided_as_soon_as_it_can_be() -> None:
    s = 10**9
    sat = Monitor(parse("(a.x > 0) until[0:3s] (a.y > 0)"), ["a.x", "a.y"])
    sat.update(0, [1.0, -1.0])
    sat.update(s, [1.0, -1.0])
    assert sat.early() is None
    sat.update(3 * s // 2, [1.0, 1.0])  # y holds at 1.5 s, x held until then: satisfied
    e = sat.early()
    assert e is not None and e.time_ns == 0 and e.satisfied and e.bound == 1.0
    vio = Monitor(parse("(a.x > 0) until[1s:3s] (a.y > 0)"), ["a.x", "a.y"])
    vio.update(0, [1.0, -1.0])
    vio.update(s // 2, [-2.0, -1.0])  # x fails before y could count: violated at 0.5 s
    e = vio.early()
    assert e is not None and e.time_ns == 0 and not e.satisfied
    # not before: y true inside [0, 1s) does not count for [1s:3s]
    late = Monitor(parse("(a.x > 0) until[1s:3s] (a.y > 0)"), ["a.x", "a.y"])
    late.update(0, [1.0, 1.0])
    late.update(s // 2, [1.0, 1.0])
    assert late.early() is None
    late.update(s, [1.0, 1.0])
    e = late.early()
    assert e is not None and e.satisfied


def _until_cost(window: int, n: int) -> float:
    """CPU seconds per sample of `until` over n samples on a 10 ms grid (the ordinary case: left true,
    right mostly false, so the old scan could not stop early)."""
    f = parse(f"(a.x > -2) until[0:{window * 10}ms] (a.y > 0.99)")
    rng = random.Random(1)
    xs = [rng.uniform(-1, 1) for _ in range(n)]
    ys = [rng.uniform(-1, 1) for _ in range(n)]
    best = math.inf
    for _ in range(3):
        mon = Monitor(f, ["a.x", "a.y"], on_output=lambda t, r: None)
        start = time.process_time()
        for i in range(n):
            mon.update(ROS_T0 + i * 10_000_000, [xs[i], ys[i]])
        best = min(best, time.process_time() - start)
    return best / n


def test_until_costs_the_same_at_any_window() -> None:
    small, large = _until_cost(10, 6000), _until_cost(3000, 6000)
    assert large < 3.0 * small, (small, large)  # the window scan was about 12x here at 3000
