"""Synthetic registries: deterministic, documented columns, known truth recovered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pht import synth

COMMON = {
    "patient_id": "string",
    "diagnosis_date": "datetime64[ns]",
    "start_date": "datetime64[ns]",
    "stop_date": "datetime64[ns]",
    "age": "int64",
    "sex": "string",
    "weight_kg": "float64",
    "stage": "string",
    "ecog": "int64",
    "ldh_elevated": "int64",
    "brain_mets": "int64",
    "line": "int64",
    "drug": "string",
    "regimen": "string",
    "os_days": "float64",
    "death": "int64",
    "pfs_days": "float64",
    "progression": "int64",
    "tox_grade3": "int64",
    "response": "string",
    "cost_eur": "float64",
}
EXTRA = {
    "nkr": {},
    "dica": {"hospital": "string"},
    "umc": {
        "n_administrations": "int64",
        "dose_mg_per_administration": "float64",
        "interval_weeks": "int64",
        "dose_mg_total": "float64",
    },
}
COMBINATION = "ipilimumab+nivolumab"


@pytest.fixture(scope="module")
def small() -> dict[str, pd.DataFrame]:
    return synth.generate(3, 900)


@pytest.fixture(scope="module")
def pooled() -> pd.DataFrame:
    frames = synth.generate(11, 60_000)
    return pd.concat(
        [f.assign(station=s) for s, f in frames.items()], ignore_index=True
    )


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = synth.generate(7, 600), synth.generate(7, 600)
    for station in synth.STATIONS:
        pd.testing.assert_frame_equal(a[station], b[station])
    c = synth.generate(8, 600)
    for station in synth.STATIONS:
        assert not a[station]["os_days"].equals(c[station]["os_days"])
        assert not set(a[station]["patient_id"]) & set(c[station]["patient_id"])


def test_stations_are_drawn_independently() -> None:
    # a station's frame depends only on (seed, station, its own size)
    a, b = synth.generate(7, 900), synth.generate(7, 901)  # 901: only nkr grows
    assert len(b["nkr"]) == len(a["nkr"]) + 1
    for station in ("dica", "umc"):
        pd.testing.assert_frame_equal(a[station], b[station])


def test_large_stations_are_drawn_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "_CHUNK", 64)  # as if millions of patients
    a, b = synth.generate(4, 900), synth.generate(4, 900)
    for station, frame in a.items():
        pd.testing.assert_frame_equal(frame, b[station])
        assert frame["patient_id"].is_unique
        assert isinstance(frame.index, pd.RangeIndex)
        expected = {**COMMON, **EXTRA[station]}
        assert {c: str(t) for c, t in frame.dtypes.items()} == expected
    assert 0.3 < pd.concat(a.values())["death"].mean() < 0.7


def test_station_shares() -> None:
    for patients in (3, 4, 300, 301, 9000, 10_000_001):
        sizes = synth.station_sizes(patients)
        assert list(sizes) == list(synth.STATIONS)
        assert sum(sizes.values()) == patients
        assert min(sizes.values()) >= 1
        for station, share in synth.SHARES.items():
            assert abs(sizes[station] - patients * share / 9) < 1
    frames = synth.generate(3, 900)
    assert {s: len(f) for s, f in frames.items()} == {
        "nkr": 400,
        "dica": 300,
        "umc": 200,
    }
    assert synth.station_sizes(synth.DEFAULT_PATIENTS) == {
        "nkr": 4000,
        "dica": 3000,
        "umc": 2000,
    }


def test_schema_and_dtypes(small: dict[str, pd.DataFrame]) -> None:
    assert tuple(small) == synth.STATIONS == ("nkr", "dica", "umc")
    for station, frame in small.items():
        expected = {**COMMON, **EXTRA[station]}
        assert list(frame.columns) == list(expected), station
        got = {column: str(dtype) for column, dtype in frame.dtypes.items()}
        assert got == expected, station
        assert isinstance(frame.index, pd.RangeIndex)
        assert not frame.isna().any().any(), station


def test_ids_are_unique_pseudonyms(small: dict[str, pd.DataFrame]) -> None:
    for station, frame in small.items():
        ids = frame["patient_id"]
        assert ids.is_unique
        assert ids.str.fullmatch(station.upper() + r"-[0-9a-f]{12}").all()
    big = synth.generate(1, 90_000)["nkr"]["patient_id"]
    assert big.is_unique
    # not sequential: leading hex digits spread over all 16 values
    assert big.str[4].nunique() == 16


def test_value_ranges(small: dict[str, pd.DataFrame]) -> None:
    for station, f in small.items():
        assert f["age"].between(18, 95).all()
        assert set(f["sex"]) == {"F", "M"}
        assert f["weight_kg"].between(30, 200).all()
        assert set(f["stage"]) <= set(synth.STAGES)
        assert set(f["drug"]) <= set(synth.DRUGS)
        assert set(f["regimen"]) <= set(synth.REGIMENS)
        assert set(f["response"]) <= set(synth.RESPONSES)
        assert f["ecog"].between(0, 3).all()
        assert f["line"].isin([1, 2]).all()
        for flag in ("ldh_elevated", "brain_mets", "death", "progression"):
            assert f[flag].isin([0, 1]).all(), (station, flag)
        assert f["tox_grade3"].isin([0, 1]).all()
        # AJCC 8: M1d means brain metastases
        m1d = (f["stage"] == "IV-M1d").to_numpy(dtype=bool)
        assert (f["brain_mets"].to_numpy() == m1d).all()
        # survival times: whole days, pfs within os, deaths and progressions consistent
        for time in ("os_days", "pfs_days"):
            assert (f[time] >= 1).all() and (f[time] == np.floor(f[time])).all()
        assert (f["pfs_days"] <= f["os_days"]).all()
        assert (f.loc[f["death"] == 1, "progression"] == 1).all()
        # dates
        assert f["diagnosis_date"].between("2017-01-01", "2024-12-31").all()
        assert (f["start_date"] >= f["diagnosis_date"]).all()
        assert (f["stop_date"] >= f["start_date"]).all()
        end = f["start_date"] + pd.to_timedelta(f["os_days"], unit="D")
        assert (f["stop_date"] <= end).all()
        assert (end <= synth.DATA_CUT).all()
        censored_at_cut = (f["death"] == 0) & (end == synth.DATA_CUT)
        assert censored_at_cut.any()  # administrative censoring at the data cut
        assert ((f["death"] == 0) & (end < synth.DATA_CUT)).any()  # lost to follow-up
        assert (f["cost_eur"] > 0).all()
        # the combination is always given at standard dosing
        assert (f.loc[f["drug"] == COMBINATION, "regimen"] == "standard").all()


def test_ties_occur(small: dict[str, pd.DataFrame]) -> None:
    deaths = small["nkr"].loc[small["nkr"]["death"] == 1, "os_days"]
    assert deaths.duplicated().any()


def test_pharmacy_columns_add_up() -> None:
    umc = synth.generate(5, 9000)["umc"]
    assert (umc["n_administrations"] >= 1).all()
    mono = umc[umc["drug"] != COMBINATION]
    assert np.allclose(
        mono["dose_mg_total"],
        mono["n_administrations"] * mono["dose_mg_per_administration"],
    )
    expected_interval = {
        ("pembrolizumab", "standard"): (200.0, 3),
        ("pembrolizumab", "extended_interval"): (400.0, 6),
        ("nivolumab", "standard"): (240.0, 2),
        ("nivolumab", "extended_interval"): (480.0, 4),
    }
    for (drug, regimen), (dose, weeks) in expected_interval.items():
        rows = mono[(mono["drug"] == drug) & (mono["regimen"] == regimen)]
        assert len(rows) > 0
        assert (rows["dose_mg_per_administration"] == dose).all()
        assert (rows["interval_weeks"] == weeks).all()
    weight_based = mono[mono["regimen"] == "weight_based"]
    pembro = weight_based[weight_based["drug"] == "pembrolizumab"]
    assert pembro["dose_mg_per_administration"].between(100, 200).all()
    assert (pembro["dose_mg_per_administration"] % 50 == 0).all()  # vial rounding
    assert pembro["dose_mg_per_administration"].mean() < 200
    price = synth.PRICE_EUR_PER_MG
    cost = mono["dose_mg_total"] * np.where(
        mono["drug"] == "pembrolizumab", price["pembrolizumab"], price["nivolumab"]
    )
    assert np.allclose(mono["cost_eur"], cost, atol=0.01)


def test_dica_hospitals_of_unequal_size() -> None:
    counts = synth.generate(5, 9000)["dica"]["hospital"].value_counts()
    assert set(counts.index) == set(synth.HOSPITALS) and len(counts) == 14
    assert counts.max() > 5 * counts.min()


def test_case_mix_differs_between_stations(pooled: pd.DataFrame) -> None:
    by = pooled.groupby("station")
    age, ecog = by["age"].mean(), by["ecog"].mean()
    late = by["stage"].apply(lambda s: s.isin(["IV-M1c", "IV-M1d"]).mean())
    assert age["nkr"] > age["dica"] > age["umc"]
    assert ecog["nkr"] > ecog["dica"] > ecog["umc"]
    assert late["nkr"] > late["umc"]
    standard = by["regimen"].apply(lambda s: (s == "standard").mean())
    assert standard["nkr"] > 0.95
    assert 0.05 < 1 - standard["dica"] < 1 - standard["umc"]
    weight_based = by["regimen"].apply(lambda s: (s == "weight_based").mean())
    assert weight_based["umc"] > 0.1 > weight_based["dica"] > weight_based["nkr"]
    deaths = by["death"].mean()
    assert 0.4 < pooled["death"].mean() < 0.6
    assert deaths["nkr"] > deaths["umc"]


def test_cox_on_pooled_data_recovers_the_truth(pooled: pd.DataFrame) -> None:
    x = pd.DataFrame(
        {
            "age10": (pooled["age"] - 65) / 10,
            "ecog": pooled["ecog"],
            "ldh": pooled["ldh_elevated"],
            "brain": pooled["brain_mets"],
            "late": pooled["stage"].isin(["IV-M1c", "IV-M1d"]).astype(float),
            "combo": (pooled["drug"] == COMBINATION).astype(float),
            "line2": (pooled["line"] == 2).astype(float),
            "ext": (pooled["regimen"] == "extended_interval").astype(float),
            "wb": (pooled["regimen"] == "weight_based").astype(float),
            "T": pooled["os_days"],
            "E": pooled["death"],
        }
    )
    lifelines = pytest.importorskip("lifelines")  # not in the newest-pandas run
    fit = lifelines.CoxPHFitter().fit(x, "T", "E")  # the oracle fit on pooled rows
    truth = synth.TRUTH
    expected = {
        "age10": truth.log_hr_age_per_10y,
        "ecog": truth.log_hr_ecog_per_level,
        "ldh": truth.log_hr_ldh_elevated,
        "brain": truth.log_hr_brain_mets,
        "late": truth.log_hr_stage_m1c_m1d,
        "combo": truth.log_hr_combination,
        "line2": truth.log_hr_second_line,
        "ext": truth.log_hr_regimen["extended_interval"],
        "wb": truth.log_hr_regimen["weight_based"],
    }
    for name, value in expected.items():
        error = abs(fit.params_[name] - value)
        assert error < 4 * fit.standard_errors_[name] + 0.01, (name, error)
    # the questions that matter: ecog, and the (null) regimen effects, tightly
    assert abs(fit.params_["ecog"] - 0.40) < 0.04
    assert abs(fit.params_["ext"] - 0.0) < 0.08
    assert abs(fit.params_["wb"] - np.log(0.97)) < 0.12


def test_toxicity_lower_under_weight_based_dosing(pooled: pd.DataFrame) -> None:
    mono = pooled[pooled["drug"] != COMBINATION]
    rate = mono.groupby("regimen")["tox_grade3"].mean()
    truth = synth.TRUTH
    expected = 1 / (1 + np.exp(-truth.tox_log_odds_reference))
    assert abs(rate["standard"] - expected) < 0.02
    assert rate["weight_based"] < rate["standard"] - 0.02
    combination = pooled.loc[pooled["drug"] == COMBINATION, "tox_grade3"].mean()
    assert combination > 0.4


def test_truth_is_frozen_and_consistent(small: dict[str, pd.DataFrame]) -> None:
    truth = synth.TRUTH
    with pytest.raises(dataclasses.FrozenInstanceError):
        truth.weibull_shape = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        truth.log_hr_regimen["weight_based"] = 0.0  # type: ignore[index]
    assert truth.log_hr_regimen == {
        "standard": 0.0,
        "extended_interval": 0.0,
        "weight_based": pytest.approx(np.log(0.97)),
    }
    assert truth.weibull_shape == pytest.approx(0.9)
    assert 600 <= truth.median_os_days_reference <= 800  # about 2 years
    assert truth.survival(truth.median_os_days_reference) == pytest.approx(0.5)
    reference = pd.DataFrame(
        {
            "age": [65],
            "ecog": [1],
            "ldh_elevated": [0],
            "brain_mets": [0],
            "stage": ["IV-M1c"],
            "drug": ["pembrolizumab"],
            "line": [1],
            "regimen": ["standard"],
        }
    )
    assert truth.linear_predictor(reference) == pytest.approx([0.0])
    lp = truth.linear_predictor(small["nkr"])
    assert lp.shape == (len(small["nkr"]),) and np.isfinite(lp).all()


def test_write_produces_parquet_equal_to_generate(tmp_path: Path) -> None:
    paths = synth.write(tmp_path / "out", seed=1, patients=300)
    assert paths == {s: tmp_path / "out" / f"{s}.parquet" for s in synth.STATIONS}
    frames = synth.generate(1, 300)
    for station, path in paths.items():
        pd.testing.assert_frame_equal(pd.read_parquet(path), frames[station])
    assert len(pd.read_parquet(paths["umc"])) == 67


@pytest.mark.parametrize(("seed", "patients"), [(1, 2), (1, 0), (-1, 300)])
def test_bad_arguments_are_errors(seed: int, patients: int, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed|patients"):
        synth.generate(seed, patients)
    with pytest.raises(ValueError, match="seed|patients"):
        synth.write(tmp_path, seed, patients)
    assert not list(tmp_path.iterdir())  # nothing written
