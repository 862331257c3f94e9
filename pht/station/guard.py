"""The output guard: nothing leaves a station unless it fits the schema and the rules.

Every output must fit the train's declared schema and the disclosure rules.

A train's manifest declares the schema of each output (``output.schema`` for a
single-round train, ``output.rounds.<op>`` per round of an iterative one)::

    n:        {type: count}                      # integer; 0 or >= k, else refused
    excluded: {type: count, nullable: true}
    groups:   {type: map, max_keys: 50, values: {type: object, fields: {...}}}
    time:     {type: array, items: {type: number, decimals: 6}, max_length: 200000}
    s0:       {type: float64_array, max_elements: 2000000}
    kind:     {type: string, choices: [numeric, categorical]}

Checks, in order: the raw size cap, JSON that is strictly JSON (NaN and Infinity are
refused, nesting depth is capped), then the schema: declared keys only, every required
key present, numbers only where declared (finite; integers where declared; at most
``decimals`` decimal places where declared, so nothing hides in the decimals), strings
only from declared choices or as map keys that look like labels, array lengths capped,
and counts under the minimum cell size refused. The first problem is returned as a
reason; the station refuses and logs it.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pht.errors import DisclosureError

MAX_LABEL_LENGTH = 64
"""The most characters a label (a map key or a ``label`` input) may have."""
_NOT_IN_LABELS = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
MAX_DEPTH = 8
DEFAULT_MAX_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class GuardLimits:
    """Limits the station applies on top of the schema, from its own data.

    ``max_count`` bounds every integer (the number of patients in the population the
    train could see: no count, index or packed identifier can exceed it); ``labels``
    are the values the station itself observed with at least ``min_cell_size`` rows
    in the columns the request uses (the only strings a ``keys: labels`` map or a
    ``label`` input may carry); ``columns`` the request's columns; ``grid`` the time
    boundaries the station chose for this request.
    """

    min_cell_size: int
    max_bytes: int = DEFAULT_MAX_BYTES
    max_count: int | None = None
    labels: frozenset[str] = frozenset()
    columns: frozenset[str] = frozenset()
    grid: frozenset[float] = frozenset()
    stations: frozenset[str] = frozenset()
    """The stations the request addressed (``station`` inputs only)."""


def is_label(value: Any) -> bool:
    """Whether ``value`` may be a label: a real name, never a carrier of hidden data.

    Accepted: 1 to :data:`MAX_LABEL_LENGTH` characters of letters, marks, digits,
    punctuation, symbols and the plain space (``'s-Hertogenbosch``, ``Sint Antonius
    Ziekenhuis, Nieuwegein``, ``Hôpital Erasme``), in Unicode NFC. Refused: control
    and format characters (zero-width, bidi overrides), surrogates, private-use and
    unassigned code points, line and paragraph separators, any space but U+0020, a
    leading or trailing space, and text that is not NFC (the same name in two
    encodings would be two labels).
    """
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_LABEL_LENGTH:
        return False
    if value != value.strip(" ") or not unicodedata.is_normalized("NFC", value):
        return False
    for char in value:
        category = unicodedata.category(char)
        if category in _NOT_IN_LABELS or (category == "Zs" and char != " "):
            return False
    return True


def _reject_constant(name: str) -> Any:
    raise DisclosureError(f"output contains {name}, which is not a finite number")


def parse_strict(raw: bytes, limits: GuardLimits) -> Any:
    """Parse a train's JSON under the size cap, refusing NaN/Infinity and deep nesting."""
    if len(raw) > limits.max_bytes:
        raise DisclosureError(f"output is over the cap of {limits.max_bytes} bytes")
    # json's C scanner guards its recursion (RecursionError, caught below); the
    # schema walk then caps the depth of what was parsed
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, DisclosureError):
            raise
        if isinstance(exc, RecursionError):
            raise DisclosureError(
                f"output is nested deeper than {MAX_DEPTH} levels"
            ) from None
        raise DisclosureError("output is not valid JSON") from None


