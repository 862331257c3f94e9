"""The ``iptw`` train end to end: statsmodels and lifelines on the pooled rows are the
oracles.

Every analysis runs through the embedded engine with the process executor (signed
request, policy, the station's own IPTW kernel recomputing every answer, both Newton
paths replayed at each station). On the pooled rows of the stations that took part:
the propensity model equals statsmodels ``GLM(Binomial)``; the weights recomputed
from statsmodels' coefficients give the balance table and effective sample sizes of
a direct numpy computation; the weighted outcome GLM equals statsmodels
``GLM(var_weights=w, cov_type="HC0")`` and the weighted Cox model stratified by
station equals :func:`pht.algorithms.cox_weighted.fit_weighted_cox` (itself R
``coxph(weights=, robust=TRUE)``) and, for coefficients, lifelines
``CoxPHFitter(weights_col=, strata=)``. Then the station's refusals and the errors.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from conftest import run_embedded, write_network, write_study

from pht import synth
from pht.algorithms.cox import SortedRows
from pht.algorithms.cox_weighted import fit_weighted_cox
from pht.algorithms.iptw import GRID, choose_cutoff
from pht.errors import PhtError
from pht.station.codes import Code

TOL = 1e-8
K = 10
COLUMNS = ["tox_grade3", "death", "os_days", "age", "weight_kg", "ldh_elevated", "drug"]
COVARIATES = ["age", "weight_kg", "ldh_elevated", "drug"]
PS_FORMULA = "t ~ age + weight_kg + ldh_elevated + C(drug)"
# pht's design column names in statsmodels' order (drug: nivolumab is the reference)
DESIGN = ["age", "weight_kg", "ldh_elevated", "drug[T.pembrolizumab]"]


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """Monotherapy patients (the combination is always dosed as standard)."""
    data = synth.generate(seed=11, patients=6000)
    return {
        s: f.loc[f["drug"] != "ipilimumab+nivolumab", [*COLUMNS, "regimen"]]
        .reset_index(drop=True)
        .astype({"drug": str, "regimen": str})
        for s, f in data.items()
    }


@pytest.fixture(scope="module")
def network(tmp_path_factory, frames) -> Path:  # type: ignore[no-untyped-def]
    # k = 3: the oracle tests want stations in the fit; the station rules at k = 10
    # (cells of arm x value pairs and their events) are tested separately
    return write_network(
        tmp_path_factory.mktemp("iptw"),
        frames,
        dataset="d",
        min_cell_size=3,
        classes=("aggregate", "model"),
        budget={"queries": 500, "period_days": 30, "organisation_queries": 500},
    )


def analyse(network: Path, tmp: Path, **params: Any) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    given = {
        "treatment": "regimen",
        "treated": "extended_interval",
        "control": "standard",
        "covariates": COVARIATES,
        **params,
    }
    study = write_study(
        tmp,
        train="iptw",
        dataset="d",
        parameters={k: v for k, v in given.items() if v is not None},
        min_stations=1,
    )
    return run_embedded(study, network)


def took(result: dict[str, Any]) -> list[str]:
    """The stations that took part (the oracle's rows are theirs)."""
    return [s["id"] for s in result["stations"] if s["participated"]]


def pooled(frames: dict[str, pd.DataFrame], treated: str, stations: Any = None):  # type: ignore[no-untyped-def]
    rows = pd.concat(
        [
            f.assign(station=s)
            for s, f in sorted(frames.items())
            if stations is None or s in stations
        ],
        ignore_index=True,
    )
    rows = rows[rows["regimen"].isin([treated, "standard"])].reset_index(drop=True)
    return rows.assign(t=(rows["regimen"] == treated).astype(float))


def oracle_weights(
    rows: pd.DataFrame,
    estimand: str = "ATE",
    stabilised: bool = False,
    cutoff: float | None = None,
) -> tuple[Any, np.ndarray]:
    """statsmodels' propensity fit on the pooled rows and the weights it gives."""
    ps = smf.glm(PS_FORMULA, rows, family=sm.families.Binomial()).fit(
        tol=1e-14, maxiter=200
    )
    e = ps.predict(rows).to_numpy()
    t = rows["t"].to_numpy()
    p = t.mean()
    if estimand == "ATE":
        w = t / e + (1 - t) / (1 - e)
        if stabilised:
            w = w * np.where(t == 1, p, 1 - p)
    else:
        w = t + (1 - t) * e / (1 - e)
        if stabilised:
            w = np.where(t == 1, 1.0, w * (1 - p) / p)
    if cutoff is not None:
        w = np.minimum(w, cutoff)
    return ps, w


def ordered(series: pd.Series, names: list[str]) -> np.ndarray:
    """statsmodels' values in pht's order (``C(drug)[T.x]`` is ``drug[T.x]``, ``t``
    the treatment term)."""
    import re

    by_name = {
        re.sub(r"^C\((\w+)\)", r"\1", str(k)): float(v) for k, v in series.items()
    }
    return np.array([by_name["t" if n.startswith("regimen[") else n] for n in names])


def close(a: Any, b: Any, tol: float = TOL) -> None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))) <= tol, (a, b)


