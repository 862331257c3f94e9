"""Outsider attacks on the ``iptw`` train and the equivalence study's IPTW adjustment.

Each disclosure test plays a curious analyst with the honest ``iptw`` (or ``glm``)
train and the honest orchestrator strategy, keeps every station's opened reply, and
works out from them a number the station's rules say must not leave: a count in
(0, k) or one patient's values. A test passes when the station refuses or the number
cannot be recovered. Reproducers with printed numbers: ``/tmp/hattack2/*.py``.

Data (k = 10, three stations): ``cells`` has arms wb/std and two 0/1 covariates a, b
where every arm x value, every (a, b) pair and the events per value and per arm hold
at least k patients at s1, but only 3 wb patients have a = b = 1 and only 3 of the
43 wb patients with a = 1 had an event. ``outlier`` has one young treated patient at
s1 (age 31, cost 77777) whose propensity score is tiny: its ATE weight is about 59,
all the other weights at s1 are below 6.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import run_embedded, write_network, write_study

from pht.algorithms.iptw import GRID, expit

K = 10
STATIONS = ("s1", "s2", "s3")


def _cells(seed: int, small: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = {
        ("wb", 0, 0): 60,
        ("wb", 1, 0): 40,
        ("wb", 0, 1): 40,
        ("wb", 1, 1): 3 if small else 30,
        ("std", 0, 0): 80,
        ("std", 1, 0): 50,
        ("std", 0, 1): 50,
        ("std", 1, 1): 30,
    }
    rows = [cell for cell, n in sizes.items() for _ in range(n)]
    f = pd.DataFrame(rows, columns=["arm", "a", "b"])
    f["age"] = np.round(rng.normal(62, 9, len(f)))
    y = np.zeros(len(f), dtype=np.int64)
    for arm, a, events in (
        ("wb", 1, 3 if small else 15),
        ("wb", 0, 30),
        ("std", 1, 25),
        ("std", 0, 40),
    ):
        idx = np.flatnonzero(((f["arm"] == arm) & (f["a"] == a)).to_numpy())
        y[rng.choice(idx, events, replace=False)] = 1
    f["y"] = y
    return f.sample(frac=1, random_state=seed).reset_index(drop=True)


def _outlier(seed: int, spread: float, outlier: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    age = np.round(rng.normal(62, spread, n))
    t = rng.random(n) < expit(-0.5 + 0.12 * (age - 62))
    if outlier:
        age[0], t[0] = 31.0, True
    cost = np.round(rng.normal(40000, 5000, n))
    if outlier:
        cost[0] = 77777.0
    return pd.DataFrame(
        {
            "arm": np.where(t, "wb", "std"),
            "age": age,
            "ldh": (rng.random(n) < 0.4).astype(np.int64),
            "cost": cost,
        }
    )


class World:
    """Sessions at every station of one network, driven by a train's strategy."""

    def __init__(self, root: Path, frames: dict[str, pd.DataFrame]) -> None:
        from pht.crypto import load_identity
        from pht.manifest import Catalogue
        from pht.orchestrator.config import load_network
        from pht.orchestrator.embedded import EmbeddedEngine
        from pht.orchestrator.requester import Requester

        network = write_network(
            root,
            frames,
            dataset="d",
            min_cell_size=K,
            classes=("aggregate", "model"),
            budget={"queries": 500, "period_days": 30, "organisation_queries": 500},
        )
        self.catalogue = Catalogue()
        self.net = load_network(network)
        self.requester = Requester(
            load_identity(network.parent / "keys" / "analyst.key.json"),
            {s: e.public_key for s, e in self.net.stations.items()},
        )
        self.engine = EmbeddedEngine(self.net, self.catalogue)
        self.engine.__enter__()
        self.opened: list[Any] = []

    def fit(
        self, train: str, mutate: Any = None, **params: Any
    ) -> tuple[Any, list[dict[str, Any]]]:
        """The honest strategy; (its section or the exception, every round seen)."""
        from pht.orchestrator.requester import signed_train
        from pht.trains.glm import GlmStrategy
        from pht.trains.iptw import IptwStrategy
        from pht.wire import TrainRef

        package = self.catalogue.get(TrainRef.parse(train))
        body, envelope = self.requester.request(
            role="analyst",
            purpose="package-management/reassessment",
            train=str(package.manifest.ref),
            train_digest=package.digest,
            train_envelope=signed_train(self.net.trains, package),
            dataset="d",
            parameters=params,
            targets=sorted(self.net.stations),
        )
        sessions, round0 = {}, {}
        for station in sorted(self.net.stations):
            reply, session = self.engine.station(station).open_session(envelope)
            if session is None:
                continue
            self.opened.append(session)
            sessions[station] = session
            round0[station] = self.requester.open(reply, body.request_id)
        strategy = (IptwStrategy if train == "iptw" else GlmStrategy)(round0, params)
        steps = strategy.rounds()
        seen: list[dict[str, Any]] = []
        try:
            messages = next(steps)
            while True:
                replies = {}
                op = next(iter(messages.values()))["op"]
                for s, message in sorted(messages.items()):
                    message = json.loads(json.dumps(message))
                    if mutate is not None:
                        message = mutate(op, s, message) or message
                    reply = sessions[s].round(message)
                    replies[s] = (
                        self.requester.open(reply, body.request_id)
                        if reply.ok
                        else reply
                    )
                seen.append({"op": op, **replies})
                messages = steps.send(replies)
        except StopIteration as stop:
            return stop.value, seen
        except Exception as exc:  # noqa: BLE001 - a refusal: nothing to recover
            return exc, seen

    def close(self) -> None:
        for session in self.opened:
            session.close()
        self.engine.__exit__(None, None, None)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):  # type: ignore[no-untyped-def]
    frames = {s: _cells(i + 1, small=(s == "s1")) for i, s in enumerate(STATIONS)}
    world = World(tmp_path_factory.mktemp("cells12b"), frames)
    yield world
    world.close()


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):  # type: ignore[no-untyped-def]
    frames = {
        "s1": _outlier(1, 7.0, True),
        "s2": _outlier(2, 12.0, False),
        "s3": _outlier(3, 12.0, False),
    }
    world = World(tmp_path_factory.mktemp("outlier12b"), frames)
    yield world
    world.close()


