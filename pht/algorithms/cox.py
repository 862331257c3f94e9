"""Cox proportional hazards from risk-set sums: one kernel for every mode and tie rule.

At each distinct event time ``t`` with ``d`` deaths, the partial log-likelihood, its
gradient and Hessian need only sums over the risk set ``R(t)`` (rows with time >= t) and
over the deaths ``D(t)``, with ``w = exp(x'b)``:

``S0 = sum_R w``, ``S1 = sum_R w x``, ``S2 = sum_R w x x'`` and ``D0, D1, D2`` likewise
over ``D(t)``, plus ``X_D = sum_D x``. For Efron's tie correction with ``a_l = l / d``,
``l = 0..d-1`` (Efron 1977; Therneau & Grambsch 2000, sec. 3.3)::

    loglik += X_D'b - sum_l log(S0 - a_l D0)
    grad   += X_D   - sum_l (S1 - a_l D1) / (S0 - a_l D0)
    hess   -= sum_l [(S2 - a_l D2) / (S0 - a_l D0) - m_l m_l'],  m_l = (S1 - a_l D1)/(S0 - a_l D0)

Breslow's rule takes ``a_l = 0`` for all ``l``. Sums add over stations, so:

* **stratified** Cox (a baseline hazard per station): each station reduces its own sums
  to (loglik, gradient, Hessian) and these add up;
* **pooled** Cox (one baseline hazard): stations return their first-order sums
  (``S0, S1, D0, D1``) at the union of event times; the orchestrator adds them per time
  and reduces them to the log-likelihood, gradient and the part of the Hessian that is
  quadratic in ``S1, D1``. The rest of the Hessian, ``sum_t (w1 S2 - w2 D2)`` with
  per-time weights ``w1 = sum_l 1/c_l`` and ``w2 = sum_l a_l/c_l`` that depend only on
  the pooled ``S0, D0``, is linear in the second-order sums: each station returns it as
  one weighted Gram matrix ``X' diag(v) X`` (:meth:`SortedRows.curvature`), so the
  ``p x p`` sums per event time never have to be formed or sent.

Both equal the same fit on the concatenated rows (lifelines ``CoxPHFitter`` with and
without ``strata``; statsmodels ``PHReg`` for Breslow ties).

Covariates are centred before exponentiation (the partial likelihood is invariant to a
shift of ``x`` common to a risk set); in pooled mode every station uses the same centre.

**Case weights** ``v > 0`` (optional; inverse-probability weights, for example) enter
as in R ``coxph(weights = )`` and lifelines ``CoxPHFitter(weights_col=)``: the risk-set
and death sums use ``v exp(x'b)``, ``X_D = sum_D v x``, and each time's ``log c_l``
terms (with their derivatives) are multiplied by the deaths' mean weight
``vbar = sum_D v / d``; ``a_l = l / d`` still counts the deaths. So Breslow's rule
gives ``sum_D v x'b - (sum_D v) log S0`` (an integer weight is the row repeated), and
without weights every number is what it is unweighted. Robust variances are in
:mod:`pht.algorithms.cox_weighted`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pht.algorithms.levels import labels as level_labels
from pht.algorithms.numeric import chi2_sf, normal_two_sided_p, z_critical
from pht.algorithms.optimize import Fit, Terms, maximise
from pht.errors import DataError

Ties = Literal["efron", "breslow"]
_CHUNK = 1 << 16  # rows per block in weighted Gram matrices
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RiskSetSums:
    """First-order risk-set and death sums at event times (the pooled-mode aggregate).

    Attributes
    ----------
    time : (m,) event times
    deaths : (m,) number of deaths at each time
    x_death : (m, p) sum of covariates over the deaths
    s0, s1 : (m,), (m, p) sums of w and w x over the risk set
    d0, d1 : the same sums over the deaths
    death_weight : (m,) sum of the deaths' case weights at each time, or None when
        unweighted (then it is ``deaths``); ``x_death``, ``s*`` and ``d*`` are then
        weighted too

    The second-order sums ``S2``, ``D2`` are never formed per time: the Hessian needs
    them only through :meth:`SortedRows.curvature`, a weighted Gram matrix.
    """

    time: FloatArray
    deaths: FloatArray
    x_death: FloatArray
    s0: FloatArray
    s1: FloatArray
    d0: FloatArray
    d1: FloatArray
    death_weight: FloatArray | None = None

    @property
    def p(self) -> int:
        """Number of covariates."""
        return int(self.s1.shape[1])

    def __add__(self, other: RiskSetSums) -> RiskSetSums:
        if not np.array_equal(self.time, other.time):
            raise ValueError("risk-set sums must be on the same event times to add")
        death_weight = None
        if self.death_weight is not None or other.death_weight is not None:
            mine = self.deaths if self.death_weight is None else self.death_weight
            theirs = other.deaths if other.death_weight is None else other.death_weight
            death_weight = mine + theirs
        return RiskSetSums(
            self.time,
            self.deaths + other.deaths,
            self.x_death + other.x_death,
            self.s0 + other.s0,
            self.s1 + other.s1,
            self.d0 + other.d0,
            self.d1 + other.d1,
            death_weight,
        )


CoxTerms = Terms
"""The partial log-likelihood with its gradient and Hessian at one coefficient vector
(the generic :class:`pht.algorithms.optimize.Terms`)."""


@dataclass(frozen=True)
class FirstOrder:
    """What the first-order sums give: log-likelihood, gradient, and most of the Hessian.

    ``hessian = outer - curvature``, where ``curvature = sum_t (w1 S2 - w2 D2)`` is
    linear in the second-order sums and is added up from
    :meth:`SortedRows.curvature` (per station, given ``w1`` and ``w2``).
    """

    loglik: float
    gradient: FloatArray
    outer: FloatArray
    time: FloatArray
    w1: FloatArray
    w2: FloatArray

    def terms(self, curvature: FloatArray) -> CoxTerms:
        """Complete the terms with the summed curvature."""
        return CoxTerms(self.loglik, self.gradient, self.outer - curvature)


class SortedRows:
    """A station's complete cases sorted by time once, for many evaluations.

    Parameters
    ----------
    time, event : durations and 0/1 event indicators
    x : (n, p) covariate matrix (dummy-coded), already centred as agreed
    weights : optional (n,) case weights, finite and > 0 (None: all 1, unweighted)
    """

    def __init__(
        self,
        time: FloatArray,
        event: FloatArray,
        x: FloatArray,
        weights: FloatArray | None = None,
    ) -> None:
        time = np.asarray(time, dtype=np.float64)
        event = np.asarray(event, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        if weights is not None:
            weights = case_weights(weights, time.size)
        if time.size > 1 and np.any(time[1:] < time[:-1]):
            order = np.argsort(time, kind="stable")
            time, event, x = time[order], event[order], x[order]
            if weights is not None:
                weights = weights[order]
        # already in order (the station sorts once): kept as they are, not copied
        self.time, self.event = time, event
        self.x = np.ascontiguousarray(x)
        self.weights = weights
        self.event_times = np.unique(self.time[self.event == 1])
        self._death_rows = np.flatnonzero(self.event == 1)
        self._cached: tuple[bytes, tuple[Any, ...]] | None = None
        self._weights: tuple[bytes, FloatArray] | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.time.size)

    @property
    def p(self) -> int:
        """Number of covariates."""
        return int(self.x.shape[1])

    def _w(self, beta: FloatArray) -> FloatArray:
        """``v exp(x'b)`` per row, ``v`` the case weight (cached for the last ``b``)."""
        key = np.asarray(beta, dtype=np.float64).tobytes()
        if self._weights is None or self._weights[0] != key:
            risk = np.exp(self.x @ beta)
            if self.weights is not None:
                risk *= self.weights
            self._weights = (key, risk)
        return self._weights[1]

    def _layout(self, times: FloatArray) -> tuple[Any, ...]:
        """Row positions for evaluation ``times`` (cached: they do not change)."""
        key = times.tobytes()
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]  # type: ignore[no-any-return]
        start = np.searchsorted(self.time, times, side="left")
        upto = np.searchsorted(times, self.time, side="right")  # times <= each row's
        rows = self._death_rows
        pos = np.searchsorted(times, self.time[rows])
        hit = (pos < times.size) & (
            times[np.minimum(pos, times.size - 1)] == self.time[rows]
        )
        rows, pos = rows[hit], pos[hit]
        present, first = np.unique(pos, return_index=True)
        m = times.size
        deaths = np.bincount(pos, minlength=m).astype(np.float64)
        x_death = np.zeros((m, self.p))
        death_weight = None
        if self.weights is None:
            if rows.size:
                x_death[present] = np.add.reduceat(self.x[rows], first, axis=0)
        else:
            v = self.weights[rows]
            death_weight = np.bincount(pos, weights=v, minlength=m)
            if rows.size:
                x_death[present] = np.add.reduceat(
                    self.x[rows] * v[:, None], first, axis=0
                )
        layout = (start, upto, rows, pos, present, first, deaths, x_death, death_weight)
        self._cached = (key, layout)
        return layout

    def death_sums(
        self, weight: FloatArray, at: FloatArray | None = None
    ) -> FloatArray:
        """``sum_t weight(t) X_D(t)``: the (case-weighted) deaths' covariates by time.

        ``weight`` holds one value per time of ``at`` (default: own event times);
        deaths at a time not in ``at`` are left out, as in :meth:`sums`.
        """
        times = self.event_times if at is None else np.asarray(at, dtype=np.float64)
        x_death = self._layout(times)[7]
        return np.asarray(np.asarray(weight, dtype=np.float64) @ x_death)

    def counts(self, at: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        """Deaths per time and the deaths' (case-weighted) covariate sum at ``at``.

        Neither depends on ``b``.
        """
        times = self.event_times if at is None else np.asarray(at, dtype=np.float64)
        layout = self._layout(times)
        return layout[6], layout[7].sum(axis=0)

    def sums(self, beta: FloatArray, at: FloatArray | None = None) -> RiskSetSums:
        """First-order risk-set and death sums at ``at`` (default: own event times)."""
        times = self.event_times if at is None else np.asarray(at, dtype=np.float64)
        start, _, rows, _, present, first, deaths, x_death, death_weight = self._layout(
            times
        )
        x, p, m = self.x, self.p, times.size
        w = self._w(beta)
        # per column (w, then w x_j): suffix sums (rows with time >= t are
        # rows[start(t):], summed from the end so small late risk sets keep full
        # precision) and sums over the deaths at each time; one n-vector at a time
        s0, s1 = np.empty(m), np.empty((m, p))
        d0, d1 = np.zeros(m), np.zeros((m, p))
        for j in range(-1, p):
            column = w if j < 0 else x[:, j] * w
            suffix = np.empty(column.size + 1)
            suffix[-1] = 0.0
            suffix[:-1] = np.cumsum(column[::-1])[::-1]
            at_death = np.add.reduceat(column[rows], first) if rows.size else 0.0
            if j < 0:
                s0[:] = suffix[start]
                d0[present] = at_death
            else:
                s1[:, j] = suffix[start]
                d1[present, j] = at_death
        return RiskSetSums(times, deaths, x_death, s0, s1, d0, d1, death_weight)

    def curvature(
        self, beta: FloatArray, at: FloatArray, w1: FloatArray, w2: FloatArray
    ) -> FloatArray:
        """``sum_t (w1(t) S2(t) - w2(t) D2(t))`` over the times ``at``, as one Gram matrix.

        A row with time ``t_i`` is in the risk set of every time ``t <= t_i``, so the sum
        over times of ``w1(t) S2(t)`` is ``sum_i W1(t_i) w_i x_i x_i'`` with ``W1`` the
        running sum of ``w1``; a death at an evaluation time ``t`` also subtracts
        ``w2(t)``. All weights are sums of positive terms, so nothing cancels.
        """
        times = np.asarray(at, dtype=np.float64)
        _, upto, rows, pos = self._layout(times)[:4]
        running = np.concatenate(([0.0], np.cumsum(np.asarray(w1, dtype=np.float64))))
        weight = running[upto]
        if rows.size:
            weight[rows] -= np.asarray(w2, dtype=np.float64)[pos]
        weight *= self._w(beta)
        gram: FloatArray = np.zeros((self.p, self.p))
        for lo in range(0, self.n, _CHUNK):  # in blocks: no n x p temporary
            block = self.x[lo : lo + _CHUNK]
            gram += (block * weight[lo : lo + _CHUNK, None]).T @ block
        return (gram + gram.T) / 2

    def terms(self, beta: FloatArray, ties: Ties) -> CoxTerms:
        """This station's own (stratum's) log-likelihood, gradient and Hessian."""
        first = first_order(self.sums(beta), beta, ties)
        return first.terms(self.curvature(beta, first.time, first.w1, first.w2))


@dataclass(frozen=True)
class TimeWeighted:
    """The pooled parts of sums over event times weighted by ``g(t)`` and ``g(t)^2``.

    With ``m_l = (S1 - a_l D1) / c_l`` (see the module docstring) and
    ``V(t) = sum_l [(S2 - a_l D2)/c_l - m_l m_l']``:

    * ``means = sum_t g(t) sum_l m_l(t)``: the score ``U_g = sum_t g(t) (X_D(t) -
      sum_l m_l(t))`` is ``sum_t g(t) X_D(t)`` (:meth:`SortedRows.death_sums`) minus
      this;
    * ``outer_g = sum_t g sum_l m_l m_l'`` and ``outer_gg`` with ``g^2``: the
      quadratic parts of ``sum_t g V(t)`` and ``sum_t g^2 V(t)``, whose linear parts
      are :meth:`SortedRows.curvature` with the weights ``g w1, g w2`` and
      ``g^2 w1, g^2 w2``.
    """

    means: FloatArray
    outer_g: FloatArray
    outer_gg: FloatArray
    w1: FloatArray
    w2: FloatArray


def _per_time(
    sums: RiskSetSums, ties: Ties
) -> tuple[npt.NDArray[np.bool_], float, tuple[FloatArray, ...]]:
    """Times with deaths, ``sum log c`` and the tie weights ``w1, w2, u0, u1, u2``.

    With case weights each time's terms are scaled by the deaths' mean weight.
    """
    keep = sums.deaths > 0
    d = sums.deaths[keep].astype(np.int64)
    scale = None
    if sums.death_weight is not None:
        scale = sums.death_weight[keep] / sums.deaths[keep]
    log_c, weights = _tie_weights(
        d, sums.s0[keep], sums.d0[keep], ties == "efron", scale
    )
    return keep, log_c, weights


def _outer(
    weight: FloatArray, u: tuple[FloatArray, ...], s1: FloatArray, d1: FloatArray
) -> FloatArray:
    """``sum_t weight(t) sum_l m_l m_l'`` from the per-time sums ``u0, u1, u2``."""
    u0, u1, u2 = (weight * part for part in u)
    cross = np.einsum("t,ti,tj->ij", u1, s1, d1)
    return np.asarray(
        np.einsum("t,ti,tj->ij", u0, s1, s1)
        - cross
        - cross.T
        + np.einsum("t,ti,tj->ij", u2, d1, d1)
    )


def time_weighted(sums: RiskSetSums, ties: Ties, g: FloatArray) -> TimeWeighted:
    """The pooled parts of the ``g``-weighted score and information (one per time).

    ``g`` holds one value per time of ``sums``. Used by the proportional-hazards
    score test (:mod:`pht.algorithms.cox_checks`).
    """
    keep, _, (w1, w2, u0, u1, u2) = _per_time(sums, ties)
    gk = np.asarray(g, dtype=np.float64)[keep]
    s1, d1 = sums.s1[keep], sums.d1[keep]
    means = (gk * w1) @ s1 - (gk * w2) @ d1
    full_w1, full_w2 = np.zeros(sums.time.size), np.zeros(sums.time.size)
    full_w1[keep], full_w2[keep] = w1, w2
    return TimeWeighted(
        means=np.asarray(means, dtype=np.float64),
        outer_g=_outer(gk, (u0, u1, u2), s1, d1),
        outer_gg=_outer(gk * gk, (u0, u1, u2), s1, d1),
        w1=full_w1,
        w2=full_w2,
    )


def first_order(sums: RiskSetSums, beta: FloatArray, ties: Ties) -> FirstOrder:
    """Reduce first-order sums to the log-likelihood, gradient and outer Hessian part.

    The sums over ``l`` are taken on scalars first: with ``c_l = S0 - a_l D0`` only
    the per-time weights ``w1 = sum 1/c_l``, ``w2 = sum a_l/c_l`` and
    ``sum a_l^k/c_l^2`` are needed, so the cost is O(deaths + times * p^2), not
    O(deaths * p^2). ``w1`` and ``w2`` are returned on all of ``sums.time`` (zero
    where nobody died) for :meth:`SortedRows.curvature`.
    """
    keep, log_c, (w1, w2, u0, u1, u2) = _per_time(sums, ties)
    s1, d1 = sums.s1[keep], sums.d1[keep]
    x_death = sums.x_death.sum(axis=0)  # zero rows where nobody died
    loglik = float(x_death @ beta - log_c)
    gradient = x_death - (w1 @ s1 - w2 @ d1)
    outer = _outer(np.ones(w1.size), (u0, u1, u2), s1, d1)
    full_w1, full_w2 = np.zeros(sums.time.size), np.zeros(sums.time.size)
    full_w1[keep], full_w2[keep] = w1, w2
    return FirstOrder(loglik, gradient, outer, sums.time, full_w1, full_w2)


def _tie_weights(
    d: npt.NDArray[np.int64],
    s0: FloatArray,
    d0: FloatArray,
    efron: bool,
    scale: FloatArray | None = None,
) -> tuple[float, tuple[FloatArray, ...]]:
    """Efron's (or Breslow's) per-time weights and the sum of ``log c``.

    Per time, the sums over ``l`` of ``1/c``, ``a/c``, ``1/c^2``, ``a/c^2`` and
    ``a^2/c^2`` with ``c_l = S0 - a_l D0``. One entry per (event time, ``l``) with
    ``a_l = l / d`` (Efron) or 0 (Breslow), expanded a block of times at a time so
    that memory stays bounded however many patients died. ``scale`` (the deaths'
    mean case weight per time) multiplies every per-time sum and its ``log c``.
    """
    m = d.size
    sums = tuple(np.zeros(m) for _ in range(5))
    log_c = 0.0
    ends = np.cumsum(d)
    lo = 0
    while lo < m:
        done = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, done + _CHUNK, side="right")))
        db = d[lo:hi]
        which = np.repeat(np.arange(hi - lo), db)
        if efron:
            a = (np.arange(which.size) - np.repeat(np.cumsum(db) - db, db)) / np.repeat(
                db, db
            )
        else:
            a = np.zeros(which.size)
        c = s0[lo:hi][which] - a * d0[lo:hi][which]
        inv = 1.0 / c
        inv2 = inv * inv
        for out, values in zip(
            sums, (inv, a * inv, inv2, a * inv2, a * a * inv2), strict=True
        ):
            out[lo:hi] = np.bincount(which, weights=values, minlength=hi - lo)
        if scale is None:
            log_c += float(np.sum(np.log(c)))
        else:
            log_c += float(np.sum(scale[lo:hi][which] * np.log(c)))
        lo = hi
    if scale is not None:
        sums = tuple(part * scale for part in sums)
    return log_c, sums


