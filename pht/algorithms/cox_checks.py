"""Checks of a fitted Cox model from sums a station releases at the fitted coefficients.

Three checks a reviewer asks for, each a sum over one station's patients at one model
point (the converged ``beta``), so they add up over stations like the fit's terms:

* **proportional hazards**: the score test of Grambsch & Therneau (1994) for
  ``beta_j(t) = beta_j + theta_j g(t)`` with ``g(t) = log(t)``, as R survival 3.x
  ``cox.zph(fit, transform = "log", terms = TRUE)`` computes it. With ``V(t)`` the
  (Efron or Breslow) covariance of the covariates over the risk set at event time
  ``t`` and ``m(t)`` their mean::

      U_g  = sum_t g(t) (X_D(t) - d(t) m(t))        (p,)    the score for theta at 0
      I_bg = sum_t g(t) V(t),  I_gg = sum_t g(t)^2 V(t)      (p, p)

  and ``I_bb`` the fit's information. For a term with columns ``J`` (a categorical
  covariate's dummies together), ``chisq = U_J' (I_gg,JJ - I_gb,J. I_bb^-1
  I_bg,.J)^-1 U_J`` on ``|J|`` degrees of freedom; the global test takes all
  columns. R centres ``g`` on its mean over the events first; at the fitted
  ``beta`` the score for ``beta`` is zero, so the centring leaves the statistic
  unchanged (the Schur complement is invariant to adding multiples of the ``beta``
  columns) and is not needed here.
* **concordance** (Harrell's C as R ``concordance()`` counts it for a Cox model): a
  pair is comparable when the shorter time is an event (an event and a censoring at
  the same time count, the censored one as the longer; two events at the same time
  do not); it is concordant when the shorter time has the higher linear predictor,
  tied when the predictors are equal. ``C = (concordant + tied/2) / (concordant +
  discordant + tied)``. Its variance is R's infinitesimal jackknife, which needs
  three sums over patients of that patient's pair counts (:class:`Concordance`).
  Pairs are formed within a station only (R's ``strata``).
* **per-station estimates**: each station's own fit of the same design, pooled by
  inverse variance with Cochran's Q, ``I^2 = max(0, (Q - df) / Q)`` (Higgins &
  Thompson 2002) and the DerSimonian-Laird ``tau^2``.

Example
-------
>>> import numpy as np
>>> c = concordance_counts(
...     np.array([1.0, 2, 2, 3, 3, 4, 5]), np.array([1.0, 1, 0, 1, 1, 0, 1]),
...     np.array([3.0, 2, 2, 5, 1, 0, 1]))
>>> (c.concordant, c.discordant, c.tied_risk)
(11, 2, 2)
>>> round(concordance_index([c]).se, 7)  # R: fit$concordance["std"]
0.1032796
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pht.algorithms.cox import SortedRows, Ties, time_weighted
from pht.algorithms.numeric import chi2_sf
from pht.algorithms.optimize import maximise

FloatArray = npt.NDArray[np.float64]

TRANSFORM = "log"
"""The time transform of the proportional-hazards test: fixed, not the analyst's."""


def transform(times: npt.ArrayLike) -> FloatArray | None:
    """``g(t) = log(t)`` per event time; None when a time is not positive."""
    t = np.asarray(times, dtype=np.float64)
    if t.size == 0 or not np.all(t > 0):
        return None
    return np.log(t)


# -- proportional hazards ----------------------------------------------------------------
@dataclass(frozen=True)
class PHPieces:
    """The score ``U_g`` and the information blocks ``I_bg``, ``I_gg`` (they add)."""

    score: FloatArray
    cross: FloatArray
    square: FloatArray

    def __add__(self, other: PHPieces) -> PHPieces:
        return PHPieces(
            self.score + other.score,
            self.cross + other.cross,
            self.square + other.square,
        )


def ph_pieces(rows: SortedRows, beta: FloatArray, ties: Ties) -> PHPieces | None:
    """One stratum's pieces at ``beta`` on its own event times (stratified mode).

    None when an event time is not positive (``log`` is undefined there).
    """
    times = rows.event_times
    g = transform(times)
    if g is None:
        return None
    weighted = time_weighted(rows.sums(beta), ties, g)
    return PHPieces(
        score=rows.death_sums(g) - weighted.means,
        cross=rows.curvature(beta, times, g * weighted.w1, g * weighted.w2)
        - weighted.outer_g,
        square=rows.curvature(beta, times, g * g * weighted.w1, g * g * weighted.w2)
        - weighted.outer_gg,
    )


@dataclass(frozen=True)
class PooledPart:
    """One station's part of the pieces in pooled mode (one baseline hazard).

    ``deaths = sum_t g(t) X_D(t)`` and the curvature matrices with the pooled
    weights ``g w1, g w2`` (``cross``) and ``g^2 w1, g^2 w2`` (``square``).
    """

    deaths: FloatArray
    cross: FloatArray
    square: FloatArray


