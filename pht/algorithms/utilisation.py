"""Utilisation of expensive medicines: patients and spend per drug, released safely.

Station side
------------
:func:`local_utilisation` turns a station's rows (one row = one patient's treatment
start) into a table per **year** (the year of a period column: diagnosis or start)
over the dimensions **drug** (with the indication, where given), **regimen** and,
optionally, **site** (the treating hospital). Each year's table is released with *all*
its margins: every entry of the extended table in which each dimension may also be
its total ("all drugs", "all regimens", "all sites"). Years are separate tables
(nothing is summed over years at a station, so no request can difference one year
out of a multi-year total). Per entry:

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
3. **secondary suppression** by the hypercube method (Giessing and Repsilber, as in
   tau-ARGUS): for each sensitive entry not yet protected, the cheapest (fewest
   patients newly hidden) hypercube of the extended table with that entry as a
   corner, whose base cells are all present, is suppressed. A hypercube is a
   certificate: adding ``+t``/``-t`` to its base cells changes no released entry and
   changes every corner, so no corner is determined by what is released;
4. a final **rank test** (:func:`determinable`): with the suppressed base cells as
   unknowns and the released entries as linear equations, no suppressed entry may lie
   in the row space of the equations; otherwise :class:`~pht.errors.DisclosureError`;
5. optional **rounding** to a multiple ``b`` of every released number (halves up); a
   rounded count under ``k`` is raised to the smallest multiple of ``b`` at or above
   ``k``.

A suppressed entry is released as ``null`` in every value (never with its reason:
the reason would bound it); an absent entry (no patients) is not listed.

Orchestrator side
-----------------
:func:`pool_utilisation` adds the released entries of every station per key, exactly
(integers of 0.01); an entry suppressed at any station is ``None`` in the pool (never
imputed, never a partial sum). :func:`priority_list` ranks the drugs for re-assessment
on a transparent weighted score (see its docstring).

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
from pht.errors import ConfigError, DataError, DisclosureError, SuppressionWarning

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


def hypercube_suppression(patients: np.ndarray, primary: np.ndarray) -> np.ndarray:
    """Secondary suppression of one year's extended table by the hypercube method.

    Parameters
    ----------
    patients : numpy.ndarray
        The extended table of counts (each axis's last index is its total).
    primary : numpy.ndarray of bool
        The sensitive entries (present ones only).

    Returns
    -------
    numpy.ndarray of bool
        The suppressed entries: ``primary`` and, for each sensitive entry not yet a
        corner of a chosen hypercube, the corners of the hypercube through it that
        hides the fewest not yet suppressed patients (ties: the first in index
        order) among those whose base cells are all present. In axis ``i`` the
        hypercube pairs the entry's index ``c`` with a partner ``q``; the
        perturbation ``prod_i f_i`` with ``f_i = +1 at c, -1 at q`` (both inner),
        or ``+1`` at the inner one of them (one is the total) changes exactly the
        corners, so each corner stays undetermined.
    """
    shape = patients.shape
    inner = [s - 1 for s in shape]
    base = patients[tuple(slice(0, m) for m in inner)] > 0
    suppressed = primary.copy()
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
        weight = np.where(suppressed, 0, patients).astype(np.int64)
        cost = np.zeros(tuple(o.size for o in options), dtype=np.int64)
        feasible = np.ones(cost.shape, dtype=bool)
        for mask in masks:
            pick = [
                o if m else np.asarray([c], dtype=np.intp)
                for o, c, m in zip(options, corner, mask, strict=True)
            ]
            cost = cost + weight[np.ix_(*pick)]
            cells = [s if m else f for f, s, m in zip(first, second, mask, strict=True)]
            feasible &= base[np.ix_(*cells)]
        cost = np.where(feasible, cost, big)
        best = np.unravel_index(int(np.argmin(cost)), cost.shape)
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
    if cells.shape[0] > MAX_UNKNOWNS:
        raise DataError(
            f"{cells.shape[0]} suppressed cells in one year are too many to prove "
            "the suppression; leave out 'by' or use coarser drug or regimen columns"
        )
    rows = np.flatnonzero(present.ravel())
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
        Per row its indication (part of the drug key) and its care site.
    missing : Sequence[str]
        Parameters whose column the station lacks (released as they are).

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
    drug_labels, drug_code = _codes(drug)
    if indication is not None:
        ind_labels, ind_code = _codes(indication)
        pairs, key_code = np.unique(
            drug_code * len(ind_labels) + ind_code, return_inverse=True
        )
        keys: list[tuple[str, str | None]] = [
            (
                drug_labels[int(p) // len(ind_labels)],
                ind_labels[int(p) % len(ind_labels)],
            )
            for p in pairs
        ]
    else:
        keys = [(label, None) for label in drug_labels]
        key_code = drug_code
    regimen_labels, regimen_code = _codes(regimen)
    axes: list[tuple[list[Any], np.ndarray]] = [
        (keys, key_code.reshape(-1)),
        ([(label,) for label in regimen_labels], regimen_code),
    ]
    if site is not None:
        site_labels, site_code = _codes(site)
        axes.append(([(label,) for label in site_labels], site_code))
    if any(code.size != n for _, code in axes):
        raise DataError("the label columns and the period column differ in length")
    year_values, year_code = np.unique(years, return_inverse=True)
    shape = (year_values.size, *(len(names) for names, _ in axes))
    if math.prod(s + 1 for s in shape[1:]) * max(shape[0], 1) > MAX_ENTRIES:
        raise DataError(
            "the utilisation table has too many cells; leave out 'by' or use "
            "coarser drug or regimen columns"
        )
    flat = np.ravel_multi_index(
        (year_code.reshape(-1), *(code for _, code in axes)), shape
    )
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
    # entries of one drug and one regimen (any site level) carry the cell measures
    specific = np.zeros(patients.shape, dtype=bool)
    specific[:, : shape[1], : shape[2]] = True
    primary = present & (patients < k)
    for name in held:
        dominated = (largest[name] > share * sums[name]) & (sums[name] > 0)
        if name in CELL_MEASURES:
            dominated &= specific
        primary |= present & dominated
    suppressed = np.zeros(patients.shape, dtype=bool)
    for y in range(shape[0]):
        suppressed[y] = hypercube_suppression(patients[y], primary[y])
        if determinable(patients[y], suppressed[y]).any():
            raise DisclosureError(
                "secondary suppression left a suppressed cell derivable from the "
                "released margins; the station releases nothing"
            )
    unit = int(rules.rounding_base)
    counts = _round(patients, unit)
    if unit > 1:
        floor = -(-k // unit) * unit
        counts = np.where((counts > 0) & (counts < k), floor, counts)
    rounded = {name: _round(sums[name], unit, RESOLUTION) for name in held}
    entries = []
    for at in map(tuple, np.argwhere(present)):
        y, d, r = at[0], at[1], at[2]
        hidden = bool(suppressed[at])
        values: dict[str, float | None] = {}
        for name in held:
            if name in CELL_MEASURES and not specific[at]:
                continue
            values[name] = None if hidden else float(rounded[name][at]) / RESOLUTION
        key = keys[d] if d < shape[1] else (None, None)
        entries.append(
            Entry(
                year=int(year_values[y]),
                drug=key[0],
                indication=key[1],
                regimen=regimen_labels[r] if r < shape[2] else None,
                site=(
                    None if site is None or at[3] == shape[3] else site_labels[at[3]]
                ),
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
    return local_utilisation(
        drug=column(parameters["drug"]),
        regimen=column(parameters["regimen"]),
        year=column(parameters["period"]),
        indication=None if indication is None else column(indication),
        site=site,
        measures=measures,
        rules=rules,
        missing=sorted(missing),
    ).to_output()


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
    for station in sorted(outputs):
        output = outputs[station]
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
            added = units.setdefault(key, {})
            for name in MEASURES:
                if name in row:
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


DEFINITIONS = {
    "patients": "patients per year: mean over the years of the range of the "
    "treatment starts (rows) of the drug",
    "budget_impact": "annual spend: mean over the years of the range of the cost of "
    "the treatments started (whole courses) in each year, EUR",
    "relative_budget_impact": "annual spend per patient: annual spend / patients "
    "per year, EUR",
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
    names the others).
    """
    span = tuple(sorted(set(years)))
    w = weights.as_dict()
    raw: dict[DrugKey, dict[str, float | None]] = {}
    series: dict[DrugKey, tuple[list[int | None], list[float | None]]] = {}
    notes: dict[DrugKey, str] = {}
    for drug in pooled.drugs():
        counts: list[int | None] = []
        spend: list[float | None] = []
        for year in span:
            entry = pooled.get(year, drug[0], drug[1])
            counts.append(0 if entry is None else entry.patients)
            spend.append(0.0 if entry is None else entry.sums.get("cost"))
        if all(c == 0 for c in counts):
            continue  # the drug has no patients in the range
        series[drug] = (counts, spend)
        n = [c for c in counts if c is not None]
        s = [v for v in spend if v is not None]
        mean_n = float(np.mean(n)) if len(n) == len(span) else None
        mean_s = float(np.mean(s)) if len(s) == len(span) else None
        trend = _slope(span, s) if mean_s is not None and len(span) > 1 else None
        raw[drug] = {
            "patients": mean_n,
            "budget_impact": mean_s,
            "relative_budget_impact": (
                mean_s / mean_n if mean_s is not None and mean_n else None
            ),
            "growth": trend / mean_s if trend is not None and mean_s else None,
            "trend": trend,
        }
        gaps = [y for y, c in zip(span, counts, strict=True) if c is None]
        if gaps:
            notes[drug] = "suppressed in " + ", ".join(map(str, gaps))
        elif mean_s is None:
            notes[drug] = "no cost released for every year"
    rankable = [
        d
        for d, values in raw.items()
        if all(values[c] is not None for c in COMPONENTS if w[c] > 0)
    ]
    scaled = {
        c: _normalise(
            {d: raw[d][c] for d in rankable if raw[d][c] is not None}  # type: ignore[misc]
        )
        for c in COMPONENTS
    }
    total = sum(w.values())
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
            note = "no " + ", ".join(
                c for c in COMPONENTS if w[c] > 0 and values[c] is None
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
            )
        )
    return PriorityList(years=span, weights=w, rows=tuple(rows))


def _drug_order(drug: DrugKey) -> tuple[str, str]:
    return drug[0], drug[1] or ""
