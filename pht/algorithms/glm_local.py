"""The station side of a federated GLM: describe, design, and every evaluation.

One :class:`LocalGlm` per session holds the station's complete cases; the ``glm``
train is a thin adapter around it and the station's own kernel
(:mod:`pht.station.kernels`) is the same class, so the station recomputes every
answer the train gives and releases its own.

Rounds of a session (the orchestrator's side is :mod:`pht.trains.glm`):

* round 0, :meth:`LocalGlm.describe`: complete cases, events (binomial and Poisson),
  and per covariate its kind and sum (numeric) or level counts (categorical, each at
  least k) exactly as the Cox train describes them;
* ``design``: the agreed covariates (an intercept is added as column 0), optional
  station fixed effects (``stations``, the first the reference; the station itself
  says which one it is); the reply holds the station's :class:`GlmSums`, from which
  every station recomputes the origin of the Newton path and the null model;
* ``terms`` at a point of the path: log-likelihood, gradient and observed Hessian
  (all null outside the parameter space, e.g. a log-binomial risk above 1);
* ``checks`` once, at the converged point: the :class:`GlmPieces` the standard
  errors and fit statistics need, with the pooled null intercept.

Disclosure rules here: fewer than k complete cases, a binomial outcome with fewer
than k events or k non-events, a Poisson outcome with fewer than k events, a level
with fewer than k patients, fewer than 10 patients per parameter: refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from pht.algorithms.cox import Covariate, Design, design_matrix
from pht.algorithms.cox_local import _is_categorical, check_dof, describe_levels
from pht.algorithms.glm import GlmModel, GlmRows, GlmSums, glm_model
from pht.algorithms.glm_fit import null_intercept, origin
from pht.algorithms.levels import labels
from pht.columns import missing, numbers
from pht.errors import DataError, DisclosureError

SUMS = (
    "rows",
    "wnobs",
    "weight",
    "weighted_y",
    "weighted_exp_offset",
    "weighted_y_minus_offset",
    "has_offset",
)
"""The fields of a design reply's ``sums`` (:class:`GlmSums`)."""


def model_of(parameters: Mapping[str, Any]) -> GlmModel:
    """The family and link a request names (the link defaults to the canonical)."""
    return glm_model(
        str(parameters.get("family", "gaussian")), parameters.get("link") or None
    )


def used_columns(parameters: Mapping[str, Any]) -> list[str]:
    """Outcome, covariates and exposure: the columns a complete case needs."""
    names = [parameters["outcome"], *(parameters.get("covariates") or [])]
    if parameters.get("exposure"):
        names.append(parameters["exposure"])
    return list(dict.fromkeys(names))


def sums_of(output: Mapping[str, Any]) -> GlmSums:
    """A design reply's :class:`GlmSums` (raises KeyError/TypeError/ValueError)."""
    s = output["sums"]
    if not isinstance(s, Mapping) or set(s) != set(SUMS):
        raise ValueError("malformed sums")
    return GlmSums(
        rows=int(s["rows"]),
        wnobs=float(s["wnobs"]),
        weight=float(s["weight"]),
        weighted_y=float(s["weighted_y"]),
        weighted_exp_offset=float(s["weighted_exp_offset"]),
        weighted_y_minus_offset=float(s["weighted_y_minus_offset"]),
        has_offset=bool(s["has_offset"]),
    )


def pooled_start(
    model: GlmModel, designs: Mapping[str, Mapping[str, Any]], p: int
) -> tuple[np.ndarray, float]:
    """The origin of the Newton path and the null intercept from design replies.

    Stations add their sums in sorted order, as the orchestrator does.
    """
    total: GlmSums | None = None
    for station in sorted(designs):
        part = sums_of(designs[station])
        total = part if total is None else total + part
    if total is None:
        raise ValueError("no design replies")
    start = origin(model, total, p)
    null = null_intercept(model, total)
    if null is None:  # a binomial null with an offset: refused by the train's check
        raise DataError("a binomial model with an exposure has no closed-form null")
    return start, float(null)


