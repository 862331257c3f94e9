"""Kaplan-Meier estimation and log-rank tests pooled exactly from event tables.

A station reduces its rows to an :class:`EventTable` per group: for every distinct time,
the number of events and of censored observations. Event tables add up: the table of
the concatenated rows is the sum of the stations' tables on the union of their times.
Everything the Kaplan-Meier estimator and the log-rank test need (numbers at risk,
events, censorings) follows from it, so the pooled estimates are *equal* to the same
analysis on the pooled rows, not an approximation.

Formulas (Kalbfleisch & Prentice 2002, ch. 1 and 7; lifelines ``KaplanMeierFitter``):

* survival   ``S(t) = exp(sum_{t_i <= t} log(n_i - d_i) - log(n_i))``
* Greenwood  ``V(t) = sum_{t_i <= t} d_i / (n_i (n_i - d_i))`` (variance of log S)
* log(-log) confidence band
  ``exp(-exp(log(-log S) -/+ z sqrt(V) / log S))``
* log-rank   ``U = O - E``, hypergeometric covariance, ``X2 = U' V^-1 U`` on the first
  ``k - 1`` groups, summed over strata for the stratified test.

Example
-------
>>> t = EventTable.from_rows(np.array([1.0, 2, 2, 3]), np.array([1, 1, 0, 1]))
>>> round(float(kaplan_meier(t).survival[2]), 6)
0.75
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pht.algorithms.levels import LevelType, agree_level_type, labels, sort_levels
from pht.algorithms.numeric import chi2_sf, normal_two_sided_p, z_critical
from pht.columns import missing
from pht.errors import DataError, DisclosureError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ALL = "all"
"""Group label used when a study has no ``group`` parameter."""


@dataclass(frozen=True)
class EventTable:
    """Events and censorings per distinct time for one group of patients.

    Attributes
    ----------
    time : strictly increasing distinct times (float64)
    events : number of events at each time
    censored : number of censored observations at each time
    """

    time: FloatArray
    events: IntArray
    censored: IntArray

    def __post_init__(self) -> None:
        time = np.asarray(self.time, dtype=np.float64)
        events = np.asarray(self.events, dtype=np.int64)
        censored = np.asarray(self.censored, dtype=np.int64)
        if not (time.ndim == events.ndim == censored.ndim == 1):
            raise ValueError("event table columns must be one-dimensional")
        if not (time.shape == events.shape == censored.shape):
            raise ValueError(
                f"event table columns differ in length: time {time.shape[0]}, "
                f"events {events.shape[0]}, censored {censored.shape[0]}"
            )
        if time.size and (np.any(np.diff(time) <= 0) or not np.all(np.isfinite(time))):
            raise ValueError("event table times must be finite and strictly increasing")
        if np.any(events < 0) or np.any(censored < 0):
            raise ValueError("event table counts must be non-negative")
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "censored", censored)

    @property
    def n(self) -> int:
        """Number of patients in the table."""
        return int(self.events.sum() + self.censored.sum())

    @property
    def n_events(self) -> int:
        """Number of events in the table."""
        return int(self.events.sum())

    @classmethod
    def from_rows(cls, time: npt.ArrayLike, event: npt.ArrayLike) -> EventTable:
        """Tabulate rows (duration, event indicator 0/1) into an event table."""
        t = np.asarray(time, dtype=np.float64)
        e = np.asarray(event).astype(np.int64)
        if t.size == 0:
            return cls(np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64))
        times, inverse = np.unique(t, return_inverse=True)
        events = np.bincount(inverse, weights=e, minlength=times.size)
        total = np.bincount(inverse, minlength=times.size)
        events_int = np.rint(events).astype(np.int64)
        return cls(times, events_int, total.astype(np.int64) - events_int)

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """Plain lists, for the wire."""
        return {
            "time": self.time.tolist(),
            "events": self.events.tolist(),
            "censored": self.censored.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> EventTable:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(data["time"], dtype=np.float64),
            np.asarray(data["events"], dtype=np.int64),
            np.asarray(data["censored"], dtype=np.int64),
        )


def merge_event_tables(tables: Sequence[EventTable]) -> EventTable:
    """Sum event tables on the union of their times (the table of the pooled rows)."""
    nonempty = [t for t in tables if t.time.size]
    if not nonempty:
        return EventTable(np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64))
    times = np.unique(np.concatenate([t.time for t in nonempty]))
    events = np.zeros(times.size, dtype=np.int64)
    censored = np.zeros(times.size, dtype=np.int64)
    for t in nonempty:
        idx = np.searchsorted(times, t.time)
        np.add.at(events, idx, t.events)
        np.add.at(censored, idx, t.censored)
    return EventTable(times, events, censored)


def at_risk_before(table: EventTable, times: npt.ArrayLike) -> IntArray:
    """Number at risk just before each of ``times``: patients with duration >= t."""
    removed = np.concatenate([[0], np.cumsum(table.events + table.censored)])
    idx = np.searchsorted(table.time, np.asarray(times, dtype=np.float64), side="left")
    return np.asarray(table.n - removed[idx], dtype=np.int64)


# -- station side --------------------------------------------------------------------
@dataclass(frozen=True)
class GroupedEventTables:
    """A station's aggregate for the KM train: one event table per group.

    Group labels are canonical (:mod:`pht.algorithms.levels`); ``level_type`` is the
    type of the group column's values at this station (``text`` without a group).
    """

    tables: Mapping[str, EventTable]
    excluded: int = 0
    level_type: LevelType = "text"

    @property
    def n(self) -> int:
        """Number of patients over all groups."""
        return sum(t.n for t in self.tables.values())

    @property
    def n_events(self) -> int:
        """Number of events over all groups."""
        return sum(t.n_events for t in self.tables.values())


def local_event_tables(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    group: npt.ArrayLike | None = None,
    *,
    min_count: int = 10,
) -> GroupedEventTables:
    """Station side of ``survival.km``: event tables per group, under a minimum count.

    Rows with a missing time, event or group are excluded (complete cases) and counted.
    Groups are labelled canonically (:func:`pht.algorithms.levels.labels`: ``1`` for
    both ``1`` and ``1.0``).

    Parameters
    ----------
    time : durations (>= 0)
    event : event indicators, 0 (censored) or 1 (event)
    group : group labels, or None for a single group ``"all"``
    min_count : the station's minimum number of patients, in the dataset and per group

    Raises
    ------
    DataError
        Negative durations or event indicators other than 0/1.
    DisclosureError
        Fewer than ``min_count`` patients in the dataset or in a group.
    """
    t = np.asarray(time, dtype=np.float64)
    e_raw = np.asarray(event, dtype=np.float64)
    g = np.full(t.shape[0], ALL, dtype=object) if group is None else np.asarray(group)
    g_missing = missing(g)
    keep = np.isfinite(t) & np.isfinite(e_raw) & ~g_missing
    excluded = int(t.shape[0] - keep.sum())
    t, e_raw, g = t[keep], e_raw[keep], g[keep]
    if np.any(t < 0):
        raise DataError("time column has negative durations; durations must be >= 0")
    if not np.all(np.isin(e_raw, (0.0, 1.0))):
        raise DataError("event column must hold only 0 (censored) and 1 (event)")
    if t.size < min_count:
        raise DisclosureError(
            f"the dataset has fewer than {min_count} usable patients (the minimum)"
        )
    kind: LevelType = "text"
    named = g
    if group is not None:
        named, kind = labels(g)
    tables: dict[str, EventTable] = {}
    for label in sort_levels(named.tolist(), kind):
        mask = named == label
        count = int(mask.sum())
        if count < min_count:
            raise DisclosureError(
                f"a group has fewer than {min_count} patients at this station"
            )
        tables[label] = EventTable.from_rows(t[mask], e_raw[mask])
    return GroupedEventTables(tables, excluded, kind)


# -- orchestrator side ---------------------------------------------------------------
@dataclass(frozen=True)
class MedianSurvival:
    """Median survival time with the confidence limits read off the CI band."""

    estimate: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class KMCurve:
    """A Kaplan-Meier curve on its timeline (0 and every distinct time)."""

    time: FloatArray
    survival: FloatArray
    ci_lower: FloatArray
    ci_upper: FloatArray
    greenwood: FloatArray
    at_risk: IntArray
    events: IntArray
    censored: IntArray
    alpha: float
    median: MedianSurvival = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "median",
            MedianSurvival(
                quantile_time(self.time, self.survival, 0.5),
                quantile_time(self.time, self.ci_lower, 0.5),
                quantile_time(self.time, self.ci_upper, 0.5),
            ),
        )

    @property
    def n(self) -> int:
        """Number of patients."""
        return int(self.at_risk[0]) if self.at_risk.size else 0


def quantile_time(time: FloatArray, survival: FloatArray, q: float) -> float:
    """First time at which the step function ``survival`` is <= ``q`` (inf if never)."""
    if survival.size == 0 or survival[-1] > q:
        return float("inf")
    return float(time[int(np.searchsorted(-survival, -q, side="left"))])


def kaplan_meier(table: EventTable, alpha: float = 0.05) -> KMCurve:
    """Kaplan-Meier estimate with Greenwood variance and a log(-log) CI band.

    The timeline is 0 followed by every distinct time in ``table``; values are those of
    lifelines ``KaplanMeierFitter`` (same formula, same order of operations).
    """
    if table.time.size == 0:
        raise DataError("cannot estimate a survival curve without patients")
    time, events, censored = table.time, table.events, table.censored
    if time[0] != 0.0:
        time = np.concatenate([[0.0], time])
        events = np.concatenate([[0], events])
        censored = np.concatenate([[0], censored])
    removed = events + censored
    at_risk = table.n - np.concatenate([[0], np.cumsum(removed)[:-1]])
    n = at_risk.astype(np.float64)
    d = events.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.cumsum(np.log(n - d) - np.log(n))
        increments = d / (n * (n - d))
        increments[np.isinf(increments)] = 0.0
        greenwood = np.cumsum(increments)
        survival = np.exp(log_s)
        z = z_critical(alpha)
        v = np.log(survival)
        half = z * np.sqrt(greenwood) / v
        lower = np.exp(-np.exp(np.log(-v) - half))
        upper = np.exp(-np.exp(np.log(-v) + half))
    lower[np.isnan(lower)] = 1.0
    upper[np.isnan(upper)] = 1.0
    return KMCurve(
        time=time,
        survival=survival,
        ci_lower=lower,
        ci_upper=upper,
        greenwood=greenwood,
        at_risk=at_risk.astype(np.int64),
        events=events,
        censored=censored,
        alpha=alpha,
    )


@dataclass(frozen=True)
class LogRankResult:
    """A (stratified) log-rank test of equal survival across groups."""

    statistic: float
    df: int
    p_value: float
    stratified: bool
    observed: Mapping[str, float]
    expected: Mapping[str, float]
    method: str = "log-rank"


def logrank_test(
    strata: Sequence[Mapping[str, EventTable]],
    groups: Sequence[str],
    *,
    stratified: bool,
) -> LogRankResult:
    """Log-rank test over ``groups``, summing score and covariance over ``strata``.

    One stratum gives the ordinary log-rank test (lifelines
    ``multivariate_logrank_test``); one stratum per station gives the test stratified
    by station (R ``survdiff(... + strata(station))``, statsmodels ``survdiff``).

    Parameters
    ----------
    strata : per stratum, the event table of each group present in it
    groups : all group labels, in a fixed order
    stratified : whether ``strata`` are real strata (recorded in the result)
    """
    k = len(groups)
    if k < 2:
        raise DataError("a log-rank test needs at least two groups; check 'group'")
    u = np.zeros(k)
    observed = np.zeros(k)
    cov = np.zeros((k, k))
    for stratum in strata:
        tables = [stratum.get(g) for g in groups]
        present = [t for t in tables if t is not None and t.time.size]
        if not present:
            continue
        times = merge_event_tables(present).time
        d = np.zeros((k, times.size))
        r = np.zeros((k, times.size))
        for j, table in enumerate(tables):
            if table is None or table.time.size == 0:
                continue
            idx = np.searchsorted(times, table.time)
            d[j, idx] = table.events
            r[j] = at_risk_before(table, times)
        d_tot = d.sum(axis=0)
        r_tot = r.sum(axis=0)
        use = d_tot > 0
        d, r, d_tot, r_tot = d[:, use], r[:, use], d_tot[use], r_tot[use]
        expected = r * (d_tot / r_tot)
        observed += d.sum(axis=1)
        u += d.sum(axis=1) - expected.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(r_tot > 1, (r_tot - d_tot) / (r_tot - 1), 1.0)
        factor = shrink * d_tot / r_tot**2
        weighted = r * np.sqrt(factor)
        cov += np.diag((r * d_tot * shrink / r_tot).sum(axis=1)) - weighted @ weighted.T
    head = slice(0, k - 1)
    # pseudo-inverse as lifelines: a group without events at risk gives a singular V
    statistic = float(u[head] @ np.linalg.pinv(cov[head, head]) @ u[head])
    df = k - 1
    return LogRankResult(
        statistic=statistic,
        df=df,
        p_value=chi2_sf(float(statistic), int(df)),
        stratified=stratified,
        observed=dict(zip(groups, observed.tolist(), strict=True)),
        expected=dict(zip(groups, (observed - u).tolist(), strict=True)),
    )


@dataclass(frozen=True)
class KMPooled:
    """Pooled survival.km result: a curve per group and both log-rank tests.

    ``curves`` are in level order (numbers by value, texts by text, as R's
    ``factor()``); ``level_type`` is the group column's type the stations agree on.
    """

    curves: Mapping[str, KMCurve]
    logrank: LogRankResult | None
    logrank_stratified: LogRankResult | None
    level_type: LevelType | None = None


def pool_km(
    stations: Sequence[GroupedEventTables],
    alpha: float = 0.05,
    *,
    names: Sequence[str] | None = None,
    group: str = "group",
) -> KMPooled:
    """Orchestrator side of ``survival.km``: pool the stations' event tables.

    The curves equal lifelines ``KaplanMeierFitter`` on the concatenated rows; the
    tests equal ``multivariate_logrank_test`` (unstratified) and ``survdiff`` with the
    station as stratum. With fewer than two groups there is no test (None).
    ``names`` (station ids, in the order of ``stations``) and ``group`` (the group
    column) name the culprits when stations hold the group column with different
    types (a :class:`DataError`).
    """
    if not stations:
        raise DataError("no station returned an event table; nothing to pool")
    ids = list(names) if names is not None else [str(i) for i in range(len(stations))]
    kind = agree_level_type(
        group,
        {i: s.level_type for i, s in zip(ids, stations, strict=True)},
        "group column",
    )
    groups = sort_levels({g for s in stations for g in s.tables}, kind)
    pooled = {
        g: merge_event_tables([s.tables[g] for s in stations if g in s.tables])
        for g in groups
    }
    curves = {g: kaplan_meier(pooled[g], alpha) for g in groups}
    if len(groups) < 2:
        return KMPooled(curves, None, None, kind)
    return KMPooled(
        curves,
        logrank_test([pooled], groups, stratified=False),
        logrank_test([s.tables for s in stations], groups, stratified=True),
        kind,
    )


# -- summaries of a pooled curve: RMST and survival at a fixed time --------------------
@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error and normal-theory CI."""

    estimate: float
    se: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class Difference:
    """``group`` minus ``reference`` with SE sqrt(se1^2 + se2^2), CI and Wald p."""

    group: str
    reference: str
    difference: float
    se: float
    ci_lower: float
    ci_upper: float
    z: float
    p_value: float


