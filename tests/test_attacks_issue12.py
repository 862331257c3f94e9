"""Outsider attacks on issue 12's trains: counts in (0, k) and per-patient values.

Each test plays a curious analyst with an honest ``glm`` or ``means`` train who sends
raw round messages to the stations (as the orchestrator would, but choosing the
design's free fields) and then works out, from the released, opened outputs alone, a
number the station's rules say must not leave: a count in (0, k) or one patient's
value. A test passes when the station refuses or the number cannot be recovered.

The data (per station, k = 10): ``grp`` a/b (200/100), ``grp2`` c/d (250/50) with
exactly 2 patients in both b and d, a 0/1 outcome ``y`` with 3 events among the b
patients, ``dose`` where 98 of the b patients share the public fixed dose 200 and 2
differ (130, 170), and a numeric ``line`` 1/2/3 with 4 patients at line 3.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import write_network

K = 10
N = 300
STATIONS = ("s1", "s2", "s3")


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grp = np.array(["a"] * 200 + ["b"] * 100)
    grp2 = np.array(["c"] * N)
    grp2[:48] = "d"  # 48 'a' patients in d
    grp2[200:202] = "d"  # 2 'b' patients in d: a cell of 2
    y = np.zeros(N, dtype=np.int64)
    y[rng.choice(200, 40, replace=False)] = 1  # 40 events among a
    y[[250, 260, 270]] = 1  # 3 events among b
    dose = np.round(rng.normal(300, 40, N))
    dose[200:300] = 200.0
    dose[298], dose[299] = 130.0, 170.0
    line = np.ones(N, dtype=np.int64)
    line[rng.choice(N, 96, replace=False)] = 2
    line[[5, 50, 120, 230]] = 3
    age = np.round(rng.normal(62, 9, N))
    arm = np.random.default_rng(100 + seed).permutation(
        np.array(["alt"] * 100 + ["std"] * 100 + ["wb"] * 100)
    )
    return pd.DataFrame(
        {
            "arm": arm,
            "grp": grp,
            "grp2": grp2,
            "y": y,
            "dose": dose,
            "line": line,
            "age": age,
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    from pht.crypto import load_identity
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import EmbeddedEngine
    from pht.orchestrator.requester import Requester

    root = tmp_path_factory.mktemp("attacks12")
    frames = {s: _frame(i) for i, s in enumerate(STATIONS)}
    network = write_network(
        root,
        frames,
        dataset="d",
        min_cell_size=K,
        classes=("aggregate", "model"),
        budget={"queries": 500, "period_days": 30, "organisation_queries": 500},
    )
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
            "frames": frames,
            "network": network,
        }
        for session in opened:
            session.close()


def _open(world: dict[str, Any], train: str, **params: Any):  # type: ignore[no-untyped-def]
    from pht.orchestrator.requester import signed_train
    from pht.wire import TrainRef

    net, requester = world["net"], world["requester"]
    package = world["catalogue"].get(TrainRef.parse(train))
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
    sessions, round0 = {}, {}
    for station in sorted(net.stations):
        reply, session = world["engine"].station(station).open_session(envelope)
        assert reply.ok, reply.reason
        sessions[station] = session
        round0[station] = requester.open(reply, body.request_id)
        world["opened"].append(session)
    return body, requester, sessions, round0


def _send(body, requester, sessions, message):  # type: ignore[no-untyped-def]
    """One round at every station; the opened replies (None where refused)."""
    out = {}
    for s, session in sorted(sessions.items()):
        reply = session.round(json.loads(json.dumps(message)))
        out[s] = requester.open(reply, body.request_id) if reply.ok else None
    return out


def _evidence(replies):  # type: ignore[no-untyped-def]
    return [
        {"station": s, "output": r.output, "receipt": r.receipt}
        for s, r in sorted(replies.items())
    ]


def _design(covariates: list[dict[str, Any]], centre: list[float]) -> dict[str, Any]:
    return {"op": "design", "design": {"covariates": covariates, "centre": centre}}


def _origin(family: str, designed, p: int) -> list[float]:  # type: ignore[no-untyped-def]
    from pht.algorithms.glm_local import model_of, pooled_start

    start, _ = pooled_start(
        model_of({"family": family}), {s: r.output for s, r in designed.items()}, p
    )
    return start.tolist()


GRP = {"column": "grp", "levels": ["a", "b"], "reference": "a"}
GRP2 = {"column": "grp2", "levels": ["c", "d"], "reference": "c"}


def _events_among_b(world, centre: float) -> float | None:  # type: ignore[no-untyped-def]
    """Events among level b at s1 from a binomial ``y ~ grp`` (None: refused)."""
    body, requester, sessions, round0 = _open(
        world, "glm", outcome="y", family="binomial", covariates=["grp"]
    )
    designed = _send(body, requester, sessions, _design([GRP], [centre]))
    if any(r is None for r in designed.values()):
        return None  # refused: nothing released
    start = _origin("binomial", designed, 2)
    terms = _send(
        body,
        requester,
        sessions,
        {"op": "terms", "beta": start, "evidence": _evidence(designed)},
    )
    s1 = terms["s1"]
    assert s1 is not None
    ybar = 1 / (1 + np.exp(-start[0]))
    g0, g1 = s1.output["gradient"]
    n_b = round0["s1"].output["columns"]["grp"]["levels"]["b"]
    # gradient = X'(y - ybar) with X = [1, dummy - centre]
    return float(g1 + centre * g0 + n_b * ybar)


def test_glm_events_among_a_level_never_leave_when_under_k(world) -> None:
    """The honest design (centre 0): 3 events among b must not leave (HEAD leaks)."""
    events = _events_among_b(world, 0.0)
    assert events is None or not 0 < round(events) < K, f"events among b: {events}"


def test_glm_a_centred_design_does_not_bypass_the_cell_rule(world) -> None:
    events = _events_among_b(world, 0.25)
    assert events is None or not 0 < round(events) < K, f"events among b: {events}"


def test_glm_two_levels_held_together_by_few_never_leave(world) -> None:
    body, requester, sessions, round0 = _open(
        world, "glm", outcome="age", family="gaussian", covariates=["grp", "grp2"]
    )
    c1, c2 = 0.25, 0.5
    designed = _send(body, requester, sessions, _design([GRP, GRP2], [c1, c2]))
    if any(r is None for r in designed.values()):
        return
    start = _origin("gaussian", designed, 3)
    terms = _send(
        body,
        requester,
        sessions,
        {"op": "terms", "beta": start, "evidence": _evidence(designed)},
    )
    h = -np.asarray(terms["s1"].output["hessian"])  # gaussian: X'X
    levels = round0["s1"].output["columns"]
    n, n_b, n_d = N, levels["grp"]["levels"]["b"], levels["grp2"]["levels"]["d"]
    both = h[1, 2] + c2 * n_b + c1 * n_d - n * c1 * c2
    assert not 0 < round(both) < K, f"patients in b and d: {both:.6f}"


def test_glm_a_rare_value_of_a_numeric_covariate_never_leaves(world) -> None:
    # declared categorical, the same column is refused (a level under k)
    body, requester, sessions, round0 = _open(
        world, "glm", outcome="age", family="gaussian", covariates=["line"]
    )
    designed = _send(
        body,
        requester,
        sessions,
        _design([{"column": "line", "levels": [], "reference": None}], [0.0]),
    )
    if any(r is None for r in designed.values()):
        return
    start = _origin("gaussian", designed, 2)
    terms = _send(
        body,
        requester,
        sessions,
        {"op": "terms", "beta": start, "evidence": _evidence(designed)},
    )
    h = -np.asarray(terms["s1"].output["hessian"])
    n, s, q = h[0, 0], h[0, 1], h[1, 1]
    # n1 + n2 + n3 = n, n1 + 2 n2 + 3 n3 = s, n1 + 4 n2 + 9 n3 = q
    counts = np.linalg.solve(np.array([[1, 1, 1], [1, 2, 3], [1, 4, 9]]), [n, s, q])
    assert not any(0 < round(c) < K for c in counts), f"value counts: {counts}"


def _fit(body, requester, sessions, round0, params):  # type: ignore[no-untyped-def]
    """The honest orchestrator strategy, every station's opened replies kept."""
    from pht.trains.glm import GlmStrategy

    strategy = GlmStrategy(round0, params)
    steps = strategy.rounds()
    seen: list[dict[str, Any]] = []
    messages = next(steps)
    try:
        while True:
            replies = {}
            for s, message in sorted(messages.items()):
                reply = sessions[s].round(json.loads(json.dumps(message)))
                replies[s] = requester.open(reply, body.request_id)
            seen.append({"op": next(iter(messages.values()))["op"], **replies})
            messages = steps.send(replies)
    except StopIteration as stop:
        return stop.value, seen


