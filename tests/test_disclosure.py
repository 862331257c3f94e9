"""Properties of the station's time grid and of the Newton path replay."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pht.algorithms.disclosure import (
    coarsen,
    coarser,
    merge_until_safe,
    refine_for_groups,
    station_grid,
)
from pht.algorithms.optimize import NewtonPath


def _cells(boundaries, time, event, group=None):  # type: ignore[no-untyped-def]
    """(group, interval) -> (events, censorings) on the released grid."""
    released = coarsen(time, boundaries)
    labels = np.zeros(time.size, dtype=object) if group is None else group
    out = {}
    for g in set(labels.tolist()):
        for b in boundaries:
            mine = (labels == g) & (released == b)
            out[(g, b)] = (int(event[mine].sum()), int((1 - event[mine]).sum()))
    return out


data = st.integers(min_value=0, max_value=2**32 - 1).flatmap(
    lambda seed: st.tuples(
        st.just(seed),
        st.integers(min_value=20, max_value=400),
        st.integers(min_value=2, max_value=12),
        st.sampled_from([1.0, 7.0, 30.0]),
    )
)


@settings(max_examples=60, deadline=None)
@given(data)
def test_every_released_cell_holds_k_events_and_k_censorings(args) -> None:  # type: ignore[no-untyped-def]
    seed, n, k, step = args
    rng = np.random.default_rng(seed)
    time = rng.integers(0, 2000, n).astype(float)
    event = rng.integers(0, 2, n).astype(float)
    other = rng.integers(0, 2, n).astype(float)
    grid = station_grid(time, [event, other], k=k, step=step)
    if grid is None:
        assert min(event.sum(), n - event.sum(), other.sum(), n - other.sum()) < k
        return
    assert np.all(np.diff(grid) > 0)
    assert np.allclose(grid / step, np.round(grid / step))  # lattice labels only
    for e in (event, other):
        for events, censored in _cells(grid, time, e).values():
            assert events >= k and censored >= k
    group = rng.choice(["a", "b"], n).astype(object)
    refined = refine_for_groups(grid, time, [event, other], group, k=k)
    if refined is not None:
        assert set(refined.tolist()) <= set(grid.tolist())
        for e in (event, other):
            for events, censored in _cells(refined, time, e, group).values():
                assert events >= k and censored >= k


def test_the_last_interval_is_not_labelled_by_the_longest_follow_up() -> None:
    time = np.arange(1.0, 41.0)
    time[-1] = 987.0  # one patient followed far longer
    event = np.tile([1.0, 0.0], 20)
    grid = station_grid(time, [event], k=5, step=1.0)
    assert grid is not None and 987.0 not in grid.tolist()
    assert coarsen([987.0], grid).tolist() == [grid[-1]]


def test_a_coarser_analyst_grid_is_a_union_of_station_intervals() -> None:
    grid = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    assert set(coarser(grid, 25.0).tolist()) <= set(grid.tolist())
    assert coarser(grid, 25.0).tolist() == [30.0, 50.0]


def test_a_kept_grid_is_only_coarsened_when_the_data_change() -> None:
    rng = np.random.default_rng(3)
    time = rng.integers(0, 1000, 300).astype(float)
    event = rng.integers(0, 2, 300).astype(float)
    grid = station_grid(time, [event], k=10, step=1.0)
    assert grid is not None
    fewer = merge_until_safe(grid, time[:200], [event[:200]], k=10)
    assert fewer is not None and set(fewer.tolist()) <= set(grid.tolist())


def test_newton_path_replays_newton_raphson_with_halving() -> None:
    # a concave quadratic with a wrong curvature first: the replay halves as the
    # fitter does and then follows the exact Newton step
    path = NewtonPath(1)
    assert path.start().tolist() == [0.0]
    assert path.next_point(-1.0, np.array([4.0]), np.array([[-1.0]])).tolist() == [4.0]
    assert path.would_halve(-50.0)
    assert path.after(-50.0).tolist() == [2.0]  # type: ignore[union-attr]
    assert path.after(-0.5) is None  # better: accepted, needs the Hessian
    assert path.accept(-0.5, np.array([-1.0]), np.array([[-2.0]])).tolist() == [1.5]  # type: ignore[union-attr]
