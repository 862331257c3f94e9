"""A station's AVG (GDPR) policy: who may ask what, for which purpose, on which data.

Parsed strictly from YAML (unknown keys are errors with file and line) into frozen
objects. Policies fail closed: a dataset without an entry is refused, empty lists are
invalid rather than permissive, and anything broader than a list is spelled out
(``signers: [keyring]`` = any methodologist key in the station's keyring).

::

    version: 1
    datasets:
      melanoma:                          # or "*": every dataset without its own entry
        purposes: [package-management/reassessment]
        requesters:
          - {organisation: ZIN, roles: [analyst]}
        trains:
          - {name: survival.km, versions: ">=1.0.0,<2.0.0", signers: [keyring]}
        columns:                         # column: the roles it may serve as
          os_days: [time]
          death: [event]
          regimen: [group, covariate]
        time_grid: {os_days: 7}          # lattice step of released per-time tables
        disclosure_classes: [aggregate, model, event_table]
        min_cell_size: 10
        budget: {queries: 50, period_days: 30, organisation_queries: 200,
                 rounds_per_query: 20}
        max_rounds: 60                   # evaluations an iterative session may ask
        show_station_name: false
        station_estimates: false         # true: a Cox fit may also release this
                                         # station's own estimates (model checks)
        review: automatic                # or manual: outputs wait for a person
        unsafe_process_sandbox: false    # true: run under `executor: process` even
                                         # where the machine lacks a sandbox control

``columns`` may also be a plain list: every listed column may then serve in every role
(less strict; the station's grid and cell rules still apply).

Every query on a dataset analyses one fixed population: the rows complete on every
allowed column the dataset has, so no request can change who is analysed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pht import yamlcfg
from pht.manifest import COLUMN_ROLES, DISCLOSURE_CLASSES

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
"""The documented strict default shipped in ``policies/default.yaml``."""

ANY_DATASET = "*"
KEYRING_SIGNERS = "keyring"
ROLES = COLUMN_ROLES
PLAIN_ROLES = frozenset(r for r in ROLES if r != "site")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_COMPARATOR = re.compile(r"^(>=|<=|>|<|==)?\s*(\d+\.\d+\.\d+)$")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


@dataclass(frozen=True)
class VersionRange:
    """A comma-separated list of comparators such as ``>=1.0.0,<2.0.0``."""

    text: str
    comparators: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def parse(cls, text: str) -> VersionRange | None:
        """Parse the range, or None when it is malformed."""
        parts = []
        for raw in text.split(","):
            match = _COMPARATOR.match(raw.strip())
            if not match:
                return None
            parts.append((match.group(1) or "==", _version_tuple(match.group(2))))
        return cls(text, tuple(parts))

    def contains(self, version: str) -> bool:
        """Whether ``version`` (MAJOR.MINOR.PATCH) lies in the range."""
        if not _VERSION.match(version):
            return False
        v = _version_tuple(version)
        checks = {
            ">=": v.__ge__,
            "<=": v.__le__,
            ">": v.__gt__,
            "<": v.__lt__,
            "==": v.__eq__,
        }
        return all(checks[op](bound) for op, bound in self.comparators)


@dataclass(frozen=True)
class TrainRule:
    """A train a dataset may be analysed with."""

    name: str
    versions: VersionRange
    signers: tuple[str, ...]

    def signer_allowed(self, key_id: str, name: str) -> bool:
        """Whether this rule accepts a manifest signed by ``key_id`` (named ``name``)."""
        return (
            KEYRING_SIGNERS in self.signers
            or key_id in self.signers
            or (name in self.signers)
        )


@dataclass(frozen=True)
class RequesterRule:
    """An organisation and the user roles within it that may send requests."""

    organisation: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Budget:
    """Query units per key and per organisation per ``period_days``.

    An admitted request costs one unit; an iterative session costs one more unit per
    ``rounds_per_query`` evaluation rounds.
    """

    queries: int
    period_days: int
    organisation_queries: int
    rounds_per_query: int = 20


@dataclass(frozen=True)
class DatasetPolicy:
    """What the station allows on one dataset."""

    purposes: frozenset[str]
    requesters: tuple[RequesterRule, ...]
    trains: tuple[TrainRule, ...]
    columns: frozenset[str]
    disclosure_classes: frozenset[str]
    min_cell_size: int
    budget: Budget | None
    show_station_name: bool
    review: str
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    time_grid: Mapping[str, float] = field(default_factory=dict)
    max_rounds: int = 60
    unsafe_process_sandbox: bool = False
    dominance_share: float = 0.9
    """(n=1, k) dominance rule: no released cell where one patient contributes more
    than this share of a measure's total."""
    rounding_base: int = 1
    """Released counts and sums are rounded to a multiple of this (1: exact)."""
    station_estimates: bool = False
    """Whether a Cox fit's model checks may release this station's own fit
    (coefficients and covariance on its rows alone); false when absent."""

    @property
    def rules(self) -> dict[str, Any]:
        """The disclosure rules beyond ``min_cell_size`` a train must apply."""
        return {
            "dominance_share": self.dominance_share,
            "rounding_base": self.rounding_base,
        }

    def roles_of(self, column: str) -> frozenset[str]:
        """The roles ``column`` may serve as.

        A plain column list gives every role except ``site``: a care-site column must
        be named as one in a mapping, and then serves as nothing else (its values are
        names a policy hides unless ``show_station_name``).
        """
        if column not in self.columns:
            return frozenset()
        return self.roles.get(column, PLAIN_ROLES)

    def role_refusal(self, used: Sequence[tuple[str, str]]) -> str | None:
        """Why columns may not serve in the roles a request uses, or None."""
        bad = [c for c, role in used if role not in self.roles_of(c)]
        if bad:
            return "a column may not serve in the role the request gives it"
        return None

    def columns_with_role(self, role: str) -> list[str]:
        """The allowed columns that may serve as ``role``."""
        return sorted(c for c in self.columns if role in self.roles_of(c))

    def grid_step(self, column: str) -> float:
        """The lattice step of released per-time tables for a time column."""
        return float(self.time_grid.get(column, 1.0))

    def requester_refusal(self, organisation: str, role: str) -> str | None:
        """Why this requester is refused, or None."""
        for rule in self.requesters:
            if rule.organisation == organisation and role in rule.roles:
                return None
        return (
            f"requester organisation '{organisation}' with role '{role}' is not "
            "allowed by this station's policy"
        )

    def train_refusal(
        self, name: str, version: str, key_id: str, signer: str
    ) -> str | None:
        """Why this train (and its signer) is refused, or None."""
        rules = [r for r in self.trains if r.name == name]
        if not rules:
            return f"train '{name}' is not allowed on this dataset by the policy"
        if not any(r.versions.contains(version) for r in rules):
            ranges = ", ".join(r.versions.text for r in rules)
            return f"train {name}@{version} is outside the allowed versions ({ranges})"
        if not any(
            r.versions.contains(version) and r.signer_allowed(key_id, signer)
            for r in rules
        ):
            return f"train {name}@{version} signer {signer} ({key_id}) is not allowed"
        return None

    def column_refusal(self, columns: Sequence[str]) -> str | None:
        """Why these columns may not be used, or None."""
        bad = [c for c in columns if c not in self.columns]
        if bad:
            return f"column(s) {', '.join(bad)} may not be analysed under the policy"
        return None

    def class_refusal(self, disclosure_class: str) -> str | None:
        """Why this disclosure class may not leave, or None."""
        if disclosure_class not in self.disclosure_classes:
            allowed = ", ".join(sorted(self.disclosure_classes))
            return (
                f"disclosure class '{disclosure_class}' is not allowed by this "
                f"station's policy (allowed: {allowed})"
            )
        return None

    def purpose_refusal(self, purpose: str) -> str | None:
        """Why this purpose is refused, or None."""
        if purpose not in self.purposes:
            return (
                f"purpose '{purpose}' is not allowed by this station's policy "
                f"(allowed: {', '.join(sorted(self.purposes))})"
            )
        return None


