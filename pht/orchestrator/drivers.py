"""Cox helpers of the orchestrator: design agreement, wire decoding, the result section.

The strategy that drives a federated Cox fit is the ``survival.cox`` train plugin
(:mod:`pht.trains.survival_cox`); these are the pieces it uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from pht.algorithms.cox import (
    Covariate,
    CoxTerms,
    Design,
    RiskSetSums,
)
from pht.algorithms.levels import agree_level_type, canonical_level, sort_levels
from pht.algorithms.numeric import chi2_sf, dependent_columns
from pht.errors import (
    ConfigError,
    DataError,
)
from pht.wire import Reply, decode_array

FEW_EVENTS = "few-events:"
"""How a station's refusal for fewer than k events begins (its fixed reason code)."""


def population_warnings(opened: Mapping[str, Reply], mode: str) -> list[str]:
    """Say when stations with patients were left out for too few events.

    Their rows (censored ones included) belong in the pooled risk sets (and, with a
    few events, in a stratified fit), so the estimate describes a different
    population than all patients. Stations are counted, never named (a policy may
    hide a station's name).
    """
    few = sum(
        1
        for r in opened.values()
        if not r.ok and (r.reason or "").startswith(FEW_EVENTS)
    )
    if not few:
        return []
    where = (
        "the pooled risk sets"
        if mode == "pooled"
        else "the fit (their strata are missing)"
    )
    return [
        f"{few} station(s) refused for fewer events than their minimum cell size: "
        f"their patients, censored ones included, are not in {where}, so the "
        "estimate describes the other stations' patients only and can differ from "
        "a fit on all patients"
    ]


def agree_design(
    described: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, Any]
) -> tuple[Design, list[str]]:
    """Covariate kinds, levels, references and centre agreed over the stations.

    Returns the design and a list of warnings (for example a level seen at one station
    only). Raises :class:`DataError` with what to change when no design fits.
    """
    mode = parameters.get("mode", "stratified")
    references: Mapping[str, Any] = parameters.get("reference") or {}
    n_total = sum(int(d["n"]) for d in described.values())
    warnings: list[str] = []
    covariates: list[Covariate] = []
    centre: list[float] = []
    for column in parameters["covariates"]:
        infos = {s: d["columns"][column] for s, d in described.items()}
        kinds = {info["kind"] for info in infos.values()}
        if len(kinds) > 1:
            numeric = sorted(s for s, i in infos.items() if i["kind"] == "numeric")
            raise DataError(
                f"covariate '{column}' is numeric at {', '.join(numeric)} but text at "
                "other stations; harmonise the column or declare it in 'categorical'"
            )
        if kinds == {"numeric"}:
            total = sum(float(i["sum"]) for i in infos.values())
            if all(i["constant"] for i in infos.values()):
                means = {float(i["sum"]) / described[s]["n"] for s, i in infos.items()}
                if len(means) == 1 or mode == "stratified":
                    where = "at every station" if len(means) > 1 else "overall"
                    raise DataError(
                        f"covariate '{column}' is constant {where}, so its effect "
                        "cannot be estimated"
                        + (
                            " in stratified mode: switch mode to pooled"
                            if len(means) > 1
                            else ""
                        )
                        + f" or drop '{column}' from covariates"
                    )
            covariates.append(Covariate(column))
            centre.append(total / n_total)
            continue
        counts: dict[str, int] = {}
        seen_at: dict[str, list[str]] = {}
        for station, info in infos.items():
            for level, count in info["levels"].items():
                counts[level] = counts.get(level, 0) + int(count)
                seen_at.setdefault(level, []).append(station)
        # labels are canonical at every station (1 and 1.0 are one level); the
        # stations must agree on the type behind them; levels in R's factor() order
        kind = agree_level_type(
            column, {s: i.get("level_type") for s, i in infos.items()}, "covariate"
        )
        levels = tuple(sort_levels(counts, kind))
        if len(levels) < 2:
            raise DataError(
                f"covariate '{column}' has a single level ({levels[0]}) at the stations "
                f"that took part; drop '{column}' from covariates"
            )
        given = references.get(column)
        reference = levels[0] if given is None else canonical_level(given, kind)
        if reference not in counts:
            raise DataError(
                f"reference level '{reference}' of '{column}' does not occur; use one "
                f"of {', '.join(levels)}"
            )
        if len(described) > 1:
            for level, stations in seen_at.items():
                if len(stations) == 1:
                    warnings.append(
                        f"level '{level}' of '{column}' occurs only at station "
                        f"{stations[0]}: its effect rests on that station alone; "
                        "merge levels or check coding"
                        + (" (or switch mode)" if mode == "stratified" else "")
                    )
        cov = Covariate(column, levels, reference)
        covariates.append(cov)
        centre.extend(counts[lv] / n_total for lv in levels if lv != reference)
    return Design(tuple(covariates), tuple(centre)), warnings


