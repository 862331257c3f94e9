"""Group and category labels: one canonical text per value, agreed across stations.

A label travels as text (a JSON key), but the value behind it is a number, a boolean
or a text, and the same value must give the same label at every station whatever
the column's storage type: a column with a missing value is float64 where the same
column without one is int64, so ``str(value)`` would make ``1`` and ``1.0`` two
groups. Here:

* numbers are labelled by their value: an integral number as an integer (``1`` for
  ``1``, ``1.0``, ``np.int8(1)``; ``0`` for ``-0.0``), any other by its shortest
  round-trip decimal (``2.5``);
* booleans as ``True`` / ``False``; texts as they are, in Unicode NFC (a name stored
  with decomposed accents is the same level as its composed form);
* a column's *level type* (``number``, ``boolean`` or ``text``) travels with its
  labels, so stations whose columns hold different types for the same name are an
  error (:func:`agree_level_type`), never a silent mix of levels;
* levels are ordered as R orders the levels of ``factor()``: numbers by value
  (``2`` before ``10``), texts and booleans by their text.

Example
-------
>>> import numpy as np
>>> labels(np.array([1.0, 2.0, 10.0]))[0].tolist()
['1', '2', '10']
>>> sort_levels(["10", "2", "1"], "number")
['1', '2', '10']
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pht.errors import DataError

LevelType = Literal["number", "boolean", "text"]
LEVEL_TYPES: tuple[LevelType, ...] = ("number", "boolean", "text")


def _type_of(value: Any) -> LevelType:
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | float | np.integer | np.floating):
        return "number"
    return "text"


def label_of(value: Any) -> str:
    """The canonical label of one (non-missing) value.

    >>> [label_of(v) for v in (1, 1.0, -0.0, 2.5, True, "IIIB")]
    ['1', '1', '0', '2.5', 'True', 'IIIB']
    """
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isfinite(number) and number == math.floor(number):
            return str(int(number))
        return repr(number)
    # one text, one label: the same name stored composed or decomposed is one level
    return unicodedata.normalize("NFC", str(value))


def labels(values: npt.ArrayLike) -> tuple[npt.NDArray[np.object_], LevelType]:
    """Canonical labels of non-missing ``values`` (object array) and their level type.

    Each distinct value is labelled once. Raises :class:`DataError` when one column
    mixes numbers, booleans and texts.
    """
    array = np.asarray(values)
    if array.dtype.kind == "b":
        kind: LevelType = "boolean"
    elif array.dtype.kind in "iuf":
        kind = "number"
    else:
        kind = "text"
    if array.size == 0:
        return np.empty(0, dtype=object), kind
    if array.dtype.kind in "biuf":
        unique, inverse = np.unique(array, return_inverse=True)
        mapped = np.asarray([label_of(v) for v in unique.tolist()], dtype=object)
        return mapped[inverse.reshape(array.shape)], kind
    flat = array.ravel().tolist()
    if set(map(type, flat)) == {str}:
        # texts only (the usual object column): no two types can collide, so label
        # each distinct text once and map the rows through a dict, in C
        texts = {v: label_of(v) for v in dict.fromkeys(flat)}
        out = np.empty(len(flat), dtype=object)
        out[:] = list(map(texts.__getitem__, flat))
        return out.reshape(array.shape), "text"
    # objects: one label per distinct (type, value); 1 and True must not share one
    cache: dict[tuple[type, Any], str] = {}
    kinds: set[LevelType] = set()
    out = np.empty(array.shape, dtype=object)
    for i, value in enumerate(array.tolist()):
        key = (type(value), value)
        label = cache.get(key)
        if label is None:
            kinds.add(_type_of(value))
            label = cache[key] = label_of(value)
        out[i] = label
    if len(kinds) > 1:
        raise DataError(
            "a column mixes " + " and ".join(sorted(kinds)) + " values; store one type "
            "per column"
        )
    return out, (kinds.pop() if kinds else kind)


def level_type(values: npt.ArrayLike) -> LevelType:
    """The level type of a column's (non-missing) values."""
    return labels(values)[1]


def _number(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None


def sort_levels(levels: Iterable[str], kind: LevelType | None) -> list[str]:
    """Levels in R's ``factor()`` order: numbers by value, anything else as text."""
    unique = sorted(set(levels))
    if kind == "number":
        numbers = [_number(lv) for lv in unique]
        if all(n is not None for n in numbers):
            return [lv for _, lv in sorted(zip(numbers, unique, strict=True))]
    return unique


def canonical_level(value: Any, kind: LevelType | None) -> str:
    """A level an analyst names (``reference``, ``reference_group``) as its label.

    A number for a number column may be written as text (``"1.0"``) or a number
    (``1``, ``1.0``): all give the label ``1``.
    """
    if kind == "number" and isinstance(value, str):
        number = _number(value.strip())
        if number is not None:
            return label_of(number)
    return label_of(value)


def agree_level_type(
    column: str, types: Mapping[str, LevelType | None], role: str = "column"
) -> LevelType | None:
    """The one level type of ``column`` at every station (None: none reported).

    Raises :class:`DataError` naming the column, which station holds which type, and
    the fix.
    """
    known = {s: t for s, t in types.items() if t is not None}
    found = set(known.values())
    if len(found) <= 1:
        return found.pop() if found else None
    where = "; ".join(
        f"{kind} at {', '.join(sorted(s for s, t in known.items() if t == kind))}"
        for kind in LEVEL_TYPES
        if kind in found
    )
    raise DataError(
        f"{role} '{column}' holds different types at different stations ({where}); "
        "store it with one type (numbers or text) at every station"
    )
