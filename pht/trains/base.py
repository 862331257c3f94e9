"""What a train plugin declares: how its answers are pooled, driven and shown.

A train is a folder in the catalogue (``manifest.yaml`` + ``entrypoint.py``, signed
by a methodologist) plus one plugin module that tells the orchestrator and the
station what the train's outputs mean:

- a **single-round** train gives :attr:`TrainPlugin.pool` (released outputs by
  station -> result sections);
- an **iterative** train gives :attr:`TrainPlugin.strategy`, a factory of a
  :class:`Strategy` (configure a round, aggregate a round, produce the result; the
  shape of Flower's ``Strategy``);
- :attr:`TrainPlugin.sections` render its result keys in ``report.html``;
- :attr:`TrainPlugin.recompute` is the station's own computation of the output
  (the station releases its own values, never the train's: see
  :mod:`pht.station.release`); :attr:`TrainPlugin.finalize`, a second step on it
  after the comparison, may withhold more (e.g. against the station's history);
- :attr:`TrainPlugin.companion` names a second train whose answers complete this one;
- :attr:`TrainPlugin.check` checks the study's parameters together (rules one
  parameter's manifest entry cannot state, e.g. weights with a positive sum).
"""

from __future__ import annotations

import fcntl
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pht.errors import ConfigError

if TYPE_CHECKING:
    from pht.manifest import Manifest
    from pht.station.base import Admission
    from pht.wire import Reply

Sections = dict[str, Any]
"""Result keys of ``result.json`` (besides the header and provenance)."""

Pooler = Callable[[Mapping[str, Mapping[str, Any]], Mapping[str, Any]], Sections]
"""``(released outputs by station id, study parameters) -> sections``."""

Renderer = Callable[[Mapping[str, Any]], str]
"""The whole ``result.json`` -> one HTML ``<section>`` (see :mod:`.report`)."""

Message = Mapping[str, Any]


class Strategy(Protocol):
    """The orchestrator's side of an iterative train, one object per study run.

    The run loop (:func:`pht.trains.run_strategy`) asks :meth:`configure_round` for
    the next round's messages, sends them, hands the replies to
    :meth:`aggregate_round`, and repeats until :meth:`configure_round` returns None;
    then :meth:`result` gives the result sections.
    """

    def configure_round(self, active: Sequence[str]) -> Mapping[str, Message] | None:
        """Messages of the next round by station id; None when the fit is done."""
        ...

    def aggregate_round(self, replies: Mapping[str, Reply]) -> Sequence[str]:
        """Take a round's replies; return the stations that left the session."""
        ...

    def result(self) -> Sections:
        """The result sections."""
        ...


StrategyFactory = Callable[[Mapping[str, "Reply"], Mapping[str, Any]], Strategy]
"""``(round-0 replies by station id, refusals included, study parameters) -> Strategy``;
only the ``active`` stations :meth:`Strategy.configure_round` gets may be sent messages."""


class ReleaseHistory:
    """What a station released for one dataset version under one name, kept on disk.

    A plugin that must protect against differencing across requests (linked tables)
    reads every earlier release of the same data, checks the new one against all of
    them, and records it, all while holding :meth:`locked` (one request at a time).
    Records are JSON objects, one per line, appended and never rewritten.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def locked(self) -> Iterator[ReleaseHistory]:
        """Hold the history's lock (an ``flock`` on a sibling file) for a check."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_suffix(".lock"), "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first (none for a new history)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def add(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records (flushed and synced before returning)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


@dataclass(frozen=True)
class StationView:
    """What the station gives a plugin's :attr:`TrainPlugin.recompute`.

    Only the station's own extract (the admitted population), its grid and its
    policy: the plugin recomputes the output from these, never from the train's.
    """

    admitted: Admission
    workdir: Path | None = None
    """The station's working folder (for :meth:`history`)."""

    def history(self, name: str) -> ReleaseHistory:
        """This dataset version's release history under ``name`` (e.g. the train's)."""
        if self.workdir is None or self.admitted.version is None:
            raise ConfigError("this station keeps no release history here")
        if not name.replace(".", "").replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"history name '{name}' must be letters, digits, .-_")
        version = self.admitted.version.replace(":", "-")
        dataset = self.admitted.body.dataset
        return ReleaseHistory(
            self.workdir / "history" / dataset / version / f"{name}.jsonl"
        )

    @property
    def parameters(self) -> Mapping[str, Any]:
        """The request's parameters (already checked against the manifest)."""
        return self.admitted.parameters

    @property
    def min_count(self) -> int:
        """The policy's threshold: no released count in (0, k)."""
        return int(self.admitted.policy.min_cell_size)

    @property
    def rules(self) -> Mapping[str, Any]:
        """The policy's rules beyond k (``dominance_share``, ``rounding_base``)."""
        return self.admitted.policy.rules

    @property
    def show_station_name(self) -> bool:
        """Whether the policy lets results be shown by station (and site) name."""
        return bool(self.admitted.policy.show_station_name)

    def has_column(self, name: str) -> bool:
        """Whether the station's extract holds ``name`` (an allowed column it has)."""
        population = self.admitted.population
        return population is not None and name in population.table.column_names

    def column(self, name: str) -> Any:
        """A column of the admitted population (an allowed column only)."""
        population = self.admitted.population
        if population is None or name not in population.table.column_names:
            raise ConfigError(f"column '{name}' is not in the station's extract")
        return population.column(name)


