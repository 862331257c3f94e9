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
* **pooled** Cox (one baseline hazard): stations return their sums at the union of event
  times, the orchestrator adds them per time and reduces once.

Both equal the same fit on the concatenated rows (lifelines ``CoxPHFitter`` with and
without ``strata``; statsmodels ``PHReg`` for Breslow ties).

Covariates are centred before exponentiation (the partial likelihood is invariant to a
shift of ``x`` common to a risk set); in pooled mode every station uses the same centre.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Ties = Literal["efron", "breslow"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RiskSetSums:
    """Risk-set and death sums at event times (the pooled-mode aggregate).

    Attributes
    ----------
    time : (m,) event times
    deaths : (m,) number of deaths at each time
    x_death : (m, p) sum of covariates over the deaths
    s0, s1, s2 : (m,), (m, p), (m, p, p) sums of w, w x, w x x' over the risk set
    d0, d1, d2 : the same sums over the deaths
    """

    time: FloatArray
    deaths: FloatArray
    x_death: FloatArray
    s0: FloatArray
    s1: FloatArray
    s2: FloatArray
    d0: FloatArray
    d1: FloatArray
    d2: FloatArray

    @property
    def p(self) -> int:
        """Number of covariates."""
        return int(self.s1.shape[1])

    def __add__(self, other: RiskSetSums) -> RiskSetSums:
        if not np.array_equal(self.time, other.time):
            raise ValueError("risk-set sums must be on the same event times to add")
        return RiskSetSums(
            self.time,
            self.deaths + other.deaths,
            self.x_death + other.x_death,
            self.s0 + other.s0,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.d0 + other.d0,
            self.d1 + other.d1,
            self.d2 + other.d2,
        )


@dataclass(frozen=True)
class CoxTerms:
    """Partial log-likelihood with its gradient and Hessian at one coefficient vector."""

    loglik: float
    gradient: FloatArray
    hessian: FloatArray

    def __add__(self, other: CoxTerms) -> CoxTerms:
        return CoxTerms(
            self.loglik + other.loglik,
            self.gradient + other.gradient,
            self.hessian + other.hessian,
        )


class SortedRows:
    """A station's complete cases sorted by time once, for many evaluations.

    Parameters
    ----------
    time, event : durations and 0/1 event indicators
    x : (n, p) covariate matrix (dummy-coded), already centred as agreed
    """

    def __init__(self, time: FloatArray, event: FloatArray, x: FloatArray) -> None:
        order = np.argsort(time, kind="stable")
        self.time = np.asarray(time, dtype=np.float64)[order]
        self.event = np.asarray(event, dtype=np.float64)[order]
        self.x = np.ascontiguousarray(np.asarray(x, dtype=np.float64)[order])
        self.event_times = np.unique(self.time[self.event == 1])
        self._death_rows = np.flatnonzero(self.event == 1)
        self._iu = np.triu_indices(self.x.shape[1])
        self._cached: tuple[bytes, tuple[Any, ...]] | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.time.size)

    @property
    def p(self) -> int:
        """Number of covariates."""
        return int(self.x.shape[1])

    def _layout(self, times: FloatArray) -> tuple[Any, ...]:
        """Row positions for evaluation ``times`` (cached: they do not change)."""
        key = times.tobytes()
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]  # type: ignore[no-any-return]
        start = np.searchsorted(self.time, times, side="left")
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
        if rows.size:
            x_death[present] = np.add.reduceat(self.x[rows], first, axis=0)
        layout = (start, rows, present, first, deaths, x_death)
        self._cached = (key, layout)
        return layout

    def sums(self, beta: FloatArray, at: FloatArray | None = None) -> RiskSetSums:
        """Risk-set and death sums at ``at`` (default: this station's event times)."""
        times = self.event_times if at is None else np.asarray(at, dtype=np.float64)
        start, rows, present, first, deaths, x_death = self._layout(times)
        x, p, m = self.x, self.p, times.size
        iu0, iu1 = self._iu
        w = np.exp(x @ beta)
        # one matrix [w, w x, w x x' (upper triangle)] per row, then suffix sums:
        # rows with time >= t are rows[start(t):] (summed from the end, so small late
        # risk sets keep full precision)
        body = np.empty((self.n + 1, 1 + p + iu0.size), order="F")  # column-major
        body[-1] = 0.0
        body[:-1, 0] = w
        np.multiply(x, w[:, None], out=body[:-1, 1 : 1 + p])
        for k, (i, j) in enumerate(zip(iu0, iu1, strict=True)):
            np.multiply(x[:, i], body[:-1, 1 + j], out=body[:-1, 1 + p + k])
        death_sums = np.zeros((m, body.shape[1]))
        if rows.size:
            for col in range(body.shape[1]):  # column by column: no (deaths x q) copy
                death_sums[present, col] = np.add.reduceat(body[rows, col], first)
        flipped = body[::-1]
        np.cumsum(flipped, axis=0, out=flipped)
        risk = body[start]
        return RiskSetSums(
            times,
            deaths,
            x_death,
            risk[:, 0],
            risk[:, 1 : 1 + p],
            _unpack(risk[:, 1 + p :], p, self._iu),
            death_sums[:, 0],
            death_sums[:, 1 : 1 + p],
            _unpack(death_sums[:, 1 + p :], p, self._iu),
        )

    def terms(self, beta: FloatArray, ties: Ties) -> CoxTerms:
        """This station's own (stratum's) log-likelihood, gradient and Hessian."""
        return cox_terms(self.sums(beta), beta, ties)


