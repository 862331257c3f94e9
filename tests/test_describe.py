"""Discovery and dry runs: the signed, audited describe request and what uses it.

A station answers a describe request with the columns its policy allows the
requester (names, roles, schema types), its rules and nothing derived from the data;
it checks the request exactly as a train request (signature, key, identity, expiry,
addressing, replay), applies the policy's requester and purpose rules, logs one
``describe`` audit record and spends no query budget. ``pht network show`` lists
stations and, asked with a key, what each lets you use; ``pht validate --identity``
finds a misspelt column, a column in a role it may not serve, a wrong type, a train
or class a station would refuse, before anything runs.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import identity_of, run_embedded, write_study

from pht.cli import main
from pht.crypto import (
    REQUEST_TYPE,
    canonical_json,
    load_identity,
    new_identity,
    sign_envelope,
)
from pht.description import COLUMN_TYPES, KIND_ACCEPTS, accepts
from pht.errors import ConfigError, TrustError
from pht.manifest import Catalogue
from pht.orchestrator.config import load_network, load_study
from pht.orchestrator.discovery import (
    check_study,
    describe_stations,
    discover,
    network_lines,
)
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester
from pht.provision import policy_document, provision
from pht.signing import DESCRIBE_TYPE, new_describe
from pht.station.audit import query, verify_log
from pht.station.base import kind_problem
from pht.station.codes import Code
from pht.station.describe import column_type

PURPOSE = "package-management/reassessment"
OTHER_PURPOSE = "efficiency-research/dose-reduction"
ROLES = {
    "os_days": ["time"],
    "death": ["event"],
    "regimen": ["group", "covariate"],
    "age": ["covariate"],
    "os_text": ["time"],
    "pfs_days": ["time"],  # allowed by the policy, held by no station
}
SECRET_LABEL = "zz-secret-regimen-label"


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "os_days": rng.integers(1, 900, n).astype(float),
            "death": rng.integers(0, 2, n),
            "regimen": rng.choice(["standard", SECRET_LABEL], n),
            "age": rng.integers(40, 90, n),
            "os_text": [str(v) for v in rng.integers(1, 900, n)],
            # not in the policy: must never be mentioned
            "hidden_score": rng.normal(size=n),
        }
    )


def build(
    root: Path,
    *,
    entries: dict[str, dict[str, Any]] | None = None,
    budget: dict[str, int] | None = None,
) -> Path:
    """Two stations s1, s2 with dataset 'melanoma' (and 'lung' at s1); the policy's
    dataset entries are ``entries`` (default: one '*' entry with ROLES)."""
    (root / "data").mkdir(parents=True)
    held: dict[str, dict[str, Path]] = {}
    for i, station in enumerate(("s1", "s2")):
        path = root / "data" / f"{station}.parquet"
        frame(60, i).to_parquet(path, index=False)
        held[station] = {"melanoma": path}
    held["s1"]["lung"] = held["s1"]["melanoma"]
    base = policy_document(columns=list(ROLES), budget=budget)["datasets"]["*"]
    base = {**base, "columns": dict(ROLES)}
    datasets = {
        name: copy.deepcopy({**base, **override})
        for name, override in (entries or {"*": {}}).items()
    }
    made = provision(
        root,
        held,
        names={"s1": "Station one", "s2": "Station two"},
        policy={"version": 1, "datasets": datasets},
    )
    return made.network


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("describe"))


@pytest.fixture(scope="module")
def engine(net: Path):  # type: ignore[no-untyped-def]
    with EmbeddedEngine(load_network(net), Catalogue()) as running:
        yield running


def requester_for(net: Path) -> Requester:
    network = load_network(net)
    return Requester(
        load_identity(identity_of(net)),
        {s: e.public_key for s, e in network.stations.items()},
    )


def ask(engine: EmbeddedEngine, net: Path, **kw: Any) -> dict[str, Any]:
    fields = {"role": "analyst", "purpose": PURPOSE, "dataset": "*", "targets": ["s1"]}
    fields.update(kw)
    return describe_stations(engine, requester_for(net), **fields)


def describe_envelope(net: Path, **kw: Any) -> tuple[Any, dict[str, Any]]:
    fields = {
        "user": "analyst",
        "role": "analyst",
        "purpose": PURPOSE,
        "dataset": "*",
        "targets": ["s1"],
    }
    fields.update(kw)
    return new_describe(load_identity(identity_of(net)), **fields)


def refused(engine: EmbeddedEngine, envelope: Any, code: Code) -> None:
    reply = engine.station("s1").handle(envelope)
    assert reply.status == "refused" and reply.sealed is None, reply
    assert reply.reason is not None and reply.reason.startswith(code.reason), reply


# -- what a station tells ------------------------------------------------------------
def test_describe_lists_exactly_the_allowed_columns_with_schema_types(
    engine, net
) -> None:
    answer = ask(engine, net)["s1"]
    assert answer.ok, answer
    described = {d.id: d for d in answer.description.datasets}
    assert sorted(described) == ["lung", "melanoma"]
    melanoma = described["melanoma"]
    # allowed and held; pfs_days (allowed, not held) and hidden_score (held, not
    # allowed) are absent
    assert {c.name: (c.type, c.roles) for c in melanoma.columns} == {
        "age": ("integer", ("covariate",)),
        "death": ("integer", ("event",)),
        "os_days": ("numeric", ("time",)),
        "os_text": ("text", ("time",)),
        "regimen": ("text", ("group", "covariate")),
    }
    assert melanoma.min_cell_size == 10 and melanoma.review == "automatic"
    assert melanoma.show_station_name is False and melanoma.readable
    assert set(melanoma.disclosure_classes) == {"aggregate", "model", "event_table"}
    assert {t.name for t in melanoma.trains} >= {"survival.km", "survival.cox"}


def test_the_answer_holds_no_value_and_no_hidden_column(engine, net) -> None:
    """The whole opened plaintext: no label, no count, no hidden column's name."""
    requester = requester_for(net)
    body, envelope = requester.describe(
        role="analyst", purpose=PURPOSE, dataset="melanoma", targets=["s1"]
    )
    reply = engine.dispatch({"s1": envelope})["s1"]
    assert reply.ok and reply.output is None  # sealed: nothing readable in transit
    text = json.dumps(requester.open_describe(reply, body.request_id).to_dict())
    assert "hidden_score" not in text and "pfs_days" not in text
    assert SECRET_LABEL not in text and "standard" not in text
    assert '"60"' not in text and ": 60" not in text  # the row count


