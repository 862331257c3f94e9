"""Equivalence and non-inferiority: effect measures from aggregates, TOST and verdicts.

Pure statistics for the ``equivalence`` study (issue 12). A station releases only
sufficient statistics (moments of a continuous outcome, 2x2 counts of a binary one) or
a pooled model gives an estimate with its standard error; this module turns them into
an :class:`Effect` (estimate, SE on the analysis scale, CIs) and judges it against a
:class:`Hypothesis` (margins on the measure's natural scale) in a :class:`Verdict`.

Measures and their analysis scale (``group`` = the alternative, e.g. weight-based
dosing, versus ``reference`` = the standard):

==========================  ==========  =================================================
measure                     scale       from
==========================  ==========  =================================================
mean_difference             difference  :class:`Moments` per arm; pooled-variance or
                                        Welch t (:func:`mean_difference`)
ratio_of_geometric_means    log ratio   :class:`Moments` of log values
                                        (:func:`ratio_of_geometric_means`)
risk_difference             difference  :class:`BinaryCounts`: crude Wald or
                                        Mantel-Haenszel (Greenland-Robins variance)
risk_ratio                  log ratio   crude (Katz) or Mantel-Haenszel
                                        (Greenland-Robins variance)
odds_ratio                  log ratio   crude (Woolf) or Mantel-Haenszel
                                        (Robins-Breslow-Greenland variance)
hazard_ratio                log ratio   a Cox coefficient and its SE (:func:`hazard_ratio`)
rmst_difference             difference  an RMST difference and its SE
                                        (:func:`rmst_difference`)
==========================  ==========  =================================================

Every test is one-sided at level ``alpha``, so every decision reads the two-sided
``1 - 2 alpha`` CI (90% for ``alpha = 0.05``; the usual 95% CI of a non-inferiority
analysis is ``alpha = 0.025``). t-based measures use Student's t with their degrees of
freedom, the others the normal distribution. A 2x2 table with a zero cell gets 0.5
added to every cell for a crude odds or risk ratio (Mantel-Haenszel: only when the
pooled ratio would be 0 or infinite); the :class:`Effect` says so. An arm without
patients is a :class:`~pht.errors.DataError` naming the arm.

Example
-------
TOST of a mean difference from the arms' moments (equals statsmodels
``ttost_ind(x1, x2, -1, 1, usevar="pooled")``):

>>> from pht.algorithms.means import Moments
>>> g = Moments.from_values([3.1, 2.9, 3.4, 3.0, 3.3])
>>> r = Moments.from_values([3.0, 3.2, 2.8, 3.1, 2.9, 3.0])
>>> e = mean_difference(g, r, variance="pooled")
>>> h = Hypothesis.equivalence("mean_difference", -1.0, 1.0, higher_is_better=True)
>>> v = verdict(e, h)
>>> v.verdict, f"{v.p_value:.3g}", v.rule
('equivalent', '9.36e-06', '90% CI [-0.05297, 0.333] lies inside the margins (-1, 1)')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt

from pht.algorithms.numeric import normal_quantile
from pht.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pht.algorithms.cox import CoxResult
    from pht.algorithms.km import Difference

Scale = Literal["difference", "ratio"]
Kind = Literal["equivalence", "non_inferiority"]
Outcome = Literal["equivalent", "non-inferior", "inconclusive", "inferior", "superior"]
Variance = Literal["pooled", "welch"]

MEASURES: dict[str, Scale] = {
    "mean_difference": "difference",
    "ratio_of_geometric_means": "ratio",
    "risk_difference": "difference",
    "risk_ratio": "ratio",
    "odds_ratio": "ratio",
    "hazard_ratio": "ratio",
    "rmst_difference": "difference",
}
"""Every measure and the scale of its margins: ratios as ratios, differences as
differences (the analysis scale of a ratio is its log)."""

NULL: dict[Scale, float] = {"difference": 0.0, "ratio": 1.0}
"""The value of no difference on each natural scale."""

CONTINUITY = 0.5
"""Added to every cell of a 2x2 table with a zero cell, for odds and risk ratios."""


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return number


# -- hypotheses ----------------------------------------------------------------------
@dataclass(frozen=True)
class Hypothesis:
    """What an outcome must show: equivalence (two margins) or non-inferiority (one).

    Margins are on the measure's natural scale (:data:`MEASURES`): a hazard-ratio
    margin of 1.25 is the ratio 1.25, a risk-difference margin of 0.05 is five
    percentage points. Build with :meth:`equivalence` or :meth:`non_inferiority`.

    Attributes
    ----------
    kind : ``"equivalence"`` (TOST: the ``1 - 2 alpha`` CI inside ``(lower, upper)``)
        or ``"non_inferiority"`` (one margin, on the unfavourable side of the null).
    measure : a key of :data:`MEASURES`.
    lower, upper : the margins. Equivalence needs both, ``lower < null < upper``.
        Non-inferiority needs exactly one: ``lower`` (below the null) when higher is
        better, ``upper`` (above the null) when higher is worse.
    higher_is_better : the direction of benefit: False for a hazard ratio of death or
        a risk of toxicity, True for an RMST difference or a response rate.
    alpha : the level of each one-sided test, in (0, 0.5).
    outcome : the outcome's name, used in error messages.

    Raises
    ------
    ConfigError
        One line naming the outcome and the key: an unknown measure, ``alpha``
        outside (0, 0.5), a ratio margin <= 0, ``lower >= upper``, a margin on the
        wrong side of the null.
    """

    kind: Kind
    measure: str
    lower: float | None
    upper: float | None
    higher_is_better: bool
    alpha: float = 0.05
    outcome: str = ""

    @classmethod
    def equivalence(
        cls,
        measure: str,
        lower: float,
        upper: float,
        *,
        higher_is_better: bool,
        alpha: float = 0.05,
        outcome: str = "",
    ) -> Hypothesis:
        """Equivalence within ``(lower, upper)`` by TOST (default: a 90% CI)."""
        return cls(
            "equivalence", measure, lower, upper, higher_is_better, alpha, outcome
        )

    @classmethod
    def non_inferiority(
        cls,
        measure: str,
        margin: float,
        *,
        higher_is_better: bool,
        alpha: float = 0.025,
        outcome: str = "",
    ) -> Hypothesis:
        """Non-inferiority with ``margin`` on the unfavourable side (default: 95% CI)."""
        lower, upper = (margin, None) if higher_is_better else (None, margin)
        return cls(
            "non_inferiority", measure, lower, upper, higher_is_better, alpha, outcome
        )

    def _where(self, key: str) -> str:
        return f"outcome {self.outcome!r}: {key}" if self.outcome else key

    def __post_init__(self) -> None:
        if self.kind not in ("equivalence", "non_inferiority"):
            raise ConfigError(
                f"{self._where('hypothesis')}: {self.kind!r} is not known; "
                "use 'equivalence' or 'non_inferiority'"
            )
        if self.measure not in MEASURES:
            raise ConfigError(
                f"{self._where('measure')}: {self.measure!r} is not known; use one of "
                + ", ".join(MEASURES)
            )
        if not isinstance(self.higher_is_better, bool):
            raise ConfigError(
                f"{self._where('higher_is_better')} must be true or false, got "
                f"{self.higher_is_better!r}"
            )
        alpha = _finite(self.alpha, self._where("alpha"))
        if not 0 < alpha < 0.5:
            raise ConfigError(
                f"{self._where('alpha')} must be in (0, 0.5), got {self.alpha}; use "
                "0.05 (TOST on a 90% CI) or 0.025 (non-inferiority on a 95% CI)"
            )
        for key in ("lower", "upper"):
            value = getattr(self, key)
            if value is not None:
                name = "margin" if self.kind == "non_inferiority" else key
                object.__setattr__(self, key, _finite(value, self._where(name)))
        if self.kind == "equivalence":
            self._check_equivalence()
        else:
            self._check_non_inferiority()

    @property
    def scale(self) -> Scale:
        """The natural scale of the measure's margins."""
        return MEASURES[self.measure]

    @property
    def null(self) -> float:
        """No difference on the natural scale: 0 or 1."""
        return NULL[self.scale]

    @property
    def margin(self) -> float:
        """The non-inferiority margin (for equivalence: an error)."""
        if self.kind != "non_inferiority":
            raise ConfigError(
                f"{self._where('margin')}: an equivalence hypothesis has two margins, "
                "read lower and upper"
            )
        value = self.lower if self.higher_is_better else self.upper
        assert value is not None
        return value

    def _ratio_positive(self, key: str, value: float) -> None:
        if self.scale == "ratio" and value <= 0:
            raise ConfigError(
                f"{self._where(key)} = {value:g}: a margin of {self.measure} is a "
                "ratio and must be > 0 (e.g. 0.8 or 1.25)"
            )

    def _check_equivalence(self) -> None:
        if self.lower is None or self.upper is None:
            raise ConfigError(
                f"{self._where('lower' if self.lower is None else 'upper')} is missing: "
                "an equivalence hypothesis needs both margins"
            )
        self._ratio_positive("lower", self.lower)
        self._ratio_positive("upper", self.upper)
        if self.lower >= self.upper:
            raise ConfigError(
                f"{self._where('lower')} = {self.lower:g} must be below upper = "
                f"{self.upper:g}; swap them"
            )
        example = {"ratio": ("0.8", "1.25"), "difference": ("-0.1", "0.1")}[self.scale]
        if self.lower >= self.null:
            raise ConfigError(
                f"{self._where('lower')} = {self.lower:g} is on the wrong side of the "
                f"null {self.null:g} of {self.measure}: it must be below it "
                f"(e.g. {example[0]})"
            )
        if self.upper <= self.null:
            raise ConfigError(
                f"{self._where('upper')} = {self.upper:g} is on the wrong side of the "
                f"null {self.null:g} of {self.measure}: it must be above it "
                f"(e.g. {example[1]})"
            )

    def _check_non_inferiority(self) -> None:
        side, other = (
            ("lower", "upper") if self.higher_is_better else ("upper", "lower")
        )
        if getattr(self, other) is not None:
            better = "higher" if self.higher_is_better else "lower"
            raise ConfigError(
                f"{self._where(other)}: a non-inferiority hypothesis where {better} "
                f"is better has only a {side} margin; leave out {other}"
            )
        value = getattr(self, side)
        if value is None:
            raise ConfigError(
                f"{self._where('margin')} is missing: non-inferiority needs a margin"
            )
        self._ratio_positive("margin", value)
        if self.higher_is_better and value >= self.null:
            example = {"ratio": "0.8", "difference": "-0.1"}[self.scale]
            raise ConfigError(
                f"{self._where('margin')} = {value:g} is on the wrong side of the null "
                f"{self.null:g}: for {self.measure} where higher is better it must be "
                f"below {self.null:g} (e.g. {example})"
            )
        if not self.higher_is_better and value <= self.null:
            example = {"ratio": "1.25", "difference": "0.1"}[self.scale]
            raise ConfigError(
                f"{self._where('margin')} = {value:g} is on the wrong side of the null "
                f"{self.null:g}: for {self.measure} where higher is worse it must be "
                f"above {self.null:g} (e.g. {example})"
            )


