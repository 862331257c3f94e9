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

* **IRR** (log incidence rate ratio, as ``meta::metainc`` inside ``pairwise()``): with
  ``e`` events in ``t`` person-time per arm, ``log(((e_i+h)/t_i) / ((e_j+h)/t_j))``,
  ``se^2 = 1/(e_i+h) + 1/(e_j+h)``; ``h = incr`` for every contrast of a study in
  which any arm has zero events (added to the events only), and a contrast with zero
  events in both arms is left out.

The kernels take typed arms and do no I/O; the published-trials CSV is read by
:func:`pht.orchestrator.trials.read_trials`, which calls them.

Example
-------
>>> r = pairwise_binary({"s1": [BinaryArm("A", 10, 0), BinaryArm("B", 10, 5)]}, "OR")
>>> c = r.contrasts[0]
>>> (c.treat1, c.treat2, round(c.TE, 6), round(c.seTE, 6), c.incr)
('A', 'B', -3.044522, 1.56808, 0.5)
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pht.errors import ConfigError, DataError

BINARY_MEASURES = ("OR", "RR", "RD")
CONTINUOUS_MEASURES = ("MD", "SMD")
RATE_MEASURES = ("IRR",)
CONTRAST_MEASURES = ("OR", "RR", "RD", "MD", "SMD", "HR", "IRR")
TOL_MULTIARM = 0.001
"""netmeta's ``tol.multiarm``: largest allowed ``|TE_AC - (TE_AB + TE_BC)|``."""

CONTRAST_COLUMNS = ("studlab", "treat1", "treat2", "TE", "seTE")
BINARY_COLUMNS = ("studlab", "treatment", "n", "events")
CONTINUOUS_COLUMNS = ("studlab", "treatment", "n", "mean", "sd")
RATE_COLUMNS = ("studlab", "treatment", "n", "events", "time")

LOG_MEASURES = frozenset({"OR", "RR", "HR", "IRR"})
"""Measures whose ``TE`` is on the log scale."""
MAX_LOG_TE = 100.0
"""Largest ``|TE|`` on the log scale (a ratio of e^100; beyond it exp() overflows)."""
MAX_TE = 1e10
"""Largest ``|TE|`` (and ``|mean|``) on the identity scale (MD, SMD, RD)."""
MIN_SE, MAX_SE = 1e-8, 1e8
"""``seTE`` and ``sd`` must lie strictly between these (else 1/se^2 or se^2 overflow)."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A label starting with one of these is a formula to a spreadsheet (CSV injection)."""
_CONFUSABLE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "COPTIC"})


def _script(ch: str) -> str:
    """The script of a letter, from its Unicode name (``LATIN``, ``CYRILLIC``...)."""
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first in ("CJK", "HIRAGANA", "KATAKANA"):
        return "CJK"
    return first


def label_problem(label: str) -> str | None:
    """What is wrong with a treatment or study label (None if fine).

    A label may not hold control characters (category Cc: R's ``read.csv`` stops at
    a NUL, a line break splits a row), invisible format characters (category Cf:
    zero-width space, soft hyphen, BOM; they make a look-alike second node), a word
    mixing letters of two alphabets (a Cyrillic 'а' in a Latin word), nor start
    with ``= + - @`` (a spreadsheet runs it as a formula).

    >>> label_problem("nivolumab") is None
    True
    >>> label_problem("nivolu\u00admab")
    'holds the invisible character U+00AD (SOFT HYPHEN): retype the label'
    >>> label_problem("niv\u043elumab")[:45]
    'mixes Cyrillic and Latin letters in one word '
    """
    for ch in label:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            return f"holds the control character U+{ord(ch):04X}: retype the label"
        if cat == "Cf":
            name = unicodedata.name(ch, "format character")
            return (
                f"holds the invisible character U+{ord(ch):04X} ({name}): retype the "
                "label"
            )
    if label.startswith(FORMULA_STARTS):
        return (
            f"starts with {label[0]!r}, which a spreadsheet reads as a formula: "
            "rename it (e.g. with a letter first)"
        )
    word: set[str] = set()
    for ch in label + " ":
        if ch.isalpha():
            word.add(_script(ch))
            continue
        mixed = word & _CONFUSABLE_SCRIPTS
        if len(word) > 1 and mixed:
            names = " and ".join(sorted(w.title() for w in word))
            return (
                f"mixes {names} letters in one word (a look-alike of another "
                "label): retype it in one alphabet"
            )
        word = set()
    return None


