"""``survival.cox``: federated Cox proportional hazards, stratified or pooled.

The strategy (orchestrator side of the session):

1. *design*: from the stations' round-0 descriptions (sizes, covariate sums, level
   counts) agree the covariate kinds, levels, reference levels and a common centre;
   send it once (pooled mode also sends the union of event times); a station that
   refuses the design (e.g. its degrees-of-freedom rule) leaves the session;
2. *Newton-Raphson* (:func:`pht.algorithms.optimize.newton`): each evaluation is one
   round: stations return (loglik, gradient, Hessian) of their stratum (stratified),
   or their first-order risk-set sums, added per event time and reduced here
   (pooled); in pooled mode the Hessian costs a second round (per-time weights out,
   the stations' curvature matrices back), asked only for an accepted point. Every
   message after the first carries the signed evidence of the last round, so each
   station can replay the path;
3. *checks* (unless the study says ``checks: false``): one more round at the
   converged point, which each station accepts only there (its replay of the path
   says the fit stopped): the proportional-hazards score test's pieces, concordance
   pair counts and, where a station's policy allows, its own fit
   (:mod:`pht.algorithms.cox_checks`);
4. *result*: coefficients, standard errors, hazard ratios with Wald CIs, the
   likelihood-ratio test (:func:`pht.algorithms.cox.cox_result`) and the checks.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from warnings import warn

import numpy as np

from pht.algorithms.cox import (
    CoxTerms,
    Design,
    FirstOrder,
    RiskSetSums,
    add_terms,
    cox_result,
    first_order,
    time_weighted,
)
from pht.algorithms.cox_checks import (
    Concordance,
    PHPieces,
    concordance_index,
    heterogeneity,
    ph_test,
    transform,
)
from pht.algorithms.design import agree_design, check_estimable, covariate_problems
from pht.algorithms.numeric import z_critical
from pht.algorithms.optimize import Ask, Fit, Value, newton
from pht.errors import (
    ConfigError,
    ConvergenceError,
    DataError,
    ExecutorError,
    PolicyError,
    PopulationWarning,
)
from pht.orchestrator.report import _cox
from pht.trains import register
from pht.trains.base import (
    Companion,
    Contract,
    Rounds,
    RoundsStrategy,
    TrainPlugin,
)
from pht.wire import Reply, decode_array, encode_array

# -- wire: what the stations send, decoded; the result section --------------------------
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


def cox_section(
    design: Design,
    fit: Fit,
    mode: str,
    ties: str,
    described: Mapping[str, Mapping[str, Any]],
    warnings: list[str],
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The ``cox`` section of ``result.json`` (from :func:`cox_result`)."""
    result = cox_result(design, fit, alpha)
    return {
        "params": {
            c.name: {
                "coef": c.coef,
                "se": c.se,
                "hr": c.hr,
                "ci_lower": c.ci_lower,
                "ci_upper": c.ci_upper,
                "z": c.z,
                "p_value": c.p_value,
            }
            for c in result.coefficients
        },
        "loglik": result.loglik,
        "null_loglik": result.null_loglik,
        "lr_test": {
            "statistic": result.lr_statistic,
            "df": result.lr_df,
            "p_value": result.lr_p_value,
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
        "iterations": result.iterations,
        "step_halvings": result.step_halvings,
        "converged": result.converged,
        "covariance": result.covariance.tolist(),
        "reference_levels": {
            c.column: c.reference for c in design.covariates if c.categorical
        },
        "warnings": warnings,
    }


# -- model checks: the last round's answers -> result keys ---------------------------
def _pieces(output: Mapping[str, Any], key: str, p: int) -> PHPieces:
    try:
        ph = output["ph"]
        return PHPieces(
            np.asarray(ph[key], dtype=np.float64).reshape(p),
            np.asarray(ph["cross"], dtype=np.float64).reshape(p, p),
            np.asarray(ph["square"], dtype=np.float64).reshape(p, p),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"a station returned malformed model checks ({exc})") from None


def _concordance(output: Mapping[str, Any]) -> Concordance:
    try:
        c = output["concordance"]
        dd, dn, nn = (float(v) for v in c["influence"])
        return Concordance(
            int(c["concordant"]), int(c["discordant"]), int(c["tied_risk"]), dd, dn, nn
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"a station returned malformed concordance ({exc})") from None


def _exp(x: float) -> float:
    """``exp`` kept finite for result.json (a station bounds its own fit anyway)."""
    return math.exp(min(float(x), 700.0))


def station_labels(stations: Mapping[str, bool]) -> dict[str, str]:
    """Labels of per-station lines that do not give hidden stations away.

    The id where the policy shows the name; else "station 1", "station 2"... in a
    random order (from the operating system's generator, so nothing in the result,
    not the request id either, recovers it). With exactly one hidden station among
    ``stations`` (those that took part) nobody gets a label: its line would be named
    by elimination, and the pooled fit minus the shown stations' lines would give
    it back. Stations without a label are left out.
    """
    hidden = [s for s, shown in stations.items() if not shown]
    if len(hidden) == 1:
        return {}
    secrets.SystemRandom().shuffle(hidden)
    labels = {s: s for s, shown in stations.items() if shown}
    labels.update({s: f"station {i}" for i, s in enumerate(hidden, 1)})
    return labels


def checks_sections(
    design: Design,
    fit: Fit,
    outputs: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str],
    pooled: tuple[RiskSetSums, str] | None,
    alpha: float = 0.05,
) -> tuple[dict[str, Any], list[str]]:
    """``ph_test``, ``concordance``, ``station_estimates`` and ``heterogeneity``.

    ``outputs`` are every station's ``checks`` answers (sorted by station when
    added); ``pooled`` is pooled mode's sums at the fitted point with the tie rule.
    """
    p = design.p
    names = design.names
    stations = sorted(outputs)
    out: dict[str, Any] = {}
    warnings: list[str] = []
    if any(outputs[s].get("ph") is None for s in stations):
        warnings.append(
            "no proportional-hazards test: it uses log(time), and a station has an "
            "event at time 0 or earlier; shift the time origin to test it"
        )
    else:
        if pooled is None:
            parts = [_pieces(outputs[s], "score", p) for s in stations]
            total = parts[0]
            for part in parts[1:]:
                total = total + part
        else:
            sums, ties = pooled
            parts = [_pieces(outputs[s], "deaths", p) for s in stations]
            g = transform(sums.time)
            assert g is not None  # grid times are positive
            weighted = time_weighted(sums, ties, g)  # type: ignore[arg-type]
            deaths = parts[0]
            for part in parts[1:]:
                deaths = deaths + part
            total = PHPieces(
                deaths.score - weighted.means,
                deaths.cross - weighted.outer_g,
                deaths.square - weighted.outer_gg,
            )
        columns: dict[str, list[int]] = {}
        position = 0
        for cov in design.covariates:
            columns[cov.column] = list(range(position, position + len(cov.names)))
            position += len(cov.names)
        try:
            test = ph_test(total, -fit.terms.hessian, list(columns.items()))
        except np.linalg.LinAlgError:
            warnings.append(
                "no proportional-hazards test: its information matrix is singular "
                "(too few distinct event times)"
            )
        else:
            out["ph_test"] = {
                "transform": test.transform,
                "terms": {
                    t.name: {"chisq": t.chisq, "df": t.df, "p_value": t.p_value}
                    for t in test.terms
                },
                "global": {
                    "chisq": test.global_test.chisq,
                    "df": test.global_test.df,
                    "p_value": test.global_test.p_value,
                },
            }
    index = concordance_index([_concordance(outputs[s]) for s in stations])
    out["concordance"] = {
        "c": index.c,
        "se": index.se if math.isfinite(index.se) else None,
        "concordant": index.concordant,
        "discordant": index.discordant,
        "tied_risk": index.tied_risk,
        "within_stations": pooled is not None,
    }
    z = z_critical(alpha)
    estimates: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for station in stations:
        own = outputs[station].get("estimate")
        if own is None:
            continue
        try:
            coef = np.asarray(own["coef"], dtype=np.float64).reshape(p)
            covariance = np.asarray(own["covariance"], dtype=np.float64)
            se = np.sqrt(np.diag(covariance.reshape(p, p)))
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(
                f"a station returned a malformed own estimate ({exc})"
            ) from None
        estimates[station] = (coef, se)
    hidden = [s for s in estimates if labels.get(s) != s]
    if estimates and (not labels or len(hidden) == 1):
        # one hidden station's own fit would be named by elimination, or worked out
        # from the pooled fit and the other stations' lines: no lines at all
        estimates = {}
        warnings.append(
            "per-station estimates are not shown: exactly one station that took "
            "part or gave its own fit hides its name, and the others' lines would "
            "give it away"
        )
    ordered = sorted(estimates, key=lambda s: labels[s])
    out["station_estimates"] = {
        labels[s]: {
            name: {
                "coef": float(estimates[s][0][j]),
                "se": float(estimates[s][1][j]),
                "hr": _exp(estimates[s][0][j]),
                "ci_lower": _exp(estimates[s][0][j] - z * estimates[s][1][j]),
                "ci_upper": _exp(estimates[s][0][j] + z * estimates[s][1][j]),
            }
            for j, name in enumerate(names)
        }
        for s in ordered
    }
    if len(estimates) >= 2:
        out["heterogeneity"] = {}
        for j, name in enumerate(names):
            h = heterogeneity(  # by station id: the same numbers on every run
                [estimates[s][0][j] for s in sorted(estimates)],
                [estimates[s][1][j] for s in sorted(estimates)],
            )
            out["heterogeneity"][name] = {
                "q": h.q,
                "df": h.df,
                "p_value": h.p_value,
                "i2": h.i2,
                "tau2": h.tau2,
            }
    return out, warnings