# -- effects -------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval on the natural scale."""

    level: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Effect:
    """One effect measure of the alternative (group) versus the standard (reference).

    Attributes
    ----------
    measure, method : the measure (:data:`MEASURES`) and how it was computed
        (``"pooled t"``, ``"Welch t"``, ``"crude"``, ``"Mantel-Haenszel"``, ...).
    estimate : on the natural scale (a ratio for ratios).
    log_estimate : on the analysis scale: the log of a ratio, else the estimate.
    se : the standard error on the analysis scale.
    df : degrees of freedom of a t-based measure; None for normal theory.
    alpha : the level the CIs were made for.
    tost_ci : the ``1 - 2 alpha`` CI (the TOST / one-sided-alpha interval).
    ci : the ``1 - alpha`` CI.
    n_group, n_reference : patients in each arm (after leaving out strata without
        both arms).
    continuity_correction : True when 0.5 was added to the cells of a table with a
        zero cell.
    notes : what was done to the data (strata left out, corrections).
    """

    measure: str
    method: str
    estimate: float
    log_estimate: float
    se: float
    df: float | None
    alpha: float
    tost_ci: Interval
    ci: Interval
    n_group: float | None = None
    n_reference: float | None = None
    continuity_correction: bool = False
    notes: tuple[str, ...] = ()

    @property
    def scale(self) -> Scale:
        """The natural scale of the measure."""
        return MEASURES[self.measure]


