"""Train manifests and the local train catalogue (``train_images/<name>/``).

A train folder holds ``manifest.yaml`` (name, version, parameters, columns, output
disclosure class, rounds), the ``entrypoint.py`` that stations run and, for the
container executor, a ``Dockerfile``. The *code digest* is the SHA-256 over the
manifest bytes and the entrypoint bytes, domain-separated; a station runs a train only if
the digest it computes over its own copy equals the digest in the request.

Manifest example::

    name: survival.km
    version: 1.0.0
    description: Kaplan-Meier curves and log-rank tests, pooled exactly
    rounds: single
    parameters:
      time:  {type: column, kind: numeric, required: true, doc: duration column}
      event: {type: column, kind: binary, required: true, doc: 1 = event, 0 = censored}
      group: {type: column, kind: categorical, doc: compare these groups}
      alpha: {type: number, default: 0.05, minimum: 0.0001, maximum: 0.5}
    output:
      class: event_table
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pht import yamlcfg
from pht.errors import ConfigError
from pht.wire import TrainRef

DISCLOSURE_CLASSES = ("aggregate", "model", "event_table", "risk_set_sums")
COLUMN_ROLES = (
    "time",
    "event",
    "group",
    "covariate",
    "outcome",
    "period",
    "measure",
    "site",
)
"""What a column may serve as: ``outcome`` is what a model explains (released only
inside model terms), ``period`` is a date released only as its year,
``measure`` a quantity released only as sums, ``site`` a care site (hospital) whose
name is released only where the station's policy says ``show_station_name``."""
COLUMN_KINDS = ("numeric", "binary", "categorical", "date")
"""``date``: a date or timestamp column, or whole years (for ``period`` columns)."""
PARAM_TYPES = (
    "column",
    "columns",
    "number",
    "integer",
    "string",
    "strings",
    "boolean",
    "mapping",
)

TRAINS_DIR = Path(__file__).resolve().parent.parent / "train_images"
"""The train catalogue shipped with this checkout."""

ParamType = Literal[
    "column", "columns", "number", "integer", "string", "strings", "boolean", "mapping"
]


