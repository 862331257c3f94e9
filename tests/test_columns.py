"""The station-side column reader: same values as pyarrow's own conversion, no pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pht.columns import missing, numbers, to_numpy
from pht.runtime import read_columns

ARRAYS = {
    "bool_gaps": pa.array([True, None, False]),
    "int_gaps": pa.array([1, None, 3, 5] * 1000),
    "text_gaps": pa.array(["a", None] * 10),
    "bool": pa.array([True, False, True] * 50),
    "float_gaps": pa.array([1.5, None] * 7),
    "int32": pa.array([1, 2], type=pa.int32()),
    "dictionary": pa.array(["a", "b", None]).dictionary_encode(),
    "int_slice": pa.array(list(range(1, 12))).slice(1, 9),
    "bool_slice": pa.array([True, False, True, True, False, True, None] * 3).slice(
        3, 8
    ),
    "empty": pa.array([], type=pa.float64()),
    "int8_gaps_slice": pa.array([1, None, 3] * 5, type=pa.int8()).slice(2, 9),
    "chunked": pa.chunked_array([[1.0, 2.0], [None, 4.0]]),
}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return all(
        x == y or (x != x and y != y) or (x is None and y is None)  # noqa: PLR0124
        for x, y in zip(a.tolist(), b.tolist(), strict=True)
    )


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_to_numpy_equals_pyarrow(name: str, tmp_path: Path) -> None:
    column = ARRAYS[name]
    if isinstance(column, pa.ChunkedArray):
        table = pa.Table.from_batches(
            [pa.record_batch([chunk], names=[name]) for chunk in column.chunks]
        )
    else:
        table = pa.table({name: column})
    pq.write_table(table, tmp_path / "x.parquet")
    read = pq.ParquetFile(tmp_path / "x.parquet").read().column(name)
    if pa.types.is_dictionary(read.type):
        reference = read.cast(read.type.value_type).to_numpy()
    else:
        reference = read.to_numpy()
    assert same(to_numpy(read), reference)
    assert same(to_numpy(column), reference)


def test_missing_and_numbers() -> None:
    values = np.array([1.0, np.nan, 3.0])
    assert missing(values).tolist() == [False, True, False]
    objects = np.array([True, None, float("nan"), "x"], dtype=object)
    assert missing(objects).tolist() == [False, True, True, False]
    assert missing(np.array([1, 2])).tolist() == [False, False]
    assert np.isnan(numbers(np.array([True, None], dtype=object))).tolist() == [
        False,
        True,
    ]


def test_reading_a_dataset_does_not_import_pandas(tmp_path: Path) -> None:
    """A train process starts per request: pandas would double its start-up time."""
    pq.write_table(
        pa.table(
            {
                "t": [1.0, None],
                "e": [1, 0],
                "g": pa.array(["a", "b"]).dictionary_encode(),
            }
        ),
        tmp_path / "d.parquet",
    )
    code = (
        "import sys\n"
        f"from pht.runtime import read_columns\n"
        f"cols = read_columns({str(tmp_path / 'd.parquet')!r}, ['t', 'e', 'g'])\n"
        "assert cols['g'].tolist() == ['a', 'b'], cols\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    assert read_columns(tmp_path / "d.parquet", ["t"])["t"].dtype == np.float64


def test_csv_missing_text_is_missing_as_in_pandas(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("t,g\n1,x\n2,NA\n3,\n4,y\n")
    columns = read_columns(path, ["t", "g"])
    assert columns["g"].tolist() == ["x", None, None, "y"]
    assert missing(columns["g"]).tolist() == [False, True, True, False]
    assert columns["t"].dtype == np.int64
