"""The log file (format ``pht-audit/2``): each line commits one record with its checkpoint.

``audit.jsonl`` holds canonical JSON lines (:func:`~pht.station.audit.encoding.canonical`),
each newline-terminated::

    line 1        {"checkpoint":{<size 0>},"format":"pht-audit/2"}
    line seq + 2  {"checkpoint":{<size seq + 1>},"record":{<AuditRecord seq>}}

The checkpoint on a record's line is signed over the Merkle tree that *includes* that
record, so one ``os.write`` + ``fsync`` of the line commits both; no later edit can make
a committed record look uncommitted except by cutting the line's newline, which turns
it into a reported torn tail and leaves the log behind its anchor. Record ``seq``'s
Merkle leaf is ``leaf_hash(record.to_line())``, the same as in format 1, so a migrated
log keeps its roots and every receipt issued before still verifies. The file is
created with its header in one atomic rename, so it always has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pht.errors import AuditError
from pht.station import merkle
from pht.station.audit.checkpoints import Checkpoint
from pht.station.audit.encoding import canonical
from pht.station.audit.records import AuditRecord
from pht.station.audit.recovery import Tail
from pht.station.audit.scan import Scan, read_bytes, split_lines

__all__ = [
    "FORMAT",
    "LOG_FILE",
    "decode_line",
    "encode_entry",
    "encode_header",
    "read_log",
]

LOG_FILE = "audit.jsonl"
FORMAT = "pht-audit/2"


def encode_header(checkpoint: Checkpoint) -> bytes:
    """The first line (without newline): the format and the size-0 checkpoint."""
    return canonical({"checkpoint": checkpoint.to_dict(), "format": FORMAT})


def encode_entry(record: AuditRecord, checkpoint: Checkpoint) -> bytes:
    """A record line (without newline): the record and the checkpoint including it."""
    return canonical({"checkpoint": checkpoint.to_dict(), "record": record.to_dict()})


def decode_line(line: bytes, header: bool) -> tuple[AuditRecord | None, Checkpoint]:
    """Parse one line strictly: the header if ``header`` else a record line.

    Raises
    ------
    AuditError
        Saying why the line is not what was expected (not JSON, wrong keys, not
        canonical, an unknown format).
    """
    try:
        data = json.loads(line.decode("utf-8"))
        again = canonical(data)
    except ValueError as exc:  # includes UnicodeDecodeError and NaN
        raise AuditError(f"not JSON ({exc})") from None
    keys = {"checkpoint", "format"} if header else {"checkpoint", "record"}
    if not isinstance(data, dict) or set(data) != keys:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        what = "the header" if header else "a record line"
        raise AuditError(f"{what} must have keys {sorted(keys)}, got {got}")
    if again != line:
        raise AuditError("not in canonical JSON form")
    checkpoint = Checkpoint.from_dict(data["checkpoint"])
    if header:
        if data["format"] != FORMAT:
            raise AuditError(
                f"format {data['format']!r} is not {FORMAT!r}; use the pht version "
                "that wrote this log"
            )
        return None, checkpoint
    return AuditRecord.from_dict(data["record"]), checkpoint


@dataclass(frozen=True)
class _Line:
    """One checked line, not yet added."""

    record: AuditRecord | None
    leaf: bytes | None
    tree: merkle.CompactRange
    checkpoint: Checkpoint


class _Reader:
    """Checks lines in order against everything before them."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self.public_key = public_key
        self.tree = merkle.CompactRange()
        self.records: list[AuditRecord] = []
        self.leaves: list[bytes] = []
        self.checkpoints: dict[int, Checkpoint] = {}
        self.station: str | None = None

    def check(self, line: bytes, number: int) -> _Line:
        """Check line ``number`` as the next one; AuditError saying what is wrong."""
        where = f"{LOG_FILE} line {number}"
        try:
            record, cp = decode_line(line, header=number == 1)
        except AuditError as exc:
            raise AuditError(f"{where}: {exc}") from None
        cp.verify(self.public_key, f"the checkpoint on {where}")
        station = self.station or cp.station
        if cp.station != station:
            raise AuditError(
                f"the checkpoint on {where} names station {cp.station!r}, the "
                f"header names {station!r}"
            )
        tree, leaf = self.tree, None
        if record is not None:
            seq = len(self.records)
            if record.seq != seq:
                raise AuditError(
                    f"{where} holds seq {record.seq}, expected seq {seq}: records "
                    "were deleted, inserted or reordered"
                )
            if record.station != station:
                raise AuditError(
                    f"{where} (seq {seq}) names station {record.station!r}, the "
                    f"checkpoints are for {station!r}"
                )
            leaf = merkle.leaf_hash(record.to_line())
            tree = tree.copy()
            tree.append(leaf)
        if cp.size != tree.size:
            raise AuditError(
                f"the checkpoint on {where} has size {cp.size}, expected {tree.size}"
            )
        actual = tree.root().hex()
        if cp.root != actual:
            raise AuditError(
                f"the checkpoint on {where} (size {cp.size}) has root {cp.root} but "
                f"the first {cp.size} records hash to {actual}: record seq "
                f"{tree.size - 1} ({where}) or its checkpoint was changed"
            )
        return _Line(record, leaf, tree, cp)

    def add(self, line: _Line) -> None:
        """Add a checked line."""
        self.station = line.checkpoint.station
        if line.record is not None and line.leaf is not None:
            self.records.append(line.record)
            self.leaves.append(line.leaf)
        self.tree = line.tree
        self.checkpoints[line.checkpoint.size] = line.checkpoint


