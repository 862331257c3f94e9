"""Equivalence and non-inferiority statistics (pht.algorithms.equivalence).

Oracles: statsmodels ``ttost_ind`` on the pooled rows for TOST of means (pooled and
Welch variance, raw and log scale), ``StratifiedTable`` for the Mantel-Haenszel odds
and risk ratios, ``Table2x2`` for the crude odds and risk ratios and
``confint_proportions_2indep`` / ``tost_proportions_2indep`` (Wald) for the crude
risk difference. The Mantel-Haenszel risk-ratio and risk-difference variances, which
statsmodels lacks, reduce to the crude ones with one stratum and are checked for
calibration by simulation. The verdict rules are checked on hand-made intervals, and
bad input must give one line naming the key.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.contingency_tables import StratifiedTable, Table2x2
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    tost_proportions_2indep,
)
from statsmodels.stats.weightstats import ttost_ind

from pht.algorithms.cox import Coefficient, CoxResult
from pht.algorithms.equivalence import (
    BinaryCounts,
    Effect,
    Hypothesis,
    hazard_ratio,
    hazard_ratio_from_cox,
    mantel_haenszel_odds_ratio,
    mantel_haenszel_risk_difference,
    mantel_haenszel_risk_ratio,
    mean_difference,
    odds_ratio,
    ratio_of_geometric_means,
    risk_difference,
    risk_ratio,
    rmst_difference,
    rmst_difference_from_km,
    verdict,
)
from pht.algorithms.km import Difference
from pht.algorithms.means import Moments
from pht.errors import ConfigError, DataError

TOL = 1e-10


def stations_of(x: np.ndarray, cuts: tuple[int, ...], log: bool = False) -> Moments:
    """The pooled moments of x split over stations at ``cuts`` (added, as pooled)."""
    parts = np.split(x, cuts)
    total = Moments.from_values(parts[0], log=log)
    for part in parts[1:]:
        total = total + Moments.from_values(part, log=log)
    return total


# -- TOST of means == statsmodels ttost_ind on the pooled rows ---------------------------
@pytest.mark.parametrize(
    ("usevar", "variance"), [("pooled", "pooled"), ("unequal", "welch")]
)
@pytest.mark.parametrize(("low", "upp"), [(-5.0, 5.0), (-2.0, 8.0), (-1.0, 0.5)])
def test_tost_means_equals_statsmodels_ttost_ind(
    usevar: str, variance: Any, low: float, upp: float
) -> None:
    rng = np.random.default_rng(12)
    x1 = rng.normal(101.0, 12.0, 47)  # the alternative, e.g. cost in kEUR
    x2 = rng.normal(99.0, 20.0, 83)  # the standard (unequal variances)
    # oracle: statsmodels on the pooled rows
    p, (t1, p1, df1), (t2, p2, df2) = ttost_ind(x1, x2, low, upp, usevar=usevar)
    # pht: moments released by three stations per arm, added
    effect = mean_difference(
        stations_of(x1, (10, 30)), stations_of(x2, (40, 41)), variance=variance
    )
    v = verdict(
        effect,
        Hypothesis.equivalence("mean_difference", low, upp, higher_is_better=False),
    )
    assert effect.df == pytest.approx(df1, rel=TOL) and df1 == df2
    assert v.p_lower == pytest.approx(p1, rel=TOL, abs=TOL)
    assert v.p_upper == pytest.approx(p2, rel=TOL, abs=TOL)
    assert v.p_value == pytest.approx(p, rel=TOL, abs=TOL)
    assert (effect.log_estimate - low) / effect.se == pytest.approx(t1, rel=TOL)
    assert (effect.log_estimate - upp) / effect.se == pytest.approx(t2, rel=TOL)
    assert effect.estimate == pytest.approx(x1.mean() - x2.mean(), rel=TOL)
    # TOST rejects (p < alpha) exactly when the 90% CI lies inside the margins
    assert (v.verdict == "equivalent") == (p < 0.05)


@pytest.mark.parametrize(
    ("usevar", "variance"), [("pooled", "pooled"), ("unequal", "welch")]
)
def test_ratio_of_geometric_means_equals_statsmodels_ttost_ind_on_logs(
    usevar: str, variance: Any
) -> None:
    rng = np.random.default_rng(3)
    x1 = rng.lognormal(math.log(7000), 0.5, 60)  # dose_mg_total, weight-based
    x2 = rng.lognormal(math.log(8000), 0.4, 90)  # standard
    # oracle: ttost_ind with transform=np.log (it logs the margins too)
    p, (_, p1, df1), (_, p2, _) = ttost_ind(
        x1, x2, 0.8, 1.25, usevar=usevar, transform=np.log
    )
    effect = ratio_of_geometric_means(
        stations_of(x1, (25,), log=True),
        stations_of(x2, (30, 60), log=True),
        variance=variance,
    )
    v = verdict(
        effect,
        Hypothesis.equivalence(
            "ratio_of_geometric_means", 0.8, 1.25, higher_is_better=False
        ),
    )
    assert effect.df == pytest.approx(df1, rel=TOL)
    assert (v.p_lower, v.p_upper, v.p_value) == pytest.approx(
        (p1, p2, p), rel=TOL, abs=TOL
    )
    geometric = math.exp(np.log(x1).mean() - np.log(x2).mean())
    assert effect.estimate == pytest.approx(geometric, rel=TOL)


def test_tost_confidence_intervals_equal_statsmodels() -> None:
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    rng = np.random.default_rng(5)
    x1, x2 = rng.normal(3, 1, 30), rng.normal(3.2, 1.5, 25)
    compare = CompareMeans(DescrStatsW(x1), DescrStatsW(x2))
    for variance, usevar in (("pooled", "pooled"), ("welch", "unequal")):
        effect = mean_difference(
            Moments.from_values(x1), Moments.from_values(x2), variance=variance
        )
        assert (effect.tost_ci.lower, effect.tost_ci.upper) == pytest.approx(
            compare.tconfint_diff(alpha=0.10, usevar=usevar), rel=TOL
        )
        assert (effect.ci.lower, effect.ci.upper) == pytest.approx(
            compare.tconfint_diff(alpha=0.05, usevar=usevar), rel=TOL
        )
        assert (effect.tost_ci.level, effect.ci.level) == pytest.approx((0.9, 0.95))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=4), st.randoms())
def test_mean_difference_does_not_depend_on_the_split_over_stations(
    sizes: list[int], random: Any
) -> None:
    rng = np.random.default_rng(random.randint(0, 2**32 - 1))
    x1, x2 = rng.normal(10, 2, 50), rng.normal(11, 3, 45)
    cuts = tuple(np.cumsum(sizes)[np.cumsum(sizes) < 50])
    whole = mean_difference(Moments.from_values(x1), Moments.from_values(x2))
    split = mean_difference(stations_of(x1, cuts), Moments.from_values(x2))
    assert split.log_estimate == pytest.approx(whole.log_estimate, rel=1e-12, abs=1e-12)
    assert split.se == pytest.approx(whole.se, rel=1e-10)


# -- binary outcomes: Mantel-Haenszel == statsmodels StratifiedTable ----------------------
def random_strata(seed: int, k: int = 3) -> list[BinaryCounts]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(k):
        n1, n0 = int(rng.integers(20, 200)), int(rng.integers(50, 400))
        p0 = rng.uniform(0.1, 0.5)
        p1 = min(0.95, p0 * rng.uniform(0.6, 1.4))
        out.append(
            BinaryCounts(
                int(rng.binomial(n1, p1)), n1, int(rng.binomial(n0, p0)), n0, f"s{i}"
            )
        )
    return out


def as_statsmodels(tables: list[BinaryCounts]) -> list[np.ndarray]:
    """statsmodels' layout: rows = arm (group first), columns = event, no event."""
    return [np.array(t.cells(), dtype=float).reshape(2, 2) for t in tables]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("alpha", [0.05, 0.025])