def test_means_refuses_two_values_beside_a_tied_mass(world) -> None:
    """Control: the means train refuses this level (its tied-value rule)."""
    body, requester, sessions, round0 = _open_means(world)
    assert all(not r.ok for r in round0.values())


def _open_means(world):  # type: ignore[no-untyped-def]
    from pht.orchestrator.requester import signed_train
    from pht.wire import TrainRef

    net, requester = world["net"], world["requester"]
    package = world["catalogue"].get(TrainRef.parse("means"))
    body, envelope = requester.request(
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(net.trains, package),
        dataset="d",
        parameters={"measure": "dose", "group": "grp"},
        targets=sorted(net.stations),
    )
    replies = {}
    for station in sorted(net.stations):
        reply = world["engine"].station(station).handle(envelope)
        replies[station] = reply
    return body, requester, {}, replies


def test_glm_gaussian_does_not_release_what_means_refuses(world) -> None:
    params = {"outcome": "dose", "family": "gaussian", "covariates": ["grp"]}
    body, requester, sessions, round0 = _open(world, "glm", **params)
    try:
        section, seen = _fit(body, requester, sessions, round0, params)
    except Exception:  # noqa: BLE001 - a refusal anywhere: nothing to recover
        return
    first = next(r for r in seen if r["op"] == "terms")
    checks = next(r for r in seen if r["op"] == "checks")
    intercept = section["glm"]["params"]["Intercept"]["coef"]
    mean_b = intercept + section["glm"]["params"]["grp[T.b]"]["coef"]
    n_b = round0["s1"].output["columns"]["grp"]["levels"]["b"]
    start = first["s1"]  # the origin: intercept at the pooled mean, slope 0
    ybar = sum(
        r.output["sums"]["weighted_y"] for k, r in seen[0].items() if k != "op"
    ) / sum(r.output["sums"]["weight"] for k, r in seen[0].items() if k != "op")
    total_b = start.output["gradient"][1] + n_b * ybar
    squares_b = checks["s1"].output["score_outer"][1][1]  # sum over b of residual^2
    # 98 patients at the public fixed dose 200; two unknowns u, v
    u_plus_v = total_b - 98 * 200.0
    rest = squares_b - 98 * (200.0 - mean_b) ** 2
    # (u - m)^2 + (v - m)^2 = rest with u + v known: a quadratic in u
    m = mean_b
    a, b_, c = 2.0, -2 * u_plus_v, u_plus_v**2 - 2 * m * u_plus_v + 2 * m * m - rest
    disc = b_ * b_ - 4 * a * c
    u = (-b_ - np.sqrt(max(disc, 0.0))) / (2 * a)
    v = u_plus_v - u
    assert not np.allclose(sorted([u, v]), [130.0, 170.0], atol=1e-6), (u, v)


