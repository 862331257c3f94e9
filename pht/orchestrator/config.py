"""``network.yaml`` and ``study.yaml``: strict parsing into frozen models.

Every error names the file, the line and the key, and says how to fix it::

    study.yaml:6: stations[2]: unknown station 'umcx'; the network has: dica, nkr, umc

Paths in ``network.yaml`` are relative to that file. The orchestrator reads a network
file to know which stations exist and how to reach them (for the embedded engine: where
their folders are); it never opens the stations' data files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pht import yamlcfg
from pht.errors import ConfigError
from pht.manifest import Catalogue, TrainPackage
from pht.wire import TrainRef

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EXECUTORS = ("process", "docker")
PURPOSE = re.compile(r"^[a-z0-9-]+(/[a-z0-9-]+)+$")


@dataclass(frozen=True)
class DatasetConfig:
    """A dataset a station holds."""

    id: str
    path: Path


@dataclass(frozen=True)
class StationEntry:
    """A station as the network file describes it."""

    id: str
    name: str
    datasets: Mapping[str, DatasetConfig]
    policy: Path
    executor: str
    workdir: Path
    identity: Path
    keyring: Path
    public_key: Path
    witness: Path | None = None


@dataclass(frozen=True)
class Network:
    """The stations of a network, in file order."""

    source: Path
    stations: Mapping[str, StationEntry]
    trains: Path


@dataclass(frozen=True)
class Study:
    """An analyst's question, resolved against the train catalogue."""

    source: Path
    question: str
    purpose: str
    train: TrainPackage
    dataset: str
    stations: tuple[str, ...] | None
    parameters: Mapping[str, Any]
    role: str


def _check_id(node: yamlcfg.Node, what: str) -> str:
    value = node.as_str()
    if not _ID.match(value):
        raise node.error(
            f"{what} id '{value}' must be lower-case letters, digits, '-' or '_'"
        )
    return value


def _station(node: yamlcfg.Node, base: Path) -> StationEntry:
    m = node.mapping(
        {
            "id",
            "name",
            "datasets",
            "policy",
            "executor",
            "workdir",
            "witness",
            "identity",
            "keyring",
            "public_key",
        }
    )
    station_id = _check_id(m.require("id"), "station")
    datasets: dict[str, DatasetConfig] = {}
    for item in m.require("datasets").items():
        d = item.mapping({"id", "path"})
        dataset_id = _check_id(d.require("id"), "dataset")
        if dataset_id in datasets:
            raise d.require("id").error(f"dataset '{dataset_id}' is listed twice")
        path_node = d.require("path")
        path = (base / path_node.as_str()).resolve()
        if path.suffix.lower() not in (".parquet", ".csv"):
            raise path_node.error(
                f"dataset file '{path_node.as_str()}' must end in .parquet or .csv"
            )
        if not path.is_file():
            raise path_node.error(
                f"dataset file '{path_node.as_str()}' not found (looked in {path}); "
                "fix the path, relative to the network file"
            )
        datasets[dataset_id] = DatasetConfig(dataset_id, path)
    if not datasets:
        raise m.require("datasets").error("a station must hold at least one dataset")
    policy_node = m.require("policy")
    policy = (base / policy_node.as_str()).resolve()
    if not policy.is_file():
        raise policy_node.error(
            f"policy file '{policy_node.as_str()}' not found (looked in {policy}); "
            "copy policies/default.yaml and point 'policy' at it"
        )
    executor_node = m.get("executor")
    executor = executor_node.as_str() if executor_node else "process"
    if executor not in EXECUTORS:
        raise executor_node.error(  # type: ignore[union-attr]
            f"executor '{executor}' is not available; use one of {', '.join(EXECUTORS)}"
        )
    workdir_node = m.get("workdir")
    workdir = (
        (base / workdir_node.as_str()).resolve()
        if workdir_node
        else (base / ".pht" / "stations" / station_id).resolve()
    )
    witness_node = m.get("witness")
    witness = (base / witness_node.as_str()).resolve() if witness_node else None
    files = {}
    for key, fix in (
        ("identity", "create one with `pht keys new --role station`"),
        ("keyring", "list the trusted requester and methodologist keys in it"),
        ("public_key", "point it at the station's .pub.json"),
    ):
        file_node = m.require(key)
        path = (base / file_node.as_str()).resolve()
        if not path.is_file():
            raise file_node.error(
                f"{key} file '{file_node.as_str()}' not found (looked in {path}); {fix}"
            )
        files[key] = path
    name_node = m.get("name")
    return StationEntry(
        id=station_id,
        name=name_node.as_str() if name_node else station_id,
        datasets=datasets,
        policy=policy,
        executor=executor,
        workdir=workdir,
        identity=files["identity"],
        keyring=files["keyring"],
        public_key=files["public_key"],
        witness=witness,
    )