def _unterminated(reader: _Reader, tail: bytes, number: int) -> _Line | None:
    """Classify the bytes after the last newline.

    A crash mid-append leaves a strict prefix of a line: never a complete JSON value
    (the line's last byte before the newline closes its only object). So: not
    complete JSON -> a torn tail (``None``); one complete, valid record line and
    nothing else -> a committed line that only lacks its newline; anything else
    -> tampering.
    """
    text = tail.decode("utf-8", "surrogateescape")  # keep every byte
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None
    head = text[:end].encode("utf-8", "surrogateescape")
    where = f"{LOG_FILE} line {number} (not newline-terminated)"
    try:
        line = reader.check(head, number)
    except AuditError as exc:
        raise AuditError(
            f"{where} is complete JSON but not a valid record line ({exc}); an "
            "interrupted append leaves only part of a line: the file was changed"
        ) from None
    if head != tail:
        raise AuditError(
            f"{where} holds a whole signed record followed by {len(tail) - len(head)} "
            "bytes that are not its newline: the file was changed"
        )
    return line


def read_log(directory: Path, public_key: Ed25519PublicKey) -> Scan:
    """Read and check ``audit.jsonl``: AuditError on anything but a torn tail.

    Checks every line: canonical; the header first, with a size-0 checkpoint of the
    empty tree; record ``i`` on line ``i + 2`` with seq ``i``; every checkpoint
    signed by ``public_key``, naming the header's station, of size ``seq + 1`` and
    with the root of the first ``seq + 1`` records; every record naming the station.
    After the last newline: a valid record line that only lacks its newline is
    committed (``Scan.unterminated``); a part of a line is a torn tail.
    """
    data = read_bytes(directory / LOG_FILE)
    lines, rest = split_lines(data)
    if not lines:
        raise AuditError(
            f"{LOG_FILE} has no header line ({len(data)} bytes): it is not a log "
            "this station wrote; restore the audit folder from a backup"
        )
    reader = _Reader(public_key)
    for number, (_, line) in enumerate(lines, start=1):
        reader.add(reader.check(line, number))
    tail = data[rest:]
    last = _unterminated(reader, tail, len(lines) + 1) if tail else None
    if last is not None:
        reader.add(last)
    torn = (Tail(LOG_FILE, "log", rest, tail),) if tail and last is None else ()
    return Scan(
        format=2,
        records=tuple(reader.records),
        leaves=tuple(reader.leaves),
        root=reader.tree.root(),
        checkpoints=reader.checkpoints,
        latest=reader.checkpoints[reader.tree.size],
        tails=torn,
        unterminated=last is not None,
    )
