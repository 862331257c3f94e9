"""Means of a continuous outcome per group, pooled exactly over stations.

A station releases per group the count ``n``, the sum and the sum of squared
deviations from its own mean (``squares``, i.e. ``sum x^2 - (sum x)^2 / n``: the same
information as ``n``, sum and sum of squares, in a form that loses no digits to
cancellation). :class:`Moments` add with Chan, Golub & LeVeque's (1979) update::

    n = n_a + n_b,  d = mean_b - mean_a,  squares = sq_a + sq_b + d^2 n_a n_b / n

so the pooled mean and variance equal ``numpy.mean`` and ``numpy.var(ddof=1)`` of the
pooled rows to rounding. On the log scale (``log=True``) the moments are those of
``log x`` (every value must be positive), for the ratio of geometric means.

Two groups are compared by :func:`pht.algorithms.equivalence.mean_difference`
(Student's pooled-variance or Welch's t) and
:func:`pht.algorithms.equivalence.ratio_of_geometric_means` (the same on the log
scale, back-transformed), with the CIs an equivalence test reads.

Example
-------
>>> import numpy as np
>>> a = moments(np.array([1.0, 2.0])) + moments(np.array([3.0, 6.0]))
>>> (a.n, a.mean, a.variance)
(4, 3.0, 4.666666666666667)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pht.algorithms.levels import labels
from pht.errors import DataError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squared deviations from the mean of one group (they add).

    ``log`` says whether they are moments of ``log x``.
    """

    n: int
    total: float
    squares: float
    log: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer):
            raise DataError(f"moments: n must be a whole number, got {self.n!r}")
        if self.n < 0:
            raise DataError(f"moments: n must be >= 0, got {self.n}")
        for key in ("total", "squares"):
            if not math.isfinite(float(getattr(self, key))):
                raise DataError(f"moments: {key} must be finite")
        if self.squares < 0:
            raise DataError(
                f"moments: squares = {self.squares:g} is negative; a sum of squared "
                "deviations is >= 0 (check the station's aggregate)"
            )

    @property
    def mean(self) -> float:
        """The mean (NaN for an empty group)."""
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """The sample variance (``ddof=1``; NaN below two values)."""
        return self.squares / (self.n - 1) if self.n > 1 else math.nan

    @property
    def sum_of_squares(self) -> float:
        """``sum x^2``, for a peer that exchanges raw sums."""
        return self.squares + (self.total * self.total / self.n if self.n else 0.0)

    @classmethod
    def from_values(cls, values: npt.ArrayLike, *, log: bool = False) -> Moments:
        """The moments of ``values`` (of their logs with ``log``); see :func:`moments`."""
        return moments(values, log=log)

    def __add__(self, other: Moments) -> Moments:
        if self.log != other.log:
            raise ValueError("cannot add moments on the raw and the log scale")
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        d = other.mean - self.mean
        squares = self.squares + other.squares + d * d * self.n * other.n / n
        return Moments(n, self.total + other.total, squares, self.log)


def from_sums(
    n: int, total: float, sum_of_squares: float, log: bool = False
) -> Moments:
    """Moments from a count, sum and sum of squares (``sum x^2``)."""
    squares = sum_of_squares - (total * total / n if n else 0.0)
    return Moments(int(n), float(total), max(0.0, float(squares)), log)


def moments(
    values: npt.ArrayLike, *, log: bool = False, name: str = "value"
) -> Moments:
    """A station's moments of ``values`` (of ``log(values)`` with ``log=True``).

    Raises :class:`DataError` naming ``name`` for missing or (on the log scale)
    non-positive values.
    """
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise DataError(f"column '{name}' has missing or infinite values; drop them")
    if log:
        if np.any(x <= 0):
            raise DataError(
                f"column '{name}' has values <= 0, so its geometric mean is "
                "undefined; use the mean difference instead"
            )
        x = np.log(x)
    if x.size == 0:
        return Moments(0, 0.0, 0.0, log)
    mean = float(x.mean())
    r = x - mean
    return Moments(int(x.size), math.fsum(x), math.fsum(r * r), log)


def group_moments(
    values: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    log: bool = False,
    name: str = "value",
) -> dict[str, Moments]:
    """Moments per group, keyed by canonical labels (:mod:`pht.algorithms.levels`)."""
    x = np.asarray(values, dtype=np.float64)
    keys = labels(np.asarray(groups))[0]
    if keys.shape != x.shape:
        raise DataError(f"column '{name}' and the group column differ in length")
    return {
        str(level): moments(x[keys == level], log=log, name=name)
        for level in sorted(set(keys.tolist()))
    }


def pool_moments(parts: Mapping[str, Mapping[str, Moments]]) -> dict[str, Moments]:
    """Add stations' per-group moments (``{station: {group: Moments}}``) per group."""
    pooled: dict[str, Moments] = {}
    for station in sorted(parts):
        for group, m in parts[station].items():
            pooled[group] = pooled[group] + m if group in pooled else m
    return pooled
