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
3. *result*: coefficients, standard errors, hazard ratios with Wald CIs, the
   likelihood-ratio test (:func:`pht.orchestrator.drivers.cox_section`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pht.algorithms.cox import FirstOrder, add_terms, first_order
from pht.algorithms.optimize import Ask, Value, newton
from pht.errors import ConvergenceError, ExecutorError, PolicyError
from pht.orchestrator.drivers import (
    _curvature,
    _design_message,
    _sums,
    _terms,
    agree_design,
    check_estimable,
    cox_section,
    population_warnings,
)
from pht.orchestrator.report import _cox
from pht.trains import register
from pht.trains.base import Companion, Rounds, RoundsStrategy, TrainPlugin
from pht.wire import Reply, encode_array


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

    def rounds(self) -> Rounds:
        """Design, then Newton-Raphson rounds, then the ``cox`` section."""
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
                    answer = Value(first.loglik, first.gradient)
            else:
                first = firsts.pop(beta.tobytes())
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
        cox = cox_section(
            design, fit, self.mode, self.ties, described, [*self.left_out, *warnings]
        )
        cox["per_station"] = {
            s: v for s, v in cox["per_station"].items() if s in self.shown
        }
        return {"cox": cox}


PLUGIN = register(
    TrainPlugin(
        name="survival.cox",
        strategy=CoxStrategy,
        sections=(("cox", _cox),),
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
