"""The pht station as a vantage6 algorithm: signed requests in, sealed replies out.

vantage6 4.15's wrapper (``wrap_algorithm``, ``PKG_NAME=pht_v6``) calls one of the
package's five functions (``pht_v6/__init__.py``, which holds nothing else: the
wrapper calls any attribute of the package a task names) with the task input's
``kwargs``; they call the ones here. The station is the node's own: its
folder is the node's database of type ``folder`` labelled ``pht``
(``PHT_DATABASE_URI``, mounted read-write at ``/mnt/pht`` by the node) holding a
one-station ``network.yaml`` with the station's policy, identity, keyring, data and
audit log (``station_folder.py`` writes it). The station runs the whole pht pipeline
(admission, extraction, the train under the process executor in this container, the
output guard, sealing, audit); every return value is either its
:class:`pht.wire.Reply` as JSON (the aggregate sealed to the requester; vantage6 only
carries it) or ``{"pht_node_error": CODE}`` with a code from :data:`NODE_ERRORS`
(never free text: nothing the station or a train says leaves through it).

Single-round requests: :func:`station`.

Iterative trains (Cox, GLM, IPTW) keep one train process and the station's replay
state for all rounds, but vantage6 runs a fresh container per task. So one container
per node, :func:`session_host`, holds the station open and serves jobs from a spool
in the station's folder (``work/v6/jobs``: only this node's containers mount it, the
vantage6 server never sees it); each round is a short task whose container,
:func:`session_round`, drops the round message into the spool and returns the host's
reply. :func:`session_open` and :func:`session_close` do the same for the first and
last step. The host checks every message exactly as the embedded engine's station
does (:mod:`pht.station.sessions`); the spool only carries them. While a host runs,
:func:`station` hands single-round requests to it too (the audit log has one writer).

Nothing in the task input chooses the folder or the station: a request names its
station inside the signed envelope, and the station refuses one addressed elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FOLDER_LABEL = "PHT"
"""The node's database label of the station folder, upper-cased as vantage6 does."""
TRAINS = Path(os.environ.get("PHT_V6_TRAINS", "/opt/pht/train_images"))
"""The train catalogue baked into the image (the checkout's ``train_images``)."""

NODE_ERRORS = frozenset(
    {
        "no-folder",  # the node has no pht station folder database
        "folder",  # the station folder's network.yaml is missing or invalid
        "busy",  # the station stayed busy with other requests
        "no-host",  # no session host started at this node
        "no-session",  # this node holds no open session with that id
        "input",  # the task input is not what pht sends
        "round",  # a round message not sealed to this station for this round
        "internal",  # anything else (the node's log says what)
    }
)
"""The fixed codes a node answers with when it cannot give a station reply."""

HOST_WAIT = float(os.environ.get("PHT_V6_HOST_WAIT", "120"))
"""Seconds a job waits for a session host to pick it up."""
REPLY_WAIT = float(os.environ.get("PHT_V6_REPLY_WAIT", "900"))
"""Seconds a job waits for the host's answer once picked up (a train's round)."""
HOST_IDLE = float(os.environ.get("PHT_V6_HOST_IDLE", "15"))
"""Seconds a host with no open session waits for work before it exits."""
SESSION_IDLE = float(os.environ.get("PHT_V6_SESSION_IDLE", "900"))
"""Seconds without a round after which the host closes a session."""
HOST_LIFETIME = float(os.environ.get("PHT_V6_HOST_LIFETIME", "14400"))
"""Seconds after which a host closes every session and exits (4 hours)."""
MAX_JOB = 64 * 1024 * 1024
"""Largest job or answer file the spool accepts (bytes)."""
BUSY_WAIT = float(os.environ.get("PHT_V6_BUSY_WAIT", "300"))
"""Seconds a single-round request waits for the station's audit log to be free."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
log = logging.getLogger(__name__)


class NodeError(Exception):
    """A node-side failure with one of the fixed :data:`NODE_ERRORS` codes."""

    def __init__(self, code: str) -> None:
        assert code in NODE_ERRORS
        super().__init__(code)
        self.code = code


def _fail(code: str) -> dict[str, Any]:
    return {"pht_node_error": code}


def _folder() -> Path:
    uri = os.environ.get(f"{FOLDER_LABEL}_DATABASE_URI")
    if not uri or not Path(uri).is_dir():
        log.error(
            "this node has no pht station folder: add a database {label: pht, "
            "type: folder, uri: <station folder>} to its configuration"
        )
        raise NodeError("no-folder")
    return Path(uri)


def _spool() -> Path:
    jobs = _folder() / "work" / "v6" / "jobs"
    jobs.mkdir(parents=True, exist_ok=True, mode=0o700)
    return jobs


def _open_station() -> Any:
    """The node's station (holds its audit log's lock until closed)."""
    from pht.errors import PhtError
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import host_station

    folder = _folder()
    try:
        network = load_network(folder / "network.yaml")
        if len(network.stations) != 1:
            raise NodeError("folder")
        (entry,) = network.stations.values()
    except PhtError as exc:
        log.error("the station folder is not usable: %s", exc)
        raise NodeError("folder") from None
    host = host_station(entry, Catalogue(TRAINS))
    _log_sandbox_failures(host.executor)
    return host


def _locked(exc: BaseException) -> bool:
    """Whether ``exc`` says the station's audit log is open in another process."""
    from pht.errors import AuditError

    return isinstance(exc, AuditError) and "already open" in str(exc)


