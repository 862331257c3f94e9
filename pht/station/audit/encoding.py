"""The pinned text encodings of the audit files: canonical JSON, times, one-liners.

These are part of the file format: a log written today must verify in ten years, so
nothing here may change without a new format version.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pht.errors import AuditError
from pht.timefmt import TimeFormatError, format_micros_z, parse_utc

__all__ = ["canonical", "format_time", "one_line", "parse_time"]


def canonical(obj: Any) -> bytes:
    """Encode canonical JSON: sorted keys, ``,``/``:`` separators, UTF-8, no NaN.

    Examples
    --------
    >>> canonical({"b": 1, "a": "é"}).decode()
    '{"a":"é","b":1}'
    """
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def format_time(when: datetime) -> str:
    """Format an aware time as UTC ISO 8601 with microseconds (``...00.000001Z``).

    This is :func:`pht.timefmt.format_micros_z`, pinned by the file format.
    """
    if when.tzinfo is None:
        raise AuditError("the audit clock returned a naive time; give it a time zone")
    return format_micros_z(when)


def parse_time(text: str, what: str) -> datetime:
    """Parse ISO 8601 as an aware UTC time; naive times are taken as UTC.

    AuditError names ``what``.
    """
    try:
        return parse_utc(text, naive_as_utc=True)
    except TimeFormatError as exc:
        raise AuditError(f"{what} {exc}: {text!r}") from None


def one_line(value: object, what: str) -> str:
    """Return ``value`` if it is a non-empty string without newlines."""
    if not isinstance(value, str) or not value or "\n" in value:
        raise AuditError(f"{what} must be a non-empty one-line string, got {value!r}")
    return value
