"""Generic Newton-Raphson over summed likelihood terms, replayable by a station.

:func:`newton` is the optimiser every federated model uses (Cox, GLMs): a generator
that *asks* for what it needs at a point (:class:`Ask`: the log-likelihood and
gradient, then, only for an accepted point, the Hessian) and receives the pooled
answer, so one evaluation can be one federated round and the Hessian a second round
only when it is needed. :func:`maximise` runs it against a local function.

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

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Terms:
    """A log-likelihood with its gradient and Hessian at one coefficient vector."""

    loglik: float
    gradient: FloatArray
    hessian: FloatArray

    def __add__(self, other: Terms) -> Terms:
        return Terms(
            self.loglik + other.loglik,
            self.gradient + other.gradient,
            self.hessian + other.hessian,
        )


@dataclass(frozen=True)
class Value:
    """The answer to ``Ask(beta, "value")``: the Hessian only where it came cheaply."""

    loglik: float
    gradient: FloatArray
    hessian: FloatArray | None = None


@dataclass(frozen=True)
class Ask:
    """What :func:`newton` needs next: ``value`` or the ``hessian`` at ``beta``."""

    beta: FloatArray
    need: Literal["value", "hessian"]


@dataclass(frozen=True)
class Fit:
    """The maximiser found by :func:`newton`."""

    beta: FloatArray
    terms: Terms
    null_loglik: float
    iterations: int
    converged: bool
    step_halvings: int


Answer = Value | FloatArray


def newton(
    p: int,
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
    max_halvings: int = 30,
    start: npt.ArrayLike | None = None,
) -> Generator[Ask, Answer, Fit]:
    """Maximise a concave log-likelihood, asking for its terms point by point.

    Start at ``start`` (default zero); step ``-H^-1 g``; halve a step that lowers
    the log-likelihood by more than rounding noise (``1e-11 * (1 + |loglik|)``, at
    most ``max_halvings`` times); stop at ``beta`` when the Newton step from it would
    move no coefficient by ``tol`` and the last accepted step changed the
    log-likelihood by less than ``tol * (1 + |loglik|)``. ``iterations`` counts
    accepted steps. The points asked for are exactly those of :class:`NewtonPath`
    (with the same origin), which stations replay.

    Send a :class:`Value` for ``Ask(beta, "value")`` and the Hessian array for
    ``Ask(beta, "hessian")``.
    """

    def terms_at(beta: FloatArray, value: Value) -> Generator[Ask, Answer, Terms]:
        hessian = value.hessian
        if hessian is None:
            answer = yield Ask(beta, "hessian")
            hessian = np.asarray(answer, dtype=np.float64)
        return Terms(value.loglik, value.gradient, hessian)

    def value_at(beta: FloatArray) -> Generator[Ask, Answer, Value]:
        answer = yield Ask(beta, "value")
        if not isinstance(answer, Value):
            raise TypeError("send a Value for a 'value' ask")
        return answer

    beta = np.zeros(p) if start is None else np.array(start, dtype=np.float64)
    if beta.shape != (p,):
        raise ValueError(f"start must hold {p} coefficients")
    value = yield from value_at(beta)
    null = value.loglik
    halvings = 0
    change = 0.0  # log-likelihood change of the last accepted step
    for iteration in range(max_iter + 1):
        terms = yield from terms_at(beta, value)
        try:
            step = np.linalg.solve(-terms.hessian, terms.gradient)
        except np.linalg.LinAlgError:  # information became singular: diverging
            return Fit(beta, terms, null, iteration, False, halvings)
        if np.max(np.abs(step), initial=0.0) < tol and change < tol * (
            1 + abs(terms.loglik)
        ):
            return Fit(beta, terms, null, iteration, True, halvings)
        if iteration == max_iter:
            return Fit(beta, terms, null, max_iter, False, halvings)
        candidate = beta + step
        new = yield from value_at(candidate)
        tries = 0
        # a decrease within rounding noise of a sum over many patients is no decrease
        slack = 1e-11 * (1.0 + abs(terms.loglik))
        while (not np.isfinite(new.loglik) or new.loglik < terms.loglik - slack) and (
            tries < max_halvings
        ):
            step = step / 2
            candidate = beta + step
            new = yield from value_at(candidate)
            tries += 1
        halvings += tries
        change = abs(new.loglik - terms.loglik)
        beta, value = candidate, new
    raise AssertionError("unreachable")  # pragma: no cover


def maximise(evaluate: Callable[[FloatArray], Terms], p: int, **options: float) -> Fit:
    """Run :func:`newton` against a local function returning all terms at a point."""
    steps = newton(p, **options)  # type: ignore[arg-type]
    ask = next(steps)
    last: Terms | None = None
    while True:
        if ask.need == "value":
            last = evaluate(ask.beta)
            answer: Answer = Value(last.loglik, last.gradient, last.hessian)
        else:  # never asked: a local evaluation gives the Hessian with the value
            assert last is not None
            answer = last.hessian
        try:
            ask = steps.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


class NewtonPath:
    """Which coefficients a federated Newton-Raphson fit evaluates next."""

    def __init__(
        self, p: int, *, max_halvings: int = 30, origin: npt.ArrayLike | None = None
    ) -> None:
        self.p = p
        self.origin = (
            np.zeros(p) if origin is None else np.array(origin, dtype=np.float64)
        )
        self.max_halvings = max_halvings
        self._base: FloatArray | None = None
        self._base_loglik = 0.0
        self._step: FloatArray | None = None
        self._tries = 0
        self.expected: FloatArray | None = None

    def start(self) -> FloatArray:
        """The agreed start: the origin (all coefficients zero unless given)."""
        self.expected = self.origin.copy()
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
