"""Shared fixtures: build small networks from data frames, run studies end to end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pht.manifest import Catalogue
from pht.provision import policy_document, provision

POLICY_EXTRAS = (
    "time_grid",
    "max_rounds",
    "show_station_name",
    "unsafe_process_sandbox",
)


def write_network(
    root: Path,
    frames: Mapping[str, pd.DataFrame],
    *,
    dataset: str = "melanoma",
    min_cell_size: int = 10,
    fmt: str = "parquet",
    policy: Mapping[str, Any] | None = None,
    **policy_options: Any,
) -> Path:
    """Write one data file per station and provision keys, keyrings, signed trains,
    policies and network.yaml; return the network file. The analyst's key is
    ``root/keys/analyst.key.json``.

    The policy allows every column of the frames unless ``columns`` is given: each
    station then analyses the rows complete on *all* of them (its fixed population).
    Policy keys that :func:`policy_document` does not take (``time_grid``,
    ``max_rounds``, ``show_station_name``, ``unsafe_process_sandbox``) are added to
    every dataset entry."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    held = {}
    for station_id, frame in frames.items():
        path = root / "data" / f"{station_id}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        held[station_id] = {dataset: path}
    policy_options.setdefault(
        "columns", sorted({c for f in frames.values() for c in f.columns})
    )
    extras = {k: policy_options.pop(k) for k in POLICY_EXTRAS if k in policy_options}
    document = policy or policy_document(min_cell_size=min_cell_size, **policy_options)
    if extras:
        document = {
            **document,
            "datasets": {
                name: {**entry, **extras}
                for name, entry in document["datasets"].items()
            },
        }
    made = provision(
        root, held, names={s: f"Station {s}" for s in frames}, policy=document
    )
    return made.network


def identity_of(network: Path) -> Path:
    """The analyst key provisioned next to ``network``."""
    return network.parent / "keys" / "analyst.key.json"


def write_study(root: Path, **fields: Any) -> Path:
    """Write study.yaml with sensible defaults overridden by ``fields``."""
    doc: dict[str, Any] = {
        "question": "Does survival differ between groups?",
        "purpose": "package-management/reassessment",
        "train": "survival.km",
        "dataset": "melanoma",
        "parameters": {"time": "os_days", "event": "death", "group": "regimen"},
    }
    doc.update(fields)
    doc = {k: v for k, v in doc.items() if v is not None}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


Released = dict[str, dict[str, list[dict[str, Any]]]]
"""Opened outputs: request id -> station -> one output per round."""


def run_embedded(
    study: Path, network: Path, released: Released | None = None
) -> dict[str, Any]:
    """Run a study through the embedded engine and return the result dict.

    With ``released``, every output the requester opened (after checking its
    receipt) is recorded there: request id -> station -> outputs in round order.
    """
    from pht.crypto import load_identity
    from pht.orchestrator.config import load_network, load_study
    from pht.orchestrator.engine import make_engine
    from pht.orchestrator.requester import Requester
    from pht.orchestrator.run import run_study
    from pht.wire import Reply

    class Recording(Requester):
        def open(self, reply: Reply, request_id: str) -> Reply:
            opened = super().open(reply, request_id)
            if released is not None and opened.ok and opened.output is not None:
                by_station = released.setdefault(request_id, {})
                by_station.setdefault(opened.station, []).append(opened.output)
            return opened

    catalogue = Catalogue()
    net = load_network(network)
    st = load_study(study, catalogue, net)
    requester = Recording(
        load_identity(identity_of(network)),
        {s: e.public_key for s, e in net.stations.items()},
    )
    with make_engine(net, catalogue) as engine:
        return run_study(st, net, engine, requester)


