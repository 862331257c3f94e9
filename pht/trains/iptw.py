"""``iptw``: propensity-score weighting with a weighted outcome model, one session.

The strategy (orchestrator side; the station side is
:mod:`pht.algorithms.iptw_local`, the maths :mod:`pht.algorithms.iptw`):

1. *design* of the propensity model: the treatment indicator (``treatment ==
   treated`` vs ``control``; other levels are left out) on the agreed covariates
   (:func:`pht.algorithms.design.agree_design`, as ``glm``); stations holding no
   patient of an arm refuse the design and leave;
2. *propensity path*: logistic Newton-Raphson from the null model of the signed
   design sums (``terms`` rounds), replayed by every station;
3. *weights*: once, at the converged point, each station weights its patients with
   that point's propensity scores and releases sums (balance, effective sample
   sizes, extreme-weight counts, the outcome model's origin sums); with
   ``truncate`` a second round at the grid cut-off of the pooled percentile;
4. *outcome path*: the weighted outcome model (``outcome`` rounds): a GLM of
   ``[1, treated]`` (``outcome_covariates``: ``+ design``) from its weighted null
   model, or a Cox model of ``[treated]`` (``+ design``) stratified by station from
   zero;
5. *checks*: once at its converged point: the GLM's pieces (HC0 sandwich: the
   model-based SE ignores that the weights were estimated) or each station's Cox
   robust meat (sandwich, as R ``coxph(weights=, robust=TRUE)``);
6. *result*: the ``iptw`` section.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import numpy as np

from pht.algorithms.cox import Design
from pht.algorithms.cox_weighted import sandwich, wald
from pht.algorithms.design import agree_design, covariate_problems
from pht.algorithms.glm import GlmModel, glm_model
from pht.algorithms.glm_fit import (
    check_estimable,
    check_fit,
    glm_result,
    newton_from,
    null_intercept,
    origin,
    pool_pieces,
)
from pht.algorithms.glm_local import pooled_start
from pht.algorithms.iptw import EXTREME, ArmSums, balance
from pht.algorithms.iptw_local import (
    arm_of,
    cutoff_of,
    outcome_model_of,
    outcome_sums_of,
)
from pht.algorithms.numeric import normal_two_sided_p, z_critical
from pht.algorithms.optimize import Answer, Ask, Fit
from pht.errors import DataError, PolicyError
from pht.orchestrator.report import escape, number, section, table
from pht.trains import register
from pht.trains.base import Contract, Message, Rounds, RoundsStrategy, TrainPlugin
from pht.trains.glm import INTERCEPT, _design_message, _fail, _pieces, _value
from pht.wire import Reply

PROPENSITY = glm_model("binomial")
SMD_NOTE = (
    "standardised mean difference (m1 - m0) / sqrt((s1^2 + s0^2) / 2) with the "
    "unweighted sample variances of the arms in the denominator before and after "
    "weighting (cobalt's s.d.denom = 'pooled'); after weighting the means are "
    "weighted"
)


def _pooled_arms(
    outputs: Mapping[str, Mapping[str, Any]], p: int
) -> tuple[ArmSums, ArmSums]:
    """The arms' sums over stations (sorted order)."""
    try:
        parts = [
            (arm_of(outputs[s]["treated"], p), arm_of(outputs[s]["control"], p))
            for s in sorted(outputs)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"a station returned malformed weight sums ({exc})") from None
    treated, control = parts[0]
    for t, c in parts[1:]:
        treated, control = treated + t, control + c
    return treated, control


def _extreme(outputs: Mapping[str, Mapping[str, Any]], k_note: str) -> dict[str, Any]:
    """Pooled extreme-weight counts per arm; a station's 1..k-1 is not released."""
    out: dict[str, Any] = {}
    for arm in ("treated", "control"):
        rows = []
        for i, cut in enumerate(EXTREME):
            counts = [outputs[s]["extreme"][arm][i] for s in sorted(outputs)]
            hidden = sum(c is None for c in counts)
            rows.append(
                {
                    "above": cut,
                    "count": sum(int(c) for c in counts if c is not None),
                    "stations_with_fewer_than_k": hidden,
                    "note": k_note if hidden else None,
                }
            )
        out[arm] = rows
    return out


def _effect_name(model: GlmModel | None) -> str | None:
    return "hazard ratio" if model is None else model.effect


