"""Oracle tests: federated survival.cox == lifelines CoxPHFitter on the concatenated rows
(strata=station for the stratified mode), statsmodels PHReg for Breslow ties.

Stratified mode (class ``model``) works on exact times. Pooled mode (class
``risk_set_sums``) releases per-time sums only on each station's time grid, so its
oracle fits the pooled rows with each station's times moved to the grid that station
released (its round-0 event times). Every station analyses its fixed population: the
rows complete on every column its policy allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import (
    CLASSES,
    fit_federated,
    on_station_grids,
    released_grid,
    run_embedded,
    write_network,
    write_study,
)
from lifelines import CoxPHFitter

from pht import synth
from pht.errors import PolicyError
from pht.station.codes import Code

PRECISE = {"precision": 1e-13, "r_precision": 1e-15}
TOL = 1e-8
HERE = Path(__file__).parent / "reference"


def pooled_rows(
    result: dict,
    released: dict[str, Any],
    frames: dict[str, pd.DataFrame],
    time: str,
    complete: list[str],
) -> pd.DataFrame:
    """The rows of the stations that took part, times on their released grids."""
    took = {s["id"] for s in result["stations"] if s["participated"]}
    outputs = released[result["provenance"]["request_id"]]
    return on_station_grids(
        frames, {s: o for s, o in outputs.items() if s in took}, time, complete
    )


def lifelines_fit(
    rows: pd.DataFrame, time: str, event: str, strata: str | None
) -> CoxPHFitter:
    return CoxPHFitter(strata=[strata] if strata else None).fit(
        rows, time, event, fit_options=PRECISE
    )


def assert_equal_fit(result: dict, oracle: CoxPHFitter, names: dict[str, str]) -> None:
    cox = result["cox"]
    assert cox["converged"]
    for ours, theirs in names.items():
        assert abs(cox["params"][ours]["coef"] - oracle.params_[theirs]) <= TOL, ours
        assert abs(cox["params"][ours]["se"] - oracle.standard_errors_[theirs]) <= TOL
    assert abs(cox["loglik"] - oracle.log_likelihood_) <= TOL


ROSSI = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    frame = pd.read_csv(HERE / "rossi.csv")
    frame["station"] = [f"s{i % 3}" for i in range(len(frame))]
    return frame


def rossi_rows(
    rossi: pd.DataFrame, mode: str, result: dict, released: dict[str, Any]
) -> pd.DataFrame:
    """Stratified: the exact rows. Pooled: every station's rows on its released grid,
    which for Rossi is a single interval (all its censorings are at week 52), so the
    pooled fit is the fit with all 114 arrests tied: a test of the tie handling.
    """
    if mode == "stratified":
        return rossi
    frames = {s: part.drop(columns="station") for s, part in rossi.groupby("station")}
    rows = pooled_rows(result, released, frames, "week", ["week", "arrest", *ROSSI])
    assert rows["week"].nunique() == 1
    return rows.drop(columns="station")


def test_pooled_cox_on_rossi_is_refused_for_its_sparse_covariate_patterns(
    tmp_path, rossi
) -> None:
    """Per-time sums with five binary covariates and prio would describe (pattern,
    interval) cells under k: every station refuses pooled mode (no grid)."""
    frames = {s: part.drop(columns="station") for s, part in rossi.groupby("station")}
    with pytest.raises(PolicyError, match="grid:"):
        fit_federated(
            tmp_path,
            frames,
            time="week",
            event="arrest",
            covariates=ROSSI,
            mode="pooled",
        )


@pytest.mark.parametrize("mode", ["stratified"])
def test_cox_equals_lifelines_on_rossi(tmp_path, rossi, mode) -> None:
    frames = {s: part.drop(columns="station") for s, part in rossi.groupby("station")}
    released: dict[str, Any] = {}
    result = fit_federated(
        tmp_path,
        frames,
        released=released,
        show_station_name=True,  # per-station results are shown by name only then
        time="week",
        event="arrest",
        covariates=ROSSI,
        mode=mode,
    )
    oracle = lifelines_fit(
        rossi_rows(rossi, mode, result, released),
        "week",
        "arrest",
        "station" if mode == "stratified" else None,
    )
    assert_equal_fit(result, oracle, {c: c for c in ROSSI})
    cox = result["cox"]
    assert cox["mode"] == mode and cox["ties"] == "efron"
    assert cox["n"] == 432 and cox["events"] == 114
    assert set(cox["per_station"]) == {"s0", "s1", "s2"}
    lr = 2 * (oracle.log_likelihood_ - oracle._ll_null_)
    assert abs(cox["lr_test"]["statistic"] - lr) <= 1e-6
    hr = cox["params"]["prio"]
    assert abs(hr["hr"] - np.exp(hr["coef"])) < 1e-15
    assert (
        abs(hr["ci_lower"] - np.exp(oracle.confidence_intervals_.loc["prio"].iloc[0]))
        < 1e-7
    )


@pytest.mark.parametrize("mode", ["stratified"])
def test_cox_breslow_equals_statsmodels_phreg_on_rossi(tmp_path, rossi, mode) -> None:
    frames = {s: part.drop(columns="station") for s, part in rossi.groupby("station")}
    released: dict[str, Any] = {}
    result = fit_federated(
        tmp_path,
        frames,
        released=released,
        time="week",
        event="arrest",
        covariates=ROSSI,
        mode=mode,
        ties="breslow",
    )
    rows = rossi_rows(rossi, mode, result, released)
    oracle = sm.PHReg(
        rows["week"],
        rows[ROSSI],
        status=rows["arrest"],
        ties="breslow",
        strata=rows["station"] if mode == "stratified" else None,
    ).fit()
    ours = np.array([result["cox"]["params"][c]["coef"] for c in ROSSI])
    se = np.array([result["cox"]["params"][c]["se"] for c in ROSSI])
    assert np.max(np.abs(ours - oracle.params)) <= TOL
    assert np.max(np.abs(se - oracle.bse)) <= TOL
    assert abs(result["cox"]["loglik"] - oracle.llf) <= TOL


def test_cox_equals_lifelines_on_lung_by_institution_with_categorical(tmp_path) -> None:
    lung = pd.read_csv(HERE / "lung.csv").dropna(subset=["inst"])
    lung["inst"] = lung["inst"].astype(int)
    frames = {f"i{i}": part.drop(columns="inst") for i, part in lung.groupby("inst")}
    result = fit_federated(
        tmp_path,
        frames,
        time="time",
        event="status",
        covariates=["age", "sex"],
        categorical=["sex"],
        k=5,
        columns=["time", "status", "age", "sex"],
    )
    took = [s["id"] for s in result["stations"] if s["participated"]]
    assert 2 <= len(took) < len(frames)  # small institutions refuse
    rows = pd.concat([frames[s].assign(station=s) for s in took])
    rows = rows[["time", "status", "age", "sex", "station"]].dropna()
    rows["sex[T.2]"] = (rows.pop("sex") == 2).astype(float)
    oracle = lifelines_fit(rows, "time", "status", "station")
    assert_equal_fit(result, oracle, {"age": "age", "sex[T.2]": "sex[T.2]"})
    dof = [s for s in result["stations"] if s["reason"] == Code.DOF.reason]
    assert dof  # some institutions drop out at the design round (10 per parameter)
    assert result["cox"]["reference_levels"] == {"sex": "1"}


@pytest.mark.parametrize("mode", ["stratified", "pooled"])
def test_cox_equals_lifelines_on_synthetic_registries(tmp_path, mode) -> None:
    frames = synth.generate(5, 3000)
    # pooled mode releases per-time sums: the station merges its grid until every
    # (pattern of the categorical covariates, interval) cell holds k events and k
    # censorings, so a design with many sparse patterns gets no grid at all; there
    # the comparison uses one text covariate (sex) beside the numeric ones
    categorical = ["regimen", "stage"] if mode == "stratified" else ["sex"]
    # (ecog and ldh_elevated have few values: in pooled mode they would make cells)
    numeric = ["age", "ecog", "ldh_elevated"] if mode == "stratified" else ["age"]
    covariates = [*numeric, *categorical]
    columns = ["os_days", "death", *covariates]
    released: dict[str, Any] = {}
    result = fit_federated(
        tmp_path,
        frames,
        columns=columns,
        released=released,
        time="os_days",
        event="death",
        covariates=covariates,
        mode=mode,
        reference={"regimen": "standard"} if mode == "stratified" else {"sex": "F"},
    )
    took = [s["id"] for s in result["stations"] if s["participated"]]
    assert took
    if mode == "pooled":
        rows = pooled_rows(result, released, frames, "os_days", columns)
        assert rows["os_days"].nunique() > 10  # several grid times: a real comparison
    else:
        rows = pd.concat([frames[s].assign(station=s) for s in took])
        rows = rows.dropna(subset=columns)
    assert result["cox"]["n"] == len(rows)
    design = pd.DataFrame(
        {"os_days": rows["os_days"], "death": rows["death"]}
        | {c: rows[c] for c in numeric}
    )
    names = {c: c for c in numeric}
    references = {"regimen": "standard", "stage": "IIIB", "sex": "F"}
    for column in categorical:
        for level in sorted(set(rows[column])):
            if level == references[column]:
                continue
            name = f"{column}[T.{level}]"
            design[name] = (rows[column] == level).astype(float)
            names[name] = name
    if mode == "stratified":
        design["station"] = rows["station"].to_numpy()
    oracle = lifelines_fit(
        design, "os_days", "death", "station" if mode == "stratified" else None
    )
    assert_equal_fit(result, oracle, names)
    assert result["cox"]["reference_levels"] == {c: references[c] for c in categorical}


def coarser_by_hand(grid: np.ndarray, step: float) -> np.ndarray:
    """For each multiple of ``step`` the first boundary at or above it, plus the
    last boundary (the documented rule for an analyst's ``time_grid``)."""
    last = float(grid[-1])
    multiples = step * np.arange(1, int(np.ceil(last / step)) + 1)
    kept = {float(grid[grid >= m][0]) if m <= last else last for m in multiples}
    return np.array(sorted(kept | {last}))


def test_pooled_cox_on_a_time_grid_equals_lifelines_on_rounded_times(
    tmp_path,
) -> None:
    """``time_grid`` only asks for a coarser grid: a subset of each station's own
    boundaries; the fit equals lifelines on the rows rounded up to that subset."""
    frames = synth.generate(5, 3000)
    # a continuous covariate: it makes no cells, so the grid is the station's own
    covariates = ["age"]
    columns = ["os_days", "death", *covariates]
    network = write_network(
        tmp_path, frames, dataset="d", classes=CLASSES, columns=columns
    )
    parameters = {
        "time": "os_days",
        "event": "death",
        "covariates": covariates,
        "mode": "pooled",
    }
    released: dict[str, Any] = {}
    fine = run_embedded(
        write_study(tmp_path, train="survival.cox", dataset="d", parameters=parameters),
        network,
        released,
    )
    study = write_study(
        tmp_path,
        train="survival.cox",
        dataset="d",
        parameters={**parameters, "time_grid": 90},
    )
    result = run_embedded(study, network, released)
    station_grids = released[fine["provenance"]["request_id"]]
    outputs = released[result["provenance"]["request_id"]]
    assert sorted(outputs) == sorted(station_grids) == sorted(frames)
    for station, output in outputs.items():
        own = released_grid(station_grids[station])
        grid = released_grid(output)
        assert np.array_equal(grid, coarser_by_hand(own, 90.0))
        assert 10 < len(grid) < len(own)
    rows = pooled_rows(result, released, frames, "os_days", columns)
    names = {c: c for c in covariates}
    oracle = lifelines_fit(rows[columns], "os_days", "death", None)
    assert_equal_fit(result, oracle, names)
    rows = pooled_rows(fine, released, frames, "os_days", columns)
    assert_equal_fit(
        fine, lifelines_fit(rows[columns], "os_days", "death", None), names
    )