def released_grid(outputs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The time boundaries a station released for one request.

    survival.km: the union of the times of its event tables (every interval of the
    station's grid holds events of every group, so the union is the whole grid);
    survival.cox (pooled): the event times of its round 0.
    """
    first = outputs[0]
    if "groups" in first:
        times = [t for table in first["groups"].values() for t in table["time"]]
    else:
        times = list(first["event_times"])
    return np.unique(np.asarray(times, dtype=np.float64))


def to_grid(time: Any, boundaries: np.ndarray) -> np.ndarray:
    """Each time as the smallest boundary at or above it, or the last boundary when
    there is none (the last interval is open above): the released time.

    Written here with NumPy on purpose, independent of
    ``pht.algorithms.disclosure.coarsen``.
    """
    t = np.asarray(time, dtype=np.float64)
    index = np.searchsorted(boundaries, t, side="left")
    return boundaries[np.minimum(index, boundaries.size - 1)]


def on_station_grids(
    frames: Mapping[str, pd.DataFrame],
    outputs: Mapping[str, Sequence[Mapping[str, Any]]],
    time: str,
    complete: Sequence[str],
) -> pd.DataFrame:
    """The pooled rows of the stations that released ``outputs``, each station's
    population (rows complete on ``complete``) with ``time`` moved to its own released
    grid, plus a ``station`` column: what an oracle fits to check exactness."""
    parts = []
    for station in sorted(outputs):
        rows = frames[station].dropna(subset=list(complete)).copy()
        rows[time] = to_grid(rows[time], released_grid(outputs[station]))
        parts.append(rows.assign(station=station))
    return pd.concat(parts, ignore_index=True)


def assert_cells_at_least(output: Mapping[str, Any], k: int) -> None:
    """Every released (group, interval) cell of a KM output has >= k events and
    >= k censorings."""
    for table in output["groups"].values():
        assert min(table["events"]) >= k and min(table["censored"]) >= k


@pytest.fixture(scope="session")
def lung() -> pd.DataFrame:
    """lifelines' real NCCTG lung data, with institution and complete time/status."""
    from lifelines.datasets import load_lung

    frame = load_lung().dropna(subset=["inst"]).reset_index(drop=True)
    frame["inst"] = frame["inst"].astype(int)
    return frame


CLASSES = ("aggregate", "model", "risk_set_sums")


def fit_federated(
    tmp_path: Path,
    frames: dict[str, pd.DataFrame],
    *,
    k: int = 10,
    columns: list[str] | None = None,
    released: dict[str, Any] | None = None,
    show_station_name: bool = False,
    **params: Any,
) -> dict:
    """Run survival.cox; ``columns`` (default: all) are the policy's columns."""
    allowed = {"columns": columns} if columns else {}
    network = write_network(
        tmp_path,
        frames,
        dataset="d",
        min_cell_size=k,
        classes=CLASSES,
        show_station_name=show_station_name,
        **allowed,
    )
    # min_stations 1: the oracle is fitted on the rows of the stations that took part
    study = write_study(
        tmp_path, train="survival.cox", dataset="d", parameters=params, min_stations=1
    )
    return run_embedded(study, network, released)


# -- PostgreSQL (issue 15) --------------------------------------------------------
class PostgresCluster:
    """A running throw-away cluster (deploy/postgres.sh): its folder and DSN files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.admin_dsn = folder / "admin.dsn"
        self.station_dsn = folder / "station.dsn"


@pytest.fixture(scope="session")
def postgres() -> Any:
    """A PostgreSQL server for the database-station tests (marked ``postgres``).

    Started by ``deploy/postgres.sh`` (which installs Debian's ``postgresql`` when
    it is missing and this is root). Without one the tests are skipped with the
    reason; under CI (``CI=true``) that is a failure.
    """
    import os
    import shutil
    import subprocess
    import tempfile

    script = Path(__file__).resolve().parents[1] / "deploy" / "postgres.sh"
    folder = Path(tempfile.mkdtemp(prefix="phtpg-", dir="/tmp"))
    done = subprocess.run(
        ["bash", str(script), "start", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        reason = (done.stderr.strip().splitlines() or ["no reason"])[-1]
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests, but: {reason}")
        pytest.skip(f"no PostgreSQL server: {reason}")
    try:
        yield PostgresCluster(folder)
    finally:
        subprocess.run(
            ["bash", str(script), "stop", str(folder)], check=False, timeout=120
        )
        shutil.rmtree(folder, ignore_errors=True)


# -- vantage6 (issue 14) ----------------------------------------------------------
class V6Network:
    """The demo network running on a local vantage6 network (one per test session).

    ``demo`` is :func:`pht.demo.create_demo`'s result (its ``network`` configures the
    stations: the embedded engine runs it too); ``local`` the running
    :class:`pht.vantage6_local.LocalV6`, whose ``network`` is the analyst's file.
    """

    def __init__(self, demo: Any, local: Any) -> None:
        self.demo = demo
        self.local = local
        self.state: Path = local.state
        self.image: str = local.image
        self.network: Path = local.network

    def engine(self, **settings: Any) -> Any:
        """A Vantage6Engine built from the analyst's network file (``engine:``), with
        ``settings`` (e.g. ``timeout``) replaced."""
        import dataclasses

        from pht.orchestrator.config import load_network
        from pht.orchestrator.vantage6_config import make_engine
        from pht.orchestrator.vantage6_engine import Vantage6Engine

        built = make_engine(load_network(self.network))
        return Vantage6Engine(dataclasses.replace(built.settings, **settings))


@pytest.fixture(scope="session")
def v6_network(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo's stations as nodes of a local vantage6 4.15 network (marker
    ``vantage6``), shared by every test of the session.

    Runs where Docker runs (the ``docker`` tests' rule); without Docker, or when the
    network cannot be started, the tests are skipped with the reason, and under CI
    (``CI=true``) that is a failure. Its state and logs stay in
    ``.build/vantage6-test``.
    """
    import os

    from pht.demo import create_demo
    from pht.errors import PhtError
    from pht.station import docker_executor
    from pht.vantage6_local import start_local_network

    def unavailable(reason: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the vantage6 tests, but: {reason}")
        pytest.skip(f"no local vantage6 network: {reason}")

    reason = docker_executor.available()
    if reason is not None:
        unavailable(f"no Docker engine: {reason}")
    state = Path(__file__).resolve().parents[1] / ".build" / "vantage6-test"
    demo = create_demo(tmp_path_factory.mktemp("v6") / "demo", patients=6000)
    try:  # one local network per machine: wait for another session's to stop
        local = start_local_network(demo.network, state, wait=1800)
    except PhtError as exc:
        unavailable(str(exc))
    try:
        yield V6Network(demo, local)
    finally:
        local.stop()