def _critical(level: float, df: float | None) -> float:
    """The ``level`` quantile of t(df), or of the standard normal when df is None."""
    if df is None:
        return normal_quantile(level)
    from scipy.special import stdtrit  # lazy: scipy.special costs ~0.5 s to import

    return float(stdtrit(df, level))


def _sf(t: float, df: float | None) -> float:
    """``P(T > t)`` for t(df), or for the standard normal when df is None."""
    if df is None:
        return 0.5 * math.erfc(t / math.sqrt(2))
    from scipy.special import stdtr

    return float(stdtr(df, -t))


def _check_alpha(alpha: float) -> float:
    value = _finite(alpha, "alpha")
    if not 0 < value < 0.5:
        raise ConfigError(f"alpha must be in (0, 0.5), got {alpha}; use e.g. 0.05")
    return value


def _effect(
    measure: str,
    method: str,
    log_estimate: float,
    se: float,
    df: float | None,
    alpha: float,
    **extra: object,
) -> Effect:
    """Build an :class:`Effect` from the analysis-scale estimate and SE."""
    alpha = _check_alpha(alpha)
    back = math.exp if MEASURES[measure] == "ratio" else float

    def interval(level: float) -> Interval:
        q = _critical(1 - (1 - level) / 2, df)
        return Interval(level, back(log_estimate - q * se), back(log_estimate + q * se))

    return Effect(
        measure=measure,
        method=method,
        estimate=back(log_estimate),
        log_estimate=log_estimate,
        se=se,
        df=df,
        alpha=alpha,
        tost_ci=interval(1 - 2 * alpha),
        ci=interval(1 - alpha),
        **extra,  # type: ignore[arg-type]
    )


# -- continuous outcomes: moments -------------------------------------------------------
class ArmSummary(Protocol):
    """What the t-based measures read of an arm: any moments with these attributes.

    :class:`pht.algorithms.means.Moments` (what stations release) qualifies.
    """

    @property
    def n(self) -> int:
        """Patients in the arm."""
        ...

    @property
    def mean(self) -> float:
        """Mean of the values (of their logs when ``log``)."""
        ...

    @property
    def variance(self) -> float:
        """Sample variance (``n - 1`` denominator)."""
        ...

    @property
    def log(self) -> bool:
        """Whether the moments are of log values."""
        ...


