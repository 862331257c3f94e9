"""The published-trials CSV of a network meta-analysis, read into contrasts.

:func:`read_trials` reads a CSV at contrast level (``studlab,treat1,treat2,TE,seTE``,
optional ``n1,n2``; log scale for OR, RR, HR, IRR) or arm level
(``studlab,treatment,n,events`` binary, ``studlab,treatment,n,mean,sd`` continuous,
``studlab,treatment,n,events,time`` events over person-time), detects the level by
the header and converts it with the kernels of :mod:`pht.algorithms.pairwise` (R's
``pairwise()``). Every error is one line naming the file, the row (1-based, the
header is row 1) or study, and the fix (:class:`pht.errors.DataError`, or
:class:`pht.errors.ConfigError` for a measure that does not fit the data).

Example
-------
A file ``trials.csv``::

    studlab,treat1,treat2,TE,seTE
    CheckMate 067,nivolumab,ipilimumab,-0.4308,0.1059

read with ``read_trials(Path("trials.csv"), "HR")`` gives one contrast.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pht.algorithms.pairwise import (
    BINARY_COLUMNS,
    BINARY_MEASURES,
    CONTINUOUS_COLUMNS,
    CONTINUOUS_MEASURES,
    CONTRAST_COLUMNS,
    CONTRAST_MEASURES,
    RATE_COLUMNS,
    RATE_MEASURES,
    BinaryArm,
    ContinuousArm,
    Contrast,
    PairwiseResult,
    RateArm,
    binary_problem,
    check_contrasts,
    continuous_problem,
    label_problem,
    pairwise_binary,
    pairwise_continuous,
    pairwise_rates,
    rate_problem,
)
from pht.errors import ConfigError, DataError

__all__ = ["read_trials"]


def read_trials(
    path: str | Path, measure: str, *, incr: float = 0.5, data: bytes | None = None
) -> PairwiseResult:
    """Read a published-trials CSV and convert it to contrasts, as ``pairwise()``.

    The header says the level: ``studlab,treat1,treat2,TE,seTE`` (contrast level,
    optional ``n1,n2``), ``studlab,treatment,n,events`` (binary arms),
    ``studlab,treatment,n,events,time`` (events over person-time, IRR) or
    ``studlab,treatment,n,mean,sd`` (continuous arms). Other columns are ignored.
    Rows of a study need not be adjacent; arms keep their order in the file. The file
    must be UTF-8; labels may not hold control or invisible characters, mix
    alphabets in a word or start like a spreadsheet formula; numbers are plain
    decimals (what R's ``read.csv`` reads too). ``data``, when given, is the file's
    content already read (so a caller can hash what was read).

    Raises
    ------
    DataError
        Any bad row or study, naming the file, the row (the header is row 1) or study
        and the fix.
    ConfigError
        A measure that does not fit the file's data.
    """
    path = Path(path)
    src = str(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(
                f"{src}: cannot read the trials file ({exc.strerror}): check the path"
            ) from None
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{src}: not UTF-8 (byte 0x{data[bom + exc.start]:02x} at offset "
            f"{bom + exc.start}): save it as UTF-8 (in Excel: Save As, 'CSV UTF-8')"
        ) from None
    table = _read_rows(src, io.StringIO(text, newline=""))
    header, rows = table
    cols = set(header)
    if measure not in CONTRAST_MEASURES:
        raise ConfigError(
            f"{src}: measure {measure!r} is unknown: use one of"
            f" {', '.join(CONTRAST_MEASURES)}"
        )
    if cols & {"treat1", "treat2", "TE", "seTE"}:
        _need(src, header, CONTRAST_COLUMNS, "contrast-level")
        return _read_contrasts(src, header, rows, measure)
    if "treatment" not in cols:
        raise DataError(
            f"{src}: the header has neither 'treatment' (arm level:"
            f" {','.join(BINARY_COLUMNS)} or {','.join(CONTINUOUS_COLUMNS)}) nor"
            f" 'treat1' (contrast level: {','.join(CONTRAST_COLUMNS)}): fix the header"
        )
    binary = "events" in cols
    if measure == "HR":
        raise ConfigError(
            f"{src}: measure HR needs contrast-level rows (log hazard ratios:"
            f" {','.join(CONTRAST_COLUMNS)}); this file has arm-level rows"
        )
    if "time" in cols or measure in RATE_MEASURES:
        if measure not in RATE_MEASURES:
            raise ConfigError(
                f"{src}: measure {measure} does not fit arms with events over"
                " person-time (time): use IRR, or drop the time column"
            )
        _need(src, header, RATE_COLUMNS, "rate arm-level")
        arms_r = _group_arms(src, header, rows, _rate_arm)
        return pairwise_rates(arms_r, measure, incr=incr, source=src)
    if binary and measure in CONTINUOUS_MEASURES:
        raise ConfigError(
            f"{src}: measure {measure} needs continuous arms (n, mean, sd); this file"
            " has binary arms (events): use OR, RR or RD"
        )
    if not binary and measure in BINARY_MEASURES:
        if "mean" in cols or "sd" in cols:
            raise ConfigError(
                f"{src}: measure {measure} needs binary arms (n, events); this file"
                " has continuous arms (mean, sd): use MD or SMD"
            )
        _need(src, header, BINARY_COLUMNS, "binary arm-level")
    if binary:
        _need(src, header, BINARY_COLUMNS, "binary arm-level")
        arms_b = _group_arms(src, header, rows, _binary_arm)
        return pairwise_binary(arms_b, measure, incr=incr, source=src)
    _need(src, header, CONTINUOUS_COLUMNS, "continuous arm-level")
    arms_c = _group_arms(src, header, rows, _continuous_arm)
    return pairwise_continuous(arms_c, measure, source=src)


Row = tuple[int, list[str]]
A = TypeVar("A", BinaryArm, ContinuousArm, RateArm)


def _read_rows(src: str, fh: object) -> tuple[list[str], list[Row]]:
    reader = csv.reader(fh)  # type: ignore[arg-type]
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{src}: the file is empty: write a header row") from None
    except csv.Error as exc:
        raise DataError(f"{src}: row 1: not valid CSV ({exc})") from None
    header = [h.strip() for h in header]
    if len(header) == 1:
        for sep, name in ((";", "';'"), ("\t", "tabs")):
            if sep in header[0]:
                raise DataError(
                    f"{src}: the file uses {name} between fields; save it as "
                    "comma-separated (CSV, with a dot as decimal separator), or "
                    f"replace the {name} by commas"
                )
    _check_spelling(src, header)
    dup = sorted({h for h in header if header.count(h) > 1 and h})
    if dup:
        raise DataError(f"{src}: column {dup[0]!r} appears twice in the header")
    rows: list[Row] = []
    line = 1  # the record number a spreadsheet shows: the header is row 1
    try:
        for fields in reader:
            line += 1
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"{src}: row {line}: {len(fields)} fields, the header has"
                    f" {len(header)}: check for a missing or extra comma"
                )
            rows.append((line, [f.strip() for f in fields]))
    except csv.Error as exc:
        raise DataError(f"{src}: row {line + 1}: not valid CSV ({exc})") from None
    if not rows:
        raise DataError(f"{src}: no data rows below the header: add the trials")
    return header, rows


KNOWN_COLUMNS = tuple(
    dict.fromkeys(
        CONTRAST_COLUMNS
        + ("n1", "n2")
        + BINARY_COLUMNS
        + CONTINUOUS_COLUMNS
        + RATE_COLUMNS
    )
)
"""Every column name the reader knows, spelled as it must be."""


def _check_spelling(src: str, header: list[str]) -> None:
    """A header name equal to a known column only when case is ignored is an error.

    >>> _check_spelling("t.csv", ["studlab", "Treat1", "treat2", "TE", "seTE"])
    Traceback (most recent call last):
    ...
    pht.errors.DataError: t.csv: column 'Treat1' must be spelled 'treat1' (column \
names are case-sensitive): rename it in the header
    """
    known = {c.casefold(): c for c in KNOWN_COLUMNS}
    for name in header:
        want = known.get(name.casefold())
        if want is not None and name != want:
            raise DataError(
                f"{src}: column {name!r} must be spelled {want!r} (column names are "
                "case-sensitive): rename it in the header"
            )


def _need(src: str, header: list[str], columns: tuple[str, ...], kind: str) -> None:
    for col in columns:
        if col not in header:
            raise DataError(
                f"{src}: {kind} file has no column {col!r}: the header needs"
                f" {','.join(columns)}"
            )


def _text(src: str, row: Row, header: list[str], col: str) -> str:
    line, fields = row
    value = fields[header.index(col)]
    if not value:
        raise DataError(f"{src}: row {line}: column {col!r} is empty: fill it in")
    return value


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A plain decimal number, as R's ``read.csv`` reads it (no ``1_000``, no other
scripts' digits, no ``inf``/``nan``)."""


def _label(src: str, row: Row, header: list[str], col: str) -> str:
    value = _text(src, row, header, col)
    problem = label_problem(value)
    if problem:
        raise DataError(f"{src}: row {row[0]}: column {col!r} {value!r} {problem}")
    return value


def _number(src: str, row: Row, header: list[str], col: str) -> float:
    value = _text(src, row, header, col)
    x = float(value) if _DECIMAL.fullmatch(value) else math.nan
    if not math.isfinite(x):
        raise DataError(
            f"{src}: row {row[0]}: column {col!r} is {value!r}, not a number: write a"
            " plain number (a dot as decimal separator)"
        )
    return x


def _count(src: str, row: Row, header: list[str], col: str) -> int:
    x = _number(src, row, header, col)
    if not x.is_integer():
        raise DataError(
            f"{src}: row {row[0]}: column {col!r} is {x:g}; a count must be a whole"
            " number: correct it"
        )
    return int(x)


def _binary_arm(src: str, row: Row, header: list[str]) -> BinaryArm:
    treat = _label(src, row, header, "treatment")
    n = _count(src, row, header, "n")
    events = _count(src, row, header, "events")
    problem = binary_problem(n, events)
    if problem:
        raise DataError(f"{src}: row {row[0]}: {problem}")
    return BinaryArm(treat, n, events)


def _rate_arm(src: str, row: Row, header: list[str]) -> RateArm:
    treat = _label(src, row, header, "treatment")
    n = _count(src, row, header, "n")
    events = _count(src, row, header, "events")
    time = _number(src, row, header, "time")
    problem = rate_problem(n, events, time)
    if problem:
        raise DataError(f"{src}: row {row[0]}: {problem}")
    return RateArm(treat, n, events, time)


def _continuous_arm(src: str, row: Row, header: list[str]) -> ContinuousArm:
    treat = _label(src, row, header, "treatment")
    n = _count(src, row, header, "n")
    mean = _number(src, row, header, "mean")
    sd = _number(src, row, header, "sd")
    problem = continuous_problem(n, mean, sd)
    if problem:
        raise DataError(f"{src}: row {row[0]}: {problem}")
    return ContinuousArm(treat, n, mean, sd)


def _group_arms(
    src: str,
    header: list[str],
    rows: list[Row],
    make: Callable[[str, Row, list[str]], A],
) -> dict[str, list[A]]:
    studies: dict[str, list[A]] = {}
    first_row: dict[tuple[str, str], int] = {}
    for row in rows:
        studlab = _label(src, row, header, "studlab")
        arm = make(src, row, header)
        key = (studlab, arm.treatment)
        if key in first_row:
            raise DataError(
                f"{src}: rows {first_row[key]} and {row[0]}: study {studlab!r} has"
                f" treatment {arm.treatment!r} twice: merge the two arms or give them"
                " different treatment names"
            )
        first_row[key] = row[0]
        studies.setdefault(studlab, []).append(arm)
    for studlab, arms in studies.items():
        if len(arms) < 2:
            raise DataError(
                f"{src}: row {first_row[(studlab, arms[0].treatment)]}: study"
                f" {studlab!r} has one arm; a study needs two or more arms: add the"
                " other arm(s) or remove the study"
            )
    return studies


def _read_contrasts(
    src: str, header: list[str], rows: list[Row], measure: str
) -> PairwiseResult:
    contrasts: list[Contrast] = []
    labels: list[str] = []
    for row in rows:
        sizes: list[int | None] = []
        for col in ("n1", "n2"):
            if col in header and row[1][header.index(col)]:
                n = _count(src, row, header, col)
                if n <= 0:
                    raise DataError(
                        f"{src}: row {row[0]}: {col} is {n}; an arm needs > 0"
                        " patients: correct it or leave it empty"
                    )
                sizes.append(n)
            else:
                sizes.append(None)
        contrasts.append(
            Contrast(
                _label(src, row, header, "studlab"),
                _label(src, row, header, "treat1"),
                _label(src, row, header, "treat2"),
                _number(src, row, header, "TE"),
                _number(src, row, header, "seTE"),
                sizes[0],
                sizes[1],
            )
        )
        labels.append(f"row {row[0]}")
    return check_contrasts(contrasts, measure, source=src, labels=labels)
