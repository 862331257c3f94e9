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

from pht import datasources, yamlcfg
from pht.datasources import DatabaseSource
from pht.errors import ConfigError
from pht.keyring import REQUESTER_ROLE_PATTERN
from pht.manifest import Catalogue, TrainPackage
from pht.wire import TrainRef

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EXECUTORS = ("process", "docker")
PURPOSE = re.compile(r"^[a-z0-9-]+(/[a-z0-9-]+)+$")


@dataclass(frozen=True)
class DatasetConfig:
    """A dataset a station holds (its file or database: on the station's side only).

    ``path`` for a Parquet or CSV file; ``source`` for a PostgreSQL table or an OMOP
    cohort (:mod:`pht.datasources`: where the DSN is, never the DSN itself).
    """

    id: str
    path: Path | None
    source: DatabaseSource | None = None

    def held(self) -> Path | DatabaseSource:
        """What the station reads: the database source, else the file."""
        if self.source is not None:
            return self.source
        assert self.path is not None
        return self.path


@dataclass(frozen=True)
class StationHost:
    """What only the station itself holds: keys, policy, data and working folder.

    A real deployment keeps this on the station's machine; the analyst's network file
    has none of it. The embedded engine runs stations from a network file that does.
    """

    datasets: Mapping[str, DatasetConfig]
    policy: Path
    executor: str
    workdir: Path
    identity: Path
    keyring: Path
    witness: Path | None = None


@dataclass(frozen=True)
class StationEntry:
    """A station as the analyst's side knows it: id, name, public key, address.

    ``datasets`` are the ids the station publishes; ``host`` is set only where the
    same file also configures the station itself (the embedded engine).
    """

    id: str
    name: str
    public_key: Path
    datasets: tuple[str, ...]
    address: str | None = None
    host: StationHost | None = None

    def hosted(self) -> StationHost:
        """The station's own configuration, or a :class:`ConfigError` saying why not."""
        if self.host is None:
            raise ConfigError(
                f"station '{self.id}' has no local configuration in the network file "
                "(policy, identity, keyring, dataset paths); the embedded engine runs "
                "stations from this file: add them, or choose another engine"
            )
        return self.host


@dataclass(frozen=True)
class Network:
    """The stations of a network, in file order, and the engine that reaches them."""

    source: Path
    stations: Mapping[str, StationEntry]
    trains: Path
    engine: str = "embedded"
    address: str | None = None
    engine_settings: Mapping[str, Any] | None = None
    """The settings of an ``engine:`` given as a mapping, checked, without ``kind``
    (e.g. :func:`pht.orchestrator.vantage6_config.parse`); None for a plain name."""


@dataclass(frozen=True)
class Study:
    """An analyst's question, resolved against the train catalogue.

    ``role`` (default ``analyst``) is the role the signed request claims; a station
    accepts it only when the requester key's keyring entry lists it in
    ``requester_roles`` and the station's policy allows the organisation in that role.
    ``min_stations`` (default: every target station) is the quorum: with fewer
    stations taking part, no result is written.
    """

    source: Path
    question: str
    purpose: str
    train: TrainPackage
    dataset: str
    stations: tuple[str, ...] | None
    parameters: Mapping[str, Any]
    role: str
    min_stations: int | None = None
    design: Any = None
    """An ``equivalence`` or ``nma`` study's design (:class:`pht.orchestrator.
    equivalence.EquivalenceDesign`, :class:`pht.orchestrator.nma.NmaDesign`: its
    analyses are the requests); None for a one-train study."""

    def quorum(self, targets: int) -> int:
        """Stations that must take part for a result: ``min_stations``, else all."""
        return targets if self.min_stations is None else self.min_stations


def _check_id(node: yamlcfg.Node, what: str) -> str:
    value = node.as_str()
    if not _ID.match(value):
        raise node.error(
            f"{what} id '{value}' must be lower-case letters, digits, '-' or '_'"
        )
    return value


HOST_KEYS = frozenset(
    {"policy", "executor", "workdir", "witness", "identity", "keyring"}
)
"""Keys of a station entry that only the station itself holds."""


def _file(node: yamlcfg.Node, base: Path, key: str, fix: str) -> Path:
    path = (base / node.as_str()).resolve()
    if path.is_dir():
        raise node.error(
            f"{key} '{node.as_str()}' is a folder ({path}); give the file in it"
        )
    if not path.is_file():
        raise node.error(
            f"{key} file '{node.as_str()}' not found (looked in {path}); {fix}"
        )
    return path