def test_refused_design_leaves_the_others_able_to_fit(world) -> None:
    """A station that refuses the design leaves; the others redo it and fit."""
    from pht.trains.glm import GlmStrategy

    params = {"outcome": "y", "family": "binomial", "covariates": ["age"]}
    body, requester, sessions, round0 = _open(world, "glm", **params)
    design = _design([{"column": "age", "levels": [], "reference": None}], [0.0])
    first = _send(body, requester, sessions, design)
    assert all(r is not None for r in first.values())
    # a second identical design (what the strategy sends after a refusal)
    again = _send(body, requester, sessions, design)
    assert all(r is not None for r in again.values()), "a re-design fails"
    del GlmStrategy


def _drive(world, params, mutate):  # type: ignore[no-untyped-def]
    """The honest strategy, but ``mutate(op, message)`` may change what s1 gets.

    Returns s1's reply to the first mutated message (None: nothing mutated).
    """
    from pht.trains.glm import GlmStrategy

    body, requester, sessions, round0 = _open(world, "glm", **params)
    steps = GlmStrategy(round0, params).rounds()
    messages = next(steps)
    try:
        while True:
            replies = {}
            for s, message in sorted(messages.items()):
                message = json.loads(json.dumps(message))
                if s == "s1":
                    changed = mutate(message["op"], message)
                    if changed is not None:
                        return sessions[s].round(changed)
                reply = sessions[s].round(message)
                replies[s] = requester.open(reply, body.request_id)
            messages = steps.send(replies)
    except StopIteration:
        return None


