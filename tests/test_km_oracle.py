"""Oracle tests: federated survival.km == lifelines / statsmodels on the pooled rows.

The pure algorithm (``pht.algorithms.km``) is compared on exact times. End to end, a
station releases its event tables only on its own time grid (each time as the smallest
boundary at or above it, every (group, interval) cell with >= k events and >= k
censorings), so there the oracle fits the pooled rows with each station's times moved
to the grid that station released: the federated result must be *equal* to that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import (
    assert_cells_at_least,
    on_station_grids,
    released_grid,
    run_embedded,
    write_network,
    write_study,
)
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import median_survival_times
from statsmodels.duration.survfunc import survdiff

from pht.algorithms.km import (
    EventTable,
    GroupedEventTables,
    kaplan_meier,
    local_event_tables,
    merge_event_tables,
    pool_km,
)
from pht.station.codes import Code

KM_TOL = 1e-12
TEST_TOL = 1e-9


def km_max_diff(curve: Mapping[str, Any], time: Any, event: Any) -> float:
    """Largest |difference| of survival and both CI bounds against lifelines."""
    kmf = KaplanMeierFitter().fit(np.asarray(time), np.asarray(event))  # the oracle
    assert np.array_equal(
        kmf.survival_function_.index.to_numpy(), np.asarray(curve["time"])
    )
    ci = kmf.confidence_interval_.to_numpy()
    assert np.array_equal(
        kmf.event_table["at_risk"].to_numpy(), np.asarray(curve["at_risk"])
    )
    assert np.array_equal(
        kmf.event_table["observed"].to_numpy(), np.asarray(curve["events"])
    )
    lifelines_median = kmf.median_survival_time_
    ci_median = median_survival_times(kmf.confidence_interval_).to_numpy().ravel()
    ours = [
        curve["median"].estimate,
        curve["median"].ci_lower,
        curve["median"].ci_upper,
    ]
    assert np.allclose(ours, [lifelines_median, *ci_median], equal_nan=True)
    return float(
        max(
            np.max(np.abs(kmf.survival_function_.to_numpy()[:, 0] - curve["survival"])),
            np.max(np.abs(ci[:, 0] - curve["ci_lower"])),
            np.max(np.abs(ci[:, 1] - curve["ci_upper"])),
        )
    )


def station_tables(
    frame: pd.DataFrame, by: str, group: str
) -> list[GroupedEventTables]:
    return [
        GroupedEventTables(
            {
                str(g): EventTable.from_rows(rows["time"], rows["status"])
                for g, rows in part.groupby(group)
            }
        )
        for _, part in frame.groupby(by)
    ]


def test_km_equals_lifelines_on_lung_split_by_institution(lung: pd.DataFrame) -> None:
    stations = station_tables(lung, "inst", "sex")
    assert len(stations) == 18  # NCCTG institutions
    pooled = pool_km(stations)
    for sex, curve in pooled.curves.items():
        rows = lung[lung["sex"].astype(str) == sex]
        as_dict = {
            "time": curve.time,
            "survival": curve.survival,
            "ci_lower": curve.ci_lower,
            "ci_upper": curve.ci_upper,
            "at_risk": curve.at_risk,
            "events": curve.events,
            "median": curve.median,
        }
        assert km_max_diff(as_dict, rows["time"], rows["status"]) <= KM_TOL


def test_logrank_equals_lifelines_multivariate_logrank_on_lung(
    lung: pd.DataFrame,
) -> None:
    oracle = multivariate_logrank_test(lung["time"], lung["sex"], lung["status"])
    ours = pool_km(station_tables(lung, "inst", "sex")).logrank
    assert ours is not None and ours.df == 1 and not ours.stratified
    assert abs(ours.statistic - oracle.test_statistic) <= TEST_TOL
    assert abs(ours.p_value - oracle.p_value) <= TEST_TOL


def test_stratified_logrank_equals_statsmodels_survdiff_on_lung(
    lung: pd.DataFrame,
) -> None:
    statistic, p_value = survdiff(
        lung["time"].to_numpy(),
        lung["status"].to_numpy(),
        lung["sex"].to_numpy(),
        strata=lung["inst"].to_numpy(),
    )
    ours = pool_km(station_tables(lung, "inst", "sex")).logrank_stratified
    assert ours is not None and ours.stratified
    assert abs(ours.statistic - statistic) <= TEST_TOL
    assert abs(ours.p_value - p_value) <= TEST_TOL


def test_three_group_logrank_equals_lifelines_on_lung_ecog(lung: pd.DataFrame) -> None:
    frame = lung.dropna(subset=["ph.ecog"]).copy()
    frame["ecog"] = frame["ph.ecog"].clip(upper=2).astype(int)
    oracle = multivariate_logrank_test(frame["time"], frame["ecog"], frame["status"])
    ours = pool_km(station_tables(frame, "inst", "ecog")).logrank
    assert ours is not None and ours.df == 2
    assert abs(ours.statistic - oracle.test_statistic) <= TEST_TOL
    statistic, _ = survdiff(
        frame["time"].to_numpy(),
        frame["status"].to_numpy(),
        frame["ecog"].to_numpy(),
        strata=frame["inst"].to_numpy(),
    )
    stratified = pool_km(station_tables(frame, "inst", "ecog")).logrank_stratified
    assert stratified is not None
    assert abs(stratified.statistic - statistic) <= TEST_TOL


def test_km_handles_events_at_time_zero_and_total_death() -> None:
    time = np.array([0.0, 0, 1, 2, 2, 3])
    event = np.array([1, 0, 1, 1, 1, 1])
    curve = kaplan_meier(EventTable.from_rows(time, event))
    kmf = KaplanMeierFitter().fit(time, event)  # oracle
    assert np.allclose(
        curve.survival, kmf.survival_function_.to_numpy()[:, 0], atol=1e-15
    )
    assert np.allclose(
        curve.ci_lower, kmf.confidence_interval_.to_numpy()[:, 0], atol=1e-15
    )


def test_merge_event_tables_equals_table_of_concatenated_rows() -> None:
    rng = np.random.default_rng(7)
    parts = [
        (rng.integers(1, 30, 40).astype(float), rng.integers(0, 2, 40))
        for _ in range(4)
    ]
    merged = merge_event_tables([EventTable.from_rows(t, e) for t, e in parts])
    whole = EventTable.from_rows(
        np.concatenate([t for t, _ in parts]), np.concatenate([e for _, e in parts])
    )
    assert np.array_equal(merged.time, whole.time)
    assert np.array_equal(merged.events, whole.events)
    assert np.array_equal(merged.censored, whole.censored)


def test_local_event_tables_refuses_small_groups() -> None:
    from pht.errors import DisclosureError

    time = np.arange(1, 31, dtype=float)
    event = np.ones(30)
    group = np.array(["a"] * 25 + ["b"] * 5, dtype=object)
    # the message names no group: a label held by < k patients never leaves
    with pytest.raises(DisclosureError, match="a group has fewer than 10 patients"):
        local_event_tables(time, event, group, min_count=10)
    with pytest.raises(DisclosureError, match="fewer than 50 usable patients"):
        local_event_tables(time, event, None, min_count=50)


def end_to_end_km_oracle(
    result: Mapping[str, Any], rows: pd.DataFrame, time: str, event: str, group: str
) -> float:
    """Compare curves, log-rank and stratified log-rank with lifelines / statsmodels
    on ``rows`` (already on the stations' grids); return the largest KM difference."""
    worst = 0.0
    assert set(result["km"]) == {str(g) for g in rows[group].unique()}
    for label, curve in result["km"].items():
        part = rows[rows[group].astype(str) == label]
        curve = {**curve, "events": curve["events_at"], "median": _median(curve)}
        worst = max(worst, km_max_diff(curve, part[time], part[event]))
    assert worst <= KM_TOL
    oracle = multivariate_logrank_test(rows[time], rows[group], rows[event])
    assert abs(result["logrank"]["statistic"] - oracle.test_statistic) <= TEST_TOL
    assert abs(result["logrank"]["p_value"] - oracle.p_value) <= TEST_TOL
    statistic, _ = survdiff(
        rows[time].to_numpy(),
        rows[event].to_numpy(),
        rows[group].to_numpy(),
        strata=rows["station"].to_numpy(),
    )
    assert abs(result["logrank_stratified"]["statistic"] - statistic) <= TEST_TOL
    return worst


def test_end_to_end_km_equals_lifelines_on_lung_by_institution(tmp_path, lung) -> None:
    k = 2  # lung has 63 censorings over 18 institutions: few intervals hold k = 2
    columns = ["time", "status", "sex"]
    frames = {f"inst{i}": part for i, part in lung.groupby("inst")}
    network = write_network(
        tmp_path, frames, dataset="lung", min_cell_size=k, fmt="csv", columns=columns
    )
    study = write_study(
        tmp_path,
        dataset="lung",
        parameters={"time": "time", "event": "status", "group": "sex"},
        min_stations=1,  # small institutions refuse; the others give the result
    )
    released: dict[str, Any] = {}
    result = run_embedded(study, network, released)
    outputs = released[result["provenance"]["request_id"]]
    took_part = [s["id"] for s in result["stations"] if s["participated"]]
    refused = [s for s in result["stations"] if not s["participated"]]
    assert took_part and refused and sorted(outputs) == sorted(took_part)
    # small institutions refuse: too few patients, a sex with < k patients, or no
    # grid with k events and k censorings in every (sex, interval) cell
    expected = {c.reason for c in (Code.SMALL_POPULATION, Code.SMALL_CELL, Code.GRID)}
    assert all(s["reason"] in expected for s in refused)
    assert {s["reason"] for s in refused} >= {Code.SMALL_CELL.reason, Code.GRID.reason}
    assert all(s["n"] is None for s in refused)
    for (output,) in outputs.values():
        assert output["excluded"] == 0
        assert_cells_at_least(output, k)
    rows = on_station_grids(frames, outputs, "time", columns)
    assert sum(out[0]["n"] for out in outputs.values()) == len(rows)
    end_to_end_km_oracle(result, rows, "time", "status", "sex")


def test_end_to_end_km_equals_lifelines_on_synthetic_registries_station_grids(
    tmp_path,
) -> None:
    """Three registries with thousands of patients: fine station grids (dozens of
    intervals each, all different), so the pooled curves have many steps."""
    from pht import synth

    k = 5
    columns = ["os_days", "death", "sex"]
    frames = synth.generate(11, 6000)
    network = write_network(tmp_path, frames, min_cell_size=k, columns=columns)
    study = write_study(
        tmp_path, parameters={"time": "os_days", "event": "death", "group": "sex"}
    )
    released: dict[str, Any] = {}
    result = run_embedded(study, network, released)
    outputs = released[result["provenance"]["request_id"]]
    assert sorted(outputs) == sorted(frames)
    grids = {s: released_grid(out) for s, out in outputs.items()}
    for station, (output,) in outputs.items():
        assert_cells_at_least(output, k)
        assert len(grids[station]) >= 20
        # boundaries on the lattice of step 1 (the default): whole days
        assert np.array_equal(grids[station], np.round(grids[station]))
    assert not np.array_equal(grids["nkr"][:10], grids["dica"][:10])
    rows = on_station_grids(frames, outputs, "os_days", columns)
    assert len(rows) == sum(len(f) for f in frames.values())
    worst = end_to_end_km_oracle(result, rows, "os_days", "death", "sex")
    assert sum(len(c["time"]) for c in result["km"].values()) > 80
    assert worst <= KM_TOL


def _median(curve: Mapping[str, Any]) -> Any:
    from pht.algorithms.km import MedianSurvival

    m = curve["median"]
    return MedianSurvival(
        *(
            np.inf if m[k] is None else m[k]
            for k in ("estimate", "ci_lower", "ci_upper")
        )
    )
