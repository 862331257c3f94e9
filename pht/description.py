"""A station's answer to a describe request: what a requester may use, never data.

A station answers a signed describe request (:class:`pht.signing.DescribeRequestBody`)
with a :class:`StationDescription`: per dataset the requester may use for the
purpose it named, the columns the policy allows that the dataset holds (name, roles,
type from the file's schema), the disclosure classes, trains and version ranges, the
minimum cell size, whether station names are shown, the review mode, the disclosure
rules and the requester's own budget use. Nothing derived from the values leaves:
no counts, levels, ranges, missing values or rows; a column the policy does not
allow is not mentioned, nor a dataset the requester may not use.

Wire format ``pht.description/1`` (the sealed plaintext)::

    {"type": "pht.description/1", "station": "s1",
     "datasets": [{"id": "melanoma",
                   "columns": [{"name": "os_days", "roles": ["time"],
                                "type": "numeric"}],
                   "disclosure_classes": ["aggregate", "event_table"],
                   "trains": [{"name": "survival.km", "versions": ">=1.0.0,<2.0.0"}],
                   "min_cell_size": 10, "show_station_name": false,
                   "review": "automatic",
                   "rules": {"dominance_share": 0.9, "rounding_base": 1},
                   "budget": {"queries": 50, "period_days": 30, "used": 2},
                   "readable": true}]}

Column types, from the file's schema (Arrow types; a CSV's are inferred on reading):
``integer``, ``numeric`` (floating point), ``binary`` (boolean), ``date`` (date or
timestamp), ``categorical`` (dictionary-encoded), ``text`` (strings) and ``other``
(anything no train kind accepts). :data:`KIND_ACCEPTS` says which types serve each
column kind a train manifest declares, exactly as the station checks it at run time
(:func:`pht.station.base.kind_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pht.errors import ConfigError

DESCRIPTION_TYPE = "pht.description/1"
COLUMN_TYPES = ("integer", "numeric", "binary", "date", "categorical", "text", "other")
KIND_ACCEPTS: Mapping[str, frozenset[str]] = {
    "numeric": frozenset({"integer", "numeric"}),
    "binary": frozenset({"integer", "numeric", "binary"}),
    "date": frozenset({"date", "integer"}),
    "categorical": frozenset({"integer", "numeric", "binary", "categorical", "text"}),
}
"""Column kind of a train parameter -> the column types that may serve as it."""


def accepts(kind: str, column_type: str) -> bool:
    """Whether a column of ``column_type`` may serve as a parameter of ``kind``.

    >>> accepts("numeric", "integer"), accepts("numeric", "text")
    (True, False)
    """
    return column_type in KIND_ACCEPTS.get(kind, frozenset())


@dataclass(frozen=True)
class ColumnDescription:
    """An allowed column: its name, the roles it may serve as, its schema type."""

    name: str
    roles: tuple[str, ...]
    type: str


@dataclass(frozen=True)
class AllowedTrain:
    """A train the policy allows on a dataset, with its version range."""

    name: str
    versions: str


@dataclass(frozen=True)
class BudgetDescription:
    """The dataset's query budget and the units the asking key used this period."""

    queries: int
    period_days: int
    used: int


@dataclass(frozen=True)
class DatasetDescription:
    """What a requester may use on one dataset (see the module docstring)."""

    id: str
    columns: tuple[ColumnDescription, ...]
    disclosure_classes: tuple[str, ...]
    trains: tuple[AllowedTrain, ...]
    min_cell_size: int
    show_station_name: bool
    review: str
    rules: Mapping[str, float | int]
    budget: BudgetDescription | None
    readable: bool = True
    """False when the station could not read the file's schema (no columns then)."""

    def column(self, name: str) -> ColumnDescription | None:
        """The allowed column ``name``, or None."""
        for column in self.columns:
            if column.name == name:
                return column
        return None

    def with_role(self, role: str) -> list[str]:
        """Names of the allowed columns that may serve as ``role``."""
        return [c.name for c in self.columns if role in c.roles]


