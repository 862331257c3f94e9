"""Wire-level crypto shared by orchestrator and stations: identities, DSSE, sealing.

Everything here is small, pure and domain-separated; nothing logs, prints or reads the
environment. Both sides import this module and never each other's internals.

Identities
    An :class:`Identity` is an Ed25519 signing key plus an X25519 sealing key, owned
    by a requester, a methodologist or a station. Its :class:`PublicIdentity` is what
    others put in their keyring. ``key_id`` is the first 16 hex digits of
    ``sha256(raw Ed25519 public key)``.

Files (JSON, keys as base64 of the raw 32 bytes)
    ``<name>.pub.json`` (shareable)::

        {"format": "pht.identity/1", "name": "alice", "organisation": "UMCG",
         "role": "methodologist", "created": "2026-01-01T00:00:00Z",
         "key_id": "<16 hex>", "signing_key": "<b64>", "sealing_key": "<b64>"}

    ``<name>.key.json`` (private, mode 0600)::

        {"format": "pht.identity.private/1", "public": {...as above...},
         "signing_key": "<b64 Ed25519 seed>", "sealing_key": "<b64 X25519 scalar>"}

Signatures
    DSSE envelopes (https://github.com/secure-systems-lab/dsse) over
    ``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``. The
    payload type separates domains: a signed request can never pass as a signed
    train manifest or receipt.

Sealing
    HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    ChaCha20-Poly1305. The binding (request id, station id, manifest digest) goes into
    the HPKE ``info``, so a sealed result moved to another request, station or train
    does not open.

Errors
    Malformed files or fields raise :class:`~pht.errors.ConfigError` naming the file
    and the key; anything about key material, signatures or seals raises
    :class:`~pht.errors.TrustError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

from pht.errors import ConfigError, TrustError
from pht.timefmt import TimeFormatError, format_seconds_z, parse_utc, utc_now

__all__ = [
    "PUBLIC_FORMAT",
    "PRIVATE_FORMAT",
    "RECEIPT_TYPE",
    "REQUEST_TYPE",
    "ROLES",
    "SEAL_SUITE",
    "TRAIN_MANIFEST_TYPE",
    "Identity",
    "PublicIdentity",
    "canonical_json",
    "digest",
    "key_id",
    "load_identity",
    "load_public",
    "new_identity",
    "open_sealed",
    "pae",
    "save_identity",
    "seal",
    "sign_envelope",
    "verify_envelope",
]

ROLES: Final = ("requester", "methodologist", "station")
PUBLIC_FORMAT: Final = "pht.identity/1"
PRIVATE_FORMAT: Final = "pht.identity.private/1"

TRAIN_MANIFEST_TYPE: Final = "application/vnd.pht.train-manifest+json"
REQUEST_TYPE: Final = "application/vnd.pht.request+json"
RECEIPT_TYPE: Final = "application/vnd.pht.receipt+json"

SEAL_SUITE: Final = "hpke-base/x25519-hkdf-sha256/hkdf-sha256/chacha20poly1305"
_SEAL_INFO_PREFIX: Final = b"pht.seal/1\x00"
_HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_ENC_LENGTH: Final = 32
_TAG_LENGTH: Final = 16
_SEALED_KEYS = frozenset(
    {"suite", "enc", "ciphertext", "request_id", "station_id", "manifest_digest"}
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PUBLIC_KEYS = frozenset(
    {
        "format",
        "name",
        "organisation",
        "role",
        "created",
        "key_id",
        "signing_key",
        "sealing_key",
    }
)
_PRIVATE_KEYS = frozenset({"format", "public", "signing_key", "sealing_key"})


# -- small helpers -----------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    """Strict standard base64; a :class:`TrustError` naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise TrustError(f"{what} must be a base64 string, got {type(text).__name__}")
    try:
        # strict mode: only the alphabet, correct padding, nothing after it (and
        # twice as fast as base64.b64decode(validate=True))
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise TrustError(f"{what} is not valid base64") from None


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON bytes.

    Keys sorted, separators ``(",", ":")``, non-ASCII kept as UTF-8, NaN and
    infinities refused. Equal objects give equal bytes, so the result can be signed
    or digested.

    Parameters
    ----------
    obj
        A JSON-serialisable value (dicts with string keys, lists, str, int, float,
        bool, None).

    Returns
    -------
    bytes
        The UTF-8 encoding.

    Raises
    ------
    ValueError
        For NaN or infinity, or a string that is not valid Unicode.
    TypeError
        For a value JSON cannot represent.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": "é"}).decode("utf-8")
    '{"a":"é","b":1}'
    """
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def digest(data: bytes) -> str:
    """Return ``"sha256:<hex>"`` of ``data``.

    Examples
    --------
    >>> digest(b"")[:15]
    'sha256:e3b0c442'
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- identities --------------------------------------------------------------------
def _check_fields(
    name: object, organisation: object, role: object, created: object, source: str
) -> None:
    """Validate the descriptive fields of an identity; ConfigError naming the key."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{source}: key 'name' must be 1-64 letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit; got {name!r}"
        )
    if (
        not isinstance(organisation, str)
        or not organisation.strip()
        or len(organisation) > 200
        or not organisation.isprintable()
    ):
        raise ConfigError(
            f"{source}: key 'organisation' must be a non-empty printable string of at "
            f"most 200 characters; got {organisation!r}"
        )
    if role not in ROLES:
        raise ConfigError(
            f"{source}: key 'role' must be one of {', '.join(ROLES)}; got {role!r}"
        )
    if not isinstance(created, str):
        raise ConfigError(f"{source}: key 'created' must be an ISO 8601 string")
    try:
        parse_utc(created)
    except TimeFormatError:
        raise ConfigError(
            f"{source}: key 'created' must be an ISO 8601 time with a time zone such "
            f"as 2026-01-01T00:00:00Z; got {created!r}"
        ) from None


def key_id(key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of ``sha256(raw Ed25519 public key)``.

    Names a signing key in identity files, keyrings, DSSE envelopes and audit
    checkpoints.
    """
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()[:16]