def _outcome_glm(
    model: GlmModel,
    names: list[str],
    fit: Fit,
    checks: Mapping[str, Reply],
    alpha: float,
) -> dict[str, Any]:
    p = len(names)
    pooled = pool_pieces([_pieces(checks[s].output or {}, p) for s in sorted(checks)])
    result = glm_result(model, names, fit, pooled, cov_type="HC0", alpha=alpha)
    params = {
        c.name: {
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
        }
        for j, c in enumerate(result.coefficients)
    }
    return {
        "model": "glm",
        "family": model.family,
        "link": model.link,
        "effect": model.effect,
        "se_type": "robust (HC0 sandwich)",
        "params": params,
        "covariance": result.hc0_covariance.tolist(),
        "deviance": result.deviance,
        "n": result.nobs,
        "iterations": result.iterations,
        "converged": result.converged,
        "note": "the model-based standard error (se_model) treats the weights as "
        "known frequency weights and is wrong under IPTW; the robust HC0 one is "
        "reported (it ignores the estimation of the propensity score, which makes "
        "it conservative for the ATE)",
    }


def _outcome_cox(
    names: list[str], fit: Fit, checks: Mapping[str, Reply], alpha: float
) -> dict[str, Any]:
    p = len(names)
    meat = np.zeros((p, p))
    try:
        for s in sorted(checks):
            output = checks[s].output or {}
            meat += np.asarray(output["meat"], dtype=np.float64).reshape(p, p)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"a station returned a malformed Cox meat ({exc})") from None
    information = -fit.terms.hessian
    robust = sandwich(information, meat)
    model_cov = np.linalg.inv(information)
    coefficients = wald(names, fit.beta, robust, alpha)
    params = {
        c.name: {
            "coef": c.coef,
            "se": c.se,
            "z": c.z,
            "p_value": c.p_value,
            "ci_lower": c.coef - z_critical(alpha) * c.se,
            "ci_upper": c.coef + z_critical(alpha) * c.se,
            "exp_coef": c.hr,
            "exp_ci_lower": c.ci_lower,
            "exp_ci_upper": c.ci_upper,
            "se_model": float(math.sqrt(model_cov[j, j])),
        }
        for j, c in enumerate(coefficients)
    }
    return {
        "model": "cox",
        "ties": "efron",
        "stratified": True,
        "effect": "hazard ratio",
        "se_type": "robust (sandwich, as R coxph(weights=, robust=TRUE))",
        "params": params,
        "covariance": robust.tolist(),
        "loglik": fit.terms.loglik,
        "iterations": fit.iterations,
        "converged": fit.converged,
        "note": "stratified by station (a baseline hazard per station); the "
        "model-based standard error (se_model) is wrong under IPTW",
    }