def _t_effect(
    measure: str,
    group: ArmSummary,
    reference: ArmSummary,
    variance: Variance,
    alpha: float,
    arms: tuple[str, str],
) -> Effect:
    for moments, arm in zip((group, reference), arms, strict=True):
        if moments.n == 0:
            raise DataError(
                f"arm {arm!r} has no patients: {measure} needs both arms (check the "
                "regimen levels and the stations' inclusion)"
            )
        if moments.n < 2:
            raise DataError(
                f"arm {arm!r} has 1 patient: {measure} needs at least 2 per arm for "
                "a variance"
            )
    n1, n2 = group.n, reference.n
    v1, v2 = group.variance, reference.variance
    diff = group.mean - reference.mean
    if variance == "pooled":
        df: float = n1 + n2 - 2
        pooled = ((n1 - 1) * v1 + (n2 - 1) * v2) / df
        se = math.sqrt(pooled * (1 / n1 + 1 / n2))
        method = "pooled t"
    elif variance == "welch":
        a, b = v1 / n1, v2 / n2
        se = math.sqrt(a + b)
        df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1)) if se > 0 else 0.0
        method = "Welch t"
    else:
        raise ConfigError(f"variance must be 'pooled' or 'welch', got {variance!r}")
    if not se > 0:
        raise DataError(
            f"{measure}: every value is the same in both arms, so the SE is 0 and no "
            "CI exists (check the outcome column)"
        )
    return _effect(measure, method, diff, se, df, alpha, n_group=n1, n_reference=n2)


def mean_difference(
    group: ArmSummary,
    reference: ArmSummary,
    *,
    variance: Variance = "welch",
    alpha: float = 0.05,
    arms: tuple[str, str] = ("group", "reference"),
) -> Effect:
    """Difference of means ``mean(group) - mean(reference)`` with a t CI.

    ``variance="pooled"``: ``se = s_p sqrt(1/n1 + 1/n2)`` with
    ``s_p^2 = ((n1-1) s1^2 + (n2-1) s2^2) / (n1+n2-2)`` and ``df = n1+n2-2``.
    ``variance="welch"`` (default): ``se = sqrt(s1^2/n1 + s2^2/n2)`` and the
    Welch-Satterthwaite df. TOST on it equals statsmodels ``ttost_ind`` with
    ``usevar="pooled"`` / ``"unequal"``. ``arms`` names the arms in errors.
    """
    if group.log or reference.log:
        raise ConfigError(
            "mean_difference needs moments on the raw scale, got log-scale moments; "
            "use ratio_of_geometric_means for them"
        )
    return _t_effect("mean_difference", group, reference, variance, alpha, arms)


def ratio_of_geometric_means(
    group: ArmSummary,
    reference: ArmSummary,
    *,
    variance: Variance = "welch",
    alpha: float = 0.05,
    arms: tuple[str, str] = ("group", "reference"),
) -> Effect:
    """Ratio of geometric means ``exp(mean log group - mean log reference)``.

    The t analysis of :func:`mean_difference` on the log values, back-transformed;
    margins are ratios (e.g. 0.8 and 1.25, the bioequivalence limits).
    """
    if not (group.log and reference.log):
        raise ConfigError(
            "ratio_of_geometric_means needs moments of log values (Moments(log=True));"
            " ask the stations for the means aggregate on the log scale"
        )
    return _t_effect(
        "ratio_of_geometric_means", group, reference, variance, alpha, arms
    )


