"""Orchestrator side of a federated GLM: origin, Newton path, pooling, results.

The station side, with the families' formulas, is :mod:`pht.algorithms.glm`.

Start and replay. Newton starts at the *origin*: the intercept at the null model's
estimate (``g(sum w y / sum w)``, or its closed form with an offset) and every other
coefficient zero (:func:`origin`, from the pooled round-0 :class:`GlmSums`). This is
the null model itself, so the fit's first log-likelihood is the null one, and it
keeps the log and identity binomial links inside ``0 < mu < 1`` where zero would
not. A station replays :class:`pht.algorithms.optimize.NewtonPath` from the same
origin, recomputed from the stations' signed design replies (their
:class:`GlmSums`). Outside the parameter space (a log-binomial ``mu >= 1``) the
log-likelihood is ``-inf`` and Newton halves the step.

At the converged ``b`` one more evaluation, :meth:`GlmRows.pieces`, gives what the
standard errors and the fit statistics need, as statsmodels computes them for
``GLM(...).fit()`` (IRLS):

* model-based covariance ``scale * F^-1`` with ``F`` the Fisher information; the
  scale is 1 for binomial and Poisson and Pearson's chi-squared over ``wnobs - p``
  for gaussian (``wnobs`` the sum of the frequency weights);
* ``cov_type="HC0"``: ``H^-1 (sum_i s_i s_i' / f_i) H^-1`` with ``H`` the observed
  Hessian and ``s_i`` row ``i``'s score (the scale cancels);
* ``cov_type="cluster"`` with the station as the group: ``c H^-1 (sum_k u_k u_k')
  H^-1``, ``u_k`` station ``k``'s score sum and statsmodels' default correction
  ``c = G / (G - 1) * (N - 1) / (N - p)`` (``G`` stations, ``N`` rows). With few
  stations this estimator is unreliable (Cameron & Miller 2015 ask for dozens of
  clusters); it is offered, not the default;
* deviance, null deviance, log-likelihood (gaussian: concentrated, with the scale
  ``deviance / wnobs``), null log-likelihood (at the model's scale), AIC
  ``-2 llf + 2 p``.

Errors: a covariate whose coefficient diverges in a binomial model is named as
perfect separation (:class:`pht.errors.DataError`); other non-convergence is a
:class:`pht.errors.ConvergenceError` (for the log link, fitted risks reaching 1);
collinear or constant covariates are named before the fit goes on.

Example
-------
>>> import numpy as np
>>> from pht.algorithms.glm import GlmRows, glm_model
>>> x = np.column_stack([np.ones(6), [0.0, 0, 0, 1, 1, 1]])
>>> model = glm_model("poisson")
>>> parts = [GlmRows(model, x[:3], [1.0, 2, 3]), GlmRows(model, x[3:], [2.0, 4, 6])]
>>> fit = fit_glm(parts, ["Intercept", "exposed"], cov_type="HC0")
>>> round(fit.coefficients[1].exp_coef, 6)  # rate ratio 12 / 6
2.0
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pht.algorithms.glm import (
    Family,
    GlmModel,
    GlmPieces,
    GlmRows,
    GlmSums,
    Link,
)
from pht.algorithms.numeric import dependent_columns, normal_two_sided_p, z_critical
from pht.algorithms.optimize import Answer, Ask, Fit, Terms, Value, maximise, newton
from pht.errors import ConfigError, ConvergenceError, DataError

FloatArray = npt.NDArray[np.float64]
CovType = Literal["model", "HC0", "cluster"]

SEPARATION = 10.0
"""A binomial coefficient that moved more than this many log-odds (log-risk) units
per standard deviation of its covariate, in a fit that did not converge, diverges:
the covariate separates the outcome."""

RELATIVE = 0.1
"""...and at least this fraction of the farthest-moved coefficient's distance."""


@dataclass(frozen=True)
class PooledPieces:
    """The stations' :class:`GlmPieces` added, with the cluster (station) meat."""

    rows: int
    wnobs: float
    fisher: FloatArray
    score_outer: FloatArray
    cluster_outer: FloatArray
    clusters: int
    deviance: float
    pearson_chi2: float
    null_deviance: float
    null_loglik: float
    log_var_weights: float


