"""temporal cores against the anchors: rtamt (robustness), Reelay (past-time verdicts),
dtaidistance (DTW), the logistic map (Lyapunov); hypothesis for identities and fuzz."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from krystal.temporal import chaos, dtw
from krystal.temporal.monitor import Monitor, OnlineError, evaluate, to_ns
from krystal.temporal.spec import SpecError, parse, to_text
from krystal.temporal.watch import (
    SATISFIED,
    VIOLATED,
    SpecWatch,
    check_trace,
    parse_spec_file,
    parse_spec_line,
)
from tests.test_temporal_exact import _gen as gen_formula
from tests.test_temporal_exact import rtamt_robustness


def test_parse_errors_point_at_line_and_column() -> None:
    with pytest.raises(SpecError) as e:
        parse("always[0:5s](thermal/state.max_temperature_c <\n  < 85)")
    assert (e.value.line, e.value.column) == (2, 3)
    with pytest.raises(SpecError, match="line 1, column 11: unknown time unit"):
        parse("always[0:5x](a.b < 1)")
    with pytest.raises(SpecError, match="needs a field"):
        parse("thermal/state < 3")
    with pytest.raises(SpecError, match="empty"):
        parse("once[2:1] a.b > 0")
    with pytest.raises(ValueError, match="line 3"):
        parse_spec_file("# comment\nok: a.b > 1\nbad: a.b >")
    # the column counts in the config entry and in the file line, not in the formula after "name:"
    with pytest.raises(SpecError, match="line 1, column 28: expected a signal"):
        parse_spec_line("bad: always[0:1s] (a/b.c < )")
    with pytest.raises(SpecError) as e:
        parse_spec_file("# c\n\nok: a/b.c < 1\n  bad: always[0:1s] (a/b.c < )\n")
    assert (e.value.line, e.value.column) == (4, 30)


def test_units_fields_and_roundtrip() -> None:
    f = parse("historically[0:10s](gpu/telemetry.utilization_ratio < 0.9) since[0:200ms] (a/b.c[2].d == 1)")
    assert f.lo_ns == 0 and f.hi_ns == 200_000_000  # type: ignore[union-attr]
    assert parse(to_text(f)) == f


def _gen(rng: random.Random, depth: int, past_only: bool) -> tuple[str, str]:
    """A random formula with bounds in whole seconds (1 s sampling), ours and the anchor's text."""
    return gen_formula(rng, depth, past_only, str, str)


def test_robustness_equals_rtamt_discrete_offline() -> None:
    rng = random.Random(7)
    for _ in range(150):
        ours, theirs = _gen(rng, 3, past_only=False)
        n = rng.randint(2, 25)
        xs = [rng.uniform(-1, 1) for _ in range(n)]
        ys = [rng.uniform(-1, 1) for _ in range(n)]
        ref = rtamt_robustness(theirs, xs, ys)
        got = evaluate(parse(ours), [i * 10**9 for i in range(n)], {"a.x": xs, "a.y": ys})
        assert len(got) == len(ref)
        for g, r in zip(got, ref, strict=False):
            assert g == r or abs(g - r) <= 1e-9, (ours, got, ref)


def test_verdicts_equal_reelay_on_past_time() -> None:
    import reelay

    rng = random.Random(11)
    for _ in range(60):
        ours, theirs = _gen(rng, 3, past_only=True)
        n = rng.randint(2, 25)
        xs = [rng.uniform(-1, 1) for _ in range(n)]
        ys = [rng.uniform(-1, 1) for _ in range(n)]
        mon = reelay.discrete_timed_monitor(pattern=theirs, semantics="boolean", condense=False)
        ref = [bool(mon.update({"x": xs[i], "y": ys[i]})["value"]) for i in range(n)]
        got = [r > 0 for r in evaluate(parse(ours), [i * 10**9 for i in range(n)], {"a.x": xs, "a.y": ys})]
        assert got == ref, (ours, theirs)


traces = st.integers(2, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.01, 2.0), min_size=n, max_size=n),
        st.lists(st.floats(-5, 5), min_size=n, max_size=n),
        st.lists(st.floats(-5, 5), min_size=n, max_size=n),
    )
)
bounds = st.tuples(st.floats(0, 3), st.floats(0, 3)).map(lambda ab: (min(ab), max(ab)))


def _eval(text: str, trace: tuple[list[float], list[float], list[float]]) -> list[float]:
    gaps, xs, ys = trace
    times = [to_ns(t) for t in np.cumsum(gaps)]
    return evaluate(parse(text), times, {"a.x": xs, "a.y": ys})


