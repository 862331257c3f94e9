"""Attacks on pht stations behind vantage6 4.15 nodes, by someone who can create tasks.

Marker ``vantage6``; all tests share the session fixture ``v6_network``
(``conftest.py``). The attacker here is anyone who can create tasks in the
collaboration (another user, or a hostile server operator): it reads every task's
input and result on the server, and sends any input to any of the pht image's
functions (``deploy/vantage6/pht-algorithm/pht_v6``). Many inputs go out as a few
tasks created at once, so the whole file stays within a few minutes of network time.

Shown:

- odd task inputs (wrong types, path-like or oversized session ids, NaN, deep
  nesting, a 4 MB payload, unknown methods or arguments) end as a fixed node error
  code, a station refusal, or a vantage6 ``crashed`` run without any log: never a
  traceback or free text, never a hang;
- the server keeps only signed requests, sealed round messages and sealed replies,
  and no algorithm log;
- a replayed or misrouted round message is ignored without touching the session, a
  replayed request (single-round or session) is refused, so a train runs once per
  request, and the replayer gets no one's reply;
- a third party knowing a session's id (in clear on the server) can neither close
  it nor end it with a round message of its own (rounds and the close are signed by
  the session's requester; round messages sealed to the station's public key alone
  do not reach the session); a task input the spool cannot write leaves nothing in
  the station folder. (These three were found here and fixed.)
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from pht.crypto import load_identity, load_public
from pht.errors import ConfigError
from pht.manifest import Catalogue
from pht.orchestrator.config import Network, load_network, load_study
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester
from pht.orchestrator.run import plan_request, run_study
from pht.orchestrator.vantage6_engine import DONE, Vantage6Engine, seal_round
from pht.vantage6_local import DEMO_COX_STUDY, comparable

pytestmark = [pytest.mark.vantage6]

STATIONS = ("nkr", "dica", "umc")

COX = DEMO_COX_STUDY


# -- the attacker's raw REST ----------------------------------------------------------
def _post(
    engine: Vantage6Engine,
    inputs: dict[str, Any],
    image: str | None = None,
) -> int:
    """One task with a raw input per station (bytes as they are, else JSON)."""
    engine._login()
    orgs = engine.settings.organizations
    per_org = []
    for station, raw in inputs.items():
        data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
        per_org.append({"id": orgs[station], "input": base64.b64encode(data).decode()})
    task = engine._call(
        "POST",
        "task",
        {
            "name": "attack",
            "image": image or engine.settings.image,
            "description": "attack",
            "collaboration_id": engine.settings.collaboration,
            "organizations": per_org,
            "databases": [{"label": label} for label in engine.settings.databases],
        },
    )
    return int(task["id"])


def _answer(engine: Vantage6Engine, run: dict[str, Any]) -> Any:
    """A completed run's output as JSON (None if it is not JSON)."""
    raw = run.get("result")
    if raw is None:
        raw = engine._call("GET", f"result/{run['id']}").get("result")
    if raw is None:
        return None
    try:
        text = base64.b64decode(str(raw), validate=True).decode()
    except ValueError:
        text = str(raw)
    try:
        return json.loads(text)
    except ValueError:
        return None


def _runs(
    engine: Vantage6Engine, task_ids: list[int], timeout: float = 240.0
) -> dict[int, dict[str, dict[str, Any]]]:
    """Wait for every run of ``task_ids``; task -> station -> status, log, answer."""
    engine._login()
    by_org = {o: s for s, o in engine.settings.organizations.items()}
    deadline = time.monotonic() + timeout
    while True:
        runs = {t: engine._list(f"run?task_id={t}&per_page=100") for t in task_ids}
        if all(r["status"] in DONE for rs in runs.values() for r in rs):
            break
        if time.monotonic() > deadline:
            stuck = {
                t: [r["status"] for r in rs if r["status"] not in DONE]
                for t, rs in runs.items()
            }
            pytest.fail(f"runs not done within {timeout:.0f} s: {stuck}")
        time.sleep(0.5)
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for task, task_runs in runs.items():
        out[task] = {}
        for run in task_runs:
            station = by_org[int(run["organization"]["id"])]
            out[task][station] = {
                "status": run["status"],
                "log": run.get("log"),
                "input": run.get("input"),
                "answer": _answer(engine, run)
                if run["status"] == "completed"
                else None,
            }
    return out


def _call(method: str, **kwargs: Any) -> dict[str, Any]:
    return {"method": method, "kwargs": kwargs}