def _group_sum(pos: npt.NDArray[np.intp], values: FloatArray, m: int) -> FloatArray:
    out = np.zeros((m, values.shape[1]))
    np.add.at(out, pos, values)
    return out


def _unpack(
    packed: FloatArray, p: int, iu: tuple[npt.NDArray[np.intp], ...]
) -> FloatArray:
    full = np.zeros((packed.shape[0], p, p))
    full[:, iu[0], iu[1]] = packed
    full[:, iu[1], iu[0]] = packed
    return full


def cox_terms(sums: RiskSetSums, beta: FloatArray, ties: Ties) -> CoxTerms:
    """Reduce risk-set sums to the partial log-likelihood, gradient and Hessian.

    The sums over ``l`` are taken on scalars first: with ``c_l = S0 - a_l D0`` only
    the per-time weights ``sum 1/c_l``, ``sum a_l/c_l`` and ``sum a_l^k/c_l^2`` are
    needed, so the cost is O(deaths + times * p^2), not O(deaths * p^2).
    """
    keep = sums.deaths > 0
    d = sums.deaths[keep].astype(np.int64)
    s0, d0 = sums.s0[keep], sums.d0[keep]
    s1, d1 = sums.s1[keep], sums.d1[keep]
    s2, d2 = sums.s2[keep], sums.d2[keep]
    x_death = sums.x_death[keep]
    # one entry per (event time, l) with a_l = l / d (Efron) or 0 (Breslow)
    which = np.repeat(np.arange(d.size), d)
    if ties == "efron":
        a = (np.arange(which.size) - np.repeat(np.cumsum(d) - d, d)) / np.repeat(d, d)
    else:
        a = np.zeros(which.size)
    c = s0[which] - a * d0[which]
    m = d.size

    def per_time(values: FloatArray) -> FloatArray:
        return np.bincount(which, weights=values, minlength=m)

    inv = 1.0 / c
    w1, w2 = per_time(inv), per_time(a * inv)
    inv2 = inv * inv
    u0, u1, u2 = per_time(inv2), per_time(a * inv2), per_time(a * a * inv2)
    loglik = float(np.sum(x_death @ beta) - np.sum(np.log(c)))
    gradient = x_death.sum(axis=0) - (w1 @ s1 - w2 @ d1)
    outer = (
        np.einsum("t,ti,tj->ij", u0, s1, s1)
        - np.einsum("t,ti,tj->ij", u1, s1, d1)
        - np.einsum("t,ti,tj->ij", u1, d1, s1)
        + np.einsum("t,ti,tj->ij", u2, d1, d1)
    )
    hessian = -(np.einsum("t,tij->ij", w1, s2) - np.einsum("t,tij->ij", w2, d2)) + outer
    return CoxTerms(loglik, gradient, hessian)


def add_terms(parts: Sequence[CoxTerms]) -> CoxTerms:
    """Sum of per-station terms (the stratified log-likelihood)."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


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

    ``columns`` maps column name to its values (numbers, or labels for categorical
    covariates, compared as strings).
    """
    blocks: list[FloatArray] = []
    for cov in design.covariates:
        values = columns[cov.column]
        if not cov.categorical:
            blocks.append(np.asarray(values, dtype=np.float64)[:, None])
            continue
        labels = np.asarray([str(v) for v in values], dtype=object)
        for level in cov.levels:
            if level != cov.reference:
                blocks.append((labels == level).astype(np.float64)[:, None])
    if not blocks:
        raise ValueError("a Cox model needs at least one covariate")
    x = np.hstack(blocks)
    return x - np.asarray(design.centre, dtype=np.float64)[None, :]


# -- Newton-Raphson ---------------------------------------------------------------------
@dataclass(frozen=True)
class NewtonResult:
    """The maximiser of a concave log-likelihood found by Newton-Raphson."""

    beta: FloatArray
    terms: CoxTerms
    null_loglik: float
    iterations: int
    converged: bool
    step_halvings: int


def newton_raphson(
    evaluate: Callable[[FloatArray], CoxTerms],
    p: int,
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
    max_halvings: int = 30,
) -> NewtonResult:
    """Maximise a partial log-likelihood given a function returning its terms.

    Convergence rule: stop when the Newton step's largest absolute component is below
    ``tol`` *and* the log-likelihood changed by less than ``tol * (1 + |loglik|)``.
    A step that lowers the log-likelihood by more than rounding noise
    (``1e-11 * (1 + |loglik|)``) is halved (at most ``max_halvings`` times).
    Each call of ``evaluate`` is one federated round.
    """
    beta = np.zeros(p)
    terms = evaluate(beta)
    null = terms.loglik
    halvings = 0
    for iteration in range(1, max_iter + 1):
        try:
            step = np.linalg.solve(-terms.hessian, terms.gradient)
        except np.linalg.LinAlgError:  # information became singular: diverging
            return NewtonResult(beta, terms, null, iteration, False, halvings)
        candidate = beta + step
        new = evaluate(candidate)
        tries = 0
        # a decrease within rounding noise of a sum over many patients is no decrease
        slack = 1e-11 * (1.0 + abs(terms.loglik))
        while (not np.isfinite(new.loglik) or new.loglik < terms.loglik - slack) and (
            tries < max_halvings
        ):
            step = step / 2
            candidate = beta + step
            new = evaluate(candidate)
            tries += 1
        halvings += tries
        change = abs(new.loglik - terms.loglik)
        beta, terms = candidate, new
        if np.max(np.abs(step)) < tol and change < tol * (1 + abs(new.loglik)):
            return NewtonResult(beta, terms, null, iteration, True, halvings)
    return NewtonResult(beta, terms, null, max_iter, False, halvings)
