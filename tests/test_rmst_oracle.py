"""Oracle tests: RMST and survival at a fixed time == R survival (constants in
reference/rmst_reference.json, made by reference/rmst_reference.R on the same rows).

The constants are for exact times, so they check the pure algorithm
(``pht.algorithms.km``). End to end, stations release event tables only on their own
time grids; there the oracle is lifelines (estimates, log-log band) and R's formulas
(``reference/check_rmst_formula.py``, which reproduces every R constant to 1e-13) on
the pooled rows with each station's times on the grid it released. Rossi cannot serve
end to end: all its censorings are at week 52, so the only grid with k censorings per
interval is the single boundary 52.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import on_station_grids, run_embedded, write_network, write_study
from lifelines import KaplanMeierFitter
from lifelines.utils import restricted_mean_survival_time
from reference.check_rmst_formula import km_table
from reference.check_rmst_formula import rmst as r_rmst
from reference.check_rmst_formula import surv_at as r_surv_at

from pht import synth
from pht.algorithms.km import EventTable, GroupedEventTables, pool_km, rmst, survival_at
from pht.station.codes import Code

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


REGISTRY_COLUMNS = ["os_days", "death", "sex", "age", "ldh_elevated"]
Z = 1.959963984540054


def registries() -> dict[str, pd.DataFrame]:
    """Three synthetic registries (nkr, dica, umc) with censorings all along."""
    return {s: frame[REGISTRY_COLUMNS] for s, frame in synth.generate(11, 6000).items()}


def rmst_oracle(
    rows: pd.DataFrame, tau: float, at: float
) -> dict[str, dict[str, float]]:
    """Per sex on rows already on the stations' grids: RMST and its se (R's
    survmean formula), survival at ``at`` with its se and log-log CI; lifelines'
    RMST, S(at) and band must agree with those formulas."""
    out = {}
    for sex, part in rows.groupby("sex"):
        time, event = part["os_days"].to_numpy(float), part["death"].to_numpy(int)
        table = km_table(time, event)
        estimate, se = r_rmst(table, tau)
        surv = r_surv_at(table, at, Z)
        kmf = KaplanMeierFitter().fit(time, event)
        assert abs(restricted_mean_survival_time(kmf, t=tau) - estimate) <= 1e-9
        assert abs(kmf.survival_function_at_times(at).iloc[0] - surv["surv"]) <= 1e-12
        band = kmf.confidence_interval_.loc[:at].iloc[-1].to_numpy()
        assert np.max(np.abs(band - [surv["lower"], surv["upper"]])) <= 1e-12
        out[str(sex)] = {"rmst": estimate, "rmst_se": se, **surv}
    return out


def test_rmst_and_survival_at_end_to_end_with_differences(tmp_path: Path) -> None:
    frames = registries()
    network = write_network(tmp_path, frames, min_cell_size=5)
    study = write_study(
        tmp_path,
        parameters={
            "time": "os_days",
            "event": "death",
            "group": "sex",
            "tau": 730,
            "at": 365,
            "reference_group": "F",
        },
    )
    released: dict[str, Any] = {}
    result = run_embedded(study, network, released)
    outputs = released[result["provenance"]["request_id"]]
    assert sorted(outputs) == sorted(frames)
    rows = on_station_grids(frames, outputs, "os_days", REGISTRY_COLUMNS)
    assert rows["os_days"].nunique() > 50  # many grid points below and above tau
    ref = rmst_oracle(rows, 730.0, 365.0)
    groups = result["rmst"]["groups"]
    for sex in ("F", "M"):
        assert abs(groups[sex]["estimate"] - ref[sex]["rmst"]) <= TOL
        assert abs(groups[sex]["se"] - ref[sex]["rmst_se"]) <= TOL
        fixed = result["survival_at"]["groups"][sex]
        assert abs(fixed["estimate"] - ref[sex]["surv"]) <= TOL
        assert abs(fixed["se"] - ref[sex]["std_err"]) <= TOL
        assert abs(fixed["ci_lower"] - ref[sex]["lower"]) <= TOL
        assert abs(fixed["ci_upper"] - ref[sex]["upper"]) <= TOL
    (diff,) = result["rmst"]["differences"]
    assert diff["group"] == "M" and diff["reference"] == "F"
    expected = ref["M"]["rmst"] - ref["F"]["rmst"]
    se = float(np.hypot(ref["M"]["rmst_se"], ref["F"]["rmst_se"]))
    assert abs(diff["difference"] - expected) <= TOL
    assert abs(diff["se"] - se) <= TOL
    assert abs(diff["ci_upper"] - (expected + Z * se)) <= 1e-8
    (sdiff,) = result["survival_at"]["differences"]
    assert abs(sdiff["difference"] - (ref["M"]["surv"] - ref["F"]["surv"])) <= TOL


def test_cox_study_with_group_tau_at_adds_rmst_and_survival_at(tmp_path: Path) -> None:
    """One survival.cox study gives hazard ratios and, from a companion survival.km
    request, RMST and survival at a time per group (equal to the oracle on the
    companion's released grids)."""
    frames = registries()
    network = write_network(tmp_path, frames, min_cell_size=5)
    study = write_study(
        tmp_path,
        train="survival.cox",
        parameters={
            "time": "os_days",
            "event": "death",
            "covariates": ["sex", "age", "ldh_elevated"],
            "group": "sex",
            "tau": 730,
            "at": 365,
            "reference_group": "F",
        },
    )
    released: dict[str, Any] = {}
    result = run_embedded(study, network, released)
    assert result["cox"]["converged"] and set(result["cox"]["params"]) == {
        "sex[T.M]",
        "age",
        "ldh_elevated",
    }
    companion = result["provenance"]["companion"]
    assert companion["train"].startswith("survival.km@") and companion["error"] is None
    assert companion["request_id"] != result["provenance"]["request_id"]
    outputs = released[companion["request_id"]]
    rows = on_station_grids(frames, outputs, "os_days", REGISTRY_COLUMNS)
    ref = rmst_oracle(rows, 730.0, 365.0)
    assert abs(result["rmst"]["groups"]["M"]["estimate"] - ref["M"]["rmst"]) <= TOL
    (sdiff,) = result["survival_at"]["differences"]
    assert abs(sdiff["difference"] - (ref["M"]["surv"] - ref["F"]["surv"])) <= TOL
    assert {r["station"] for r in result["provenance"]["receipts"]} == set(frames)
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
    assert Code.CLASS.reason in companion["error"]  # event_table is not allowed
    assert all(not row["participated"] for row in companion["stations"])
