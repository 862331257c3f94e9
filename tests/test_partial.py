"""Partial results are results: a station's fault is reported like a refusal, with
its reason and whose side must act; the study's quorum (min_stations) decides whether
a result is written; exit code 10 and a banner say when it is partial."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import identity_of, run_embedded, write_network, write_study

from pht.cli import main
from pht.errors import ExecutorError, PartialResult, QuorumError
from pht.orchestrator.engine import SessionGroup
from pht.station.codes import ANALYST, OPERATOR, POLICY, SIDES, Code, acts, code_of
from pht.trains import Rounds, RoundsStrategy, run_strategy
from pht.wire import Reply

KM = {"time": "os_days", "event": "death", "group": "regimen"}


def frames(n: int = 80, seed: int = 11) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return {
        station: pd.DataFrame(
            {
                "os_days": rng.integers(1, 900, n).astype(float),
                "death": rng.integers(0, 2, n),
                "regimen": rng.choice(["standard", "extended_interval"], n),
                "age": rng.normal(60, 10, n).round(),
            }
        )
        for station in ("s1", "s2", "s3")
    }


def text_in_time(data: dict[str, pd.DataFrame], station: str) -> None:
    """One registry's export holds a text value in the time column (a data fault)."""
    column = data[station]["os_days"].astype(object)
    column.iloc[3] = "unknown"
    data[station]["os_days"] = column.astype(str)


def cli(capsys: pytest.CaptureFixture[str], study: Path, network: Path, out: Path):
    code = main(
        [
            "run",
            str(study),
            "--network",
            str(network),
            "--identity",
            str(identity_of(network)),
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def test_every_code_says_whose_side_acts() -> None:
    assert {code.acts for code in Code} <= set(SIDES)
    assert acts(Code.DATA.reason) == OPERATOR and acts(Code.TIMEOUT.reason) == OPERATOR
    assert acts(Code.PARAMETERS.reason) == ANALYST
    assert acts(Code.GRID.reason) == POLICY and acts(Code.BUDGET.reason) == POLICY
    # a reason no code starts with (an older station, a new code): its operator
    assert acts("the station exploded") == OPERATOR and acts(None) == OPERATOR
    assert code_of(Code.FEW_EVENTS.reason) is Code.FEW_EVENTS


def test_a_data_fault_at_one_station_gives_a_partial_result(tmp_path, capsys) -> None:
    """Before: the text value at s2 stopped the whole study with exit 3."""
    data = frames()
    text_in_time(data, "s2")
    network = write_network(tmp_path, data)
    study = write_study(tmp_path, parameters=KM, min_stations=2)
    code, err = cli(capsys, study, network, tmp_path / "out")
    assert code == PartialResult.exit_code == 10, err
    banner = [line for line in err.splitlines() if line.startswith("partial result:")]
    assert len(banner) == 1 and "2 of 3 stations took part" in banner[0]
    assert "s2 error" in banner[0] and "acts: station operator" in banner[0]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert (tmp_path / "out" / "report.html").is_file()
    assert result["partial"] == {
        "complete": False,
        "requested": 3,
        "took_part": 2,
        "min_stations": 2,
        "missing": [
            {
                "station": "s2",
                "status": "error",
                "reason": Code.COLUMN.reason,
                "acts": OPERATOR,
                "advice": result["partial"]["missing"][0]["advice"],
            }
        ],
    }
    row = next(s for s in result["stations"] if s["id"] == "s2")
    assert row["participated"] is False and row["status"] == "error"
    # a fault on the station's side: its operator acts; the study needs no change
    assert row["acts"] == OPERATOR and "study.yaml" not in row["advice"]
    assert "s2" in row["advice"] and "operator" in row["advice"]
    took = [s for s in result["stations"] if s["participated"]]
    assert [s["acts"] for s in took] == [None, None]
    # the pooled answer is that of the two stations that released
    assert sum(g["n"] for g in result["km"].values()) == 160


def test_a_complete_result_says_so_and_exits_0(tmp_path, capsys) -> None:
    network = write_network(tmp_path, frames())
    study = write_study(tmp_path, parameters=KM)
    code, err = cli(capsys, study, network, tmp_path / "out")
    assert code == 0, err
    assert "partial result" not in err
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["partial"] == {
        "complete": True,
        "requested": 3,
        "took_part": 3,
        "min_stations": 3,
        "missing": [],
    }


def test_below_the_quorum_nothing_is_written(tmp_path, capsys) -> None:
    """By default every requested station must take part."""
    data = frames()
    text_in_time(data, "s2")
    network = write_network(tmp_path, data)
    study = write_study(tmp_path, parameters=KM)
    code, err = cli(capsys, study, network, tmp_path / "out")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == QuorumError.exit_code == 4 and len(lines) == 1, err
    line = lines[0]
    assert "2 of 3 station(s) took part" in line and "needs all 3" in line
    assert f"station s2: {Code.COLUMN.reason} [error, acts: station operator]" in line
    assert "set min_stations: 2 in " in line and "study.yaml" in line
    assert not (tmp_path / "out" / "result.json").exists()


def test_min_stations_above_those_that_took_part(tmp_path, capsys) -> None:
    data = frames()
    text_in_time(data, "s1")
    text_in_time(data, "s3")
    network = write_network(tmp_path, data)
    study = write_study(tmp_path, parameters=KM, min_stations=2)
    code, err = cli(capsys, study, network, tmp_path / "out")
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert code == 4 and "1 of 3 station(s) took part" in line
    assert "min_stations: 2 in " in line and "study.yaml" in line
    for station in ("s1", "s3"):  # each station with its reason and who acts
        assert f"station {station}: {Code.COLUMN.reason} [error, acts: " in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_same_fault_everywhere_is_the_analysts(tmp_path, capsys) -> None:
    """An event column that is not 0/1 at any station is the request's problem."""
    data = frames()
    for frame in data.values():
        frame["death"] = frame["death"] + 1
    network = write_network(tmp_path, data)
    study = write_study(tmp_path, parameters=KM)
    code, err = cli(capsys, study, network, tmp_path / "out")
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    # every station gave the same request-side code: a data error (exit 3) that
    # names the study and the dry run that says which column
    assert code == 3 and "0 of 3 station(s) took part" in line
    assert Code.COLUMN.reason in line and "pht validate" in line


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "must be at least 1, not 0"),
        (4, "4 is more than the 3 station(s) the study asks"),
        ("2", "must be a whole number of stations, not '2'"),
        (2.5, "must be a whole number of stations, not 2.5"),
        (True, "must be a whole number of stations, not True"),
    ],
)
def test_min_stations_is_checked(tmp_path, capsys, value: Any, says: str) -> None:
    network = write_network(tmp_path, frames(n=20))
    study = write_study(tmp_path, parameters=KM, min_stations=value)
    code, err = cli(capsys, study, network, tmp_path / "out")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert "study.yaml:" in lines[0] and "min_stations:" in lines[0]
    assert says in lines[0]


