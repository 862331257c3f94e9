"""A local vantage6 4.15 network for a pht network file, on this machine.

:func:`start_local_network` does what an operator does by hand with the scripts in
``deploy/vantage6/`` (they stay the mechanism; this module calls them):

1. one station folder per station (``pht-algorithm/station_folder.py``: the
   station's data, policy, keys, keyring and witness; ``unsafe_process_sandbox``,
   because the vantage6 container is the train's only isolation), writable by the
   algorithm container's uid 10001;
2. the pht station image (``pht-algorithm/build.sh``, offline);
3. the server and one node per station (``start-network.sh`` in pht mode: each
   node allows only that image and mounts only its station folder);
4. the analyst's side: ``network-vantage6.yaml`` next to the network file, naming
   the stations by public key only and ``engine: {kind: vantage6, ...}`` pointing
   at the running server.

:func:`stop_local_network` (``stop-network.sh``) stops it; state and logs stay in
the state folder. Every failure is one :class:`~pht.errors.ConfigError` line naming
the log to read.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from pht.errors import ConfigError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
"""The checkout (``deploy/vantage6`` lives there, not in an installed wheel)."""
V6 = REPO / "deploy" / "vantage6"
STATIONS = ("nkr", "dica", "umc")
"""Organisations the local network's fixture (``fixture.yaml.in``) defines."""
ANALYST_FILE = "network-vantage6.yaml"
"""The analyst-side network file written next to the network file."""
ALGORITHM_UID = 10001
"""The uid the pht station image runs as (it writes the audit log)."""
LOCK = Path(os.environ.get("PHT_V6_LOCK", "/tmp/pht-vantage6.lock"))
"""Held while a network started here runs: one at a time per machine, whatever the
checkout (the server port, and the Docker networks and containers vantage6 names
after the stations)."""


@dataclass(frozen=True)
class LocalV6:
    """A running local vantage6 network (see :func:`start_local_network`)."""

    state: Path
    """``PHT_V6_DIR``: configs, the server's SQLite, logs, ``network.json``."""
    network: Path
    """The analyst-side network file (``engine: {kind: vantage6, ...}``)."""
    image: str
    """The pht station image every node allows (and only that one)."""
    stations: tuple[str, ...]
    folders: Path
    """The station folders, one per station (each node's only database)."""
    server: str
    """The server's API root."""
    lock: IO[str] | None = field(default=None, repr=False, compare=False)
    """The open :data:`LOCK` file (released by :meth:`stop`)."""

    def env(self) -> dict[str, str]:
        """The environment the ``deploy/vantage6`` scripts need for this network."""
        return os.environ | {"PHT_V6_DIR": str(self.state)}

    def stop_command(self) -> str:
        """The shell command that stops this network."""
        return f"PHT_V6_DIR={self.state} bash {V6 / 'stop-network.sh'}"

    def restart_node(self, station: str) -> None:
        """Stop ``station``'s node if it runs and start it again (same config)."""
        _script("restart-node.sh", [station], self.env(), self.state / "restart.log")

    def stop(self) -> None:
        """Stop the server and the nodes (keeps the state folder); release the lock."""
        try:
            stop_local_network(self.state)
        finally:
            if self.lock is not None:
                self.lock.close()


def _script(name: str, args: Sequence[str], env: dict[str, str], logfile: Path) -> str:
    """Run ``deploy/vantage6/<name>``; its stdout, or a one-line error naming the log."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("a", encoding="utf-8") as err:
        done = subprocess.run(
            ["bash", str(V6 / name), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        lines = logfile.read_text(encoding="utf-8", errors="replace").splitlines()
        last = lines[-1].strip() if lines else "no message"
        raise ConfigError(f"deploy/vantage6/{name} failed: {last} (log: {logfile})")
    return done.stdout


def _acquire(wait: float) -> IO[str]:
    """The machine's local-vantage6 lock, waiting up to ``wait`` seconds for it."""
    import time

    LOCK.parent.mkdir(parents=True, exist_ok=True)
    handle = LOCK.open("a+", encoding="utf-8")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise ConfigError(
                    f"a local vantage6 network already runs on this machine "
                    f"({holder}); stop it first (its stop command) or wait"
                ) from None
            time.sleep(1.0)
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        return handle


