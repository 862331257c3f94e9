"""``glm``: federated generalised linear models (gaussian, binomial, Poisson).

The strategy (orchestrator side of the session):

1. *design*: from the stations' round-0 descriptions agree the covariate kinds,
   levels and reference levels (:func:`pht.algorithms.design.agree_design`), no
   centring (coefficients as statsmodels reports them), an intercept, and with
   ``station_effects`` a dummy per station but the first; each station's design
   reply holds its :class:`pht.algorithms.glm.GlmSums`;
2. *Newton-Raphson* from the null model (:func:`pht.algorithms.glm_fit.origin`,
   computed from the pooled design sums, as every station recomputes it): each
   evaluation is one round of summed log-likelihood, gradient and Hessian; every
   message carries the signed evidence of the design round and the last round so
   each station replays the path;
3. *checks*: one more round at the converged point, which a station accepts only
   there: the pieces of the standard errors (model-based, HC0, cluster by station)
   and the fit statistics (:func:`pht.algorithms.glm_fit.glm_result`);
4. *result*: the ``glm`` section.

Errors name what to change: constant or collinear covariates (at the first
evaluation), perfect separation (naming the covariates), non-convergence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pht.algorithms.cox import Design
from pht.algorithms.design import agree_design, covariate_problems
from pht.algorithms.glm import GlmPieces
from pht.algorithms.glm_fit import (
    GlmResult,
    check_estimable,
    check_fit,
    glm_result,
    newton_from,
    pool_pieces,
)
from pht.algorithms.glm_local import model_of, pooled_start
from pht.algorithms.optimize import Answer, Ask, Fit, Value
from pht.errors import DataError, ExecutorError, PolicyError
from pht.orchestrator.report import escape, number, section, table
from pht.trains import register
from pht.trains.base import Contract, Rounds, RoundsStrategy, TrainPlugin
from pht.wire import Reply

INTERCEPT = "Intercept"


def _fail(replies: Mapping[str, Reply], stage: str) -> None:
    bad = {s: r for s, r in replies.items() if not r.ok}
    if bad:
        station, reply = sorted(bad.items())[0]
        raise ExecutorError(
            f"station {station} {reply.status} during {stage}: {reply.reason}"
        )


def _design_message(design: Design, stations: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "covariates": [
            {"column": c.column, "levels": list(c.levels), "reference": c.reference}
            for c in design.covariates
        ],
        "centre": [0.0] * design.p,
    }
    if stations:
        out["stations"] = list(stations)
    return out


def _value(outputs: Mapping[str, Mapping[str, Any]], p: int) -> Value:
    """Summed terms over stations (sorted, as each station replays them)."""
    loglik, gradient, hessian = 0.0, np.zeros(p), np.zeros((p, p))
    try:
        for station in sorted(outputs):
            out = outputs[station]
            if out.get("loglik") is None:
                nan = np.full(p, np.nan)
                return Value(-math.inf, nan, np.full((p, p), np.nan))
            loglik += float(out["loglik"])
            gradient = gradient + np.asarray(out["gradient"], dtype=float).reshape(p)
            hessian = hessian + np.asarray(out["hessian"], dtype=float).reshape(p, p)
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"a station returned malformed model terms ({exc})") from None
    return Value(loglik, gradient, hessian)


def _pieces(output: Mapping[str, Any], p: int) -> GlmPieces:
    try:
        return GlmPieces(
            rows=int(output["rows"]),
            wnobs=float(output["wnobs"]),
            fisher=np.asarray(output["fisher"], dtype=float).reshape(p, p),
            score_outer=np.asarray(output["score_outer"], dtype=float).reshape(p, p),
            score_sum=np.asarray(output["score_sum"], dtype=float).reshape(p),
            deviance=float(output["deviance"]),
            pearson_chi2=float(output["pearson_chi2"]),
            null_deviance=float(output["null_deviance"]),
            null_loglik=float(output["null_loglik"]),
            log_var_weights=float(output["log_var_weights"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"a station returned malformed fit pieces ({exc})") from None


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def glm_section(
    result: GlmResult,
    design: Design,
    described: Mapping[str, Mapping[str, Any]],
    shown: set[str],
    hidden_effects: int,
    warnings: list[str],
    parameters: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``glm`` section of ``result.json``.

    Station fixed effects are listed only when every station of the fit shows its
    name (``hidden_effects`` counts those left out of the table and covariances).
    """
    keep = [j for j, n in enumerate(result.names) if not n.startswith("station[")]
    if not hidden_effects:
        keep = list(range(len(result.names)))

    def cov(matrix: np.ndarray | None) -> list[list[float]] | None:
        if matrix is None:
            return None
        return [[float(matrix[i, j]) for j in keep] for i in keep]

    params = {}
    for j in keep:
        c = result.coefficients[j]
        params[c.name] = {
            "coef": c.coef,
            "se": c.se,
            "z": c.z,
            "p_value": c.p_value,
            "ci_lower": c.ci_lower,
            "ci_upper": c.ci_upper,
            "exp_coef": c.exp_coef,
            "exp_ci_lower": c.exp_ci_lower,
            "exp_ci_upper": c.exp_ci_upper,
            "se_model": float(math.sqrt(result.model_covariance[j, j])),
            "se_hc0": float(math.sqrt(result.hc0_covariance[j, j])),
            "se_cluster": None
            if result.cluster_covariance is None
            else float(math.sqrt(result.cluster_covariance[j, j])),
        }
    events = [d.get("events") for d in described.values()]
    hidden = [s for s in described if s not in shown]
    return {
        "family": result.family,
        "link": result.link,
        "effect": result.effect,
        "outcome": parameters.get("outcome"),
        "cov_type": result.cov_type,
        "alpha": float(parameters.get("alpha", 0.05)),
        "params": params,
        "covariance": cov(result.covariance),
        "model_covariance": cov(result.model_covariance),
        "hc0_covariance": cov(result.hc0_covariance),
        "cluster_covariance": cov(result.cluster_covariance),
        "station_effects": bool(parameters.get("station_effects")),
        "station_effects_hidden": hidden_effects,
        "scale": result.scale,
        "deviance": result.deviance,
        "null_deviance": result.null_deviance,
        "pearson_chi2": result.pearson_chi2,
        "loglik": _finite(result.loglik),
        "null_loglik": _finite(result.null_loglik),
        "aic": _finite(result.aic),
        "n": result.nobs,
        "events": None if None in events else sum(int(e or 0) for e in events),
        "df_model": result.df_model,
        "df_resid": result.df_resid,
        "stations": result.clusters,
        "iterations": result.iterations,
        "step_halvings": result.step_halvings,
        "converged": result.converged,
        "reference_levels": {
            c.column: c.reference for c in design.covariates if c.categorical
        },
        # with exactly one hidden station, totals minus the shown lines give it away
        "per_station": {}
        if len(hidden) == 1
        else {
            s: {"n": int(d["n"]), "events": d.get("events")}
            for s, d in sorted(described.items())
            if s in shown
        },
        "warnings": warnings,
    }


