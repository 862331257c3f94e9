"""Robust (sandwich) variance of a case-weighted Cox model, summed over stations.

A Cox fit with case weights ``v`` (inverse-probability weights, say) maximises the
weighted partial likelihood of :mod:`pht.algorithms.cox` (``SortedRows(weights=)``).
Its model-based covariance ``H^-1`` (``H`` the observed information) treats the weights
as counts; the robust variance of Lin & Wei (1989) does not::

    V_robust = H^-1 (sum_i v_i^2 r_i r_i') H^-1

with ``r_i`` patient ``i``'s score residual (Therneau & Grambsch 2000, sec. 7.2):
``sum_i v_i r_i`` is the score. Per event time ``t`` with ``d`` deaths, mean death
weight ``vbar``, ``c_l = S0 - a_l D0`` and ``m_l = (S1 - a_l D1) / c_l`` as in
:mod:`pht.algorithms.cox` (``a_l = l / d`` for Efron, 0 for Breslow)::

    r_i = delta_i (x_i - (1/d) sum_l m_l(t_i))
          - e_i sum_{t <= t_i} vbar sum_l g_il(t) (x_i - m_l(t)) / c_l(t)

where ``e_i = exp(x_i'b)`` and ``g_il = 1 - a_l`` at the time patient ``i`` dies (an
Efron death is only partly at risk in the later terms of its own tie) and 1 otherwise.
This is R ``coxph(weights = v, robust = TRUE)`` (``residuals(fit, "dfbeta")``) for
both tie rules. lifelines ``CoxPHFitter(weights_col=, robust=True)`` uses the same
formula but ignores ties: it agrees when no two rows of a stratum share a time and
differs when they do (by 1 to 3% on ``load_rossi``, and with the order of tied rows).

The meat is a sum over patients of ``p x p`` matrices, and every ``r_i`` needs only the
per-time sums of its own risk sets, so:

* **stratified** (a baseline hazard per station): each station computes its own
  :func:`station_meat`; the orchestrator adds them and forms :func:`sandwich`;
* **pooled** (one baseline hazard): the per-time pieces come from the pooled
  :class:`~pht.algorithms.cox.RiskSetSums` (:func:`score_times`), are sent back to the
  stations and each returns :func:`meat` at them.

Only ``p x p`` sums leave a station. :func:`fit_weighted_cox` runs the rounds over
stations' rows held in memory, as the federated train does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pht.algorithms.cox import (
    _CHUNK,
    Coefficient,
    CoxTerms,
    FloatArray,
    RiskSetSums,
    SortedRows,
    Ties,
    _per_time,
    add_terms,
    pooled_terms,
)
from pht.algorithms.numeric import normal_two_sided_p, z_critical
from pht.algorithms.optimize import maximise
from pht.errors import ConvergenceError, DataError


@dataclass(frozen=True)
class ScoreTimes:
    """Per-time pieces of the score residuals, from (pooled or own) risk-set sums.

    With ``vbar`` the deaths' mean case weight and sums over ``l`` as in the module
    docstring (zero at times without deaths):

    Attributes
    ----------
    time : (m,) the evaluation times
    hazard : (m,) ``vbar sum_l 1/c_l``
    mean_hazard : (m, p) ``vbar sum_l m_l / c_l``
    death_hazard : (m,) ``vbar sum_l (1 - a_l)/c_l`` (for the deaths at that time)
    death_mean_hazard : (m, p) ``vbar sum_l (1 - a_l) m_l / c_l``
    death_mean : (m, p) ``(1/d) sum_l m_l``
    """

    time: FloatArray
    hazard: FloatArray
    mean_hazard: FloatArray
    death_hazard: FloatArray
    death_mean_hazard: FloatArray
    death_mean: FloatArray


def score_times(sums: RiskSetSums, ties: Ties) -> ScoreTimes:
    """The per-time pieces of the score residuals at the sums' times.

    With ``u_k = vbar sum_l a_l^k / c_l^2`` (from the tie weights of
    :mod:`pht.algorithms.cox`), ``sum_l m_l / c_l = u_0 S1 - u_1 D1`` and
    ``sum_l (1 - a_l) m_l / c_l = (u_0 - u_1) S1 - (u_1 - u_2) D1``.
    """
    keep, _, (w1, w2, u0, u1, u2) = _per_time(sums, ties)
    s1, d1 = sums.s1[keep], sums.d1[keep]
    weight = sums.deaths if sums.death_weight is None else sums.death_weight
    m, p = sums.time.size, sums.p
    hazard, death_hazard = np.zeros(m), np.zeros(m)
    mean_hazard, death_mean_hazard = np.zeros((m, p)), np.zeros((m, p))
    death_mean = np.zeros((m, p))
    hazard[keep] = w1
    death_hazard[keep] = w1 - w2
    mean_hazard[keep] = u0[:, None] * s1 - u1[:, None] * d1
    death_mean_hazard[keep] = (u0 - u1)[:, None] * s1 - (u1 - u2)[:, None] * d1
    # (1/d) sum_l m_l: the tie weights carry vbar = weight / d, so divide by weight
    death_mean[keep] = (w1[:, None] * s1 - w2[:, None] * d1) / weight[keep][:, None]
    return ScoreTimes(
        sums.time, hazard, mean_hazard, death_hazard, death_mean_hazard, death_mean
    )


def score_residuals(
    rows: SortedRows, beta: FloatArray, pieces: ScoreTimes
) -> FloatArray:
    """Each row's score residual ``r_i`` (unweighted), in ``rows``' sorted order.

    ``sum_i v_i r_i`` is the score at ``beta`` when ``pieces`` come from the same
    stratum's sums; deaths at a time not in ``pieces.time`` are left out, as in
    :meth:`~pht.algorithms.cox.SortedRows.sums`. Row-level: it never leaves a station.
    """
    return np.vstack(list(_residual_blocks(rows, beta, pieces)))


def meat(rows: SortedRows, beta: FloatArray, pieces: ScoreTimes) -> FloatArray:
    """``sum_i v_i^2 r_i r_i'`` over a station's rows (``p x p``), in blocks of rows."""
    beta = np.asarray(beta, dtype=np.float64)
    total: FloatArray = np.zeros((rows.p, rows.p))
    lo = 0
    for block in _residual_blocks(rows, beta, pieces):
        hi = lo + block.shape[0]
        scaled = block if rows.weights is None else block * rows.weights[lo:hi, None]
        total += scaled.T @ scaled
        lo = hi
    return (total + total.T) / 2


def station_meat(rows: SortedRows, beta: FloatArray, ties: Ties) -> FloatArray:
    """A stratum's own meat (stratified mode): its risk sets are its own rows."""
    beta = np.asarray(beta, dtype=np.float64)
    return meat(rows, beta, score_times(rows.sums(beta), ties))