def test_mantel_haenszel_equals_statsmodels_stratified_table(
    seed: int, alpha: float
) -> None:
    tables = random_strata(seed, k=2 + seed)
    oracle = StratifiedTable(as_statsmodels(tables))
    mh_or = mantel_haenszel_odds_ratio(tables, alpha=alpha)
    assert mh_or.estimate == pytest.approx(oracle.oddsratio_pooled, rel=TOL)
    assert mh_or.se == pytest.approx(oracle.logodds_pooled_se, rel=TOL)
    assert (mh_or.ci.lower, mh_or.ci.upper) == pytest.approx(
        oracle.oddsratio_pooled_confint(alpha=alpha), rel=TOL
    )
    assert (mh_or.tost_ci.lower, mh_or.tost_ci.upper) == pytest.approx(
        oracle.oddsratio_pooled_confint(alpha=2 * alpha), rel=TOL
    )
    mh_rr = mantel_haenszel_risk_ratio(tables, alpha=alpha)
    assert mh_rr.estimate == pytest.approx(oracle.riskratio_pooled, rel=TOL)
    assert not mh_or.continuity_correction and not mh_rr.continuity_correction
    assert mh_or.method == "Mantel-Haenszel" and mh_or.notes == ()


def test_mantel_haenszel_does_not_depend_on_station_order() -> None:
    tables = random_strata(9, k=5)
    for kernel in (
        mantel_haenszel_odds_ratio,
        mantel_haenszel_risk_ratio,
        mantel_haenszel_risk_difference,
    ):
        a, b = kernel(tables), kernel(tables[::-1])
        assert (b.log_estimate, b.se) == pytest.approx(
            (a.log_estimate, a.se), rel=1e-13
        )


