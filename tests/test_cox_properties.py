"""Properties: pooled Cox does not depend on how rows are split over stations;
stratified and pooled Cox do not depend on the order of the stations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pht.algorithms.cox import SortedRows, newton_raphson, pooled_terms


@st.composite
def cohorts(draw):  # type: ignore[no-untyped-def]
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(40, 160))
    k = draw(st.integers(1, 5))
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)]).astype(float)
    time = np.ceil(rng.exponential(10 * np.exp(-0.5 * x[:, 0])))
    event = (rng.random(n) < 0.7).astype(float)
    station = rng.integers(0, k, n)
    order = draw(st.permutations(list(range(k))))
    return time, event, x, station, order


def pooled_fit(parts: list[SortedRows]):  # type: ignore[no-untyped-def]
    times = np.unique(np.concatenate([p.event_times for p in parts]))

    def evaluate(beta):  # type: ignore[no-untyped-def]
        return pooled_terms(parts, beta, "efron", times)

    return newton_raphson(evaluate, 2)


def stratified_fit(parts: list[SortedRows]):  # type: ignore[no-untyped-def]
    def evaluate(beta):  # type: ignore[no-untyped-def]
        terms = [p.terms(beta, "efron") for p in parts]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    return newton_raphson(evaluate, 2)


def split(time, event, x, station, order):  # type: ignore[no-untyped-def]
    return [
        SortedRows(time[station == s], event[station == s], x[station == s])
        for s in order
        if (station == s).any()
    ]


@settings(max_examples=60, deadline=None)
@given(cohorts())
def test_pooled_cox_does_not_depend_on_split_or_order(cohort) -> None:  # type: ignore[no-untyped-def]
    time, event, x, station, order = cohort
    if event.sum() < 5:
        return
    whole = pooled_fit([SortedRows(time, event, x)])
    parts = pooled_fit(split(time, event, x, station, order))
    assert whole.converged and parts.converged
    assert np.max(np.abs(whole.beta - parts.beta)) <= 1e-8
    assert abs(whole.terms.loglik - parts.terms.loglik) <= 1e-8


@settings(max_examples=60, deadline=None)
@given(cohorts(), st.randoms(use_true_random=False))
def test_stratified_cox_does_not_depend_on_station_order(cohort, rnd) -> None:  # type: ignore[no-untyped-def]
    time, event, x, station, order = cohort
    shuffled = list(order)
    rnd.shuffle(shuffled)
    a = stratified_fit(split(time, event, x, station, order))
    b = stratified_fit(split(time, event, x, station, shuffled))
    if not (a.converged and b.converged):
        return  # a stratum layout without information; order still must not matter
    assert np.max(np.abs(a.beta - b.beta)) <= 1e-9
