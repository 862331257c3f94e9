"""The station side of a federated IPTW analysis: one session, two Newton paths.

One :class:`LocalIptw` per session holds the station's complete cases of the two
arms; the ``iptw`` train is a thin adapter around it and the station's own kernel
(:mod:`pht.station.kernels`) is the same class, so the station recomputes every
answer and releases its own. Rounds (the orchestrator's side is
:mod:`pht.trains.iptw`):

* round 0, :meth:`LocalIptw.describe`: complete cases of the two arms, the arm sizes,
  events of the outcome, and per covariate its kind and sum or level counts (as the
  ``glm`` train);
* ``design`` of the propensity model (intercept + the agreed covariates): ``p`` and
  the :class:`~pht.algorithms.glm.GlmSums` of the treatment indicator;
* ``terms`` at each point of the propensity path (logistic terms);
* ``weights`` once, at the converged propensity point: each patient's weight
  (:func:`pht.algorithms.iptw.weights`) and only sums: per arm and design column
  :class:`~pht.algorithms.iptw.ArmSums`, the extreme-weights counts, with
  ``truncate`` the counts above the truncation grid, and the outcome model's
  :class:`~pht.algorithms.glm.GlmSums` (its origin; none for Cox);
* ``truncate`` (only with the ``truncate`` parameter): the same at the grid cut-off;
* ``outcome`` at each point of the outcome path: weighted GLM terms
  (``[1, treated]`` or ``[1, treated, design]``) or weighted Efron Cox terms of the
  station's own stratum (``[treated]`` or ``[treated, design]``);
* ``checks`` once, at the converged outcome point: the GLM's pieces (HC0) or the Cox
  robust meat.

Disclosure rules here: fewer than k complete cases, an arm with 1 to k-1 patients, a
covariate level, or a level within an arm, with 1 to k-1 patients (a numeric
covariate: fewer than k patients of an arm differing from the arm's most common
value), two 0/1 design columns held together by 1 to k-1 patients (the propensity
terms at the origin count them, :func:`pht.algorithms.glm_local.check_cells`), fewer
than k events (binomial: or non-events), fewer than 10 patients per parameter:
refused. An arm with no patients takes no part (refused at the design).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from pht.algorithms.cox import Covariate, Design, SortedRows, design_matrix
from pht.algorithms.cox_local import _is_categorical, check_dof
from pht.algorithms.cox_weighted import station_meat
from pht.algorithms.glm import GlmModel, GlmRows, GlmSums, glm_model
from pht.algorithms.glm_local import (
    check_cells,
    describe,
    pieces_output,
    sums_dict,
    sums_of,
    terms_output,
)
from pht.algorithms.iptw import (
    GRID,
    ArmSums,
    above_grid,
    arm_sums,
    choose_cutoff,
    expit,
    extreme_counts,
    weights,
)
from pht.algorithms.levels import labels
from pht.columns import missing, numbers
from pht.errors import DataError, DisclosureError

ARMS = ("treated", "control")


def outcome_model_of(parameters: Mapping[str, Any]) -> GlmModel | None:
    """The outcome GLM's family and link; None for a Cox outcome model."""
    if parameters.get("outcome_model", "glm") == "cox":
        return None
    return glm_model(
        str(parameters.get("family", "binomial")), parameters.get("link") or None
    )


def used_columns(parameters: Mapping[str, Any]) -> list[str]:
    """Treatment, covariates and the outcome's columns: what a complete case needs."""
    names = [parameters["treatment"], *(parameters.get("covariates") or [])]
    if parameters.get("outcome_model", "glm") == "cox":
        names += [parameters["time"], parameters["event"]]
    else:
        names.append(parameters["outcome"])
    return list(dict.fromkeys(names))


def outcome_p(parameters: Mapping[str, Any], design_p: int) -> int:
    """Parameters of the outcome model (``design_p`` excludes the intercept)."""
    extra = design_p if parameters.get("outcome_covariates") else 0
    return (1 if parameters.get("outcome_model", "glm") == "cox" else 2) + extra


