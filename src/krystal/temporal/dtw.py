"""Dynamic time warping: pairwise with a band, subsequence search (SPRING) in batch and per sample.

Costs are squared differences and distances their square root, as dtaidistance. Every row (batch)
or column (streaming) of the DP is one vectorised step: along a row D_j = c_j + min(A_j, D_{j-1}),
whose solution is D_j = C_j + min_{k<=j}(A_k - C_{k-1}) with C the running sum of c, a cumulative
minimum in NumPy instead of a Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
INF = math.inf

try:  # compiled kernels where numba is installed (it comes with librosa); NumPy otherwise
    import numba

    _jit: Any = numba.njit(cache=True, nogil=True)
except ImportError:  # pragma: no cover - depends on the environment
    _jit = None


# Spring's state lives in one float64 buffer, so a compiled step takes two arguments (the call,
# not the arithmetic, is most of a step's cost): a header, then q, d (costs), s (starts), the ring
# of the z-normalisation window. Starts and times are exact as floats below 2**53.
_T, _BAND, _BEST, _BEST_START, _BEST_END, _THR2 = 0, 1, 2, 3, 4, 5
_REP_START, _REP_END, _REP_DIST, _NW, _SUM, _SUM2, _M = 6, 7, 8, 9, 10, 11, 12
_HEADER = 16


def _spring_push_py(b: F64, x: float) -> bool:
    """One SPRING column in place (plain loops: the kernel numba compiles); True: a match to report.

    Non-finite x is a missing sample: nothing changes. The band is applied to the stored cells
    after the column's own recurrence has used them, as the NumPy path does.
    """
    if not math.isfinite(x):
        return False
    m = int(b[_M])
    t = b[_T] + 1.0
    b[_T] = t
    nw = int(b[_NW])
    if nw > 0:
        ring = _HEADER + 3 * m
        k = int(t) % nw
        old = b[ring + k] if t >= nw else 0.0
        b[ring + k] = x
        b[_SUM] += x - old
        b[_SUM2] += x * x - old * old
        count = min(t + 1.0, float(nw))
        mean = b[_SUM] / count
        var = b[_SUM2] / count - mean * mean
        x = (x - mean) / math.sqrt(var) if var > 1e-12 else 0.0
    band = b[_BAND]
    best = b[_BEST]
    best_end = b[_BEST_END]
    qo, do, so = _HEADER, _HEADER + m, _HEADER + 2 * m
    blocked = False  # an open path that started inside the best match could still beat it
    diag, diag_s = 0.0, t  # D[-1, t-1] = 0: a match may start at t
    up, up_s = INF, t
    for i in range(m):
        left, left_s = b[do + i], b[so + i]
        v, vs = diag, diag_s
        if left < v:
            v, vs = left, left_s
        if up < v:
            v, vs = up, up_s
        diff = b[qo + i] - x
        v += diff * diff
        diag, diag_s = left, left_s
        up, up_s = v, vs
        if band >= 0.0 and abs((t - vs) - i) > band:
            v = INF
        b[do + i], b[so + i] = v, vs
        if v < best and vs <= best_end:
            blocked = True
    found = False
    if best < INF and not blocked:
        found = True
        for i in range(m):
            if b[so + i] <= best_end:
                b[do + i] = INF
        b[_REP_START], b[_REP_END], b[_REP_DIST] = b[_BEST_START], best_end, math.sqrt(best)
        b[_BEST] = INF
    last = b[do + m - 1]
    if last <= b[_THR2] and last < b[_BEST]:
        b[_BEST], b[_BEST_START], b[_BEST_END] = last, b[so + m - 1], t
    return found


def _spring_many_py(b: F64, xs: F64, out: F64) -> int:
    """push for every x of xs; the reported matches as rows (start, end, distance) of out."""
    n = 0
    for j in range(len(xs)):
        if _STEP(b, xs[j]):
            out[n, 0], out[n, 1], out[n, 2] = b[_REP_START], b[_REP_END], b[_REP_DIST]
            n += 1
    return n


def _matching_py(q: F64, x: F64, out: F64) -> None:
    """Last row of the subsequence DP, column by column (the kernel numba compiles)."""
    m, n = len(q), len(x)
    d = np.full(m, INF)
    for j in range(n):
        diag = 0.0
        up = INF
        xj = x[j]
        for i in range(m):
            left = d[i]
            v = diag
            v = min(v, left)
            v = min(v, up)
            diff = q[i] - xj
            v += diff * diff
            diag = left
            d[i] = v
            up = v
        out[j] = math.sqrt(d[m - 1])


def _distance_py(s1: F64, s2: F64, w: int, prev: F64, cur: F64) -> float:
    """Squared DTW distance, two rows of the DP with dtaidistance's band (the kernel numba compiles;
    the same cells and order of minima as `distance`'s NumPy rows)."""
    r, c = len(s1), len(s2)
    for j in range(c + 1):
        prev[j] = INF
    prev[0] = 0.0
    for i in range(r):
        js = max(0, i - max(0, r - c) - w + 1)
        je = min(c, i + max(0, c - r) + w)
        for j in range(c + 1):
            cur[j] = INF
        left = INF
        x = s1[i]
        for j in range(js, je):
            a = min(prev[j], prev[j + 1], left)
            d = x - s2[j]
            left = a + d * d
            cur[j + 1] = left
        for j in range(c + 1):
            prev[j] = cur[j]
    return float(prev[c])


