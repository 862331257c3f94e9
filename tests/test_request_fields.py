"""Adversarial fixtures for signed requests: every field of the envelope and of the
signed body is hostile JSON, and ``verify_signed_request`` answers only with a
``TrustError`` (a fixed, data-free reason naming the field) or a verified request.

Who is asking comes from the keyring: the signed ``user`` must be the key's ``user``
and the claimed ``role`` one of its ``requester_roles``."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import identity_of, write_network
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pht.crypto import (
    REQUEST_TYPE,
    TRAIN_MANIFEST_TYPE,
    Identity,
    canonical_json,
    load_identity,
    new_identity,
    save_identity,
    sign_envelope,
)
from pht.errors import ConfigError, TrustError
from pht.keyring import Keyring
from pht.orchestrator.config import load_network
from pht.orchestrator.embedded import EmbeddedEngine
from pht.signing import (
    NONCE,
    REQUEST_ID,
    VerifiedRequest,
    new_request,
    verify_request,
    verify_signed_request,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
DIGEST = "sha256:" + "ab" * 32
SURROGATE = "\ud800"


def _iso(when: dt.datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An analyst key (may claim 'analyst'), a key without requester_roles, and a
    keyring trusting both from a day before NOW."""
    folder = tmp_path_factory.mktemp("ring")
    analyst = new_identity("requester", "ZIN", "analyst")
    roleless = new_identity("requester", "ZIN", "roleless")
    keyring = Keyring()
    since = NOW - dt.timedelta(days=1)
    for identity, claims in ((analyst, ["analyst"]), (roleless, None)):
        _, public = save_identity(identity, folder)
        keyring.add(
            public, roles=["requester"], valid_from=since, requester_roles=claims
        )
    return {"analyst": analyst, "roleless": roleless, "keyring": keyring}


def body(**overrides: Any) -> dict[str, Any]:
    """A valid request body for station s1, with fields overridden."""
    fields: dict[str, Any] = {
        "request_id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        "nonce": "0123456789abcdef0123456789abcdef",
        "issued_at": _iso(NOW - dt.timedelta(minutes=1)),
        "expires_at": _iso(NOW + dt.timedelta(hours=1)),
        "organisation": "ZIN",
        "user": "analyst",
        "role": "analyst",
        "purpose": "package-management/reassessment",
        "train": "survival.km@1.0.0",
        "train_digest": DIGEST,
        "train_statement": {"payloadType": TRAIN_MANIFEST_TYPE},
        "dataset": "melanoma",
        "parameters": {"time": "os_days", "event": "death", "alpha": 0.05},
        "targets": ["s1", "s2"],
        "type": "pht.request/1",
    }
    fields.update(overrides)
    return fields


def signed(identity: Identity, data: Any) -> dict[str, Any]:
    """Sign any JSON value (NaN and lone surrogates survive, as \\u escapes)."""
    raw = json.dumps(data, ensure_ascii=True, allow_nan=True).encode("ascii")
    return sign_envelope(raw, REQUEST_TYPE, identity)


def verify(ring: dict[str, Any], envelope: Any) -> VerifiedRequest:
    return verify_signed_request(envelope, ring["keyring"], "s1", now=NOW)


def refused(ring: dict[str, Any], envelope: Any) -> str:
    """The reason a request is refused; it is valid UTF-8 and one short line."""
    with pytest.raises(TrustError) as info:
        verify(ring, envelope)
    reason = str(info.value)
    reason.encode("utf-8")  # no lone surrogate leaks into logs or replies
    assert "\n" not in reason and len(reason) < 400
    return reason


# -- the good case and the new API ------------------------------------------------------
def test_a_good_request_returns_the_keyring_entry(ring) -> None:
    verified = verify(ring, signed(ring["analyst"], body()))
    assert verified.entry.key_id == ring["analyst"].key_id
    assert verified.requester == ring["analyst"].public
    assert (verified.user, verified.role, verified.organisation) == (
        "analyst",
        "analyst",
        "ZIN",
    )
    old = verify_request(signed(ring["analyst"], body()), ring["keyring"], "s1", NOW)
    assert old == (verified.body, verified.requester)