@dataclass(frozen=True)
class BinaryArm:
    """One arm of a trial with a binary outcome: ``events`` of ``n`` patients."""

    treatment: str
    n: int
    events: int

    def __post_init__(self) -> None:
        problem = binary_problem(self.n, self.events)
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
        problem = continuous_problem(self.n, self.mean, self.sd)
        if problem:
            raise DataError(f"arm {self.treatment!r}: {problem}")


@dataclass(frozen=True)
class RateArm:
    """One arm of a trial with events over person-time: ``events`` in ``time``."""

    treatment: str
    n: int
    events: int
    time: float

    def __post_init__(self) -> None:
        problem = rate_problem(self.n, self.events, self.time)
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


def binary_problem(n: int, events: int) -> str | None:
    """What is wrong with an arm of ``events`` of ``n`` patients (None if fine)."""
    if n <= 0:
        return f"n is {n}; an arm needs n > 0 patients: correct n or drop the arm"
    if events < 0:
        return f"events is {events}; events must be >= 0: correct events"
    if events > n:
        return f"events ({events}) > n ({n}); events must be <= n: correct the arm"
    return None


def continuous_problem(n: int, mean: float, sd: float) -> str | None:
    """What is wrong with an arm of ``n`` patients, ``mean`` and ``sd`` (None if fine)."""
    if n <= 0:
        return f"n is {n}; an arm needs n > 0 patients: correct n or drop the arm"
    if not (math.isfinite(mean) and abs(mean) <= MAX_TE):
        return (
            f"mean is {mean!r}; it must be a number within +-{MAX_TE:g}: give the "
            "arm's mean (in a smaller unit if need be)"
        )
    if not (math.isfinite(sd) and sd > 0):
        return f"sd is {sd!r}; sd must be > 0: give the arm's standard deviation"
    if not MIN_SE < sd < MAX_SE:
        return (
            f"sd is {sd!r}; it must lie between {MIN_SE:g} and {MAX_SE:g}: give the "
            "arm's standard deviation (rescale the outcome's unit if need be)"
        )
    return None


def rate_problem(n: int, events: int, time: float) -> str | None:
    """What is wrong with an arm of ``events`` in ``time`` person-time (None if fine)."""
    if n <= 0:
        return f"n is {n}; an arm needs n > 0 patients: correct n or drop the arm"
    if events < 0:
        return f"events is {events}; events must be >= 0: correct events"
    if not (math.isfinite(time) and time > 0):
        return f"time is {time!r}; person-time must be > 0: give the arm's follow-up"
    return None


def te_problem(te: float, se: float, measure: str) -> str | None:
    """What is wrong with a contrast's size (None if fine): the fit's safe range.

    ``|TE| <= 100`` on the log scale (a ratio of e^100 is a typing error, and exp()
    of more overflows), ``|TE| <= 1e10`` otherwise; ``1e-8 < seTE < 1e8`` (else the
    weight ``1/seTE^2`` or the variance overflows).

    >>> te_problem(800.0, 0.1, "HR")[:40]
    'TE is 800; on the log scale of HR it mus'
    >>> te_problem(0.1, 0.1, "HR") is None
    True
    """
    limit = MAX_LOG_TE if measure in LOG_MEASURES else MAX_TE
    if not (math.isfinite(te) and abs(te) <= limit):
        scale = f"on the log scale of {measure}" if measure in LOG_MEASURES else ""
        return (
            f"TE is {te:.6g}; {scale + ' ' if scale else ''}it must lie within "
            f"+-{limit:g}: check the estimate"
            + (" (TE is the log of the ratio)" if scale else "")
        )
    if not (math.isfinite(se) and MIN_SE < se < MAX_SE):
        return (
            f"seTE is {se:.6g}; it must lie between {MIN_SE:g} and {MAX_SE:g}: check "
            "the standard error"
        )
    return None


def check_measure(measure: str, allowed: tuple[str, ...], kind: str) -> None:
    """A :class:`ConfigError` when ``measure`` is not one of ``allowed`` for ``kind``."""
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
    check_measure(measure, BINARY_MEASURES, "binary arm data (n, events)")
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
    check_measure(measure, CONTINUOUS_MEASURES, "continuous arm data (n, mean, sd)")
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


