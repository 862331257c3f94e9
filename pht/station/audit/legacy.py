"""Format 1 logs (pht 0.1): reading them, and migrating them to the one-file format.

Format 1 kept records in ``audit.log`` (one canonical :class:`AuditRecord` line each)
and checkpoints in ``checkpoints.jsonl``, written by two separate appends. A crash
between them left a whole record after the last checkpoint; so could an attacker by
deleting the last checkpoint line. The reader keeps format 1's rules (at most one
line after the last checkpoint, reported as a torn tail) so old copies still verify.

:func:`migrate` rewrites a checked format 1 folder as ``audit.jsonl`` in one atomic
rename, carrying over every checkpoint (signing one only for a size that has none);
leaves and roots do not change, so receipts issued before the upgrade still verify.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pht.errors import AuditError
from pht.station import merkle
from pht.station.audit.checkpoints import Checkpoint, sign_checkpoint
from pht.station.audit.files import atomic_write, fsync_dir
from pht.station.audit.logfile import LOG_FILE, encode_entry, encode_header
from pht.station.audit.records import AuditRecord
from pht.station.audit.recovery import Tail
from pht.station.audit.scan import Scan, read_bytes, split_lines

__all__ = [
    "LEGACY_CHECKPOINT_FILE",
    "LEGACY_LOG_FILE",
    "legacy_present",
    "migrate",
    "read_legacy",
    "read_records",
    "remove_legacy",
]

LEGACY_LOG_FILE = "audit.log"
LEGACY_CHECKPOINT_FILE = "checkpoints.jsonl"


def _parse_all(
    lines: list[tuple[int, bytes]],
    rest: int,
    data: bytes,
    parse: Callable[[bytes], Any],
) -> tuple[list[Any], int]:
    """Parse every complete line; the last one may be torn if nothing follows it.

    Returns the parsed items and the offset where the unparsed tail starts.
    """
    items = []
    for i, (offset, line) in enumerate(lines):
        try:
            items.append(parse(line))
        except AuditError as exc:
            if i == len(lines) - 1 and rest == len(data):
                return items, offset
            raise AuditError(f"line {i + 1}: {exc}") from None
    return items, rest


def read_records(data: bytes, name: str) -> list[AuditRecord]:
    """Parse the record lines of a format 1 ``audit.log``, skipping a torn last one."""
    lines, rest = split_lines(data)
    try:
        records, _ = _parse_all(lines, rest, data, AuditRecord.from_line)
    except AuditError as exc:
        raise AuditError(f"{name} {exc}") from None
    return records


def _check_checkpoints(
    checkpoints: list[Checkpoint], public_key: Ed25519PublicKey
) -> None:
    for i, cp in enumerate(checkpoints):
        cp.verify(public_key, f"checkpoint {i}")
        if cp.station != checkpoints[0].station:
            raise AuditError(
                f"checkpoint {i} names station {cp.station!r}, checkpoint "
                f"0 names {checkpoints[0].station!r}"
            )
        if i and cp.size < checkpoints[i - 1].size:
            raise AuditError(
                f"checkpoint {i} has size {cp.size} after checkpoint "
                f"{i - 1} with size {checkpoints[i - 1].size}: checkpoints "
                "were reordered or rewritten"
            )


def _check_roots(
    records: list[AuditRecord], leaves: list[bytes], checkpoints: list[Checkpoint]
) -> None:
    """Each checkpoint's root must be the root of the first ``size`` records."""
    tree, done, j = merkle.CompactRange(), 0, 0
    for i in range(len(leaves) + 1):
        while j < len(checkpoints) and checkpoints[j].size == i:
            cp, actual = checkpoints[j], tree.root().hex()
            if cp.root != actual:
                raise AuditError(
                    f"checkpoint {j} (size {i}) has root {cp.root} but the first {i} "
                    f"records hash to {actual}: a committed record in seq "
                    f"{done}..{i - 1} (lines {done + 1}..{i} of {LEGACY_LOG_FILE}) "
                    "or the checkpoint was changed"
                )
            done, j = i, j + 1
        if i < len(leaves):
            if records[i].station != checkpoints[-1].station:
                raise AuditError(
                    f"{LEGACY_LOG_FILE} line {i + 1} (seq {i}) names station "
                    f"{records[i].station!r}, the checkpoints are for "
                    f"{checkpoints[-1].station!r}"
                )
            tree.append(leaves[i])