def test_the_requester_makes_canonical_uuid4_request_ids(ring) -> None:
    for _ in range(20):
        made, _ = new_request(
            ring["analyst"],
            user="analyst",
            role="analyst",
            purpose="p",
            train="survival.km",
            train_digest=DIGEST,
            train_envelope={},
            dataset="melanoma",
            parameters={},
            targets=["s1"],
        )
        assert REQUEST_ID.fullmatch(made.request_id)
        assert str(uuid.UUID(made.request_id)) == made.request_id
        assert NONCE.fullmatch(made.nonce)


# -- B1: request id and nonce become path components and log lines -----------------------
@pytest.mark.parametrize(
    "request_id",
    [
        "../audit",
        "/etc",
        "/",
        "..",
        "",
        "a/../../b",
        "1B4E28BA-2FA1-41D2-883F-0016D3CCA427",  # upper case
        "{1b4e28ba-2fa1-41d2-883f-0016d3cca427}",
        "1b4e28ba2fa141d2883f0016d3cca427",  # no dashes
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",  # a uuid1
        "1b4e28ba-2fa1-41d2-883f-0016d3cca427\n",
        "1b4e28ba-2fa1-41d2-883f-0016d3cca427/..",
        "1b4e28ba-2fa1-41d2-883f-0016d3cca427" + SURROGATE,
    ],
)
def test_request_id_must_be_a_canonical_uuid4(ring, request_id: str) -> None:
    reason = refused(ring, signed(ring["analyst"], body(request_id=request_id)))
    assert reason == "request field 'request_id' must be a lower-case UUID4"


@pytest.mark.parametrize(
    "nonce",
    ["", "short", "a" * 129, "../../nonces", "0123456789abcdef\n0123", "a b" * 10, 7],
)
def test_nonce_must_be_a_bounded_token(ring, nonce: Any) -> None:
    reason = refused(ring, signed(ring["analyst"], body(nonce=nonce)))
    assert reason.startswith("request field 'nonce' must be a token")


# -- B2: wrong types, surrogates and control characters in the signed body -------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user", 123),
        ("user", None),
        ("role", ["analyst"]),
        ("organisation", 7),
        ("purpose", {"a": 1}),
        ("purpose", "x" * 201),
        ("train", "../../etc/passwd"),
        ("train_digest", "sha256:zz"),
        ("train_statement", "an envelope, trust me"),
        ("dataset", "../data"),
        ("parameters", ["time", "os_days"]),
        ("parameters", "time=os_days"),
        ("parameters", {"alpha": 10**30}),
        ("parameters", {"time": "os\x1bdays"}),
        ("parameters", {"t\x00": "x"}),
        ("parameters", {f"p{i}": list(range(10)) for i in range(200)}),
        ("targets", "s1"),
        ("targets", [1]),
        ("targets", []),
        ("targets", ["s1", "../s2"]),
        ("issued_at", 5),
        ("issued_at", "yesterday"),
        ("issued_at", "2026-03-01T12:00:00"),  # no time zone
        ("issued_at", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
        ("expires_at", "9999-12-31T23:59:59-23:59"),  # after year 9999 in UTC
        ("type", "pht.train/1"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(ring, field: str, value: Any) -> None:
    reason = refused(ring, signed(ring["analyst"], body(**{field: value})))
    assert f"'{field}'" in reason or field in reason
    if isinstance(value, str) and len(value) > 3:
        assert value not in reason  # never echoed


@pytest.mark.parametrize(
    "field", ["user", "role", "organisation", "purpose", "dataset", "train"]
)
@pytest.mark.parametrize("bad", [SURROGATE, "\x00", "\x1b[31m", "\n", "\u0085"])
def test_lone_surrogates_and_control_characters_are_refused(
    ring, field: str, bad: str
) -> None:
    value = body()[field] + bad
    reason = refused(ring, signed(ring["analyst"], body(**{field: value})))
    assert f"'{field}'" in reason


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.pop("nonce"),
        lambda b: b.update({"extra": 1}),
        lambda b: b.update({SURROGATE: 1}),
    ],
)
def test_missing_and_unexpected_fields(ring, change: Any) -> None:
    data = body()
    change(data)
    reason = refused(ring, signed(ring["analyst"], data))
    assert "field" in reason