def _normal_ci(estimate: float, se: float, alpha: float) -> Estimate:
    z = z_critical(alpha)
    return Estimate(estimate, se, estimate - z * se, estimate + z * se)


def rmst(curve: KMCurve, tau: float, alpha: float = 0.05) -> Estimate:
    """Restricted mean survival time up to ``tau`` and its standard error.

    ``RMST = int_0^tau S(t) dt`` of the KM step function (flat after the last time);
    ``var = sum_{t_i <= tau} A_i^2 d_i / (n_i (n_i - d_i))`` with
    ``A_i = int_{t_i}^tau S(t) dt``, the variance R's ``survival:::survmean`` reports
    as ``se(rmean)`` (terms with ``n_i = d_i`` contribute 0). The CI is
    ``RMST -/+ z se``.
    """
    if tau <= 0:
        raise DataError(f"tau must be positive, got {tau}")
    time = curve.time
    upper = np.minimum(np.append(time[1:], np.inf), tau)
    width = np.clip(upper - time, 0.0, None)
    pieces = curve.survival * width  # area of [t_j, t_{j+1}) within [0, tau]
    area = float(pieces.sum())
    # A_i = area from t_i to tau = sum of pieces from index i on
    tail = np.cumsum(pieces[::-1])[::-1]
    n = curve.at_risk.astype(np.float64)
    d = curve.events.astype(np.float64)
    use = (d > 0) & (time <= tau) & (n > d)
    variance = float(np.sum(tail[use] ** 2 * d[use] / (n[use] * (n[use] - d[use]))))
    return _normal_ci(area, float(np.sqrt(variance)), alpha)