def test_zero_cells_in_some_strata_need_no_correction_for_mantel_haenszel() -> None:
    tables = [BinaryCounts(0, 30, 4, 60, "nkr"), *random_strata(5)]
    oracle = StratifiedTable(as_statsmodels(tables), shift_zeros=False)
    effect = mantel_haenszel_odds_ratio(tables)
    assert effect.estimate == pytest.approx(oracle.oddsratio_pooled, rel=TOL)
    assert effect.se == pytest.approx(oracle.logodds_pooled_se, rel=TOL)
    assert not effect.continuity_correction


def test_mantel_haenszel_with_no_events_in_an_arm_is_corrected_and_says_so() -> None:
    # no events in the group arm anywhere: sum R = 0, the MH odds ratio would be 0
    tables = [BinaryCounts(0, 30, 4, 60, "dica"), BinaryCounts(0, 25, 9, 80, "umc")]
    oracle = StratifiedTable(as_statsmodels(tables), shift_zeros=True)
    effect = mantel_haenszel_odds_ratio(tables)
    assert effect.continuity_correction
    assert effect.estimate == pytest.approx(oracle.oddsratio_pooled, rel=TOL)
    assert effect.se == pytest.approx(oracle.logodds_pooled_se, rel=TOL)
    assert any("0.5 added" in n and "dica, umc" in n for n in effect.notes)
    rr = mantel_haenszel_risk_ratio(tables)
    assert rr.continuity_correction
    assert rr.estimate == pytest.approx(oracle.riskratio_pooled, rel=TOL)


def test_strata_without_both_arms_are_left_out_and_named() -> None:
    # nkr gives (almost) only standard dosing: no weight-based patients at all
    informative = random_strata(6)
    tables = [BinaryCounts(0, 0, 50, 400, "nkr"), *informative]
    oracle = StratifiedTable(as_statsmodels(informative))
    effect = mantel_haenszel_odds_ratio(tables)
    assert effect.estimate == pytest.approx(oracle.oddsratio_pooled, rel=TOL)
    assert effect.se == pytest.approx(oracle.logodds_pooled_se, rel=TOL)
    assert effect.notes == ("strata without patients in both arms left out: nkr",)
    assert effect.n_group == sum(t.n_group for t in informative)


def test_mantel_haenszel_with_one_stratum_is_the_crude_measure() -> None:
    table = random_strata(7, k=1)[0]
    oracle = Table2x2(np.array(table.cells(), dtype=float).reshape(2, 2))
    rr = mantel_haenszel_risk_ratio([table])
    assert rr.estimate == pytest.approx(oracle.riskratio, rel=TOL)
    assert rr.se == pytest.approx(oracle.log_riskratio_se, rel=TOL)
    rd, crude = mantel_haenszel_risk_difference([table]), risk_difference(table)
    assert (rd.estimate, rd.se) == pytest.approx((crude.estimate, crude.se), rel=TOL)