def _design_message(design: Design) -> dict[str, Any]:
    return {
        "covariates": [
            {"column": c.column, "levels": list(c.levels), "reference": c.reference}
            for c in design.covariates
        ],
        "centre": list(design.centre),
    }


def _sums(
    output: Mapping[str, Any], counts: Mapping[str, Any], times: np.ndarray, p: int
) -> RiskSetSums:
    """One station's first-order sums (``counts``: its design reply, sent once)."""
    m = times.size
    try:
        x_death = np.zeros((m, p))  # only the total over times enters the fit
        x_death[0] = np.asarray(counts["x_death"], dtype=np.float64).reshape(p)
        return RiskSetSums(
            time=times,
            deaths=decode_array(counts["deaths"], (m,)),
            x_death=x_death,
            s0=decode_array(output["s0"], (m,)),
            s1=decode_array(output["s1"], (m, p)),
            d0=decode_array(output["d0"], (m,)),
            d1=decode_array(output["d1"], (m, p)),
        )
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        raise DataError(f"a station returned malformed risk-set sums ({exc})") from None


def _curvature(output: Mapping[str, Any], p: int) -> np.ndarray:
    try:
        return np.asarray(output["curvature"], dtype=np.float64).reshape(p, p)
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"a station returned a malformed curvature ({exc})") from None


def _terms(output: Mapping[str, Any], p: int) -> CoxTerms:
    try:
        return CoxTerms(
            float(output["loglik"]),
            np.asarray(output["gradient"], dtype=np.float64).reshape(p),
            np.asarray(output["hessian"], dtype=np.float64).reshape(p, p),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"a station returned malformed model terms ({exc})") from None


def check_estimable(information: np.ndarray, names: Sequence[str]) -> None:
    """Raise a :class:`DataError` naming the covariates that are collinear or constant."""
    p = len(names)
    scale = np.sqrt(np.clip(np.diag(information), 0, None))
    zero = [names[i] for i in range(p) if scale[i] <= 1e-12 * max(1.0, scale.max())]
    if zero:
        raise DataError(
            f"covariate(s) {', '.join(zero)} do not vary within the risk sets; drop "
            "them (or switch mode if they only vary between stations)"
        )
    corr = information / np.outer(scale, scale)
    rest = dependent_columns(corr)
    if rest.size:
        dependent = [names[i] for i in rest]
        raise DataError(
            f"covariate(s) {', '.join(dependent)} are collinear with other covariates; "
            "drop them or merge levels"
        )


def cox_section(
    design: Design,
    fit: Any,
    mode: str,
    ties: str,
    described: Mapping[str, Mapping[str, Any]],
    warnings: list[str],
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The ``cox`` section of ``result.json``."""
    cov = np.linalg.inv(-fit.terms.hessian)
    se = np.sqrt(np.diag(cov))
    z_crit = NormalDist().inv_cdf(1 - alpha / 2)
    params = {}
    for i, name in enumerate(design.names):
        coef = float(fit.beta[i])
        z = coef / se[i]
        params[name] = {
            "coef": coef,
            "se": float(se[i]),
            "hr": math.exp(coef),
            "ci_lower": math.exp(coef - z_crit * se[i]),
            "ci_upper": math.exp(coef + z_crit * se[i]),
            "z": float(z),
            "p_value": math.erfc(abs(z) / math.sqrt(2)),  # 2 * normal upper tail
        }
    lr = 2 * (fit.terms.loglik - fit.null_loglik)
    return {
        "params": params,
        "loglik": fit.terms.loglik,
        "null_loglik": fit.null_loglik,
        "lr_test": {
            "statistic": lr,
            "df": design.p,
            "p_value": chi2_sf(lr, design.p),
        },
        "n": sum(int(d["n"]) for d in described.values()),
        "events": sum(int(d["events"]) for d in described.values()),
        "excluded": sum(int(d.get("excluded") or 0) for d in described.values()),
        "per_station": {
            s: {
                "n": int(d["n"]),
                "events": int(d["events"]),
                "excluded": int(d.get("excluded") or 0),
            }
            for s, d in described.items()
        },
        "mode": mode,
        "ties": ties,
        "iterations": fit.iterations,
        "step_halvings": fit.step_halvings,
        "converged": fit.converged,
        "covariance": cov.tolist(),
        "reference_levels": {
            c.column: c.reference for c in design.covariates if c.categorical
        },
        "warnings": warnings,
    }
