r"""A station's append-only, tamper-evident, anchored audit log.

Records follow NEN 7513 (who, what, when, why, with which outcome) and never hold
row-level data. The log is an RFC 6962 Merkle tree (:mod:`pht.station.merkle`) whose
root the station signs with every append.

Modules, one idea each::

    encoding     canonical JSON and time formats (pinned: part of the file format)
    records      AuditRecord, EVENTS, OUTCOMES
    checkpoints  Checkpoint: a signed (station, size, root, time)
    logfile      format 2: one line per record, committed with its checkpoint
    legacy       format 1 (audit.log + checkpoints.jsonl): read, migrate
    recovery     torn tails: what a crash mid-append leaves, and how it is dropped
    scan         the checked contents of a folder; check_extends (prefix proofs)
    reader       read either format
    files        durable writes: whole-line appends, atomic replace, dir fsync
    anchor       the anchor and witness files outside the folder
    index        in-memory views by event, request id and nonce (O(1) reads)
    opening      what AuditLog.open checks, creates, migrates and repairs
    writer       AuditLog: open, append (commit, then anchor), proofs, views
    saved        tree heads an auditor kept: checkpoints and run receipts
    verify       verify_log for auditors
    query        query, export_csv, export_json, export_jsonl, exporter

Files
    ``<log folder>/audit.jsonl``
        Line 1 ``{"checkpoint":{size 0},"format":"pht-audit/2"}``, then one line
        per record ``{"checkpoint":{...},"record":{...}}`` whose checkpoint covers
        the tree including that record (:mod:`~pht.station.audit.logfile`).
    ``anchor`` and ``witness`` (outside the folder)
        The latest checkpoint, replaced atomically after every append
        (:mod:`~pht.station.audit.anchor`).

Errors::

    AuditError (pht.errors)     damage, tampering, wrong key or station, misuse
    └── AuditRollbackError      the log is missing, shorter than, or not an
                                extension of an anchor, witness, saved checkpoint
                                or receipt: restore it from a backup
    ConfigError (pht.errors)    an anchor inside the folder; an unusable saved file
"""

from __future__ import annotations

from pht.station.audit.anchor import read_anchor
from pht.station.audit.checkpoints import Checkpoint, key_id
from pht.station.audit.index import RecordView
from pht.station.audit.legacy import LEGACY_CHECKPOINT_FILE, LEGACY_LOG_FILE
from pht.station.audit.logfile import FORMAT, LOG_FILE
from pht.station.audit.query import (
    export_csv,
    export_json,
    export_jsonl,
    exporter,
    query,
    record_line,
)
from pht.station.audit.records import EVENTS, OUTCOMES, AuditRecord
from pht.station.audit.saved import TreeHead, load_saved
from pht.station.audit.scan import AuditRollbackError
from pht.station.audit.verify import VerifyReport, verify_log
from pht.station.audit.writer import AuditLog

__all__ = [
    "EVENTS",
    "FORMAT",
    "LEGACY_CHECKPOINT_FILE",
    "LEGACY_LOG_FILE",
    "LOG_FILE",
    "OUTCOMES",
    "AuditLog",
    "AuditRecord",
    "AuditRollbackError",
    "Checkpoint",
    "RecordView",
    "TreeHead",
    "VerifyReport",
    "export_csv",
    "export_json",
    "export_jsonl",
    "exporter",
    "key_id",
    "load_saved",
    "query",
    "read_anchor",
    "record_line",
    "verify_log",
]
