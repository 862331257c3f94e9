"""Arm-level trial data to contrasts, as R's ``pairwise()`` does for netmeta.

``pairwise()`` lived in netmeta until 3.0 and is now in meta (``meta::pairwise``,
source read: meta 8.4-0, netmeta 3.6-2); its defaults are ``incr = 0.5``,
``method.incr = "only0"``, ``allstudies = FALSE``, ``RR.Cochrane = FALSE``. For a study
with arms ``1..k`` (in the order given) it makes the ``k (k - 1) / 2`` contrasts
``(i, j)``, ``i < j``, ``treat1`` = arm ``i``, ``treat2`` = arm ``j``, effect = arm
``i`` versus arm ``j``. With ``a, b`` events and non-events and ``n`` patients in arm
``i`` (``c, d, m`` in arm ``j``) and ``h`` the study's increment:

* **increment** ``h = incr`` for *every* contrast of a study in which *any* arm has
  zero events or only events, else ``h = 0`` (per study, not per contrast: a zero in
  arm 3 also corrects arms 1 vs 2);
* **OR** (log): ``log((a+h)(d+h) / ((b+h)(c+h)))``,
  ``se^2 = 1/(a+h) + 1/(b+h) + 1/(c+h) + 1/(d+h)``; a contrast with zero events in
  both arms, or only events in both, is left out (not estimable);
* **RR** (log, Hartung & Knapp 2001, eq. 18): ``log(((a+h)/(n+h)) / ((c+h)/(m+h)))``,
  ``se^2 = 1/(a+h') - 1/(n+h) + 1/(c+h') - 1/(m+h)`` with ``h' = 0`` when both arms
  have only events (then the estimate is 0), else ``h' = h``; a contrast with zero
  events in both arms is left out;
* **RD**: ``a/n - c/m`` (no increment),
  ``se^2 = (a+h)(b+h)/(n+2h)^3 + (c+h)(d+h)/(m+2h)^3``; never left out;
* **MD**: ``mean_i - mean_j``, ``se^2 = sd_i^2/n_i + sd_j^2/n_j``;
* **SMD**: Cohen's d, *not* Hedges' g (``method.smd = "Cohen"``: Hedges' small-sample
  factor depends on the pair, so a multi-arm study's contrasts would not add up):
  ``(mean_i - mean_j) / s`` with ``s^2 = sum_arms (n - 1) sd^2 / sum_arms (n - 1)``
  pooled over *all* arms of the study, and Crippa & Orsini (2016), eq. 5:
  ``se^2 = 1/n_i + 1/n_j + d^2 / (2 N)``, ``N`` = the study's patients in all arms.

Contrast-level input (``studlab, treat1, treat2, TE, seTE``; log scale for OR, RR,
HR) is passed through after checks: ``seTE > 0``, a contrast given twice must agree
(``B`` vs ``A`` with ``-TE`` is the same contrast), and a multi-arm study must give all
its pairs, consistent (``TE_AC = TE_AB + TE_BC`` within netmeta's
``tol.multiarm = 0.001``).

:func:`read_trials` reads a published-trials CSV, detects its level by the header and
names the file, the row (1-based, the header is row 1) or study, and the fix in every
error (:class:`pht.errors.DataError`, or :class:`pht.errors.ConfigError` for a
measure that does not fit the data). The kernels take typed arms and do no I/O.

Example
-------
>>> r = pairwise_binary({"s1": [BinaryArm("A", 10, 0), BinaryArm("B", 10, 5)]}, "OR")
>>> c = r.contrasts[0]
>>> (c.treat1, c.treat2, round(c.TE, 6), round(c.seTE, 6), c.incr)
('A', 'B', -3.044522, 1.56808, 0.5)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pht.errors import ConfigError, DataError

BINARY_MEASURES = ("OR", "RR", "RD")
CONTINUOUS_MEASURES = ("MD", "SMD")
CONTRAST_MEASURES = ("OR", "RR", "RD", "MD", "SMD", "HR")
TOL_MULTIARM = 0.001
"""netmeta's ``tol.multiarm``: largest allowed ``|TE_AC - (TE_AB + TE_BC)|``."""

