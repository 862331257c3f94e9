"""Oracle tests: RMST and survival at a fixed time == R survival (constants in
reference/rmst_reference.json, made by reference/rmst_reference.R on the same rows)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_embedded, write_network, write_study

from pht.algorithms.km import EventTable, GroupedEventTables, pool_km, rmst, survival_at

HERE = Path(__file__).parent / "reference"
R = json.loads((HERE / "rmst_reference.json").read_text())
CASES = {
    "lung_sex": ("lung.csv", "time", "status", "sex", "inst"),
    "rossi_fin": ("rossi.csv", "week", "arrest", "fin", None),
}
TOL = 1e-9


def pooled_curves(case: str):  # type: ignore[no-untyped-def]
    file, time, event, group, split = CASES[case]
    frame = pd.read_csv(HERE / file)
    if split is None:  # rossi has no site: split it over three stations round-robin
        frame["site"] = np.arange(len(frame)) % 3
        split = "site"
    frame[split] = frame[split].fillna(-1)
    stations = [
        GroupedEventTables(
            {
                str(g): EventTable.from_rows(r[time], r[event])
                for g, r in part.groupby(group)
            }
        )
        for _, part in frame.groupby(split)
    ]
    return pool_km(stations).curves


@pytest.mark.parametrize("case", sorted(CASES))
def test_rmst_equals_r_survfit_rmean(case: str) -> None:
    curves = pooled_curves(case)
    keys = [k for k in R[case] if k.startswith("rmst_")]
    assert keys
    for key in keys:
        tau = float(key.split("_")[1])
        for group, ref in R[case][key].items():
            ours = rmst(curves[group], tau)
            assert abs(ours.estimate - ref["rmean"]) <= TOL
            assert abs(ours.se - ref["se"]) <= TOL


@pytest.mark.parametrize("case", sorted(CASES))
def test_survival_at_equals_r_summary_survfit(case: str) -> None:
    curves = pooled_curves(case)
    keys = [k for k in R[case] if k.startswith("surv_")]
    for key in keys:
        at = float(key.split("_")[1])
        for group, ref in R[case][key].items():
            ours = survival_at(curves[group], at)
            assert abs(ours.estimate - ref["surv"]) <= TOL
            assert abs(ours.se - ref["std_err"]) <= TOL
            assert abs(ours.ci_lower - ref["lower"]) <= TOL
            assert abs(ours.ci_upper - ref["upper"]) <= TOL


def rossi_stations() -> dict[str, pd.DataFrame]:
    """Rossi's rows dealt round-robin over three stations s0, s1, s2."""
    frame = pd.read_csv(HERE / "rossi.csv")
    return {f"s{k}": part for k, part in frame.groupby(np.arange(len(frame)) % 3)}


def test_rmst_and_survival_at_end_to_end_with_differences(tmp_path: Path) -> None:
    frames = rossi_stations()
    network = write_network(tmp_path, frames, dataset="rossi")
    study = write_study(
        tmp_path,
        dataset="rossi",
        parameters={
            "time": "week",
            "event": "arrest",
            "group": "fin",
            "tau": 52,
            "at": 26,
            "reference_group": "0",
        },
    )
    result = run_embedded(study, network)
    ref = R["rossi_fin"]["rmst_52"]
    groups = result["rmst"]["groups"]
    assert abs(groups["1"]["estimate"] - ref["1"]["rmean"]) <= TOL
    (diff,) = result["rmst"]["differences"]
    assert diff["group"] == "1" and diff["reference"] == "0"
    expected = ref["1"]["rmean"] - ref["0"]["rmean"]
    se = float(np.hypot(ref["1"]["se"], ref["0"]["se"]))
    assert abs(diff["difference"] - expected) <= TOL
    assert abs(diff["se"] - se) <= TOL
    assert abs(diff["ci_upper"] - (expected + 1.959963984540054 * se)) <= 1e-8
    s26 = R["rossi_fin"]["surv_26"]
    (sdiff,) = result["survival_at"]["differences"]
    assert abs(sdiff["difference"] - (s26["1"]["surv"] - s26["0"]["surv"])) <= TOL


def test_cox_study_with_group_tau_at_adds_rmst_and_survival_at(tmp_path: Path) -> None:
    """One survival.cox study gives hazard ratios and, from a companion survival.km
    request, RMST and survival at a time per group (equal to R's)."""
    frames = rossi_stations()
    network = write_network(tmp_path, frames, dataset="rossi")
    study = write_study(
        tmp_path,
        train="survival.cox",
        dataset="rossi",
        parameters={
            "time": "week",
            "event": "arrest",
            "covariates": ["fin", "age", "prio"],
            "group": "fin",
            "tau": 52,
            "at": 26,
            "reference_group": "0",
        },
    )
    result = run_embedded(study, network)
    assert result["cox"]["converged"] and set(result["cox"]["params"]) == {
        "fin",
        "age",
        "prio",
    }
    ref = R["rossi_fin"]["rmst_52"]
    assert abs(result["rmst"]["groups"]["1"]["estimate"] - ref["1"]["rmean"]) <= TOL
    s26 = R["rossi_fin"]["surv_26"]
    (sdiff,) = result["survival_at"]["differences"]
    assert abs(sdiff["difference"] - (s26["1"]["surv"] - s26["0"]["surv"])) <= TOL
    companion = result["provenance"]["companion"]
    assert companion["train"].startswith("survival.km@") and companion["error"] is None
    assert companion["request_id"] != result["provenance"]["request_id"]
    assert {r["station"] for r in result["provenance"]["receipts"]} == {
        "s0",
        "s1",
        "s2",
    }
    assert len(result["provenance"]["receipts"]) > 3  # both trains' receipts


def test_companion_refused_by_policy_leaves_the_cox_result(tmp_path: Path) -> None:
    frames = rossi_stations()
    network = write_network(
        tmp_path, frames, dataset="rossi", classes=("aggregate", "model")
    )
    study = write_study(
        tmp_path,
        train="survival.cox",
        dataset="rossi",
        parameters={
            "time": "week",
            "event": "arrest",
            "covariates": ["fin", "age"],
            "group": "fin",
            "tau": 52,
        },
    )
    result = run_embedded(study, network)
    assert result["cox"]["converged"] and "rmst" not in result
    companion = result["provenance"]["companion"]
    assert "no station took part" in companion["error"]
    assert "event_table" in companion["error"]
    assert all(not row["participated"] for row in companion["stations"])
