"""An in-memory engine for tests: stations are functions.

As httpx's ``MockTransport`` turns a server into a function, :class:`FakeEngine`
turns each station into a :class:`FakeStation` that verifies the signed request,
answers it with a Python function of the request's parameters, and seals and signs
its reply with a real station identity, so the requester's checks (receipt, seal,
digests) run exactly as against real stations. Use it to test a train plugin's
pooling or strategy without containers, policies or data files::

    engine = FakeEngine({"s1": FakeStation.trusting("s1", analyst_pub, answer)})
    result = run_study(study, network, engine, requester)

``answer(parameters, message)`` gets the request's parameters and, in an iterative
session, each round's message (None for round 0 and for single-round requests); it
returns the output dict, or raises :class:`~pht.errors.DisclosureError` to refuse.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pht.crypto import (
    Identity,
    PublicIdentity,
    canonical_json,
    digest,
    new_identity,
    seal,
    sealed_digest,
)
from pht.errors import ConfigError, DisclosureError, PhtError
from pht.keyring import Keyring
from pht.orchestrator.engine import Envelope, ProgressCallback, SessionGroup
from pht.signing import Receipt, SignedRequestBody, sign_receipt, verify_signed_request
from pht.timefmt import utc_now
from pht.wire import Reply

Answer = Callable[[Mapping[str, Any], Mapping[str, Any] | None], Mapping[str, Any]]


class FakeStation:
    """A station that is a function (see the module docstring)."""

    def __init__(
        self,
        station_id: str,
        identity: Identity,
        keyring: Keyring,
        answer: Answer,
        *,
        show_station_name: bool = False,
    ) -> None:
        self.id = station_id
        self.identity = identity
        self.keyring = keyring
        self.answer = answer
        self.show_station_name = show_station_name
        self.released: list[Mapping[str, Any]] = []

    @classmethod
    def trusting(
        cls, station_id: str, requester: Path, answer: Answer, **options: Any
    ) -> FakeStation:
        """A fake station with a fresh key, trusting one requester key file.

        ``requester`` is the analyst's ``.pub.json``; it may claim the ``analyst`` role.
        """
        keyring = Keyring()
        keyring.add(
            requester,
            roles=["requester"],
            valid_from=utc_now() - dt.timedelta(days=1),
            requester_roles=["analyst"],
        )
        identity = new_identity("station", station_id.upper(), station_id)
        return cls(station_id, identity, keyring, answer, **options)

    @property
    def public(self) -> PublicIdentity:
        """The station's public identity (give it to the requester)."""
        return self.identity.public

    def _reply(
        self,
        body: SignedRequestBody,
        requester: PublicIdentity,
        message: Mapping[str, Any] | None,
        round_no: int,
    ) -> Reply:
        try:
            output = dict(self.answer(body.parameters, message))
        except DisclosureError as exc:
            return Reply(body.request_id, self.id, "refused", str(exc))
        except PhtError as exc:
            return Reply(body.request_id, self.id, "error", str(exc))
        plain = canonical_json(output)
        train_digest = body.train_digest
        sealed = seal(
            plain,
            requester.sealing_key,
            request_id=body.request_id,
            station_id=self.id,
            manifest_digest=train_digest,
        )
        self.released.append(output)
        receipt = Receipt(
            request_id=body.request_id,
            station=self.id,
            round=round_no,
            output_digest=digest(plain),
            sealed_digest=sealed_digest(sealed),
            audit_size=len(self.released),
            audit_root="0" * 64,
            time=utc_now().isoformat(),
        )
        return Reply(
            body.request_id,
            self.id,
            "ok",
            train_digest=train_digest,
            details={"show_station_name": self.show_station_name},
            sealed=sealed,
            receipt=sign_receipt(receipt, self.identity),
            executor="fake",
        )

    def handle(self, envelope: Envelope) -> Reply:
        """Answer a single-round request."""
        verified = verify_signed_request(envelope, self.keyring, self.id)
        return self._reply(verified.body, verified.entry.identity, None, 0)

    def open_session(self, envelope: Envelope) -> tuple[Reply, FakeSession | None]:
        """Round 0 of an iterative request, and the session for later rounds."""
        verified = verify_signed_request(envelope, self.keyring, self.id)
        reply = self._reply(verified.body, verified.entry.identity, None, 0)
        if not reply.ok:
            return reply, None
        return reply, FakeSession(self, verified.body, verified.entry.identity)


class FakeSession:
    """Later rounds of one iterative request at a :class:`FakeStation`."""

    def __init__(
        self, station: FakeStation, body: SignedRequestBody, requester: PublicIdentity
    ) -> None:
        self.station, self.body, self.requester = station, body, requester
        self.rounds = 0

    def round(self, message: Mapping[str, Any]) -> Reply:
        """Answer one round's message."""
        self.rounds += 1
        return self.station._reply(  # noqa: SLF001
            self.body, self.requester, message, self.rounds
        )


class FakeEngine:
    """Stations as in-memory objects; messages still go through JSON."""

    name = "fake"

    def __init__(self, stations: Mapping[str, FakeStation]) -> None:
        self.stations = dict(stations)

    def _station(self, station_id: str) -> FakeStation:
        if station_id not in self.stations:
            raise ConfigError(f"unknown station(s): {station_id}")
        return self.stations[station_id]

    @staticmethod
    def _wire(reply: Reply) -> Reply:
        return Reply.from_json(reply.to_json())

    def dispatch(
        self, requests: Mapping[str, Envelope], progress: ProgressCallback | None = None
    ) -> dict[str, Reply]:
        """Answer each request at its station, one after the other."""
        replies = {}
        for station_id, envelope in requests.items():
            station = self._station(station_id)
            if progress:
                progress(station_id, "started", None)
            replies[station_id] = self._wire(
                station.handle(json.loads(json.dumps(envelope)))
            )
            if progress:
                progress(station_id, "finished", replies[station_id])
        return replies

    def close(self) -> None:
        """Nothing to let go of."""

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self, station: str, request_id: str) -> Reply | None:
        """Fake stations never hold an output for review."""
        self._station(station)
        return None

    def open_sessions(
        self,
        requests: Mapping[str, Envelope],
        progress: ProgressCallback | None = None,
        opener: Callable[[Reply], Reply] | None = None,
    ) -> SessionGroup:
        """Open a session per station; rounds are answered in memory."""
        decode = opener or (lambda reply: reply)
        sessions: dict[str, FakeSession] = {}
        opened: dict[str, Reply] = {}
        for station_id, envelope in requests.items():
            reply, session = self._station(station_id).open_session(
                json.loads(json.dumps(envelope))
            )
            if session is not None:
                sessions[station_id] = session
            opened[station_id] = decode(self._wire(reply))
            if progress:
                progress(station_id, "opened", opened[station_id])

        def run_round(messages: Mapping[str, Mapping[str, Any]]) -> dict[str, Reply]:
            return {
                s: decode(self._wire(sessions[s].round(json.loads(json.dumps(m)))))
                for s, m in messages.items()
            }

        return SessionGroup(opened, run_round, lambda: None, progress)


__all__ = ["FakeEngine", "FakeSession", "FakeStation"]
