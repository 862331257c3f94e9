"""The embedded engine: every station of a ``network.yaml`` in this process.

Each station gets its own datasets, policy, executor and working folder (the station's
side of the network file, :class:`~pht.orchestrator.config.StationHost`) and is
reached only through :mod:`pht.wire` messages, encoded to JSON and decoded again
exactly as over a network. Stations run concurrently, one worker each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pht.crypto import load_identity
from pht.errors import ConfigError
from pht.keyring import Keyring
from pht.manifest import Catalogue
from pht.orchestrator.config import Network, StationEntry
from pht.orchestrator.engine import Envelope, ProgressCallback, SessionGroup
from pht.station import (
    ProcessExecutor,
    Station,
    StationConfig,
    StationSession,
    load_policy,
)
from pht.station.executors import Executor
from pht.wire import Reply

log = logging.getLogger(__name__)


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


def host_station(entry: StationEntry, catalogue: Catalogue | None = None) -> Station:
    """The station a network entry configures (its operator's side of the file)."""
    host = entry.hosted()
    host.workdir.mkdir(parents=True, exist_ok=True)
    config = StationConfig(
        id=entry.id,
        name=entry.name,
        datasets={k: d.held() for k, d in host.datasets.items()},
        policy=load_policy(host.policy),
        workdir=host.workdir,
        identity=load_identity(host.identity),
        keyring=Keyring.load(host.keyring),
        executor=host.executor,
        witness=host.witness,
    )
    return Station(config, _executor(host.executor), catalogue or Catalogue())


def local_station(
    network: Network, station_id: str, catalogue: Catalogue | None = None
) -> Station:
    """One station of ``network`` run from this machine (for its operator's commands)."""
    if station_id not in network.stations:
        known = ", ".join(network.stations)
        raise ConfigError(f"unknown station '{station_id}'; the network has: {known}")
    return host_station(network.stations[station_id], catalogue)


class EmbeddedEngine:
    """All stations of a network in this process, talking JSON messages."""

    name = "embedded"

    def __init__(self, network: Network, catalogue: Catalogue | None = None) -> None:
        self.network = network
        self._catalogue = catalogue or Catalogue()
        self._stations: dict[str, Station] = {}
        for entry in network.stations.values():
            self._stations[entry.id] = host_station(entry, self._catalogue)

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

    def close(self) -> None:
        """Close every station's audit log (idempotent)."""
        for station in self._stations.values():
            station.close()

    def __enter__(self) -> EmbeddedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self, station: str, request_id: str) -> Reply | None:
        """The reviewed reply of ``request_id`` at ``station``, or None if still held."""
        reply = self.station(station).collect(request_id)
        return None if reply is None else Reply.from_json(reply.to_json())

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

        return SessionGroup(opened, run_round, close, progress)