# WindowMatcher's buffer: a header, then q (z-normalised), the ring of the last m samples, the
# window z-normalised, two DP rows of m + 1.
_W_T, _W_W, _W_THR2, _W_M, _W_BEST, _W_BEST_END, _W_LAST_END, _W_DIST = 0, 1, 2, 3, 4, 5, 6, 7
_W_REP_END, _W_REP_DIST = 8, 9


def _window_push_py(b: F64, x: float) -> bool:
    """One sample into the window of the last m; banded DTW of the z-normalised window against q.

    Rows stop early once every cell of a row exceeds threshold**2 (the distance can only grow).
    True: a match to report (the best window of a group of overlapping ones under the threshold,
    reported once no later window can overlap it).
    """
    if not math.isfinite(x):
        return False
    m = int(b[_W_M])
    t = b[_W_T] + 1.0
    b[_W_T] = t
    ti = int(t)
    qo = _HEADER
    ro = qo + m
    zo = ro + m
    po = zo + m
    co = po + m + 1
    b[ro + ti % m] = x
    b[_W_DIST] = INF
    found = False
    best, best_end = b[_W_BEST], b[_W_BEST_END]
    if best < INF and t - best_end >= m:  # no window to come overlaps the best one
        b[_W_REP_END], b[_W_REP_DIST] = best_end, math.sqrt(best)
        b[_W_LAST_END] = best_end
        b[_W_BEST] = INF
        found = True
    if ti < m - 1:
        return found
    mean = 0.0
    for k in range(m):
        mean += b[ro + (ti - m + 1 + k) % m]
    mean /= m
    var = 0.0
    for k in range(m):
        dv = b[ro + (ti - m + 1 + k) % m] - mean
        var += dv * dv
    sd = math.sqrt(var / m)
    for k in range(m):
        v = b[ro + (ti - m + 1 + k) % m] - mean
        b[zo + k] = v / sd if sd > 0 else v
    w = int(b[_W_W])
    cut = b[_W_THR2]
    d0, d1 = b[qo] - b[zo], b[qo + m - 1] - b[zo + m - 1]
    if d0 * d0 + d1 * d1 > cut:  # every path has the first and the last cell (LB_Kim)
        return found
    for j in range(m + 1):
        b[po + j] = INF
    b[po] = 0.0  # prev[j + 1]: D[i-1, j]; prev[0]: D[i-1, -1]
    for i in range(m):
        js = max(0, i - w + 1)
        je = min(m, i + w)
        b[co + js] = INF  # D[i, js - 1] and D[i, je]: outside the band; all the next row reads
        if je < m:
            b[co + je + 1] = INF
        qi = b[qo + i]
        row_min = INF
        left = INF  # D[i, js - 1], then the cell just written (kept out of memory: the chain)
        for j in range(js, je):
            diff = qi - b[zo + j]
            left = min(b[po + j], b[po + j + 1], left) + diff * diff  # diagonal, up, left
            b[co + j + 1] = left
            row_min = min(row_min, left)
        if row_min > cut:
            return found  # abandoned: over the threshold whatever follows
        po, co = co, po
    dist2 = b[po + m]
    b[_W_DIST] = dist2
    start = t - m + 1
    if dist2 <= cut and dist2 < b[_W_BEST] and start > b[_W_LAST_END]:
        b[_W_BEST], b[_W_BEST_END] = dist2, t
    return found


def _window_many_py(b: F64, xs: F64, out: F64) -> int:
    """push for every x of xs; the reported matches as rows (start, end, distance) of out."""
    n = 0
    m = b[_W_M]
    for j in range(len(xs)):
        if _WSTEP(b, xs[j]):
            out[n, 0], out[n, 1], out[n, 2] = b[_W_REP_END] - m + 1, b[_W_REP_END], b[_W_REP_DIST]
            n += 1
    return n