# -- binary outcomes: 2x2 counts ---------------------------------------------------------
@dataclass(frozen=True)
class BinaryCounts:
    """A 2x2 table of one stratum (a station): events and patients per arm.

    ``stratum`` names the stratum in notes and errors. Tables add up over stations
    (``a + b``) into the crude table.
    """

    events_group: int
    n_group: int
    events_reference: int
    n_reference: int
    stratum: str = ""

    def __post_init__(self) -> None:
        where = f"stratum {self.stratum!r}: " if self.stratum else ""
        for key in ("events_group", "n_group", "events_reference", "n_reference"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise DataError(f"{where}{key} must be a whole number, got {value!r}")
            if value < 0:
                raise DataError(f"{where}{key} must be >= 0, got {value}")
            object.__setattr__(self, key, int(value))
        for arm in ("group", "reference"):
            events, n = getattr(self, f"events_{arm}"), getattr(self, f"n_{arm}")
            if events > n:
                raise DataError(
                    f"{where}events_{arm} = {events} exceeds n_{arm} = {n} (check "
                    "the station's counts)"
                )

    def __add__(self, other: BinaryCounts) -> BinaryCounts:
        return BinaryCounts(
            self.events_group + other.events_group,
            self.n_group + other.n_group,
            self.events_reference + other.events_reference,
            self.n_reference + other.n_reference,
            "pooled",
        )

    def cells(self) -> tuple[int, int, int, int]:
        """``(a, b, c, d)``: group events, group non-events, reference events, rest."""
        return (
            self.events_group,
            self.n_group - self.events_group,
            self.events_reference,
            self.n_reference - self.events_reference,
        )


def _require_arms(
    table: BinaryCounts, measure: str, arms: tuple[str, str], where: str = ""
) -> None:
    for n, arm in ((table.n_group, arms[0]), (table.n_reference, arms[1])):
        if n == 0:
            raise DataError(
                f"arm {arm!r} has no patients{where}: {measure} needs both arms "
                "(check the regimen levels and the stations' inclusion)"
            )


def _cells(table: BinaryCounts) -> tuple[npt.NDArray[np.float64], bool]:
    cells = np.array(table.cells(), dtype=np.float64)
    if np.any(cells == 0):
        return cells + CONTINUITY, True
    return cells, False


_CORRECTION_NOTE = "0.5 added to every cell of a table with a zero cell"


def risk_difference(
    table: BinaryCounts,
    *,
    alpha: float = 0.05,
    arms: tuple[str, str] = ("group", "reference"),
) -> Effect:
    """Crude risk difference ``p1 - p0`` with the Wald SE.

    ``se = sqrt(p1 (1 - p1) / n1 + p0 (1 - p0) / n0)``; no continuity correction.
    Raises DataError when an arm is empty or both risks are 0 or 1 (SE 0).
    """
    _require_arms(table, "risk_difference", arms)
    p1 = table.events_group / table.n_group
    p0 = table.events_reference / table.n_reference
    se = math.sqrt(p1 * (1 - p1) / table.n_group + p0 * (1 - p0) / table.n_reference)
    if not se > 0:
        raise DataError(
            f"risk_difference: the risks are {p1:g} and {p0:g} (all or no events in "
            "both arms), so the SE is 0 and no CI exists; use more patients or another "
            "outcome"
        )
    return _effect(
        "risk_difference",
        "crude",
        p1 - p0,
        se,
        None,
        alpha,
        n_group=table.n_group,
        n_reference=table.n_reference,
    )


def risk_ratio(
    table: BinaryCounts,
    *,
    alpha: float = 0.05,
    arms: tuple[str, str] = ("group", "reference"),
) -> Effect:
    """Crude risk ratio ``p1 / p0``; SE of its log ``sqrt(1/a - 1/n1 + 1/c - 1/n0)``.

    A table with a zero cell gets 0.5 added to each cell first (as statsmodels
    ``Table2x2(shift_zeros=True)``), and the effect says so.
    """
    _require_arms(table, "risk_ratio", arms)
    (a, b, c, d), corrected = _cells(table)
    n1, n0 = a + b, c + d
    log_rr = math.log(a / n1) - math.log(c / n0)
    se = math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)
    return _effect(
        "risk_ratio",
        "crude",
        log_rr,
        se,
        None,
        alpha,
        n_group=table.n_group,
        n_reference=table.n_reference,
        continuity_correction=corrected,
        notes=(_CORRECTION_NOTE,) if corrected else (),
    )


def odds_ratio(
    table: BinaryCounts,
    *,
    alpha: float = 0.05,
    arms: tuple[str, str] = ("group", "reference"),
) -> Effect:
    """Crude odds ratio ``a d / (b c)``; Woolf SE of its log ``sqrt(1/a+1/b+1/c+1/d)``.

    A table with a zero cell gets 0.5 added to each cell first, as in
    :func:`risk_ratio`.
    """
    _require_arms(table, "odds_ratio", arms)
    (a, b, c, d), corrected = _cells(table)
    log_or = math.log(a) + math.log(d) - math.log(b) - math.log(c)
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return _effect(
        "odds_ratio",
        "crude",
        log_or,
        se,
        None,
        alpha,
        n_group=table.n_group,
        n_reference=table.n_reference,
        continuity_correction=corrected,
        notes=(_CORRECTION_NOTE,) if corrected else (),
    )


@dataclass(frozen=True)
class _Strata:
    """The informative strata as float cell arrays, with what was left out."""

    a: npt.NDArray[np.float64]
    b: npt.NDArray[np.float64]
    c: npt.NDArray[np.float64]
    d: npt.NDArray[np.float64]
    names: tuple[str, ...]
    dropped: tuple[str, ...] = ()
    corrected: tuple[str, ...] = field(default=())

    @property
    def n1(self) -> npt.NDArray[np.float64]:
        return self.a + self.b

    @property
    def n0(self) -> npt.NDArray[np.float64]:
        return self.c + self.d

    @property
    def n(self) -> npt.NDArray[np.float64]:
        return self.a + self.b + self.c + self.d

    def shifted(self) -> _Strata:
        """Add 0.5 to every cell of the strata with a zero cell."""
        zero = (self.a == 0) | (self.b == 0) | (self.c == 0) | (self.d == 0)
        s = np.where(zero, CONTINUITY, 0.0)
        return _Strata(
            self.a + s,
            self.b + s,
            self.c + s,
            self.d + s,
            self.names,
            self.dropped,
            tuple(n for n, z in zip(self.names, zero, strict=True) if z),
        )

    def notes(self) -> tuple[str, ...]:
        out = []
        if self.dropped:
            out.append(
                "strata without patients in both arms left out: "
                + ", ".join(self.dropped)
            )
        if self.corrected:
            out.append(
                "0.5 added to every cell of the strata with a zero cell: "
                + ", ".join(self.corrected)
            )
        return tuple(out)