Recompute = Callable[[StationView], dict[str, Any]]

Finalize = Callable[[StationView, dict[str, Any]], dict[str, Any]]
"""``(view, the station's own output, equal to the train's) -> the output released``:
a second station-side step after the comparison (e.g. against the station's release
history). It may only withhold more; it raises a PhtError to refuse."""


@dataclass(frozen=True)
class Contract:
    """What a plugin's station-side computation assumes of the train's manifest.

    Every column parameter's ``(type, kind, role, if_present)`` and the output class
    (per value of a ``class_by`` parameter). The station refuses a train whose signed
    manifest says otherwise: a trusted key cannot sign a "utilisation" whose period
    column is a measure, so that the station's own computation releases costs.
    """

    columns: Mapping[str, tuple[str, str | None, str | None, bool]]
    output_class: str
    class_by: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest) -> Contract:
        """The contract a manifest states."""
        return cls(
            columns={
                s.name: (s.type, s.kind, s.role, s.if_present)
                for s in manifest.column_params()
            },
            output_class=manifest.output_class,
            class_by={k: dict(v) for k, v in manifest.output_class_by.items()},
        )

    def differs(self, manifest: Manifest) -> str | None:
        """Why ``manifest`` breaks the contract (for the station's log), or None."""
        stated = Contract.of(manifest)
        for name in sorted(set(self.columns) | set(stated.columns)):
            if self.columns.get(name) != stated.columns.get(name):
                return f"column parameter '{name}' is {stated.columns.get(name)}"
        if (self.output_class, dict(self.class_by)) != (
            stated.output_class,
            dict(stated.class_by),
        ):
            return f"output class {stated.output_class} {stated.class_by}"
        return None


Check = Callable[[Mapping[str, Any]], Sequence[str]]
"""``(resolved study parameters) -> problems`` as ``"key: what to fix"`` strings,
checked when the study is loaded, before any request is sent."""


@dataclass(frozen=True)
class Companion:
    """A second train sent with this one when the study gives ``trigger``."""

    train: str
    parameters: tuple[str, ...]
    trigger: str


@dataclass(frozen=True)
class TrainPlugin:
    """One train's declarations (see the module docstring)."""

    name: str
    pool: Pooler | None = None
    strategy: StrategyFactory | None = None
    sections: tuple[tuple[str, Renderer], ...] = ()
    recompute: Recompute | None = None
    finalize: Finalize | None = None
    """Applied to :attr:`recompute`'s output once the train's output equalled it."""
    contract: Contract | None = None
    """The manifest the plugin's computations assume; required with ``recompute``."""
    companion: Companion | None = None
    check: Check | None = None
    in_default_policy: bool = True
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.recompute is not None and self.contract is None:
            raise ConfigError(
                f"train plugin '{self.name}': a station-side recompute needs the "
                "contract of the manifest it assumes"
            )
        if (self.pool is None) == (self.strategy is None):
            raise ConfigError(
                f"train plugin '{self.name}': give exactly one of pool (single-round) "
                "and strategy (iterative)"
            )

    @property
    def rounds(self) -> str:
        """``single`` or ``iterative`` (must match the manifest's ``rounds``)."""
        return "single" if self.pool is not None else "iterative"


Rounds = Generator[Mapping[str, Message], Mapping[str, "Reply"], Sections]
"""A strategy written as a generator: yield a round's messages, receive its replies,
return the result sections."""


class RoundsStrategy(ABC):
    """A :class:`Strategy` from a generator of rounds (loops stay readable).

    Subclasses implement :meth:`rounds`; a station that leaves the session is
    reported with :meth:`leave` from inside it.
    """

    def __init__(self) -> None:
        self._rounds: Rounds | None = None
        self._next: Mapping[str, Message] | None = None
        self._left: list[str] = []
        self._result: Sections | None = None

    @abstractmethod
    def rounds(self) -> Rounds:
        """Yield each round's messages; receive the replies; return the sections."""

    def leave(self, station: str) -> None:
        """Record that ``station`` leaves the session after this round."""
        self._left.append(station)

    def _advance(self, replies: Mapping[str, Reply] | None) -> None:
        assert self._rounds is not None
        try:
            if replies is None:
                self._next = next(self._rounds)
            else:
                self._next = self._rounds.send(replies)
        except StopIteration as stop:
            self._next, self._result = None, stop.value

    def configure_round(self, active: Sequence[str]) -> Mapping[str, Message] | None:
        """The messages :meth:`rounds` yields next; None once it returned."""
        if self._rounds is None:
            self._rounds = self.rounds()
            self._advance(None)
        return self._next

    def aggregate_round(self, replies: Mapping[str, Reply]) -> Sequence[str]:
        """Send the replies into :meth:`rounds`; the stations it let go."""
        self._left = []
        self._advance(replies)
        return list(self._left)

    def result(self) -> Sections:
        """What :meth:`rounds` returned."""
        if self._result is None:
            raise ConfigError("the strategy has not produced a result")
        return self._result