CONTRAST_COLUMNS = ("studlab", "treat1", "treat2", "TE", "seTE")
BINARY_COLUMNS = ("studlab", "treatment", "n", "events")
CONTINUOUS_COLUMNS = ("studlab", "treatment", "n", "mean", "sd")


@dataclass(frozen=True)
class BinaryArm:
    """One arm of a trial with a binary outcome: ``events`` of ``n`` patients."""

    treatment: str
    n: int
    events: int

    def __post_init__(self) -> None:
        problem = _binary_problem(self.n, self.events)
        if problem:
            raise DataError(f"arm {self.treatment!r}: {problem}")


@dataclass(frozen=True)
class ContinuousArm:
    """One arm of a trial with a continuous outcome: ``n``, ``mean``, ``sd``."""

    treatment: str
    n: int
    mean: float
    sd: float

    def __post_init__(self) -> None:
        problem = _continuous_problem(self.n, self.mean, self.sd)
        if problem:
            raise DataError(f"arm {self.treatment!r}: {problem}")


@dataclass(frozen=True)
class Contrast:
    """One pairwise comparison: ``TE`` of ``treat1`` versus ``treat2`` and its SE.

    ``n1``/``n2`` are the arms' patients (``None`` when only the contrast was given),
    ``incr`` the continuity correction added to this study's cells (0 if none).
    """

    studlab: str
    treat1: str
    treat2: str
    TE: float
    seTE: float
    n1: int | None = None
    n2: int | None = None
    incr: float = 0.0


@dataclass(frozen=True)
class PairwiseResult:
    """The contrasts of all studies, in study order, and what was corrected or left out.

    ``notes`` are one-line sentences (continuity corrections, contrasts and studies
    left out, duplicate rows dropped); ``excluded`` names studies with no contrast left.
    """

    measure: str
    contrasts: tuple[Contrast, ...]
    notes: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    @property
    def studies(self) -> tuple[str, ...]:
        """The study labels with at least one contrast, in order."""
        return tuple(dict.fromkeys(c.studlab for c in self.contrasts))

    @property
    def treatments(self) -> tuple[str, ...]:
        """The treatments in the contrasts, sorted."""
        return tuple(sorted({t for c in self.contrasts for t in (c.treat1, c.treat2)}))


# -- checks shared by the arm classes and the CSV reader ------------------------


def _binary_problem(n: int, events: int) -> str | None:
    if n <= 0:
        return f"n is {n}; an arm needs n > 0 patients: correct n or drop the arm"
    if events < 0:
        return f"events is {events}; events must be >= 0: correct events"
    if events > n:
        return f"events ({events}) > n ({n}); events must be <= n: correct the arm"
    return None


def _continuous_problem(n: int, mean: float, sd: float) -> str | None:
    if n <= 0:
        return f"n is {n}; an arm needs n > 0 patients: correct n or drop the arm"
    if not math.isfinite(mean):
        return "mean is not finite: give the arm's mean"
    if not (math.isfinite(sd) and sd > 0):
        return f"sd is {sd!r}; sd must be > 0: give the arm's standard deviation"
    return None


def _check_measure(measure: str, allowed: tuple[str, ...], kind: str) -> None:
    if measure not in allowed:
        raise ConfigError(
            f"measure {measure!r} does not fit {kind}: use one of {', '.join(allowed)}"
        )


def _check_arms(source: str, studlab: str, arms: Sequence[object]) -> None:
    if len(arms) < 2:
        raise DataError(
            f"{source}: study {studlab!r} has one arm; a study needs two or more arms:"
            " add the other arm(s) or remove the study"
        )
    seen: set[str] = set()
    for arm in arms:
        t = arm.treatment  # type: ignore[attr-defined]
        if t in seen:
            raise DataError(
                f"{source}: study {studlab!r} has treatment {t!r} twice: merge the"
                " two arms or give them different treatment names"
            )
        seen.add(t)


# -- kernels ----------------------------------------------------------------------