def pooled_part(
    rows: SortedRows,
    beta: FloatArray,
    times: FloatArray,
    w1: FloatArray,
    w2: FloatArray,
) -> PooledPart | None:
    """A station's part at the agreed ``times`` given the pooled weights ``w1, w2``."""
    g = transform(times)
    if g is None:
        return None
    return PooledPart(
        deaths=rows.death_sums(g, times),
        cross=rows.curvature(beta, times, g * w1, g * w2),
        square=rows.curvature(beta, times, g * g * w1, g * g * w2),
    )


@dataclass(frozen=True)
class PHTerm:
    """One row of the test: a term (or the global test), its chi-square, df, p."""

    name: str
    chisq: float
    df: int
    p_value: float


@dataclass(frozen=True)
class PHTest:
    """The proportional-hazards score test per term and global (R ``cox.zph``)."""

    transform: str
    terms: tuple[PHTerm, ...]
    global_test: PHTerm


def ph_test(
    pieces: PHPieces,
    information: FloatArray,
    terms: Sequence[tuple[str, Sequence[int]]],
) -> PHTest:
    """The score test per term (columns together) and over all columns.

    ``information`` is the fit's ``I_bb`` (minus the Hessian at ``beta``);
    ``terms`` names each term with its parameter columns.
    """
    p = information.shape[0]
    imat = np.block([[information, pieces.cross], [pieces.cross.T, pieces.square]])

    def test(name: str, columns: Sequence[int]) -> PHTerm:
        keep = [*range(p), *(p + j for j in columns)]
        u = np.concatenate([np.zeros(p), pieces.score[list(columns)]])
        sub = imat[np.ix_(keep, keep)]
        chisq = float(u @ np.linalg.solve(sub, u))
        return PHTerm(name, chisq, len(columns), chi2_sf(chisq, len(columns)))

    return PHTest(
        TRANSFORM,
        tuple(test(name, columns) for name, columns in terms),
        test("GLOBAL", range(p)),
    )


# -- concordance ---------------------------------------------------------------------
@dataclass(frozen=True)
class Concordance:
    """Pair counts of one station and the sums its variance needs (they add).

    With per patient ``a``, ``b``, ``c`` the concordant, discordant and tied pairs it
    belongs to (as the earlier or the later member): ``dd = sum (a - b)^2``,
    ``dn = sum (a - b)(a + b + c)``, ``nn = sum (a + b + c)^2``.
    """

    concordant: int
    discordant: int
    tied_risk: int
    dd: float
    dn: float
    nn: float

    def __add__(self, other: Concordance) -> Concordance:
        return Concordance(
            self.concordant + other.concordant,
            self.discordant + other.discordant,
            self.tied_risk + other.tied_risk,
            self.dd + other.dd,
            self.dn + other.dn,
            self.nn + other.nn,
        )


class _Counter:
    """A Fenwick tree of counts over ranks ``0..n-1``."""

    def __init__(self, n: int) -> None:
        self.tree = [0] * (n + 1)
        self.total = 0

    def add(self, rank: int) -> None:
        i = rank + 1
        while i < len(self.tree):
            self.tree[i] += 1
            i += i & -i
        self.total += 1

    def below(self, rank: int) -> int:
        """How many added ranks are < ``rank``."""
        i, s = rank, 0
        while i > 0:
            s += self.tree[i]
            i -= i & -i
        return s


def concordance_counts(
    time: FloatArray, event: FloatArray, risk: FloatArray
) -> Concordance:
    """Concordant, discordant and risk-tied comparable pairs of one station.

    ``risk`` is the linear predictor (higher: shorter expected survival). Two passes
    over the times with a Fenwick tree of risk ranks: O(n log n).
    """
    time = np.asarray(time, dtype=np.float64)
    dead = np.asarray(event, dtype=np.float64) == 1
    inverse = np.unique(np.asarray(risk, dtype=np.float64), return_inverse=True)[1]
    rank: list[int] = inverse.ravel().tolist()
    n = time.size
    order = np.argsort(time, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(time[order])) + 1)
    # per patient: its pairs as the earlier member (a death) and as the later one
    first = np.zeros((n, 3))  # concordant, discordant, tied
    second = np.zeros((n, 3))
    # a death's partners: later times, and the censored at its own time
    later = _Counter(n)
    for group in reversed(groups):
        deaths, censored = group[dead[group]].tolist(), group[~dead[group]].tolist()
        for i in censored:
            later.add(rank[i])
        for i in deaths:
            below, upto = later.below(rank[i]), later.below(rank[i] + 1)
            first[i] = (below, later.total - upto, upto - below)
        for i in deaths:
            later.add(rank[i])
    # a patient's earlier partners: deaths at earlier times (and, if censored, at
    # its own time); the pair is concordant when the death had the higher risk
    earlier = _Counter(n)
    for group in groups:
        deaths, censored = group[dead[group]].tolist(), group[~dead[group]].tolist()
        for members, add in ((deaths, False), (deaths, True), (censored, False)):
            for i in members:
                if add:
                    earlier.add(rank[i])
                    continue
                below, upto = earlier.below(rank[i]), earlier.below(rank[i] + 1)
                second[i] = (earlier.total - upto, below, upto - below)
    counts = first.sum(axis=0)
    each = first + second  # every pair counted once for each member
    diff, pairs = each[:, 0] - each[:, 1], each.sum(axis=1)
    return Concordance(
        concordant=int(counts[0]),
        discordant=int(counts[1]),
        tied_risk=int(counts[2]),
        dd=float(diff @ diff),
        dn=float(diff @ pairs),
        nn=float(pairs @ pairs),
    )