def rel(a: Any, b: Any, tol: float = 1e-10) -> None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    # relative, and absolute below 1 (an SMD near 0 after weighting)
    assert np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))) <= tol, (a, b)


def direct_balance(rows: pd.DataFrame, w: np.ndarray) -> dict[str, dict[str, float]]:
    """SMDs with the unweighted variances in the denominator, by numpy."""
    x = pd.DataFrame(
        {
            "age": rows["age"],
            "weight_kg": rows["weight_kg"],
            "ldh_elevated": rows["ldh_elevated"],
            "drug[T.pembrolizumab]": (rows["drug"] == "pembrolizumab").astype(float),
        }
    ).to_numpy(float)
    t = rows["t"].to_numpy() == 1
    out = {}
    for j, name in enumerate(DESIGN):
        x1, x0, w1, w0 = x[t, j], x[~t, j], w[t], w[~t]
        sd = math.sqrt((x1.var(ddof=1) + x0.var(ddof=1)) / 2)
        m1, m0 = x1.mean(), x0.mean()
        wm1, wm0 = np.average(x1, weights=w1), np.average(x0, weights=w0)
        out[name] = {
            "mean_treated": m1,
            "mean_control": m0,
            "mean_treated_weighted": wm1,
            "mean_control_weighted": wm0,
            "smd_before": (m1 - m0) / sd,
            "smd_after": (wm1 - wm0) / sd,
        }
    return out


def ess(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / (w**2).sum())