def _docker_reason() -> str | None:
    from pht.station import docker_executor

    return docker_executor.available()


def _station_folders(network_file: Path, stations: Sequence[str], dest: Path) -> None:
    """Write each station's folder under ``dest`` (0700), writable by uid 10001."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, mode=0o700)
    dest.chmod(0o700)  # the folders hold private keys; mkdir's mode obeys the umask
    for station in stations:
        folder = dest / station
        done = subprocess.run(
            [
                sys.executable,
                str(V6 / "pht-algorithm" / "station_folder.py"),
                str(network_file),
                station,
                str(folder),
                "--unsafe-process-sandbox",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ConfigError(f"station folder for '{station}': {why}")
        # the algorithm container runs as uid 10001 and writes the audit log
        if os.geteuid() == 0:
            for path in [folder, *folder.rglob("*")]:
                os.chown(path, ALGORITHM_UID, ALGORITHM_UID, follow_symlinks=False)
        else:  # nobody else can enter the 0700 parent
            for path in [folder, *folder.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(
                        path.stat().st_mode | (0o777 if path.is_dir() else 0o666)
                    )


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def write_analyst_network(
    network_file: Path, stations: Sequence[str], engine: dict[str, Any]
) -> Path:
    """Write the analyst's side of ``network_file`` for the vantage6 engine.

    Parameters
    ----------
    network_file
        The full network file (stations with their own configuration).
    stations
        The stations to keep.
    engine
        The ``engine:`` mapping (``kind: vantage6`` and its settings).

    Returns
    -------
    Path
        ``network-vantage6.yaml`` next to ``network_file``: each station's id, name,
        public key and dataset ids (no policy, identity, keyring or data path), the
        trains folder, and ``engine``.
    """
    from pht.orchestrator.config import load_network

    net = load_network(network_file)
    base = network_file.resolve().parent
    doc = {
        "engine": engine,
        "trains": _relative(net.trains, base),
        "stations": [
            {
                "id": entry.id,
                "name": entry.name,
                "public_key": _relative(entry.public_key, base),
                "datasets": [{"id": d} for d in entry.datasets],
            }
            for entry in net.stations.values()
            if entry.id in stations
        ],
    }
    target = base / ANALYST_FILE
    header = (
        "# The analyst's side of network.yaml on a local vantage6 network (written\n"
        "# by pht.vantage6_local): public keys only; the stations' own files are in\n"
        "# their nodes' station folders.\n"
    )
    target.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return target


def start_local_network(
    network_file: Path,
    state: Path,
    stations: Sequence[str] | None = None,
    *,
    image: str | None = None,
    wait: float = 0.0,
) -> LocalV6:
    """Start a local vantage6 network running the stations of ``network_file``.

    Parameters
    ----------
    network_file
        A pht ``network.yaml`` that configures its stations (as ``pht demo`` writes).
    state
        The network's state folder (``PHT_V6_DIR``); the station folders go to
        ``<state>/station-folders``.
    stations
        The stations to start nodes for (default: every station of the file); the
        local fixture knows ``nkr``, ``dica`` and ``umc``.
    image
        The pht station image (default: built with ``pht-algorithm/build.sh``).
    wait
        Seconds to wait for another local network (one runs at a time) to stop.

    Returns
    -------
    LocalV6
        The running network; call :meth:`LocalV6.stop` when done.

    Raises
    ------
    ConfigError
        No Docker engine, a station the fixture does not know, a network already
        running in ``state``, or a script that failed (naming its log).
    """
    from pht.orchestrator.config import load_network

    reason = _docker_reason()
    if reason is not None:
        raise ConfigError(
            f"vantage6 needs a Docker engine ({reason}); start one with "
            "`bash deploy/docker-engine.sh`"
        )
    if not V6.is_dir():
        raise ConfigError(
            f"{V6} not found: the local vantage6 network runs from a pht checkout"
        )
    net = load_network(network_file)
    chosen = tuple(stations) if stations is not None else tuple(net.stations)
    unknown = [s for s in chosen if s not in net.stations]
    if unknown:
        raise ConfigError(
            f"{network_file}: no station {', '.join(unknown)}; it has "
            f"{', '.join(net.stations)}"
        )
    outside = [s for s in chosen if s not in STATIONS]
    if outside:
        raise ConfigError(
            f"the local vantage6 network has organisations {', '.join(STATIONS)} only "
            f"(deploy/vantage6/fixture.yaml.in), not {', '.join(outside)}"
        )
    for s in chosen:
        net.stations[s].hosted()  # a one-line error if the file does not host it
    lock = _acquire(wait)
    try:
        return _start(network_file, state.resolve(), chosen, image, lock)
    except BaseException:
        lock.close()
        raise


def _start(
    network_file: Path,
    state: Path,
    chosen: tuple[str, ...],
    image: str | None,
    lock: IO[str],
) -> LocalV6:
    """:func:`start_local_network` once the lock is held."""
    if (state / "network.json").exists():
        # with the lock held, nobody runs it: left by a process that was killed
        log.warning("stopping a stale vantage6 network in %s", state)
        stop_local_network(state)
    state.mkdir(parents=True, exist_ok=True)
    folders = state / "station-folders"
    log.info("writing station folders to %s", folders)
    _station_folders(network_file, chosen, folders)
    build_env = {k: v for k, v in os.environ.items() if k != "PHT_V6_DIR"}
    if image is None:  # its wheelhouses are shared in .build/vantage6
        image = _script(
            "pht-algorithm/build.sh", [], build_env, state / "build.log"
        ).strip()
    env = os.environ | {
        "PHT_V6_DIR": str(state),
        "PHT_V6_STATIONS": " ".join(chosen),
        "PHT_V6_STATION_FOLDERS": str(folders),
        "PHT_V6_IMAGE": image,
    }
    env.pop("PHT_V6_EXTRA_IMAGES", None)  # pht mode: the station image only
    if "PHT_V6_REGISTRY" not in os.environ and shutil.which("docker-registry"):
        # pin the nodes to the image's registry digest (a local registry on
        # 127.0.0.1; require_algorithm_pull: true), not to a local tag
        env["PHT_V6_REGISTRY"] = "1"
    log.info("starting the vantage6 network in %s", state)
    # on failure start-network.sh stops what it started itself
    _script("start-network.sh", [], env, state / "start-network.log")
    info = json.loads((state / "network.json").read_text(encoding="utf-8"))
    server = f"http://127.0.0.1:{info['server_port']}/api"
    analyst = write_analyst_network(
        network_file,
        chosen,
        {
            "kind": "vantage6",
            "server": server,
            "collaboration": "pht",
            "username": "analyst",
            "password_file": str(state / "analyst.password"),
            "image": str(info["image"]),
            "organizations": {s: s for s in chosen},
        },
    )
    return LocalV6(
        state=state,
        network=analyst,
        image=str(info["image"]),
        stations=chosen,
        folders=folders,
        server=server,
        lock=lock,
    )


def stop_local_network(state: Path) -> None:
    """Stop the network running in ``state`` (``stop-network.sh``; keeps its files)."""
    state = state.resolve()
    _script(
        "stop-network.sh",
        [],
        os.environ | {"PHT_V6_DIR": str(state)},
        state / "stop-network.log",
    )


# -- checks against the embedded engine (tests, bench/vantage6_walltime.py) -----------
DEMO_COX_STUDY = """\
question: Is overall survival associated with age and sex (stratified Cox)?
purpose: package-management/reassessment
train: survival.cox
dataset: melanoma
stations: [nkr, dica, umc]
min_stations: 2
parameters: {time: os_days, event: death, covariates: [age, sex]}
"""
"""An iterative study on the demo network (the demo's own study is single-round)."""

VOLATILE = frozenset({"created", "provenance", "pht_version"})
"""result.json sections that differ between two runs of the same study."""


def comparable(result: dict[str, Any]) -> str:
    """A result's numbers as canonical JSON, to compare two engines' runs.

    Leaves out :data:`VOLATILE`; hidden stations' Cox estimates, labelled "station 1",
    "station 2"... in a random order by design (``survival_cox.station_labels``),
    are compared as a sorted list.
    """
    kept = {k: v for k, v in result.items() if k not in VOLATILE}
    if isinstance(kept.get("cox"), dict):
        cox = dict(kept["cox"])
        cox["station_estimates"] = sorted(
            json.dumps(v, sort_keys=True)
            for v in (cox.get("station_estimates") or {}).values()
        )
        kept["cox"] = cox
    return json.dumps(kept, sort_keys=True, default=str)