class IptwStrategy(RoundsStrategy):
    """The federated IPTW analysis over open sessions (see the module docstring)."""

    def __init__(self, opened: Mapping[str, Reply], parameters: Mapping[str, Any]):
        super().__init__()
        self.parameters = parameters
        self.outcome_model = outcome_model_of(parameters)
        self.described = {
            s: r.output or {} for s, r in opened.items() if r.ok and r.output
        }

    def _arms_present(self, described: Mapping[str, Mapping[str, Any]]) -> None:
        params = self.parameters
        for arm in ("treated", "control"):
            total = sum(
                int((d.get("arms") or {}).get(arm) or 0) for d in described.values()
            )
            if described and total == 0:
                raise DataError(
                    f"{arm}: level '{params[arm]}' of '{params['treatment']}' is held "
                    "by no patient at the stations that took part; check the spelling "
                    "or name another level"
                )

    def rounds(self) -> Rounds:  # noqa: C901 - one readable session
        """Design, the two Newton paths around the weights, checks, the section."""
        params = self.parameters
        alpha = float(params.get("alpha", 0.05))
        max_iter = int(params.get("max_iter", 50))
        described = dict(self.described)
        self._arms_present(described)
        while True:  # agree a design; stations refusing it leave the session
            if not described:
                raise PolicyError("no station accepted the propensity model design")
            design, warnings = agree_design(described, {**params, "mode": "pooled"})
            message = {"op": "design", "design": _design_message(design, None)}
            replies = yield {s: message for s in described}
            _fail({s: r for s, r in replies.items() if r.status == "error"}, "design")
            refused = [s for s, r in replies.items() if r.status == "refused"]
            if not refused:
                break
            for station in refused:
                self.leave(station)
                del described[station]
        names = [INTERCEPT, *design.names]
        p = len(names)
        designed = dict(replies)
        try:
            start, _ = pooled_start(
                PROPENSITY, {s: r.output or {} for s, r in designed.items()}, p
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"a station returned malformed design sums ({exc})"
            ) from None
        previous: dict[str, Reply] = {}

        def ask(message: dict[str, Any], stage: str) -> Rounds:
            message["evidence"] = [
                {"station": s, "output": r.output, "receipt": r.receipt}
                for part in (designed, previous)
                for s, r in sorted(part.items())
            ]
            answers = yield {s: message for s in described}
            _fail(answers, stage)
            previous.clear()
            previous.update(answers)
            return dict(answers)

        def newton(
            op: str, origin_: np.ndarray, labels: list[str], stage: str
        ) -> Generator[Mapping[str, Message], Mapping[str, Reply], tuple[Fit, Any]]:
            steps = newton_from(origin_, max_iter=max_iter)
            request: Ask = next(steps)
            information: np.ndarray | None = None
            n_par = len(labels)
            while True:
                answers = yield from ask(
                    {"op": op, "beta": request.beta.tolist()}, stage
                )
                value = _value({s: answers[s].output or {} for s in answers}, n_par)
                if information is None:
                    if value.hessian is None or not math.isfinite(value.loglik):
                        raise DataError(
                            f"{stage}: the null model lies outside the parameter space"
                        )
                    information = -value.hessian
                    check_estimable(information, labels)
                answer: Answer = value
                try:
                    request = steps.send(answer)
                except StopIteration as stop:
                    return stop.value, information

        # -- the propensity model -----------------------------------------------------
        fit, information = yield from newton(
            "terms", start, names, "the propensity model"
        )
        try:
            check_fit(
                PROPENSITY,
                names,
                fit,
                start,
                information,
                f"the treatment ({params['treatment']} = {params['treated']}; "
                "a positivity violation: some patients can only get one arm)",
            )
        except DataError as exc:
            raise DataError(
                f"the propensity model of '{params['treatment']}': {exc}"
            ) from None
        ps_cov = np.linalg.inv(-fit.terms.hessian)
        weighed = yield from ask(
            {"op": "weights", "beta": fit.beta.tolist()}, "the weights"
        )
        outputs = {s: r.output or {} for s, r in weighed.items()}
        arms = _pooled_arms(outputs, p - 1)
        k_note = "fewer than k at some station (not released)"
        extreme = _extreme(outputs, k_note)
        truncation: dict[str, Any] | None = None
        untruncated = arms
        q = params.get("truncate")
        if q is not None:
            try:
                cutoff = cutoff_of(outputs, float(q))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(
                    f"a station returned malformed weight counts ({exc})"
                ) from None
            weighed = yield from ask(
                {"op": "truncate", "beta": fit.beta.tolist(), "cutoff": cutoff},
                "the truncation",
            )
            outputs = {s: r.output or {} for s, r in weighed.items()}
            arms = _pooled_arms(outputs, p - 1)
            truncation = {"percentile": float(q), "cutoff": cutoff}
        elif any(
            row["count"] or row["stations_with_fewer_than_k"]
            for rows in extreme.values()
            for row in rows
        ):
            warnings.append(
                "some weights exceed 10 (see extreme_weights); consider truncating "
                "them: set truncate, e.g. truncate: 0.99 (the pooled 99th percentile)"
            )
        # -- the outcome model ----------------------------------------------------------
        treated_name = f"{params['treatment']}[T.{params['treated']}]"
        extra = list(design.names) if params.get("outcome_covariates") else []
        model = self.outcome_model
        if model is not None:
            out_names = [INTERCEPT, treated_name, *extra]
            try:
                sums = outcome_sums_of(outputs)
                out_start = origin(model, sums, len(out_names))
                null = null_intercept(model, sums)
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(
                    f"a station returned malformed outcome sums ({exc})"
                ) from None
        else:
            out_names = [treated_name, *extra]
            out_start, null = np.zeros(len(out_names)), None
        out_fit, out_info = yield from newton(
            "outcome", out_start, out_names, "the outcome model"
        )
        if model is not None:
            check_fit(model, out_names, out_fit, out_start, out_info)
        elif not out_fit.converged:
            raise DataError(
                f"the weighted Cox model did not converge in {out_fit.iterations} "
                "iterations: a covariate may separate the events or the weights may "
                "be extreme; set truncate or drop covariates"
            )
        checking: dict[str, Any] = {"op": "checks", "beta": out_fit.beta.tolist()}
        if null is not None:
            checking["null_intercept"] = null
        checks = yield from ask(checking, "the checks")
        outcome = (
            _outcome_glm(model, out_names, out_fit, checks, alpha)
            if model is not None
            else _outcome_cox(out_names, out_fit, checks, alpha)
        )
        outcome["term"] = treated_name
        outcome["estimate"] = outcome["params"][treated_name]
        return {
            "iptw": iptw_section(
                params=params,
                design=design,
                ps_names=names,
                ps_fit=fit,
                ps_cov=ps_cov,
                arms=arms,
                untruncated=untruncated,
                extreme=extreme,
                truncation=truncation,
                outcome=outcome,
                stations=len(described),
                warnings=warnings,
            )
        }


