"""Identities, DSSE envelopes, HPKE sealing and the station keyring.

Adversarial fixtures: a forged / altered signature, a swapped payload type, an unknown
signer, an unsigned envelope, a sealed result moved to another request, station or
train, every single-bit flip of a sealed result, a world-readable private key, and
revoked / expired / not-yet-valid / wrong-role keys.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pht.crypto import (
    RECEIPT_TYPE,
    REQUEST_TYPE,
    SEAL_SUITE,
    TRAIN_MANIFEST_TYPE,
    PublicIdentity,
    canonical_json,
    digest,
    load_identity,
    load_public,
    new_identity,
    open_sealed,
    pae,
    save_identity,
    seal,
    sign_envelope,
    verify_envelope,
)
from pht.errors import ConfigError, TrustError
from pht.keyring import Keyring

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MANIFEST = b'{"name":"survival.km","version":"1.0.0"}'
BINDING = {
    "request_id": "req-0001",
    "station_id": "umcg",
    "manifest_digest": digest(MANIFEST),
}


@functools.cache
def _alice():
    return new_identity("methodologist", "UMCG", "alice")


@functools.cache
def _requester():
    return new_identity("requester", "Zorginstituut", "zin")


@functools.cache
def _sealed():
    return seal(b"aggregate bytes", _requester().public.sealing_key, **BINDING)


# -- canonical JSON and digests ------------------------------------------------------
def test_canonical_json_sorts_keys_and_keeps_utf8():
    assert canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'.encode()


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_digest_is_prefixed_sha256():
    # sha256("abc") from FIPS 180-2, appendix B.1
    assert digest(b"abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# -- identities ----------------------------------------------------------------------
def test_key_id_is_sha256_prefix_of_raw_signing_key():
    import hashlib

    public = _alice().public
    raw = public.signing_key.public_bytes_raw()
    assert public.key_id == hashlib.sha256(raw).hexdigest()[:16]


def test_identity_round_trip(tmp_path: Path):
    alice = _alice()
    private_path, public_path = save_identity(alice, tmp_path / "keys")
    assert private_path.name == "alice.key.json"
    assert public_path.name == "alice.pub.json"
    loaded = load_identity(private_path)
    assert loaded.public == alice.public
    assert loaded.key_id == alice.key_id
    assert load_public(public_path) == alice.public
    # the loaded private keys sign for the same key id
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, loaded)
    trusted = {alice.key_id: alice.public.signing_key}
    assert verify_envelope(envelope, TRAIN_MANIFEST_TYPE, trusted)[1] == alice.key_id
    # the public file holds no private material
    assert (
        json.loads(public_path.read_text())["signing_key"]
        == (alice.public.to_dict()["signing_key"])
    )
    assert "public" not in json.loads(public_path.read_text())


def test_public_identity_dict_round_trip():
    public = _alice().public
    assert PublicIdentity.from_dict(public.to_dict()) == public
    assert "signing=" not in repr(_alice())  # private keys stay out of reprs


@posix_only
def test_private_key_file_is_0600(tmp_path: Path):
    private_path, public_path = save_identity(_alice(), tmp_path)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600


def test_save_refuses_to_overwrite(tmp_path: Path):
    save_identity(_alice(), tmp_path)
    before = (tmp_path / "alice.key.json").read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        save_identity(new_identity("methodologist", "UMCG", "alice"), tmp_path)
    assert (tmp_path / "alice.key.json").read_bytes() == before


@posix_only
def test_world_readable_private_key_is_refused(tmp_path: Path):
    private_path, _ = save_identity(_alice(), tmp_path)
    private_path.chmod(0o644)
    with pytest.raises(TrustError, match="chmod 600"):
        load_identity(private_path)


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("role", "admin", ConfigError),
        ("name", "../etc/passwd", ConfigError),
        ("organisation", "", ConfigError),
        ("created", "yesterday", ConfigError),
        ("format", "pht.identity/0", ConfigError),
        ("colour", "blue", ConfigError),
        ("key_id", "0" * 16, TrustError),
        ("signing_key", base64.b64encode(b"short").decode(), TrustError),
        ("sealing_key", "not base64!", TrustError),
    ],
)
def test_public_file_validation_names_file_and_key(
    tmp_path: Path, key: str, value: str, error: type[Exception]
):
    doc = _alice().public.to_dict()
    doc[key] = value
    path = tmp_path / "alice.pub.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(error) as info:
        load_public(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_new_identity_validates_role_and_name():
    with pytest.raises(ConfigError, match="role"):
        new_identity("auditor", "UMCG", "bob")
    with pytest.raises(ConfigError, match="name"):
        new_identity("requester", "UMCG", "bob/evil")


@posix_only
def test_private_key_mixed_with_other_public_part_is_refused(tmp_path: Path):
    private_path, _ = save_identity(_alice(), tmp_path)
    doc = json.loads(private_path.read_text())
    doc["public"] = _requester().public.to_dict()
    other = tmp_path / "mixed.key.json"
    fd = os.open(other, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(doc, handle)
    with pytest.raises(TrustError, match="does not match"):
        load_identity(other)


# -- DSSE ----------------------------------------------------------------------------
def test_pae_matches_dsse_spec_vector():
    # DSSE protocol.md, "Test vectors"
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters():
    assert pae("t/é", "ü".encode()) == b"DSSEv1 4 t/\xc3\xa9 2 \xc3\xbc"


def _trusted():
    return {_alice().key_id: _alice().public.signing_key}


def test_sign_verify_round_trip():
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _alice())
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    assert envelope["signatures"][0]["keyid"] == _alice().key_id
    # survives a JSON round trip
    envelope = json.loads(json.dumps(envelope))
    assert verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted()) == (
        MANIFEST,
        _alice().key_id,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_tampered_payload_fails():
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _alice())
    envelope["payload"] = _b64(MANIFEST.replace(b"1.0.0", b"1.0.1"))
    with pytest.raises(TrustError, match="bad signature"):
        verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted())


def test_tampered_signature_fails():
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _alice())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = _b64(bytes(sig))
    with pytest.raises(TrustError, match="bad signature"):
        verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted())


def test_wrong_payload_type_fails():
    envelope = sign_envelope(MANIFEST, REQUEST_TYPE, _alice())
    with pytest.raises(TrustError, match="wrong payload type"):
        verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted())


def test_relabelled_payload_type_fails():
    # the type is inside the PAE: relabelling a signed request as a receipt fails
    envelope = sign_envelope(MANIFEST, REQUEST_TYPE, _alice())
    envelope["payloadType"] = RECEIPT_TYPE
    with pytest.raises(TrustError, match="bad signature"):
        verify_envelope(envelope, RECEIPT_TYPE, _trusted())


def test_unknown_key_fails():
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _requester())
    with pytest.raises(TrustError, match="unknown key id"):
        verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted())


def test_forged_keyid_fails():
    # a stranger signs and claims alice's key id
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _requester())
    envelope["signatures"][0]["keyid"] = _alice().key_id
    with pytest.raises(TrustError, match="bad signature"):
        verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted())


def test_unsigned_envelope_fails():
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _alice())
    envelope["signatures"] = []
    with pytest.raises(TrustError, match="unsigned"):
        verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted())


def test_extra_unknown_signature_is_ignored():
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _alice())
    other = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _requester())
    envelope["signatures"] = other["signatures"] + envelope["signatures"]
    _, keyid = verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted())
    assert keyid == _alice().key_id


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("payload"),
        lambda e: e.update(extra=1),
        lambda e: e.update(payload="***"),
        lambda e: e.update(payloadType=1),
        lambda e: e.update(signatures={"keyid": "x"}),
        lambda e: e["signatures"][0].pop("sig"),
        lambda e: e["signatures"][0].update(sig=7),
    ],
)
def test_malformed_envelope_fails(mutate):
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _alice())
    mutate(envelope)
    with pytest.raises(TrustError, match="malformed"):
        verify_envelope(envelope, TRAIN_MANIFEST_TYPE, _trusted())


def test_not_a_mapping_fails():
    with pytest.raises(TrustError, match="malformed"):
        verify_envelope([], TRAIN_MANIFEST_TYPE, _trusted())  # type: ignore[arg-type]


# -- sealing -------------------------------------------------------------------------
def test_seal_open_round_trip():
    sealed = json.loads(json.dumps(_sealed()))
    assert sealed["suite"] == SEAL_SUITE
    assert {k: sealed[k] for k in BINDING} == BINDING
    assert open_sealed(sealed, _requester().sealing, **BINDING) == b"aggregate bytes"


def test_seal_is_randomised():
    again = seal(b"aggregate bytes", _requester().public.sealing_key, **BINDING)
    assert again["enc"] != _sealed()["enc"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("request_id", "req-0002"),
        ("station_id", "erasmus"),
        ("manifest_digest", digest(b"another train")),
    ],
)
def test_open_with_other_binding_fails(key: str, value: str):
    expected = {**BINDING, key: value}
    # the plain label disagrees
    with pytest.raises(TrustError, match=f"bound to {key}"):
        open_sealed(_sealed(), _requester().sealing, **expected)
    # relabelling the sealed result does not help: the binding is in the HPKE info
    moved = {**_sealed(), key: value}
    with pytest.raises(TrustError, match="does not open"):
        open_sealed(moved, _requester().sealing, **expected)


def test_open_with_wrong_key_fails():
    with pytest.raises(TrustError, match="does not open"):
        open_sealed(_sealed(), _alice().sealing, **BINDING)


def test_open_rejects_other_suite_and_malformed():
    with pytest.raises(TrustError, match="suite"):
        open_sealed({**_sealed(), "suite": "rsa"}, _requester().sealing, **BINDING)
    with pytest.raises(TrustError, match="malformed"):
        open_sealed({"enc": "x"}, _requester().sealing, **BINDING)
    with pytest.raises(TrustError, match="enc"):
        short = {**_sealed(), "enc": _b64(b"\x00" * 31)}
        open_sealed(short, _requester().sealing, **BINDING)


def test_seal_requires_a_sha256_manifest_digest():
    with pytest.raises(TrustError, match="manifest_digest"):
        seal(
            b"x", _requester().public.sealing_key, **{**BINDING, "manifest_digest": "x"}
        )


def _flip(text: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[bit // 8] ^= 1 << (bit % 8)
    return _b64(bytes(raw))


ENC_BITS = 8 * 32
CIPHERTEXT_BITS = 8 * (len(b"aggregate bytes") + 16)  # plaintext + Poly1305 tag


@settings(max_examples=80, deadline=None)
@given(
    flip=st.tuples(st.just("enc"), st.integers(0, ENC_BITS - 1))
    | st.tuples(st.just("ciphertext"), st.integers(0, CIPHERTEXT_BITS - 1))
)
@example(flip=("enc", ENC_BITS - 1))  # the bit X25519 masks (RFC 7748, section 5)
@example(flip=("ciphertext", CIPHERTEXT_BITS - 1))  # last bit of the tag
def test_any_bit_flip_makes_open_fail(flip: tuple[str, int]):
    field, bit = flip
    sealed = copy.deepcopy(_sealed())
    sealed[field] = _flip(sealed[field], bit)
    with pytest.raises(TrustError, match="does not open"):
        open_sealed(sealed, _requester().sealing, **BINDING)


# -- keyring -------------------------------------------------------------------------
def _keyring_file(tmp_path: Path, body: str) -> Path:
    keys = tmp_path / "keys"
    if not (keys / "alice.pub.json").exists():
        save_identity(_alice(), keys)
    path = tmp_path / "keyring.yaml"
    path.write_text(body, encoding="utf-8")
    return path


WINDOW = """\
keys:
  - public: keys/alice.pub.json
    roles: [methodologist]
    valid_from: 2026-01-01T00:00:00Z
    valid_until: 2027-01-01T00:00:00Z
