"""Opening a log folder: every check, then creation, migration and repair.

:meth:`Opening.check` runs, in order: the anchor and witness files (if present) are
signed checkpoints of this station; the log exists if either does (else
:class:`~pht.station.audit.scan.AuditRollbackError`); on first start the log is
created with its signed header; the whole log verifies; it belongs to this station;
it extends the anchor and the witness; a format 1 log is migrated. Nothing is
written to the folder before every check has passed. :meth:`Opening.repair` then
drops a torn tail (or restores a missing final newline), and the writer records
what was found in ``log_recovered`` and ``log_anchored`` records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pht.errors import AuditError
from pht.station import merkle
from pht.station.audit.anchor import check_anchor, missing_log, read_anchor
from pht.station.audit.checkpoints import Checkpoint, sign_checkpoint
from pht.station.audit.encoding import format_time
from pht.station.audit.files import append_line, atomic_write
from pht.station.audit.legacy import legacy_present, migrate, read_legacy, remove_legacy
from pht.station.audit.logfile import FORMAT, LOG_FILE, encode_header, read_log
from pht.station.audit.reader import detect_format
from pht.station.audit.records import Detail
from pht.station.audit.recovery import Tail, drop, recovered_fields
from pht.station.audit.scan import AuditRollbackError, Scan

__all__ = ["Opening", "unanchored"]

log = logging.getLogger(__name__)


@dataclass
class Opening:
    """What :meth:`AuditLog.open` found in a folder, checked, before it writes."""

    found: int | None  # the format on disk; None: created now
    seen: list[tuple[str, Path, Checkpoint | None]]  # anchor/witness and contents
    scan: Scan
    tails: tuple[Tail, ...]  # torn tails to drop (format 1: already not copied)
    notes: list[str]
    details: dict[str, Detail]

    @classmethod
    def check(
        cls,
        directory: Path,
        station_id: str,
        key: Ed25519PrivateKey,
        roles: tuple[tuple[str, Path], ...],
        now: Callable[[], datetime],
    ) -> Opening:
        """Read anchors and log, run every check, create or migrate the log."""
        public = key.public_key()
        seen = [(r, p, read_anchor(p, r, public, station_id)) for r, p in roles]
        found = detect_format(directory)
        if found is None:
            for role, path, cp in seen:
                if cp is not None:
                    raise missing_log(directory, role, path, cp)
            _create(directory, station_id, key, format_time(now()))
        scan = (read_legacy if found == 1 else read_log)(directory, public)
        if scan.station is not None and scan.station != station_id:
            raise AuditError(
                f"the audit log in {directory} belongs to station "
                f"{scan.station!r}, not {station_id!r}"
            )
        for role, path, cp in seen:
            if cp is not None:
                check_anchor(scan, directory, role, path, cp)
            elif role == "anchor" and found == 2 and scan.size > 0:
                # a current-format log with records was anchored from its first
                # append: a missing anchor is a deleted one (a rollback would
                # otherwise pass as a first start)
                raise AuditRollbackError(
                    f"the audit log in {directory} holds {scan.size} records but its "
                    f"anchor {path} is missing: restore the anchor (or the whole "
                    "station folder) from a backup; pht does not re-anchor a log "
                    "whose anchor was removed"
                )
        opening = cls(found, seen, scan, scan.tails, [], {})
        if found == 1:
            signed = migrate(
                directory, scan, station_id, key, lambda: format_time(now())
            )
            opening.notes.append(f"converted the log from format 1 to {FORMAT}")
            opening.details.update(
                migrated_from="pht-audit/1", checkpoints_signed=signed
            )
            opening.scan = read_log(directory, public)
        elif legacy_present(directory):
            log.warning("audit log %s: removing format 1 files", directory)
            remove_legacy(directory)  # left by a crash during a migration
        return opening

    def repair(self, fd: int) -> None:
        """Drop torn tails of the log file; restore a missing final newline."""
        for tail in self.scan.tails:
            drop(fd, tail)
        if self.scan.unterminated:
            append_line(fd, b"")

    def recovered(self) -> dict[str, Any] | None:
        """The fields of the ``log_recovered`` record, if anything was repaired."""
        if self.scan.unterminated:
            seq = self.scan.size - 1
            return {
                "reason": f"restored the missing newline after the last record "
                f"(seq {seq}): the record is whole and signed",
                "details": {"seq": seq},
            }
        return recovered_fields(self.tails) if self.tails else None


def _create(directory: Path, station: str, key: Ed25519PrivateKey, time: str) -> None:
    """Write a new log: its header with the signed size-0 checkpoint, atomically."""
    genesis = sign_checkpoint(key, station, 0, merkle.EMPTY_ROOT.hex(), time)
    atomic_write(directory / LOG_FILE, encode_header(genesis) + b"\n")


def unanchored(role: str, path: Path, size: int) -> str:
    """The note for a ``log_anchored`` record: an anchor or witness was missing."""
    if role == "anchor":
        return (
            f"anchored the log as found ({size} records): the anchor {path} did not "
            "exist (first start after an upgrade, a crash during the first start, "
            "or a deleted anchor)"
        )
    return f"created the witness {path} ({size} records): it did not exist"