def iptw_section(
    *,
    params: Mapping[str, Any],
    design: Design,
    ps_names: Sequence[str],
    ps_fit: Fit,
    ps_cov: np.ndarray,
    arms: tuple[ArmSums, ArmSums],
    untruncated: tuple[ArmSums, ArmSums],
    extreme: Mapping[str, Any],
    truncation: Mapping[str, Any] | None,
    outcome: Mapping[str, Any],
    stations: int,
    warnings: list[str],
) -> dict[str, Any]:
    """The ``iptw`` section of ``result.json``."""
    alpha = float(params.get("alpha", 0.05))
    z_crit = z_critical(alpha)
    propensity = {}
    for j, name in enumerate(ps_names):
        b, s = float(ps_fit.beta[j]), float(math.sqrt(ps_cov[j, j]))
        propensity[name] = {
            "coef": b,
            "se": s,
            "z": b / s,
            "p_value": normal_two_sided_p(b / s),
            "ci_lower": b - z_crit * s,
            "ci_upper": b + z_crit * s,
            "odds_ratio": math.exp(b),
        }
    treated, control = arms

    def rows(pair: tuple[ArmSums, ArmSums]) -> list[dict[str, Any]]:
        return [
            {
                "term": r.name,
                "mean_treated": r.mean_treated,
                "mean_control": r.mean_control,
                "mean_treated_weighted": r.mean_treated_weighted,
                "mean_control_weighted": r.mean_control_weighted,
                "smd_before": r.smd_before,
                "smd_after": r.smd_after,
                "variance_ratio_before": r.variance_ratio_before,
                "variance_ratio_after": r.variance_ratio_after,
            }
            for r in balance(ps_names[1:], *pair)
        ]

    return {
        "treatment": params["treatment"],
        "treated": params["treated"],
        "control": params["control"],
        "estimand": params.get("estimand", "ATE"),
        "stabilised": bool(params.get("stabilised", False)),
        "alpha": alpha,
        "stations": stations,
        "n": {"treated": treated.n, "control": control.n},
        "propensity": {
            "params": propensity,
            "covariance": np.asarray(ps_cov).tolist(),
            "loglik": ps_fit.terms.loglik,
            "iterations": ps_fit.iterations,
            "converged": ps_fit.converged,
            "reference_levels": {
                c.column: c.reference for c in design.covariates if c.categorical
            },
        },
        "balance": rows(arms),
        "balance_untruncated": rows(untruncated) if truncation else None,
        "balance_note": SMD_NOTE,
        "ess": {"treated": treated.ess, "control": control.ess},
        "weight_sums": {
            "treated": {"sum": treated.w_sum, "sum_squares": treated.w2_sum},
            "control": {"sum": control.w_sum, "sum_squares": control.w2_sum},
        },
        "extreme_weights": dict(extreme),
        "extreme_weights_note": "per arm, patients whose (untruncated) weight exceeds "
        "each cut-off; a station's count of 1 to k-1 is not released",
        "truncation": dict(truncation) if truncation else None,
        "outcome": dict(outcome),
        "warnings": warnings,
    }


def check(parameters: Mapping[str, Any]) -> Sequence[str]:
    """Problems with the study's parameters together, as ``"key: fix"``."""
    from pht.algorithms.glm import LINKS

    problems: list[str] = []
    treatment = parameters.get("treatment")
    covariates = list(parameters.get("covariates") or [])
    if str(parameters.get("treated")) == str(parameters.get("control")):
        problems.append(
            f"control: equals treated ('{parameters.get('treated')}'); name two "
            f"different levels of '{treatment}'"
        )
    if treatment in covariates:
        problems.append(
            f"covariates: '{treatment}' is the treatment; drop it from covariates"
        )
    kind = parameters.get("outcome_model", "glm")
    outcome = parameters.get("outcome")
    if kind == "glm":
        if outcome is None:
            problems.append(
                "outcome: required for outcome_model glm; name the outcome column "
                "(e.g. tox_grade3), or set outcome_model: cox with time and event"
            )
        for key in ("time", "event"):
            if parameters.get(key) is not None:
                problems.append(
                    f"{key}: only for outcome_model cox; drop it or set "
                    "outcome_model: cox"
                )
        family = str(parameters.get("family", "binomial"))
        link = parameters.get("link")
        if link is not None and family in LINKS and link not in LINKS[family]:
            problems.append(
                f"link: '{link}' is not available for family '{family}'; use one of "
                f"{', '.join(LINKS[family])}"
            )
    else:
        for key in ("time", "event"):
            if parameters.get(key) is None:
                problems.append(
                    f"{key}: required for outcome_model cox (e.g. "
                    f"{'os_days' if key == 'time' else 'death'})"
                )
        if outcome is not None:
            problems.append(
                "outcome: not used by outcome_model cox (time and event are); drop it"
            )
    for key, value in (("outcome", outcome), ("time", parameters.get("time"))):
        if value is not None and value in covariates:
            problems.append(
                f"covariates: '{value}' is the {key}; it cannot also be a covariate "
                "(drop it from covariates)"
            )
        if value is not None and value == treatment:
            problems.append(f"{key}: '{value}' is the treatment; name another column")
    problems += covariate_problems(parameters)
    return problems