"""


def test_keyring_accepts_key_inside_window(tmp_path: Path):
    keyring = Keyring.load(_keyring_file(tmp_path, WINDOW))
    identity = keyring.check(_alice().key_id, "methodologist", T0)
    assert identity == _alice().public
    assert keyring.trusted("methodologist", T0) == _trusted()
    envelope = sign_envelope(MANIFEST, TRAIN_MANIFEST_TYPE, _alice())
    payload, keyid = verify_envelope(
        envelope, TRAIN_MANIFEST_TYPE, keyring.trusted("methodologist", T0)
    )
    assert keyring.check(keyid, "methodologist", T0).name == "alice"


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (T0 - timedelta(seconds=1), "not valid yet"),
        (datetime(2027, 1, 1, tzinfo=UTC), "expired"),
    ],
)
def test_keyring_validity_window(tmp_path: Path, at: datetime, reason: str):
    keyring = Keyring.load(_keyring_file(tmp_path, WINDOW))
    with pytest.raises(TrustError, match=reason) as info:
        keyring.check(_alice().key_id, "methodologist", at)
    assert _alice().key_id in str(info.value)
    assert "alice" in str(info.value)
    assert keyring.trusted("methodologist", at) == {}


def test_keyring_revocation_is_inclusive(tmp_path: Path):
    body = WINDOW + "    revoked_at: 2026-06-01T00:00:00Z\n"
    keyring = Keyring.load(_keyring_file(tmp_path, body))
    revoked = datetime(2026, 6, 1, tzinfo=UTC)
    keyring.check(_alice().key_id, "methodologist", revoked - timedelta(seconds=1))
    with pytest.raises(TrustError, match="revoked") as info:
        keyring.check(_alice().key_id, "methodologist", revoked)
    assert "alice" in str(info.value)
    assert keyring.trusted("methodologist", revoked) == {}


def test_keyring_wrong_role_and_unknown_key(tmp_path: Path):
    keyring = Keyring.load(_keyring_file(tmp_path, WINDOW))
    with pytest.raises(TrustError, match="not for requester") as info:
        keyring.check(_alice().key_id, "requester", T0)
    assert "alice" in str(info.value)
    with pytest.raises(TrustError, match="not in the keyring") as info:
        keyring.check(_requester().key_id, "requester", T0)
    assert _requester().key_id in str(info.value)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (WINDOW + "    colour: blue\n", "keys[0].colour"),
        (WINDOW + "extra: 1\n", "extra"),
        (WINDOW.replace("[methodologist]", "[auditor]"), "keys[0].roles"),
        (WINDOW.replace("[methodologist]", "[station]"), "keys[0].roles"),
        (WINDOW.replace("2026-01-01T00:00:00Z", "2026-01-01"), "keys[0].valid_from"),
        (
            WINDOW.replace("2026-01-01T00:00:00Z", "2026-01-01 00:00:00"),
            "keys[0].valid_from",
        ),
        (WINDOW.replace("2027-01-01", "2025-01-01"), "keys[0].valid_until"),
        (WINDOW.replace("alice.pub", "nobody.pub"), "keys[0].public"),
        (WINDOW + WINDOW.removeprefix("keys:\n"), "keys[1]"),
    ],
)
def test_keyring_yaml_errors_name_file_and_key(tmp_path: Path, body: str, key: str):
    path = _keyring_file(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        Keyring.load(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_keyring_add_save_load_round_trip(tmp_path: Path):
    _, public_path = save_identity(_alice(), tmp_path / "keys")
    keyring = Keyring()
    keyring.add(
        public_path,
        roles=["methodologist"],
        valid_from=T0,
        valid_until=T0 + timedelta(days=365),
    )
    keyring.revoke(_alice().key_id, T0 + timedelta(days=30))
    with pytest.raises(ConfigError, match="already in the keyring"):
        keyring.add(public_path, roles=["methodologist"], valid_from=T0)
    path = tmp_path / "keyring.yaml"
    keyring.save(path)
    assert "keys/alice.pub.json" in path.read_text()
    loaded = Keyring.load(path)
    assert loaded.entries == keyring.entries
    with pytest.raises(TrustError, match="revoked"):
        loaded.check(_alice().key_id, "methodologist", T0 + timedelta(days=31))


def test_keyring_add_rejects_role_not_declared(tmp_path: Path):
    _, public_path = save_identity(_alice(), tmp_path)
    with pytest.raises(ConfigError, match="declares role"):
        Keyring().add(public_path, roles=["requester"], valid_from=T0)
