"""Signed statements both sides exchange: train manifests, requests and receipts.

All are canonical JSON payloads in DSSE envelopes (:mod:`pht.crypto`):

* **train statement** (methodologist): name, version, SHA-256 of the exact manifest
  bytes, the code digest (manifest + entrypoint), the image digest when the train is a
  container, the disclosure class, and the signing time;
* **request** (requester): request id, nonce, issued-at and expiry, organisation, user,
  role, purpose, train reference, digest and signed statement, dataset, parameters and
  target stations;
* **describe request** (requester, its own payload type): the same who, when and where
  fields, a purpose and a dataset (or ``*``), no train: "which columns may I use?";
* **receipt** (station): request id, round, digests of the sealed and of the plain
  output, and the audit-log checkpoint after the release was logged.

Verification never trusts the payload before the signature, and says what failed.
Everything it is given is hostile JSON: the envelope's shape is checked before the
signature, and after it every signed field's type, length and format (a request id is
a canonical lower-case UUID4, a nonce a 16-128 character token, strings are printable,
numbers finite, nesting shallow). Any other input raises :class:`TrustError` with a
fixed message that names the field but never echoes its value.

A request's key decides who is asking: :func:`verify_signed_request` returns the
keyring entry, refuses a request whose ``user`` is not the entry's ``user`` or whose
``role`` is not among its ``requester_roles``, and whose organisation is not the key's.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
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
from pht.keyring import REQUESTER_ROLE_PATTERN, USER_PATTERN, Keyring, KeyringEntry
from pht.manifest import TrainPackage
from pht.timefmt import TimeFormatError, format_iso_z, parse_utc, utc_now
from pht.yamlcfg import json_depth

MAX_LIFETIME = dt.timedelta(hours=24)
CLOCK_SKEW = dt.timedelta(minutes=5)

MAX_PAYLOAD_CHARS = 256 * 1024
"""Longest base64 payload of an envelope."""
MAX_SIGNATURES = 8
"""Most signatures on one envelope."""
MAX_DEPTH = 12
"""Deepest nesting of a signed payload."""
MAX_TEXT = 200
"""Longest free-text field (organisation, purpose)."""
MAX_PARAMETER_ITEMS = 1000
"""Most values (counted recursively) in a request's parameters."""
MAX_PARAMETER_TEXT = 1000
"""Longest string among a request's parameters."""
MAX_TARGETS = 256
"""Most target stations of one request."""
MAX_INT = 2**53
"""Largest magnitude of an integer parameter (exact as a float)."""

REQUEST_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
"""``str(uuid.uuid4())``: the only request id a station accepts (``fullmatch``)."""
NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
"""A hex or unpadded base64url token of 16-128 characters (``fullmatch``)."""
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_SIG = re.compile(r"[A-Za-z0-9+/=]{1,128}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # station and dataset ids
_TRAIN_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_VERSION = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")
_TRAIN_REF = re.compile(
    r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*(?:@[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9})?"
)
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}")


def _parse_time(text: Any, what: str) -> dt.datetime:
    """An aware UTC datetime from an ISO string; a fixed TrustError otherwise."""
    try:
        return parse_utc(text)
    except TimeFormatError as exc:
        raise TrustError(f"{what} {exc}") from None