@dataclass(frozen=True)
class ParamSpec:
    """One declared train parameter."""

    name: str
    type: ParamType
    required: bool = False
    default: Any = None
    kind: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""
    role: str | None = None
    if_present: bool = False
    """A column a station may lack: it then says so in its output instead of
    refusing the request (e.g. administrations, recorded by some registries only)."""

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable, or None when it is."""
        if self.type in ("column", "string"):
            if not isinstance(value, str) or not value.strip():
                return "expected a non-empty string"
            if self.choices is not None and value not in self.choices:
                return f"expected one of {', '.join(self.choices)}, got {value!r}"
            return None
        if self.type == "columns":
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v for v in value
            ):
                return "expected a list of column names"
            if len(set(value)) != len(value):
                return "lists a column twice"
            return None
        if self.type == "strings":
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                return "expected a list of non-empty names"
            if len(set(value)) != len(value):
                return "lists a name twice"
            return None
        if self.type == "mapping":
            if not isinstance(value, dict) or not all(
                isinstance(k, str)
                and isinstance(v, str | int)
                and not isinstance(v, bool)
                for k, v in value.items()
            ):
                return "expected a mapping of names to values, e.g. {regimen: standard}"
            return None
        if self.type == "boolean":
            return None if isinstance(value, bool) else "expected true or false"
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if self.type == "integer" and not (numeric and float(value).is_integer()):
            return f"expected an integer, got {value!r}"
        if not numeric:
            return f"expected a number, got {value!r}"
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {self.minimum}, got {value}"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {self.maximum}, got {value}"
        return None


@dataclass(frozen=True)
class SessionSpec:
    """How the station checks the round messages of an iterative train.

    ``inputs`` holds the schema of every message the orchestrator may send (by
    ``op``); ``design`` is the op that agrees the model design (checked against the
    station's own round-0 description); ``evaluate`` are the ops that evaluate the
    model at coefficients ``dof`` (a list of numbers: its length is the number of
    estimated parameters, for the degrees-of-freedom rule); ``path: newton`` makes
    the station accept only the deterministic Newton-Raphson path from zero, proven by
    the pooled contributions every station signed (``evidence`` in each message).
    """

    inputs: Mapping[str, Mapping[str, Any]]
    design: str | None
    evaluate: tuple[str, ...]
    dof: str
    path: str | None
    terms: tuple[str, ...] = ("loglik", "gradient", "hessian")
    kernel: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A parsed train manifest."""

    name: str
    version: str
    description: str
    rounds: Literal["single", "iterative"]
    parameters: Mapping[str, ParamSpec]
    output_class: str
    output_class_by: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    output_schema: Mapping[str, Any] | None = None
    round_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    session: SessionSpec | None = None

    def schema_for(self, op: str | None) -> Mapping[str, Any]:
        """The declared schema of an output (``op`` names the round, None = single)."""
        schema = self.output_schema if op is None else self.round_schemas.get(op)
        if schema is None:
            raise ConfigError(f"train {self.ref} declares no output schema for {op!r}")
        return schema

    def output_class_for(self, parameters: Mapping[str, Any]) -> str:
        """The disclosure class of the outputs for these parameters."""
        for name, by_value in self.output_class_by.items():
            value = parameters.get(name)
            if isinstance(value, str) and value in by_value:
                return by_value[value]
        return self.output_class

    @property
    def ref(self) -> TrainRef:
        """``name@version``."""
        return TrainRef(self.name, self.version)

    def column_params(self) -> list[ParamSpec]:
        """Parameters that name dataset columns."""
        return [p for p in self.parameters.values() if p.type in ("column", "columns")]

    def resolve(self, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Check ``given`` parameters; return them with defaults and a list of problems.

        Problems are ``(key, message)`` strings such as ``"alpha: must be <= 0.5"`` so
        the caller can locate them in its own file.
        """
        problems: list[str] = []
        resolved: dict[str, Any] = {}
        for key, value in given.items():
            spec = self.parameters.get(key)
            if spec is None:
                problems.append(
                    f"{key}: not a parameter of {self.ref}; allowed: "
                    + ", ".join(sorted(self.parameters))
                )
                continue
            why = spec.check(value)
            if why:
                problems.append(f"{key}: {why}")
            resolved[key] = value
        for spec in self.parameters.values():
            if spec.name not in resolved:
                if spec.required:
                    problems.append(f"{spec.name}: required by {self.ref}; {spec.doc}")
                elif spec.default is not None:
                    resolved[spec.name] = spec.default
        return resolved, problems

    def roles_of(self, parameters: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Every (column, role) pair ``parameters`` name, each once.

        A column named by two parameters appears once per role, so a policy is asked
        about every role a request gives a column.
        """
        pairs: list[tuple[str, str]] = []
        for spec in self.column_params():
            value = parameters.get(spec.name)
            if value is None:
                continue
            for column in [value] if isinstance(value, str) else value:
                pair = (column, spec.role or "covariate")
                if pair not in pairs:
                    pairs.append(pair)
        return pairs

    def optional_columns(self, parameters: Mapping[str, Any]) -> frozenset[str]:
        """Columns ``parameters`` name through ``if_present`` parameters only."""
        optional: set[str] = set()
        required: set[str] = set()
        for spec in self.column_params():
            value = parameters.get(spec.name)
            if value is None:
                continue
            names = [value] if isinstance(value, str) else list(value)
            (optional if spec.if_present else required).update(names)
        return frozenset(optional - required)

    def columns_of(self, parameters: Mapping[str, Any]) -> dict[str, str]:
        """Columns named by ``parameters`` with the kind each must have."""
        columns: dict[str, str] = {}
        for spec in self.column_params():
            value = parameters.get(spec.name)
            if value is None:
                continue
            for column in [value] if isinstance(value, str) else value:
                columns[column] = spec.kind or "numeric"
        return columns


@dataclass(frozen=True)
class TrainPackage:
    """A train folder of the catalogue: manifest, entrypoint and code digest."""

    folder: Path
    manifest: Manifest
    manifest_bytes: bytes
    entrypoint: Path

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` over the manifest and entrypoint bytes."""
        h = hashlib.sha256(b"pht-train-code/1\x00")
        for part in (self.manifest_bytes, self.entrypoint.read_bytes()):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return "sha256:" + h.hexdigest()


def _param(name: str, node: yamlcfg.Node) -> ParamSpec:
    m = node.mapping(
        {
            "type",
            "kind",
            "role",
            "required",
            "default",
            "choices",
            "minimum",
            "maximum",
            "doc",
            "if_present",
        }
    )
    kind_type = m.require("type").as_str()
    if kind_type not in PARAM_TYPES:
        raise m.require("type").error(
            f"parameter type must be one of {', '.join(PARAM_TYPES)}"
        )
    kind = m.get("kind")
    kind_value = kind.as_str() if kind else None
    if kind_value is not None and kind_value not in COLUMN_KINDS:
        raise kind.error(f"column kind must be one of {', '.join(COLUMN_KINDS)}")  # type: ignore[union-attr]
    role_node = m.get("role")
    role = role_node.as_str() if role_node else None
    if role is not None and role not in COLUMN_ROLES:
        raise role_node.error(f"column role must be one of {', '.join(COLUMN_ROLES)}")  # type: ignore[union-attr]
    if kind_type in ("column", "columns") and role is None:
        raise m.node.error("a column parameter must declare its role")
    choices = m.get("choices")
    return ParamSpec(
        name=name,
        type=kind_type,  # type: ignore[arg-type]
        required=m.get("required").as_type(bool) if m.get("required") else False,  # type: ignore[union-attr]
        default=m.get("default").value() if m.get("default") else None,  # type: ignore[union-attr]
        kind=kind_value,
        choices=tuple(choices.as_str_list()) if choices else None,
        minimum=m.get("minimum").as_type(float) if m.get("minimum") else None,  # type: ignore[union-attr]
        maximum=m.get("maximum").as_type(float) if m.get("maximum") else None,  # type: ignore[union-attr]
        doc=m.get("doc").as_str() if m.get("doc") else "",  # type: ignore[union-attr]
        role=role,
        if_present=m.get("if_present").as_type(bool) if m.get("if_present") else False,  # type: ignore[union-attr]
    )


_SCHEMA_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # type: (required keys, optional keys) besides "type", "optional", "nullable"
    # count: 0 or >= k, at most the station's population; cell: >= k (no zeros)
    "count": (set(), set()),
    "cell": (set(), set()),
    "integer": (set(), {"minimum", "maximum"}),
    # grid: the value must be one of the station's released time boundaries
    "number": (set(), {"decimals", "grid", "minimum", "maximum"}),
    "boolean": (set(), set()),
    "string": ({"choices"}, set()),
    # input messages only: a string naming one of the request's columns / a level
    # the station described
    "column": (set(), set()),
    "label": (set(), set()),
    "evidence": (set(), set()),
    # input messages only: a station id the request addressed
    "station": (set(), set()),
    "array": ({"items", "max_length"}, set()),
    "float64_array": ({"max_elements"}, {"max_abs"}),
    "object": ({"fields"}, set()),
    # keys: labels (values the station observed with >= k rows) | columns (the
    # request's columns) | levels (like labels)
    "map": ({"values", "max_keys", "keys"}, set()),
}


def _schema(node: yamlcfg.Node) -> dict[str, Any]:
    """Validate an output schema node (see :mod:`pht.station.guard`)."""
    kind = node.mapping(None).require("type").as_str()
    if kind not in _SCHEMA_KEYS:
        raise node.error(f"unknown output type '{kind}'; use {', '.join(_SCHEMA_KEYS)}")
    required, optional = _SCHEMA_KEYS[kind]
    m = node.mapping(required | optional | {"type", "optional", "nullable"})
    out: dict[str, Any] = {"type": kind}
    for key in required:
        m.require(key)
    for key, child in m.children.items():
        if key in ("items", "values"):
            out[key] = _schema(child)
        elif key == "fields":
            out[key] = {k: _schema(v) for k, v in child.raw_mapping_nodes()}
        elif key == "choices":
            out[key] = child.as_str_list()
        elif key in ("max_length", "max_keys", "max_elements", "decimals"):
            out[key] = child.as_type(int)
        elif key in ("minimum", "maximum", "max_abs"):
            out[key] = float(child.as_type((int, float)))
        elif key in ("optional", "nullable", "grid"):
            out[key] = child.as_type(bool)
        elif key == "keys":
            value = child.as_str()
            if value not in ("labels", "columns"):
                raise child.error("map keys must be 'labels' or 'columns'")
            out[key] = value
    return out


def _disclosure_class(node: yamlcfg.Node) -> str:
    value = node.as_str()
    if value not in DISCLOSURE_CLASSES:
        raise node.error(
            f"disclosure class must be one of {', '.join(DISCLOSURE_CLASSES)}"
        )
    return value


def _session(node: yamlcfg.Node) -> SessionSpec:
    m = node.mapping({"inputs", "design", "evaluate", "dof", "path", "kernel"})
    inputs = {
        op: _schema(child) for op, child in m.require("inputs").raw_mapping_nodes()
    }
    design = m.get("design")
    path = m.get("path")
    if path is not None and path.as_str() != "newton":
        raise path.error("session.path must be 'newton'")
    evaluate = tuple(m.require("evaluate").as_str_list())
    for op in evaluate + ((design.as_str(),) if design else ()):
        if op not in inputs:
            raise m.node.error(f"session op '{op}' has no input schema")
    return SessionSpec(
        inputs=inputs,
        design=design.as_str() if design else None,
        evaluate=evaluate,
        dof=m.require("dof").as_str(),
        path=path.as_str() if path else None,
        kernel=m.get("kernel").as_str() if m.get("kernel") else None,  # type: ignore[union-attr]
    )


def load_manifest(path: Path) -> Manifest:
    """Parse and validate a ``manifest.yaml``."""
    return _manifest(yamlcfg.load(path))


def _manifest(node: yamlcfg.Node) -> Manifest:
    """Validate a parsed manifest."""
    root = node.mapping(
        {"name", "version", "description", "rounds", "parameters", "output", "session"}
    )
    ref = TrainRef(root.require("name").as_str(), root.require("version").as_str())
    rounds = root.require("rounds").as_str()
    if rounds not in ("single", "iterative"):
        raise root.require("rounds").error("must be 'single' or 'iterative'")
    params = {
        key: _param(key, node)
        for key, node in root.require("parameters").raw_mapping_nodes()
    }
    output = root.require("output").mapping({"class", "class_by", "schema", "rounds"})
    output_class = _disclosure_class(output.require("class"))
    class_by: dict[str, dict[str, str]] = {}
    by_node = output.get("class_by")
    if by_node is not None:
        for param, values in by_node.raw_mapping_nodes():
            if param not in params:
                raise values.error(f"'{param}' is not a declared parameter")
            class_by[param] = {
                value: _disclosure_class(node)
                for value, node in values.raw_mapping_nodes()
            }
    schema_node = output.get("schema")
    rounds_node = output.get("rounds")
    if rounds == "single" and schema_node is None:
        raise output.node.error("a single-round train must declare output.schema")
    if rounds == "iterative" and rounds_node is None:
        raise output.node.error("an iterative train must declare output.rounds")
    round_schemas = {}
    if rounds_node is not None:
        for op, child in rounds_node.raw_mapping_nodes():
            round_schemas[op] = _schema(child)
    session_node = root.get("session")
    if rounds == "iterative" and session_node is None:
        raise root.node.error(
            "an iterative train must declare session (input schemas per round op)"
        )
    session = _session(session_node) if session_node is not None else None
    return Manifest(
        name=ref.name,
        version=str(ref.version),
        description=root.require("description").as_str(),
        rounds=rounds,  # type: ignore[arg-type]
        parameters=params,
        output_class=output_class,
        output_class_by=class_by,
        output_schema=_schema(schema_node) if schema_node is not None else None,
        round_schemas=round_schemas,
        session=session,
    )


def load_package(folder: Path) -> TrainPackage:
    """Load one train folder."""
    manifest_path = folder / "manifest.yaml"
    if not manifest_path.is_file():
        what = "a folder without manifest.yaml" if folder.is_dir() else "not a folder"
        raise ConfigError(
            f"{folder}: {what}, so not a train; give a train folder such as "
            "train_images/survival.km"
        )
    # parse the very bytes the code digest covers (one read, size-capped)
    manifest_bytes = yamlcfg.read(manifest_path)
    manifest = _manifest(yamlcfg.parse(manifest_bytes, manifest_path))
    entrypoint = folder / "entrypoint.py"
    if not entrypoint.is_file():
        raise ConfigError(f"{entrypoint}: train entrypoint missing; add entrypoint.py")
    return TrainPackage(folder, manifest, manifest_bytes, entrypoint)


class Catalogue:
    """The trains available in a folder, looked up by name and optional version."""

    def __init__(self, root: Path = TRAINS_DIR) -> None:
        self.root = root
        self._packages: dict[str, list[TrainPackage]] = {}
        if not root.is_dir():
            raise ConfigError(f"{root}: train catalogue folder not found")
        for folder in sorted(
            p for p in root.iterdir() if (p / "manifest.yaml").is_file()
        ):
            package = load_package(folder)
            self._packages.setdefault(package.manifest.name, []).append(package)

    def names(self) -> list[str]:
        """All train names."""
        return sorted(self._packages)

    def packages(self) -> list[TrainPackage]:
        """All packages, sorted by name and version."""
        return [p for name in self.names() for p in self._packages[name]]

    def get(self, ref: TrainRef) -> TrainPackage:
        """The package for ``ref`` (newest version when none is given)."""
        candidates = self._packages.get(ref.name)
        if not candidates:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown train '{ref.name}'; known trains: {known}")
        if ref.version is None:
            return max(
                candidates,
                key=lambda p: tuple(int(x) for x in p.manifest.version.split(".")),
            )
        for package in candidates:
            if package.manifest.version == ref.version:
                return package
        versions = ", ".join(p.manifest.version for p in candidates)
        raise ConfigError(
            f"train '{ref.name}' has no version {ref.version}; available: {versions}"
        )
