"""Small numerical tools of the pooled analyses, with no heavy imports.

The one place for normal and chi-squared tails and quantiles: ``normal_quantile``,
``normal_two_sided_p`` and ``chi2_sf`` replace ``scipy.stats`` (importing it costs more
than a second of start-up) and agree with it to ~1e-13 or better;
``dependent_columns`` finds the parameters a model cannot estimate, from the
correlation form of its information matrix.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()


def normal_quantile(p: float) -> float:
    """The standard normal quantile (``scipy.stats.norm.ppf``), e.g. 1.96 for 0.975."""
    return _NORMAL.inv_cdf(p)


def z_critical(alpha: float) -> float:
    """The two-sided critical value ``z_{1 - alpha/2}`` of a (1 - alpha) Wald CI."""
    return _NORMAL.inv_cdf(1 - alpha / 2)


def normal_two_sided_p(z: float) -> float:
    """``2 * P(Z > |z|)`` for a standard normal ``Z`` (NaN for NaN)."""
    return math.erfc(abs(z) / math.sqrt(2))


def dependent_columns(corr: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Indices left over by a pivoted Cholesky factorisation of ``corr`` (rank-revealing).

    At each step the parameter with the largest remaining variance is taken (the first
    of near-ties); once that falls below ``tol`` times the first pivot, the rest depend
    on those taken.
    """
    a = np.array(corr, dtype=np.float64)
    order = np.arange(a.shape[0])
    first = None
    for k in range(a.shape[0]):
        left = np.diag(a)[k:]
        # near-ties go to the earlier parameter, so the later duplicate is named
        j = k + int(np.flatnonzero(left >= left.max() - 1e-9 * abs(left.max()))[0])
        if j != k:
            a[[k, j]] = a[[j, k]]
            a[:, [k, j]] = a[:, [j, k]]
            order[[k, j]] = order[[j, k]]
        first = a[k, k] if first is None else first
        if not a[k, k] > tol * first:
            return np.sort(order[k:])
        a[k, k] = math.sqrt(a[k, k])
        a[k + 1 :, k] /= a[k, k]
        a[k + 1 :, k + 1 :] -= np.outer(a[k + 1 :, k], a[k + 1 :, k])
    return order[:0]


def chi2_sf(x: float, df: int) -> float:
    """Upper tail of the chi-squared distribution with integer ``df`` (closed form).

    Even ``df = 2m``: ``exp(-x/2) sum_{i<m} (x/2)^i / i!``; odd ``df = 2m + 1``:
    ``erfc(sqrt(x/2)) + exp(-x/2) sum_{i=1..m} (x/2)^(i-1/2) / Gamma(i + 1/2)``. The
    sums are taken in log space, so large ``x`` and ``df`` neither overflow nor give
    NaN. (Avoids importing scipy.stats, which costs more than a second of start-up.)
    """
    if x <= 0:
        return 1.0
    half = x / 2
    log_half = math.log(half)
    if df % 2 == 0:
        logs = [i * log_half - math.lgamma(i + 1) for i in range(df // 2)]
        head = 0.0
    else:
        logs = [
            (i - 0.5) * log_half - math.lgamma(i + 0.5) for i in range(1, df // 2 + 1)
        ]
        head = math.erfc(math.sqrt(half))
    if not logs:
        return min(1.0, head)
    top = max(logs)
    log_sum = top + math.log(math.fsum(math.exp(v - top) for v in logs))
    return min(1.0, head + math.exp(log_sum - half))