def pooled_terms(
    parts: Sequence[SortedRows], beta: FloatArray, ties: Ties, times: FloatArray
) -> CoxTerms:
    """Pooled-mode terms over several stations' rows (what the federated rounds do)."""
    sums = [part.sums(beta, times) for part in parts]
    total = sums[0]
    for part_sums in sums[1:]:
        total = total + part_sums
    first = first_order(total, beta, ties)
    curvature = sum(
        (part.curvature(beta, times, first.w1, first.w2) for part in parts),
        np.zeros((len(beta), len(beta))),
    )
    return first.terms(curvature)


def add_terms(parts: Sequence[CoxTerms]) -> CoxTerms:
    """Sum of per-station terms (the stratified log-likelihood)."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def case_weights(weights: npt.ArrayLike, n: int) -> FloatArray:
    """Check case weights: ``n`` finite numbers > 0, as float64.

    R ``coxph`` and lifelines refuse weights <= 0 too: a zero weight would still count
    in Efron's ``d``, so a row that should not count is dropped instead.
    """
    v = np.asarray(weights, dtype=np.float64)
    if v.shape != (n,):
        raise DataError(
            f"Cox case weights: expected {n} values (one per row), got shape "
            f"{v.shape}; pass one weight per row"
        )
    bad = ~np.isfinite(v) | (v <= 0)
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"Cox case weights must be finite and > 0: {int(bad.sum())} of {n} rows "
            f"are not (row {first}: {float(v[first])}); drop those rows or truncate "
            "the weights"
        )
    return v


# -- design: covariates agreed across stations ------------------------------------------
@dataclass(frozen=True)
class Covariate:
    """One study covariate: numeric, or categorical with levels and a reference."""

    column: str
    levels: tuple[str, ...] = ()
    reference: str | None = None

    @property
    def categorical(self) -> bool:
        """Whether the covariate is dummy-coded."""
        return self.reference is not None

    @property
    def names(self) -> list[str]:
        """Names of the model parameters (``stage[T.IV-M1c]`` for dummies)."""
        if not self.categorical:
            return [self.column]
        return [f"{self.column}[T.{lv}]" for lv in self.levels if lv != self.reference]


@dataclass(frozen=True)
class Design:
    """The agreed design: covariates in order and the centre of each parameter."""

    covariates: tuple[Covariate, ...]
    centre: tuple[float, ...]

    @property
    def names(self) -> list[str]:
        """All parameter names in order."""
        return [name for c in self.covariates for name in c.names]

    @property
    def p(self) -> int:
        """Number of parameters."""
        return len(self.names)


def design_matrix(columns: dict[str, np.ndarray], design: Design) -> FloatArray:
    """Numeric covariates as they are, categorical ones as 0/1 dummies, centred.

    ``columns`` maps column name to its values (numbers, or the values of categorical
    covariates, compared by their canonical labels: :mod:`pht.algorithms.levels`).
    """
    blocks: list[FloatArray] = []
    for cov in design.covariates:
        values = columns[cov.column]
        if not cov.categorical:
            blocks.append(np.asarray(values, dtype=np.float64)[:, None])
            continue
        labels = level_labels(values)[0]
        for level in cov.levels:
            if level != cov.reference:
                blocks.append((labels == level).astype(np.float64)[:, None])
    if not blocks:
        raise ValueError("a Cox model needs at least one covariate")
    x = np.hstack(blocks)
    del blocks
    x -= np.asarray(design.centre, dtype=np.float64)[None, :]
    return x


# -- Newton-Raphson and the result -----------------------------------------------------
NewtonResult = Fit
"""The maximiser found by :func:`pht.algorithms.optimize.newton`."""


def newton_raphson(
    evaluate: Callable[[FloatArray], CoxTerms],
    p: int,
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
    max_halvings: int = 30,
) -> NewtonResult:
    """Maximise a partial log-likelihood given a function returning its terms.

    The rule is :func:`pht.algorithms.optimize.newton` (step-halving, convergence when
    the next step would move no coefficient by ``tol``); each call of ``evaluate`` is
    one federated round.
    """
    return maximise(evaluate, p, max_iter=max_iter, tol=tol, max_halvings=max_halvings)


@dataclass(frozen=True)
class Coefficient:
    """One coefficient of a fitted Cox model with its Wald statistics."""

    name: str
    coef: float
    se: float
    hr: float
    ci_lower: float
    ci_upper: float
    z: float
    p_value: float


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model: coefficients, likelihoods, the LR test, how the fit went."""

    coefficients: tuple[Coefficient, ...]
    loglik: float
    null_loglik: float
    lr_statistic: float
    lr_df: int
    lr_p_value: float
    covariance: FloatArray
    iterations: int
    step_halvings: int
    converged: bool


