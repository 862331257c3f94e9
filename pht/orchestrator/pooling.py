"""The typed registry from train name to its orchestrator-side pooling.

A pooler turns the stations' released outputs (already decoded wire dicts, keyed by
station id) into the result sections of ``result.json``. Trains are looked up in
:data:`POOLERS` by name; nothing is found by ``getattr`` on a string.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any
from warnings import warn

import numpy as np

from pht.algorithms.km import (
    EventTable,
    GroupedEventTables,
    KMCurve,
    LogRankResult,
    at_risk_before,
    differences,
    merge_event_tables,
    pool_km,
    rmst,
    survival_at,
)
from pht.algorithms.levels import LEVEL_TYPES, canonical_level
from pht.errors import DataError, NotEstimableWarning, ReferenceWarning

Pooler = Callable[[Mapping[str, Mapping[str, Any]], Mapping[str, Any]], dict[str, Any]]

_NICE_STEPS: dict[str, tuple[float, ...]] = {
    "days": (1, 2, 5, 7, 10, 14, 28, 30, 60, 90, 180, 365, 730, 1825),
    "weeks": (1, 2, 4, 8, 13, 26, 52, 104, 260),
    "months": (1, 2, 3, 6, 12, 24, 60),
    "years": (0.25, 0.5, 1, 2, 5, 10),
}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def nice_step(max_time: float, columns: int = 8, unit: str = "days") -> float:
    """A readable step for a numbers-at-risk table with about ``columns`` columns.

    The smallest of the unit's own steps (a week, a month, a year in days; a quarter
    in years) that gives at most ``columns`` and at least two steps; else 1, 2 or 5
    times a power of ten (a follow-up of 0.3 years gets 0.05).

    >>> nice_step(1000), nice_step(1.5, unit="years"), nice_step(0.3, unit="years")
    (180.0, 0.25, 0.05)
    """
    if not max_time > 0:
        return 1.0
    for step in _NICE_STEPS.get(unit, _NICE_STEPS["days"]):
        if 2 <= max_time / step <= columns:
            return float(step)
    decade = 10.0 ** math.floor(math.log10(max_time / columns))
    for step in (m * decade * f for f in (1, 10) for m in (1, 2, 5)):
        if max_time / step <= columns:
            return float(step)
    return float(math.ceil(max_time / columns))


def step_times(max_time: float, step: float) -> np.ndarray:
    """``0, step, 2 step, ...`` up to ``max_time``, without floating-point noise."""
    count = int(math.floor(max_time / step * (1 + 1e-12))) + 1
    digits = max(0, 12 - math.floor(math.log10(step)))
    return np.round(np.arange(count) * step, digits)


def _grouped(output: Mapping[str, Any], station: str) -> GroupedEventTables:
    try:
        tables = {
            str(label): EventTable.from_dict(table)
            for label, table in output["groups"].items()
        }
        kind = output.get("level_type", "text")
        if kind not in LEVEL_TYPES:
            raise ValueError(f"unknown level type {kind!r}")
        return GroupedEventTables(tables, int(output.get("excluded") or 0), kind)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"station {station} returned a malformed event table ({exc})"
        ) from None


def _curve_json(curve: KMCurve) -> dict[str, Any]:
    return {
        "n": curve.n,
        "events": int(curve.events.sum()),
        "time": curve.time.tolist(),
        "survival": curve.survival.tolist(),
        "ci_lower": curve.ci_lower.tolist(),
        "ci_upper": curve.ci_upper.tolist(),
        "at_risk": curve.at_risk.tolist(),
        "events_at": curve.events.tolist(),
        "censored": curve.censored.tolist(),
        "median": {
            "estimate": _finite(curve.median.estimate),
            "ci_lower": _finite(curve.median.ci_lower),
            "ci_upper": _finite(curve.median.ci_upper),
        },
    }


def _test_json(test: LogRankResult | None) -> dict[str, Any] | None:
    if test is None:
        return None
    return {
        "statistic": test.statistic,
        "df": test.df,
        "p_value": test.p_value,
        "stratified": test.stratified,
        "method": test.method + (" stratified by station" if test.stratified else ""),
        "observed": dict(test.observed),
        "expected": dict(test.expected),
    }


def pool_survival_km(
    outputs: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Pool ``survival.km`` outputs into ``km``, ``at_risk_table`` and log-rank tests."""
    ids = sorted(outputs)
    stations = [_grouped(outputs[s], s) for s in ids]
    result = pool_km(
        stations,
        alpha=float(parameters.get("alpha", 0.05)),
        names=ids,
        group=str(parameters.get("group") or "group"),
    )
    if parameters.get("group") is not None and len(result.curves) < 2:
        only = ", ".join(result.curves) or "none"
        raise DataError(
            f"group column '{parameters['group']}' has patients in only one level "
            f"({only}) at the stations that took part; a comparison needs two: "
            "choose another 'group' or leave it out"
        )
    pooled = {
        g: merge_event_tables([s.tables[g] for s in stations if g in s.tables])
        for g in result.curves
    }
    max_time = max(float(t.time[-1]) for t in pooled.values())
    unit = str(parameters.get("time_unit") or "days")
    times = step_times(max_time, nice_step(max_time, unit=unit))
    sections: dict[str, Any] = {
        "km": {g: _curve_json(c) for g, c in result.curves.items()},
        "at_risk_table": {
            "times": times.tolist(),
            "groups": {g: at_risk_before(t, times).tolist() for g, t in pooled.items()},
        },
        "logrank": _test_json(result.logrank),
        "logrank_stratified": _test_json(result.logrank_stratified),
    }
    given = parameters.get("reference_group")
    reference = (
        next(iter(result.curves))  # the first level, in R's factor() order
        if given is None or given == ""
        else canonical_level(given, result.level_type)
    )
    if reference not in result.curves:
        first = next(iter(result.curves))
        warn(
            ReferenceWarning(
                f"parameters.reference_group: '{reference}' has no patients at the "
                f"stations that took part; the differences are against '{first}' (the "
                f"first group) instead; groups: {', '.join(result.curves)}"
            ),
            stacklevel=2,
        )
        reference = first
    alpha = float(parameters.get("alpha", 0.05))
    if parameters.get("tau") is not None:
        tau = float(parameters["tau"])
        estimates = {g: rmst(c, tau, alpha) for g, c in result.curves.items()}
        sections["rmst"] = {
            "tau": tau,
            "groups": {g: asdict(e) for g, e in estimates.items()},
            "differences": [
                asdict(d) for d in differences(estimates, reference, alpha)
            ],
            "beyond_follow_up": [
                g for g, c in result.curves.items() if float(c.time[-1]) < tau
            ],
        }
    if parameters.get("at") is not None:
        sections["survival_at"] = _survival_at(
            result.curves, pooled, float(parameters["at"]), reference, alpha
        )
    return sections


