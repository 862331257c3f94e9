"""Cox model checks: proportional hazards, concordance, per-station estimates.

Oracle: R survival 3.5-3 on the pooled rows (``tests/reference/cox_checks_reference.R``
made ``cox_checks_reference.json``): ``cox.zph(fit, transform = "log", terms =
TRUE)``, ``fit$concordance`` (stratified) or ``concordance(... + strata(station))``
(pooled mode: pairs within stations), each station's own ``coxph``, and Cochran's Q,
I^2 and the DerSimonian-Laird tau^2 written out from those fits. Then attacks on the
``checks`` round.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import CLASSES, fit_federated, run_embedded, write_network, write_study
from test_station_attacks import ROLES, K, frame, hostile_cox, request

from pht.algorithms.cox_checks import concordance_counts, heterogeneity
from pht.crypto import load_identity
from pht.manifest import TRAINS_DIR, Catalogue
from pht.orchestrator.config import load_network
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester
from pht.provision import policy_document, provision
from pht.station.codes import Code
from pht.trains import run_strategy
from pht.trains.survival_cox import CoxStrategy

HERE = Path(__file__).parent / "reference"
R = json.loads((HERE / "cox_checks_reference.json").read_text())
TOL = 1e-6
LUNG_NAMES = {"age": "age", "sex": "sex", "ecog[T.1]": "ecog1", "ecog[T.2]": "ecog2"}
POOLED_NAMES = {"x": "x", "grp[T.b]": "grpb", "grp[T.c]": "grpc"}


def lung_frames() -> dict[str, pd.DataFrame]:
    """lung without missing or level-3 ph.ecog, stations by row parity (as in R)."""
    lung = pd.read_csv(HERE / "lung.csv")
    lung = lung[lung["ph.ecog"].notna() & (lung["ph.ecog"] != 3)].reset_index(drop=True)
    rows = pd.DataFrame(
        {
            "time": lung["time"].astype(float),
            "status": lung["status"].astype(int),
            "age": lung["age"].astype(float),
            "sex": lung["sex"].astype(float),
            "ecog": lung["ph.ecog"].astype(int),
        }
    )
    return {f"s{j}": rows.iloc[j::2].reset_index(drop=True) for j in (0, 1)}


def assert_checks_equal_r(
    cox: dict[str, Any], ref: dict[str, Any], names: dict
) -> None:
    for term, row in ref["ph"].items():
        ours = (
            cox["ph_test"]["global"]
            if term == "GLOBAL"
            else cox["ph_test"]["terms"][term]
        )
        assert ours["df"] == row["df"], term
        assert abs(ours["chisq"] - row["chisq"]) <= TOL * max(1, row["chisq"]), term
        assert abs(ours["p_value"] - row["p"]) <= TOL, term
    assert cox["ph_test"]["transform"] == "log"
    conc, r_conc = cox["concordance"], ref["concordance"]
    for key in ("concordant", "discordant", "tied_risk"):
        assert conc[key] == r_conc[key], key
    assert abs(conc["c"] - r_conc["c"]) <= TOL
    assert abs(conc["se"] - r_conc["se"]) <= TOL
    for station, fit in ref["stations"].items():
        own = cox["station_estimates"][station]
        for ours, theirs in names.items():
            assert abs(own[ours]["coef"] - fit["coef"][theirs]) <= TOL, (station, ours)
            assert abs(own[ours]["se"] - fit["se"][theirs]) <= TOL, (station, ours)
    for ours, theirs in names.items():
        mine, r_het = cox["heterogeneity"][ours], ref["heterogeneity"][theirs]
        for key in ("q", "p_value", "i2", "tau2"):
            r_key = "p" if key == "p_value" else key
            assert abs(mine[key] - r_het[r_key]) <= TOL, (ours, key)
        assert mine["df"] == r_het["df"] == 1


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_stratified_checks_equal_r_cox_zph_concordance_and_own_fits(
    tmp_path: Path, ties: str
) -> None:
    # R: coxph(Surv(time, status) ~ age + sex + ecog + strata(station), ties = ties);
    # cox.zph(fit, transform = "log", terms = TRUE); fit$concordance
    ref = R[f"lung_stratified_{ties}"]
    result = fit_federated(
        tmp_path,
        lung_frames(),
        show_station_name=True,
        time="time",
        event="status",
        covariates=["age", "sex", "ecog"],
        categorical=["ecog"],
        ties=ties,
    )
    cox = result["cox"]
    for ours, theirs in LUNG_NAMES.items():
        assert abs(cox["params"][ours]["coef"] - ref["fit"]["coef"][theirs]) <= 1e-8
    assert_checks_equal_r(cox, ref, LUNG_NAMES)
    assert cox["concordance"]["within_stations"] is False
    assert not cox["warnings"]


def test_pooled_checks_equal_r_on_the_grid_with_within_station_concordance(
    tmp_path: Path,
) -> None:
    # R: coxph(Surv(time, status) ~ x + grp) on rows whose times are the stations'
    # grid (2 events and 2 censorings per level of grp at every integer time, k = 2,
    # step 1);
    # concordance(Surv(time, status) ~ lp + strata(station), reverse = TRUE)
    ref = R["pooled_efron"]
    rows = pd.read_csv(HERE / "cox_checks_pooled.csv")
    frames = {
        s: part.drop(columns="station").reset_index(drop=True)
        for s, part in rows.groupby("station")
    }
    # roles named, so the grid is built for the one event column (k = 2, step 1)
    document = policy_document(columns=["time"], classes=CLASSES, min_cell_size=2)
    entry = document["datasets"]["*"]
    entry["columns"] = {
        "time": ["time"],
        "status": ["event"],
        "x": ["covariate"],
        "grp": ["covariate"],
    }
    entry["show_station_name"] = True
    network = write_network(tmp_path, frames, dataset="d", policy=document)
    study = write_study(
        tmp_path,
        train="survival.cox",
        dataset="d",
        parameters={
            "time": "time",
            "event": "status",
            "covariates": ["x", "grp"],
            "mode": "pooled",
        },
    )
    released: dict[str, Any] = {}
    result = run_embedded(study, network, released)
    outputs = released[result["provenance"]["request_id"]]
    for s in frames:  # the precondition: the released grid is the times themselves
        assert outputs[s][0]["event_times"] == [float(t) for t in range(1, 21)]
    cox = result["cox"]
    for ours, theirs in POOLED_NAMES.items():
        assert abs(cox["params"][ours]["coef"] - ref["fit"]["coef"][theirs]) <= 1e-8
    assert_checks_equal_r(cox, ref, POOLED_NAMES)
    assert cox["concordance"]["within_stations"] is True


def test_hidden_stations_are_numbered_and_policy_can_withhold_own_fits(
    tmp_path: Path,
) -> None:
    frames = lung_frames()
    params = {"time": "time", "event": "status", "covariates": ["age", "sex"]}
    hidden = fit_federated(tmp_path / "a", frames, **params)["cox"]
    assert sorted(hidden["station_estimates"]) == ["station 1", "station 2"]
    assert set(hidden["heterogeneity"]) == {"age", "sex"}
    # station_estimates: false (as when the key is absent): no own fits leave
    document = policy_document(columns=sorted(frames["s0"].columns), min_cell_size=10)
    document["datasets"]["*"].pop("station_estimates")
    network = write_network(tmp_path / "b", frames, dataset="d", policy=document)
    study = write_study(
        tmp_path / "b", train="survival.cox", dataset="d", parameters=params
    )
    cox = run_embedded(study, network)["cox"]
    assert cox["station_estimates"] == {} and "heterogeneity" not in cox
    assert "ph_test" in cox and "concordance" in cox


def test_checks_false_sends_no_checks_round(tmp_path: Path) -> None:
    params = {"time": "time", "event": "status", "covariates": ["age", "sex"]}
    on = fit_federated(tmp_path / "a", lung_frames(), **params)
    off = fit_federated(tmp_path / "b", lung_frames(), checks=False, **params)
    assert "ph_test" not in off["cox"] and "concordance" not in off["cox"]
    assert off["cox"]["params"] == on["cox"]["params"]


def test_concordance_counts_equal_brute_force_pairs() -> None:
    rng = np.random.default_rng(7)
    time = rng.integers(1, 15, 120).astype(float)
    event = rng.integers(0, 2, 120).astype(float)
    risk = rng.integers(0, 6, 120).astype(float)
    ours = concordance_counts(time, event, risk)
    conc = disc = tied = 0
    for i in range(120):
        for j in range(120):
            comparable = event[i] == 1 and (
                time[j] > time[i] or (time[j] == time[i] and event[j] == 0)
            )
            if comparable:
                conc += risk[i] > risk[j]
                disc += risk[i] < risk[j]
                tied += risk[i] == risk[j]
    assert (ours.concordant, ours.discordant, ours.tied_risk) == (conc, disc, tied)


def test_heterogeneity_hand_computed() -> None:
    # y = (0.1, 0.5), se = (0.1, 0.2): w = (100, 25), pooled 0.18, Q = 3.2, I^2 = 2.2/3.2
    h = heterogeneity([0.1, 0.5], [0.1, 0.2])
    assert h.q == pytest.approx(3.2) and h.df == 1
    assert h.i2 == pytest.approx(0.6875)
    assert h.tau2 == pytest.approx(2.2 / (125 - (100**2 + 25**2) / 125))  # 0.055


# -- attacks on the checks round -------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Two stations; the catalogue adds a signed Cox train that lies in `checks`."""
    root = tmp_path_factory.mktemp("checks")
    shutil.copytree(TRAINS_DIR, root / "catalogue")
    folder = root / "catalogue" / "evil.coxchecks"
    folder.mkdir()
    (folder / "manifest.yaml").write_text(
        (TRAINS_DIR / "survival.cox" / "manifest.yaml")
        .read_text()
        .replace("name: survival.cox", "name: evil.coxchecks")
    )
    (folder / "entrypoint.py").write_text(
        hostile_cox(
            '"concordant": counts.concordant,', '"concordant": counts.concordant + 1,'
        )
    )
    catalogue = Catalogue(root / "catalogue")
    (root / "data").mkdir()
    held = {}
    for i, s in enumerate(("s1", "s2")):
        frame(i + 1).to_parquet(root / "data" / f"{s}.parquet", index=False)
        held[s] = {"d": root / "data" / f"{s}.parquet"}
    document = policy_document(
        columns=[],
        trains=[
            {"name": n, "versions": ">=1.0.0,<2.0.0", "signers": ["keyring"]}
            for n in catalogue.names()
        ],
        min_cell_size=K,
    )
    document["datasets"]["*"]["columns"] = ROLES
    made = provision(root, held, policy=document, catalogue=catalogue)
    network = load_network(made.network)
    return {
        "catalogue": catalogue,
        "network": network,
        "engine": EmbeddedEngine(network, catalogue),
        "requester": Requester(
            load_identity(made.requester_key),
            {s: e.public_key for s, e in network.stations.items()},
        ),
    }