class Guard:
    """Checks one output value against one schema node."""

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits

    def check(
        self,
        value: Any,
        schema: Mapping[str, Any],
        where: str = "output",
        depth: int = 0,
    ) -> None:  # noqa: C901
        """Raise :class:`DisclosureError` at the first problem."""
        if depth > MAX_DEPTH:
            raise DisclosureError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        kind = schema["type"]
        if value is None:
            if schema.get("nullable"):
                return
            raise DisclosureError(f"{where}: missing value")
        if kind in ("count", "cell", "integer"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise DisclosureError(f"{where}: expected an integer")
            bound = self.limits.max_count
            if bound is not None and abs(value) > max(bound, 1000):
                raise DisclosureError(f"{where}: an integer larger than the population")
            if kind in ("count", "cell"):
                if value < 0:
                    raise DisclosureError(f"{where}: a count cannot be negative")
                if bound is not None and value > bound:
                    raise DisclosureError(
                        f"{where}: a count larger than the population"
                    )
                if (kind == "cell" or value > 0) and value < self.limits.min_cell_size:
                    raise DisclosureError(
                        f"{where}: a cell under the minimum cell size may not leave "
                        "the station"
                    )
            self._range(value, schema, where)
            return
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DisclosureError(f"{where}: expected a number")
            if isinstance(value, int) and abs(value) > 2**53:
                raise DisclosureError(f"{where}: an integer beyond exact doubles")
            if not math.isfinite(value):
                raise DisclosureError(f"{where}: not a finite number")
            decimals = schema.get("decimals")
            if decimals is not None and round(value, decimals) != value:
                raise DisclosureError(f"{where}: more than {decimals} decimals")
            if schema.get("grid") and float(value) not in self.limits.grid:
                raise DisclosureError(f"{where}: a time off the station's grid")
            self._range(value, schema, where)
            return
        if kind in ("label", "column"):
            allowed = self.limits.labels if kind == "label" else self.limits.columns
            if (
                not isinstance(value, str)
                or value not in allowed
                or (kind == "label" and not is_label(value))
            ):
                raise DisclosureError(f"{where}: not a {kind} this station knows")
            return
        if kind == "evidence":
            return  # checked by the session's path rule
        if kind == "station":
            if not isinstance(value, str) or value not in self.limits.stations:
                raise DisclosureError(f"{where}: not a station the request addressed")
            return
        if kind == "boolean":
            if not isinstance(value, bool):
                raise DisclosureError(f"{where}: expected true or false")
            return
        if kind == "string":
            if value not in schema.get("choices", ()):
                raise DisclosureError(f"{where}: string outside the declared choices")
            return
        if kind == "array":
            if not isinstance(value, list):
                raise DisclosureError(f"{where}: expected an array")
            if len(value) > schema["max_length"]:
                raise DisclosureError(
                    f"{where}: more elements than the cap of {schema['max_length']}"
                )
            for i, item in enumerate(value):
                self.check(item, schema["items"], f"{where}[{i}]", depth + 1)
            return
        if kind == "float64_array":
            self._float64_array(value, schema, where)
            return
        if kind == "object":
            self._object(value, schema, where, depth)
            return
        if kind == "map":
            if not isinstance(value, dict):
                raise DisclosureError(f"{where}: expected a mapping")
            if len(value) > schema["max_keys"]:
                raise DisclosureError(
                    f"{where}: more than {schema['max_keys']} entries"
                )
            known = (
                self.limits.columns
                if schema.get("keys") == "columns"
                else self.limits.labels
            )
            for key, item in value.items():
                if not is_label(key) or key not in known:
                    raise DisclosureError(
                        f"{where}: key is not a label this station observed with at "
                        "least the minimum cell size"
                    )
                self.check(item, schema["values"], f"{where}.<label>", depth + 1)
            return
        raise DisclosureError(
            f"{where}: the manifest declares an unknown type {kind!r}"
        )

    @staticmethod
    def _range(value: float, schema: Mapping[str, Any], where: str) -> None:
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise DisclosureError(f"{where}: outside the declared range")

    def _object(
        self, value: Any, schema: Mapping[str, Any], where: str, depth: int
    ) -> None:
        if not isinstance(value, dict):
            raise DisclosureError(f"{where}: expected an object")
        fields: Mapping[str, Any] = schema["fields"]
        extra = [k for k in value if k not in fields]
        if extra:
            raise DisclosureError(f"{where}: undeclared key(s)")
        for key, sub in fields.items():
            if key not in value:
                if sub.get("optional") or sub.get("nullable"):
                    continue
                raise DisclosureError(f"{where}: declared key '{key}' is missing")
            self.check(value[key], sub, f"{where}.{key}", depth + 1)

    def _float64_array(self, value: Any, schema: Mapping[str, Any], where: str) -> None:
        from pht.errors import ConfigError
        from pht.wire import decode_array

        try:
            array = decode_array(value)
        except ConfigError:
            raise DisclosureError(f"{where}: not an encoded float64 array") from None
        if array.size > schema["max_elements"]:
            raise DisclosureError(
                f"{where}: more elements than the cap of {schema['max_elements']}"
            )
        import numpy as np

        if not np.all(np.isfinite(array)):
            raise DisclosureError(f"{where}: contains NaN or infinite values")
        cap = schema.get("max_abs")
        if cap is not None and array.size and float(np.max(np.abs(array))) > cap:
            raise DisclosureError(f"{where}: values outside the declared range")


def guard_output(
    raw: bytes, schema: Mapping[str, Any], limits: GuardLimits
) -> dict[str, Any]:
    """Parse and check a train output; return it or raise :class:`DisclosureError`."""
    value = parse_strict(raw, limits)
    Guard(limits).check(value, schema)
    return value  # type: ignore[no-any-return]
