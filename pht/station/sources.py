"""Reading database sources: schema, streamed batches, the station's snapshot, checks.

A database dataset (:class:`pht.datasources.DatabaseSource`) is read by the station
only, as the read-only role its DSN names, and only the columns the policy allows:

* :func:`source_schema`: the Arrow schema of the table, view or cohort, from a query
  that returns no row (``LIMIT 0``): no data is read for a describe request or an
  admission check;
* :func:`stream`: the rows of the allowed columns through a server-side cursor, in
  batches of :data:`BATCH_ROWS`, as Arrow record batches;
* :func:`snapshot`: those batches written incrementally to a Parquet file in the
  station's own folder (owner-only). The file is replaced only when its content
  changed, so the population cache (:func:`pht.station.population.load_population`,
  keyed by file version) holds while the database does not change. From here on a
  database dataset is read exactly like a Parquet one: one population per source,
  the train's extract written from it, read-only, into the run folder; the train
  never sees the DSN or the database;
* :func:`check_columns`: per column, non-missing values and missingness, for the
  operator's ``pht station check``.

The DSN is read from the station-side file or environment variable at connect time,
never logged, never part of an error message or audit record. Messages name the
station, dataset, the source's kind and table (:meth:`DatabaseSource.label`) and the
fix. A database that is down or slow (``connect_timeout``, ``statement_timeout``)
raises :class:`SourceUnavailable`; the station answers that request with the fixed
code ``source`` and keeps serving its other datasets.

``statement_timeout`` is enforced by the server; a server that stops answering
(a frozen machine, a network path that drops packets) would never say so. So every
round trip also has a client-side deadline (:class:`_Watchdog`): after
``connect_timeout + statement_timeout`` seconds without an answer the station asks
the server to cancel the query and then shuts the connection's socket, which ends
the wait with :class:`SourceUnavailable`. TCP connections also use keepalives and
``tcp_user_timeout``. Of a failed connection or query only the error's class and
SQLSTATE are logged: libpq's message text may quote the DSN (a password included).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pht.datasources import IDENTIFIER, DatabaseSource
from pht.errors import DataError

log = logging.getLogger(__name__)

BATCH_ROWS = 20_000
"""Rows fetched per round trip from the server-side cursor."""

_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),  # bool
    20: pa.int64(),  # int8
    21: pa.int64(),  # int2
    23: pa.int64(),  # int4
    700: pa.float64(),  # float4
    701: pa.float64(),  # float8
    1700: pa.float64(),  # numeric (read as float8)
    25: pa.string(),  # text
    1043: pa.string(),  # varchar
    1042: pa.string(),  # bpchar
    1082: pa.date32(),  # date
    1114: pa.timestamp("us"),  # timestamp
    1184: pa.timestamp("us", tz="UTC"),  # timestamptz
}
"""PostgreSQL type OIDs the station reads, and their Arrow types."""

_CAST_FLOAT = {700, 1700}
"""Types read through ``::float8`` (psycopg gives numeric as Decimal)."""


class SourceError(DataError):
    """A database source that cannot be read as configured (the operator's fix)."""


class SourceUnavailable(SourceError):
    """The database did not answer: down, unreachable, or slower than the timeout."""


def _dsn(source: DatabaseSource) -> str:
    conn = source.connection
    if conn.dsn_file is not None:
        try:
            text = conn.dsn_file.read_text(encoding="utf-8").strip()
            shared = conn.dsn_file.stat().st_mode & 0o077
        except (OSError, UnicodeDecodeError):
            raise SourceError(
                f"{source.where()}: the DSN file of {source.label()} cannot be read; "
                "check 'dsn_file' in network.yaml and the file's permissions"
            ) from None
        if shared:
            log.warning(
                "%s: the DSN file of %s may be read by other users; chmod 600 %s",
                source.where(),
                source.label(),
                conn.dsn_file,
            )
    else:
        text = os.environ.get(conn.dsn_env or "", "").strip()
    if not text:
        where = "file" if conn.dsn_file is not None else f"variable {conn.dsn_env}"
        raise SourceError(
            f"{source.where()}: the DSN {where} of {source.label()} is empty; put the "
            "connection string of the read-only station role there"
        )
    return text


class _Watchdog:
    """A client-side deadline on a connection's round trips.

    Armed around round trips (:meth:`armed`, :meth:`paused` while the caller holds
    the rows); when one lasts longer than ``limit`` seconds the watchdog's thread
    cancels the query (``cancel_safe``, which asks the server) and, if the round
    trip still has not ended after ``grace`` seconds (the server does not answer at
    all), shuts the connection's socket down: the waiting thread then gets a
    connection error at once.

    Parameters
    ----------
    conn
        The ``psycopg.Connection`` to guard.
    limit
        Seconds a round trip may last (``connect_timeout + statement_timeout``).
    grace
        Seconds between the cancel request and shutting the socket.
    """

    def __init__(self, conn: Any, limit: float, grace: float) -> None:
        self._conn = conn
        self._limit = limit
        self._grace = grace
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._turn = 0  # changes whenever a deadline is set or cleared
        self._stopped = False
        self.fired = False
        self._thread = threading.Thread(
            target=self._run, name="pht-source-watchdog", daemon=True
        )
        self._thread.start()

    def _set(self, deadline: float | None) -> None:
        with self._cond:
            self._deadline = deadline
            self._turn += 1
            self._cond.notify_all()

    @contextmanager
    def armed(self) -> Iterator[None]:
        """Guard the round trips inside the block (the deadline starts now)."""
        self._set(time.monotonic() + self._limit)
        try:
            yield
        finally:
            self._set(None)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No deadline inside the block; a fresh one after it (inside :meth:`armed`)."""
        self._set(None)
        try:
            yield
        finally:
            self._set(time.monotonic() + self._limit)

    def stop(self) -> None:
        """End the watchdog's thread (the connection is closed or about to be)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _expired(self) -> int | None:
        """Wait for a deadline to pass: its turn, or None once stopped."""
        with self._cond:
            while not self._stopped:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self.fired = True
                self._deadline = None  # this round trip is handled once
                return self._turn
            return None

    def _ended(self, turn: int) -> bool:
        """Whether the round trip of ``turn`` ends within ``grace`` seconds."""
        stop = time.monotonic() + self._grace
        with self._cond:
            while not self._stopped and self._turn == turn:
                left = stop - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _run(self) -> None:
        while True:
            turn = self._expired()
            if turn is None:
                return
            try:
                self._conn.cancel_safe(timeout=self._grace)
            except Exception:  # noqa: BLE001 - the socket is shut below all the same
                pass
            if not self._ended(turn):
                _shutdown(self._conn)


def _shutdown(conn: Any) -> None:
    """Shut a connection's socket down, waking any thread that waits on it."""
    try:
        fd = int(conn.pgconn.socket)
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # noqa: BLE001 - already closed: nothing waits on it
        pass


class Link:
    """An open connection to a source and the deadline on its round trips.

    ``conn`` is the ``psycopg.Connection``; wrap each round trip (execute, fetch,
    commit, rollback) in :meth:`armed`.
    """

    def __init__(self, conn: Any, watchdog: _Watchdog) -> None:
        self.conn = conn
        self.watchdog = watchdog

    def armed(self) -> Any:
        """The watchdog's deadline over a block of round trips."""
        return self.watchdog.armed()


def target(source: DatabaseSource) -> tuple[str, str, str] | None:
    """The database a source's DSN names: (host, port, dbname), never the password.

    None when the DSN cannot be read or parsed (nothing of it is said).
    """
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(_dsn(source))
    except Exception:  # noqa: BLE001 - SourceError, or libpq's text quoting the DSN
        return None
    env = os.environ
    host = str(params.get("host") or params.get("hostaddr") or env.get("PGHOST", ""))
    port = str(params.get("port") or env.get("PGPORT", "5432"))
    user = str(params.get("user") or env.get("PGUSER", ""))
    dbname = str(params.get("dbname") or env.get("PGDATABASE", "") or user)
    return host, port, dbname


def same_source(a: DatabaseSource, b: DatabaseSource) -> bool:
    """Whether two dataset entries read the same rows (one population between them).

    The same kind, table or schema and cohort, over the same DSN reference or the
    same database (:func:`target`); dataset id, station and origin do not count.
    """
    if (a.kind, a.table, a.schema, a.cohort) != (b.kind, b.table, b.schema, b.cohort):
        return False
    ca, cb = a.connection, b.connection
    if (ca.dsn_file, ca.dsn_env) == (cb.dsn_file, cb.dsn_env):
        return True
    where = target(a)
    return where is not None and where == target(b)


def _keepalives(dsn: str, seconds: int) -> dict[str, Any]:
    """TCP keepalive and ``tcp_user_timeout`` settings (none for a unix socket).

    ``dsn`` is parsed here and its error text dropped (it may quote the password).
    """
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - connect() says it, without the text
        return {}
    hosts = str(params.get("host") or os.environ.get("PGHOST", "")).split(",")
    if params.get("hostaddr") is None and all(h.startswith("/") for h in hosts):
        return {}
    interval = max(1, min(10, seconds // 3))
    return {
        "keepalives": 1,
        "keepalives_idle": interval,
        "keepalives_interval": interval,
        "keepalives_count": 3,
        "tcp_user_timeout": seconds * 1000,
    }


@contextmanager
def connect(source: DatabaseSource) -> Iterator[Link]:
    """A read-only connection with the source's timeouts (a context manager).

    The connection's round trips are guarded by a :class:`_Watchdog` with deadline
    ``connect_timeout + statement_timeout``.
    """
    import psycopg

    conn_cfg = source.connection
    dsn = _dsn(source)
    limit = conn_cfg.connect_timeout + conn_cfg.statement_timeout
    try:
        conn = psycopg.connect(
            dsn,
            connect_timeout=conn_cfg.connect_timeout,
            options=(
                f"-c statement_timeout={conn_cfg.statement_timeout * 1000} "
                "-c default_transaction_read_only=on"
                # the cohort query joins per-person aggregates whose sizes the
                # planner cannot estimate: hash joins, never a quadratic nested loop
                + (" -c enable_nestloop=off" if source.kind == "omop" else "")
            ),
            application_name="pht-station",
            **_keepalives(dsn, limit),
        )
    except psycopg.Error as exc:
        log.info("%s: cannot connect: %s", source.where(), _plain(exc))
        if _login_refused(exc):
            # the server answered and said no: waiting will not help, the DSN must
            # change (data, the operator acts; never 'try again later')
            raise SourceError(
                f"{source.where()}: the database of {source.label()} refused the "
                "station's login (user, password or database in the DSN); fix the "
                "DSN file or variable, then run `pht station check`"
            ) from None
        raise SourceUnavailable(
            f"{source.where()}: the database of {source.label()} cannot be reached "
            "(down, wrong host or port, or a refused login); start it or fix the DSN, "
            "then run `pht station check`"
        ) from None
    watchdog = _Watchdog(conn, limit, grace=float(conn_cfg.connect_timeout))
    try:
        conn.read_only = True
        yield Link(conn, watchdog)
    finally:
        watchdog.stop()
        try:
            conn.close()
        except psycopg.Error:  # a connection the watchdog shut
            pass


def _login_refused(exc: BaseException) -> bool:
    """Whether the server refused the login (SQLSTATE class 28, or 3D000).

    libpq does not always hand the SQLSTATE of a failed connection to psycopg, so
    its message is also looked at here (never logged: it may quote the DSN).
    """
    state = str(getattr(exc, "sqlstate", "") or "")
    if state.startswith("28") or state == "3D000":
        return True
    text = str(exc).lower()
    return (
        any(
            phrase in text
            for phrase in (
                "password authentication failed",
                "authentication failed",
                "no password supplied",
                "does not exist",  # a role or database that does not exist
            )
        )
        and "no such file or directory" not in text
    )


def _plain(exc: BaseException) -> str:
    """What may be logged of a database error: its class and SQLSTATE.

    Never libpq's message text: for a malformed DSN it quotes the DSN (the word
    after an unquoted space in a password, a URI's whole password).
    """
    state = getattr(exc, "sqlstate", None)
    return type(exc).__name__ + (f" (SQLSTATE {state})" if state else "")


def _translate(
    source: DatabaseSource, exc: Exception, watchdog: _Watchdog | None = None
) -> SourceError:
    """A one-line :class:`SourceError` for a failed query.

    ``watchdog`` is the connection's: when it shut the connection, the database
    did not answer within ``connect_timeout + statement_timeout``.
    """
    import psycopg
    from psycopg import errors

    what = source.label()
    log.info("%s: %s failed: %s", source.where(), what, _plain(exc))
    if watchdog is not None and watchdog.fired:
        return SourceUnavailable(
            f"{source.where()}: the database of {what} did not answer within "
            "connect_timeout + statement_timeout; check the server and the network, "
            "then run `pht station check`"
        )
    if isinstance(exc, errors.QueryCanceled):
        return SourceUnavailable(
            f"{source.where()}: {what} did not answer within statement_timeout; "
            "raise statement_timeout in network.yaml or index the source"
        )
    if isinstance(exc, errors.UndefinedTable | errors.InvalidSchemaName):
        return SourceError(
            f"{source.where()}: {what}: a table or view does not exist; create it, "
            "or fix 'table' / 'schema' in network.yaml"
        )
    if isinstance(exc, errors.UndefinedColumn):
        # the server's own text names the column (never a DSN or a value)
        said = str(getattr(exc.diag, "message_primary", "") or "")[:200]
        said = "".join(ch for ch in said if ch.isprintable())
        return SourceError(
            f"{source.where()}: {what}: a column the station reads does not exist"
            + (f" ({said})" if said else "")
            + "; add it to the table or view, or fix the mapping"
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return SourceError(
            f"{source.where()}: {what}: the station role may not read it; GRANT "
            "SELECT on it to the read-only station role"
        )
    if isinstance(exc, psycopg.DataError):  # SQLSTATE class 22
        return SourceError(
            f"{source.where()}: {what}: a value has the wrong type or is out of "
            "range; cast the column in a view to the type the data dictionary gives"
        )
    if isinstance(exc, psycopg.OperationalError):
        return SourceUnavailable(
            f"{source.where()}: the database of {what} stopped answering; check "
            "the server, then run `pht station check`"
        )
    return SourceError(
        f"{source.where()}: {what} cannot be read; see the station's log and run "
        "`pht station check`"
    )


def _base_query(source: DatabaseSource, columns: Sequence[str] | None) -> Any:
    """The query of the source's rows (all columns, or ``columns``)."""
    from psycopg import sql

    if source.kind == "omop":
        raise AssertionError("an OMOP source is queried through pht.station.omop")
    assert source.table is not None
    table = sql.Identifier(*source.table)
    if columns is None:
        return sql.SQL("SELECT * FROM {}").format(table)
    return sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), table
    )


def _query(
    source: DatabaseSource, columns: Sequence[str], casts: set[str], limit_zero: bool
) -> tuple[Any, dict[str, Any]]:
    from psycopg import sql

    for column in columns:
        if not IDENTIFIER.fullmatch(column):
            raise SourceError(
                f"{source.where()}: column name {column[:64]!r} is not a plain "
                "identifier; rename it in a view"
            )
    if source.kind == "omop":
        from pht.station.omop import cohort_query

        assert source.schema is not None and source.cohort is not None
        return cohort_query(source.schema, source.cohort, columns, limit_zero)
    assert source.table is not None
    items = [
        sql.SQL("{}::float8 AS {}").format(sql.Identifier(c), sql.Identifier(c))
        if c in casts
        else sql.Identifier(c)
        for c in columns
    ]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(items), sql.Identifier(*source.table)
    )
    if limit_zero:
        query = sql.SQL("{} LIMIT 0").format(query)
    return query, {}


def _schema_of(source: DatabaseSource, link: Link) -> tuple[pa.Schema, set[str]]:
    """The Arrow schema of every readable column, and the columns read as float8."""
    import psycopg

    if source.kind == "omop":
        from pht.station.omop import column_types

        assert source.cohort is not None
        types = column_types(source.cohort)
        query, params = _query(source, list(types), set(), limit_zero=True)
    else:
        query, params = _base_query(source, None), {}
        from psycopg import sql

        query = sql.SQL("{} LIMIT 0").format(query)
    try:
        with link.armed(), link.conn.cursor() as cur:
            cur.execute(query, params)
            description = list(cur.description or ())
            link.conn.rollback()
    except psycopg.Error as exc:
        raise _translate(source, exc, link.watchdog) from None
    if source.kind == "omop":
        return pa.schema(list(types.items())), set()
    fields = []
    casts: set[str] = set()
    for column in description:
        arrow = _TYPES.get(int(column.type_code))
        if arrow is None or not IDENTIFIER.fullmatch(column.name):
            # said by `pht station check`; the column is not offered to any train
            log.info(
                "%s: column %s of %s has a type the station does not read",
                source.where(),
                column.name,
                source.label(),
            )
            continue
        if int(column.type_code) in _CAST_FLOAT:
            casts.add(column.name)
        fields.append((column.name, arrow))
    return pa.schema(fields), casts


def unreadable_columns(source: DatabaseSource) -> list[tuple[str, str]]:
    """Columns of a table or view the station does not read: (name, type OID)."""
    if source.kind == "omop":
        return []
    import psycopg
    from psycopg import sql

    with connect(source) as link:
        try:
            with link.armed(), link.conn.cursor() as cur:
                cur.execute(sql.SQL("{} LIMIT 0").format(_base_query(source, None)))
                description = list(cur.description or ())
        except psycopg.Error as exc:
            raise _translate(source, exc, link.watchdog) from None
    return [
        (c.name, str(c.type_code))
        for c in description
        if int(c.type_code) not in _TYPES or not IDENTIFIER.fullmatch(c.name)
    ]


def source_schema(source: DatabaseSource) -> pa.Schema:
    """The Arrow schema of the source (no rows read)."""
    with connect(source) as link:
        return _schema_of(source, link)[0]


def stream(
    source: DatabaseSource, columns: Sequence[str], batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The rows of ``columns`` as Arrow record batches (a server-side cursor).

    Columns the source does not have or does not read are left out (as a Parquet
    file's are). At least one (possibly empty) batch is yielded, so the schema is
    always known.
    """
    import psycopg

    with connect(source) as link:
        schema, casts = _schema_of(source, link)
        names = [c for c in columns if schema.get_field_index(c) >= 0]
        wanted = pa.schema([schema.field(c) for c in names])
        query, params = _query(source, names, casts, limit_zero=False)
        yielded = False
        conn, watchdog = link.conn, link.watchdog
        try:
            with (
                watchdog.armed(),
                conn.transaction(),
                conn.cursor(name="pht_extract") as cur,
            ):
                cur.itersize = batch_rows
                cur.execute(query, params)
                while True:
                    rows = cur.fetchmany(batch_rows)
                    if not rows:
                        break
                    batch = _batch(source, rows, wanted, source.kind == "omop")
                    with watchdog.paused():  # the caller's time is not the server's
                        yield batch
                    yielded = True
        except psycopg.Error as exc:
            raise _translate(source, exc, link.watchdog) from None
        if not yielded:
            yield pa.RecordBatch.from_pylist([], schema=wanted)


def _batch(
    source: DatabaseSource,
    rows: list[tuple[Any, ...]],
    schema: pa.Schema,
    skip_first: bool = False,
) -> pa.RecordBatch:
    """Rows (tuples) as one Arrow record batch of ``schema``.

    With ``skip_first`` the rows' first value (the OMOP ``person_id`` that orders
    them) is not part of the batch.
    """
    columns = list(zip(*rows, strict=True))[1 if skip_first else 0 :]
    if not schema.names:
        return pa.RecordBatch.from_pydict({}, schema=schema)
    arrays = []
    for values, field in zip(columns, schema, strict=True):
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            raise SourceError(
                f"{source.where()}: column {field.name} of {source.label()} holds a "
                f"value that is not {field.type}; cast it in a view"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def query_digest(source: DatabaseSource, columns: Sequence[str]) -> str:
    """A digest of what the station asks the source (kind, table, columns, cohort).

    It goes into audit records in place of the query: no DSN, no data.
    """
    h = hashlib.sha256(b"pht.source.v1\x00")
    h.update(source.label().encode())
    h.update(b"\x00" + "\x1f".join(columns).encode())
    if source.cohort is not None:
        h.update(b"\x00" + repr(source.cohort).encode())
    return "sha256:" + h.hexdigest()


def snapshot(
    source: DatabaseSource, columns: Sequence[str], folder: Path
) -> tuple[Path, str]:
    """Stream ``columns`` of the source into an owner-only Parquet file in ``folder``.

    Returns the file and the query digest. The file is written batch by batch (one
    batch in memory at a time) and replaces the previous one only when its bytes
    differ, so an unchanged database keeps the same file version (and the cached
    population).
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    digest = query_digest(source, columns)
    name = hashlib.sha256(f"{source.dataset}\x00{digest}".encode()).hexdigest()[:32]
    dest = folder / f"{name}.parquet"
    tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp.parquet"  # one per request
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for batch in stream(source, columns):
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema)
                os.chmod(tmp, 0o600)
            if batch.num_rows:
                writer.write_batch(batch)
                rows += batch.num_rows
        if writer is None:  # pragma: no cover - stream always yields a batch
            raise SourceError(f"{source.where()}: {source.label()} gave no schema")
        writer.close()
        writer = None
        if rows == 0:
            raise SourceError(
                f"{source.where()}: {source.label()} holds no rows"
                + (
                    " (the cohort's concept sets match no patient); check the "
                    "concept ids with `pht station check`"
                    if source.kind == "omop"
                    else "; load the data or fix 'table'"
                )
            )
        if dest.is_file() and _same_bytes(tmp, dest):
            tmp.unlink()
        else:
            os.replace(tmp, dest)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return dest, digest


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def check_columns(
    table: pa.Table, columns: Sequence[str] | None = None
) -> list[tuple[str, str, int, int]]:
    """Per column: (name, type, non-missing values, missing values)."""
    from pht.columns import missing, to_numpy
    from pht.station.describe import column_type

    out = []
    for name in columns or table.column_names:
        if name not in table.column_names:
            continue
        values = to_numpy(table.column(name))
        gone = int(missing(values).sum())
        out.append(
            (name, column_type(table.schema.field(name).type), len(values) - gone, gone)
        )
    return out
