"""nma.inputs: per-station arm tables (pandas oracle), the station's Cox contrasts
(lifelines oracle), every refusal rule, and an end-to-end run through the embedded
engine giving the ``nma_inputs`` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import run_embedded, write_network, write_study
from lifelines import CoxPHFitter

from pht import synth
from pht.algorithms.nma_local import SMALL_ARM, flatten
from pht.errors import DataError, DisclosureError
from pht.trains.nma_inputs import check, pool, station_output

K = 10
REL = 1e-10


def columns_of(data: pd.DataFrame) -> Any:
    return {c: data[c].to_numpy() for c in data}.__getitem__


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return synth.generate(seed=2026, patients=6000)


def released(frame: pd.DataFrame, **parameters: Any) -> dict[str, Any]:
    wire = station_output(parameters, columns_of(frame), K, {})
    return flatten(wire, parameters.get("treatment_by"))


# -- arm tables equal a pandas groupby on each station's rows -----------------------------
@pytest.mark.parametrize("station", synth.STATIONS)
def test_events_rates_and_means_equal_a_pandas_groupby_per_station(
    frames, station
) -> None:  # type: ignore[no-untyped-def]
    rows = frames[station].dropna(subset=["drug", "tox_grade3", "os_days", "death"])
    by = rows.groupby("drug")
    events = released(rows, input="events", treatment="drug", outcome="tox_grade3")
    want = by["tox_grade3"].agg(["size", "sum"])
    assert list(events["arms"]) == sorted(want.index)
    for arm, got in events["arms"].items():
        assert got == {"n": want.loc[arm, "size"], "events": want.loc[arm, "sum"]}
    assert events["n"] == len(rows)
    rates = released(
        rows, input="rates", treatment="drug", time="os_days", event="death"
    )
    want = by.agg(n=("death", "size"), events=("death", "sum"), pt=("os_days", "sum"))
    for arm, got in rates["arms"].items():
        assert (
            got["n"] == want.loc[arm, "n"] and got["events"] == want.loc[arm, "events"]
        )
        assert got["person_time"] == pytest.approx(want.loc[arm, "pt"], rel=REL)
    means = released(rows, input="means", treatment="drug", measure="cost_eur")
    want = by["cost_eur"].agg(["size", "mean", "std"])
    for arm, got in means["arms"].items():
        assert got["n"] == want.loc[arm, "size"]
        assert got["mean"] == pytest.approx(want.loc[arm, "mean"], rel=REL)
        assert got["sd"] == pytest.approx(want.loc[arm, "std"], rel=REL)


def two_way(sizes: dict[tuple[str, str], int], seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cells = list(sizes)
    n = sum(sizes.values())
    return pd.DataFrame(
        {
            "drug": np.repeat([d for d, _ in cells], list(sizes.values())),
            "regimen": np.repeat([r for _, r in cells], list(sizes.values())),
            "cost": rng.lognormal(8, 0.3, n).round(2),
        }
    )


def test_pairs_of_columns_label_arms_and_a_small_arm_refuses_the_table() -> None:
    sizes = {
        ("niv", "std"): 228,
        ("niv", "ext"): 42,
        ("niv", "wb"): 10,
        ("pem", "std"): 377,
        ("pem", "ext"): 93,
        ("pem", "wb"): 20,
        ("ipi", "std"): 231,
    }
    rows = two_way(sizes)
    params = {
        "input": "means",
        "treatment": "drug",
        "treatment_by": "regimen",
        "measure": "cost",
    }
    out = released(rows, **params)
    # the oracle: pandas groupby on the station's rows, for every arm
    want = rows.groupby(["drug", "regimen"])["cost"].agg(["size", "mean", "std"])
    assert sorted(out["arms"]) == sorted(f"{d} / {r}" for d, r in sizes)
    for label, got in out["arms"].items():
        drug, regimen = label.split(" / ")
        assert got["n"] == want.loc[(drug, regimen), "size"] >= K
        assert got["mean"] == pytest.approx(want.loc[(drug, regimen), "mean"], rel=REL)
        assert got["sd"] == pytest.approx(want.loc[(drug, regimen), "std"], rel=REL)
    assert out["n"] == sum(sizes.values())
    # 'treatments' selects among them, in label order
    chosen = released(rows, **params, treatments=["pem / wb", "niv / std"])
    assert list(chosen["arms"]) == ["niv / std", "pem / wb"]
    assert chosen["n"] == 228 + 20
    # niv / wb with 9 patients: every request on this table is refused (no arm is
    # ever left out for being small), whichever arms it selects
    small = two_way({**sizes, ("niv", "wb"): 9})
    for extra in ({}, {"treatments": ["pem / std", "ipi / std"]}):
        with pytest.raises(DisclosureError) as info:
            released(small, **params, **extra)
        assert str(info.value) == SMALL_ARM


# -- the station's Cox contrasts equal lifelines on its rows -------------------------------
def test_cox_contrasts_equal_lifelines_coxphfitter_on_the_stations_rows(frames) -> None:  # type: ignore[no-untyped-def]
    rows = frames["nkr"][["drug", "os_days", "death", "age", "ecog"]].dropna()
    params = {
        "input": "cox",
        "treatment": "drug",
        "time": "os_days",
        "event": "death",
        "covariates": ["age"],
        "strata": "ecog",
    }
    out = released(rows, **params)
    cox = out["cox"]
    arms = sorted(rows["drug"].unique())
    assert cox["reference"] == arms[0] and cox["terms"] == arms[1:]
    # the oracle: lifelines CoxPHFitter (Efron ties), dummies against the first arm
    data = pd.DataFrame({"T": rows["os_days"], "E": rows["death"], "age": rows["age"]})
    for arm in arms[1:]:
        data[arm] = (rows["drug"] == arm).astype(float)
    data["ecog"] = rows["ecog"]
    fit = CoxPHFitter().fit(data, "T", "E", strata=["ecog"])
    np.testing.assert_allclose(cox["coef"], fit.params_[arms[1:]], rtol=1e-6)
    np.testing.assert_allclose(
        cox["cov"], fit.variance_matrix_.loc[arms[1:], arms[1:]], rtol=1e-5
    )
    for arm in arms:  # n only: the Cox input releases the model, not the events
        assert out["arms"][arm] == {"n": int((rows["drug"] == arm).sum())}


# -- refusals ---------------------------------------------------------------------------
def arms_frame(sizes: dict[str, int], seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = sum(sizes.values())
    return pd.DataFrame(
        {
            "drug": np.repeat(list(sizes), list(sizes.values())),
            "dead": np.tile([0, 1], n // 2 + 1)[:n],
            "days": rng.exponential(300, n).round(1) + 1,
            "cost": rng.lognormal(8, 0.3, n).round(2),
        }
    )


EVENTS = {"input": "events", "treatment": "drug", "outcome": "dead"}


def test_a_small_arm_refuses_and_two_selected_arms_are_needed() -> None:
    data = arms_frame({"a": 40, "b": 30, "c": 4})
    # one small arm anywhere in the table: refused, with no count said
    for extra in ({}, {"treatments": ["a", "b"]}):
        with pytest.raises(DisclosureError) as info:
            station_output({**EVENTS, **extra}, columns_of(data), K, {})
        assert str(info.value) == SMALL_ARM and "4" not in str(info.value)
    data = arms_frame({"a": 40, "b": 30})
    with pytest.raises(DisclosureError, match="fewer than two of the requested arms"):
        station_output({**EVENTS, "treatments": ["a", "z"]}, columns_of(data), K, {})
    out = station_output({**EVENTS, "treatments": ["a", "b"]}, columns_of(data), K, {})
    assert set(out["arms"]) == {"a", "b"}
    data = arms_frame({"a": 40, "b": 30, "c": 30})
    out = station_output({**EVENTS, "treatments": ["c", "a"]}, columns_of(data), K, {})
    assert list(out["arms"]) == ["a", "c"] and out["n"] == 70


def test_events_person_time_means_and_rounding_rules_refuse() -> None:
    data = arms_frame({"a": 40, "b": 30})
    data.loc[data["drug"] == "b", "dead"] = 0
    data.loc[data.index[-3:], "dead"] = 1  # 3 events in b
    with pytest.raises(DisclosureError, match="threshold rule on events"):
        station_output(EVENTS, columns_of(data), K, {})
    rates = {"input": "rates", "treatment": "drug", "time": "days", "event": "dead"}
    data = arms_frame({"a": 40, "b": 40})
    data.loc[0, "days"] = 1e7
    with pytest.raises(DisclosureError, match="person-time.*dominance"):
        station_output(rates, columns_of(data), K, {})
    data.loc[0, "days"] = -1
    with pytest.raises(DataError, match="durations >= 0"):
        station_output(rates, columns_of(data), K, {})
    data = arms_frame({"a": 40, "b": 40})
    data.loc[1:35, "cost"] = 100.0  # a tied mass beside 5 other values in arm a
    means = {"input": "means", "treatment": "drug", "measure": "cost"}
    with pytest.raises(DisclosureError, match="most common value"):
        station_output(means, columns_of(data), K, {})
    data = arms_frame({"a": 40, "b": 40})
    for params in (EVENTS, means, rates):
        with pytest.raises(DisclosureError, match="rounding_base 5"):
            station_output(params, columns_of(data), K, {"rounding_base": 5})
    data["dead"] = 2
    with pytest.raises(DataError, match="only 0 and 1"):
        station_output(EVENTS, columns_of(data), K, {})


def test_cox_refuses_arms_with_few_events_and_a_diverging_fit() -> None:
    data = arms_frame({"a": 60, "b": 60, "c": 60})
    data.loc[data["drug"] == "c", "dead"] = 0
    data.loc[data.index[-5:], "dead"] = 1  # c: 5 events < k: refused, not left out
    cox = {"input": "cox", "treatment": "drug", "time": "days", "event": "dead"}
    with pytest.raises(DisclosureError, match="k events per arm"):
        station_output(cox, columns_of(data), K, {})
    out = station_output({**cox, "treatments": ["a", "b"]}, columns_of(data), K, {})
    assert set(out["arms"]) == {"a", "b"} and len(out["cox"]["coef"]) == 1
    assert out["arms"]["a"] == {"all": {"n": 60}}
    data = arms_frame({"a": 60, "b": 60})
    data.loc[data["drug"] == "b", "days"] += 1e4  # every b patient outlives every a
    data["dead"] = 1
    with pytest.raises(DisclosureError, match="beyond 15|did not converge"):
        station_output(cox, columns_of(data), K, {})


def test_bad_parameter_combinations_name_the_key() -> None:
    problems = check({"input": "cox", "treatment": "drug", "outcome": "dead"})
    assert any(p.startswith("time:") for p in problems)
    assert any(p.startswith("outcome:") for p in problems)
    # a numeric measure for events, a 0/1 outcome for means: each names its input
    problems = check({"input": "events", "treatment": "drug", "measure": "cost"})
    assert any(p.startswith("outcome: required") for p in problems)
    assert any(p.startswith("measure: only for input 'means'") for p in problems)
    problems = check({"input": "means", "treatment": "drug", "outcome": "dead"})
    assert any(p.startswith("measure: required") for p in problems)
    assert any(p.startswith("outcome: only for input 'events'") for p in problems)
    problems = check(
        {
            "input": "events",
            "treatment": "drug",
            "treatment_by": "drug",
            "outcome": "x",
            "covariates": ["age"],
            "treatments": ["a"],
        }
    )
    keys = {p.split(":")[0] for p in problems}
    assert {"treatment_by", "covariates", "treatments"} <= keys


# -- end to end through the embedded engine ------------------------------------------------
def test_an_nma_inputs_study_gives_the_section_with_each_stations_own_arms(
    frames, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cols = ["drug", "tox_grade3"]
    network = write_network(tmp_path, frames, columns=cols)
    study = write_study(
        tmp_path,
        question="How do the anti-PD-1 treatments compare on toxicity?",
        train="nma.inputs",
        parameters={"input": "events", "treatment": "drug", "outcome": "tox_grade3"},
    )
    outputs: dict[str, Any] = {}
    result = run_embedded(study, network, outputs)
    (by_station,) = outputs.values()
    section = result["nma_inputs"]
    assert section["input"] == "events" and section["treatment"] == "drug"
    assert len(section["studies"]) == 3
    assert {s["label"] for s in section["studies"]} == {
        "station 1",
        "station 2",
        "station 3",
    }
    assert all(s["station"] is None for s in section["studies"])
    for station, (out,) in by_station.items():
        out = {k: v for k, v in out.items() if k != "salt"}
        rows = frames[station].dropna(subset=cols)
        want = rows.groupby("drug")["tox_grade3"].agg(["size", "sum"])
        assert out["show_station_name"] is False
        assert out["arms"] == {
            d: {"n": int(want.loc[d, "size"]), "events": int(want.loc[d, "sum"])}
            for d in want.index
        }
        # the released output is the station's own recomputation, flattened
        assert out == {
            **flatten(
                station_output(
                    {"input": "events", "treatment": "drug", "outcome": "tox_grade3"},
                    columns_of(rows),
                    K,
                    {},
                ),
                None,
            ),
            "show_station_name": False,
        }
    pooled = pd.concat([f.dropna(subset=cols) for f in frames.values()])
    for drug, total in section["treatments"].items():
        assert total == {"n": int((pooled["drug"] == drug).sum()), "studies": 3}


def test_an_outcome_that_is_not_0_1_is_the_analysts_column_problem(
    frames, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # cost_eur may serve as an outcome (policy) and its type passes the 'binary'
    # kind, but it is not 0/1: the station's own computation says so, and the
    # refusal is 'column' (the analyst acts), not 'train-failed' (the operator)
    cols = ["drug", "cost_eur"]
    network = write_network(tmp_path, frames, columns=cols)
    study = write_study(
        tmp_path,
        question="How do the anti-PD-1 treatments compare?",
        train="nma.inputs",
        parameters={"input": "events", "treatment": "drug", "outcome": "cost_eur"},
    )
    with pytest.raises(DataError) as caught:  # exit 3: a data question
        run_embedded(study, network)
    message = str(caught.value)
    assert "column: a column is missing, of the wrong kind" in message
    assert "train-failed" not in message


def test_pool_labels_shown_stations_by_id() -> None:
    out = {
        "input": "events",
        "n": 40,
        "arms": {"a": {"n": 20, "events": 10}, "b": {"n": 20, "events": 0}},
    }
    section = pool(
        {
            "s1": {**out, "show_station_name": True},
            "s2": {**out, "show_station_name": False},
        },
        {"input": "events", "treatment": "drug"},
    )["nma_inputs"]
    assert [s["label"] for s in section["studies"]] == ["s1", "station 1"]
    assert section["treatments"]["a"] == {"n": 40, "studies": 2}
    with pytest.raises(DataError, match="station s1 returned malformed"):
        pool(
            {"s1": {"input": "means", "arms": {}}},
            {"input": "events", "treatment": "d"},
        )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["a", "b"], None),
        ("a; b", "expected a list of non-empty names"),
        (["a", ""], "expected a list of non-empty names"),
        (["a", 1], "expected a list of non-empty names"),
        (["a", "a"], "lists a name twice"),
    ],
)
def test_strings_parameter_type(value: object, problem: str | None) -> None:
    from pht.manifest import ParamSpec

    assert ParamSpec("treatments", "strings").check(value) == problem
