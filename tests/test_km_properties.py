"""Properties: the pooled KM result does not depend on how patients are split over
stations, nor on the order of the stations; the station's time grid never releases an
interval with fewer than k events or k censorings."""

from __future__ import annotations

import numpy as np
from conftest import to_grid
from hypothesis import given, settings
from hypothesis import strategies as st

from pht.algorithms.disclosure import coarser, refine_for_groups, station_grid
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


@st.composite
def station_rows(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(min_value=1, max_value=150))
    time = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    columns = draw(st.integers(1, 2))
    events = [
        np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
        for _ in range(columns)
    ]
    group = draw(st.lists(st.sampled_from(["a", "b"]), min_size=n, max_size=n))
    k = draw(st.integers(min_value=1, max_value=8))
    step = draw(st.sampled_from([0.5, 1.0, 7.0]))
    coarser_step = draw(st.sampled_from([2.0, 10.0, 30.0]))
    scale = draw(st.sampled_from([1.0, 0.37]))  # integer days and fractional times
    return (
        np.array(time, float) * scale,
        events,
        np.array(group),
        k,
        step,
        coarser_step,
    )


def cells_at_least(released, event, k) -> bool:  # type: ignore[no-untyped-def]
    """Every interval (released time) has >= k events and >= k censorings."""
    for b in np.unique(released):
        here = released == b
        if (event[here] == 1).sum() < k or (event[here] == 0).sum() < k:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(station_rows())
def test_no_released_interval_holds_fewer_than_k_events_or_censorings(rows) -> None:  # type: ignore[no-untyped-def]
    """The station's grid: any cell in (0, k) never leaves a station, for every
    event column at once, after the group refinement and an analyst's coarser step."""
    time, events, group, k, step, coarser_step = rows
    grid = station_grid(time, events, k=k, step=step)
    possible = all(
        (e == 1).sum() >= k and (e == 0).sum() >= k for e in events
    )  # then one interval over everything obeys the rule
    assert (grid is not None) == possible
    if grid is None:
        return
    assert np.all(np.diff(grid) > 0)
    assert np.allclose(grid / step, np.round(grid / step))  # lattice points only
    released = to_grid(time, grid)
    assert all(cells_at_least(released, e, k) for e in events)
    # every event column at once: a grouped grid does not depend on the event
    # column a request names (no intersecting two releases into finer cells)
    refined = refine_for_groups(grid, time, events, group, k=k)
    if refined is not None:
        assert set(refined) <= set(grid) and refined[-1] == grid[-1]
        released = to_grid(time, refined)
        for g in np.unique(group):
            mine = group == g
            assert all(cells_at_least(released[mine], e[mine], k) for e in events)
        wider = coarser(refined, coarser_step)
        assert set(wider) <= set(refined) and wider[-1] == refined[-1]
        released = to_grid(time, wider)
        for g in np.unique(group):
            mine = group == g
            assert all(cells_at_least(released[mine], e[mine], k) for e in events)