def _survival_at(
    curves: Mapping[str, KMCurve],
    pooled: Mapping[str, EventTable],
    at: float,
    reference: str,
    alpha: float,
) -> dict[str, Any]:
    """S(at) per group; not estimable (None) where follow-up ends before ``at``.

    As R's ``summary(fit, times = at)``, which leaves such a group out: its S(at)
    would extrapolate past the last observed time. Differences are reported between
    estimable groups only.
    """
    beyond = [g for g, c in curves.items() if float(c.time[-1]) < at]
    if beyond:
        warn(
            NotEstimableWarning(
                f"survival at {at:g} is not estimable for group(s) "
                f"{', '.join(beyond)}: their follow-up ends earlier"
            ),
            stacklevel=2,
        )
    fixed = {g: survival_at(c, at) for g, c in curves.items() if g not in beyond}
    empty = {"estimate": None, "se": None, "ci_lower": None, "ci_upper": None}
    return {
        "time": at,
        "groups": {
            g: {
                **(asdict(fixed[g]) if g in fixed else empty),
                "at_risk": int(at_risk_before(pooled[g], [at])[0]),
                "estimable": g in fixed,
            }
            for g in curves
        },
        "differences": []
        if reference in beyond
        else [asdict(d) for d in differences(fixed, reference, alpha)],
        "beyond_follow_up": beyond,
    }