def arm_dict(sums: ArmSums) -> dict[str, Any]:
    """:class:`ArmSums` as a JSON object."""
    return {
        "n": int(sums.n),
        "w_sum": float(sums.w_sum),
        "w2_sum": float(sums.w2_sum),
        "x_sum": sums.x_sum.tolist(),
        "x2_sum": sums.x2_sum.tolist(),
        "wx_sum": sums.wx_sum.tolist(),
        "wx2_sum": sums.wx2_sum.tolist(),
    }


def arm_of(output: Mapping[str, Any], p: int) -> ArmSums:
    """A weights reply's arm (raises KeyError/TypeError/ValueError when malformed)."""

    def vector(key: str) -> np.ndarray:
        return np.asarray(output[key], dtype=np.float64).reshape(p)

    return ArmSums(
        n=int(output["n"]),
        x_sum=vector("x_sum"),
        x2_sum=vector("x2_sum"),
        w_sum=float(output["w_sum"]),
        w2_sum=float(output["w2_sum"]),
        wx_sum=vector("wx_sum"),
        wx2_sum=vector("wx2_sum"),
    )


def marginal_of(designs: Mapping[str, Mapping[str, Any]]) -> float:
    """The pooled ``P(treated)`` from the propensity design replies' sums."""
    total = None
    for station in sorted(designs):
        part = sums_of(designs[station])
        total = part if total is None else total + part
    if total is None or total.weight <= 0:
        raise ValueError("no design sums")
    return total.weighted_y / total.weight


def outcome_sums_of(weighed: Mapping[str, Mapping[str, Any]]) -> GlmSums:
    """The pooled outcome :class:`GlmSums` of the weights replies (sorted order)."""
    total = None
    for station in sorted(weighed):
        part = sums_of({"sums": weighed[station]["outcome_sums"]})
        total = part if total is None else total + part
    if total is None:
        raise ValueError("no weights replies")
    return total


def cutoff_of(weighed: Mapping[str, Mapping[str, Any]], q: float) -> float:
    """The truncation cut-off the weights replies' counts give (sorted order)."""
    counts, sizes = [], []
    for station in sorted(weighed):
        output = weighed[station]
        above = output["above"]
        if not isinstance(above, list):
            raise ValueError("no counts above the grid")
        counts.append([None if c is None else int(c) for c in above])
        sizes.append(int(output["treated"]["n"]) + int(output["control"]["n"]))
    return choose_cutoff(counts, sizes, q)


def _check_cells(
    column: str, values: np.ndarray, arms: np.ndarray, k: int, categorical: bool
) -> None:
    """Refuse an arm x level cell of 1..k-1 patients (per-arm sums would count it)."""
    for arm in (True, False):
        inside = values[arms == arm]
        if inside.size == 0:
            continue
        tally = Counter(inside.tolist())
        if categorical:
            small = any(0 < c < k for c in tally.values())
        else:  # a numeric column: patients differing from the arm's commonest value
            small = 0 < inside.size - max(tally.values()) < k
        if small:
            raise DisclosureError(
                f"a level of '{column}' within a treatment arm has fewer than {k} "
                "patients at this station; merge levels or drop the covariate"
            )


