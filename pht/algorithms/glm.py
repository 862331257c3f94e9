"""Federated generalised linear models, station side: families, links and row sums.

Families and links: ``gaussian`` (identity), ``binomial`` (logit, log, identity) and
``poisson`` (log), with an optional offset (for Poisson, log person-time) and prior
weights as statsmodels ``GLM`` takes them: ``freq_weights`` ``f`` (a row stands for
``f`` patients) and ``var_weights`` ``v`` (a row's variance is ``phi / v``; inverse
probability of treatment weights are used this way). Each row counts with
``w = f v``. With ``eta = x'b + offset`` and ``mu = g^-1(eta)``, per row::

    loglik  += w l(y, mu)
    score   += w (y - mu) mu' / V(mu) x                            (the gradient)
    hessian += w [ -mu'^2 / V + (y - mu) (mu'' / V - V' mu'^2 / V^2) ] x x'
    fisher  += w mu'^2 / V x x'                                    (expected)

with ``mu' = dmu/deta``. For canonical links (gaussian identity, binomial logit,
Poisson log) the observed Hessian equals minus the Fisher information. The gaussian
``l`` is the quasi form ``-(y - mu)^2 / 2`` (the scale only multiplies the
log-likelihood, so the coefficient path does not depend on it). Everything is a sum
over rows, so stations add their :class:`pht.algorithms.optimize.Terms` and the
orchestrator runs the generic :func:`pht.algorithms.optimize.newton`.

The orchestrator's side (the origin, the replayable Newton path, pooling, standard
errors, the errors that explain a failed fit) is :mod:`pht.algorithms.glm_fit`.

Example
-------
>>> import numpy as np
>>> x = np.column_stack([np.ones(6), [0.0, 0, 0, 1, 1, 1]])
>>> y = np.array([0.0, 0, 1, 0, 1, 1])
>>> model = glm_model("binomial")
>>> from pht.algorithms.glm_fit import fit_glm
>>> fit = fit_glm([GlmRows(model, x[:3], y[:3]), GlmRows(model, x[3:], y[3:])])
>>> round(fit.coefficients[1].exp_coef, 6)  # odds ratio (2/1) / (1/2)
4.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pht.algorithms.optimize import Terms
from pht.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]
Family = Literal["gaussian", "binomial", "poisson"]
Link = Literal["identity", "logit", "log"]

LINKS: dict[str, tuple[str, ...]] = {
    "gaussian": ("identity",),
    "binomial": ("logit", "log", "identity"),
    "poisson": ("log",),
}
"""The links each family supports; the first is the default (canonical) one."""

EFFECTS: dict[tuple[str, str], str] = {
    ("binomial", "logit"): "odds ratio",
    ("binomial", "log"): "risk ratio",
    ("poisson", "log"): "rate ratio",
}
"""What ``exp(coef)`` is, for the models where it means something."""

_CHUNK = 1 << 16  # rows per block of a weighted Gram matrix


@dataclass(frozen=True)
class GlmModel:
    """A family with its link: use :func:`glm_model` to build a checked one."""

    family: Family
    link: Link

    @property
    def canonical(self) -> bool:
        """Whether the link is the family's canonical one (observed = expected)."""
        return LINKS[self.family][0] == self.link

    @property
    def fixed_scale(self) -> bool:
        """Binomial and Poisson have scale 1; gaussian estimates it."""
        return self.family != "gaussian"

    @property
    def effect(self) -> str | None:
        """What ``exp(coef)`` estimates (odds, risk or rate ratio), if anything."""
        return EFFECTS.get((self.family, self.link))

    def link_value(self, mu: float) -> float:
        """``g(mu)`` for a scalar mean (the null model's intercept)."""
        if self.link == "identity":
            return mu
        if self.link == "log":
            return math.log(mu)
        return math.log(mu / (1.0 - mu))


