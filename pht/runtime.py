"""The small train runtime: the file contract every executor honours.

A train's ``entrypoint.py`` calls :func:`run_train` with its station-side function.
The executor starts it as::

    python entrypoint.py --input INPUT.json --data DATASET --output OUTDIR

``INPUT.json`` is a :class:`~pht.wire.TrainInput`; ``DATASET`` a Parquet or CSV file
(read-only; only the columns the input names are loaded, as one NumPy array per column
in a :data:`Columns` mapping, with pandas' conventions for missing values: NaN in
numbers, None in text and in booleans with gaps); the runtime writes
``OUTDIR/output.json``, a :class:`~pht.wire.TrainOutput`. A :class:`DisclosureError`
becomes status ``refused``, a :class:`DataError` status ``error`` with its message; any
other exception becomes ``error`` with a generic reason, its traceback going to stderr,
which the station keeps in its own log and never forwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pht.columns import Columns, to_numpy
from pht.errors import DataError, DisclosureError, PhtError
from pht.wire import TrainInput, TrainOutput

# The station side stays light: NumPy and pyarrow only (no pandas import), because a
# station starts one train process per request and the import is most of its start-up.
LocalFunction = Callable[[Columns, TrainInput], Mapping[str, Any]]
OUTPUT_NAME = "output.json"


def read_columns(
    path: Path | Any, columns: Sequence[str], suffix: str | None = None
) -> Columns:
    """Read only ``columns`` of a Parquet or CSV dataset (a path or an open file)."""
    wanted = list(dict.fromkeys(columns))
    suffix = (suffix or Path(str(path)).suffix).lower()
    if not suffix.startswith("."):
        suffix = "." + suffix
    try:
        import pyarrow as pa

        # the system allocator gives memory back (pyarrow's default pool keeps several
        # times a table's size)
        pa.set_memory_pool(pa.system_memory_pool())
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            # ParquetFile, not read_table: read_table imports pyarrow.dataset and with
            # it pandas (double the start-up time)
            parquet = pq.ParquetFile(path)
            names = set(parquet.schema_arrow.names)
            missing_columns = [c for c in wanted if c not in names]
            if missing_columns:
                raise DataError(f"dataset lacks column(s) {', '.join(missing_columns)}")
            # one column at a time: only one column's decoding buffers at once
            out = {
                name: to_numpy(parquet.read(columns=[name], use_threads=False)[0])
                for name in wanted
            }
        elif suffix == ".csv":
            import pyarrow.csv as pacsv

            # text cells "", "NA", "NaN", ... are missing, as pandas reads them
            table = pacsv.read_csv(
                path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
            )
            missing_columns = [c for c in wanted if c not in table.column_names]
            if missing_columns:
                raise DataError(f"dataset lacks column(s) {', '.join(missing_columns)}")
            out = {name: to_numpy(table.column(name)) for name in wanted}
            del table
        else:
            raise DataError(
                f"dataset format '{suffix}' is not supported; use .parquet or .csv"
            )
    except (OSError, ValueError) as exc:
        raise DataError(f"dataset cannot be read ({type(exc).__name__})") from None
    _trim()
    return out


def _trim() -> None:
    """Hand freed heap back to the system (glibc keeps it otherwise); best effort."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _open_data(args: argparse.Namespace) -> tuple[Any, str]:
    """The dataset as given by the executor: a path, or an inherited descriptor."""
    if args.data_fd is not None:
        import os

        return os.fdopen(args.data_fd, "rb", closefd=False), args.data_format
    return args.data, args.data.suffix