# -- hostile JSON ---------------------------------------------------------------------
def _check_envelope(envelope: Any, payload_type: str, what: str) -> None:
    """The shape of a DSSE envelope, before any signature is looked at."""
    if not isinstance(envelope, Mapping) or not envelope.get("signatures"):
        raise TrustError(f"the {what} is unsigned")
    bad = f"malformed {what} envelope"
    if set(envelope) != {"payloadType", "payload", "signatures"}:
        raise TrustError(
            f"{bad}: expected exactly the keys payload, payloadType and signatures"
        )
    if envelope["payloadType"] != payload_type:
        raise TrustError(f"{bad}: payloadType must be {payload_type!r}")
    payload = envelope["payload"]
    if (
        not isinstance(payload, str)
        or len(payload) > MAX_PAYLOAD_CHARS
        or not payload.isascii()
    ):
        raise TrustError(
            f"{bad}: payload must be a base64 string of at most {MAX_PAYLOAD_CHARS} "
            "characters"
        )
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or len(signatures) > MAX_SIGNATURES:
        raise TrustError(
            f"{bad}: signatures must be a list of at most {MAX_SIGNATURES}"
        )
    for index, entry in enumerate(signatures):
        if not isinstance(entry, Mapping) or set(entry) != {"keyid", "sig"}:
            raise TrustError(
                f"{bad}: signatures[{index}] must have exactly the keys keyid and sig"
            )
        if not isinstance(entry["keyid"], str) or not _KEY_ID.fullmatch(entry["keyid"]):
            raise TrustError(
                f"{bad}: signatures[{index}].keyid must be a 16-digit hex key id"
            )
        if not isinstance(entry["sig"], str) or not _SIG.fullmatch(entry["sig"]):
            raise TrustError(
                f"{bad}: signatures[{index}].sig must be a base64 signature"
            )


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def _payload(raw: bytes, what: str) -> dict[str, Any]:
    """Decode a verified payload: UTF-8 JSON object, no NaN, no duplicate keys."""
    try:
        data = json.loads(
            raw.decode("utf-8"),
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except (ValueError, RecursionError):
        raise TrustError(f"{what} payload is not JSON") from None
    if not isinstance(data, dict):
        raise TrustError(f"{what} payload is not an object")
    if json_depth(data) > MAX_DEPTH:
        raise TrustError(f"{what} payload is nested deeper than {MAX_DEPTH} levels")
    return data


def _fields(data: dict[str, Any], names: tuple[str, ...], what: str) -> None:
    """Exactly the fields ``names``: name a missing one, never echo an unknown one."""
    for name in names:
        if name not in data:
            raise TrustError(f"{what} is missing field '{name}'")
    if len(data) != len(names):
        raise TrustError(f"{what} has an unexpected field")


def _text(data: dict[str, Any], name: str, what: str, limit: int = MAX_TEXT) -> str:
    value = data[name]
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > limit
        or not value.isprintable()
    ):
        raise TrustError(
            f"{what} field '{name}' must be a non-empty printable string of at most "
            f"{limit} characters"
        )
    return value


def _matching(
    data: dict[str, Any], name: str, what: str, pattern: re.Pattern[str], hint: str
) -> str:
    value = data[name]
    if (
        not isinstance(value, str)
        or len(value) > MAX_TEXT
        or not pattern.fullmatch(value)
    ):
        raise TrustError(f"{what} field '{name}' must be {hint}")
    return value


