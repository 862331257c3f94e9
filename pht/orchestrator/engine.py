"""Engines deliver requests to stations and bring their replies back.

This module is the seam: the :class:`Engine` protocol, the :class:`SessionGroup` of
an iterative train's open sessions, and :func:`make_engine`, which builds the engine a
``network.yaml`` names under ``engine:`` (default ``embedded``).

Engines:

- ``embedded`` (:mod:`pht.orchestrator.embedded`): every station of the network file
  in this process, talking JSON messages;
- ``vantage6`` (:mod:`pht.orchestrator.vantage6_engine`): every station is a
  vantage6 node running the pht station image; ``engine:`` is then a mapping
  (:mod:`pht.orchestrator.vantage6_config`);
- :class:`~pht.orchestrator.fake.FakeEngine` (tests): stations are functions, as
  httpx's ``MockTransport`` makes a server a function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pht.errors import ConfigError
from pht.wire import Reply

if TYPE_CHECKING:
    from pht.manifest import Catalogue
    from pht.orchestrator.config import Network

Envelope = Mapping[str, Any]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundProgress:
    """One finished round of an iterative session, as progress callbacks see it."""

    number: int
    """1 for the first round after the sessions opened."""
    asked: int
    """Stations sent a message this round."""
    answered: int
    """Stations whose reply was ``ok``."""
    seconds: float
    """Wall time of the round, from sending to the last reply."""


ProgressCallback = Callable[[str, str, "Reply | RoundProgress | None"], None]
"""Called as ``(station_id, event, detail)`` while an engine works:

- ``"started"``, ``None``: a request or session is on its way to the station;
- ``"finished"``, the :class:`~pht.wire.Reply`: a single-round request came back;
- ``"opened"``, the ``Reply``: an iterative session opened (or was refused);
- ``"round"``, a :class:`RoundProgress`: a round of an iterative train finished at
  every active station; ``station_id`` is ``""`` (the event is the group's).
"""


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

    def collect(self, station: str, request_id: str) -> Reply | None:
        """A reply a station held for manual review, once reviewed (else None)."""
        ...

    def close(self) -> None:
        """Let go of the stations (the embedded engine closes their audit logs)."""
        ...

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SessionGroup:
    """Live iterative sessions at several stations; rounds run concurrently."""

    def __init__(
        self,
        opened: dict[str, Reply],
        run_round: Callable[[Mapping[str, Mapping[str, Any]]], dict[str, Reply]],
        close: Callable[[], None],
        progress: ProgressCallback | None = None,
    ) -> None:
        self.opened = opened
        self.dropped: dict[str, Reply] = {}
        self._round = run_round
        self._close = close
        self._progress = progress
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
        """Send one message per station; return their replies.

        The progress callback, if any, hears a ``"round"`` event when all replied.
        """
        self.rounds += 1
        start = time.monotonic()
        replies = self._round(messages)
        if self._progress is not None:
            self._progress(
                "",
                "round",
                RoundProgress(
                    number=self.rounds,
                    asked=len(messages),
                    answered=sum(1 for r in replies.values() if r.ok),
                    seconds=time.monotonic() - start,
                ),
            )
        return replies

    def close(self) -> None:
        """End every session."""
        self._close()

    def __enter__(self) -> SessionGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EngineFactory = Callable[["Network", "Catalogue | None"], Engine]


def _embedded(network: Network, catalogue: Catalogue | None) -> Engine:
    from pht.orchestrator.embedded import EmbeddedEngine

    return EmbeddedEngine(network, catalogue)


def _vantage6(network: Network, catalogue: Catalogue | None) -> Engine:
    from pht.orchestrator.vantage6_config import make_engine as make_vantage6

    return make_vantage6(network)


ENGINES: dict[str, EngineFactory] = {"embedded": _embedded, "vantage6": _vantage6}
"""Engine name (``engine:`` in ``network.yaml``) to the factory that builds it."""


def make_engine(network: Network, catalogue: Catalogue | None = None) -> Engine:
    """The engine ``network.yaml`` names (``embedded`` unless it says otherwise)."""
    try:
        factory = ENGINES[network.engine]
    except KeyError:
        raise ConfigError(
            f"{network.source}: engine '{network.engine}' is not available; use one "
            f"of {', '.join(ENGINES)}"
        ) from None
    return factory(network, catalogue)
