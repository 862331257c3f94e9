"""Station-side disclosure rules for per-time outputs: the released time grid.

A per-time table (Kaplan-Meier event table, Cox risk-set sums) is released only on a
grid of intervals that the *station* chooses from its own data, never from the
request. Intervals are ``(b[i-1], b[i]]`` with ``b[-1] = -inf``, the last one open
above; a time ``t`` is released as the smallest boundary ``b[i] >= t``, or the last
boundary when there is none (:func:`coarsen`). Boundaries lie on a lattice
``step * j`` (``j >= 1``; :func:`lattice`, without floating-point noise, in any time
unit), so a label is a lattice point, never a patient's time; the
open last interval is labelled one step after the boundary before it (not by the
largest time, which would be one patient's follow-up).

:func:`station_grid` merges adjacent lattice cells, from the left, until every interval
holds at least ``k`` events *and* at least ``k`` censorings for every event column the
policy allows with this time column; a remainder that fails the rule is merged into the
interval before it (so the first and the last interval obey the rule too). Because the
rule is checked for every allowed event column at once, the grid does not depend on the
event column a request names.

:func:`refine_for_groups` merges adjacent intervals of that grid further (the same
merges for every group) until every (group, interval) cell holds at least ``k`` events
and ``k`` censorings; :func:`coarser` keeps only the station boundaries a coarser
analyst step asks for. Both return subsets of the station's boundaries, so every
released interval is a union of the station's own intervals.

Example
-------
>>> import numpy as np
>>> t = np.arange(1.0, 41.0)
>>> e = np.tile([1.0, 0.0], 20)
>>> station_grid(t, [e], k=5, step=1.0).tolist()
[10.0, 20.0, 30.0, 31.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def coarsen(time: npt.ArrayLike, boundaries: npt.ArrayLike) -> FloatArray:
    """Each time replaced by the smallest boundary at or above it.

    Times above the last boundary map to the last boundary (the grid always covers
    the data it was computed on; this only guards against rounding).
    """
    t = np.asarray(time, dtype=np.float64)
    b = np.asarray(boundaries, dtype=np.float64)
    index = np.searchsorted(b, t, side="left")
    return b[np.minimum(index, b.size - 1)]


def lattice(index: npt.ArrayLike, step: float) -> FloatArray:
    """The lattice points ``step * j``, with the floating-point noise rounded away.

    ``3 * 0.1`` is ``0.30000000000000004`` in floating point; the point released is
    ``0.3``. Points are rounded to ``10^-d`` with ``10^-d <= 1e-9 step``, so they stay
    strictly increasing, and integral steps give exact integers.

    >>> lattice([1, 2, 3], 0.1).tolist()
    [0.1, 0.2, 0.3]
    """
    digits = min(15, max(0, math.ceil(9 - math.log10(step))))
    return np.round(np.asarray(index, dtype=np.float64) * step, digits)


def _lattice_index(time: FloatArray, step: float) -> npt.NDArray[np.int64]:
    """Per time, the ``j >= 1`` of the smallest lattice point at or above it.

    The same comparison :func:`coarsen` makes with the boundaries, so the counts the
    grid is built on are the counts it releases (``ceil(t / step)`` alone misplaces a
    time on a lattice point when the division rounds: 3 days in years, 3/365.25,
    divided by a one-day step 1/365.25 gives 3.0000000000000004).
    """
    cells = np.maximum(np.ceil(time / step), 1.0)
    cells[lattice(cells, step) < time] += 1
    above = (cells > 1) & (lattice(cells - 1, step) >= time)
    cells[above] -= 1
    return cells.astype(np.int64)


def _greedy(counts: npt.NDArray[np.int64], k: int) -> list[int] | None:
    """Close an interval at candidate ``j`` once every column's running count >= k.

    ``counts`` is (candidates, cells): per candidate boundary the counts that must
    each reach ``k``. Returns the closing candidate indices, the last candidate always
    closing; a failing remainder is merged into the interval before it. None when
    the whole range fails the rule.
    """
    if counts.shape[0] == 0:
        return None
    if np.any(counts.sum(axis=0) < k):
        return None
    closes: list[int] = []
    running = np.zeros(counts.shape[1], dtype=np.int64)
    for j in range(counts.shape[0]):
        running += counts[j]
        if np.all(running >= k):
            closes.append(j)
            running[:] = 0
    last = counts.shape[0] - 1
    if not closes:
        return None
    if closes[-1] != last:
        # the remainder fails the rule: extend the last closed interval to the end
        closes[-1] = last
    return closes


def station_grid(
    time: npt.ArrayLike,
    events: Sequence[npt.ArrayLike],
    *,
    k: int,
    step: float,
) -> FloatArray | None:
    """The station's own boundaries for one time column, or None if none is safe.

    Parameters
    ----------
    time : durations of the station's analysis population (finite, >= 0)
    events : one 0/1 array per event column the policy allows with this time column
    k : the station's minimum cell size
    step : the lattice step (policy), in the time column's units

    Every interval holds at least ``k`` events and ``k`` censorings of every event
    column.
    """
    t = np.asarray(time, dtype=np.float64)
    if t.size == 0 or not events:
        return None
    cells = _lattice_index(t, step)
    unique, inverse = np.unique(cells, return_inverse=True)
    columns = []
    for e in events:
        ev = np.asarray(e, dtype=np.float64) == 1.0
        columns.append(np.bincount(inverse, weights=ev, minlength=unique.size))
        columns.append(np.bincount(inverse, weights=~ev, minlength=unique.size))
    counts = np.stack(columns, axis=1).astype(np.int64)
    closes = _greedy(counts, k)
    if closes is None:
        return None
    cells = unique[closes]
    cells[-1] = cells[-2] + 1 if cells.size > 1 else 1
    return lattice(cells, step)


def merge_until_safe(
    boundaries: npt.ArrayLike,
    time: npt.ArrayLike,
    events: Sequence[npt.ArrayLike],
    *,
    k: int,
) -> FloatArray | None:
    """Merge the intervals of ``boundaries`` until each obeys the rule for ``events``.

    Returns a subset of ``boundaries`` (a coarsening), or None.
    """
    b = np.asarray(boundaries, dtype=np.float64)
    t = np.asarray(time, dtype=np.float64)
    if b.size == 0 or not events:
        return None
    interval = np.minimum(np.searchsorted(b, t, side="left"), b.size - 1)
    columns = []
    for e in events:
        ev = np.asarray(e, dtype=np.float64) == 1.0
        columns.append(np.bincount(interval[ev], minlength=b.size))
        columns.append(np.bincount(interval[~ev], minlength=b.size))
    closes = _greedy(np.stack(columns, axis=1).astype(np.int64), k)
    return None if closes is None else b[closes]


def refine_for_groups(
    boundaries: npt.ArrayLike,
    time: npt.ArrayLike,
    events: Sequence[npt.ArrayLike],
    group: npt.ArrayLike,
    *,
    k: int,
) -> FloatArray | None:
    """Merge station intervals until every (group, interval) cell obeys the rule.

    The rule is checked for every event column in ``events`` (all the policy allows
    with this time column), so the merged grid does not depend on the event column a
    request names: two requests with different event columns cannot be intersected
    into finer cells. The same merges apply to every group; returns a subset of
    ``boundaries`` or None when some group cannot reach ``k`` events and ``k``
    censorings at all.
    """
    b = np.asarray(boundaries, dtype=np.float64)
    t = np.asarray(time, dtype=np.float64)
    g = np.asarray(group, dtype=object)
    if b.size == 0 or not events:
        return None
    interval = np.minimum(np.searchsorted(b, t, side="left"), b.size - 1)
    levels, level_of = np.unique(g.astype(str), return_inverse=True)
    columns = []
    for e in events:
        ev = np.asarray(e, dtype=np.float64) == 1.0
        for j in range(levels.size):
            mine = level_of == j
            columns.append(np.bincount(interval[mine & ev], minlength=b.size))
            columns.append(np.bincount(interval[mine & ~ev], minlength=b.size))
    counts = np.stack(columns, axis=1).astype(np.int64)
    closes = _greedy(counts, k)
    if closes is None:
        return None
    return b[closes]


def coarser(boundaries: npt.ArrayLike, step: float) -> FloatArray:
    """The station boundaries an analyst's coarser lattice ``step`` keeps.

    For every multiple of ``step`` the first station boundary at or above it, plus the
    last boundary: a subset, so each released interval is a union of station
    intervals, never a finer cut. O(number of boundaries), whatever the step.
    """
    b = np.asarray(boundaries, dtype=np.float64)
    if b.size == 0:
        return b
    # boundary i is the first at or above some multiple m of step exactly when a
    # multiple lies in (b[i-1], b[i]] (in (0, b[0]] for the first); the ratio is
    # rounded first, so 0.3 / 0.1 = 2.9999999999999996 counts as reaching 3
    q = np.floor(np.round(b / step, 9))
    previous = np.concatenate(([0.0], q[:-1]))
    keep = q > previous
    keep[-1] = True
    return b[keep]