def _reply_json(reply: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(reply.to_json())
    return out


def _guarded(run: Any) -> dict[str, Any]:
    """Run a task function; a failure is a fixed code, its detail stays in the log."""
    logging.basicConfig(level=logging.WARNING)
    try:
        out: dict[str, Any] = run()
        return out
    except NodeError as exc:
        return _fail(exc.code)
    except Exception:  # noqa: BLE001 - the node's log has the traceback
        log.exception("pht node failure")
        return _fail("internal")


# -- single round --------------------------------------------------------------------
def station(envelope: dict[str, Any]) -> dict[str, Any]:
    """Answer one signed single-round (or describe) request as the node's station.

    Parameters
    ----------
    envelope
        The signed pht request envelope (:mod:`pht.signing`), as JSON.

    Returns
    -------
    dict
        The station's reply (:class:`pht.wire.Reply`) as JSON: status, fixed
        reason code, sealed aggregate and signed receipt; or a node error code.
    """
    return _guarded(lambda: _station(envelope))


def _station(envelope: Any) -> dict[str, Any]:
    if not isinstance(envelope, dict):
        raise NodeError("input")
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        if _host_alive():
            try:
                return _submit({"kind": "handle", "envelope": envelope}, False)
            except NodeError as exc:
                if exc.code != "no-session":
                    raise
                continue  # the host ended before it took the request: run it here
        try:
            host = _open_station()
        except Exception as exc:
            if not _locked(exc) or time.monotonic() > deadline:
                if _locked(exc):
                    raise NodeError("busy") from None
                raise
            time.sleep(0.5)
            continue
        try:
            return _reply_json(host.handle(envelope))
        finally:
            host.close()


# -- the spool ----------------------------------------------------------------------
def _host_alive() -> bool:
    """Whether a session host holds this node's host lock."""
    with _host_lock(fcntl.LOCK_SH) as free:
        return not free


def _encode(data: dict[str, Any]) -> bytes:
    """``data`` as JSON for the spool; non-finite numbers or oversize: ``input``."""
    try:
        raw = json.dumps(data, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        raise NodeError("input") from None
    if len(raw) > MAX_JOB:
        raise NodeError("input")
    return raw


def _write(path: Path, data: dict[str, Any]) -> None:
    raw = _encode(data)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_JOB:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _submit(job: dict[str, Any], wait_host: bool) -> dict[str, Any]:
    """Give ``job`` to the node's session host; its answer."""
    jobs = _spool()
    name = uuid.uuid4().hex
    pending, answer = jobs / f"{name}.in", jobs / f"{name}.out"
    _write(pending, job)
    start = time.monotonic()
    try:
        while not answer.exists():
            waited = time.monotonic() - start
            if pending.exists():  # not picked up yet
                if waited > HOST_WAIT or (not wait_host and not _host_alive()):
                    with contextlib.suppress(FileNotFoundError):
                        pending.unlink()
                        raise NodeError("no-host" if wait_host else "no-session")
            elif waited > REPLY_WAIT or not _host_alive():
                time.sleep(0.2)  # the host may have written it just now
                if not answer.exists():
                    raise NodeError("internal")
            time.sleep(0.05)
        out = _read(answer)
        if out is None:
            raise NodeError("internal")
        return out
    finally:
        with contextlib.suppress(FileNotFoundError):
            answer.unlink()


def session_open(envelope: dict[str, Any]) -> dict[str, Any]:
    """Open an iterative session at the node's session host; round 0's reply."""
    if not isinstance(envelope, dict):
        return _fail("input")
    return _guarded(lambda: _submit({"kind": "open", "envelope": envelope}, True))


def session_round(
    session: str, sealed: dict[str, Any], signature: str
) -> dict[str, Any]:
    """One round of the open session ``session``; the station's reply.

    ``sealed`` is the round message sealed to the station
    (:func:`pht.orchestrator.vantage6_engine.seal_round`), ``signature`` the
    requester's over it (:func:`~pht.orchestrator.vantage6_engine.round_statement`);
    the host checks both before the session sees anything.
    """
    if not isinstance(session, str) or not _ID.fullmatch(session):
        return _fail("input")
    if not isinstance(sealed, dict) or not isinstance(signature, str):
        return _fail("input")
    job = {"kind": "round", "session": session, "sealed": sealed, "sig": signature}
    return _guarded(lambda: _submit(job, wait_host=False))


def session_close(session: str, signature: str) -> dict[str, Any]:
    """End the session ``session`` (the train process exits); signed by its requester."""
    if not isinstance(session, str) or not _ID.fullmatch(session):
        return _fail("input")
    if not isinstance(signature, str):
        return _fail("input")
    job = {"kind": "close", "session": session, "sig": signature}
    return _guarded(lambda: _submit(job, wait_host=False))


# -- the host -----------------------------------------------------------------------
@contextlib.contextmanager
def _host_lock(mode: int = fcntl.LOCK_EX) -> Iterator[bool]:
    """Try the node's host lock (``mode``): True while held, False if taken."""
    lock = _spool().parent / "host.lock"
    with open(lock, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def session_host() -> dict[str, Any]:
    """Serve the node's spool: open sessions, their rounds, single requests.

    Exits when no session is open and no job came for :data:`HOST_IDLE` seconds
    (or another host already serves this node). Returns counts only.
    """
    return _guarded(_serve)


def _serve() -> dict[str, Any]:
    with _host_lock() as mine:
        if not mine:
            return {"pht_host": "another host serves this node"}
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            try:
                host = _open_station()
                break
            except Exception as exc:
                if not _locked(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            return _loop(host)
        finally:
            host.close()


def _loop(host: Any) -> dict[str, Any]:
    from pht.wire import Reply

    jobs = _spool()
    sessions: dict[str, Any] = {}
    used: dict[str, float] = {}
    seqs: dict[str, int] = {}
    started = last = time.monotonic()
    served = 0
    while True:
        now = time.monotonic()
        for sid in [s for s, t in used.items() if now - t > SESSION_IDLE]:
            log.warning("session %s idle for %.0f s: closed", sid, SESSION_IDLE)
            sessions.pop(sid).close()
            used.pop(sid)
        if now - started > HOST_LIFETIME:
            break
        pending = sorted(jobs.glob("*.in"), key=_mtime)
        if not pending:
            # the first job (the session's open) may come a while after the host
            idle = HOST_IDLE if served else HOST_WAIT
            if not sessions and now - last > idle:
                break
            time.sleep(0.05)
            continue
        for path in pending:
            running = path.with_suffix(".run")
            try:
                os.replace(path, running)  # claimed
            except FileNotFoundError:
                continue  # withdrawn by its relay
            job = _read(running)
            try:
                answer = _answer(host, job, sessions, used, seqs)
            except Exception:  # noqa: BLE001 - the node's log has it
                log.exception("pht session host: job failed")
                answer = _fail("internal")
            if isinstance(answer, Reply):
                answer = _reply_json(answer)
            try:
                _write(path.with_suffix(".out"), answer)
            except NodeError:
                _write(path.with_suffix(".out"), _fail("internal"))
            running.unlink(missing_ok=True)
            served += 1
            last = time.monotonic()
    for session in sessions.values():
        session.close()
    return {"pht_host": "done", "jobs": served}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _answer(
    host: Any,
    job: Any,
    sessions: dict[str, Any],
    used: dict[str, float],
    seqs: dict[str, int],
) -> Any:
    if not isinstance(job, dict):
        return _fail("input")
    kind = job.get("kind")
    if kind == "handle":
        return host.handle(job.get("envelope"))
    if kind == "open":
        reply, session = host.open_session(job.get("envelope"))
        if session is not None:
            sid = str(reply.request_id)
            if sid in sessions:  # cannot happen: the station refuses a replay
                session.close()
                return _fail("internal")
            sessions[sid] = session
            used[sid] = time.monotonic()
            seqs[sid] = 0
        return reply
    sid = job.get("session")
    if not isinstance(sid, str) or sid not in sessions:
        return _fail("no-session")
    if kind == "round":
        seq = seqs[sid] + 1
        if not _signed(host, sessions[sid], sid, seq, job):
            return _fail("round")
        message = _unseal(host, sid, job.get("sealed"), seq)
        if message is None:  # not sealed to this station for this round: ignored
            return _fail("round")
        seqs[sid] += 1
        used[sid] = time.monotonic()
        reply = sessions[sid].round(message)
        if sessions[sid].closed:  # refused or failed: the session ended
            _end(sid, sessions, used, seqs)
        return reply
    if kind == "close":
        if not _signed(host, sessions[sid], sid, 0, job):
            return _fail("round")
        _end(sid, sessions, used, seqs)
        return {"pht_closed": sid}
    return _fail("input")


def _end(sid: str, *tables: dict[str, Any]) -> None:
    sessions = tables[0]
    sessions[sid].close()
    for table in tables:
        table.pop(sid, None)


def _signed(host: Any, session: Any, sid: str, seq: int, job: dict[str, Any]) -> bool:
    """Whether the session's requester signed this round (``seq``) or close (0)."""
    import base64
    import binascii

    from cryptography.exceptions import InvalidSignature

    from pht.orchestrator.vantage6_engine import round_statement

    sealed = job.get("sealed")
    signature = job.get("sig")
    if not isinstance(signature, str) or len(signature) > 200:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        statement = round_statement(sid, host.id, seq, sealed)
        session.admitted.requester.signing_key.verify(raw, statement)
    except (InvalidSignature, binascii.Error, ValueError, TypeError, KeyError):
        return False
    except Exception:  # noqa: BLE001 - a malformed sealed object: not signed
        return False
    return True


def _unseal(host: Any, sid: str, sealed: Any, seq: int) -> Any:
    """The round message sealed to this station for round ``seq`` of ``sid``."""
    from pht.crypto import open_sealed
    from pht.errors import PhtError
    from pht.orchestrator.vantage6_engine import ROUND_BINDING

    if not isinstance(sealed, dict):
        return None
    try:
        plain = open_sealed(
            sealed,
            host.config.identity.sealing,
            request_id=sid,
            station_id=host.id,
            manifest_digest=ROUND_BINDING,
        )
        doc = json.loads(plain)
    except (PhtError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("seq") != seq:
        return None
    return doc.get("message")


def _log_sandbox_failures(executor: Any) -> None:
    """On a sandbox failure, note it in the node's log (never the train's words).

    The station removes the run folder after every run; the node's own log then says
    that the sandbox failed. The train's stderr is not copied: a hostile train could
    write anything there, and the node may share algorithm logs with the server.
    """
    from pht.errors import ExecutorError

    run = executor.run

    def logged(job: Any) -> Any:
        try:
            return run(job)
        except ExecutorError as exc:
            logging.getLogger(__name__).warning("sandbox failure: %s", exc)
            raise

    executor.run = logged
