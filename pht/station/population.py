"""Dataset extraction: one fixed analysis population per dataset, and what a train sees.

Every request on a dataset analyses the same rows: those complete on every column the
policy allows (that the dataset has). So no request can change who is analysed: not
a covariate with one missing value, not the event or group column, not another train
(differencing by inclusion). The station reads the dataset itself, never the train:

* :func:`load_population` reads the allowed columns once (cached per file version),
  keeps the complete rows, and computes what the output guard needs from the station's
  own data: the population size (the bound of every released integer) and, per column,
  the values held by at least ``k`` rows (the only labels an output may carry);
* :meth:`Population.extract` writes just the columns a request needs, of the
  population's rows, to a Parquet file in the run folder: the train's only input;
* :class:`GridStore` computes the station's time grid per time column once
  (:func:`pht.algorithms.disclosure.station_grid`), keeps it in the station's folder
  and only ever coarsens it when the data change.

Errors are :class:`~pht.errors.DataError` with data-free messages (the station maps
them to fixed refusal codes); the cause goes to the station's own log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pht.algorithms.disclosure import merge_until_safe, station_grid
from pht.columns import missing, to_numpy
from pht.errors import DataError

log = logging.getLogger(__name__)

MAX_LABELS_PER_COLUMN = 200


def read_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a Parquet or CSV dataset (only ``columns`` when given)."""
    if not path.is_file():
        raise DataError("the dataset file is missing or not a regular file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            wanted = [c for c in (columns or names) if c in names]
            return parquet.read(columns=wanted, use_threads=False)
        if suffix == ".csv":
            table = pacsv.read_csv(
                path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
            )
            if columns is None:
                return table
            return table.select([c for c in columns if c in table.column_names])
    except (OSError, pa.ArrowException, ValueError) as exc:
        log.warning("dataset %s cannot be read: %s", path, exc)
        raise DataError("the dataset cannot be read as its format") from None
    raise DataError("the dataset format is not supported (use .parquet or .csv)")


def dataset_schema(path: Path) -> pa.Schema:
    """The column types of a Parquet or CSV dataset."""
    if path.is_file() and path.suffix.lower() == ".parquet":
        try:
            return pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            log.warning("dataset %s cannot be read: %s", path, exc)
            raise DataError("the dataset cannot be read as its format") from None
    return read_table(path).schema


def _labels(values: np.ndarray) -> list[str]:
    """Labels as the trains write them (``str`` of each value)."""
    return [str(v) for v in values.astype(object).tolist()]


def _is_binary(values: np.ndarray) -> bool:
    if values.dtype.kind == "b":
        return True
    if values.dtype.kind not in "iuf":
        return False
    return bool(np.all(np.isin(values, (0, 1))))


@dataclass(frozen=True)
class Population:
    """The fixed analysis population of one dataset under one policy entry."""

    table: pa.Table
    n: int
    excluded: int
    labels: Mapping[str, frozenset[str]]
    rows: np.ndarray | None = None
    """Sorted 64-bit hashes of the population's whole rows (every column of the
    file), the identity of this version of the population."""

    def column(self, name: str) -> np.ndarray:
        """One column of the population as NumPy (pandas' missing conventions)."""
        return to_numpy(self.table.column(name))

    def all_labels(self, columns: Sequence[str]) -> frozenset[str]:
        """The labels (>= k rows) of ``columns``, plus the single-group label."""
        out: set[str] = {"all"}
        for column in columns:
            out |= self.labels.get(column, frozenset())
        return frozenset(out)

    def binary_columns(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that hold only 0/1 (or booleans) in the population."""
        return [
            c
            for c in names
            if c in self.table.column_names and _is_binary(self.column(c))
        ]

    def extract(self, columns: Sequence[str], dest: Path) -> Path:
        """Write only ``columns`` of the population's rows to ``dest`` (Parquet)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.table.select(list(dict.fromkeys(columns))), dest)
        os.chmod(dest, 0o640)
        return dest


_CACHE: dict[tuple[object, ...], Population] = {}
_LOCK = threading.Lock()


def load_population(path: Path, columns: Sequence[str], k: int) -> Population:
    """The rows of ``path`` complete on every allowed column, with label sets.

    Cached per (file, size, modification time, columns, k).
    """
    try:
        stat = path.stat()
    except OSError:
        raise DataError("the dataset file is missing or not a regular file") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, tuple(columns), k)
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    table = read_table(path, sorted(set(columns)))
    total = table.num_rows
    keep = np.ones(total, dtype=bool)
    arrays = {}
    for name in table.column_names:
        values = to_numpy(table.column(name))
        arrays[name] = values
        keep &= ~missing(values)
    table = table.filter(pa.array(keep)) if not keep.all() else table
    rows = _row_hashes(path, keep)
    labels: dict[str, frozenset[str]] = {}
    for name, values in arrays.items():
        kept = _labels(values[keep])
        counts: dict[str, int] = {}
        for label in kept:
            counts[label] = counts.get(label, 0) + 1
        frequent = sorted(lab for lab, c in counts.items() if c >= k)
        if len(frequent) <= MAX_LABELS_PER_COLUMN:
            labels[name] = frozenset(frequent)
    population = Population(
        table=table,
        n=int(keep.sum()),
        excluded=int(total - keep.sum()),
        labels=labels,
        rows=rows,
    )
    with _LOCK:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = population
    return population


def _row_hashes(path: Path, keep: np.ndarray) -> np.ndarray:
    """Sorted hashes of the kept rows over every column of the file."""
    import pandas as pd

    frame = read_table(path).to_pandas()
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return np.sort(hashes[keep]).astype(np.uint64)


def changed_rows(old: np.ndarray, new: np.ndarray) -> tuple[int, int]:
    """(added, removed) rows between two sorted multisets of row hashes."""
    a_values, a_counts = np.unique(old, return_counts=True)
    b_values, b_counts = np.unique(new, return_counts=True)
    common, ia, ib = np.intersect1d(a_values, b_values, return_indices=True)
    kept = np.minimum(a_counts[ia], b_counts[ib]).sum()
    return int(new.size - kept), int(old.size - kept)


class VersionStore:
    """The last released version of each dataset file's population, kept on disk.

    A new version is released only when, against the last one, no rows were added
    or at least ``k`` were, and no rows were removed or at least ``k`` were (a changed
    row counts as one removed and one added): two releases can never be differenced
    down to fewer than ``k`` patients joining, leaving or changing.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def admit(self, path: Path, population: Population, k: int) -> bool:
        """Whether ``population`` may be released (it becomes the kept version)."""
        import hashlib

        if population.rows is None:
            return False
        name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
        store = self.folder / f"{name}.npy"
        with self._lock:
            if store.is_file():
                try:
                    old = np.load(store, allow_pickle=False)
                except (OSError, ValueError):
                    return False  # fail closed: an unreadable version
                added, removed = changed_rows(old, population.rows)
                if added == removed == 0:
                    return True
                if 0 < added < k or 0 < removed < k:
                    return False
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{name}.tmp.npy"
            np.save(tmp, population.rows, allow_pickle=False)
            os.replace(tmp, store)
            return True


class GridStore:
    """The station's released time grid per (dataset, time column), kept on disk.

    A kept grid is reused while it still meets the rule on the current population;
    when the data change so that it does not, its intervals are merged further (never
    split), so a released interval is always a union of earlier ones.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def _path(self, dataset: str, column: str) -> Path:
        return self.folder / f"{dataset}.{column}.json"

    def grid(
        self,
        dataset: str,
        population: Population,
        time_column: str,
        event_columns: Sequence[str],
        *,
        k: int,
        step: float,
    ) -> np.ndarray | None:
        """The station boundaries for ``time_column``, or None when none is safe."""
        time = np.asarray(population.column(time_column), dtype=np.float64)
        events = [
            np.asarray(population.column(c), dtype=np.float64) for c in event_columns
        ]
        path = self._path(dataset, time_column)
        with self._lock:
            kept = None
            if path.is_file():
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    kept = np.asarray(data["boundaries"], dtype=np.float64)
                except (OSError, ValueError, KeyError, TypeError):
                    kept = None
            if kept is not None and kept.size and time.size:
                grid = merge_until_safe(kept, time, events, k=k)
            else:
                grid = station_grid(time, events, k=k, step=step)
            if grid is None:
                return None
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"boundaries": grid.tolist()}), encoding="utf-8")
            os.replace(tmp, path)
            return grid