def cox_result(design: Design, fit: Fit, alpha: float = 0.05) -> CoxResult:
    """The fitted model's Wald statistics, hazard ratios and likelihood-ratio test.

    SEs from the observed information, hazard-ratio CIs at ``1 - alpha``, the LR test
    against the null model.

    Matches lifelines ``CoxPHFitter.summary`` and R ``summary(coxph)``.
    """
    cov = np.linalg.inv(-fit.terms.hessian)
    se = np.sqrt(np.diag(cov))
    z_crit = z_critical(alpha)
    coefficients = []
    for i, name in enumerate(design.names):
        coef = float(fit.beta[i])
        z = coef / float(se[i])
        coefficients.append(
            Coefficient(
                name=name,
                coef=coef,
                se=float(se[i]),
                hr=math.exp(coef),
                ci_lower=math.exp(coef - z_crit * se[i]),
                ci_upper=math.exp(coef + z_crit * se[i]),
                z=z,
                p_value=normal_two_sided_p(z),
            )
        )
    lr = 2 * (fit.terms.loglik - fit.null_loglik)
    return CoxResult(
        coefficients=tuple(coefficients),
        loglik=fit.terms.loglik,
        null_loglik=fit.null_loglik,
        lr_statistic=lr,
        lr_df=design.p,
        lr_p_value=chi2_sf(lr, design.p),
        covariance=np.asarray(cov, dtype=np.float64),
        iterations=fit.iterations,
        step_halvings=fit.step_halvings,
        converged=fit.converged,
    )
