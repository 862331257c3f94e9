"""Regression tests for the independent audit against R (issue 10, item 6).

One test (or more) per finding, on real data (lifelines' rossi, lung and larynx) split
over stations whose columns have different storage types: int64 at one station,
float64 with a missing value at another, as registries export them.

Oracles. Where the analysis runs on exact times (stratified Cox, the pure KM kernels)
the oracle is R: constants in ``reference/r_audit_reference.json``, made by
``reference/r_audit_reference.R`` (R 4.2.2, survival 3.5-3) from the same rows. Where
stations release per-time tables only on their own time grid (KM event tables, pooled
Cox sums), exactness is against the pooled rows with each station's times moved to
the grid it released, fitted by lifelines (as in ``test_km_oracle`` and
``test_cox_oracle``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import (
    on_station_grids,
    released_grid,
    run_embedded,
    write_network,
    write_study,
)
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from pht.algorithms.disclosure import coarsen, coarser, lattice, station_grid
from pht.algorithms.km import local_event_tables, pool_km
from pht.algorithms.levels import (
    agree_level_type,
    canonical_level,
    label_of,
    labels,
    sort_levels,
)
from pht.errors import ConfigError, DataError, NotEstimableWarning
from pht.orchestrator.pooling import pool_survival_km
from pht.orchestrator.report import render_report
from pht.provision import policy_document
from pht.station.guard import MAX_LABEL_LENGTH, is_label

HERE = Path(__file__).parent / "reference"
R = json.loads((HERE / "r_audit_reference.json").read_text(encoding="utf-8"))
CLASSES = ("aggregate", "model", "event_table", "risk_set_sums")
PRECISE = {"precision": 1e-13, "r_precision": 1e-15}
R_TOL = 1e-8  # federated Newton-Raphson against R's coxph (eps 1e-13)
KM_TOL = 1e-12
TOL = 1e-8


# -- helpers ------------------------------------------------------------------------
def network(
    tmp_path: Path,
    frames: Mapping[str, pd.DataFrame],
    roles: Mapping[str, Sequence[str]],
    *,
    k: int = 10,
    **extras: Any,
) -> Path:
    """A network whose policy gives each column only its roles (as real policies do:
    a binary covariate is then not an event column of the station's grid)."""
    document = policy_document(columns=list(roles), classes=CLASSES, min_cell_size=k)
    document["datasets"] = {
        name: {**entry, "columns": {c: list(r) for c, r in roles.items()}}
        for name, entry in document["datasets"].items()
    }
    return write_network(
        tmp_path, frames, dataset="d", min_cell_size=k, policy=document, **extras
    )


def run(
    tmp_path: Path,
    net: Path,
    train: str,
    released: dict[str, Any] | None = None,
    **parameters: Any,
) -> dict[str, Any]:
    study = write_study(
        tmp_path, train=train, dataset="d", parameters=parameters, min_stations=1
    )
    return run_embedded(study, net, released)


def took_part(result: Mapping[str, Any]) -> list[str]:
    return sorted(s["id"] for s in result["stations"] if s["participated"])


def released_rows(
    result: Mapping[str, Any],
    released: Mapping[str, Any],
    frames: Mapping[str, pd.DataFrame],
    time: str,
) -> pd.DataFrame:
    """The stations' populations with times moved to their released grids."""
    outputs = released[result["provenance"]["request_id"]]
    took = set(took_part(result))
    return on_station_grids(
        frames,
        {s: o for s, o in outputs.items() if s in took},
        time,
        list(next(iter(frames.values())).columns),
    )


def km_max_diff(curve: Mapping[str, Any], rows: pd.DataFrame, time: str, event: str):
    """Largest |difference| of S and its CI against lifelines on ``rows``."""
    kmf = KaplanMeierFitter().fit(rows[time], rows[event])  # the oracle
    assert np.array_equal(kmf.survival_function_.index.to_numpy(), curve["time"])
    ci = kmf.confidence_interval_.to_numpy()
    return max(
        np.max(np.abs(kmf.survival_function_.to_numpy()[:, 0] - curve["survival"])),
        np.max(np.abs(ci[:, 0] - curve["ci_lower"])),
        np.max(np.abs(ci[:, 1] - curve["ci_upper"])),
    )


def rossi_stations() -> dict[str, pd.DataFrame]:
    """rossi over three stations (row index mod 3); ``fin`` is int64 at s0 and s2 and
    float64 with a missing value (row 1) at s1."""
    rossi = pd.read_csv(HERE / "rossi.csv")[["week", "arrest", "fin", "age", "prio"]]
    station = np.arange(len(rossi)) % 3
    frames = {f"s{i}": rossi[station == i].copy() for i in range(3)}
    frames["s1"]["fin"] = frames["s1"]["fin"].astype(np.float64)
    frames["s1"].loc[1, "fin"] = np.nan
    assert frames["s0"]["fin"].dtype == np.int64
    return frames


ROSSI_ROLES = {
    "week": ["time"],
    "arrest": ["event"],
    "fin": ["group", "covariate"],
    "age": ["covariate"],
    "prio": ["covariate"],
}


def lung_stations(columns: Sequence[str]) -> dict[str, pd.DataFrame]:
    """lung over two stations: a (inst <= 11) and b (inst > 11)."""
    lung = pd.read_csv(HERE / "lung.csv").dropna(subset=["inst"])
    return {
        "a": lung[lung["inst"] <= 11][list(columns)].copy(),
        "b": lung[lung["inst"] > 11][list(columns)].copy(),
    }


# -- 1. labels are canonical values agreed across stations ---------------------------
def test_labels_are_canonical_values_whatever_the_storage_type() -> None:
    as_int = labels(np.array([0, 1, 1, 10], dtype=np.int64))
    as_float = labels(np.array([0.0, 1.0, 1.0, 10.0]))
    as_objects = labels(np.array([0, 1.0, np.int8(1), 10], dtype=object))
    for got in (as_int, as_float, as_objects):
        assert got[0].tolist() == ["0", "1", "1", "10"] and got[1] == "number"
    assert [label_of(v) for v in (-0.0, 2.5, True, np.bool_(False))] == [
        "0",
        "2.5",
        "True",
        "False",
    ]
    assert labels(np.array([True, False]))[1] == "boolean"
    assert labels(np.array(["IIIB", "IV"], dtype=object))[1] == "text"
    # the same name stored decomposed or composed is one level
    assert label_of("Ho\u0302pital") == label_of("H\u00f4pital") == "H\u00f4pital"
    # numbers in R's factor() order; texts (and booleans) in text order
    assert sort_levels(["100", "60", "80"], "number") == ["60", "80", "100"]
    assert sort_levels(["100", "60", "80"], "text") == ["100", "60", "80"]
    assert canonical_level(1.0, "number") == canonical_level("1.0", "number") == "1"
    assert canonical_level("1.0", "text") == "1.0"
    with pytest.raises(DataError, match="mixes number and text"):
        labels(np.array([1, "a"], dtype=object))
    with pytest.raises(DataError, match="'fin' holds different types .*number at "):
        agree_level_type("fin", {"s0": "number", "s1": "text", "s2": None})
    assert agree_level_type("fin", {"s0": "number", "s1": "number"}) == "number"


def test_stratified_cox_with_fin_int64_and_float64_equals_R_on_rossi(
    tmp_path: Path,
) -> None:
    """Before: fin[T.1.0] beside fin[T.1] ("collinear"). R: one dummy, fin[T.1]."""
    frames = rossi_stations()
    result = run(
        tmp_path,
        network(tmp_path, frames, ROSSI_ROLES),
        "survival.cox",
        time="week",
        event="arrest",
        covariates=["fin", "age", "prio"],
        categorical=["fin"],
        mode="stratified",
    )
    oracle = R["rossi_fin_stratified"]  # coxph(... + strata(station)), fin[2] NA
    cox = result["cox"]
    assert took_part(result) == ["s0", "s1", "s2"]
    assert list(cox["params"]) == ["fin[T.1]", "age", "prio"]
    assert cox["reference_levels"] == {"fin": oracle["reference"]} == {"fin": "0"}
    assert (cox["n"], cox["events"]) == (oracle["n"], oracle["events"]) == (431, 113)
    for name, param in cox["params"].items():
        assert abs(param["coef"] - oracle["coef"][name]) <= R_TOL, name
        assert abs(param["se"] - oracle["se"][name]) <= R_TOL, name
        # every test reports "p_value", the Wald tests of the coefficients too
        assert "p" not in param
        assert abs(param["p_value"] - oracle["p_value"][name]) <= R_TOL, name
    assert abs(cox["loglik"] - oracle["loglik"]) <= R_TOL
    assert abs(cox["null_loglik"] - oracle["null_loglik"]) <= R_TOL


def test_km_and_pooled_cox_with_fin_int64_and_float64_on_rossi(
    tmp_path: Path,
) -> None:
    """Before: KM groups 0, 0.0, 1, 1.0 and pooled dummies fin[T.0.0], fin[T.1],
    fin[T.1.0]. Now two groups and one dummy, equal to lifelines on the released
    rows."""
    frames = rossi_stations()
    net = network(tmp_path, frames, ROSSI_ROLES)
    released: dict[str, Any] = {}
    km = run(
        tmp_path, net, "survival.km", released, time="week", event="arrest", group="fin"
    )
    assert list(km["km"]) == ["0", "1"]
    rows = released_rows(km, released, frames, "week")
    for level, curve in km["km"].items():
        part = rows[rows["fin"] == float(level)]
        assert km_max_diff(curve, part, "week", "arrest") <= KM_TOL
    oracle = multivariate_logrank_test(rows["week"], rows["fin"], rows["arrest"])
    assert abs(km["logrank"]["statistic"] - oracle.test_statistic) <= 1e-9

    cox = run(
        tmp_path,
        net,
        "survival.cox",
        released,
        time="week",
        event="arrest",
        covariates=["fin", "age"],
        categorical=["fin"],
        mode="pooled",
    )
    assert list(cox["cox"]["params"]) == ["fin[T.1]", "age"]
    rows = released_rows(cox, released, frames, "week")
    fit = CoxPHFitter().fit(
        rows[["week", "arrest", "fin", "age"]], "week", "arrest", fit_options=PRECISE
    )
    for ours, theirs in (("fin[T.1]", "fin"), ("age", "age")):
        assert abs(cox["cox"]["params"][ours]["coef"] - fit.params_[theirs]) <= TOL
        assert (
            abs(cox["cox"]["params"][ours]["se"] - fit.standard_errors_[theirs]) <= TOL
        )
    assert not any("fin" in w for w in cox["cox"]["warnings"])


def test_numbers_at_one_station_and_text_at_another_is_a_clear_error(
    tmp_path: Path,
) -> None:
    """Before: silently four groups (0, 1, no, yes)."""
    frames = rossi_stations()
    frames["s1"] = frames["s1"].dropna(subset=["fin"])
    frames["s1"]["fin"] = np.where(frames["s1"]["fin"] == 1, "yes", "no")
    net = network(tmp_path / "km", frames, ROSSI_ROLES)
    with pytest.raises(DataError) as error:
        run(tmp_path, net, "survival.km", time="week", event="arrest", group="fin")
    message = str(error.value)
    assert "group column 'fin'" in message
    assert "number at s0, s2; text at s1" in message
    assert "store it with one type" in message and "\n" not in message
    net = network(tmp_path / "cox", frames, ROSSI_ROLES)
    with pytest.raises(DataError, match="covariate 'fin' holds different types"):
        run(
            tmp_path,
            net,
            "survival.cox",
            time="week",
            event="arrest",
            covariates=["fin", "age"],
            categorical=["fin"],
        )


# -- 6. the default reference of a numeric categorical: numeric order, as R ----------
def test_numeric_categorical_levels_in_numeric_order_equal_R_on_lung_karno(
    tmp_path: Path,
) -> None:
    """Karnofsky bands 60, 80, 100 (int64 at a, float64 with a missing value at b).
    Before: text order made "100" the reference. R: factor(karno) starts at 60."""
    frames = lung_stations(["time", "status", "age", "ph.karno"])
    for frame in frames.values():
        karno = frame.pop("ph.karno")
        frame["karno"] = np.select([karno <= 60, karno <= 80], [60, 80], 100)
        frame.loc[karno.isna(), "karno"] = np.nan
    frames["a"]["karno"] = frames["a"]["karno"].astype(np.int64)
    assert (
        frames["b"]["karno"].dtype == np.float64 and frames["b"]["karno"].isna().any()
    )
    roles = {"time": ["time"], "status": ["event"], "age": ["covariate"]}
    result = run(
        tmp_path,
        network(tmp_path, frames, {**roles, "karno": ["covariate"]}),
        "survival.cox",
        time="time",
        event="status",
        covariates=["karno", "age"],
        categorical=["karno"],
    )
    oracle = R["lung_karno_stratified"]
    cox = result["cox"]
    assert oracle["levels"] == ["60", "80", "100"]
    assert cox["reference_levels"] == {"karno": "60"}
    assert list(cox["params"]) == ["karno[T.80]", "karno[T.100]", "age"]
    assert cox["n"] == oracle["n"]
    for name, param in cox["params"].items():
        assert abs(param["coef"] - oracle["coef"][name]) <= R_TOL, name
        assert abs(param["se"] - oracle["se"][name]) <= R_TOL, name
    assert abs(cox["loglik"] - oracle["loglik"]) <= R_TOL


def test_km_reference_group_defaults_to_the_smallest_number() -> None:
    """Before: groups 10 and 2 in text order, so "10" was the reference."""
    rng = np.random.default_rng(7)
    time = rng.integers(1, 100, 200).astype(float)
    event = (rng.random(200) < 0.7).astype(float)
    group = np.where(rng.random(200) < 0.5, 2, 10)
    table = local_event_tables(time, event, group)
    output = {
        "groups": {g: t.to_dict() for g, t in table.tables.items()},
        "level_type": table.level_type,
    }
    sections = pool_survival_km({"s": output}, {"group": "g", "tau": 50})
    assert list(sections["km"]) == ["2", "10"]
    assert sections["rmst"]["differences"][0]["reference"] == "2"
    # the analyst may name a number as number or text: the same level
    named = pool_survival_km(
        {"s": output}, {"group": "g", "tau": 50, "reference_group": 10.0}
    )
    assert named["rmst"]["differences"][0]["reference"] == "10"


# -- kernels against R: canonical groups, and S(at) beyond follow-up -----------------
def test_km_kernels_with_mixed_group_types_equal_R_on_lung() -> None:
    """Stations hold sex as int64 (s0), float64 with a missing value (s1) and float64
    (s2). Before: groups 1, 1.0, 2, 2.0. R: survfit, survdiff on the pooled rows."""
    lung = pd.read_csv(HERE / "lung.csv")
    station = np.arange(len(lung)) % 3
    sex = {i: lung["sex"][station == i] for i in range(3)}
    sex[1] = sex[1].astype(np.float64)
    sex[1].loc[1] = np.nan
    sex[2] = sex[2].astype(np.float64)
    tables = [
        local_event_tables(
            lung["time"][station == i], lung["status"][station == i], sex[i].to_numpy()
        )
        for i in range(3)
    ]
    assert [t.level_type for t in tables] == ["number"] * 3
    oracle = R["lung_sex_km"]
    pooled = pool_km(tables, names=["s0", "s1", "s2"], group="sex")
    assert list(pooled.curves) == ["1", "2"] == list(oracle["curves"])
    for level, curve in pooled.curves.items():
        expected = oracle["curves"][level]
        keep = curve.time > 0  # R's curve starts at the first time, ours at 0
        assert np.array_equal(curve.time[keep], expected["time"])
        assert np.array_equal(curve.at_risk[keep], expected["n_risk"])
        assert np.max(np.abs(curve.survival[keep] - expected["surv"])) <= KM_TOL
        lower, upper = np.asarray(expected["lower"]), np.asarray(expected["upper"])
        finite = np.isfinite(np.asarray(expected["lower"], dtype=float))
        assert np.max(np.abs(curve.ci_lower[keep][finite] - lower[finite])) <= KM_TOL
        assert np.max(np.abs(curve.ci_upper[keep][finite] - upper[finite])) <= KM_TOL
    assert pooled.logrank is not None and pooled.logrank_stratified is not None
    assert abs(pooled.logrank.statistic - oracle["logrank"]["statistic"]) <= 1e-9
    assert (
        abs(
            pooled.logrank_stratified.statistic
            - oracle["logrank_stratified"]["statistic"]
        )
        <= 1e-9
    )

    # 3. 'at' beyond a group's follow-up: that group's S(at) is not estimable (R
    # refuses it too); the other group's equals R, and KM and log-rank stand
    outputs = {
        f"s{i}": {
            "groups": {g: t.to_dict() for g, t in table.tables.items()},
            "level_type": table.level_type,
        }
        for i, table in enumerate(tables)
    }
    with pytest.warns(NotEstimableWarning, match="not estimable for group"):
        sections = pool_survival_km(outputs, {"group": "sex", "at": 1000, "tau": 365})
    at = sections["survival_at"]
    r_at = oracle["survival_at_1000"]
    assert r_at["2"]["estimable"] is False and oracle["curves"]["2"]["last_time"] < 1000
    assert at["beyond_follow_up"] == ["2"]
    assert at["groups"]["2"]["estimable"] is False
    assert at["groups"]["2"]["estimate"] is None and at["groups"]["2"]["at_risk"] == 0
    one = at["groups"]["1"]
    assert one["estimable"] is True and one["at_risk"] == r_at["1"]["n_risk"]
    for ours, theirs in (
        ("estimate", "surv"),
        ("se", "std_err"),
        ("ci_lower", "lower"),
        ("ci_upper", "upper"),
    ):
        assert abs(one[ours] - r_at["1"][theirs]) <= 1e-12, ours
    assert at["differences"] == []  # no estimable pair
    assert {"km", "logrank", "logrank_stratified", "rmst"} <= set(sections)


def test_at_beyond_all_follow_up_keeps_km_logrank_and_rmst(tmp_path: Path) -> None:
    """Before: the whole KM study stopped with a DataError."""
    frames = lung_stations(["time", "status", "sex"])
    roles = {"time": ["time"], "status": ["event"], "sex": ["group"]}
    result = run(
        tmp_path,
        network(tmp_path, frames, roles),
        "survival.km",
        time="time",
        event="status",
        group="sex",
        tau=365,
        at=5000,
    )
    assert {"km", "logrank", "logrank_stratified", "rmst"} <= set(result)
    at = result["survival_at"]
    assert at["beyond_follow_up"] == ["1", "2"] and at["differences"] == []
    assert all(
        g["estimate"] is None and not g["estimable"] for g in at["groups"].values()
    )
    page = render_report(result, tmp_path / "report").read_text(encoding="utf-8")
    assert "Follow-up ends before this time in: 1, 2." in page


# -- 2. any time unit: times in years on a one-day or one-week lattice --------------
def test_lattice_points_carry_no_floating_point_noise() -> None:
    assert 3 * 0.1 != 0.3 and lattice([3], 0.1).tolist() == [0.3]
    assert lattice([1, 2, 3], 7.0).tolist() == [7.0, 14.0, 21.0]
    step = 7 / 365.25
    points = lattice(np.arange(1, 2000), step)
    assert np.all(np.diff(points) > 0)
    assert np.max(np.abs(points - np.arange(1, 2000) * step)) <= 1e-9 * step
    # asking for the station's own step keeps every boundary (before: 0.7 / 0.1 =
    # 6.999999999999999 dropped 0.7); a coarser step keeps the boundaries it reaches
    grid = lattice(np.arange(1, 31), 0.1)
    assert np.array_equal(coarser(grid, 0.1), grid)
    assert coarser(grid, 0.3).tolist() == lattice(np.arange(3, 31, 3), 0.1).tolist()


def test_station_grid_in_years_gives_every_released_interval_k() -> None:
    """Times in years (days / 365.25) on a one-day lattice: the grid's cells must be
    the intervals the times are released in. Before: ceil(t / step) put a time on a
    lattice point into the cell below the one coarsen() released it in, so released
    intervals held k - 1 (the guard refused KM; pooled Cox sums went out)."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        time = rng.integers(1, 1500, 300) / 365.25
        event = (rng.random(300) < 0.6).astype(float)
        for step in (1 / 365.25, 7 / 365.25):
            grid = station_grid(time, [event], k=10, step=step)
            assert grid is not None
            interval = np.searchsorted(grid, coarsen(time, grid))
            events = np.bincount(interval, weights=event, minlength=grid.size)
            censored = np.bincount(interval, weights=1 - event, minlength=grid.size)
            assert events.min() >= 10 and censored.min() >= 10, (seed, step)


def test_km_and_pooled_cox_in_years_on_a_weekly_lattice_equal_lifelines(
    tmp_path: Path,
) -> None:
    """lung in years (days / 365.25), the station lattice one week (7 / 365.25).
    Before: the guard refused station b's KM tables (an interval with k - 1)."""
    lung = pd.read_csv(HERE / "lung.csv").dropna(subset=["inst"])
    lung["time"] = lung["time"] / 365.25
    columns = ["time", "status", "age"]
    frames = {
        "a": lung[lung["inst"] <= 5][columns].copy(),
        "b": lung[lung["inst"] > 5][columns].copy(),
    }
    roles = {"time": ["time"], "status": ["event"], "age": ["covariate"]}
    net = network(tmp_path, frames, roles, k=5, time_grid={"time": 7 / 365.25})
    released: dict[str, Any] = {}
    km = run(tmp_path, net, "survival.km", released, time="time", event="status")
    assert took_part(km) == ["a", "b"]
    rows = released_rows(km, released, frames, "time")
    assert rows["time"].nunique() > 5  # several released times: a real comparison
    assert km_max_diff(km["km"]["all"], rows, "time", "status") <= KM_TOL
    for outputs in released[km["provenance"]["request_id"]].values():
        grid = released_grid(outputs)
        assert np.array_equal(grid, np.round(grid, 11))  # no floating-point noise
    times = km["at_risk_table"]["times"]  # steps of 0.2, without noise
    assert len(times) >= 4 and times == [round(0.2 * i, 10) for i in range(len(times))]

    cox = run(
        tmp_path,
        net,
        "survival.cox",
        released,
        time="time",
        event="status",
        covariates=["age"],
        mode="pooled",
    )
    assert took_part(cox) == ["a", "b"]
    rows = released_rows(cox, released, frames, "time")
    fit = CoxPHFitter().fit(rows[columns], "time", "status", fit_options=PRECISE)
    assert abs(cox["cox"]["params"]["age"]["coef"] - fit.params_["age"]) <= TOL
    assert abs(cox["cox"]["loglik"] - fit.log_likelihood_) <= TOL


# -- 4. a station with too few events: the result says the population changed -------
@pytest.mark.parametrize("mode", ["pooled", "stratified"])
def test_a_station_without_events_is_named_in_the_cox_warnings(
    tmp_path: Path, mode: str
) -> None:
    """Before: the station was refused (grid, or the train) and nothing in the result
    said that its censored patients were missing from the risk sets."""
    lung = pd.read_csv(HERE / "lung.csv").dropna(subset=["inst"])
    columns = ["time", "status", "age"]
    censored = lung[lung["status"] == 0].iloc[::2]  # 32 censored patients
    rest = lung.drop(censored.index)
    frames = {
        "a": rest[rest["inst"] <= 11][columns].copy(),
        "b": rest[rest["inst"] > 11][columns].copy(),
        "no-events-site": censored[columns].copy(),
    }
    roles = {"time": ["time"], "status": ["event"], "age": ["covariate"]}
    net = network(tmp_path, frames, roles)
    released: dict[str, Any] = {}
    result = run(
        tmp_path,
        net,
        "survival.cox",
        released,
        time="time",
        event="status",
        covariates=["age"],
        mode=mode,
    )
    assert took_part(result) == ["a", "b"]
    refused = next(s for s in result["stations"] if s["id"] == "no-events-site")
    assert refused["reason"].startswith("few-events:")
    warnings = result["cox"]["warnings"]
    assert any(
        "1 station(s) refused for fewer events than their minimum cell size" in w
        and "censored ones included" in w
        for w in warnings
    )
    assert not any("no-events-site" in w for w in warnings)  # counted, never named
    if mode == "pooled":
        rows = released_rows(result, released, frames, "time")[columns]
        strata = None
    else:
        rows = pd.concat([frames[s].assign(station=s) for s in ("a", "b")])
        strata = ["station"]
    fit = CoxPHFitter(strata=strata).fit(rows, "time", "status", fit_options=PRECISE)
    assert abs(result["cox"]["params"]["age"]["coef"] - fit.params_["age"]) <= TOL
    page = render_report(result, tmp_path / "report").read_text(encoding="utf-8")
    assert "1 station(s) refused for fewer events" in page


# -- 5. the study declares its time unit; the report uses it -------------------------
def test_report_labels_times_in_the_study_time_unit_on_larynx(tmp_path: Path) -> None:
    """larynx is in years. Before: 'time_unit' was an unknown parameter, and the
    report said "days" everywhere."""
    larynx = pd.read_csv(HERE / "larynx.csv")[["time", "death", "age"]]
    frames = {"a": larynx.iloc[::2].copy(), "b": larynx.iloc[1::2].copy()}
    roles = {"time": ["time"], "death": ["event"], "age": ["covariate"]}
    net = network(tmp_path, frames, roles, k=5)
    result = run(
        tmp_path,
        net,
        "survival.km",
        time="time",
        event="death",
        time_unit="years",
        tau=5,
        at=2,
    )
    assert result["parameters"]["time_unit"] == "years"
    assert result["train"] == "survival.km@1.2.0"
    page = render_report(result, tmp_path / "report").read_text(encoding="utf-8")
    for text in (
        "Median (years)",
        "Number at risk (time in years)",
        "Restricted mean survival time up to 5 years",
        "Survival at 2 years",
    ):
        assert text in page, text
    assert "days" not in page.replace("time_unit", "")
    # survival.cox declares the unit too (its report has the companion KM sections)
    cox = run(
        tmp_path,
        net,
        "survival.cox",
        time="time",
        event="death",
        covariates=["age"],
        time_unit="years",
    )
    assert cox["parameters"]["time_unit"] == "years"
    assert cox["train"] == "survival.cox@1.4.0"
    with pytest.raises(ConfigError, match="time_unit"):
        run(
            tmp_path,
            net,
            "survival.km",
            time="time",
            event="death",
            time_unit="fortnights",
        )


# -- the guard's labels: real hospital names pass, data-smuggling text does not -----
NAMES = (
    "'s-Hertogenbosch",
    "Sint Antonius Ziekenhuis, Nieuwegein",
    "H\u00f4pital Erasme",
    "Z\u00fcrich Universit\u00e4tsspital",
)


def test_is_label_accepts_hospital_names_and_refuses_smuggling() -> None:
    for name in (*NAMES, "IIIB", "pembrolizumab 2 mg/kg", "a" * MAX_LABEL_LENGTH):
        assert is_label(name), name
    for bad in (
        "",
        "a" * (MAX_LABEL_LENGTH + 1),
        "tab\tseparated",
        "new\nline",
        "nul\x00",
        "zero\u200bwidth",
        "bidi\u202eoverride",
        "private\ue000use",
        "non\u00a0breaking",
        " leading",
        "trailing ",
        "Ho\u0302pital",  # decomposed: not NFC
        "line\u2028separator",
        b"bytes",
        1,
    ):
        assert not is_label(bad), repr(bad)


def test_km_by_hospital_name_is_released(tmp_path: Path) -> None:
    """Before: the guard's pattern refused these names, so no station took part."""
    frames = lung_stations(["time", "status"])
    for station, names in zip(("a", "b"), (NAMES[:2], NAMES[2:]), strict=True):
        frame = frames[station]
        frame["hospital"] = np.where(np.arange(len(frame)) % 2 == 0, *names)
    roles = {"time": ["time"], "status": ["event"], "hospital": ["group"]}
    result = run(
        tmp_path,
        network(tmp_path, frames, roles, k=5),
        "survival.km",
        time="time",
        event="status",
        group="hospital",
    )
    assert took_part(result) == ["a", "b"]
    assert list(result["km"]) == sorted(NAMES)