PARAMS = {
    "time": "os_days",
    "event": "death",
    "covariates": ["age", "sex"],
    "mode": "stratified",
    "ties": "efron",
}


class Steered(CoxStrategy):
    """The honest strategy, with the messages of some rounds replaced."""

    def __init__(self, opened, parameters, change):  # type: ignore[no-untyped-def]
        super().__init__(opened, parameters)
        self.change = change
        self.seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def rounds(self):  # type: ignore[no-untyped-def]
        inner = super().rounds()
        messages = next(inner)
        while True:
            message = next(iter(messages.values()))
            replaced = self.change(message, self.seen)
            sent = message if replaced is None else replaced
            replies = yield {s: sent for s in messages}
            self.seen.append((sent, dict(replies)))
            if replaced is not None:
                return {"replies": replies}
            extra = self.change(
                None, self.seen
            )  # a round the honest one would not send
            if extra is not None:
                replies = yield {s: extra for s in messages}
                return {"replies": replies}
            try:
                messages = inner.send(replies)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


def run(world, train: str, change=lambda m, seen: None):  # type: ignore[no-untyped-def]
    body, envelope = request(world, train, **PARAMS)
    group = world["engine"].open_sessions(
        {"s1": envelope, "s2": envelope},
        opener=lambda r: world["requester"].open(r, body.request_id),
    )
    with group:
        return run_strategy(Steered(group.opened, PARAMS, change), group)


