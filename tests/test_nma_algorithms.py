"""Network meta-analysis (pht.algorithms.nma) against R's metafor and the formulas.

Oracle constants: tests/reference/nma_reference.json, made by
tests/reference/nma_reference.R (metafor's rma.mv with the multi-arm covariance on
metadat's dat.senn2013 and dat.hasselblad1998, and a synthetic arm-level set with weak
direct evidence); R is not needed here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

from pht.algorithms.nma import Contrast, NmaResult, league_table, nma, reduced_weights
from pht.errors import DataError

REF = json.loads(
    (Path(__file__).parent / "reference" / "nma_reference.json").read_text()
)
TOL = 1e-8
DATASETS = ["senn2013", "hasselblad1998", "synthetic"]


def _contrasts(name: str) -> list[Contrast]:
    return [
        Contrast(c["studlab"], c["treat1"], c["treat2"], c["TE"], c["seTE"])
        for c in REF[name]["contrasts"]
    ]


def _fit(name: str, **kw: object) -> NmaResult:
    return nma(_contrasts(name), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", DATASETS)
def test_common_effects_equal_metafor_rma_mv(name: str) -> None:
    # oracle: rma.mv(yi, V, mods = X, intercept = FALSE), V with the multi-arm covariance
    ref = REF[name]
    r = _fit(name)
    assert list(r.treatments) == ref["treatments"]
    np.testing.assert_allclose(r.common.te, ref["common"]["te"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.common.se, ref["common"]["se"], rtol=0, atol=TOL)
    assert r.q.statistic == pytest.approx(ref["q"], abs=TOL)
    assert r.q.df == ref["df"]
    # vcov(fit): every treatment versus the first, from the basic parameters' L^+
    first = r.treatments[0]
    cov = r.covariance(first)
    np.testing.assert_allclose(cov[1:, 1:], ref["common_vcov"], rtol=0, atol=TOL)
    np.testing.assert_allclose(np.diag(cov), r.common.se[:, 0] ** 2, atol=1e-14)
    assert np.all(cov[0] == 0.0) and np.all(cov[:, 0] == 0.0)
    np.testing.assert_allclose(r.common.cov.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        r.common.theta[:, None] - r.common.theta[None, :], r.common.te, atol=1e-14
    )


@pytest.mark.parametrize("name", DATASETS)
def test_tau2_and_random_effects_equal_gls_dl_and_metafor(name: str) -> None:
    # oracle: tau2 = (QE - df) / tr(P V0) in GLS form (R), then rma.mv with V + tau2 V0
    ref = REF[name]
    r = _fit(name)
    assert r.tau2 == pytest.approx(ref["tau2"], abs=TOL)
    assert r.tau2 is not None and r.tau is not None
    assert r.tau == pytest.approx(math.sqrt(r.tau2))
    np.testing.assert_allclose(r.random.te, ref["random"]["te"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.random.se, ref["random"]["se"], rtol=0, atol=TOL)
    cov = r.covariance(r.treatments[0], "random")
    np.testing.assert_allclose(cov[1:, 1:], ref["random_vcov"], rtol=0, atol=TOL)
    assert r.i2 == pytest.approx(ref["i2"], abs=TOL)
    assert r.tau2_method == "DL"


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_reml_ml_tau2_and_random_effects_equal_metafor_rma_mv(
    name: str, method: str
) -> None:
    # oracle: rma.mv(y, V, mods = X, random = ~ factor(comparison) | study, rho = 0.5,
    # method = "REML"/"ML") with the multi-arm V, its optimum polished to the root of
    # the score (uniroot, tol 1e-15; rma.mv's log-likelihood checked not lower), te/se
    # from rma.mv with tau2 fixed there
    ref = REF[name][method.lower()]
    r = _fit(name, method_tau=method)
    assert r.tau2_method == method
    assert r.tau2 == pytest.approx(ref["tau2"], abs=TOL)
    assert r.tau2 is not None and r.tau == pytest.approx(math.sqrt(r.tau2))
    np.testing.assert_allclose(r.random.te, ref["te"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.random.se, ref["se"], rtol=0, atol=TOL)
    cov = r.covariance(r.treatments[0], "random")
    np.testing.assert_allclose(cov[1:, 1:], ref["vcov"], rtol=0, atol=TOL)
    # rma.mv's own (unpolished) optimum is within its optimiser's tolerance
    assert r.tau2 == pytest.approx(ref["tau2_rma_mv_optimum"], abs=1e-6)
    # common effects, Q and I^2 do not depend on the tau2 method
    dl = _fit(name)
    np.testing.assert_allclose(r.common.te, dl.common.te, atol=0)
    assert r.i2 == dl.i2


def test_reml_differs_from_netmeta_contrast_only_for_multiarm() -> None:
    # netmeta given contrasts only passes a diagonal V to rma.mv (tau2 from that call
    # in R: tau2_reml_netmeta_diagonal_v); with Willms (1999) 3-arm the two differ
    ref = REF["senn2013"]
    r = _fit("senn2013", method_tau="REML")
    assert r.tau2 is not None
    assert abs(r.tau2 - ref["tau2_reml_netmeta_diagonal_v"]) > 1e-3


def test_reml_two_arm_network_equals_netmeta_diagonal_v() -> None:
    # without multi-arm studies V is diagonal, as netmeta's: on the two-arm part of
    # Senn2013, REML solves the score equation written out with numpy
    con = [c for c in _contrasts("senn2013") if c.studlab != "Willms (1999)"]
    r = nma(con, method_tau="REML")
    assert r.tau2 is not None and r.tau2 > 0
    trts = list(r.treatments)
    x = np.zeros((len(con), len(trts)))
    for row, c in enumerate(con):
        x[row, trts.index(c.treat1)] += 1.0
        x[row, trts.index(c.treat2)] -= 1.0
    x = x[:, 1:]
    y = np.array([c.TE for c in con])
    v = np.array([c.seTE**2 for c in con])

    def score(t: float) -> float:
        s_inv = np.diag(1.0 / (v + t))
        proj = s_inv - s_inv @ x @ np.linalg.solve(x.T @ s_inv @ x, x.T @ s_inv)
        py = proj @ y
        return float(-0.5 * np.trace(proj) + 0.5 * py @ py)

    assert abs(score(r.tau2)) < 1e-9
    assert score(r.tau2 * 0.99) > 0 > score(r.tau2 * 1.01)


@pytest.mark.parametrize("name", DATASETS)
def test_q_decomposition_equals_metafor_per_design(name: str) -> None:
    # oracle: sum over designs of rma.mv's QE with a free effect per design
    ref = REF[name]
    r = _fit(name)
    assert r.q_within.statistic == pytest.approx(ref["q_within"], abs=TOL)
    assert r.q_within.df == ref["df_within"]
    assert r.q_between.statistic == pytest.approx(ref["q_between"], abs=TOL)
    assert r.q_between.df == ref["df_between"]
    mine = {":".join(d.design): d for d in r.q_designs if d.studies > 1}
    assert sorted(mine) == sorted(d["design"] for d in ref["designs"])
    for d in ref["designs"]:
        assert mine[d["design"]].q.statistic == pytest.approx(d["q"], abs=TOL)
        assert mine[d["design"]].q.df == d["df"]
    assert all(d.q.statistic == 0.0 for d in r.q_designs if d.studies == 1)


def _krahn_gls(name: str) -> tuple[float, float, float, int]:
    """Independent numpy: GLS on basic contrasts, covariance (se_i^2+se_j^2-se_ij^2)/2.

    Returns Q, the generalised DL tau^2 (Jackson et al. 2012 / netmeta's formula in GLS
    form, tr(P V0) with V0 = 1 on the diagonal and 1/2 within a study), the A-vs-B
    estimate of the first two treatments and the df.
    """
    con = _contrasts(name)
    trts = sorted({c.treat1 for c in con} | {c.treat2 for c in con})
    pos = {t: i for i, t in enumerate(trts)}
    studies: dict[str, list[Contrast]] = {}
    for c in con:
        studies.setdefault(c.studlab, []).append(c)
    ys, xs, blocks, blocks0 = [], [], [], []
    for rows in studies.values():
        var = {}
        te = {}
        for c in rows:
            var[(c.treat1, c.treat2)] = var[(c.treat2, c.treat1)] = c.seTE**2
            te[(c.treat1, c.treat2)] = c.TE
            te[(c.treat2, c.treat1)] = -c.TE
        arms = sorted({c.treat1 for c in rows} | {c.treat2 for c in rows})
        base, others = arms[0], arms[1:]
        k = len(others)
        v = np.empty((k, k))
        for a, ta in enumerate(others):
            for b, tb in enumerate(others):
                v[a, b] = (
                    var[(ta, base)]
                    if a == b
                    else (var[(ta, base)] + var[(tb, base)] - var[(ta, tb)]) / 2
                )
            x = np.zeros(len(trts))
            x[pos[ta]], x[pos[base]] = 1.0, -1.0
            xs.append(x[1:])
            ys.append(te[(ta, base)])
        blocks.append(v)
        blocks0.append(np.full((k, k), 0.5) + np.eye(k) * 0.5)
    y, x = np.array(ys), np.array(xs)
    n_rows = len(y)
    big_v, big_v0 = np.zeros((n_rows, n_rows)), np.zeros((n_rows, n_rows))
    at = 0
    for v, v0 in zip(blocks, blocks0, strict=True):
        k = v.shape[0]
        big_v[at : at + k, at : at + k] = v
        big_v0[at : at + k, at : at + k] = v0
        at += k
    vi = np.linalg.inv(big_v)
    info = x.T @ vi @ x
    beta = np.linalg.solve(info, x.T @ vi @ y)
    resid = y - x @ beta
    q = float(resid @ vi @ resid)
    df = n_rows - x.shape[1]
    p = vi - vi @ x @ np.linalg.solve(info, x.T @ vi)
    tau2 = max(0.0, (q - df) / float(np.trace(p @ big_v0)))
    return q, tau2, float(-beta[0]), df  # treatment 0 (reference) minus treatment 1


@pytest.mark.parametrize("name", DATASETS)
def test_q_and_tau2_equal_numpy_gls_formulas(name: str) -> None:
    q, tau2, te01, df = _krahn_gls(name)
    r = _fit(name)
    assert r.q.statistic == pytest.approx(q, abs=TOL)
    assert r.tau2 == pytest.approx(tau2, abs=TOL)
    assert r.common.te[0, 1] == pytest.approx(te01, abs=TOL)
    assert r.q.df == df


def test_senn2013_matches_netmeta_printed_heterogeneity() -> None:
    # netmeta's Senn2013 example prints tau^2 = 0.1087 and I^2 = 81.4 % with Q = 96.98
    # on 18 df (within designs 74.45 on 11, between 22.53 on 7); the metadat arms give
    # the same contrasts, so these must agree to the printed digits
    r = _fit("senn2013")
    assert r.tau2 is not None and r.i2 is not None
    assert round(r.tau2, 4) == 0.1087
    assert round(100 * r.i2, 1) == 81.4
    assert round(r.q_between.statistic, 2) == 22.53


@pytest.mark.parametrize("name", DATASETS)
def test_pscores_equal_r_pnorm(name: str) -> None:
    # oracle: rowMeans(pnorm(-z)) on rma.mv's estimates (common, small values good) and
    # rowMeans(pnorm(z)) (random, small values bad)
    ref = REF[name]
    good = _fit(name)
    bad = _fit(name, small_values="bad")
    np.testing.assert_allclose(
        good.pscores_common, ref["pscores_common_good"], atol=TOL
    )
    np.testing.assert_allclose(bad.pscores_random, ref["pscores_random_bad"], atol=TOL)
    n = len(good.treatments)
    assert sum(good.pscores_common) == pytest.approx(n / 2)
    np.testing.assert_allclose(
        np.array(good.pscores_common) + np.array(bad.pscores_common), 1.0, atol=1e-12
    )


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("model", ["common", "random", "random_reml"])
def test_side_split_equals_netmeta_back_calculation_in_r(name: str, model: str) -> None:
    # oracle (R, netmeta 3.6-2's rules): direct = rma(method = "FE") on the pair's
    # contrasts; P = v_net / v_direct with v_net from rma.mv on Krahn's basic
    # contrasts; indirect = (TE - P TE_dir) / (1 - P) (TE_dir 0 when P < sqrt(eps));
    # netsplit's tol.direct 0.0005 hides the indirect (P ~ 1) and the direct
    # (common-effects P ~ 0) estimates
    ref = {(s["treat1"], s["treat2"]): s for s in REF[name][f"split_{model}"]}
    r = _fit(name, method_tau="REML" if model == "random_reml" else "DL")
    rows = r.split_common if model == "common" else r.split_random
    n = len(r.treatments)
    assert len(rows) == n * (n - 1) // 2
    with_studies = [row for row in rows if row.studies > 0]
    assert {(row.treat1, row.treat2) for row in with_studies} == set(ref)
    for row in with_studies:
        s = ref[(row.treat1, row.treat2)]
        assert row.studies == s["studies"]
        assert row.prop_direct == pytest.approx(s["prop_direct"], abs=TOL)
        if "direct_te" in s:
            assert row.direct is not None
            assert row.direct.te == pytest.approx(s["direct_te"], abs=TOL)
            assert row.direct.se == pytest.approx(s["direct_se"], abs=TOL)
        else:
            assert row.direct is None
        if "indirect_te" in s:
            assert row.indirect is not None
            assert row.indirect.te == pytest.approx(s["indirect_te"], abs=TOL)
            assert row.indirect.se == pytest.approx(s["indirect_se"], abs=TOL)
        else:
            assert row.indirect is None
        if "diff_te" in s:
            assert row.difference is not None
            assert row.difference.te == pytest.approx(s["diff_te"], abs=TOL)
            assert row.difference.se == pytest.approx(s["diff_se"], abs=TOL)
            assert row.difference.pvalue == pytest.approx(s["diff_p"], abs=TOL)
        else:
            assert row.difference is None
    for row in rows:
        if row.studies == 0:  # only indirect evidence: indirect is the network
            assert row.direct is None and row.prop_direct == 0.0
            assert row.indirect == row.network


def test_split_edge_cases_of_the_synthetic_network_are_covered() -> None:
    # the rules above are exercised: P < sqrt(eps), P < tol.direct, P ~ 1, no studies
    rows = {(x.treat1, x.treat2): x for x in _fit("synthetic").split_common}
    assert rows[("A", "D")].prop_direct < math.sqrt(np.finfo(float).eps)
    assert rows[("A", "D")].direct is None and rows[("A", "D")].indirect is not None
    assert 1e-6 < rows[("B", "D")].prop_direct < 0.0005
    assert rows[("B", "D")].direct is None
    assert abs(rows[("C", "D")].prop_direct - 1) < 0.0005
    assert rows[("C", "D")].indirect is None and rows[("C", "D")].direct is not None
    senn = _fit("senn2013").split_common
    assert any(x.studies == 0 for x in senn)


def test_split_of_two_treatments_is_all_direct() -> None:
    # netmeta sets prop.direct to 1 when the network has two treatments
    r = nma([Contrast("s1", "A", "B", 0.5, 0.2), Contrast("s2", "A", "B", 0.1, 0.3)])
    (row,) = r.split_common
    assert row.prop_direct == 1.0 and row.indirect is None and row.difference is None
    assert row.direct is not None
    assert row.direct.te == pytest.approx(row.network.te, abs=1e-14)


def test_estimates_do_not_depend_on_order_orientation_or_names() -> None:
    con = _contrasts("hasselblad1998")
    base = nma(con)
    rng = np.random.default_rng(20260613)
    rename = {
        t: f"z{len(base.treatments) - i}_{t}" for i, t in enumerate(base.treatments)
    }
    for _ in range(3):
        shuffled = [con[i] for i in rng.permutation(len(con))]
        flipped = [
            Contrast(c.studlab, rename[c.treat2], rename[c.treat1], -c.TE, c.seTE)
            if rng.random() < 0.5
            else Contrast(c.studlab, rename[c.treat1], rename[c.treat2], c.TE, c.seTE)
            for c in shuffled
        ]
        other = nma(flipped)
        assert other.treatments != base.treatments
        idx = [other.index(rename[t]) for t in base.treatments]
        sub = np.ix_(idx, idx)
        np.testing.assert_allclose(other.common.te[sub], base.common.te, atol=1e-12)
        np.testing.assert_allclose(other.common.se[sub], base.common.se, atol=1e-12)
        np.testing.assert_allclose(other.random.te[sub], base.random.te, atol=1e-12)
        assert other.q.statistic == pytest.approx(base.q.statistic, abs=1e-10)
        assert other.tau2 == pytest.approx(base.tau2, abs=1e-12)
        assert other.q_between.statistic == pytest.approx(base.q_between.statistic)
        np.testing.assert_allclose(
            np.array(other.pscores_common)[idx], base.pscores_common, atol=1e-12
        )


def test_two_arm_network_equals_statsmodels_wls() -> None:
    # oracle: statsmodels WLS of TE on the treatment-difference design (reference
    # dropped), weights 1/seTE^2; SEs from normalized_cov_params (known variances)
    rng = np.random.default_rng(7)
    trts = ["A", "B", "C", "D", "E"]
    effect = {"A": 0.0, "B": 0.4, "C": -0.3, "D": 0.8, "E": 0.1}
    con = []
    for s in range(30):
        a, b = rng.choice(5, size=2, replace=False)
        se = float(rng.uniform(0.1, 0.6))
        te = effect[trts[a]] - effect[trts[b]] + float(rng.normal(0, se))
        con.append(Contrast(f"s{s:02d}", trts[a], trts[b], te, se))
    r = nma(con)
    x = np.zeros((len(con), 4))
    for row, c in enumerate(con):
        for t, sign in ((c.treat1, 1.0), (c.treat2, -1.0)):
            if t != "A":
                x[row, trts.index(t) - 1] += sign
    y = np.array([c.TE for c in con])
    w = np.array([1 / c.seTE**2 for c in con])
    fit = sm.WLS(y, x, weights=w).fit()
    # te[i, A] = d_i; se from the unscaled covariance
    np.testing.assert_allclose(r.common.te[1:, 0], fit.params, atol=1e-10)
    np.testing.assert_allclose(
        r.common.se[1:, 0], np.sqrt(np.diag(fit.normalized_cov_params)), atol=1e-10
    )
    assert r.q.statistic == pytest.approx(float(np.sum(w * fit.resid**2)), abs=1e-9)
    assert r.q.df == len(con) - 4


def test_three_arm_reduced_weights_equal_arm_level_gls() -> None:
    # arm variances s: the study's information Laplacian is diag(1/s) - (1/s)(1/s)'/sum
    s = np.array([0.2, 0.5, 0.3, 0.7])
    k = len(s)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    w = reduced_weights(np.array([s[i] + s[j] for i, j in pairs]), k)
    expected = [(1 / s[i]) * (1 / s[j]) / np.sum(1 / s) for i, j in pairs]
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def test_multiarm_study_pairs_in_any_order_and_orientation() -> None:
    con = _contrasts("senn2013")
    willms = [c for c in con if c.studlab == "Willms (1999)"]
    rest = [c for c in con if c.studlab != "Willms (1999)"]
    turned = [
        Contrast(c.studlab, c.treat2, c.treat1, -c.TE, c.seTE) for c in willms[::-1]
    ]
    a, b = nma(con), nma(rest + turned)
    np.testing.assert_allclose(a.common.te, b.common.te, atol=1e-12)
    np.testing.assert_allclose(a.random.se, b.random.se, atol=1e-12)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_homogeneous_network_gives_tau2_zero_at_the_boundary(method: str) -> None:
    # the contrasts agree exactly, so the (restricted) likelihood falls from tau2 = 0
    con = [
        Contrast("s1", "A", "B", 0.2, 0.3),
        Contrast("s2", "A", "B", 0.2, 0.4),
        Contrast("s3", "B", "C", 0.1, 0.3),
        Contrast("s4", "A", "C", 0.3, 0.5),
    ]
    r = nma(con, method_tau=method)  # type: ignore[arg-type]
    assert r.tau2 == 0.0
    np.testing.assert_allclose(r.random.te, r.common.te, atol=1e-14)


def test_preset_tau2_is_used_for_random_effects() -> None:
    r = _fit("senn2013", tau2=0.0, method_tau="REML")
    assert r.tau2 == 0.0 and r.tau2_method == "preset"
    np.testing.assert_allclose(r.random.te, r.common.te, atol=1e-12)
    np.testing.assert_allclose(r.random.se, r.common.se, atol=1e-12)


def test_league_table_has_names_on_diagonal_and_antisymmetric_cells() -> None:
    r = nma(
        [
            Contrast("s1", "A", "B", 1.0, 1.0),
            Contrast("s2", "B", "C", 1.0, 1.0),
            Contrast("s3", "A", "C", 1.0, 1.0),
        ]
    )
    table = league_table(r)
    assert [table[i][i] for i in range(3)] == ["A", "B", "C"]
    assert table[0][2].startswith("1.33 (")
    assert table[2][0].startswith("-1.33 (")
    assert r.q.df == 1 and r.q.statistic == pytest.approx(1 / 3)


@pytest.mark.parametrize("method", ["DL", "REML", "ML"])
def test_no_heterogeneity_df_gives_no_tau2(method: str) -> None:
    r = nma(
        [Contrast("s1", "A", "B", 0.5, 0.2), Contrast("s2", "B", "C", 0.1, 0.3)],
        method_tau=method,  # type: ignore[arg-type]
    )
    assert r.q.df == 0 and r.q.pvalue is None
    assert r.tau2 is None and r.i2 is None and r.tau2_method == method
    np.testing.assert_allclose(r.random.te, r.common.te)
    assert r.common.te[0, 2] == pytest.approx(0.6)
    assert r.common.se[0, 2] == pytest.approx(math.sqrt(0.04 + 0.09))


def test_disconnected_network_lists_its_components() -> None:
    con = [
        Contrast("s1", "A", "B", 0.1, 0.2),
        Contrast("s2", "C", "D", 0.3, 0.2),
        Contrast("s3", "D", "E", 0.3, 0.2),
    ]
    with pytest.raises(
        DataError, match=r"disconnected \(2 components: \{A, B\}; \{C, D, E\}\)"
    ):
        nma(con)


@pytest.mark.parametrize(
    ("contrasts", "message"),
    [
        (
            [Contrast("s1", "A", "B", 0.1, 0.0)],
            r"study 's1' \(A vs B\): seTE must be .*> 0",
        ),
        ([Contrast("s1", "A", "B", 0.1, -1.0)], r"seTE must be a finite number > 0"),
        ([Contrast("s1", "A", "B", math.nan, 1.0)], r"study 's1'.*TE must be a finite"),
        ([Contrast("s1", "A", "A", 0.1, 1.0)], r"study 's1'.*single-arm study"),
        ([Contrast("s1", "", "B", 0.1, 1.0)], r"treat1 must be a non-empty name"),
        ([], r"no contrasts given"),
        (
            [Contrast("s1", "A", "B", 0.1, 1.0), Contrast("s1", "B", "A", -0.1, 1.0)],
            r"study 's1' gives B vs A twice",
        ),
        (
            [Contrast("s1", "A", "B", 0.1, 1.0), Contrast("s1", "A", "C", 0.2, 1.0)],
            r"study 's1' has 3 arms but lacks the contrasts B vs C",
        ),
        (
            [
                Contrast("s1", "A", "B", 0.1, 1.0),
                Contrast("s1", "A", "C", 0.2, 1.0),
                Contrast("s1", "B", "C", 0.5, 1.0),
            ],
            r"study 's1' is inconsistent: TE A vs C differs",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_study(
    contrasts: list[Contrast], message: str
) -> None:
    with pytest.raises(DataError, match=message) as info:
        nma(contrasts)
    assert "\n" not in str(info.value)


def test_bad_options_are_one_line() -> None:
    con = _contrasts("senn2013")
    with pytest.raises(DataError, match="level must be between 0 and 1"):
        nma(con, level=1.5)
    with pytest.raises(DataError, match="small_values must be 'good' or 'bad'"):
        nma(con, small_values="desirable")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="tau2 must be a finite number >= 0"):
        nma(con, tau2=-1.0)
    with pytest.raises(DataError, match="method_tau must be 'DL', 'REML' or 'ML'"):
        nma(con, method_tau="PM")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown treatment 'insulin'"):
        nma(con).estimate("insulin", "placebo")


# -- issue 13: a multi-arm study whose standard errors cannot come from one analysis ---
def test_multiarm_study_with_incompatible_standard_errors_is_refused() -> None:
    """seTE 0.02, 0.02, 0.5: the basic contrasts' covariance is not positive definite.

    Before the check the fit went on and the split divided by a zero variance.
    """
    contrasts = [
        Contrast("CM067", "ipi+nivo", "ipi", -0.5978, 0.02),
        Contrast("CM067", "nivo", "ipi", -0.4308, 0.02),
        Contrast("CM067", "ipi+nivo", "nivo", -0.1670, 0.5),
        Contrast("KN006", "pembro", "ipi", -0.3, 0.1),
    ]
    with pytest.raises(
        DataError,
        match=r"^nma: study 'CM067': its standard errors do not fit together for a "
        r"multi-arm study \(seTE .*\); check the seTE of its rows$",
    ):
        nma(contrasts)


def test_compatible_multiarm_standard_errors_pass() -> None:
    """Arm-level variances (0.01, 0.02, 0.03) always give a positive-definite block."""
    a, b, c = 0.01, 0.02, 0.03
    r = nma(
        [
            Contrast("s", "A", "B", 0.1, math.sqrt(a + b)),
            Contrast("s", "A", "C", 0.3, math.sqrt(a + c)),
            Contrast("s", "B", "C", 0.2, math.sqrt(b + c)),
        ]
    )
    assert r.treatments == ("A", "B", "C")


def test_an_estimate_with_zero_standard_error_does_not_divide_by_zero() -> None:
    from pht.algorithms.nma import _estimate

    e = _estimate(0.2, 0.0, 1.96)
    assert (e.te, e.se, e.lower, e.upper) == (0.2, 0.0, 0.2, 0.2)
    assert math.isnan(e.z) and math.isnan(e.pvalue)