def test_a_tampered_or_rebound_answer_is_rejected(engine, net) -> None:
    requester = requester_for(net)
    body, envelope = requester.describe(
        role="analyst", purpose=PURPOSE, dataset="*", targets=["s1"]
    )
    reply = engine.dispatch({"s1": envelope})["s1"]
    rebound = dataclasses.replace(reply, train_digest="sha256:" + "0" * 64)
    with pytest.raises(TrustError, match="bound to something else"):
        requester.open_describe(rebound, body.request_id)
    sealed = dict(reply.sealed or {})
    sealed["ciphertext"] = base64.b64encode(b"x" * 64).decode()
    with pytest.raises(TrustError):
        requester.open_describe(
            dataclasses.replace(reply, sealed=sealed), body.request_id
        )
    with pytest.raises(TrustError, match="another request"):
        requester.open_describe(reply, "1b4e28ba-2fa1-41d2-883f-0016d3cca427")


def test_column_types_agree_with_the_stations_kind_rule() -> None:
    """accepts(kind, column_type(t)) is exactly 'not kind_problem(kind, t)'."""
    dtypes = [
        pa.int8(),
        pa.int64(),
        pa.uint32(),
        pa.float32(),
        pa.float64(),
        pa.bool_(),
        pa.string(),
        pa.large_string(),
        pa.dictionary(pa.int32(), pa.string()),
        pa.date32(),
        pa.timestamp("us"),
        pa.decimal128(10, 2),
        pa.binary(),
        pa.list_(pa.int64()),
        pa.time64("us"),
        pa.null(),
    ]
    for dtype in dtypes:
        assert column_type(dtype) in COLUMN_TYPES
        for kind in KIND_ACCEPTS:
            assert accepts(kind, column_type(dtype)) == (
                not kind_problem(kind, dtype)
            ), (kind, dtype)