def test_mantel_haenszel_rr_and_rd_variances_are_calibrated() -> None:
    """Greenland-Robins variances vs the spread of the estimates over 4,000 samples.

    Three strata of unequal sizes and risks with a common RR of 0.8; the mean
    estimated variance must be within 7% of the empirical variance (Monte-Carlo SE
    about 2%). A wrong formula fails: without the ``- a c`` term the RR variance is
    28% too large here, and the RD variance with ``n^2`` for ``n^3`` and ``N`` for
    ``N^2`` is off by 90%.
    """
    rng = np.random.default_rng(2026)
    n1 = np.array([60, 150, 400])
    n0 = np.array([240, 300, 200])
    p0 = np.array([0.35, 0.2, 0.3])
    p1 = 0.8 * p0
    reps = 4000
    a = rng.binomial(n1, p1, size=(reps, 3))
    c = rng.binomial(n0, p0, size=(reps, 3))
    log_rr, var_rr, rd, var_rd = [], [], [], []
    for i in range(reps):
        tables = [
            BinaryCounts(int(a[i, k]), int(n1[k]), int(c[i, k]), int(n0[k]))
            for k in range(3)
        ]
        e = mantel_haenszel_risk_ratio(tables)
        log_rr.append(e.log_estimate)
        var_rr.append(e.se**2)
        d = mantel_haenszel_risk_difference(tables)
        rd.append(d.estimate)
        var_rd.append(d.se**2)
    assert np.mean(var_rr) == pytest.approx(np.var(log_rr), rel=0.07)
    assert np.mean(var_rd) == pytest.approx(np.var(rd), rel=0.07)


# -- crude measures == Table2x2 and the Wald risk difference --------------------------------
@pytest.mark.parametrize(
    "cells",
    [(30, 120, 45, 155), (12, 8, 20, 30), (0, 40, 7, 93), (5, 0, 9, 11)],
    ids=["plain", "common", "zero-events", "zero-non-events"],
)
def test_crude_odds_and_risk_ratio_equal_statsmodels_table2x2(
    cells: tuple[int, int, int, int],
) -> None:
    a, b, c, d = cells
    table = BinaryCounts(a, a + b, c, c + d)
    # a table with a zero cell gets 0.5 added to every cell (Haldane-Anscombe, as
    # StratifiedTable(shift_zeros=True) and RevMan); Table2x2's own shift_zeros sets
    # only the zero cells to 0.5, so the oracle gets the shifted table
    shifted = np.array(cells, dtype=float).reshape(2, 2) + (0.5 if 0 in cells else 0)
    oracle = Table2x2(shifted, shift_zeros=False)
    o, r = odds_ratio(table, alpha=0.05), risk_ratio(table, alpha=0.05)
    assert o.estimate == pytest.approx(oracle.oddsratio, rel=TOL)
    assert o.se == pytest.approx(oracle.log_oddsratio_se, rel=TOL)
    assert (o.ci.lower, o.ci.upper) == pytest.approx(
        oracle.oddsratio_confint(0.05), rel=TOL
    )
    assert (o.tost_ci.lower, o.tost_ci.upper) == pytest.approx(
        oracle.oddsratio_confint(0.10), rel=TOL
    )
    assert r.estimate == pytest.approx(oracle.riskratio, rel=TOL)
    assert r.se == pytest.approx(oracle.log_riskratio_se, rel=TOL)
    assert (r.ci.lower, r.ci.upper) == pytest.approx(
        oracle.riskratio_confint(0.05), rel=TOL
    )
    corrected = 0 in cells
    assert o.continuity_correction == r.continuity_correction == corrected
    assert bool(o.notes) == corrected and (not corrected or "0.5" in o.notes[0])


