"""Utilisation of expensive medicines: patients and spend per drug, released safely.

Station side
------------
:func:`local_utilisation` turns a station's rows (one row = one patient's treatment
start) into a table per **year** (the year of a period column: diagnosis or start)
over the dimensions **drug** (with the indication, where given: one axis of
(drug, indication) pairs), **regimen** and, optionally, **site** (the treating
hospital). The axes are ordered by their columns' names (``names``), so the table and
its suppression do not depend on which parameter names which column (a request with
drug and regimen swapped gets the same pattern). Each year's table is released with
*all* its margins: every entry of the extended table in which each dimension may also
be its total ("all drugs", "all regimens", "all sites"). Years are separate tables
(nothing is summed over years at a station). Per entry:

* ``patients``: rows (treatment starts) in the entry;
* ``cost``: the sum of the cost column, on every entry;
* ``administrations`` and ``mg``: sums, only on entries of one drug and one regimen
  (any site level). A regimen's dose per administration and a drug's price per mg
  are public, so a margin *across* regimens or drugs of a second measure would add an
  independent equation and could solve two suppressed cells; within one drug and
  regimen these measures are proportional to each other and add nothing.

Measures are summed at a resolution of 0.01 (each value rounded to two decimals
first), in integers, so sums are exact and do not depend on the order of the rows.

Disclosure rules, in this order, all before anything leaves the station:

1. **threshold**: an entry with ``0 < patients < k`` is sensitive;
2. **dominance** ((1, p) rule, ``p = dominance_share``): an entry is sensitive when
   one row contributes more than ``p`` times the entry's total of a measure released
   on it (``max > p * sum``, sums > 0); with ``p = 1`` the rule never fires;
3. a **cost bound** first (:func:`hypercube_work`, :data:`MAX_WORK`): a table whose
   search would be too long is refused (DataError naming the fix);
4. **secondary suppression** by the hypercube method (Giessing and Repsilber, as in
   tau-ARGUS): for each sensitive entry not yet protected, the cheapest hypercube of
   the extended table with that entry as a corner, whose base cells are all present
   (cost: patients newly hidden, plus ``k`` for each partner cell under ``k`` that
   bounds the entry from above). A hypercube is a certificate: adding ``+t``/``-t``
   to its base cells changes no released entry and changes every corner;
5. **small remainders** (:func:`small_remainders`, :func:`protect_remainders`): every
   suppressed entry is listed, so it holds at least one patient; for every released
   total, the suppressed children along any axis must hold no patients, or ``>= k``
   and more than their number (none pinned to one patient), and no row may dominate
   their sum of a measure released on the total; else the smallest released child
   (or the total) is suppressed too, with a hypercube of its own, until all hold;
6. a final **rank test** (:func:`determinable`): with the suppressed base cells as
   unknowns and the released entries as linear equations, no suppressed entry may lie
   in the row space of the equations; otherwise :class:`~pht.errors.DisclosureError`;
7. optional **rounding** to a multiple ``b`` of every released number (halves up); a
   rounded count under ``k`` is raised to the smallest multiple of ``b`` at or above
   ``k``.

A suppressed entry is released as ``null`` in every value (never with its reason:
the reason would bound it); an absent entry (no patients) is not listed.

The station's audit (:func:`audit_releases`, run by the station only, with SciPy)
then checks the table together with every earlier release of the same data version
(linked tables: another period column, an indication, a site split, swapped axes):
no sensitive entry ever suppressed and no sensitive group of rows may be determined,
and no listed suppressed entry under ``k`` may be pinned by the bounds (presence,
non-negativity); it suppresses more of the new table, or refuses.

Orchestrator side
-----------------
:func:`pool_utilisation` adds the released entries of every station per key, exactly
(integers of 0.01); an entry suppressed at any station is ``None`` in the pool (never
imputed, never a partial sum); a sum that leaves out a station lacking the measure's
column is marked partial (:attr:`PooledEntry.partial`). :func:`priority_list` ranks
the drugs for re-assessment on a transparent weighted score (see its docstring).

Example
-------
>>> import numpy as np
>>> t = local_utilisation(
...     drug=np.array(["a"] * 12), regimen=np.array(["std"] * 12),
...     year=np.array([2020] * 12), measures={"cost": np.full(12, 10.0)},
...     rules=Rules(min_count=10))
>>> [(e.drug, e.regimen, e.patients, e.sums["cost"]) for e in t.entries]
[('a', 'std', 12, 120.0), ('a', None, 12, 120.0), (None, 'std', 12, 120.0), \
(None, None, 12, 120.0)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from warnings import warn

import numpy as np

from pht.algorithms.levels import labels
from pht.errors import (
    ConfigError,
    DataError,
    DisclosureError,
    PopulationWarning,
    SuppressionWarning,
)

MEASURES = ("administrations", "mg", "cost")
"""Measures in output order; ``cost`` is released on every entry."""
CELL_MEASURES = frozenset({"administrations", "mg"})
"""Measures released only on entries of one drug and one regimen."""
RESOLUTION = 100
"""Measures are summed in hundredths (integers): exact and order-free."""
MAX_ENTRIES = 2_000_000
"""The largest extended table (entries over all years) a station computes."""
MAX_UNKNOWNS = 4000
"""The most suppressed cells of one year the rank test takes (a dense SVD)."""
MAX_WORK = 200_000_000
"""The most entries the hypercube search of one request may visit
(:func:`hypercube_work`); beyond it the station refuses before searching."""
MAX_AUDIT_CELLS = 50_000
"""The most refinement cells (non-empty groups of the station's rows) an audit takes."""
MAX_AUDIT_WORK = 20_000_000_000
"""The largest dense rank test of one connected part of an audit (rows x cols x rank)."""
AUDIT_ROUNDS = 8
"""Rounds of suppressing more of the candidate before all of it is hidden."""
MAX_AUDIT_LP_CELLS = 200_000
"""The most cells all linear programs of one audit may take together, each counted
with :data:`LP_OVERHEAD` more (about ten seconds); beyond it the station refuses."""
LP_OVERHEAD = 200
"""What one linear program costs besides its cells (in cells)."""
ROUNDS_AT_RANDOM = 12
"""Linear programs that push every open target in random directions at once."""
LOCAL_ROW = 40
"""A target's neighbourhood grows along rows (equations, listed entries) of at most
this many cells (a year's total would take in every cell)."""
COMPONENTS = ("patients", "budget_impact", "relative_budget_impact", "growth")
"""The components of the priority score, in the order of the study's weights."""

Labels = np.ndarray
DrugKey = tuple[str, str | None]
"""(drug, indication): the key of the priority list."""


@dataclass(frozen=True)
class Rules:
    """A station's disclosure rules (its policy's ``min_cell_size``, and ``rules``).

    Parameters
    ----------
    min_count : int
        ``k``: no released count in ``(0, k)``.
    dominance_share : float
        ``p`` of the (1, p) dominance rule, in ``(0, 1]``.
    rounding_base : int
        Released numbers are rounded to multiples of this (1: exact).
    """

    min_count: int
    dominance_share: float = 0.9
    rounding_base: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.min_count, bool) or int(self.min_count) < 1:
            raise ConfigError("min_cell_size must be at least 1")
        share = self.dominance_share
        if isinstance(share, bool) or not 0 < float(share) <= 1:
            raise ConfigError(
                f"dominance_share {share!r} must be in (0, 1]: the largest share of "
                "a cell's total one patient may contribute (0.9 is the default)"
            )
        if isinstance(self.rounding_base, bool) or int(self.rounding_base) < 1:
            raise ConfigError("rounding_base must be a whole number >= 1 (1: exact)")

    @classmethod
    def of(cls, min_count: int, rules: Mapping[str, Any]) -> Rules:
        """The rules a station sends with a request (:attr:`TrainInput.rules`)."""
        return cls(
            int(min_count),
            float(rules.get("dominance_share", 0.9)),
            int(rules.get("rounding_base", 1)),
        )


@dataclass(frozen=True)
class Entry:
    """One entry of a station's released table: a cell or a margin of one year.

    ``None`` in ``drug``, ``indication``, ``regimen`` or ``site`` means "all" (the
    total over that dimension). ``patients`` is None when the entry is suppressed;
    ``sums`` then holds None for every measure.
    """

    year: int
    drug: str | None
    indication: str | None
    regimen: str | None
    site: str | None
    patients: int | None
    sums: Mapping[str, float | None]

    @property
    def suppressed(self) -> bool:
        """Whether the station suppressed this entry."""
        return self.patients is None


