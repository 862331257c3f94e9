"""Dataset extraction: one fixed analysis population per dataset, and what a train sees.

Every request on a dataset analyses the same rows: those complete on every column the
policy allows (that the dataset has). So no request can change who is analysed: not
a covariate with one missing value, not the event or group column, not another train
(differencing by inclusion). The station reads the dataset itself, never the train:

* :func:`load_population` reads the allowed columns once (cached per file version),
  keeps the complete rows, and computes what the output guard needs from the station's
  own data: the population size (the bound of every released integer) and, per column,
  the values held by at least ``k`` rows (the only labels an output may carry), as
  canonical labels (:mod:`pht.algorithms.levels`: ``1`` for both 1 and 1.0);
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
from pht.algorithms.levels import labels as canonical_labels
from pht.columns import missing, to_numpy
from pht.datasources import DatabaseSource
from pht.errors import DataError

log = logging.getLogger(__name__)

MAX_LABELS_PER_COLUMN = 200


def read_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a Parquet or CSV dataset (only ``columns`` when given).

    A CSV file with a header and no rows is refused as such: its columns would have
    no type (pyarrow reads them as ``null``), which is not the requester's mistake.
    The messages are data-free; the path and the fix go to the station's log.
    """
    if path.is_dir():
        log.warning("dataset %s is a folder; point 'path' at the data file", path)
        raise DataError("the dataset path is a folder, not a file")
    if not path.is_file():
        log.warning("dataset %s is missing; fix 'path' in the network file", path)
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
            if table.num_rows == 0:
                log.warning(
                    "dataset %s has a header but no rows; export the data again", path
                )
                raise DataError("the dataset file has no rows")
            if columns is None:
                return table
            return table.select([c for c in columns if c in table.column_names])
    except (OSError, pa.ArrowException, ValueError) as exc:
        log.warning("dataset %s cannot be read: %s", path, exc)
        raise DataError("the dataset cannot be read as its format") from None
    raise DataError("the dataset format is not supported (use .parquet or .csv)")


_SCHEMAS: dict[tuple[str, int, int], pa.Schema] = {}


def dataset_schema(path: Path | DatabaseSource) -> pa.Schema:
    """The column types of a Parquet or CSV dataset, or of a database source.

    Kept per file version (path, size, modification time): a CSV's types are inferred
    from the whole file once, not on every request, so how long a describe request
    takes does not follow the number of rows. A database source is asked with a query
    that returns no row (:func:`pht.station.sources.source_schema`).
    """
    if isinstance(path, DatabaseSource):
        from pht.station.sources import source_schema

        return source_schema(path)
    try:
        info = path.stat()
    except OSError:
        return _read_schema(path)  # says what is wrong with the path
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
    schema = _SCHEMAS.get(key)
    if schema is None:
        schema = _read_schema(path)
        if len(_SCHEMAS) > 256:
            _SCHEMAS.clear()
        _SCHEMAS[key] = schema
    return schema


def _read_schema(path: Path) -> pa.Schema:
    if path.is_file() and path.suffix.lower() == ".parquet":
        try:
            return pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            log.warning("dataset %s cannot be read: %s", path, exc)
            raise DataError("the dataset cannot be read as its format") from None
    return read_table(path).schema


def _frequent_labels(values: np.ndarray, k: int) -> frozenset[str] | None:
    """The labels held by at least ``k`` rows, or None (too many, or mixed types).

    Labels are as the trains write them (canonical: ``1`` for both 1 and 1.0); None
    when there are more than :data:`MAX_LABELS_PER_COLUMN` or the column mixes value
    types. Numbers are counted per value before labelling (distinct numbers have distinct
    labels), so a time column of many values costs one ``np.unique``.
    """
    try:
        if values.dtype.kind in "biuf":
            unique, counts = np.unique(values, return_counts=True)
            frequent = canonical_labels(unique[counts >= k])[0].tolist()
        else:
            named = canonical_labels(values)[0]
            unique, counts = np.unique(named.astype(str), return_counts=True)
            frequent = unique[counts >= k].tolist()
    except DataError:
        return None
    if len(frequent) > MAX_LABELS_PER_COLUMN:
        return None
    return frozenset(str(label) for label in frequent)