@settings(max_examples=25, deadline=None)
@given(traces, bounds)
def test_operator_identities(
    trace: tuple[list[float], list[float], list[float]], ab: tuple[float, float]
) -> None:
    a, b = ab
    iv = f"[{a!r}:{b!r}]"
    pairs = [
        (f"eventually{iv} (a.x > 0)", f"not always{iv} not (a.x > 0)"),
        (f"once{iv} (a.x > 0)", f"not historically{iv} not (a.x > 0)"),
        (f"true until{iv} (a.y < 1)", f"eventually{iv} (a.y < 1)"),
        (f"true since{iv} (a.y < 1)", f"once{iv} (a.y < 1)"),
        ("(a.x > 0) -> (a.y > 0)", "not (a.x > 0) or (a.y > 0)"),
        ("not ((a.x > 0) and (a.y > 0))", "not (a.x > 0) or not (a.y > 0)"),
        (f"always{iv} ((a.x > 0) and (a.y > 1))", f"always{iv} (a.x > 0) and always{iv} (a.y > 1)"),
    ]
    for left, right in pairs:
        assert _eval(left, trace) == _eval(right, trace), (left, right)


@settings(max_examples=30, deadline=None)
@given(traces, bounds, st.sampled_from(["always", "eventually", "until", "since", "once"]))
def test_online_equals_offline_and_early_verdicts_are_sound(
    trace: tuple[list[float], list[float], list[float]], ab: tuple[float, float], op: str
) -> None:
    a, b = ab
    text = {
        "until": f"(a.x < 2) until[{a!r}:{b!r}] (a.y > 1)",
        "since": f"(a.x < 2) since[{a!r}:{b!r}] (a.y > 1)",
    }.get(op, f"(a.x > 1) -> {op}[{a!r}:{b!r}] (a.y > 0)")
    gaps, xs, ys = trace
    times = [to_ns(t) for t in np.cumsum(gaps)]
    offline = evaluate(parse(text), times, {"a.x": xs, "a.y": ys})
    out: list[tuple[int, int, int]] = []  # (sample time, robustness, stamp of the newest sample)
    newest = [0]
    mon = Monitor(parse(text), ["a.x", "a.y"], on_output=lambda t, r: out.append((t, r, newest[0])))
    early: dict[int, bool] = {}
    for t, x, y in zip(times, xs, ys, strict=False):
        newest[0] = t
        mon.update(t, [x, y])
        e = mon.early()
        if e is not None:
            early[e.time_ns] = e.satisfied
    decided = len(out)
    mon.finish()
    assert [r for _, r, _ in out] == offline
    for t, r, seen in out[:decided]:
        assert seen >= t + (to_ns(b) if op != "since" else 0) or seen == t  # never before its window closed
        if t in early:
            assert early[t] == (r > 0)  # an early verdict is never contradicted


def test_bounded_future_decided_at_the_bound_and_not_before() -> None:
    out: list[tuple[float, float]] = []
    mon = Monitor(
        parse("(a.x > 1) -> eventually[0:1s](a.y < 0)"),
        ["a.x", "a.y"],
        on_output=lambda t, r: out.append((t, r)),
    )
    mon.update(0, [2.0, 1.0])  # trigger, no reaction yet
    mon.update(500_000_000, [0.0, 1.0])
    assert out == [] and mon.early() is None  # undecided: never premature
    mon.advance(999_999_999)
    assert out == []
    mon.advance(10**9)  # the bound has passed without a reaction: violated, at the bound
    assert out[0][0] == 0 and out[0][1] < 0
    mon2 = Monitor(parse("(a.x > 1) -> eventually[0:1s](a.y < 0)"), ["a.x", "a.y"])
    mon2.update(0, [2.0, 1.0])
    mon2.update(300_000_000, [0.0, -1.0])  # the reaction: satisfied at once, before the bound
    e = mon2.early()
    assert e is not None and e.time_ns == 0 and e.satisfied
    with pytest.raises(OnlineError):
        Monitor(parse("eventually (a.x > 1)"), ["a.x"])
    assert not Monitor(parse("always (a.x > 1)"), ["a.x"]).late  # root always: checked at every sample


def test_late_samples_are_dropped_and_counted() -> None:
    w = SpecWatch(parse_spec_line("s: historically[0:1](a.x < 5)"))

    class Msg:
        x = 1.0

    assert w.on_message("a", 10**9, Msg())
    assert not w.on_message("a", 5 * 10**8, Msg())
    assert not w.on_message("a", 10**9, Msg())
    assert w.late == 2 and w.decided == 1 and w.last is not None and w.last.verdict == SATISFIED


def test_check_trace() -> None:
    r = check_trace(parse("always (a.x < 3)"), ["a.x"], [0, 10**9, 2 * 10**9], [[1.0], [4.0], [2.0]])
    assert r.ok and r.verdict == VIOLATED and r.first_violation_ns == 0 and r.robustness == -1.0
    r = check_trace(parse("always (a.x < 3)"), ["a.x"], [0, 0], [[1.0], [1.0]])
    assert not r.ok