def _render(result: Mapping[str, Any]) -> str:
    """The ``iptw`` section of the report: the effect, the balance table, the PS."""
    r = result["iptw"]
    out = r.get("outcome") or {}
    est = out.get("estimate") or {}
    alpha = float(r.get("alpha") or 0.05)
    level = f"{100 * (1 - alpha):g}% CI"
    effect = out.get("effect")
    facts = (
        f"<p>{escape(r.get('estimand'))} of <code>{escape(r.get('treatment'))}</code> "
        f"= {escape(r.get('treated'))} vs {escape(r.get('control'))} "
        f"({number((r.get('n') or {}).get('treated'))} vs "
        f"{number((r.get('n') or {}).get('control'))} patients at "
        f"{number(r.get('stations'))} station(s); effective sample sizes "
        f"{number((r.get('ess') or {}).get('treated'), 1)} vs "
        f"{number((r.get('ess') or {}).get('control'), 1)}), "
        f"{'stabilised ' if r.get('stabilised') else ''}weights"
    )
    trunc = r.get("truncation")
    if trunc:
        facts += (
            f" truncated at {number(trunc.get('cutoff'), 3)} (pooled "
            f"{100 * float(trunc.get('percentile')):g}th percentile on the grid)"
        )
    facts += ".</p>"
    header = ["Term", "coef", f"SE ({escape(out.get('se_type'))})", level, "p-value"]
    row = [
        escape(out.get("term")),
        number(est.get("coef"), 4),
        number(est.get("se"), 4),
        f"{number(est.get('ci_lower'), 4)} to {number(est.get('ci_upper'), 4)}",
        number(est.get("p_value"), 4),
    ]
    if effect:
        header += [escape(effect), f"{escape(effect)} {level}"]
        row += [
            number(est.get("exp_coef"), 3),
            f"{number(est.get('exp_ci_lower'), 3)} to "
            f"{number(est.get('exp_ci_upper'), 3)}",
        ]
    effect_table = table(header, [row], align="l", name="iptw_effect")
    balance_rows = [
        [
            escape(b["term"]),
            number(b["mean_treated"], 3),
            number(b["mean_control"], 3),
            number(b["smd_before"], 3),
            number(b["mean_treated_weighted"], 3),
            number(b["mean_control_weighted"], 3),
            number(b["smd_after"], 3),
        ]
        for b in r.get("balance") or []
    ]
    balance_table = table(
        [
            "Term",
            "mean treated",
            "mean control",
            "SMD before",
            "weighted mean treated",
            "weighted mean control",
            "SMD after",
        ],
        balance_rows,
        align="l",
        name="iptw_balance",
    )
    notes = f'<p class="note">SMD: {escape(r.get("balance_note"))}.</p>'
    notes += f'<p class="note">{escape(out.get("note"))}.</p>'
    for warning in r.get("warnings") or []:
        notes += f'<p class="warn">Warning: {escape(warning)}</p>'
    body = facts + effect_table + "<h3>Balance</h3>" + balance_table + notes
    return section("iptw", "Propensity-score weighting (IPTW)", body)


PLUGIN = register(
    TrainPlugin(
        name="iptw",
        strategy=IptwStrategy,
        contract=Contract(
            columns={
                "treatment": ("column", "categorical", "covariate", False),
                "covariates": ("columns", "categorical", "covariate", False),
                "categorical": ("columns", "categorical", "covariate", False),
                "outcome": ("column", "numeric", "outcome", False),
                "time": ("column", "numeric", "time", False),
                "event": ("column", "binary", "event", False),
            },
            output_class="model",
        ),
        sections=(("iptw", _render),),
        check=check,
    )
)