class LocalGlm:
    """A station's rows of a federated GLM, kept for all rounds of a session."""

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        parameters: Mapping[str, Any],
        k: int,
        rules: Mapping[str, Any] | None = None,
    ) -> None:
        self.k = k
        self.share = float((rules or {}).get("dominance_share", 0.9))
        self.model = model_of(parameters)
        self.outcome = str(parameters["outcome"])
        self.covariates = list(parameters.get("covariates") or [])
        self.exposure = parameters.get("exposure") or None
        declared = set(parameters.get("categorical") or [])
        used = used_columns(parameters)
        keep = ~np.logical_or.reduce([missing(columns[c]) for c in used])
        complete = {c: columns[c] if keep.all() else columns[c][keep] for c in used}
        self.excluded = int(keep.size - keep.sum())
        y = numbers(complete[self.outcome])
        if self.model.family == "binomial" and not np.all(np.isin(y, (0.0, 1.0))):
            raise DataError(
                f"column '{self.outcome}' must hold only 0 and 1 for a binomial model"
            )
        if self.model.family == "poisson" and np.any(y < 0):
            raise DataError(
                f"column '{self.outcome}' must hold counts >= 0 for a Poisson model"
            )
        offset = None
        if self.exposure is not None:
            exposure = numbers(complete[self.exposure])
            if np.any(exposure <= 0):
                raise DataError(
                    f"column '{self.exposure}' (the exposure) must be > 0 everywhere: "
                    "its log is the offset"
                )
            offset = np.log(exposure)
        n = int(y.size)
        if n < k:
            raise DisclosureError(f"fewer than {k} complete cases at this station")
        if self.model.family != "gaussian":
            events = float(y.sum())
            if events < k or (self.model.family == "binomial" and n - events < k):
                raise DisclosureError(
                    f"fewer than {k} events or non-events of '{self.outcome}' at this "
                    "station"
                )
        self.y, self.offset = y, offset
        self.values: dict[str, np.ndarray] = {}
        self.kinds: dict[str, str] = {}
        self.level_types: dict[str, str] = {}
        for column in self.covariates:
            values = complete[column]
            if _is_categorical(values, column in declared):
                self.kinds[column] = "categorical"
                self.values[column], self.level_types[column] = labels(values)
            else:
                self.kinds[column] = "numeric"
                self.values[column] = values.astype(np.float64, copy=False)
        self.rows: GlmRows | None = None
        self.design_p: int | None = None

    @property
    def n(self) -> int:
        """Complete cases."""
        return int(self.y.size)

    def describe(self) -> dict[str, Any]:
        """Round 0: sizes, events, covariate sums and level counts (>= k)."""
        return describe(
            self.n,
            None if self.model.family == "gaussian" else int(round(self.y.sum())),
            self.excluded,
            self.k,
            {c: (self.kinds[c], self.values[c]) for c in self.covariates},
            self.level_types,
        )

    def _design(self, message: Mapping[str, Any]) -> dict[str, Any]:
        spec = message["design"]
        design = Design(
            tuple(
                Covariate(c["column"], tuple(c.get("levels") or ()), c.get("reference"))
                for c in spec["covariates"]
            ),
            tuple(float(v) for v in spec["centre"]),
        )
        stations = list(spec.get("stations") or [])
        effects = max(0, len(stations) - 1)
        p = 1 + design.p + effects
        check_dof(self.n, p)
        x = np.empty((self.n, p))
        x[:, 0] = 1.0
        x[:, 1 : 1 + design.p] = design_matrix(self.values, design)
        if effects:
            own = message.get("station_index")
            if not isinstance(own, int) or not 0 <= own < len(stations):
                raise DataError(
                    "the station's place among the fixed effects is unknown"
                )
            x[:, 1 + design.p :] = 0.0
            if own > 0:
                x[:, design.p + own] = 1.0
        check_cells(x, self.y, self.model.family, self.k, self.share, self.outcome)
        self.rows = GlmRows(
            self.model, x, self.y, offset=self.offset, outcome=self.outcome
        )
        self.design_p = p
        return {"p": p, "sums": sums_dict(self.rows.sums())}

    def answer(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """``design`` once, then ``terms`` per Newton evaluation, ``checks`` last."""
        op = message.get("op")
        if op == "design":
            return self._design(message)
        if self.rows is None:
            raise DataError("the design must be agreed before rounds")
        self.values = {}  # agreed (a station refusing it may make the others redo it)
        beta = np.asarray(message["beta"], dtype=np.float64)
        if beta.shape != (self.rows.p,):
            raise DataError(f"expected {self.rows.p} coefficients")
        if op == "terms":
            return terms_output(self.rows, beta)
        if op == "checks":
            return pieces_output(self.rows, beta, float(message["null_intercept"]))
        raise DataError(f"operation {op!r} is not part of a GLM session")


CELL_VALUES = 20
"""A design column with at most this many distinct values at a station defines cells
(a dummy, a 0/1 covariate, or a numeric one such as ecog 0-3 or line 1-3)."""


def check_cells(
    x: np.ndarray,
    y: np.ndarray,
    family: str,
    k: int,
    share: float = 0.9,
    outcome: str = "outcome",
) -> None:
    """Refuse a design whose model terms would carry a small cell or a patient's value.

    The terms at any point are sums over rows of functions of ``(x_i, y_i)``, and at
    the origin every row has the same weight: ``X'X`` gives the number of patients
    holding any two values of the design's cell columns (:data:`CELL_VALUES`; a
    numeric column with few values gives them through its moments over several
    rounds), ``X'y`` the outcome's sum over each. So, at this station:

    * every value of a cell column, and every pair of values of two cell columns, is
      held by 0 or at least ``k`` patients;
    * a count outcome (binomial, Poisson): the events (and a 0/1 outcome's
      non-events) among the patients of every such value, and of every pair of
      values, are 0 or at least ``k``;
    * a continuous or count outcome: within every such value or pair (and overall) the
      ``means`` train's rules hold: not fewer than ``k`` patients (but some) differ
      from a shared value, and no patient dominates the sum of the values or of the
      squared deviations (``share``).
    """
    codes: list[np.ndarray] = []
    for j in range(1, x.shape[1]):
        values, code = np.unique(x[:, j], return_inverse=True)
        if values.size <= CELL_VALUES:
            codes.append(code.astype(np.int64))
    small = lambda counts: bool(np.any((counts > 0) & (counts < k)))  # noqa: E731
    for a, code in enumerate(codes):
        width = int(code.max()) + 1
        if small(np.bincount(code, minlength=width)):
            raise DisclosureError(
                f"a value of a covariate is held by fewer than {k} patients at this "
                "station; merge levels or drop the covariate"
            )
        for other in codes[a + 1 :]:
            pair = code * (int(other.max()) + 1) + other
            if small(np.bincount(pair)):
                raise DisclosureError(
                    f"two covariate values occur together in fewer than {k} patients "
                    "at this station; merge levels or drop a covariate"
                )
    binary = bool(np.all((y == 0.0) | (y == 1.0)))
    # the cells: every value of a cell column and every pair of values of two (the
    # curvature and the robust meat weight each row by a function of its outcome, so
    # a pair's outcome follows from them with the pair's count)
    cells = list(codes)
    for a, code in enumerate(codes):
        for other in codes[a + 1 :]:
            cells.append(code * (int(other.max()) + 1) + other)
    if family != "gaussian":
        for code in cells:
            events = np.bincount(code, weights=y)
            parts = [events]
            if binary:
                parts.append(np.bincount(code) - events)
            if any(small(c) for c in parts):
                raise DisclosureError(
                    f"a covariate value (or two together) has fewer than {k} events "
                    "or non-events of the outcome at this station; merge levels or "
                    "drop a covariate"
                )
    if family == "binomial" or binary:
        return
    from pht.trains.means import level_rules

    level_rules(y, float(y.mean()), k, share, outcome, "a covariate")
    for code in cells:
        order = np.argsort(code, kind="stable")
        bounds = np.flatnonzero(np.diff(code[order])) + 1
        for part_index in np.split(order, bounds):
            part = y[part_index]
            level_rules(part, float(part.mean()), k, share, outcome, "a covariate")


def sums_dict(sums: GlmSums) -> dict[str, Any]:
    """:class:`GlmSums` as a JSON object."""
    out = asdict(sums)
    out["rows"] = int(out["rows"])
    out["has_offset"] = bool(out["has_offset"])
    return {k: out[k] for k in SUMS}


def terms_output(rows: GlmRows, beta: np.ndarray) -> dict[str, Any]:
    """Log-likelihood, gradient, Hessian at ``beta``; all null outside the space."""
    terms = rows.terms(beta)
    if not math.isfinite(terms.loglik):
        return {"loglik": None, "gradient": None, "hessian": None}
    return {
        "loglik": terms.loglik,
        "gradient": terms.gradient.tolist(),
        "hessian": terms.hessian.tolist(),
    }


def pieces_output(rows: GlmRows, beta: np.ndarray, null: float) -> dict[str, Any]:
    """The :class:`GlmPieces` at the converged ``beta`` as a JSON object."""
    pieces = rows.pieces(beta, null)
    return {
        "rows": int(pieces.rows),
        "wnobs": float(pieces.wnobs),
        "fisher": pieces.fisher.tolist(),
        "score_outer": pieces.score_outer.tolist(),
        "score_sum": pieces.score_sum.tolist(),
        "deviance": pieces.deviance,
        "pearson_chi2": pieces.pearson_chi2,
        "null_deviance": pieces.null_deviance,
        "null_loglik": pieces.null_loglik,
        "log_var_weights": pieces.log_var_weights,
    }


def describe(
    n: int,
    events: int | None,
    excluded: int,
    k: int,
    covariates: Mapping[str, tuple[str, np.ndarray]],
    level_types: Mapping[str, str],
) -> dict[str, Any]:
    """Round 0 of a GLM session (the station computes the same from its extract)."""
    columns: dict[str, Any] = {}
    for column, (kind, values) in covariates.items():
        if kind == "numeric":
            columns[column] = {
                "kind": "numeric",
                "sum": float(values.sum()),
                "constant": bool(values.size and np.ptp(values) == 0),
            }
        else:
            columns[column] = {
                "kind": "categorical",
                "levels": describe_levels(column, values, k),
                "level_type": level_types[column],
            }
    return {
        "n": int(n),
        "events": events,
        "excluded": int(excluded) if excluded == 0 or excluded >= k else None,
        "columns": columns,
    }