@pytest.mark.parametrize(("a", "n1", "c", "n0"), [(30, 150, 45, 200), (0, 40, 7, 100)])
def test_crude_risk_difference_equals_statsmodels_wald(
    a: int, n1: int, c: int, n0: int
) -> None:
    effect = risk_difference(BinaryCounts(a, n1, c, n0))
    oracle = confint_proportions_2indep(a, n1, c, n0, method="wald", compare="diff")
    assert (effect.ci.lower, effect.ci.upper) == pytest.approx(oracle, rel=TOL, abs=TOL)
    v = verdict(
        effect,
        Hypothesis.equivalence("risk_difference", -0.1, 0.1, higher_is_better=False),
    )
    tost = tost_proportions_2indep(
        a, n1, c, n0, -0.1, 0.1, method="wald", compare="diff", correction=False
    )
    assert v.p_value == pytest.approx(tost.pvalue, rel=TOL, abs=TOL)
    assert v.p_lower == pytest.approx(tost.results_larger.pvalue, rel=TOL, abs=TOL)
    assert v.p_upper == pytest.approx(tost.results_smaller.pvalue, rel=TOL, abs=TOL)


def test_crude_table_is_the_sum_of_the_strata() -> None:
    tables = random_strata(8)
    total = tables[0] + tables[1] + tables[2]
    assert total.n_group == sum(t.n_group for t in tables)
    assert total.events_reference == sum(t.events_reference for t in tables)


# -- estimates given with their SE --------------------------------------------------------
def test_hazard_ratio_from_a_cox_result_and_rmst_from_km() -> None:
    coef = Coefficient("regimen[weight_based]", -0.03, 0.08, 0.97, 0, 0, 0, 0)
    cox = CoxResult(
        coefficients=(coef,),
        loglik=0,
        null_loglik=0,
        lr_statistic=0,
        lr_df=1,
        lr_p_value=1,
        covariance=np.eye(1),
        iterations=3,
        step_halvings=0,
        converged=True,
    )
    hr = hazard_ratio_from_cox(cox, "regimen[weight_based]", alpha=0.025)
    assert hr.estimate == pytest.approx(math.exp(-0.03))
    assert hr.ci.upper == pytest.approx(math.exp(-0.03 + 2.241402727604947 * 0.08))
    assert hr.tost_ci.upper == pytest.approx(math.exp(-0.03 + 1.959963984540054 * 0.08))
    with pytest.raises(ConfigError, match=r"'regimen\[x\]' is not in the Cox model"):
        hazard_ratio_from_cox(cox, "regimen[x]")
    d = Difference("weight_based", "standard", 12.0, 9.0, 0, 0, 0, 0)
    rmst = rmst_difference_from_km(d)
    assert (rmst.estimate, rmst.se, rmst.measure) == (12.0, 9.0, "rmst_difference")
    assert rmst.tost_ci.lower == pytest.approx(12.0 - 1.6448536269514722 * 9.0)


# -- verdicts on hand-made intervals ------------------------------------------------------------
Z975 = 1.959963984540054


def hr(ci_lower: float, ci_upper: float) -> Effect:
    """A hazard ratio whose 95% CI (alpha 0.025: the 1 - 2 alpha CI) is given."""
    lo, hi = math.log(ci_lower), math.log(ci_upper)
    return hazard_ratio((lo + hi) / 2, (hi - lo) / (2 * Z975), alpha=0.025)


def rmst(ci_lower: float, ci_upper: float) -> Effect:
    """An RMST difference (days) whose 95% CI is given."""
    return rmst_difference(
        (ci_lower + ci_upper) / 2, (ci_upper - ci_lower) / (2 * Z975), alpha=0.025
    )


HR_NI = Hypothesis.non_inferiority("hazard_ratio", 1.25, higher_is_better=False)
RMST_NI = Hypothesis.non_inferiority("rmst_difference", -30.0, higher_is_better=True)


@pytest.mark.parametrize(
    ("ci", "expected"),
    [
        ((0.70, 0.95), "superior"),
        ((0.85, 1.15), "non-inferior"),
        ((1.02, 1.20), "non-inferior"),  # worse than standard, yet within the margin
        ((0.95, 1.40), "inconclusive"),
        ((1.30, 1.70), "inferior"),
        ((1.10, 1.40), "inconclusive"),  # beyond the null and across the margin
    ],
)
def test_non_inferiority_verdicts_where_higher_is_worse(
    ci: tuple[float, float], expected: str
) -> None:
    v = verdict(hr(*ci), HR_NI)
    assert v.verdict == expected
    assert (v.ci_lower, v.ci_upper) == pytest.approx(ci)
    assert v.lower is None and v.upper == 1.25 and v.p_lower is None
    # non-inferior (or better) exactly when the one-sided p is below alpha
    assert (v.verdict in ("non-inferior", "superior")) == (v.p_value < 0.025)
    assert (v.verdict == "superior") == (v.p_superiority < 0.025)
    if expected == "non-inferior":
        assert v.rule.startswith("upper bound") and "< margin 1.25" in v.rule


