"""Synthetic registry extracts for three advanced-melanoma data stations.

The generator is deterministic (the same ``seed`` and ``patients`` give identical
frames), fully vectorised (10 million patients in seconds) and built on a known truth,
:data:`TRUTH`, so that trains can be checked for recovering it. No real patient is in
these data. ``docs/data-dictionary.md`` describes every column.

Stations
--------
``nkr``
    Netherlands Cancer Registry extract: population-based, older, worse performance
    status, more stage IV-M1c/M1d, almost only standard dosing.
``dica``
    Clinical-audit treatment registry modelled on the Dutch Melanoma Treatment
    Registry, with a ``hospital`` column (14 hospitals of unequal size); some
    extended-interval dosing, adopted unevenly by the hospitals.
``umc``
    University hospital EHR + pharmacy extract: younger, more extended-interval and
    weight-based dosing, with administrations and doses.

Overall survival follows a Weibull proportional-hazards model whose conditional effects
are the same at every station; only the case mix differs. Station ``i`` draws from its
own ``numpy.random.default_rng([seed, i])``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "CASE_MIX",
    "DATA_CUT",
    "DEFAULT_PATIENTS",
    "DRUGS",
    "HOSPITALS",
    "PRICE_EUR_PER_MG",
    "REGIMENS",
    "RESPONSES",
    "STAGES",
    "SHARES",
    "STATIONS",
    "TRUTH",
    "CaseMix",
    "Truth",
    "generate",
    "station_sizes",
    "write",
]

STATIONS: tuple[str, ...] = ("nkr", "dica", "umc")
DEFAULT_PATIENTS = 9000  # total over the three stations
SHARES: Mapping[str, int] = MappingProxyType({"nkr": 4, "dica": 3, "umc": 2})

STAGES: tuple[str, ...] = (
    "IIIB",
    "IIIC",
    "IIID",
    "IV-M1a",
    "IV-M1b",
    "IV-M1c",
    "IV-M1d",
)
DRUGS: tuple[str, ...] = ("pembrolizumab", "nivolumab", "ipilimumab+nivolumab")
REGIMENS: tuple[str, ...] = ("standard", "extended_interval", "weight_based")
RESPONSES: tuple[str, ...] = ("CR", "PR", "SD", "PD", "NE")
HOSPITALS: tuple[str, ...] = tuple(f"H{h:02d}" for h in range(1, 15))

DIAGNOSIS_FIRST = np.datetime64("2017-01-01", "D")
DIAGNOSIS_LAST = np.datetime64("2024-12-31", "D")
DATA_CUT = np.datetime64("2025-06-30", "D")

# Assumed list prices in EUR per mg (rounded Dutch list prices, approximate, excl. VAT):
# pembrolizumab 100 mg vial EUR 2,860; nivolumab 100 mg vial EUR 1,420;
# ipilimumab 50 mg vial EUR 4,100. Only the administered mg are charged (no wastage).
PRICE_EUR_PER_MG: Mapping[str, float] = MappingProxyType(
    {"pembrolizumab": 28.60, "nivolumab": 14.20, "ipilimumab": 82.00}
)

_I_PEMBRO, _I_NIVO, _I_COMBO = 0, 1, 2
_I_STANDARD, _I_EXTENDED, _I_WEIGHT = 0, 1, 2
_I_M1C = STAGES.index("IV-M1c")
_I_M1D = STAGES.index("IV-M1d")
_I_NE = RESPONSES.index("NE")
# best overall response from the time to progression (log, relative to the Weibull
# scale, plus noise): above the last cut CR, then PR, SD; below the first cut PD
_RESPONSE_CUTS = np.array([-1.85, -1.15, 0.25])
# text columns are drawn as codes into these labels
_LABELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "sex": ("M", "F"),
        "stage": STAGES,
        "drug": DRUGS,
        "regimen": REGIMENS,
        "response": RESPONSES,
        "hospital": HOSPITALS,
    }
)
_CHUNK = 1 << 20  # patients drawn at a time


@dataclass(frozen=True)
class Truth:
    """The data-generating model shared by all stations.

    Overall survival (days from ``start_date``) is Weibull proportional hazards,
    ``S(t | x) = exp(-(t / scale) ** shape * exp(x @ beta))``, with ``x @ beta`` the
    log hazard ratio vs a typical *reference patient*: 65 years old, ECOG 1, normal
    LDH, no brain metastases, stage IV-M1c, anti-PD-1 monotherapy, first line, standard
    dosing (see :meth:`linear_predictor`). Log hazard ratios are the ``log_hr_*``
    attributes. Grade >= 3 toxicity is logistic in the drug combination and the
    regimen (the ``tox_*`` attributes: log odds and log odds ratios).

    Attributes
    ----------
    weibull_shape : float
        Weibull shape of overall survival (below 1: the hazard falls over time).
    median_os_days_reference : float
        Median overall survival of the reference patient, in days.
    reference_age : float
        Age (years) of the reference patient; age enters as ``(age - 65) / 10``.
    reference_ecog : int
        ECOG performance status of the reference patient.
    reference_stage : str
        Stage of the reference patient.
    log_hr_age_per_10y, log_hr_ecog_per_level, log_hr_ldh_elevated : float
        Log hazard ratios per 10 years of age, per ECOG level, for elevated LDH.
    log_hr_brain_mets, log_hr_stage_m1c_m1d : float
        Log hazard ratios for brain metastases and for stage IV-M1c or IV-M1d (both
        apply to IV-M1d).
    log_hr_combination, log_hr_second_line : float
        Log hazard ratios for ipilimumab+nivolumab vs monotherapy, line 2 vs line 1.
    log_hr_extended_interval, log_hr_weight_based : float
        Log hazard ratios of the dosing regimens vs standard dosing.
    tox_log_odds_reference : float
        Log odds of grade >= 3 toxicity under standard anti-PD-1 monotherapy.
    tox_log_or_combination, tox_log_or_extended_interval : float
        Log odds ratios of toxicity for the combination and extended-interval dosing.
    tox_log_or_weight_based : float
        Log odds ratio of toxicity for weight-based dosing (lower dose, less toxicity).
    loss_to_follow_up_per_year : float
        Constant hazard of random loss to follow-up, per year.
    """

    weibull_shape: float = 0.9
    median_os_days_reference: float = 730.0
    reference_age: float = 65.0
    reference_ecog: int = 1
    reference_stage: str = "IV-M1c"
    log_hr_age_per_10y: float = 0.15
    log_hr_ecog_per_level: float = 0.40
    log_hr_ldh_elevated: float = 0.50
    log_hr_brain_mets: float = 0.35
    log_hr_stage_m1c_m1d: float = 0.30
    log_hr_combination: float = -0.15
    log_hr_second_line: float = 0.10
    log_hr_extended_interval: float = 0.0
    log_hr_weight_based: float = math.log(0.97)
    tox_log_odds_reference: float = math.log(0.15 / 0.85)
    tox_log_or_combination: float = 1.90
    tox_log_or_extended_interval: float = 0.0
    tox_log_or_weight_based: float = math.log(0.70)
    loss_to_follow_up_per_year: float = 0.04

    @property
    def log_hr_regimen(self) -> Mapping[str, float]:
        """Log hazard ratio of each regimen vs ``standard`` (read-only mapping)."""
        return MappingProxyType(
            {
                "standard": 0.0,
                "extended_interval": self.log_hr_extended_interval,
                "weight_based": self.log_hr_weight_based,
            }
        )

    @property
    def tox_log_or_regimen(self) -> Mapping[str, float]:
        """Log odds ratio of toxicity of each regimen vs ``standard`` (read-only)."""
        return MappingProxyType(
            {
                "standard": 0.0,
                "extended_interval": self.tox_log_or_extended_interval,
                "weight_based": self.tox_log_or_weight_based,
            }
        )

    @property
    def weibull_scale_days(self) -> float:
        """Weibull scale (days) of the reference patient's overall survival."""
        return self.median_os_days_reference / math.log(2.0) ** (
            1.0 / self.weibull_shape
        )

    def log_hazard_ratio(
        self,
        *,
        age: np.ndarray,
        ecog: np.ndarray,
        ldh_elevated: np.ndarray,
        brain_mets: np.ndarray,
        stage_m1c_m1d: np.ndarray,
        combination: np.ndarray,
        second_line: np.ndarray,
        extended_interval: np.ndarray,
        weight_based: np.ndarray,
    ) -> np.ndarray:
        """Compute the true log hazard ratio vs the reference patient.

        Parameters
        ----------
        age, ecog : numpy.ndarray
            Age in years and ECOG performance status.
        ldh_elevated, brain_mets, stage_m1c_m1d : numpy.ndarray
            0/1 (or boolean) indicators of the prognostic factors.
        combination, second_line : numpy.ndarray
            0/1 (or boolean): ipilimumab+nivolumab; immunotherapy as second line.
        extended_interval, weight_based : numpy.ndarray
            0/1 (or boolean) indicators of the regimen (both 0: standard).

        Returns
        -------
        numpy.ndarray
            ``x @ beta`` per patient, float64; 0 for the reference patient.
        """
        reference = (
            self.log_hr_ecog_per_level * self.reference_ecog
            + self.log_hr_stage_m1c_m1d * (self.reference_stage in STAGES[_I_M1C:])
            + self.log_hr_brain_mets * (self.reference_stage == STAGES[_I_M1D])
        )
        return np.asarray(
            self.log_hr_age_per_10y * (np.asarray(age) - self.reference_age) / 10.0
            + self.log_hr_ecog_per_level * np.asarray(ecog)
            + self.log_hr_ldh_elevated * np.asarray(ldh_elevated)
            + self.log_hr_brain_mets * np.asarray(brain_mets)
            + self.log_hr_stage_m1c_m1d * np.asarray(stage_m1c_m1d)
            + self.log_hr_combination * np.asarray(combination)
            + self.log_hr_second_line * np.asarray(second_line)
            + self.log_hr_extended_interval * np.asarray(extended_interval)
            + self.log_hr_weight_based * np.asarray(weight_based)
            - reference,
            dtype=np.float64,
        )

    def linear_predictor(self, frame: pd.DataFrame) -> np.ndarray:
        """Compute the true log hazard ratio of each row of a station frame.

        Parameters
        ----------
        frame : pandas.DataFrame
            A station frame from :func:`generate` (or any frame with its columns).

        Returns
        -------
        numpy.ndarray
            ``x @ beta`` per row (vs the reference patient), float64.
        """
        stage = frame["stage"].to_numpy(dtype=object)
        regimen = frame["regimen"].to_numpy(dtype=object)
        return self.log_hazard_ratio(
            age=frame["age"].to_numpy(np.float64),
            ecog=frame["ecog"].to_numpy(np.float64),
            ldh_elevated=frame["ldh_elevated"].to_numpy(np.float64),
            brain_mets=frame["brain_mets"].to_numpy(np.float64),
            stage_m1c_m1d=np.isin(stage, STAGES[_I_M1C:]),
            combination=frame["drug"].to_numpy(dtype=object) == DRUGS[_I_COMBO],
            second_line=frame["line"].to_numpy() == 2,
            extended_interval=regimen == "extended_interval",
            weight_based=regimen == "weight_based",
        )

    def survival(
        self, days: np.ndarray | float, log_hr: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """Compute the true probability of surviving beyond ``days``.

        Parameters
        ----------
        days : array_like
            Days since the start of treatment.
        log_hr : array_like, default 0.0
            Log hazard ratio vs the reference patient (:meth:`linear_predictor`).

        Returns
        -------
        numpy.ndarray
            ``exp(-(days / scale) ** shape * exp(log_hr))``.
        """
        ratio = np.asarray(days, dtype=np.float64) / self.weibull_scale_days
        return np.asarray(
            np.exp(-(ratio**self.weibull_shape) * np.exp(np.asarray(log_hr))),
            dtype=np.float64,
        )


TRUTH = Truth()


@dataclass(frozen=True)
class CaseMix:
    """How one station's patients differ (the conditional effects never do).

    Attributes
    ----------
    age_mean, age_sd : float
        Normal distribution of age at start (rounded, clipped to 18-95).
    ecog : tuple of float
        Probabilities of ECOG 0, 1, 2, 3 (shifted up a little with age).
    stage : tuple of float
        Probabilities of the seven :data:`STAGES`.
    ldh : float
        Probability of elevated LDH below stage IV-M1c (20 points higher from M1c).
    combination : float
        Probability of ipilimumab+nivolumab for a fit patient (age < 70, ECOG 0-1);
        halved otherwise; 25 points higher with brain metastases.
    nivolumab : float
        Share of nivolumab among anti-PD-1 monotherapy (the rest is pembrolizumab).
    second_line : float
        Probability that immunotherapy is the second line (after BRAF/MEK).
    extended_interval, weight_based : float
        Probabilities of the alternative regimens for monotherapy once fully adopted
        (adoption rises from 2019 to mid-2020); extended interval is halved for
        ECOG >= 2.
    """

    age_mean: float
    age_sd: float
    ecog: tuple[float, float, float, float]
    stage: tuple[float, float, float, float, float, float, float]
    ldh: float
    combination: float
    nivolumab: float
    second_line: float
    extended_interval: float
    weight_based: float


CASE_MIX: Mapping[str, CaseMix] = MappingProxyType(
    {
        "nkr": CaseMix(
            age_mean=68.0,
            age_sd=11.0,
            ecog=(0.38, 0.38, 0.18, 0.06),
            stage=(0.04, 0.08, 0.03, 0.11, 0.17, 0.38, 0.19),
            ldh=0.32,
            combination=0.22,
            nivolumab=0.38,
            second_line=0.20,
            extended_interval=0.03,
            weight_based=0.01,
        ),
        "dica": CaseMix(
            age_mean=65.0,
            age_sd=11.0,
            ecog=(0.50, 0.35, 0.12, 0.03),
            stage=(0.05, 0.10, 0.04, 0.14, 0.19, 0.33, 0.15),
            ldh=0.28,
            combination=0.28,
            nivolumab=0.33,
            second_line=0.17,
            extended_interval=0.24,
            weight_based=0.04,
        ),
        "umc": CaseMix(
            age_mean=60.0,
            age_sd=12.0,
            ecog=(0.62, 0.30, 0.07, 0.01),
            stage=(0.06, 0.12, 0.05, 0.15, 0.19, 0.30, 0.13),
            ldh=0.25,
            combination=0.32,
            nivolumab=0.25,
            second_line=0.15,
            extended_interval=0.42,
            weight_based=0.28,
        ),
    }
)

# DICA hospitals: relative patient volumes (large centres first) and how strongly each
# adopted extended-interval dosing (multiplier on the station's probability)
_HOSPITAL_VOLUME = np.array([18, 14, 12, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1.5, 0.5])
_HOSPITAL_EXTENDED = np.array(
    [2.0, 0.2, 1.5, 0.0, 1.2, 0.5, 2.5, 0.8, 0.0, 1.0, 3.0, 0.3, 0.0, 1.0]
)


def station_sizes(patients: int) -> dict[str, int]:
    """Split ``patients`` over the stations in the ratio 4 : 3 : 2.

    Parameters
    ----------
    patients : int
        Total number of patients.

    Returns
    -------
    dict of str to int
        Patients per station, summing to ``patients`` (largest-remainder rounding).
    """
    total = sum(SHARES.values())
    sizes = {s: patients * SHARES[s] // total for s in STATIONS}
    by_remainder = sorted(STATIONS, key=lambda s: -(patients * SHARES[s] % total))
    for station in by_remainder[: patients - sum(sizes.values())]:
        sizes[station] += 1
    return sizes


_ARROW_STRINGS = pd.StringDtype().storage == "pyarrow"
"""Whether this pandas backs ``string`` with Arrow by default (pandas >= 3): text columns
then are Arrow-backed too, as :func:`pandas.read_parquet` gives them, so frames from
:func:`generate` concatenate with frames read back (pandas 3 cannot concatenate a
Python-backed ``string`` column with the Arrow-backed filler of a missing one)."""


def _to_strings(values: pa.Array, arrow: bool) -> pd.api.extensions.ExtensionArray:
    """Wrap Arrow strings as a pandas ``string`` array (Arrow- or Python-backed)."""
    if arrow:
        return pd.arrays.ArrowStringArray(values.cast(pa.large_string()))
    return pd.arrays.StringArray(values.to_numpy(zero_copy_only=False))


def _patient_ids(
    station: str, seed: int, n: int, arrow: bool
) -> pd.api.extensions.ExtensionArray:
    """Make unique pseudonymous ids: prefix + 12 hex digits of a keyed permutation.

    Row numbers go through a balanced 4-round Feistel network on 48 bits whose round
    keys come from a SHA-256 hash of the seed and station, so the ids are unique by
    construction and carry no information about the row.
    """
    digest = hashlib.sha256(f"pht.synth/{seed}/{station}".encode()).digest()
    mask = np.uint64(0xFFFFFF)
    row = np.arange(n, dtype=np.uint64)
    left, right = row >> np.uint64(24), row & mask
    for key in np.frombuffer(digest, dtype="<u8"):
        mixed = (right ^ key) * np.uint64(0xFF51AFD7ED558CCD)
        mixed ^= mixed >> np.uint64(33)
        mixed *= np.uint64(0xC4CEB9FE1A85EC53)
        mixed ^= mixed >> np.uint64(29)
        left, right = right, left ^ (mixed & mask)
    value = (left << np.uint64(24)) | right

    prefix = f"{station.upper()}-".encode()
    width = len(prefix) + 12
    text = np.empty((n, width), dtype=np.uint8)
    text[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    hexdigits = b"0123456789abcdef"
    byte_to_hex = np.frombuffer(
        b"".join(bytes([a, b]) for a in hexdigits for b in hexdigits), dtype=np.uint16
    )
    two_digits = text[:, len(prefix) :].view(np.uint16)
    for j in range(6):
        byte = (value >> np.uint64(8 * (5 - j))) & np.uint64(0xFF)
        two_digits[:, j] = byte_to_hex[byte.astype(np.intp)]
    fixed = text.view(f"S{width}").ravel()
    return _to_strings(pa.array(fixed, type=pa.binary(width)).cast(pa.string()), arrow)


def _strings(
    labels: tuple[str, ...], codes: np.ndarray, arrow: bool
) -> pd.api.extensions.ExtensionArray:
    """Build a pandas ``string`` array of ``labels[codes]``."""
    if arrow:
        return _to_strings(pa.array(labels).take(pa.array(codes)), arrow)
    return pd.arrays.StringArray(np.asarray(labels, dtype=object)[codes])


def _days(values: np.ndarray) -> np.ndarray:
    """Convert whole days to ``timedelta64[D]``."""
    return values.astype(np.int64).astype("timedelta64[D]")


def _adoption(start: np.ndarray) -> np.ndarray:
    """Return the adoption (0-1) of alternative dosing on the ``start`` dates.

    Extended intervals were registered in 2019 and spread quickly during COVID-19;
    adoption rises linearly from 2019-01-01 to 2020-07-01.
    """
    begin = np.datetime64("2019-01-01", "D")
    full = np.datetime64("2020-07-01", "D")
    since = (start - begin).astype(np.float64)
    return np.clip(since / float((full - begin).astype(np.int64)), 0.0, 1.0)


def _draw(station: str, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Draw ``n`` patients of a station: the columns, text as codes into ``_LABELS``."""
    mix = CASE_MIX[station]
    truth = TRUTH

    # patients and disease
    age = np.clip(np.rint(rng.normal(mix.age_mean, mix.age_sd, n)), 18, 95)
    age = age.astype(np.int64)
    female = rng.random(n) < 0.42
    raw_weight = np.where(female, 70.0, 85.0) + rng.normal(0.0, 13.0, n)
    weight = np.round(np.clip(raw_weight, 38.0, 170.0), 1)
    older_worse = rng.random(n) < 0.004 * (age - 65)  # older patients a little less fit
    ecog = np.minimum(rng.choice(4, size=n, p=mix.ecog) + older_worse, 3)
    ecog = ecog.astype(np.int64)
    stage = rng.choice(len(STAGES), size=n, p=mix.stage)
    late = stage >= _I_M1C
    brain = (stage == _I_M1D).astype(np.int64)  # AJCC 8: M1d = CNS metastases
    ldh = (rng.random(n) < mix.ldh + 0.20 * late).astype(np.int64)
    line = np.where(rng.random(n) < mix.second_line, 2, 1).astype(np.int64)

    # dates: more patients in recent years (wider indications, better capture)
    span = int((DIAGNOSIS_LAST - DIAGNOSIS_FIRST).astype(np.int64)) + 1
    diagnosis = DIAGNOSIS_FIRST + _days(np.floor(span * rng.power(1.6, n)))
    delay = rng.gamma(2.0, 14.0, n) + (line == 2) * rng.gamma(2.0, 90.0, n)
    start = np.minimum(diagnosis + _days(np.ceil(delay)), DATA_CUT - 14)

    # treatment: combination for fit patients and brain metastases; alternative
    # dosing (monotherapy only) once adopted, at dica unevenly per hospital
    fit = (age < 70) & (ecog <= 1)
    p_combo = np.minimum(mix.combination * np.where(fit, 1.0, 0.5) + 0.25 * brain, 1)
    drug = np.where(
        rng.random(n) < p_combo,
        _I_COMBO,
        np.where(rng.random(n) < mix.nivolumab, _I_NIVO, _I_PEMBRO),
    )
    combination = drug == _I_COMBO
    adoption = _adoption(start)
    hospital = None
    if station == "dica":
        volume = _HOSPITAL_VOLUME / _HOSPITAL_VOLUME.sum()
        hospital = rng.choice(len(HOSPITALS), size=n, p=volume)
        p_ext = mix.extended_interval * adoption * _HOSPITAL_EXTENDED[hospital]
    else:
        p_ext = mix.extended_interval * adoption
    p_ext = p_ext * np.where(ecog >= 2, 0.5, 1.0)
    p_wb = mix.weight_based * adoption
    p_ext = np.minimum(p_ext, 1.0 - p_wb)
    u = rng.random(n)
    regimen = np.where(
        combination | (u >= p_ext + p_wb),
        _I_STANDARD,
        np.where(u < p_ext, _I_EXTENDED, _I_WEIGHT),
    )

    # overall survival: Weibull proportional hazards, censored at the data cut or on
    # random loss to follow-up; whole days, so ties occur
    log_hr = truth.log_hazard_ratio(
        age=age,
        ecog=ecog,
        ldh_elevated=ldh,
        brain_mets=brain,
        stage_m1c_m1d=late,
        combination=combination,
        second_line=line == 2,
        extended_interval=regimen == _I_EXTENDED,
        weight_based=regimen == _I_WEIGHT,
    )
    death_time = truth.weibull_scale_days * (
        rng.standard_exponential(n) * np.exp(-log_hr)
    ) ** (1.0 / truth.weibull_shape)
    follow_up = (DATA_CUT - start).astype(np.float64)
    lost = rng.exponential(365.25 / truth.loss_to_follow_up_per_year, n)
    censor = np.minimum(follow_up, lost)
    death = (death_time <= censor).astype(np.int64)
    os_days = np.maximum(np.ceil(np.minimum(death_time, censor)), 1.0)

    # progression at a random fraction of the (latent) time to death
    progression_time = death_time * rng.beta(2.0, 2.5, n)
    progression = (progression_time <= censor).astype(np.int64)
    pfs_days = np.minimum(
        np.maximum(np.ceil(np.minimum(progression_time, censor)), 1.0), os_days
    )

    # best overall response follows the time to progression; early deaths and a few
    # others are not evaluable
    score = np.log(progression_time / truth.weibull_scale_days)
    score = score + rng.normal(0.0, 0.6, n)
    response = len(_RESPONSE_CUTS) - np.searchsorted(_RESPONSE_CUTS, score)
    not_evaluable = ((death == 1) & (os_days < 42)) | (rng.random(n) < 0.03)
    response = np.where(not_evaluable, _I_NE, response)

    # grade >= 3 immune-related toxicity: logistic
    log_odds = (
        truth.tox_log_odds_reference
        + truth.tox_log_or_combination * combination
        + truth.tox_log_or_extended_interval * (regimen == _I_EXTENDED)
        + truth.tox_log_or_weight_based * (regimen == _I_WEIGHT)
    )
    tox = (rng.random(n) < 1.0 / (1.0 + np.exp(-log_odds))).astype(np.int64)

    # treatment stops at progression, toxicity (60% of grade >= 3 events), elective
    # stop after 1-2 years, death or the end of follow-up
    tox_stop = np.where(
        (tox == 1) & (rng.random(n) < 0.6), rng.uniform(14.0, 150.0, n), np.inf
    )
    elective = rng.uniform(365.0, 730.0, n)
    on_treatment = np.minimum(
        np.minimum(progression_time, tox_stop), np.minimum(elective, censor)
    )
    treated_days = np.minimum(np.floor(on_treatment), os_days)
    stop = start + _days(treated_days)

    # doses and cost: monotherapy at the regimen's dose and interval; the combination
    # gives up to 4 cycles of nivolumab 1 mg/kg + ipilimumab 3 mg/kg every 3 weeks,
    # then nivolumab 240 mg every 2 weeks from week 12
    pembro = drug == _I_PEMBRO
    weight_based_dose = np.where(
        pembro,
        np.clip(np.rint(2.0 * weight / 50.0) * 50.0, 100.0, 200.0),
        np.clip(np.rint(3.0 * weight / 40.0) * 40.0, 120.0, 240.0),
    )
    dose = np.select(
        [regimen == _I_EXTENDED, regimen == _I_WEIGHT],
        [np.where(pembro, 400.0, 480.0), weight_based_dose],
        np.where(pembro, 200.0, 240.0),
    ).astype(np.float64)
    interval_weeks = np.where(pembro, 3, 2) * np.where(regimen == _I_EXTENDED, 2, 1)
    interval_weeks = interval_weeks.astype(np.int64)
    monotherapy_admin = np.floor(treated_days / (7.0 * interval_weeks)) + 1.0
    induction = np.minimum(np.floor(treated_days / 21.0) + 1.0, 4.0)
    maintenance = np.where(
        treated_days >= 84.0, np.floor((treated_days - 84.0) / 14.0) + 1.0, 0.0
    )
    n_admin = np.where(combination, induction + maintenance, monotherapy_admin)
    nivolumab_induction_mg = np.rint(weight / 10.0) * 10.0
    ipilimumab_mg = np.where(combination, induction * np.rint(0.3 * weight) * 10.0, 0)
    dose_total = np.where(
        combination,
        induction * nivolumab_induction_mg + maintenance * dose,
        n_admin * dose,
    )
    price = np.where(
        pembro, PRICE_EUR_PER_MG["pembrolizumab"], PRICE_EUR_PER_MG["nivolumab"]
    )
    cost = dose_total * price + ipilimumab_mg * PRICE_EUR_PER_MG["ipilimumab"]

    columns = {
        "diagnosis_date": diagnosis,
        "start_date": start,
        "stop_date": stop,
        "age": age,
        "sex": female.astype(np.intp),
        "weight_kg": weight,
        "stage": stage,
        "ecog": ecog,
        "ldh_elevated": ldh,
        "brain_mets": brain,
        "line": line,
        "drug": drug,
        "regimen": regimen,
        "os_days": os_days,
        "death": death,
        "pfs_days": pfs_days,
        "progression": progression,
        "tox_grade3": tox,
        "response": response,
        "cost_eur": np.round(cost, 2),
    }
    if hospital is not None:
        columns["hospital"] = hospital
    if station == "umc":
        columns["n_administrations"] = n_admin.astype(np.int64)
        columns["dose_mg_per_administration"] = dose
        columns["interval_weeks"] = interval_weeks
        columns["dose_mg_total"] = dose_total
    return columns


def _station(
    station: str, index: int, n: int, seed: int, arrow: bool = False
) -> pd.DataFrame:
    """Generate one station's extract of ``n`` patients.

    Patients are drawn in chunks of ``_CHUNK`` rows from one generator (fewer and
    smaller temporary arrays), so the result depends on ``seed``, the station and
    ``n`` only. With ``arrow`` the text columns are Arrow-backed ``string`` (fast to
    write to Parquet); otherwise as :func:`pandas.read_parquet` gives them
    (Python-backed under pandas 2, Arrow-backed under pandas 3).
    """
    arrow = arrow or _ARROW_STRINGS
    rng = np.random.default_rng([seed, index])
    parts = [_draw(station, rng, min(_CHUNK, n - i)) for i in range(0, n, _CHUNK)]
    if len(parts) == 1:
        raw = parts[0]
    else:
        raw = {
            name: np.concatenate([part[name] for part in parts]) for name in parts[0]
        }
    del parts
    columns: dict[str, object] = {"patient_id": _patient_ids(station, seed, n, arrow)}
    for name, values in raw.items():
        if name in _LABELS:
            columns[name] = _strings(_LABELS[name], values, arrow)
        elif values.dtype.kind == "M":
            columns[name] = values.astype("datetime64[ns]")
        else:
            columns[name] = values
    return pd.DataFrame(columns, copy=False)


def _checked_sizes(seed: int, patients: int) -> dict[str, int]:
    """Validate the arguments of :func:`generate` and split the patients."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if patients < len(STATIONS):
        raise ValueError(f"patients must be at least {len(STATIONS)}, got {patients}")
    return station_sizes(patients)


def generate(
    seed: int = 2026, patients: int = DEFAULT_PATIENTS
) -> dict[str, pd.DataFrame]:
    """Generate the synthetic extract of every station.

    Parameters
    ----------
    seed : int, default 2026
        Non-negative random seed; station ``i`` (in :data:`STATIONS` order) draws
        from ``numpy.random.default_rng([seed, i])``.
    patients : int, default :data:`DEFAULT_PATIENTS`
        Total patients over the stations, split 4 : 3 : 2 (:func:`station_sizes`).

    Returns
    -------
    dict of str to pandas.DataFrame
        One frame per station, keyed ``nkr``, ``dica``, ``umc``. The same ``seed`` and
        ``patients`` always give identical frames.

    Raises
    ------
    ValueError
        If ``seed`` is negative or ``patients`` is smaller than the number of stations.
    """
    sizes = _checked_sizes(seed, patients)
    return {s: _station(s, i, sizes[s], seed) for i, s in enumerate(STATIONS)}


def write(
    out_dir: Path, seed: int = 2026, patients: int = DEFAULT_PATIENTS
) -> dict[str, Path]:
    """Write ``out_dir/<station>.parquet`` for each station; return the paths.

    Parameters
    ----------
    out_dir : pathlib.Path
        Folder for the files; created if missing. Existing files are overwritten.
    seed : int, default 2026
        Random seed, as in :func:`generate`.
    patients : int, default :data:`DEFAULT_PATIENTS`
        Total patients over the stations, as in :func:`generate`.

    Returns
    -------
    dict of str to pathlib.Path
        The Parquet file of each station.
    """
    sizes = _checked_sizes(seed, patients)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for index, station in enumerate(STATIONS):
        # Arrow-backed text columns write fast; the file reads back as generate()
        frame = _station(station, index, sizes[station], seed, arrow=True)
        path = out_dir / f"{station}.parquet"
        frame.to_parquet(path, index=False)
        paths[station] = path
    return paths