def test_a_station_the_engine_cannot_reach_is_a_line_not_a_crash(engine, net) -> None:
    class HalfDown:
        name = "half-down"

        def dispatch(self, requests, progress=None):  # type: ignore[no-untyped-def]
            if "s2" in requests:
                raise ConfigError("station s2: connection refused")
            return engine.dispatch(requests)

    answers = describe_stations(
        HalfDown(),  # type: ignore[arg-type]
        requester_for(net),
        role="analyst",
        purpose=PURPOSE,
        dataset="*",
        targets=["s1", "s2"],
    )
    assert answers["s1"].ok
    assert answers["s2"].status == "unreachable"
    assert answers["s2"].reason == "station s2: connection refused"
    lines = network_lines(load_network(net), answers)
    assert "  unreachable: station s2: connection refused" in lines


# -- who may ask ---------------------------------------------------------------------
def test_forged_expired_replayed_and_unaddressed_describes_are_refused(
    engine, net
) -> None:
    body, envelope = describe_envelope(net)
    assert engine.station("s1").handle(envelope).ok
    refused(engine, envelope, Code.REPLAYED)
    refused(engine, {**envelope, "signatures": []}, Code.SIGNATURE)
    stranger = new_identity("requester", "ZIN", "mallory")
    payload = base64.b64decode(describe_envelope(net)[1]["payload"])
    forged = sign_envelope(payload, DESCRIBE_TYPE, stranger)
    reply = engine.station("s1").handle(forged)
    assert reply.reason in (Code.REJECTED.reason, Code.SIGNATURE.reason)
    data = json.loads(payload)
    data["purpose"] = OTHER_PURPOSE
    tampered = {
        **describe_envelope(net)[1],
        "payload": base64.b64encode(canonical_json(data)).decode(),
    }
    assert engine.station("s1").handle(tampered).reason in (
        Code.REJECTED.reason,
        Code.SIGNATURE.reason,
    )
    _, expired = describe_envelope(net, lifetime=dt.timedelta(seconds=-1))
    refused(engine, expired, Code.EXPIRED)
    _, elsewhere = describe_envelope(net, targets=["s2"])
    refused(engine, elsewhere, Code.ELSEWHERE)
    _, wrong_user = describe_envelope(net, user="someone-else")
    refused(engine, wrong_user, Code.IDENTITY)
    _, intern = describe_envelope(net, role="intern")
    refused(engine, intern, Code.IDENTITY)


def test_a_describe_signature_is_not_a_train_request_signature(engine, net) -> None:
    """Domain separation: the same signed bytes under the other payload type fail."""
    analyst = load_identity(identity_of(net))
    payload = base64.b64decode(describe_envelope(net)[1]["payload"])
    as_request = sign_envelope(payload, REQUEST_TYPE, analyst)
    reply = engine.station("s1").handle(as_request)
    assert reply.status == "refused" and reply.sealed is None
    assert reply.reason is not None and reply.reason.startswith(Code.MALFORMED.reason)


def test_replay_is_refused_after_the_station_restarts(tmp_path) -> None:
    net = build(tmp_path / "n")
    _, envelope = describe_envelope(net)
    with EmbeddedEngine(load_network(net), Catalogue()) as first:
        assert first.station("s1").handle(envelope).ok
    with EmbeddedEngine(load_network(net), Catalogue()) as second:
        refused(second, envelope, Code.REPLAYED)


def test_purpose_and_dataset_rules(engine, net) -> None:
    refused(engine, describe_envelope(net, purpose="marketing/sales")[1], Code.PURPOSE)
    refused(engine, describe_envelope(net, dataset="nope")[1], Code.DATASET)


def test_a_dataset_the_requester_may_not_use_looks_like_no_dataset(tmp_path) -> None:
    """'lung' serves another purpose only: asked for by name under this purpose, the
    refusal is word for word the one for a dataset the station does not hold; asked
    with '*', it is not listed."""
    net = build(
        tmp_path / "n",
        entries={
            "melanoma": {"purposes": [PURPOSE]},
            "lung": {"purposes": [OTHER_PURPOSE]},
        },
    )
    with EmbeddedEngine(load_network(net), Catalogue()) as running:
        station = running.station("s1")
        lung = station.handle(describe_envelope(net, dataset="lung")[1])
        nope = station.handle(describe_envelope(net, dataset="nope")[1])
        assert lung.status == nope.status == "refused"
        assert lung.reason == nope.reason == Code.DATASET.reason
        answer = ask(running, net)["s1"]
        assert [d.id for d in answer.description.datasets] == ["melanoma"]
        other = ask(running, net, purpose=OTHER_PURPOSE)["s1"]
        assert [d.id for d in other.description.datasets] == ["lung"]


