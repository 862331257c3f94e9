"""The station side of a federated Cox fit: describe, design, and every evaluation.

One :class:`LocalCox` per session holds the station's complete cases sorted by time;
the ``survival.cox`` train is a thin adapter around it. The station-side rules of
disclosure are here too: no release from fewer than k complete cases or k events,
no level with fewer than k patients (:func:`describe_levels`), and at least 10
patients per model parameter (:func:`check_dof`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pht.algorithms.cox import Covariate, Design, SortedRows, Ties, design_matrix
from pht.algorithms.cox_checks import (
    concordance_counts,
    own_fit,
    ph_pieces,
    pooled_part,
)
from pht.algorithms.disclosure import coarsen
from pht.algorithms.levels import labels
from pht.columns import Columns, missing, numbers
from pht.errors import DataError, DisclosureError
from pht.wire import decode_array, encode_array

PATIENTS_PER_PARAMETER = 10
"""The degrees-of-freedom rule: a station fits a design only with at least this many
complete cases per parameter."""


def check_dof(n: int, p: int) -> None:
    """Refuse a design with fewer than :data:`PATIENTS_PER_PARAMETER` rows each."""
    if n < PATIENTS_PER_PARAMETER * p:
        raise DisclosureError(
            f"fewer than {PATIENTS_PER_PARAMETER} patients per parameter ({p} "
            "parameters) at this station; use fewer covariates"
        )


def checks_output(
    rows: SortedRows,
    beta: np.ndarray,
    ties: Ties,
    times: np.ndarray | None,
    weights: tuple[np.ndarray, np.ndarray] | None,
    estimate: bool,
) -> dict[str, Any]:
    """The ``checks`` answer at the converged ``beta`` (:mod:`pht.algorithms.cox_checks`).

    ``ph``: stratified (``times`` None), the score and information blocks of the
    station's own stratum; pooled, its part given the pooled weights. ``concordance``:
    pair counts of its own patients and the sums of its SE. ``estimate`` (only when
    the station's policy allows it, and null unless its own fit converges): its own
    fit's coefficients and covariance. Also the train's code: both must agree.
    """
    out: dict[str, Any] = {"ph": None}
    if times is None:
        pieces = ph_pieces(rows, beta, ties)
        if pieces is not None:
            out["ph"] = {
                "score": pieces.score.tolist(),
                "cross": pieces.cross.tolist(),
                "square": pieces.square.tolist(),
            }
    elif weights is not None:
        part = pooled_part(rows, beta, times, *weights)
        if part is not None:
            out["ph"] = {
                "deaths": part.deaths.tolist(),
                "cross": part.cross.tolist(),
                "square": part.square.tolist(),
            }
    counts = concordance_counts(rows.time, rows.event, rows.x @ beta)
    out["concordance"] = {
        "concordant": counts.concordant,
        "discordant": counts.discordant,
        "tied_risk": counts.tied_risk,
        "influence": [counts.dd, counts.dn, counts.nn],
    }
    fit = own_fit(rows, ties) if estimate else None
    out["estimate"] = (
        None
        if fit is None
        else {"coef": fit.coef.tolist(), "covariance": fit.covariance.tolist()}
    )
    return out


def describe_levels(column: str, values: np.ndarray, k: int) -> dict[str, int]:
    """Level counts of canonical labels, refusing any level with fewer than k rows."""
    tally = sorted(Counter(values.tolist()).items())
    if any(c < k for _, c in tally):
        raise DisclosureError(
            f"a level of '{column}' has fewer than {k} patients at this station; "
            "merge levels"
        )
    return {str(label): int(c) for label, c in tally}


def _is_categorical(values: np.ndarray, declared: bool) -> bool:
    """Text, booleans and declared columns are categorical; other numbers numeric."""
    return declared or values.dtype.kind not in "iuf"


class LocalCox:
    """The station side of a federated Cox fit, kept for all rounds of a session.

    Built once from the station's columns: the complete cases on time, event and
    covariates, sorted by time (times on the station's grid in pooled mode). Round 0
    is :meth:`describe`; then :meth:`answer` takes ``design`` once and one
    evaluation per Newton-Raphson step (``terms``; or ``sums`` and ``curvature``).
    The disclosure rules live here: fewer than k complete cases or k events, a level
    with fewer than k patients, fewer than 10 patients per parameter: refused.
    """

    def __init__(
        self,
        columns: Columns,
        parameters: Mapping[str, Any],
        k: int,
        grid: Sequence[float] | None = None,
    ) -> None:
        params = parameters
        self.k = k
        self.mode = params["mode"]
        self.ties = params["ties"]
        self.covariates = list(params["covariates"])
        declared = set(params.get("categorical") or [])
        time_col, event_col = params["time"], params["event"]
        used = list(dict.fromkeys([time_col, event_col, *self.covariates]))
        keep = ~np.logical_or.reduce([missing(columns[c]) for c in used])
        complete = {c: columns[c] if keep.all() else columns[c][keep] for c in used}
        self.excluded = int(keep.size - keep.sum())
        time = numbers(complete[time_col])
        event = numbers(complete[event_col])
        if np.any(time < 0):
            raise DataError(f"column '{time_col}' has negative durations")
        if not np.all(np.isin(event, (0.0, 1.0))):
            raise DataError(f"column '{event_col}' must hold only 0 and 1")
        if grid:
            # pooled mode: times only on the station's grid (interval boundaries)
            time = coarsen(time, grid)
        if len(time) < self.k:
            raise DisclosureError(f"fewer than {self.k} complete cases at this station")
        if event.sum() < self.k:
            raise DisclosureError(f"fewer than {self.k} events at this station")
        self.time, self.event = time, event
        self.values: dict[str, np.ndarray] = {}
        self.kinds: dict[str, str] = {}
        self.level_types: dict[str, str] = {}
        for column in self.covariates:
            values = complete[column]
            if _is_categorical(values, column in declared):
                self.kinds[column] = "categorical"
                # canonical labels: 1 for both 1 and 1.0 (pht.algorithms.levels)
                self.values[column], self.level_types[column] = labels(values)
            else:
                self.kinds[column] = "numeric"
                self.values[column] = values.astype(np.float64, copy=False)
        del complete, columns
        # sorted by time once, so the design matrix is built in order and never copied
        order = np.argsort(self.time, kind="stable")
        self.time, self.event = self.time[order], self.event[order]
        for column in self.covariates:
            self.values[column] = self.values[column][order]
        del order
        self.rows: SortedRows | None = None
        self.times: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        """Round 0: sizes, covariate sums and level counts (>= k), event times."""
        columns: dict[str, Any] = {}
        for column in self.covariates:
            values = self.values[column]
            if self.kinds[column] == "numeric":
                if np.ptp(values) == 0 and len(values) > 0:
                    columns[column] = {
                        "kind": "numeric",
                        "sum": float(values.sum()),
                        "constant": True,
                    }
                else:
                    columns[column] = {
                        "kind": "numeric",
                        "sum": float(values.sum()),
                        "constant": False,
                    }
                continue
            columns[column] = {
                "kind": "categorical",
                "levels": describe_levels(column, values, self.k),
                "level_type": self.level_types[column],
            }
        described: dict[str, Any] = {
            "n": int(self.time.size),
            "events": int(self.event.sum()),
            "excluded": int(self.excluded)
            if self.excluded == 0 or self.excluded >= self.k
            else None,  # a small number of excluded rows is a small cell
            "columns": columns,
        }
        if self.mode == "pooled":
            described["event_times"] = np.unique(self.time[self.event == 1]).tolist()
        return described

    def _design(self, message: Mapping[str, Any]) -> dict[str, Any]:
        spec = message["design"]
        design = Design(
            tuple(
                Covariate(c["column"], tuple(c.get("levels", ())), c.get("reference"))
                for c in spec["covariates"]
            ),
            tuple(float(v) for v in spec["centre"]),
        )
        check_dof(int(self.time.size), design.p)
        x = design_matrix(self.values, design)
        self.rows = SortedRows(self.time, self.event, x)
        del x
        if self.mode != "pooled":
            return {"p": design.p}
        self.times = np.asarray(message["times"], dtype=np.float64)
        if (
            self.times.ndim != 1
            or self.times.size == 0
            or not np.all(np.isfinite(self.times))
            or np.any(np.diff(self.times) <= 0)
        ):
            raise DataError("the union of event times must be finite and increasing")
        deaths, x_death = self.rows.counts(self.times)
        # what does not depend on the coefficients is sent once
        return {
            "p": design.p,
            "deaths": encode_array(deaths),
            "x_death": x_death.tolist(),
        }

    def answer(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Answer ``design`` once, then one operation per Newton evaluation.

        ``terms`` in stratified mode; ``sums`` and, when the Hessian is needed,
        ``curvature`` in pooled mode; ``checks`` once at the converged point (the
        station adds ``station_estimate``: whether its policy allows its own fit).
        """
        op = message.get("op")
        if op == "design":
            return self._design(message)
        if self.rows is None:
            raise DataError("the design must be agreed before rounds")
        self.values = {}  # design agreed: the covariates now live sorted in self.rows
        beta = np.asarray(message["beta"], dtype=np.float64)
        if beta.shape != (self.rows.p,):
            raise DataError(f"expected {self.rows.p} coefficients")
        if op == "terms" and self.mode == "stratified":
            terms = self.rows.terms(beta, self.ties)
            return {
                "loglik": terms.loglik,
                "gradient": terms.gradient.tolist(),
                "hessian": terms.hessian.tolist(),
            }
        if op == "sums" and self.mode == "pooled":
            sums = self.rows.sums(beta, self.times)
            return {
                "s0": encode_array(sums.s0),
                "s1": encode_array(sums.s1),
                "d0": encode_array(sums.d0),
                "d1": encode_array(sums.d1),
            }
        if op == "checks":
            weights = None
            if self.mode == "pooled":
                assert self.times is not None
                shape = (self.times.size,)
                weights = (
                    decode_array(message["w1"], shape),
                    decode_array(message["w2"], shape),
                )
            return checks_output(
                self.rows,
                beta,
                self.ties,
                self.times if self.mode == "pooled" else None,
                weights,
                bool(message.get("station_estimate")),
            )
        if op == "curvature" and self.mode == "pooled":
            assert self.times is not None
            shape = (self.times.size,)
            w1, w2 = (
                decode_array(message["w1"], shape),
                decode_array(message["w2"], shape),
            )
            if not (np.all(np.isfinite(w1)) and np.all(np.isfinite(w2))):
                raise DataError("curvature weights must be finite")
            return {"curvature": self.rows.curvature(beta, self.times, w1, w2).tolist()}
        raise DataError(f"operation {op!r} is not available in {self.mode} mode")
