"""The ``glm`` train end to end: statsmodels on the pooled rows is the oracle.

Every fit runs through the embedded engine with the process executor (signed
request, policy, extraction, the station's kernel recomputing every answer, the
Newton path replayed at each station). Coefficients, model-based, HC0 and
cluster-robust standard errors, deviance and log-likelihoods equal statsmodels'
``GLM`` on the concatenated rows to 1e-8; then the station's rules and the errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from conftest import run_embedded, write_network, write_study

from pht import synth
from pht.errors import ConvergenceError, DataError, PhtError
from pht.station.codes import Code

TOL = 1e-8
COLUMNS = [
    "tox_grade3",
    "death",
    "os_days",
    "cost_eur",
    "age",
    "ecog",
    "regimen",
    "drug",
    "ldh_elevated",
]


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    data = synth.generate(seed=11, patients=6000)
    return {s: f[COLUMNS].reset_index(drop=True) for s, f in data.items()}


@pytest.fixture(scope="module")
def network(tmp_path_factory, frames) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("glm")
    # k = 3: the oracle tests want stations in the fit (with k = 10 only umc has no
    # cell under k, e.g. dica's 7 toxicities among its 55 weight-based patients)
    return write_network(
        root,
        frames,
        dataset="d",
        min_cell_size=3,
        classes=("aggregate", "model"),
        budget={"queries": 500, "period_days": 30, "organisation_queries": 500},
    )


def fit(network: Path, tmp: Path, **params: Any) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    study = write_study(
        tmp, train="glm", dataset="d", parameters=params, min_stations=1
    )
    result = run_embedded(study, network)
    took = [s["id"] for s in result["stations"] if s["participated"]]
    if "glm" in result:
        result["glm"]["took_part"] = took  # the oracle's rows: these stations'
    return result


def pooled(
    frames: dict[str, pd.DataFrame], glm: dict[str, Any] | None = None
) -> pd.DataFrame:
    took = set(glm["took_part"]) if glm is not None else set(frames)
    out = pd.concat(
        [f.assign(station=s) for s, f in sorted(frames.items()) if s in took],
        ignore_index=True,
    )
    return out


def coefs(glm: dict[str, Any], key: str) -> dict[str, float]:
    return {name: p[key] for name, p in glm["params"].items()}


def named(series: pd.Series) -> dict[str, float]:
    """statsmodels' values by pht's names (``C(x, Treatment('r'))[T.l]`` -> ``x[T.l]``)."""
    import re

    return {
        re.sub(r"^C\((\w+)(?:, [^)]*\))?\)", r"\1", str(k)): float(v)
        for k, v in series.items()
    }


def close(a: Any, b: Any, tol: float = TOL) -> None:
    if isinstance(b, pd.Series):
        by_name = named(b)
        b = [by_name[name] for name in a]
        a = list(a.values())
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))) <= tol, (a, b)


# formula order = pht order: intercept, covariates in order (levels in factor order)
FORMULA = "{y} ~ age + ldh_elevated + C(regimen, Treatment('standard')) + drug"
COVARIATES = ["age", "ldh_elevated", "regimen", "drug"]


def test_logistic_equals_statsmodels_model_hc0_cluster(network, frames, tmp_path):
    glm = fit(
        network,
        tmp_path,
        outcome="tox_grade3",
        family="binomial",
        # not drug: regimen x drug cells hold fewer than k toxicities at some stations
        covariates=["age", "ldh_elevated", "regimen"],
        reference={"regimen": "standard"},
        cov_type="HC0",
    )["glm"]
    rows = pooled(frames, glm)
    formula = "tox_grade3 ~ age + ldh_elevated + C(regimen, Treatment('standard'))"
    family = sm.families.Binomial()
    model = smf.glm(formula, rows, family=family).fit(tol=1e-14, maxiter=200)
    hc0 = smf.glm(formula, rows, family=family).fit(
        tol=1e-14, maxiter=200, cov_type="HC0"
    )
    groups = rows["station"].astype("category").cat.codes
    cluster = smf.glm(formula, rows, family=family).fit(
        tol=1e-14, maxiter=200, cov_type="cluster", cov_kwds={"groups": groups}
    )
    assert list(glm["params"])[:3] == ["Intercept", "age", "ldh_elevated"]
    # nkr: 1 toxicity among its 17 weight-based patients, a cell under k: refused
    assert glm["took_part"] == ["dica", "umc"]
    close(coefs(glm, "coef"), model.params)
    close(coefs(glm, "se_model"), model.bse)
    close(coefs(glm, "se_hc0"), hc0.bse)
    close(coefs(glm, "se"), hc0.bse)
    close(coefs(glm, "se_cluster"), cluster.bse)
    close(coefs(glm, "p_value"), hc0.pvalues)
    order = [list(named(hc0.params)).index(n) for n in glm["params"]]
    close(np.array(glm["hc0_covariance"]), hc0.cov_params().values[order][:, order])
    close(glm["deviance"], model.deviance)
    close(glm["null_deviance"], model.null_deviance)
    close(glm["loglik"], model.llf)
    close(glm["null_loglik"], model.llnull)
    close(glm["aic"], model.aic)
    assert glm["n"] == len(rows) and glm["events"] == int(rows["tox_grade3"].sum())
    assert glm["effect"] == "odds ratio" and glm["converged"]
    assert json.dumps(glm, allow_nan=False)


def test_poisson_with_exposure_equals_statsmodels(network, frames, tmp_path):
    glm = fit(
        network,
        tmp_path,
        outcome="death",
        family="poisson",
        covariates=COVARIATES,
        reference={"regimen": "standard"},
        exposure="os_days",
    )["glm"]
    rows = pooled(frames, glm)
    model = smf.glm(
        FORMULA.format(y="death"),
        rows,
        family=sm.families.Poisson(),
        exposure=rows["os_days"],
    ).fit(tol=1e-14, maxiter=200)
    close(coefs(glm, "coef"), model.params)
    close(coefs(glm, "se"), model.bse)
    close(glm["deviance"], model.deviance)
    close(glm["null_deviance"], model.null_deviance)
    close(glm["loglik"], model.llf)
    assert glm["effect"] == "rate ratio"


def test_gaussian_equals_statsmodels(network, frames, tmp_path):
    glm = fit(
        network,
        tmp_path,
        outcome="cost_eur",
        family="gaussian",
        covariates=COVARIATES,
        reference={"regimen": "standard"},
        cov_type="HC0",
    )["glm"]
    rows = pooled(frames, glm)
    formula = FORMULA.format(y="cost_eur")
    gaussian = smf.glm(formula, rows, family=sm.families.Gaussian())
    model = gaussian.fit(tol=1e-14, maxiter=200)
    hc0 = gaussian.fit(tol=1e-14, maxiter=200, cov_type="HC0")
    close(coefs(glm, "coef"), model.params)
    close(coefs(glm, "se_model"), model.bse)
    close(coefs(glm, "se_hc0"), hc0.bse)
    close(glm["scale"], model.scale)
    close(glm["deviance"], model.deviance)
    close(glm["loglik"], model.llf)
    close(glm["null_loglik"], model.llnull)
    assert glm["effect"] is None and glm["events"] is None


def test_log_binomial_risk_ratios_equal_statsmodels(network, frames, tmp_path):
    glm = fit(
        network,
        tmp_path,
        outcome="tox_grade3",
        family="binomial",
        link="log",
        covariates=["regimen", "drug"],
        reference={"regimen": "standard"},
    )["glm"]
    rows = pooled(frames, glm)
    import warnings

    from statsmodels.tools.sm_exceptions import DomainWarning

    warnings.simplefilter("ignore", DomainWarning)
    model = smf.glm(
        "tox_grade3 ~ C(regimen, Treatment('standard')) + drug",
        rows,
        family=sm.families.Binomial(link=sm.families.links.Log()),
    ).fit(tol=1e-14, maxiter=200)
    close(coefs(glm, "coef"), model.params)
    close(coefs(glm, "se"), model.bse)
    assert glm["effect"] == "risk ratio"


def test_station_fixed_effects_equal_statsmodels_dummies(tmp_path, frames):
    network = write_network(
        tmp_path / "shown",
        frames,
        dataset="d",
        min_cell_size=3,
        classes=("aggregate", "model"),
        show_station_name=True,
    )
    glm = fit(
        network,
        tmp_path / "study",
        outcome="tox_grade3",
        family="binomial",
        covariates=["age", "regimen"],
        reference={"regimen": "standard"},
        station_effects=True,
    )["glm"]
    rows = pooled(frames, glm)
    model = smf.glm(
        "tox_grade3 ~ age + C(regimen, Treatment('standard')) + C(station)",
        rows,
        family=sm.families.Binomial(),
    ).fit(tol=1e-14, maxiter=200)
    assert glm["took_part"] == ["dica", "umc"]  # nkr: a cell under k (see above)
    assert list(glm["params"])[-1] == "station[T.umc]"
    close(coefs(glm, "coef"), model.params)
    close(coefs(glm, "se"), model.bse)


def test_station_effects_of_hidden_stations_are_not_shown(network, tmp_path):
    result = fit(
        network,
        tmp_path,
        outcome="tox_grade3",
        family="binomial",
        covariates=["age", "regimen"],
        station_effects=True,
    )
    glm = result["glm"]
    assert not any(name.startswith("station[") for name in glm["params"])
    assert glm["station_effects_hidden"] == len(glm["took_part"]) - 1 >= 1
    assert len(glm["covariance"]) == len(glm["params"])
    assert glm["per_station"] == {}
    shown = json.dumps({k: v for k, v in glm.items() if k != "took_part"})
    assert "dica" not in shown and "nkr" not in shown and "umc" not in shown


def test_lung_real_data_split_by_institution(tmp_path, lung):
    rows = lung.rename(columns={"ph.ecog": "ecog", "wt.loss": "wt_loss"})
    rows = rows[["inst", "time", "status", "age", "sex", "ecog"]].dropna()
    rows = rows.assign(died=rows["status"].astype(int))  # lifelines: 1 = died
    groups = {"a": [1, 3, 11], "b": [12, 13, 16, 22, 26], "c": [2, 4, 5, 6, 7, 15]}
    frames = {
        s: rows[rows["inst"].isin(v)].drop(columns=["inst", "status"])
        for s, v in groups.items()
    }
    # k = 5: at k = 10 the 9 women alive at station a are a cell under k (refused)
    network = write_network(
        tmp_path / "lung",
        frames,
        dataset="d",
        min_cell_size=5,
        classes=("aggregate", "model"),
    )
    glm = fit(
        network,
        tmp_path / "study",
        outcome="died",
        family="poisson",
        covariates=["age", "sex"],  # ecog 3: 1 patient, a cell under k
        exposure="time",
        cov_type="HC0",
    )["glm"]
    assert len(glm["took_part"]) >= 2
    both = pd.concat([frames[s] for s in glm["took_part"]], ignore_index=True)
    model = smf.glm(
        "died ~ age + sex",
        both,
        family=sm.families.Poisson(),
        exposure=both["time"],
    ).fit(tol=1e-14, maxiter=200, cov_type="HC0")
    close(coefs(glm, "coef"), model.params)
    close(coefs(glm, "se"), model.bse)


def test_separation_names_the_covariate(tmp_path):
    rng = np.random.default_rng(3)
    frames = {}
    for s in ("s1", "s2"):
        n = 300
        age = rng.normal(60, 10, n).round()
        marker = (rng.random(n) < 0.5).astype(int)
        frames[s] = pd.DataFrame(
            {
                "age": age,
                "marker": marker,
                "y": np.where(marker == 1, 1, (rng.random(n) < 0.1).astype(int)),
            }
        )
        frames[s].loc[frames[s]["marker"] == 0, "y"] = 0
        frames[s].loc[:40, "y"] = 0  # some marker-1 patients without events
        frames[s].loc[:40, "marker"] = 1
        frames[s].loc[frames[s]["marker"] == 1, "y"] = 1
        frames[s].loc[frames[s]["marker"] == 0, "y"] = 0
    network = write_network(
        tmp_path / "sep", frames, dataset="d", classes=("aggregate", "model")
    )
    with pytest.raises(DataError, match="perfect separation: marker"):
        fit(
            network,
            tmp_path / "study",
            outcome="y",
            family="binomial",
            covariates=["age", "marker"],
        )


def test_collinear_covariates_are_named(tmp_path, frames):
    data = {
        s: f.assign(age_months=f["age"] * 12.0)[["tox_grade3", "age", "age_months"]]
        for s, f in frames.items()
    }
    network = write_network(
        tmp_path / "col", data, dataset="d", classes=("aggregate", "model")
    )
    with pytest.raises(DataError, match="collinear"):
        fit(
            network,
            tmp_path / "study",
            outcome="tox_grade3",
            family="binomial",
            covariates=["age", "age_months"],
        )


def test_no_convergence_in_max_iter(network, tmp_path):
    with pytest.raises(ConvergenceError, match="did not converge in 1 iterations"):
        fit(
            network,
            tmp_path,
            outcome="tox_grade3",
            family="binomial",
            covariates=COVARIATES,
            max_iter=1,
        )


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"family": "gaussian", "link": "logit"}, "link"),
        ({"family": "binomial", "exposure": "os_days"}, "exposure"),
        ({"family": "binomial", "covariates": ["tox_grade3", "age"]}, "covariates"),
        ({"family": "binomial", "reference": {"stage": "IV"}}, "reference"),
    ],
)
def test_bad_parameters_are_one_line_naming_the_key(network, tmp_path, params, key):
    given = {"outcome": "tox_grade3", "covariates": ["age"], **params}
    with pytest.raises(PhtError) as info:
        fit(network, tmp_path, **given)
    message = str(info.value)
    assert "\n" not in message and key in message


def test_a_station_with_few_events_refuses(tmp_path, frames):
    data = dict(frames)
    small = frames["umc"].copy()
    small["tox_grade3"] = 0
    small.loc[:4, "tox_grade3"] = 1  # 5 events < k = 10
    data["umc"] = small
    network = write_network(
        tmp_path / "few", data, dataset="d", classes=("aggregate", "model")
    )
    result = fit(
        network,
        tmp_path / "study",
        outcome="tox_grade3",
        family="binomial",
        covariates=["age"],
    )
    umc = {s["id"]: s for s in result["stations"]}["umc"]
    assert umc["status"] == "refused" and not umc["participated"]
    assert result["glm"]["n"] == len(frames["nkr"]) + len(frames["dica"])


# -- the station's replay of the session --------------------------------------------
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


def _open(world, **params: Any):  # type: ignore[no-untyped-def]
    from pht.orchestrator.requester import signed_train
    from pht.wire import TrainRef

    net, requester = world["net"], world["requester"]
    package = world["catalogue"].get(TrainRef.parse("glm"))
    body, envelope = requester.request(
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(net.trains, package),
        dataset="d",
        parameters=params,
        targets=sorted(net.stations),
    )
    sessions = {}
    for station in sorted(net.stations):
        reply, session = world["engine"].station(station).open_session(envelope)
        assert reply.ok, reply.reason
        sessions[station] = session
        world["opened"].append(session)
    return body, requester, sessions


DESIGN = {
    "op": "design",
    "design": {
        "covariates": [{"column": "age", "levels": [], "reference": None}],
        "centre": [0.0],
    },
}


def _designed(world):  # type: ignore[no-untyped-def]
    body, requester, sessions = _open(
        world, outcome="tox_grade3", family="binomial", covariates=["age"]
    )
    replies = {s: session.round(DESIGN) for s, session in sessions.items()}
    assert all(r.ok for r in replies.values())
    evidence = [
        {
            "station": s,
            "output": requester.open(r, body.request_id).output,
            "receipt": r.receipt,
        }
        for s, r in sorted(replies.items())
    ]
    return sessions, evidence


def _origin(evidence: list[dict[str, Any]]) -> list[float]:
    from pht.algorithms.glm_local import model_of, pooled_start

    start, _ = pooled_start(
        model_of({"family": "binomial"}),
        {e["station"]: e["output"] for e in evidence},
        2,
    )
    return start.tolist()


def test_the_first_point_must_be_the_null_model_proven_by_design_sums(world):
    sessions, evidence = _designed(world)
    start = _origin(evidence)
    # zero instead of the origin: refused
    reply = sessions["nkr"].round(
        {"op": "terms", "beta": [0.0, 0.0], "evidence": evidence}
    )
    assert reply.status == "refused" and reply.reason == Code.PATH.reason
    # the origin without the design evidence: refused
    sessions, evidence = _designed(world)
    reply = sessions["nkr"].round({"op": "terms", "beta": _origin(evidence)})
    assert reply.status == "refused" and reply.reason == Code.PATH.reason
    # forged design sums (a receipt over other numbers): refused
    sessions, evidence = _designed(world)
    forged = json.loads(json.dumps(evidence))
    forged[1]["output"]["sums"]["weighted_y"] += 5.0
    reply = sessions["nkr"].round(
        {"op": "terms", "beta": _origin(forged), "evidence": forged}
    )
    assert reply.status == "refused" and reply.reason == Code.PATH.reason
    # the honest first point
    sessions, evidence = _designed(world)
    start = _origin(evidence)
    reply = sessions["nkr"].round({"op": "terms", "beta": start, "evidence": evidence})
    assert reply.ok


def test_checks_only_at_the_converged_point(world):
    sessions, evidence = _designed(world)
    start = _origin(evidence)
    reply = sessions["nkr"].round({"op": "terms", "beta": start, "evidence": evidence})
    assert reply.ok
    reply = sessions["nkr"].round(
        {
            "op": "checks",
            "beta": start,
            "null_intercept": start[0],
            "evidence": evidence,
        }
    )
    assert reply.status == "refused" and reply.reason == Code.PATH.reason


def test_station_effects_name_only_addressed_stations(world):
    body, requester, sessions = _open(
        world,
        outcome="tox_grade3",
        family="binomial",
        covariates=["age"],
        station_effects=True,
    )
    evil = json.loads(json.dumps(DESIGN))
    evil["design"]["stations"] = ["dica", "elsewhere", "nkr"]
    reply = sessions["nkr"].round(evil)
    assert reply.status == "refused"
    # without station_effects in the signed request, no station list
    body, requester, sessions = _open(
        world, outcome="tox_grade3", family="binomial", covariates=["age"]
    )
    evil["design"]["stations"] = ["dica", "nkr", "umc"]
    reply = sessions["nkr"].round(evil)
    assert reply.status == "refused" and reply.reason == Code.DESIGN.reason
