"""Adversarial tests of a station's trust checks, policy, output guard, sealing and
audit log: each attack is refused or detected, logged with its reason, and the station
keeps serving."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import identity_of, write_network

from pht.crypto import (
    REQUEST_TYPE,
    canonical_json,
    load_identity,
    load_public,
    new_identity,
    sign_envelope,
)
from pht.errors import TrustError
from pht.keyring import Keyring
from pht.manifest import TRAINS_DIR, Catalogue
from pht.orchestrator.config import load_network
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester, signed_train
from pht.provision import policy_document, provision
from pht.signing import new_request, sign_train
from pht.station.audit import query, verify_log
from pht.station.codes import Code
from pht.wire import Reply

EVIL = {
    # name: the output message a malicious train writes instead of a real result
    "rows": {
        "status": "ok",
        "output": {
            "n": 40,
            "events": 20,
            "excluded": 0,
            "groups": {},
            "rows": [[61, 1, 230.0]] * 40,
        },
    },
    "perpatient": {
        "status": "ok",
        "output": {
            "n": 40,
            "events": 20,
            "excluded": 0,
            "groups": {
                "all": {"time": [1.0] * 40, "events": [1] * 40, "censored": [0] * 40}
            },
            "ages": list(range(40)),
        },
    },
    "count3": {
        "status": "ok",
        "output": {"n": 3, "events": 3, "excluded": 0, "groups": {}},
    },
    "decimals": {
        "status": "ok",
        "output": {
            "n": 40,
            "events": 20,
            "excluded": 0,
            "groups": {
                "all": {"time": [12.3456789012], "events": [1], "censored": [0]}
            },
        },
    },
    "string": {
        "status": "ok",
        "output": {"n": "NKR-3f9a8b7c6d5e", "events": 20, "excluded": 0, "groups": {}},
    },
    "longlabel": {
        "status": "ok",
        "output": {
            "n": 40,
            "events": 20,
            "excluded": 0,
            "groups": {"x" * 100: {"time": [], "events": [], "censored": []}},
        },
    },
}
RAW = {
    "nan": b'{"status": "ok", "output": {"n": NaN, "events": 20, "excluded": 0, "groups": {}}}',
    "nested": b'{"status": "ok", "output": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}
SCRIPT = """\
import pathlib, sys
args = sys.argv
out = pathlib.Path(args[args.index("--output") + 1])
out.mkdir(parents=True, exist_ok=True)
{body}
"""


def evil_catalogue(root: Path) -> Catalogue:
    """The real trains plus one malicious train per attack."""
    shutil.copytree(TRAINS_DIR, root)
    km_manifest = (TRAINS_DIR / "survival.km" / "manifest.yaml").read_text()
    bodies = {
        name: f"(out / 'output.json').write_text({json.dumps(json.dumps(msg))})"
        for name, msg in EVIL.items()
    }
    bodies.update(
        {
            name: f"(out / 'output.json').write_bytes({raw!r})"
            for name, raw in RAW.items()
        }
    )
    bodies["huge"] = "(out / 'output.json').write_bytes(b' ' * 100_000_000)"
    bodies["snoop"] = (
        "other = pathlib.Path(args[args.index('--input') + 1]).parents[5] / 'data' / 's2.parquet'\n"
        "out.joinpath('output.json').write_bytes(other.read_bytes()[:100])"
    )
    bodies["escape"] = (
        "target = pathlib.Path(args[args.index('--input') + 1]).parents[2] / 'planted.txt'\n"
        "target.write_text('x')"
    )
    for name, body in bodies.items():
        folder = root / f"evil.{name}"
        folder.mkdir()
        (folder / "manifest.yaml").write_text(
            km_manifest.replace("name: survival.km", f"name: evil.{name}")
        )
        (folder / "entrypoint.py").write_text(SCRIPT.format(body=body))
    return Catalogue(root)


def frames(n: int = 40) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(5)
    return {
        s: pd.DataFrame(
            {
                "os_days": rng.integers(1, 900, n).astype(float),
                "death": rng.integers(0, 2, n),
                "patient_id": [f"{s.upper()}-{i:06d}" for i in range(n)],
            }
        )
        for s in ("s1", "s2")
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("trust")
    catalogue = evil_catalogue(root / "catalogue")
    held = {}
    (root / "data").mkdir()
    for s, frame in frames().items():
        frame.to_parquet(root / "data" / f"{s}.parquet", index=False)
        held[s] = {"d": root / "data" / f"{s}.parquet"}
    trains = [
        {"name": n, "versions": ">=1.0.0,<2.0.0", "signers": ["keyring"]}
        for n in catalogue.names()
    ]
    document = policy_document(
        columns=["os_days", "death"],
        trains=trains,
        budget={"queries": 40, "period_days": 30},
    )
    made = provision(root, held, policy=document, catalogue=catalogue)
    network = load_network(made.network)
    engine = EmbeddedEngine(network, catalogue)
    requester = Requester(
        load_identity(made.requester_key),
        {s: e.public_key for s, e in network.stations.items()},
    )
    return {
        "root": root,
        "catalogue": catalogue,
        "network": network,
        "engine": engine,
        "requester": requester,
        "made": made,
    }


def request(world, train: str = "survival.km", **overrides: Any):  # type: ignore[no-untyped-def]
    package = world["catalogue"].get(__import__("pht.wire").wire.TrainRef.parse(train))
    fields = dict(
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(world["network"].trains, package),
        dataset="d",
        parameters={"time": "os_days", "event": "death"},
        targets=["s1", "s2"],
    )
    fields.update(overrides)
    return world["requester"].request(**fields)


def handle(world, envelope, station: str = "s1"):  # type: ignore[no-untyped-def]
    return world["engine"].station(station).handle(envelope)


def refused_for(  # type: ignore[no-untyped-def]
    world, envelope, code: Code, cause: str, caplog, station: str = "s1"
) -> Reply:
    """Handle ``envelope``; it must be refused with ``code``, and the station must
    have found ``cause``: in the reply's detail (request trust failures) or, where
    the reply carries only the fixed code, in the station's own log."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pht.station"):
        reply = handle(world, envelope, station)
    assert reply.status == "refused" and reply.sealed is None
    assert reply.reason is not None and reply.reason.startswith(code.reason)
    logged = [r.getMessage() for r in caplog.records]
    assert cause in reply.reason or any(cause in m for m in logged), (reply, logged)
    return reply


