"""Engines deliver requests to stations and bring their replies back.

:class:`EmbeddedEngine` builds every station of a ``network.yaml`` in this process, each
with its own datasets, policy, executor and working folder, and talks to them only
through :mod:`pht.wire` messages (encoded to JSON and decoded again, exactly as over a
network). Stations run concurrently. A distributed engine (vantage6) will implement the
same :class:`Engine` protocol.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pht.crypto import load_identity
from pht.errors import ConfigError
from pht.keyring import Keyring
from pht.manifest import Catalogue
from pht.orchestrator.config import Network
from pht.station import (
    ProcessExecutor,
    Station,
    StationConfig,
    StationSession,
    load_policy,
)
from pht.station.executors import Executor
from pht.wire import Reply

Envelope = Mapping[str, Any]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, str, Reply | None], None]
"""Called as ``(station_id, "started" | "finished" | "opened", reply)``."""


class Engine(Protocol):
    """Dispatches requests to stations."""

    name: str

    def dispatch(
        self, requests: Mapping[str, Envelope], progress: ProgressCallback | None = None
    ) -> dict[str, Reply]:
        """Send each request to its station; return the replies by station id."""
        ...

    def open_sessions(
        self,
        requests: Mapping[str, Envelope],
        progress: ProgressCallback | None = None,
        opener: Callable[[Reply], Reply] | None = None,
    ) -> SessionGroup:
        """Open an iterative session at each station."""
        ...


def _executor(kind: str) -> Executor:
    if kind == "process":
        # the station itself refuses, per dataset policy, to run where sandbox
        # controls are missing (unsafe_process_sandbox); the executor runs what the
        # station admitted
        try:
            return ProcessExecutor(allow_unsafe=True)  # type: ignore[call-arg]
        except TypeError:
            return ProcessExecutor()
    if kind == "docker":
        from pht.station.docker_executor import DockerExecutor

        return DockerExecutor()
    raise ConfigError(f"executor '{kind}' is not available")


class EmbeddedEngine:
    """All stations of a network in this process, talking JSON messages."""

    name = "embedded"

    def __init__(self, network: Network, catalogue: Catalogue | None = None) -> None:
        self.network = network
        self._catalogue = catalogue or Catalogue()
        self._stations: dict[str, Station] = {}
        for entry in network.stations.values():
            entry.workdir.mkdir(parents=True, exist_ok=True)
            config = StationConfig(
                id=entry.id,
                name=entry.name,
                datasets={k: d.path for k, d in entry.datasets.items()},
                policy=load_policy(entry.policy),
                workdir=entry.workdir,
                identity=load_identity(entry.identity),
                keyring=Keyring.load(entry.keyring),
                executor=entry.executor,
                witness=entry.witness,
            )
            self._stations[entry.id] = Station(
                config, _executor(entry.executor), self._catalogue
            )

    def station(self, station_id: str) -> Station:
        """A station of this network (for its operator's commands)."""
        if station_id not in self._stations:
            known = ", ".join(self._stations)
            raise ConfigError(
                f"unknown station '{station_id}'; the network has: {known}"
            )
        return self._stations[station_id]

    def _one(
        self, station_id: str, wire: str, progress: ProgressCallback | None
    ) -> str:
        if progress:
            progress(station_id, "started", None)
        reply = self._stations[station_id].handle(json.loads(wire))
        encoded = reply.to_json()
        if progress:
            progress(station_id, "finished", Reply.from_json(encoded))
        return encoded

    def dispatch(
        self, requests: Mapping[str, Envelope], progress: ProgressCallback | None = None
    ) -> dict[str, Reply]:
        """Run the requests concurrently, one worker per station."""
        unknown = [s for s in requests if s not in self._stations]
        if unknown:
            raise ConfigError(f"unknown station(s): {', '.join(unknown)}")
        if not requests:
            return {}
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            futures = {
                station_id: pool.submit(
                    self._one, station_id, json.dumps(req), progress
                )
                for station_id, req in requests.items()
            }
            return {s: Reply.from_json(f.result()) for s, f in futures.items()}

    def open_sessions(
        self,
        requests: Mapping[str, Envelope],
        progress: ProgressCallback | None = None,
        opener: Callable[[Reply], Reply] | None = None,
    ) -> SessionGroup:
        """Open a session per station; each keeps one train process for all rounds.

        ``opener`` is applied to every reply (the requester checks the receipt and
        opens the sealed output there).
        """
        decode = opener or (lambda reply: reply)
        sessions: dict[str, StationSession] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, len(requests)))

        def open_one(station_id: str, wire: str) -> str:
            if progress:
                progress(station_id, "started", None)
            reply, session = self._stations[station_id].open_session(json.loads(wire))
            if session is not None:
                sessions[station_id] = session
            encoded = reply.to_json()
            if progress:
                progress(station_id, "opened", Reply.from_json(encoded))
            return encoded

        futures = {
            s: pool.submit(open_one, s, json.dumps(r)) for s, r in requests.items()
        }
        opened = {s: decode(Reply.from_json(f.result())) for s, f in futures.items()}

        def run_round(messages: Mapping[str, Mapping[str, Any]]) -> dict[str, Reply]:
            wires = {
                s: json.dumps(dict(m), allow_nan=False) for s, m in messages.items()
            }

            def answer(station: str, wire: str) -> str:
                return sessions[station].round(json.loads(wire)).to_json()

            done = {s: pool.submit(answer, s, w) for s, w in wires.items()}
            return {s: decode(Reply.from_json(f.result())) for s, f in done.items()}

        def close() -> None:
            # concurrently: each train process takes a moment to exit
            list(pool.map(lambda session: session.close(), list(sessions.values())))
            pool.shutdown(wait=True)

        return SessionGroup(opened, run_round, close)


class SessionGroup:
    """Live iterative sessions at several stations; rounds run concurrently."""

    def __init__(
        self,
        opened: dict[str, Reply],
        run_round: Callable[[Mapping[str, Mapping[str, Any]]], dict[str, Reply]],
        close: Callable[[], None],
    ) -> None:
        self.opened = opened
        self.dropped: dict[str, Reply] = {}
        self._round = run_round
        self._close = close
        self.rounds = 0

    @property
    def active(self) -> list[str]:
        """Stations whose session is open and that have not dropped out."""
        return [s for s, r in self.opened.items() if r.ok and s not in self.dropped]

    def drop(self, station: str, reply: Reply) -> None:
        """Record that ``station`` left the session (its reply says why)."""
        self.dropped[station] = reply

    @property
    def outcome(self) -> dict[str, Reply]:
        """The final reply of every station: its refusal if it dropped out."""
        return {s: self.dropped.get(s, r) for s, r in self.opened.items()}

    def round(self, messages: Mapping[str, Mapping[str, Any]]) -> dict[str, Reply]:
        """Send one message per station; return their replies."""
        self.rounds += 1
        return self._round(messages)

    def close(self) -> None:
        """End every session."""
        self._close()

    def __enter__(self) -> SessionGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