def test_an_overflowing_number_is_refused_as_not_finite(ring) -> None:
    text = json.dumps(body(parameters={"alpha": "INF"})).replace('"INF"', "1e400")
    envelope = sign_envelope(text.encode(), REQUEST_TYPE, ring["analyst"])
    assert "finite" in refused(ring, envelope)


@pytest.mark.parametrize(
    "parameters",
    [
        {"alpha": float("nan")},
        {"alpha": float("-inf")},
        {"deep": [[[[[[[[[[[1]]]]]]]]]]]},
    ],
)
def test_nan_and_deep_nesting_are_refused_before_the_fields(
    ring, parameters: dict[str, Any]
) -> None:
    reason = refused(ring, signed(ring["analyst"], body(parameters=parameters)))
    assert reason.startswith("request payload is")


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'"request"',
        b"\xff\xfe{}",
        b'{"a": NaN}',
        b'{"a": 1, "a": 2}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"user": "' + b"\\ud800" + b'"}',
    ],
)
def test_signed_payloads_that_are_not_a_json_object(ring, raw: bytes) -> None:
    refused(ring, sign_envelope(raw, REQUEST_TYPE, ring["analyst"]))


# -- B2: the unsigned envelope ----------------------------------------------------------
def _good_envelope(ring: dict[str, Any]) -> dict[str, Any]:
    return signed(ring["analyst"], body())


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.update({"payloadType": SURROGATE}),
        lambda e: e.update({"payloadType": 3}),
        lambda e: e.update({SURROGATE: 1}),
        lambda e: e.update({"payload": 12}),
        lambda e: e.update({"payload": "é" * 10}),
        lambda e: e.update({"payload": "A" * (300 * 1024)}),
        lambda e: e.update({"signatures": "sig"}),
        lambda e: e.update({"signatures": [None]}),
        lambda e: e.update({"signatures": [{"keyid": 1, "sig": "AA=="}]}),
        lambda e: e.update({"signatures": [{"keyid": SURROGATE, "sig": "AA=="}]}),
        lambda e: e["signatures"][0].update({"sig": SURROGATE}),
        lambda e: e["signatures"][0].update({"sig": 5}),
        lambda e: e["signatures"][0].update({"extra": 1}),
        lambda e: e.update({"signatures": e["signatures"] * 9}),
    ],
)
def test_hostile_envelopes_are_refused(ring, change: Any) -> None:
    envelope = _good_envelope(ring)
    change(envelope)
    reason = refused(ring, envelope)
    assert "envelope" in reason or "unsigned" in reason


@pytest.mark.parametrize("envelope", [None, [], "x", 3, {}, {"signatures": []}])
def test_non_envelopes_are_unsigned(ring, envelope: Any) -> None:
    assert refused(ring, envelope) == "the request is unsigned"


# -- B3: user and role come from the keyring ---------------------------------------------
def test_the_user_is_the_keyrings(ring) -> None:
    reason = refused(ring, signed(ring["analyst"], body(user="analyst2")))
    assert "speaks for user 'analyst'" in reason


def test_a_key_may_claim_only_its_requester_roles(ring) -> None:
    reason = refused(ring, signed(ring["analyst"], body(role="admin")))
    assert "role 'admin' is not allowed" in reason and "analyst" in reason


def test_a_key_without_requester_roles_claims_nothing(ring) -> None:
    data = body(user="roleless")
    reason = refused(ring, signed(ring["roleless"], data))
    assert "no requester_roles" in reason