@pytest.mark.parametrize(
    ("ci", "expected"),
    [
        ((5.0, 40.0), "superior"),
        ((-20.0, 25.0), "non-inferior"),
        ((-25.0, -2.0), "non-inferior"),
        ((-45.0, 10.0), "inconclusive"),
        ((-90.0, -35.0), "inferior"),
    ],
)
def test_non_inferiority_verdicts_where_higher_is_better(
    ci: tuple[float, float], expected: str
) -> None:
    v = verdict(rmst(*ci), RMST_NI)
    assert v.verdict == expected
    assert v.lower == -30.0 and v.upper is None and v.p_upper is None
    assert (v.verdict in ("non-inferior", "superior")) == (v.p_value < 0.025)
    if expected == "non-inferior":
        assert v.rule.startswith("lower bound") and "> margin -30" in v.rule


@pytest.mark.parametrize(
    ("ci", "better", "expected"),
    [
        ((0.90, 1.10), False, "equivalent"),
        ((0.82, 0.97), False, "equivalent"),  # inside the margins wins over superior
        ((0.55, 0.78), False, "superior"),
        ((0.70, 0.95), False, "superior"),  # crosses the lower margin, below the null
        ((1.30, 1.60), False, "inferior"),
        ((0.90, 1.30), False, "inconclusive"),
        ((1.05, 1.35), False, "inconclusive"),  # above the null, across the margin
        ((1.30, 1.60), True, "superior"),  # same interval, the other direction
        ((0.55, 0.78), True, "inferior"),
        ((0.75, 1.30), True, "inconclusive"),
    ],
)
def test_equivalence_verdicts_in_both_directions(
    ci: tuple[float, float], better: bool, expected: str
) -> None:
    h = Hypothesis.equivalence(
        "hazard_ratio", 0.8, 1.25, higher_is_better=better, alpha=0.025
    )
    v = verdict(hr(*ci), h)
    assert v.verdict == expected
    assert v.p_lower is not None and v.p_upper is not None
    assert v.p_value == max(v.p_lower, v.p_upper)
    assert (v.verdict == "equivalent") == (v.p_value < 0.025)
    assert v.kind == "equivalence" and v.level == pytest.approx(0.95)


def test_default_levels_tost_90_and_non_inferiority_95() -> None:
    assert (
        Hypothesis.equivalence("odds_ratio", 0.8, 1.25, higher_is_better=False).alpha
        == 0.05
    )
    assert (
        Hypothesis.non_inferiority("odds_ratio", 1.25, higher_is_better=False).alpha
        == 0.025
    )