PARAMS = {"outcome": "y", "family": "binomial", "covariates": ["age"]}


def test_checks_with_a_wrong_null_intercept_are_refused(world) -> None:
    from pht.station.codes import Code

    def mutate(op, message):  # type: ignore[no-untyped-def]
        if op == "checks":
            message["null_intercept"] += 1e-6
            return message
        return None

    reply = _drive(world, PARAMS, mutate)
    assert reply is not None and reply.status == "refused"
    assert reply.reason == Code.PATH.reason


def test_a_replayed_evaluation_is_refused(world) -> None:
    from pht.station.codes import Code

    seen: list[dict[str, Any]] = []

    def mutate(op, message):  # type: ignore[no-untyped-def]
        if op == "terms":
            seen.append(message)
            if len(seen) == 3:
                return seen[1]  # the previous point again, with its evidence
        return None

    reply = _drive(world, PARAMS, mutate)
    assert reply is not None and reply.status == "refused"
    assert reply.reason == Code.PATH.reason


def test_evidence_without_a_peer_or_with_a_duplicate_is_refused(world) -> None:
    from pht.station.codes import Code

    def drop(op, message):  # type: ignore[no-untyped-def]
        if op == "terms" and len(message["evidence"]) > 3:
            message["evidence"] = [
                e for e in message["evidence"] if e["station"] != "s3"
            ]
            return message
        return None

    reply = _drive(world, PARAMS, drop)
    assert reply is not None and reply.status == "refused"
    assert reply.reason == Code.PATH.reason

    def duplicate(op, message):  # type: ignore[no-untyped-def]
        if op == "terms" and len(message["evidence"]) > 3:
            message["evidence"].append(message["evidence"][-1])
            return message
        return None

    reply = _drive(world, PARAMS, duplicate)
    assert reply is not None and reply.status == "refused"


@pytest.mark.parametrize(
    "beta",
    [[float("nan"), 0.0], [1e300, 0.0], [0.0, 0.0, 0.0], ["0", 0.0], [True, 0.0]],
)
def test_odd_coefficients_are_refused_not_raised(world, beta) -> None:
    def mutate(op, message):  # type: ignore[no-untyped-def]
        if op == "terms":
            message["beta"] = beta
            return message
        return None

    reply = _drive(world, PARAMS, mutate)
    assert reply is not None and not reply.ok


def test_equivalence_with_a_misspelt_reference_level_is_an_error(tmp_path) -> None:
    import yaml
    from conftest import run_embedded

    from pht.errors import PhtError

    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "question": "Is wb equivalent to std on age?",
                "purpose": "package-management/reassessment",
                "design": "equivalence",
                "dataset": "d",
                "comparison": {"column": "arm", "treatment": "wb", "reference": "Std"},
                "covariates": ["grp"],
                "crude": False,
                "outcomes": [
                    {
                        "name": "age",
                        "measure": "mean_difference",
                        "outcome": "age",
                        "higher_is_better": True,
                        "hypothesis": "equivalence",
                        "lower": -5.0,
                        "upper": 5.0,
                        "adjustment": "regression",
                    }
                ],
            }
        )
    )
    with pytest.raises(PhtError, match="comparison.reference"):
        network = write_network(
            tmp_path / "net",
            {s: _frame(i) for i, s in enumerate(STATIONS)},
            dataset="d",
            min_cell_size=K,
            classes=("aggregate", "model"),
        )
        result = run_embedded(study, network)
        # what it reports instead: the first level as the reference
        print(result["equivalence"]["answer"], result["warnings"])
