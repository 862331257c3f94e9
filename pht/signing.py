"""Signed statements both sides exchange: train manifests, requests and receipts.

All three are canonical JSON payloads in DSSE envelopes (:mod:`pht.crypto`):

* **train statement** (methodologist): name, version, SHA-256 of the exact manifest
  bytes, the code digest (manifest + entrypoint), the image digest when the train is a
  container, the disclosure class, and the signing time;
* **request** (requester): request id, nonce, issued-at and expiry, organisation, user,
  role, purpose, train reference, digest and signed statement, dataset, parameters and
  target stations;
* **receipt** (station): request id, round, digests of the sealed and of the plain
  output, and the audit-log checkpoint after the release was logged.

Verification never trusts the payload before the signature, and says what failed.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pht.crypto import (
    RECEIPT_TYPE,
    REQUEST_TYPE,
    TRAIN_MANIFEST_TYPE,
    Identity,
    PublicIdentity,
    canonical_json,
    digest,
    sign_envelope,
    verify_envelope,
)
from pht.errors import TrustError
from pht.keyring import Keyring
from pht.manifest import TrainPackage

MAX_LIFETIME = dt.timedelta(hours=24)
CLOCK_SKEW = dt.timedelta(minutes=5)


def utc_now() -> dt.datetime:
    """The current time, UTC."""
    return dt.datetime.now(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: Any, what: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise TrustError(f"{what} is not an ISO time") from None
    if when.tzinfo is None:
        raise TrustError(f"{what} has no time zone")
    return when


def _payload(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise TrustError(f"{what} payload is not JSON") from None
    if not isinstance(data, dict):
        raise TrustError(f"{what} payload is not an object")
    return data


def _role_keys(keyring: Keyring, role: str) -> dict[str, Any]:
    """All keys listed for ``role`` (validity is checked after the signature)."""
    return {
        e.key_id: e.identity.signing_key for e in keyring.entries if role in e.roles
    }


# -- trains ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainStatement:
    """What a methodologist vouches for."""

    name: str
    version: str
    manifest_sha256: str
    code_digest: str
    image_digest: str | None
    disclosure_class: str
    signed_at: str
    type: str = "pht.train/1"


def train_statement(
    package: TrainPackage, image_digest: str | None = None
) -> TrainStatement:
    """The statement of a train folder as it is now."""
    m = package.manifest
    return TrainStatement(
        name=m.name,
        version=m.version,
        manifest_sha256=digest(package.manifest_bytes),
        code_digest=package.digest,
        image_digest=image_digest,
        disclosure_class=m.output_class,
        signed_at=_iso(utc_now()),
    )


def sign_train(
    package: TrainPackage, identity: Identity, image_digest: str | None = None
) -> dict[str, Any]:
    """DSSE envelope of the train statement, signed by a methodologist."""
    if identity.public.role != "methodologist":
        raise TrustError(
            f"trains are signed by methodologists, not {identity.public.role}s"
        )
    statement = train_statement(package, image_digest)
    return sign_envelope(
        canonical_json(asdict(statement)), TRAIN_MANIFEST_TYPE, identity
    )


def verify_train(
    envelope: Mapping[str, Any], keyring: Keyring, now: dt.datetime | None = None
) -> tuple[TrainStatement, PublicIdentity]:
    """Check a signed train statement: trusted signer, active at signing and now."""
    if not isinstance(envelope, Mapping) or not envelope.get("signatures"):
        raise TrustError("the train is unsigned")
    raw, key_id = verify_envelope(
        envelope, TRAIN_MANIFEST_TYPE, _role_keys(keyring, "methodologist")
    )
    data = _payload(raw, "train statement")
    try:
        statement = TrainStatement(**data)
    except TypeError:
        raise TrustError("train statement has unexpected fields") from None
    signed_at = _parse_time(statement.signed_at, "train signing time")
    signer = keyring.check(key_id, "methodologist", signed_at)
    keyring.check(key_id, "methodologist", now or utc_now())
    return statement, signer


# -- requests -------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedRequestBody:
    """The payload of a signed request."""

    request_id: str
    nonce: str
    issued_at: str
    expires_at: str
    organisation: str
    user: str
    role: str
    purpose: str
    train: str
    train_digest: str
    train_statement: Mapping[str, Any]
    dataset: str
    parameters: Mapping[str, Any]
    targets: Sequence[str]
    type: str = "pht.request/1"


def new_request(
    identity: Identity,
    *,
    user: str,
    role: str,
    purpose: str,
    train: str,
    train_digest: str,
    train_envelope: Mapping[str, Any],
    dataset: str,
    parameters: Mapping[str, Any],
    targets: Sequence[str],
    lifetime: dt.timedelta = dt.timedelta(hours=1),
) -> tuple[SignedRequestBody, dict[str, Any]]:
    """A fresh request (new id and nonce) and its DSSE envelope."""
    now = utc_now()
    body = SignedRequestBody(
        request_id=str(uuid.uuid4()),
        nonce=secrets.token_hex(16),
        issued_at=_iso(now),
        expires_at=_iso(now + lifetime),
        organisation=identity.public.organisation,
        user=user,
        role=role,
        purpose=purpose,
        train=train,
        train_digest=train_digest,
        train_statement=dict(train_envelope),
        dataset=dataset,
        parameters=dict(parameters),
        targets=list(targets),
    )
    return body, sign_envelope(canonical_json(asdict(body)), REQUEST_TYPE, identity)


def verify_request(
    envelope: Mapping[str, Any],
    keyring: Keyring,
    station_id: str,
    now: dt.datetime | None = None,
) -> tuple[SignedRequestBody, PublicIdentity]:
    """Check a signed request's signature, requester key, freshness and target."""
    when = now or utc_now()
    if not isinstance(envelope, Mapping) or not envelope.get("signatures"):
        raise TrustError("the request is unsigned")
    raw, key_id = verify_envelope(
        envelope, REQUEST_TYPE, _role_keys(keyring, "requester")
    )
    requester = keyring.check(key_id, "requester", when)
    data = _payload(raw, "request")
    try:
        body = SignedRequestBody(**data)
    except TypeError:
        raise TrustError("request has unexpected or missing fields") from None
    if body.organisation != requester.organisation:
        raise TrustError(
            f"request claims organisation '{body.organisation}' but is signed by "
            f"{requester.describe()}"
        )
    issued = _parse_time(body.issued_at, "request issued_at")
    expires = _parse_time(body.expires_at, "request expires_at")
    if issued > when + CLOCK_SKEW:
        raise TrustError("request is issued in the future; check the requester's clock")
    if expires <= when:
        raise TrustError(f"request expired at {body.expires_at}")
    if expires - issued > MAX_LIFETIME:
        raise TrustError("request lifetime exceeds 24 hours")
    if station_id not in body.targets:
        raise TrustError(f"request is not addressed to station {station_id}")
    return body, requester


# -- receipts -------------------------------------------------------------------------
@dataclass(frozen=True)
class Receipt:
    """A station's signed statement that it released an output."""

    request_id: str
    station: str
    round: int
    output_digest: str
    sealed_digest: str
    audit_size: int
    audit_root: str
    time: str
    type: str = "pht.receipt/1"


def sign_receipt(receipt: Receipt, identity: Identity) -> dict[str, Any]:
    """DSSE envelope of a receipt, signed by the station."""
    return sign_envelope(canonical_json(asdict(receipt)), RECEIPT_TYPE, identity)


def verify_receipt(envelope: Mapping[str, Any], station: PublicIdentity) -> Receipt:
    """Check a receipt against the station's public key."""
    raw, _ = verify_envelope(
        envelope, RECEIPT_TYPE, {station.key_id: station.signing_key}
    )
    data = _payload(raw, "receipt")
    try:
        return Receipt(**data)
    except TypeError:
        raise TrustError("receipt has unexpected or missing fields") from None