# -- bad input: one line naming the key ----------------------------------------------------------
def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: Hypothesis.non_inferiority(
                "hazard_ratio", 0.8, higher_is_better=False
            ),
            r"margin = 0.8 is on the wrong side of the null 1: .*must be above 1 \(e.g. 1.25\)",
        ),
        (
            lambda: Hypothesis.non_inferiority(
                "rmst_difference", 30, higher_is_better=True
            ),
            r"margin = 30 is on the wrong side of the null 0: .*below 0",
        ),
        (
            lambda: Hypothesis.equivalence(
                "risk_ratio", 1.1, 1.25, higher_is_better=False
            ),
            r"lower = 1.1 is on the wrong side of the null 1 of risk_ratio",
        ),
        (
            lambda: Hypothesis.equivalence(
                "mean_difference", -1, -0.5, higher_is_better=True
            ),
            r"upper = -0.5 is on the wrong side of the null 0",
        ),
        (
            lambda: Hypothesis.equivalence(
                "odds_ratio", 1.25, 0.8, higher_is_better=False
            ),
            r"lower = 1.25 must be below upper = 0.8; swap them",
        ),
        (
            lambda: Hypothesis.equivalence(
                "hazard_ratio", -0.8, 1.25, higher_is_better=False
            ),
            r"lower = -0.8: a margin of hazard_ratio is a ratio and must be > 0",
        ),
        (
            lambda: Hypothesis.non_inferiority("odds_ratio", 0, higher_is_better=True),
            r"margin = 0: a margin of odds_ratio is a ratio and must be > 0",
        ),
        (
            lambda: Hypothesis.equivalence(
                "hazard_ratio", 0.8, 1.25, higher_is_better=False, alpha=0.5
            ),
            r"alpha must be in \(0, 0.5\), got 0.5",
        ),
        (
            lambda: Hypothesis.non_inferiority(
                "hazard_ratio", 1.25, higher_is_better=False, alpha=0
            ),
            r"alpha must be in \(0, 0.5\)",
        ),
        (
            lambda: Hypothesis.non_inferiority(
                "hazard_ratio", float("nan"), higher_is_better=False
            ),
            r"^margin must be a finite number, got nan",
        ),
        (
            lambda: Hypothesis.non_inferiority("hazard", 1.25, higher_is_better=False),
            r"measure: 'hazard' is not known; use one of mean_difference",
        ),
        (
            lambda: Hypothesis(
                "non_inferiority", "hazard_ratio", 0.8, 1.25, higher_is_better=False
            ),
            r"lower: a non-inferiority hypothesis where lower is better has only an? "
            r"upper margin; leave out lower",
        ),
        (
            lambda: Hypothesis.non_inferiority(
                "hazard_ratio",
                1.25,
                higher_is_better="no",
                outcome="os",  # type: ignore[arg-type]
            ),
            r"outcome 'os': higher_is_better must be true or false",
        ),
    ],
)
def test_bad_hypotheses_give_one_line_naming_the_key(build: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as error:
        build()
    one_line(error)


def test_the_outcome_is_named_in_hypothesis_errors() -> None:
    with pytest.raises(ConfigError, match=r"^outcome 'tox_grade3': margin = 0.9") as e:
        Hypothesis.non_inferiority(
            "risk_ratio", 0.9, higher_is_better=False, outcome="tox_grade3"
        )
    one_line(e)


def test_an_arm_without_patients_is_named() -> None:
    with pytest.raises(DataError, match=r"arm 'weight_based' has no patients") as e:
        risk_ratio(BinaryCounts(0, 0, 5, 50), arms=("weight_based", "standard"))
    one_line(e)
    with pytest.raises(
        DataError, match=r"arm 'standard' has no patients in any stratum"
    ):
        mantel_haenszel_odds_ratio(
            [BinaryCounts(3, 10, 0, 0, "a"), BinaryCounts(4, 12, 0, 0, "b")],
            arms=("weight_based", "standard"),
        )
    with pytest.raises(DataError, match=r"no stratum has patients in both arms"):
        mantel_haenszel_risk_ratio(
            [BinaryCounts(3, 10, 0, 0, "a"), BinaryCounts(0, 0, 4, 12, "b")]
        )
    with pytest.raises(DataError, match=r"arm 'extended' has no patients"):
        mean_difference(
            Moments(0, 0.0, 0.0),
            Moments.from_values([1.0, 2.0]),
            arms=("extended", "std"),
        )
    with pytest.raises(DataError, match=r"arm 'extended' has 1 patient"):
        mean_difference(
            Moments.from_values([3.0]),
            Moments.from_values([1.0, 2.0]),
            arms=("extended", "std"),
        )


@pytest.mark.parametrize(
    ("build", "error", "expected"),
    [
        (
            lambda: BinaryCounts(11, 10, 0, 5, "umc"),
            DataError,
            r"stratum 'umc': events_group = 11 exceeds n_group = 10",
        ),
        (lambda: BinaryCounts(-1, 10, 0, 5), DataError, r"events_group must be >= 0"),
        (
            lambda: BinaryCounts(1.5, 10, 0, 5),
            DataError,
            r"events_group must be a whole number",
        ),  # type: ignore[arg-type]
        (lambda: Moments(3, 1.0, -2.0), DataError, r"squares = -2 is negative"),
        (
            lambda: Moments.from_values([1.0, 0.0], log=True),
            DataError,
            r"has values <= 0",
        ),
        (
            lambda: mean_difference(
                Moments.from_values([1.0, 2], log=True),
                Moments.from_values([1.0, 3], log=True),
            ),
            ConfigError,
            r"mean_difference needs moments on the raw scale.*ratio_of_geometric_means",
        ),
        (
            lambda: ratio_of_geometric_means(
                Moments.from_values([1.0, 2]), Moments.from_values([1.0, 3])
            ),
            ConfigError,
            r"needs moments of log values",
        ),
        (
            lambda: mean_difference(
                Moments.from_values([1.0, 2]),
                Moments.from_values([1.0, 3]),
                variance="satterthwaite",
            ),  # type: ignore[arg-type]
            ConfigError,
            r"variance must be 'pooled' or 'welch', got 'satterthwaite'",
        ),
        (
            lambda: mean_difference(
                Moments.from_values([2.0, 2]), Moments.from_values([1.0, 1])
            ),
            DataError,
            r"every value is the same in both arms",
        ),
        (lambda: risk_difference(BinaryCounts(0, 10, 0, 20)), DataError, r"SE is 0"),
        (
            lambda: mantel_haenszel_risk_difference([BinaryCounts(10, 10, 20, 20)]),
            DataError,
            r"SE is 0",
        ),
        (
            lambda: hazard_ratio(0.1, 0.0),
            DataError,
            r"hazard_ratio: the standard error must be > 0",
        ),
        (
            lambda: hazard_ratio(float("inf"), 0.1),
            ConfigError,
            r"hazard_ratio estimate must be a finite",
        ),
        (
            lambda: hazard_ratio(0.1, 0.1, alpha=0.6),
            ConfigError,
            r"alpha must be in \(0, 0.5\)",
        ),
        (lambda: mantel_haenszel_odds_ratio([]), DataError, r"no strata given"),
    ],
)
def test_bad_aggregates_give_one_line(
    build: Any, error: type[Exception], expected: str
) -> None:
    with pytest.raises(error, match=expected) as e:
        build()
    one_line(e)


def test_an_effect_must_fit_its_hypothesis() -> None:
    effect = risk_ratio(BinaryCounts(10, 100, 12, 100))
    with pytest.raises(
        ConfigError,
        match=r"outcome 'tox': the hypothesis is about hazard_ratio but the effect is a risk_ratio",
    ) as e:
        verdict(
            effect,
            Hypothesis.non_inferiority(
                "hazard_ratio", 1.25, higher_is_better=False, alpha=0.05, outcome="tox"
            ),
        )
    one_line(e)
    with pytest.raises(
        ConfigError,
        match=r"computed at alpha = 0.05 but the hypothesis has alpha = 0.025; "
        r"compute the effect with alpha=0.025",
    ):
        verdict(
            effect,
            Hypothesis.non_inferiority("risk_ratio", 1.25, higher_is_better=False),
        )
    with pytest.raises(ConfigError, match=r"an equivalence hypothesis has two margins"):
        _ = Hypothesis.equivalence(
            "risk_ratio", 0.8, 1.25, higher_is_better=False
        ).margin


def test_t_measures_take_any_arm_summary_with_n_mean_variance_log() -> None:
    """E.g. moments kept as centred sums of squares (the ArmSummary protocol)."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Centred:
        n: int
        mean: float
        variance: float
        log: bool = False

    rng = np.random.default_rng(11)
    x1, x2 = rng.normal(5, 1, 40), rng.normal(5.2, 1.3, 30)
    arms = [Centred(len(x), float(x.mean()), float(x.var(ddof=1))) for x in (x1, x2)]
    effect = mean_difference(*arms, variance="pooled")
    h = Hypothesis.equivalence("mean_difference", -0.5, 0.5, higher_is_better=True)
    p = ttost_ind(x1, x2, -0.5, 0.5, usevar="pooled")[0]
    assert verdict(effect, h).p_value == pytest.approx(p, rel=TOL, abs=TOL)
