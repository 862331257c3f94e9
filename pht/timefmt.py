"""UTC timestamps: the clock, one parser, and the named text formats pht writes.

Several formats are part of signed or hashed bytes (identity files, signed requests,
train statements and receipts, audit records and checkpoints), so each keeps the exact
text it has always had, under its own name. Never change a format; add a new one.

The formats::

    format_seconds_z       2026-01-31T12:00:00Z            identity created
    format_iso_z           2026-01-31T12:00:00Z            request issued_at and
                           2026-01-31T12:00:00.000001Z     expires_at, train
                           (microseconds when non-zero)    signed_at, keyrings
    format_micros_z        2026-01-31T12:00:00.000000Z     audit records and
                                                           checkpoints
    format_iso_offset      2026-01-31T12:00:00+00:00       receipt time
                           (microseconds when non-zero)
    format_seconds_offset  2026-01-31T12:00:00+00:00       result.json created

Every formatter takes an aware time, converts it to UTC and refuses a naive one.
:func:`parse_utc` reads all of them (and any ISO 8601 time with an offset) back into
an aware UTC time; callers turn its :class:`TimeFormatError` into their own error type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

__all__ = [
    "MAX_CHARS",
    "TimeFormatError",
    "format_iso_offset",
    "format_iso_z",
    "format_micros_z",
    "format_seconds_offset",
    "format_seconds_z",
    "parse_utc",
    "utc_now",
]

MAX_CHARS: Final = 40
"""Longest text :func:`parse_utc` reads (the longest ISO time with an offset is 32)."""


class TimeFormatError(ValueError):
    """A text is not a usable UTC time; ``str()`` is the problem, without the value.

    One of ``is not an ISO 8601 time``, ``has no time zone``, ``is out of range``:
    callers prefix what was being read, e.g. ``f"request issued_at {exc}"``.
    """


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def _utc(when: datetime) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise ValueError(f"expected a time with a time zone, got {when!r}")
    return when.astimezone(UTC)


def format_seconds_z(when: datetime) -> str:
    """UTC to the second, ``Z`` suffix (identity files).

    Examples
    --------
    >>> format_seconds_z(datetime(2026, 1, 31, 12, 0, 0, 7, tzinfo=UTC))
    '2026-01-31T12:00:00Z'
    """
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_iso_z(when: datetime) -> str:
    """UTC ISO 8601, microseconds only when non-zero, ``Z`` suffix (signed fields).

    Examples
    --------
    >>> format_iso_z(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
    '2026-01-31T12:00:00Z'
    >>> format_iso_z(datetime(2026, 1, 31, 12, 0, 0, 1, tzinfo=UTC))
    '2026-01-31T12:00:00.000001Z'
    """
    return _utc(when).isoformat().replace("+00:00", "Z")


def format_micros_z(when: datetime) -> str:
    """UTC with always six digits of microseconds, ``Z`` suffix (audit files).

    Examples
    --------
    >>> format_micros_z(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
    '2026-01-31T12:00:00.000000Z'
    """
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_iso_offset(when: datetime) -> str:
    """UTC ISO 8601, microseconds only when non-zero, ``+00:00`` suffix (receipts).

    Examples
    --------
    >>> format_iso_offset(datetime(2026, 1, 31, 12, 0, 0, 1, tzinfo=UTC))
    '2026-01-31T12:00:00.000001+00:00'
    """
    return _utc(when).isoformat()


def format_seconds_offset(when: datetime) -> str:
    """UTC to the second, ``+00:00`` suffix (``result.json``).

    Examples
    --------
    >>> format_seconds_offset(datetime(2026, 1, 31, 12, 0, 0, 7, tzinfo=UTC))
    '2026-01-31T12:00:00+00:00'
    """
    return _utc(when).isoformat(timespec="seconds")


def parse_utc(text: object, *, naive_as_utc: bool = False) -> datetime:
    """Read an ISO 8601 time (``Z`` or an offset) as an aware UTC time.

    Parameters
    ----------
    text
        The text; anything that is not a string of 1 to :data:`MAX_CHARS` characters
        is refused.
    naive_as_utc
        Take a time without a time zone as UTC (audit files, auditors' bounds)
        instead of refusing it.

    Raises
    ------
    TimeFormatError
        Not an ISO 8601 time, no time zone (unless ``naive_as_utc``), or a time that
        is out of range once converted to UTC.

    Examples
    --------
    >>> parse_utc("2026-01-31T14:00:00.5+02:00").isoformat()
    '2026-01-31T12:00:00.500000+00:00'
    """
    # "Z" only as the suffix: Python also takes it as the date-time separator
    if not isinstance(text, str) or not 0 < len(text) <= MAX_CHARS or "Z" in text[:-1]:
        raise TimeFormatError("is not an ISO 8601 time")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise TimeFormatError("is not an ISO 8601 time") from None
    if when.tzinfo is None:
        if not naive_as_utc:
            raise TimeFormatError("has no time zone")
        return when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except (OverflowError, ValueError):  # 0001-01-01T00:00+01:00 is before year 1
        raise TimeFormatError("is out of range") from None