IPTW = {"treatment": "arm", "treated": "wb", "control": "std"}


def _round(seen: list[dict[str, Any]], op: str) -> dict[str, Any]:
    return next(r for r in seen if r["op"] == op)


def _took_part(seen: list[dict[str, Any]], station: str = "s1") -> bool:
    """Whether ``station`` answered every round (else it refused: nothing left)."""
    return all(station in r for r in seen)


def test_iptw_an_arm_by_two_values_cell_never_leaves(cells) -> None:
    section, seen = cells.fit(
        "iptw", **IPTW, covariates=["a", "b"], outcome="y", family="binomial"
    )
    if not isinstance(section, dict):
        return  # refused: nothing released
    if not _took_part(seen):
        return  # s1 refused the design (a cell under k): nothing of it released
    params = section["iptw"]["propensity"]["params"]
    b0, ba, bb = (params[n]["coef"] for n in ("Intercept", "a", "b"))
    treated = _round(seen, "weights")["s1"].output["treated"]
    w10 = 1.0 / float(expit(np.array([b0 + ba]))[0])
    w11 = 1.0 / float(expit(np.array([b0 + ba + bb]))[0])
    n_a = treated["x_sum"][0]  # treated with a = 1 (>= k, allowed)
    n_ab = (treated["wx_sum"][0] - n_a * w10) / (w11 - w10)
    assert not 0 < round(n_ab) < K, f"treated with a = b = 1 at s1: {n_ab:.6f}"


