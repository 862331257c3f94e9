"""Federated GLMs (pht.algorithms.glm) and pooled means (pht.algorithms.means).

Oracle: statsmodels ``GLM`` on the pooled rows (IRLS, run to ``tol=1e-14`` so that
its own stopping rule does not blur the comparison), with ``cov_type="HC0"`` and
``cov_type="cluster"`` (groups = station, statsmodels' default small-sample
correction), ``freq_weights`` / ``var_weights`` for weighted fits; scipy's
``ttest_ind`` for the means. Tolerance 1e-8, relative where values exceed 1.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.tools.sm_exceptions import DomainWarning, SpecificationWarning

from pht.algorithms.equivalence import mean_difference, ratio_of_geometric_means
from pht.algorithms.glm import GlmRows, glm_model
from pht.algorithms.glm_fit import (
    GlmResult,
    check_estimable,
    fit_glm,
    glm_result,
    newton_from,
    origin,
    pool_pieces,
)
from pht.algorithms.means import (
    from_sums,
    group_moments,
    moments,
    pool_moments,
)
from pht.algorithms.optimize import NewtonPath, Value
from pht.errors import ConfigError, ConvergenceError, DataError
from pht.synth import generate

TOL = 1e-8


def close(ours: Any, oracle: Any, tol: float = TOL) -> None:
    a, b = np.asarray(ours, dtype=float), np.asarray(oracle, dtype=float)
    assert a.shape == b.shape
    err = np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))
    assert err <= tol, f"relative difference {err:.3g} > {tol}"


@pytest.fixture(scope="module")
def registry() -> pd.DataFrame:
    frames = generate(seed=2026, patients=3000)
    return pd.concat(
        [f.assign(station=s) for s, f in frames.items()], ignore_index=True
    )


def split_fit(
    family: str,
    link: str | None,
    x: np.ndarray,
    y: np.ndarray,
    station: np.ndarray,
    *,
    offset: np.ndarray | None = None,
    freq_weights: np.ndarray | None = None,
    var_weights: np.ndarray | None = None,
    cov_type: Any = "model",
) -> GlmResult:
    model = glm_model(family, link)

    def part(values: np.ndarray | None, m: np.ndarray) -> np.ndarray | None:
        return None if values is None else values[m]

    parts = [
        GlmRows(
            model,
            x[station == s],
            y[station == s],
            offset=part(offset, station == s),
            freq_weights=part(freq_weights, station == s),
            var_weights=part(var_weights, station == s),
        )
        for s in np.unique(station)
    ]
    names = ["Intercept", *[f"x{j}" for j in range(1, x.shape[1])]]
    return fit_glm(parts, names, cov_type=cov_type)


def statsmodels_fits(
    family: Any, x: np.ndarray, y: np.ndarray, station: np.ndarray, **kw: Any
) -> dict[str, Any]:
    """The oracle: statsmodels GLM on the pooled rows, three covariance types."""
    with warnings.catch_warnings():
        # statsmodels warns that robust covariances with weights are "not fully
        # supported" and that log/identity binomial links may leave (0, 1)
        warnings.simplefilter("ignore", SpecificationWarning)
        warnings.simplefilter("ignore", DomainWarning)
        model = sm.GLM(y, x, family=family, **kw)
        return {
            "model": model.fit(tol=1e-14, maxiter=200),
            "HC0": model.fit(tol=1e-14, maxiter=200, cov_type="HC0"),
            "cluster": model.fit(
                tol=1e-14, maxiter=200, cov_type="cluster", cov_kwds={"groups": station}
            ),
        }


def assert_equals_statsmodels(ours: GlmResult, oracle: dict[str, Any]) -> None:
    base = oracle["model"]
    close(ours.params, base.params)
    close(ours.se("model"), base.bse)
    close(ours.se("HC0"), oracle["HC0"].bse)
    close(ours.se("cluster"), oracle["cluster"].bse)
    close(ours.deviance, base.deviance)
    close(ours.null_deviance, base.null_deviance)
    close(ours.loglik, base.llf)
    close(ours.null_loglik, base.llnull)
    close(ours.aic, base.aic)
    close(ours.scale, base.scale)
    close(ours.pearson_chi2, base.pearson_chi2)
    assert ours.df_resid == pytest.approx(base.df_resid, rel=1e-12)
    assert ours.converged
    # the table: normal Wald statistics as statsmodels' GLM (use_t=False)
    lower = ours.params - 1.959963984540054 * ours.se()
    close([c.ci_lower for c in ours.coefficients], lower)
    close([c.p_value for c in ours.coefficients], base.pvalues, 1e-7)


def stations(n: int, k: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, n)


# -- oracle tests: statsmodels GLM on the pooled rows ------------------------------------
def test_logistic_spector_equals_statsmodels_glm() -> None:
    data = sm.datasets.spector.load_pandas()
    x = sm.add_constant(data.exog.to_numpy(float))
    y = data.endog.to_numpy(float)
    station = np.arange(y.size) % 3
    oracle = statsmodels_fits(sm.families.Binomial(), x, y, station)
    assert_equals_statsmodels(split_fit("binomial", None, x, y, station), oracle)


def test_gaussian_scotland_equals_statsmodels_glm() -> None:
    data = sm.datasets.scotland.load_pandas()
    x = sm.add_constant(data.exog.to_numpy(float))
    y = data.endog.to_numpy(float)
    station = np.arange(y.size) % 4
    oracle = statsmodels_fits(sm.families.Gaussian(), x, y, station)
    ours = split_fit("gaussian", None, x, y, station)
    assert_equals_statsmodels(ours, oracle)
    assert ours.effect is None and ours.coefficients[1].exp_coef is None


def test_gaussian_with_var_and_freq_weights_equals_statsmodels_glm() -> None:
    data = sm.datasets.scotland.load_pandas()
    x = sm.add_constant(data.exog.to_numpy(float))
    y = data.endog.to_numpy(float)
    rng = np.random.default_rng(11)
    vw = rng.uniform(0.5, 3.0, y.size)
    fw = rng.integers(1, 4, y.size).astype(float)
    station = np.arange(y.size) % 3
    oracle = statsmodels_fits(
        sm.families.Gaussian(), x, y, station, var_weights=vw, freq_weights=fw
    )
    ours = split_fit("gaussian", None, x, y, station, var_weights=vw, freq_weights=fw)
    assert_equals_statsmodels(ours, oracle)
    assert ours.wnobs == fw.sum() and ours.nobs == y.size


def test_poisson_cpunish_equals_statsmodels_glm() -> None:
    data = sm.datasets.cpunish.load_pandas()
    exog = data.exog.to_numpy(float).copy()
    exog[:, 3] = np.log(exog[:, 3])  # as the statsmodels example
    x = sm.add_constant(exog)
    y = data.endog.to_numpy(float)
    station = np.arange(y.size) % 3
    oracle = statsmodels_fits(sm.families.Poisson(), x, y, station)
    ours = split_fit("poisson", None, x, y, station)
    assert_equals_statsmodels(ours, oracle)
    assert ours.effect == "rate ratio"


def _case_mix(df: pd.DataFrame) -> np.ndarray:
    age = df["age"].to_numpy(float)
    return np.column_stack(
        [
            np.ones(len(df)),
            (df["regimen"] == "extended_interval").to_numpy(float),
            (df["regimen"] == "weight_based").to_numpy(float),
            (df["drug"] == "ipilimumab+nivolumab").to_numpy(float),
            df["ecog"].to_numpy(float),
            df["ldh_elevated"].to_numpy(float),
            age - age.mean(),
        ]
    )


@pytest.mark.parametrize("link", ["logit", "log", "identity"])
def test_toxicity_binomial_links_on_synthetic_registries_equal_statsmodels(
    registry: pd.DataFrame, link: str
) -> None:
    x = _case_mix(registry)[:, [0, 1, 2, 3, 5]]  # bounded risks for log / identity
    y = registry["tox_grade3"].to_numpy(float)
    station = registry["station"].to_numpy()
    links = {
        "logit": sm.families.links.Logit(),
        "log": sm.families.links.Log(),
        "identity": sm.families.links.Identity(),
    }
    oracle = statsmodels_fits(sm.families.Binomial(links[link]), x, y, station)
    ours = split_fit("binomial", link, x, y, station)
    assert_equals_statsmodels(ours, oracle)
    effect = {"logit": "odds ratio", "log": "risk ratio", "identity": None}[link]
    assert ours.effect == effect
    if effect:
        c = ours.coefficients[2]
        assert c.exp_coef == pytest.approx(np.exp(c.coef), rel=1e-15)
        assert c.exp_ci_lower == pytest.approx(np.exp(c.ci_lower), rel=1e-15)


def test_weighted_logistic_iptw_style_equals_statsmodels_var_weights(
    registry: pd.DataFrame,
) -> None:
    x = _case_mix(registry)
    y = registry["tox_grade3"].to_numpy(float)
    station = registry["station"].to_numpy()
    weights = np.random.default_rng(3).uniform(0.2, 6.0, y.size)  # like IPT weights
    oracle = statsmodels_fits(
        sm.families.Binomial(), x, y, station, var_weights=weights
    )
    ours = split_fit("binomial", None, x, y, station, var_weights=weights)
    assert_equals_statsmodels(ours, oracle)


def test_logistic_freq_weights_equal_statsmodels_and_repeated_rows(
    registry: pd.DataFrame,
) -> None:
    x = _case_mix(registry)
    y = registry["tox_grade3"].to_numpy(float)
    station = registry["station"].to_numpy()
    fw = np.random.default_rng(5).integers(1, 4, y.size).astype(float)
    oracle = statsmodels_fits(sm.families.Binomial(), x, y, station, freq_weights=fw)
    ours = split_fit("binomial", None, x, y, station, freq_weights=fw)
    assert_equals_statsmodels(ours, oracle)
    # a frequency weight stands for repeated patients: same fit, same model and
    # HC0 SEs as the expanded rows
    repeat = fw.astype(int)
    expanded = split_fit(
        "binomial",
        None,
        np.repeat(x, repeat, axis=0),
        np.repeat(y, repeat),
        np.repeat(station, repeat),
    )
    close(ours.params, expanded.params, 1e-10)
    close(ours.se("model"), expanded.se("model"), 1e-10)
    close(ours.se("HC0"), expanded.se("HC0"), 1e-10)


def test_poisson_with_log_person_time_offset_equals_statsmodels(
    registry: pd.DataFrame,
) -> None:
    x = _case_mix(registry)
    y = registry["death"].to_numpy(float)
    offset = np.log(registry["os_days"].to_numpy(float) / 365.25)
    station = registry["station"].to_numpy()
    weights = np.random.default_rng(8).uniform(0.5, 2.0, y.size)
    oracle = statsmodels_fits(
        sm.families.Poisson(), x, y, station, offset=offset, var_weights=weights
    )
    ours = split_fit("poisson", None, x, y, station, offset=offset, var_weights=weights)
    assert_equals_statsmodels(ours, oracle)


def test_logistic_with_offset_fits_its_null_model_like_statsmodels(
    registry: pd.DataFrame,
) -> None:
    # a binomial null model with an offset has no closed form: fitted separately
    x = _case_mix(registry)[:, :4]
    y = registry["tox_grade3"].to_numpy(float)
    offset = 0.3 * registry["ldh_elevated"].to_numpy(float)
    station = registry["station"].to_numpy()
    oracle = statsmodels_fits(sm.families.Binomial(), x, y, station, offset=offset)
    # statsmodels fits that null model with its default IRLS tolerance (1e-8)
    ours = split_fit("binomial", None, x, y, station, offset=offset)
    close(ours.params, oracle["model"].params)
    close(ours.null_deviance, oracle["model"].null_deviance, 1e-7)


def test_cluster_covariance_uses_statsmodels_small_sample_correction() -> None:
    data = sm.datasets.spector.load_pandas()
    x = sm.add_constant(data.exog.to_numpy(float))
    y = data.endog.to_numpy(float)
    station = np.arange(y.size) % 4
    ours = split_fit("binomial", None, x, y, station, cov_type="cluster")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecificationWarning)
        raw = (
            sm.GLM(y, x, family=sm.families.Binomial())
            .fit(
                tol=1e-14,
                cov_type="cluster",
                cov_kwds={"groups": station, "use_correction": False},
            )
            .cov_params()
        )
    g, n, p = 4, y.size, x.shape[1]
    close(ours.covariance, raw * g / (g - 1) * (n - 1) / (n - p))
    assert ours.cov_type == "cluster" and ours.clusters == 4


# -- properties: splitting, replay -------------------------------------------------------
def test_fit_does_not_depend_on_split_or_station_order(registry: pd.DataFrame) -> None:
    x = _case_mix(registry)
    y = registry["tox_grade3"].to_numpy(float)
    one = split_fit("binomial", None, x, y, np.zeros(y.size, dtype=int))
    for seed, k in ((1, 2), (2, 5), (3, 9)):
        other = split_fit("binomial", None, x, y, stations(y.size, k, seed))
        close(other.params, one.params, 1e-10)
        close(other.se("model"), one.se("model"), 1e-10)
        close(other.se("HC0"), one.se("HC0"), 1e-10)
        close(other.deviance, one.deviance, 1e-10)
    assert one.cluster_covariance is None
    with pytest.raises(DataError, match="at least 2 stations"):
        one.se("cluster")


def test_stations_replay_the_newton_path_from_the_origin(
    registry: pd.DataFrame,
) -> None:
    """The federated loop: every point asked is the one a station's NewtonPath
    expects (in delta = beta - origin), from the pooled terms of the last round."""
    x = _case_mix(registry)
    y = registry["tox_grade3"].to_numpy(float)
    station = registry["station"].to_numpy()
    model = glm_model("binomial", "log")
    parts = [GlmRows(model, x[station == s], y[station == s]) for s in ("nkr", "dica")]
    parts.append(GlmRows(model, x[station == "umc"], y[station == "umc"]))
    sums = parts[0].sums() + parts[1].sums() + parts[2].sums()
    start = origin(model, sums, x.shape[1])
    replay = NewtonPath(x.shape[1])
    expected = replay.start()
    steps = newton_from(start)
    ask = next(steps)
    evaluations = 0
    while True:
        assert NewtonPath.matches(ask.beta - start, expected)
        pooled = parts[0].terms(ask.beta) + parts[1].terms(ask.beta)
        pooled = pooled + parts[2].terms(ask.beta)
        evaluations += 1
        try:
            ask = steps.send(Value(pooled.loglik, pooled.gradient, pooled.hessian))
        except StopIteration as stop:
            fit = stop.value
            break
        following = replay.next_point(pooled.loglik, pooled.gradient, pooled.hessian)
        assert following is not None
        expected = following
    assert fit.converged and evaluations > 3
    null = float(start[0])
    result = glm_result(
        model,
        [f"b{j}" for j in range(x.shape[1])],
        fit,
        pool_pieces([p.pieces(fit.beta, null) for p in parts]),
    )
    oracle = statsmodels_fits(
        sm.families.Binomial(sm.families.links.Log()), x, y, station
    )
    close(result.params, oracle["model"].params)
    close(fit.null_loglik, oracle["model"].llnull)  # the origin is the null model


# -- errors ------------------------------------------------------------------------------
def _separated(kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 400
    age = rng.normal(60, 10, n)
    brain = (rng.random(n) < 0.1).astype(float)
    y = (rng.random(n) < 0.3).astype(float)
    if kind == "quasi":
        y[brain == 1] = 1.0  # every patient with brain metastases has the event
    else:
        y = (age > 62).astype(float)
    x = np.column_stack([np.ones(n), age - age.mean(), brain - brain.mean()])
    return x, y


@pytest.mark.parametrize(
    ("kind", "named", "not_named"),
    [("quasi", "brain_mets[T.1]", "age"), ("complete", "age", "brain_mets")],
)
def test_perfect_separation_names_the_covariate(
    kind: str, named: str, not_named: str
) -> None:
    x, y = _separated(kind)
    model = glm_model("binomial")
    parts = [GlmRows(model, x[:200], y[:200]), GlmRows(model, x[200:], y[200:])]
    with pytest.raises(DataError, match="perfect separation") as caught:
        fit_glm(parts, ["Intercept", "age", "brain_mets[T.1]"])
    message = str(caught.value)
    assert named in message and not_named not in message
    assert "\n" not in message


def test_log_binomial_at_the_boundary_advises_the_logit_link() -> None:
    # true risks reach 1 for the oldest patients: the log-binomial MLE is on the
    # boundary. statsmodels' IRLS (0.15) clips the fitted risks, reports
    # converged=True with a fitted risk above 1 and llf NaN; pht refuses instead.
    rng = np.random.default_rng(3)
    n = 400
    age = rng.normal(60, 10, n)
    x = np.column_stack([np.ones(n), age - age.mean()])
    risk = np.clip(0.05 * np.exp(0.07 * (age - 40)), 0, 1)
    y = (np.random.default_rng(9).random(n) < risk).astype(float)
    with pytest.raises(ConvergenceError, match="use the logit link"):
        fit_glm([GlmRows(glm_model("binomial", "log"), x, y)], ["Intercept", "age"])
    # the logit model of the same data is fine
    assert fit_glm([GlmRows(glm_model("binomial"), x, y)]).converged


def test_collinear_and_constant_covariates_are_named() -> None:
    rng = np.random.default_rng(1)
    n = 300
    a = rng.normal(size=n)
    y = (rng.random(n) < 0.4).astype(float)
    model = glm_model("binomial")
    x = np.column_stack([np.ones(n), a, 2 * a + 1, rng.normal(size=n)])
    with pytest.raises(DataError, match="a_twice are collinear"):
        fit_glm([GlmRows(model, x, y)], ["Intercept", "a", "a_twice", "b"])
    constant = np.column_stack([np.ones(n), a, np.zeros(n)])
    with pytest.raises(DataError, match="flat do not vary"):
        fit_glm([GlmRows(model, constant, y)], ["Intercept", "a", "flat"])
    check_estimable(np.eye(2), ["Intercept", "a"])  # fine: no error


def test_bad_outcomes_weights_and_choices_give_one_line_errors() -> None:
    x = np.column_stack([np.ones(4), [0.0, 1, 0, 1]])
    binomial = glm_model("binomial")
    with pytest.raises(DataError, match="'tox_grade3' of a binomial model must hold"):
        GlmRows(binomial, x, [0, 1, 2, 0], outcome="tox_grade3")
    with pytest.raises(DataError, match="counts >= 0"):
        GlmRows(glm_model("poisson"), x, [0, 1, -1, 0])
    with pytest.raises(DataError, match="var_weights must be non-negative"):
        GlmRows(binomial, x, [0, 1, 1, 0], var_weights=[1, -1, 1, 1])
    with pytest.raises(DataError, match="freq_weights has shape"):
        GlmRows(binomial, x, [0, 1, 1, 0], freq_weights=[1, 1])
    with pytest.raises(DataError, match="offset has missing"):
        GlmRows(binomial, x, [0, 1, 1, 0], offset=[0, np.nan, 0, 0])
    with pytest.raises(DataError, match="no events"):
        fit_glm([GlmRows(binomial, x, [0, 0, 0, 0])])
    with pytest.raises(ConfigError, match="link 'log' is not available for family"):
        glm_model("gaussian", "log")
    with pytest.raises(ConfigError, match="family 'gamma' is not supported"):
        glm_model("gamma")


def test_non_convergence_within_the_round_cap_is_a_convergence_error(
    registry: pd.DataFrame,
) -> None:
    x = _case_mix(registry)
    y = registry["death"].to_numpy(float)
    with pytest.raises(ConvergenceError, match="raise max_iter"):
        fit_glm([GlmRows(glm_model("poisson"), x, y)], max_iter=1)


# -- means -------------------------------------------------------------------------------
def _by_station(df: pd.DataFrame, log: bool) -> dict[str, dict[str, Any]]:
    return {
        s: group_moments(
            f["cost_eur"].to_numpy(float), f["regimen"].to_numpy(), log=log, name="cost"
        )
        for s, f in df.groupby("station")
    }


@pytest.mark.parametrize("welch", [True, False])
def test_mean_difference_equals_scipy_ttest_ind_on_pooled_rows(
    registry: pd.DataFrame, welch: bool
) -> None:
    pooled = pool_moments(_by_station(registry, log=False))
    a = registry.loc[registry["regimen"] == "weight_based", "cost_eur"].to_numpy(float)
    b = registry.loc[registry["regimen"] == "standard", "cost_eur"].to_numpy(float)
    oracle = stats.ttest_ind(a, b, equal_var=not welch)
    ci = oracle.confidence_interval(0.90)
    ours = mean_difference(
        pooled["weight_based"],
        pooled["standard"],
        variance="welch" if welch else "pooled",
        alpha=0.10,
    )
    close(ours.estimate, a.mean() - b.mean(), 1e-12)
    close(ours.estimate / ours.se, oracle.statistic, 1e-10)
    close(ours.df, oracle.df, 1e-10)
    close([ours.ci.lower, ours.ci.upper], [ci.low, ci.high], 1e-10)


def test_ratio_of_geometric_means_equals_scipy_on_log_costs(
    registry: pd.DataFrame,
) -> None:
    pooled = pool_moments(_by_station(registry, log=True))
    a = np.log(
        registry.loc[registry["regimen"] == "extended_interval", "cost_eur"].to_numpy(
            float
        )
    )
    b = np.log(
        registry.loc[registry["regimen"] == "standard", "cost_eur"].to_numpy(float)
    )
    oracle = stats.ttest_ind(a, b, equal_var=False)
    ci = oracle.confidence_interval(0.95)
    ours = ratio_of_geometric_means(pooled["extended_interval"], pooled["standard"])
    close(ours.estimate, np.exp(a.mean() - b.mean()), 1e-12)
    close([ours.ci.lower, ours.ci.upper], np.exp([ci.low, ci.high]), 1e-10)


def test_moments_add_to_numpy_mean_and_variance_in_any_split() -> None:
    rng = np.random.default_rng(4)
    values = 1e6 + rng.normal(0, 1.0, 5000)  # a large mean: sums of squares cancel
    total = moments(values)
    cuts = np.sort(rng.choice(np.arange(1, 5000), 6, replace=False))
    parts = [moments(p) for p in np.split(values, cuts)]
    pooled = parts[0]
    for part in reversed(parts[1:]):
        pooled = part + pooled
    for m in (total, pooled):
        assert m.n == 5000
        close(m.mean, values.mean(), 1e-14)
        close(m.variance, values.var(ddof=1), 1e-10)
    raw = from_sums(total.n, total.total, total.sum_of_squares)
    assert raw.n == total.n and raw.total == total.total


def test_means_refuse_non_positive_logs_and_tiny_groups() -> None:
    with pytest.raises(DataError, match="'cost_eur' has values <= 0"):
        moments(np.array([1.0, 0.0]), log=True, name="cost_eur")
    with pytest.raises(DataError, match="needs at least 2 per arm"):
        mean_difference(moments(np.array([1.0])), moments(np.array([1.0, 2.0])))
