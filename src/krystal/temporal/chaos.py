"""A chaos test that rhythm and noise do not fool: three criteria, each answering one impostor.

1. The 0-1 test for chaos (Gottwald & Melbourne, Proc. R. Soc. A 460 (2004) 603-611; the
   implementation of SIAM J. Appl. Dyn. Syst. 8 (2009) 129-145: modified mean square displacement,
   correlation method, median over 100 random frequencies c in (pi/5, 4pi/5)): K near 0 for periodic
   and quasi-periodic signals, near 1 for chaos -- and for noise, which it cannot tell from chaos.
2. The surrogate gate: the nearest-neighbour one-step prediction error must be clearly below that of
   every phase-randomised surrogate (same spectrum, no dynamics), which noise never is.
3. Sustained divergence: the largest Lyapunov exponent (Rosenstein et al. 1993), fitted from the
   second step on. A periodic signal with a little noise passes 1 and 2 (its noise makes K near 1;
   its shape makes it predictable), but its neighbours separate only once, by the noise, in the
   first step, and then stay apart; chaotic neighbours keep separating at the same rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

F64 = NDArray[np.float64]


def embed(x: F64, dim: int, lag: int) -> F64:
    """Delay vectors [x_i, x_{i+lag}, ..., x_{i+(dim-1)lag}], one per row."""
    n = len(x) - (dim - 1) * lag
    if n <= 0:
        raise ValueError(f"{len(x)} samples are too few for dim={dim}, lag={lag}")
    idx = np.arange(n)[:, None] + lag * np.arange(dim)[None, :]
    return np.asarray(x, dtype=np.float64)[idx]


def _neighbours(y: F64, min_tsep: int) -> tuple[NDArray[np.int64], F64]:
    """Nearest neighbour of each row at least min_tsep+1 samples away in time, and its distance."""
    n = len(y)
    tree = cKDTree(y)
    k = min(n, 2 * min_tsep + 2)
    dist, idx = tree.query(y, k=k)
    far = np.abs(idx - np.arange(n)[:, None]) > min_tsep
    first = np.argmax(far, axis=1)
    rows = np.arange(n)
    ok = far[rows, first]
    nn = np.where(ok, idx[rows, first], -1)
    return nn.astype(np.int64), np.where(ok, dist[rows, first], np.inf)


@dataclass(frozen=True)
class Lyapunov:
    exponent_per_sample: float
    divergence: tuple[float, ...]  # mean log distance after k steps, k = 0..trajectory_len-1


def lyapunov_r(  # noqa: PLR0917
    x: F64,
    dim: int = 2,
    lag: int = 1,
    min_tsep: int = 10,
    trajectory_len: int = 8,
    fit_len: int | None = None,
    fit_from: int = 2,
) -> Lyapunov:
    """Rosenstein's estimate: slope of the mean log divergence of nearest neighbours, per sample,
    fitted over steps fit_from..fit_len-1 (the first steps are where observational noise, which the
    nearest-neighbour choice selects against, makes the distance jump once)."""
    x = np.asarray(x, dtype=np.float64)
    y = embed(x, dim, lag)
    usable = len(y) - trajectory_len + 1
    if usable < 2 * min_tsep + 3:
        raise ValueError("series too short for this embedding and trajectory length")
    nn, _ = _neighbours(y[:usable], min_tsep)
    have = nn >= 0
    i = np.arange(usable)[have]
    j = nn[have]
    div = []
    floor = 1e-9 * (float(np.std(x)) or 1.0)  # below rounding noise: an exact recurrence stays put
    for k in range(trajectory_len):
        d = np.linalg.norm(y[i + k] - y[j + k], axis=1)
        div.append(float(np.mean(np.log(np.maximum(d, floor)))))
    fit = trajectory_len if fit_len is None else fit_len
    if fit - fit_from < 2:
        raise ValueError("fit at least two steps")
    ks = np.arange(fit_from, fit, dtype=np.float64)
    slope = float(np.polyfit(ks, np.asarray(div[fit_from:fit]), 1)[0])
    return Lyapunov(slope, tuple(div))


def prediction_error(x: F64, dim: int = 2, lag: int = 1, min_tsep: int = 10) -> float:
    """Normalised error of predicting x one step ahead from the nearest neighbour's successor."""
    x = np.asarray(x, dtype=np.float64)
    y = embed(x, dim, lag)[:-1]
    target = x[(dim - 1) * lag + 1 :]
    nn, _ = _neighbours(y, min_tsep)
    ok = nn >= 0
    err = target[ok] - target[nn[ok]]
    sd = float(np.std(x))
    return float(np.sqrt(np.mean(err**2)) / sd) if sd > 0 else 0.0