@pytest.fixture(scope="module")
def ate(network, tmp_path_factory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return analyse(
        network,
        tmp_path_factory.mktemp("ate"),
        outcome="tox_grade3",
        family="binomial",
    )


def test_propensity_model_equals_statsmodels_glm_binomial(ate, frames):
    iptw = ate["iptw"]
    rows = pooled(frames, "extended_interval", took(ate))
    ps, _ = oracle_weights(rows)
    params = iptw["propensity"]["params"]
    assert list(params) == ["Intercept", *DESIGN]
    close([p["coef"] for p in params.values()], ordered(ps.params, list(params)))
    close([p["se"] for p in params.values()], ordered(ps.bse, list(params)))
    assert iptw["stations"] == len(took(ate)) >= 2
    assert iptw["propensity"]["converged"]
    assert iptw["n"] == {
        "treated": int(rows["t"].sum()),
        "control": int(len(rows) - rows["t"].sum()),
    }


def test_balance_and_ess_equal_numpy_on_pooled_rows(ate, frames):
    iptw = ate["iptw"]
    rows = pooled(frames, "extended_interval", took(ate))
    _, w = oracle_weights(rows)
    direct = direct_balance(rows, w)
    assert [b["term"] for b in iptw["balance"]] == DESIGN
    for b in iptw["balance"]:
        for key, value in direct[b["term"]].items():
            rel(b[key], value)
    t = rows["t"].to_numpy() == 1
    rel(iptw["ess"]["treated"], ess(w[t]))
    rel(iptw["ess"]["control"], ess(w[~t]))
    # weighting balances: every |SMD| after is small, and smaller than before
    assert max(abs(b["smd_after"]) for b in iptw["balance"]) < 0.05
    assert "unweighted" in iptw["balance_note"]


def test_weighted_glm_equals_statsmodels_var_weights_hc0(ate, frames):
    out = ate["iptw"]["outcome"]
    rows = pooled(frames, "extended_interval", took(ate))
    _, w = oracle_weights(rows)
    model = smf.glm(
        "tox_grade3 ~ t", rows, family=sm.families.Binomial(), var_weights=w
    ).fit(tol=1e-14, maxiter=200, cov_type="HC0")
    params = out["params"]
    assert list(params) == ["Intercept", "regimen[T.extended_interval]"]
    close([p["coef"] for p in params.values()], ordered(model.params, list(params)))
    close([p["se"] for p in params.values()], ordered(model.bse, list(params)))
    est = out["estimate"]
    assert (
        est is params["regimen[T.extended_interval]"]
        or est == params["regimen[T.extended_interval]"]
    )
    close(est["exp_coef"], math.exp(model.params["t"]))
    assert out["effect"] == "odds ratio" and "HC0" in out["se_type"]
    assert "wrong" in out["note"]
    assert json.dumps(ate["iptw"], allow_nan=False)


def test_att_stabilised_truncated_doubly_robust_equals_statsmodels(
    network, frames, tmp_path
):
    result = analyse(
        network,
        tmp_path,
        outcome="tox_grade3",
        family="binomial",
        estimand="ATT",
        stabilised=True,
        truncate=0.99,
        outcome_covariates=True,
    )
    iptw = result["iptw"]
    rows = pooled(frames, "extended_interval", took(result))
    _, w_full = oracle_weights(rows, "ATT", stabilised=True)
    # the cut-off: a grid point at or above the one exact pooled counts give
    exact = choose_cutoff([[int((w_full > c).sum()) for c in GRID]], [len(rows)], 0.99)
    cutoff = iptw["truncation"]["cutoff"]
    assert cutoff in GRID and cutoff >= exact
    _, w = oracle_weights(rows, "ATT", stabilised=True, cutoff=cutoff)
    assert (w_full > cutoff).any()  # the truncation really bites
    direct = direct_balance(rows, w)
    for b in iptw["balance"]:
        for key, value in direct[b["term"]].items():
            rel(b[key], value)
    t = rows["t"].to_numpy() == 1
    rel(iptw["ess"]["control"], ess(w[~t]))
    model = smf.glm(
        "tox_grade3 ~ t + age + weight_kg + ldh_elevated + C(drug)",
        rows,
        family=sm.families.Binomial(),
        var_weights=w,
    ).fit(tol=1e-14, maxiter=200, cov_type="HC0")
    params = iptw["outcome"]["params"]
    assert list(params) == ["Intercept", "regimen[T.extended_interval]", *DESIGN]
    close([p["coef"] for p in params.values()], ordered(model.params, list(params)))
    close([p["se"] for p in params.values()], ordered(model.bse, list(params)))
    assert iptw["balance_untruncated"] is not None


def test_weighted_cox_stratified_equals_fit_weighted_cox_and_lifelines(
    network, frames, tmp_path
):
    from lifelines import CoxPHFitter

    result = analyse(
        network, tmp_path, outcome_model="cox", time="os_days", event="death"
    )
    iptw = result["iptw"]
    rows = pooled(frames, "extended_interval", took(result))
    _, w = oracle_weights(rows)
    rows = rows.assign(w=w)
    parts = [
        SortedRows(g["os_days"], g["death"], g[["t"]].to_numpy(float), weights=g["w"])
        for _, g in rows.groupby("station", sort=True)
    ]
    fit = fit_weighted_cox(parts, ["t"], stratified=True)
    out = iptw["outcome"]
    est = out["params"]["regimen[T.extended_interval]"]
    close(est["coef"], fit.coefficients[0].coef)
    close(est["se"], fit.coefficients[0].se)  # robust (sandwich)
    close(est["se_model"], fit.model_coefficients[0].se)
    close(est["exp_coef"], fit.coefficients[0].hr)
    cph = CoxPHFitter().fit(
        rows[["os_days", "death", "t", "w", "station"]],
        "os_days",
        "death",
        weights_col="w",
        strata=["station"],
        robust=True,
    )
    close(est["coef"], cph.params_["t"])
    assert out["effect"] == "hazard ratio" and out["stratified"]


def test_weight_based_toxicity_crude_vs_iptw_odds_ratio(network, frames, tmp_path):
    """TRUTH: weight-based dosing OR 0.70 for grade >= 3 toxicity vs standard."""
    result = analyse(
        network,
        tmp_path,
        treated="weight_based",
        outcome="tox_grade3",
        family="binomial",
    )
    took_part = [s["id"] for s in result["stations"] if s["participated"]]
    refused = {s["id"]: s for s in result["stations"] if not s["participated"]}
    # nkr holds too few weight-based patients per covariate level: it refuses
    assert "nkr" in refused and refused["nkr"]["status"] == "refused"
    rows = pooled(frames, "weight_based", took_part)
    crude = smf.glm("tox_grade3 ~ t", rows, family=sm.families.Binomial()).fit()
    _, w = oracle_weights(rows)
    weighted = smf.glm(
        "tox_grade3 ~ t", rows, family=sm.families.Binomial(), var_weights=w
    ).fit(tol=1e-14, maxiter=200, cov_type="HC0")
    est = result["iptw"]["outcome"]["estimate"]
    close(est["coef"], weighted.params["t"])
    crude_or, iptw_or = math.exp(crude.params["t"]), est["exp_coef"]
    note = (
        f"weight_based vs standard toxicity OR at {', '.join(took_part)}: crude "
        f"{crude_or:.3f}, IPTW {iptw_or:.3f} (95% CI {est['exp_ci_lower']:.3f} to "
        f"{est['exp_ci_upper']:.3f}); TRUTH 0.70"
    )
    print(note)
    assert est["exp_ci_lower"] < 0.70 < est["exp_ci_upper"], note


# -- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"control": "extended_interval"}, "control"),
        ({"treated": "weightbased"}, "treated"),
        ({"covariates": ["age", "tox_grade3"]}, "covariates"),
        ({"covariates": ["age", "regimen"]}, "covariates"),
        ({"outcome": None}, "outcome"),
        ({"outcome_model": "cox", "time": "os_days"}, "event"),
        ({"family": "poisson", "link": "logit"}, "link"),
    ],
)
def test_bad_parameters_are_one_line_naming_the_key(network, tmp_path, params, key):
    given = {"outcome": "tox_grade3", "family": "binomial", **params}
    if given.get("outcome_model") == "cox":
        given.pop("outcome")
        given.pop("family")
    with pytest.raises(PhtError) as info:
        analyse(network, tmp_path, **given)
    message = str(info.value)
    assert "\n" not in message and key in message, message