@dataclass(frozen=True)
class PublicIdentity:
    """The shareable half of an identity: who, which role, and the two public keys.

    Attributes
    ----------
    name
        Short file-safe name (``alice``, ``umcg-station``).
    organisation
        The organisation the key belongs to.
    role
        One of :data:`ROLES`.
    signing_key
        Ed25519 key that verifies this party's DSSE signatures.
    sealing_key
        X25519 key that results are sealed to.
    created
        ISO 8601 creation time with a time zone.
    """

    name: str
    organisation: str
    role: str
    signing_key: Ed25519PublicKey = field(hash=False)
    sealing_key: X25519PublicKey = field(hash=False)
    created: str

    def __post_init__(self) -> None:
        _check_fields(self.name, self.organisation, self.role, self.created, "identity")
        if not isinstance(self.signing_key, Ed25519PublicKey):
            raise TypeError("signing_key must be an Ed25519PublicKey")
        if not isinstance(self.sealing_key, X25519PublicKey):
            raise TypeError("sealing_key must be an X25519PublicKey")

    @property
    def key_id(self) -> str:
        """First 16 hex digits of sha256 of the raw Ed25519 public key."""
        return key_id(self.signing_key)

    def describe(self) -> str:
        """One-line ``key <id> (<name>, <role> at <organisation>)`` for messages."""
        return f"key {self.key_id} ({self.name}, {self.role} at {self.organisation})"

    def to_dict(self) -> dict[str, str]:
        """Return the JSON form of ``<name>.pub.json`` (keys as base64 raw bytes)."""
        return {
            "format": PUBLIC_FORMAT,
            "name": self.name,
            "organisation": self.organisation,
            "role": self.role,
            "created": self.created,
            "key_id": self.key_id,
            "signing_key": _b64(self.signing_key.public_bytes_raw()),
            "sealing_key": _b64(self.sealing_key.public_bytes_raw()),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "public identity"
    ) -> PublicIdentity:
        """Parse and validate the output of :meth:`to_dict`.

        Parameters
        ----------
        data
            The decoded JSON object.
        source
            Where it came from (a file name), used in error messages.

        Raises
        ------
        ConfigError
            Missing, unknown or malformed fields.
        TrustError
            Key bytes that do not decode, or a ``key_id`` that does not match the key.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a JSON object")
        unknown = sorted(set(data) - _PUBLIC_KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: key '{unknown[0]}' is not allowed; allowed: "
                + ", ".join(sorted(_PUBLIC_KEYS))
            )
        required = _PUBLIC_KEYS - {"key_id"}
        missing = sorted(required - set(data))
        if missing:
            raise ConfigError(f"{source}: missing required key '{missing[0]}'")
        if data["format"] != PUBLIC_FORMAT:
            raise ConfigError(
                f"{source}: key 'format' must be {PUBLIC_FORMAT!r}; got "
                f"{data['format']!r}"
            )
        _check_fields(
            data["name"], data["organisation"], data["role"], data["created"], source
        )
        signing_raw = _unb64(data["signing_key"], f"{source}: key 'signing_key'")
        sealing_raw = _unb64(data["sealing_key"], f"{source}: key 'sealing_key'")
        if len(signing_raw) != 32 or len(sealing_raw) != 32:
            raise TrustError(
                f"{source}: public keys must be 32 raw bytes each; got "
                f"{len(signing_raw)} (signing_key) and {len(sealing_raw)} (sealing_key)"
            )
        identity = cls(
            name=data["name"],
            organisation=data["organisation"],
            role=data["role"],
            signing_key=Ed25519PublicKey.from_public_bytes(signing_raw),
            sealing_key=X25519PublicKey.from_public_bytes(sealing_raw),
            created=data["created"],
        )
        if "key_id" in data and data["key_id"] != identity.key_id:
            raise TrustError(
                f"{source}: key 'key_id' does not match the signing key: expected "
                f"{identity.key_id}, got {data['key_id']!r}"
            )
        return identity


@dataclass(frozen=True)
class Identity:
    """A full identity: the private signing and sealing keys plus the public part.

    ``repr`` never shows the private keys.
    """

    signing: Ed25519PrivateKey = field(repr=False, compare=False)
    sealing: X25519PrivateKey = field(repr=False, compare=False)
    public: PublicIdentity

    def __post_init__(self) -> None:
        signing_pub = self.signing.public_key().public_bytes_raw()
        sealing_pub = self.sealing.public_key().public_bytes_raw()
        if signing_pub != self.public.signing_key.public_bytes_raw():
            raise TrustError(
                f"identity {self.public.name}: the private signing key does not match "
                "the public signing key; the key file is corrupt or mixed up"
            )
        if sealing_pub != self.public.sealing_key.public_bytes_raw():
            raise TrustError(
                f"identity {self.public.name}: the private sealing key does not match "
                "the public sealing key; the key file is corrupt or mixed up"
            )

    @property
    def key_id(self) -> str:
        """The public identity's key id."""
        return self.public.key_id