# -- the strategy --------------------------------------------------------------------
def _fail(replies: Mapping[str, Reply], stage: str) -> None:
    bad = {s: r for s, r in replies.items() if not r.ok}
    if bad:
        station, reply = next(iter(bad.items()))
        raise ExecutorError(
            f"station {station} {reply.status} during {stage}: {reply.reason}"
        )


class CoxStrategy(RoundsStrategy):
    """The federated Cox fit over open sessions (see the module docstring)."""

    def __init__(self, opened: Mapping[str, Reply], parameters: Mapping[str, Any]):
        super().__init__()
        self.parameters = parameters
        self.mode = parameters.get("mode", "stratified")
        self.ties = parameters.get("ties", "efron")
        self.described = {
            s: r.output or {} for s, r in opened.items() if r.ok and r.output
        }
        # stations whose policy hides their name get no per-station line
        self.shown = {
            s for s, r in opened.items() if r.details.get("show_station_name", False)
        }
        self.left_out = population_warnings(opened, self.mode)
        self.request_id = next((r.request_id for r in opened.values()), "")

    def rounds(self) -> Rounds:
        """Design, then Newton-Raphson rounds, then the ``cox`` section."""
        for caveat in self.left_out:
            warn(PopulationWarning(caveat), stacklevel=2)
        described = self.described
        while True:  # agree a design; stations refusing it leave the session
            if not described:
                raise PolicyError("no station accepted the model design")
            design, warnings = agree_design(described, self.parameters)
            message: dict[str, Any] = {
                "op": "design",
                "design": _design_message(design),
            }
            times = np.empty(0)
            if self.mode == "pooled":
                times = np.unique(
                    np.concatenate(
                        [
                            np.asarray(d["event_times"], float)
                            for d in described.values()
                        ]
                    )
                )
                message["times"] = times.tolist()
            replies = yield {s: message for s in described}
            _fail({s: r for s, r in replies.items() if r.status == "error"}, "design")
            refused = [s for s, r in replies.items() if r.status == "refused"]
            if not refused:
                break
            for station in refused:
                self.leave(station)
                del described[station]

        p = design.p
        counts = {s: replies[s].output or {} for s in described}
        designed = dict(replies)
        previous: dict[str, Reply] = {}

        def evidence() -> list[dict[str, Any]]:
            # each message proves the pooled terms of the last one with every
            # station's output and signed receipt (and its stamped design reply)
            return [
                {"station": s, "output": r.output, "receipt": r.receipt}
                for part in (designed, previous)
                for s, r in sorted(part.items())
            ]

        def ask(message: dict[str, Any], stage: str) -> Rounds:
            if previous or message["op"] == "curvature":
                message["evidence"] = evidence()
            answers = yield {s: message for s in described}
            _fail(answers, stage)
            previous.clear()
            previous.update(answers)
            return dict(answers)

        firsts: dict[bytes, FirstOrder] = {}
        pooled_at: dict[bytes, RiskSetSums] = {}
        last: tuple[RiskSetSums, FirstOrder] | None = None  # pooled: at the last point
        steps = newton(p, max_iter=int(self.parameters.get("max_iter", 50)))
        request: Ask = next(steps)
        checked = False
        while True:
            beta = request.beta
            if request.need == "value":
                op = "terms" if self.mode == "stratified" else "sums"
                answers = yield from ask(
                    {"op": op, "beta": beta.tolist()}, "Newton-Raphson"
                )
                if self.mode == "stratified":
                    terms = add_terms(
                        [_terms(answers[s].output or {}, p) for s in sorted(answers)]
                    )
                    answer: Any = Value(terms.loglik, terms.gradient, terms.hessian)
                else:
                    sums = [
                        _sums(answers[s].output or {}, counts[s], times, p)
                        for s in sorted(answers)
                    ]
                    pooled = sums[0]
                    for part in sums[1:]:
                        pooled = pooled + part
                    first = first_order(pooled, beta, self.ties)
                    firsts[beta.tobytes()] = first
                    pooled_at[beta.tobytes()] = pooled
                    answer = Value(first.loglik, first.gradient)
            else:
                first = firsts.pop(beta.tobytes())
                last = (pooled_at.pop(beta.tobytes()), first)
                pooled_at.clear()
                answers = yield from ask(
                    {
                        "op": "curvature",
                        "beta": beta.tolist(),
                        "w1": encode_array(first.w1),
                        "w2": encode_array(first.w2),
                    },
                    "Newton-Raphson (curvature)",
                )
                curvature = sum(
                    (_curvature(answers[s].output or {}, p) for s in sorted(answers)),
                    np.zeros((p, p)),
                )
                answer = first.terms(curvature).hessian
            if not checked and (request.need == "hessian" or self.mode == "stratified"):
                # at the start: name covariates that cannot be estimated
                hessian = answer if request.need == "hessian" else answer.hessian
                check_estimable(-np.asarray(hessian), design.names)
                checked = True
            try:
                request = steps.send(answer)
            except StopIteration as stop:
                fit = stop.value
                break
        if not fit.converged or not np.all(np.isfinite(fit.beta)):
            big = [
                n for n, b in zip(design.names, fit.beta, strict=True) if abs(b) > 15
            ]
            raise ConvergenceError(
                f"the Cox fit did not converge in {fit.iterations} iterations"
                + (
                    f"; {', '.join(big)} grow without bound (a level without events?)"
                    if big
                    else ""
                )
                + ": merge sparse levels, drop covariates or raise max_iter"
            )
        checked_sections: dict[str, Any] = {}
        if self.parameters.get("checks", True):
            # one more round, at the converged point: the model checks
            check: dict[str, Any] = {"op": "checks", "beta": fit.beta.tolist()}
            if self.mode == "pooled":
                assert last is not None
                check["w1"] = encode_array(last[1].w1)
                check["w2"] = encode_array(last[1].w2)
            check["evidence"] = evidence()
            checks_replies = yield {s: check for s in described}
            refused = sorted(s for s, r in checks_replies.items() if not r.ok)
            if refused:
                warnings.append(
                    f"no model checks: {len(refused)} station(s) did not release "
                    "them (the fit above stands)"
                )
            else:
                shown = {s: s in self.shown for s in sorted(checks_replies)}
                checked_sections, caveats = checks_sections(
                    design,
                    fit,
                    {s: checks_replies[s].output or {} for s in sorted(checks_replies)},
                    station_labels(shown),
                    (last[0], self.ties) if self.mode == "pooled" and last else None,
                )
                warnings.extend(caveats)
        cox = cox_section(
            design, fit, self.mode, self.ties, described, [*self.left_out, *warnings]
        )
        cox.update(checked_sections)
        # with exactly one hidden station in the fit, the totals minus the shown
        # stations' lines would give its counts: then no station gets a line
        hidden = [s for s in described if s not in self.shown]
        cox["per_station"] = (
            {}
            if len(hidden) == 1
            else {s: v for s, v in cox["per_station"].items() if s in self.shown}
        )
        return {"cox": cox}