def zero_one_k(x: F64, n_c: int = 100, seed: int = 0) -> float:
    """The 0-1 test's K (median over n_c frequencies): about 0 regular, about 1 chaotic (or noise).

    p_c(n) = sum_{j<=n} x_j cos(jc), q_c likewise with sin; M_c(n) their mean square displacement
    for n <= N/10 (all n at once from an FFT autocorrelation), less the oscillating term
    (E x)^2 (1 - cos nc) / (1 - cos c); K_c its correlation with n.
    """
    x = np.asarray(x, dtype=np.float64)
    n_all = len(x)
    ncut = n_all // 10
    if ncut < 10:
        raise ValueError(f"{n_all} samples are too few for the 0-1 test (at least 100)")
    cs = np.random.default_rng(seed).uniform(np.pi / 5, 4 * np.pi / 5, n_c)
    phase = np.outer(cs, np.arange(1, n_all + 1))
    ns = np.arange(1, ncut + 1)
    size = 1 << (2 * n_all - 1).bit_length()
    m = np.zeros((n_c, ncut))
    for z in (np.cumsum(x * np.cos(phase), axis=1), np.cumsum(x * np.sin(phase), axis=1)):
        s2 = np.cumsum(z * z, axis=1)
        f = np.fft.rfft(z, size)
        cross = np.fft.irfft(f * np.conj(f), size)[:, 1 : ncut + 1]  # sum_j z_j z_{j+n}
        m += (s2[:, -1:] - s2[:, ns - 1] + s2[:, n_all - ns - 1] - 2 * cross) / (n_all - ns)
    d = m - float(np.mean(x)) ** 2 * (1 - np.cos(np.outer(cs, ns))) / (1 - np.cos(cs))[:, None]
    dn = ns - ns.mean()
    dc = d - d.mean(axis=1, keepdims=True)
    norm = np.sqrt((dc * dc).sum(axis=1) * float((dn * dn).sum()))
    k = np.where(norm > 0, (dc @ dn) / np.where(norm > 0, norm, 1.0), 0.0)
    return float(np.median(k))


def surrogate(x: F64, rng: np.random.Generator) -> F64:
    """Phase-randomised surrogate: the same amplitude spectrum, random phases."""
    x = np.asarray(x, dtype=np.float64)
    spec = np.fft.rfft(x - x.mean())
    phases = rng.uniform(0, 2 * np.pi, len(spec))
    phases[0] = 0.0
    if len(x) % 2 == 0:
        phases[-1] = 0.0
    out: F64 = np.fft.irfft(np.abs(spec) * np.exp(1j * phases), n=len(x)) + x.mean()
    return out


@dataclass(frozen=True)
class ChaosVerdict:
    exponent_per_sample: float
    exponent_per_s: float
    prediction_error: float  # of the data
    surrogate_error_min: float  # smallest of the surrogates'
    chaotic: bool  # 0-1 test, surrogate gate and sustained divergence all say chaos
    reason: str
    k: float = math.nan  # the 0-1 test's K


def chaos_test(  # noqa: PLR0917
    x: F64,
    sample_period_s: float = 1.0,
    dim: int = 2,
    lag: int = 1,
    min_tsep: int = 10,
    trajectory_len: int = 8,
    surrogates: int = 9,
    margin: float = 0.7,
    min_exponent: float = 0.05,
    min_k: float = 0.5,
    seed: int = 0,
) -> ChaosVerdict:
    """Chaotic only when the 0-1 test, the surrogate gate and the exponent all say so. `min_exponent`
    is per sample: chaos slower than an e-fold in 20 samples is not flagged (sample it more coarsely)."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)) or float(np.std(x)) == 0.0:
        return ChaosVerdict(math.nan, math.nan, math.nan, math.nan, False, "constant or non-finite series")
    lyap = lyapunov_r(x, dim, lag, min_tsep, trajectory_len)
    k = zero_one_k(x, seed=seed)
    err = prediction_error(x, dim, lag, min_tsep)
    rng = np.random.default_rng(seed)
    surr = min(prediction_error(surrogate(x, rng), dim, lag, min_tsep) for _ in range(surrogates))
    lam = lyap.exponent_per_sample
    facts = (
        f"exponent {lam:.3f}/sample, 0-1 test K {k:.2f}, prediction error {err:.3f} vs surrogates {surr:.3f}"
    )
    if k < min_k:
        chaotic, why = False, "regular (periodic or quasi-periodic: K near 0)"
    elif err >= margin * surr:
        chaotic, why = False, "noise (no more predictable than its surrogates)"
    elif lam <= min_exponent:
        chaotic, why = False, "not diverging (neighbours separate once, by noise, then stay apart)"
    else:
        chaotic, why = True, "chaotic"
    return ChaosVerdict(lam, lam / sample_period_s, err, surr, chaotic, f"{why}: {facts}", k)