def new_identity(role: str, organisation: str, name: str) -> Identity:
    """Generate fresh Ed25519 and X25519 keys for ``name`` acting as ``role``.

    Raises
    ------
    ConfigError
        An unknown role, or a name or organisation that is not valid.
    """
    created = format_seconds_z(utc_now())
    _check_fields(name, organisation, role, created, "new identity")
    signing = Ed25519PrivateKey.generate()
    sealing = X25519PrivateKey.generate()
    public = PublicIdentity(
        name=name,
        organisation=organisation,
        role=role,
        signing_key=signing.public_key(),
        sealing_key=sealing.public_key(),
        created=created,
    )
    return Identity(signing=signing, sealing=sealing, public=public)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode``; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists; refusing to overwrite a key file (move it away "
            "or choose another name)"
        ) from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def save_identity(identity: Identity, directory: Path) -> tuple[Path, Path]:
    """Write ``<name>.key.json`` (mode 0600) and ``<name>.pub.json`` to ``directory``.

    Parameters
    ----------
    identity
        The identity to store.
    directory
        Target folder; created (mode 0700) if missing.

    Returns
    -------
    tuple[Path, Path]
        ``(private_path, public_path)``.

    Raises
    ------
    TrustError
        If either file already exists (nothing is overwritten).
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = identity.public.name
    private_path = directory / f"{name}.key.json"
    public_path = directory / f"{name}.pub.json"
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(
                f"{path} already exists; refusing to overwrite a key file (move it "
                "away or choose another name)"
            )
    private_doc = {
        "format": PRIVATE_FORMAT,
        "public": identity.public.to_dict(),
        "signing_key": _b64(identity.signing.private_bytes_raw()),
        "sealing_key": _b64(identity.sealing.private_bytes_raw()),
    }
    _write_new(private_path, _pretty(private_doc), 0o600)
    _write_new(public_path, _pretty(identity.public.to_dict()), 0o644)
    return private_path, public_path


def _pretty(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _read_json(path: Path, raw: bytes) -> Any:
    if len(raw) > 1024 * 1024:
        raise ConfigError(f"{path}: over 1 MiB, not a key file; check the path")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        what = "empty" if not raw.strip() else "not valid JSON"
        raise ConfigError(
            f"{path}: {what}, so not a pht key file; check the path (keys are made "
            "by `pht keys new`)"
        ) from None


def load_public(path: Path) -> PublicIdentity:
    """Read a ``<name>.pub.json`` file.

    Raises
    ------
    ConfigError
        The file is missing, not JSON, or has missing, unknown or malformed keys.
    TrustError
        The key bytes are malformed or ``key_id`` does not match.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{path}: is a folder; give the public key file in it (<name>.pub.json)"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: public key file not found; check the path")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the public key file ({exc.strerror}); check its "
            "permissions"
        ) from None
    data = _read_json(path, raw)
    if isinstance(data, Mapping) and data.get("format") == PRIVATE_FORMAT:
        raise ConfigError(
            f"{path}: this is a private key; give its public half (<name>.pub.json) "
            "and keep the private .key.json to yourself"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: not a pht public key file (expected a JSON object with format "
            f"{PUBLIC_FORMAT!r}); give the <name>.pub.json made by `pht keys new`"
        )
    return PublicIdentity.from_dict(data, source=str(path))


def load_identity(path: Path) -> Identity:
    """Read a ``<name>.key.json`` private key file.

    The file must not be accessible to group or others (POSIX).

    Raises
    ------
    ConfigError
        The file is missing, not JSON, or has missing, unknown or malformed keys.
    TrustError
        The file is readable by group/others, the key bytes are malformed, or the
        private keys do not match the public part.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: private key file not found; check the path"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the private key file ({exc.strerror}); run pht as "
            "the user who owns it"
        ) from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        os.close(fd)
        raise ConfigError(
            f"{path}: is a folder; give the private key file in it (<name>.key.json)"
        )
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(1024 * 1024 + 1)
    data = _read_json(path, raw)
    source = str(path)
    if isinstance(data, dict) and data.get("format") == PUBLIC_FORMAT:
        raise ConfigError(
            f"{source}: this is a public key; give the private key file that "
            "belongs to it (<name>.key.json, made by `pht keys new`)"
        )
    if not isinstance(data, dict) or data.get("format") != PRIVATE_FORMAT:
        raise ConfigError(
            f"{source}: not a pht private key file (expected a JSON object with "
            f"format {PRIVATE_FORMAT!r}); give the <name>.key.json made by "
            "`pht keys new`"
        )
    # checked once the file is known to be a private key: a public key or any
    # other file readable by all needs another fix than chmod
    if os.name == "posix" and mode & 0o077:
        raise TrustError(
            f"{path}: private key file is accessible to group/others (mode "
            f"{mode & 0o777:04o}); run `chmod 600 {path}`"
        )
    unknown = sorted(set(data) - _PRIVATE_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: key '{unknown[0]}' is not allowed; allowed: "
            + ", ".join(sorted(_PRIVATE_KEYS))
        )
    missing = sorted(_PRIVATE_KEYS - set(data))
    if missing:
        raise ConfigError(f"{source}: missing required key '{missing[0]}'")
    public = PublicIdentity.from_dict(data["public"], source=f"{source}: 'public'")
    signing_raw = _unb64(data["signing_key"], f"{source}: key 'signing_key'")
    sealing_raw = _unb64(data["sealing_key"], f"{source}: key 'sealing_key'")
    if len(signing_raw) != 32 or len(sealing_raw) != 32:
        raise TrustError(f"{source}: private keys must be 32 raw bytes each")
    return Identity(
        signing=Ed25519PrivateKey.from_private_bytes(signing_raw),
        sealing=X25519PrivateKey.from_private_bytes(sealing_raw),
        public=public,
    )


# -- DSSE --------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` with lengths as ASCII
    decimal byte counts.

    Examples
    --------
    >>> pae("http://example.com/HelloWorld", b"hello world")
    b'DSSEv1 29 http://example.com/HelloWorld 11 hello world'
    """
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign_envelope(
    payload: bytes, payload_type: str, identity: Identity
) -> dict[str, Any]:
    """Sign ``payload`` as ``payload_type`` into a DSSE envelope.

    Returns
    -------
    dict
        ``{"payloadType", "payload" (base64), "signatures": [{"keyid", "sig"}]}``.
    """
    if not isinstance(payload, bytes | bytearray):
        raise TypeError("payload must be bytes")
    if not isinstance(payload_type, str) or not payload_type:
        raise TypeError("payload_type must be a non-empty string")
    signature = identity.signing.sign(pae(payload_type, bytes(payload)))
    return {
        "payloadType": payload_type,
        "payload": _b64(bytes(payload)),
        "signatures": [{"keyid": identity.key_id, "sig": _b64(signature)}],
    }


def verify_envelope(
    envelope: Mapping[str, Any],
    payload_type: str,
    trusted: Mapping[str, Ed25519PublicKey],
) -> tuple[bytes, str]:
    """Verify a DSSE envelope against trusted keys and return its payload.

    The envelope is accepted when at least one signature is by a key in ``trusted``
    and verifies; a signature by a trusted key that does not verify rejects the
    whole envelope (fail closed). Signatures by unknown keys are ignored otherwise.

    Parameters
    ----------
    envelope
        The decoded envelope.
    payload_type
        The payload type the caller expects; anything else is rejected.
    trusted
        ``key_id -> Ed25519PublicKey`` (for example ``Keyring.trusted(role)``).

    Returns
    -------
    tuple[bytes, str]
        The payload bytes and the key id whose signature verified.

    Raises
    ------
    TrustError
        Malformed envelope, wrong payload type, unsigned, no signature by a trusted
        key, or a bad signature.
    """
    if not isinstance(envelope, Mapping):
        raise TrustError("malformed envelope: expected a JSON object")
    expected_keys = {"payloadType", "payload", "signatures"}
    if set(envelope) != expected_keys:
        raise TrustError(
            "malformed envelope: expected keys payload, payloadType, signatures; got "
            + ", ".join(sorted(map(str, envelope)))
        )
    actual_type = envelope["payloadType"]
    if not isinstance(actual_type, str):
        raise TrustError("malformed envelope: payloadType must be a string")
    payload = _unb64(envelope["payload"], "malformed envelope: payload")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list):
        raise TrustError("malformed envelope: signatures must be a list")
    if actual_type != payload_type:
        raise TrustError(
            f"wrong payload type: expected {payload_type!r}, got {actual_type!r}"
        )
    if not signatures:
        raise TrustError(f"unsigned envelope: {payload_type!r} has no signatures")
    message = pae(actual_type, payload)
    verified: str | None = None
    unknown: list[str] = []
    for index, entry in enumerate(signatures):
        if not isinstance(entry, Mapping) or set(entry) != {"keyid", "sig"}:
            raise TrustError(
                f"malformed envelope: signatures[{index}] must have exactly the keys "
                "keyid and sig"
            )
        keyid = entry["keyid"]
        if not isinstance(keyid, str):
            raise TrustError(f"malformed envelope: signatures[{index}].keyid")
        sig = _unb64(entry["sig"], f"malformed envelope: signatures[{index}].sig")
        key = trusted.get(keyid)
        if key is None:
            unknown.append(keyid)
            continue
        try:
            key.verify(sig, message)
        except InvalidSignature:
            raise TrustError(
                f"bad signature by key {keyid} on {payload_type!r}: the payload or "
                "signature was altered"
            ) from None
        if verified is None:
            verified = keyid
    if verified is None:
        raise TrustError(
            f"unknown key id(s) {', '.join(map(repr, unknown))} on {payload_type!r}: "
            f"not among the {len(trusted)} trusted key(s); add the signer's public key "
            "to the keyring if it should be trusted"
        )
    return payload, verified