def _is_text(dtype: pa.DataType) -> bool:
    """Whether a column holds text (plain or dictionary-encoded)."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


def _frequent_text_labels(column: pa.ChunkedArray, k: int) -> frozenset[str] | None:
    """:func:`_frequent_labels` of a text column without gaps, counted by Arrow.

    Counts per distinct text, summed per canonical label (one label for the same
    text composed or decomposed), as :func:`_frequent_labels` counts the labelled
    rows; no Python object per row.
    """
    from collections import Counter

    import pyarrow.compute as pc

    from pht.algorithms.levels import label_of

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    counted = pc.value_counts(column)
    per_label: Counter[str] = Counter()
    for value, count in zip(
        counted.field("values").to_pylist(),
        counted.field("counts").to_pylist(),
        strict=True,
    ):
        per_label[label_of(value)] += int(count)
    frequent = [label for label, count in per_label.items() if count >= k]
    if len(frequent) > MAX_LABELS_PER_COLUMN:
        return None
    return frozenset(frequent)


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
    # one column as NumPy at a time (a text column as objects is several times its
    # Arrow size): the station's peak memory stays near the Arrow table's
    for name in table.column_names:
        column = table.column(name)
        if _is_text(column.type):  # gaps are nulls: no Python objects needed
            keep &= ~to_numpy(column.is_null())
        else:
            keep &= ~missing(to_numpy(column))
    table = table.filter(pa.array(keep)) if not keep.all() else table
    labels: dict[str, frozenset[str]] = {}
    for name in table.column_names:
        column = table.column(name)
        if _is_text(column.type):
            frequent = _frequent_text_labels(column, k)
        else:
            frequent = _frequent_labels(to_numpy(column), k)
        if frequent is not None:
            labels[name] = frequent
    population = Population(
        table=table,
        n=int(keep.sum()),
        excluded=int(total - keep.sum()),
        labels=labels,
    )
    with _LOCK:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = population
    return population


def row_hashes(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """Sorted 64-bit hashes of the rows over ``columns`` (in sorted order).

    Values are normalised first (numbers and booleans as float64, everything else as
    text), so a re-export that changes column order, numeric width or adds columns
    outside ``columns`` does not change a row's hash.
    """
    import pandas as pd

    data = {}
    for name in sorted(columns):
        values = to_numpy(table.column(name))
        if values.dtype.kind in "biuf":
            data[name] = np.asarray(values, dtype=np.float64)
        else:
            data[name] = np.asarray([str(v) for v in values.tolist()], dtype=object)
    frame = pd.DataFrame(data)
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return np.sort(hashes).astype(np.uint64)


def changed_rows(old: np.ndarray, new: np.ndarray) -> tuple[int, int]:
    """(added, removed) rows between two sorted multisets of row hashes."""
    a_values, a_counts = np.unique(old, return_counts=True)
    b_values, b_counts = np.unique(new, return_counts=True)
    _, ia, ib = np.intersect1d(a_values, b_values, return_indices=True)
    kept = np.minimum(a_counts[ia], b_counts[ib]).sum()
    return int(new.size - kept), int(old.size - kept)


def version_digest(columns: Sequence[str], hashes: np.ndarray) -> str:
    """The identity of a population version (its columns and row hashes)."""
    import hashlib

    h = hashlib.sha256(("\x1f".join(sorted(columns)) + "\x00").encode())
    h.update(np.ascontiguousarray(hashes, dtype="<u8").tobytes())
    return "sha256:" + h.hexdigest()


class VersionStore:
    """Every released version of each dataset's population, kept on disk.

    A new version is released only when, against **every** earlier released version
    of the dataset, no rows were added or at least ``k`` were, and no rows were
    removed or at least ``k`` were (a changed row counts as one removed and one
    added); so no chain of releases, each far enough from the last, can be differenced
    down to fewer than ``k`` patients. Rows are compared on the columns the earlier
    version was hashed on (a policy that adds a column is compared on the old ones),
    normalised (see :func:`row_hashes`). History is kept per dataset name, whatever
    file the name points at. The audit log records every released version's digest;
    the station refuses when a version the log names is missing here.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._memo: dict[
            tuple[int, tuple[str, ...]], tuple[Population, np.ndarray]
        ] = {}

    def _hashes(self, population: Population, columns: Sequence[str]) -> np.ndarray:
        """Row hashes of a (cached) population, computed once per column set."""
        key = (id(population), tuple(columns))
        hit = self._memo.get(key)
        if hit is not None and hit[0] is population:
            return hit[1]
        if len(self._memo) > 16:
            self._memo.clear()
        hashes = row_hashes(population.table, columns)
        self._memo[key] = (population, hashes)
        return hashes

    def _folder(self, dataset: str) -> Path:
        import hashlib

        return self.folder / hashlib.sha256(dataset.encode()).hexdigest()[:32]

    def _kept(self, dataset: str) -> list[tuple[list[str], np.ndarray, str]]:
        kept = []
        folder = self._folder(dataset)
        for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            data = json.loads(meta.read_text(encoding="utf-8"))
            hashes = np.load(meta.with_suffix(".npy"), allow_pickle=False)
            kept.append((list(data["columns"]), hashes, str(data["digest"])))
        return kept

    def admit(
        self,
        dataset: str,
        population: Population,
        k: int,
        logged: frozenset[str] = frozenset(),
    ) -> str | None:
        """The version's digest if ``population`` may be released, else None.

        ``logged`` are the version digests the audit log says were released; one that
        is not kept here means the store was removed or rolled back: refuse.
        """
        columns = sorted(population.table.column_names)
        with self._lock:
            try:
                kept = self._kept(dataset)
            except (OSError, ValueError, KeyError, TypeError):
                return None  # fail closed: an unreadable history
            if not logged <= {digest for _, _, digest in kept}:
                log.warning(
                    "dataset %s: the audit log names released versions that the "
                    "version store (%s) does not hold; restore it from a backup",
                    dataset,
                    self.folder,
                )
                return None
            mine: np.ndarray | None = None
            for old_columns, old, digest in kept:
                if not set(old_columns) <= set(population.table.column_names):
                    return None
                hashes = self._hashes(population, old_columns)
                if old_columns == columns:
                    mine = hashes
                added, removed = changed_rows(old, hashes)
                if added == removed == 0 and old_columns == columns:
                    return digest
                if 0 < added < k or 0 < removed < k:
                    return None
            if mine is None:
                mine = self._hashes(population, columns)
            digest = version_digest(columns, mine)
            folder = self._folder(dataset)
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{len(kept):06d}"
            tmp = folder / f".{stem}.tmp.npy"
            np.save(tmp, mine, allow_pickle=False)
            os.chmod(tmp, 0o600)  # row hashes stay the station operator's
            os.replace(tmp, folder / f"{stem}.npy")
            meta = folder / f".{stem}.tmp.json"
            meta.write_text(
                json.dumps({"columns": columns, "digest": digest}), encoding="utf-8"
            )
            os.replace(meta, folder / f"{stem}.json")
            return digest


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