def load_network(path: Path) -> Network:
    """Parse and validate ``network.yaml``."""
    root = yamlcfg.load(path).mapping({"stations", "trains"})
    stations: dict[str, StationEntry] = {}
    items = root.require("stations").items()
    if not items:
        raise root.require("stations").error("list at least one station")
    for item in items:
        entry = _station(item, path.parent)
        if entry.id in stations:
            raise item.error(
                f"station '{entry.id}' is listed twice; ids must be unique"
            )
        stations[entry.id] = entry
    trains_node = root.require("trains")
    trains = (path.parent / trains_node.as_str()).resolve()
    if not trains.is_dir():
        raise trains_node.error(
            f"train signatures folder '{trains_node.as_str()}' not found; sign trains "
            "into it with `pht train sign`"
        )
    return Network(path, stations, trains)


def load_study(
    path: Path, catalogue: Catalogue, network: Network | None = None
) -> Study:
    """Parse ``study.yaml``, resolve its train and check it against the network."""
    root = yamlcfg.load(path).mapping(
        {
            "question",
            "purpose",
            "train",
            "dataset",
            "stations",
            "parameters",
            "requester",
        }
    )
    question = root.require("question").as_str()
    purpose_node = root.require("purpose")
    purpose = purpose_node.as_str()
    if not PURPOSE.match(purpose):
        raise purpose_node.error(
            f"purpose '{purpose}' must be a path such as package-management/reassessment"
        )
    train_node = root.require("train")
    try:
        package = catalogue.get(TrainRef.parse(train_node.as_str()))
    except ConfigError as exc:
        raise train_node.error(str(exc)) from None
    dataset = _check_id(root.require("dataset"), "dataset")
    stations: tuple[str, ...] | None = None
    stations_node = root.get("stations")
    if stations_node is not None:
        items = stations_node.items()
        if not items:
            raise stations_node.error("list at least one station, or leave the key out")
        stations = tuple(item.as_str() for item in items)
        for item, station_id in zip(items, stations, strict=True):
            if stations.count(station_id) > 1:
                raise item.error(f"station '{station_id}' is listed twice")
            if network is not None and station_id not in network.stations:
                known = ", ".join(sorted(network.stations))
                raise item.error(
                    f"unknown station '{station_id}'; the network has: {known}"
                )
    params_node = root.get("parameters")
    given: dict[str, Any] = {}
    if params_node is not None:
        given = {key: node.value() for key, node in params_node.raw_mapping_nodes()}
    parameters, problems = package.manifest.resolve(given)
    if problems:
        key = problems[0].split(":", 1)[0]
        node = params_node.mapping(None).get(key) if params_node else None
        raise (node or params_node or root.node).error(
            f"parameters.{problems[0]}"
            if node is None
            else problems[0].split(":", 1)[1].strip()
            + f" (train {package.manifest.ref})"
        )
    if network is not None:
        targets = stations or tuple(network.stations)
        holders = [s for s in targets if dataset in network.stations[s].datasets]
        if not holders:
            raise root.require("dataset").error(
                f"no target station holds dataset '{dataset}'; check 'dataset' "
                "against the datasets in the network file"
            )
    role_node = root.get("role")
    return Study(
        source=path,
        question=question,
        purpose=purpose,
        train=package,
        dataset=dataset,
        stations=stations,
        parameters=parameters,
        role=role_node.as_str() if role_node else "analyst",
    )
