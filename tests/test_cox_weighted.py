"""Case-weighted Cox with robust (sandwich) standard errors == the fit on pooled rows.

Oracles, on lifelines' ``load_rossi`` and ``load_lung`` (``tests/reference/*.csv``):

* R survival 3.5-3, ``coxph(..., weights = v, robust = TRUE)`` with Efron and Breslow
  ties (``tests/reference/cox_weighted_reference.R`` made
  ``cox_weighted_reference.json``): coefficients, robust SEs (``fit$var``), model SEs
  (``fit$naive.var``) and log-likelihoods, with ``strata(station)`` (a baseline hazard
  per station) and without (pooled mode over the same stations);
* lifelines ``CoxPHFitter(weights_col=, strata=[station])``: coefficients and model
  SEs on the tied rows; robust SEs (``robust=True``) on rows without tied times,
  because lifelines' score residuals ignore ties (on tied rossi, unstratified, with
  the continuous weights, its robust SE of ``fin`` is 0.2200 to 0.2201 depending on
  the row order, where R's, and ours, is 0.2231);
* an integer weight is the row repeated (Breslow ties).

Weights by row position ``i = 1..n``, as in the R script: ``0.2 + 4.8 * frac(i *
0.6180339887498949)`` (continuous, 0.2 to 5) and ``1 + i mod 4`` (integer).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import CoxPHFitter
from lifelines.exceptions import StatisticalWarning

from pht.algorithms.cox import SortedRows, Ties, add_terms
from pht.algorithms.cox_weighted import (
    WeightedCoxResult,
    fit_weighted_cox,
    score_residuals,
    score_times,
    station_meat,
)
from pht.errors import DataError

HERE = Path(__file__).parent / "reference"
R = json.loads((HERE / "cox_weighted_reference.json").read_text())
PRECISE = {"precision": 1e-14, "r_precision": 1e-18, "max_steps": 500}
RTOL = 1e-8
ROSSI = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
LUNG = ["age", "sex", "ecog"]


def continuous(n: int) -> np.ndarray:
    return 0.2 + 4.8 * np.mod(np.arange(1, n + 1) * 0.6180339887498949, 1.0)


def integer(n: int) -> np.ndarray:
    return 1.0 + np.arange(1, n + 1) % 4


def rossi() -> pd.DataFrame:
    frame = pd.read_csv(HERE / "rossi.csv").rename(
        columns={"week": "time", "arrest": "event"}
    )
    frame["station"] = [f"s{i % 3}" for i in range(len(frame))]
    return frame


def lung() -> pd.DataFrame:
    frame = pd.read_csv(HERE / "lung.csv")
    frame = frame[frame["inst"].notna() & frame["ph.ecog"].notna()]
    frame = frame.rename(columns={"status": "event", "ph.ecog": "ecog"})
    frame["station"] = frame["inst"].astype(int).astype(str)
    return frame.reset_index(drop=True)


CASES = {  # R case -> (rows, covariates, weights, stratified)
    "rossi_unweighted_stratified": (rossi, ROSSI, None, True),
    "rossi_continuous_unstratified": (rossi, ROSSI, continuous, False),
    "rossi_continuous_stratified": (rossi, ROSSI, continuous, True),
    "rossi_integer_stratified": (rossi, ROSSI, integer, True),
    "lung_continuous_by_inst": (lung, LUNG, continuous, True),
    "lung_continuous_unstratified": (lung, LUNG, continuous, False),
}


def stations(
    frame: pd.DataFrame, covariates: list[str], weights: np.ndarray | None
) -> list[SortedRows]:
    """Each station's rows, covariates centred on the pooled mean (as agreed)."""
    x = frame[covariates].to_numpy(float)
    x = x - x.mean(axis=0)
    parts = []
    for station in sorted(frame["station"].unique()):
        at = (frame["station"] == station).to_numpy()
        parts.append(
            SortedRows(
                frame["time"].to_numpy(float)[at],
                frame["event"].to_numpy(float)[at],
                x[at],
                None if weights is None else weights[at],
            )
        )
    return parts


def fit(
    frame: pd.DataFrame,
    covariates: list[str],
    weights: np.ndarray | None,
    *,
    ties: Ties = "efron",
    stratified: bool = True,
) -> WeightedCoxResult:
    return fit_weighted_cox(
        stations(frame, covariates, weights),
        covariates,
        ties=ties,
        stratified=stratified,
    )


def close(ours: float, theirs: float, what: str) -> None:
    assert abs(ours - theirs) <= RTOL * abs(theirs), (what, ours, theirs)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("case", list(CASES))