def _check_parameters(value: Any) -> None:
    """Parameters: a mapping of names to JSON values (finite, printable, bounded)."""
    problem = "request field 'parameters' must be a mapping of names to values"
    if not isinstance(value, dict):
        raise TrustError(problem)
    budget = MAX_PARAMETER_ITEMS
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            raise TrustError(
                f"request field 'parameters' holds more than {MAX_PARAMETER_ITEMS} "
                "values"
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if (
                    not isinstance(key, str)
                    or not key
                    or len(key) > 64
                    or not key.isprintable()
                ):
                    raise TrustError(
                        f"{problem}: names are printable strings of 1-64 characters"
                    )
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if len(item) > MAX_PARAMETER_TEXT or not item.isprintable():
                raise TrustError(
                    f"{problem}: strings are printable and at most "
                    f"{MAX_PARAMETER_TEXT} characters"
                )
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_INT:
                raise TrustError(f"{problem}: integers are at most 2**53 in size")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise TrustError(f"{problem}: numbers are finite")
        else:
            raise TrustError(f"{problem}: values are JSON values")


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
        signed_at=format_iso_z(utc_now()),
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
    _check_envelope(envelope, TRAIN_MANIFEST_TYPE, "train")
    raw, key_id = verify_envelope(
        envelope, TRAIN_MANIFEST_TYPE, _role_keys(keyring, "methodologist")
    )
    statement = _train_statement(_payload(raw, "train statement"))
    signed_at = _parse_time(statement.signed_at, "train signing time")
    signer = keyring.check(key_id, "methodologist", signed_at)
    keyring.check(key_id, "methodologist", now or utc_now())
    return statement, signer


def _train_statement(data: dict[str, Any]) -> TrainStatement:
    """Every field of a decoded train statement, checked for type and format."""
    what = "train statement"
    _fields(data, _TRAIN_FIELDS, what)
    if data["type"] != "pht.train/1":
        raise TrustError(f"{what} field 'type' must be 'pht.train/1'")
    image = data["image_digest"]
    if image is not None and (
        not isinstance(image, str) or not _IMAGE.fullmatch(image)
    ):
        raise TrustError(f"{what} field 'image_digest' must be null or an image id")
    return TrainStatement(
        name=_matching(data, "name", what, _TRAIN_NAME, "a dotted lower-case name"),
        version=_matching(data, "version", what, _VERSION, "MAJOR.MINOR.PATCH"),
        manifest_sha256=_matching(
            data, "manifest_sha256", what, _DIGEST, "sha256:<64 hex digits>"
        ),
        code_digest=_matching(
            data, "code_digest", what, _DIGEST, "sha256:<64 hex digits>"
        ),
        image_digest=image,
        disclosure_class=_matching(
            data, "disclosure_class", what, _ID, "a lower-case name"
        ),
        signed_at=_time_text(data, "signed_at", what),
    )


def _time_text(data: dict[str, Any], name: str, what: str) -> str:
    """A field that must parse as an aware ISO time; returned as given."""
    _parse_time(data[name], f"{what} field '{name}'")
    return str(data[name])


_TRAIN_FIELDS = (
    "name",
    "version",
    "manifest_sha256",
    "code_digest",
    "image_digest",
    "disclosure_class",
    "signed_at",
    "type",
)


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


def _fresh(lifetime: dt.timedelta) -> dict[str, str]:
    """A new request id and nonce, issued now, expiring after ``lifetime``."""
    now = utc_now()
    return {
        "request_id": str(uuid.uuid4()),
        "nonce": secrets.token_hex(16),
        "issued_at": format_iso_z(now),
        "expires_at": format_iso_z(now + lifetime),
    }


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
    body = SignedRequestBody(
        **_fresh(lifetime),
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


REQUEST_FIELDS = (
    "request_id",
    "nonce",
    "issued_at",
    "expires_at",
    "organisation",
    "user",
    "role",
    "purpose",
    "train",
    "train_digest",
    "train_statement",
    "dataset",
    "parameters",
    "targets",
    "type",
)


def _request_body(data: dict[str, Any]) -> SignedRequestBody:
    """Every field of a decoded request, checked for type and format."""
    what = "request"
    _fields(data, REQUEST_FIELDS, what)
    if data["type"] != "pht.request/1":
        raise TrustError("request field 'type' must be 'pht.request/1'")
    if not isinstance(data["train_statement"], dict):
        raise TrustError("request field 'train_statement' must be a signed envelope")
    _check_parameters(data["parameters"])
    targets = _targets(data["targets"], what)
    return SignedRequestBody(
        request_id=_matching(
            data, "request_id", what, REQUEST_ID, "a lower-case UUID4"
        ),
        nonce=_matching(
            data, "nonce", what, NONCE, "a token of 16-128 letters, digits, - or _"
        ),
        issued_at=_time_text(data, "issued_at", what),
        expires_at=_time_text(data, "expires_at", what),
        organisation=_text(data, "organisation", what),
        user=_matching(data, "user", what, USER_PATTERN, "a user name"),
        role=_matching(data, "role", what, REQUESTER_ROLE_PATTERN, "a role name"),
        purpose=_text(data, "purpose", what),
        train=_matching(data, "train", what, _TRAIN_REF, "a train name[@version]"),
        train_digest=_matching(
            data, "train_digest", what, _DIGEST, "sha256:<64 hex digits>"
        ),
        train_statement=data["train_statement"],
        dataset=_matching(data, "dataset", what, _ID, "a dataset id"),
        parameters=data["parameters"],
        targets=targets,
    )


class _Asker:
    """Who a verified request speaks for: the keyring entry, never the body's words."""

    body: Any
    entry: KeyringEntry

    @property
    def user(self) -> str:
        """The user the keyring says the key speaks for (equals ``body.user``)."""
        return self.entry.user

    @property
    def organisation(self) -> str:
        """The key's organisation (equals ``body.organisation``)."""
        return self.entry.identity.organisation

    @property
    def role(self) -> str:
        """The claimed role, one of the key's ``requester_roles``."""
        return self.body.role


@dataclass(frozen=True)
class VerifiedRequest(_Asker):
    """A request whose signature, key, fields, freshness and target all checked out.

    Attributes
    ----------
    body
        The signed request.
    requester
        The public identity of the key that signed it.
    entry
        That key's keyring entry: the source of truth for who is asking.
    """

    body: SignedRequestBody
    requester: PublicIdentity
    entry: KeyringEntry


def verify_signed_request(
    envelope: Mapping[str, Any],
    keyring: Keyring,
    station_id: str,
    now: dt.datetime | None = None,
) -> VerifiedRequest:
    """Check a signed request: envelope, signature, key, every field, who, when, where.

    Parameters
    ----------
    envelope
        The DSSE envelope as received (any JSON value).
    keyring
        The station's keyring; the signer must be a requester key valid at ``now``.
    station_id
        This station; it must be among the request's targets.
    now
        The time to check against (default: now).

    Returns
    -------
    VerifiedRequest
        The body, the signer's identity and keyring entry.

    Raises
    ------
    TrustError
        For anything else, with a one-line reason that names the field or rule and
        does not echo unchecked values. Nothing else is raised for JSON input.
    """
    when = now or utc_now()
    _check_envelope(envelope, REQUEST_TYPE, "request")
    raw, key_id = verify_envelope(
        envelope, REQUEST_TYPE, _role_keys(keyring, "requester")
    )
    requester = keyring.check(key_id, "requester", when)
    entry = keyring.get(key_id)
    if entry is None:  # check() passed, so this cannot happen; fail closed anyway
        raise TrustError(f"key {key_id} is not in the keyring")
    body = _request_body(_payload(raw, "request"))
    _check_who_when_where(body, requester, entry, station_id, when, "request")
    return VerifiedRequest(body, requester, entry)


def _check_who_when_where(
    body: SignedRequestBody | DescribeRequestBody,
    requester: PublicIdentity,
    entry: KeyringEntry,
    station_id: str,
    when: dt.datetime,
    what: str,
) -> None:
    """Who (the key's organisation, user and roles), when (fresh) and where (here)."""
    who = requester.describe()
    if body.organisation != requester.organisation:
        raise TrustError(
            f"{what} claims another organisation than {who}'s "
            f"'{requester.organisation}'"
        )
    if body.user != entry.user:
        raise TrustError(
            f"{what} names user '{body.user}' but {who} speaks for user "
            f"'{entry.user}' in the keyring"
        )
    if body.role not in entry.requester_roles:
        allowed = ", ".join(entry.requester_roles)
        raise TrustError(
            f"role '{body.role}' is not allowed for {who}: its keyring entry lists "
            + (
                f"requester_roles: {allowed}"
                if allowed
                else "no requester_roles; add e.g. requester_roles: [analyst]"
            )
        )
    issued = _parse_time(body.issued_at, f"{what} issued_at")
    expires = _parse_time(body.expires_at, f"{what} expires_at")
    if issued > when + CLOCK_SKEW:
        raise TrustError(f"{what} is issued in the future; check the requester's clock")
    if expires <= when:
        raise TrustError(f"{what} expired at {format_iso_z(expires)}")
    if expires - issued > MAX_LIFETIME:
        raise TrustError(f"{what} lifetime exceeds 24 hours")
    if station_id not in body.targets:
        raise TrustError(f"{what} is not addressed to station {station_id}")


def verify_request(
    envelope: Mapping[str, Any],
    keyring: Keyring,
    station_id: str,
    now: dt.datetime | None = None,
) -> tuple[SignedRequestBody, PublicIdentity]:
    """:func:`verify_signed_request`, returning only ``(body, requester)``.

    Kept for existing callers; new code should use :func:`verify_signed_request` and
    take the user and organisation from its keyring entry.
    """
    verified = verify_signed_request(envelope, keyring, station_id, now)
    return verified.body, verified.requester


# -- describe requests ----------------------------------------------------------------
DESCRIBE_TYPE = "application/vnd.pht.describe+json"
"""DSSE payload type of a describe request (a train request's signature never
verifies as one, nor the other way round)."""
DESCRIBE_BINDING = digest(b"pht.describe/1")
"""What a describe answer's seal is bound to in place of a train's code digest."""
ALL_DATASETS = "*"
"""A describe request's ``dataset``: every dataset the requester may use."""
DESCRIBE_FIELDS = (
    "request_id",
    "nonce",
    "issued_at",
    "expires_at",
    "organisation",
    "user",
    "role",
    "purpose",
    "dataset",
    "targets",
    "type",
)


@dataclass(frozen=True)
class DescribeRequestBody:
    """The payload of a signed describe request: which columns may I use, and how.

    Signed and checked like a train request (who, when, where, replay); it names a
    purpose and a dataset (or :data:`ALL_DATASETS`) but no train and no parameters.
    """

    request_id: str
    nonce: str
    issued_at: str
    expires_at: str
    organisation: str
    user: str
    role: str
    purpose: str
    dataset: str
    targets: Sequence[str]
    type: str = "pht.describe/1"


def new_describe(
    identity: Identity,
    *,
    user: str,
    role: str,
    purpose: str,
    dataset: str,
    targets: Sequence[str],
    lifetime: dt.timedelta = dt.timedelta(minutes=15),
) -> tuple[DescribeRequestBody, dict[str, Any]]:
    """A fresh describe request (new id and nonce) and its DSSE envelope."""
    body = DescribeRequestBody(
        **_fresh(lifetime),
        organisation=identity.public.organisation,
        user=user,
        role=role,
        purpose=purpose,
        dataset=dataset,
        targets=list(targets),
    )
    return body, sign_envelope(canonical_json(asdict(body)), DESCRIBE_TYPE, identity)


def _describe_body(data: dict[str, Any]) -> DescribeRequestBody:
    """Every field of a decoded describe request, checked for type and format."""
    what = "describe request"
    _fields(data, DESCRIBE_FIELDS, what)
    if data["type"] != "pht.describe/1":
        raise TrustError(f"{what} field 'type' must be 'pht.describe/1'")
    dataset = data["dataset"]
    if dataset != ALL_DATASETS:
        _matching(data, "dataset", what, _ID, "a dataset id or '*'")
    return DescribeRequestBody(
        request_id=_matching(
            data, "request_id", what, REQUEST_ID, "a lower-case UUID4"
        ),
        nonce=_matching(
            data, "nonce", what, NONCE, "a token of 16-128 letters, digits, - or _"
        ),
        issued_at=_time_text(data, "issued_at", what),
        expires_at=_time_text(data, "expires_at", what),
        organisation=_text(data, "organisation", what),
        user=_matching(data, "user", what, USER_PATTERN, "a user name"),
        role=_matching(data, "role", what, REQUESTER_ROLE_PATTERN, "a role name"),
        purpose=_text(data, "purpose", what),
        dataset=dataset,
        targets=_targets(data["targets"], what),
    )


def _targets(targets: Any, what: str) -> list[str]:
    if (
        not isinstance(targets, list)
        or not 0 < len(targets) <= MAX_TARGETS
        or not all(isinstance(t, str) and _ID.fullmatch(t) for t in targets)
    ):
        raise TrustError(
            f"{what} field 'targets' must be a list of 1-{MAX_TARGETS} station ids"
        )
    return list(targets)


@dataclass(frozen=True)
class VerifiedDescribe(_Asker):
    """A describe request that checked out (see :class:`VerifiedRequest`)."""

    body: DescribeRequestBody
    requester: PublicIdentity
    entry: KeyringEntry


def is_describe(envelope: Any) -> bool:
    """Whether ``envelope`` claims to be a describe request (before any check)."""
    return isinstance(envelope, Mapping) and (
        envelope.get("payloadType") == DESCRIBE_TYPE
    )


def verify_signed_describe(
    envelope: Mapping[str, Any],
    keyring: Keyring,
    station_id: str,
    now: dt.datetime | None = None,
) -> VerifiedDescribe:
    """Check a signed describe request as :func:`verify_signed_request` checks one.

    Envelope, signature by a requester key valid now, every field, the key's
    organisation, user and role, freshness and the target station.

    Raises
    ------
    TrustError
        With a one-line reason naming the field or rule, never echoing a value.
    """
    when = now or utc_now()
    what = "describe request"
    _check_envelope(envelope, DESCRIBE_TYPE, what)
    raw, key_id = verify_envelope(
        envelope, DESCRIBE_TYPE, _role_keys(keyring, "requester")
    )
    requester = keyring.check(key_id, "requester", when)
    entry = keyring.get(key_id)
    if entry is None:  # check() passed, so this cannot happen; fail closed anyway
        raise TrustError(f"key {key_id} is not in the keyring")
    body = _describe_body(_payload(raw, what))
    _check_who_when_where(body, requester, entry, station_id, when, what)
    return VerifiedDescribe(body, requester, entry)


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
    _check_envelope(envelope, RECEIPT_TYPE, "receipt")
    raw, _ = verify_envelope(
        envelope, RECEIPT_TYPE, {station.key_id: station.signing_key}
    )
    data = _payload(raw, "receipt")
    try:
        return Receipt(**data)
    except TypeError:
        raise TrustError("receipt has unexpected or missing fields") from None
