"""The quick scan of a dose reduction: expected annual savings with a band.

The targeted procedure for efficiency research (2024) asks, per candidate lower-cost
use, for a quick scan of the expected savings (price x patients x effect) with an
uncertainty margin. Here:

    annual savings = patients per year x uptake
                     x (cost per patient-year under the standard regimen
                        - cost per patient-year under the alternative)

* **cost per patient-year** of a regimen = price per mg x dose per administration x
  administrations per year, with ``365.25 / (7 x interval_weeks)`` administrations a
  year (:func:`regimen_cost`); the dose can be the mean dose per administration of
  the pooled utilisation figures (``mg / administrations`` of the drug and regimen,
  :func:`regimen_cost_from_utilisation`), which is what a weight-based regimen really
  gives; or the cost is given as is (:class:`RegimenCost`).
* **patients per year**: patients on the drug in a year, each treated for the year
  (the quick scan's simplification; :func:`patients_per_year_from_utilisation`
  gives the mean treatment starts a year of the pooled utilisation figures).
* **uptake**: the share of those patients who would switch to the alternative.

The result (:class:`QuickScan`) holds every number: the inputs, the saving per
patient-year, the annual savings, the band ``savings x (1 -/+ band)`` (default 15%)
and a one-way sensitivity table in which price (a factor on the list price of both
regimens), uptake and patients per year are each varied over a range while the
others stay at their base values. Drug costs only (no administration, wastage or
hospital costs), list prices without discounts.

Example
-------
Pembrolizumab at EUR 28.60 per mg: 200 mg every 3 weeks versus a mean weight-based
dose of 150 mg every 3 weeks, for 100 patients a year:

>>> standard = regimen_cost("standard", price_per_mg=28.6, dose_mg=200, interval_weeks=3)
>>> weight = regimen_cost("weight_based", price_per_mg=28.6, dose_mg=150, interval_weeks=3)
>>> round(standard.cost_per_patient_year, 2)
99487.14
>>> scan = quick_scan(standard, weight, patients_per_year=100)
>>> round(scan.annual_savings, 2), round(scan.savings_low, 2), round(scan.savings_high, 2)
(2487178.57, 2114101.79, 2860255.36)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pht.algorithms.utilisation import Pooled
from pht.errors import ConfigError, DataError

DAYS_PER_YEAR = 365.25
"""Days in a year (Julian), for administrations per year."""

FORMULA = (
    "annual savings = patients per year x uptake x (cost per patient-year standard - "
    "cost per patient-year alternative); cost per patient-year = price per mg x dose "
    "per administration x 365.25 / (7 x interval in weeks)"
)

Parameter = Literal["price", "uptake", "patients_per_year"]


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"quick scan: {key} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"quick scan: {key} must be a finite number, got {value!r}")
    return number


def _positive(value: object, key: str, example: str) -> float:
    number = _number(value, key)
    if number <= 0:
        raise ConfigError(
            f"quick scan: {key} must be > 0, got {value!r} (e.g. {key}: {example})"
        )
    return number


def administrations_per_year(interval_weeks: float) -> float:
    """``365.25 / (7 x interval_weeks)``: e.g. 17.39 for every 3 weeks."""
    return DAYS_PER_YEAR / (7 * _positive(interval_weeks, "interval_weeks", "3"))


@dataclass(frozen=True)
class RegimenCost:
    """The drug cost of one patient-year under a regimen, and what it came from.

    Give ``cost_per_patient_year`` directly, or build it with :func:`regimen_cost`
    or :func:`regimen_cost_from_utilisation` (which fill in the price, dose and
    interval). ``basis`` says where the number came from.
    """

    regimen: str
    cost_per_patient_year: float
    price_per_mg: float | None = None
    dose_mg: float | None = None
    interval_weeks: float | None = None
    administrations_per_year: float | None = None
    basis: str = "given"

    def __post_init__(self) -> None:
        if not isinstance(self.regimen, str) or not self.regimen:
            raise ConfigError(
                f"quick scan: regimen must be a non-empty name, got {self.regimen!r}"
            )
        cost = _number(self.cost_per_patient_year, "cost_per_patient_year")
        if cost < 0:
            raise ConfigError(
                f"quick scan: cost_per_patient_year of {self.regimen} must be >= 0, "
                f"got {cost:g}"
            )
        object.__setattr__(self, "cost_per_patient_year", cost)


def regimen_cost(
    regimen: str, *, price_per_mg: float, dose_mg: float, interval_weeks: float
) -> RegimenCost:
    """Cost per patient-year = price per mg x dose x administrations per year.

    ``regimen_cost("standard", price_per_mg=28.6, dose_mg=200, interval_weeks=3)``
    is EUR 5,720 x 17.39 = EUR 99,487.14 a year.
    """
    price = _positive(price_per_mg, "price_per_mg", "28.60")
    dose = _positive(dose_mg, "dose_mg", "200")
    per_year = administrations_per_year(interval_weeks)
    return RegimenCost(
        regimen=regimen,
        cost_per_patient_year=price * dose * per_year,
        price_per_mg=price,
        dose_mg=dose,
        interval_weeks=float(interval_weeks),
        administrations_per_year=per_year,
        basis="dosing",
    )


def _label(drug: str, indication: str | None, regimen: str | None = None) -> str:
    name = drug if indication is None else f"{drug} ({indication})"
    return name if regimen is None else f"{name} x {regimen}"


def _years(years: Iterable[int]) -> tuple[int, ...]:
    span = tuple(sorted(set(years)))
    if not span:
        raise ConfigError("quick scan: years is empty; give the years to average over")
    return span


def regimen_cost_from_utilisation(
    pooled: Pooled,
    *,
    drug: str,
    regimen: str,
    years: Iterable[int],
    price_per_mg: float,
    interval_weeks: float,
    indication: str | None = None,
) -> RegimenCost:
    """Cost per patient-year from the pooled utilisation's mean dose per administration.

    The dose is ``sum mg / sum administrations`` of the drug and regimen over
    ``years`` (all sites), from the stations that hold those columns; the cost is
    then as in :func:`regimen_cost`. For weight-based dosing this is the dose the
    patients actually got.

    Raises DataError naming the drug, regimen and year when an entry is suppressed or
    no administrations were released (then give ``dose_mg`` with :func:`regimen_cost`).
    """
    span = _years(years)
    label = _label(drug, indication, regimen)
    mg = administrations = 0.0
    for year in span:
        entry = pooled.get(year, drug, indication, regimen)
        if entry is None:
            continue  # no station holds the drug with this regimen in the year
        for name in ("mg", "administrations"):
            if name in entry.sums and entry.sums[name] is None:
                raise DataError(
                    f"utilisation: {name} of {label} in {year} is suppressed; leave "
                    f"{year} out of years or give dose_mg for {regimen}"
                )
        if entry.patients is None:
            raise DataError(
                f"utilisation: {label} in {year} is suppressed; leave {year} out of "
                f"years or give dose_mg for {regimen}"
            )
        mg += entry.sums.get("mg") or 0.0
        administrations += entry.sums.get("administrations") or 0.0
    if administrations <= 0 or mg <= 0:
        raise DataError(
            f"utilisation: no mg and administrations of {label} released in "
            f"{span[0]}-{span[-1]} (only stations with those columns release them); "
            f"give dose_mg for {regimen} instead"
        )
    dose = mg / administrations
    cost = regimen_cost(
        regimen, price_per_mg=price_per_mg, dose_mg=dose, interval_weeks=interval_weeks
    )
    return RegimenCost(
        regimen=regimen,
        cost_per_patient_year=cost.cost_per_patient_year,
        price_per_mg=cost.price_per_mg,
        dose_mg=dose,
        interval_weeks=cost.interval_weeks,
        administrations_per_year=cost.administrations_per_year,
        basis=(
            f"utilisation {span[0]}-{span[-1]}: mean dose {dose:.1f} mg over "
            f"{administrations:.0f} administrations"
        ),
    )


def patients_per_year_from_utilisation(
    pooled: Pooled,
    *,
    drug: str,
    years: Iterable[int],
    indication: str | None = None,
) -> float:
    """Mean treatment starts a year of the drug (all regimens, all sites).

    A year no station holds counts as 0; a suppressed year raises DataError naming
    it.
    """
    span = _years(years)
    counts = []
    for year in span:
        entry = pooled.get(year, drug, indication)
        if entry is not None and entry.patients is None:
            raise DataError(
                f"utilisation: the patients of {_label(drug, indication)} in {year} "
                f"are suppressed; leave {year} out of years or give patients_per_year"
            )
        counts.append(0 if entry is None else entry.patients or 0)
    if not any(counts):
        raise DataError(
            f"utilisation: no patients on {_label(drug, indication)} in "
            f"{span[0]}-{span[-1]}; check the drug's name or give patients_per_year"
        )
    return sum(counts) / len(counts)


@dataclass(frozen=True)
class Sensitivity:
    """One row of the one-way sensitivity table.

    ``parameter`` is varied from ``low`` to ``high`` (``unit`` says in what), the
    others stay at their base values; ``savings_low`` and ``savings_high`` are the
    annual savings at ``low`` and ``high``.
    """

    parameter: Parameter
    unit: str
    base: float
    low: float
    high: float
    savings_low: float
    savings_high: float

    @property
    def swing(self) -> float:
        """``|savings_high - savings_low|``, the width of the row's tornado bar."""
        return abs(self.savings_high - self.savings_low)