def test_an_organisation_the_policy_does_not_list_is_refused(tmp_path) -> None:
    net = build(
        tmp_path / "n",
        entries={"*": {"requesters": [{"organisation": "IKNL", "roles": ["analyst"]}]}},
    )
    with EmbeddedEngine(load_network(net), Catalogue()) as running:
        answers = ask(running, net, targets=["s1", "s2"])
        for answer in answers.values():
            assert not answer.ok and answer.description is None
            assert answer.status == "refused"
            assert answer.reason == Code.REQUESTER.reason
        # named or not, the refusal says nothing about which datasets exist
        refused(running, describe_envelope(net, dataset="melanoma")[1], Code.REQUESTER)
        refused(running, describe_envelope(net, dataset="nope")[1], Code.REQUESTER)


# -- audit and budget ----------------------------------------------------------------
def test_describes_are_audited_and_spend_no_budget(tmp_path) -> None:
    """Budget 1 query: three describes, then the one train request is still admitted;
    every describe is one 'describe' record (success or refused)."""
    net = build(tmp_path / "n", budget={"queries": 1, "period_days": 30})
    with EmbeddedEngine(load_network(net), Catalogue()) as running:
        for _ in range(2):
            answer = ask(running, net, dataset="melanoma", targets=["s1", "s2"])
            budget = answer["s1"].description.datasets[0].budget
            assert (budget.queries, budget.used) == (1, 0)
        ask(running, net, purpose="marketing/sales")
        records = [r for r in running.station("s1").audit.records()]
    describes = [r for r in records if r.event == "describe"]
    assert [r.outcome for r in describes] == ["success", "success", "refused"]
    assert all(r.user == "analyst" and r.organisation == "ZIN" for r in describes)
    assert describes[0].dataset == "melanoma" and describes[0].purpose == PURPOSE
    assert describes[0].output_digest and describes[0].details["nonce"]
    assert describes[2].reason == Code.PURPOSE.reason
    assert not [r for r in records if r.event == "policy_decision"]
    study = write_study(tmp_path, stations=["s1"])
    result = run_embedded(study, net)
    assert [s["status"] for s in result["stations"]] == ["ok"]
    host = load_network(net).stations["s1"].hosted()
    report = verify_log(
        host.workdir / "audit", load_identity(host.identity).public.signing_key
    )
    assert report.size > len(records)
    decisions = query(host.workdir / "audit", event="policy_decision")
    assert [r.outcome for r in decisions] == ["success"]  # the run's, not a describe's


# -- validate and network show -------------------------------------------------------


@pytest.fixture(scope="module")
def cli_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A network of its own: the CLI opens the stations' audit logs itself."""
    return build(tmp_path_factory.mktemp("describe-cli"))


def cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_validate_with_identity_names_a_misspelt_column(
    cli_net, tmp_path, capsys
) -> None:
    study = write_study(
        tmp_path,
        parameters={"time": "os_dys", "event": "death", "group": "regimen"},
    )
    code, out, err = cli(
        capsys,
        "validate",
        study,
        "--network",
        cli_net,
        "--identity",
        identity_of(cli_net),
    )
    assert code == 2, (out, err)
    assert "budget:" in out
    problems = [line for line in err.splitlines() if line.startswith(str(study))]
    assert problems == [
        f"{study}: parameters.time: column 'os_dys' is not a column you may use "
        "(did you mean 'os_days'? columns allowed as time: os_days, os_text) "
        "at stations s1, s2"
    ]
    assert "error:" in err and "1 problem(s)" in err


def test_validate_with_identity_finds_a_role_and_a_type_problem(
    cli_net, tmp_path, capsys
) -> None:
    study = write_study(
        tmp_path,
        parameters={"time": "os_text", "event": "death", "group": "age"},
    )
    code, _, err = cli(
        capsys,
        "validate",
        study,
        "--network",
        cli_net,
        "--identity",
        identity_of(cli_net),
    )
    assert code == 2
    assert (
        f"{study}: parameters.group: column 'age' may not serve as group (it may "
        "serve as: covariate) at stations s1, s2"
    ) in err
    assert (
        f"{study}: parameters.time: column 'os_text' is text; survival.km needs a "
        "numeric column here at stations s1, s2"
    ) in err