# -- the station's replay of the session ------------------------------------------------
@pytest.fixture(scope="module")
def world(network):  # type: ignore[no-untyped-def]
    from pht.crypto import load_identity
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import EmbeddedEngine
    from pht.orchestrator.requester import Requester

    catalogue = Catalogue()
    net = load_network(network)
    requester = Requester(
        load_identity(network.parent / "keys" / "analyst.key.json"),
        {s: e.public_key for s, e in net.stations.items()},
    )
    opened: list[Any] = []
    with EmbeddedEngine(net, catalogue) as engine:
        yield {
            "net": net,
            "catalogue": catalogue,
            "requester": requester,
            "engine": engine,
            "opened": opened,
        }
        for session in opened:
            session.close()


class Driver:
    """Runs an IPTW session round by round, as the orchestrator does (or not)."""

    def __init__(self, world: dict[str, Any], **params: Any) -> None:
        from pht.orchestrator.requester import signed_train
        from pht.wire import TrainRef

        net, self.requester = world["net"], world["requester"]
        package = world["catalogue"].get(TrainRef.parse(params.pop("train", "iptw")))
        given = {
            "treatment": "regimen",
            "treated": "extended_interval",
            "control": "standard",
            "covariates": ["age", "weight_kg"],
            "outcome": "tox_grade3",
            "family": "binomial",
            **params,
        }
        self.body, envelope = self.requester.request(
            role="analyst",
            purpose="package-management/reassessment",
            train=str(package.manifest.ref),
            train_digest=package.digest,
            train_envelope=signed_train(net.trains, package),
            dataset="d",
            parameters=given,
            targets=sorted(net.stations),
        )
        self.sessions = {}
        for station in sorted(net.stations):
            reply, session = world["engine"].station(station).open_session(envelope)
            assert reply.ok, reply.reason
            self.sessions[station] = session
            world["opened"].append(session)
        self.designed: list[dict[str, Any]] = []
        self.previous: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any], evidence: Any = None) -> dict[str, Any]:
        """One round at every station; the replies (refusals included)."""
        if message["op"] != "design":
            message = {
                **message,
                "evidence": self.designed + self.previous
                if evidence is None
                else evidence,
            }
        replies = {s: session.round(message) for s, session in self.sessions.items()}
        if all(r.ok for r in replies.values()):
            items = [
                {
                    "station": s,
                    "output": self.requester.open(r, self.body.request_id).output,
                    "receipt": r.receipt,
                }
                for s, r in sorted(replies.items())
            ]
            if message["op"] == "design":
                self.designed = items
            else:
                self.previous = items
        return replies

    def outputs(self) -> dict[str, dict[str, Any]]:
        return {e["station"]: e["output"] for e in self.previous}

    def propensity(self) -> np.ndarray:
        """Design and the propensity path to convergence; the converged point."""
        from pht.algorithms.glm_fit import newton_from
        from pht.algorithms.glm_local import model_of, pooled_start
        from pht.trains.glm import _value

        replies = self.send(
            {
                "op": "design",
                "design": {
                    "covariates": [
                        {"column": "age", "levels": [], "reference": None},
                        {"column": "weight_kg", "levels": [], "reference": None},
                    ],
                    "centre": [0.0, 0.0],
                },
            }
        )
        assert all(r.ok for r in replies.values())
        start, _ = pooled_start(
            model_of({"family": "binomial"}),
            {e["station"]: e["output"] for e in self.designed},
            3,
        )
        steps = newton_from(start)
        ask = next(steps)
        while True:
            replies = self.send({"op": "terms", "beta": ask.beta.tolist()})
            assert all(r.ok for r in replies.values())
            try:
                ask = steps.send(_value(self.outputs(), 3))
            except StopIteration as stop:
                return np.asarray(stop.value.beta)