# -- sealing -----------------------------------------------------------------------
def _seal_info(request_id: str, station_id: str, manifest_digest: str) -> bytes:
    for key, value in (("request_id", request_id), ("station_id", station_id)):
        if not isinstance(value, str) or not value:
            raise TrustError(f"seal binding {key} must be a non-empty string")
    if not isinstance(manifest_digest, str) or not _DIGEST.match(manifest_digest):
        raise TrustError(
            "seal binding manifest_digest must look like 'sha256:<64 hex>'; got "
            f"{manifest_digest!r}"
        )
    binding = {
        "suite": SEAL_SUITE,
        "request_id": request_id,
        "station_id": station_id,
        "manifest_digest": manifest_digest,
    }
    return _SEAL_INFO_PREFIX + canonical_json(binding)


def seal(
    plaintext: bytes,
    recipient: X25519PublicKey,
    *,
    request_id: str,
    station_id: str,
    manifest_digest: str,
) -> dict[str, Any]:
    """Encrypt ``plaintext`` to ``recipient`` with HPKE, bound to its context.

    Parameters
    ----------
    plaintext
        The bytes to seal (for example canonical JSON of an aggregate).
    recipient
        The requester's X25519 sealing key.
    request_id, station_id, manifest_digest
        The binding; it enters the HPKE ``info`` so the result opens only for the
        same request, station and train manifest (``"sha256:<hex>"``).

    Returns
    -------
    dict
        ``{"suite", "enc", "ciphertext", "request_id", "station_id",
        "manifest_digest"}`` with ``enc`` and ``ciphertext`` in base64.
    """
    info = _seal_info(request_id, station_id, manifest_digest)
    sealed = _HPKE.encrypt(bytes(plaintext), recipient, info=info)
    return {
        "suite": SEAL_SUITE,
        "enc": _b64(sealed[:_ENC_LENGTH]),
        "ciphertext": _b64(sealed[_ENC_LENGTH:]),
        "request_id": request_id,
        "station_id": station_id,
        "manifest_digest": manifest_digest,
    }