def _requester(v6: Any, net: Network) -> Requester:
    return Requester(
        load_identity(v6.demo.identity),
        {s: e.public_key for s, e in net.stations.items()},
    )


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


def _cox_study(v6: Any) -> tuple[Any, Network, Requester]:
    study_file = v6.demo.root / "study-cox-attack.yaml"
    study_file.write_text(COX, encoding="utf-8")
    net = load_network(v6.demo.network)
    return load_study(study_file, Catalogue(), net), net, _requester(v6, net)


# -- odd inputs ------------------------------------------------------------------------
INPUT = {"pht_node_error": "input"}
ROUND = {"pht_node_error": "round"}
NO_SESSION = {"pht_node_error": "no-session"}

ODD: list[tuple[str, Any, Any]] = [
    # (what, task input, expected: a dict answer, "refused", or "crashed")
    ("station without envelope", _call("station"), INPUT),
    ("envelope a string", _call("station", envelope="x"), INPUT),
    ("envelope a list", _call("station", envelope=[1, 2]), INPUT),
    ("empty envelope", _call("station", envelope={}), "refused"),
    (
        "NaN and Infinity in the envelope",
        b'{"method": "station", "kwargs": {"envelope": {"payload": NaN, '
        b'"payloadType": "x", "signatures": [{"keyid": Infinity, "sig": 1}]}}}',
        "refused|input",  # input while a session host runs (the spool takes JSON only)
    ),
    ("envelope nested 400 deep", _call("station", envelope=_nested(400)), "refused"),
    (
        "4 MB payload",
        _call(
            "station",
            envelope={"payload": "A" * (4 << 20), "payloadType": "x", "signatures": []},
        ),
        "refused",
    ),
    (
        "path-like session id",
        _call("session_round", session="../../network.yaml", sealed={}),
        INPUT,
    ),
    ("long session id", _call("session_round", session="a" * 129, sealed={}), INPUT),
    ("session id a number", _call("session_round", session=7, sealed={}), INPUT),
    ("sealed a string", _call("session_round", session="abc", sealed="x"), INPUT),
    ("close, id a list", _call("session_close", session=["abc"]), INPUT),
    ("close, unsigned", _call("session_close", session="abc"), INPUT),
    ("round, unsigned", _call("session_round", session="q", sealed={}), INPUT),
    (
        "close, unknown session",
        _call("session_close", session="abc", signature="x"),
        NO_SESSION,
    ),
    (
        "round, unknown session",
        _call("session_round", session="q", sealed={}, signature="x"),
        NO_SESSION,
    ),
    ("open without envelope", _call("session_open"), INPUT),
    (
        "positional arguments",
        {"method": "session_close", "args": ["abc", "x"], "kwargs": {}},
        NO_SESSION,
    ),
    ("an argument to the host", _call("session_host", folder="/mnt/data"), "crashed"),
    ("no such method", _call("no_such_method"), "crashed"),
    ("a dunder as method", _call("__class__", name="x"), "crashed"),
    ("the node module as method", _call("_node"), "crashed"),
    ("an unknown argument", _call("station", envelope={}, path="/mnt/pht"), "crashed"),
]

NOT_SHARED = (None, "", "Node does not allow sharing algorithm logs")
"""A run's ``log`` on the server: empty, or the node's fixed note (pht mode sets
``share_algorithm_logs: false``)."""


def test_odd_task_inputs_get_fixed_codes_refusals_or_a_silent_crash(
    v6_network: Any,
) -> None:
    engine = v6_network.engine(timeout=240.0)
    tasks: list[tuple[int, dict[str, tuple[str, Any]]]] = []
    for start in range(0, len(ODD), len(STATIONS)):
        batch = dict(zip(STATIONS, ODD[start : start + len(STATIONS)], strict=False))
        task_id = _post(engine, {s: case[1] for s, case in batch.items()})
        tasks.append((task_id, {s: (case[0], case[2]) for s, case in batch.items()}))
    started = time.monotonic()
    done = _runs(engine, [t for t, _ in tasks])
    elapsed = time.monotonic() - started
    wrong = []
    for task_id, cases in tasks:
        for station, (what, expected) in cases.items():
            run = done[task_id][station]
            assert run["log"] in NOT_SHARED, f"{what}: the node shared {run['log']!r}"
            answer = run["answer"]
            if expected == "crashed":
                ok = run["status"] == "crashed" and answer is None
            elif expected == "refused|input" and answer == INPUT:
                ok = run["status"] == "completed"
            elif isinstance(expected, str) and expected.startswith("refused"):
                ok = (
                    run["status"] == "completed"
                    and isinstance(answer, dict)
                    and answer.get("status") == "refused"
                    and answer.get("sealed") is None
                    and answer.get("output") is None
                )
            else:
                ok = run["status"] == "completed" and answer == expected
            text = json.dumps(answer)
            if not ok or "Traceback" in text or "/mnt/" in text:
                wrong.append(f"{what} at {station}: {run['status']} {text[:200]}")
    assert not wrong, "\n".join(wrong)
    # none waited for a timeout (HOST_WAIT is 120 s, BUSY_WAIT 300 s)
    assert elapsed < 110, f"odd inputs took {elapsed:.0f} s"
    # input that is not JSON does not even reach a node
    with pytest.raises(ConfigError, match="HTTP 400"):
        _post(engine, {"nkr": b"\x00\xff not json"})


