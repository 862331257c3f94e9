"""In-memory indexes over the committed records, for cheap per-request reads.

The station reads its own log at every request (query budgets, replays), so the
writer keeps the records in memory, in lists that only grow, indexed by event,
request id and nonce (``details["nonce"]``). A :class:`RecordView` is a fixed-length
window on such a list: O(1) to make, no copy, and unaffected by later appends.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import overload

from pht.station.audit.records import AuditRecord

__all__ = ["RecordIndex", "RecordView"]

_EMPTY: list[AuditRecord] = []


class RecordView(Sequence[AuditRecord]):
    """The first ``length`` items of an append-only list, read-only, oldest first."""

    __slots__ = ("_items", "_length")

    def __init__(self, items: list[AuditRecord], length: int) -> None:
        self._items = items
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> AuditRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[AuditRecord]: ...

    def __getitem__(self, index: int | slice) -> AuditRecord | list[AuditRecord]:
        if isinstance(index, slice):
            return [self._items[i] for i in range(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"record view index out of range (0..{self._length})")
        return self._items[index]

    def __iter__(self) -> Iterator[AuditRecord]:
        return itertools.islice(self._items, self._length)

    def __reversed__(self) -> Iterator[AuditRecord]:
        return (self._items[i] for i in range(self._length - 1, -1, -1))

    def __repr__(self) -> str:
        return f"RecordView({self._length} records)"


class RecordIndex:
    """All committed records plus lists by event, request id and nonce.

    Not thread-safe for writers: the log adds records under its own lock. Readers
    may take views at any time (lists only grow, and a view fixes its length).
    """

    def __init__(self) -> None:
        self._all: list[AuditRecord] = []
        self._by_event: dict[str, list[AuditRecord]] = {}
        self._by_request: dict[str, list[AuditRecord]] = {}
        self._by_nonce: dict[str, list[AuditRecord]] = {}

    def add(self, record: AuditRecord) -> None:
        """Index one newly committed record (seq must be the next one)."""
        self._by_event.setdefault(record.event, []).append(record)
        if record.request_id is not None:
            self._by_request.setdefault(record.request_id, []).append(record)
        nonce = record.details.get("nonce")
        if isinstance(nonce, str):
            self._by_nonce.setdefault(nonce, []).append(record)
        self._all.append(record)  # last: a view of all never sees a half-indexed one

    def __len__(self) -> int:
        return len(self._all)

    def all(self) -> RecordView:
        """Every record."""
        return RecordView(self._all, len(self._all))

    def by_event(self, event: str) -> RecordView:
        """The records of one event."""
        return _view(self._by_event.get(event))

    def by_request(self, request_id: str) -> RecordView:
        """The records naming ``request_id``."""
        return _view(self._by_request.get(request_id))

    def by_nonce(self, nonce: str) -> RecordView:
        """The records whose ``details["nonce"]`` is ``nonce``."""
        return _view(self._by_nonce.get(nonce))


def _view(items: list[AuditRecord] | None) -> RecordView:
    return RecordView(_EMPTY, 0) if items is None else RecordView(items, len(items))