def glm_model(family: str, link: str | None = None) -> GlmModel:
    """A checked family and link; the link defaults to the canonical one.

    Raises :class:`ConfigError` naming the supported choices.
    """
    if family not in LINKS:
        raise ConfigError(
            f"family '{family}' is not supported; use one of {', '.join(LINKS)}"
        )
    chosen = LINKS[family][0] if link is None else link
    if chosen not in LINKS[family]:
        raise ConfigError(
            f"link '{chosen}' is not available for family '{family}'; use one of "
            f"{', '.join(LINKS[family])}"
        )
    return GlmModel(family, chosen)  # type: ignore[arg-type]


# -- station side ------------------------------------------------------------------------
@dataclass(frozen=True)
class GlmSums:
    """Round-0 sums of a station (they add): the null model and the origin need them.

    Attributes
    ----------
    rows : number of rows (complete cases)
    wnobs : sum of the frequency weights (``rows`` without them)
    weight : sum of ``w = f v``
    weighted_y : sum of ``w y``
    weighted_exp_offset : sum of ``w exp(offset)`` (the Poisson null with an offset)
    weighted_y_minus_offset : sum of ``w (y - offset)`` (the gaussian null)
    has_offset : whether any row has a non-zero offset
    """

    rows: int
    wnobs: float
    weight: float
    weighted_y: float
    weighted_exp_offset: float
    weighted_y_minus_offset: float
    has_offset: bool

    def __add__(self, other: GlmSums) -> GlmSums:
        return GlmSums(
            self.rows + other.rows,
            self.wnobs + other.wnobs,
            self.weight + other.weight,
            self.weighted_y + other.weighted_y,
            self.weighted_exp_offset + other.weighted_exp_offset,
            self.weighted_y_minus_offset + other.weighted_y_minus_offset,
            self.has_offset or other.has_offset,
        )


@dataclass(frozen=True)
class GlmPieces:
    """One station's sums at the converged coefficients (all but ``score_sum`` add).

    Attributes
    ----------
    rows, wnobs : as in :class:`GlmSums`
    fisher : (p, p) expected information at scale 1, ``X' diag(w mu'^2 / V) X``
    score_outer : (p, p) ``sum_i s_i s_i' / f_i``, the HC0 meat (scale 1)
    score_sum : (p,) the station's score, ``sum_i s_i`` (near zero only pooled)
    deviance, pearson_chi2 : weighted sums of unit deviances and of ``(y-mu)^2 / V``
    null_deviance, null_loglik : the same at the null model (intercept and offset)
    log_var_weights : ``sum f log v`` (the gaussian log-likelihood needs it)
    """

    rows: int
    wnobs: float
    fisher: FloatArray
    score_outer: FloatArray
    score_sum: FloatArray
    deviance: float
    pearson_chi2: float
    null_deviance: float
    null_loglik: float
    log_var_weights: float


def _vector(
    values: npt.ArrayLike | None, n: int, name: str, default: float
) -> FloatArray:
    """A finite float vector of length ``n`` (``default`` everywhere when None)."""
    if values is None:
        return np.full(n, default)
    out = np.asarray(values, dtype=np.float64)
    if out.shape != (n,):
        raise DataError(
            f"{name} has shape {out.shape}; expected one value per row ({n})"
        )
    if not np.all(np.isfinite(out)):
        raise DataError(f"{name} has missing or infinite values; drop those rows first")
    return out


def _gram(x: FloatArray, weight: FloatArray) -> FloatArray:
    """``X' diag(weight) X`` in blocks of rows (no n x p temporary).

    When every weight has one sign (always for a canonical link's Hessian and for the
    Fisher information) it is ``+-Z'Z`` with ``Z = diag(sqrt|weight|) X``, which BLAS
    computes as a symmetric rank-k update, half the work of a general product.
    """
    p = x.shape[1]
    gram: FloatArray = np.zeros((p, p))
    sign = -1.0 if np.all(weight <= 0) else 1.0 if np.all(weight >= 0) else 0.0
    root = np.sqrt(np.abs(weight)) if sign else weight
    for lo in range(0, x.shape[0], _CHUNK):
        block = x[lo : lo + _CHUNK]
        scaled = block * root[lo : lo + _CHUNK, None]
        gram += scaled.T @ scaled if sign else scaled.T @ block
    if sign:
        gram *= sign
    return (gram + gram.T) / 2


