"""Torn tails: the bytes an interrupted append left behind, and how they are dropped.

Every append is a single ``os.write`` of one newline-terminated line followed by
``fsync``, so a crash can leave only a *prefix* of the last line: bytes after the
last newline. Such a tail was never committed (``append`` had not returned). Readers
report it; :meth:`AuditLog.open <pht.station.audit.AuditLog.open>` truncates it and
appends a ``log_recovered`` record holding the size, offset and SHA-256 of the dropped
bytes and, up to :data:`EVIDENCE_BYTES`, the bytes themselves, so recovery destroys
no evidence. Any damage to a newline-terminated line is tampering, never a tail.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from pht.station.audit.records import Detail

__all__ = ["EVIDENCE_BYTES", "Tail", "drop", "recovered_fields"]

EVIDENCE_BYTES = 16384


@dataclass(frozen=True)
class Tail:
    """Uncommitted bytes at the end of one file of the log folder.

    Attributes
    ----------
    file
        The file name inside the folder.
    key
        Prefix of the ``log_recovered`` details (``log``, ``checkpoints``).
    offset
        Where the tail starts (the committed length of the file).
    data
        The tail's bytes.
    cause
        What left it, for messages ("an interrupted append").
    """

    file: str
    key: str
    offset: int
    data: bytes
    cause: str = "an interrupted append"

    def problem(self, committed: int) -> str:
        """One sentence for reports: where, how long, after how many records."""
        return (
            f"{self.file}: torn tail of {len(self.data)} bytes at offset {self.offset} "
            f"after {committed} committed records, left by {self.cause}; "
            "AuditLog.open drops it and logs it in a log_recovered record"
        )

    def reason(self) -> str:
        """The ``reason`` of the ``log_recovered`` record."""
        return (
            f"dropped a torn tail of {len(self.data)} bytes at offset "
            f"{self.offset} of {self.file}"
        )

    def details(self) -> dict[str, Detail]:
        """The ``details`` of the ``log_recovered`` record: the evidence."""
        found: dict[str, Detail] = {
            f"{self.key}_dropped_bytes": len(self.data),
            f"{self.key}_offset": self.offset,
            f"{self.key}_dropped_sha256": hashlib.sha256(self.data).hexdigest(),
        }
        if len(self.data) <= EVIDENCE_BYTES:  # keep what was dropped inside the log
            found[f"{self.key}_dropped_base64"] = base64.b64encode(self.data).decode(
                "ascii"
            )
        return found


def drop(fd: int, tail: Tail) -> None:
    """Truncate the file open as ``fd`` to the tail's offset and ``fsync`` it."""
    os.ftruncate(fd, tail.offset)
    os.fsync(fd)


def recovered_fields(tails: tuple[Tail, ...]) -> dict[str, Any]:
    """Fields of the one ``log_recovered`` record describing all ``tails``."""
    details: dict[str, Detail] = {}
    for tail in tails:
        details.update(tail.details())
    return {"reason": "; ".join(t.reason() for t in tails), "details": details}