def refused_path(replies: dict[str, Any]) -> bool:
    return all(
        r.status == "refused" and r.reason == Code.PATH.reason for r in replies.values()
    )


def test_weights_only_at_the_converged_propensity_point(world):
    from pht.algorithms.glm_fit import newton_from
    from pht.algorithms.glm_local import model_of, pooled_start

    # before convergence: after the first evaluation, at its point
    driver = Driver(world)
    driver.send(
        {
            "op": "design",
            "design": {
                "covariates": [
                    {"column": "age", "levels": [], "reference": None},
                    {"column": "weight_kg", "levels": [], "reference": None},
                ],
                "centre": [0.0, 0.0],
            },
        }
    )
    start, _ = pooled_start(
        model_of({"family": "binomial"}),
        {e["station"]: e["output"] for e in driver.designed},
        3,
    )
    first = next(newton_from(start)).beta.tolist()
    assert all(r.ok for r in driver.send({"op": "terms", "beta": first}).values())
    assert refused_path(driver.send({"op": "weights", "beta": first}))
    # at the converged point but off it (coefficients the analyst chose): refused
    driver = Driver(world)
    beta = driver.propensity()
    assert refused_path(driver.send({"op": "weights", "beta": (beta + 0.01).tolist()}))
    # honest: accepted, and the outcome model cannot go back to propensity terms
    driver = Driver(world)
    beta = driver.propensity()
    assert all(
        r.ok for r in driver.send({"op": "weights", "beta": beta.tolist()}).values()
    )
    replies = driver.send({"op": "terms", "beta": beta.tolist()})
    assert all(r.reason == Code.SESSION.reason for r in replies.values())


