"""Synthetic registry extracts for three advanced-melanoma data stations.

Deterministic (same seed and size give identical frames), vectorised, and built from a
known truth (:data:`TRUTH`) so trains can be checked for recovering it. No real patient
is in here. See ``docs/data-dictionary.md`` for every column.

* ``nkr``  Netherlands Cancer Registry extract: population-based, older, worse
  performance status, more M1c/M1d, almost all standard dosing.
* ``dica`` clinical-audit treatment registry (modelled on the Dutch Melanoma Treatment
  Registry) with a ``hospital`` column; some extended-interval dosing.
* ``umc``  university hospital EHR + pharmacy extract: younger, more extended-interval
  and weight-based dosing, with administrations and doses.

Survival follows a Weibull proportional-hazards model whose conditional effects are
the same at every station; only the case mix differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

STATIONS: tuple[str, ...] = ("nkr", "dica", "umc")
DEFAULT_PATIENTS = 9000
SHARES = {"nkr": 4, "dica": 3, "umc": 2}
DATA_CUT = np.datetime64("2025-06-30")
STAGES = ("IIIB", "IIIC", "IIID", "IV-M1a", "IV-M1b", "IV-M1c", "IV-M1d")
DRUGS = ("pembrolizumab", "nivolumab", "ipilimumab+nivolumab")
REGIMENS = ("standard", "extended_interval", "weight_based")
RESPONSES = ("CR", "PR", "SD", "PD", "NE")


@dataclass(frozen=True)
class Truth:
    """The data-generating model (log hazard ratios unless stated otherwise)."""

    weibull_shape: float = 0.9
    median_os_reference_days: float = 1600.0
    log_hr_age_per_10y: float = 0.15
    log_hr_ecog_per_level: float = 0.40
    log_hr_ldh_elevated: float = 0.50
    log_hr_brain_mets: float = 0.35
    log_hr_stage_m1c_m1d: float = 0.30
    log_hr_combination: float = -0.15
    log_hr_regimen: dict[str, float] = field(
        default_factory=lambda: {
            "standard": 0.0,
            "extended_interval": 0.0,
            "weight_based": float(np.log(0.97)),
        }
    )
    tox_probability: dict[str, float] = field(
        default_factory=lambda: {
            "standard": 0.17,
            "extended_interval": 0.18,
            "weight_based": 0.13,
        }
    )
    tox_extra_combination: float = 0.35
    loss_to_follow_up_per_year: float = 0.03


TRUTH = Truth()

# list prices (EUR per mg), 2024 Dutch list prices rounded
PRICE_PER_MG = {"pembrolizumab": 28.6, "nivolumab": 14.2, "ipilimumab": 82.0}

# case mix per station: age mean, P(ecog levels 0..3), stage weights, regimen weights,
# drug weights, P(ldh elevated), P(brain metastases)
CASE_MIX = {
    "nkr": dict(
        age=68.0,
        ecog=(0.40, 0.38, 0.17, 0.05),
        stage=(0.04, 0.08, 0.03, 0.12, 0.18, 0.37, 0.18),
        regimen=(0.93, 0.05, 0.02),
        drug=(0.48, 0.27, 0.25),
        ldh=0.42,
        brain=0.22,
    ),
    "dica": dict(
        age=65.0,
        ecog=(0.52, 0.34, 0.11, 0.03),
        stage=(0.05, 0.10, 0.04, 0.14, 0.19, 0.33, 0.15),
        regimen=(0.78, 0.18, 0.04),
        drug=(0.50, 0.22, 0.28),
        ldh=0.36,
        brain=0.18,
    ),
    "umc": dict(
        age=61.0,
        ecog=(0.62, 0.30, 0.07, 0.01),
        stage=(0.06, 0.12, 0.05, 0.15, 0.19, 0.30, 0.13),
        regimen=(0.45, 0.35, 0.20),
        drug=(0.55, 0.15, 0.30),
        ldh=0.33,
        brain=0.15,
    ),
}


def station_sizes(patients: int) -> dict[str, int]:
    """Split ``patients`` over the stations 4:3:2 (integers summing to ``patients``)."""
    total = sum(SHARES.values())
    sizes = {s: patients * SHARES[s] // total for s in STATIONS}
    sizes["nkr"] += patients - sum(sizes.values())
    return sizes


def _ids(prefix: str, seed: int, n: int) -> np.ndarray:
    key = hashlib.sha256(f"pht-synth/{seed}/{prefix}".encode()).digest()
    rng = np.random.default_rng(np.frombuffer(key[:16], dtype=np.uint32))
    # unique 48-bit numbers: draw a few more than needed, drop repeats, shuffle
    raw = np.unique(rng.integers(0, 16**12, size=int(n * 1.01) + 16))
    raw = rng.permutation(raw)[:n]
    return np.array([f"{prefix.upper()}-{v:012x}" for v in raw], dtype=object)


def _station(station: str, index: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, index])
    mix = CASE_MIX[station]
    truth = TRUTH
    age = np.clip(np.rint(rng.normal(mix["age"], 11.0, n)), 18, 95).astype(np.int64)
    sex = np.where(rng.random(n) < 0.42, "F", "M").astype(object)
    weight = np.round(
        np.clip(np.where(sex == "F", 70.0, 84.0) + rng.normal(0, 13.0, n), 38, 160), 1
    )
    ecog = rng.choice(4, size=n, p=mix["ecog"]).astype(np.int64)
    stage_idx = rng.choice(len(STAGES), size=n, p=mix["stage"])
    stage = np.asarray(STAGES, dtype=object)[stage_idx]
    late = stage_idx >= 5
    ldh = (rng.random(n) < mix["ldh"] + 0.15 * late).astype(np.int64)
    brain = ((rng.random(n) < mix["brain"] * (1 + late)) & (stage_idx >= 3)).astype(np.int64)
    drug_idx = rng.choice(3, size=n, p=mix["drug"])
    drug = np.asarray(DRUGS, dtype=object)[drug_idx]
    regimen_idx = rng.choice(3, size=n, p=mix["regimen"])
    regimen_idx[drug_idx == 2] = 0  # combination therapy is always standard dosing
    regimen = np.asarray(REGIMENS, dtype=object)[regimen_idx]
    line = np.where(rng.random(n) < 0.82, 1, 2).astype(np.int64)

    diagnosis = np.datetime64("2017-01-01") + rng.integers(0, 8 * 365, n).astype(
        "timedelta64[D]"
    )
    start = diagnosis + rng.gamma(2.0, 12.0, n).astype(np.int64).astype("timedelta64[D]")
    start = np.minimum(start, DATA_CUT - np.timedelta64(30, "D"))

    log_hr = (
        truth.log_hr_age_per_10y * (age - 65) / 10
        + truth.log_hr_ecog_per_level * ecog
        + truth.log_hr_ldh_elevated * ldh
        + truth.log_hr_brain_mets * brain
        + truth.log_hr_stage_m1c_m1d * late
        + truth.log_hr_combination * (drug_idx == 2)
        + np.asarray([truth.log_hr_regimen[r] for r in REGIMENS])[regimen_idx]
        + 0.10 * (line == 2)
    )
    k = truth.weibull_shape
    scale = truth.median_os_reference_days / np.log(2) ** (1 / k)
    death_time = scale * (rng.exponential(1.0, n) * np.exp(-log_hr)) ** (1 / k)
    follow_up = (DATA_CUT - start).astype(np.int64).astype(np.float64)
    loss = rng.exponential(365.0 / truth.loss_to_follow_up_per_year, n)
    censor = np.minimum(follow_up, loss)
    os_days = np.maximum(1.0, np.ceil(np.minimum(death_time, censor)))
    death = (death_time <= censor).astype(np.int64)

    progression_time = death_time * rng.uniform(0.25, 0.9, n)
    pfs_days = np.minimum(np.maximum(1.0, np.ceil(np.minimum(progression_time, censor))), os_days)
    progression = ((progression_time <= censor) | (death == 1)).astype(np.int64)

    p_tox = np.asarray([truth.tox_probability[r] for r in REGIMENS])[regimen_idx]
    p_tox = np.clip(p_tox + truth.tox_extra_combination * (drug_idx == 2), 0, 0.95)
    tox = (rng.random(n) < p_tox).astype(np.int64)

    resp_draw = rng.random(n) - 0.04 * ecog - 0.05 * ldh
    response = np.select(
        [resp_draw > 0.88, resp_draw > 0.60, resp_draw > 0.38, resp_draw > 0.05],
        ["CR", "PR", "SD", "PD"],
        "NE",
    ).astype(object)

    treatment_days = np.minimum(
        np.ceil(np.minimum(pfs_days, rng.uniform(90, 730, n))), os_days
    )
    treatment_days = np.maximum(treatment_days, 1.0)
    stop = start + treatment_days.astype(np.int64).astype("timedelta64[D]")

    pembro = drug_idx == 0
    interval_weeks = np.where(
        pembro, np.where(regimen_idx == 1, 6, 3), np.where(regimen_idx == 1, 4, 2)
    ).astype(np.int64)
    dose = np.where(
        pembro,
        np.select([regimen_idx == 1, regimen_idx == 2], [400.0, np.ceil(2 * weight / 25) * 25], 200.0),
        np.select([regimen_idx == 1, regimen_idx == 2], [480.0, np.ceil(3 * weight / 40) * 40], 240.0),
    )
    n_admin = (np.floor(treatment_days / (7 * interval_weeks)) + 1).astype(np.int64)
    combination = drug_idx == 2
    price = np.where(pembro, PRICE_PER_MG["pembrolizumab"], PRICE_PER_MG["nivolumab"])
    cost = n_admin * dose * price
    ipi_cycles = np.minimum(n_admin, 4)
    cost = cost + combination * ipi_cycles * 3 * weight * PRICE_PER_MG["ipilimumab"]

    frame = pd.DataFrame(
        {
            "patient_id": pd.array(_ids(station, seed, n), dtype="string"),
            "diagnosis_date": diagnosis.astype("datetime64[ns]"),
            "start_date": start.astype("datetime64[ns]"),
            "stop_date": stop.astype("datetime64[ns]"),
            "age": age,
            "sex": pd.array(sex, dtype="string"),
            "weight_kg": weight,
            "stage": pd.array(stage, dtype="string"),
            "ecog": ecog,
            "ldh_elevated": ldh,
            "brain_mets": brain,
            "line": line,
            "drug": pd.array(drug, dtype="string"),
            "regimen": pd.array(regimen, dtype="string"),
            "os_days": os_days,
            "death": death,
            "pfs_days": pfs_days,
            "progression": progression,
            "tox_grade3": tox,
            "response": pd.array(response, dtype="string"),
            "cost_eur": np.round(cost, 2),
        }
    )
    if station == "dica":
        weights = np.linspace(2.0, 0.4, 14)
        hospital = rng.choice(14, size=n, p=weights / weights.sum())
        frame["hospital"] = pd.array([f"H{h + 1:02d}" for h in hospital], dtype="string")
    if station == "umc":
        frame["n_administrations"] = n_admin
        frame["dose_mg_per_administration"] = dose
        frame["interval_weeks"] = interval_weeks
        frame["dose_mg_total"] = n_admin * dose
    return frame


def generate(seed: int = 2026, patients: int = DEFAULT_PATIENTS) -> dict[str, pd.DataFrame]:
    """One data frame per station (``nkr``, ``dica``, ``umc``), deterministic in ``seed``."""
    if patients < len(STATIONS):
        raise ValueError(f"patients must be at least {len(STATIONS)}, got {patients}")
    sizes = station_sizes(patients)
    return {s: _station(s, i, sizes[s], seed) for i, s in enumerate(STATIONS)}


def write(
    out_dir: Path, seed: int = 2026, patients: int = DEFAULT_PATIENTS
) -> dict[str, Path]:
    """Write ``out_dir/<station>.parquet`` for each station; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for station, frame in generate(seed, patients).items():
        path = out_dir / f"{station}.parquet"
        frame.to_parquet(path, index=False)
        paths[station] = path
    return paths
