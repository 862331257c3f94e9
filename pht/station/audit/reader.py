"""Read any log folder: the current one-file format or a format 1 folder.

Which format a folder holds is decided by its files: ``audit.jsonl`` (format 2) wins;
``audit.log`` or ``checkpoints.jsonl`` alone mean format 1 (not yet migrated).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pht.errors import AuditError, ConfigError
from pht.station.audit.legacy import (
    LEGACY_LOG_FILE,
    legacy_present,
    read_legacy,
    read_records,
)
from pht.station.audit.logfile import LOG_FILE, decode_line, read_log
from pht.station.audit.records import AuditRecord
from pht.station.audit.scan import Scan, read_bytes, split_lines

__all__ = ["detect_format", "read_folder", "read_records_unchecked"]


def _check_folder(directory: Path) -> None:
    """A file given where the log's folder belongs is a usage error, said as such."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(
            f"{directory}: is a file, not an audit folder; give the folder that "
            f"holds {LOG_FILE} (here perhaps {directory.parent})"
        )


def detect_format(directory: Path) -> int | None:
    """Return 2, 1, or ``None`` when the folder holds no log at all."""
    if (directory / LOG_FILE).exists():
        return 2
    if legacy_present(directory):
        return 1
    return None


def read_folder(directory: Path, public_key: Ed25519PublicKey) -> Scan:
    """Read and check the log in ``directory``, whichever format it has.

    Raises
    ------
    AuditError
        If there is no log, or on any damage or tampering (not a torn tail).
    """
    _check_folder(Path(directory))
    found = detect_format(directory)
    if found is None:
        raise AuditError(
            f"{directory / LOG_FILE} is missing: not an audit log folder; give the "
            "station's audit folder (its workdir's audit/)"
        )
    return (
        read_log(directory, public_key)
        if found == 2
        else read_legacy(directory, public_key)
    )


def read_records_unchecked(directory: Path) -> list[AuditRecord]:
    """Parse the records without checking checkpoints (for queries).

    A torn last line is skipped (a whole one that only lacks its newline is not);
    any other unreadable line is an AuditError.
    """
    directory = Path(directory)
    _check_folder(directory)
    found = detect_format(directory)
    if found is None:  # a query on a wrong path is a usage error, not damage
        hint = (
            f" (here perhaps {directory / 'audit'})"
            if (directory / "audit" / LOG_FILE).exists()
            else ""
        )
        raise ConfigError(
            f"{directory}: no audit log here ({LOG_FILE} is missing); give the "
            f"station's audit folder, its workdir's audit/{hint}"
        )
    if found == 1:
        return read_records(read_bytes(directory / LEGACY_LOG_FILE), LEGACY_LOG_FILE)
    data = read_bytes(directory / LOG_FILE)
    lines, rest = split_lines(data)
    records = []
    for number, (_, line) in enumerate(lines, start=1):
        try:
            record, _ = decode_line(line, header=number == 1)
        except AuditError as exc:
            raise AuditError(f"{LOG_FILE} line {number}: {exc}") from None
        if record is not None:
            records.append(record)
    if lines and rest < len(data):  # a whole last line without its newline counts
        try:
            record, _ = decode_line(data[rest:], header=False)
        except AuditError:
            return records  # a torn tail
        if record is not None:
            records.append(record)
    return records