_spring_push = _jit(_spring_push_py) if _jit is not None else None
_STEP: Any = _spring_push if _spring_push is not None else _spring_push_py  # what _spring_many calls
_spring_many = _jit(_spring_many_py) if _jit is not None else None
_window_push = _jit(_window_push_py) if _jit is not None else None
_WSTEP: Any = _window_push if _window_push is not None else _window_push_py  # what _window_many calls
_window_many = _jit(_window_many_py) if _jit is not None else None
_matching = _jit(_matching_py) if _jit is not None else None
_distance = _jit(_distance_py) if _jit is not None else None
COMPILED = _jit is not None


def znorm(x: F64) -> F64:
    x = np.asarray(x, dtype=np.float64)
    sd = float(x.std())
    out: F64 = (x - x.mean()) / sd if sd > 0 else x - x.mean()
    return out


def _row(c: F64, a: F64) -> F64:
    """D_j = c_j + min(a_j, D_{j-1}) for all j at once, D_{-1} = inf."""
    csum = np.cumsum(c)
    shifted = np.empty_like(csum)
    shifted[0] = 0.0
    shifted[1:] = csum[:-1]
    out: F64 = csum + np.minimum.accumulate(a - shifted)
    return out


def distance(s1: F64, s2: F64, window: int | None = None) -> float:
    """DTW distance of two series; `window`: the band, as dtaidistance's (shifts below it)."""
    s1 = np.asarray(s1, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    r, c = len(s1), len(s2)
    if r == 0 or c == 0:
        return INF
    w = max(r, c) if window is None else int(window)
    if _distance is not None:  # compiled: faster than dtaidistance's C (docs/temporal.md)
        d2 = float(_distance(s1, s2, w, np.empty(c + 1), np.empty(c + 1)))
        return math.sqrt(d2) if d2 < INF else INF
    prev = np.full(c + 1, INF)  # prev[j + 1]: D[i-1, j]; prev[0]: D[i-1, -1]
    prev[0] = 0.0
    for i in range(r):
        js = max(0, i - max(0, r - c) - w + 1)
        je = min(c, i + max(0, c - r) + w)
        row = np.full(c + 1, INF)
        if je > js:
            cost = (s1[i] - s2[js:je]) ** 2
            a = np.minimum(prev[js:je], prev[js + 1 : je + 1])
            row[js + 1 : je + 1] = _row(cost, a)
        prev = row
    return float(math.sqrt(prev[c])) if prev[c] < INF else INF


@dataclass(frozen=True)
class Match:
    """A subsequence of the series that matches the query: series[start : end + 1]."""

    start: int
    end: int
    distance: float


def matching_function(query: F64, series: F64) -> F64:
    """Distance of the best match of `query` ending at each index of `series` (free start)."""
    q = np.asarray(query, dtype=np.float64)
    x = np.asarray(series, dtype=np.float64)
    if _matching is not None and len(q) and len(x):
        result = np.empty(len(x))
        _matching(q, x, result)
        return result
    d = (q[0] - x) ** 2
    for i in range(1, len(q)):
        a = np.empty_like(d)
        a[0] = INF
        np.minimum(d[1:], d[:-1], out=a[1:])
        a[0] = d[0]  # D[i-1, 0] only (no column -1)
        d = _row((q[i] - x) ** 2, a)
    out: F64 = np.sqrt(d)
    return out


def search(query: F64, series: F64, normalize: bool = True) -> Match:
    """Best subsequence match of `query` in `series` (both z-normalised when `normalize`)."""
    q = znorm(query) if normalize else np.asarray(query, dtype=np.float64)
    x = znorm(series) if normalize else np.asarray(series, dtype=np.float64)
    mf = matching_function(q, x)
    end = int(np.argmin(mf))
    rev = matching_function(q[::-1], x[end::-1])  # the start: the same match read backwards
    start = end - int(np.argmin(np.abs(rev - mf[end])))
    return Match(start, end, float(mf[end]))


def _entry(kernel: Any, *example: Any) -> Any:
    """The compiled kernel's own entry, past numba's per-call type dispatch (about half a step's
    cost); the dispatcher itself where that internal is missing."""
    kernel(*example)  # compiles, or loads numba's cache
    try:
        return kernel.overloads[kernel.signatures[0]].entry_point
    except (AttributeError, IndexError, KeyError):  # pragma: no cover - another numba
        return kernel


class Spring:
    """Streaming subsequence DTW (Sakurai et al., SPRING): one column of the DP per sample.

    Reports each best non-overlapping match whose distance is under `threshold` as soon as no path
    still open can improve it. `band` bounds how far a match may drift from its start's diagonal;
    `normalize_window` z-normalises samples by the trailing window's mean and deviation (0: raw).
    A non-finite sample is missing: it changes nothing and takes no index.
    """

    _compiled: tuple[Any, Any] | None = None  # (push, many) entries, made once per process

    def __init__(
        self, query: F64, threshold: float, band: int | None = None, normalize_window: int = 0
    ) -> None:
        q = znorm(query) if normalize_window else np.asarray(query, dtype=np.float64)
        m = len(q)
        if m == 0:
            raise ValueError("empty query")
        self.nw = max(0, int(normalize_window))
        self.band = band
        self.threshold = float(threshold) ** 2
        b = np.zeros(_HEADER + 3 * m + max(self.nw, 1))
        b[_T], b[_BAND], b[_NW], b[_M] = -1.0, (-1.0 if band is None else float(band)), self.nw, m
        b[_BEST], b[_BEST_START], b[_BEST_END], b[_THR2] = INF, -1.0, -1.0, self.threshold
        b[_REP_START], b[_REP_END], b[_REP_DIST] = -1.0, -1.0, INF
        self._b = b
        self.q = b[_HEADER : _HEADER + m]
        self.q[:] = q
        self.d = b[_HEADER + m : _HEADER + 2 * m]  # views: the kernels and NumPy share the state
        self.d[:] = INF
        self.s = b[_HEADER + 2 * m : _HEADER + 3 * m]
        self._ring = b[_HEADER + 3 * m :]
        self.steps = np.arange(m)
        self._c = np.empty(m)
        self._shift = np.empty(m)
        self._push: Any = None
        self._many: Any = None
        if _spring_push is not None and _spring_many is not None:
            if Spring._compiled is None:
                scratch = np.array(b)
                Spring._compiled = (
                    _entry(_spring_push, scratch, 0.0),
                    _entry(_spring_many, scratch, np.zeros(1), np.empty((1, 3))),
                )
            self._push, self._many = Spring._compiled

    @property
    def t(self) -> int:
        """Index of the newest sample (-1 before the first)."""
        return int(self._b[_T])

    def push(self, x: float) -> Match | None:
        """One sample; the match it completes, if any."""
        if self._push is not None:
            if self._push(self._b, x):
                b = self._b
                return Match(int(b[_REP_START]), int(b[_REP_END]), float(b[_REP_DIST]))
            return None
        return self._push_numpy(float(x))

    def extend(self, xs: F64) -> list[Match]:
        """Many samples in one call (a message carrying a block): the matches they complete."""
        xs = np.ascontiguousarray(xs, dtype=np.float64)
        if self._many is None:
            return [m for m in (self.push(float(v)) for v in xs) if m is not None]
        out = np.empty((len(xs), 3))
        n = self._many(self._b, xs, out)
        return [Match(int(r[0]), int(r[1]), float(r[2])) for r in out[:n]]

    def _normalize(self, x: float) -> float:
        b, n, t = self._b, self.nw, self._b[_T]
        k = int(t) % n
        old = self._ring[k] if t >= n else 0.0
        self._ring[k] = x
        b[_SUM] += x - old
        b[_SUM2] += x * x - old * old
        count = min(t + 1.0, float(n))
        mean = b[_SUM] / count
        var = b[_SUM2] / count - mean * mean
        return float((x - mean) / math.sqrt(var)) if var > 1e-12 else 0.0

    def _push_numpy(self, x: float) -> Match | None:
        """The same column with vectorised NumPy (no numba): the recurrence as a cumulative min."""
        if not math.isfinite(x):
            return None
        b = self._b
        b[_T] += 1.0
        t = b[_T]
        if self.nw:
            x = self._normalize(x)
        d, s, c = self.d, self.s, self._c
        np.subtract(self.q, x, out=c)
        np.multiply(c, c, out=c)
        a = np.empty_like(d)
        a[0] = 0.0  # a new match may start here
        np.minimum(d[1:], d[:-1], out=a[1:])
        pick_diag = d[:-1] <= d[1:]
        s_from = np.empty_like(s)
        s_from[0] = t
        s_from[1:] = np.where(pick_diag, s[:-1], s[1:])
        csum = np.cumsum(c)
        self._shift[0] = 0.0
        self._shift[1:] = csum[:-1]
        np.subtract(a, self._shift, out=a)
        run = np.minimum.accumulate(a)
        arg = np.maximum.accumulate(np.where(a == run, self.steps, 0))
        np.add(csum, run, out=d)
        s[:] = s_from[arg]
        if self.band is not None:
            d[np.abs((t - s) - self.steps) > self.band] = INF
        found = None
        best, best_end = b[_BEST], b[_BEST_END]
        if best < INF and bool(np.all((d >= best) | (s > best_end))):
            found = Match(int(b[_BEST_START]), int(best_end), math.sqrt(best))
            d[s <= best_end] = INF
            b[_BEST] = INF
        if d[-1] <= self.threshold and d[-1] < b[_BEST]:
            b[_BEST], b[_BEST_START], b[_BEST_END] = d[-1], s[-1], t
        return found

    @property
    def distance(self) -> float:
        """Distance of the best match ending at the newest sample."""
        return math.sqrt(self.d[-1]) if self.d[-1] < INF else INF


class WindowMatcher:
    """Z-normalised sliding-window DTW, per sample: the window of the last len(query) samples,
    z-normalised on its own (as the query), against the query with a Sakoe-Chiba band.

    Unlike a subsequence search over a stream normalised by a trailing window, the shape matches
    wherever it recurs, at any offset and scale. `band`: shifts of up to `band` samples (None: any).
    Matches under `threshold` are reported once no later window can overlap them: the best of each
    group of overlapping windows, non-overlapping with the previous match. The distance of a window
    equals dtaidistance's `distance(znorm(query), znorm(window), window=band + 1)`; windows over the
    threshold are abandoned early (their distance reads inf). A non-finite sample is missing.
    """

    _compiled: tuple[Any, Any] | None = None

    def __init__(self, query: F64, threshold: float, band: int | None = None) -> None:
        q = znorm(query)
        m = len(q)
        if m < 2:
            raise ValueError("a query of at least 2 samples")
        self.m, self.band = m, band
        b = np.zeros(_HEADER + 3 * m + 2 * (m + 1))
        b[_W_T], b[_W_W], b[_W_M] = -1.0, float(m if band is None else max(0, int(band)) + 1), m
        b[_W_THR2] = float(threshold) ** 2
        b[_W_BEST], b[_W_BEST_END], b[_W_LAST_END], b[_W_DIST] = INF, -1.0, -INF, INF
        b[_W_REP_END], b[_W_REP_DIST] = -1.0, INF
        b[_HEADER : _HEADER + m] = q
        self._b = b
        self._push: Any = _window_push_py
        self._many: Any = _window_many_py
        if _window_push is not None and _window_many is not None:
            if WindowMatcher._compiled is None:
                scratch = np.array(b)
                WindowMatcher._compiled = (
                    _entry(_window_push, scratch, 0.0),
                    _entry(_window_many, scratch, np.zeros(1), np.empty((1, 3))),
                )
            self._push, self._many = WindowMatcher._compiled

    @property
    def t(self) -> int:
        """Index of the newest sample (-1 before the first)."""
        return int(self._b[_W_T])

    @property
    def distance(self) -> float:
        """DTW distance of the newest window (inf: not full yet, or abandoned over the threshold)."""
        d = float(self._b[_W_DIST])
        return math.sqrt(d) if d < INF else INF

    def push(self, x: float) -> Match | None:
        """One sample; the match it completes, if any."""
        if self._push(self._b, float(x)):
            b = self._b
            end = int(b[_W_REP_END])
            return Match(end - self.m + 1, end, float(b[_W_REP_DIST]))
        return None

    def extend(self, xs: F64) -> list[Match]:
        """Many samples in one call: the matches they complete."""
        xs = np.ascontiguousarray(xs, dtype=np.float64)
        if self._many is _window_many_py:  # no numba: per sample, so _WSTEP is the Python step
            return [m for m in (self.push(float(v)) for v in xs) if m is not None]
        out = np.empty((len(xs), 3))
        n = self._many(self._b, xs, out)
        return [Match(int(r[0]), int(r[1]), float(r[2])) for r in out[:n]]


def window_distances(query: F64, series: F64, band: int | None = None) -> F64:
    """Batch: the z-normalised banded DTW distance of every window (inf before the first full one)."""
    wm = WindowMatcher(query, math.inf, band)
    out = np.empty(len(series))
    for k, v in enumerate(np.asarray(series, dtype=np.float64)):
        wm.push(float(v))
        out[k] = wm.distance
    return out