def test_a_good_request_is_released_sealed_with_a_receipt(world) -> None:
    body, envelope = request(world)
    reply = handle(world, envelope)
    assert reply.ok and reply.output is None and reply.sealed and reply.receipt
    opened = world["requester"].open(reply, body.request_id)
    assert opened.output["n"] == 40


@pytest.mark.parametrize("name", sorted([*EVIL, *RAW, "huge"]))
def test_malicious_outputs_are_refused_and_the_station_keeps_serving(
    world, name
) -> None:
    body, envelope = request(world, train=f"evil.{name}")
    reply = handle(world, envelope)
    assert reply.status in ("refused", "error") and reply.sealed is None
    assert reply.reason
    audit = world["engine"].station("s1").audit
    logged = [r for r in audit.records() if r.request_id == body.request_id]
    assert any(r.outcome in ("refused", "error") and r.reason for r in logged)
    assert handle(world, request(world)[1]).ok  # still serving


def test_guard_refusals_give_one_code_and_log_the_rule(world, caplog) -> None:
    """The reply carries only the fixed code; the rule that was broken goes to the
    station's log (a guard detail could echo what the train tried to release)."""
    rules = {
        "rows": "undeclared key(s)",
        "count3": "minimum cell size",
        # 10 decimals: not one of the station's grid times (its boundaries)
        "decimals": "off the station's grid",
        "string": "expected an integer",
        "nan": "finite",
        "nested": "nested deeper",
        "longlabel": "not a label this station observed",
    }
    for name, rule in rules.items():
        envelope = request(world, train=f"evil.{name}")[1]
        reply = refused_for(world, envelope, Code.GUARD, rule, caplog)
        assert reply.reason == Code.GUARD.reason, name
    # 100 MB: over the output cap, never parsed; nothing leaves
    reply = handle(world, request(world, train="evil.huge")[1])
    assert reply.reason in (Code.TRAIN_FAILED.reason, Code.GUARD.reason)
    assert reply.sealed is None


def test_train_cannot_read_another_stations_data(world) -> None:
    reply = handle(world, request(world, train="evil.snoop")[1])
    assert reply.status in ("refused", "error")  # PermissionError: data is owner-only
    assert reply.sealed is None


def test_train_cannot_write_outside_its_run_folder(world) -> None:
    reply = handle(world, request(world, train="evil.escape")[1])
    assert reply.status in ("refused", "error")
    workdir = world["network"].stations["s1"].hosted().workdir
    assert not (workdir / "planted.txt").exists()