def test_dtw_equals_dtaidistance() -> None:
    from dtaidistance import dtw as dd
    from dtaidistance.subsequence.dtw import subsequence_alignment

    rng = np.random.default_rng(3)
    for _ in range(30):
        a = rng.normal(size=int(rng.integers(2, 60)))
        b = rng.normal(size=int(rng.integers(2, 60)))
        w = int(rng.integers(1, 20))
        assert dtw.distance(a, b, w) == pytest.approx(dd.distance(a, b, window=w), rel=1e-12, abs=1e-12)
        assert dtw.distance(a, b) == pytest.approx(dd.distance(a, b), rel=1e-12, abs=1e-12)
    q, x = rng.normal(size=20), rng.normal(size=500)
    sa = subsequence_alignment(q, x, penalty=0.0)
    np.testing.assert_allclose(dtw.matching_function(q, x), sa.matching_function() * len(q), rtol=1e-9)
    best = dtw.search(q, x, normalize=False)
    assert best.distance == pytest.approx(sa.best_match().distance, rel=1e-9)
    assert (best.start, best.end) == tuple(int(i) for i in sa.best_match().segment)


def test_spring_streaming_equals_batch_and_finds_the_pattern() -> None:
    rng = np.random.default_rng(5)
    q = np.sin(np.linspace(0, 2 * np.pi, 30))
    x = rng.normal(scale=0.3, size=400)
    x[200:230] += 3 * q
    mf = dtw.matching_function(q, x)
    sp = dtw.Spring(q, threshold=0.0)  # reports nothing, so no column is reset
    dists = []
    for v in x:
        sp.push(float(v))
        dists.append(sp.distance)
    np.testing.assert_allclose(dists, mf, rtol=1e-9)
    z = dtw.Spring(3 * q, threshold=3.0, band=5)
    found = [m for m in (z.push(float(v)) for v in np.concatenate([x, np.zeros(40)])) if m is not None]
    assert [(m.start, m.end) for m in found] == [(201, 230)]
    # a block per call reports the same matches; a missing (NaN) sample changes nothing
    block = dtw.Spring(3 * q, threshold=3.0, band=5)
    assert block.extend(np.concatenate([x, np.zeros(40)])) == found
    gappy = dtw.Spring(3 * q, threshold=3.0, band=5)
    with_gaps = np.insert(np.concatenate([x, np.zeros(40)]), [50, 215, 300], math.nan)
    assert gappy.extend(with_gaps) == found and gappy.t == len(x) + 39


