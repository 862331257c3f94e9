"""``pht station check``: what a station's datasets hold, column by column, for its operator.

Before any study runs, the operator checks that each dataset reads as intended: for a
file the columns it holds, for a PostgreSQL table or view the columns the station can
read, for an OMOP cohort the mapped columns (:mod:`pht.station.omop`). Per column: its
type, how many values are there and how many are missing; and whether the policy
allows it. Columns the station does not read (a type it does not know) are listed with
the fix. This runs on the station's machine only: its counts are the operator's own
view and never leave the station.

A dataset that cannot be read is one line naming the station, the dataset and the fix
(:class:`DatasetCheck.problem`); the other datasets are checked all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pht.datasources import DatabaseSource
from pht.errors import DataError
from pht.station.policy import Policy


@dataclass(frozen=True)
class ColumnCheck:
    """One column: type, values present, values missing, whether the policy allows it."""

    name: str
    type: str
    values: int
    missing: int
    allowed: bool

    @property
    def missing_share(self) -> float:
        """Missing values as a share of all rows (0 for an empty dataset)."""
        total = self.values + self.missing
        return self.missing / total if total else 0.0


@dataclass(frozen=True)
class DatasetCheck:
    """One dataset: where it is read from, its rows and columns, or why it cannot be."""

    station: str
    dataset: str
    source: str
    rows: int = 0
    columns: tuple[ColumnCheck, ...] = ()
    unread: tuple[str, ...] = ()
    problem: str | None = None
    absent: tuple[str, ...] = ()
    """Columns the policy allows that the dataset does not have."""

    def lines(self) -> list[str]:
        """The check as plain text lines (a table per dataset)."""
        head = f"station {self.station}, dataset {self.dataset} ({self.source})"
        if self.problem is not None:
            return [f"{head}: cannot be read: {self.problem}"]
        out = [f"{head}: {self.rows} rows"]
        width = max([len(c.name) for c in self.columns] + [6])
        out.append(
            f"  {'column':<{width}}  {'type':<11} {'values':>9} {'missing':>9}  "
            "share   policy"
        )
        for c in self.columns:
            out.append(
                f"  {c.name:<{width}}  {c.type:<11} {c.values:>9} {c.missing:>9}  "
                f"{100 * c.missing_share:5.1f}%  {'allowed' if c.allowed else '-'}"
            )
        for name in self.unread:
            out.append(
                f"  {name:<{width}}  not read: its database type is not one the station "
                "reads; cast it in a view (integer, double precision, text, boolean, "
                "date, timestamp)"
            )
        for name in self.absent:
            out.append(
                f"  {name:<{width}}  absent: the policy allows it but the dataset has "
                "no such column; add it (or a view that has it), or drop it from the "
                "policy"
            )
        return out


def _label(held: Path | DatabaseSource) -> str:
    if isinstance(held, DatabaseSource):
        return held.label()
    return f"{held.suffix.lstrip('.').lower() or 'file'} file"


def check_dataset(
    station: str, dataset: str, held: Path | DatabaseSource, policy: Policy | None
) -> DatasetCheck:
    """Read a dataset whole (on the station's side) and count values per column."""
    from pht.columns import missing, to_numpy
    from pht.station.describe import column_type

    unread: tuple[str, ...] = ()
    try:
        if isinstance(held, DatabaseSource):
            from pht.station.sources import (
                source_schema,
                stream,
                unreadable_columns,
            )

            schema = source_schema(held)
            table = pa.Table.from_batches(list(stream(held, schema.names)))
            unread = tuple(name for name, _ in unreadable_columns(held))
            if held.kind == "omop" and table.num_rows == 0:
                raise DataError(
                    f"{held.where()}: the cohort's concept sets match no patient; "
                    "check condition_concepts and drug_concepts against the "
                    "vocabulary (concept table) and the data"
                )
        else:
            from pht.station.population import read_table

            table = read_table(held)
    except DataError as exc:
        text = str(exc)
        prefix = f"station {station}, dataset {dataset}: "
        return DatasetCheck(
            station,
            dataset,
            _label(held),
            problem=text[len(prefix) :] if text.startswith(prefix) else text,
        )
    entry = policy.for_dataset(dataset) if policy is not None else None
    allowed = set(entry.columns) if entry is not None else set()
    columns = []
    for name in table.column_names:
        values = to_numpy(table.column(name))
        gone = int(missing(values).sum())
        columns.append(
            ColumnCheck(
                name=name,
                type=column_type(table.schema.field(name).type),
                values=len(values) - gone,
                missing=gone,
                allowed=name in allowed,
            )
        )
    present = set(table.column_names) | set(unread)
    return DatasetCheck(
        station,
        dataset,
        _label(held),
        rows=table.num_rows,
        columns=tuple(columns),
        unread=unread,
        absent=tuple(sorted(allowed - present)),
    )


def check_station(
    station: str,
    datasets: Mapping[str, Path | DatabaseSource],
    policy: Policy | None,
    only: str | None = None,
) -> list[DatasetCheck]:
    """Check every dataset of a station (or only ``only``)."""
    return [
        check_dataset(station, name, held, policy)
        for name, held in datasets.items()
        if only is None or name == only
    ]