def test_another_organisation_is_refused(ring) -> None:
    reason = refused(ring, signed(ring["analyst"], body(organisation="IKNL")))
    assert "organisation" in reason


# -- the keyring entry format ------------------------------------------------------------
def _keyring_yaml(tmp_path: Path, extra: str, role: str = "requester") -> Path:
    identity = new_identity(role, "ZIN", "bob")
    save_identity(identity, tmp_path / "keys")
    path = tmp_path / "keyring.yaml"
    path.write_text(
        "keys:\n"
        "  - public: keys/bob.pub.json\n"
        f"    roles: [{role}]\n"
        "    valid_from: 2026-01-01T00:00:00Z\n" + extra,
        encoding="utf-8",
    )
    return path


def test_keyring_user_and_requester_roles_round_trip(tmp_path: Path) -> None:
    path = _keyring_yaml(tmp_path, "    user: robert\n    requester_roles: [analyst]\n")
    entry = Keyring.load(path).entries[0]
    assert entry.user == "robert" and entry.requester_roles == ("analyst",)
    Keyring.load(path).save(tmp_path / "again.yaml")
    assert Keyring.load(tmp_path / "again.yaml").entries == (entry,)
    default = Keyring.load(_keyring_yaml(tmp_path / "b", "")).entries[0]
    assert default.user == "bob" and default.requester_roles == ()


@pytest.mark.parametrize(
    ("extra", "role", "message"),
    [
        ("    requester_roles: []\n", "requester", "at least one role"),
        ("    requester_roles: [Analyst]\n", "requester", "lower-case"),
        ("    requester_roles: [analyst, analyst]\n", "requester", "twice"),
        ("    user: '../bob'\n", "requester", "user must be"),
        ('    user: "bob\\n"\n', "requester", "user must be"),
        ("    requester_roles: [analyst]\n", "methodologist", "only for requester"),
    ],
)
def test_keyring_requester_fields_are_checked(
    tmp_path: Path, extra: str, role: str, message: str
) -> None:
    path = _keyring_yaml(tmp_path, extra, role)
    with pytest.raises(ConfigError, match=message) as info:
        Keyring.load(path)
    assert f"{path}:5:" in str(info.value)


# -- hypothesis: nothing but TrustError ---------------------------------------------------
_chars = st.characters(exclude_categories=()) | st.sampled_from(
    [SURROGATE, "\udfff", "\x00", "\x1b", "/", ".", "\n", "é"]
)
# random text, plus the valid value of every field and some path tricks, so that
# hypothesis also reaches the checks after the first one
_text = st.text(_chars, max_size=12) | st.sampled_from(
    sorted({v for v in body().values() if isinstance(v, str)})
    + ["..", "../audit", "/", "s1", "analyst", "ZIN", "2026-03-01T12:00:00Z"]
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | _text
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4)
    ),
    max_leaves=10,
)
_fields = sorted(body())
_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _only_trust_errors(ring: dict[str, Any], envelope: Any) -> None:
    try:
        verified = verify(ring, envelope)
    except TrustError as exc:
        str(exc).encode("utf-8")
        assert "\n" not in str(exc)
        return
    assert REQUEST_ID.fullmatch(verified.body.request_id)
    assert verified.body.user == verified.entry.user


@_SETTINGS
@given(
    replaced=st.dictionaries(st.sampled_from(_fields), _json, max_size=4),
    dropped=st.sets(st.sampled_from(_fields), max_size=2),
    extra=st.dictionaries(_text, _json, max_size=2),
)
def test_any_signed_body_gives_trust_error_or_a_verified_request(
    ring, replaced: dict[str, Any], dropped: set[str], extra: dict[str, Any]
) -> None:
    data = {**body(), **replaced, **extra}
    for name in dropped:
        data.pop(name, None)
    _only_trust_errors(ring, signed(ring["analyst"], data))


