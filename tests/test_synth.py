"""The synthetic registries: deterministic, documented columns, known truth recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from pht import synth

COMMON = {
    "patient_id": "string", "diagnosis_date": "datetime64[ns]",
    "start_date": "datetime64[ns]", "stop_date": "datetime64[ns]", "age": "int64",
    "sex": "string", "weight_kg": "float64", "stage": "string", "ecog": "int64",
    "ldh_elevated": "int64", "brain_mets": "int64", "line": "int64", "drug": "string",
    "regimen": "string", "os_days": "float64", "death": "int64", "pfs_days": "float64",
    "progression": "int64", "tox_grade3": "int64", "response": "string",
    "cost_eur": "float64",
}


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = synth.generate(7, 600), synth.generate(7, 600)
    for station in synth.STATIONS:
        pd.testing.assert_frame_equal(a[station], b[station])
    c = synth.generate(8, 600)
    assert not a["nkr"]["os_days"].equals(c["nkr"]["os_days"])


def test_schema_ranges_and_shares() -> None:
    frames = synth.generate(3, 900)
    assert {s: len(f) for s, f in frames.items()} == {"nkr": 400, "dica": 300, "umc": 200}
    for station, frame in frames.items():
        for column, dtype in COMMON.items():
            assert str(frame[column].dtype) == dtype, (station, column)
        assert frame["patient_id"].is_unique
        assert frame["patient_id"].str.startswith(station.upper() + "-").all()
        assert frame["age"].between(18, 95).all()
        assert set(frame["regimen"]) <= set(synth.REGIMENS)
        assert set(frame["stage"]) <= set(synth.STAGES)
        assert (frame["os_days"] > 0).all() and (frame["pfs_days"] <= frame["os_days"]).all()
        assert (frame["start_date"] >= frame["diagnosis_date"]).all()
        assert (frame["stop_date"] >= frame["start_date"]).all()
        assert frame["death"].isin([0, 1]).all() and 0.3 < frame["death"].mean() < 0.8
        assert (frame["cost_eur"] > 0).all()
    assert "hospital" in frames["dica"] and "dose_mg_total" in frames["umc"]
    assert frames["nkr"]["age"].mean() > frames["umc"]["age"].mean()  # case mix differs


def test_cox_on_pooled_data_recovers_the_truth() -> None:
    frame = pd.concat(synth.generate(11, 60_000).values(), ignore_index=True)
    x = pd.DataFrame(
        {
            "age10": (frame["age"] - 65) / 10,
            "ecog": frame["ecog"],
            "ldh": frame["ldh_elevated"],
            "brain": frame["brain_mets"],
            "late": frame["stage"].isin(["IV-M1c", "IV-M1d"]).astype(float),
            "combo": (frame["drug"] == "ipilimumab+nivolumab").astype(float),
            "line2": (frame["line"] == 2).astype(float),
            "ext": (frame["regimen"] == "extended_interval").astype(float),
            "wb": (frame["regimen"] == "weight_based").astype(float),
            "T": frame["os_days"],
            "E": frame["death"],
        }
    )
    fit = CoxPHFitter().fit(x, "T", "E")  # the oracle fit on pooled rows
    truth = synth.TRUTH
    expected = {
        "age10": truth.log_hr_age_per_10y, "ecog": truth.log_hr_ecog_per_level,
        "ldh": truth.log_hr_ldh_elevated, "brain": truth.log_hr_brain_mets,
        "late": truth.log_hr_stage_m1c_m1d, "combo": truth.log_hr_combination,
        "ext": truth.log_hr_regimen["extended_interval"],
        "wb": truth.log_hr_regimen["weight_based"],
    }
    for name, value in expected.items():
        assert abs(fit.params_[name] - value) < 4 * fit.standard_errors_[name] + 0.01, name


def test_write_produces_parquet(tmp_path) -> None:
    paths = synth.write(tmp_path, seed=1, patients=300)
    assert sorted(paths) == sorted(synth.STATIONS)
    back = pd.read_parquet(paths["umc"])
    assert len(back) == 66 and "interval_weeks" in back


def test_too_few_patients_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        synth.generate(1, 2)
    assert np.isclose(sum(synth.station_sizes(10_001).values()), 10_001)