def pairwise_binary(
    studies: Mapping[str, Sequence[BinaryArm]],
    measure: str,
    *,
    incr: float = 0.5,
    source: str = "pairwise",
) -> PairwiseResult:
    """Contrasts (log OR, log RR or RD) from binary arms, as ``meta::pairwise``.

    Parameters
    ----------
    studies
        Study label -> its arms, in order; each study needs two or more arms with
        distinct treatments.
    measure
        ``"OR"``, ``"RR"`` or ``"RD"`` (the formulas are in the module docstring).
    incr
        Continuity correction for studies with a zero (or all-events) cell.
    source
        Prefix of error messages (the file name when read from a CSV).

    Returns
    -------
    PairwiseResult
        All estimable contrasts; not estimable ones are in ``notes``.

    Examples
    --------
    >>> r = pairwise_binary(
    ...     {"s": [BinaryArm("A", 20, 4), BinaryArm("B", 20, 8)]}, "RR")
    >>> round(r.contrasts[0].TE, 6)
    -0.693147
    """
    _check_measure(measure, BINARY_MEASURES, "binary arm data (n, events)")
    if not (math.isfinite(incr) and incr >= 0):
        raise ConfigError(f"incr is {incr!r}; it must be >= 0 (netmeta uses 0.5)")
    contrasts: list[Contrast] = []
    notes: list[str] = []
    excluded: list[str] = []
    for studlab, arms in studies.items():
        _check_arms(source, studlab, arms)
        sparse = any(a.events == 0 or a.events == a.n for a in arms)
        h = incr if sparse else 0.0
        if sparse and h > 0:
            notes.append(
                f"study {studlab!r}: an arm has zero events or only events;"
                f" {h:g} added to every cell of its contrasts"
            )
        kept = 0
        for i in range(len(arms) - 1):
            for j in range(i + 1, len(arms)):
                one, two = arms[i], arms[j]
                est = _binary_contrast(one, two, measure, h)
                if est is None:
                    what = "no events" if one.events == 0 else "only events"
                    notes.append(
                        f"study {studlab!r}: {one.treatment} vs {two.treatment} left"
                        f" out for {measure} ({what} in both arms; not estimable)"
                    )
                    continue
                te, se = est
                contrasts.append(
                    Contrast(
                        studlab, one.treatment, two.treatment, te, se, one.n, two.n, h
                    )
                )
                kept += 1
        if kept == 0:
            excluded.append(studlab)
            notes.append(f"study {studlab!r} excluded: no estimable {measure} contrast")
    return PairwiseResult(measure, tuple(contrasts), tuple(notes), tuple(excluded))


def _binary_contrast(
    one: BinaryArm, two: BinaryArm, measure: str, h: float
) -> tuple[float, float] | None:
    a, n = float(one.events), float(one.n)
    c, m = float(two.events), float(two.n)
    b, d = n - a, m - c
    both_zero = one.events == 0 and two.events == 0
    both_all = one.events == one.n and two.events == two.n
    if measure == "OR":
        if both_zero or both_all:
            return None
        te = math.log((a + h) * (d + h) / ((b + h) * (c + h)))
        var = 1 / (a + h) + 1 / (b + h) + 1 / (c + h) + 1 / (d + h)
        return te, math.sqrt(var)
    if measure == "RR":
        if both_zero:
            return None
        te = math.log((a + h) / (n + h)) - math.log((c + h) / (m + h))
        he = 0.0 if both_all else h
        var = 1 / (a + he) - 1 / (n + h) + 1 / (c + he) - 1 / (m + h)
        return te, math.sqrt(var)
    te = a / n - c / m
    var = (a + h) * (b + h) / (n + 2 * h) ** 3 + (c + h) * (d + h) / (m + 2 * h) ** 3
    return te, math.sqrt(var)