def test_iptw_events_among_an_arm_at_one_value_never_leave(cells) -> None:
    from pht.algorithms.glm import glm_model
    from pht.algorithms.glm_fit import origin
    from pht.algorithms.iptw_local import outcome_sums_of

    section, seen = cells.fit(
        "iptw", **IPTW, covariates=["a"], outcome="y", family="binomial"
    )
    if not isinstance(section, dict):
        return
    if not _took_part(seen):
        return  # s1 refused the design (a cell under k): nothing of it released
    ps = section["iptw"]["propensity"]["params"]
    b0, ba = ps["Intercept"]["coef"], ps["a"]["coef"]
    weighed = _round(seen, "weights")
    treated = weighed["s1"].output["treated"]
    w1 = 1.0 / expit(np.array([b0, b0 + ba]))  # the treated weights at a = 0, 1
    n1 = [treated["n"] - treated["x_sum"][0], treated["x_sum"][0]]
    start = origin(
        glm_model("binomial"),
        outcome_sums_of({s: weighed[s].output for s in STATIONS}),
        2,
    )
    mu0 = float(expit(np.array([start[0]]))[0])
    first = _round(seen, "outcome")["s1"].output
    sum_wy = first["gradient"][1] + mu0 * treated["w_sum"]
    out = section["iptw"]["outcome"]["params"]
    mu1 = float(expit(np.array([sum(v["coef"] for v in out.values())]))[0])
    outer = _round(seen, "checks")["s1"].output["score_outer"][1][1]
    rhs = outer - sum(w1[i] ** 2 * n1[i] * mu1**2 for i in range(2))
    system = np.array([w1, w1**2 * (1 - 2 * mu1)])
    events = np.linalg.solve(system, [sum_wy, rhs])
    assert not 0 < round(events[1]) < K, f"events among wb with a = 1: {events}"


def test_glm_events_among_two_values_held_together_never_leave(cells) -> None:
    section, seen = cells.fit(
        "glm",
        outcome="y",
        family="binomial",
        covariates=["arm", "a"],
        reference={"arm": "std"},
    )
    if not isinstance(section, dict):
        return
    if not _took_part(seen):
        return  # s1 refused the design (a cell under k): nothing of it released
    params = section["glm"]["params"]
    mu = float(expit(np.array([sum(v["coef"] for v in params.values())]))[0])
    checks = _round(seen, "checks")["s1"].output
    both = checks["fisher"][1][2] / (mu * (1 - mu))  # patients wb with a = 1: 43
    events = (checks["score_outer"][1][2] - both * mu**2) / (1 - 2 * mu)
    assert not 0 < round(events) < K, f"events among wb with a = 1: {events:.6f}"


def _truncating_q(world: World) -> float | None:
    """A percentile whose grid cut-off leaves s1 with 1..k-1 weights above it."""
    from pht.algorithms.iptw_local import cutoff_of

    section, seen = world.fit("iptw", **OUTLIER, truncate=0.99)
    assert isinstance(section, dict), section
    outputs = {s: r.output for s, r in _round(seen, "weights").items() if s != "op"}
    chosen = None
    for q in np.linspace(0.5, 0.9999, 5000):
        cutoff = cutoff_of(outputs, float(q))
        if outputs["s1"]["above"][GRID.index(cutoff)] is None:
            chosen = float(q)  # the highest such cut-off: the fewest above it
    return chosen


OUTLIER = {
    **IPTW,
    "covariates": ["age", "ldh"],
    "outcome": "cost",
    "family": "gaussian",
}


def test_iptw_truncation_does_not_single_out_the_patient_with_the_largest_weight(
    outlier,
) -> None:
    q = _truncating_q(outlier)
    if q is None:
        return  # no percentile puts the cut-off where s1 withheld its count
    section, seen = outlier.fit("iptw", **OUTLIER, truncate=q)
    if not isinstance(section, dict):
        return
    if not _took_part(seen):
        return  # s1 refused the design (a cell under k): nothing of it released
    cutoff = section["iptw"]["truncation"]["cutoff"]
    before = _round(seen, "weights")["s1"].output
    after = _round(seen, "truncate")["s1"].output
    arm = before["treated"]
    excess = arm["w_sum"] - after["treated"]["w_sum"]  # sum of (w - c) above c
    if excess <= 0:
        return
    w = cutoff + excess
    single = abs((arm["w2_sum"] - after["treated"]["w2_sum"]) - (w * w - cutoff**2))
    x = (np.array(arm["wx_sum"]) - np.array(after["treated"]["wx_sum"])) / excess
    cost = (
        before["outcome_sums"]["weighted_y"] - after["outcome_sums"]["weighted_y"]
    ) / (before["outcome_sums"]["weight"] - after["outcome_sums"]["weight"])
    leaked = single < 1e-6 * w * w
    assert not leaked, f"one patient at s1: weight {w}, (age, ldh) {x}, cost {cost}"