def test_unsigned_forged_and_tampered_requests_are_refused(world, caplog) -> None:
    body, envelope = request(world)
    unsigned = {**envelope, "signatures": []}
    refused_for(world, unsigned, Code.SIGNATURE, "unsigned", caplog)
    stranger = new_identity("requester", "ZIN", "mallory")
    forged = sign_envelope(
        base64.b64decode(envelope["payload"]), REQUEST_TYPE, stranger
    )
    assert handle(world, forged).reason in (Code.REJECTED.reason, Code.SIGNATURE.reason)
    data = json.loads(base64.b64decode(envelope["payload"]))
    data["purpose"] = "efficiency-research/dose-reduction"
    tampered = {**envelope, "payload": base64.b64encode(canonical_json(data)).decode()}
    assert handle(world, tampered).reason in (
        Code.REJECTED.reason,
        Code.SIGNATURE.reason,
    )


def test_replayed_expired_misaddressed_and_wrong_purpose_requests(
    world, caplog
) -> None:
    _, envelope = request(world)
    assert handle(world, envelope).ok
    assert handle(world, envelope).reason == Code.REPLAYED.reason
    _, expired = request(world)
    identity = world["requester"].identity
    package = world["catalogue"].get(
        __import__("pht.wire").wire.TrainRef.parse("survival.km")
    )
    _, expired = new_request(
        identity,
        user="analyst",
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(world["network"].trains, package),
        dataset="d",
        parameters={"time": "os_days", "event": "death"},
        targets=["s1"],
        lifetime=dt.timedelta(seconds=-1),
    )
    refused_for(world, expired, Code.EXPIRED, "expired", caplog)
    _, elsewhere = request(world, targets=["s2"])
    refused_for(world, elsewhere, Code.ELSEWHERE, "not addressed to station s1", caplog)
    _, marketing = request(world, purpose="marketing/sales")
    # fixed text only: the refusal does not list the purposes the station serves
    assert handle(world, marketing).reason == Code.PURPOSE.reason


def test_wrong_role_and_unlisted_column_are_refused(world, caplog) -> None:
    # the role must be one the requester's keyring entry lists (requester_roles)
    _, envelope = request(world, role="intern")
    refused_for(world, envelope, Code.IDENTITY, "role 'intern' is not allowed", caplog)
    _, envelope = request(
        world, parameters={"time": "os_days", "event": "death", "group": "patient_id"}
    )
    reply = handle(world, envelope)
    assert reply.status == "refused" and reply.reason == Code.COLUMN.reason


def test_untrusted_expired_revoked_and_mismatched_trains(
    world, tmp_path, caplog
) -> None:
    package = world["catalogue"].get(
        __import__("pht.wire").wire.TrainRef.parse("survival.km")
    )
    _, envelope = request(world, train_envelope={})
    refused_for(world, envelope, Code.TRAIN, "unsigned", caplog)
    stranger = new_identity("methodologist", "elsewhere", "eve")
    _, envelope = request(world, train_envelope=sign_train(package, stranger))
    refused_for(world, envelope, Code.TRAIN, "not among the 1 trusted key(s)", caplog)
    # a copy of the train with one changed byte: the signed digest no longer matches
    copy = tmp_path / "survival.km"
    shutil.copytree(package.folder, copy)
    (copy / "entrypoint.py").write_text(
        package.entrypoint.read_text() + "\n# changed\n"
    )
    from pht.manifest import load_package

    changed = load_package(copy)
    methodologist = load_identity(world["made"].methodologist_key)
    _, envelope = request(
        world,
        train_envelope=sign_train(changed, methodologist),
        train_digest=changed.digest,
    )
    refused_for(world, envelope, Code.TRAIN, "digest mismatch", caplog)