def _residual_blocks(
    rows: SortedRows, beta: FloatArray, pieces: ScoreTimes
) -> list[FloatArray]:
    """The score residuals, ``_CHUNK`` rows at a time (no ``n x p`` temporaries)."""
    times = np.asarray(pieces.time, dtype=np.float64)
    m, p = times.size, rows.p
    if m == 0:
        return [np.zeros((rows.n, p))]
    # running sums over the times <= each row's time (index 0: no time yet)
    hazard = np.concatenate(([0.0], np.cumsum(pieces.hazard)))
    mean_hazard = np.vstack((np.zeros((1, p)), np.cumsum(pieces.mean_hazard, axis=0)))
    upto = np.searchsorted(times, rows.time, side="right")
    at = np.maximum(upto - 1, 0)  # a death's own time, when it is one of ``times``
    dies = (rows.event == 1) & (upto > 0)
    dies &= times[at] == rows.time
    # a death's own time: it is partly at risk there (1 - a_l), not fully
    own = pieces.hazard - pieces.death_hazard
    own_mean = pieces.mean_hazard - pieces.death_mean_hazard
    blocks = []
    for lo in range(0, rows.n, _CHUNK):
        hi = min(lo + _CHUNK, rows.n)
        x = rows.x[lo:hi]
        e = np.exp(x @ beta)
        k, i, dead = upto[lo:hi], at[lo:hi], dies[lo:hi]
        r = -e[:, None] * (x * hazard[k][:, None] - mean_hazard[k])
        if np.any(dead):
            j = i[dead]
            xd, ed = x[dead], e[dead][:, None]
            r[dead] += xd - pieces.death_mean[j]
            r[dead] += ed * (xd * own[j][:, None] - own_mean[j])
        blocks.append(r)
    return blocks


def model_covariance(information: FloatArray) -> FloatArray:
    """``I^-1``, the model-based covariance from the summed information ``I = -H``."""
    try:
        return np.asarray(np.linalg.inv(np.asarray(information, dtype=np.float64)))
    except np.linalg.LinAlgError as err:
        raise DataError(
            "the Cox information matrix is singular: a covariate is constant or a "
            "combination of others (within strata); drop it from the design"
        ) from err


def sandwich(information: FloatArray, meat_sum: FloatArray) -> FloatArray:
    """``I^-1 M I^-1`` from the summed information ``I = -H`` and the summed meat."""
    bread = model_covariance(information)
    cov = bread @ np.asarray(meat_sum, dtype=np.float64) @ bread
    return np.asarray((cov + cov.T) / 2, dtype=np.float64)


