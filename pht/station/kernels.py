"""Station-side kernels: the station recomputes what an iterative train answers.

A train declares the kernel its answers follow (``session.kernel`` in its manifest).
For a kernel the station knows, it recomputes every answer from the extract it gave
the train (:mod:`pht.algorithms`, never the train's code), refuses an answer that
differs beyond floating-point noise, and releases **its own** values: no bit a
hostile train chooses rides on a released number. A station releases iterative
answers only for kernels it knows.

Kernels: ``cox`` (the ``survival.cox`` train: design, ``terms`` in stratified mode,
``sums`` and ``curvature`` in pooled mode, ``checks`` once at the converged point) and
``glm`` (the ``glm`` train: design, ``terms``, ``checks`` with the fit's pieces; its
answers are :class:`pht.algorithms.glm_local.LocalGlm`'s on the station's extract) and
``iptw`` (the ``iptw`` train: the propensity design and ``terms``, ``weights``,
``truncate``, the outcome model's ``outcome`` terms and ``checks``; its answers are
:class:`pht.algorithms.iptw_local.LocalIptw`'s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pht.algorithms.cox import Covariate, Design, SortedRows, design_matrix
from pht.algorithms.cox_local import checks_output
from pht.algorithms.disclosure import coarsen
from pht.algorithms.levels import labels
from pht.errors import DisclosureError, PhtError
from pht.station.population import Population
from pht.wire import decode_array, encode_array

KERNELS = ("cox", "glm", "iptw")
RTOL = 1e-8


class CoxKernel:
    """The station's own Cox answers for one session."""

    def __init__(
        self,
        population: Population,
        time_column: str,
        event_column: str,
        covariates: list[str],
        grid: tuple[float, ...] | None,
        ties: str,
    ) -> None:
        time = np.asarray(population.column(time_column), dtype=np.float64)
        if grid:
            time = coarsen(time, grid)
        event = np.asarray(population.column(event_column), dtype=np.float64)
        order = np.argsort(time, kind="stable")
        self.time, self.event = time[order], event[order]
        self.raw = {c: population.column(c)[order] for c in covariates}
        self.ties = ties
        self.rows: SortedRows | None = None
        self.times: np.ndarray | None = None

    def answer(self, op: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """What the train must answer to ``message``."""
        if op == "design":
            return self._design(message)
        if self.rows is None:
            raise DisclosureError("no design agreed")
        beta = np.asarray(message["beta"], dtype=np.float64)
        if op == "terms":
            terms = self.rows.terms(beta, self.ties)  # type: ignore[arg-type]
            return {
                "loglik": terms.loglik,
                "gradient": terms.gradient.tolist(),
                "hessian": terms.hessian.tolist(),
            }
        if op == "checks" and self.times is None:
            return checks_output(
                self.rows,
                beta,
                self.ties,  # type: ignore[arg-type]
                None,
                None,
                bool(message.get("station_estimate")),
            )
        if self.times is None:
            raise DisclosureError("no times agreed")
        if op == "checks":
            shape = (self.times.size,)
            weights = (
                decode_array(message["w1"], shape),
                decode_array(message["w2"], shape),
            )
            return checks_output(
                self.rows,
                beta,
                self.ties,  # type: ignore[arg-type]
                self.times,
                weights,
                bool(message.get("station_estimate")),
            )
        if op == "sums":
            sums = self.rows.sums(beta, self.times)
            return {
                "s0": encode_array(sums.s0),
                "s1": encode_array(sums.s1),
                "d0": encode_array(sums.d0),
                "d1": encode_array(sums.d1),
            }
        if op == "curvature":
            shape = (self.times.size,)
            w1 = decode_array(message["w1"], shape)
            w2 = decode_array(message["w2"], shape)
            curvature = self.rows.curvature(beta, self.times, w1, w2)
            return {"curvature": curvature.tolist()}
        raise DisclosureError("an operation the kernel does not know")

    def _design(self, message: Mapping[str, Any]) -> dict[str, Any]:
        spec = message["design"]
        design = Design(
            tuple(
                Covariate(c["column"], tuple(c.get("levels") or ()), c.get("reference"))
                for c in spec["covariates"]
            ),
            tuple(float(v) for v in spec["centre"]),
        )
        values: dict[str, np.ndarray] = {}
        for cov in design.covariates:
            raw = self.raw[cov.column]
            values[cov.column] = (
                labels(raw)[0] if cov.categorical else np.asarray(raw, dtype=np.float64)
            )
        self.rows = SortedRows(self.time, self.event, design_matrix(values, design))
        out: dict[str, Any] = {"p": design.p}
        if message.get("times") is not None:
            self.times = np.asarray(message["times"], dtype=np.float64)
            deaths, x_death = self.rows.counts(self.times)
            out["deaths"] = encode_array(deaths)
            out["x_death"] = x_death.tolist()
        return out


class _LocalKernel:
    """A kernel whose answers are a station-side class's, built on the extract."""

    local: Any

    def describe(self) -> dict[str, Any]:
        """Round 0 as the station computes it."""
        return dict(self.local.describe())

    def answer(self, op: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """What the train must answer to ``message``."""
        if op != message.get("op"):
            raise DisclosureError("an operation the kernel does not know")
        return dict(self.local.answer(message))


class GlmKernel(_LocalKernel):
    """The station's own GLM answers for one session (round 0 included)."""

    def __init__(
        self,
        population: Population,
        parameters: Mapping[str, Any],
        k: int,
        rules: Mapping[str, Any] | None = None,
    ) -> None:
        from pht.algorithms.glm_local import LocalGlm, used_columns

        columns = {c: population.column(c) for c in used_columns(parameters)}
        self.local = LocalGlm(columns, parameters, k, rules)
        self.model = self.local.model


class IptwKernel(_LocalKernel):
    """The station's own IPTW answers for one session (round 0 included)."""

    def __init__(
        self,
        population: Population,
        parameters: Mapping[str, Any],
        k: int,
        rules: Mapping[str, Any] | None = None,
    ) -> None:
        from pht.algorithms.glm import glm_model
        from pht.algorithms.iptw_local import LocalIptw, outcome_model_of, used_columns

        columns = {c: population.column(c) for c in used_columns(parameters)}
        self.local = LocalIptw(columns, parameters, k, rules)
        self.model = glm_model("binomial")  # the propensity model
        self.outcome_model = outcome_model_of(parameters)


def same(given: Any, expected: Any) -> bool:
    """Whether a train's answer equals the station's up to floating-point noise."""
    if isinstance(expected, dict):
        if not isinstance(given, dict) or set(given) != set(expected):
            return False
        if set(expected) == {"dtype", "shape", "base64"}:
            try:
                a = decode_array(given, tuple(expected["shape"]))
            except PhtError:
                return False
            return _close(a, decode_array(expected))
        return all(same(given[k], expected[k]) for k in expected)
    if isinstance(expected, list) and any(
        v is None or isinstance(v, bool | str | dict) for v in expected
    ):  # e.g. released counts, null where 1..k-1: item by item
        return (
            isinstance(given, list)
            and len(given) == len(expected)
            and all(same(g, e) for g, e in zip(given, expected, strict=True))
        )
    if isinstance(expected, list | float | int) and not isinstance(expected, bool):
        try:
            a = np.asarray(given, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        b = np.asarray(expected, dtype=np.float64)
        return a.shape == b.shape and _close(a, b)
    return bool(given == expected)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return False
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    return bool(np.all(np.abs(a - b) <= RTOL * scale))
