"""Properties: the pooled KM result does not depend on how patients are split over
stations, nor on the order of the stations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pht.algorithms.km import EventTable, GroupedEventTables, pool_km


@st.composite
def split_cohort(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(min_value=4, max_value=80))
    time = draw(st.lists(st.integers(0, 25), min_size=n, max_size=n))
    event = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    group = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    k = draw(st.integers(min_value=1, max_value=6))
    station = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    order = draw(st.permutations(list(range(k))))
    return (
        np.array(time, float),
        np.array(event),
        np.array(group),
        np.array(station),
        order,
    )


def tables_by_station(time, event, group, station, order) -> list[GroupedEventTables]:  # type: ignore[no-untyped-def]
    out = []
    for s in order:
        mask = station == s
        if not mask.any():
            continue
        out.append(
            GroupedEventTables(
                {
                    str(g): EventTable.from_rows(
                        time[mask & (group == g)], event[mask & (group == g)]
                    )
                    for g in np.unique(group[mask])
                }
            )
        )
    return out


@settings(max_examples=150, deadline=None)
@given(split_cohort())
def test_pooled_km_does_not_depend_on_split_or_order(cohort) -> None:  # type: ignore[no-untyped-def]
    time, event, group, station, order = cohort
    whole = pool_km(tables_by_station(time, event, group, np.zeros_like(station), [0]))
    split = pool_km(tables_by_station(time, event, group, station, order))
    assert whole.curves.keys() == split.curves.keys()
    for g, curve in whole.curves.items():
        other = split.curves[g]
        for name in ("time", "survival", "ci_lower", "ci_upper", "at_risk", "events"):
            assert np.array_equal(
                getattr(curve, name), getattr(other, name), equal_nan=True
            )
    if whole.logrank is not None and np.isfinite(whole.logrank.statistic):
        assert split.logrank is not None
        assert abs(whole.logrank.statistic - split.logrank.statistic) <= 1e-9


@settings(max_examples=100, deadline=None)
@given(split_cohort(), st.randoms(use_true_random=False))
def test_stratified_logrank_does_not_depend_on_station_order(cohort, rnd) -> None:  # type: ignore[no-untyped-def]
    time, event, group, station, order = cohort
    shuffled = list(order)
    rnd.shuffle(shuffled)
    a = pool_km(
        tables_by_station(time, event, group, station, order)
    ).logrank_stratified
    b = pool_km(
        tables_by_station(time, event, group, station, shuffled)
    ).logrank_stratified
    if a is None or not np.isfinite(a.statistic):
        return
    assert b is not None
    assert abs(a.statistic - b.statistic) <= 1e-9 * max(1.0, abs(a.statistic))
