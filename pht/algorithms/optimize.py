"""The generic Newton-Raphson path over summed likelihood terms, replayable by a station.

:class:`NewtonPath` is the deterministic rule of
:func:`pht.algorithms.cox.newton_raphson` (start at zero; step ``-H^-1 g``; halve a step
that lowers the log-likelihood by more than rounding noise, at most ``max_halvings``
times) written as a state machine: given the pooled terms at the point just evaluated,
it says which point must come next. A station replays it from the pooled
contributions every station signed, and answers only the evaluations a fit needs.

Example
-------
>>> import numpy as np
>>> path = NewtonPath(1)
>>> path.start().tolist()
[0.0]
>>> path.next_point(-1.0, np.array([2.0]), np.array([[-4.0]])).tolist()
[0.5]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class NewtonPath:
    """Which coefficients a federated Newton-Raphson fit evaluates next."""

    def __init__(self, p: int, *, max_halvings: int = 30) -> None:
        self.p = p
        self.max_halvings = max_halvings
        self._base: FloatArray | None = None
        self._base_loglik = 0.0
        self._step: FloatArray | None = None
        self._tries = 0
        self.expected: FloatArray | None = None

    def start(self) -> FloatArray:
        """The agreed start: all coefficients zero."""
        self.expected = np.zeros(self.p)
        return self.expected

    def would_halve(self, loglik: float) -> bool:
        """Whether the path halves the step after an evaluation with ``loglik``."""
        if self._base is None or self._step is None:
            return False
        slack = 1e-11 * (1.0 + abs(self._base_loglik))
        worse = not np.isfinite(loglik) or loglik < self._base_loglik - slack
        return bool(worse and self._tries < self.max_halvings)

    def after(self, loglik: float) -> FloatArray | None:
        """The halved point when the last evaluation lowered the likelihood, else None.

        None means the path accepts the point just evaluated (or it is the start)
        and needs its gradient and Hessian: see :meth:`accept`.
        """
        if self.would_halve(loglik):
            assert self._base is not None and self._step is not None
            self._tries += 1
            self.expected = np.asarray(
                self._base + self._step / 2.0**self._tries, dtype=np.float64
            )
            return self.expected
        return None

    def accept(
        self, loglik: float, gradient: FloatArray, hessian: FloatArray
    ) -> FloatArray | None:
        """Accept the point just evaluated; the next point (None if singular)."""
        at = self.expected
        if at is None:
            raise ValueError("start the path first")
        try:
            step = np.asarray(
                np.linalg.solve(-np.asarray(hessian), np.asarray(gradient)),
                dtype=np.float64,
            )
        except np.linalg.LinAlgError:
            return None
        self._base, self._base_loglik = at.copy(), float(loglik)
        self._step, self._tries = step, 0
        self.expected = at + step
        return self.expected

    def next_point(
        self, loglik: float, gradient: FloatArray, hessian: FloatArray
    ) -> FloatArray | None:
        """The next point after the terms at ``self.expected``; None if none exists."""
        halved = self.after(loglik)
        if halved is not None:
            return halved
        return self.accept(loglik, gradient, hessian)

    @staticmethod
    def matches(given: npt.ArrayLike, expected: FloatArray) -> bool:
        """Whether ``given`` equals ``expected`` up to floating-point noise."""
        g = np.asarray(given, dtype=np.float64)
        return bool(
            g.shape == expected.shape
            and np.all(np.abs(g - expected) <= 1e-9 * (1.0 + np.abs(expected)))
        )
