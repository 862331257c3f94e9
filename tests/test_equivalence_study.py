"""The ``equivalence`` study end to end: verdicts from several trains, and savings.

One synthetic network (6,000 patients; treatment choice depends on prognosis on
purpose), one study with every measure; the effects equal the same analyses on the
pooled rows (statsmodels, numpy) and the adjusted analyses recover ``TRUTH`` where
the crude ones do not. Then the study file's bad input, each one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
import yaml
from conftest import run_embedded, write_network
from statsmodels.stats.contingency_tables import StratifiedTable

from pht import synth
from pht.algorithms import equivalence as eq
from pht.errors import ConfigError, DataError
from pht.manifest import Catalogue
from pht.orchestrator.config import load_study
from pht.provision import CLINICAL_COLUMNS

COVARIATES = ["age", "ecog", "ldh_elevated", "stage", "drug", "line"]

STUDY: dict[str, Any] = {
    "question": "Is weight-based dosing non-inferior?",
    "purpose": "efficiency-research/dose-reduction",
    "design": "equivalence",
    "dataset": "melanoma",
    "min_stations": 1,
    "comparison": {
        "column": "regimen",
        "treatment": "weight_based",
        "reference": "standard",
    },
    "covariates": COVARIATES,
    "outcomes": [
        {
            "name": "overall survival",
            "primary": True,
            "measure": "hazard_ratio",
            "time": "os_days",
            "event": "death",
            "hypothesis": "non_inferiority",
            "margin": 1.2,
        },
        {
            "name": "toxicity",
            "measure": "odds_ratio",
            "outcome": "tox_grade3",
            "higher_is_better": False,
            "hypothesis": "non_inferiority",
            "margin": 1.25,
            "covariates": ["drug"],  # toxicity's own case mix (TRUTH: drug, regimen)
            "min_stations": 1,  # nkr, dica: toxicities among weight-based under k
        },
        {
            "name": "toxicity by station",
            "measure": "odds_ratio",
            "outcome": "tox_grade3",
            "higher_is_better": False,
            "hypothesis": "non_inferiority",
            "margin": 1.25,
            "adjustment": "stratified",
        },
        {
            "name": "toxicity risk difference",
            "measure": "risk_difference",
            "outcome": "tox_grade3",
            "higher_is_better": False,
            "hypothesis": "equivalence",
            "lower": -0.05,
            "upper": 0.05,
            "adjustment": "none",
        },
        {
            "name": "drug cost",
            "measure": "ratio_of_geometric_means",
            "outcome": "cost_eur",
            "higher_is_better": False,
            "hypothesis": "equivalence",
            "lower": 0.8,
            "upper": 1.25,
        },
        {
            "name": "restricted mean survival",
            "measure": "rmst_difference",
            "time": "os_days",
            "event": "death",
            "tau": 730,
            "hypothesis": "non_inferiority",
            "margin": -30,
        },
    ],
    "savings": {
        "drug": "pembrolizumab",
        "price_per_mg": 28.6,
        "standard": {"dose_mg": 200, "interval_weeks": 3},
        "alternative": {"dose_mg": 150, "interval_weeks": 3},
        "patients_per_year": 600,
        "uptake": 0.8,
    },
}


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return synth.generate(seed=2026, patients=9000)


@pytest.fixture(scope="module")
def world(tmp_path_factory, frames):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("equivalence")
    network = write_network(
        root, frames, dataset="melanoma", columns=list(CLINICAL_COLUMNS)
    )
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY, sort_keys=False), encoding="utf-8")
    return {"root": root, "network": network, "result": run_embedded(study, network)}


def outcome(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in result["equivalence"]["outcomes"] if o["name"] == name)


def pooled(
    frames: dict[str, pd.DataFrame],
    result: dict[str, Any] | None = None,
    analysis: str | None = None,
) -> pd.DataFrame:
    """The pooled rows (of the stations that took part in ``analysis``)."""
    missing: set[str] = set()
    if result is not None and analysis is not None:
        part = result["analyses"][analysis]["partial"]
        missing = {m["station"] for m in part["missing"]}
    return pd.concat(
        [f.assign(station=s) for s, f in sorted(frames.items()) if s not in missing],
        ignore_index=True,
    )


def test_every_outcome_has_a_verdict_and_crude_beside_adjusted(world):
    result = world["result"]
    assert result["train"] == "equivalence"
    assert json.dumps(result, allow_nan=False)
    rows = {o["name"]: o for o in result["equivalence"]["outcomes"]}
    assert set(rows) == {o["name"] for o in STUDY["outcomes"]}
    for name in ("overall survival", "toxicity", "toxicity by station"):
        assert {"adjusted", "crude"} <= set(rows[name])
    for name in ("toxicity risk difference", "drug cost", "restricted mean survival"):
        assert "crude" not in rows[name]  # adjustment none: the crude one is it
    for row in rows.values():
        assert row["adjusted"]["verdict"] in (
            "equivalent",
            "non-inferior",
            "inconclusive",
            "inferior",
            "superior",
        )
    assert result["equivalence"]["answer"].startswith("weight based vs standard:")
    assert len(result["analyses"]) == 9  # 6 outcomes, 3 with a crude analysis
    assert result["provenance"]["budget"]["queries_per_station"] >= 9


def test_verdicts_follow_from_the_effects(world):
    for row in world["result"]["equivalence"]["outcomes"]:
        for role in ("adjusted", "crude"):
            if role not in row:
                continue
            given = row[role]
            hypothesis = (
                eq.Hypothesis.equivalence(
                    row["measure"],
                    row["lower"],
                    row["upper"],
                    higher_is_better=row["higher_is_better"],
                    alpha=row["alpha"],
                )
                if row["hypothesis"] == "equivalence"
                else eq.Hypothesis.non_inferiority(
                    row["measure"],
                    row["upper"] if row["upper"] is not None else row["lower"],
                    higher_is_better=row["higher_is_better"],
                    alpha=row["alpha"],
                )
            )
            log = eq.MEASURES[row["measure"]] == "ratio"
            coef = math.log(given["estimate"]) if log else given["estimate"]
            z = eq.normal_quantile(1 - row["alpha"])
            lo, hi = coef - z * given["se"], coef + z * given["se"]
            if given["df"] is None:
                assert math.isclose(
                    given["decisive_lower"], math.exp(lo) if log else lo, rel_tol=1e-12
                )
                assert math.isclose(
                    given["decisive_upper"], math.exp(hi) if log else hi, rel_tol=1e-12
                )
            effect = eq.from_model(
                row["measure"], coef, given["se"], alpha=row["alpha"]
            )
            if given["df"] is None:
                assert eq.verdict(effect, hypothesis).verdict == given["verdict"]


def test_hazard_ratio_is_the_cox_analysis_coefficient(world):
    result = world["result"]
    row = outcome(result, "overall survival")["adjusted"]
    cox = result["analyses"]["overall survival (adjusted)"]["cox"]
    term = cox["params"]["regimen[T.weight_based]"]
    assert math.isclose(row["estimate"], math.exp(term["coef"]), rel_tol=1e-12)
    assert math.isclose(row["se"], term["se"], rel_tol=1e-12)
    assert cox["mode"] == "stratified"
    assert set(cox["params"]) >= {"age", "ldh_elevated", "line"}
    crude = result["analyses"]["overall survival (crude)"]["cox"]
    assert list(crude["params"]) == [
        "regimen[T.extended_interval]",
        "regimen[T.weight_based]",
    ]


def test_odds_ratios_equal_statsmodels_on_pooled_rows(world, frames):
    rows = pooled(frames)
    analysis = world["result"]["analyses"]["toxicity (adjusted)"]
    missing = {m["station"] for m in analysis["partial"]["missing"]}
    assert missing == {"nkr", "dica"}  # cells under k: refused, nothing released
    rows = rows[~rows["station"].isin(missing)]
    formula = "tox_grade3 ~ C(regimen, Treatment('standard')) + drug"
    model = smf.glm(formula, rows, family=sm.families.Binomial()).fit(
        tol=1e-14, maxiter=200
    )
    term = "C(regimen, Treatment('standard'))[T.weight_based]"
    adjusted = outcome(world["result"], "toxicity")["adjusted"]
    assert math.isclose(
        adjusted["estimate"], math.exp(model.params[term]), rel_tol=1e-8
    )
    assert math.isclose(adjusted["se"], model.bse[term], rel_tol=1e-8)
    crude_model = smf.glm(
        "tox_grade3 ~ C(regimen, Treatment('standard'))",
        rows,
        family=sm.families.Binomial(),
    ).fit(tol=1e-14, maxiter=200)
    crude = outcome(world["result"], "toxicity")["crude"]
    assert math.isclose(
        crude["estimate"], math.exp(crude_model.params[term]), rel_tol=1e-8
    )


def test_mantel_haenszel_equals_statsmodels_stratified_table(world, frames):
    analysis = world["result"]["analyses"]["toxicity by station (adjusted)"]
    missing = {m["station"] for m in analysis["partial"]["missing"]}
    took_part = sorted(set(frames) - missing)
    row = outcome(world["result"], "toxicity by station")["adjusted"]
    assert row["stations"] == len(took_part)
    tables = []
    for station in took_part:
        f = frames[station]
        g = f[f["regimen"] == "weight_based"]["tox_grade3"]
        r = f[f["regimen"] == "standard"]["tox_grade3"]
        tables.append(
            np.array([[g.sum(), len(g) - g.sum()], [r.sum(), len(r) - r.sum()]])
        )
    oracle = StratifiedTable(tables)
    assert math.isclose(row["estimate"], oracle.oddsratio_pooled, rel_tol=1e-10)
    assert math.isclose(row["se"], oracle.logodds_pooled_se, rel_tol=1e-10)
    assert row["method"].startswith("Mantel-Haenszel")


def test_risk_difference_and_geometric_means_equal_pooled_rows(world, frames):
    result = world["result"]
    rows = pooled(frames, result, "toxicity risk difference (adjusted)")
    g = rows[rows["regimen"] == "weight_based"]
    r = rows[rows["regimen"] == "standard"]
    p1, p0 = g["tox_grade3"].mean(), r["tox_grade3"].mean()
    rd = outcome(world["result"], "toxicity risk difference")["adjusted"]
    assert math.isclose(rd["estimate"], p1 - p0, rel_tol=1e-9)
    se = math.sqrt(p1 * (1 - p1) / len(g) + p0 * (1 - p0) / len(r))
    assert math.isclose(rd["se"], se, rel_tol=1e-8)
    rows = pooled(frames, result, "drug cost (adjusted)")
    g = rows[rows["regimen"] == "weight_based"]
    r = rows[rows["regimen"] == "standard"]
    lg, lr = np.log(g["cost_eur"]), np.log(r["cost_eur"])
    rgm = outcome(world["result"], "drug cost")["adjusted"]
    assert math.isclose(rgm["estimate"], math.exp(lg.mean() - lr.mean()), rel_tol=1e-10)
    welch = math.sqrt(lg.var(ddof=1) / len(lg) + lr.var(ddof=1) / len(lr))
    assert math.isclose(rgm["se"], welch, rel_tol=1e-10)


def test_rmst_difference_is_the_km_analysis(world):
    result = world["result"]
    row = outcome(result, "restricted mean survival")["adjusted"]
    km = result["analyses"]["restricted mean survival (adjusted)"]
    diff = next(d for d in km["rmst"]["differences"] if d["group"] == "weight_based")
    assert math.isclose(row["estimate"], diff["difference"], rel_tol=1e-12)


def test_adjusted_analyses_recover_truth_where_crude_ones_do_not(world):
    tox = outcome(world["result"], "toxicity")
    truth = math.exp(synth.TRUTH.tox_log_or_weight_based)  # 0.70
    adjusted, crude = tox["adjusted"], tox["crude"]
    assert adjusted["ci_lower"] < truth < adjusted["ci_upper"]
    assert not crude["ci_lower"] < truth < crude["ci_upper"]
    hr = outcome(world["result"], "overall survival")["adjusted"]
    assert hr["ci_lower"] < math.exp(synth.TRUTH.log_hr_weight_based) < hr["ci_upper"]


def test_savings_band_and_sensitivity(world):
    savings = world["result"]["savings"]
    per_year = 28.6 * 50 * 365.25 / 21
    assert math.isclose(savings["saving_per_patient_year"], per_year, rel_tol=1e-12)
    assert math.isclose(savings["annual_savings"], 600 * 0.8 * per_year, rel_tol=1e-12)
    assert math.isclose(savings["savings_low"], 0.85 * savings["annual_savings"])
    assert {r["parameter"] for r in savings["sensitivity"]} == {
        "price",
        "uptake",
        "patients_per_year",
    }


def test_zero_events_in_an_arm_is_named(tmp_path, frames):
    data = {}
    for station, f in frames.items():
        f = f.copy()
        f.loc[f["regimen"] == "weight_based", "tox_grade3"] = 0
        data[station] = f
    network = write_network(
        tmp_path, data, dataset="melanoma", columns=list(CLINICAL_COLUMNS)
    )
    study = dict(STUDY)
    study["outcomes"] = [
        {**STUDY["outcomes"][1], "primary": True, "adjustment": "none"}
    ]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    with pytest.raises(DataError) as info:
        run_embedded(path, network)
    assert "regimen[T.weight_based]" in str(info.value)
    assert "\n" not in str(info.value)


# -- bad input: one line naming the key and the fix -------------------------------------
def _load(tmp_path: Path, **changes: Any) -> Any:
    study = json.loads(json.dumps(STUDY))
    for key, value in changes.items():
        if key.startswith("outcome."):
            study["outcomes"][0][key.split(".", 1)[1]] = value
        else:
            study[key] = value
    study["outcomes"][0] = {
        k: v for k, v in study["outcomes"][0].items() if v is not None
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    return load_study(path, Catalogue())


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"outcome.margin": 0.8}, "margin"),
        ({"outcome.measure": "risk_ratio"}, "outcome"),
        ({"outcome.hypothesis": "superiority"}, "hypothesis"),
        ({"outcome.adjustment": "propensity"}, "adjustment"),
        ({"outcome.lower": 0.8}, "lower"),
        ({"outcome.tau": 365}, "tau"),
        (
            {
                "comparison": {
                    "column": "regimen",
                    "treatment": "standard",
                    "reference": "standard",
                }
            },
            "treatment",
        ),
        ({"alpha": 0.6}, "alpha"),
        ({"crude": "yes"}, "crude"),
        ({"categorical": ["hospital"]}, "hospital"),
        ({"savings": {"price_per_mg": 28.6}}, "standard"),
        ({"savings": {**STUDY["savings"], "uptake": 1.5}}, "uptake"),
        ({"design": "superiority"}, "design"),
        ({"train": "glm"}, "train"),
    ],
)
def test_bad_study_is_one_line(tmp_path, changes, said):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, **changes)
    message = str(info.value)
    assert "\n" not in message and said in message, message
    assert str(tmp_path / "study.yaml") in message


def test_two_primaries_and_duplicate_names(tmp_path):
    study = json.loads(json.dumps(STUDY))
    study["outcomes"][1]["primary"] = True
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="only one outcome can be primary"):
        load_study(path, Catalogue())
    study["outcomes"][1]["primary"] = False
    study["outcomes"][1]["name"] = "overall survival"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="used twice"):
        load_study(path, Catalogue())


def test_missing_direction_for_a_risk_measure(tmp_path):
    study = json.loads(json.dumps(STUDY))
    del study["outcomes"][1]["higher_is_better"]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="higher_is_better"):
        load_study(path, Catalogue())


def test_savings_from_the_pooled_utilisation(world, frames):
    study = json.loads(json.dumps(STUDY))
    study["stations"] = ["umc"]  # the pharmacy columns (mg, administrations)
    study["outcomes"] = [STUDY["outcomes"][1]]
    study["savings"] = {
        "drug": "pembrolizumab",
        "price_per_mg": 28.6,
        "standard": {"interval_weeks": 3},
        "alternative": {"interval_weeks": 3},
        "patients_per_year": "utilisation",
        "utilisation": {"years": [2022, 2023, 2024]},
    }
    path = world["root"] / "study-utilisation-savings.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    result = run_embedded(path, world["network"])
    savings = result["savings"]
    umc = frames["umc"]
    rows = umc[
        (umc["drug"] == "pembrolizumab")
        & umc["start_date"].dt.year.isin([2022, 2023, 2024])
    ]
    for key, regimen in (("standard", "standard"), ("alternative", "weight_based")):
        part = rows[rows["regimen"] == regimen]
        dose = part["dose_mg_total"].sum() / part["n_administrations"].sum()
        assert math.isclose(savings[key]["dose_mg"], dose, rel_tol=1e-12)
        assert savings[key]["basis"].startswith("utilisation 2022-2024")
    assert math.isclose(savings["patients_per_year"], len(rows) / 3, rel_tol=1e-12)
    assert "savings (utilisation)" in result["analyses"]


def test_a_bad_utilisation_key_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="utilisation must be") as info:
        _load(
            tmp_path,
            savings={**STUDY["savings"], "utilisation": {"years": "2024"}},
        )
    assert "\n" not in str(info.value)
