"""The vantage6 engine: each station's signed request as a task on a vantage6 network.

A station runs as a vantage6 4.15 node; its pht station (keys, keyring, policy, data,
audit log) lives in a folder only that node mounts into the pht algorithm image
(``deploy/vantage6/pht-algorithm``). :meth:`Vantage6Engine.dispatch` creates ONE
vantage6 task whose input differs per organisation (the request addressed to that
station: ``{"method": "station", "kwargs": {"envelope": ...}}``), waits for the runs
and returns each station's :class:`~pht.wire.Reply` (aggregate sealed to the
requester; the server stores only sealed output). The server is reached over its
REST API with the standard library (no vantage6 client: vantage6 4.15 pins old
versions of pht's dependencies, so it lives in its own environment).

A run that does not complete is a per-station ``error`` reply whose reason says
why: vantage6's status (``crashed``, ``not allowed``, ``failed``, ...) or, for a node
that is offline (vantage6 keeps its run ``pending`` forever), a timeout naming the
node's status. The engine then kills the task, so a node that comes back later does
not run an expired request.

Iterative trains run one task per round through a session host at each node
(:meth:`Vantage6Engine.open_sessions`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pht.crypto import (
    Identity,
    PublicIdentity,
    canonical_json,
    digest,
    load_public,
    seal,
    sealed_digest,
)
from pht.errors import ConfigError
from pht.orchestrator.engine import Envelope, ProgressCallback, SessionGroup
from pht.wire import Reply

log = logging.getLogger(__name__)

DONE = frozenset(
    {
        "completed",
        "failed",
        "start failed",
        "no docker image",
        "crashed",
        "killed by user",
        "not allowed",
        "unexpected output",
        "unknown error",
    }
)
"""vantage6 4.15 run statuses after which a run does not change any more."""

NODE_ERRORS: dict[str, str] = {
    "no-folder": "the vantage6 node has no pht station folder (a database labelled "
    "'pht' of type folder); its operator adds it to the node's configuration "
    "(deploy/vantage6/README.md)",
    "folder": "the node's pht station folder has no valid network.yaml; its operator "
    "re-creates the station folder (deploy/vantage6/README.md)",
    "busy": "the station stayed busy with other requests; run the study again later",
    "no-host": "the node's pht session host did not start; the station's operator "
    "finds why in the node's log",
    "no-session": "the node holds no open session for this request (closed after "
    "being idle, or the node restarted); run the study again",
    "input": "the node did not understand the task; the pht station image and this "
    "pht differ in version",
    "round": "the node ignored a round message that was not sealed to it for this "
    "round (replayed or altered on the way); run the study again",
    "internal": "the node's pht station failed; its operator finds why in the "
    "node's log",
}
"""The fixed codes a pht node answers with when it has no station reply (the node
never sends free text), and what they tell the analyst."""


@dataclass(frozen=True)
class Vantage6Settings:
    """Where the vantage6 server is and how pht's stations map onto it.

    Attributes
    ----------
    server
        The server's API root, e.g. ``http://127.0.0.1:7601/api``.
    collaboration
        The collaboration id the stations' organisations take part in.
    username
        The vantage6 user that creates tasks.
    password_file
        A file holding that user's password (first line).
    organizations
        Station id to the vantage6 organisation id of its node.
    image
        The pht station algorithm image the nodes allow.
    databases
        Database labels the task names (the station folder is ``pht``).
    timeout
        Seconds to wait for all runs before the missing ones are reported.
    offline_grace
        Seconds after which a still-pending run of an offline node is given up
        (before ``timeout``).
    poll
        Seconds between status polls.
    """

    server: str
    collaboration: int
    username: str
    password_file: Path
    organizations: Mapping[str, int]
    image: str
    databases: tuple[str, ...] = ("pht",)
    timeout: float = 300.0
    offline_grace: float = 15.0
    poll: float = 0.5
    station_keys: Mapping[str, Path] = field(default_factory=dict)
    """Station id to its public identity file: iterative rounds are sealed to it."""


ROUND_BINDING = digest(b"pht vantage6 round message v1")
"""The ``manifest_digest`` binding of a sealed round message (results use the
train's manifest digest: a round message never opens as a result, nor the reverse)."""


def seal_round(
    message: Mapping[str, Any],
    seq: int,
    key: PublicIdentity,
    session: str,
    station: str,
) -> dict[str, Any]:
    """A round message sealed to the station (the vantage6 server sees its size only).

    ``seq`` numbers the rounds of the session from 1, so a round the server replays
    is refused by the node without touching the session.
    """
    plaintext = canonical_json({"seq": seq, "message": dict(message)})
    return seal(
        plaintext,
        key.sealing_key,
        request_id=session,
        station_id=station,
        manifest_digest=ROUND_BINDING,
    )


ROUND_SIGNATURE_CONTEXT = b"pht vantage6 round v1\n"
"""Prefix of what the requester signs for a round or a close (domain separation)."""


def round_statement(session: str, station: str, seq: int, sealed: Any) -> bytes:
    """What the requester signs for round ``seq`` (``sealed``) or the close (seq 0).

    The node's session host verifies it with the requester key of the session's
    signed request before the round reaches the session: a third party who can
    create tasks (or the server) can seal a message to a station's public key, but
    cannot sign it.
    """
    sealed_part = sealed_digest(sealed) if seq else "close"
    return ROUND_SIGNATURE_CONTEXT + canonical_json(
        {"session": session, "station": station, "seq": seq, "sealed": sealed_part}
    )


def _request_id(envelope: Envelope) -> str:
    """The request id inside a signed envelope's payload (``unknown`` if absent)."""
    try:
        payload = json.loads(base64.b64decode(str(envelope["payload"])))
        return str(payload["request_id"])
    except (KeyError, ValueError, TypeError):
        return "unknown"


class Vantage6Engine:
    """Stations reached as vantage6 nodes through the vantage6 server's REST API."""

    name = "vantage6"

    def __init__(self, settings: Vantage6Settings) -> None:
        self.settings = settings
        self._token: str | None = None
        self.task_ids: list[int] = []
        """The vantage6 tasks this engine created (for logs and tests)."""
        self._signer: Identity | None = None

    def sign_rounds_with(self, identity: Identity) -> None:
        """The requester identity that signs round messages and closes.

        :func:`pht.orchestrator.run.run_study` calls this with the study's
        requester before it opens sessions.
        """
        self._signer = identity

    def _sign(self, session: str, station: str, seq: int, sealed: Any) -> str:
        assert self._signer is not None
        raw = self._signer.signing.sign(round_statement(session, station, seq, sealed))
        return base64.b64encode(raw).decode()

    # -- REST --------------------------------------------------------------------
    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        url = f"{self.settings.server.rstrip('/')}/{path.lstrip('/')}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise ConfigError(
                f"vantage6 server {url}: HTTP {exc.code} {detail.strip()}; check the "
                "engine's server, collaboration, organizations and user"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ConfigError(
                f"vantage6 server {url} is not reachable ({exc}); start it or fix "
                "'server' in the engine settings"
            ) from None
        return json.loads(raw) if raw else None

    def _login(self) -> None:
        if self._token is not None:
            return
        path = self.settings.password_file
        try:
            password = path.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError):
            raise ConfigError(
                f"{path}: the vantage6 password file is missing or empty; write the "
                "user's password on its first line"
            ) from None
        answer = self._call(
            "POST",
            "token/user",
            {"username": self.settings.username, "password": password},
        )
        self._token = str(answer["access_token"])

    def _list(self, path: str) -> list[dict[str, Any]]:
        answer = self._call("GET", path)
        data = answer.get("data", answer) if isinstance(answer, dict) else answer
        return list(data)

    def node_status(self) -> dict[int, str]:
        """Organisation id to its node's status (``online``/``offline``)."""
        self._login()
        nodes = self._list(
            f"node?collaboration_id={self.settings.collaboration}&per_page=1000"
        )
        return {
            int(n["organization"]["id"]): str(n.get("status") or "unknown")
            for n in nodes
        }

    def names(self, kind: str) -> dict[str, int]:
        """Name to id of the server's ``organization`` or ``collaboration`` records."""
        if kind not in ("organization", "collaboration"):
            raise ValueError(f"unknown vantage6 record kind {kind!r}")
        self._login()
        return {
            str(r["name"]): int(r["id"]) for r in self._list(f"{kind}?per_page=1000")
        }

    # -- the engine seam -------------------------------------------------------------
    def dispatch(
        self, requests: Mapping[str, Envelope], progress: ProgressCallback | None = None
    ) -> dict[str, Reply]:
        """Create one task for all stations, wait, return their replies."""
        if not requests:
            return {}
        inputs = {s: {"envelope": dict(e)} for s, e in requests.items()}
        if progress:
            for station in requests:
                progress(station, "started", None)
        task_id = self._create("station", inputs, "pht signed request")
        return self._collect(task_id, requests, progress, "finished")

    def _create(
        self, method: str, kwargs: Mapping[str, Mapping[str, Any]], description: str
    ) -> int:
        """One vantage6 task with a different input per station's organisation."""
        orgs = self.settings.organizations
        unknown = [s for s in kwargs if s not in orgs]
        if unknown:
            raise ConfigError(
                f"station(s) {', '.join(unknown)} have no vantage6 organisation; add "
                "them under the engine's 'organizations'"
            )
        self._login()
        inputs = []
        for station, args in kwargs.items():
            task_input = {"method": method, "kwargs": dict(args)}
            encoded = base64.b64encode(
                json.dumps(task_input, allow_nan=False).encode()
            ).decode()
            inputs.append({"id": orgs[station], "input": encoded})
        task = self._call(
            "POST",
            "task",
            {
                "name": f"pht {method}",
                "image": self.settings.image,
                "description": description,
                "collaboration_id": self.settings.collaboration,
                "organizations": inputs,
                "databases": [{"label": label} for label in self.settings.databases],
            },
        )
        task_id = int(task["id"])
        self.task_ids.append(task_id)
        return task_id

    def _collect(
        self,
        task_id: int,
        requests: Mapping[str, Envelope],
        progress: ProgressCallback | None,
        event: str,
    ) -> dict[str, Reply]:
        """Wait for a task's runs; each station's reply, in request order."""
        orgs = self.settings.organizations
        by_org = {orgs[s]: s for s in requests}
        done = self._wait(task_id, by_org, requests, progress, event)
        replies = {s: done[s] for s in requests}  # the request order, as embedded
        if any(
            r.status == "error" and r.details.get("vantage6") for r in replies.values()
        ):
            self._kill(task_id)
        return replies

    def _wait(
        self,
        task_id: int,
        by_org: Mapping[int, str],
        requests: Mapping[str, Envelope],
        progress: ProgressCallback | None,
        event: str = "finished",
    ) -> dict[str, Reply]:
        start = time.monotonic()
        replies: dict[str, Reply] = {}
        while True:
            runs = self._list(f"run?task_id={task_id}&per_page=1000")
            elapsed = time.monotonic() - start
            statuses: dict[str, dict[str, Any]] = {}
            for run in runs:
                station = by_org.get(int(run["organization"]["id"]))
                if station is not None:
                    statuses[station] = run
            for station, run in statuses.items():
                if station in replies or run["status"] not in DONE:
                    continue
                replies[station] = self._reply(station, run, requests[station])
                if progress:
                    progress(station, event, replies[station])
            waiting = [s for s in by_org.values() if s not in replies]
            if not waiting:
                return replies
            if elapsed > self.settings.offline_grace or elapsed > self.settings.timeout:
                nodes = self.node_status()
                for station in waiting:
                    node = nodes.get(self.settings.organizations[station], "missing")
                    if node == "online" and elapsed <= self.settings.timeout:
                        continue
                    run = statuses.get(station, {})
                    replies[station] = self._failed(
                        station,
                        requests[station],
                        f"no answer from the vantage6 node within {elapsed:.0f} s "
                        f"(node {node}, run {run.get('status', 'missing')}); ask the "
                        "station's operator to start its node",
                    )
                    if progress:
                        progress(station, event, replies[station])
                if all(s in replies for s in by_org.values()):
                    return replies
            time.sleep(self.settings.poll)

    def _reply(self, station: str, run: Mapping[str, Any], envelope: Envelope) -> Reply:
        status = str(run["status"])
        if status != "completed":
            return self._failed(
                station,
                envelope,
                f"the vantage6 run ended '{status}' (run {run.get('id')}); the "
                "station's operator finds why in the node's log",
            )
        raw = run.get("result")
        if raw is None:
            raw = self._call("GET", f"result/{run['id']}").get("result")
        try:
            text = base64.b64decode(str(raw), validate=True).decode()
        except ValueError:
            text = str(raw)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "pht_node_error" in answer:
            code = answer["pht_node_error"]
            reason = NODE_ERRORS.get(code if isinstance(code, str) else "", None)
            return self._failed(
                station,
                envelope,
                reason or NODE_ERRORS["internal"],
            )
        try:
            reply = Reply.from_json(text)
        except (ValueError, TypeError, KeyError, ConfigError):
            return self._failed(
                station,
                envelope,
                f"the vantage6 run {run.get('id')} returned no pht reply",
            )
        if reply.station != station:
            return self._failed(
                station,
                envelope,
                f"the node of organisation {run['organization']['id']} answered as "
                f"station '{reply.station}'; fix the engine's 'organizations'",
            )
        return reply

    @staticmethod
    def _failed(station: str, envelope: Envelope, reason: str) -> Reply:
        return Reply(
            request_id=_request_id(envelope),
            station=station,
            status="error",
            reason=reason,
            executor="vantage6",
            details={"vantage6": True},
        )

    def _kill(self, task_id: int) -> None:
        try:
            self._call("POST", "kill/task", {"id": task_id})
        except ConfigError as exc:
            log.warning("vantage6 task %s could not be killed: %s", task_id, exc)

    def open_sessions(
        self,
        requests: Mapping[str, Envelope],
        progress: ProgressCallback | None = None,
        opener: Callable[[Reply], Reply] | None = None,
    ) -> SessionGroup:
        """Open an iterative session at each station: a task per round.

        A session must keep its train process and the station's replay state, but
        vantage6 starts a fresh container per task. So a first task starts a session
        host at every node (a container that holds the station open and serves a
        spool in the station's folder, which only that node mounts); the open, every
        round and the close are short tasks whose containers hand the message to the
        host and return its reply. The station checks every message as under the
        embedded engine; the server carries only signed requests, round messages and
        sealed replies.
        """
        decode = opener or (lambda reply: reply)
        if not requests:
            return SessionGroup({}, lambda messages: {}, lambda: None, progress)
        if self._signer is None:
            raise ConfigError(
                "the vantage6 engine signs round messages with the requester's key: "
                "call sign_rounds_with(identity) before open_sessions"
            )
        keys: dict[str, PublicIdentity] = {}
        for station in requests:
            path = self.settings.station_keys.get(station)
            if path is None:
                raise ConfigError(
                    f"station '{station}' has no public key for the vantage6 engine; "
                    "iterative rounds are sealed to it: give its public_key in the "
                    "network file"
                )
            keys[station] = load_public(Path(path))
        sessions = {s: _request_id(e) for s, e in requests.items()}
        seqs = dict.fromkeys(requests, 0)
        if progress:
            for station in requests:
                progress(station, "started", None)
        host_task = self._create(
            "session_host", {s: {} for s in requests}, "pht session host"
        )
        opened_task = self._create(
            "session_open",
            {s: {"envelope": dict(e)} for s, e in requests.items()},
            "pht iterative request",
        )
        opened = {
            s: decode(r)
            for s, r in self._collect(opened_task, requests, progress, "opened").items()
        }
        if not any(r.ok for r in opened.values()):
            self._kill(host_task)

        def run_round(messages: Mapping[str, Mapping[str, Any]]) -> dict[str, Reply]:
            if not messages:
                return {}
            sealed = {}
            for s, m in messages.items():
                seqs[s] += 1
                box = seal_round(m, seqs[s], keys[s], sessions[s], s)
                sealed[s] = {
                    "session": sessions[s],
                    "sealed": box,
                    "signature": self._sign(sessions[s], s, seqs[s], box),
                }
            task_id = self._create("session_round", sealed, "pht round")
            asked = {s: requests[s] for s in messages}
            return {
                s: decode(r)
                for s, r in self._collect(task_id, asked, None, "finished").items()
            }

        def close() -> None:
            # the hosts close the sessions; nobody waits for the small task (a host
            # also closes a session after its idle limit and exits without any)
            live = [s for s, r in opened.items() if r.ok]
            if not live:
                return
            try:
                self._create(
                    "session_close",
                    {
                        s: {
                            "session": sessions[s],
                            "signature": self._sign(sessions[s], s, 0, None),
                        }
                        for s in live
                    },
                    "pht session close",
                )
            except ConfigError as exc:
                log.warning("vantage6 sessions could not be closed: %s", exc)
                self._kill(host_task)

        return SessionGroup(opened, run_round, close, progress)

    def collect(self, station: str, request_id: str) -> Reply | None:
        """Manual review is not reachable through vantage6 yet (always None)."""
        return None

    def close(self) -> None:
        """Forget the server token."""
        self._token = None

    def __enter__(self) -> Vantage6Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