class GlmStrategy(RoundsStrategy):
    """The federated GLM fit over open sessions (see the module docstring)."""

    def __init__(self, opened: Mapping[str, Reply], parameters: Mapping[str, Any]):
        super().__init__()
        self.parameters = parameters
        self.model = model_of(parameters)
        self.described = {
            s: r.output or {} for s, r in opened.items() if r.ok and r.output
        }
        self.shown = {
            s for s, r in opened.items() if r.details.get("show_station_name", False)
        }

    def rounds(self) -> Rounds:
        """Design, Newton-Raphson rounds, the checks round, then the section."""
        params = self.parameters
        effects = bool(params.get("station_effects"))
        described = dict(self.described)
        while True:  # agree a design; stations refusing it leave the session
            if not described:
                raise PolicyError("no station accepted the model design")
            if effects and len(described) < 2:
                raise DataError(
                    "parameters.station_effects: only one station took part, so there "
                    "is no station effect to estimate; set station_effects: false"
                )
            design, warnings = agree_design(
                described,
                {**params, "mode": "stratified" if effects else "pooled"},
            )
            stations = sorted(described) if effects else None
            message = {"op": "design", "design": _design_message(design, stations)}
            replies = yield {s: message for s in described}
            _fail({s: r for s, r in replies.items() if r.status == "error"}, "design")
            refused = [s for s, r in replies.items() if r.status == "refused"]
            if not refused:
                break
            for station in refused:
                self.leave(station)
                del described[station]
        stations = sorted(described)
        names = [INTERCEPT, *design.names]
        if effects:
            names += [f"station[T.{s}]" for s in stations[1:]]
        p = len(names)
        designed = dict(replies)
        try:
            start, null = pooled_start(
                self.model, {s: r.output or {} for s, r in designed.items()}, p
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"a station returned malformed design sums ({exc})"
            ) from None
        previous: dict[str, Reply] = {}

        def evidence() -> list[dict[str, Any]]:
            return [
                {"station": s, "output": r.output, "receipt": r.receipt}
                for part in (designed, previous)
                for s, r in sorted(part.items())
            ]

        def ask(message: dict[str, Any], stage: str) -> Rounds:
            message["evidence"] = evidence()
            answers = yield {s: message for s in described}
            _fail(answers, stage)
            previous.clear()
            previous.update(answers)
            return dict(answers)

        steps = newton_from(start, max_iter=int(params.get("max_iter", 50)))
        request: Ask = next(steps)
        information: np.ndarray | None = None
        while True:
            answers = yield from ask(
                {"op": "terms", "beta": request.beta.tolist()}, "Newton-Raphson"
            )
            value = _value({s: answers[s].output or {} for s in answers}, p)
            if information is None:
                if value.hessian is None or not math.isfinite(value.loglik):
                    raise DataError("the null model lies outside the parameter space")
                information = -value.hessian
                check_estimable(information, names)
            answer: Answer = value
            try:
                request = steps.send(answer)
            except StopIteration as stop:
                fit: Fit = stop.value
                break
        assert information is not None
        check_fit(self.model, names, fit, start, information)
        checks = yield from ask(
            {"op": "checks", "beta": fit.beta.tolist(), "null_intercept": null},
            "the checks",
        )
        pooled = pool_pieces(
            [_pieces(checks[s].output or {}, p) for s in sorted(checks)]
        )
        cov_type = str(params.get("cov_type", "model"))
        if cov_type == "cluster" and len(stations) < 2:
            raise DataError(
                "parameters.cov_type: cluster-robust standard errors need at least 2 "
                "stations; use HC0"
            )
        result = glm_result(
            self.model,
            names,
            fit,
            pooled,
            cov_type=cov_type,  # type: ignore[arg-type]
            alpha=float(params.get("alpha", 0.05)),
        )
        if pooled.clusters < 10 and cov_type == "cluster":
            warnings.append(
                f"cluster-robust standard errors from {pooled.clusters} stations are "
                "unreliable (dozens of clusters are needed); read HC0 beside them"
            )
        hidden_effects = (
            len(stations) - 1 if effects and not set(stations) <= self.shown else 0
        )
        if hidden_effects:
            warnings.append(
                f"the {hidden_effects} station fixed effect(s) are in the model but "
                "not shown: a station's policy hides its name"
            )
        return {
            "glm": glm_section(
                result, design, described, self.shown, hidden_effects, warnings, params
            )
        }


