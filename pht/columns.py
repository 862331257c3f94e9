"""A dataset's columns on the station side: one NumPy array per column, no pandas.

Missing values follow pandas' conventions, so trains behave as they would on a
DataFrame: NaN in numbers (integers with gaps become float64), None in text and in
booleans with gaps (object arrays).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Columns = dict[str, np.ndarray]


def pd_na() -> Any:
    """Pandas' NA scalar (None when pandas is absent)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return None
    return pd.NA


def missing(values: Any) -> np.ndarray:
    """Boolean mask of missing values (NaN, NaT, None/NaN in object arrays)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "M":
        return np.isnat(values)
    if values.dtype.kind == "O":
        # None, or NaN (the only value not equal to itself), compared in C
        try:
            none = values == None  # noqa: E711 - elementwise, in C
            return np.asarray(none | (values != values), dtype=bool)
        except TypeError:  # a value with no truth (pd.NA): one at a time
            return np.fromiter(
                (
                    v is None or v is pd_na() or (isinstance(v, float) and v != v)
                    for v in values
                ),
                dtype=bool,
                count=values.size,
            )
    return np.zeros(values.shape, dtype=bool)


def numbers(values: np.ndarray) -> np.ndarray:
    """Float64 with NaN for missing values (booleans with gaps arrive as objects)."""
    if values.dtype.kind == "O":
        gaps = missing(values)
        out = np.full(values.shape, np.nan)
        out[~gaps] = values[~gaps].astype(np.float64)
        return out
    return values.astype(np.float64, copy=False)


_NUMPY_NAMES = {"double": "float64", "float": "float32", "halffloat": "float16"}


def to_numpy(column: Any) -> np.ndarray:
    """One pyarrow column as NumPy, without pyarrow's pandas-based conversion.

    (pyarrow's own ``to_numpy``, and any conversion of a Python scalar, import pandas,
    which would double a train's start-up time.) Numbers come from the Arrow buffers
    directly (with gaps: float64 with NaN); dates and timestamps as ``datetime64`` in
    their own unit (NaT for gaps); booleans without gaps as ``bool``; text, booleans
    with gaps and anything else as an object array with None for gaps; dictionary
    columns decoded to their values.
    """
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = column.type
    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = _buffer(array, np.dtype(_NUMPY_NAMES.get(str(kind), str(kind))))
        if not array.null_count:
            return values
        out = values.astype(np.float64)
        out[~_valid(array)] = np.nan
        return out
    if pa.types.is_boolean(kind) and not array.null_count:
        return _valid(array, buffer=1)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        # dates as datetime64 (NaT for gaps), from the buffer: no Python objects
        unit = kind.unit if pa.types.is_timestamp(kind) else "D"
        width = "int32" if pa.types.is_date32(kind) else "int64"
        if pa.types.is_date64(kind):
            unit = "ms"
        values = _buffer(array, np.dtype(width)).astype(f"datetime64[{unit}]")
        if array.null_count:
            values[~_valid(array)] = np.datetime64("NaT")
        return values
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # one Python string per distinct value, not per row
        encoded = array.dictionary_encode()
        labels = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
        codes = _buffer(encoded.indices, np.dtype(str(encoded.indices.type)))
        if array.null_count:
            codes = codes.astype(np.int64)
            codes[~_valid(encoded.indices)] = labels.size - 1
        return labels[codes]
    return np.array(array.to_pylist(), dtype=object)


def _buffer(array: Any, dtype: np.dtype) -> np.ndarray:
    """The values of a fixed-width Arrow array (slots of gaps hold arbitrary values)."""
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    data = np.frombuffer(
        array.buffers()[1], dtype=dtype, count=array.offset + len(array)
    )
    return data[array.offset :].copy()


def _valid(array: Any, buffer: int = 0) -> np.ndarray:
    """Unpack an Arrow bitmap (0: validity, 1: boolean values) to a bool array."""
    bitmap = array.buffers()[buffer]
    if bitmap is None:  # no validity bitmap: every slot holds a value
        return np.ones(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(bool)
