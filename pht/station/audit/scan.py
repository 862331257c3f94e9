"""What a reader found in a log folder, and the prefix check every saved head uses.

A :class:`Scan` is the checked, committed content of a log (any format version): its
records, their Merkle leaves and root, the signed checkpoints, and any torn tails.
:func:`check_extends` proves that a tree head seen earlier (an anchor, a witness, a
saved checkpoint or a receipt) is a prefix of it; failing that the log was truncated,
rolled back or rewritten: :class:`AuditRollbackError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pht.errors import AuditError
from pht.station import merkle
from pht.station.audit.checkpoints import Checkpoint
from pht.station.audit.records import AuditRecord
from pht.station.audit.recovery import Tail

__all__ = ["AuditRollbackError", "Scan", "check_extends", "read_bytes", "split_lines"]


class AuditRollbackError(AuditError):
    """The log is missing, shorter than, or not an extension of a head seen earlier.

    Raised when an anchor, witness, saved checkpoint or receipt covers records the
    log no longer holds: the log was deleted, restored from an older copy, truncated
    or rewritten. The message says what an operator must do (restore from backup).
    """


@dataclass(frozen=True)
class Scan:
    """The checked contents of a log folder.

    Attributes
    ----------
    format
        File format version (1: ``audit.log`` + ``checkpoints.jsonl``; 2: one file).
    records
        The committed records, oldest first (record ``i`` has seq ``i``).
    leaves
        Their Merkle leaf hashes.
    root
        The Merkle root of ``leaves``.
    checkpoints
        The signed checkpoint of each size that has one (format 2: every size).
    latest
        The checkpoint covering every committed record; ``None`` only for a format
        1 log whose first checkpoint was never written.
    tails
        Torn tails after the committed content (an interrupted append).
    unterminated
        The last record's line is whole and valid but lacks its newline (a crash
        just before the last byte, or an edit); it is committed.
    """

    format: int
    records: tuple[AuditRecord, ...]
    leaves: tuple[bytes, ...]
    root: bytes
    checkpoints: dict[int, Checkpoint]
    latest: Checkpoint | None
    tails: tuple[Tail, ...]
    unterminated: bool = False

    @property
    def size(self) -> int:
        """Number of committed records."""
        return len(self.records)

    @property
    def station(self) -> str | None:
        """The station the checkpoints name (``None`` without any checkpoint)."""
        return None if self.latest is None else self.latest.station

    def problems(self) -> tuple[str, ...]:
        """One sentence per torn tail or missing final newline."""
        found = [tail.problem(self.size) for tail in self.tails]
        if self.unterminated:
            found.append(
                f"the line of the last record (seq {self.size - 1}) lacks its newline; "
                "the record is whole and signed, so it counts; AuditLog.open adds "
                "the newline and logs it in a log_recovered record"
            )
        return tuple(found)


def read_bytes(path: Path) -> bytes:
    """Read a file of the folder; a missing one is an AuditError naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AuditError(
            f"{path} is missing: not an audit log folder; give the station's audit "
            "folder (its workdir's audit/)"
        ) from None
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc}") from None


def split_lines(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Split into complete ``(offset, line without newline)`` and the rest's offset."""
    lines, start = [], 0
    while (end := data.find(b"\n", start)) != -1:
        lines.append((start, data[start:end]))
        start = end + 1
    return lines, start


def check_extends(scan: Scan, size: int, root: str, what: str, remedy: str) -> None:
    """Prove that the tree head ``(size, root)`` is a prefix of the scanned log.

    RFC 9162 consistency proof from ``size`` to the log's size, checked against the
    log's own root.

    Parameters
    ----------
    scan
        The checked log.
    size, root
        The head seen earlier (hex root).
    what
        Names the head in messages ("the anchor /srv/umcg/audit.anchor").
    remedy
        What the reader of the message must do, appended to it.

    Raises
    ------
    AuditRollbackError
        If the log holds fewer records, or its first ``size`` records hash to
        another root.
    """
    if size > scan.size:
        raise AuditRollbackError(
            f"{what} covers {size} records but the log holds {scan.size}: the log "
            f"was truncated or rolled back; {remedy}"
        )
    proof = merkle.consistency_proof(size, scan.leaves)
    try:
        merkle.verify_consistency(
            size, scan.size, bytes.fromhex(root), scan.root, proof
        )
    except AuditError as exc:
        raise AuditRollbackError(
            f"the log does not extend {what} (size {size}): it was rewritten ({exc}); "
            f"{remedy}"
        ) from None
