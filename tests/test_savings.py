"""The quick scan of savings (pht.algorithms.savings): hand-computed numbers, the data
dictionary's prices and doses, the pooled utilisation figures, and bad input.

Hand computations use the data dictionary (docs/data-dictionary.md, "Dosing and
prices"): pembrolizumab EUR 28.60 per mg, 200 mg every 3 weeks (standard) or 400 mg
every 6 weeks (extended interval); nivolumab EUR 14.20 per mg, 240 mg every 2 weeks
or 480 mg every 4 weeks; 365.25 / (7 x weeks) administrations a year.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pht import synth
from pht.algorithms.savings import (
    RegimenCost,
    administrations_per_year,
    patients_per_year_from_utilisation,
    quick_scan,
    regimen_cost,
    regimen_cost_from_utilisation,
)
from pht.algorithms.utilisation import (
    Pooled,
    Rules,
    local_utilisation,
    pool_utilisation,
)
from pht.errors import ConfigError, DataError

PEMBRO = synth.PRICE_EUR_PER_MG["pembrolizumab"]
NIVO = synth.PRICE_EUR_PER_MG["nivolumab"]


def test_prices_are_the_data_dictionarys() -> None:
    assert (PEMBRO, NIVO) == (28.60, 14.20)


def test_cost_per_patient_year_by_hand() -> None:
    # 365.25 / 21 = 17.392857... administrations a year
    assert administrations_per_year(3) == pytest.approx(17.392857142857142, rel=1e-15)
    standard = regimen_cost(
        "standard", price_per_mg=PEMBRO, dose_mg=200, interval_weeks=3
    )
    # 28.60 x 200 = 5,720 a dose; x 17.392857 = 99,487.142857 ("about EUR 99,000 a year")
    assert standard.cost_per_patient_year == pytest.approx(
        99_487.142857142857, rel=1e-12
    )
    assert (standard.dose_mg, standard.interval_weeks, standard.basis) == (
        200,
        3,
        "dosing",
    )
    nivolumab = regimen_cost(
        "standard", price_per_mg=NIVO, dose_mg=240, interval_weeks=2
    )
    # 14.20 x 240 = 3,408 a dose; x 365.25 / 14 = 26.089286 -> 88,912.285714
    assert nivolumab.cost_per_patient_year == pytest.approx(
        88_912.285714285714, rel=1e-12
    )


def test_extended_interval_saves_nothing_on_the_drug() -> None:
    """Twice the dose at twice the interval: the same mg a year, so zero savings."""
    for price, dose, weeks in ((PEMBRO, 200, 3), (NIVO, 240, 2)):
        standard = regimen_cost(
            "standard", price_per_mg=price, dose_mg=dose, interval_weeks=weeks
        )
        extended = regimen_cost(
            "extended_interval",
            price_per_mg=price,
            dose_mg=2 * dose,
            interval_weeks=2 * weeks,
        )
        scan = quick_scan(standard, extended, patients_per_year=500)
        assert scan.annual_savings == pytest.approx(0.0, abs=1e-6)


def test_weight_based_quick_scan_by_hand() -> None:
    """Pembrolizumab weight-based at a mean 150 mg every 3 weeks, 400 patients a year,
    80% switching."""
    standard = regimen_cost(
        "standard", price_per_mg=PEMBRO, dose_mg=200, interval_weeks=3
    )
    weight = regimen_cost(
        "weight_based", price_per_mg=PEMBRO, dose_mg=150, interval_weeks=3
    )
    scan = quick_scan(
        standard, weight, patients_per_year=400, uptake=0.8, drug="pembrolizumab"
    )
    # per patient-year: 28.60 x 50 mg x 17.392857 = 24,871.785714
    assert scan.saving_per_patient_year == pytest.approx(24_871.785714285714, rel=1e-12)
    # 400 x 0.8 x 24,871.785714 = 7,958,971.43
    assert scan.annual_savings == pytest.approx(7_958_971.428571428, rel=1e-12)
    # weight-based costs 25% less a year (the data dictionary's "about 25%")
    assert (
        1 - weight.cost_per_patient_year / standard.cost_per_patient_year
        == pytest.approx(0.25)
    )
    # band +/-15%: 6,765,125.71 .. 9,152,817.14
    assert (scan.savings_low, scan.savings_high) == pytest.approx(
        (6_765_125.714285714, 9_152_817.142857143), rel=1e-12
    )
    rows = {r.parameter: r for r in scan.sensitivity}
    assert [r.parameter for r in scan.sensitivity] == [
        "price",
        "uptake",
        "patients_per_year",
    ]
    price, uptake, patients = rows["price"], rows["uptake"], rows["patients_per_year"]
    assert (price.base, price.low, price.high) == pytest.approx((1.0, 0.85, 1.15))
    assert (price.savings_low, price.savings_high) == pytest.approx(
        (6_765_125.714285714, 9_152_817.142857143), rel=1e-12
    )
    # uptake 0.68 .. 0.92: 400 x 0.68 x 24,871.79 = 6,765,125.71; x 0.92 = 9,152,817.14
    assert (uptake.low, uptake.high) == pytest.approx((0.68, 0.92))
    assert (uptake.savings_low, uptake.savings_high) == pytest.approx(
        (6_765_125.714285714, 9_152_817.142857143), rel=1e-12
    )
    assert (patients.low, patients.high) == pytest.approx((340.0, 460.0))
    assert patients.swing == pytest.approx(9_152_817.142857143 - 6_765_125.714285714)
    assert scan.drug == "pembrolizumab" and "patients per year x uptake" in scan.formula


def test_sensitivity_ranges_given_and_uptake_capped_at_one_by_default() -> None:
    standard = RegimenCost("standard", 100_000.0)
    alternative = RegimenCost("weight_based", 70_000.0)
    scan = quick_scan(
        standard,
        alternative,
        patients_per_year=100,
        band=0.2,
        price_range=(0.5, 1.0),
        patients_range=(50, 300),
    )
    rows = {r.parameter: r for r in scan.sensitivity}
    assert scan.annual_savings == 3_000_000.0
    assert (scan.savings_low, scan.savings_high) == pytest.approx(
        (2_400_000.0, 3_600_000.0)
    )
    assert (rows["price"].savings_low, rows["price"].savings_high) == (
        1_500_000.0,
        3_000_000.0,
    )
    # uptake 1.0 x (1 +/- 0.2), capped at a share of 1
    assert (rows["uptake"].low, rows["uptake"].high) == pytest.approx((0.8, 1.0))
    assert (
        rows["patients_per_year"].savings_low,
        rows["patients_per_year"].savings_high,
    ) == (
        1_500_000.0,
        9_000_000.0,
    )


def test_a_dearer_alternative_gives_negative_savings_with_an_ordered_band() -> None:
    scan = quick_scan(
        RegimenCost("standard", 50_000.0),
        RegimenCost("other", 60_000.0),
        patients_per_year=10,
    )
    assert scan.annual_savings == -100_000.0
    assert (scan.savings_low, scan.savings_high) == pytest.approx(
        (-115_000.0, -85_000.0)
    )


# -- from the pooled utilisation figures ----------------------------------------------------
@pytest.fixture(scope="module")
def umc() -> tuple[pd.DataFrame, Pooled]:
    """The umc extract (pharmacy columns) released and pooled by the utilisation kernels."""
    frame = synth.generate(seed=7, patients=3000)["umc"]
    released = local_utilisation(
        drug=frame["drug"].to_numpy(),
        regimen=frame["regimen"].to_numpy(),
        year=frame["start_date"].to_numpy(),
        measures={
            "administrations": frame["n_administrations"].to_numpy(),
            "mg": frame["dose_mg_total"].to_numpy(),
            "cost": frame["cost_eur"].to_numpy(),
        },
        rules=Rules(min_count=5),
    ).to_output()
    return frame, pool_utilisation({"umc": released})


def released_years(pooled: Pooled, drug: str, regimen: str) -> list[int]:
    return [
        y
        for y in pooled.years()
        if (e := pooled.get(y, drug, None, regimen)) is not None
        and e.patients is not None
    ]


def test_regimen_cost_from_utilisation_equals_pandas_on_the_rows(
    umc: tuple[pd.DataFrame, Pooled],
) -> None:
    frame, pooled = umc
    costs = {}
    for regimen in ("standard", "weight_based"):
        years = released_years(pooled, "pembrolizumab", regimen)
        assert len(years) >= 3
        cost = regimen_cost_from_utilisation(
            pooled,
            drug="pembrolizumab",
            regimen=regimen,
            years=years,
            price_per_mg=PEMBRO,
            interval_weeks=3,
        )
        # oracle: the mean dose per administration of the rows of those years
        rows = frame[
            (frame["drug"] == "pembrolizumab")
            & (frame["regimen"] == regimen)
            & frame["start_date"].dt.year.isin(years)
        ]
        dose = rows["dose_mg_total"].sum() / rows["n_administrations"].sum()
        assert cost.dose_mg == pytest.approx(dose, rel=1e-12)
        assert cost.cost_per_patient_year == pytest.approx(
            PEMBRO * dose * 365.25 / 21, rel=1e-12
        )
        assert cost.basis.startswith(f"utilisation {years[0]}-{years[-1]}: mean dose")
        costs[regimen] = cost
    assert costs["standard"].dose_mg == pytest.approx(200.0)  # always 200 mg
    # weight-based (2 mg/kg, 100-200 mg) is about 25% cheaper (data dictionary)
    ratio = (
        costs["weight_based"].cost_per_patient_year
        / costs["standard"].cost_per_patient_year
    )
    assert 0.65 < ratio < 0.85


def test_patients_per_year_from_utilisation(umc: tuple[pd.DataFrame, Pooled]) -> None:
    frame, pooled = umc
    years = [2021, 2022, 2023]
    got = patients_per_year_from_utilisation(pooled, drug="pembrolizumab", years=years)
    starts = frame[
        (frame["drug"] == "pembrolizumab") & frame["start_date"].dt.year.isin(years)
    ]
    assert got == len(starts) / 3


def test_a_suppressed_year_is_named(umc: tuple[pd.DataFrame, Pooled]) -> None:
    _, pooled = umc
    suppressed = [
        y
        for y in pooled.years()
        if (e := pooled.get(y, "pembrolizumab", None, "weight_based")) is not None
        and e.patients is None
    ]
    assert suppressed
    year = suppressed[0]
    with pytest.raises(
        DataError, match=rf"pembrolizumab x weight_based in {year} is suppressed"
    ) as error:
        regimen_cost_from_utilisation(
            pooled,
            drug="pembrolizumab",
            regimen="weight_based",
            years=[year],
            price_per_mg=PEMBRO,
            interval_weeks=3,
        )
    assert "\n" not in str(error.value) and "give dose_mg" in str(error.value)


def test_no_released_administrations_says_to_give_the_dose(
    umc: tuple[pd.DataFrame, Pooled],
) -> None:
    _, pooled = umc
    with pytest.raises(
        DataError, match=r"no mg and administrations of atezolizumab x standard"
    ):
        regimen_cost_from_utilisation(
            pooled,
            drug="atezolizumab",
            regimen="standard",
            years=[2022],
            price_per_mg=10.0,
            interval_weeks=3,
        )
    with pytest.raises(DataError, match=r"no patients on atezolizumab in 2022-2023"):
        patients_per_year_from_utilisation(
            pooled, drug="atezolizumab", years=[2022, 2023]
        )


# -- bad input ----------------------------------------------------------------------------
STD = RegimenCost("standard", 100.0)
ALT = RegimenCost("weight_based", 75.0)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: regimen_cost("s", price_per_mg=0, dose_mg=200, interval_weeks=3),
            r"price_per_mg must be > 0",
        ),
        (
            lambda: regimen_cost("s", price_per_mg=28.6, dose_mg=-1, interval_weeks=3),
            r"dose_mg must be > 0",
        ),
        (
            lambda: regimen_cost("s", price_per_mg=28.6, dose_mg=200, interval_weeks=0),
            r"interval_weeks must be > 0",
        ),
        (
            lambda: regimen_cost(
                "s", price_per_mg="28.6", dose_mg=200, interval_weeks=3
            ),
            r"price_per_mg must be a number",
        ),
        (
            lambda: regimen_cost(
                "s", price_per_mg=float("nan"), dose_mg=200, interval_weeks=3
            ),
            r"price_per_mg must be a finite",
        ),
        (lambda: RegimenCost("", 1.0), r"regimen must be a non-empty name"),
        (lambda: RegimenCost("s", -5.0), r"cost_per_patient_year of s must be >= 0"),
        (
            lambda: quick_scan(STD, RegimenCost("standard", 1.0), patients_per_year=1),
            r"both 'standard'",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=-3),
            r"patients_per_year must be >= 0",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=10, uptake=0),
            r"uptake must be a share in \(0, 1\]",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=10, uptake=1.5),
            r"uptake must be a share",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=10, band=1.0),
            r"band must be in \[0, 1\)",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=10, price_range=(1.2, 0.8)),
            r"price_range = \[1.2, 0.8\] has low > high; swap them",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=10, price_range=(0.8,)),
            r"price_range must be a pair \[low, high\]",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=10, price_range=(-0.1, 1)),
            r"price_range factors must be >= 0",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=10, uptake_range=(0.5, 1.2)),
            r"uptake_range must be a share in \[0, 1\]",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=10, patients_range=(-1, 20)),
            r"patients_range must be >= 0",
        ),
        (
            lambda: quick_scan(STD, ALT, patients_per_year=True),
            r"patients_per_year must be a number",
        ),
        (
            lambda: patients_per_year_from_utilisation(
                Pooled({}, {}, ()), drug="x", years=[]
            ),
            r"years is empty",
        ),
    ],
)
def test_bad_input_gives_one_line_naming_the_key(build: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as e:
        build()
    assert "\n" not in str(e.value) and str(e.value).startswith("quick scan: ")


def test_numbers_are_plain_floats() -> None:
    scan = quick_scan(STD, ALT, patients_per_year=np.float64(10.0).item())
    assert isinstance(scan.annual_savings, float) and scan.annual_savings == 250.0