@dataclass(frozen=True)
class Policy:
    """A station's policy: one entry per dataset (``*`` for the rest)."""

    source: Path
    datasets: Mapping[str, DatasetPolicy]

    def for_dataset(self, dataset: str) -> DatasetPolicy | None:
        """The entry governing ``dataset``, or None (refuse)."""
        return self.datasets.get(dataset) or self.datasets.get(ANY_DATASET)


_DATASET_KEYS = {
    "purposes",
    "requesters",
    "trains",
    "columns",
    "disclosure_classes",
    "min_cell_size",
    "budget",
    "show_station_name",
    "review",
    "time_grid",
    "max_rounds",
    "unsafe_process_sandbox",
    "dominance_share",
    "rounding_base",
    "station_estimates",
}


def _nonempty(node: yamlcfg.Node, what: str) -> list[str]:
    values = node.as_str_list()
    if not values:
        raise node.error(f"list at least one {what} (an empty list would fail closed)")
    return values


def _dataset(node: yamlcfg.Node) -> DatasetPolicy:
    m = node.mapping(_DATASET_KEYS)
    purposes = _nonempty(m.require("purposes"), "purpose")
    requesters = []
    for item in m.require("requesters").items():
        r = item.mapping({"organisation", "roles"})
        requesters.append(
            RequesterRule(
                r.require("organisation").as_str(),
                tuple(_nonempty(r.require("roles"), "role")),
            )
        )
    if not requesters:
        raise m.require("requesters").error("list at least one requester")
    trains = []
    for item in m.require("trains").items():
        t = item.mapping({"name", "versions", "signers"})
        versions_node = t.require("versions")
        versions = VersionRange.parse(versions_node.as_str())
        if versions is None:
            raise versions_node.error(
                "expected a version range such as '>=1.0.0,<2.0.0'"
            )
        trains.append(
            TrainRule(
                t.require("name").as_str(),
                versions,
                tuple(_nonempty(t.require("signers"), "signer")),
            )
        )
    if not trains:
        raise m.require("trains").error("list at least one train")
    classes_node = m.require("disclosure_classes")
    classes = _nonempty(classes_node, "disclosure class")
    for item, name in zip(classes_node.items(), classes, strict=True):
        if name not in DISCLOSURE_CLASSES:
            raise item.error(
                f"unknown disclosure class '{name}'; use {', '.join(DISCLOSURE_CLASSES)}"
            )
    k_node = m.require("min_cell_size")
    k = k_node.as_type(int)
    if k < 1:
        raise k_node.error("must be at least 1 (10 is the recommended default)")
    budget = None
    if m.get("budget") is not None:
        b = m.require("budget").mapping(
            {"queries", "period_days", "organisation_queries", "rounds_per_query"}
        )
        queries = b.require("queries").as_type(int)
        days = b.require("period_days").as_type(int)
        org_node = b.get("organisation_queries")
        org = org_node.as_type(int) if org_node is not None else queries
        rpq_node = b.get("rounds_per_query")
        rpq = rpq_node.as_type(int) if rpq_node is not None else 20
        if min(queries, days, org, rpq) < 1:
            raise m.require("budget").error(
                "queries, period_days, organisation_queries and rounds_per_query "
                "must be >= 1"
            )
        budget = Budget(queries, days, org, rpq)
    columns, roles = _columns(m.require("columns"))
    grid: dict[str, float] = {}
    grid_node = m.get("time_grid")
    if grid_node is not None:
        for column, step_node in grid_node.raw_mapping_nodes():
            step = step_node.as_type((int, float))
            if isinstance(step, bool) or not step > 0:
                raise step_node.error("a time_grid step must be a positive number")
            grid[column] = float(step)
    rounds_node = m.get("max_rounds")
    max_rounds = rounds_node.as_type(int) if rounds_node is not None else 60
    if max_rounds < 1:
        raise rounds_node.error("max_rounds must be >= 1")  # type: ignore[union-attr]
    unsafe_node = m.get("unsafe_process_sandbox")
    dominance_node = m.get("dominance_share")
    dominance = 0.9
    if dominance_node is not None:
        dominance = dominance_node.as_type((int, float))
        if isinstance(dominance, bool) or not 0 < dominance <= 1:
            raise dominance_node.error(
                f"dominance_share {dominance!r} must be in (0, 1]: the largest share "
                "of a cell's total one patient may contribute (0.9 is the default)"
            )
    rounding_node = m.get("rounding_base")
    rounding = 1
    if rounding_node is not None:
        rounding = rounding_node.as_type(int)
        if rounding < 1:
            raise rounding_node.error(
                "rounding_base must be a whole number >= 1 (1: no rounding)"
            )
    show = m.get("show_station_name")
    own = m.get("station_estimates")
    review_node = m.get("review")
    review = review_node.as_str() if review_node else "automatic"
    if review not in ("automatic", "manual"):
        raise review_node.error("review must be 'automatic' or 'manual'")  # type: ignore[union-attr]
    return DatasetPolicy(
        purposes=frozenset(purposes),
        requesters=tuple(requesters),
        trains=tuple(trains),
        columns=frozenset(columns),
        disclosure_classes=frozenset(classes),
        min_cell_size=k,
        budget=budget,
        show_station_name=show.as_type(bool) if show else False,
        review=review,
        roles=roles,
        time_grid=grid,
        max_rounds=max_rounds,
        unsafe_process_sandbox=unsafe_node.as_type(bool) if unsafe_node else False,
        dominance_share=float(dominance),
        rounding_base=rounding,
        station_estimates=own.as_type(bool) if own is not None else False,
    )