def _total(values: FloatArray) -> float:
    """A float sum of many rows, by NumPy's pairwise summation.

    Its relative error is about ``log2(n)`` ulps; :func:`math.fsum` is exact but a
    hundred times slower, and a GLM round sums every row.
    """
    return float(np.sum(values))


def _lgamma1(y: FloatArray) -> FloatArray:
    """``log Gamma(y + 1)`` per value (Poisson), over the distinct values only."""
    distinct, inverse = np.unique(y, return_inverse=True)
    table = np.array([math.lgamma(v + 1.0) for v in distinct.tolist()])
    return np.asarray(table[inverse], dtype=np.float64)


@dataclass(frozen=True)
class _RowValues:
    """Per-row quantities at one linear predictor (unweighted; ``valid`` or not)."""

    valid: bool
    mu: FloatArray
    loglik: FloatArray  # l(y, mu)
    first: FloatArray  # dl/deta
    second: FloatArray  # d2l/deta2 (observed)
    fisher: FloatArray  # mu'^2 / V
    variance: FloatArray  # V(mu)


def _log_expit(eta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``log(expit(eta))``, ``log(expit(-eta))`` and ``exp(-|eta|)`` without overflow.

    ``log(1 + exp(-eta)) = max(-eta, 0) + log1p(exp(-|eta|))``: one exponential and
    one logarithm for both tails (as :func:`numpy.logaddexp` computes it per value).
    """
    e = np.exp(-np.abs(eta))
    tail = np.log1p(e)
    return -(tail + np.maximum(-eta, 0.0)), -(tail + np.maximum(eta, 0.0)), e


def _row_values(model: GlmModel, y: FloatArray, eta: FloatArray) -> _RowValues:
    """Log-likelihood and its eta-derivatives per row (see the module docstring)."""
    family, link = model.family, model.link
    if family == "gaussian":
        r = y - eta
        ones = np.ones_like(eta)
        return _RowValues(True, eta, -0.5 * r * r, r, -ones, ones, ones)
    if family == "poisson":
        mu = np.exp(eta)
        if not np.all(np.isfinite(mu)):
            return _invalid(eta)
        return _RowValues(True, mu, y * eta - mu, y - mu, -mu, mu, mu)
    if link == "logit":
        log_mu, log_q, e = _log_expit(eta)
        mu = np.exp(log_mu)
        # mu (1 - mu) = exp(-|eta|) / (1 + exp(-|eta|))^2, exact in both tails
        v = e / (1.0 + e) ** 2
        loglik = y * log_mu + (1.0 - y) * log_q
        return _RowValues(True, mu, loglik, y - mu, -v, v, v)
    if link == "log":
        # inside the parameter space: mu < 1 where y = 0, mu <= 1 where y = 1
        if np.any(eta > 0) or np.any((eta == 0) & (y == 0)):
            return _invalid(eta)
        mu = np.exp(eta)
        q = -np.expm1(eta)  # 1 - mu
        safe_q = np.where(q > 0, q, 1.0)
        loglik = y * eta + (1.0 - y) * np.log(safe_q)
        first = (y - mu) / safe_q
        second = mu * (y - 1.0) / (safe_q * safe_q)
        return _RowValues(True, mu, loglik, first, second, mu / safe_q, mu * q)
    # binomial identity: 0 < mu where y = 1, mu < 1 where y = 0
    mu = eta
    if np.any(mu < 0) or np.any(mu > 1) or np.any((mu == 0) & (y == 1)):
        return _invalid(eta)
    if np.any((mu == 1) & (y == 0)):
        return _invalid(eta)
    p = np.where(mu > 0, mu, 1.0)
    q = np.where(mu < 1, 1.0 - mu, 1.0)
    loglik = y * np.log(p) + (1.0 - y) * np.log(q)
    v = mu * (1.0 - mu)
    safe_v = np.where(v > 0, v, 1.0)
    first = (y - mu) / safe_v
    second = -y / (p * p) - (1.0 - y) / (q * q)
    return _RowValues(True, mu, loglik, first, second, 1.0 / safe_v, v)


def _invalid(eta: FloatArray) -> _RowValues:
    nan = np.full_like(eta, np.nan)
    return _RowValues(False, nan, nan, nan, nan, nan, nan)


def _unit_deviance(model: GlmModel, y: FloatArray, mu: FloatArray) -> FloatArray:
    """Unit deviances per row, as statsmodels' families define them."""
    if model.family == "gaussian":
        return np.asarray((y - mu) ** 2, dtype=np.float64)
    if model.family == "poisson":
        positive = y > 0
        ratio = np.where(positive, y / np.where(positive, mu, 1.0), 1.0)
        return np.asarray(2.0 * (y * np.log(ratio) - (y - mu)), dtype=np.float64)
    p = np.where(y == 1, mu, 1.0)
    q = np.where(y == 0, 1.0 - mu, 1.0)
    return np.asarray(-2.0 * (np.log(p) + np.log(q)), dtype=np.float64)


class GlmRows:
    """A station's rows of a GLM, for every evaluation of a session.

    Parameters
    ----------
    model : the family and link (:func:`glm_model`)
    x : (n, p) design matrix as agreed (an intercept column first, see
        :func:`pht.algorithms.glm_fit.origin`; dummies coded and centred as agreed)
    y : (n,) outcome: 0/1 for binomial, counts (>= 0) for Poisson
    offset : (n,) added to the linear predictor (Poisson: log person-time)
    freq_weights, var_weights : (n,) prior weights (>= 0), as statsmodels ``GLM``
    outcome : the outcome's name, for messages

    Raises
    ------
    DataError
        Shapes, missing values, an outcome outside the family's range, negative
        weights: one line naming what to fix.
    """

    def __init__(
        self,
        model: GlmModel,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        offset: npt.ArrayLike | None = None,
        freq_weights: npt.ArrayLike | None = None,
        var_weights: npt.ArrayLike | None = None,
        outcome: str = "outcome",
    ) -> None:
        self.model = model
        design = np.asarray(x, dtype=np.float64)
        if design.ndim != 2 or design.shape[1] == 0:
            raise DataError(
                "the design matrix must have one row per patient and p >= 1"
            )
        n = design.shape[0]
        if not np.all(np.isfinite(design)):
            raise DataError("the design matrix has missing or infinite values")
        self.x = np.ascontiguousarray(design)
        self.y = _vector(y, n, f"outcome '{outcome}'", 0.0)
        if model.family == "binomial" and not np.all(np.isin(self.y, (0.0, 1.0))):
            raise DataError(
                f"outcome '{outcome}' of a binomial model must hold only 0 and 1; "
                "recode it"
            )
        if model.family == "poisson" and np.any(self.y < 0):
            raise DataError(
                f"outcome '{outcome}' of a Poisson model must be counts >= 0"
            )
        self.offset = _vector(offset, n, "offset", 0.0)
        self.f = _vector(freq_weights, n, "freq_weights", 1.0)
        self.v = _vector(var_weights, n, "var_weights", 1.0)
        for name, w in (("freq_weights", self.f), ("var_weights", self.v)):
            if np.any(w < 0):
                raise DataError(f"{name} must be non-negative; check the weights")
        if np.any(self.v == 0):
            raise DataError(
                "var_weights must be positive (a zero weight drops the row: drop it)"
            )
        self.w = self.f * self.v
        self._constant = -_lgamma1(self.y) if model.family == "poisson" else np.zeros(n)
        self._cache: tuple[bytes, _RowValues] | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.x.shape[0])

    @property
    def p(self) -> int:
        """Number of parameters."""
        return int(self.x.shape[1])

    def sums(self) -> GlmSums:
        """Round 0: the sums the null model and the origin need."""
        w = self.w
        return GlmSums(
            rows=self.n,
            wnobs=math.fsum(self.f),
            weight=math.fsum(w),
            weighted_y=math.fsum(w * self.y),
            weighted_exp_offset=math.fsum(w * np.exp(self.offset))
            if self.model.family == "poisson"
            else 0.0,
            weighted_y_minus_offset=math.fsum(w * (self.y - self.offset)),
            has_offset=bool(np.any(self.offset != 0)),
        )

    def _at(self, beta: npt.ArrayLike) -> _RowValues:
        """Row values at ``beta`` (cached for the latest one)."""
        b = np.asarray(beta, dtype=np.float64)
        if b.shape != (self.p,):
            raise DataError(f"expected {self.p} coefficients, got shape {b.shape}")
        key = b.tobytes()
        if self._cache is None or self._cache[0] != key:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                values = _row_values(self.model, self.y, self.x @ b + self.offset)
            self._cache = (key, values)
        return self._cache[1]

    def terms(self, beta: npt.ArrayLike) -> Terms:
        """Log-likelihood (gaussian: quasi), score and observed Hessian at ``beta``.

        Outside the parameter space the log-likelihood is ``-inf`` (gradient and
        Hessian NaN): Newton then halves its step.
        """
        values = self._at(beta)
        if not values.valid:
            nan = np.full(self.p, np.nan)
            return Terms(-math.inf, nan, np.full((self.p, self.p), np.nan))
        w = self.w
        loglik = _total(w * (values.loglik + self._constant))
        gradient = (w * values.first) @ self.x
        hessian = _gram(self.x, w * values.second)
        return Terms(loglik, np.asarray(gradient, dtype=np.float64), hessian)

    def null_terms(self, intercept: float) -> Terms:
        """Terms of the intercept-only model (with the offset) at ``intercept``.

        Only needed for a binomial null model with an offset, which has no closed
        form (:func:`pht.algorithms.glm_fit.null_intercept` gives None).
        """
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            values = _row_values(
                self.model, self.y, np.full(self.n, float(intercept)) + self.offset
            )
        if not values.valid:
            return Terms(-math.inf, np.full(1, np.nan), np.full((1, 1), np.nan))
        w = self.w
        return Terms(
            math.fsum(w * (values.loglik + self._constant)),
            np.array([math.fsum(w * values.first)]),
            np.array([[math.fsum(w * values.second)]]),
        )

    def deviance(self, beta: npt.ArrayLike) -> float:
        """The weighted deviance at ``beta``."""
        values = self._at(beta)
        if not values.valid:
            return math.inf
        return math.fsum(self.w * _unit_deviance(self.model, self.y, values.mu))

    def pieces(self, beta: npt.ArrayLike, null: float) -> GlmPieces:
        """What the standard errors and fit statistics need at the converged ``beta``.

        ``null`` is the pooled null model's intercept
        (:func:`pht.algorithms.glm_fit.null_intercept`).
        """
        values = self._at(beta)
        if not values.valid:
            raise DataError("the coefficients lie outside the model's parameter space")
        w, f = self.w, self.f
        with np.errstate(divide="ignore", invalid="ignore"):
            per_patient = np.where(f > 0, w * w / f, 0.0)
        null_eta = np.full(self.n, float(null)) + self.offset
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            null_values = _row_values(self.model, self.y, null_eta)
        if not null_values.valid:
            raise DataError("the null model lies outside the parameter space")
        return GlmPieces(
            rows=self.n,
            wnobs=_total(f),
            fisher=_gram(self.x, w * values.fisher),
            score_outer=_gram(self.x, per_patient * values.first**2),
            score_sum=np.asarray((w * values.first) @ self.x, dtype=np.float64),
            deviance=_total(w * _unit_deviance(self.model, self.y, values.mu)),
            pearson_chi2=_total(w * (self.y - values.mu) ** 2 / values.variance),
            null_deviance=_total(
                w * _unit_deviance(self.model, self.y, null_values.mu)
            ),
            null_loglik=_total(w * (null_values.loglik + self._constant)),
            log_var_weights=_total(f * np.log(self.v)),
        )