class LocalIptw:
    """A station's rows of an IPTW analysis, kept for all rounds of a session."""

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        parameters: Mapping[str, Any],
        k: int,
        rules: Mapping[str, Any] | None = None,
    ) -> None:
        self.k = k
        self.share = float((rules or {}).get("dominance_share", 0.9))
        self.parameters = dict(parameters)
        self.treatment = str(parameters["treatment"])
        treated, control = str(parameters["treated"]), str(parameters["control"])
        self.covariates = list(parameters.get("covariates") or [])
        self.estimand = str(parameters.get("estimand", "ATE"))
        self.stabilised = bool(parameters.get("stabilised", False))
        self.truncating = parameters.get("truncate") is not None
        self.cox = parameters.get("outcome_model", "glm") == "cox"
        self.outcome_model = outcome_model_of(parameters)
        declared = set(parameters.get("categorical") or [])
        used = used_columns(parameters)
        arm_label, _ = labels(
            columns[self.treatment][~missing(columns[self.treatment])]
        )
        level = np.full(columns[self.treatment].shape, None, dtype=object)
        level[~missing(columns[self.treatment])] = arm_label
        in_arms = (level == treated) | (level == control)
        complete = ~np.logical_or.reduce([missing(columns[c]) for c in used])
        keep = in_arms & complete
        self.excluded = int(np.count_nonzero(in_arms & ~complete))
        rows = {c: columns[c][keep] for c in used}
        self.t = (level[keep] == treated).astype(np.float64)
        n = int(self.t.size)
        if n < k:
            raise DisclosureError(f"fewer than {k} complete cases at this station")
        self.arms = {"treated": int(self.t.sum()), "control": n - int(self.t.sum())}
        if any(0 < c < k for c in self.arms.values()):
            raise DisclosureError(
                f"a treatment arm has fewer than {k} patients at this station"
            )
        self.events: int | None
        if self.cox:
            self.time = numbers(rows[str(parameters["time"])])
            self.event = numbers(rows[str(parameters["event"])])
            if not np.all(np.isin(self.event, (0.0, 1.0))):
                raise DataError(
                    f"column '{parameters['event']}' (the event) must hold 0 and 1"
                )
            self.events = int(self.event.sum())
            if self.events < k:
                raise DisclosureError(f"fewer than {k} events at this station")
        else:
            assert self.outcome_model is not None
            self.outcome = str(parameters["outcome"])
            self.y = numbers(rows[self.outcome])
            family = self.outcome_model.family
            if family == "binomial" and not np.all(np.isin(self.y, (0.0, 1.0))):
                raise DataError(
                    f"column '{self.outcome}' must hold only 0 and 1 for a binomial "
                    "model"
                )
            if family == "poisson" and np.any(self.y < 0):
                raise DataError(
                    f"column '{self.outcome}' must hold counts >= 0 for a Poisson model"
                )
            self.events = None if family == "gaussian" else int(round(self.y.sum()))
            if self.events is not None and (
                self.events < k or (family == "binomial" and n - self.events < k)
            ):
                raise DisclosureError(
                    f"fewer than {k} events or non-events of '{self.outcome}' at this "
                    "station"
                )
        self.values: dict[str, np.ndarray] = {}
        self.kinds: dict[str, str] = {}
        self.level_types: dict[str, str] = {}
        arms = self.t == 1
        for column in self.covariates:
            values = rows[column]
            if _is_categorical(values, column in declared):
                self.kinds[column] = "categorical"
                self.values[column], self.level_types[column] = labels(values)
            else:
                self.kinds[column] = "numeric"
                self.values[column] = values.astype(np.float64, copy=False)
            _check_cells(
                column,
                self.values[column],
                arms,
                k,
                self.kinds[column] == "categorical",
            )
        self.x: np.ndarray | None = None
        self.ps: GlmRows | None = None
        self.outcome_rows: GlmRows | SortedRows | None = None

    @property
    def n(self) -> int:
        """Complete cases of the two arms."""
        return int(self.t.size)

    def describe(self) -> dict[str, Any]:
        """Round 0: sizes, arms, events, covariate sums and level counts (>= k)."""
        out = describe(
            self.n,
            self.events,
            self.excluded,
            self.k,
            {c: (self.kinds[c], self.values[c]) for c in self.covariates},
            self.level_types,
        )
        out["arms"] = dict(self.arms)
        return out

    def _design(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if min(self.arms.values()) == 0:
            raise DisclosureError("a treatment arm has no patients at this station")
        spec = message["design"]
        design = Design(
            tuple(
                Covariate(c["column"], tuple(c.get("levels") or ()), c.get("reference"))
                for c in spec["covariates"]
            ),
            tuple(float(v) for v in spec["centre"]),
        )
        p = 1 + design.p
        check_dof(self.n, max(p, outcome_p(self.parameters, design.p)))
        x = np.empty((self.n, p))
        x[:, 0] = 1.0
        x[:, 1:] = design_matrix(self.values, design)
        # the propensity terms at the origin count pairs of 0/1 columns and the
        # treated among each: each 0 or at least k, as for a glm
        check_cells(x, self.t, "binomial", self.k, self.share, self.treatment)
        # the outcome model's terms are weighted sums over each arm (and value): the
        # events among them, as for a glm, 0 or at least k; checked here, so that a
        # station that cannot release them leaves before the fit, not in the middle
        # with the covariates whatever the outcome design: the weights depend on them,
        # so per-arm weighted sums weigh each arm x value cell differently
        design_out = np.hstack([np.ones((self.n, 1)), self.t[:, None], x[:, 1:]])
        if self.cox:
            check_cells(design_out, self.event, "binomial", self.k, self.share, "event")
        else:
            assert self.outcome_model is not None
            check_cells(
                design_out,
                self.y,
                self.outcome_model.family,
                self.k,
                self.share,
                self.outcome,
            )
        self.x = x
        self.ps = GlmRows(glm_model("binomial"), x, self.t, outcome=self.treatment)
        return {"p": p, "sums": sums_dict(self.ps.sums())}

    def _weights(self, message: Mapping[str, Any]) -> dict[str, Any]:
        assert self.x is not None
        beta = np.asarray(message["beta"], dtype=np.float64)
        e = expit(self.x @ beta)
        marginal = float(message["marginal"]) if self.stabilised else None
        cutoff = message.get("cutoff")
        w = weights(
            self.t,
            e,
            self.estimand,
            marginal=marginal,
            cutoff=None if cutoff is None else float(cutoff),
        )
        treated = self.t == 1
        covariates = self.x[:, 1:]
        out: dict[str, Any] = {
            arm: arm_dict(arm_sums(covariates[mask], w[mask]))
            for arm, mask in (("treated", treated), ("control", ~treated))
        }
        out["extreme"] = {
            "treated": extreme_counts(w[treated], self.k),
            "control": extreme_counts(w[~treated], self.k),
        }
        if cutoff is not None:
            # the untruncated minus the truncated sums are sums over the patients
            # above the cut-off: only where this station released their count
            untruncated = weights(self.t, e, self.estimand, marginal=marginal)
            position = [g for g in GRID if g == float(cutoff)]
            if not position or (
                above_grid(untruncated, self.k, treated, self.share)[
                    GRID.index(position[0])
                ]
                is None
            ):
                raise DisclosureError(
                    "the truncation cut-off would single out patients with the "
                    "largest weights at this station"
                )
        out["above"] = (
            above_grid(w, self.k, treated, self.share)
            if self.truncating and message.get("op") == "weights"
            else None
        )
        columns = [self.t[:, None]]
        if self.parameters.get("outcome_covariates"):
            columns.append(covariates)
        if self.cox:
            self.outcome_rows = SortedRows(
                self.time, self.event, np.hstack(columns), weights=w
            )
            out["outcome_sums"] = None
        else:
            assert self.outcome_model is not None
            rows = GlmRows(
                self.outcome_model,
                np.hstack([np.ones((self.n, 1)), *columns]),
                self.y,
                var_weights=w,
                outcome=self.outcome,
            )
            self.outcome_rows = rows
            out["outcome_sums"] = sums_dict(rows.sums())
        return out

    def answer(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one round: the ops in the module docstring, in that order."""
        op = message.get("op")
        if op == "design":
            return self._design(message)
        if self.ps is None:
            raise DataError("the design must be agreed before rounds")
        self.values = {}  # agreed (a station refusing it may make the others redo it)
        beta = np.asarray(message["beta"], dtype=np.float64)
        if op in ("terms", "weights", "truncate") and beta.shape != (self.ps.p,):
            raise DataError(f"expected {self.ps.p} coefficients")
        if op == "terms":
            return terms_output(self.ps, beta)
        if op in ("weights", "truncate"):
            return self._weights(message)
        rows = self.outcome_rows
        if rows is None:
            raise DataError("the weights must be computed before the outcome model")
        if beta.shape != (rows.p,):
            raise DataError(f"expected {rows.p} coefficients")
        if isinstance(rows, SortedRows):
            if op == "outcome":
                terms = rows.terms(beta, "efron")
                return {
                    "loglik": terms.loglik,
                    "gradient": terms.gradient.tolist(),
                    "hessian": terms.hessian.tolist(),
                }
            if op == "checks":
                return {"meat": station_meat(rows, beta, "efron").tolist()}
        else:
            if op == "outcome":
                return terms_output(rows, beta)
            if op == "checks":
                return pieces_output(rows, beta, float(message["null_intercept"]))
        raise DataError(f"operation {op!r} is not part of an IPTW session")