# -- what the server holds -------------------------------------------------------------
def test_the_server_holds_signed_requests_and_sealed_replies_only(
    v6_network: Any,
) -> None:
    """A single-round request as a task: the server's copy has no aggregate and no
    log (that nodes run only the pinned station image is
    ``test_vantage6_sessions.test_nodes_run_only_the_pinned_station_image``)."""
    net = load_network(v6_network.network)
    study = load_study(v6_network.demo.study, Catalogue(), net)
    body, envelope = plan_request(study, net, _requester(v6_network, net))
    engine = v6_network.engine(timeout=240.0)
    task_id = engine._create(
        "station", {s: {"envelope": dict(envelope)} for s in STATIONS}, "pht request"
    )
    done = _runs(engine, [task_id])
    for station in STATIONS:
        run = done[task_id][station]
        assert run["status"] == "completed", run
        assert run["log"] in NOT_SHARED, run["log"]
        sent = json.loads(base64.b64decode(run["input"]))
        assert set(sent) == {"method", "kwargs"}
        assert set(sent["kwargs"]) == {"envelope"}
        reply = run["answer"]
        assert reply["station"] == station and reply["request_id"] == body.request_id
        assert reply["output"] is None, "an aggregate in clear on the server"
        if reply["status"] == "ok":
            assert set(reply["sealed"]) >= {"enc", "ciphertext"}
    assert any(done[task_id][s]["answer"]["status"] == "ok" for s in STATIONS)


# -- sessions --------------------------------------------------------------------------
class _Meddler(Vantage6Engine):
    """The analyst's engine with a third party next to it that reads every task on
    the server and, for each round, sends the previous round's input again (a
    replay) and each station's sealed message to the next station (misrouted); once
    the sessions are open it replays the signed request as a session and as a
    single-round request."""

    def __init__(self, engine: Vantage6Engine) -> None:
        super().__init__(engine.settings)
        self.previous: dict[str, Any] = {}
        self.open_task: int | None = None
        self.open_inputs: dict[str, Any] = {}
        self.attacks: list[tuple[str, int]] = []

    def _create(self, method: str, kwargs: Any, description: str) -> int:
        task_id = super()._create(method, kwargs, description)
        stations = list(kwargs)
        if method == "session_open":
            self.open_task = task_id
            self.open_inputs = {s: dict(kwargs[s]) for s in stations}
        if method == "session_round":
            if self.previous:
                replay = {
                    s: _call("session_round", **self.previous[s])
                    for s in stations
                    if s in self.previous
                }
                self.attacks.append(("replayed round", _post(self, replay)))
            if len(stations) > 1:
                moved = {
                    s: _call("session_round", **kwargs[stations[i - 1]])
                    for i, s in enumerate(stations)
                }
                self.attacks.append(("misrouted round", _post(self, moved)))
            self.previous = {s: dict(kwargs[s]) for s in stations}
        return task_id

    def _collect(self, task_id: int, *args: Any, **kwargs: Any) -> Any:
        replies = super()._collect(task_id, *args, **kwargs)
        if task_id == self.open_task:
            sent = self.open_inputs
            opened = {s: _call("session_open", **a) for s, a in sent.items()}
            single = {s: _call("station", **a) for s, a in sent.items()}
            self.attacks.append(("replayed open", _post(self, opened)))
            self.attacks.append(("replayed as single round", _post(self, single)))
        return replies


