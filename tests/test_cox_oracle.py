"""Oracle tests: federated survival.cox == lifelines CoxPHFitter on the concatenated rows
(strata=station for the stratified mode), statsmodels PHReg for Breslow ties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import run_embedded, write_network, write_study
from lifelines import CoxPHFitter

from pht import synth

PRECISE = {"precision": 1e-13, "r_precision": 1e-15}
TOL = 1e-8
HERE = Path(__file__).parent / "reference"


def fit_federated(
    tmp_path: Path, frames: dict[str, pd.DataFrame], **params: Any
) -> dict:
    network = write_network(
        tmp_path, frames, dataset="d", min_cell_size=params.pop("k", 10)
    )
    study = write_study(tmp_path, train="survival.cox", dataset="d", parameters=params)
    return run_embedded(study, network)


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


@pytest.mark.parametrize("mode", ["stratified", "pooled"])
def test_cox_equals_lifelines_on_rossi(tmp_path, rossi, mode) -> None:
    frames = {s: part.drop(columns="station") for s, part in rossi.groupby("station")}
    result = fit_federated(
        tmp_path, frames, time="week", event="arrest", covariates=ROSSI, mode=mode
    )
    oracle = lifelines_fit(
        rossi if mode == "stratified" else rossi.drop(columns="station"),
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


@pytest.mark.parametrize("mode", ["stratified", "pooled"])
def test_cox_breslow_equals_statsmodels_phreg_on_rossi(tmp_path, rossi, mode) -> None:
    frames = {s: part.drop(columns="station") for s, part in rossi.groupby("station")}
    result = fit_federated(
        tmp_path,
        frames,
        time="week",
        event="arrest",
        covariates=ROSSI,
        mode=mode,
        ties="breslow",
    )
    oracle = sm.PHReg(
        rossi["week"],
        rossi[ROSSI],
        status=rossi["arrest"],
        ties="breslow",
        strata=rossi["station"] if mode == "stratified" else None,
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
    )
    took = [s["id"] for s in result["stations"] if s["participated"]]
    assert 2 <= len(took) < len(frames)  # small institutions refuse
    rows = pd.concat([frames[s].assign(station=s) for s in took])
    rows = rows[["time", "status", "age", "sex", "station"]].dropna()
    rows["sex[T.2]"] = (rows.pop("sex") == 2).astype(float)
    oracle = lifelines_fit(rows, "time", "status", "station")
    assert_equal_fit(result, oracle, {"age": "age", "sex[T.2]": "sex[T.2]"})
    dof = [s for s in result["stations"] if "per parameter" in (s["reason"] or "")]
    assert dof  # some institutions drop out at the design round (10 per parameter)
    assert result["cox"]["reference_levels"] == {"sex": "1"}


@pytest.mark.parametrize("mode", ["stratified", "pooled"])
def test_cox_equals_lifelines_on_synthetic_registries(tmp_path, mode) -> None:
    frames = synth.generate(5, 3000)
    covariates = ["age", "ecog", "ldh_elevated", "regimen", "stage"]
    result = fit_federated(
        tmp_path,
        frames,
        time="os_days",
        event="death",
        covariates=covariates,
        mode=mode,
        reference={"regimen": "standard"},
    )
    took = [s["id"] for s in result["stations"] if s["participated"]]
    assert took
    rows = pd.concat([frames[s].assign(station=s) for s in took])
    rows = rows.dropna(subset=["os_days", "death", *covariates])
    assert result["cox"]["n"] == len(rows)
    design = pd.DataFrame(
        {
            "os_days": rows["os_days"],
            "death": rows["death"],
            "age": rows["age"],
            "ecog": rows["ecog"],
            "ldh_elevated": rows["ldh_elevated"],
        }
    )
    names = {c: c for c in ["age", "ecog", "ldh_elevated"]}
    for level in ["extended_interval", "weight_based"]:
        design[f"regimen[T.{level}]"] = (rows["regimen"] == level).astype(float)
        names[f"regimen[T.{level}]"] = f"regimen[T.{level}]"
    for level in sorted(set(rows["stage"]))[1:]:
        design[f"stage[T.{level}]"] = (rows["stage"] == level).astype(float)
        names[f"stage[T.{level}]"] = f"stage[T.{level}]"
    if mode == "stratified":
        design["station"] = rows["station"].to_numpy()
    oracle = lifelines_fit(
        design, "os_days", "death", "station" if mode == "stratified" else None
    )
    assert_equal_fit(result, oracle, names)
    assert result["cox"]["reference_levels"] == {"regimen": "standard", "stage": "IIIB"}


def test_pooled_cox_on_a_time_grid_equals_lifelines_on_rounded_times(
    tmp_path, rossi
) -> None:
    frames = {s: part.drop(columns="station") for s, part in rossi.groupby("station")}
    result = fit_federated(
        tmp_path,
        frames,
        time="week",
        event="arrest",
        covariates=ROSSI,
        mode="pooled",
        time_grid=4,
    )
    rows = rossi.drop(columns="station").assign(week=np.ceil(rossi["week"] / 4) * 4)
    assert_equal_fit(
        result, lifelines_fit(rows, "week", "arrest", None), {c: c for c in ROSSI}
    )