def _strata(
    tables: Iterable[BinaryCounts], measure: str, arms: tuple[str, str]
) -> _Strata:
    tables = list(tables)
    if not tables:
        raise DataError(f"{measure}: no strata given; pass one table per station")
    names = [t.stratum or f"#{i + 1}" for i, t in enumerate(tables)]
    total = tables[0]
    for t in tables[1:]:
        total = total + t
    _require_arms(total, measure, arms, " in any stratum")
    keep = [t.n_group > 0 and t.n_reference > 0 for t in tables]
    if not any(keep):
        raise DataError(
            f"{measure}: no stratum has patients in both arms {arms[0]!r} and "
            f"{arms[1]!r}; Mantel-Haenszel needs at least one (use the crude measure)"
        )
    cells = np.array(
        [t.cells() for t, k in zip(tables, keep, strict=True) if k], dtype=np.float64
    )
    return _Strata(
        cells[:, 0],
        cells[:, 1],
        cells[:, 2],
        cells[:, 3],
        tuple(n for n, k in zip(names, keep, strict=True) if k),
        tuple(n for n, k in zip(names, keep, strict=True) if not k),
    )


def _mh_extra(s: _Strata) -> dict[str, object]:
    return {
        "n_group": float(s.n1.sum()),
        "n_reference": float(s.n0.sum()),
        "continuity_correction": bool(s.corrected),
        "notes": s.notes(),
    }


def mantel_haenszel_odds_ratio(
    tables: Sequence[BinaryCounts],
    *,
    alpha: float = 0.05,
    arms: tuple[str, str] = ("group", "reference"),
) -> Effect:
    """Mantel-Haenszel odds ratio over strata, Robins-Breslow-Greenland variance.

    ``OR = sum R_k / sum S_k`` with ``R = a d / N``, ``S = b c / N``; with
    ``P = (a + d) / N`` and ``Q = (b + c) / N``,
    ``var(log OR) = sum P R / (2 (sum R)^2) + sum (P S + Q R) / (2 sum R sum S)
    + sum Q S / (2 (sum S)^2)`` (Robins, Breslow and Greenland 1986). Equals
    statsmodels ``StratifiedTable.oddsratio_pooled`` and ``logodds_pooled_se``.

    Strata without patients in one arm carry no information and are left out (named
    in ``notes``). Zero cells need no correction unless ``sum R`` or ``sum S`` is 0;
    then 0.5 is added to every cell of each stratum with a zero cell (as
    ``StratifiedTable(shift_zeros=True)``) and the effect says so.
    """
    s = _strata(tables, "odds_ratio", arms)
    if not (np.sum(s.a * s.d) > 0 and np.sum(s.b * s.c) > 0):
        s = s.shifted()
    n = s.n
    r, q_ = s.a * s.d / n, s.b * s.c / n
    p, q = (s.a + s.d) / n, (s.b + s.c) / n
    sr, ss = float(r.sum()), float(q_.sum())
    var = (
        float(np.sum(p * r)) / (2 * sr * sr)
        + float(np.sum(p * q_ + q * r)) / (2 * sr * ss)
        + float(np.sum(q * q_)) / (2 * ss * ss)
    )
    return _effect(
        "odds_ratio",
        "Mantel-Haenszel",
        math.log(sr / ss),
        math.sqrt(var),
        None,
        alpha,
        **_mh_extra(s),
    )


def mantel_haenszel_risk_ratio(
    tables: Sequence[BinaryCounts],
    *,
    alpha: float = 0.05,
    arms: tuple[str, str] = ("group", "reference"),
) -> Effect:
    """Mantel-Haenszel risk ratio over strata, Greenland-Robins variance.

    ``RR = sum a n0 / N / sum c n1 / N``;
    ``var(log RR) = sum (n1 n0 (a + c) / N - a c) / N
    / (sum a n0 / N * sum c n1 / N)`` (Greenland and Robins 1985). Equals statsmodels
    ``StratifiedTable.riskratio_pooled``; with one stratum the variance is the crude
    one of :func:`risk_ratio`. Strata and zero cells as in
    :func:`mantel_haenszel_odds_ratio` (corrected when a sum is 0).
    """
    s = _strata(tables, "risk_ratio", arms)
    if not (np.sum(s.a * s.n0) > 0 and np.sum(s.c * s.n1) > 0):
        s = s.shifted()
    n, n1, n0 = s.n, s.n1, s.n0
    top, bottom = float(np.sum(s.a * n0 / n)), float(np.sum(s.c * n1 / n))
    var = float(np.sum((n1 * n0 * (s.a + s.c) / n - s.a * s.c) / n)) / (top * bottom)
    return _effect(
        "risk_ratio",
        "Mantel-Haenszel",
        math.log(top / bottom),
        math.sqrt(var),
        None,
        alpha,
        **_mh_extra(s),
    )