def test_checks_run_once_at_the_converged_point(world) -> None:
    cox = run(world, "survival.cox")["cox"]
    assert cox["converged"] and "ph_test" in cox and "concordance" in cox


def test_checks_before_convergence_are_refused(world) -> None:
    # after two evaluations, `checks` at the point just evaluated: on the path, with
    # valid signed evidence, but where the station's replay has not converged
    def early(message, seen):  # type: ignore[no-untyped-def]
        evaluated = [m for m, _ in seen if m["op"] == "terms"]
        if message and message["op"] == "terms" and len(evaluated) == 2:
            return {
                "op": "checks",
                "beta": evaluated[-1]["beta"],
                "evidence": message["evidence"],
            }
        return None

    replies = run(world, "survival.cox", early)["replies"]
    assert all(r.status == "refused" for r in replies.values())
    assert {r.reason for r in replies.values()} == {Code.PATH.reason}


def test_checks_twice_are_refused(world) -> None:
    def again(message, seen):  # type: ignore[no-untyped-def]
        if message is None and seen[-1][0]["op"] == "checks":
            return {**seen[-1][0]}
        return None

    replies = run(world, "survival.cox", again)["replies"]
    assert {r.reason for r in replies.values()} == {Code.PATH.reason}


def test_a_train_answering_checks_with_other_numbers_is_refused(world) -> None:
    # a trusted key signed a train whose concordance count is off by one: the station
    # recomputes the answer, refuses it, and the fit stands without checks
    cox = run(world, "evil.coxchecks")["cox"]
    assert cox["converged"] and "ph_test" not in cox
    assert any("no model checks" in w for w in cox["warnings"])


def test_hidden_station_labels_are_random_and_never_a_lone_one() -> None:
    from pht.trains.survival_cox import station_labels

    # a lone hidden station would be named by elimination, or worked out from the
    # pooled fit minus the shown lines: no line for anyone
    assert station_labels({"a": True, "b": False}) == {}
    assert station_labels({"b": False}) == {}
    assert station_labels({"a": True, "b": True}) == {"a": "a", "b": "b"}
    # hidden stations are numbered in an order nothing in the result recovers
    seen = {
        tuple(sorted(station_labels({"a": True, "b": False, "c": False}).items()))
        for _ in range(64)
    }
    assert all(dict(labels)["a"] == "a" for labels in seen)
    assert {dict(labels)["b"] for labels in seen} == {"station 1", "station 2"}