def test_replayed_and_misrouted_rounds_neither_steer_nor_leak(v6_network: Any) -> None:
    study, net, requester = _cox_study(v6_network)
    meddler = _Meddler(v6_network.engine(timeout=300.0))
    with meddler:
        on_v6 = run_study(study, net, meddler, requester)
    with EmbeddedEngine(net, Catalogue()) as embedded:
        here = run_study(study, net, embedded, requester)
    assert comparable(on_v6) == comparable(here)
    assert sum(s["participated"] for s in on_v6["stations"]) == 3
    kinds = {kind for kind, _ in meddler.attacks}
    assert kinds == {
        "replayed round",
        "misrouted round",
        "replayed open",
        "replayed as single round",
    }
    done = _runs(meddler, [t for _, t in meddler.attacks])
    wrong = []
    for kind, task_id in meddler.attacks:
        for station, run in done[task_id].items():
            answer = run["answer"]
            if kind.endswith("round") and kind != "replayed as single round":
                # ignored before the session saw it (or the session was over)
                ok = answer in (ROUND, NO_SESSION)
            else:
                ok = (
                    isinstance(answer, dict)
                    and answer.get("status") == "refused"
                    and "replay" in str(answer.get("reason"))
                    and answer.get("sealed") is None
                )
            if run["status"] != "completed" or not ok:
                wrong.append(f"{kind} at {station}: {run['status']} {answer}")
    assert not wrong, "\n".join(wrong)


def _open_one(v6: Any) -> tuple[Vantage6Engine, Any, str, Any]:
    """An analyst's session at nkr; the engine, the group, its id, nkr's key."""
    study, net, requester = _cox_study(v6)
    body, envelope = plan_request(study, net, requester)
    engine = v6.engine(timeout=240.0)
    engine.sign_rounds_with(requester.identity)
    group = engine.open_sessions(
        {"nkr": envelope}, opener=lambda reply: requester.open(reply, body.request_id)
    )
    assert group.opened["nkr"].ok, group.opened
    key = load_public(engine.settings.station_keys["nkr"])
    return engine, group, body.request_id, key


def _still_open(engine: Vantage6Engine, session: str) -> bool:
    """Whether nkr's host holds ``session`` (an unsealable round: 'round' if so)."""
    probe = _post(
        engine,
        {"nkr": _call("session_round", session=session, sealed={}, signature="x")},
    )
    answer = _runs(engine, [probe])[probe]["nkr"]["answer"]
    assert answer in (ROUND, NO_SESSION), answer
    return answer == ROUND


def test_a_third_party_cannot_close_an_analysts_session(v6_network: Any) -> None:
    engine, group, session, _ = _open_one(v6_network)
    try:
        task = _post(
            engine,
            {"nkr": _call("session_close", session=session, signature="AAAA")},
        )
        answer = _runs(engine, [task])[task]["nkr"]["answer"]
        assert answer != {"pht_closed": session}, "a third party closed the session"
        assert _still_open(engine, session)
    finally:
        group.close()


def test_a_third_party_round_message_does_not_reach_the_session(
    v6_network: Any,
) -> None:
    engine, group, session, key = _open_one(v6_network)
    try:
        forged = seal_round({"op": "design", "design": {}}, 1, key, session, "nkr")
        task = _post(
            engine,
            {
                "nkr": _call(
                    "session_round", session=session, sealed=forged, signature="AAAA"
                )
            },
        )
        answer = _runs(engine, [task])[task]["nkr"]["answer"]
        assert answer == ROUND, f"the station took a third party's round: {answer}"
        assert _still_open(engine, session)
    finally:
        group.close()


def test_an_unwritable_task_input_leaves_nothing_in_the_station_folder(
    v6_network: Any,
) -> None:
    jobs = v6_network.state / "station-folders" / "nkr" / "work" / "v6" / "jobs"
    before = set(jobs.glob(".*.tmp")) if jobs.is_dir() else set()
    engine = v6_network.engine(timeout=120.0)
    padded = (
        b'{"method": "session_round", "kwargs": {"session": "x", "sealed": '
        b'{"pad": "' + b"A" * (4 << 20) + b'", "z": NaN}, "signature": "x"}}'
    )
    task = _post(engine, {"nkr": padded})
    answer = _runs(engine, [task])[task]["nkr"]["answer"]
    assert answer in (INPUT, ROUND, NO_SESSION, {"pht_node_error": "internal"})
    left = set(jobs.glob(".*.tmp")) - before
    assert not left, f"{len(left)} partial job file(s) left in the station folder"