def test_the_outcome_path_starts_where_the_signed_weights_say(world):
    from pht.algorithms.glm import glm_model
    from pht.algorithms.glm_fit import origin
    from pht.algorithms.iptw_local import outcome_sums_of

    driver = Driver(world)
    beta = driver.propensity()
    assert all(
        r.ok for r in driver.send({"op": "weights", "beta": beta.tolist()}).values()
    )
    weighed = driver.outputs()
    start = origin(glm_model("binomial"), outcome_sums_of(weighed), 2).tolist()
    # zero instead of the weighted null model: refused
    assert refused_path(driver.send({"op": "outcome", "beta": [0.0, 0.0]}))
    # forged weights sums (a receipt over other numbers): refused
    driver = Driver(world)
    beta = driver.propensity()
    driver.send({"op": "weights", "beta": beta.tolist()})
    forged = json.loads(json.dumps(driver.designed + driver.previous))
    forged[-1]["output"]["outcome_sums"]["weighted_y"] += 5.0
    sums = {e["station"]: e["output"] for e in forged[len(driver.designed) :]}
    bent = origin(glm_model("binomial"), outcome_sums_of(sums), 2).tolist()
    assert refused_path(driver.send({"op": "outcome", "beta": bent}, forged))
    # checks before the outcome path converged: refused
    driver = Driver(world)
    beta = driver.propensity()
    driver.send({"op": "weights", "beta": beta.tolist()})
    assert refused_path(
        driver.send({"op": "checks", "beta": start, "null_intercept": start[0]})
    )
    # the honest first point of another session with the same data
    driver = Driver(world)
    beta = driver.propensity()
    driver.send({"op": "weights", "beta": beta.tolist()})
    assert all(r.ok for r in driver.send({"op": "outcome", "beta": start}).values())


def test_truncation_cutoff_must_follow_from_the_signed_counts(world):
    from pht.algorithms.iptw_local import cutoff_of

    driver = Driver(world, truncate=0.95, estimand="ATT")
    beta = driver.propensity()
    assert all(
        r.ok for r in driver.send({"op": "weights", "beta": beta.tolist()}).values()
    )
    cutoff = cutoff_of(driver.outputs(), 0.95)
    other = GRID[GRID.index(cutoff) - 1]
    assert refused_path(
        driver.send({"op": "truncate", "beta": beta.tolist(), "cutoff": other})
    )
    driver = Driver(world, truncate=0.95, estimand="ATT")
    beta = driver.propensity()
    driver.send({"op": "weights", "beta": beta.tolist()})
    replies = driver.send({"op": "truncate", "beta": beta.tolist(), "cutoff": cutoff})
    assert all(r.ok for r in replies.values())


