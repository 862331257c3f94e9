r"""A station's append-only, tamper-evident audit log with signed Merkle checkpoints.

Records follow NEN 7513 (who, what, when, why, with which outcome); they hold only
what callers pass and never row-level data. The log is a Merkle tree of RFC 6962
(:mod:`pht.station.merkle`) whose roots the station signs after every append.

Files in the log folder
    ``audit.log``
        One record per line: the canonical JSON of :class:`AuditRecord` (sorted keys,
        separators ``,`` and ``:``, UTF-8, no NaN), newline-terminated. Record ``seq``
        is line ``seq + 1``; its Merkle leaf is ``leaf_hash(line without newline)``.
    ``checkpoints.jsonl``
        One :class:`Checkpoint` per line in the same canonical JSON. The signature
        is Ed25519 over ``b"pht-audit-checkpoint/1\n" +
        f"{station}\n{size}\n{root}\n{time}\n".encode()``.

Appends
    Each append is one ``os.write`` of the whole line to an ``O_APPEND`` descriptor
    and an ``os.fsync``, then the same for a new checkpoint. A record is *committed*
    once a checkpoint covers it; ``append`` returns only then. A new log starts with
    a signed checkpoint of size 0.

Torn tails
    A crash leaves at most one line after the last checkpoint: half a record, or a
    whole record whose checkpoint was never written (and perhaps half a checkpoint
    line). That tail was never committed. :func:`verify_log` reports it and verifies
    the committed prefix; :meth:`AuditLog.open` truncates it and appends a
    ``log_recovered`` record naming the bytes dropped, the offset, their SHA-256 and
    (up to 16 KiB) the bytes themselves.
    Anything else after the last checkpoint, and any damage before it, is tampering:
    :class:`~pht.errors.AuditError`. A torn tail never hides a committed record: a
    damaged *last checkpoint line* does make the last record look uncommitted, but
    its bytes stay in the ``log_recovered`` record and a checkpoint saved by anyone
    (a receipt) no longer verifies against the log.

Errors
    Every check raises :class:`~pht.errors.AuditError` with a one-line message that
    names the file, line, seq or checkpoint and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pht.errors import AuditError
from pht.station import merkle

try:  # POSIX: one writer per log folder
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CHECKPOINT_FILE",
    "EVENTS",
    "LOG_FILE",
    "OUTCOMES",
    "AuditLog",
    "AuditRecord",
    "Checkpoint",
    "VerifyReport",
    "export_csv",
    "export_json",
    "key_id",
    "query",
    "verify_log",
]

log = logging.getLogger(__name__)

LOG_FILE = "audit.log"
CHECKPOINT_FILE = "checkpoints.jsonl"
CHECKPOINT_DOMAIN = b"pht-audit-checkpoint/1\n"
EVENTS = frozenset(
    {
        "request_received",
        "policy_decision",
        "run",
        "release",
        "refusal",
        "error",
        "review",
        "key_change",
        "policy_change",
        "log_recovered",
    }
)
OUTCOMES = frozenset({"success", "refused", "error", "pending", "approved", "rejected"})
_OPTIONAL = (
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
_HEX = re.compile(r"[0-9a-f]+")

Detail = str | int | float


def _canonical(obj: Any) -> bytes:
    """Encode the file format's canonical JSON (pinned here: old logs must verify)."""
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _format_time(when: datetime) -> str:
    if when.tzinfo is None:
        raise AuditError("the audit clock returned a naive time; give it a time zone")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AuditError(f"{what} is not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _one_line(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or "\n" in value:
        raise AuditError(f"{what} must be a non-empty one-line string, got {value!r}")
    return value


def key_id(public_key: Ed25519PublicKey) -> str:
    """Return the first 16 hex digits of ``sha256(raw public key)``."""
    return hashlib.sha256(public_key.public_bytes_raw()).hexdigest()[:16]


# -- records -----------------------------------------------------------------------
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
        _parse_time(self.time, "time")
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
        _one_line(self.station, "station")
        for name in _OPTIONAL:
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

    def to_line(self) -> bytes:
        """Return the canonical JSON line (without newline): the Merkle leaf data."""
        return _canonical(dataclasses.asdict(self))

    @classmethod
    def from_line(cls, line: bytes) -> AuditRecord:
        """Parse one line of ``audit.log`` strictly (it must be canonical).

        Raises
        ------
        AuditError
            Saying why the line is not a record.
        """
        try:
            data = json.loads(line.decode("utf-8"))
        except ValueError as exc:  # includes UnicodeDecodeError
            raise AuditError(f"not JSON ({exc})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise AuditError(f"wrong fields: expected {sorted(names)}, got {got}")
        record = cls(**data)
        if record.to_line() != line:
            raise AuditError("not in canonical JSON form")
        return record


# -- checkpoints -------------------------------------------------------------------
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
        :func:`key_id` of the signing key.
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
        _one_line(self.station, "checkpoint station")
        _one_line(self.time, "checkpoint time")
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

    def to_json(self) -> str:
        """Return the canonical JSON (one line, the format of ``checkpoints.jsonl``)."""
        return _canonical(dataclasses.asdict(self)).decode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse a checkpoint written by :meth:`to_json`; AuditError if malformed."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise AuditError(f"not JSON ({exc})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise AuditError(f"wrong fields: expected {sorted(names)}, got {got}")
        return cls(**data)

    @classmethod
    def from_line(cls, line: bytes) -> Checkpoint:
        """Parse one line of ``checkpoints.jsonl`` strictly (it must be canonical)."""
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
            why = f"it names key {self.key_id}"
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


def _sign(
    key: Ed25519PrivateKey, station: str, size: int, root: str, time: str
) -> Checkpoint:
    signature = key.sign(_signed_text(station, size, root, time))
    return Checkpoint(
        station=station,
        size=size,
        root=root,
        time=time,
        key_id=key_id(key.public_key()),
        signature=base64.b64encode(signature).decode("ascii"),
    )


# -- reading and checking the files ------------------------------------------------
@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_log` established.

    Attributes
    ----------
    size
        Number of committed records (covered by the latest checkpoint).
    root
        Hex Merkle root of those records.
    checkpoint
        The latest valid signed checkpoint (its ``root`` equals ``root``).
    torn_tail_bytes
        Bytes of ``audit.log`` after the committed records (an interrupted append).
    problems
        Non-fatal findings (torn tails), one sentence each; empty if none.
    """

    size: int
    root: str
    checkpoint: Checkpoint
    torn_tail_bytes: int
    problems: tuple[str, ...]


@dataclass(frozen=True)
class _Scan:
    """The checked contents of a log folder."""

    records: list[AuditRecord]  # committed records only
    leaves: list[bytes]
    latest: Checkpoint | None
    log_end: int  # committed bytes of audit.log
    log_tail: bytes
    checkpoint_end: int
    checkpoint_tail: bytes

    def problems(self) -> tuple[str, ...]:
        found = []
        size = 0 if self.latest is None else self.latest.size
        if self.log_tail:
            found.append(
                f"{LOG_FILE}: torn tail of {len(self.log_tail)} bytes at offset "
                f"{self.log_end} after the last signed checkpoint (size {size}), left "
                "by an interrupted append; AuditLog.open drops it"
            )
        if self.checkpoint_tail:
            found.append(
                f"{CHECKPOINT_FILE}: torn tail of {len(self.checkpoint_tail)} bytes at "
                f"offset {self.checkpoint_end}, left by an interrupted checkpoint "
                "write; AuditLog.open drops it"
            )
        return tuple(found)


def _lines(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Split into complete ``(offset, line without newline)`` and the rest's offset."""
    lines, start = [], 0
    while (end := data.find(b"\n", start)) != -1:
        lines.append((start, data[start:end]))
        start = end + 1
    return lines, start


def _parse_all(
    lines: list[tuple[int, bytes]],
    rest: int,
    data: bytes,
    parse: Callable[[bytes], Any],
) -> tuple[list[Any], int]:
    """Parse every complete line; the last line may be torn (unparseable or partial).

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


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AuditError(f"{path} is missing: not an audit log folder") from None


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
    """Each checkpoint's root must be the root of the first ``size`` records.

    Checkpoints beyond the records at hand are left for the caller.
    """
    tree, done, j = merkle.CompactRange(), 0, 0
    for i in range(len(leaves) + 1):
        while j < len(checkpoints) and checkpoints[j].size == i:
            cp, actual = checkpoints[j], tree.root().hex()
            if cp.root != actual:
                raise AuditError(
                    f"checkpoint {j} (size {i}) has root {cp.root} but the first {i} "
                    f"records hash to {actual}: a committed record in seq "
                    f"{done}..{i - 1} (lines {done + 1}..{i} of {LOG_FILE}) or the "
                    "checkpoint was changed"
                )
            done, j = i, j + 1
        if i < len(leaves):
            if records[i].station != checkpoints[-1].station:
                raise AuditError(
                    f"{LOG_FILE} line {i + 1} (seq {i}) names station "
                    f"{records[i].station!r}, the checkpoints are for "
                    f"{checkpoints[-1].station!r}"
                )
            tree.append(leaves[i])


def _scan(directory: Path, public_key: Ed25519PublicKey) -> _Scan:
    """Read and check both files; AuditError on anything but a torn tail."""
    data = _read(directory / LOG_FILE)
    lines, rest = _lines(data)
    try:
        records, _ = _parse_all(lines, rest, data, AuditRecord.from_line)
    except AuditError as exc:
        raise AuditError(f"{LOG_FILE} {exc}") from None
    for i, record in enumerate(records):
        if record.seq != i:
            raise AuditError(
                f"{LOG_FILE} line {i + 1} holds seq {record.seq}, expected "
                f"seq {i}: records were deleted, inserted or reordered"
            )

    cp_data = _read(directory / CHECKPOINT_FILE)
    cp_lines, cp_rest = _lines(cp_data)
    try:
        checkpoints, cp_end = _parse_all(
            cp_lines, cp_rest, cp_data, Checkpoint.from_line
        )
    except AuditError as exc:
        raise AuditError(f"{CHECKPOINT_FILE} {exc}") from None
    _check_checkpoints(checkpoints, public_key)

    leaves = [merkle.leaf_hash(line) for _, line in lines[: len(records)]]
    if checkpoints:
        _check_roots(records, leaves, checkpoints)
    latest = checkpoints[-1] if checkpoints else None
    size = 0 if latest is None else latest.size
    if size > len(records):
        raise AuditError(
            f"checkpoint {len(checkpoints) - 1} covers {size} records but {LOG_FILE} "
            f"holds only {len(records)} valid records: records from seq "
            f"{len(records)} on were removed or damaged"
        )
    log_end = lines[size][0] if size < len(lines) else rest
    tail = data[log_end:]
    if tail.count(b"\n") > 1 or b"\n" in tail[:-1]:
        count = tail.count(b"\n") + (not tail.endswith(b"\n"))
        raise AuditError(
            f"{LOG_FILE} holds {count} lines after the last signed "
            f"checkpoint (size {size}) at offset {log_end}: records were "
            "added without the station key"
        )
    return _Scan(
        records=records[:size],
        leaves=leaves[:size],
        latest=latest,
        log_end=log_end,
        log_tail=tail,
        checkpoint_end=cp_end,
        checkpoint_tail=cp_data[cp_end:],
    )


def verify_log(
    directory: Path, public_key: Ed25519PublicKey, saved: Checkpoint | None = None
) -> VerifyReport:
    """Verify a station's audit log from its files and the station's public key.

    Checks, in order: every line of ``audit.log`` is a canonical record and record
    ``i`` has seq ``i``; every checkpoint is signed by ``public_key``, names one
    station and sizes never decrease; the latest checkpoint covers every record; each
    checkpoint's root is the Merkle root of the first ``size`` records; and, given
    ``saved``, that the current tree extends it (RFC 9162 consistency proof).

    Parameters
    ----------
    directory
        The log folder (``audit.log`` and ``checkpoints.jsonl``).
    public_key
        The station's Ed25519 public key.
    saved
        A checkpoint kept from earlier (a receipt, an auditor's note): a truncated
        or rewritten log no longer extends it.

    Returns
    -------
    VerifyReport
        Size and root of the committed log; a torn tail is reported, not fatal.

    Raises
    ------
    AuditError
        On any damage or tampering, naming the line, seq or checkpoint.
    """
    directory = Path(directory)
    scan = _scan(directory, public_key)
    if scan.latest is None:
        raise AuditError(
            f"{directory / CHECKPOINT_FILE} holds no signed checkpoint: "
            "the log cannot be verified"
        )
    size = scan.latest.size
    if saved is not None:
        saved.verify(public_key, "the saved checkpoint")
        if saved.station != scan.latest.station:
            raise AuditError(
                f"the saved checkpoint is for station {saved.station!r}, "
                f"the log for {scan.latest.station!r}"
            )
        if saved.size > size:
            raise AuditError(
                f"the saved checkpoint covers {saved.size} records but "
                f"the log holds {size}: the log was truncated"
            )
        proof = merkle.consistency_proof(saved.size, scan.leaves)
        try:
            merkle.verify_consistency(
                saved.size,
                size,
                bytes.fromhex(saved.root),
                bytes.fromhex(scan.latest.root),
                proof,
            )
        except AuditError as exc:
            raise AuditError(
                f"the log does not extend the saved checkpoint (size "
                f"{saved.size}): it was rewritten; {exc}"
            ) from None
    problems = scan.problems()
    for problem in problems:
        log.warning("audit log %s: %s", directory, problem)
    return VerifyReport(
        size=size,
        root=scan.latest.root,
        checkpoint=scan.latest,
        torn_tail_bytes=len(scan.log_tail),
        problems=problems,
    )


# -- the writer --------------------------------------------------------------------
def _write_line(fd: int, line: bytes) -> None:
    """One ``write`` of the whole line, then ``fsync``: a crash tears at most it."""
    written = os.write(fd, line)
    if written != len(line):
        raise OSError(f"short write: {written} of {len(line)} bytes")
    os.fsync(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


_EVIDENCE_BYTES = 16384
_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class AuditLog:
    """The writer of one station's audit log; build it with :meth:`open`.

    One ``AuditLog`` per folder at a time (an exclusive lock on ``audit.log``);
    appends from several threads are serialised.
    """

    def __init__(
        self,
        directory: Path,
        station_id: str,
        signing_key: Ed25519PrivateKey,
        fds: tuple[int, int],
        scan: _Scan,
        clock: Callable[[], datetime],
    ) -> None:
        self._directory = directory
        self._station = station_id
        self._key = signing_key
        self._log_fd, self._checkpoint_fd = fds
        self._clock = clock
        self._records = list(scan.records)
        self._leaves = list(scan.leaves)
        self._tree = merkle.CompactRange()
        for leaf in self._leaves:
            self._tree.append(leaf)
        self._checkpoint = scan.latest
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
        clock: Callable[[], datetime] | None = None,
    ) -> AuditLog:
        """Open (or create) the log in ``directory`` after checking it.

        A torn tail is truncated and a ``log_recovered`` record appended.

        Parameters
        ----------
        directory
            The log folder; created if missing.
        station_id
            This station's id; an existing log must belong to it.
        signing_key
            The station's Ed25519 key; existing checkpoints must verify with it.
        clock
            Returns the current time (timezone-aware); for tests.

        Raises
        ------
        AuditError
            If the log is damaged or tampered with, belongs to another station or
            key, or is already open.
        """
        directory = Path(directory)
        _one_line(station_id, "station id")
        directory.mkdir(parents=True, exist_ok=True)
        fds: list[int] = []
        try:
            for name in (LOG_FILE, CHECKPOINT_FILE):
                fds.append(os.open(directory / name, _FLAGS, 0o600))
            if fcntl is not None:
                try:
                    fcntl.flock(fds[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise AuditError(
                        f"the audit log in {directory} is already open; "
                        "close the other AuditLog first"
                    ) from None
            _fsync_dir(directory)
            scan = _scan(directory, signing_key.public_key())
            if scan.latest is not None and scan.latest.station != station_id:
                raise AuditError(
                    f"the audit log in {directory} belongs to station "
                    f"{scan.latest.station!r}, not {station_id!r}"
                )
            dropped = _drop_tails(directory, (fds[0], fds[1]), scan)
            audit = cls(
                directory,
                station_id,
                signing_key,
                (fds[0], fds[1]),
                scan,
                clock or (lambda: datetime.now(UTC)),
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        try:
            if audit._checkpoint is None:
                audit._write_checkpoint()
            if dropped:
                reason = "; ".join(text for text, _ in dropped)
                details = {k: v for _, d in dropped for k, v in d.items()}
                log.warning("audit log %s recovered: %s", directory, reason)
                audit.append("log_recovered", "success", reason=reason, details=details)
        except BaseException:
            audit.close()
            raise
        return audit

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
    def size(self) -> int:
        """Number of committed records."""
        return len(self._leaves)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key that verifies this log's checkpoints."""
        return self._key.public_key()

    def checkpoint(self) -> Checkpoint:
        """Return the latest signed checkpoint (it covers every record)."""
        assert self._checkpoint is not None  # written by open()
        return self._checkpoint

    def records(self) -> list[AuditRecord]:
        """Return all committed records, oldest first."""
        with self._lock:
            return list(self._records)

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
        """Append one record, commit it with a signed checkpoint, and return it.

        Parameters
        ----------
        event
            One of :data:`EVENTS`.
        outcome
            One of :data:`OUTCOMES`.
        **fields
            Any of ``user``, ``organisation``, ``role``, ``purpose``, ``dataset``,
            ``train``, ``train_digest``, ``request_id``, ``output_digest``,
            ``decision``, ``reason`` (str) and ``details`` (dict). ``seq``, ``time``
            and ``station`` are set by the log. Never pass row-level data.

        Raises
        ------
        AuditError
            For an unknown event, outcome or field, or if the write failed (the log
            then refuses appends until reopened, which recovers the tail).
        """
        unknown = set(fields) - {*_OPTIONAL, "details"}
        if unknown:
            raise AuditError(
                f"unknown audit field(s) {sorted(unknown)}: expected "
                f"some of {[*_OPTIONAL, 'details']}"
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
                time=_format_time(self._clock()),
                event=event,
                outcome=outcome,
                station=self._station,
                **fields,
            )
            line = record.to_line()
            self._write(self._log_fd, line)
            self._records.append(record)
            self._leaves.append(merkle.leaf_hash(line))
            self._tree.append(self._leaves[-1])
            self._write_checkpoint()
        log.debug("audit %s: seq %d %s %s", self._station, record.seq, event, outcome)
        return record

    def _write(self, fd: int, line: bytes) -> None:
        try:
            _write_line(fd, line + b"\n")
        except OSError as exc:
            self._broken = True
            raise AuditError(
                f"could not write the audit log in {self._directory}: "
                f"{exc}; reopen it to recover"
            ) from exc

    def _write_checkpoint(self) -> None:
        cp = _sign(
            self._key,
            self._station,
            self._tree.size,
            self._tree.root().hex(),
            _format_time(self._clock()),
        )
        self._write(self._checkpoint_fd, cp.to_json().encode("utf-8"))
        self._checkpoint = cp

    def close(self) -> None:
        """Release the lock and close the files (idempotent)."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_tails(
    directory: Path, fds: tuple[int, int], scan: _Scan
) -> list[tuple[str, dict[str, Detail]]]:
    """Truncate torn tails; describe each drop for the ``log_recovered`` record.

    The record keeps the size, offset and SHA-256 of the dropped bytes, and the
    bytes themselves (base64) up to 16 KiB, so recovery destroys no evidence.
    """
    dropped = []
    for fd, name, key, end, tail in (
        (
            fds[1],
            CHECKPOINT_FILE,
            "checkpoints",
            scan.checkpoint_end,
            scan.checkpoint_tail,
        ),
        (fds[0], LOG_FILE, "log", scan.log_end, scan.log_tail),
    ):
        if not tail:
            continue
        os.ftruncate(fd, end)
        os.fsync(fd)
        text = f"dropped a torn tail of {len(tail)} bytes at offset {end} of {name}"
        details: dict[str, Detail] = {
            f"{key}_dropped_bytes": len(tail),
            f"{key}_offset": end,
            f"{key}_dropped_sha256": hashlib.sha256(tail).hexdigest(),
        }
        if len(tail) <= _EVIDENCE_BYTES:  # keep what was dropped inside the log
            details[f"{key}_dropped_base64"] = base64.b64encode(tail).decode("ascii")
        dropped.append((text, details))
    return dropped


# -- auditors' tools ---------------------------------------------------------------
def _bound(value: datetime | str | None, what: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
    return _parse_time(value, what)


def query(
    directory: Path,
    *,
    requester: str | None = None,
    purpose: str | None = None,
    train: str | None = None,
    dataset: str | None = None,
    outcome: str | None = None,
    event: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> list[AuditRecord]:
    """Return the records of ``audit.log`` that match every given filter.

    Reads the records only; run :func:`verify_log` to trust them. A torn last line
    is skipped.

    Parameters
    ----------
    directory
        The log folder.
    requester
        Matches ``user`` or ``organisation``.
    purpose, train, dataset, outcome, event
        Exact matches.
    since, until
        Keep ``since <= time < until``; ISO 8601 strings or datetimes, naive ones
        taken as UTC.

    Returns
    -------
    list of AuditRecord
        Oldest first.
    """
    data = _read(Path(directory) / LOG_FILE)
    lines, rest = _lines(data)
    try:
        records, _ = _parse_all(lines, rest, data, AuditRecord.from_line)
    except AuditError as exc:
        raise AuditError(f"{LOG_FILE} {exc}") from None
    start, end = _bound(since, "since"), _bound(until, "until")
    exact = {
        "purpose": purpose,
        "train": train,
        "dataset": dataset,
        "outcome": outcome,
        "event": event,
    }

    def keep(r: AuditRecord) -> bool:
        if requester is not None and requester not in (r.user, r.organisation):
            return False
        if any(v is not None and getattr(r, k) != v for k, v in exact.items()):
            return False
        when = _parse_time(r.time, "time")
        return (start is None or when >= start) and (end is None or when < end)

    return [r for r in records if keep(r)]


_COLUMNS = tuple(f.name for f in dataclasses.fields(AuditRecord))


def export_csv(records: Iterable[AuditRecord], path: Path) -> None:
    """Write records as CSV: one column per field, ``details`` as compact JSON.

    ``None`` becomes an empty cell.
    """
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(_COLUMNS)
        for r in records:
            row = dataclasses.asdict(r)
            row["details"] = _canonical(row["details"]).decode("utf-8")
            writer.writerow(["" if row[c] is None else row[c] for c in _COLUMNS])


def export_json(records: Iterable[AuditRecord], path: Path) -> None:
    """Write records as a JSON array of objects (sorted keys, indented)."""
    rows = [dataclasses.asdict(r) for r in records]
    text = json.dumps(rows, sort_keys=True, indent=2, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")