def _arguments(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--data-fd", type=int)
    parser.add_argument("--data-format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if args.data is None and args.data_fd is None:
        parser.error("give --data or --data-fd")
    return args


def execute(
    local: LocalFunction, train_input: TrainInput, data: Any, suffix: str | None = None
) -> TrainOutput:
    """Run ``local`` on the dataset and wrap the outcome as a :class:`TrainOutput`."""
    try:
        columns = read_columns(data, train_input.columns, suffix)
        output = dict(local(columns, train_input))
    except DisclosureError as exc:
        return TrainOutput("refused", str(exc))
    except PhtError as exc:
        return TrainOutput("error", str(exc))
    except Exception:  # noqa: BLE001 - the boundary: never leak a traceback upward
        traceback.print_exc(file=sys.stderr)
        return TrainOutput("error", "the train failed with an internal error")
    return TrainOutput("ok", None, output)


def run_train(local: LocalFunction, argv: Sequence[str] | None = None) -> int:
    """Entry point of a single-round train; returns the process exit code."""
    args = _arguments("pht train entrypoint", argv)
    train_input = TrainInput.from_json(args.input.read_bytes())
    data, suffix = _open_data(args)
    result = execute(local, train_input, data, suffix)
    try:
        text = result.to_json()
    except ValueError:
        text = TrainOutput("error", "the train produced a non-finite number").to_json()
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / OUTPUT_NAME).write_text(text, encoding="utf-8")
    return 0 if result.status == "ok" else 3


def dumps(obj: Any) -> str:
    """JSON for train outputs (no NaN/Inf)."""
    return json.dumps(obj, allow_nan=False, sort_keys=True)


class Session:
    """A station-side state kept alive across rounds of an iterative train."""

    def opened(self) -> Mapping[str, Any]:
        """The aggregate returned when the session opens (round 0)."""
        raise PhtError("an iterative train must describe its data when it opens")

    def round(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """Answer one round message with an aggregate."""
        raise PhtError("an iterative train must answer rounds")


OpenFunction = Callable[[Columns, TrainInput], Session]


def _answer(call: Callable[[], Mapping[str, Any]]) -> TrainOutput:
    try:
        return TrainOutput("ok", None, dict(call()))
    except DisclosureError as exc:
        return TrainOutput("refused", str(exc))
    except PhtError as exc:
        return TrainOutput("error", str(exc))
    except Exception:  # noqa: BLE001 - the boundary: never leak a traceback upward
        traceback.print_exc(file=sys.stderr)
        return TrainOutput("error", "the train failed with an internal error")


def _send(channel: Any, output: TrainOutput) -> None:
    try:
        text = output.to_json()
    except ValueError:
        text = TrainOutput("error", "the train produced a non-finite number").to_json()
    channel.write(text.encode("utf-8") + b"\n")
    channel.flush()


def run_session(open_session: OpenFunction, argv: Sequence[str] | None = None) -> int:
    """Entry point of an iterative train: one process for all rounds.

    The protocol runs over the process's original stdin/stdout, one JSON document per
    line: the train first writes a :class:`TrainOutput` for opening the session, then
    answers each line it reads (``{"op": ..., ...}``) with one :class:`TrainOutput`
    line, until stdin closes or ``{"op": "close"}`` arrives. The train's own ``print``
    goes to stderr, so it cannot corrupt the protocol.
    """
    args = _arguments("pht iterative train entrypoint", argv)
    import os

    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    train_input = TrainInput.from_json(args.input.read_bytes())
    state: list[Session] = []

    def opened() -> Mapping[str, Any]:
        data, suffix = _open_data(args)
        # no local reference: the session may drop the raw columns once it has its own
        state.append(
            open_session(read_columns(data, train_input.columns, suffix), train_input)
        )
        return state[0].opened()

    first = _answer(opened)
    _send(channel, first)
    if first.status != "ok":
        return 3
    for line in sys.stdin.buffer:
        try:
            message = json.loads(line)
        except ValueError:
            _send(channel, TrainOutput("error", "round message is not valid JSON"))
            continue
        if not isinstance(message, dict) or message.get("op") == "close":
            break
        _send(channel, _answer(partial(state[0].round, message)))
    if argv is None:
        # a train process: every answer is flushed, so skip the interpreter's
        # teardown of NumPy and pyarrow (a tenth of a second per station)
        sys.stderr.flush()
        channel.close()
        os._exit(0)
    return 0
