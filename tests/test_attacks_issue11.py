"""Defences added after the outside attack on issue 11's surface (model checks,
describe requests, hidden station labels)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import Released, run_embedded, write_network, write_study

from pht.crypto import canonical_json, digest
from pht.errors import PolicyError
from pht.station.codes import Code
from pht.station.release import SALT


def frames(rare_at_s1: int) -> dict[str, pd.DataFrame]:
    out = {}
    for i, station in enumerate(("s1", "s2")):
        rng = np.random.default_rng(20 + i)
        n = 200
        t = rng.exponential(400, n).round() + 1
        c = rng.uniform(0, 900, n)
        rare = np.zeros(n)
        rare[: rare_at_s1 if station == "s1" else 15] = 1.0
        out[station] = pd.DataFrame(
            {
                "os_days": np.minimum(t, c).round() + 1,
                "death": (t <= c).astype(int),
                "age": rng.normal(60, 10, n).round(1),
                "brain_mets": rare,
            }
        )
    return out


COX = {
    "time": "os_days",
    "event": "death",
    "covariates": ["age", "brain_mets"],
    "mode": "stratified",
}


def cox(root: Path, data: dict[str, pd.DataFrame], released: Released) -> Any:
    network = write_network(root, data)
    study = write_study(root, train="survival.cox", parameters=COX, min_stations=1)
    return run_embedded(study, network, released)


def test_a_rare_value_of_a_numeric_covariate_is_a_small_cell(tmp_path) -> None:
    # one patient with brain_mets = 1 at s1, not declared categorical: the model terms
    # and the concordance counts of the checks round would give that patient's rank
    # in time and whether they died; the station refuses before the train runs
    released: Released = {}
    result = cox(tmp_path, frames(rare_at_s1=1), released)
    by_id = {s["id"]: s for s in result["stations"]}
    assert by_id["s1"]["reason"] == Code.SMALL_CELL.reason
    assert by_id["s2"]["participated"]
    (outputs,) = released.values()
    assert set(outputs) == {"s2"}
    # with k patients holding the value, the station takes part
    released = {}
    result = cox(tmp_path / "k", frames(rare_at_s1=10), released)
    assert all(s["participated"] for s in result["stations"])


def test_released_outputs_are_salted_commitments(tmp_path) -> None:
    # the receipts' output digests (in result.json and the audit log) of two runs of
    # the same study on the same data differ, and the output without its salt does
    # not give the digest: small outputs cannot be brute-forced back from it
    data = frames(rare_at_s1=10)
    digests = []
    for run in ("a", "b"):
        released: Released = {}
        result = cox(tmp_path / run, data, released)
        (outputs,) = released.values()
        first = outputs["s1"][0]
        assert isinstance(first[SALT], str) and len(first[SALT]) == 32
        receipt = next(
            r
            for r in result["provenance"]["receipts"]
            if r["station"] == "s1" and r["round"] == 0
        )
        assert receipt["output_digest"] == digest(canonical_json(first))
        bare = {k: v for k, v in first.items() if k != SALT}
        assert receipt["output_digest"] != digest(canonical_json(bare))
        digests.append(receipt["output_digest"])
    assert digests[0] != digests[1]


@pytest.mark.parametrize("organisation", ["ZIN", "Elsewhere"])
def test_a_train_request_does_not_tell_which_datasets_exist(
    tmp_path, organisation
) -> None:
    # 'hidden' has a policy entry for another purpose (and, in one case, another
    # organisation); 'unlisted' has none: a train request for either is refused
    # word for word alike, as a describe request is
    network = write_network(tmp_path, frames(rare_at_s1=10))
    for station in ("s1", "s2"):
        path = tmp_path / "stations" / station / "policy.yaml"
        policy = yaml.safe_load(path.read_text())
        entry = policy["datasets"]["*"]
        policy["datasets"] = {
            "melanoma": copy.deepcopy(entry),
            "hidden": {
                **copy.deepcopy(entry),
                "requesters": [{"organisation": organisation, "roles": ["analyst"]}],
                "purposes": ["efficiency-research/dose-reduction"],
            },
        }
        path.write_text(yaml.safe_dump(policy))
    doc = yaml.safe_load(network.read_text())
    for entry in doc["stations"]:
        path = entry["datasets"][0]["path"]
        entry["datasets"] += [
            {"id": "hidden", "path": path},
            {"id": "unlisted", "path": path},
        ]
    network.write_text(yaml.safe_dump(doc))
    reasons = []
    for dataset in ("hidden", "unlisted"):
        study = write_study(tmp_path, train="survival.km", dataset=dataset)
        with pytest.raises(PolicyError) as raised:
            run_embedded(study, network)
        reasons.append(str(raised.value).replace(dataset, "D"))
    assert reasons[0] == reasons[1]
    assert Code.DATASET.reason in reasons[0]


def test_common_covariates_whose_combination_isolates_a_patient(tmp_path) -> None:
    # male and female are one-hot except for one patient at 0/0: each column alone
    # is common, but [male, female] would estimate that patient's own effect
    data = frames(rare_at_s1=10)
    for station, frame in data.items():
        male = (np.arange(len(frame)) % 2 == 0).astype(float)
        other = (np.arange(len(frame)) % 3 == 0).astype(float)  # s2: unrelated
        frame["male"] = male
        frame["female"] = 1.0 - male if station == "s1" else other
        if station == "s1":
            frame.loc[0, ["male", "female"]] = 0.0
    released: Released = {}
    network = write_network(tmp_path, data)
    params = {**COX, "covariates": ["male", "female"]}
    study = write_study(
        tmp_path, train="survival.cox", parameters=params, min_stations=1
    )
    result = run_embedded(study, network, released)
    by_id = {s["id"]: s for s in result["stations"]}
    assert by_id["s1"]["reason"] == Code.SMALL_CELL.reason
    (outputs,) = released.values()
    assert set(outputs) == {"s2"}


def test_a_lone_hidden_station_gets_no_counts_by_subtraction(tmp_path) -> None:
    data = frames(rare_at_s1=10)
    network = write_network(tmp_path, data)
    for station, shown in (("s1", True), ("s2", False)):
        path = tmp_path / "stations" / station / "policy.yaml"
        policy = yaml.safe_load(path.read_text())
        policy["datasets"]["*"]["show_station_name"] = shown
        path.write_text(yaml.safe_dump(policy))
    study = write_study(tmp_path, train="survival.cox", parameters=COX)
    cox_result = run_embedded(study, network)
    assert cox_result["cox"]["per_station"] == {}
    assert cox_result["cox"]["station_estimates"] == {}
    assert all(s["n"] is None for s in cox_result["stations"])
    km = write_study(tmp_path, parameters={"time": "os_days", "event": "death"})
    km_result = run_embedded(km, network)
    assert all(s["n"] is None and s["events"] is None for s in km_result["stations"])