def test_an_arm_with_fewer_than_k_patients_is_refused(tmp_path, frames):
    data = dict(frames)
    small = frames["umc"].copy()
    ext = small.index[small["regimen"] == "extended_interval"]
    small.loc[ext[4:], "regimen"] = "standard"  # 4 extended-interval patients < k
    data["umc"] = small
    network = write_network(
        tmp_path / "few",
        data,
        dataset="d",
        min_cell_size=5,
        classes=("aggregate", "model"),
    )
    result = analyse(
        network, tmp_path / "study", outcome="tox_grade3", family="binomial"
    )
    umc = {s["id"]: s for s in result["stations"]}["umc"]
    assert umc["status"] == "refused" and not umc["participated"]
    # refused at extraction (a covariate level under k) or by the train's own rule
    assert umc["reason"] in (Code.TRAIN_REFUSED.reason, Code.SMALL_CELL.reason)
    # the others take part unless their own cell rules refuse (at k = 5, one does)
    assert 1 <= result["iptw"]["stations"] <= 2


def test_a_hostile_train_whose_weights_differ_is_refused(tmp_path, frames):
    from pht.crypto import load_identity
    from pht.manifest import TRAINS_DIR, Catalogue
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import EmbeddedEngine
    from pht.orchestrator.requester import Requester
    from pht.provision import policy_document, provision

    root = tmp_path / "catalogue"
    shutil.copytree(TRAINS_DIR, root)
    folder = root / "evil.iptw"
    folder.mkdir()
    (folder / "manifest.yaml").write_text(
        (TRAINS_DIR / "iptw" / "manifest.yaml")
        .read_text()
        .replace("name: iptw", "name: evil.iptw")
    )
    honest = (TRAINS_DIR / "iptw" / "entrypoint.py").read_text()
    lie = honest.replace(
        "        return self.local.answer(message)\n",
        "        out = self.local.answer(message)\n"
        "        if message.get('op') == 'weights':\n"
        "            out['treated']['w_sum'] *= 1.001\n"
        "        return out\n",
    )
    assert lie != honest
    (folder / "entrypoint.py").write_text(lie)
    catalogue = Catalogue(root)
    (tmp_path / "data").mkdir()
    held = {}
    for s, f in frames.items():
        f.to_parquet(tmp_path / "data" / f"{s}.parquet", index=False)
        held[s] = {"d": tmp_path / "data" / f"{s}.parquet"}
    document = policy_document(
        columns=sorted(frames["umc"].columns),
        trains=[
            {"name": n, "versions": ">=1.0.0,<2.0.0", "signers": ["keyring"]}
            for n in catalogue.names()
        ],
        classes=("aggregate", "model"),
        min_cell_size=K,
    )
    made = provision(tmp_path, held, policy=document, catalogue=catalogue)
    net = load_network(made.network)
    world = {
        "net": net,
        "catalogue": catalogue,
        "requester": Requester(
            load_identity(made.requester_key),
            {s: e.public_key for s, e in net.stations.items()},
        ),
        "opened": [],
    }
    with EmbeddedEngine(net, catalogue) as engine:
        world["engine"] = engine
        driver = Driver(world, train="evil.iptw")
        beta = driver.propensity()  # the honest rounds pass
        replies = driver.send({"op": "weights", "beta": beta.tolist()})
        for session in world["opened"]:
            session.close()
    assert all(
        r.status == "refused" and r.reason == Code.GUARD.reason
        for r in replies.values()
    )


def test_report_shows_the_effect_and_the_balance_table(ate):
    from pht.trains import plugin_for

    sections = dict(plugin_for("iptw").sections)
    html = sections["iptw"](ate)
    assert 'id="iptw"' in html and "SMD after" in html and "odds ratio" in html
    for row in ate["iptw"]["balance"]:
        assert row["term"] in html
