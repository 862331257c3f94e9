"""Typed, versioned messages between orchestrator, station and train.

Station and orchestrator import each other's internals never; they talk only through
these types, as they would across a network. Every message carries ``wire`` (the format
version) and is validated on decode: an unknown version, a missing field or a field of
the wrong type raises :class:`~pht.errors.ConfigError` instead of being guessed at.

Messages
--------
:class:`TrainRef`    ``name@version`` of a train
(requests are signed envelopes: :mod:`pht.signing`)
:class:`TrainInput`  station -> train (input file): the request plus the station's limits
:class:`TrainOutput` train -> station (output file): status and the aggregate
:class:`Reply`       station -> orchestrator: status, reason, the sealed aggregate and
                     the station's signed receipt
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pht.errors import ConfigError

WIRE_VERSION = "pht.wire/1"
Status = Literal["ok", "refused", "error", "pending"]
STATUSES: tuple[Status, ...] = ("ok", "refused", "error", "pending")

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True, order=True)
class TrainRef:
    """A train's name and optional exact version (``survival.km@1.0.0``)."""

    name: str
    version: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"train name '{self.name}' is not valid; use dotted lower-case names "
                "such as 'survival.km'"
            )
        if self.version is not None and not _VERSION.match(self.version):
            raise ConfigError(
                f"train version '{self.version}' is not valid; use MAJOR.MINOR.PATCH"
            )

    @classmethod
    def parse(cls, text: str) -> TrainRef:
        """Parse ``name`` or ``name@version``."""
        name, _, version = text.strip().partition("@")
        return cls(name, version or None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise ConfigError(f"message field '{key}' is missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ConfigError(f"message field '{key}' has the wrong type")
    return value


def _check_version(data: Mapping[str, Any]) -> None:
    if data.get("wire") != WIRE_VERSION:
        raise ConfigError(
            f"message format {data.get('wire')!r} is not supported; expected "
            f"{WIRE_VERSION!r} (upgrade pht on both sides)"
        )


def _decode(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object")
    _check_version(data)
    return data


def _encode(message: Any) -> str:
    body = asdict(message)
    body["wire"] = WIRE_VERSION
    return json.dumps(body, sort_keys=True, allow_nan=False)


def _grid(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError("message field 'grid' must be a list of numbers")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class TrainInput:
    """Station -> train: what to compute, on which columns, under which limits."""

    request_id: str
    train: str
    parameters: Mapping[str, Any]
    columns: tuple[str, ...]
    min_count: int
    grid: tuple[float, ...] | None = None
    """The station's time boundaries for per-time outputs (times are released as
    the smallest boundary at or above them), or None."""
    rules: Mapping[str, Any] = field(default_factory=dict)
    """The station's disclosure rules beyond ``min_count`` (``dominance_share``,
    ``rounding_base``): a train applies them exactly as the station will."""

    def to_json(self) -> str:
        """Canonical JSON."""
        return _encode(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> TrainInput:
        """Decode and validate."""
        data = _decode(text, "train input")
        columns = _require(data, "columns", list)
        if not all(isinstance(c, str) for c in columns):
            raise ConfigError("message field 'columns' must be a list of strings")
        return cls(
            request_id=_require(data, "request_id", str),
            train=_require(data, "train", str),
            parameters=_require(data, "parameters", dict),
            columns=tuple(columns),
            min_count=_require(data, "min_count", int),
            grid=_grid(data.get("grid")),
            rules=_require(data, "rules", dict) if "rules" in data else {},
        )


@dataclass(frozen=True)
class TrainOutput:
    """Train -> station: the aggregate, or why there is none."""

    status: Status
    reason: str | None = None
    output: Mapping[str, Any] | None = None

    def to_json(self) -> str:
        """Canonical JSON (NaN and Inf are not JSON and are refused)."""
        return _encode(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> TrainOutput:
        """Decode and validate."""
        data = _decode(text, "train output")
        status = _require(data, "status", str)
        if status not in STATUSES:
            raise ConfigError(
                f"train output status {status!r} is not one of {STATUSES}"
            )
        reason = data.get("reason")
        output = data.get("output")
        if reason is not None and not isinstance(reason, str):
            raise ConfigError("train output 'reason' must be a string")
        if output is not None and not isinstance(output, dict):
            raise ConfigError("train output 'output' must be an object")
        if status == "ok" and output is None:
            raise ConfigError("train output has status ok but no output")
        return cls(status=status, reason=reason, output=output)


@dataclass(frozen=True)
class Reply:
    """Station -> orchestrator: the outcome of one request at one station."""

    request_id: str
    station: str
    status: Status
    reason: str | None = None
    output: Mapping[str, Any] | None = None
    disclosure_class: str | None = None
    executor: str | None = None
    train_digest: str | None = None
    elapsed_seconds: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    sealed: Mapping[str, Any] | None = None
    receipt: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether the station released an aggregate."""
        return self.status == "ok"

    def to_json(self) -> str:
        """Canonical JSON."""
        return _encode(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> Reply:
        """Decode and validate."""
        data = _decode(text, "reply")
        status = _require(data, "status", str)
        if status not in STATUSES:
            raise ConfigError(f"reply status {status!r} is not one of {STATUSES}")
        return cls(
            request_id=_require(data, "request_id", str),
            station=_require(data, "station", str),
            status=status,
            reason=data.get("reason"),
            output=data.get("output"),
            disclosure_class=data.get("disclosure_class"),
            executor=data.get("executor"),
            train_digest=data.get("train_digest"),
            elapsed_seconds=data.get("elapsed_seconds"),
            details=data.get("details") or {},
            sealed=data.get("sealed"),
            receipt=data.get("receipt"),
        )


def encode_array(values: Any) -> dict[str, Any]:
    """A float64 array as ``{"dtype", "shape", "base64"}`` (exact, compact, fast).

    Large numeric outputs (risk-set sums) travel this way instead of as JSON lists:
    the bytes are the little-endian IEEE 754 doubles, so nothing is rounded.
    """
    import base64

    import numpy as np

    array = np.ascontiguousarray(values, dtype="<f8")
    return {
        "dtype": "float64",
        "shape": list(array.shape),
        "base64": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def decode_array(obj: Any, shape: tuple[int, ...] | None = None) -> Any:
    """Inverse of :func:`encode_array`, checking dtype, shape and length."""
    import binascii

    import numpy as np

    if not isinstance(obj, dict) or obj.get("dtype") != "float64":
        raise ConfigError("expected an encoded float64 array")
    declared = obj.get("shape")
    if not isinstance(declared, list) or not all(
        isinstance(d, int) and d >= 0 for d in declared
    ):
        raise ConfigError("encoded array has no valid shape")
    if shape is not None and tuple(declared) != tuple(shape):
        raise ConfigError(
            f"encoded array has shape {tuple(declared)}, expected {tuple(shape)}"
        )
    try:
        raw = binascii.a2b_base64(obj.get("base64", ""), strict_mode=True)
    except (binascii.Error, ValueError):
        raise ConfigError("encoded array is not valid base64") from None
    count = int(np.prod(declared)) if declared else 1
    if len(raw) != 8 * count:
        raise ConfigError(
            f"encoded array has {len(raw)} bytes, expected {8 * count} for its shape"
        )
    return np.frombuffer(raw, dtype="<f8").reshape(declared).astype(np.float64)