# -- statistics: a propensity model that did not identify the effect -------------------
def test_iptw_a_drug_held_by_one_arm_only_is_named_on_the_demo_data(
    tmp_path,
) -> None:
    from pht import synth
    from pht.errors import PhtError

    frames = synth.generate(seed=2026, patients=synth.DEFAULT_PATIENTS)
    network = write_network(
        tmp_path / "net", frames, dataset="d", classes=("aggregate", "model")
    )
    study = write_study(
        tmp_path,
        train="iptw",
        dataset="d",
        parameters={
            "treatment": "regimen",
            "treated": "weight_based",
            "control": "standard",
            "covariates": ["age", "ldh_elevated", "drug"],
            "outcome_model": "cox",
            "time": "os_days",
            "event": "death",
            "stabilised": True,
            "truncate": 0.99,
        },
        min_stations=1,
    )
    try:
        result = run_embedded(study, network)
    except PhtError as exc:
        assert "drug" in str(exc) and "\n" not in str(exc), str(exc)
        return
    section = result["iptw"]
    ses = {k: v["se"] for k, v in section["propensity"]["params"].items()}
    said = " ".join(section["warnings"] + list(result.get("warnings") or []))
    assert max(ses.values()) < 1e3 or "drug" in said, (ses, said)


@pytest.mark.parametrize(
    ("op", "extra", "code"),
    [
        ("weights", {"cutoff": 1.5}, "round"),
        ("weights", {"marginal": 0.01}, "round"),
        ("truncate", {"cutoff": 1.0}, "path"),
        ("outcome", {"op": "truncate", "cutoff": 2.0}, "path"),
    ],
)
def test_iptw_a_cutoff_or_marginal_the_analyst_chose_is_refused(
    cells, op, extra, code
) -> None:
    """Held: an analyst's cut-off or marginal never reaches the train."""

    def mutate(seen_op: str, station: str, message: dict[str, Any]) -> Any:
        if seen_op == op and station == "s1":
            return {**message, **extra}
        return None

    params = {**IPTW, "covariates": ["age"], "outcome": "y", "family": "binomial"}
    if op == "truncate":
        params["truncate"] = 0.9
    section, seen = cells.fit("iptw", mutate=mutate, **params)
    assert not isinstance(section, dict)
    reply = _round(seen, op)["s1"]
    assert reply.status == "refused" and reply.reason.startswith(code), reply.reason


def test_equivalence_iptw_misspelt_treatment_names_the_study_key(tmp_path) -> None:
    from pht.errors import ConfigError, PhtError

    frames = {s: _cells(i + 1, small=False) for i, s in enumerate(STATIONS)}
    network = write_network(
        tmp_path / "net",
        frames,
        dataset="d",
        min_cell_size=K,
        classes=("aggregate", "model"),
    )
    study = write_study(
        tmp_path,
        question="Is wb non-inferior to std on y?",
        train=None,
        parameters=None,
        design="equivalence",
        dataset="d",
        comparison={"column": "arm", "treatment": "WB", "reference": "std"},
        covariates=["age", "a"],
        crude=False,
        outcomes=[
            {
                "name": "y",
                "primary": True,
                "measure": "odds_ratio",
                "outcome": "y",
                "higher_is_better": False,
                "hypothesis": "non_inferiority",
                "margin": 1.25,
                "adjustment": "iptw",
            }
        ],
    )
    with pytest.raises(PhtError) as info:
        run_embedded(study, network)
    message = str(info.value)
    assert "comparison.treatment" in message and "'WB'" in message, message
    assert isinstance(info.value, ConfigError), type(info.value)
