"""The Python API: the CLI's checks and results, for notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import identity_of, write_network, write_study
from matplotlib.figure import Figure

import pht
from pht import api
from pht.crypto import load_identity
from pht.errors import ConfigError, QuorumError
from pht.station.codes import OPERATOR, POLICY

KM = {
    "time": "os_days",
    "event": "death",
    "group": "regimen",
    "reference_group": "standard",
    "tau": 700,
}
COX = {
    "time": "os_days",
    "event": "death",
    "covariates": ["regimen", "age"],
    "reference": {"regimen": "standard"},
}


def frames(n: int = 150, seed: int = 5) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for station in ("s1", "s2", "s3"):
        regimen = rng.choice(["standard", "extended_interval"], n)
        age = rng.normal(62, 9, n).round()
        hazard = np.exp(0.4 * (regimen == "extended_interval") + 0.02 * (age - 62))
        time = rng.exponential(500 / hazard).round() + 1
        censor = rng.uniform(100, 1500, n).round()
        out[station] = pd.DataFrame(
            {
                "os_days": np.minimum(time, censor),
                "death": (time <= censor).astype(int),
                "regimen": regimen,
                "age": age,
            }
        )
    return out


@pytest.fixture(scope="module")
def network_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_network(tmp_path_factory.mktemp("net"), frames())


def test_the_api_is_exported_lazily() -> None:
    assert pht.run is api.run and pht.Result is api.Result
    assert pht.Study is api.Study and pht.Network is api.Network
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pht.nope  # noqa: B018


def test_km_study_from_files_summary_equals_result_json(tmp_path, network_file) -> None:
    network = pht.Network.load(network_file)
    assert network.stations == ("s1", "s2", "s3")
    study = pht.Study.load(write_study(tmp_path, parameters=KM), network)
    assert study.train.startswith("survival.km@") and study.min_stations is None
    result = pht.run(study, network, identity_of(network_file))
    assert not result.partial and result.missing == []
    assert "3 of 3 station(s)" in repr(result)
    result_path, report_path = result.save(tmp_path / "out")
    assert report_path.is_file()
    saved = json.loads(result_path.read_text())
    summary = result.summary().set_index("group")
    assert sorted(summary.index) == sorted(saved["km"])
    for group, curve in saved["km"].items():
        assert summary.loc[group, "n"] == curve["n"]
        assert summary.loc[group, "events"] == curve["events"]
        assert summary.loc[group, "median"] == pytest.approx(
            curve["median"]["estimate"], nan_ok=True
        )
        rmst = saved["rmst"]["groups"][group]
        assert summary.loc[group, "rmst"] == pytest.approx(rmst["estimate"])
        assert summary.loc[group, "rmst_ci_lower"] == pytest.approx(rmst["ci_lower"])
    assert summary["n"].sum() == 450
    assert isinstance(result.plot_km(), Figure)
    # a result read back is the same result
    loaded = pht.Result.load(tmp_path / "out")
    assert loaded.data == saved and loaded.train == result.train
    assert list(loaded.stations.index) == ["s1", "s2", "s3"]
    assert loaded.stations["participated"].all()


def test_cox_study_built_in_code(tmp_path, network_file) -> None:
    network = pht.Network.load(network_file)
    study = pht.Study.build(
        question="Is extended-interval dosing associated with survival?",
        purpose="package-management/reassessment",
        train="survival.cox",
        dataset="melanoma",
        parameters=COX,
        network=network,
    )
    assert study.source == api.BUILT and study.parameters["mode"] == "stratified"
    result = pht.run(study, network, load_identity(identity_of(network_file)))
    params = result.data["cox"]["params"]
    summary = result.summary().set_index("term")
    assert sorted(summary.index) == sorted(params)
    for term, row in params.items():
        for column in ("coef", "se", "hr", "ci_lower", "ci_upper", "p_value"):
            assert summary.loc[term, column] == pytest.approx(row[column])
    # the simulated effect (log HR 0.4 for extended interval) is found
    assert summary.loc["regimen[T.extended_interval]", "coef"] == pytest.approx(
        0.4, abs=0.2
    )
    assert isinstance(result.plot_forest(), Figure)
    assert result.data["provenance"]["study_file"] == "Study.build"
    with pytest.raises(ConfigError, match=r"result of survival\.cox.*km_figure"):
        result.plot_km()


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"parameters": {**COX, "time": 3}}, "Study.build: parameters.time: expected"),
        ({"parameters": {**COX, "tiem": "os_days"}}, "parameters.tiem"),
        ({"stations": ["s1", "s9"]}, "Study.build: stations[1]: unknown station 's9'"),
        ({"min_stations": 0}, "Study.build: min_stations: must be at least 1"),
        ({"purpose": "reassess"}, "Study.build: purpose: purpose 'reassess' must"),
        ({"train": "survival.coxx"}, "Study.build: train: unknown train"),
    ],
)
def test_a_study_built_in_code_is_checked_like_a_file(
    network_file, change: dict[str, object], names: str
) -> None:
    fields: dict[str, object] = {
        "question": "q",
        "purpose": "package-management/reassessment",
        "train": "survival.cox",
        "dataset": "melanoma",
        "parameters": COX,
        **change,
    }
    with pytest.raises(ConfigError) as bad:
        pht.Study.build(network=pht.Network.load(network_file), **fields)  # type: ignore[arg-type]
    message = str(bad.value)
    assert names in message and "\n" not in message
    assert not message.startswith("Study.build:1")  # no line of generated YAML


def test_a_partial_result_through_the_api(tmp_path) -> None:
    data = frames()
    data["s3"]["os_days"] = data["s3"]["os_days"].astype(str)  # a station's data fault
    network_file = write_network(tmp_path, data)
    network = pht.Network.load(network_file)
    fields = {
        "question": "q",
        "purpose": "package-management/reassessment",
        "train": "survival.km",
        "dataset": "melanoma",
        "parameters": {"time": "os_days", "event": "death", "group": "regimen"},
    }
    with pytest.raises(QuorumError, match="station s3: column:"):
        pht.run(
            pht.Study.build(**fields, network=network),
            network,
            identity_of(network_file),
        )
    study = pht.Study.build(**fields, min_stations=2, network=network)
    result = pht.run(study, network, identity_of(network_file))
    assert result.partial and "partial" in repr(result)
    assert [(m["station"], m["acts"]) for m in result.missing] == [("s3", OPERATOR)]
    assert result.stations.loc["s3", "acts"] == OPERATOR
    assert result.summary()["n"].sum() == 300


def test_result_load_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match="result.json: not found; give the"):
        pht.Result.load(tmp_path)
    (tmp_path / "result.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable result.json"):
        pht.Result.load(tmp_path / "result.json")
    (tmp_path / "result.json").write_text('{"answer": 42}')
    with pytest.raises(ConfigError, match="not a pht result"):
        pht.Result.load(tmp_path)


def test_results_before_schema_3_still_say_who_is_missing() -> None:
    old = {
        "train": "survival.km@1.2.0",
        "stations": [
            {"id": "a", "participated": True, "status": "ok", "reason": None},
            {
                "id": "b",
                "participated": False,
                "status": "refused",
                "reason": "grid: x",
            },
        ],
    }
    result = pht.Result(old)
    assert result.partial
    assert result.missing == [
        {"station": "b", "status": "refused", "reason": "grid: x", "acts": POLICY}
    ]
    assert result.warnings == []


def test_a_quorum_checked_without_the_network_is_checked_at_run_time(
    network_file,
) -> None:
    study = pht.Study.build(
        question="q",
        purpose="package-management/reassessment",
        train="survival.km",
        dataset="melanoma",
        parameters=KM,
        min_stations=4,  # no network given: 4 cannot be checked against it yet
    )
    with pytest.raises(ConfigError, match="min_stations: 4 is more than the 3"):
        pht.run(study, network_file, identity_of(network_file))
