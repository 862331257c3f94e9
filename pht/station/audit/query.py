"""Auditors' tools: filter the records of a log folder, export them as CSV or JSON.

:func:`exporter` chooses the writer from the file's suffix (``.csv``, ``.json``,
``.jsonl``: JSON lines) and refuses any other before anything is written.

These read records without checking checkpoints; run
:func:`~pht.station.audit.verify.verify_log` to trust them.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from pht.errors import ConfigError
from pht.station.audit.encoding import canonical, parse_time
from pht.station.audit.reader import read_records_unchecked
from pht.station.audit.records import OUTCOMES, AuditRecord
from pht.timefmt import TimeFormatError, parse_utc

__all__ = [
    "EXPORT_SUFFIXES",
    "export_csv",
    "export_json",
    "export_jsonl",
    "exporter",
    "query",
    "record_line",
]


def _bound(value: datetime | str | None, what: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
    try:
        return parse_utc(value, naive_as_utc=True)
    except TimeFormatError as exc:
        raise ConfigError(
            f"{what} {value!r} {exc}; write e.g. 2026-01-31 or 2026-01-31T12:00Z"
        ) from None


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
    """Return the records of the log in ``directory`` that match every given filter.

    Reads the records only; run :func:`verify_log` to trust them. A torn last line
    is skipped.

    Parameters
    ----------
    directory
        The log folder.
    requester
        Matches ``user`` or ``organisation``.
    train
        ``name@version`` matches exactly; a bare ``name`` matches every version.
    purpose, dataset, outcome, event
        Exact matches; ``outcome`` is one of the outcomes the log writes (else a
        :class:`~pht.errors.ConfigError` naming them, not an empty answer).
    since, until
        Keep ``since <= time < until``; ISO 8601 strings or datetimes, naive ones
        taken as UTC.

    Returns
    -------
    list of AuditRecord
        Oldest first.
    """
    records = read_records_unchecked(Path(directory))
    start, end = _bound(since, "since"), _bound(until, "until")
    if outcome is not None and outcome not in OUTCOMES:
        raise ConfigError(
            f"--outcome {outcome!r} is not an outcome the audit log writes; use one "
            f"of {', '.join(sorted(OUTCOMES))}"
        )
    by_name = train is not None and "@" not in train
    exact = {
        "purpose": purpose,
        "train": None if by_name else train,
        "dataset": dataset,
        "outcome": outcome,
        "event": event,
    }

    def keep(r: AuditRecord) -> bool:
        if requester is not None and requester not in (r.user, r.organisation):
            return False
        if any(v is not None and getattr(r, k) != v for k, v in exact.items()):
            return False
        if by_name and (r.train or "").split("@", 1)[0] != train:
            return False
        when = parse_time(r.time, "time")
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
            row["details"] = canonical(row["details"]).decode("utf-8")
            writer.writerow(["" if row[c] is None else row[c] for c in _COLUMNS])


def export_json(records: Iterable[AuditRecord], path: Path) -> None:
    """Write records as a JSON array of objects (sorted keys, indented)."""
    rows = [dataclasses.asdict(r) for r in records]
    text = json.dumps(rows, sort_keys=True, indent=2, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def record_line(record: AuditRecord) -> str:
    """One record as one line of JSON (sorted keys, ASCII, no newline inside)."""
    return json.dumps(dataclasses.asdict(record), sort_keys=True)


def export_jsonl(records: Iterable[AuditRecord], path: Path) -> None:
    """Write records as JSON lines: one object per line, as ``pht audit query`` prints."""
    text = "".join(record_line(r) + "\n" for r in records)
    Path(path).write_text(text, encoding="utf-8")


Exporter = Callable[[Iterable[AuditRecord], Path], None]

EXPORT_SUFFIXES: dict[str, Exporter] = {
    ".csv": export_csv,
    ".json": export_json,
    ".jsonl": export_jsonl,
}
"""File suffix to the writer of that format."""


def exporter(path: Path) -> Exporter:
    """The writer for ``path``'s suffix, once ``path`` is known to be writable there.

    Raises
    ------
    ConfigError
        An unknown suffix, a folder, or a folder that does not exist; nothing is
        written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ConfigError(
            f"{path}: cannot export as '{suffix}'; name the file .csv, .json or "
            ".jsonl (JSON lines)"
            if suffix
            else f"{path}: has no suffix; name the file .csv, .json or .jsonl "
            "(JSON lines)"
        )
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file name ending in {suffix}")
    if not path.parent.is_dir():
        raise ConfigError(
            f"{path}: the folder {path.parent} does not exist; create it or give "
            "another path"
        )
    return EXPORT_SUFFIXES[suffix]
