"""``engine: {kind: vantage6, ...}`` in the analyst's ``network.yaml``.

The analyst's network file names the vantage6 server, the collaboration, the user and
the pht station image the nodes allow; stations map onto vantage6 organisations by
name or numeric id (default: the organisation named like the station)::

    engine:
      kind: vantage6
      server: http://127.0.0.1:7601/api
      collaboration: pht              # name or numeric id
      username: analyst
      password_file: v6/analyst.password   # relative to network.yaml
      image: pht/v6-station:<hash>
      organizations: {nkr: nkr, dica: dica, umc: umc}
      timeout: 300                    # optional, seconds
      offline_grace: 15               # optional, seconds

:func:`parse` checks the mapping when the network file is loaded (no server
contact); :func:`make_engine` resolves names to ids through the server when the
engine is built, just before it is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pht import yamlcfg
from pht.errors import ConfigError

if TYPE_CHECKING:
    from pht.orchestrator.config import Network
    from pht.orchestrator.vantage6_engine import Vantage6Engine

KEYS = frozenset(
    {
        "kind",
        "server",
        "collaboration",
        "username",
        "password_file",
        "image",
        "organizations",
        "timeout",
        "offline_grace",
    }
)
"""Keys of a ``kind: vantage6`` engine mapping."""


def _seconds(node: yamlcfg.Node | None, default: float) -> float:
    if node is None:
        return default
    value = float(node.as_type(float))
    if not 0 < value <= 86400:
        raise node.error(f"expected seconds between 0 and 86400, got {value:g}")
    return value


def _name_or_id(node: yamlcfg.Node) -> str | int:
    value = node.as_type((str, int))
    if isinstance(value, int):
        if value < 1:
            raise node.error(f"a vantage6 id is a positive whole number, not {value}")
        return value
    return node.as_str()


def parse(
    engine: yamlcfg.Mapping, base: Path, stations: Sequence[str]
) -> Mapping[str, Any]:
    """Check a ``kind: vantage6`` engine mapping; return its settings.

    Parameters
    ----------
    engine
        The ``engine:`` mapping of ``network.yaml`` (``kind`` already read).
    base
        The network file's folder (``password_file`` is relative to it).
    stations
        The network's station ids, in file order.

    Returns
    -------
    Mapping[str, Any]
        Read-only: ``server``, ``collaboration`` (name or id), ``username``,
        ``password_file`` (resolved :class:`~pathlib.Path`), ``image``,
        ``organizations`` (station id to organisation name or id, every station),
        ``timeout`` and ``offline_grace`` (seconds).

    Raises
    ------
    ConfigError
        Located at the key: a missing or wrong-typed value, an unknown key, a
        password file that does not exist, a station without organisation.
    """
    where = engine.node.where or "engine"
    server_node = engine.require("server")
    server = server_node.as_str()
    if not server.startswith(("http://", "https://")):
        raise server_node.error(
            f"'{server}' is not an http(s) address; give the vantage6 server's API "
            "root, e.g. http://127.0.0.1:7601/api"
        )
    password_node = engine.require("password_file")
    password_file = (base / password_node.as_str()).resolve()
    if not password_file.is_file():
        raise password_node.error(
            f"password file '{password_node.as_str()}' not found (looked in "
            f"{password_file}); write the vantage6 user's password on its first line"
        )
    organizations: dict[str, str | int] = {}
    orgs_node = engine.get("organizations")
    if orgs_node is None:
        organizations = {s: s for s in stations}
    else:
        given = orgs_node.mapping(set(stations))
        for station in stations:
            value = given.get(station)
            if value is None:
                raise orgs_node.error(
                    f"station '{station}' has no vantage6 organisation; add "
                    f"'{station}: <organisation name or id>' under "
                    f"{where}.organizations"
                )
            organizations[station] = _name_or_id(value)
    return MappingProxyType(
        {
            "server": server,
            "collaboration": _name_or_id(engine.require("collaboration")),
            "username": engine.require("username").as_str(),
            "password_file": password_file,
            "image": engine.require("image").as_str(),
            "organizations": MappingProxyType(organizations),
            "timeout": _seconds(engine.get("timeout"), 300.0),
            "offline_grace": _seconds(engine.get("offline_grace"), 15.0),
        }
    )


def _resolve(
    value: str | int, known: Mapping[str, int], what: str, network: Network
) -> int:
    if isinstance(value, int):
        return value
    if value not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            f"{network.source}: engine: the vantage6 server knows no {what} "
            f"'{value}'; use one of: {listed} (or its numeric id)"
        )
    return known[value]


def make_engine(network: Network) -> Vantage6Engine:
    """The :class:`Vantage6Engine` the network file's ``engine:`` mapping describes.

    Organisation and collaboration names are looked up on the server (one login and
    two listings); numeric ids are used as given.

    Raises
    ------
    ConfigError
        The network file has no vantage6 settings, the server cannot be reached, or
        a name is unknown there (the message lists the known ones).
    """
    from pht.orchestrator.vantage6_engine import Vantage6Engine, Vantage6Settings

    s = network.engine_settings
    if network.engine != "vantage6" or s is None:
        raise ConfigError(
            f"{network.source}: engine: the vantage6 engine needs the mapping form "
            "(kind: vantage6, server, collaboration, username, password_file, image)"
        )
    organizations: Mapping[str, str | int] = s["organizations"]
    probe = Vantage6Settings(
        server=s["server"],
        collaboration=0,
        username=s["username"],
        password_file=s["password_file"],
        organizations={},
        image=s["image"],
    )
    lookup = Vantage6Engine(probe)
    names = [s["collaboration"], *organizations.values()]
    collaborations: Mapping[str, int] = {}
    orgs: Mapping[str, int] = {}
    if any(isinstance(n, str) for n in names):
        collaborations = lookup.names("collaboration")
        orgs = lookup.names("organization")
    return Vantage6Engine(
        Vantage6Settings(
            server=s["server"],
            collaboration=_resolve(
                s["collaboration"], collaborations, "collaboration", network
            ),
            username=s["username"],
            password_file=s["password_file"],
            organizations={
                station: _resolve(org, orgs, "organisation", network)
                for station, org in organizations.items()
            },
            image=s["image"],
            timeout=s["timeout"],
            offline_grace=s["offline_grace"],
            station_keys={sid: e.public_key for sid, e in network.stations.items()},
        )
    )
