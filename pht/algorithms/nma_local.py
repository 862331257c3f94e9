"""Station side of ``nma.inputs``: a station's treatment arms as one NMA "study".

Per arm (a level of the ``treatment`` column, or with ``treatment_by`` a pair of
levels labelled ``"<treatment> / <treatment_by>"``) the station computes, for
``input``:

* ``events``: ``n`` and ``events`` (a 0/1 outcome);
* ``means``: ``n``, ``mean`` and ``sd`` (``n - 1`` denominator) of a numeric outcome;
* ``rates``: ``n``, ``events`` and ``person_time`` (sum of the time column);
* ``cox``: ``n`` and ``events`` per arm and the station's own Cox model (Efron ties,
  optional covariates and strata) with dummy-coded arms against the reference (the
  first released arm in label order): only the arms' log hazard ratios and their
  covariance block are released.

:func:`station_output` is the one computation: the train's entrypoint calls it and the
station calls it again on its own extract (the plugin's ``recompute``), releasing its
own values. Its output is the *wire* form the output guard checks (labels only as
map keys or ``label`` fields: ``arms[treatment][treatment_by or "all"]``);
:func:`flatten` turns it into the released form keyed by arm label.

Rules (all at the station, by construction)
-------------------------------------------
1. ``treatments`` (optional): only those arm labels are considered; the others are
   left out before any rule below (they are not released, and count as unknown in
   the suppression of rule 3).
2. **threshold**: an arm with ``0 < n < k`` patients is left out, without its count
   (``means``: ``n < max(k, 2)``). ``cox``: an arm with fewer than ``k`` events is
   left out too, before the fit.
3. **complementary suppression**: the station's arm table (treatment x treatment_by)
   has margins other requests may release (every level of a ``group`` column holds 0
   or >= k patients at extraction; totals are released by most trains). A left-out
   small arm must not follow from them by difference: each is hidden with three
   more arms of a rectangle (rows i, i', columns j, j': +t, -t, -t, +t keeps every
   margin), partners with >= k patients preferred; then every row, column and the
   total must hide either no small arm, or at least ``k`` patients in at least two
   arms, else the smallest released arm of that margin is hidden as well; at the
   end no small arm may be determined by the released arms and the margins (an
   exact rank test), else the station refuses.
4. fewer than two releasable arms: refused ("fewer than two arms with at least k
   patients").
5. ``events`` / ``rates`` / ``cox``: per released arm ``events`` and ``n - events``
   each 0 or >= k, else refused (the rule is named, not the arm's count). ``rates``:
   no patient's time more than ``dominance_share`` of the arm's person-time
   ((1, p) dominance); times >= 0; the event column 0/1.
6. ``means``: the means train's level rules per arm
   (``pht.trains.means.level_rules``, passed in: tied mass and dominance of the sum and of
   the squared deviations).
7. ``cox``: the survival.cox station rules on the covariates (categorical levels
   with >= k patients, :func:`~pht.algorithms.cox_local.describe_levels`; no constant
   numeric covariate; at least 10 patients per parameter,
   :func:`~pht.algorithms.cox_local.check_dof`); the fit must converge to finite
   coefficients with a positive-definite information, every released coefficient
   and SE within :data:`~pht.algorithms.cox_checks.BOUND` (15 on the log scale):
   else refused. Covariate and stratum effects are not released.
8. ``rounding_base > 1`` refuses every input: means, rates and the Cox model are
   released exact or not at all, and rounded arm counts next to exact event counts
   would break the suppression (rule 3 reasons on exact counts), so ``events``
   refuses too.
9. at most :data:`MAX_ARMS` arms; labels of the two columns must not contain the
   separator ``" / "`` (two arms would share a label).

What a hostile analyst could still learn (not defended)
-------------------------------------------------------
* **differencing across requests**: the station keeps no release history for this
  train. Two requests with different ``treatments`` lists hide different arms; the
  rank test of rule 3 assumes the margins (not other subsets of arms) are known.
  Released arms of one request minus those of another (e.g. ``events`` then
  ``cox`` with different left-out arms) are not checked;
* **event counts of hidden arms**: rule 3 protects the arm counts; the events of a
  hidden arm lie in the same undetermined rectangle, but bounds (events cannot be
  negative, partners with few events) may narrow them;
* that a requested arm is absent says it holds 0 patients or was hidden (no count);
* an arm's ``n``, ``mean`` and ``sd`` bound each of its values (Samuelson), as in
  ``means``; a released arm with ``events = n`` says every member had the event
  (zeros are allowed, as in the threshold rule);
* the Cox contrasts carry the information of the arms' rows as any fitted model
  does; covariate coefficients are withheld but the treatment block of an adjusted
  model combined with an unadjusted one (two requests) says something about the
  covariates' association with the arms.
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
FEW_ARMS = "fewer than two arms with at least k patients"

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


# -- arms and the suppression of small ones ----------------------------------------------
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
    return arms, rows, cols


def _determined(
    unknown: Sequence[Cell], asked: Sequence[Cell], rows: Sequence[str]
) -> list[Cell]:
    """Which ``asked`` unknown cells the known margins determine (the rank test).

    The margins are every row total, every column total and the grand total (the
    released cells are known, so each margin is one equation over its unknown
    cells). A cell is determined when its unit vector lies in their row space.
    """
    if not unknown:
        return []
    index = {c: j for j, c in enumerate(unknown)}
    cols = sorted({b for _, b in unknown})
    equations = []
    for r in rows:
        equations.append([1.0 if c[0] == r else 0.0 for c in unknown])
    for b in cols:
        equations.append([1.0 if c[1] == b else 0.0 for c in unknown])
    equations.append([1.0] * len(unknown))
    a = np.asarray(equations)
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    rank = int(np.sum(sv > sv[0] * max(a.shape) * 1e-12)) if sv.size else 0
    basis = vt[:rank]
    out = []
    for c in asked:
        e = np.zeros(len(unknown))
        e[index[c]] = 1.0
        if np.linalg.norm(e - (e @ basis.T) @ basis) < 1e-8:
            out.append(c)
    return out


def suppress(
    counts: Mapping[Cell, int],
    wanted: set[Cell],
    rows: Sequence[str],
    cols: Sequence[str],
    k: int,
) -> set[Cell]:
    """The arms released: ``wanted`` minus small arms and their protection (rule 3).

    ``counts`` holds every present arm of the station (``n > 0``); ``wanted`` those
    with ``n >= k`` the request asks for (the rest are unknown to the requester).

    Raises
    ------
    DisclosureError
        A small arm would still follow from the released arms and the margins.

    Examples
    --------
    >>> counts = {("a", "x"): 50, ("a", "y"): 3, ("b", "x"): 40, ("b", "y"): 30}
    >>> sorted(suppress(counts, {c for c, n in counts.items() if n >= 10},
    ...                 ["a", "b"], ["x", "y"], 10))
    []
    """
    small = {c for c, n in counts.items() if 0 < n < k}
    released = {c for c in wanted if c not in small}
    if not small:
        return released
    two_way = len(cols) > 1
    if two_way:
        covered: set[Cell] = set()
        for cell in sorted(small):
            if cell in covered:
                continue  # already a corner of another small arm's rectangle
            corners = _rectangle(cell, counts, released, rows, cols, k)
            if corners is None:
                raise DisclosureError(
                    "a left-out small arm cannot be hidden among other arms (no "
                    "complete rectangle of arms); merge levels or leave out "
                    "treatment_by"
                )
            released -= corners
            covered |= corners | {cell}
    margins: list[Callable[[Cell], bool]] = [lambda c: True]
    if two_way:
        margins += [lambda c, r=r: c[0] == r for r in rows]  # type: ignore[misc]
        margins += [lambda c, b=b: c[1] == b for b in cols]  # type: ignore[misc]
    for _ in range(len(counts) + 1):
        changed = False
        for inside in margins:
            hidden = [c for c in counts if inside(c) and c not in released]
            mass = sum(counts[c] for c in hidden)
            if mass == 0 or (mass >= k and len(hidden) >= 2):
                continue
            if not any(c in small for c in hidden):
                continue  # hidden arms of >= k patients each need no protection
            open_ = sorted(
                (c for c in released if inside(c)), key=lambda c: (counts[c], c)
            )
            if not open_:
                continue  # nothing left to hide: the margin is checked below
            released.discard(open_[0])
            changed = True
        if not changed:
            break
    unknown = sorted(c for c in counts if c not in released)
    if _determined(unknown, sorted(small), rows if two_way else []):
        raise DisclosureError(
            "a left-out small arm would follow from the released arms and the "
            "treatment totals; merge levels or leave out treatment_by"
        )
    for inside in margins:
        hidden = [c for c in counts if inside(c) and c not in released]
        mass = sum(counts[c] for c in hidden)
        if any(c in small for c in hidden) and (mass < k or len(hidden) < 2):
            raise DisclosureError(
                "the left-out arms of a treatment hold fewer than k patients together, "
                "which its total would give away; merge levels or leave out "
                "treatment_by"
            )
    return released


def _rectangle(
    cell: Cell,
    counts: Mapping[Cell, int],
    released: set[Cell],
    rows: Sequence[str],
    cols: Sequence[str],
    k: int,
) -> set[Cell] | None:
    """The cheapest complete rectangle through ``cell`` (its other three corners).

    Cost: the patients it newly hides, plus ``k`` per partner with fewer than ``k``
    patients (a weak partner bounds how far the small arm can move).
    """
    r, b = cell
    best: tuple[int, Cell, Cell, Cell] | None = None
    for r2 in rows:
        for b2 in cols:
            if r2 == r or b2 == b:
                continue
            corners = ((r, b2), (r2, b), (r2, b2))
            if any(c not in counts for c in corners):
                continue
            cost = sum(counts[c] for c in corners if c in released) + k * sum(
                counts[c] < k for c in corners
            )
            if best is None or (cost, *corners) < best:
                best = (cost, *corners)
    return None if best is None else set(best[1:])


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
    """One arm's released numbers (rules 5 and 6)."""
    kind = parameters["input"]
    out: dict[str, Any] = {"n": arm.n}
    if kind == "means":
        x = values["outcome"][arm.rows]
        mean = math.fsum(x) / x.size
        level_rules(x, mean, k, share, str(parameters["outcome"]), "arm")
        sd = math.sqrt(math.fsum((x - mean) ** 2) / (x.size - 1))
        if abs(mean) > MAX_VALUE or sd > MAX_VALUE:
            raise DataError(
                f"column '{parameters['outcome']}': a mean or SD beyond the bounds "
                f"the output schema allows ({MAX_VALUE:g}); check the column's unit"
            )
        out.update(mean=float(mean), sd=float(sd))
        return out
    event_name = str(parameters["outcome" if kind == "events" else "event"])
    events = int(values["event"][arm.rows].sum())
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
    their first level (each level needs ``k`` patients); stratified by ``strata``
    (a baseline hazard per level). Only the arms' block is returned.

    Raises
    ------
    DisclosureError
        A survival.cox station rule, a fit that does not converge or coefficients
        or SEs beyond :data:`~pht.algorithms.cox_checks.BOUND`.
    """
    rows = np.concatenate([a.rows for a in arms])
    arm_of = np.concatenate([np.full(a.n, i) for i, a in enumerate(arms)])
    columns: dict[str, np.ndarray] = {}
    design: list[Covariate] = []
    terms: list[str] = []
    for i in range(1, len(arms)):
        name = f"__arm{i}"
        columns[name] = (arm_of == i).astype(np.float64)
        design.append(Covariate(name))
        terms.append(name)
    for name, raw in covariates.items():
        values = raw[rows]
        if values.dtype.kind in "iuf":
            values = values.astype(np.float64)
            if values.size and np.ptp(values) == 0:
                raise DisclosureError(
                    f"covariate '{name}' is constant in the released arms; drop it"
                )
            columns[name] = values
            design.append(Covariate(name))
            continue
        coded, kind = labels(values)
        levels = tuple(sort_levels(describe_levels(name, coded, k), kind))
        if len(levels) < 2:
            raise DisclosureError(
                f"covariate '{name}' has one level in the released arms; drop it"
            )
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

    ``column(name)`` returns a column of the extract; ``level_rules`` are rule 6
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
    if kind in ("events", "means"):
        if parameters.get("outcome") is None:
            raise DataError(f"parameters.outcome: required for input '{kind}'")
        name = str(parameters["outcome"])
        if kind == "events":
            values["event"] = _binary(column, name)
        else:
            try:
                values["outcome"] = np.asarray(column(name), dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"column '{name}' does not hold numbers") from None
            if not np.all(np.isfinite(values["outcome"])):
                raise DataError(f"column '{name}' has missing or infinite values")
    else:
        for key in ("time", "event"):
            if parameters.get(key) is None:
                raise DataError(f"parameters.{key}: required for input '{kind}'")
        values["time"] = _times(column, str(parameters["time"]))
        values["event"] = _binary(column, str(parameters["event"]))
    arms, rows, cols = find_arms(column, treatment, by)
    chosen = treatment_list(parameters.get("treatments"))
    smallest = max(k, 2) if kind == "means" else k
    wanted = {
        c
        for c, arm in arms.items()
        if (chosen is None or arm.label in chosen) and arm.n >= smallest
    }
    if kind == "cox":
        # arms with fewer than k events are left out before the fit
        wanted = {c for c in wanted if values["event"][arms[c].rows].sum() >= k}
    counts = {c: arm.n for c, arm in arms.items()}
    released = suppress(counts, wanted, rows, cols, smallest)
    if len(released) < 2:
        raise DisclosureError(FEW_ARMS)
    if len(released) > MAX_ARMS:
        raise DisclosureError(
            f"more than {MAX_ARMS} arms at this station; use a coarser treatment "
            "column or list the arms in 'treatments'"
        )
    order = [arms[(r, b)] for r in rows for b in cols if (r, b) in released]
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
        for name, raw in covariates.items():
            if missing(raw).any():
                raise DataError(f"column '{name}' has missing values")
        strata_name = parameters.get("strata")
        strata = None if strata_name is None else np.asarray(column(str(strata_name)))
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