@_SETTINGS
@given(data=_json)
def test_any_signed_json_value_gives_trust_error(ring, data: Any) -> None:
    _only_trust_errors(ring, signed(ring["analyst"], data))


@_SETTINGS
@given(raw=st.binary(max_size=64))
def test_any_signed_bytes_give_trust_error(ring, raw: bytes) -> None:
    _only_trust_errors(ring, sign_envelope(raw, REQUEST_TYPE, ring["analyst"]))


@_SETTINGS
@given(
    envelope=_json
    | st.fixed_dictionaries(
        {"payloadType": _json, "payload": _json, "signatures": _json}
    )
    | st.fixed_dictionaries(
        {
            "payloadType": st.just(REQUEST_TYPE) | _text,
            "payload": st.binary(max_size=32).map(
                lambda b: base64.b64encode(b).decode()
            )
            | _text,
            "signatures": st.lists(
                st.fixed_dictionaries({"keyid": _text | _json, "sig": _text | _json})
                | _json,
                max_size=3,
            ),
        }
    )
)
def test_any_unsigned_envelope_gives_trust_error(ring, envelope: Any) -> None:
    _only_trust_errors(ring, envelope)


# -- through a station: refused with a reason, nothing deleted, still serving ------------
@pytest.fixture(scope="module")
def station_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fields")
    rng = np.random.default_rng(3)
    frames = {
        s: pd.DataFrame(
            {
                "os_days": rng.integers(1, 900, 30).astype(float),
                "death": rng.integers(0, 2, 30),
            }
        )
        for s in ("s1", "s2")
    }
    network = write_network(root, frames, columns=["os_days", "death"])
    engine = EmbeddedEngine(load_network(network))
    return {
        "engine": engine,
        "identity": load_identity(identity_of(network)),
        "workdir": load_network(network).stations["s1"].hosted().workdir,
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"request_id": "../audit"},
        {"request_id": "/tmp"},
        {"request_id": ".."},
        {"user": 123},
        {"parameters": ["time", "os_days"]},
        {"targets": "s1"},
        {"purpose": "p" + SURROGATE},
        {"nonce": "../../nonces"},
    ],
)
def test_station_refuses_hostile_signed_fields_and_keeps_its_folders(
    station_world, overrides: dict[str, Any]
) -> None:
    station = station_world["engine"].station("s1")
    workdir: Path = station_world["workdir"]
    before = sorted(p.name for p in workdir.iterdir())
    envelope = signed(station_world["identity"], body(**overrides))
    reply = station.handle(envelope)
    (field,) = overrides
    assert reply.status == "refused" and f"'{field}'" in reply.reason
    assert reply.sealed is None
    assert sorted(p.name for p in workdir.iterdir()) == before
    assert (workdir / "audit").is_dir()


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.update({SURROGATE: 1}),
        lambda e: e.update({"payloadType": SURROGATE}),
        lambda e: e.update({"signatures": [{"keyid": SURROGATE, "sig": SURROGATE}]}),
        lambda e: e.update({"payload": SURROGATE}),
    ],
)
def test_station_refuses_lone_surrogates_in_the_unsigned_envelope(
    station_world, change: Any
) -> None:
    envelope = signed(station_world["identity"], body())
    change(envelope)
    reply = station_world["engine"].station("s1").handle(envelope)
    assert reply.status == "refused" and "envelope" in reply.reason
    reply.reason.encode("utf-8")


def test_provisioned_keyrings_let_the_analyst_claim_analyst(station_world) -> None:
    station = station_world["engine"].station("s1")
    entries = {e.identity.name: e for e in station.config.keyring.entries}
    assert entries["analyst"].requester_roles == ("analyst",)
    assert entries["methodologist"].requester_roles == ()


def test_only_a_hand_made_payload_carries_a_lone_surrogate() -> None:
    # the requester's canonical JSON cannot encode one: it fails before signing
    with pytest.raises(UnicodeEncodeError):
        canonical_json(body(user=SURROGATE))