def pool_pieces(pieces: Sequence[GlmPieces]) -> PooledPieces:
    """Add the stations' pieces; ``cluster_outer = sum_k u_k u_k'`` over stations."""
    if not pieces:
        raise ValueError("pool at least one station's pieces")
    p = pieces[0].fisher.shape[0]
    return PooledPieces(
        rows=sum(x.rows for x in pieces),
        wnobs=math.fsum(x.wnobs for x in pieces),
        fisher=sum((x.fisher for x in pieces), np.zeros((p, p))),
        score_outer=sum((x.score_outer for x in pieces), np.zeros((p, p))),
        cluster_outer=sum(
            (np.outer(x.score_sum, x.score_sum) for x in pieces), np.zeros((p, p))
        ),
        clusters=len(pieces),
        deviance=math.fsum(x.deviance for x in pieces),
        pearson_chi2=math.fsum(x.pearson_chi2 for x in pieces),
        null_deviance=math.fsum(x.null_deviance for x in pieces),
        null_loglik=math.fsum(x.null_loglik for x in pieces),
        log_var_weights=math.fsum(x.log_var_weights for x in pieces),
    )


# -- orchestrator side -------------------------------------------------------------------
def null_intercept(model: GlmModel, sums: GlmSums) -> float | None:
    """The null model's intercept from pooled sums; None when it needs a fit.

    Without an offset the null model's mean is ``sum w y / sum w`` for every family
    and link; with an offset the Poisson (log) and gaussian (identity) intercepts
    have closed forms, the binomial one does not (fit it with
    :meth:`GlmRows.null_terms`).

    Raises :class:`DataError` when the outcome is constant (no events, or only
    events) so that no model can be fitted.
    """
    if sums.weight <= 0:
        raise DataError("no rows with positive weight: nothing to fit")
    mean = sums.weighted_y / sums.weight
    if model.family == "binomial" and not 0 < mean < 1:
        which = "no events" if mean <= 0 else "only events"
        raise DataError(
            f"the outcome has {which} at the stations that took part; a binomial "
            "model cannot be fitted"
        )
    if model.family == "poisson" and mean <= 0:
        raise DataError(
            "the outcome has no events at the stations that took part; a Poisson "
            "model cannot be fitted"
        )
    if not sums.has_offset:
        return model.link_value(mean)
    if model.family == "poisson":
        return math.log(sums.weighted_y / sums.weighted_exp_offset)
    if model.family == "gaussian":
        return sums.weighted_y_minus_offset / sums.weight
    return None


def origin(model: GlmModel, sums: GlmSums, p: int) -> FloatArray:
    """Where Newton starts: the intercept (column 0) at ``g(mean y)``, slopes zero.

    ``g(sum w y / sum w)``, or the closed-form null intercept with an offset. Raises
    as :func:`null_intercept`.
    """
    start = np.zeros(p)
    null = null_intercept(model, sums)
    start[0] = model.link_value(sums.weighted_y / sums.weight) if null is None else null
    return start


def newton_from(
    start: FloatArray, *, max_iter: int = 50, tol: float = 1e-10, max_halvings: int = 30
) -> Generator[Ask, Answer, Fit]:
    """:func:`pht.algorithms.optimize.newton` started at ``start`` (the origin).

    The points asked for are those a station's :class:`NewtonPath` with the same
    ``origin`` replays.
    """
    return newton(
        start.size,
        max_iter=max_iter,
        tol=tol,
        max_halvings=max_halvings,
        start=start,
    )