def _columns(node: yamlcfg.Node) -> tuple[list[str], dict[str, frozenset[str]]]:
    """``columns``: a list (every role) or a mapping column -> roles."""
    if not isinstance(node._node, yaml.MappingNode):  # noqa: SLF001
        return _nonempty(node, "column"), {}
    roles: dict[str, frozenset[str]] = {}
    for column, roles_node in node.raw_mapping_nodes():
        names = _nonempty(roles_node, "role")
        unknown = [r for r in names if r not in ROLES]
        if unknown:
            raise roles_node.error(f"unknown role; use {', '.join(ROLES)}")
        if "site" in names and len(set(names)) > 1:
            raise roles_node.error(
                f"'{column}' is a care site: give it the role site alone (its values "
                "are names, shown only where show_station_name is true)"
            )
        roles[column] = frozenset(names)
    if not roles:
        raise node.error("list at least one column (an empty list would fail closed)")
    return list(roles), roles


def load_policy(path: Path) -> Policy:
    """Parse and validate a policy file (errors name file, line and key)."""
    root = yamlcfg.load(path).mapping({"version", "datasets"})
    version_node = root.require("version")
    if version_node.as_type(int) != 1:
        raise version_node.error("only policy version 1 is supported")
    datasets = {}
    for name, node in root.require("datasets").raw_mapping_nodes():
        datasets[name] = _dataset(node)
    if not datasets:
        raise root.require("datasets").error("list at least one dataset (fail closed)")
    return Policy(path, datasets)
