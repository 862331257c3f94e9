"""Drivers of iterative trains: the orchestrator's side of a multi-round session.

A driver gets the opened :class:`~pht.orchestrator.engine.SessionGroup` (round 0 has
been answered) and the study parameters, runs the rounds and returns the result sections
of ``result.json``. Drivers are looked up by train name in :data:`DRIVERS`.

``survival.cox``:

1. *design*: from the stations' round-0 descriptions (sizes, covariate sums, level
   counts) agree the covariate kinds, levels, reference levels and a common centre;
   send it once (pooled mode also sends the union of event times);
2. *Newton-Raphson*: each evaluation of the log-likelihood is one round: stations
   return (loglik, gradient, Hessian) of their stratum (stratified), or their
   first-order risk-set sums which are added per event time and reduced here
   (pooled); in pooled mode a second round sends the per-time weights back and adds
   the stations' curvature matrices, only when the Hessian is needed (not for a
   rejected step);
3. *result*: coefficients, standard errors from the observed information, hazard ratios
   with Wald CIs, the likelihood-ratio test against the null model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from pht.algorithms.cox import (
    Covariate,
    CoxTerms,
    Design,
    FirstOrder,
    RiskSetSums,
    add_terms,
    first_order,
    newton_raphson,
)
from pht.algorithms.numeric import chi2_sf, dependent_columns
from pht.errors import (
    ConfigError,
    ConvergenceError,
    DataError,
    ExecutorError,
    PolicyError,
)
from pht.orchestrator.engine import SessionGroup
from pht.wire import Reply, decode_array, encode_array

Driver = Callable[[SessionGroup, Mapping[str, Any]], dict[str, Any]]


def _fail(replies: Mapping[str, Reply], stage: str) -> None:
    bad = {s: r for s, r in replies.items() if not r.ok}
    if bad:
        station, reply = next(iter(bad.items()))
        raise ExecutorError(
            f"station {station} {reply.status} during {stage}: {reply.reason}"
        )


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
        levels = tuple(sorted(counts))
        if len(levels) < 2:
            raise DataError(
                f"covariate '{column}' has a single level ({levels[0]}) at the stations "
                f"that took part; drop '{column}' from covariates"
            )
        reference = references.get(column, levels[0])
        reference = str(reference)
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


class LazyTerms:
    """Pooled-mode terms at one ``beta``, the Hessian fetched only when needed.

    The curvature costs a round, so it is asked for only when Newton-Raphson needs the
    Hessian (not for a rejected, halved step).
    """

    def __init__(self, first: FirstOrder, fetch: Callable[[FirstOrder], np.ndarray]):
        self._first = first
        self._fetch = fetch
        self._hessian: np.ndarray | None = None
        self.loglik = first.loglik
        self.gradient = first.gradient

    @property
    def hessian(self) -> np.ndarray:
        """``outer - curvature``, the curvature summed over the stations."""
        if self._hessian is None:
            self._hessian = self._first.terms(self._fetch(self._first)).hessian
        return self._hessian


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


def drive_survival_cox(
    group: SessionGroup, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Run the federated Cox fit over open sessions (see module docstring)."""
    mode = parameters.get("mode", "stratified")
    ties = parameters.get("ties", "efron")
    described = {s: group.opened[s].output or {} for s in group.active}
    while True:  # agree a design; stations refusing it (e.g. the dof rule) drop out
        if not described:
            raise PolicyError("no station accepted the model design")
        design, warnings = agree_design(described, parameters)
        p = design.p
        message: dict[str, Any] = {"op": "design", "design": _design_message(design)}
        times = np.empty(0)
        if mode == "pooled":
            times = np.unique(
                np.concatenate(
                    [np.asarray(d["event_times"], float) for d in described.values()]
                )
            )
            message["times"] = times.tolist()
        replies = group.round({s: message for s in described})
        errors = {s: r for s, r in replies.items() if r.status == "error"}
        _fail(errors, "the design round")
        refused = [s for s, r in replies.items() if r.status == "refused"]
        if not refused:
            break
        for station in refused:
            group.drop(station, replies[station])
            del described[station]

    counts = {s: replies[s].output or {} for s in described}
    designed = dict(replies)
    # the stations answer only the Newton path: each evaluation message proves the
    # pooled terms of the last one with every station's output and signed receipt
    # (with every station's design reply, stamped with the design it agreed)
    previous: dict[str, Reply] = {}

    def evidence() -> list[dict[str, Any]]:
        return [
            {"station": s, "output": r.output, "receipt": r.receipt}
            for part in (designed, previous)
            for s, r in sorted(part.items())
        ]

    def curvature(beta: np.ndarray, first: FirstOrder) -> np.ndarray:
        message = {
            "op": "curvature",
            "beta": beta.tolist(),
            "w1": encode_array(first.w1),
            "w2": encode_array(first.w2),
            "evidence": evidence(),
        }
        answers = group.round({s: message for s in described})
        _fail(answers, "Newton-Raphson (curvature)")
        previous.clear()
        previous.update(answers)
        return sum(
            (_curvature(answers[s].output or {}, p) for s in sorted(answers)),
            np.zeros((p, p)),
        )

    def evaluate(beta: np.ndarray) -> Any:
        op = "terms" if mode == "stratified" else "sums"
        message: dict[str, Any] = {"op": op, "beta": beta.tolist()}
        if previous:
            message["evidence"] = evidence()
        answers = group.round({s: message for s in described})
        _fail(answers, "Newton-Raphson")
        previous.clear()
        previous.update(answers)
        if mode == "stratified":
            return add_terms(
                [_terms(answers[s].output or {}, p) for s in sorted(answers)]
            )
        sums = [
            _sums(answers[s].output or {}, counts[s], times, p) for s in sorted(answers)
        ]
        pooled = sums[0]
        for part in sums[1:]:
            pooled = pooled + part
        first = first_order(pooled, beta, ties)
        at = beta.copy()
        return LazyTerms(first, lambda f: curvature(at, f))

    first = evaluate(np.zeros(p))
    check_estimable(-first.hessian, design.names)
    cache = {np.zeros(p).tobytes(): first}

    def cached(beta: np.ndarray) -> CoxTerms:
        key = beta.tobytes()
        return cache.pop(key) if key in cache else evaluate(beta)

    fit = newton_raphson(cached, p, max_iter=int(parameters.get("max_iter", 50)))
    if not fit.converged or not np.all(np.isfinite(fit.beta)):
        big = [n for n, b in zip(design.names, fit.beta, strict=True) if abs(b) > 15]
        raise ConvergenceError(
            f"the Cox fit did not converge in {fit.iterations} iterations"
            + (
                f"; {', '.join(big)} grow without bound (a level without events?)"
                if big
                else ""
            )
            + ": merge sparse levels, drop covariates or raise max_iter"
        )
    return {
        "cox": cox_section(design, fit, mode, ties, described, warnings),
    }


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
            "p": math.erfc(abs(z) / math.sqrt(2)),  # 2 * normal upper tail
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


DRIVERS: dict[str, Driver] = {
    "survival.cox": drive_survival_cox,
}


def driver_for(train: str) -> Driver:
    """The driver of an iterative train."""
    try:
        return DRIVERS[train]
    except KeyError:
        raise DataError(
            f"no driver is registered for iterative train '{train}'"
        ) from None