def read_legacy(directory: Path, public_key: Ed25519PublicKey) -> Scan:
    """Read and check a format 1 folder: AuditError on anything but torn tails."""
    data = read_bytes(directory / LEGACY_LOG_FILE)
    lines, rest = split_lines(data)
    records = read_records(data, LEGACY_LOG_FILE)
    for i, record in enumerate(records):
        if record.seq != i:
            raise AuditError(
                f"{LEGACY_LOG_FILE} line {i + 1} holds seq {record.seq}, expected "
                f"seq {i}: records were deleted, inserted or reordered"
            )
    cp_data = read_bytes(directory / LEGACY_CHECKPOINT_FILE)
    cp_lines, cp_rest = split_lines(cp_data)
    try:
        checkpoints, cp_end = _parse_all(
            cp_lines, cp_rest, cp_data, Checkpoint.from_line
        )
    except AuditError as exc:
        raise AuditError(f"{LEGACY_CHECKPOINT_FILE} {exc}") from None
    _check_checkpoints(checkpoints, public_key)
    leaves = [merkle.leaf_hash(line) for _, line in lines[: len(records)]]
    if checkpoints:
        _check_roots(records, leaves, checkpoints)
    latest = checkpoints[-1] if checkpoints else None
    size = 0 if latest is None else latest.size
    if size > len(records):
        raise AuditError(
            f"checkpoint {len(checkpoints) - 1} covers {size} records but "
            f"{LEGACY_LOG_FILE} holds only {len(records)} valid records: records "
            f"from seq {len(records)} on were removed or damaged"
        )
    log_end = lines[size][0] if size < len(lines) else rest
    tail = data[log_end:]
    if tail.count(b"\n") > 1 or b"\n" in tail[:-1]:
        count = tail.count(b"\n") + (not tail.endswith(b"\n"))
        raise AuditError(
            f"{LEGACY_LOG_FILE} holds {count} lines after the last signed "
            f"checkpoint (size {size}) at offset {log_end}: records were "
            "added without the station key"
        )
    tails = []
    if tail:
        tails.append(Tail(LEGACY_LOG_FILE, "log", log_end, tail))
    if cp_data[cp_end:]:
        tails.append(
            Tail(
                LEGACY_CHECKPOINT_FILE,
                "checkpoints",
                cp_end,
                cp_data[cp_end:],
                "an interrupted checkpoint write",
            )
        )
    return Scan(
        format=1,
        records=tuple(records[:size]),
        leaves=tuple(leaves[:size]),
        root=merkle.root(leaves[:size]),
        checkpoints={cp.size: cp for cp in checkpoints},
        latest=latest,
        tails=tuple(tails),
    )


def migrate(
    directory: Path,
    scan: Scan,
    station: str,
    key: Ed25519PrivateKey,
    now: Callable[[], str],
) -> int:
    """Write the committed content of a format 1 ``scan`` as ``audit.jsonl``.

    Then remove the format 1 files. Torn tails are not copied (the caller records
    them in a ``log_recovered`` record). Returns the number of checkpoints that had
    to be signed anew (0 for a log format 1 wrote completely).
    """
    tree = merkle.CompactRange()
    signed = 0

    def checkpoint_at(size: int) -> Checkpoint:
        nonlocal signed
        found = scan.checkpoints.get(size)
        if found is not None:
            return found
        signed += 1
        return sign_checkpoint(key, station, size, tree.root().hex(), now())

    lines = [encode_header(checkpoint_at(0))]
    for record, leaf in zip(scan.records, scan.leaves, strict=True):
        tree.append(leaf)
        lines.append(encode_entry(record, checkpoint_at(tree.size)))
    atomic_write(directory / LOG_FILE, b"".join(line + b"\n" for line in lines))
    remove_legacy(directory)
    return signed


def legacy_present(directory: Path) -> bool:
    """Whether either format 1 file exists in ``directory``."""
    return any(
        (directory / name).exists()
        for name in (LEGACY_LOG_FILE, LEGACY_CHECKPOINT_FILE)
    )


def remove_legacy(directory: Path) -> None:
    """Delete leftover format 1 files once ``audit.jsonl`` holds their content."""
    for name in (LEGACY_LOG_FILE, LEGACY_CHECKPOINT_FILE):
        try:
            os.unlink(directory / name)
        except FileNotFoundError:
            pass
    fsync_dir(directory)