def check_estimable(information: FloatArray, names: Sequence[str]) -> None:
    """Raise a :class:`DataError` naming constant or collinear covariates.

    ``information`` is the pooled Fisher information (minus the Hessian) at the
    origin, where every row has the same weight unless offsets or weights differ.
    """
    info = np.asarray(information, dtype=np.float64)
    scale = np.sqrt(np.clip(np.diag(info), 0, None))
    zero = [names[i] for i in range(len(names)) if scale[i] <= 1e-12 * scale.max()]
    if zero:
        raise DataError(
            f"covariate(s) {', '.join(zero)} do not vary over the rows that took part "
            "(or only where the weights are zero); drop them"
        )
    rest = dependent_columns(info / np.outer(scale, scale))
    if rest.size:
        raise DataError(
            f"covariate(s) {', '.join(names[i] for i in rest)} are collinear with "
            "other covariates; drop them or merge levels"
        )


def _quasi_separation(
    names: Sequence[str], beta: FloatArray, fit: Fit, what: str
) -> None:
    """A converged binomial fit whose coefficient sits on a flat ridge: name it.

    Under quasi-complete separation Newton "converges" with a coefficient tens of
    log-odds units out and a standard error thousands of times larger; the fit is
    not an estimate.
    """
    try:
        se = np.sqrt(np.clip(np.diag(np.linalg.inv(-fit.terms.hessian)), 0, None))
    except np.linalg.LinAlgError:
        return
    flat = [
        names[j]
        for j in range(1, len(names))
        if abs(beta[j]) > 10 and se[j] > 100 * abs(beta[j])
    ]
    if flat:
        raise DataError(
            f"(quasi-)perfect separation: {', '.join(flat)} predict(s) {what} "
            "(almost) perfectly, so the coefficient is not estimable; merge sparse "
            "levels, drop the covariate or restrict the population"
        )


def check_fit(
    model: GlmModel,
    names: Sequence[str],
    fit: Fit,
    start: FloatArray,
    information: FloatArray,
    what: str = "the outcome",
) -> None:
    """Raise the error that explains a failed fit, naming what to change.

    A binomial coefficient that diverged (moved more than :data:`SEPARATION`
    units per standard deviation of its covariate, the standard deviation read off
    ``information``, the Fisher information at the origin, and at least
    :data:`RELATIVE` times as far as the farthest one) is perfect separation
    (:class:`DataError` naming the covariates); any other failure to converge is
    a :class:`ConvergenceError`.
    """
    beta = np.asarray(fit.beta, dtype=np.float64)
    finite = bool(np.all(np.isfinite(beta)))
    if fit.converged and finite:
        if model.family == "binomial":
            _quasi_separation(names, beta, fit, what)
        return
    if model.family == "binomial" and finite:
        diag = np.clip(np.diag(np.asarray(information, dtype=np.float64)), 0, None)
        spread = np.sqrt(diag / diag[0]) if diag[0] > 0 else np.ones_like(diag)
        moved = np.abs(beta - start) * spread
        moved[0] = 0.0  # the intercept follows whatever diverges
        top = float(moved.max())
        # the separating direction: coefficients that moved far, and comparably to
        # the farthest (the others drift along with it)
        diverged = [
            names[j]
            for j in range(1, len(names))
            if moved[j] > SEPARATION and moved[j] >= RELATIVE * top
        ]
        if diverged:
            raise DataError(
                f"perfect separation: {', '.join(diverged)} predict(s) {what} "
                "(almost) perfectly, so the coefficient grows without bound; merge "
                "sparse levels or drop the covariate"
            )
    if model.family == "binomial" and model.link != "logit":
        bound = "1" if model.link == "log" else "0 or 1"
        raise ConvergenceError(
            f"the binomial {model.link}-link fit did not converge in "
            f"{fit.iterations} iterations: fitted risks reach the boundary ({bound});"
            " use the logit link (odds ratios) or a Poisson model with HC0 standard"
            " errors for risk ratios"
        )
    raise ConvergenceError(
        f"the {model.family} GLM did not converge in {fit.iterations} iterations; "
        "drop covariates, merge sparse levels or raise max_iter"
    )


@dataclass(frozen=True)
class GlmCoefficient:
    """One coefficient with its Wald statistics (normal, as statsmodels' GLM)."""

    name: str
    coef: float
    se: float
    z: float
    p_value: float
    ci_lower: float
    ci_upper: float
    exp_coef: float | None
    exp_ci_lower: float | None
    exp_ci_upper: float | None


