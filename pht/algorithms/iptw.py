"""Inverse probability of treatment weighting: weights, balance and truncation.

Pure kernels for the ``iptw`` train (the station side is
:mod:`pht.algorithms.iptw_local`, the orchestrator's :mod:`pht.trains.iptw`).

Propensity score ``e = P(T = 1 | x)`` from the pooled logistic fit (``expit(x'b)``).
Weights per patient, with ``t`` the treatment indicator::

    ATE  w = t / e + (1 - t) / (1 - e)
    ATT  w = t + (1 - t) e / (1 - e)

*Stabilised* (``P`` the pooled marginal probability of treatment, ``sum t / n``):
ATE ``w = t P / e + (1 - t) (1 - P) / (1 - e)``; ATT keeps the treated at 1 and
multiplies the controls' odds by ``(1 - P) / P`` (their weights then sum to about the
number of controls). *Truncated* at a cut-off ``c``: ``min(w, c)``.

Balance (:func:`balance`): per design column and arm the unweighted and weighted
means; the standardised mean difference ``(m1 - m0) / sqrt((s1^2 + s0^2) / 2)`` with
the **unweighted** sample variances ``s^2`` (``n - 1``) of each arm in the
denominator both before and after weighting (cobalt's ``s.d.denom = "pooled"``), so
that a change in the SMD is a change in the means only. The effective sample size of
an arm is Kish's ``(sum w)^2 / sum w^2``.

Truncation at a percentile of the pooled weights without pooling rows
(:func:`choose_cutoff`): each station counts its weights above every point of the
fixed geometric :data:`GRID`; a count is released only as 0 or at least k (else
null). The ``q``-th percentile is located at the smallest grid point ``c`` with at
most ``(1 - q) n`` pooled weights above it; a null counts as the most it can be (the
station's count at the nearest lower grid point), so the cut-off found is never
below the one exact counts give: weights are truncated less, never more.

Example
-------
>>> import numpy as np
>>> t = np.array([1.0, 1.0, 0.0, 0.0])
>>> e = np.array([0.5, 0.8, 0.2, 0.5])
>>> weights(t, e, "ATE").tolist()
[2.0, 1.25, 1.25, 2.0]
>>> weights(t, e, "ATT").tolist()
[1.0, 1.0, 0.25, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pht.errors import DataError

FloatArray = npt.NDArray[np.float64]
Estimand = Literal["ATE", "ATT"]
ESTIMANDS: tuple[str, ...] = ("ATE", "ATT")

EXTREME: tuple[float, ...] = (10.0, 20.0, 50.0)
"""Cut-offs of the extreme-weights signal: per arm, patients with a weight above."""

GRID: tuple[float, ...] = tuple(2.0 ** (j / 4) for j in range(-8, 41))
"""Truncation cut-offs: ``2^(j/4)`` from 0.25 to 1024 (about 19% apart)."""


def expit(eta: FloatArray) -> FloatArray:
    """``1 / (1 + exp(-eta))`` without overflow."""
    return np.asarray(np.exp(-np.logaddexp(0.0, -eta)), dtype=np.float64)


def weights(
    t: npt.ArrayLike,
    e: npt.ArrayLike,
    estimand: str,
    *,
    marginal: float | None = None,
    cutoff: float | None = None,
) -> FloatArray:
    """IPT weights for treatment indicators ``t`` and propensity scores ``e``.

    ``marginal`` (the pooled ``P(T = 1)``) stabilises them; ``cutoff`` truncates
    them (see the module docstring). Raises :class:`DataError` for a propensity
    score of exactly 0 or 1 (a patient who could only have had one treatment).
    """
    t = np.asarray(t, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    if np.any((e <= 0) | (e >= 1)):
        raise DataError(
            "a propensity score is 0 or 1 in floating point: the covariates (almost) "
            "determine the treatment; drop or merge the covariates that do"
        )
    treated = t == 1
    if estimand == "ATE":
        w = np.where(treated, 1.0 / e, 1.0 / (1.0 - e))
        if marginal is not None:
            w = w * np.where(treated, marginal, 1.0 - marginal)
    elif estimand == "ATT":
        w = np.where(treated, 1.0, e / (1.0 - e))
        if marginal is not None:
            w = np.where(treated, 1.0, w * (1.0 - marginal) / marginal)
    else:
        raise DataError(f"estimand '{estimand}' is not one of {', '.join(ESTIMANDS)}")
    if cutoff is not None:
        w = np.minimum(w, cutoff)
    return np.asarray(w, dtype=np.float64)


def released(count: int, k: int) -> int | None:
    """A count as it may leave a station: 0 or at least ``k``, else None."""
    return int(count) if count == 0 or count >= k else None


@dataclass(frozen=True)
class ArmSums:
    """One arm's sums at a station (they add over stations).

    Attributes
    ----------
    n : patients in the arm
    x_sum, x2_sum : (p,) ``sum x`` and ``sum x^2`` per design column
    w_sum, w2_sum : ``sum w`` and ``sum w^2``
    wx_sum, wx2_sum : (p,) ``sum w x`` and ``sum w x^2`` per design column
    """

    n: int
    x_sum: FloatArray
    x2_sum: FloatArray
    w_sum: float
    w2_sum: float
    wx_sum: FloatArray
    wx2_sum: FloatArray

    def __add__(self, other: ArmSums) -> ArmSums:
        return ArmSums(
            self.n + other.n,
            self.x_sum + other.x_sum,
            self.x2_sum + other.x2_sum,
            self.w_sum + other.w_sum,
            self.w2_sum + other.w2_sum,
            self.wx_sum + other.wx_sum,
            self.wx2_sum + other.wx2_sum,
        )

    @property
    def ess(self) -> float:
        """Kish's effective sample size ``(sum w)^2 / sum w^2``."""
        return self.w_sum**2 / self.w2_sum