def pairwise_continuous(
    studies: Mapping[str, Sequence[ContinuousArm]],
    measure: str,
    *,
    source: str = "pairwise",
) -> PairwiseResult:
    """Contrasts (MD or SMD) from continuous arms, as ``meta::pairwise``.

    The SMD is Cohen's d with the SD pooled over all arms of a study and Crippa &
    Orsini's (2016) standard error, so a multi-arm study's contrasts are consistent.

    Examples
    --------
    >>> r = pairwise_continuous({"s": [ContinuousArm("A", 10, 1.0, 1.0),
    ...                                ContinuousArm("B", 12, 0.0, 2.0)]}, "SMD")
    >>> (round(r.contrasts[0].TE, 6), round(r.contrasts[0].seTE, 6))
    (0.614295, 0.438075)
    """
    _check_measure(measure, CONTINUOUS_MEASURES, "continuous arm data (n, mean, sd)")
    contrasts: list[Contrast] = []
    for studlab, arms in studies.items():
        _check_arms(source, studlab, arms)
        total = float(sum(a.n for a in arms))
        dof = float(sum(a.n - 1 for a in arms))
        if measure == "SMD" and dof <= 0:
            raise DataError(
                f"{source}: study {studlab!r}: every arm has n = 1, so no SD can be"
                " pooled for the SMD: use MD or drop the study"
            )
        pooled = math.sqrt(sum((a.n - 1) * a.sd**2 for a in arms) / dof) if dof else 0
        for i in range(len(arms) - 1):
            for j in range(i + 1, len(arms)):
                one, two = arms[i], arms[j]
                if measure == "MD":
                    te = one.mean - two.mean
                    se = math.sqrt(one.sd**2 / one.n + two.sd**2 / two.n)
                else:
                    te = (one.mean - two.mean) / pooled
                    se = math.sqrt(1 / one.n + 1 / two.n + te**2 / (2 * total))
                contrasts.append(
                    Contrast(
                        studlab, one.treatment, two.treatment, te, se, one.n, two.n
                    )
                )
    return PairwiseResult(measure, tuple(contrasts))


def check_contrasts(
    contrasts: Sequence[Contrast],
    measure: str,
    *,
    source: str = "contrasts",
    labels: Sequence[str] | None = None,
) -> PairwiseResult:
    """Check contrast-level input and pass it through, as netmeta would accept it.

    Each contrast needs finite ``TE`` and ``seTE > 0`` and two different treatments;
    a contrast given twice (either orientation) must agree, else :class:`DataError`
    (an exact repeat is dropped with a note); a study with ``k > 2`` treatments must
    give all ``k (k - 1) / 2`` pairs, consistent within ``TOL_MULTIARM``.

    ``labels`` (one per contrast, e.g. ``"row 7"``) locate a contrast in messages.
    """
    _check_measure(measure, CONTRAST_MEASURES, "contrast-level data (TE, seTE)")
    where = (
        list(labels)
        if labels is not None
        else [f"contrast {i + 1}" for i in range(len(contrasts))]
    )
    kept: dict[tuple[str, str, str], tuple[Contrast, str]] = {}
    notes: list[str] = []
    for c, at in zip(contrasts, where, strict=True):
        if c.treat1 == c.treat2:
            raise DataError(
                f"{source}: {at}: treat1 and treat2 are both {c.treat1!r}: a contrast"
                " compares two different treatments"
            )
        if not math.isfinite(c.TE):
            raise DataError(f"{source}: {at}: TE is not finite: give the estimate")
        if not (math.isfinite(c.seTE) and c.seTE > 0):
            raise DataError(
                f"{source}: {at}: seTE is {c.seTE!r}; it must be > 0: give the"
                " contrast's standard error"
            )
        key = (c.studlab, c.treat1, c.treat2)
        rkey = (c.studlab, c.treat2, c.treat1)
        if key in kept or rkey in kept:
            first, first_at = kept[key] if key in kept else kept[rkey]
            te = c.TE if key in kept else -c.TE
            if te != first.TE or c.seTE != first.seTE:
                raise DataError(
                    f"{source}: {at} and {first_at} both give study {c.studlab!r}"
                    f" {first.treat1} vs {first.treat2} with different TE/seTE:"
                    " keep one of them"
                )
            notes.append(f"{at}: repeats {first_at} (study {c.studlab!r}); dropped")
            continue
        kept[key] = (c, at)
    out = [c for c, _ in kept.values()]
    by_study: dict[str, list[Contrast]] = {}
    for c in out:
        by_study.setdefault(c.studlab, []).append(c)
    for studlab, rows in by_study.items():
        _check_multiarm(source, studlab, rows)
    return PairwiseResult(measure, tuple(out), tuple(notes))