def check(parameters: Mapping[str, Any]) -> Sequence[str]:
    """Problems with the study's parameters together, as ``"key: fix"``."""
    covariates = list(parameters.get("covariates") or [])
    problems = [p for p in covariate_problems(parameters) if p.startswith("reference.")]
    problems += [
        f"covariates: '{parameters[role]}' is the {role} column; it cannot also be a "
        "covariate (drop it from covariates)"
        for role in ("time", "event")
        if parameters.get(role) in covariates
    ]
    problems += [
        p for p in covariate_problems(parameters) if p.startswith("categorical:")
    ]
    return problems


PLUGIN = register(
    TrainPlugin(
        name="survival.cox",
        strategy=CoxStrategy,
        # the station's Cox kernel answers from these roles and classes
        contract=Contract(
            columns={
                "time": ("column", "numeric", "time", False),
                "event": ("column", "binary", "event", False),
                "covariates": ("columns", "categorical", "covariate", False),
                "categorical": ("columns", "categorical", "covariate", False),
                "group": ("column", "categorical", "group", False),
            },
            output_class="model",
            class_by={"mode": {"pooled": "risk_set_sums"}},
        ),
        sections=(("cox", _cox),),
        check=check,
        # a study naming a group also gets survival.km's group-wise answers (KM,
        # log-rank, RMST, survival at a time) from a second, separately signed
        # request: its own class, policy decision, budget use and receipts
        companion=Companion(
            train="survival.km",
            parameters=(
                "time",
                "event",
                "group",
                "reference_group",
                "tau",
                "at",
                "time_unit",
            ),
            trigger="group",
        ),
    )
)