def test_weighted_cox_equals_r_coxph_robust(case: str, ties: Ties) -> None:
    """R: coxph(Surv ~ x [+ strata(station)], weights = v, robust = TRUE, ties)."""
    ref = R[case][ties]
    make, covariates, weighting, stratified = CASES[case]
    frame = make()
    weights = None if weighting is None else weighting(len(frame))
    result = fit(frame, covariates, weights, ties=ties, stratified=stratified)
    for robust, model in zip(
        result.coefficients, result.model_coefficients, strict=True
    ):
        close(robust.coef, ref["coef"][robust.name], f"{robust.name} coef")
        close(model.coef, robust.coef, f"{robust.name} coef")
        close(robust.se, ref["se"][robust.name], f"{robust.name} robust se")
        close(model.se, ref["naive_se"][robust.name], f"{robust.name} model se")
    close(result.null_loglik, ref["loglik"][0], "null loglik")
    close(result.loglik, ref["loglik"][1], "loglik")
    assert result.stratified is stratified and result.ties == ties


def lifelines_fit(
    frame: pd.DataFrame, covariates: list[str], *, robust: bool, stratified: bool
) -> CoxPHFitter:
    columns = ["time", "event", "v", *covariates]
    if stratified:
        columns.append("station")
    return CoxPHFitter(strata=["station"] if stratified else None).fit(
        frame[columns],
        "time",
        "event",
        weights_col="v",
        robust=robust,
        fit_options=PRECISE,
    )


@pytest.mark.parametrize(
    ("make", "covariates"), [(rossi, ROSSI), (lung, LUNG)], ids=["rossi", "lung"]
)
def test_weighted_efron_equals_lifelines_weights_col_on_tied_rows(
    make, covariates
) -> None:
    """lifelines CoxPHFitter(weights_col="v", strata=["station"]), robust=False."""
    frame = make()
    frame["v"] = continuous(len(frame))
    assert frame.duplicated(["station", "time"]).any()  # tied times within stations
    with pytest.warns(StatisticalWarning, match="weights are not integers"):
        oracle = lifelines_fit(frame, covariates, robust=False, stratified=True)
    result = fit(frame, covariates, frame["v"].to_numpy())
    for c in result.model_coefficients:
        close(c.coef, oracle.params_[c.name], f"{c.name} coef")
        close(c.se, oracle.standard_errors_[c.name], f"{c.name} model se")
    close(result.loglik, oracle.log_likelihood_, "loglik")


@pytest.mark.parametrize("stratified", [True, False], ids=["strata", "no-strata"])
@pytest.mark.parametrize(
    ("make", "covariates"), [(rossi, ROSSI), (lung, LUNG)], ids=["rossi", "lung"]
)
def test_robust_se_equals_lifelines_robust_without_ties(
    make, covariates, stratified
) -> None:
    """lifelines CoxPHFitter(weights_col="v", robust=True) on rows with distinct
    times (each time moved by i/1000 of its unit): its score residuals are exact then.
    Unstratified rossi is one station (pooled rows); unstratified lung is pooled mode
    over its institutions."""
    frame = make()
    frame["time"] = frame["time"] + np.arange(len(frame)) / 1000
    frame["v"] = continuous(len(frame))
    assert not frame["time"].duplicated().any()
    oracle = lifelines_fit(frame, covariates, robust=True, stratified=stratified)
    if not stratified and make is rossi:
        frame["station"] = "all"
    for ties in ("efron", "breslow"):  # the same without ties
        result = fit(
            frame, covariates, frame["v"].to_numpy(), ties=ties, stratified=stratified
        )
        for c in result.coefficients:
            close(c.coef, oracle.params_[c.name], f"{c.name} coef")
            close(c.se, oracle.standard_errors_[c.name], f"{c.name} robust se")


@pytest.mark.parametrize("stratified", [True, False], ids=["strata", "no-strata"])
def test_integer_weights_equal_repeated_rows_under_breslow(stratified: bool) -> None:
    """Breslow's weighted likelihood is the likelihood of the rows repeated v times
    (Efron's is not: repeating a death adds ties, R's ?coxph says the same)."""
    frame = rossi()
    weights = integer(len(frame))
    repeated = frame.loc[frame.index.repeat(weights.astype(int))]
    x_all = frame[ROSSI].to_numpy(float)
    centre = x_all.mean(axis=0)
    weighted, plain = [], []
    for station in ("s0", "s1", "s2"):
        at = (frame["station"] == station).to_numpy()
        rep = repeated[repeated["station"] == station]
        weighted.append(
            SortedRows(
                frame["time"].to_numpy(float)[at],
                frame["event"].to_numpy(float)[at],
                x_all[at] - centre,
                weights[at],
            )
        )
        plain.append(
            SortedRows(
                rep["time"].to_numpy(float),
                rep["event"].to_numpy(float),
                rep[ROSSI].to_numpy(float) - centre,
            )
        )
    ours = fit_weighted_cox(weighted, ROSSI, ties="breslow", stratified=stratified)
    rows = fit_weighted_cox(plain, ROSSI, ties="breslow", stratified=stratified)
    for a, b in zip(ours.model_coefficients, rows.model_coefficients, strict=True):
        assert abs(a.coef - b.coef) <= 1e-10 * abs(b.coef), a.name
        assert abs(a.se - b.se) <= 1e-10 * b.se, a.name
    assert abs(ours.loglik - rows.loglik) <= 1e-10 * abs(rows.loglik)