def _datasets(
    node: yamlcfg.Node, base: Path, hosted: bool, station: str = ""
) -> tuple[tuple[str, ...], dict[str, DatasetConfig]]:
    ids: list[str] = []
    files: dict[str, DatasetConfig] = {}
    for item in node.items():
        kind = datasources.dataset_kind(item)
        d = item.mapping(
            datasources.DATASET_KEYS.get(kind, {"id", "kind", "path"})
            if hosted
            else {"id", "kind", "path"}
        )
        dataset_id = _check_id(d.require("id"), "dataset")
        if dataset_id in ids:
            raise d.require("id").error(f"dataset '{dataset_id}' is listed twice")
        ids.append(dataset_id)
        if kind in datasources.DB_KINDS:
            if hosted:
                source = datasources.parse_source(d, kind, base, station, dataset_id)
                files[dataset_id] = DatasetConfig(dataset_id, None, source)
            continue
        path_node = d.get("path")
        if path_node is None:
            if hosted:
                d.require("path")  # raises, naming the missing key
            continue
        if not hosted:
            raise path_node.error(
                "a dataset 'path' belongs to the station's own configuration; give "
                "the station its policy, identity and keyring too, or leave 'path' out"
            )
        path = (base / path_node.as_str()).resolve()
        if path.suffix.lower() not in (".parquet", ".csv"):
            raise path_node.error(
                f"dataset file '{path_node.as_str()}' must end in .parquet or .csv"
            )
        if kind in datasources.FILE_KINDS and path.suffix.lower() != f".{kind}":
            raise path_node.error(
                f"dataset file '{path_node.as_str()}' is not a .{kind} file; fix "
                "'kind' or 'path'"
            )
        if path.is_dir():
            raise path_node.error(
                f"dataset '{path_node.as_str()}' is a folder ({path}); give the "
                ".parquet or .csv file itself (a partitioned Parquet folder is not read)"
            )
        if not path.is_file():
            raise path_node.error(
                f"dataset file '{path_node.as_str()}' not found (looked in {path}); "
                "fix the path, relative to the network file"
            )
        files[dataset_id] = DatasetConfig(dataset_id, path)
    if not ids:
        raise node.error("a station must hold at least one dataset")
    return tuple(ids), files


def _host(
    m: yamlcfg.Mapping, base: Path, station_id: str, files: dict[str, DatasetConfig]
) -> StationHost:
    policy_node = m.require("policy")
    policy = (base / policy_node.as_str()).resolve()
    if policy.is_dir():
        raise policy_node.error(
            f"policy '{policy_node.as_str()}' is a folder ({policy}); give the "
            "policy.yaml file in it"
        )
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
    return StationHost(
        datasets=files,
        policy=policy,
        executor=executor,
        workdir=workdir,
        identity=_file(
            m.require("identity"),
            base,
            "identity",
            "create one with `pht keys new --role station`",
        ),
        keyring=_file(
            m.require("keyring"),
            base,
            "keyring",
            "list the trusted requester and methodologist keys in it",
        ),
        witness=(base / witness_node.as_str()).resolve() if witness_node else None,
    )


def _station(node: yamlcfg.Node, base: Path) -> StationEntry:
    m = node.mapping({"id", "name", "datasets", "public_key", "address", *HOST_KEYS})
    station_id = _check_id(m.require("id"), "station")
    hosted = any(m.get(key) is not None for key in HOST_KEYS)
    ids, files = _datasets(m.require("datasets"), base, hosted, station_id)
    address_node = m.get("address")
    name_node = m.get("name")
    key_node = m.require("public_key")
    public_key = _file(
        key_node, base, "public_key", "point it at the station's .pub.json"
    )
    from pht.crypto import load_public
    from pht.errors import TrustError

    try:  # a private key or a damaged file is said here, at the line naming it
        load_public(public_key)
    except (ConfigError, TrustError) as exc:
        raise key_node.error(str(exc)) from None
    return StationEntry(
        id=station_id,
        name=name_node.as_str() if name_node else station_id,
        public_key=public_key,
        datasets=ids,
        address=address_node.as_str() if address_node else None,
        host=_host(m, base, station_id, files) if hosted else None,
    )


