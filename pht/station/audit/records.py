"""Audit records: one NEN 7513-style event (who, what, when, why, with which outcome).

A record holds only what the caller passes and never row-level data. Its canonical
JSON line (:meth:`AuditRecord.to_line`) is its Merkle leaf data, in every format
version of the log.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from pht.errors import AuditError
from pht.station.audit.encoding import canonical, one_line, parse_time

__all__ = ["EVENTS", "OPTIONAL_FIELDS", "OUTCOMES", "AuditRecord", "Detail"]

EVENTS = frozenset(
    {
        "request_received",
        "describe",
        "policy_decision",
        "run",
        "release",
        "refusal",
        "error",
        "review",
        "key_change",
        "policy_change",
        "log_recovered",
        "log_anchored",
    }
)
"""What happened. ``log_recovered`` and ``log_anchored`` are written by the log."""

OUTCOMES = frozenset({"success", "refused", "error", "pending", "approved", "rejected"})
OPTIONAL_FIELDS = (
    "user",
    "organisation",
    "role",
    "purpose",
    "dataset",
    "train",
    "train_digest",
    "request_id",
    "output_digest",
    "decision",
    "reason",
)
"""The string fields a caller may set on :meth:`AuditLog.append` (besides details)."""

Detail = str | int | float


@dataclass(frozen=True)
class AuditRecord:
    """One NEN 7513-style audit event; every instance is valid.

    Attributes
    ----------
    seq
        0-based position in the log.
    time
        UTC time of the append, ISO 8601 with microseconds (``...T12:00:00.000001Z``).
    event
        One of :data:`EVENTS`.
    outcome
        One of :data:`OUTCOMES`.
    station
        The station that wrote the record.
    user, organisation, role, purpose, dataset, train, train_digest
        Who asked (user, organisation, role), for what purpose, on which dataset
        with which train and train digest; ``None`` when not applicable.
    request_id, output_digest, decision, reason
        The request, the digest of what was released, what the station decided and
        why; ``None`` when not applicable.
    details
        Extra scalar facts (``str`` to ``str``, ``int`` or finite ``float``).
    """

    seq: int
    time: str
    event: str
    outcome: str
    station: str
    user: str | None = None
    organisation: str | None = None
    role: str | None = None
    purpose: str | None = None
    dataset: str | None = None
    train: str | None = None
    train_digest: str | None = None
    request_id: str | None = None
    output_digest: str | None = None
    decision: str | None = None
    reason: str | None = None
    details: dict[str, Detail] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.seq) is not int or self.seq < 0:
            raise AuditError(f"seq must be an int >= 0, got {self.seq!r}")
        if not isinstance(self.time, str):
            raise AuditError(f"time must be an ISO 8601 string, got {self.time!r}")
        parse_time(self.time, "time")
        if self.event not in EVENTS:
            raise AuditError(
                f"unknown event {self.event!r}: expected one of "
                f"{', '.join(sorted(EVENTS))}"
            )
        if self.outcome not in OUTCOMES:
            raise AuditError(
                f"unknown outcome {self.outcome!r}: expected one of "
                f"{', '.join(sorted(OUTCOMES))}"
            )
        one_line(self.station, "station")
        for name in OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise AuditError(
                    f"field {name} must be a string or None, got {type(value).__name__}"
                )
        if not isinstance(self.details, dict):
            raise AuditError(f"details must be a dict, got {type(self.details)}")
        for key, value in self.details.items():
            ok = isinstance(value, str | int | float) and not isinstance(value, bool)
            if not isinstance(key, str) or not ok:
                raise AuditError(
                    f"details[{key!r}] must map a string to a str, int "
                    f"or float, got {type(value).__name__}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise AuditError(f"details[{key!r}] must be finite, got {value}")

    def to_dict(self) -> dict[str, object]:
        """Return the fields as a plain dict (``details`` copied)."""
        fields: dict[str, object] = {name: getattr(self, name) for name in _NAMES}
        fields["details"] = dict(self.details)
        return fields

    def to_line(self) -> bytes:
        """Return the canonical JSON line (without newline): the Merkle leaf data."""
        return canonical(self.to_dict())

    @classmethod
    def from_dict(cls, data: object) -> AuditRecord:
        """Build a record from decoded JSON with exactly the record's fields.

        Raises
        ------
        AuditError
            Saying which fields are wrong or which value is invalid.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise AuditError(f"wrong fields: expected {sorted(names)}, got {got}")
        return cls(**data)

    @classmethod
    def from_line(cls, line: bytes) -> AuditRecord:
        """Parse one canonical JSON record line strictly (as :meth:`to_line` wrote it).

        Raises
        ------
        AuditError
            Saying why the line is not a record.
        """
        try:
            data = json.loads(line.decode("utf-8"))
        except ValueError as exc:  # includes UnicodeDecodeError
            raise AuditError(f"not JSON ({exc})") from None
        record = cls.from_dict(data)
        if record.to_line() != line:
            raise AuditError("not in canonical JSON form")
        return record


_NAMES = tuple(f.name for f in dataclasses.fields(AuditRecord))