def tied_cohort(seed: int, n: int = 300) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)]).astype(float)
    time = np.ceil(rng.exponential(8 * np.exp(-0.4 * x[:, 0])))  # many ties
    event = (rng.random(n) < 0.7).astype(float)
    return time, event, x, rng.uniform(0.2, 5, n)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_unit_weights_are_bit_for_bit_unweighted(ties: Ties) -> None:
    time, event, x, _ = tied_cohort(1)
    plain, ones = SortedRows(time, event, x), SortedRows(time, event, x, np.ones(300))
    beta = np.array([0.3, -0.2])
    a, b = plain.terms(beta, ties), ones.terms(beta, ties)
    assert a.loglik == b.loglik
    assert np.array_equal(a.gradient, b.gradient)
    assert np.array_equal(a.hessian, b.hessian)
    grid = np.unique(time)
    sa, sb = plain.sums(beta, grid), ones.sums(beta, grid)
    assert sa.death_weight is None and sb.death_weight is not None
    for field in ("deaths", "x_death", "s0", "s1", "d0", "d1"):
        assert np.array_equal(getattr(sa, field), getattr(sb, field)), field
    assert np.array_equal(sb.death_weight, sb.deaths)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_weighted_score_residuals_sum_to_the_gradient(ties: Ties) -> None:
    """sum_i v_i r_i is the weighted score at any b, with ties (not only at the MLE)."""
    time, event, x, v = tied_cohort(2)
    rows = SortedRows(time, event, x, v)
    beta = np.array([0.5, -0.7])
    r = score_residuals(rows, beta, score_times(rows.sums(beta), ties))
    assert rows.weights is not None
    score = (rows.weights[:, None] * r).sum(axis=0)
    gradient = rows.terms(beta, ties).gradient
    assert np.allclose(score, gradient, rtol=1e-12, atol=1e-10)


@st.composite
def cohorts(draw):  # type: ignore[no-untyped-def]
    seed = draw(st.integers(0, 2**32 - 1))
    k = draw(st.integers(1, 4))
    time, event, x, v = tied_cohort(seed, draw(st.integers(60, 160)))
    station = np.random.default_rng(seed + 1).integers(0, k, time.size)
    return time, event, x, v, station, draw(st.permutations(list(range(k))))


def split(time, event, x, v, station, order, shuffle=None):  # type: ignore[no-untyped-def]
    parts = []
    for s in order:
        at = np.flatnonzero(station == s)
        if shuffle is not None:
            at = shuffle.permutation(at)
        if at.size:
            parts.append(SortedRows(time[at], event[at], x[at], v[at]))
    return parts


@settings(max_examples=25, deadline=None)
@given(cohorts())
def test_robust_variance_does_not_depend_on_station_or_row_order(cohort) -> None:  # type: ignore[no-untyped-def]
    """Stratified: station order and row order within stations change nothing;
    pooled: neither does how the rows are split over stations."""
    time, event, x, v, station, order = cohort
    if event.sum() < 10:
        return
    rng = np.random.default_rng(0)
    ordered = split(time, event, x, v, station, sorted(order))
    shuffled = split(time, event, x, v, station, order, rng)
    beta = np.array([0.2, -0.1])
    for ties in ("efron", "breslow"):
        a = sum(station_meat(p, beta, ties) for p in ordered)
        b = sum(station_meat(p, beta, ties) for p in shuffled)
        assert np.allclose(a, b, rtol=1e-10, atol=1e-12)
        ha = add_terms([p.terms(beta, ties) for p in ordered]).hessian
        hb = add_terms([p.terms(beta, ties) for p in shuffled]).hessian
        assert np.allclose(ha, hb, rtol=1e-10, atol=1e-12)
    whole = fit_weighted_cox([SortedRows(time, event, x, v)], stratified=False)
    parts = fit_weighted_cox(shuffled, stratified=False)
    assert np.allclose(whole.robust_covariance, parts.robust_covariance, rtol=1e-8)
    assert np.allclose(whole.model_covariance, parts.model_covariance, rtol=1e-8)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.r_[1.0, 0.0, 1.0, 1.0], r"1 of 4 rows are not \(row 1: 0\.0\)"),
        (np.r_[1.0, 1.0, -2.0, 1.0], r"1 of 4 rows are not \(row 2: -2\.0\)"),
        (np.r_[np.nan, 1.0, 1.0, np.inf], r"2 of 4 rows are not \(row 0: nan\)"),
        (np.ones(3), r"expected 4 values \(one per row\), got shape \(3,\)"),
    ],
    ids=["zero", "negative", "not-finite", "length"],
)
def test_bad_weights_are_refused_in_one_line(weights, message) -> None:
    x = np.arange(4.0)[:, None]
    with pytest.raises(DataError, match=message) as caught:
        SortedRows(np.arange(4.0), np.ones(4), x, weights)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("Cox case weights")