def load_network(path: Path) -> Network:
    """Parse and validate ``network.yaml``."""
    from pht.orchestrator.engine import ENGINES

    root = yamlcfg.load(path).mapping({"stations", "trains", "engine", "address"})
    engine_node = root.get("engine")
    engine_map = _engine_mapping(engine_node)
    kind_node = engine_map.require("kind") if engine_map else engine_node
    engine = kind_node.as_str() if kind_node else "embedded"
    if engine not in ENGINES:
        raise kind_node.error(  # type: ignore[union-attr]
            f"engine '{engine}' is not available; use one of {', '.join(ENGINES)}"
        )
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
    address_node = root.get("address")
    settings = None
    if engine == "vantage6" and engine_map is None:
        raise engine_node.error(  # type: ignore[union-attr]
            "the vantage6 engine needs its settings: write engine: {kind: vantage6, "
            "server: ..., collaboration: ..., username: ..., password_file: ..., "
            "image: ...}"
        )
    if engine_map is not None and engine == "vantage6":
        from pht.orchestrator import vantage6_config

        settings = vantage6_config.parse(engine_map, path.parent, list(stations))
    return Network(
        path,
        stations,
        trains,
        engine=engine,
        address=address_node.as_str() if address_node else None,
        engine_settings=settings,
    )


def _engine_mapping(node: yamlcfg.Node | None) -> yamlcfg.Mapping | None:
    """``engine:`` as a mapping (``kind`` plus the engine's settings), else None.

    A plain name (``engine: embedded``) gives None. The keys allowed depend on
    ``kind``: the embedded engine takes none besides it.
    """
    if node is None or not isinstance(node.value(), dict):
        return None
    kind = node.mapping(None).require("kind").as_str()
    if kind == "vantage6":
        from pht.orchestrator.vantage6_config import KEYS

        return node.mapping(set(KEYS))
    from pht.orchestrator.engine import ENGINES

    return node.mapping({"kind"} if kind in ENGINES else None)


STUDY_KEYS = frozenset(
    {
        "question",
        "purpose",
        "train",
        "dataset",
        "stations",
        "min_stations",
        "parameters",
        "role",
        "requester",
    }
)
"""Top-level keys of ``study.yaml`` (``requester`` only to say it is not one)."""


def load_study(
    path: Path, catalogue: Catalogue, network: Network | None = None
) -> Study:
    """Parse ``study.yaml``, resolve its train and check it against the network."""
    return _study(yamlcfg.load(path), path, catalogue, network)


def study_from_mapping(
    fields: Mapping[str, Any],
    source: Path,
    catalogue: Catalogue,
    network: Network | None = None,
) -> Study:
    """A study from the keys of a ``study.yaml`` given as a dict (e.g. in a notebook).

    It is checked exactly like a file; errors name ``source`` (a label such as
    ``Study.build``) and the key, without a line number.
    """
    import yaml

    try:
        text = yaml.safe_dump(dict(fields), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{source}: a study value is not plain data ({exc}); use str, int, float, "
            "bool, lists and dicts"
        ) from None
    try:
        return _study(
            yamlcfg.parse(text.encode("utf-8"), source), source, catalogue, network
        )
    except ConfigError as exc:
        # the lines of the generated YAML mean nothing to the caller: name the key
        message = re.sub(rf"^{re.escape(str(source))}:\d+:", f"{source}:", str(exc))
        raise ConfigError(message) from None


def _min_stations(node: yamlcfg.Node | None, targets: int | None) -> int | None:
    """``min_stations``: an integer from 1 to the number of target stations."""
    if node is None:
        return None
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int):
        raise node.error(
            f"must be a whole number of stations, not "
            f"{yamlcfg.quote(value)}; write e.g. min_stations: 2, or leave it out to "
            "need every requested station"
        )
    if value < 1:
        raise node.error(
            f"must be at least 1, not {value}; leave it out to need "
            "every requested station"
        )
    if targets is not None and value > targets:
        raise node.error(
            f"{value} is more than the {targets} station(s) the study asks; "
            f"lower it to at most {targets}, or add stations"
        )
    return int(value)