def test_validate_without_identity_says_columns_were_not_checked(
    cli_net, tmp_path, capsys
) -> None:
    """The old validate said 'ok' for a column no station has."""
    study = write_study(tmp_path, parameters={"time": "nowhere", "event": "death"})
    code, out, _ = cli(capsys, "validate", study, "--network", cli_net)
    assert code == 0
    assert "columns not checked at the stations: add --identity KEY" in out
    assert ": ok" not in out


def test_validate_with_identity_passes_a_good_study(cli_net, tmp_path, capsys) -> None:
    study = write_study(tmp_path)
    code, out, err = cli(
        capsys,
        "validate",
        study,
        "--network",
        cli_net,
        "--identity",
        identity_of(cli_net),
    )
    assert code == 0, err
    assert f"{study}: ok at s1, s2" in out


def test_check_study_reports_train_and_class_refusals(engine, net, tmp_path) -> None:
    catalogue = Catalogue()
    network = load_network(net)
    study = load_study(write_study(tmp_path), catalogue, network)
    answers = ask(engine, net, dataset="melanoma", targets=["s1"])
    s1 = answers["s1"].description
    assert s1 is not None
    narrow = dataclasses.replace(
        s1.datasets[0],
        trains=tuple(t for t in s1.datasets[0].trains if t.name != "survival.km"),
        disclosure_classes=("aggregate",),
    )
    answers["s1"] = dataclasses.replace(
        answers["s1"], description=dataclasses.replace(s1, datasets=(narrow,))
    )
    messages = [p.message for p in check_study(study, answers)]
    assert any(m.startswith("train survival.km is not allowed") for m in messages)
    assert any("releases class 'event_table'" in m for m in messages)


def test_network_show_lists_stations_without_asking(cli_net, capsys) -> None:
    code, out, _ = cli(capsys, "network", "show", cli_net)
    assert code == 0
    assert "s1: Station one; datasets: melanoma, lung" in out
    assert "s2: Station two; datasets: melanoma" in out
    assert "add --identity KEY --purpose PURPOSE" in out


def test_network_show_with_identity_prints_columns_and_json(cli_net, capsys) -> None:
    code, out, err = cli(
        capsys,
        "network",
        "show",
        cli_net,
        "--identity",
        identity_of(cli_net),
        "--purpose",
        PURPOSE,
    )
    assert code == 0, err
    assert "dataset melanoma: k=10" in out
    assert any(
        line.split() == ["regimen", "text", "group,", "covariate"]
        for line in out.splitlines()
    )
    assert "hidden_score" not in out
    code, out, _ = cli(
        capsys,
        "network",
        "show",
        cli_net,
        "--identity",
        identity_of(cli_net),
        "--purpose",
        "marketing/sales",
        "--json",
    )
    assert code == 4  # the JSON is still printed; nobody described anything
    document = json.loads(out)
    assert [s["describe"]["status"] for s in document["stations"]] == [
        "refused",
        "refused",
    ]
    assert document["stations"][0]["describe"]["reason"] == Code.PURPOSE.reason


def test_network_show_identity_needs_a_purpose(cli_net, capsys) -> None:
    code, _, err = cli(
        capsys, "network", "show", cli_net, "--identity", identity_of(cli_net)
    )
    assert code == 2
    assert "--identity needs --purpose" in err


def test_discover_refuses_a_malformed_purpose_before_sending(net) -> None:
    with pytest.raises(ConfigError, match="purpose 'x y'"):
        discover(load_network(net), load_identity(identity_of(net)), purpose="x y")


def test_network_show_says_when_no_station_described_anything(cli_net, capsys) -> None:
    code, out, err = cli(
        capsys,
        "network",
        "show",
        cli_net,
        "--identity",
        identity_of(cli_net),
        "--purpose",
        "marketing/sales",
    )
    assert code == 4
    assert "refused: purpose:" in out  # each station's line still listed
    assert "no station described anything" in err