def test_spring_equals_dtaidistance_per_sample() -> None:
    """The streaming column equals dtaidistance's subsequence matching function at every sample."""
    from dtaidistance.subsequence.dtw import subsequence_alignment

    rng = np.random.default_rng(11)
    for m, n in ((100, 600), (7, 300), (1, 50)):
        q, x = rng.normal(size=m), rng.normal(size=n)
        theirs = subsequence_alignment(q, x, penalty=0.0).matching_function() * m
        sp = dtw.Spring(q, threshold=0.0)
        ours = []
        for v in x:
            sp.push(float(v))
            ours.append(sp.distance)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_window_matcher_equals_dtaidistance_and_finds_shapes_at_any_scale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each window's z-normalised banded DTW distance equals dtaidistance's; a shape recurring at
    another offset and scale is one match, at its place; the Python kernel gives the same."""
    from dtaidistance import dtw as dd

    rng = np.random.default_rng(12)
    for m, band in ((40, 10), (9, None), (30, 0), (25, 3)):
        q, x = rng.normal(size=m), rng.normal(size=200)
        x[50 : 50 + m] = 2.0 * q  # an exact recurrence: distance 0, not abandoned
        got = dtw.window_distances(q, x, band)
        assert np.all(np.isinf(got[: m - 1]))
        want = [
            dd.distance(dtw.znorm(q), dtw.znorm(x[k - m + 1 : k + 1]), window=m if band is None else band + 1)
            for k in range(m - 1, len(x))
        ]
        np.testing.assert_allclose(got[m - 1 :], want, rtol=1e-12, atol=1e-12)
    q = np.concatenate([np.linspace(0, 1, 20), np.ones(10), np.linspace(1, -1, 10)])
    x = rng.normal(scale=0.05, size=300) + 5.0
    x[100:140] = 5.0 + 40.0 * q  # the same shape, another offset and scale
    x[220:260] = -3.0 + 0.5 * q[::-1]  # reversed: no match
    wm = dtw.WindowMatcher(q, threshold=1.5, band=5)
    found = [m for m in (wm.push(float(v)) for v in x) if m is not None]
    assert [(m.start, m.end) for m in found] == [(100, 139)] and found[0].distance < 0.1
    gappy = dtw.WindowMatcher(q, threshold=1.5, band=5)
    assert gappy.extend(np.insert(x, [10, 120], math.nan)) == [dtw.Match(100, 139, found[0].distance)]
    assert gappy.t == len(x) - 1
    monkeypatch.setattr(dtw, "_window_push", None)
    slow = dtw.WindowMatcher(q, threshold=1.5, band=5)
    assert slow.extend(x) == found


def _logistic(n: int, x0: float = 0.1234) -> np.ndarray:
    x = np.empty(n)
    x[0] = x0
    for i in range(1, n):
        x[i] = 4 * x[i - 1] * (1 - x[i - 1])
    return x


def test_lyapunov_logistic_periodic_and_noise() -> None:
    lam = chaos.lyapunov_r(_logistic(2000)).exponent_per_sample
    assert abs(lam - math.log(2)) <= 0.01
    verdict = chaos.chaos_test(_logistic(2000))
    assert verdict.chaotic
    periodic = np.sin(np.arange(2000) * 2 * np.pi / 37)
    assert chaos.lyapunov_r(periodic).exponent_per_sample <= 0.02
    assert not chaos.chaos_test(periodic).chaotic
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ar = np.zeros(2000)
        e = rng.normal(size=2000)
        for i in range(1, 2000):
            ar[i] = 0.7 * ar[i - 1] + e[i]
        v = chaos.chaos_test(ar, seed=seed)
        assert not v.chaotic, v.reason


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*"ab./_[]0123456789 :<>=!-&|()\n", "always", "since", "not", "eventually", "inf", "ms"]
        ),
        max_size=40,
    ).map("".join)
)
def test_fuzz_spec_text(text: str) -> None:
    try:
        f = parse(text)
    except SpecError as exc:
        assert exc.line >= 1 and exc.column >= 1
        return
    assert parse(to_text(f)) == f


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e3, 1e3),
            st.one_of(st.floats(allow_nan=True), st.booleans(), st.integers(-5, 5), st.text(max_size=3)),
            st.integers(0, 3),
        ),
        max_size=30,
    )
)
def test_fuzz_messages(samples: list[tuple[float, object, int]]) -> None:
    from krystal.msg import ThermalState

    w = SpecWatch(
        parse_spec_line(
            "s: (thermal/state.max_temperature_c > 50)"
            " -> eventually[0:1](thermal/state.temperatures_c[1] < 40)"
        )
    )
    for ts, value, length in samples:
        t = to_ns(ts)
        msg = ThermalState()
        if isinstance(value, float):
            msg.max_temperature_c = value
        msg.temperatures_c = [float(i) for i in range(length)]
        w.on_message("thermal/state", t, msg)

        class Odd:
            max_temperature_c = value
            temperatures_c = [value] * length

        w.on_message("thermal/state", t + 500_000_000, Odd())
    w.advance(2**62)


def test_dtw_numpy_path_equals_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    q, x = rng.normal(size=25), rng.normal(size=300)
    x[100:125] += 4 * q
    compiled = dtw.matching_function(q, x)
    pairs = [(q, x[:40], None), (q, x[:40], 5), (x[:60], q, 3), (q, q[::-1], 1)]
    compiled_distances = [dtw.distance(a, b, window=w) for a, b, w in pairs]
    data = [*x, *np.zeros(30)]
    s1 = dtw.Spring(q, 6.0, band=4)
    first = [m for m in (s1.push(float(v)) for v in data) if m is not None]
    n1 = dtw.Spring(q, 12.0, band=4, normalize_window=25)
    normalized = n1.extend(np.asarray(data))
    assert first and normalized
    monkeypatch.setattr(dtw, "_matching", None)
    monkeypatch.setattr(dtw, "_spring_push", None)
    monkeypatch.setattr(dtw, "_distance", None)
    assert [dtw.distance(a, b, window=w) for a, b, w in pairs] == pytest.approx(compiled_distances, rel=1e-12)
    np.testing.assert_allclose(dtw.matching_function(q, x), compiled, rtol=1e-9)
    s2 = dtw.Spring(q, 6.0, band=4)
    second = [m for m in (s2.push(float(v)) for v in data) if m is not None]
    assert [(m.start, m.end) for m in first] == [(m.start, m.end) for m in second]
    assert [m.distance for m in first] == pytest.approx([m.distance for m in second], rel=1e-9)
    n2 = dtw.Spring(q, 12.0, band=4, normalize_window=25)
    again = n2.extend(np.asarray(data))
    assert [(m.start, m.end) for m in again] == [(m.start, m.end) for m in normalized]
    assert [m.distance for m in again] == pytest.approx([m.distance for m in normalized], rel=1e-9)