def test_min_stations_counts_the_listed_stations(tmp_path, capsys) -> None:
    network = write_network(tmp_path, frames(n=20))
    study = write_study(tmp_path, parameters=KM, stations=["s1", "s2"], min_stations=3)
    code, err = cli(capsys, study, network, tmp_path / "out")
    assert code == 2 and "3 is more than the 2 station(s)" in err


def test_cox_leaves_a_faulty_station_out_of_the_session(tmp_path) -> None:
    """Round 0 (open) faults are like refusals: the session runs without them."""
    data = frames(n=150)
    text_in_time(data, "s3")
    network = write_network(tmp_path, data)
    params = {"time": "os_days", "event": "death", "covariates": ["regimen", "age"]}
    study = write_study(
        tmp_path, train="survival.cox", parameters=params, min_stations=2
    )
    result = run_embedded(study, network)
    assert result["partial"]["took_part"] == 2
    assert result["partial"]["missing"][0]["station"] == "s3"
    assert result["partial"]["missing"][0]["acts"] == OPERATOR
    assert result["cox"]["n"] == 300  # the two stations' patients only
    study = write_study(tmp_path, train="survival.cox", parameters=params)
    with pytest.raises(QuorumError, match="station s3: column: .*station operator"):
        run_embedded(study, network)


class _TwoRounds(RoundsStrategy):
    def __init__(self, stations: list[str]) -> None:
        super().__init__()
        self.stations = stations

    def rounds(self) -> Rounds:
        yield {s: {"op": "a"} for s in self.stations}
        yield {s: {"op": "b"} for s in self.stations}
        return {"done": True}


def test_a_fault_mid_session_stops_the_study_naming_the_station() -> None:
    opened = {s: Reply("r1", s, "ok") for s in ("s1", "s2")}

    def run_round(messages: Mapping[str, Mapping[str, Any]]) -> dict[str, Reply]:
        if messages["s1"]["op"] == "b":
            return {
                "s1": Reply("r1", "s1", "ok"),
                "s2": Reply("r1", "s2", "error", Code.TIMEOUT.reason),
            }
        return {s: Reply("r1", s, "ok") for s in messages}

    group = SessionGroup(opened, run_round, lambda: None)
    with pytest.raises(ExecutorError) as failed:
        run_strategy(_TwoRounds(["s1", "s2"]), group)
    message = str(failed.value)
    assert "station s2 failed in round 2" in message and Code.TIMEOUT.reason in message
    assert "cannot be finished without" in message and "station operator" in message
    assert "\n" not in message
    group = SessionGroup(opened, lambda m: {s: Reply("r1", s, "ok") for s in m}, list)
    assert run_strategy(_TwoRounds(["s1", "s2"]), group) == {"done": True}