@dataclass(frozen=True)
class GlmResult:
    """A fitted GLM: the coefficient table under ``cov_type`` and every covariance.

    ``exp_*`` in the table are the odds, risk or rate ratios named by ``effect``
    (None for identity links). ``cluster_covariance`` is None with one station.
    """

    family: Family
    link: Link
    effect: str | None
    cov_type: CovType
    coefficients: tuple[GlmCoefficient, ...]
    covariance: FloatArray
    model_covariance: FloatArray
    hc0_covariance: FloatArray
    cluster_covariance: FloatArray | None
    scale: float
    deviance: float
    null_deviance: float
    pearson_chi2: float
    loglik: float
    null_loglik: float
    aic: float
    nobs: int
    wnobs: float
    df_model: int
    df_resid: float
    clusters: int
    iterations: int
    step_halvings: int
    converged: bool

    @property
    def names(self) -> list[str]:
        """Parameter names in order."""
        return [c.name for c in self.coefficients]

    @property
    def params(self) -> FloatArray:
        """The coefficients as an array."""
        return np.array([c.coef for c in self.coefficients])

    def se(self, cov_type: CovType | None = None) -> FloatArray:
        """Standard errors under ``cov_type`` (default: the table's)."""
        cov = {
            None: self.covariance,
            "model": self.model_covariance,
            "HC0": self.hc0_covariance,
            "cluster": self.cluster_covariance,
        }[cov_type]
        if cov is None:
            raise DataError("cluster-robust standard errors need at least 2 stations")
        return np.sqrt(np.diag(cov))


def _sandwich(bread: FloatArray, meat: FloatArray) -> FloatArray:
    cov = bread @ meat @ bread
    return np.asarray((cov + cov.T) / 2, dtype=np.float64)


def glm_result(
    model: GlmModel,
    names: Sequence[str],
    fit: Fit,
    pooled: PooledPieces,
    *,
    cov_type: CovType = "model",
    alpha: float = 0.05,
) -> GlmResult:
    """Coefficients, standard errors and fit statistics as statsmodels' ``GLM``.

    ``fit`` from :func:`newton_from` (its ``terms`` at the converged point give the
    observed Hessian, the sandwich's bread), ``pooled`` from :func:`pool_pieces`.
    Wald tests and ``1 - alpha`` CIs use the normal distribution, as statsmodels'
    ``GLM`` does by default (``use_t=False``).
    """
    if cov_type not in ("model", "HC0", "cluster"):
        raise ConfigError(
            f"cov_type '{cov_type}' is not supported; use model, HC0 or cluster"
        )
    p = len(names)
    df_resid = pooled.wnobs - p
    if model.fixed_scale:
        scale = 1.0
    else:
        if df_resid <= 0:
            raise DataError(
                f"{p} parameters need more than {pooled.wnobs:g} patients; drop "
                "covariates"
            )
        scale = pooled.pearson_chi2 / df_resid
    model_cov = scale * np.linalg.inv(pooled.fisher)
    model_cov = (model_cov + model_cov.T) / 2
    bread = np.asarray(np.linalg.inv(-fit.terms.hessian), dtype=np.float64)
    hc0 = _sandwich(bread, pooled.score_outer)
    cluster: FloatArray | None = None
    if pooled.clusters >= 2:
        g, n = pooled.clusters, pooled.rows
        correction = g / (g - 1.0) * (n - 1.0) / (n - p)
        cluster = correction * _sandwich(bread, pooled.cluster_outer)
    chosen = {"model": model_cov, "HC0": hc0, "cluster": cluster}[cov_type]
    if chosen is None:
        raise DataError(
            "cluster-robust standard errors need at least 2 stations; use HC0"
        )
    if model.fixed_scale:
        loglik = fit.terms.loglik
        null_loglik = pooled.null_loglik
    else:
        # statsmodels: concentrated for the fit, the model's scale for the null
        def gaussian(deviance: float, s: float) -> float:
            return -0.5 * (
                deviance / s
                + pooled.wnobs * math.log(2 * math.pi * s)
                - pooled.log_var_weights
            )

        loglik = gaussian(pooled.deviance, pooled.deviance / pooled.wnobs)
        null_loglik = gaussian(pooled.null_deviance, scale)
    z_crit = z_critical(alpha)
    se = np.sqrt(np.diag(chosen))
    exp = model.effect is not None
    rows = []
    for j, name in enumerate(names):
        b, s = float(fit.beta[j]), float(se[j])
        lo, hi = b - z_crit * s, b + z_crit * s
        z = b / s
        rows.append(
            GlmCoefficient(
                name=name,
                coef=b,
                se=s,
                z=z,
                p_value=normal_two_sided_p(z),
                ci_lower=lo,
                ci_upper=hi,
                exp_coef=math.exp(b) if exp else None,
                exp_ci_lower=math.exp(lo) if exp else None,
                exp_ci_upper=math.exp(hi) if exp else None,
            )
        )
    return GlmResult(
        family=model.family,
        link=model.link,
        effect=model.effect,
        cov_type=cov_type,
        coefficients=tuple(rows),
        covariance=chosen,
        model_covariance=model_cov,
        hc0_covariance=hc0,
        cluster_covariance=cluster,
        scale=scale,
        deviance=pooled.deviance,
        null_deviance=pooled.null_deviance,
        pearson_chi2=pooled.pearson_chi2,
        loglik=loglik,
        null_loglik=null_loglik,
        aic=-2.0 * loglik + 2.0 * p,
        nobs=pooled.rows,
        wnobs=pooled.wnobs,
        df_model=p - 1,
        df_resid=df_resid,
        clusters=pooled.clusters,
        iterations=fit.iterations,
        step_halvings=fit.step_halvings,
        converged=fit.converged,
    )


