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


def _spring_step_py(q: F64, x: float, d: F64, s: NDArray[np.int64], t: int, band: int, st: F64) -> bool:  # noqa: PLR0917
    """One SPRING column in place (plain loops: the kernel numba compiles); True: a match to report.

    st: [best squared distance, its start, its end, threshold squared, reported start, end, distance].
    """
    m = len(q)
    diag, diag_s = 0.0, t  # D[-1, t-1] = 0: a match may start at t
    up, up_s = INF, t
    for i in range(m):
        left, left_s = d[i], s[i]
        v, vs = diag, diag_s
        if left < v:
            v, vs = left, left_s
        if up < v:
            v, vs = up, up_s
        diff = q[i] - x
        v += diff * diff
        diag, diag_s = left, left_s
        d[i], s[i] = v, vs
        up, up_s = v, vs
    if band >= 0:
        for i in range(m):
            if abs((t - s[i]) - i) > band:
                d[i] = INF
    found = False
    best, best_end = st[0], st[2]
    if best < INF:
        found = True
        for i in range(m):
            if d[i] < best and s[i] <= best_end:
                found = False
                break
        if found:
            for i in range(m):
                if s[i] <= best_end:
                    d[i] = INF
            st[4], st[5], st[6] = st[1], st[2], math.sqrt(best)
            st[0] = INF
    last = d[m - 1]
    if last <= st[3] and last < st[0]:
        st[0], st[1], st[2] = last, float(s[m - 1]), float(t)
    return found


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


_spring_step = _jit(_spring_step_py) if _jit is not None else None
_matching = _jit(_matching_py) if _jit is not None else None
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


class Spring:
    """Streaming subsequence DTW (Sakurai et al., SPRING): one column of the DP per sample.

    Reports each best non-overlapping match whose distance is under `threshold` as soon as no path
    still open can improve it. `band` bounds how far a match may drift from its start's diagonal;
    `normalize_window` z-normalises samples by the trailing window's mean and deviation (0: raw).
    """

    def __init__(
        self, query: F64, threshold: float, band: int | None = None, normalize_window: int = 0
    ) -> None:
        self.q = znorm(query) if normalize_window else np.asarray(query, dtype=np.float64)
        m = len(self.q)
        self.threshold = float(threshold) ** 2
        self.band = band
        self.d = np.full(m, INF)
        self.s = np.zeros(m, dtype=np.int64)
        self.steps = np.arange(m)
        self.t = -1
        self._c = np.empty(m)
        self._a = np.empty(m)
        self._shift = np.empty(m)
        self.nw = int(normalize_window)
        self._buf = np.zeros(max(self.nw, 1))
        self._sum = self._sum2 = 0.0
        self._kernel = _spring_step
        self._band = -1 if band is None else int(band)
        self._state = np.array([INF, -1.0, -1.0, self.threshold, -1.0, -1.0, INF])

    def _normalize(self, x: float) -> float:
        n = self.nw
        k = self.t % n
        old = self._buf[k] if self.t >= n else 0.0
        self._buf[k] = x
        self._sum += x - old
        self._sum2 += x * x - old * old
        count = min(self.t + 1, n)
        mean = self._sum / count
        var = self._sum2 / count - mean * mean
        return (x - mean) / math.sqrt(var) if var > 1e-12 else 0.0

    def push(self, x: float) -> Match | None:
        self.t += 1
        if self.nw:
            x = self._normalize(x)
        if self._kernel is not None:
            st = self._state
            if self._kernel(self.q, x, self.d, self.s, self.t, self._band, st):
                return Match(int(st[4]), int(st[5]), float(st[6]))
            return None
        d, s, c, a = self.d, self.s, self._c, self._a
        np.subtract(self.q, x, out=c)
        np.multiply(c, c, out=c)
        a[0] = 0.0  # a new match may start here
        np.minimum(d[1:], d[:-1], out=a[1:])
        pick_diag = d[:-1] <= d[1:]
        s_from = np.empty_like(s)
        s_from[0] = self.t
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
            d[np.abs((self.t - s) - self.steps) > self.band] = INF
        found = None
        if self.best < INF and bool(np.all((d >= self.best) | (s > self.best_end))):
            found = Match(self.best_start, self.best_end, math.sqrt(self.best))
            d[s <= self.best_end] = INF
            self.best = INF
        if d[-1] <= self.threshold and d[-1] < self.best:
            self.best, self.best_start, self.best_end = float(d[-1]), int(s[-1]), self.t
        return found

    @property
    def best(self) -> float:
        return float(self._state[0])

    @best.setter
    def best(self, value: float) -> None:
        self._state[0] = value

    @property
    def best_start(self) -> int:
        return int(self._state[1])

    @best_start.setter
    def best_start(self, value: int) -> None:
        self._state[1] = value

    @property
    def best_end(self) -> int:
        return int(self._state[2])

    @best_end.setter
    def best_end(self, value: int) -> None:
        self._state[2] = value

    @property
    def distance(self) -> float:
        """Distance of the best match ending at the newest sample."""
        return math.sqrt(self.d[-1]) if self.d[-1] < INF else INF
