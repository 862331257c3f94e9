"""The writer: :class:`AuditLog` opens, checks, recovers, anchors and appends.

Appending one record is, in order: sign the checkpoint of the tree that includes it;
one ``os.write`` + ``fsync`` of the single line holding both (this commits the
record); then replace the anchor and the witness with that checkpoint (temp file,
``fsync``, ``rename``, directory ``fsync``). A crash before the line is durable
leaves a torn tail, dropped on the next open; a crash after it leaves the anchors one
record behind, which the next open accepts (the log extends them) and repairs.

Opening runs every check of :mod:`~pht.station.audit.opening` before writing
anything; then a repaired torn tail goes into a ``log_recovered`` record, and a log
found without its anchor or witness is anchored as found with a ``log_anchored``
record saying so.

Reads for the station's per-request checks (budgets, replays) come from memory
(:mod:`~pht.station.audit.index`): O(1) to get, no file access, no copy.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pht.errors import AuditError
from pht.station import merkle
from pht.station.audit.anchor import (
    check_placement,
    missing_log,
    read_anchor,
    write_anchor,
)
from pht.station.audit.checkpoints import Checkpoint, sign_checkpoint
from pht.station.audit.encoding import format_time, one_line
from pht.station.audit.files import APPEND_FLAGS, append_line
from pht.station.audit.index import RecordIndex, RecordView
from pht.station.audit.logfile import LOG_FILE, encode_entry
from pht.station.audit.opening import Opening, unanchored
from pht.station.audit.records import OPTIONAL_FIELDS, AuditRecord
from pht.station.audit.scan import Scan
from pht.timefmt import utc_now

try:  # POSIX: one writer per log folder
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)


def _close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


class AuditLog:
    """The writer of one station's audit log; build it with :meth:`open`.

    One ``AuditLog`` per folder at a time (an exclusive lock on the folder); appends
    from several threads are serialised. Reads (:meth:`checkpoint`,
    :meth:`by_event`, …) come from memory and take no lock.
    """

    def __init__(
        self,
        *,
        directory: Path,
        station_id: str,
        signing_key: Ed25519PrivateKey,
        fds: tuple[int, int],
        scan: Scan,
        anchors: tuple[tuple[str, Path], ...],
        clock: Callable[[], datetime],
    ) -> None:
        assert scan.latest is not None  # format 2 always has its header
        self._directory = directory
        self._station = station_id
        self._key = signing_key
        self._log_fd = fds[1]
        self._anchors = anchors
        self._clock = clock
        self._leaves = list(scan.leaves)
        self._tree = merkle.CompactRange()
        self._index = RecordIndex()
        for leaf, record in zip(scan.leaves, scan.records, strict=True):
            self._tree.append(leaf)
            self._index.add(record)
        self._checkpoint: Checkpoint = scan.latest
        self._lock = threading.Lock()
        self._broken = False
        self._closed = False
        # Closing the files releases the lock, also when the log is garbage collected.
        self._finalizer = weakref.finalize(self, _close_all, *fds)

    @classmethod
    def open(
        cls,
        directory: Path,
        station_id: str,
        signing_key: Ed25519PrivateKey,
        *,
        anchor: Path,
        witness: Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> AuditLog:
        """Open (or, on first start, create) the log in ``directory`` after checking it.

        Parameters
        ----------
        directory
            The log folder; created on first start.
        station_id
            This station's id; an existing log must belong to it.
        signing_key
            The station's Ed25519 key; every checkpoint must verify with it.
        anchor
            The anchor file, outside ``directory`` (the station uses
            ``<workdir>/audit.anchor``); replaced after every append.
        witness
            An optional second anchor the operator keeps elsewhere (another disk,
            an append-only mount); its folder must exist. Replaced after every
            append; catches the deletion of the whole working folder.
        clock
            Returns the current time (timezone-aware); for tests.

        Raises
        ------
        AuditRollbackError
            If the log is missing while the anchor or witness exists, or is shorter
            than or not an extension of either (restored from an older copy,
            truncated, rewritten). The station must not start: restore the folder.
        AuditError
            If the log is damaged or tampered with, belongs to another station or
            key, is already open, or an anchor file is not a checkpoint of it.
        ConfigError
            If the anchor or witness lies inside ``directory``.
        """
        directory, anchor = Path(directory), Path(anchor)
        witness = None if witness is None else Path(witness)
        one_line(station_id, "station id")
        check_placement(directory, anchor, witness)
        now = clock or utc_now
        roles = (("anchor", anchor),) + ((("witness", witness),) if witness else ())
        if not directory.exists():  # refuse before creating anything
            for role, path in roles:
                cp = read_anchor(path, role, signing_key.public_key(), station_id)
                if cp is not None:
                    raise missing_log(directory, role, path, cp)
        directory.mkdir(parents=True, exist_ok=True)
        fds = [os.open(directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))]
        try:
            _lock(fds[0], directory)
            opening = Opening.check(directory, station_id, signing_key, roles, now)
            fds.append(os.open(directory / LOG_FILE, APPEND_FLAGS))
            opening.repair(fds[1])
            audit = cls(
                directory=directory,
                station_id=station_id,
                signing_key=signing_key,
                fds=(fds[0], fds[1]),
                scan=opening.scan,
                anchors=roles,
                clock=now,
            )
        except BaseException:
            _close_all(*fds)
            raise
        try:
            audit._note(opening)
        except BaseException:
            audit.close()
            raise
        return audit

    def _note(self, opening: Opening) -> None:
        """Log what opening found and repaired; bring the anchor and witness up to date."""
        recovered = opening.recovered()
        if recovered is not None:
            log.warning("audit log %s: %s", self._directory, recovered["reason"])
            self.append("log_recovered", "success", **recovered)
        notes, details = list(opening.notes), dict(opening.details)
        if opening.found is not None:
            for role, path, cp in opening.seen:
                if cp is None:
                    notes.append(unanchored(role, path, self.size))
                    details[role] = str(path)
        if notes:
            reason = "; ".join(notes)
            log.warning("audit log %s: %s", self._directory, reason)
            self.append(
                "log_anchored",
                "success",
                reason=reason,
                details={**details, "size": self.size, "root": self._checkpoint.root},
            )
        with self._lock:
            self._write_anchors()

    # -- state ---------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The log folder."""
        return self._directory

    @property
    def station_id(self) -> str:
        """The station this log belongs to."""
        return self._station

    @property
    def anchor_files(self) -> tuple[Path, ...]:
        """The anchor and (if any) witness file, replaced after every append."""
        return tuple(path for _, path in self._anchors)

    @property
    def size(self) -> int:
        """Number of committed records."""
        return len(self._index)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key that verifies this log's checkpoints."""
        return self._key.public_key()

    def checkpoint(self) -> Checkpoint:
        """Return the latest signed checkpoint (it covers every record)."""
        return self._checkpoint

    def records(self) -> list[AuditRecord]:
        """Return a copy of all committed records, oldest first (O(n))."""
        return list(self._index.all())

    def view(self) -> RecordView:
        """Return all committed records as a read-only view (O(1), no copy)."""
        return self._index.all()

    def by_event(self, event: str) -> RecordView:
        """Return the committed records of ``event``, oldest first (O(1), no copy).

        Examples
        --------
        ``used = sum(1 for r in log.by_event("policy_decision") if ...)``
        """
        return self._index.by_event(event)

    def by_request(self, request_id: str) -> RecordView:
        """Return the committed records naming ``request_id`` (O(1); empty if new)."""
        return self._index.by_request(request_id)

    def by_nonce(self, nonce: str) -> RecordView:
        """Return the committed records with ``details["nonce"] == nonce`` (O(1))."""
        return self._index.by_nonce(nonce)

    def leaf_hash(self, seq: int) -> bytes:
        """Return the Merkle leaf hash of record ``seq``."""
        return self._leaves[self._seq(seq)]

    def inclusion_proof(self, seq: int) -> list[bytes]:
        """Return the proof that record ``seq`` is in the tree of :meth:`checkpoint`."""
        with self._lock:
            return merkle.inclusion_proof(self._seq(seq), self._leaves)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """Return the proof that the tree of ``old_size`` is a prefix of the current."""
        with self._lock:
            return merkle.consistency_proof(old_size, self._leaves)

    def _seq(self, seq: int) -> int:
        if type(seq) is not int or not 0 <= seq < len(self._leaves):
            raise AuditError(
                f"no record seq {seq}: the log holds {len(self._leaves)} records"
            )
        return seq

    # -- writing -------------------------------------------------------------------
    def append(self, event: str, outcome: str, **fields: Any) -> AuditRecord:
        """Append one record, committed with its signed checkpoint, and return it.

        Returns only after the line holding both is on disk and the anchor and
        witness name the new checkpoint.

        Parameters
        ----------
        event
            One of :data:`~pht.station.audit.records.EVENTS`.
        outcome
            One of :data:`~pht.station.audit.records.OUTCOMES`.
        **fields
            Any of ``user``, ``organisation``, ``role``, ``purpose``, ``dataset``,
            ``train``, ``train_digest``, ``request_id``, ``output_digest``,
            ``decision``, ``reason`` (str) and ``details`` (dict). ``seq``, ``time``
            and ``station`` are set by the log. Never pass row-level data.

        Raises
        ------
        AuditError
            For an unknown event, outcome or field, or if a write failed (the log
            then refuses appends until reopened, which recovers and re-anchors it).
            If only the anchor or witness failed, the record *is* committed.
        """
        unknown = set(fields) - {*OPTIONAL_FIELDS, "details"}
        if unknown:
            raise AuditError(
                f"unknown audit field(s) {sorted(unknown)}: expected "
                f"some of {[*OPTIONAL_FIELDS, 'details']}"
            )
        if "details" in fields:
            fields["details"] = dict(fields["details"] or {})
        with self._lock:
            if self._closed or self._broken:
                raise AuditError(
                    f"the audit log in {self._directory} is "
                    f"{'closed' if self._closed else 'broken'}; reopen it"
                )
            record = AuditRecord(
                seq=len(self._leaves),
                time=format_time(self._clock()),
                event=event,
                outcome=outcome,
                station=self._station,
                **fields,
            )
            leaf = merkle.leaf_hash(record.to_line())
            tree = self._tree.copy()
            tree.append(leaf)
            checkpoint = sign_checkpoint(
                self._key,
                self._station,
                tree.size,
                tree.root().hex(),
                format_time(self._clock()),
            )
            try:
                append_line(self._log_fd, encode_entry(record, checkpoint))
            except OSError as exc:
                self._broken = True
                raise AuditError(
                    f"could not write the audit log in {self._directory}: "
                    f"{exc}; reopen it to recover"
                ) from exc
            self._tree = tree
            self._leaves.append(leaf)
            self._index.add(record)
            self._checkpoint = checkpoint
            self._write_anchors()
        log.debug("audit %s: seq %d %s %s", self._station, record.seq, event, outcome)
        return record

    def _write_anchors(self) -> None:
        for role, path in self._anchors:
            try:
                write_anchor(path, self._checkpoint)
            except OSError as exc:
                self._broken = True
                raise AuditError(
                    f"the audit {role} {path} could not be updated to the checkpoint "
                    f"of {self._checkpoint.size} records (they are committed to "
                    f"{self._directory}): {exc}; fix the {role}'s folder, then reopen "
                    "the log (it refuses appends until then)"
                ) from exc

    def close(self) -> None:
        """Release the lock and close the files (idempotent)."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock(fd: int, directory: Path) -> None:
    if fcntl is None:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise AuditError(
            f"the audit log in {directory} is already open; close the other "
            "AuditLog (or stop the other station process) first"
        ) from None