@dataclass(frozen=True)
class ConcordanceIndex:
    """Harrell's C over all stations' pairs with R's standard error."""

    c: float
    se: float
    concordant: int
    discordant: int
    tied_risk: int


def concordance_index(parts: Sequence[Concordance]) -> ConcordanceIndex:
    """``C`` and its infinitesimal-jackknife SE (R ``concordancefit``) from the parts.

    With ``N`` comparable pairs (untied on time) and Somers' ``d = (conc - disc) /
    N``, R's variance of ``C`` is ``sum_i ((a_i - b_i) - d (a_i + b_i + c_i))^2 /
    (4 N^2)``, which expands into the three sums each station releases.
    """
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    pairs = total.concordant + total.discordant + total.tied_risk
    if pairs == 0:
        return ConcordanceIndex(math.nan, math.nan, 0, 0, 0)
    somers = (total.concordant - total.discordant) / pairs
    var = (total.dd - 2 * somers * total.dn + somers**2 * total.nn) / (4 * pairs**2)
    return ConcordanceIndex(
        c=(somers + 1) / 2,
        se=math.sqrt(max(var, 0.0)),
        concordant=total.concordant,
        discordant=total.discordant,
        tied_risk=total.tied_risk,
    )


# -- per-station estimates and heterogeneity -----------------------------------------------
BOUND = 15.0
"""The largest coefficient or standard error (log hazard ratio) of a station's own
fit that is released; beyond it the fit is diverging (a hazard ratio of e^15)."""


@dataclass(frozen=True)
class OwnFit:
    """A station's own fit of the agreed design: coefficients and covariance."""

    coef: FloatArray
    covariance: FloatArray


def own_fit(rows: SortedRows, ties: Ties, max_iter: int = 50) -> OwnFit | None:
    """Newton-Raphson from zero on the station's own rows (same design, same ties).

    None when a column is constant at the station (a level it does not hold), and
    unless it converges to finite coefficients with a positive-definite
    information (a level absent at the station, too few events...) and no
    coefficient or standard error beyond :data:`BOUND` on the log-hazard scale: that
    is the monotone likelihood of a covariate without events in one of its groups
    at this station (R warns "coefficient may be infinite"), not an estimate.
    """
    if rows.x.shape[0] and np.any(np.ptp(rows.x, axis=0) == 0):
        return None  # a constant column (a level it does not hold): not estimable here
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        fit = maximise(lambda b: rows.terms(b, ties), rows.p, max_iter=max_iter)
    if not fit.converged or not np.all(np.isfinite(fit.beta)):
        return None
    information = -np.asarray(fit.terms.hessian)
    try:
        np.linalg.cholesky(information)
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(covariance)) or np.any(np.diag(covariance) <= 0):
        return None
    if np.any(np.abs(fit.beta) > BOUND) or np.any(np.diag(covariance) > BOUND**2):
        return None
    return OwnFit(
        np.asarray(fit.beta, dtype=np.float64),
        np.asarray(covariance, dtype=np.float64),
    )


@dataclass(frozen=True)
class Heterogeneity:
    """Fixed-effect pooling of per-station estimates of one parameter.

    ``q`` Cochran's Q on ``df = k - 1``, ``i2 = max(0, (q - df) / q)`` and the
    DerSimonian-Laird between-station variance ``tau2``.
    """

    pooled: float
    q: float
    df: int
    p_value: float
    i2: float
    tau2: float


def heterogeneity(coef: Sequence[float], se: Sequence[float]) -> Heterogeneity:
    """Cochran's Q, I-squared and DerSimonian-Laird tau-squared (>= 2 estimates).

    >>> h = heterogeneity([0.1, 0.5], [0.1, 0.2])
    >>> round(h.q, 6), round(h.i2, 6), round(h.tau2, 6)
    (3.2, 0.6875, 0.055)
    """
    y = np.asarray(coef, dtype=np.float64)
    w = 1.0 / np.asarray(se, dtype=np.float64) ** 2
    if y.size < 2:
        raise ValueError("heterogeneity needs at least two estimates")
    pooled = float(w @ y / w.sum())
    q = float(w @ (y - pooled) ** 2)
    df = int(y.size - 1)
    scale = float(w.sum() - (w @ w) / w.sum())
    return Heterogeneity(
        pooled=pooled,
        q=q,
        df=df,
        p_value=chi2_sf(q, df),
        i2=max(0.0, (q - df) / q) if q > 0 else 0.0,
        tau2=max(0.0, (q - df) / scale) if scale > 0 else 0.0,
    )