def test_revoked_and_expired_signers(world, caplog) -> None:
    station = world["engine"].station("s2")
    keyring: Keyring = station.config.keyring
    methodologist = load_identity(world["made"].methodologist_key)
    now = dt.datetime.now(dt.UTC)
    original = keyring.entries
    try:
        keyring.revoke(methodologist.key_id, now - dt.timedelta(minutes=1))
        envelope = request(world, targets=["s2"])[1]
        refused_for(world, envelope, Code.TRAIN, "revoked", caplog, station="s2")
        entries = {e.key_id: e for e in original}
        expired = dataclasses.replace(
            entries[methodologist.key_id],
            valid_from=now - dt.timedelta(days=2),
            valid_until=now - dt.timedelta(minutes=1),
        )
        keyring._entries = {**entries, methodologist.key_id: expired}  # type: ignore[attr-defined]
        envelope = request(world, targets=["s2"])[1]
        refused_for(world, envelope, Code.TRAIN, "expired", caplog, station="s2")
    finally:
        station.config.keyring._entries = {e.key_id: e for e in original}  # type: ignore[attr-defined]
    assert station.handle(request(world, targets=["s2"])[1]).ok


def test_query_budget_is_enforced(tmp_path) -> None:
    network = write_network(
        tmp_path,
        frames(),
        dataset="melanoma",
        budget={"queries": 2, "period_days": 30},
        columns=["os_days", "death"],
    )
    net = load_network(network)
    engine = EmbeddedEngine(net)
    requester = Requester(
        load_identity(identity_of(network)),
        {s: e.public_key for s, e in net.stations.items()},
    )
    package = Catalogue().get(__import__("pht.wire").wire.TrainRef.parse("survival.km"))

    def ask():  # type: ignore[no-untyped-def]
        return requester.request(
            role="analyst",
            purpose="package-management/reassessment",
            train=str(package.manifest.ref),
            train_digest=package.digest,
            train_envelope=signed_train(net.trains, package),
            dataset="melanoma",
            parameters={"time": "os_days", "event": "death"},
            targets=["s1"],
        )[1]

    station = engine.station("s1")
    assert station.handle(ask()).ok and station.handle(ask()).ok
    reply = station.handle(ask())
    assert reply.status == "refused" and reply.reason == Code.BUDGET.reason


def test_tampered_sealed_output_or_receipt_is_detected(world) -> None:
    body, envelope = request(world)
    reply = handle(world, envelope)
    sealed = dict(reply.sealed)
    ct = bytearray(base64.b64decode(sealed["ciphertext"]))
    ct[5] ^= 1
    sealed["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    import dataclasses

    with pytest.raises(TrustError):
        world["requester"].open(
            dataclasses.replace(reply, sealed=sealed), body.request_id
        )
    with pytest.raises(TrustError):
        world["requester"].open(reply, "another-request")
    other = handle(world, request(world, targets=["s1", "s2"])[1], station="s2")
    with pytest.raises(TrustError):  # s2's receipt presented as s1's
        world["requester"].open(
            dataclasses.replace(reply, receipt=other.receipt), body.request_id
        )


def test_audit_logs_verify_after_all_attacks(world) -> None:
    for station_id, entry in world["network"].stations.items():
        public = load_public(entry.public_key)
        report = verify_log(entry.hosted().workdir / "audit", public.signing_key)
        assert report.size > 0
        refusals = query(entry.hosted().workdir / "audit", outcome="refused")
        if station_id == "s1":
            assert refusals and all(r.reason for r in refusals)
        events = {r.event for r in query(entry.hosted().workdir / "audit")}
        assert {
            "policy_change",
            "key_change",
            "request_received",
            "policy_decision",
            "run",
            "release",
        } <= events
        if station_id == "s1":
            assert "refusal" in events


def test_manual_review_holds_outputs_until_approved(tmp_path) -> None:
    network = write_network(
        tmp_path, frames(), review="manual", columns=["os_days", "death"]
    )
    net = load_network(network)
    engine = EmbeddedEngine(net)
    requester = Requester(
        load_identity(identity_of(network)),
        {s: e.public_key for s, e in net.stations.items()},
    )
    package = Catalogue().get(__import__("pht.wire").wire.TrainRef.parse("survival.km"))
    body, envelope = requester.request(
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(net.trains, package),
        dataset="melanoma",
        parameters={"time": "os_days", "event": "death"},
        targets=["s1"],
    )
    station = engine.station("s1")
    reply = station.handle(envelope)
    assert reply.status == "pending" and reply.sealed is None
    assert station.pending() == [body.request_id]
    shown = station.show_pending(body.request_id)
    assert shown["output"]["n"] == 40
    approved = station.review(body.request_id, True, "dpo")
    assert approved.ok
    collected = station.collect(body.request_id)
    assert requester.open(collected, body.request_id).output["n"] == 40
    events = [r.event for r in query(net.stations["s1"].hosted().workdir / "audit")]
    assert "review" in events and "release" in events
