"""Run a vantage6 4.15 server or node as a plain process on this host.

No Docker for the server or the node itself; the node still runs algorithms as
containers.

Run with the vantage6 venv's interpreter (``.venv-v6/bin/python``):

    v6local.py server CONFIG.yaml [--host H] [--port P]   # Flask app + SQLite
    v6local.py import CONFIG.yaml FIXTURE.yaml             # load the fixture
    v6local.py node CONFIG.yaml                            # == vnode-local start

Why a launcher instead of ``vnode-local start`` / ``v6 server start``:

* ``v6 server start`` runs the server image from a registry (unreachable here);
  the server package has no plain-process ``start`` command, only
  ``run_server`` + ``run_dev_server`` (used below).
* vantage6 decides "am I inside Docker?" from the mere existence of
  ``/.dockerenv`` (``vantage6.common.docker.addons.running_in_docker``). Hosts that
  were built from a container image keep that file although they are not a
  container (this machine does); the node then uses ``/mnt/data`` and tries to join
  its own (non-existent) container to the algorithm network. ``PHT_V6_NOT_IN_DOCKER=1``
  (default) patches that check to ``False`` before any other vantage6 module is
  imported, i.e. before they bind the function by name.
* vantage6 4.15's images run Python 3.10. On 3.11 an f-string of a ``(str, Enum)``
  member gives ``Operation.VIEW`` instead of ``v``: the server's permission
  collections get the wrong attribute names and every permission check fails with
  ``AttributeError: 'RuleCollection' object has no attribute 'v_glo'`` (HTTP 500).
  On 3.11+ the launcher restores 3.10's enum formatting before vantage6 is
  imported (``PHT_V6_ENUM_FORMAT=0`` disables that).
* vantage6-server 4.15.2 imports ``vantage6.backend.common`` but does not declare
  ``vantage6-backend-common`` as a dependency: install it explicitly.
"""

from __future__ import annotations

import os
import sys


def _patch_enum_format() -> None:
    """Give ``(str, Enum)`` members Python 3.10's f-string behaviour on 3.11+.

    vantage6 4.15 builds permission names with ``f"{operation}_{scope}"``; 3.11
    formats mixed-in enum members like ``str()`` (``Operation.VIEW``), 3.10 like
    their value (``v``). The enum metaclass copies ``Enum.__format__`` into each new
    class, so this must run before vantage6's enums are defined.
    """
    import enum

    if sys.version_info < (3, 11) or os.environ.get("PHT_V6_ENUM_FORMAT", "1") != "1":
        return
    original = enum.Enum.__format__

    def __format__(self: enum.Enum, format_spec: str) -> str:
        if self._member_type_ is not object:  # mixed-in type: format the value
            return format(self._value_, format_spec)
        return original(self, format_spec)

    enum.Enum.__format__ = __format__  # type: ignore[method-assign]


def _patch_running_in_docker() -> None:
    if os.environ.get("PHT_V6_NOT_IN_DOCKER", "1") != "1":
        return
    import vantage6.common.docker.addons as addons

    addons.running_in_docker = lambda: False


def _server(config: str, host: str, port: int) -> None:
    from vantage6.server import run_dev_server, run_server

    app = run_server(config, system_folders=False)
    # Flask-SocketIO picks gevent (installed with the server) when uwsgi is absent.
    run_dev_server(app, host=host, port=port, allow_unsafe_werkzeug=True)


def _import(config: str, fixture: str) -> None:
    import yaml
    from vantage6.cli.context.server import ServerContext
    from vantage6.server.controller import fixture as fixture_loader
    from vantage6.server.model.base import Database

    ctx = ServerContext.from_external_config_file(config, False)
    Database().connect(uri=ctx.get_database_uri(), allow_drop_all=True)
    with open(fixture) as handle:
        entities = yaml.safe_load(handle)
    # drop_all=True would drop the tables without re-creating them: start-network.sh
    # removes the SQLite file instead, and connect() creates the tables.
    fixture_loader.load(entities, drop_all=False)


def _node(config: str) -> None:
    from pathlib import Path

    from vantage6 import node
    from vantage6.node.context import NodeContext

    # vantage6-node 4.15.2 reads ctx.running_in_docker, which only DockerNodeContext
    # defines: `vnode-local start` fails with AttributeError without this.
    NodeContext.running_in_docker = False
    ctx = NodeContext(Path(config).stem, False, config)
    node.run(ctx)


def main(argv: list[str]) -> None:
    """Dispatch ``server``, ``import`` or ``node``."""
    if len(argv) < 2 or argv[0] not in {"server", "import", "node"}:
        sys.exit(__doc__)
    _patch_enum_format()
    if argv[0] in {"server", "import"}:
        # vantage6.server monkey-patches with gevent on import; do it first, before
        # ssl/urllib3 are imported, as gevent requires.
        from gevent import monkey

        monkey.patch_all()
    _patch_running_in_docker()
    command, config = argv[0], os.path.abspath(argv[1])
    if command == "server":
        host, port = "127.0.0.1", 7601
        rest = argv[2:]
        while rest:
            if rest[0] == "--host":
                host = rest[1]
            elif rest[0] == "--port":
                port = int(rest[1])
            else:
                sys.exit(f"v6local: unknown option {rest[0]}")
            rest = rest[2:]
        _server(config, host, port)
    elif command == "import":
        _import(config, os.path.abspath(argv[2]))
    else:
        _node(config)


if __name__ == "__main__":
    main(sys.argv[1:])