def mantel_haenszel_risk_difference(
    tables: Sequence[BinaryCounts],
    *,
    alpha: float = 0.05,
    arms: tuple[str, str] = ("group", "reference"),
) -> Effect:
    """Mantel-Haenszel risk difference over strata, Greenland-Robins variance.

    ``RD = sum (a n0 - c n1) / N / sum n1 n0 / N``;
    ``var = sum (a b n0^3 + c d n1^3) / (n1 n0 N^2) / (sum n1 n0 / N)^2``
    (Greenland and Robins 1985; the Cochrane Handbook's formula). With one stratum it
    is the crude Wald risk difference. No continuity correction; strata without both
    arms are left out.
    """
    s = _strata(tables, "risk_difference", arms)
    n, n1, n0 = s.n, s.n1, s.n0
    w = float(np.sum(n1 * n0 / n))
    rd = float(np.sum((s.a * n0 - s.c * n1) / n)) / w
    var = float(np.sum((s.a * s.b * n0**3 + s.c * s.d * n1**3) / (n1 * n0 * n * n)))
    var /= w * w
    if not var > 0:
        raise DataError(
            "risk_difference: all or no events in both arms of every stratum, so the "
            "SE is 0 and no CI exists; use more patients or another outcome"
        )
    return _effect(
        "risk_difference",
        "Mantel-Haenszel",
        rd,
        math.sqrt(var),
        None,
        alpha,
        **_mh_extra(s),
    )


# -- estimates from models ----------------------------------------------------------------
def _given(measure: str, method: str, value: float, se: float, alpha: float) -> Effect:
    value = _finite(value, f"{measure} estimate")
    se = _finite(se, f"{measure} standard error")
    if not se > 0:
        raise DataError(
            f"{measure}: the standard error must be > 0, got {se:g} (check the fit)"
        )
    return _effect(measure, method, value, se, None, alpha)


def from_model(
    measure: str, coef: float, se: float, *, alpha: float = 0.05, method: str = "GLM"
) -> Effect:
    """The effect of a model coefficient, with normal theory as the model's Wald CI.

    ``coef`` is a log ratio for ratio measures (odds, risk, hazard), a difference
    otherwise (an identity-link risk difference, a gaussian mean difference).
    """
    if measure not in MEASURES:
        raise ConfigError(
            f"measure {measure!r} is not known; use one of {', '.join(MEASURES)}"
        )
    return _given(measure, method, coef, se, alpha)


def hazard_ratio(
    log_hr: float, se: float, *, alpha: float = 0.05, method: str = "Cox"
) -> Effect:
    """A hazard ratio from its log and the SE of the log (normal theory)."""
    return _given("hazard_ratio", method, log_hr, se, alpha)


def hazard_ratio_from_cox(
    result: CoxResult, coefficient: str, *, alpha: float = 0.05, method: str = "Cox"
) -> Effect:
    """The hazard ratio of one coefficient of a pooled Cox fit (e.g. the regimen's)."""
    for c in result.coefficients:
        if c.name == coefficient:
            return hazard_ratio(c.coef, c.se, alpha=alpha, method=method)
    raise ConfigError(
        f"coefficient {coefficient!r} is not in the Cox model; it has "
        + ", ".join(repr(c.name) for c in result.coefficients)
    )


def rmst_difference(
    difference: float, se: float, *, alpha: float = 0.05, method: str = "Kaplan-Meier"
) -> Effect:
    """An RMST difference (group - reference, in days) and its SE."""
    return _given("rmst_difference", method, difference, se, alpha)


def rmst_difference_from_km(difference: Difference, *, alpha: float = 0.05) -> Effect:
    """The effect of a :class:`pht.algorithms.km.Difference` of RMSTs."""
    return rmst_difference(difference.difference, difference.se, alpha=alpha)