def _check_multiarm(source: str, studlab: str, rows: Sequence[Contrast]) -> None:
    treats = list(dict.fromkeys(t for c in rows for t in (c.treat1, c.treat2)))
    k = len(treats)
    if k == 2:
        return
    effect: dict[tuple[str, str], float] = {}
    for c in rows:
        effect[(c.treat1, c.treat2)] = c.TE
        effect[(c.treat2, c.treat1)] = -c.TE
    for i, t in enumerate(treats):
        for u in treats[i + 1 :]:
            if (t, u) not in effect:
                raise DataError(
                    f"{source}: study {studlab!r} has {k} treatments but no contrast"
                    f" {t} vs {u}; a multi-arm study needs all {k * (k - 1) // 2}"
                    " pairs: add the missing row"
                )
    base = treats[0]
    for i, t in enumerate(treats[1:], start=1):
        for u in treats[i + 1 :]:
            gap = effect[(t, u)] - (effect[(base, u)] - effect[(base, t)])
            if abs(gap) > TOL_MULTIARM:
                raise DataError(
                    f"{source}: study {studlab!r}: {t} vs {u} differs by {gap:.4g} from"
                    f" {base} vs {u} minus {base} vs {t} (netmeta allows"
                    f" {TOL_MULTIARM}): the study's contrasts must come from one"
                    " analysis; correct the rows"
                )


# -- the published-trials CSV -------------------------------------------------------


def read_trials(path: str | Path, measure: str, *, incr: float = 0.5) -> PairwiseResult:
    """Read a published-trials CSV and convert it to contrasts, as ``pairwise()``.

    The header says the level: ``studlab,treat1,treat2,TE,seTE`` (contrast level,
    optional ``n1,n2``), ``studlab,treatment,n,events`` (binary arms) or
    ``studlab,treatment,n,mean,sd`` (continuous arms). Other columns are ignored.
    Rows of a study need not be adjacent; arms keep their order in the file.

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
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            table = _read_rows(src, fh)
    except OSError as exc:
        raise DataError(
            f"{src}: cannot read the trials file ({exc.strerror}): check the path"
        ) from None
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
A = TypeVar("A", BinaryArm, ContinuousArm)


def _read_rows(src: str, fh: object) -> tuple[list[str], list[Row]]:
    reader = csv.reader(fh)  # type: ignore[arg-type]
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{src}: the file is empty: write a header row") from None
    except csv.Error as exc:
        raise DataError(f"{src}: row 1: not valid CSV ({exc})") from None
    header = [h.strip() for h in header]
    dup = sorted({h for h in header if header.count(h) > 1 and h})
    if dup:
        raise DataError(f"{src}: column {dup[0]!r} appears twice in the header")
    rows: list[Row] = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            line = reader.line_num
            if len(fields) != len(header):
                raise DataError(
                    f"{src}: row {line}: {len(fields)} fields, the header has"
                    f" {len(header)}: check for a missing or extra comma"
                )
            rows.append((line, [f.strip() for f in fields]))
    except csv.Error as exc:
        raise DataError(
            f"{src}: row {reader.line_num}: not valid CSV ({exc})"
        ) from None
    if not rows:
        raise DataError(f"{src}: no data rows below the header: add the trials")
    return header, rows


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


def _number(src: str, row: Row, header: list[str], col: str) -> float:
    value = _text(src, row, header, col)
    try:
        x = float(value)
    except ValueError:
        x = math.nan
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
    treat = _text(src, row, header, "treatment")
    n = _count(src, row, header, "n")
    events = _count(src, row, header, "events")
    problem = _binary_problem(n, events)
    if problem:
        raise DataError(f"{src}: row {row[0]}: {problem}")
    return BinaryArm(treat, n, events)


def _continuous_arm(src: str, row: Row, header: list[str]) -> ContinuousArm:
    treat = _text(src, row, header, "treatment")
    n = _count(src, row, header, "n")
    mean = _number(src, row, header, "mean")
    sd = _number(src, row, header, "sd")
    problem = _continuous_problem(n, mean, sd)
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
        studlab = _text(src, row, header, "studlab")
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
                _text(src, row, header, "studlab"),
                _text(src, row, header, "treat1"),
                _text(src, row, header, "treat2"),
                _number(src, row, header, "TE"),
                _number(src, row, header, "seTE"),
                sizes[0],
                sizes[1],
            )
        )
        labels.append(f"row {row[0]}")
    return check_contrasts(contrasts, measure, source=src, labels=labels)