@dataclass(frozen=True)
class QuickScan:
    """The quick scan of one drug's dose reduction: every number of :data:`FORMULA`.

    ``savings_low`` and ``savings_high`` are the band ``annual_savings x (1 -/+
    band)`` (ordered, so also for a negative saving); ``sensitivity`` has one row per
    parameter, in the order price, uptake, patients per year.
    """

    drug: str
    standard: RegimenCost
    alternative: RegimenCost
    patients_per_year: float
    uptake: float
    saving_per_patient_year: float
    annual_savings: float
    band: float
    savings_low: float
    savings_high: float
    sensitivity: tuple[Sensitivity, ...]
    formula: str = FORMULA


def _range(value: object, key: str) -> tuple[float, float]:
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, tuple | list)
        or len(value) != 2
    ):
        raise ConfigError(
            f"quick scan: {key} must be a pair [low, high], got {value!r}"
        )
    low, high = (_number(v, key) for v in value)
    if low > high:
        raise ConfigError(
            f"quick scan: {key} = [{low:g}, {high:g}] has low > high; swap them"
        )
    return low, high


def _share(value: float, key: str) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(
            f"quick scan: {key} must be a share in [0, 1], got {value:g} (e.g. 0.8 "
            "for 80% of the patients)"
        )


def quick_scan(
    standard: RegimenCost,
    alternative: RegimenCost,
    *,
    patients_per_year: float,
    uptake: float = 1.0,
    band: float = 0.15,
    price_range: tuple[float, float] | None = None,
    uptake_range: tuple[float, float] | None = None,
    patients_range: tuple[float, float] | None = None,
    drug: str = "",
) -> QuickScan:
    """Annual savings of switching ``uptake`` of the patients to ``alternative``.

    Parameters
    ----------
    standard, alternative : the regimens' costs per patient-year.
    patients_per_year : patients on the drug in a year (>= 0).
    uptake : share of them switching, in (0, 1].
    band : relative uncertainty margin, in [0, 1): savings x (1 -/+ band).
    price_range : factors on the list price of both regimens; default
        ``(1 - band, 1 + band)``.
    uptake_range : uptake shares in [0, 1]; default
        ``(uptake (1 - band), min(1, uptake (1 + band)))``.
    patients_range : patients per year; default ``patients (1 -/+ band)``.
    drug : the drug's name, for the report.

    Raises
    ------
    ConfigError
        One line naming the key: a negative or non-finite number, an uptake or
        range outside its bounds, the same regimen twice.
    """
    if standard.regimen == alternative.regimen:
        raise ConfigError(
            f"quick scan: standard and alternative are both {standard.regimen!r}; "
            "compare two different regimens"
        )
    patients = _number(patients_per_year, "patients_per_year")
    if patients < 0:
        raise ConfigError(
            f"quick scan: patients_per_year must be >= 0, got {patients:g}"
        )
    share = _number(uptake, "uptake")
    if not 0 < share <= 1:
        raise ConfigError(
            f"quick scan: uptake must be a share in (0, 1], got {share:g} (e.g. 0.8 "
            "for 80% of the patients)"
        )
    margin = _number(band, "band")
    if not 0 <= margin < 1:
        raise ConfigError(
            f"quick scan: band must be in [0, 1), got {margin:g} (e.g. 0.15 for +/-15%)"
        )
    prices = (
        (1 - margin, 1 + margin)
        if price_range is None
        else _range(price_range, "price_range")
    )
    if prices[0] < 0:
        raise ConfigError(
            f"quick scan: price_range factors must be >= 0, got {prices[0]:g}"
        )
    shares = (
        (share * (1 - margin), min(1.0, share * (1 + margin)))
        if uptake_range is None
        else _range(uptake_range, "uptake_range")
    )
    _share(shares[0], "uptake_range")
    _share(shares[1], "uptake_range")
    counts = (
        (patients * (1 - margin), patients * (1 + margin))
        if patients_range is None
        else _range(patients_range, "patients_range")
    )
    if counts[0] < 0:
        raise ConfigError(f"quick scan: patients_range must be >= 0, got {counts[0]:g}")

    per_patient_year = (
        standard.cost_per_patient_year - alternative.cost_per_patient_year
    )

    def savings(price: float = 1.0, u: float = share, n: float = patients) -> float:
        return n * u * price * per_patient_year

    annual = savings()
    ends = sorted((annual * (1 - margin), annual * (1 + margin)))
    rows = (
        Sensitivity(
            "price", "factor on list price", 1.0, *prices, *map(savings, prices)
        ),
        Sensitivity(
            "uptake",
            "share of patients",
            share,
            *shares,
            *(savings(u=u) for u in shares),
        ),
        Sensitivity(
            "patients_per_year",
            "patients a year",
            patients,
            *counts,
            *(savings(n=n) for n in counts),
        ),
    )
    return QuickScan(
        drug=drug,
        standard=standard,
        alternative=alternative,
        patients_per_year=patients,
        uptake=share,
        saving_per_patient_year=per_patient_year,
        annual_savings=annual,
        band=margin,
        savings_low=ends[0],
        savings_high=ends[1],
        sensitivity=rows,
    )