# -- verdicts -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The verdict on one outcome with the numbers that decided it.

    Every rule reads the ``1 - 2 alpha`` CI ``[L, U]`` (one-sided tests at level
    ``alpha``), compared with the margins on the natural scale; "favourable" means
    higher when ``higher_is_better`` and lower otherwise (CONSORT extension for
    non-inferiority and equivalence trials, Piaggio et al. 2012, figure 1).

    Equivalence, margins ``lower < null < upper``, in this order:

    1. **equivalent**: ``lower < L`` and ``U < upper`` (both TOST p-values < alpha);
    2. **superior**: the CI excludes the null on the favourable side
       (``L > null`` if higher is better, ``U < null`` otherwise);
    3. **inferior**: the CI lies entirely beyond the margin on the unfavourable side
       (``U < lower`` if higher is better, ``L > upper`` otherwise);
    4. **inconclusive**: otherwise.

    Non-inferiority with margin ``M`` on the unfavourable side, in this order:

    1. **superior**: the CI excludes the null on the favourable side;
    2. **non-inferior**: the bound on the unfavourable side is within the margin
       (``L > M`` if higher is better, e.g. an RMST difference; ``U < M`` if higher
       is worse, e.g. the upper bound of an HR below 1.25), i.e. one-sided p < alpha
       (this includes a CI that excludes the null on the unfavourable side but stays
       within the margin: non-inferior, yet worse);
    3. **inferior**: the CI lies entirely beyond the margin (``U < M`` if higher is
       better, ``L > M`` otherwise);
    4. **inconclusive**: otherwise (the CI contains the margin).

    Attributes
    ----------
    p_lower : one-sided p of ``H0: effect <= lower`` (None without a lower margin).
    p_upper : one-sided p of ``H0: effect >= upper`` (None without an upper margin).
    p_value : the decisive p: ``max(p_lower, p_upper)`` for TOST, the one margin's
        for non-inferiority.
    p_superiority : one-sided p of ``H0: no benefit`` (effect at or on the
        unfavourable side of the null).
    rule : the comparison that decided it, in words.
    """

    outcome: str
    verdict: Outcome
    kind: Kind
    measure: str
    method: str
    estimate: float
    level: float
    ci_lower: float
    ci_upper: float
    lower: float | None
    upper: float | None
    null: float
    higher_is_better: bool
    alpha: float
    p_lower: float | None
    p_upper: float | None
    p_value: float
    p_superiority: float
    rule: str


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def verdict(effect: Effect, hypothesis: Hypothesis) -> Verdict:
    """Judge ``effect`` against ``hypothesis`` by the rules of :class:`Verdict`.

    Raises ConfigError when the effect is of another measure or was computed at
    another ``alpha`` than the hypothesis states.
    """
    where = f"outcome {hypothesis.outcome!r}: " if hypothesis.outcome else ""
    if effect.measure != hypothesis.measure:
        raise ConfigError(
            f"{where}the hypothesis is about {hypothesis.measure} but the effect is a "
            f"{effect.measure}; give margins for {effect.measure} or compute "
            f"{hypothesis.measure}"
        )
    if not math.isclose(effect.alpha, hypothesis.alpha, rel_tol=0, abs_tol=1e-15):
        raise ConfigError(
            f"{where}the effect was computed at alpha = {effect.alpha:g} but the "
            f"hypothesis has alpha = {hypothesis.alpha:g}; compute the effect with "
            f"alpha={hypothesis.alpha:g}"
        )
    to_analysis = math.log if hypothesis.scale == "ratio" else float
    t_lower = t_upper = None
    if hypothesis.lower is not None:
        t_lower = (effect.log_estimate - to_analysis(hypothesis.lower)) / effect.se
    if hypothesis.upper is not None:
        t_upper = (effect.log_estimate - to_analysis(hypothesis.upper)) / effect.se
    p_lower = None if t_lower is None else _sf(t_lower, effect.df)
    p_upper = None if t_upper is None else _sf(-t_upper, effect.df)
    t_null = effect.log_estimate / effect.se  # the null is 0 on the analysis scale
    better = hypothesis.higher_is_better
    p_superiority = _sf(t_null if better else -t_null, effect.df)

    low, high = effect.tost_ci.lower, effect.tost_ci.upper
    null = hypothesis.null
    level = effect.tost_ci.level
    ci = f"{level:.0%} CI [{_fmt(low)}, {_fmt(high)}]"
    favourable = low > null if better else high < null
    favourable_rule = (
        f"{ci} lies above the null {_fmt(null)}"
        if better
        else f"{ci} lies below the null {_fmt(null)}"
    )
    outcome: Outcome
    if hypothesis.kind == "equivalence":
        lo, hi = hypothesis.lower, hypothesis.upper
        assert lo is not None and hi is not None and p_lower is not None
        assert p_upper is not None
        p_value = max(p_lower, p_upper)
        if lo < low and high < hi:
            outcome = "equivalent"
            rule = f"{ci} lies inside the margins ({_fmt(lo)}, {_fmt(hi)})"
        elif favourable:
            outcome, rule = "superior", favourable_rule + ", outside the margins"
        elif (high < lo) if better else (low > hi):
            outcome = "inferior"
            margin = lo if better else hi
            rule = f"{ci} lies beyond the unfavourable margin {_fmt(margin)}"
        else:
            outcome = "inconclusive"
            rule = f"{ci} crosses a margin ({_fmt(lo)}, {_fmt(hi)})"
    else:
        margin = hypothesis.margin
        decisive = p_lower if better else p_upper
        assert decisive is not None
        p_value = decisive
        within = low > margin if better else high < margin
        beyond = high < margin if better else low > margin
        bound = "lower" if better else "upper"
        if favourable:
            outcome, rule = "superior", favourable_rule
        elif within:
            outcome = "non-inferior"
            side = ">" if better else "<"
            rule = (
                f"{bound} bound {_fmt(low if better else high)} of the {ci} "
                f"{side} margin {_fmt(margin)}"
            )
        elif beyond:
            outcome = "inferior"
            rule = f"{ci} lies entirely beyond the margin {_fmt(margin)}"
        else:
            outcome = "inconclusive"
            rule = f"{ci} contains the margin {_fmt(margin)}"
    return Verdict(
        outcome=hypothesis.outcome,
        verdict=outcome,
        kind=hypothesis.kind,
        measure=effect.measure,
        method=effect.method,
        estimate=effect.estimate,
        level=level,
        ci_lower=low,
        ci_upper=high,
        lower=hypothesis.lower,
        upper=hypothesis.upper,
        null=null,
        higher_is_better=better,
        alpha=hypothesis.alpha,
        p_lower=p_lower,
        p_upper=p_upper,
        p_value=float(p_value),
        p_superiority=p_superiority,
        rule=rule,
    )