@dataclass(frozen=True)
class StationUtilisation:
    """A station's released utilisation table (see the module docstring)."""

    entries: tuple[Entry, ...]
    measures: tuple[str, ...]
    """The measures the station holds (the others are ``missing``)."""
    missing: tuple[str, ...]
    """Parameters whose column the station lacks (``cost``, ``mg``, ``by``, ...)."""
    indication: bool
    site: bool

    def to_output(self) -> dict[str, Any]:
        """The train's output (JSON-ready, deterministic)."""
        rows = []
        for e in self.entries:
            row: dict[str, Any] = {"year": e.year, "drug": e.drug}
            if self.indication:
                row["indication"] = e.indication
            row["regimen"] = e.regimen
            if self.site:
                row["site"] = e.site
            row["patients"] = e.patients
            row.update(e.sums)
            rows.append(row)
        return {"missing": list(self.missing), "rows": rows}


# -- inputs ---------------------------------------------------------------------
def years_of(values: Any) -> np.ndarray:
    """Calendar years of a period column: dates (datetime64 or date objects) or years.

    >>> years_of(np.array(["2019-12-31", "2020-01-01"], dtype="datetime64[ns]"))
    array([2019, 2020])
    """
    values = np.asarray(values)
    if values.dtype.kind == "M":
        if np.isnat(values).any():
            raise DataError("the period column has missing dates")
        return values.astype("datetime64[Y]").astype(np.int64) + 1970
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise DataError("the period column holds numbers that are not years")
        return values.astype(np.int64)
    if values.dtype.kind == "O":
        years = [getattr(v, "year", None) for v in values.tolist()]
        if any(not isinstance(y, int) for y in years):
            raise DataError("the period column holds values that are not dates")
        return np.asarray(years, dtype=np.int64)
    raise DataError("the period column holds values that are not dates or years")


def _codes(values: Any) -> tuple[list[str], np.ndarray]:
    """Sorted distinct labels and each row's index into them.

    Labels are the canonical ones of :mod:`pht.algorithms.levels`, as in the
    station's label set (``1`` for both 1 and 1.0).
    """
    text, _ = labels(np.asarray(values))
    unique, inverse = np.unique(text, return_inverse=True)
    return [str(u) for u in unique.tolist()], inverse.reshape(-1).astype(np.intp)


