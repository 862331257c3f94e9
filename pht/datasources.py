"""Database dataset sources: what a station's ``network.yaml`` entry says, parsed strictly.

A station's dataset is a file (``kind: parquet`` / ``csv``, or no ``kind`` with a
``path``) or a database source:

``postgres``
    A table or a named view: ``{kind: postgres, table: schema.table, dsn_file: PATH}``
    or ``dsn_env: VARIABLE`` instead of ``dsn_file``.
``omop``
    An OMOP CDM v5.4 schema on PostgreSQL and a declared cohort, mapped to the
    project's column names (:mod:`pht.station.omop`)::

        {kind: omop, schema: cdm, dsn_file: PATH,
         cohort: {condition_concepts: [4162276],
                  drug_concepts: {pembrolizumab: [45775965], nivolumab: [45892628]}}}

The connection string (DSN) is never held here: only where to find it (a file the
station's operator keeps, or an environment variable of the station's process). It is
read when the station connects, and never written into a message, a reply, a log line
or an audit record: those name the source by :meth:`DatabaseSource.label` (kind and
table or schema) and the query by its digest.

Identifiers (schema, table, view, column names) must match :data:`IDENTIFIER`; concept
ids are positive integers. They are composed into SQL with ``psycopg.sql.Identifier``
and query parameters, never pasted into SQL text (:mod:`pht.station.sources`).

Errors are :class:`~pht.errors.ConfigError` located at the file, line and key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pht import yamlcfg

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
"""A database identifier the station accepts: lower-case, unquoted PostgreSQL style.

