"""Station side of ``nma.inputs``: a station's treatment arms as one NMA "study".

Per arm (a level of the ``treatment`` column, or with ``treatment_by`` a pair of
levels labelled ``"<treatment> / <treatment_by>"``) the station computes, for
``input``:

* ``events``: ``n`` and ``events`` (a 0/1 ``outcome``);
* ``means``: ``n``, ``mean`` and ``sd`` (``n - 1`` denominator) of a numeric ``measure``;
* ``rates``: ``n``, ``events`` and ``person_time`` (sum of the time column);
* ``cox``: ``n`` per arm (not its events) and the station's own Cox model (Efron
  ties, optional covariates and strata) with dummy-coded arms against the reference
  (the first selected arm in label order): only the arms' log hazard ratios and
  their covariance block are released.

:func:`station_output` is the one computation: the train's entrypoint calls it and the
station calls it again on its own extract (the plugin's ``recompute``), releasing its
own values. Its output is the *wire* form the output guard checks (labels only as
map keys or ``label`` fields: ``arms[treatment][treatment_by or "all"]``);
:func:`flatten` turns it into the released form keyed by arm label.

Rules (all at the station, by construction)
-------------------------------------------
Every rule refuses the whole request; no arm is ever left out for being small, so
there is nothing for differencing across requests to recover: the released arms of
any requests, and any margins (e.g. a one-way request's treatment totals), only
give counts that are sums of whole arms, each 0 or >= k.

1. **no small arm** (:data:`SMALL_ARM`): the station builds the full arm table of
   ``treatment`` (x ``treatment_by``) on its whole extract, before ``treatments``
   and before any rule of the input. If any arm holds ``0 < n < k`` patients
   (``means``: ``n < max(k, 2)``), the request is refused with a fixed sentence
   (no count, no arm named).
2. **labels**: labels of the two columns must not contain the separator ``" / "``,
   and no two arms may share a label (``"x /" + "y"`` and ``"x" + "/ y"``): refused,
   naming the columns.
3. ``treatments`` (optional) only selects which of those arms are released; fewer
   than two selected arms present at the station: refused (:data:`FEW_ARMS`). At
   most :data:`MAX_ARMS` selected arms.
4. ``events`` / ``rates``: per selected arm ``events`` and ``n - events`` each 0 or
   >= k, else refused (the rule is named, not the arm's count). ``rates``: no
   patient's time more than ``dominance_share`` of the arm's person-time ((1, p)
   dominance); times >= 0; the event column 0/1.
5. ``means``: the means train's level rules per selected arm
   (``pht.trains.means.level_rules``, passed in: tied mass and dominance of the sum
   and of the squared deviations).
6. ``cox``: per selected arm at least ``k`` events, else refused (no arm is left
   out before the fit); the arms carry ``n`` only. On the rows actually fitted (the
   selected arms), the survival.cox station rules: every covariate (numeric, 0/1 or
   text) has at least ``k`` patients off its most common value; every level of a
   text or boolean covariate holds >= k patients
   (:func:`~pht.algorithms.cox_local.describe_levels`); no rare pattern of the arms,
   covariates and strata alone spans a direction of the design
   (:func:`spanned_by_few`, the extraction's rule for survival.cox); every
   ``strata`` level present holds >= k patients and >= k events (what survival.cox
   asks of each stratum, a station); at least 10 patients per parameter
   (:func:`~pht.algorithms.cox_local.check_dof`). The fit must converge to finite
   coefficients with a positive-definite information, every released coefficient
   and SE within :data:`~pht.algorithms.cox_checks.BOUND` (15 on the log scale):
   else refused. Covariate and stratum effects are not released.
7. ``rounding_base > 1`` refuses every input: means, rates and the Cox model are
   released exact or not at all, and rounded arm counts next to exact event counts
   would be a mixed release, so ``events`` refuses too.

What a hostile analyst could still learn (not defended)
-------------------------------------------------------
* **refusal is a one-bit signal**, as for every train: that a request is refused
  says some rule failed (e.g. that some arm of the table holds fewer than k
  patients, or some selected arm fewer than k events), never which arm or count;
* that a requested arm is absent says it holds no patient at the station;
* an arm's ``n``, ``mean`` and ``sd`` bound each of its values (Samuelson), as in
  ``means``; a released arm with ``events = n`` says every member had the event
  (zeros are allowed, as in the threshold rule);
* the Cox contrasts carry the information of the fitted rows as any fitted model
  does; covariate coefficients are withheld but the treatment block of an adjusted
  model combined with an unadjusted one (two requests) says something about the
  covariates' association with the arms; the rules on covariates are about the
  design (who could be isolated), not about what the coefficients say.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pht.algorithms.cox import (
    Covariate,
    Design,
    SortedRows,
    add_terms,
    design_matrix,
)
from pht.algorithms.cox_checks import BOUND
from pht.algorithms.cox_local import check_dof, describe_levels
from pht.algorithms.levels import LevelType, labels, sort_levels
from pht.algorithms.optimize import maximise
from pht.algorithms.utilisation import Rules
from pht.columns import missing, numbers
from pht.errors import DataError, DisclosureError

INPUTS = ("events", "means", "rates", "cox")
"""What a station computes per arm (the ``input`` parameter)."""
SEPARATOR = " / "
"""Between the treatment and the treatment_by label of an arm."""
ALL = "all"
"""The inner key of the wire form without ``treatment_by`` (always a station label)."""
MAX_ARMS = 50
"""The most arms a station releases (the manifest's ``max_keys``)."""
MAX_VALUE = 1e15
"""The largest ``|mean|`` and ``sd`` the output schema allows."""
MAX_PERSON_TIME = 1e12
"""The largest person-time the output schema allows."""
FEW_ARMS = (
    "fewer than two of the requested arms at this station; list at least two of its "
    "arms in 'treatments' or leave treatments out"
)
"""Rule 3's refusal (fixed: no count, no arm named)."""
SMALL_ARM = (
    "an arm (treatment x treatment_by) holds fewer than k patients; use fewer "
    "columns or merge levels"
)
"""Rule 1's refusal (fixed: no count, no arm named)."""

Column = Callable[[str], Any]
Cell = tuple[str, str]
LevelRules = Callable[[np.ndarray, float, int, float, str, str], None]
"""``(values, mean, k, share, measure, group)``: raise DisclosureError when one
level's values may not leave (the means train's ``level_rules``, passed in by the
plugin: this module imports no train)."""


@dataclass(frozen=True)
class Arm:
    """One arm: its labels and the positions of its rows in the extract."""

    treatment: str
    by: str | None
    rows: npt.NDArray[np.intp]

    @property
    def label(self) -> str:
        """``treatment`` or ``"treatment / by"``."""
        return arm_label(self.treatment, self.by)

    @property
    def n(self) -> int:
        """Number of patients."""
        return int(self.rows.size)


def arm_label(treatment: str, by: str | None) -> str:
    """The label of an arm.

    >>> arm_label("nivolumab", "standard"), arm_label("nivolumab", None)
    ('nivolumab / standard', 'nivolumab')
    """
    return treatment if by is None else f"{treatment}{SEPARATOR}{by}"


def treatment_list(value: Any) -> tuple[str, ...] | None:
    """The ``treatments`` parameter (a list of arm labels) as a tuple.

    >>> treatment_list(["nivolumab / standard", "pembrolizumab / standard"])
    ('nivolumab / standard', 'pembrolizumab / standard')
    """
    if value is None:
        return None
    items = list(value) if isinstance(value, list | tuple) else None
    out = tuple(v.strip() for v in items if isinstance(v, str)) if items else ()
    if (
        not items
        or len(out) != len(items)
        or any(not v for v in out)
        or (len(set(out)) != len(out))
    ):
        raise DataError(
            "parameters.treatments: give a list of distinct, non-empty arm labels, "
            "e.g. [nivolumab / standard, pembrolizumab / standard]"
        )
    return out


# -- the arm table ------------------------------------------------------------------------
def _labelled(column: Column, name: str) -> tuple[np.ndarray, LevelType]:
    values = np.asarray(column(name))
    if missing(values).any():
        raise DataError(f"column '{name}' has missing values; the population has none")
    found, kind = labels(values)
    bad = [v for v in set(found.tolist()) if SEPARATOR in str(v)]
    if bad:
        raise DataError(
            f"a label of column '{name}' contains '{SEPARATOR.strip()}' with spaces "
            "around it, which separates arm labels; recode the column"
        )
    return found, kind


def find_arms(
    column: Column, treatment: str, by: str | None
) -> tuple[dict[Cell, Arm], list[str], list[str]]:
    """Every present arm of the extract with the row and column orders.

    Returns ``(arms by (treatment, by-or-ALL), treatment levels, by levels)``, levels
    in :func:`~pht.algorithms.levels.sort_levels` order.
    """
    t_values, t_kind = _labelled(column, treatment)
    b_kind: LevelType | None = None
    if by is None:
        b_values = np.full(t_values.size, ALL, dtype=object)
    else:
        b_values, b_kind = _labelled(column, by)
    positions: dict[Cell, list[int]] = {}
    for i, pair in enumerate(zip(t_values.tolist(), b_values.tolist(), strict=True)):
        positions.setdefault((str(pair[0]), str(pair[1])), []).append(i)
    arms = {
        (t, b): Arm(t, None if by is None else b, np.asarray(where, dtype=np.intp))
        for (t, b), where in positions.items()
    }
    rows = sort_levels({t for t, _ in arms}, t_kind)
    cols = [ALL] if by is None else sort_levels({b for _, b in arms}, b_kind)
    if len({arm.label for arm in arms.values()}) < len(arms):
        raise DataError(
            f"two arms of '{treatment}' x '{by}' would share a label (a label ending "
            f"or starting with '{SEPARATOR.strip()}'); recode one of the columns"
        )
    return arms, rows, cols


def check_sizes(arms: Mapping[Cell, Arm], smallest: int) -> None:
    """Rule 1: refuse when any arm of the whole table holds ``0 < n < smallest``.

    Raises
    ------
    DisclosureError
        :data:`SMALL_ARM` (no count and no arm named).

    Examples
    --------
    >>> arms = {("a", ALL): Arm("a", None, np.arange(3))}
    >>> check_sizes(arms, 3)
    >>> check_sizes(arms, 10)
    Traceback (most recent call last):
    ...
    pht.errors.DisclosureError: an arm (treatment x treatment_by) holds fewer than k \
patients; use fewer columns or merge levels
    """
    if any(0 < arm.n < smallest for arm in arms.values()):
        raise DisclosureError(SMALL_ARM)


def select(
    arms: Mapping[Cell, Arm],
    rows: Sequence[str],
    cols: Sequence[str],
    chosen: tuple[str, ...] | None,
) -> list[Arm]:
    """Rule 3: the arms ``treatments`` selects, in row then column order.

    Raises
    ------
    DisclosureError
        Fewer than two selected arms are present (:data:`FEW_ARMS`), or more than
        :data:`MAX_ARMS`.
    """
    order = [
        arms[(r, b)]
        for r in rows
        for b in cols
        if (r, b) in arms and (chosen is None or arms[(r, b)].label in chosen)
    ]
    if len(order) < 2:
        raise DisclosureError(FEW_ARMS)
    if len(order) > MAX_ARMS:
        raise DisclosureError(
            f"more than {MAX_ARMS} arms at this station; use a coarser treatment "
            "column or list the arms in 'treatments'"
        )
    return order


# -- per-arm statistics --------------------------------------------------------------
def _binary(column: Column, name: str) -> np.ndarray:
    values = numbers(np.asarray(column(name)))
    if not np.all(np.isin(values, (0.0, 1.0))):
        raise DataError(f"column '{name}' must hold only 0 and 1")
    return values


def _times(column: Column, name: str) -> np.ndarray:
    values = numbers(np.asarray(column(name)))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise DataError(f"column '{name}' must hold durations >= 0")
    return values


def _check_events(events: int, n: int, k: int, event: str) -> None:
    for count in (events, n - events):
        if 0 < count < k:
            raise DisclosureError(
                f"an arm has between 1 and {k - 1} patients with, or without, "
                f"'{event}' (threshold rule on events); merge arms or leave one out"
            )


def _arm_stats(
    arm: Arm,
    values: Mapping[str, np.ndarray],
    parameters: Mapping[str, Any],
    k: int,
    share: float,
    level_rules: LevelRules,
) -> dict[str, Any]:
    """One selected arm's released numbers (rules 4 to 6)."""
    kind = parameters["input"]
    out: dict[str, Any] = {"n": arm.n}
    if kind == "means":
        x = values["measure"][arm.rows]
        mean = math.fsum(x) / x.size
        level_rules(x, mean, k, share, str(parameters["measure"]), "arm")
        sd = math.sqrt(math.fsum((x - mean) ** 2) / (x.size - 1))
        if abs(mean) > MAX_VALUE or sd > MAX_VALUE:
            raise DataError(
                f"column '{parameters['measure']}': a mean or SD beyond the bounds "
                f"the output schema allows ({MAX_VALUE:g}); check the column's unit"
            )
        out.update(mean=float(mean), sd=float(sd))
        return out
    event_name = str(parameters["outcome" if kind == "events" else "event"])
    events = int(values["event"][arm.rows].sum())
    if kind == "cox":
        # the model is released, not the arm's events (nor its survivors)
        if events < k:
            raise DisclosureError(
                f"an arm has fewer than {k} patients with '{event_name}' (the Cox "
                "model needs k events per arm); merge arms or leave it out with "
                "'treatments'"
            )
        return out
    _check_events(events, arm.n, k, event_name)
    out["events"] = events
    if kind == "rates":
        t = values["time"][arm.rows]
        total = math.fsum(t)
        if t.size and t.max() > share * total > 0:
            raise DisclosureError(
                f"one patient contributes more than {share:g} of an arm's person-time "
                f"in '{parameters['time']}' (dominance); merge arms"
            )
        if total > MAX_PERSON_TIME:
            raise DataError(
                f"column '{parameters['time']}': person-time beyond the bound the "
                f"output schema allows ({MAX_PERSON_TIME:g}); check the unit"
            )
        out["person_time"] = float(total)
    return out


# -- the station's Cox model ---------------------------------------------------------
@dataclass(frozen=True)
class ArmContrasts:
    """Log hazard ratios of the arms against the reference, with their covariance."""

    reference: Arm
    terms: tuple[Arm, ...]
    coef: npt.NDArray[np.float64]
    cov: npt.NDArray[np.float64]


CELL_LEVELS = 20
"""A column with at most this many distinct values defines patterns (the extraction's
:data:`pht.station.extraction.CELL_LEVELS`)."""


def spanned_by_few(columns: Sequence[np.ndarray], k: int) -> bool:
    """Whether a few rows alone span a direction of the columns' design.

    The rule the station's extraction applies to survival.cox covariates
    (``pht.station.extraction.spanned_by_few``, which the train cannot import), here
    on arrays, so that it can run on the rows actually fitted. The design is an
    intercept, the numeric columns (standardised) and dummies of every level of the
    others. A pattern is a combination of the values of the columns with at most
    :data:`CELL_LEVELS` values; one held by fewer than ``k`` rows is rare. If the
    design loses rank without the rows of one rare pattern (or of all rare patterns
    together, when they are fewer than ``k`` rows), some combination of the columns
    would be estimated from those rows alone.

    Examples
    --------
    >>> a = np.array(["x"] * 30 + ["y"] * 30, dtype=object)
    >>> b = np.array(["u"] * 29 + ["v"] + ["u"] * 15 + ["v"] * 15, dtype=object)
    >>> spanned_by_few([a, b], 10), spanned_by_few([a, a], 10)
    (False, False)
    >>> c = np.array(["u"] * 59 + ["w"], dtype=object)  # one row spans w's dummy
    >>> spanned_by_few([a, c], 10)
    True
    """
    n = int(columns[0].size) if columns else 0
    parts: list[np.ndarray] = [np.ones(n)]
    pattern: list[np.ndarray] = []
    for raw in columns:
        named = labels(raw)[0].reshape(-1).tolist()
        index = {label: j for j, label in enumerate(dict.fromkeys(named))}
        codes = np.fromiter(map(index.__getitem__, named), np.int64, len(named))
        if len(index) <= CELL_LEVELS:
            pattern.append(codes)
        if np.asarray(raw).dtype.kind in "biuf":
            values = np.asarray(raw, dtype=np.float64)
            spread = values.std()
            if spread > 0:
                parts.append((values - values.mean()) / spread)
        else:
            parts.extend((codes == j).astype(np.float64) for j in range(len(index)))
    if not pattern or n == 0:
        return False
    _, which, counts = np.unique(
        np.stack(pattern, axis=1), axis=0, return_inverse=True, return_counts=True
    )
    which = which.reshape(-1)
    rare = np.flatnonzero(counts < k)
    if rare.size == 0:
        return False
    design = np.stack(parts, axis=1)
    gram = design.T @ design

    def rank(matrix: np.ndarray) -> int:
        eigen = np.linalg.eigvalsh((matrix + matrix.T) / 2)
        return int(np.sum(eigen > 1e-9 * max(float(eigen.max()), 1.0)))

    full = rank(gram)
    without_all = gram.copy()
    for pattern_id in rare:
        rows = design[which == pattern_id]
        part = rows.T @ rows
        without_all -= part
        if rank(gram - part) < full:
            return True
    return int(counts[rare].sum()) < k and rank(without_all) < full


def check_fitted_rows(
    arm_of: np.ndarray,
    event: np.ndarray,
    covariates: Mapping[str, np.ndarray],
    strata: np.ndarray | None,
    k: int,
) -> None:
    """Rule 6 on the rows actually fitted: the survival.cox station rules.

    ``arm_of`` is each fitted row's arm, ``event`` its 0/1 event, ``covariates`` and
    ``strata`` its values (already restricted to the fitted rows).

    Raises
    ------
    DisclosureError
        A covariate with fewer than ``k`` patients off its most common value, a
        level of a categorical covariate with fewer than ``k`` patients, a rare
        pattern spanning a direction of the design, or a stratum with fewer than
        ``k`` patients or events (fixed sentences: columns named, no count).
    """
    for name, values in covariates.items():
        _, counts = np.unique(labels(values)[0].astype(str), return_counts=True)
        if int(counts.sum() - counts.max()) < k:
            raise DisclosureError(
                f"covariate '{name}': fewer than k patients of the selected arms "
                "differ from its most common value; drop it or select other arms"
            )
        if values.dtype.kind not in "iuf":
            describe_levels(name, labels(values)[0], k)
    if strata is not None:
        s = labels(strata)[0]
        for level in set(s.tolist()):
            inside = s == level
            if inside.sum() < k or event[inside].sum() < k:
                raise DisclosureError(
                    "a stratum of the selected arms holds fewer than k patients or "
                    "fewer than k events; merge strata levels or drop strata"
                )
    columns = [arm_of.astype(str).astype(object), *covariates.values()]
    if strata is not None:
        columns.append(strata)
    if covariates and spanned_by_few(columns, k):
        raise DisclosureError(
            "a few patients of the selected arms alone span a combination of the "
            "arms, covariates and strata (a rare pattern); drop covariates or merge "
            "levels"
        )


def cox_contrasts(
    arms: Sequence[Arm],
    time: np.ndarray,
    event: np.ndarray,
    covariates: Mapping[str, np.ndarray],
    strata: np.ndarray | None,
    k: int,
) -> ArmContrasts:
    """The station's own Cox fit with dummy-coded arms (the first is the reference).

    Efron ties; covariates numeric as they are, text and booleans dummy-coded against
    their first level; stratified by ``strata`` (a baseline hazard per level). The
    covariate and strata rules of :func:`check_fitted_rows` hold on the fitted rows.
    Only the arms' block is returned.

    Raises
    ------
    DisclosureError
        A survival.cox station rule, a fit that does not converge or coefficients
        or SEs beyond :data:`~pht.algorithms.cox_checks.BOUND`.
    """
    rows = np.concatenate([a.rows for a in arms])
    arm_of = np.concatenate([np.full(a.n, i) for i, a in enumerate(arms)])
    fitted = {name: raw[rows] for name, raw in covariates.items()}
    check_fitted_rows(
        arm_of, event[rows], fitted, None if strata is None else strata[rows], k
    )
    columns: dict[str, np.ndarray] = {}
    design: list[Covariate] = []
    terms: list[str] = []
    for i in range(1, len(arms)):
        name = f"__arm{i}"
        columns[name] = (arm_of == i).astype(np.float64)
        design.append(Covariate(name))
        terms.append(name)
    for name, values in fitted.items():
        if values.dtype.kind in "iuf":
            columns[name] = values.astype(np.float64)
            design.append(Covariate(name))
            continue
        # at least two levels of >= k patients each (check_fitted_rows)
        coded, kind = labels(values)
        levels = tuple(sort_levels(set(coded.tolist()), kind))
        columns[name] = coded
        design.append(Covariate(name, levels, levels[0]))
    zero = Design(tuple(design), tuple(0.0 for _ in Design(tuple(design), ()).names))
    x = design_matrix(columns, zero)
    x -= x.mean(axis=0)
    p = x.shape[1]
    check_dof(int(rows.size), p)
    t, e = time[rows], event[rows]
    groups = [np.arange(rows.size)]
    if strata is not None:
        s = labels(strata[rows])[0]
        groups = [np.flatnonzero(s == level) for level in sorted(set(s.tolist()))]
    parts = [SortedRows(t[g], e[g], x[g]) for g in groups]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        fit = maximise(
            lambda b: add_terms([part.terms(b, "efron") for part in parts]), p
        )
    if not fit.converged or not np.all(np.isfinite(fit.beta)):
        raise DisclosureError(
            f"the station's Cox fit did not converge in {fit.iterations} iterations "
            "(an arm without events in a stratum?); merge arms or drop covariates"
        )
    information = -np.asarray(fit.terms.hessian)
    try:
        np.linalg.cholesky(information)
        cov = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        raise DisclosureError(
            "the station's Cox model cannot be estimated (its information is "
            "singular: collinear covariates or arms); drop covariates"
        ) from None
    m = len(terms)
    coef, block = fit.beta[:m], cov[:m, :m]
    se = np.sqrt(np.clip(np.diag(block), 0, None))
    if (
        not np.all(np.isfinite(block))
        or np.any(np.diag(block) <= 0)
        or np.any(np.abs(coef) > BOUND)
        or np.any(se > BOUND)
    ):
        raise DisclosureError(
            f"a log hazard ratio or its SE is beyond {BOUND:g} (the fit diverges: an "
            "arm with few events?); merge arms"
        )
    return ArmContrasts(
        arms[0],
        tuple(arms[1:]),
        np.asarray(coef, dtype=np.float64),
        np.asarray((block + block.T) / 2, dtype=np.float64),
    )


# -- the one computation ----------------------------------------------------------------
def station_output(
    parameters: Mapping[str, Any],
    column: Column,
    min_count: int,
    rules: Mapping[str, Any],
    level_rules: LevelRules,
) -> dict[str, Any]:
    """The ``nma.inputs`` wire output from a station's columns (module docstring).

    ``column(name)`` returns a column of the extract; ``level_rules`` are rule 5
    (:data:`pht.trains.means.level_rules`). The output is keyed
    ``arms[treatment label][treatment_by label or "all"]``; :func:`flatten` gives
    the released form.

    Raises
    ------
    DisclosureError
        A rule of the module docstring refuses the request.
    DataError
        Missing or malformed values, naming the column.

    Examples
    --------
    >>> data = {"drug": np.array(["a", "b"] * 20), "dead": np.array([0, 0, 1, 1] * 10)}
    >>> out = station_output({"input": "events", "treatment": "drug",
    ...                       "outcome": "dead"}, data.__getitem__, 10, {},
    ...                      level_rules=lambda *args: None)
    >>> out["arms"]["a"]["all"], out["n"]
    ({'n': 20, 'events': 10}, 40)
    """
    kind = str(parameters["input"])
    if kind not in INPUTS:
        raise DataError(f"parameters.input: '{kind}' is not one of {', '.join(INPUTS)}")
    treatment = str(parameters["treatment"])
    by = parameters.get("treatment_by")
    by = None if by is None else str(by)
    policy = Rules.of(min_count, rules)
    k, share = policy.min_count, float(policy.dominance_share)
    if policy.rounding_base > 1:
        raise DisclosureError(
            f"the policy rounds released numbers (rounding_base {policy.rounding_base})"
            " and NMA inputs are released exact or not at all"
        )
    values: dict[str, np.ndarray] = {}
    if kind == "events":
        if parameters.get("outcome") is None:
            raise DataError("parameters.outcome: required for input 'events'")
        values["event"] = _binary(column, str(parameters["outcome"]))
    elif kind == "means":
        if parameters.get("measure") is None:
            raise DataError("parameters.measure: required for input 'means'")
        name = str(parameters["measure"])
        try:
            values["measure"] = np.asarray(column(name), dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"column '{name}' does not hold numbers") from None
        if not np.all(np.isfinite(values["measure"])):
            raise DataError(f"column '{name}' has missing or infinite values")
    else:
        for key in ("time", "event"):
            if parameters.get(key) is None:
                raise DataError(f"parameters.{key}: required for input '{kind}'")
        values["time"] = _times(column, str(parameters["time"]))
        values["event"] = _binary(column, str(parameters["event"]))
    # rules 1 and 2 on the whole table, before 'treatments' and the input's rules
    arms, rows, cols = find_arms(column, treatment, by)
    check_sizes(arms, max(k, 2) if kind == "means" else k)
    order = select(arms, rows, cols, treatment_list(parameters.get("treatments")))
    out: dict[str, Any] = {"input": kind, "n": int(sum(a.n for a in order))}
    out["arms"] = {}
    for arm in order:
        stats = _arm_stats(arm, values, parameters, k, share, level_rules)
        out["arms"].setdefault(arm.treatment, {})[arm.by or ALL] = stats
    if kind == "cox":
        covariates = {
            str(c): np.asarray(column(str(c)))
            for c in parameters.get("covariates") or []
        }
        strata_name = parameters.get("strata")
        strata = None if strata_name is None else np.asarray(column(str(strata_name)))
        given = {**covariates, **({} if strata is None else {str(strata_name): strata})}
        for name, raw in given.items():
            if name in (treatment, by):
                raise DisclosureError(
                    f"column '{name}' defines the arms; it cannot be a covariate or "
                    "the strata: name another column"
                )
            if missing(raw).any():
                raise DataError(f"column '{name}' has missing values")
        fit = cox_contrasts(
            order, values["time"], values["event"], covariates, strata, k
        )
        out["cox"] = {
            "reference": _cell(fit.reference),
            "terms": [_cell(a) for a in fit.terms],
            "coef": [float(v) for v in fit.coef],
            "cov": [[float(v) for v in row] for row in fit.cov],
        }
    return out


def _cell(arm: Arm) -> dict[str, str]:
    return {"treatment": arm.treatment, "by": arm.by or ALL}


def flatten(output: Mapping[str, Any], by: str | None) -> dict[str, Any]:
    """The released form of a wire output: arms keyed by arm label.

    Loses nothing and adds nothing: ``arms[t][b]`` becomes ``arms["t / b"]`` (or
    ``arms[t]`` without ``treatment_by``); the Cox reference and terms become labels.

    >>> flatten({"input": "events", "n": 20, "arms": {"a": {"x": {"n": 20,
    ...          "events": 0}}}}, "regimen")["arms"]
    {'a / x': {'n': 20, 'events': 0}}
    """

    def label(t: str, b: str) -> str:
        return arm_label(t, None if by is None else b)

    out: dict[str, Any] = {
        "input": output["input"],
        "n": output["n"],
        "arms": {
            label(t, b): dict(stats)
            for t, inner in output["arms"].items()
            for b, stats in inner.items()
        },
    }
    cox = output.get("cox")
    if cox is not None:
        out["cox"] = {
            "reference": label(cox["reference"]["treatment"], cox["reference"]["by"]),
            "terms": [label(c["treatment"], c["by"]) for c in cox["terms"]],
            "coef": list(cox["coef"]),
            "cov": [list(row) for row in cox["cov"]],
        }
    return out