# -- the rounds over stations' rows in memory -------------------------------------------
@dataclass(frozen=True)
class WeightedCoxResult:
    """A case-weighted Cox fit with model-based and robust (sandwich) statistics.

    ``coefficients`` use the robust covariance (what to report for inverse-probability
    weights); ``model_coefficients`` the inverse observed information (right for
    frequency weights). Both match R ``coxph(weights = , robust = TRUE)``
    (``fit$var``, ``fit$naive.var``).
    """

    coefficients: tuple[Coefficient, ...]
    model_coefficients: tuple[Coefficient, ...]
    robust_covariance: FloatArray
    model_covariance: FloatArray
    loglik: float
    null_loglik: float
    ties: Ties
    stratified: bool
    iterations: int
    step_halvings: int


def wald(
    names: Sequence[str], beta: FloatArray, cov: FloatArray, alpha: float = 0.05
) -> tuple[Coefficient, ...]:
    """Wald statistics and hazard ratios with ``1 - alpha`` CIs from a covariance."""
    se = np.sqrt(np.diag(cov))
    z_crit = z_critical(alpha)
    out = []
    for name, coef, s in zip(
        names, np.asarray(beta, dtype=np.float64), se, strict=True
    ):
        z = float(coef) / float(s)
        out.append(
            Coefficient(
                name=name,
                coef=float(coef),
                se=float(s),
                hr=math.exp(coef),
                ci_lower=math.exp(coef - z_crit * s),
                ci_upper=math.exp(coef + z_crit * s),
                z=z,
                p_value=normal_two_sided_p(z),
            )
        )
    return tuple(out)


def fit_weighted_cox(
    parts: Sequence[SortedRows],
    names: Sequence[str] | None = None,
    *,
    ties: Ties = "efron",
    stratified: bool = True,
    alpha: float = 0.05,
    max_iter: int = 50,
) -> WeightedCoxResult:
    """Fit a (case-weighted) Cox model over stations' rows held in memory.

    Newton on the summed terms (stratified: each station's own; pooled: risk-set sums
    added per time at the union of event times), then at the converged point the
    information and the meat summed over stations, and the sandwich. Equals R
    ``coxph(Surv(time, event) ~ x + strata(station), weights = v, robust = TRUE)``
    (without ``strata`` when ``stratified`` is false) on the concatenated rows.

    Examples
    --------
    lifelines ``load_rossi`` (``tests/reference/rossi.csv``), one station, unweighted;
    R gives the same numbers:

    >>> import pandas as pd
    >>> d = pd.read_csv("tests/reference/rossi.csv")
    >>> x = d[["fin", "age", "prio"]].to_numpy(float)
    >>> rows = SortedRows(d["week"], d["arrest"], x - x.mean(0))
    >>> fit = fit_weighted_cox([rows], ["fin", "age", "prio"])
    >>> fin = fit.coefficients[0]
    >>> round(fin.coef, 4), round(fit.model_coefficients[0].se, 4), round(fin.se, 4)
    (-0.347, 0.1902, 0.1911)
    """
    if not parts:
        raise ValueError("fit at least one station's rows")
    p = parts[0].p
    labels = list(names) if names is not None else [f"x{j}" for j in range(p)]
    if len(labels) != p or any(part.p != p for part in parts):
        raise ValueError(f"{len(labels)} names for stations with {p} covariates")
    times = np.unique(np.concatenate([part.event_times for part in parts]))

    def evaluate(beta: FloatArray) -> CoxTerms:
        if stratified:
            return add_terms([part.terms(beta, ties) for part in parts])
        return pooled_terms(parts, beta, ties, times)

    fit = maximise(evaluate, p, max_iter=max_iter)
    if not fit.converged:
        raise ConvergenceError(
            f"the weighted Cox fit did not converge in {fit.iterations} Newton steps: "
            "a covariate may separate the events (monotone likelihood) or the weights "
            "may be extreme; check the covariates or truncate the weights"
        )
    beta = fit.beta
    if stratified:
        meat_sum = sum(
            (station_meat(part, beta, ties) for part in parts), np.zeros((p, p))
        )
    else:
        total = parts[0].sums(beta, times)
        for part in parts[1:]:
            total = total + part.sums(beta, times)
        pieces = score_times(total, ties)
        meat_sum = sum((meat(part, beta, pieces) for part in parts), np.zeros((p, p)))
    information = -fit.terms.hessian
    model_cov = model_covariance(information)
    robust_cov = sandwich(information, meat_sum)
    return WeightedCoxResult(
        coefficients=wald(labels, beta, robust_cov, alpha),
        model_coefficients=wald(labels, beta, model_cov, alpha),
        robust_covariance=robust_cov,
        model_covariance=model_cov,
        loglik=fit.terms.loglik,
        null_loglik=fit.null_loglik,
        ties=ties,
        stratified=stratified,
        iterations=fit.iterations,
        step_halvings=fit.step_halvings,
    )