def survival_at(curve: KMCurve, at: float) -> Estimate:
    """KM survival at ``at`` with Greenwood SE ``S sqrt(V)`` and the log(-log) CI.

    The CI is the curve's own band at ``at`` (as lifelines and R with
    ``conf.type = "log-log"``).
    """
    if at < 0:
        raise DataError(f"'at' must be >= 0, got {at}")
    j = int(np.searchsorted(curve.time, at, side="right")) - 1
    s = float(curve.survival[j])
    se = s * float(np.sqrt(curve.greenwood[j]))
    return Estimate(s, se, float(curve.ci_lower[j]), float(curve.ci_upper[j]))


def differences(
    estimates: Mapping[str, Estimate], reference: str, alpha: float = 0.05
) -> list[Difference]:
    """Each group's estimate minus the reference group's, with a Wald test."""
    z_crit = z_critical(alpha)
    ref = estimates[reference]
    out = []
    for group, est in estimates.items():
        if group == reference:
            continue
        diff = est.estimate - ref.estimate
        se = float(np.hypot(est.se, ref.se))
        z = diff / se if se > 0 else float("nan")
        out.append(
            Difference(
                group=group,
                reference=reference,
                difference=diff,
                se=se,
                ci_lower=diff - z_crit * se,
                ci_upper=diff + z_crit * se,
                z=z,
                p_value=normal_two_sided_p(z) if se > 0 else float("nan"),
            )
        )
    return out
