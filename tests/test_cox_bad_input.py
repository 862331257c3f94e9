"""Cox bad input: each gets a clear message saying what to change, never a silent
wrong answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import run_embedded, write_network, write_study

from pht.errors import ConvergenceError, DataError
from pht.station.codes import Code

HERE = Path(__file__).parent / "reference"
COVS = ["fin", "age", "prio"]


def stations(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {f"s{k}": part for k, part in frame.groupby(np.arange(len(frame)) % 3)}


def run(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    frames: dict[str, pd.DataFrame],
    policy: dict[str, Any] | None = None,
    **params,
):
    network = write_network(tmp_path, frames, dataset="d", **(policy or {}))
    base = {"time": "week", "event": "arrest", "covariates": COVS}
    study = write_study(
        tmp_path,
        train="survival.cox",
        dataset="d",
        parameters={**base, **params},
        min_stations=2,
    )
    return run_embedded(study, network)


@pytest.fixture
def rossi() -> pd.DataFrame:
    return pd.read_csv(HERE / "rossi.csv")


def test_constant_covariate_names_it_and_says_drop(tmp_path, rossi) -> None:
    rossi["one"] = 1.0
    with pytest.raises(DataError, match="'one' is constant overall.*drop 'one'"):
        run(tmp_path, stations(rossi), covariates=[*COVS, "one"])


def test_covariate_constant_within_stations_suggests_pooled_mode(
    tmp_path, rossi
) -> None:
    rossi["site_effect"] = (np.arange(len(rossi)) % 3).astype(float)
    with pytest.raises(
        DataError, match="constant at every station.*switch mode to pooled"
    ):
        run(tmp_path, stations(rossi), covariates=[*COVS, "site_effect"])


def test_collinear_covariates_are_named(tmp_path, rossi) -> None:
    rossi["age_months"] = rossi["age"] * 12.0
    with pytest.raises(DataError, match="age_months are collinear.*drop them"):
        run(tmp_path, stations(rossi), covariates=[*COVS, "age_months"])


def test_covariate_missing_at_one_station(tmp_path, rossi) -> None:
    frames = stations(rossi)
    frames["s1"] = frames["s1"].drop(columns="prio")
    # a fixed code: the station says no more than that a column does not fit; the
    # others accepted the same request, so s1's operator acts; the fit goes on
    result = run(tmp_path, frames)
    assert result["partial"]["missing"] == [
        {
            "station": "s1",
            "status": "error",
            "reason": Code.COLUMN.reason,
            "acts": "station operator",
            "advice": result["partial"]["missing"][0]["advice"],
        }
    ]
    assert result["cox"]["n"] == len(frames["s0"]) + len(frames["s2"])


def test_level_at_one_station_only_is_flagged(tmp_path, rossi) -> None:
    frames = stations(rossi)
    for name, part in frames.items():
        part["wave"] = np.where(np.arange(len(part)) % 2 == 0, "early", "late")
        if name == "s0":
            part.loc[part.index[:40], "wave"] = "pilot"
    result = run(tmp_path, frames, covariates=[*COVS, "wave"])
    # s1 and s2 take the design with 'pilot' as an all-zero dummy (a level they do
    # not hold at all, not one they hold fewer than k times)
    assert [s["reason"] for s in result["stations"]] == [None, None, None]
    warnings = result["cox"]["warnings"]
    assert any("'pilot' of 'wave' occurs only at station s0" in w for w in warnings)
    assert any("merge levels" in w for w in warnings)


def test_separation_does_not_converge_and_says_why(tmp_path, rossi) -> None:
    rng = np.random.default_rng(3)
    rossi["never"] = ((rossi["arrest"] == 0) & (rng.random(len(rossi)) < 0.5)).astype(
        float
    )
    with pytest.raises(ConvergenceError, match="never grow without bound.*merge"):
        run(tmp_path, stations(rossi), covariates=[*COVS, "never"], max_iter=25)


def test_station_without_events_refuses_and_others_go_on(tmp_path, rossi) -> None:
    frames = stations(rossi)
    frames["s2"] = frames["s2"].assign(arrest=0)
    result = run(tmp_path, frames, {"show_station_name": True})
    by_id = {s["id"]: s for s in result["stations"]}
    assert not by_id["s2"]["participated"]
    # the station refuses before the train runs, with its own fixed code, and the
    # result says that those patients are not in the fit
    assert by_id["s2"]["reason"] == Code.FEW_EVENTS.reason
    assert set(result["cox"]["per_station"]) == {"s0", "s1"}
    assert any("1 station(s) refused" in w for w in result["cox"]["warnings"])


def test_small_level_is_refused_at_the_station(tmp_path, rossi) -> None:
    frames = stations(rossi)
    for name, part in frames.items():
        part["grp"] = "a"
        part.loc[part.index[: (3 if name == "s1" else 60)], "grp"] = "b"
    result = run(tmp_path, frames, covariates=[*COVS, "grp"])
    s1 = next(s for s in result["stations"] if s["id"] == "s1")
    # the station refuses before the train runs (fewer than k patients differ from
    # the most common value); neither level nor column leaves s1
    assert not s1["participated"] and s1["reason"] == Code.SMALL_CELL.reason