def _hundredths(name: str, values: Any, n: int) -> np.ndarray:
    """A measure in integer hundredths (float64 holding integers: exact sums)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise DataError(f"measure '{name}' has {values.size} values for {n} rows")
    if not np.all(np.isfinite(values)):
        raise DataError(f"measure '{name}' has missing or infinite values")
    if np.any(values < 0):
        raise DataError(
            f"measure '{name}' has negative values; the dominance rule needs "
            "non-negative contributions"
        )
    out = np.rint(values * RESOLUTION)
    if out.size and float(out.max()) * n >= 2.0**53:
        raise DataError(f"measure '{name}' is too large to be summed exactly")
    return out


# -- the extended table -----------------------------------------------------------
def extend(base: np.ndarray, reduce: Any = np.add) -> np.ndarray:
    """The extended table: ``base`` plus, along every axis, its total as a last index.

    ``reduce`` is :data:`numpy.add` for sums and :data:`numpy.maximum` for maxima.
    Axis 0 (the year) gets no total.

    >>> extend(np.array([[[1, 2], [3, 4]]]))[0]
    array([[ 1,  2,  3],
           [ 3,  4,  7],
           [ 4,  6, 10]])
    """
    d = base.ndim
    ext = np.zeros((base.shape[0], *(s + 1 for s in base.shape[1:])), dtype=base.dtype)
    for mask in itertools.product((0, 1), repeat=d - 1):
        axes = tuple(i + 1 for i, m in enumerate(mask) if m)
        part = reduce.reduce(base, axis=axes, keepdims=True) if axes else base
        where = (slice(None),) + tuple(
            slice(s, s + 1) if m else slice(0, s)
            for s, m in zip(base.shape[1:], mask, strict=True)
        )
        ext[where] = part
    return ext


def hypercube_work(primary: np.ndarray) -> int:
    """The search cost of :func:`hypercube_suppression` (entries it visits), bounded.

    Per sensitive entry of a year's extended table, every hypercube with it as a
    corner is scored: ``prod(inner sizes) * 2**d`` entries (``primary`` holds all
    years: axis 0).
    """
    inner = [s - 1 for s in primary.shape[1:]]
    per_corner = math.prod(inner) * 2 ** len(inner)
    return int(primary.sum()) * per_corner


def hypercube_suppression(
    patients: np.ndarray,
    primary: np.ndarray,
    min_count: int = 1,
    suppressed: np.ndarray | None = None,
) -> np.ndarray:
    """Secondary suppression of one year's extended table by the hypercube method.

    Parameters
    ----------
    patients : numpy.ndarray
        The extended table of counts (each axis's last index is its total).
    primary : numpy.ndarray of bool
        The sensitive entries (present ones only).
    min_count : int
        ``k``: base cells under it are weak partners (see below).
    suppressed : numpy.ndarray of bool, optional
        Entries already suppressed (kept; they hide no new patients).

    Returns
    -------
    numpy.ndarray of bool
        The suppressed entries: ``primary`` and, for each sensitive entry not yet a
        corner of a chosen hypercube, the corners of the cheapest hypercube through
        it whose base cells are all present: its cost is the patients it newly
        hides plus ``k`` for each *weak* base cell on the opposite sign (one with
        fewer than ``k`` patients: it bounds how far the entry can move up), so
        partners with ``>= k`` patients are preferred (ties: the first in index
        order). In axis ``i`` the
        hypercube pairs the entry's index ``c`` with a partner ``q``; the
        perturbation ``prod_i f_i`` with ``f_i = +1 at c, -1 at q`` (both inner),
        or ``+1`` at the inner one of them (one is the total) changes exactly the
        corners, so each corner stays undetermined; with strong partners it can
        add ``k - 1`` to the entry, so no bound shows it is under ``k``.
    """
    shape = patients.shape
    inner = [s - 1 for s in shape]
    counts = patients[tuple(slice(0, m) for m in inner)]
    base = counts > 0
    weak = counts < min_count
    suppressed = primary.copy() if suppressed is None else suppressed | primary
    covered = np.zeros(shape, dtype=bool)
    masks = list(itertools.product((0, 1), repeat=len(shape)))
    big = np.iinfo(np.int64).max
    for corner in map(tuple, np.argwhere(primary)):
        if covered[corner]:
            continue
        options = [
            np.asarray([j for j in range(m + 1) if j != c], dtype=np.intp)
            for m, c in zip(inner, corner, strict=True)
        ]
        # the base cells the perturbation moves: per axis the inner ones of (c, q)
        first = [
            o if c == m else np.full_like(o, c)
            for o, c, m in zip(options, corner, inner, strict=True)
        ]
        second = [
            o if c == m else np.where(o == m, c, o)
            for o, c, m in zip(options, corner, inner, strict=True)
        ]
        # an axis splits (+1 at c, -1 at q) where both are inner
        split = [
            ((o != m) & (c != m))
            .astype(np.int64)
            .reshape([-1 if a == i else 1 for a in range(len(shape))])
            for i, (o, c, m) in enumerate(zip(options, corner, inner, strict=True))
        ]
        weight = np.where(suppressed, 0, patients).astype(np.int64)
        cost = np.zeros(tuple(o.size for o in options), dtype=np.int64)
        weak_minus = np.zeros(cost.shape, dtype=np.int64)
        feasible = np.ones(cost.shape, dtype=bool)
        for mask in masks:
            pick = [
                o if m else np.asarray([c], dtype=np.intp)
                for o, c, m in zip(options, corner, mask, strict=True)
            ]
            cost = cost + weight[np.ix_(*pick)]
            cells = [s if m else f for f, s, m in zip(first, second, mask, strict=True)]
            feasible &= base[np.ix_(*cells)]
            parity = sum((s for s, m in zip(split, mask, strict=True) if m), start=0)
            minus = np.broadcast_to(np.asarray(parity) % 2 == 1, cost.shape)
            weak_minus += minus & weak[np.ix_(*cells)]
        score = np.where(feasible, weak_minus * min_count + cost, big)
        best = np.unravel_index(int(np.argmin(score)), score.shape)
        if not feasible[best]:  # pragma: no cover - a present entry always has one
            raise DisclosureError("no hypercube protects a sensitive cell")
        partner = [int(o[b]) for o, b in zip(options, best, strict=True)]
        for mask in masks:
            at = tuple(
                q if m else c for c, q, m in zip(corner, partner, mask, strict=True)
            )
            suppressed[at] = True
            covered[at] = True
    return suppressed


def small_remainders(
    patients: np.ndarray,
    suppressed: np.ndarray,
    measures: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    min_count: int,
    share: float,
) -> np.ndarray:
    """The entries to suppress next so that no released total leaves a small remainder.

    A released total and its released children along one axis give the sum of its
    suppressed children (the *remainder*); every suppressed entry is listed, so each
    holds at least one patient. The remainder of every such relation must hold no
    patients, or at least ``k`` and more than ``m``, the number of its suppressed
    present children (so the relation alone pins none of them to one patient and
    shows no group under ``k``), and for every measure released on the total no
    single row may contribute more than ``share`` of the remainder's sum. For each relation that
    fails this returns its released child with the fewest patients (ties: the first;
    a released entry holds ``>= k`` patients and is not dominated, so adding it only
    helps), or the total when no child is left.

    Parameters
    ----------
    patients : numpy.ndarray
        One year's extended table of counts.
    suppressed : numpy.ndarray of bool
        The pattern so far.
    measures : Sequence of (sums, largest, released)
        Per measure its extended sums, largest single contributions and where it is
        released.
    min_count, share : int, float
        ``k`` and the dominance share.

    Returns
    -------
    numpy.ndarray of bool
        The entries to suppress (none: every relation holds).
    """
    present = patients > 0
    out = suppressed & present
    picks = np.zeros(patients.shape, dtype=bool)
    inner = [s - 1 for s in patients.shape]
    for axis, m in enumerate(inner):
        kids = tuple(
            slice(0, m) if a == axis else slice(None) for a in range(len(inner))
        )
        hidden = out[kids] & present[kids]
        rest = np.take(present & ~out, m, axis=axis)
        count = np.where(hidden, patients[kids], 0).sum(axis=axis)
        number = hidden.sum(axis=axis)
        bad = rest & (count > 0) & ((count < min_count) | (count <= number))
        for sums, largest, released in measures:
            total = np.where(hidden, sums[kids], 0).sum(axis=axis)
            top = np.where(hidden, largest[kids], 0).max(axis=axis, initial=0)
            on = np.take(released, m, axis=axis)
            bad |= rest & on & (total > 0) & (top > share * total)
        if not bad.any():
            continue
        open_kids = present[kids] & ~out[kids]
        value = np.where(open_kids, patients[kids], np.iinfo(np.int64).max)
        pick = np.argmin(value, axis=axis)
        has = np.take_along_axis(open_kids, np.expand_dims(pick, axis), axis=axis)
        has = has.squeeze(axis)
        for at in map(tuple, np.argwhere(bad)):
            picks[(*at[:axis], int(pick[at]) if has[at] else m, *at[axis:])] = True
    return picks


def protect_remainders(
    patients: np.ndarray,
    suppressed: np.ndarray,
    measures: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    min_count: int,
    share: float,
) -> np.ndarray:
    """Suppress more until every relation holds (:func:`small_remainders`).

    Each entry suppressed for a remainder gets a hypercube of its own
    (:func:`hypercube_suppression`), so that it is not determined by the released
    entries either; repeated until nothing changes (the pattern only grows).
    """
    pattern = suppressed.copy()
    for _ in range(patients.size + 1):
        picks = small_remainders(patients, pattern, measures, min_count, share)
        if not picks.any():
            return pattern
        pattern = hypercube_suppression(patients, picks, min_count, pattern)
    raise DisclosureError(  # pragma: no cover - each pass suppresses an entry
        "the suppression of small remainders did not settle"
    )


def determinable(patients: np.ndarray, suppressed: np.ndarray) -> np.ndarray:
    """Which suppressed entries the released entries determine (the rank test).

    The unknowns are the suppressed present base cells (released base cells are
    known; absent ones are known zeros). Every released entry is one linear equation
    (the sum of its base cells); a suppressed entry is determined exactly when its
    vector over the unknowns lies in the row space of those equations.

    Parameters
    ----------
    patients : numpy.ndarray
        One year's extended table of counts (absent entries are 0).
    suppressed : numpy.ndarray of bool
        The suppression pattern.

    Returns
    -------
    numpy.ndarray of bool
        True at every suppressed entry that could be recomputed.
    """
    shape = patients.shape
    inner = [s - 1 for s in shape]
    present = patients > 0
    cells = np.argwhere(patients[tuple(slice(0, m) for m in inner)] > 0)
    unknown = suppressed[tuple(cells.T)]
    if not unknown.any():
        return suppressed & present
    cells = cells[unknown]
    rows = np.flatnonzero(present.ravel())
    work = rows.size * cells.shape[0] * min(rows.size, cells.shape[0])
    if cells.shape[0] > MAX_UNKNOWNS or work > MAX_AUDIT_WORK:
        raise DataError(
            f"{cells.shape[0]} suppressed cells in one year are too many to prove "
            "the suppression; leave out 'by' or use coarser drug or regimen columns"
        )
    row_of = {int(r): i for i, r in enumerate(rows)}
    matrix = np.zeros((rows.size, cells.shape[0]))
    for mask in itertools.product((0, 1), repeat=len(shape)):
        at = np.where(np.asarray(mask, bool), np.asarray(inner), cells)
        flat = np.ravel_multi_index(tuple(at.T), shape)
        matrix[[row_of[int(f)] for f in flat], np.arange(cells.shape[0])] = 1.0
    hidden = suppressed.ravel()[rows]
    known, asked = matrix[~hidden], matrix[hidden]
    known = known[known.any(axis=1)]
    if known.size:
        _, sv, vt = np.linalg.svd(known, full_matrices=False)
        rank = int(np.sum(sv > sv[0] * max(known.shape) * 1e-12))
        basis = vt[:rank]
        residual = asked - (asked @ basis.T) @ basis
    else:
        residual = asked
    out = np.zeros(shape, dtype=bool)
    out.ravel()[rows[hidden]] = np.linalg.norm(residual, axis=1) < 1e-7
    return out


def _suppress_year(
    patients: np.ndarray,
    primary: np.ndarray,
    measures: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    min_count: int,
    share: float,
) -> np.ndarray:
    """One year's pattern: hypercubes, small remainders, then the rank test."""
    pattern = hypercube_suppression(patients, primary, min_count)
    pattern = protect_remainders(patients, pattern, measures, min_count, share)
    if determinable(patients, pattern).any():
        raise DisclosureError(
            "secondary suppression left a suppressed cell derivable from the "
            "released margins; the station releases nothing"
        )
    return pattern


def _round(values: np.ndarray, base: int, scale: int = 1) -> np.ndarray:
    """Round integers in units of ``1 / scale`` to a multiple of ``base``, halves up.

    ``base`` 1 leaves them exact.
    """
    if base == 1:
        return values
    unit = base * scale
    return np.floor_divide(2 * values + unit, 2 * unit) * unit


# -- the station's table ----------------------------------------------------------
def local_utilisation(
    *,
    drug: Labels,
    regimen: Labels,
    year: Any,
    rules: Rules,
    measures: Mapping[str, Any],
    indication: Labels | None = None,
    site: Labels | None = None,
    missing: Sequence[str] = (),
    names: Mapping[str, str] | None = None,
) -> StationUtilisation:
    """The station's released utilisation table (see the module docstring).

    Parameters
    ----------
    drug, regimen : numpy.ndarray
        Per row (treatment start) its drug and regimen labels.
    year : array_like
        Per row the year of its period (dates or integer years; :func:`years_of`).
    rules : Rules
        The station's ``k``, dominance share and rounding base.
    measures : Mapping[str, array_like]
        The measures the station holds, by name (of :data:`MEASURES`), per row.
    indication, site : numpy.ndarray, optional
        Per row its indication and its care site.
    missing : Sequence[str]
        Parameters whose column the station lacks (released as they are).
    names : Mapping[str, str], optional
        The column of each dimension (``drug``, ``regimen``, ``indication``,
        ``site``): the table's axes are ordered by column name, so that the table
        and its suppression do not depend on which parameter names which column.

    Returns
    -------
    StationUtilisation
        Every present entry of every year's extended table, suppressed entries with
        None values, released values rounded.
    """
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown:
        raise ConfigError(f"unknown measure(s) {', '.join(unknown)}")
    years = years_of(year)
    n = years.size
    if n == 0:
        return StationUtilisation(
            (), (), tuple(missing), indication is not None, site is not None
        )
    named = dict(names or {})
    axes: dict[str, tuple[list[tuple[str, ...]], np.ndarray]] = {}
    drug_text, drug_code = _codes(drug)
    if indication is None:
        axes["drug"] = ([(t,) for t in drug_text], drug_code)
        drug_name = named.get("drug", "drug")
    else:
        # one axis of (drug, indication) pairs, ordered by the columns' names
        ind_text, ind_code = _codes(indication)
        if drug_code.size != ind_code.size:
            raise DataError("the label columns and the period column differ in length")
        first = named.get("drug", "drug") <= named.get("indication", "indication")
        major, minor = (drug_code, ind_code) if first else (ind_code, drug_code)
        pairs, pair_code = np.unique(
            major * (max(len(drug_text), len(ind_text)) + 1) + minor,
            return_inverse=True,
        )
        width = max(len(drug_text), len(ind_text)) + 1
        keys: list[tuple[str, ...]] = []
        for p in pairs.tolist():
            a, b = divmod(int(p), width)
            d, i = (a, b) if first else (b, a)
            keys.append((drug_text[d], ind_text[i]))
        axes["drug"] = (keys, pair_code.reshape(-1))
        drug_name = min(
            named.get("drug", "drug"), named.get("indication", "indication")
        )
    axes["regimen"] = ([(t,) for t in _codes(regimen)[0]], _codes(regimen)[1])
    if site is not None:
        site_text, site_code = _codes(site)
        axes["site"] = ([(t,) for t in site_text], site_code)
    order = {"drug": drug_name, **{r: named.get(r, r) for r in ("regimen", "site")}}
    roles = sorted(axes, key=lambda r: (str(order[r]), r))
    axis_labels = [axes[r][0] for r in roles]
    codes = [axes[r][1].reshape(-1) for r in roles]
    if any(code.size != n for code in codes):
        raise DataError("the label columns and the period column differ in length")
    year_values, year_code = np.unique(years, return_inverse=True)
    shape = (year_values.size, *(len(t) for t in axis_labels))
    if math.prod(s + 1 for s in shape[1:]) * max(shape[0], 1) > MAX_ENTRIES:
        raise DataError(
            "the utilisation table has too many cells; leave out 'by' or use "
            "coarser drug or regimen columns"
        )
    flat = np.ravel_multi_index((year_code.reshape(-1), *codes), shape)
    size = math.prod(shape)
    patients = extend(np.bincount(flat, minlength=size).reshape(shape))
    held = [m for m in MEASURES if m in measures]
    sums: dict[str, np.ndarray] = {}
    largest: dict[str, np.ndarray] = {}
    for name in held:
        amounts = _hundredths(name, measures[name], n)
        sums[name] = extend(
            np.bincount(flat, weights=amounts, minlength=size).reshape(shape)
        )
        top = np.zeros(size)
        np.maximum.at(top, flat, amounts)
        largest[name] = extend(top.reshape(shape), np.maximum)
    k, share = rules.min_count, float(rules.dominance_share)
    present = patients > 0
    # entries of one drug and one regimen (any other level) carry the cell measures
    specific = np.ones(patients.shape, dtype=bool)
    for role in ("drug", "regimen"):
        axis = 1 + roles.index(role)
        inner = np.arange(patients.shape[axis]) < shape[axis]
        specific &= inner.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    released_on = {
        name: specific if name in CELL_MEASURES else np.ones_like(specific)
        for name in held
    }
    primary = present & (patients < k)
    for name in held:
        dominated = (largest[name] > share * sums[name]) & (sums[name] > 0)
        primary |= present & dominated & released_on[name]
    work = hypercube_work(primary)
    if work > MAX_WORK:
        raise DataError(
            f"protecting this table would take too long ({work:.2g} steps, limit "
            f"{MAX_WORK:.2g}); leave out 'by' or 'indication', or use coarser drug "
            "or regimen columns"
        )
    suppressed = np.zeros(patients.shape, dtype=bool)
    for y in range(shape[0]):
        suppressed[y] = _suppress_year(
            patients[y],
            primary[y],
            [(sums[m][y], largest[m][y], released_on[m][y]) for m in held],
            k,
            share,
        )
    unit = int(rules.rounding_base)
    counts = _round(patients, unit)
    if unit > 1:
        floor = -(-k // unit) * unit
        counts = np.where((counts > 0) & (counts < k), floor, counts)
    rounded = {name: _round(sums[name], unit, RESOLUTION) for name in held}
    entries = []
    for at in map(tuple, np.argwhere(present)):
        hidden = bool(suppressed[at])
        values: dict[str, float | None] = {}
        for name in held:
            if not released_on[name][at]:
                continue
            values[name] = None if hidden else float(rounded[name][at]) / RESOLUTION
        level: dict[str, tuple[str | None, ...]] = {
            role: (axis_labels[i][at[i + 1]] if at[i + 1] < shape[i + 1] else (None,))
            for i, role in enumerate(roles)
        }
        key = level["drug"] if len(level["drug"]) == 2 else (level["drug"][0], None)
        entries.append(
            Entry(
                year=int(year_values[at[0]]),
                drug=key[0],
                indication=key[1],
                regimen=level["regimen"][0],
                site=level["site"][0] if "site" in level else None,
                patients=None if hidden else int(counts[at]),
                sums=values,
            )
        )
    return StationUtilisation(
        entries=tuple(entries),
        measures=tuple(held),
        missing=tuple(missing),
        indication=indication is not None,
        site=site is not None,
    )


# -- the study's parameters -------------------------------------------------------
MEASURE_PARAMETERS = {
    "administrations": "administrations",
    "mg": "mg",
    "cost": "cost",
}
"""Measure name -> the train parameter naming its column."""

DIMENSIONS = {"drug": "drug", "regimen": "regimen", "indication": "indication"}
"""Dimension -> the train parameter naming its column (and ``site``: ``by``)."""


def station_output(
    parameters: Mapping[str, Any],
    has_column: Any,
    column: Any,
    rules: Rules,
) -> dict[str, Any]:
    """The ``utilisation`` train's output from a station's columns.

    The one function both the train's entrypoint and the station's own
    recomputation call, so they agree exactly. ``has_column(name)`` says whether the
    station's extract holds a column; ``column(name)`` returns it as NumPy.
    """
    missing: list[str] = []
    measures: dict[str, Any] = {}
    for name, parameter in MEASURE_PARAMETERS.items():
        col = parameters.get(parameter)
        if col is None:
            continue
        if has_column(col):
            measures[name] = column(col)
        else:
            missing.append(parameter)
    by = parameters.get("by")
    site = None
    if by is not None:
        if has_column(by):
            site = column(by)
        else:
            missing.append("by")
    indication = parameters.get("indication")
    names = {d: str(parameters[p]) for d, p in DIMENSIONS.items() if parameters.get(p)}
    if site is not None:
        names["site"] = str(by)
    return local_utilisation(
        drug=column(parameters["drug"]),
        regimen=column(parameters["regimen"]),
        year=column(parameters["period"]),
        indication=None if indication is None else column(indication),
        site=site,
        measures=measures,
        rules=rules,
        missing=sorted(missing),
        names=names,
    ).to_output()


# -- the station's audit over every release of a data version ------------------------
@dataclass(frozen=True)
class Listed:
    """One listed entry of a release: its definition and whether it was released.

    ``where`` holds the entry's ``(column, label)`` filters (a dimension that is
    "all" is left out), ``period`` the date column whose ``year`` it counts.
    """

    period: str
    year: int
    where: tuple[tuple[str, str], ...]
    released: bool
    values: Mapping[str, float | None] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, int, tuple[tuple[str, str], ...]]:
        """The entry's definition (equal for equal entries of any request)."""
        return self.period, self.year, self.where

    def record(self, measures: Sequence[str]) -> dict[str, Any]:
        """The entry as a history record (JSON-ready)."""
        return {
            "period": self.period,
            "year": self.year,
            "where": dict(self.where),
            "released": self.released,
            "measures": list(measures),
            "values": dict(self.values),
        }

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Listed:
        """An entry from a history record."""
        return cls(
            period=str(record["period"]),
            year=int(record["year"]),
            where=tuple(sorted((str(c), str(v)) for c, v in record["where"].items())),
            released=bool(record["released"]),
            values=dict(record.get("values") or {}),
        )


def listed_entries(
    output: Mapping[str, Any], parameters: Mapping[str, Any]
) -> list[Listed]:
    """The listed entries of a station's output, in its row order."""
    columns = {d: parameters.get(p) for d, p in DIMENSIONS.items()}
    columns["site"] = parameters.get("by")
    out = []
    for row in output.get("rows") or ():
        where = tuple(
            sorted(
                (str(columns[d]), str(row[d]))
                for d in ("drug", "indication", "regimen", "site")
                if row.get(d) is not None and columns[d] is not None
            )
        )
        values = {k: row[k] for k in ("patients", *MEASURES) if k in row}
        out.append(
            Listed(
                period=str(parameters["period"]),
                year=int(row["year"]),
                where=where,
                released=row.get("patients") is not None,
                values=values,
            )
        )
    return out


@dataclass(frozen=True)
class Audit:
    """What an audit found: the sensitive entries the releases together expose."""

    determined: tuple[tuple[str, Any], ...]
    """Targets the released entries determine exactly: ``("entry", key)`` or
    ``("cell", index)``."""
    bounded: tuple[tuple[str, Any], ...]
    """Entries under ``k`` whose largest possible value is under ``k``."""

    @property
    def ok(self) -> bool:
        """Whether nothing is exposed."""
        return not self.determined and not self.bounded


class _System:
    """Refinement cells of the station's rows and the listed entries over them."""

    def __init__(
        self,
        data: Mapping[str, Any],
        measures: Mapping[str, Any],
        listed: Sequence[Listed],
        rules: Rules,
    ) -> None:
        columns = sorted({c for e in listed for c, _ in e.where})
        periods = sorted({e.period for e in listed})
        keys, self.label_of = [], {}
        for c in columns:
            text, code = _codes(data[c])
            self.label_of[c] = {t: i for i, t in enumerate(text)}
            keys.append(code)
        for p in periods:
            years = years_of(data[p])
            self.label_of["\0" + p] = {}
            keys.append(years)
        matrix = np.stack(keys, axis=1) if keys else np.zeros((0, 0), np.int64)
        n = matrix.shape[0]
        cells, row_cell = np.unique(matrix, axis=0, return_inverse=True)
        row_cell = row_cell.reshape(-1)
        if cells.shape[0] > MAX_AUDIT_CELLS:
            raise DisclosureError(
                f"the station's releases of this data version split its rows into "
                f"{cells.shape[0]} groups, more than {MAX_AUDIT_CELLS} the audit takes"
            )
        self.position = {
            c: i for i, c in enumerate([*columns, *("\0" + p for p in periods)])
        }
        self.cells = cells
        self.n = n
        self.count = np.bincount(row_cell, minlength=cells.shape[0]).astype(np.int64)
        self.sums: list[np.ndarray] = []
        self.tops: list[np.ndarray] = []
        for name, values in measures.items():
            amounts = _hundredths(name, values, n)
            self.sums.append(np.bincount(row_cell, amounts, minlength=cells.shape[0]))
            top = np.zeros(cells.shape[0])
            np.maximum.at(top, row_cell, amounts)
            self.tops.append(top)
        self.k = rules.min_count
        self.share = float(rules.dominance_share)
        self.columns_of: dict[tuple[Any, ...], dict[tuple[Any, ...], list[int]]] = {}

    def support(self, entry: Listed) -> np.ndarray:
        """The cells of an entry (indices)."""
        signature = (entry.period, *(c for c, _ in entry.where))
        groups = self.columns_of.get(signature)
        if groups is None:
            at = [self.position[c] for c in signature[1:]]
            at.append(self.position["\0" + entry.period])
            groups = {}
            for i, row in enumerate(self.cells[:, at].tolist()):
                groups.setdefault(tuple(row), []).append(i)
            self.columns_of[signature] = groups
        code = []
        for c, v in entry.where:
            index = self.label_of[c].get(v)
            if index is None:
                return np.zeros(0, dtype=np.intp)
            code.append(index)
        code.append(entry.year)
        return np.asarray(groups.get(tuple(code), []), dtype=np.intp)

    def sensitive(self, cells: np.ndarray) -> bool:
        """Whether a group of cells holds 0 < n < k rows or one row dominates a sum."""
        n = int(self.count[cells].sum())
        if 0 < n < self.k:
            return True
        for sums, tops in zip(self.sums, self.tops, strict=True):
            total = float(sums[cells].sum())
            if total > 0 and float(tops[cells].max(initial=0)) > self.share * total:
                return True
        return False


def _peel(eqs: Any, unknown: np.ndarray) -> np.ndarray:
    """Cells known from equations that hold one unknown cell, repeatedly."""
    unknown = unknown.copy()
    while True:
        left = eqs @ unknown.astype(np.float64)
        single = np.flatnonzero(np.isclose(left, 1.0))
        if single.size == 0:
            return unknown
        hit = eqs[single].multiply(unknown[np.newaxis, :].astype(np.float64))
        cells = np.unique(hit.nonzero()[1])
        if cells.size == 0:
            return unknown
        unknown[cells] = False


def _determined(eqs: Any, targets: Any, unknown: np.ndarray) -> np.ndarray:
    """Which targets (rows, over cells) lie in the row space of the equations.

    Cells not ``unknown`` are known values; the rest are split into connected parts
    (cells joined by an equation) and each part is tested with a dense SVD.
    """
    from scipy.sparse import csgraph

    cols = np.flatnonzero(unknown)
    out = np.ones(targets.shape[0], dtype=bool)
    if cols.size == 0 or targets.shape[0] == 0:
        return out
    e = eqs[:, cols].tocsr()
    t = targets[:, cols].tocsr()
    e = e[np.flatnonzero(np.diff(e.indptr))]
    graph = (e.T @ e).tocsr() if e.shape[0] else None
    if graph is None:
        parts, label = cols.size, np.arange(cols.size)
    else:
        parts, label = csgraph.connected_components(graph, directed=False)
    touched = np.unique(label[t.nonzero()[1]])
    for part in touched:
        inside = np.flatnonzero(label == part)
        rows = e[:, inside]
        rows = rows[np.flatnonzero(np.diff(rows.tocsr().indptr))].toarray()
        asked = t[:, inside].toarray()
        hit = np.flatnonzero(asked.any(axis=1) & out)
        if hit.size == 0:
            continue
        if rows.shape[0] == 0:
            out[hit] = False
            continue
        work = rows.shape[0] * rows.shape[1] * min(rows.shape)
        if work > MAX_AUDIT_WORK:
            raise DisclosureError(
                f"the station's releases of this data version are too large to audit "
                f"({rows.shape[0]} x {rows.shape[1]})"
            )
        _, sv, vt = np.linalg.svd(rows, full_matrices=False)
        rank = int(np.sum(sv > sv[0] * max(rows.shape) * 1e-12))
        basis = vt[:rank]
        piece = asked[hit]
        residual = piece - (piece @ basis.T) @ basis
        out[hit] &= np.linalg.norm(residual, axis=1) < 1e-7
    return out


def _not_pinned(
    system: _System,
    eqs: Any,
    presence: Any,
    targets: Any,
    unknown: np.ndarray,
    budget: float = float("inf"),
    spent: list[float] | None = None,
) -> np.ndarray:
    """Per target (an entry under ``k``): whether the releases leave it open.

    An attacker knows the released counts, that every listed entry holds at least
    one patient, and that no group holds fewer than none or more than the
    station's rows. A target is *open* when a solution of these (over the reals)
    gives it a value at least one away from the truth, so that its range, rounded
    inwards to whole numbers, holds two values or more; else it is *pinned*. Cells
    the equations give one by one (``~unknown``) are fixed. Linear programs
    push all open questions at once in seeded random directions (at most
    :data:`ROUNDS_AT_RANDOM`, while they settle 5% or more), then each remaining
    target is pushed down and up alone, first moving only the cells within two
    short rows of it (the others kept at their true values: a solution is a solution of
    the whole), then all. ``budget`` bounds the cells of all programs together
    (DisclosureError beyond it).
    """
    from scipy.optimize import linprog
    from scipy.sparse import csgraph, vstack

    m = targets.shape[0]
    ok = np.zeros(m, dtype=bool)
    if m == 0:
        return ok
    count = system.count.astype(np.float64)
    both = vstack([eqs, presence, targets]).tocsr()[:, unknown]
    graph = (both.T @ both).tocsr()
    _, label = csgraph.connected_components(graph, directed=False)
    free = np.flatnonzero(unknown)
    cols = np.unique(targets[:, free].nonzero()[1])
    vars_ = free[np.isin(label, np.unique(label[cols]))]
    fixed = np.setdiff1d(np.arange(count.size), vars_)

    def part(matrix: Any) -> tuple[Any, np.ndarray]:
        inner = matrix[:, vars_].tocsr()
        return inner, matrix[:, fixed] @ count[fixed]

    e, e_known = part(eqs)
    b = e @ count[vars_]
    keep = np.flatnonzero(np.diff(e.indptr))
    e, b = e[keep], b[keep]
    p, p_known = part(presence)
    need = 1.0 - p_known
    keep = np.flatnonzero(np.diff(p.indptr) > 0) if p.shape[0] else np.zeros(0, int)
    p, need = p[keep], need[keep]
    t, _ = part(targets)
    truth = t @ count[vars_]
    upper = float(system.n)
    if vars_.size == 0:
        return ok
    count_v = count[vars_]
    e_csc, p_csc = e.tocsc(), p.tocsc()
    used = [0.0] if spent is None else spent

    def solve(
        objective: np.ndarray, cells: np.ndarray | None = None
    ) -> np.ndarray | None:
        """A solution minimising ``objective``; ``cells``: only they move."""
        if cells is None:
            cells = np.arange(vars_.size)
        used[0] += cells.size + LP_OVERHEAD
        if used[0] > budget:
            raise DisclosureError(
                "checking the bounds of the suppressed entries would take too long "
                f"(more than {budget:.2g} steps); ask for a coarser table (fewer of "
                "indication, by, or coarser columns)"
            )
        ea, pa = e_csc[:, cells].tocsr(), p_csc[:, cells].tocsr()
        rest = np.ones(vars_.size, dtype=bool)
        rest[cells] = False
        eb = b - e_csc[:, rest] @ count_v[rest] if e.shape[0] else b
        pb = need - p_csc[:, rest] @ count_v[rest] if p.shape[0] else need
        er = np.flatnonzero(np.diff(ea.indptr))
        pr = np.flatnonzero(np.diff(pa.indptr))
        res = linprog(
            objective[cells],
            A_ub=-pa[pr] if pr.size else None,
            b_ub=-pb[pr] if pr.size else None,
            A_eq=ea[er] if er.size else None,
            b_eq=eb[er] if er.size else None,
            bounds=(0, upper),
            method="highs",
        )
        if res.status != 0:  # pragma: no cover - the true counts are feasible
            return None
        x = count_v.copy()
        x[cells] = res.x
        return x

    def mark(x: np.ndarray | None) -> int:
        if x is None:
            return 0
        before = int(ok.sum())
        ok[np.abs(t @ x - truth) >= 1 - 1e-7] = True
        return int(ok.sum()) - before

    rng = np.random.default_rng(0)
    for _ in range(ROUNDS_AT_RANDOM):
        pending = np.flatnonzero(~ok)
        if pending.size == 0:
            return ok
        signs = rng.choice((-1.0, 1.0), pending.size)
        if mark(solve(np.asarray(t[pending].T @ signs).ravel())) < 0.05 * pending.size:
            break
    rows = vstack([e, p]).tocsr() if p.shape[0] else e
    rows = rows[np.flatnonzero(np.diff(rows.indptr) <= LOCAL_ROW)]
    cols_of = rows.tocsc()
    for i in np.flatnonzero(~ok):
        row = np.asarray(t[i].todense()).ravel()
        near = row > 0
        for _ in range(2):  # the target's cells, and two steps along short rows
            touched = np.flatnonzero(cols_of[:, np.flatnonzero(near)].getnnz(axis=1))
            near[rows[touched].indices] = True
        local = np.flatnonzero(near)
        for sign in (-1.0, 1.0):
            if not ok[i]:
                mark(solve(sign * row, local))
    for i in np.flatnonzero(~ok):
        row = np.asarray(t[i].todense()).ravel()
        for sign in (-1.0, 1.0):
            if not ok[i]:
                mark(solve(sign * row))
    return ok


def audit_releases(
    data: Mapping[str, Any],
    measures: Mapping[str, Any],
    earlier: Sequence[Listed],
    candidate: Sequence[Listed],
    rules: Rules,
) -> list[int]:
    """Check a release against every earlier one of the same data; what to hide more.

    The unknowns are the station's rows grouped by every column any release used
    (dimension columns and the year of each period column): the common refinement.
    Empty groups are known zeros. Every released entry, earlier or candidate, is an
    equation over the groups; every listed suppressed entry holds at least one
    patient. Targets: every listed entry never released that is sensitive (``0 < n
    < k``, or one row over ``dominance_share`` of a measure's sum) and every
    sensitive group. The release passes when

    * no target lies in the row space of the equations (exact recovery, over the
      reals: a rank test per connected part), and
    * no listed target under ``k`` is pinned to one value by the bounds an
      attacker gets from the equations, the presence of listed entries and
      non-negativity (linear programs, :func:`_not_pinned`; its range rounded
      inwards to whole numbers must hold two values or more).

    When it does not, and hiding every released entry of the candidate that no
    earlier release gave would pass, the candidate's released entries nearest to
    the exposed targets (sharing a group with them, else with an equation that
    does, and so on) are suppressed too and the audit repeats; after
    :data:`AUDIT_ROUNDS` rounds all of them are hidden (that passes). Otherwise
    the release is refused.

    Returns
    -------
    list[int]
        Indices of ``candidate`` to suppress beyond the table's own suppression.

    Raises
    ------
    DisclosureError
        When suppressing more of the candidate cannot make it pass (or the audit
        would be too large).
    """
    from scipy.sparse import csr_matrix

    listed = [*earlier, *candidate]
    if not candidate:
        return []
    system = _System(data, measures, listed, rules)
    cells = system.cells.shape[0]
    supports: dict[tuple[Any, ...], np.ndarray] = {}
    released_before: set[tuple[Any, ...]] = set()
    for e in earlier:
        supports.setdefault(e.key, system.support(e))
        if e.released:
            released_before.add(e.key)
    index_of: dict[tuple[Any, ...], list[int]] = {}
    for i, e in enumerate(candidate):
        supports.setdefault(e.key, system.support(e))
        index_of.setdefault(e.key, []).append(i)
    keys = list(supports)
    listed_keys = keys

    def rows(chosen: Sequence[tuple[Any, ...]]) -> Any:
        data_, ind, ptr = [], [], [0]
        for key in chosen:
            s = supports[key]
            ind.extend(s.tolist())
            data_.extend([1.0] * s.size)
            ptr.append(len(ind))
        return csr_matrix((data_, ind, ptr), shape=(len(chosen), cells))

    from scipy.sparse import vstack

    sensitive = {key for key in listed_keys if system.sensitive(supports[key])}
    small = {
        key
        for key in sensitive
        if 0 < int(system.count[supports[key]].sum()) < system.k
    }
    cell_targets = [
        i for i in range(cells) if system.sensitive(np.asarray([i], dtype=np.intp))
    ]
    cell_t = csr_matrix(
        (np.ones(len(cell_targets)), (np.arange(len(cell_targets)), cell_targets)),
        shape=(len(cell_targets), cells),
    )
    budget = [float(MAX_AUDIT_LP_CELLS)]

    def exposed_by(hidden: set[int]) -> tuple[list[tuple[str, Any]], Any, set[Any]]:
        released_now = {
            candidate[i].key
            for i in range(len(candidate))
            if candidate[i].released and i not in hidden
        }
        released = released_before | released_now
        eqs = rows(sorted(released, key=str))
        target_keys = sorted((k for k in sensitive if k not in released), key=str)
        presence_keys = sorted((k for k in listed_keys if k not in released), key=str)
        entry_t = rows(target_keys)
        targets = vstack([entry_t, cell_t]).tocsr()
        unknown = _peel(eqs, np.ones(cells, dtype=bool))
        found = _determined(eqs, targets, unknown)
        exposed: list[tuple[str, Any]] = [
            ("entry", target_keys[i])
            if i < len(target_keys)
            else ("cell", cell_targets[i - len(target_keys)])
            for i in np.flatnonzero(found)
        ]
        under = [
            i for i, key in enumerate(target_keys) if key in small and not found[i]
        ]
        if under and not exposed:
            before = budget[0]
            spent = [0.0]
            try:
                open_ = _not_pinned(
                    system,
                    eqs,
                    rows(presence_keys),
                    entry_t[under],
                    unknown,
                    before,
                    spent,
                )
            finally:
                budget[0] = before - spent[0]
            exposed += [
                ("entry", target_keys[under[i]]) for i in np.flatnonzero(~open_)
            ]
        return exposed, eqs, released_now - released_before

    refused = (
        "together with the station's earlier releases of this data version, the "
        "release would expose a suppressed entry; the station releases nothing"
    )
    hidden: set[int] = set()
    exposed, eqs, open_keys = exposed_by(hidden)
    if not exposed:
        return []
    everything = {i for i, e in enumerate(candidate) if e.released}
    if not open_keys or exposed_by(everything)[0]:
        raise DisclosureError(refused)  # hiding all it may still hide is not enough
    for _ in range(AUDIT_ROUNDS):
        # suppress the candidate's own released entries nearest to what is exposed
        near = np.zeros(cells, dtype=bool)
        for kind, what in exposed:
            near[supports[what] if kind == "entry" else what] = True
        keys_open = sorted(open_keys, key=str)
        mine = rows(keys_open)
        chosen: list[tuple[Any, ...]] = []
        while True:
            touching = np.flatnonzero(mine @ near.astype(np.float64) > 0)
            if touching.size:
                chosen = [keys_open[i] for i in touching]
                break
            grown = (eqs.T @ (eqs @ near.astype(np.float64) > 0).astype(float)) > 0
            if not (grown & ~near).any():
                break
            near |= grown
        if not chosen:
            chosen = keys_open  # nothing near: hide the rest
        for key in chosen:
            hidden.update(i for i in index_of[key] if candidate[i].released)
        exposed, eqs, open_keys = exposed_by(hidden)
        if not exposed:
            return sorted(hidden)
    return sorted(everything)


# -- pooling ------------------------------------------------------------------------
PoolKey = tuple[int, str | None, str | None, str | None, str | None, str | None]
"""(year, drug, indication, regimen, station, site): ``station`` is set only on the
rows of one site (a hospital belongs to one station); None elsewhere means "all"."""


@dataclass(frozen=True)
class PooledEntry:
    """One pooled entry: exact sums over the stations that released it.

    A value is None when any station holding it suppressed the entry (never a
    partial sum), or (measures) when no station holds the measure.
    """

    patients: int | None
    sums: Mapping[str, float | None]
    stations: int
    """How many stations hold the entry (released or suppressed)."""
    suppressed: int
    """At how many of them it is suppressed."""
    partial: frozenset[str] = frozenset()
    """Measures whose sum leaves out the patients of a station that lacks the
    measure's column (the sum is over the other stations only)."""
    measured: Mapping[str, int | None] = field(default_factory=dict)
    """Per measure summed, the patients of the stations whose sums it holds: the
    denominator of any per-patient figure."""


@dataclass(frozen=True)
class Pooled:
    """The pooled utilisation of every station."""

    entries: Mapping[PoolKey, PooledEntry]
    missing: Mapping[str, tuple[str, ...]]
    """Parameter -> the stations that lack its column."""
    stations: tuple[str, ...]

    def years(self) -> list[int]:
        """Years with any released entry, ascending."""
        return sorted({k[0] for k in self.entries})

    def drugs(self) -> list[DrugKey]:
        """(drug, indication) keys, sorted."""
        return sorted(
            {(k[1], k[2]) for k in self.entries if k[1] is not None},
            key=_drug_order,
        )

    def get(
        self,
        year: int,
        drug: str | None = None,
        indication: str | None = None,
        regimen: str | None = None,
    ) -> PooledEntry | None:
        """The all-sites entry of a year, drug key and regimen (None: "all")."""
        return self.entries.get((year, drug, indication, regimen, None, None))


def _to_units(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: expected a number")
    if not math.isfinite(value):
        raise DataError(f"{where}: not a finite number")
    return int(round(float(value) * RESOLUTION))


def _station_rows(station: str, output: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = output.get("rows")
    if not isinstance(rows, list):
        raise DataError(f"station {station}: the utilisation output has no rows")
    return rows


def pool_utilisation(outputs: Mapping[str, Mapping[str, Any]]) -> Pooled:
    """Add the released entries of the stations per key, exactly.

    Patients are added as integers, measures as integers of 0.01. Entries of one
    site keep their station (a hospital's rows are its station's).
    """
    patients: dict[PoolKey, int] = {}
    units: dict[PoolKey, dict[str, int]] = {}
    held: dict[PoolKey, int] = {}
    hidden: dict[PoolKey, int] = {}
    hidden_measures: dict[PoolKey, set[str]] = {}
    missing: dict[str, list[str]] = {}
    lacking: dict[PoolKey, set[str]] = {}
    measured: dict[PoolKey, dict[str, int]] = {}
    for station in sorted(outputs):
        output = outputs[station]
        absent = {str(p) for p in output.get("missing") or ()} & set(MEASURES)
        for parameter in output.get("missing") or ():
            missing.setdefault(str(parameter), []).append(station)
        for row in _station_rows(station, output):
            site = row.get("site")
            key: PoolKey = (
                int(row["year"]),
                row.get("drug"),
                row.get("indication"),
                row.get("regimen"),
                station if site is not None else None,
                site,
            )
            held[key] = held.get(key, 0) + 1
            if row.get("patients") is None:
                hidden[key] = hidden.get(key, 0) + 1
                hidden_measures.setdefault(key, set()).update(
                    m for m in MEASURES if m in row
                )
                continue
            patients[key] = patients.get(key, 0) + int(row["patients"])
            if absent:
                lacking.setdefault(key, set()).update(absent)
            added = units.setdefault(key, {})
            for name in MEASURES:
                if name in row:
                    counted = measured.setdefault(key, {})
                    counted[name] = counted.get(name, 0) + int(row["patients"])
                    if row[name] is None:
                        hidden_measures.setdefault(key, set()).add(name)
                        continue
                    where = f"station {station}: {name}"
                    added[name] = added.get(name, 0) + _to_units(row[name], where)
    entries: dict[PoolKey, PooledEntry] = {}
    for key in sorted(held, key=_sort_key):
        blocked = hidden.get(key, 0) > 0
        gone = hidden_measures.get(key, set())
        sums: dict[str, float | None] = {}
        for name in MEASURES:
            if name in units.get(key, {}) or name in gone:
                sums[name] = (
                    None if blocked or name in gone else units[key][name] / RESOLUTION
                )
        entries[key] = PooledEntry(
            patients=None if blocked else patients.get(key, 0),
            sums=sums,
            stations=held[key],
            suppressed=hidden.get(key, 0),
            partial=frozenset(
                n for n in lacking.get(key, ()) if sums.get(n) is not None
            ),
            measured={
                n: None
                if blocked or sums[n] is None
                else measured.get(key, {}).get(n, 0)
                for n in sums
            },
        )
    return Pooled(
        entries=entries,
        missing={p: tuple(s) for p, s in sorted(missing.items())},
        stations=tuple(sorted(outputs)),
    )


def _sort_key(key: PoolKey) -> tuple[Any, ...]:
    return tuple((v is None, "" if v is None else v) for v in key)


# -- the re-assessment priority list -------------------------------------------------
@dataclass(frozen=True)
class Weights:
    """The study's weights of the score components (non-negative, positive sum)."""

    patients: float = 1.0
    budget_impact: float = 1.0
    relative_budget_impact: float = 1.0
    growth: float = 1.0

    def __post_init__(self) -> None:
        values = [getattr(self, c) for c in COMPONENTS]
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ConfigError("every weight must be a finite number >= 0")
        if sum(values) <= 0:
            raise ConfigError(
                "the weights sum to 0; give at least one weight a positive value"
            )

    def as_dict(self) -> dict[str, float]:
        """The weights by component."""
        return {c: float(getattr(self, c)) for c in COMPONENTS}


@dataclass(frozen=True)
class Component:
    """One component of a drug's score: its value, normalised value, contribution."""

    value: float | None
    normalised: float | None
    weight: float
    contribution: float | None


@dataclass(frozen=True)
class Priority:
    """One drug (and indication) in the priority list."""

    drug: str
    indication: str | None
    years: tuple[int, ...]
    patients: tuple[int | None, ...]
    spend: tuple[float | None, ...]
    patients_per_year: float | None
    annual_spend: float | None
    spend_trend: float | None
    """Least-squares slope of annual spend, EUR per year."""
    components: Mapping[str, Component]
    score: float | None
    rank: int | None
    note: str = ""
    partial: tuple[str, ...] = ()
    """Components computed from the stations that hold cost only (a station
    without a cost column holds some of the drug's patients)."""


DEFINITIONS = {
    "patients": "patients per year: mean over the years of the range of the "
    "treatment starts (rows) of the drug",
    "budget_impact": "annual spend: mean over the years of the range of the cost of "
    "the treatments started (whole courses) in each year, EUR",
    "relative_budget_impact": "annual spend per patient: annual spend / patients "
    "per year, both over the stations that hold a cost column, EUR",
    "growth": "spend growth: least-squares slope of annual spend over the years of "
    "the range, as a share of the annual spend, per year",
    "normalised": "each component is scaled to [0, 1] over the ranked drugs: "
    "(value - min) / (max - min), or 1 when all are equal",
    "score": "sum of weight x normalised component over the sum of the weights",
}


@dataclass(frozen=True)
class PriorityList:
    """The ranked drugs, with the definitions used."""

    years: tuple[int, ...]
    weights: Mapping[str, float]
    rows: tuple[Priority, ...]
    definitions: Mapping[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    excluded: tuple[str, ...] = ()
    """Components left out of every score: partial for some drug (its spend sums
    only the stations that hold cost)."""


def _slope(years: Sequence[int], values: Sequence[float]) -> float:
    x = np.asarray(years, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def _normalise(values: Mapping[Any, float]) -> dict[Any, float]:
    if not values:
        return {}
    low, high = min(values.values()), max(values.values())
    if high == low:
        return dict.fromkeys(values, 1.0)
    return {k: (v - low) / (high - low) for k, v in values.items()}


def priority_list(
    pooled: Pooled, years: Iterable[int], weights: Weights
) -> PriorityList:
    """Rank the drugs for re-assessment on a transparent weighted score.

    For each (drug, indication), over ``years``, from the pooled drug margins (all
    regimens, all sites): patients per year and annual spend (means over the years),
    spend per patient, and spend growth (the least-squares slope of annual spend
    divided by its mean, per year; needs two or more years). Each component is
    scaled to [0, 1] over the ranked drugs; the score is the weighted mean of the
    scaled components (:data:`DEFINITIONS`). A year in which no station holds the
    drug counts as 0 (a station lists every entry it holds); a drug with a
    suppressed year, or lacking a component that has a positive weight, is listed
    unranked with the reason. Ties in score rank alphabetically.

    Spend comes from the stations that hold a cost column (:attr:`Pooled.missing`
    names the others). Where a station without one holds some of a drug's
    patients, the drug's spend is *partial*: spend per patient divides by the
    patients of the stations that hold cost only (:attr:`PooledEntry.measured`),
    spend growth is that of those stations, both are listed in
    :attr:`Priority.partial`, and annual spend (a partial total, not comparable
    between drugs) is left out of every score (:attr:`PriorityList.excluded`,
    with a :class:`~pht.errors.PopulationWarning`).
    """
    span = tuple(sorted(set(years)))
    w = weights.as_dict()
    raw: dict[DrugKey, dict[str, float | None]] = {}
    series: dict[DrugKey, tuple[list[int | None], list[float | None]]] = {}
    notes: dict[DrugKey, str] = {}
    partial: dict[DrugKey, tuple[str, ...]] = {}
    for drug in pooled.drugs():
        counts: list[int | None] = []
        spend: list[float | None] = []
        costed: list[int | None] = []
        part = False
        for year in span:
            entry = pooled.get(year, drug[0], drug[1])
            counts.append(0 if entry is None else entry.patients)
            spend.append(0.0 if entry is None else entry.sums.get("cost"))
            costed.append(0 if entry is None else entry.measured.get("cost"))
            part |= entry is not None and "cost" in entry.partial
        if all(c == 0 for c in counts):
            continue  # the drug has no patients in the range
        series[drug] = (counts, spend)
        n = [c for c in counts if c is not None]
        s = [v for v in spend if v is not None]
        m = [c for c in costed if c is not None]
        mean_n = float(np.mean(n)) if len(n) == len(span) else None
        mean_s = float(np.mean(s)) if len(s) == len(span) else None
        mean_m = float(np.mean(m)) if len(m) == len(span) else None
        trend = _slope(span, s) if mean_s is not None and len(span) > 1 else None
        raw[drug] = {
            "patients": mean_n,
            "budget_impact": mean_s,
            "relative_budget_impact": (
                mean_s / mean_m if mean_s is not None and mean_m else None
            ),
            "growth": trend / mean_s if trend is not None and mean_s else None,
            "trend": trend,
        }
        if part:
            partial[drug] = ("budget_impact", "relative_budget_impact", "growth")
        gaps = [y for y, c in zip(span, counts, strict=True) if c is None]
        if gaps:
            notes[drug] = "suppressed in " + ", ".join(map(str, gaps))
        elif mean_s is None:
            notes[drug] = "no cost released for every year"
    excluded = ("budget_impact",) if partial and w["budget_impact"] > 0 else ()
    if excluded:
        warn(
            PopulationWarning(
                "annual spend is left out of the score: a station without a cost "
                "column holds patients of "
                + ", ".join(
                    d[0] if d[1] is None else f"{d[0]} ({d[1]})" for d in partial
                )
                + "; spend per patient and growth are over the stations with cost"
            ),
            stacklevel=2,
        )
        w = {**w, "budget_impact": 0.0}
    rankable = (
        [
            d
            for d, values in raw.items()
            if all(values[c] is not None for c in COMPONENTS if w[c] > 0)
        ]
        if sum(w.values()) > 0
        else []
    )
    scaled = {
        c: _normalise(
            {d: raw[d][c] for d in rankable if raw[d][c] is not None}  # type: ignore[misc]
        )
        for c in COMPONENTS
    }
    total = sum(w.values()) or 1.0
    scores = {
        d: sum(w[c] * scaled[c][d] for c in COMPONENTS if w[c] > 0) / total
        for d in rankable
    }
    order = sorted(rankable, key=lambda d: (-scores[d], d[0], d[1] or ""))
    rank = {d: i + 1 for i, d in enumerate(order)}
    rows = []
    for d in [*order, *sorted(set(raw) - set(rankable), key=_drug_order)]:
        values = raw[d]
        counts, spend = series[d]
        ranked = d in rankable
        components = {
            c: Component(
                value=values[c],
                normalised=scaled[c].get(d),
                weight=w[c],
                contribution=(
                    (w[c] * scaled[c][d] / total if w[c] > 0 else 0.0)
                    if ranked
                    else None
                ),
            )
            for c in COMPONENTS
        }
        note = notes.get(d, "")
        if not ranked and not note:
            note = (
                "no "
                + ", ".join(c for c in COMPONENTS if w[c] > 0 and values[c] is None)
                if sum(w.values()) > 0
                else "no component with a positive weight is complete"
            )
        if not ranked:
            label = d[0] if d[1] is None else f"{d[0]} ({d[1]})"
            warn(
                SuppressionWarning(f"{label} is not ranked: {note}"),
                stacklevel=2,
            )
        rows.append(
            Priority(
                drug=d[0],
                indication=d[1],
                years=span,
                patients=tuple(counts),
                spend=tuple(spend),
                patients_per_year=values["patients"],
                annual_spend=values["budget_impact"],
                spend_trend=values["trend"],
                components=components,
                score=scores.get(d),
                rank=rank.get(d),
                note=note,
                partial=partial.get(d, ()),
            )
        )
    return PriorityList(
        years=span, weights=weights.as_dict(), rows=tuple(rows), excluded=excluded
    )


def _drug_order(drug: DrugKey) -> tuple[str, str]:
    return drug[0], drug[1] or ""
