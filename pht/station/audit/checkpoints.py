r"""Signed checkpoints: "the log of ``station`` had ``size`` records with ``root``".

A checkpoint is signed with the station's Ed25519 key over the domain-separated text
``b"pht-audit-checkpoint/1\n" + f"{station}\n{size}\n{root}\n{time}\n".encode()``.
The same canonical JSON (:meth:`Checkpoint.to_json`) is used inside the log, in the
anchor and witness files, and by anyone who saves one to check the log later.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pht.crypto import key_id
from pht.errors import AuditError
from pht.station.audit.encoding import canonical, one_line

__all__ = ["CHECKPOINT_DOMAIN", "Checkpoint", "key_id", "sign_checkpoint"]

CHECKPOINT_DOMAIN = b"pht-audit-checkpoint/1\n"
_HEX = re.compile(r"[0-9a-f]+")


def _signed_text(station: str, size: int, root: str, time: str) -> bytes:
    return CHECKPOINT_DOMAIN + f"{station}\n{size}\n{root}\n{time}\n".encode()


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement "the log of ``station`` had ``size`` records and ``root``".

    Attributes
    ----------
    station
        Station id.
    size
        Number of records covered.
    root
        Hex Merkle root of the first ``size`` records.
    time
        UTC signing time, ISO 8601 with microseconds.
    key_id
        :func:`pht.crypto.key_id` of the signing key.
    signature
        Base64 Ed25519 signature over the domain-separated text (module docstring).
    """

    station: str
    size: int
    root: str
    time: str
    key_id: str
    signature: str

    def __post_init__(self) -> None:
        one_line(self.station, "checkpoint station")
        one_line(self.time, "checkpoint time")
        if type(self.size) is not int or self.size < 0:
            raise AuditError(f"checkpoint size must be an int >= 0, got {self.size!r}")
        for name, length in (("root", 64), ("key_id", 16)):
            value = getattr(self, name)
            if (
                not isinstance(value, str)
                or len(value) != length
                or not _HEX.fullmatch(value)
            ):
                raise AuditError(
                    f"checkpoint {name} must be {length} lowercase hex "
                    f"digits, got {value!r}"
                )
        if not isinstance(self.signature, str):
            raise AuditError("checkpoint signature must be a base64 string")

    def to_dict(self) -> dict[str, str | int]:
        """Return the fields as a plain dict (for embedding in other JSON)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Return the canonical JSON on one line."""
        return canonical(self.to_dict()).decode("utf-8")

    @classmethod
    def from_dict(cls, data: object) -> Checkpoint:
        """Build a checkpoint from decoded JSON with exactly its fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise AuditError(f"wrong fields: expected {sorted(names)}, got {got}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse a checkpoint written by :meth:`to_json`; AuditError if malformed."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise AuditError(f"not JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def from_line(cls, line: bytes) -> Checkpoint:
        """Parse one line strictly (it must be canonical JSON)."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuditError(f"not UTF-8 ({exc})") from None
        checkpoint = cls.from_json(text)
        if checkpoint.to_json() != text:
            raise AuditError("not in canonical JSON form")
        return checkpoint

    def verify(self, public_key: Ed25519PublicKey, label: str = "checkpoint") -> None:
        """Check the signature; AuditError "<label> is not signed by station key …"."""
        expected = key_id(public_key)
        why = None
        if self.key_id != expected:
            why = (
                f"it names key {self.key_id} (give the public key of the station that "
                "signed it)"
            )
        else:
            try:
                raw = base64.b64decode(self.signature, validate=True)
                if base64.b64encode(raw).decode("ascii") != self.signature:
                    raise ValueError("non-canonical base64")  # malleable padding bits
                public_key.verify(
                    raw, _signed_text(self.station, self.size, self.root, self.time)
                )
            except (binascii.Error, ValueError):
                why = "the signature is not canonical base64"
            except InvalidSignature:
                why = "the signature does not verify"
        if why is not None:
            raise AuditError(f"{label} is not signed by station key {expected}: {why}")


def sign_checkpoint(
    key: Ed25519PrivateKey, station: str, size: int, root: str, time: str
) -> Checkpoint:
    """Sign a checkpoint of ``size`` records with hex ``root`` at ``time``."""
    signature = key.sign(_signed_text(station, size, root, time))
    return Checkpoint(
        station=station,
        size=size,
        root=root,
        time=time,
        key_id=key_id(key.public_key()),
        signature=base64.b64encode(signature).decode("ascii"),
    )
