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
from pht.errors import ConfigError, DataError

Pooler = Callable[[Mapping[str, Mapping[str, Any]], Mapping[str, Any]], dict[str, Any]]

_NICE_STEPS = (1, 2, 5, 7, 10, 14, 28, 30, 60, 90, 180, 365, 730, 1825)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def nice_step(max_time: float, columns: int = 8) -> float:
    """A readable step for a numbers-at-risk table with about ``columns`` columns."""
    for step in _NICE_STEPS:
        if max_time / step <= columns:
            return float(step)
    return float(math.ceil(max_time / columns))


def _grouped(output: Mapping[str, Any], station: str) -> GroupedEventTables:
    try:
        tables = {
            str(label): EventTable.from_dict(table)
            for label, table in output["groups"].items()
        }
        return GroupedEventTables(tables, int(output.get("excluded") or 0))
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
    stations = [_grouped(outputs[s], s) for s in sorted(outputs)]
    result = pool_km(stations, alpha=float(parameters.get("alpha", 0.05)))
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
    times = np.arange(0.0, max_time + 1e-9, nice_step(max_time))
    sections: dict[str, Any] = {
        "km": {g: _curve_json(c) for g, c in result.curves.items()},
        "at_risk_table": {
            "times": times.tolist(),
            "groups": {g: at_risk_before(t, times).tolist() for g, t in pooled.items()},
        },
        "logrank": _test_json(result.logrank),
        "logrank_stratified": _test_json(result.logrank_stratified),
    }
    reference = str(parameters.get("reference_group") or next(iter(result.curves)))
    if reference not in result.curves:
        raise DataError(
            f"reference_group '{reference}' has no patients; use one of "
            + ", ".join(result.curves)
        )
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
        at = float(parameters["at"])
        beyond = [g for g, c in result.curves.items() if float(c.time[-1]) < at]
        if beyond:
            raise DataError(
                f"'at' = {at:g} is beyond the last follow-up time of group(s) "
                f"{', '.join(beyond)}; choose a smaller 'at'"
            )
        fixed = {g: survival_at(c, at) for g, c in result.curves.items()}
        sections["survival_at"] = {
            "time": at,
            "groups": {
                g: {**asdict(e), "at_risk": int(at_risk_before(pooled[g], [at])[0])}
                for g, e in fixed.items()
            },
            "differences": [asdict(d) for d in differences(fixed, reference, alpha)],
        }
    return sections


POOLERS: dict[str, Pooler] = {
    "survival.km": pool_survival_km,
}


def pooler_for(train: str) -> Pooler:
    """The pooler of a train name."""
    try:
        return POOLERS[train]
    except KeyError:
        raise ConfigError(
            f"no pooling is registered for train '{train}'; add it to POOLERS"
        ) from None