Use it with ``fullmatch`` (``\\Z``, not ``$``: ``$`` also matches before a final
newline, so ``"cdm\\n"`` would pass)."""

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}\Z")
FILE_KINDS = ("parquet", "csv")
DB_KINDS = ("postgres", "omop")
KINDS = FILE_KINDS + DB_KINDS

MAX_CONCEPTS = 10_000
"""More concept ids than this in one set is a mistake (use a concept-set view)."""

REGIMEN_DEFAULTS: Mapping[str, tuple[float, float]] = {
    "pembrolizumab": (400.0, 42.0),
    "nivolumab": (480.0, 28.0),
}
"""Per anti-PD-1 drug label: (first dose in mg, days to the second dose) at or above
which monotherapy counts as extended-interval dosing (400 mg every 6 weeks, 480 mg
every 4 weeks)."""


@dataclass(frozen=True)
class Connection:
    """Where the station finds its DSN, and how long it waits for the database.

    ``dsn_file`` or ``dsn_env`` (exactly one). ``connect_timeout`` is in seconds,
    ``statement_timeout`` in seconds per query (the station gives up on a slow
    database with a fixed refusal code and keeps serving its other datasets).
    """

    dsn_file: Path | None = None
    dsn_env: str | None = None
    connect_timeout: int = 5
    statement_timeout: int = 120


@dataclass(frozen=True)
class Cohort:
    """An OMOP cohort: who is in it and how its columns are derived.

    Attributes
    ----------
    condition_concepts
        ``condition_concept_id`` values of the disease (at least one condition
        occurrence on or before the index date).
    drug_concepts
        Per drug label, the ``drug_concept_id`` values of its exposures.
    dose_drugs
        Drug labels whose exposure quantities (mg) add up to ``dose_mg_total``
        (default: every label).
    extended
        Per drug label: (first dose in mg, days to the second exposure) at or above
        which monotherapy is extended-interval dosing.
    weight_unit
        The ``dose_unit_source_value`` of a weight-based dose (``mg/kg``).
    columns
        The mapped columns the cohort exports (default: all, see
        :data:`pht.station.omop.COLUMNS`).
    progression_concepts
        ``observation_concept_id`` values of disease progression; when given, the
        cohort exports ``progression`` and ``pfs_days``.
    observations
        Further columns, each (name, ``observation_concept_id``, type): the value
        (``value_as_number``, or ``value_as_string`` for ``text``) of the person's
        latest observation of that concept; type ``integer``, ``numeric`` or ``text``.
    """

    condition_concepts: tuple[int, ...]
    drug_concepts: tuple[tuple[str, tuple[int, ...]], ...]
    dose_drugs: tuple[str, ...] = ()
    extended: tuple[tuple[str, float, float], ...] = ()
    weight_unit: str = "mg/kg"
    columns: tuple[str, ...] = ()
    progression_concepts: tuple[int, ...] = ()
    observations: tuple[tuple[str, int, str], ...] = ()


@dataclass(frozen=True)
class DatabaseSource:
    """A dataset held in PostgreSQL: a table or view, or an OMOP cohort.

    ``station`` and ``dataset`` name it in messages; ``table`` is ``schema.table``
    (postgres) and ``schema`` the CDM schema (omop).
    """

    kind: str
    station: str
    dataset: str
    connection: Connection
    table: tuple[str, str] | None = None
    schema: str | None = None
    cohort: Cohort | None = None
    origin: str = field(default="", compare=False)
    """``network.yaml:LINE`` of the entry, for operator messages."""

    def label(self) -> str:
        """The source as messages and audit records name it (never the DSN)."""
        if self.kind == "postgres" and self.table is not None:
            return f"postgres table {self.table[0]}.{self.table[1]}"
        return f"omop schema {self.schema} (cohort)"

    def where(self) -> str:
        """``station S, dataset D`` for one-line messages."""
        return f"station {self.station}, dataset {self.dataset}"


# -- parsing ----------------------------------------------------------------------
def _identifier(node: yamlcfg.Node, what: str) -> str:
    value = node.as_str()
    if not IDENTIFIER.fullmatch(value):
        raise node.error(
            f"{what} {yamlcfg.quote(value)} is not a plain identifier (lower-case "
            "letters, digits and '_', starting with a letter or '_', at most 63); "
            "rename it or create a view with such a name"
        )
    return value


def _positive_int(node: yamlcfg.Node, what: str, most: int) -> int:
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise node.error(
            f"{what} must be a whole number from 1 to {most}, not {yamlcfg.quote(value)}"
        )
    return int(value)


def _number(node: yamlcfg.Node, what: str) -> float:
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise node.error(
            f"{what} must be a positive number, not {yamlcfg.quote(value)}"
        )
    return float(value)


def _concepts(node: yamlcfg.Node) -> tuple[int, ...]:
    items = node.items()
    if not items:
        raise node.error("list at least one concept id (a positive integer)")
    if len(items) > MAX_CONCEPTS:
        raise node.error(
            f"more than {MAX_CONCEPTS} concept ids; keep the concept set in a table "
            "or view and list its ancestors"
        )
    out: list[int] = []
    for item in items:
        value = item.value()
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise item.error(
                f"a concept id is a positive integer, not {yamlcfg.quote(value)}; "
                "look it up in the vocabulary (concept.concept_id)"
            )
        if value >= 2**63:
            raise item.error("a concept id fits in 64 bits; check the number")
        out.append(int(value))
    return tuple(dict.fromkeys(out))


def _concepts_one(node: yamlcfg.Node) -> int:
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise node.error(
            f"a concept id is a positive integer, not {yamlcfg.quote(value)}; "
            "look it up in the vocabulary (concept.concept_id)"
        )
    return int(value)


def _connection(m: yamlcfg.Mapping, base: Path) -> Connection:
    file_node, env_node = m.get("dsn_file"), m.get("dsn_env")
    if (file_node is None) == (env_node is None):
        raise m.node.error(
            "give the database connection as exactly one of 'dsn_file' (a file only "
            "the station's operator can read) or 'dsn_env' (an environment variable "
            "of the station's process); never write the DSN itself here"
        )
    dsn_file = None
    dsn_env = None
    if file_node is not None:
        text = file_node.as_str()
        if "=" in text or "://" in text:
            # not quoted: a DSN pasted here by mistake must not reach any message
            raise file_node.error(
                "looks like a connection string, not a file name; write the DSN into "
                "a file only the station's operator can read (chmod 600) and give "
                "that file's path; never write the DSN here"
            )
        dsn_file = (base / text).resolve()
        if not dsn_file.is_file():
            raise file_node.error(
                f"DSN file '{file_node.as_str()}' not found (looked in {dsn_file}); "
                "write the connection string into it (mode 0600)"
            )
    if env_node is not None:
        dsn_env = env_node.as_str()
        if not ENV_NAME.fullmatch(dsn_env):
            # not quoted: a DSN pasted here by mistake must not reach any message
            raise env_node.error(
                "is not an environment variable name (upper-case letters, digits, "
                "'_'); name the variable that holds the DSN, not the DSN itself"
            )
    connect = m.get("connect_timeout")
    statement = m.get("statement_timeout")
    return Connection(
        dsn_file=dsn_file,
        dsn_env=dsn_env,
        connect_timeout=5
        if connect is None
        else _positive_int(connect, "connect_timeout (seconds)", 300),
        statement_timeout=120
        if statement is None
        else _positive_int(statement, "statement_timeout (seconds)", 86_400),
    )


CONNECTION_KEYS = {"dsn_file", "dsn_env", "connect_timeout", "statement_timeout"}
OBSERVATION_TYPES = ("integer", "numeric", "text")
COHORT_KEYS = {
    "progression_concepts",
    "observations",
    "condition_concepts",
    "drug_concepts",
    "dose_drugs",
    "extended_interval",
    "weight_unit",
    "columns",
}


def _cohort(node: yamlcfg.Node) -> Cohort:
    from pht.station.omop import COLUMNS, RESERVED

    m = node.mapping(COHORT_KEYS)
    conditions = _concepts(m.require("condition_concepts"))
    drugs_node = m.require("drug_concepts")
    drugs: list[tuple[str, tuple[int, ...]]] = []
    owner: dict[int, str] = {}
    for label, concepts in drugs_node.raw_mapping_nodes():
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,62}\Z", label):
            raise concepts.error(
                f"drug label {yamlcfg.quote(label)} must be lower-case letters, digits, "
                "'-', '_' or '.' (it becomes a value of the drug column)"
            )
        ids = _concepts(concepts)
        for concept in ids:
            # one exposure would join both labels: a false combination 'a+b', its
            # dose and cost counted twice
            if owner.setdefault(concept, label) != label:
                raise concepts.error(
                    f"concept {concept} is listed under drugs "
                    f"{yamlcfg.quote(owner[concept])} and {yamlcfg.quote(label)}; "
                    "list each drug_concept_id under one drug label only"
                )
        drugs.append((label, ids))
    if not drugs:
        raise drugs_node.error(
            "list at least one drug: label -> [drug_concept_id, ...]"
        )
    labels = [label for label, _ in drugs]
    dose_node = m.get("dose_drugs")
    dose_drugs = tuple(labels)
    if dose_node is not None:
        dose_drugs = tuple(dose_node.as_str_list())
        for item, label in zip(dose_node.items(), dose_drugs, strict=True):
            if label not in labels:
                raise item.error(
                    f"drug {yamlcfg.quote(label)} is not in drug_concepts; use one of "
                    + ", ".join(labels)
                )
    extended: dict[str, tuple[float, float]] = {
        k: v for k, v in REGIMEN_DEFAULTS.items() if k in labels
    }
    ext_node = m.get("extended_interval")
    if ext_node is not None:
        extended = {}
        for label, rule in ext_node.raw_mapping_nodes():
            if label not in labels:
                raise rule.error(
                    f"drug {yamlcfg.quote(label)} is not in drug_concepts; use one of "
                    + ", ".join(labels)
                )
            r = rule.mapping({"min_dose_mg", "min_interval_days"})
            extended[label] = (
                _number(r.require("min_dose_mg"), "min_dose_mg"),
                _number(r.require("min_interval_days"), "min_interval_days"),
            )
    unit_node = m.get("weight_unit")
    columns_node = m.get("columns")
    columns: tuple[str, ...] = ()
    if columns_node is not None:
        columns = tuple(columns_node.as_str_list())
        for item, name in zip(columns_node.items(), columns, strict=True):
            if name not in COLUMNS:
                raise item.error(
                    f"{yamlcfg.quote(name)} is not a mapped OMOP column; use some of "
                    + ", ".join(COLUMNS)
                )
    progression_node = m.get("progression_concepts")
    progression = _concepts(progression_node) if progression_node is not None else ()
    observations: list[tuple[str, int, str]] = []
    obs_node = m.get("observations")
    if obs_node is not None:
        for name, spec in obs_node.raw_mapping_nodes():
            if not IDENTIFIER.fullmatch(name) or name in RESERVED:
                raise spec.error(
                    f"observation column {yamlcfg.quote(name)} must be a plain "
                    "identifier that is not already a mapped column nor one the "
                    "cohort query uses (" + ", ".join(sorted(RESERVED)) + "); "
                    "rename it"
                )
            o = spec.mapping({"concept", "type"})
            kind_node = o.require("type")
            kind = kind_node.as_str()
            if kind not in OBSERVATION_TYPES:
                raise kind_node.error(
                    f"type {yamlcfg.quote(kind)} is not one of "
                    + ", ".join(OBSERVATION_TYPES)
                )
            concept_node = o.require("concept")
            concept = _concepts_one(concept_node)
            observations.append((name, concept, kind))
    return Cohort(
        progression_concepts=progression,
        observations=tuple(observations),
        condition_concepts=conditions,
        drug_concepts=tuple(drugs),
        dose_drugs=dose_drugs,
        extended=tuple((k, v[0], v[1]) for k, v in sorted(extended.items())),
        weight_unit=unit_node.as_str() if unit_node is not None else "mg/kg",
        columns=columns,
    )


def parse_source(
    m: yamlcfg.Mapping, kind: str, base: Path, station: str, dataset: str
) -> DatabaseSource:
    """A ``postgres`` or ``omop`` dataset entry (already checked for its keys)."""
    connection = _connection(m, base)
    origin = f"{m.node.file}:{m.node.line}"
    if kind == "postgres":
        table_node = m.require("table")
        text = table_node.as_str()
        parts = text.split(".")
        if len(parts) != 2:
            raise table_node.error(
                f"table {yamlcfg.quote(text)} must be schema.table (or schema.view), "
                "e.g. registry.melanoma"
            )
        for part in parts:
            if not IDENTIFIER.fullmatch(part):
                raise table_node.error(
                    f"table {yamlcfg.quote(text)}: {yamlcfg.quote(part)} is not a "
                    "plain identifier (lower-case letters, digits and '_'); create a "
                    "view with such a name"
                )
        return DatabaseSource(
            kind=kind,
            station=station,
            dataset=dataset,
            connection=connection,
            table=(parts[0], parts[1]),
            origin=origin,
        )
    return DatabaseSource(
        kind=kind,
        station=station,
        dataset=dataset,
        connection=connection,
        schema=_identifier(m.require("schema"), "schema"),
        cohort=_cohort(m.require("cohort")),
        origin=origin,
    )


DATASET_KEYS: Mapping[str, set[str]] = {
    "parquet": {"id", "kind", "path"},
    "csv": {"id", "kind", "path"},
    "postgres": {"id", "kind", "table", *CONNECTION_KEYS},
    "omop": {"id", "kind", "schema", "cohort", *CONNECTION_KEYS},
}
"""The keys a station dataset entry may have, per kind."""


def dataset_kind(item: yamlcfg.Node) -> str:
    """The ``kind`` of a dataset entry (``parquet``/``csv`` from the path without it)."""
    m = item.mapping(None)
    kind_node = m.get("kind")
    if kind_node is None:
        return "file"
    value: Any = kind_node.value()
    if value not in KINDS:
        raise kind_node.error(
            f"dataset kind {yamlcfg.quote(value)} is not known; use one of "
            + ", ".join(KINDS)
        )
    return str(value)