def sealed_digest(sealed: Mapping[str, Any]) -> str:
    """Digest of a sealed result, as a station's receipt states it.

    Canonical JSON of the sealed object with its (large) base64 ``ciphertext`` replaced
    by the digest of its ASCII text: any change to any field changes the result, and
    the ciphertext is hashed once instead of being re-encoded as JSON.
    """
    text = sealed.get("ciphertext") if isinstance(sealed, Mapping) else None
    if not isinstance(text, str) or not text.isascii():
        raise TrustError(
            "malformed sealed result: 'ciphertext' must be a base64 string"
        )
    head = {**sealed, "ciphertext": digest(text.encode("ascii"))}
    return digest(canonical_json(head))


def open_sealed(
    sealed: Mapping[str, Any],
    recipient: X25519PrivateKey,
    *,
    request_id: str,
    station_id: str,
    manifest_digest: str,
) -> bytes:
    """Open a result made by :func:`seal`, checking the expected binding.

    Raises
    ------
    TrustError
        Malformed input, another suite, a binding that differs from the expected
        one, a wrong key, or any tampering with ``enc`` or ``ciphertext``.
    """
    info = _seal_info(request_id, station_id, manifest_digest)
    if not isinstance(sealed, Mapping) or set(sealed) != _SEALED_KEYS:
        got = sorted(map(str, sealed)) if isinstance(sealed, Mapping) else sealed
        raise TrustError(
            "malformed sealed result: expected keys "
            f"{', '.join(sorted(_SEALED_KEYS))}; got {got}"
        )
    if sealed["suite"] != SEAL_SUITE:
        raise TrustError(
            f"sealed result uses suite {sealed['suite']!r}, expected {SEAL_SUITE!r}"
        )
    expected = {
        "request_id": request_id,
        "station_id": station_id,
        "manifest_digest": manifest_digest,
    }
    for key, value in expected.items():
        if sealed[key] != value:
            raise TrustError(
                f"sealed result is bound to {key} {sealed[key]!r}, expected {value!r}"
            )
    enc = _unb64(sealed["enc"], "sealed result 'enc'")
    ciphertext = _unb64(sealed["ciphertext"], "sealed result 'ciphertext'")
    if len(enc) != _ENC_LENGTH:
        raise TrustError(
            f"sealed result 'enc' has {len(enc)} bytes, expected {_ENC_LENGTH}"
        )
    if len(ciphertext) < _TAG_LENGTH:
        raise TrustError(
            f"sealed result 'ciphertext' has {len(ciphertext)} bytes, expected at "
            f"least {_TAG_LENGTH}"
        )
    try:
        return _HPKE.decrypt(enc + ciphertext, recipient, info=info)
    except (InvalidTag, ValueError):
        raise TrustError(
            f"sealed result for request {request_id!r} from station {station_id!r} "
            "does not open: it was altered, or sealed to another key, request, "
            "station or train"
        ) from None