def pairwise_rates(
    studies: Mapping[str, Sequence[RateArm]],
    measure: str = "IRR",
    *,
    incr: float = 0.5,
    source: str = "pairwise",
) -> PairwiseResult:
    """Contrasts (log IRR) from arms with events and person-time, as ``pairwise()``.

    Parameters
    ----------
    studies
        Study label -> its arms, in order; two or more arms with distinct treatments.
    measure
        ``"IRR"`` (the formula is in the module docstring).
    incr
        Added to the events of every arm of a study in which an arm has no events.
    source
        Prefix of error messages.

    Examples
    --------
    >>> r = pairwise_rates(
    ...     {"s": [RateArm("A", 30, 10, 100.0), RateArm("B", 30, 0, 120.0)]})
    >>> c = r.contrasts[0]
    >>> (round(c.TE, 6), round(c.seTE, 6), c.incr)
    (3.226844, 1.447494, 0.5)
    """
    check_measure(measure, RATE_MEASURES, "rate arm data (n, events, time)")
    if not (math.isfinite(incr) and incr >= 0):
        raise ConfigError(f"incr is {incr!r}; it must be >= 0 (meta uses 0.5)")
    contrasts: list[Contrast] = []
    notes: list[str] = []
    excluded: list[str] = []
    for studlab, arms in studies.items():
        _check_arms(source, studlab, arms)
        h = incr if any(a.events == 0 for a in arms) else 0.0
        if h > 0:
            notes.append(
                f"study {studlab!r}: an arm has zero events; {h:g} added to the events"
                " of every arm in its contrasts"
            )
        kept = 0
        for i in range(len(arms) - 1):
            for j in range(i + 1, len(arms)):
                one, two = arms[i], arms[j]
                if one.events == 0 and two.events == 0:
                    notes.append(
                        f"study {studlab!r}: {one.treatment} vs {two.treatment} left"
                        " out for IRR (no events in both arms; not estimable)"
                    )
                    continue
                e1, e2 = one.events + h, two.events + h
                te = math.log(e1 / one.time) - math.log(e2 / two.time)
                se = math.sqrt(1 / e1 + 1 / e2)
                contrasts.append(
                    Contrast(
                        studlab, one.treatment, two.treatment, te, se, one.n, two.n, h
                    )
                )
                kept += 1
        if kept == 0:
            excluded.append(studlab)
            notes.append(f"study {studlab!r} excluded: no estimable IRR contrast")
    return PairwiseResult(measure, tuple(contrasts), tuple(notes), tuple(excluded))


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
    check_measure(measure, CONTRAST_MEASURES, "contrast-level data (TE, seTE)")
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
        problem = te_problem(c.TE, c.seTE, measure)
        if problem:
            raise DataError(f"{source}: {at}: {problem}")
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
    variances: dict[tuple[str, str], float] = {}
    for c in rows:
        variances[(c.treat1, c.treat2)] = variances[(c.treat2, c.treat1)] = c.seTE**2
    problem = multiarm_variance_problem(studlab, treats, variances)
    if problem:
        raise DataError(f"{source}: {problem}")


def multiarm_variance_problem(
    studlab: str,
    arms: Sequence[str],
    variances: Mapping[tuple[str, str], float],
) -> str | None:
    """Why a multi-arm study's contrast variances cannot come from one analysis, or None.

    The basic contrasts of a ``k``-arm study (every other arm versus its first arm
    ``1``) have the covariance ``Cov(d_j, d_l) = (v_1j + v_1l - v_jl) / 2`` (netmeta's
    and Krahn et al.'s); it must be positive definite (relative tolerance 1e-10 on the
    smallest eigenvalue), else no arm-level model gives these standard errors and the
    network fit divides by a zero variance. ``variances`` maps each ordered pair of
    ``arms`` (either orientation) to ``seTE^2``.

    >>> v = {("A", "B"): 0.0004, ("A", "C"): 0.0004, ("B", "C"): 0.25}
    >>> multiarm_variance_problem("T", ["A", "B", "C"], v)[:60]
    "study 'T': its standard errors do not fit together for a mul"
    >>> v[("B", "C")] = 0.0008
    >>> multiarm_variance_problem("T", ["A", "B", "C"], v) is None
    True
    """
    if len(arms) < 3:
        return None

    def var(a: str, b: str) -> float:
        return float(variances[(a, b)] if (a, b) in variances else variances[(b, a)])

    base, others = arms[0], list(arms[1:])
    k = len(others)
    cov = np.empty((k, k))
    for a, ta in enumerate(others):
        for b, tb in enumerate(others):
            cov[a, b] = (
                var(base, ta)
                if a == b
                else (var(base, ta) + var(base, tb) - var(ta, tb)) / 2
            )
    eig = np.linalg.eigvalsh(cov)
    if eig[0] > 1e-10 * max(float(eig[-1]), 0.0):
        return None
    ses = ", ".join(
        f"{t} vs {u} {math.sqrt(var(t, u)):.4g}"
        for i, t in enumerate(arms)
        for u in arms[i + 1 :]
    )
    return (
        f"study {studlab!r}: its standard errors do not fit together for a multi-arm "
        f"study (seTE {ses}: the covariance of its contrasts against {base} they "
        "imply is not positive definite, so no analysis of one set of arms gives "
        "them); check the seTE of its rows"
    )