def _study(
    document: yamlcfg.Node,
    path: Path,
    catalogue: Catalogue,
    network: Network | None = None,
) -> Study:
    from pht.orchestrator import equivalence, nma

    design_node = document.mapping(None).get("design")
    designs = {equivalence.DESIGN: equivalence.STUDY_KEYS, nma.DESIGN: nma.STUDY_KEYS}
    if design_node is not None and design_node.value() not in designs:
        raise design_node.error(
            f"{yamlcfg.quote(design_node.value())} is not a study design; the designs "
            f"are {', '.join(designs)} (leave the key out for a one-train study)"
        )
    root = document.mapping(
        set(designs[design_node.value()])
        if design_node is not None
        else set(STUDY_KEYS)
    )
    requester_node = root.get("requester")
    if requester_node is not None:
        raise requester_node.error(
            "not a study key: the request is signed by the key you pass to "
            "`pht run --identity KEY`, and stations take your user and organisation "
            "from that key's keyring entry; remove this line"
        )
    role = "analyst"
    role_node = root.get("role")
    if role_node is not None:
        role = role_node.as_str()
        if not REQUESTER_ROLE_PATTERN.fullmatch(role):
            raise role_node.error(
                f"role {yamlcfg.quote(role)} must be a lower-case name such as "
                "analyst (a letter, then up to 31 letters, digits, '-' or '_'); use "
                "a role listed in your key's requester_roles in the stations' keyrings"
            )
    question = root.require("question").as_str()
    purpose_node = root.require("purpose")
    purpose = purpose_node.as_str()
    if not PURPOSE.match(purpose):
        raise purpose_node.error(
            f"purpose '{purpose}' must be a path such as package-management/reassessment"
        )
    package = None
    if design_node is None:
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
    if design_node is not None:
        return _equivalence_study(
            root,
            path,
            catalogue,
            network,
            question,
            purpose,
            dataset,
            stations,
            role,
            design_node.value(),
        )
    assert package is not None
    params_node = root.get("parameters")
    given: dict[str, Any] = {}
    if params_node is not None:
        given = {key: node.value() for key, node in params_node.raw_mapping_nodes()}
    parameters, problems = package.manifest.resolve(given)
    if not problems:
        # rules over several parameters, from the train's plugin
        from pht.trains import plugin_for

        try:
            check = plugin_for(package.manifest.name).check
        except ConfigError:  # a train without a plugin cannot run; said at run time
            check = None
        problems = list(check(parameters)) if check is not None else []
    if problems:
        key = problems[0].split(":", 1)[0]
        node = params_node.mapping(None).get(key) if params_node else None
        if node is not None:
            raise node.error(
                problems[0].split(":", 1)[1].strip()
                + f" (train {package.manifest.ref})"
            )
        ref = str(package.manifest.ref)
        said = problems[0] + ("" if ref in problems[0] else f" (train {ref})")
        at = params_node or root.node  # its line, without repeating "parameters:"
        raise ConfigError(f"{at.file}:{at.line}: parameters.{said}")
    if network is not None:
        targets = stations or tuple(network.stations)
        holders = [s for s in targets if dataset in network.stations[s].datasets]
        if not holders:
            raise root.require("dataset").error(
                f"no target station holds dataset '{dataset}'; check 'dataset' "
                "against the datasets in the network file"
            )
    count = (
        len(stations)
        if stations is not None
        else len(network.stations)
        if network is not None
        else None
    )
    min_stations = _min_stations(root.get("min_stations"), count)
    return Study(
        source=path,
        question=question,
        purpose=purpose,
        train=package,
        dataset=dataset,
        stations=stations,
        parameters=parameters,
        role=role,
        min_stations=min_stations,
    )


def _equivalence_study(
    root: yamlcfg.Mapping,
    path: Path,
    catalogue: Catalogue,
    network: Network | None,
    question: str,
    purpose: str,
    dataset: str,
    stations: tuple[str, ...] | None,
    role: str,
    kind: str = "equivalence",
) -> Study:
    """A ``design: equivalence`` or ``nma`` study: its analyses are its requests."""
    from pht.orchestrator import equivalence, nma

    if network is not None:
        targets = stations or tuple(network.stations)
        if not any(dataset in network.stations[s].datasets for s in targets):
            raise root.require("dataset").error(
                f"no target station holds dataset '{dataset}'; check 'dataset' "
                "against the datasets in the network file"
            )
    count = (
        len(stations)
        if stations is not None
        else len(network.stations)
        if network is not None
        else None
    )
    min_stations = _min_stations(root.get("min_stations"), count)
    base = {
        "question": question,
        "purpose": purpose,
        "dataset": dataset,
        "stations": stations,
        "role": role,
        "min_stations": min_stations,
    }
    module: Any = nma if kind == nma.DESIGN else equivalence
    design = module.parse(root, path, catalogue, base)
    return Study(
        source=path,
        question=question,
        purpose=purpose,
        train=module.train_package(design),
        dataset=dataset,
        stations=stations,
        parameters=design.summary,
        role=role,
        min_stations=min_stations,
        design=design,
    )