def _total(terms: Sequence[Terms]) -> Terms:
    total = terms[0]
    for more in terms[1:]:
        total = total + more
    return total


def fit_glm(
    parts: Sequence[GlmRows],
    names: Sequence[str] | None = None,
    *,
    cov_type: CovType = "model",
    alpha: float = 0.05,
    max_iter: int = 50,
) -> GlmResult:
    """Fit a GLM over stations' rows held in memory, as the federated rounds do.

    Round 0 the :class:`GlmSums`; the origin; the binomial null intercept with an
    offset by a one-parameter Newton fit; Newton from the origin on the summed
    terms (collinearity checked at the origin); the pieces at the converged point;
    the result. The federated train runs the same steps, one round each.
    """
    if not parts:
        raise ValueError("fit at least one station's rows")
    model, p = parts[0].model, parts[0].p
    labels = list(names) if names is not None else [f"x{j}" for j in range(p)]
    if len(labels) != p:
        raise ValueError(f"{len(labels)} names for {p} parameters")
    sums = parts[0].sums()
    for part in parts[1:]:
        sums = sums + part.sums()
    start = origin(model, sums, p)
    null = null_intercept(model, sums)
    if null is None:
        shift = float(start[0])
        null_fit = maximise(
            lambda a: _total([r.null_terms(shift + float(a[0])) for r in parts]), 1
        )
        if not null_fit.converged:
            raise ConvergenceError(
                "the null model (intercept and offset) did not converge; check the "
                "offset"
            )
        null = shift + float(null_fit.beta[0])
    steps = newton_from(start, max_iter=max_iter)
    ask = next(steps)
    information: FloatArray | None = None
    last: Terms | None = None
    while True:
        if ask.need == "value":
            last = _total([part.terms(ask.beta) for part in parts])
            answer: Answer = Value(last.loglik, last.gradient, last.hessian)
            if information is None:
                information = -last.hessian
                check_estimable(information, labels)
        else:  # pragma: no cover - local terms come with their Hessian
            assert last is not None
            answer = last.hessian
        try:
            ask = steps.send(answer)
        except StopIteration as stop:
            fit: Fit = stop.value
            break
    assert information is not None
    check_fit(model, labels, fit, start, information)
    pooled = pool_pieces([part.pieces(fit.beta, null) for part in parts])
    return glm_result(model, labels, fit, pooled, cov_type=cov_type, alpha=alpha)