def check(parameters: Mapping[str, Any]) -> Sequence[str]:
    """Problems with the study's parameters together, as ``"key: fix"``."""
    from pht.algorithms.glm import LINKS

    problems: list[str] = []
    family = str(parameters.get("family"))
    link = parameters.get("link")
    if link is not None and family in LINKS and link not in LINKS[family]:
        problems.append(
            f"link: '{link}' is not available for family '{family}'; use one of "
            f"{', '.join(LINKS[family])}"
        )
    covariates = list(parameters.get("covariates") or [])
    outcome = parameters.get("outcome")
    if outcome in covariates:
        problems.append(
            f"covariates: '{outcome}' is the outcome; it cannot also be a covariate "
            "(drop it from covariates)"
        )
    exposure = parameters.get("exposure")
    if exposure is not None and family != "poisson":
        problems.append(
            f"exposure: an exposure (log person-time offset) is for family poisson, "
            f"not {family}; drop it or use family: poisson"
        )
    if exposure is not None and exposure in covariates:
        problems.append(
            f"exposure: '{exposure}' is also a covariate; drop it from covariates"
        )
    problems += covariate_problems(parameters)
    return problems


def _render(result: Mapping[str, Any]) -> str:
    """The ``glm`` section of the report: coefficients and fit statistics."""
    glm = result["glm"]
    effect = glm.get("effect")
    alpha = float(glm.get("alpha") or 0.05)
    level = f"{100 * (1 - alpha):g}% CI"
    header = ["Term", "coef", f"SE ({glm.get('cov_type')})", level, "p-value"]
    if effect:
        header += [effect, f"{effect} {level}"]
    rows = []
    for name, p in (glm.get("params") or {}).items():
        row = [
            escape(name),
            number(p.get("coef"), 4),
            number(p.get("se"), 4),
            f"{number(p.get('ci_lower'), 4)} to {number(p.get('ci_upper'), 4)}",
            "< 0.0001"
            if (p.get("p_value") or 0) < 1e-4
            else number(p.get("p_value"), 4),
        ]
        if effect:
            row += [
                number(p.get("exp_coef"), 3),
                f"{number(p.get('exp_ci_lower'), 3)} to "
                f"{number(p.get('exp_ci_upper'), 3)}",
            ]
        rows.append(row)
    refs = glm.get("reference_levels") or {}
    facts = (
        f"<p>{escape(glm.get('family'))} GLM ({escape(glm.get('link'))} link) of "
        f"<code>{escape(glm.get('outcome'))}</code> on {number(glm.get('n'))} "
        f"patients at {number(glm.get('stations'))} station(s); deviance "
        f"{number(glm.get('deviance'), 2)} (null {number(glm.get('null_deviance'), 2)})"
        f", {number(glm.get('iterations'))} Newton-Raphson iterations, converged: "
        f"{'yes' if glm.get('converged') else 'no'}.</p>"
    )
    notes = ""
    if refs:
        notes += (
            '<p class="note">Reference levels: '
            + ", ".join(f"{escape(c)} = {escape(r)}" for c, r in refs.items())
            + ".</p>"
        )
    for warning in glm.get("warnings") or []:
        notes += f'<p class="warn">Warning: {escape(warning)}</p>'
    body = facts + table(header, rows, align="l", name="glm_coefficients") + notes
    return section("glm", "Generalised linear model", body)


PLUGIN = register(
    TrainPlugin(
        name="glm",
        strategy=GlmStrategy,
        contract=Contract(
            columns={
                "outcome": ("column", "numeric", "outcome", False),
                "covariates": ("columns", "categorical", "covariate", False),
                "categorical": ("columns", "categorical", "covariate", False),
                "exposure": ("column", "numeric", "time", False),
            },
            output_class="model",
        ),
        sections=(("glm", _render),),
        check=check,
    )
)