def arm_sums(x: FloatArray, w: FloatArray) -> ArmSums:
    """The sums of one arm's rows ``x`` (n, p) with weights ``w``."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    wx = w[:, None] * x
    return ArmSums(
        n=int(x.shape[0]),
        x_sum=x.sum(axis=0),
        x2_sum=(x * x).sum(axis=0),
        w_sum=math.fsum(w),
        w2_sum=math.fsum(w * w),
        wx_sum=wx.sum(axis=0),
        wx2_sum=(wx * x).sum(axis=0),
    )


@dataclass(frozen=True)
class BalanceRow:
    """Balance of one design column: means per arm and SMDs before and after."""

    name: str
    mean_treated: float
    mean_control: float
    mean_treated_weighted: float
    mean_control_weighted: float
    smd_before: float
    smd_after: float
    variance_ratio_before: float | None
    variance_ratio_after: float | None


def _variance(total: float, squares: float, n: float) -> float:
    return (squares - total * total / n) / (n - 1.0)


def _weighted_variance(total: float, squares: float, w: float, w2: float) -> float:
    """Unbiased weighted variance with reliability weights (as cobalt's ``col_w_sd``)."""
    mean = total / w
    return (squares - w * mean * mean) / (w - w2 / w)


def balance(
    names: Sequence[str], treated: ArmSums, control: ArmSums
) -> tuple[BalanceRow, ...]:
    """Standardised mean differences before and after weighting, per design column.

    Denominator ``sqrt((s1^2 + s0^2) / 2)`` from the unweighted variances in both;
    a column constant in both arms has SMD 0. Variance ratios treated/control
    (weighted after weighting; None when the control variance is 0).
    """
    rows = []
    for j, name in enumerate(names):
        m1 = float(treated.x_sum[j]) / treated.n
        m0 = float(control.x_sum[j]) / control.n
        v1 = _variance(float(treated.x_sum[j]), float(treated.x2_sum[j]), treated.n)
        v0 = _variance(float(control.x_sum[j]), float(control.x2_sum[j]), control.n)
        wm1 = float(treated.wx_sum[j]) / treated.w_sum
        wm0 = float(control.wx_sum[j]) / control.w_sum
        wv1 = _weighted_variance(
            float(treated.wx_sum[j]),
            float(treated.wx2_sum[j]),
            treated.w_sum,
            treated.w2_sum,
        )
        wv0 = _weighted_variance(
            float(control.wx_sum[j]),
            float(control.wx2_sum[j]),
            control.w_sum,
            control.w2_sum,
        )
        sd = math.sqrt(max((v1 + v0) / 2.0, 0.0))
        rows.append(
            BalanceRow(
                name=name,
                mean_treated=m1,
                mean_control=m0,
                mean_treated_weighted=wm1,
                mean_control_weighted=wm0,
                smd_before=(m1 - m0) / sd if sd > 0 else 0.0,
                smd_after=(wm1 - wm0) / sd if sd > 0 else 0.0,
                variance_ratio_before=v1 / v0 if v0 > 0 else None,
                variance_ratio_after=wv1 / wv0 if wv0 > 0 else None,
            )
        )
    return tuple(rows)


def pooled_above(
    counts: Sequence[Sequence[int | None]], sizes: Sequence[int]
) -> list[int]:
    """Pooled counts above each grid point, a null read as the most it can be.

    Counts above a higher point cannot exceed those above a lower one, so a null
    (1..k-1) is bounded by the station's count at the nearest lower point it
    released, or by its size ``sizes[s]`` below the grid's first point.
    """
    if not counts or len(counts) != len(sizes):
        raise ValueError("one list of counts and one size per station")
    total = [0] * len(GRID)
    for station, size in zip(counts, sizes, strict=True):
        if len(station) != len(GRID):
            raise ValueError("counts are not on the truncation grid")
        bound = int(size)
        for i, c in enumerate(station):
            if c is not None:
                bound = int(c)
            total[i] += bound
    return total


def choose_cutoff(
    counts: Sequence[Sequence[int | None]], sizes: Sequence[int], q: float
) -> float:
    """The grid point at the pooled ``q``-th percentile of the weights.

    The smallest point of :data:`GRID` with at most ``(1 - q) n`` weights above it
    (nulls as in :func:`pooled_above`: never truncating more than exact counts
    would); the largest grid point when none qualifies.

    >>> choose_cutoff([[1000] * 8 + [60, None] + [0] * 39], [1000], 0.95)
    1.4142135623730951
    """
    above = pooled_above(counts, sizes)
    allowed = (1.0 - q) * sum(int(s) for s in sizes)
    for i, count in enumerate(above):
        if count <= allowed:
            # never at a point where a station withheld its count: the sums over the
            # few patients above it would follow from the truncated and untruncated
            # sums (the next point up where every station released its count)
            for j in range(i, len(GRID)):
                if all(station[j] is not None for station in counts):
                    return GRID[j]
            break
    return GRID[-1]


def above_grid(
    w: FloatArray,
    k: int,
    arms: npt.ArrayLike | None = None,
    share: float = 0.9,
) -> list[int | None]:
    """A station's released counts of weights above each grid point.

    A count is null (withheld) where, in either arm (``arms``: True for the treated),
    1 to k-1 patients have a weight above the point, or one of them holds more than
    ``share`` of the excess ``sum (w - point)``: truncating there would single them
    out (the untruncated minus the truncated sums are sums over them), so
    :func:`choose_cutoff` never picks such a point.
    """
    w = np.asarray(w, dtype=np.float64)
    ordered = np.sort(w)
    # weights strictly above each point: n - (number <= point)
    counts = ordered.size - np.searchsorted(ordered, np.asarray(GRID), side="right")
    groups = (
        [np.ones(w.size, dtype=bool)]
        if arms is None
        else [np.asarray(arms, dtype=bool), ~np.asarray(arms, dtype=bool)]
    )
    out: list[int | None] = []
    for point, count in zip(GRID, counts, strict=True):
        value = released(int(count), k)
        for group in groups:
            excess = w[group & (w > point)] - point
            if 0 < excess.size < k or (
                excess.size and excess.max() > share * float(excess.sum()) > 0
            ):
                value = None
        out.append(value)
    return out


def extreme_counts(w: FloatArray, k: int) -> list[int | None]:
    """Released counts of weights above each of :data:`EXTREME`."""
    w = np.asarray(w, dtype=np.float64)
    return [released(int(np.count_nonzero(w > c)), k) for c in EXTREME]