@dataclass(frozen=True)
class StationDescription:
    """A station's whole answer to one describe request."""

    station: str
    datasets: tuple[DatasetDescription, ...]
    type: str = DESCRIPTION_TYPE

    def dataset(self, dataset_id: str) -> DatasetDescription | None:
        """The description of ``dataset_id``, or None (not usable, or not held)."""
        for dataset in self.datasets:
            if dataset.id == dataset_id:
                return dataset
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready message (lists for tuples)."""
        data = asdict(self)
        for dataset in data["datasets"]:
            dataset["rules"] = dict(dataset["rules"])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> StationDescription:
        """Parse an opened answer strictly; a :class:`ConfigError` names the field."""
        what = "station description"
        if isinstance(data, dict):  # the station's random salt: not part of the answer
            data = {k: v for k, v in data.items() if k != "salt"}
        m = _object(data, what, {"type", "station", "datasets"})
        if m["type"] != DESCRIPTION_TYPE:
            raise ConfigError(
                f"{what} field 'type' is not {DESCRIPTION_TYPE!r}; upgrade pht on "
                "both sides"
            )
        return cls(
            station=_str(m, "station", what),
            datasets=tuple(_dataset(item) for item in _list(m, "datasets", what, dict)),
        )


_DATASET_KEYS = {
    "id",
    "columns",
    "disclosure_classes",
    "trains",
    "min_cell_size",
    "show_station_name",
    "review",
    "rules",
    "budget",
    "readable",
}


def _dataset(data: Any) -> DatasetDescription:
    what = "station description dataset"
    m = _object(data, what, _DATASET_KEYS)
    columns = []
    for item in _list(m, "columns", what, dict):
        c = _object(item, f"{what} column", {"name", "roles", "type"})
        column_type = _str(c, "type", f"{what} column")
        if column_type not in COLUMN_TYPES:
            raise ConfigError(
                f"{what} column field 'type' must be one of {', '.join(COLUMN_TYPES)}"
            )
        columns.append(
            ColumnDescription(
                name=_str(c, "name", f"{what} column"),
                roles=tuple(_list(c, "roles", f"{what} column", str)),
                type=column_type,
            )
        )
    trains = []
    for item in _list(m, "trains", what, dict):
        t = _object(item, f"{what} train", {"name", "versions"})
        trains.append(
            AllowedTrain(
                _str(t, "name", f"{what} train"), _str(t, "versions", f"{what} train")
            )
        )
    rules = m["rules"]
    if not isinstance(rules, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in rules.items()
    ):
        raise ConfigError(f"{what} field 'rules' must map names to numbers")
    budget = None
    if m["budget"] is not None:
        b = _object(m["budget"], f"{what} budget", {"queries", "period_days", "used"})
        budget = BudgetDescription(
            queries=_int(b, "queries", f"{what} budget"),
            period_days=_int(b, "period_days", f"{what} budget"),
            used=_int(b, "used", f"{what} budget"),
        )
    for key in ("show_station_name", "readable"):
        if not isinstance(m[key], bool):
            raise ConfigError(f"{what} field '{key}' must be true or false")
    return DatasetDescription(
        id=_str(m, "id", what),
        columns=tuple(columns),
        disclosure_classes=tuple(_list(m, "disclosure_classes", what, str)),
        trains=tuple(trains),
        min_cell_size=_int(m, "min_cell_size", what),
        show_station_name=m["show_station_name"],
        review=_str(m, "review", what),
        rules=dict(rules),
        budget=budget,
        readable=m["readable"],
    )


def _object(data: Any, what: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != keys:
        raise ConfigError(
            f"{what} must be an object with exactly the keys {', '.join(sorted(keys))}"
        )
    return data


def _str(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.isprintable() or len(value) > 200:
        raise ConfigError(f"{what} field '{key}' must be a printable string")
    return value


def _int(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{what} field '{key}' must be a whole number >= 0")
    return value


def _list(data: Mapping[str, Any], key: str, what: str, kind: type) -> list[Any]:
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise ConfigError(f"{what} field '{key}' must be a list")
    if kind is str:
        for v in value:
            if not v.isprintable() or len(v) > 200:
                raise ConfigError(f"{what} field '{key}' holds a non-printable name")
    return value
