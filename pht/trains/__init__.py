"""The train plugins: one typed registry the orchestrator and the stations look up.

Every module of this package except :mod:`.base` is a built-in plugin that calls
:func:`register` when imported; installed packages add plugins through the
``pht.trains`` entry-point group (each entry point is a module that registers its
plugins). Tests and notebooks may :func:`register` a plugin directly.

Example
-------
>>> from pht.trains import plugin_for
>>> plugin_for("survival.km").rounds
'single'
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from pht.errors import ConfigError, ExecutorError, PhtError, PolicyError
from pht.trains.base import (
    Companion,
    Contract,
    Message,
    Pooler,
    Recompute,
    Renderer,
    Rounds,
    RoundsStrategy,
    Sections,
    StationView,
    Strategy,
    StrategyFactory,
    TrainPlugin,
)

if TYPE_CHECKING:
    from pht.orchestrator.engine import SessionGroup
    from pht.wire import Reply

__all__ = [
    "Companion",
    "Contract",
    "RegistryError",
    "lookup",
    "Message",
    "Pooler",
    "Recompute",
    "Renderer",
    "Rounds",
    "RoundsStrategy",
    "Sections",
    "StationView",
    "Strategy",
    "StrategyFactory",
    "TrainPlugin",
    "plugin_for",
    "plugins",
    "register",
    "run_strategy",
    "unregister",
]

ENTRY_POINTS = "pht.trains"
_plugins: dict[str, TrainPlugin] = {}
_lock = threading.Lock()
_loaded = False


def register(plugin: TrainPlugin) -> TrainPlugin:
    """Add ``plugin`` to the registry; a different plugin of the same name is an error."""
    with _lock:
        known = _plugins.get(plugin.name)
        if known is not None and known is not plugin:
            raise ConfigError(
                f"train plugin '{plugin.name}' is registered twice; unregister the "
                "old one first or give the train another name"
            )
        _plugins[plugin.name] = plugin
    return plugin


def unregister(name: str) -> None:
    """Remove a plugin (tests that registered a toy train clean up with this)."""
    with _lock:
        _plugins.pop(name, None)


class RegistryError(PhtError):
    """The plugin registry could not be loaded: nothing may rely on it."""


def _load() -> None:
    """Import the built-in plugin modules and the installed entry points, once.

    Any failure (a module that does not import, two plugins of one name) is a
    :class:`RegistryError` every time it is asked again: a station then refuses
    (fails closed) rather than treat a known train as one without a plugin.
    """
    global _loaded
    if _loaded:
        return
    try:
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base" and not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        for entry in entry_points(group=ENTRY_POINTS):
            entry.load()
    except Exception as exc:  # noqa: BLE001 - whatever broke, the registry is broken
        raise RegistryError(
            f"the train plugin registry did not load ({type(exc).__name__}: {exc}); "
            "fix or uninstall the plugin named"
        ) from None
    _loaded = True


def lookup(name: str) -> TrainPlugin | None:
    """The plugin of ``name``, None if none is registered; a broken registry raises."""
    _load()
    return _plugins.get(name)


def plugins() -> Mapping[str, TrainPlugin]:
    """Every registered plugin by train name."""
    _load()
    return dict(sorted(_plugins.items()))


def plugin_for(name: str) -> TrainPlugin:
    """The plugin of a train name, or a :class:`ConfigError` naming the known ones."""
    _load()
    try:
        return _plugins[name]
    except KeyError:
        known = ", ".join(sorted(_plugins)) or "none"
        raise ConfigError(
            f"no plugin is registered for train '{name}' (known: {known}); add a "
            "module to pht/trains/ or register one (see README, 'Adding a train')"
        ) from None


def renderers() -> Iterator[tuple[str, Renderer]]:
    """Every plugin's (result key, renderer), in plugin then declaration order."""
    for plugin in plugins().values():
        yield from plugin.sections


def _stop_on_fault(replies: Mapping[str, Reply], round_no: int) -> None:
    """A station that *fails* mid-session stops the study (one line, who acts).

    Its data are already in the fit, so the session cannot be finished without it;
    a station that refuses is the strategy's to handle (it may let it leave).
    """
    from pht.station.codes import acts

    for station, reply in replies.items():
        if reply.status == "error":
            raise ExecutorError(
                f"station {station} failed in round {round_no} of the session: "
                f"{reply.reason} (acts: {acts(reply.reason)}); an iterative session "
                "cannot be finished without a station whose data are already in the "
                f"fit: ask {station}'s operator to check request "
                f"{reply.request_id} in its log, then run the study again"
            )


def run_strategy(strategy: Strategy, group: SessionGroup) -> Sections:
    """Drive an iterative train's strategy over open sessions to its result."""
    while True:
        active: Sequence[str] = group.active
        if not active:
            raise PolicyError("no station is left in the session")
        messages = strategy.configure_round(active)
        if messages is None:
            return strategy.result()
        replies = group.round(messages)
        _stop_on_fault(replies, group.rounds)
        for station in strategy.aggregate_round(replies):
            group.drop(station, replies[station])
