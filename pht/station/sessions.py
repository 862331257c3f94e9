"""Iterative sessions at a station: every round message is checked before the train.

A session keeps one sandboxed train process for all rounds. Before the train sees a
round message the station checks it against the train manifest's ``session`` section
and against its own earlier replies, and refuses (closing the session) otherwise:

* the message fits the declared input schema of its ``op`` (types, lengths, numbers
  in range; column names only the request's, labels only ones this station observed
  with at least k rows);
* the ``design`` op: the covariates are exactly the request's, in order; a column this
  station described as numeric stays numeric (no dummies on it); a level is one the
  station described (>= k patients) or one it does not hold at all (an all-zero
  dummy); never a level it holds fewer than k times;
* evaluation ops: the number of coefficients equals the design's and leaves at least
  10 patients per parameter (the degrees-of-freedom input is the manifest's ``dof``
  field); with ``path: newton`` the coefficients must be the next point of the
  deterministic Newton-Raphson path from zero (:class:`pht.algorithms.optimize.
  NewtonPath`) given the pooled terms of the previous evaluation, which the message
  proves with every station's released output and signed receipt (``evidence``):
  receipts verified with the station keys of this station's keyring, bound to this
  request and round, digests equal, this station's own output included, the same
  stations every round, and each output stamped with the point it was evaluated at;
* ``checks`` (the model checks) only once, right after the evaluation at which the
  station's own replay of the path says the fit has converged (the rule of
  :func:`pht.algorithms.optimize.newton`), at that point; the station adds its
  policy's ``station_estimates`` to what the train sees;
* at most the policy's ``max_rounds`` rounds, and every ``rounds_per_query`` rounds
  cost one more unit of the requester's query budget.

In pooled Cox (class ``risk_set_sums``) the replay covers the first-order sums (with
every station's design reply), the curvature weights ``w1``/``w2`` and step-halving.

An IPTW session (kernel ``iptw``) has two phases, each a replayed Newton path: the
propensity model (``terms`` from the null model of the design sums), then, after
``weights`` (once, only where the station's replay says the propensity fit has
converged, at that point, with the pooled marginal probability of treatment the
station recomputes from the signed design sums; the station forwards its own point
and probability, never the requester's) and with ``truncate`` the ``truncate`` round
(its cut-off must be the grid point the stations' signed counts give), the outcome
model (``outcome`` from its origin: the null model of the signed ``weights`` sums for
a GLM, zero for Cox), then ``checks`` at the outcome's converged point.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from pht.algorithms.levels import labels
from pht.algorithms.optimize import NewtonPath, newton
from pht.crypto import canonical_json, digest
from pht.errors import DisclosureError, ExecutorError, PhtError
from pht.signing import utc_now, verify_receipt
from pht.station.codes import Code
from pht.station.executors import Channel
from pht.station.guard import Guard, GuardLimits
from pht.station.kernels import CoxKernel, GlmKernel, IptwKernel, same
from pht.station.station import Admission, Refusal, Station
from pht.wire import Reply, decode_array

log = logging.getLogger(__name__)

CHECKS = "checks"
"""The op of the model checks, asked once at the converged point."""
WEIGHTS, TRUNCATE, OUTCOME = "weights", "truncate", "outcome"
"""IPTW ops: the weights at the converged propensity point, their truncation, and
the outcome model's terms."""
TERMS = ("terms", OUTCOME)
"""Ops whose answers are summed log-likelihood terms (one Newton evaluation)."""
# the orchestrator's convergence rule: newton's own tolerance, never a copy of it
_TOL: float = inspect.signature(newton).parameters["tol"].default


def point_digest(beta: Any) -> str:
    """The stamp of an evaluation point (added by the station to what it releases)."""
    return digest(canonical_json([float(b) for b in beta]))


def open_session(
    station: Station, envelope: Any
) -> tuple[Reply, StationSession | None]:
    """Admit an iterative request, extract its data, start the train; round 0."""
    admitted = station.admit(envelope)
    if isinstance(admitted, Reply):
        return admitted, None
    manifest = admitted.package.manifest
    if manifest.rounds != "iterative" or manifest.session is None:
        return station.refuse(admitted, Refusal("error", Code.PARAMETERS)), None
    try:
        job, run_dir = station.prepare(admitted)
    except Refusal as r:
        return station.refuse(admitted, r), None
    station.audit.append(
        "run",
        "success",
        **admitted.fields,
        details={
            "executor": station.executor.name,
            "session": "open",
            "version": admitted.version or "",
            **(admitted.source or {}),
        },
    )
    try:
        channel = station.executor.start(job)
    except ExecutorError as exc:
        log.warning("station %s executor: %s", station.id, exc)
        _remove(run_dir)
        return station.refuse(admitted, Refusal("error", Code.EXECUTOR)), None
    session = StationSession(station, admitted, channel, run_dir)
    reply = session.receive("open")
    if not reply.ok:
        session.close()
        return reply, None
    session.described = dict(session.last_output)
    session.n = int(session.described.get("n") or 0)
    return reply, session


def _remove(path: Any) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class StationSession:
    """A running iterative train at a station: rounds are messages to one process."""

    def __init__(
        self, station: Station, admitted: Admission, channel: Channel, run_dir: Any
    ) -> None:
        self.station = station
        self.admitted = admitted
        self.channel = channel
        self.run_dir = run_dir
        self.rounds = 0
        self.closed = False
        self.n = 0
        self.described: dict[str, Any] = {}
        self.last_output: dict[str, Any] = {}
        self.p: int | None = None
        self.path: NewtonPath | None = None
        self.last_eval: tuple[int, str] | None = None  # round and op of the last
        self.design_round: int | None = None
        self.design_stamp: str | None = None
        self.times: np.ndarray | None = None
        self.first: Any = None  # pooled first-order terms at the accepted point
        self.accepted: float | None = None  # log-likelihood of the last accepted point
        self.peers: tuple[str, ...] | None = None
        self.kernel: CoxKernel | GlmKernel | IptwKernel | None = None
        self.null: float | None = None  # glm: the pooled null intercept
        # iptw: the propensity phase's converged point, the pooled P(treated), the
        # round whose signed replies start the outcome path, the truncation cut-off
        self.ps_point: np.ndarray | None = None
        self.marginal: float | None = None
        self.weights_round: int | None = None
        self.cutoff: float | None = None
        self.outcome_phase = False
        self.pending: dict[str, Any] | None = None  # the message the train answers

    # -- the train ------------------------------------------------------------------
    def receive(self, op: str, extra: Mapping[str, Any] | None = None) -> Reply:
        """Read, guard, seal and release the train's answer to the latest message."""
        raw = self.channel.receive(600.0)
        if raw is None:
            self.close()
            return self.station.refuse(
                self.admitted, Refusal("error", Code.TRAIN_FAILED)
            )
        return self.station.release(
            self.admitted,
            raw,
            op,
            self.rounds,
            extra,
            sink=self.last_output,
            expect=lambda output: self._expect_safely(op, output),
        )

    def _expect_safely(self, op: str, output: Any) -> dict[str, Any] | None:
        try:
            return self._expect(op, output)
        except DisclosureError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, PhtError):
            raise DisclosureError(
                "the answer does not fit the station's data"
            ) from None

    def _expect(self, op: str, output: Any) -> dict[str, Any] | None:
        """Check an answer against what the station knows of its own data.

        Round 0's counts, level counts, constant flags and event times are the
        station's own (recomputed from the extract); every later answer must have the
        keys and shapes of, and equal up to floating-point noise, what the station's
        kernel computes; the station's values are released.
        """
        if op == "open":
            return self._expect_open(output)
        if self.kernel is None or self.pending is None:
            raise DisclosureError("no station kernel for this answer")
        expected = self.kernel.answer(op, self.pending)
        if not same(output, expected):
            raise DisclosureError("the answer differs from the station's own")
        return expected  # the station's values leave, not the train's

    def _expect_open(self, output: Any) -> dict[str, Any] | None:
        """Round 0 is the station's own description; the train's must equal it."""
        population = self.admitted.population
        if population is None:
            raise DisclosureError("no population")
        params = self.admitted.parameters
        manifest = self.admitted.package.manifest
        if manifest.session is not None and manifest.session.kernel in ("glm", "iptw"):
            own_kernel = GlmKernel if manifest.session.kernel == "glm" else IptwKernel
            kernel = own_kernel(
                population,
                params,
                int(self.admitted.policy.min_cell_size),
                self.admitted.policy.rules,
            )
            glm_own = kernel.describe()
            if not same(output, glm_own):
                raise DisclosureError(
                    "round 0 differs from the station's own description"
                )
            self.kernel = kernel
            return glm_own
        roles = dict(reversed(manifest.roles_of(params)))
        by_role = {r: c for c, r in roles.items()}
        event = np.asarray(population.column(by_role["event"]), dtype=float)
        own: dict[str, Any] = {
            "n": population.n,
            "events": int(event.sum()),
            "excluded": 0,  # the train sees the population only
        }
        if params.get("mode") == "pooled":
            from pht.algorithms.disclosure import coarsen

            if not self.admitted.grid:
                raise DisclosureError("pooled mode without a station grid")
            time = coarsen(population.column(by_role["time"]), self.admitted.grid)
            own["event_times"] = np.unique(time[event == 1]).tolist()
        declared = set(params.get("categorical") or [])
        columns: dict[str, Any] = {}
        for column in params.get("covariates") or []:
            values = population.column(column)
            if column in declared or values.dtype.kind not in "iuf":
                named, kind = labels(values)
                counts: dict[str, int] = {}
                for label in named.tolist():
                    counts[label] = counts.get(label, 0) + 1
                columns[column] = {
                    "kind": "categorical",
                    "levels": counts,
                    "level_type": kind,
                }
            else:
                numbers = np.asarray(values, dtype=float)
                columns[column] = {
                    "kind": "numeric",
                    "sum": float(numbers.sum()),
                    "constant": bool(numbers.size and np.ptp(numbers) == 0),
                }
        own["columns"] = columns
        if not same(output, own):
            raise DisclosureError("round 0 differs from the station's own description")
        self.kernel = CoxKernel(
            population,
            by_role["time"],
            by_role["event"],
            list(params.get("covariates") or []),
            self.admitted.grid,
            str(params.get("ties", "efron")),
        )
        return own  # the station's own values leave, not the train's

    def _refuse(self, code: Code, status: str = "refused") -> Reply:
        self.close()
        return self.station.refuse(self.admitted, Refusal(status, code))

    # -- rounds ---------------------------------------------------------------------
    def round(self, message: Any) -> Reply:
        """Check one round message, send it to the train, release its answer."""
        try:
            return self._round(message)
        except Refusal as r:
            self.close()
            return self.station.refuse(self.admitted, r)
        except Exception:  # noqa: BLE001 - any failure is a logged refusal
            log.exception("station %s: session error", self.station.id)
            return self._refuse(Code.INTERNAL, "error")

    def _round(self, message: Any) -> Reply:
        if self.closed:
            return self.station.reply(
                self.admitted.body.request_id, "error", Code.SESSION.reason
            )
        spec = self.admitted.package.manifest.session
        assert spec is not None
        if not isinstance(message, dict) or message.get("op") not in spec.inputs:
            return self._refuse(Code.ROUND, "error")
        op = str(message["op"])
        policy = self.admitted.policy
        if self.rounds >= policy.max_rounds:
            return self._refuse(Code.ROUNDS)
        self._check_input(op, message)
        extra: dict[str, Any] | None = None
        forward = {k: v for k, v in message.items() if k != "evidence"}
        if op == CHECKS:
            # the station's own decision, never the requester's
            forward["station_estimate"] = bool(policy.station_estimates)
        if op == spec.design:
            self._check_design(message)
            # stamped, so the path check can require that every peer fits the same
            # design on the same times (no steering one station with another's)
            self.design_stamp = digest(canonical_json(forward))
            extra = {"design": self.design_stamp}
            stations = message["design"].get("stations")
            if stations:
                # the station says which fixed effect is its own
                forward["station_index"] = list(stations).index(self.station.id)
        elif op in spec.evaluate:
            beta = message.get(spec.dof)
            if self.p is None or not isinstance(beta, list) or len(beta) != self.p:
                return self._refuse(Code.SESSION, "error")
            if self.n < 10 * self.p:
                return self._refuse(Code.DOF)
            if spec.path == "newton":
                self._check_path(op, message)
            if op in (WEIGHTS, TRUNCATE):
                # the station's own point and marginal, never the requester's
                assert self.ps_point is not None
                forward["beta"] = self.ps_point.tolist()
                forward["marginal"] = self.marginal
                if op == TRUNCATE:
                    forward["cutoff"] = self.cutoff
            # stamped with the point the answer was computed at (the station's own)
            extra = {"point": point_digest(forward["beta"])}
        self._check_budget()
        self.rounds += 1
        self.pending = forward
        self.channel.send(canonical_json(forward))
        reply = self.receive(op, extra)
        if not reply.ok:
            self.close()
        elif op in spec.evaluate:
            self.last_eval = (self.rounds, op)
            if op in (WEIGHTS, TRUNCATE):
                self._weighed(op)
        elif op == spec.design:
            self.design_round = self.rounds
        return reply

    def _check_input(self, op: str, message: Mapping[str, Any]) -> None:
        spec = self.admitted.package.manifest.session
        assert spec is not None and self.admitted.limits is not None
        limits = self.admitted.limits
        labels = set(limits.labels)
        for info in (self.described.get("columns") or {}).values():
            if isinstance(info, dict):
                labels |= set((info.get("levels") or {}).keys())
        if op == spec.design:
            # a level other stations hold and this one holds not at all is an
            # all-zero dummy here: allowed (a level held by 1..k-1 rows never is)
            labels |= self._absent_levels(message)
        gate = GuardLimits(
            limits.min_cell_size,
            max_count=limits.max_count,
            labels=frozenset(labels),
            columns=limits.columns,
            grid=limits.grid,
            stations=frozenset(self.admitted.body.targets),
        )
        try:
            Guard(gate).check(message, spec.inputs[op], "message")
        except PhtError:
            raise Refusal("refused", Code.ROUND) from None

    def _absent_levels(self, message: Mapping[str, Any]) -> set[str]:
        from pht.station.guard import is_label

        population = self.admitted.population
        design = message.get("design")
        if population is None or not isinstance(design, dict):
            return set()
        covariates = design.get("covariates")
        if not isinstance(covariates, list) or len(covariates) > 100:
            return set()
        absent: set[str] = set()
        for cov in covariates:
            if not isinstance(cov, dict) or cov.get("column") not in (
                self.admitted.limits.columns if self.admitted.limits else ()
            ):
                continue
            levels = cov.get("levels")
            if not isinstance(levels, list) or len(levels) > 200:
                continue
            held = set(labels(population.column(cov["column"]))[0].tolist())
            absent |= {
                lv
                for lv in levels
                if isinstance(lv, str) and is_label(lv) and lv not in held
            }
        return absent

    def _weighed(self, op: str) -> None:
        """After ``weights`` (and ``truncate``): the outcome path starts next."""
        self.weights_round = self.rounds
        if op == TRUNCATE or self.admitted.parameters.get("truncate") is None:
            from pht.algorithms.iptw_local import outcome_p

            assert self.p is not None
            self.p = outcome_p(self.admitted.parameters, self.p - 1)
            self.path, self.accepted, self.null = None, None, None
            self.outcome_phase = True

    def _check_design(self, message: Mapping[str, Any]) -> None:
        if self.path is not None or self.weights_round is not None:
            # a re-design only before the first evaluation
            raise Refusal("error", Code.SESSION)
        design = message["design"]
        params = self.admitted.parameters
        covariates = design["covariates"]
        if [c["column"] for c in covariates] != list(params.get("covariates") or []):
            raise Refusal("refused", Code.DESIGN)
        described = self.described.get("columns") or {}
        population = self.admitted.population
        assert population is not None
        p = 0
        for cov in covariates:
            info = described.get(cov["column"])
            if not isinstance(info, dict):
                raise Refusal("refused", Code.DESIGN)
            levels = list(cov.get("levels") or [])
            if info.get("kind") == "numeric":
                if levels or cov.get("reference") is not None:
                    raise Refusal("refused", Code.DESIGN)
                p += 1
                continue
            here = set((info.get("levels") or {}).keys())
            held = set(labels(population.column(cov["column"]))[0].tolist())
            if len(set(levels)) != len(levels) or cov.get("reference") not in levels:
                raise Refusal("refused", Code.DESIGN)
            if not here <= set(levels):
                raise Refusal("refused", Code.DESIGN)
            if any(level not in here and level in held for level in levels):
                raise Refusal("refused", Code.DESIGN)
            p += len(levels) - 1
        if len(design["centre"]) != p or p < 1:
            raise Refusal("refused", Code.DESIGN)
        if isinstance(self.kernel, GlmKernel | IptwKernel) and any(
            float(c) != 0.0 for c in design["centre"]
        ):
            # uncentred: the station's cell rules read 0/1 columns as they are
            raise Refusal("refused", Code.DESIGN)
        if isinstance(self.kernel, GlmKernel):
            p += 1 + self._fixed_effects(design)
        elif isinstance(self.kernel, IptwKernel):
            p += 1  # the propensity model's intercept
        times = message.get("times")
        self.times = None if times is None else np.asarray(times, dtype=np.float64)
        if self.n < 10 * p:
            raise Refusal("refused", Code.DOF)
        self.p = p

    def _fixed_effects(self, design: Mapping[str, Any]) -> int:
        """Station fixed effects of a GLM design: the other stations' dummies.

        ``stations`` (when given) lists the session's stations in sorted order, this
        one among them, only stations the request addressed; the first is the
        reference. The stations that prove every later round must be exactly these.
        """
        stations = design.get("stations")
        if stations is None:
            return 0
        if (
            not self.admitted.parameters.get("station_effects")
            or not isinstance(stations, list)
            or len(stations) < 2
            or stations != sorted(set(stations))
            or self.station.id not in stations
            or not set(stations) <= set(self.admitted.body.targets)
        ):
            raise Refusal("refused", Code.DESIGN)
        self.peers = tuple(stations)
        return len(stations) - 1

    # -- the Newton path --------------------------------------------------------------
    def _verified(self, evidence: Any) -> dict[tuple[str, int], dict[str, Any]]:
        """Every evidence item's output, by (station, round), its receipt verified.

        Receipts are checked with the station keys of this station's keyring (its own
        with its own key): signed, for this request, naming that station and round,
        over exactly that output.
        """
        if not isinstance(evidence, list) or not 1 <= len(evidence) <= 2000:
            raise Refusal("refused", Code.PATH)
        keyring = self.station.config.keyring
        now = utc_now()
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for item in evidence:
            if not isinstance(item, dict) or not isinstance(item.get("station"), str):
                raise Refusal("refused", Code.PATH)
            name, output = item["station"], item.get("output")
            if not isinstance(output, dict):
                raise Refusal("refused", Code.PATH)
            identity = (
                self.station.config.identity.public
                if name == self.station.id
                else _peer(keyring, name, now)
            )
            try:
                receipt = verify_receipt(item.get("receipt") or {}, identity)
            except PhtError:
                raise Refusal("refused", Code.PATH) from None
            if (
                receipt.request_id != self.admitted.body.request_id
                or receipt.station != name
                or receipt.output_digest != digest(canonical_json(output))
                or (name, receipt.round) in out
            ):
                raise Refusal("refused", Code.PATH)
            out[(name, receipt.round)] = output
        return out

    def _at(
        self,
        verified: Mapping[tuple[str, int], dict[str, Any]],
        round_no: int,
        stamp: str | None,
    ) -> dict[str, dict[str, Any]]:
        """The outputs of one round: every session station's, stamped with the point."""
        outputs = {s: o for (s, r), o in verified.items() if r == round_no}
        stations = tuple(sorted(outputs))
        if self.station.id not in stations or not set(stations) <= set(
            self.admitted.body.targets
        ):
            raise Refusal("refused", Code.PATH)  # only stations the request addressed
        if self.peers is None:
            self.peers = stations
        elif self.peers != stations:
            raise Refusal("refused", Code.PATH)
        if stamp is not None and any(o.get("point") != stamp for o in outputs.values()):
            raise Refusal("refused", Code.PATH)
        return outputs

    def _check_path(self, op: str, message: Mapping[str, Any]) -> None:
        """Accept only the next point of the deterministic Newton-Raphson path."""
        assert self.p is not None
        beta = message["beta"]
        evidence = message.get("evidence")
        if isinstance(self.kernel, IptwKernel) and self._check_phase(op, message):
            return
        if self.path is None and isinstance(self.kernel, GlmKernel | IptwKernel):
            # a GLM starts at the null model, from every station's design sums
            if op != "terms" or self.design_round is None:
                raise Refusal("refused", Code.PATH)
            designs = self._at(self._verified(evidence), self.design_round, None)
            if any(o.get("design") != self.design_stamp for o in designs.values()):
                raise Refusal("refused", Code.PATH)
            from pht.algorithms.glm_local import pooled_start

            try:
                start, self.null = pooled_start(self.kernel.model, designs, self.p)
                if isinstance(self.kernel, IptwKernel):
                    from pht.algorithms.iptw_local import marginal_of

                    self.marginal = marginal_of(designs)
            except (KeyError, TypeError, ValueError, PhtError):
                raise Refusal("refused", Code.PATH) from None
            self.path = NewtonPath(self.p, origin=start)
            if not NewtonPath.matches(beta, self.path.start()):
                raise Refusal("refused", Code.PATH)
            return
        if self.path is None:
            self.path = NewtonPath(self.p)
            first_op = "terms" if self.admitted.disclosure_class == "model" else "sums"
            if (
                op != first_op
                or evidence is not None
                or not NewtonPath.matches(beta, self.path.start())
            ):
                raise Refusal("refused", Code.PATH)
            return
        if self.last_eval is None or self.path.expected is None:
            raise Refusal("refused", Code.PATH)
        last_round, last_op = self.last_eval
        verified = self._verified(evidence)
        if self.design_round is None:
            raise Refusal("refused", Code.PATH)
        designs = self._at(verified, self.design_round, None)
        if any(o.get("design") != self.design_stamp for o in designs.values()):
            raise Refusal("refused", Code.PATH)
        stamp = point_digest(self.path.expected)
        outputs = self._at(verified, last_round, stamp)
        expected: np.ndarray | None
        if op == CHECKS:
            self._check_converged(last_op, outputs, message)
            expected = self.path.expected
            if isinstance(self.kernel, GlmKernel) or (
                isinstance(self.kernel, IptwKernel)
                and self.kernel.outcome_model is not None
            ):
                null = message.get("null_intercept")
                if (
                    self.null is None
                    or not isinstance(null, float | int)
                    or abs(float(null) - self.null) > 1e-12 * (1 + abs(self.null))
                ):
                    raise Refusal("refused", Code.PATH)
        elif last_op in TERMS and op == last_op:
            loglik, gradient, hessian = _summed_terms(outputs, self.p)
            if not self.path.would_halve(loglik):
                self._accept(loglik)
            expected = self.path.next_point(loglik, gradient, hessian)
        elif last_op == "sums":
            first = self._first_order(verified, outputs)
            if op == "curvature":
                if self.path.would_halve(first.loglik):
                    raise Refusal("refused", Code.PATH)
                self._check_weights(message, first)
                self.first = first
                expected = self.path.expected
            else:
                expected = self.path.after(first.loglik)
        elif last_op == "curvature" and op == "sums" and self.first is not None:
            curvature = sum(
                (_matrix(o, "curvature", self.p) for o in outputs.values()),
                np.zeros((self.p, self.p)),
            )
            terms = self.first.terms(curvature)
            self._accept(terms.loglik)
            expected = self.path.accept(terms.loglik, terms.gradient, terms.hessian)
        else:
            raise Refusal("refused", Code.PATH)
        if expected is None or not NewtonPath.matches(beta, expected):
            raise Refusal("refused", Code.PATH)

    def _check_phase(self, op: str, message: Mapping[str, Any]) -> bool:
        """The IPTW phases; True when ``op`` is fully checked here.

        ``terms`` belongs to the propensity phase, ``outcome`` and ``checks`` to the
        outcome phase; ``weights`` once at the propensity fit's converged point,
        ``truncate`` once right after it at the grid cut-off the signed counts give,
        the outcome path's first point at its origin from the signed weights replies.
        Later points of either path are the generic path rule's.
        """
        assert self.p is not None
        if op == "terms":
            if self.weights_round is not None:
                raise Refusal("refused", Code.PATH)
            return False
        if op in (WEIGHTS, TRUNCATE):
            self._check_weighing(op, message)
            return True
        if not self.outcome_phase:
            raise Refusal("refused", Code.PATH)
        if op == CHECKS:
            if self.last_eval is None or self.last_eval[1] != OUTCOME:
                raise Refusal("refused", Code.PATH)
            return False
        if self.path is not None:
            return False
        # the outcome path's first point: its origin from the signed weights replies
        weighed = self._anchored(message.get("evidence"), self.weights_round)
        assert isinstance(self.kernel, IptwKernel)
        model = self.kernel.outcome_model
        start = np.zeros(self.p)
        if model is not None:
            from pht.algorithms.glm_fit import null_intercept, origin
            from pht.algorithms.iptw_local import outcome_sums_of

            try:
                total = outcome_sums_of(weighed)
                start = origin(model, total, self.p)
                self.null = null_intercept(model, total)
            except (KeyError, TypeError, ValueError, PhtError):
                raise Refusal("refused", Code.PATH) from None
        self.path = NewtonPath(self.p, origin=start)
        if not NewtonPath.matches(message["beta"], self.path.start()):
            raise Refusal("refused", Code.PATH)
        return True

    def _anchored(
        self, evidence: Any, round_no: int | None
    ) -> dict[str, dict[str, Any]]:
        """The signed replies of an IPTW weights round, at the propensity point.

        The design replies they rest on must come with them.
        """
        if round_no is None or self.design_round is None or self.ps_point is None:
            raise Refusal("refused", Code.PATH)
        verified = self._verified(evidence)
        designs = self._at(verified, self.design_round, None)
        if any(o.get("design") != self.design_stamp for o in designs.values()):
            raise Refusal("refused", Code.PATH)
        return self._at(verified, round_no, point_digest(self.ps_point))

    def _check_weighing(self, op: str, message: Mapping[str, Any]) -> None:
        """``weights`` where the propensity fit converged; ``truncate`` right after."""
        assert self.p is not None
        if self.last_eval is None or self.outcome_phase:
            raise Refusal("refused", Code.PATH)
        last_round, last_op = self.last_eval
        if op == WEIGHTS:
            if self.weights_round is not None or last_op != "terms" or not self.path:
                raise Refusal("refused", Code.PATH)
            if self.path.expected is None or self.design_round is None:
                raise Refusal("refused", Code.PATH)
            verified = self._verified(message.get("evidence"))
            designs = self._at(verified, self.design_round, None)
            if any(o.get("design") != self.design_stamp for o in designs.values()):
                raise Refusal("refused", Code.PATH)
            outputs = self._at(verified, last_round, point_digest(self.path.expected))
            self._check_converged(last_op, outputs, message)
            if not NewtonPath.matches(message["beta"], self.path.expected):
                raise Refusal("refused", Code.PATH)
            self.ps_point = np.array(self.path.expected, dtype=np.float64)
            return
        # truncate: once, right after the weights, at the cut-off of the signed counts
        q = self.admitted.parameters.get("truncate")
        if q is None or last_op != WEIGHTS or self.ps_point is None:
            raise Refusal("refused", Code.PATH)
        if not NewtonPath.matches(message["beta"], self.ps_point):
            raise Refusal("refused", Code.PATH)
        weighed = self._anchored(message.get("evidence"), self.weights_round)
        from pht.algorithms.iptw_local import cutoff_of

        try:
            cutoff = cutoff_of(weighed, float(q))
        except (KeyError, TypeError, ValueError, PhtError):
            raise Refusal("refused", Code.PATH) from None
        if message.get("cutoff") != cutoff:
            raise Refusal("refused", Code.PATH)
        self.cutoff = cutoff

    def _accept(self, loglik: float) -> None:
        """The path accepts the point just evaluated (for the convergence rule)."""
        self.accepted = loglik

    def _check_converged(
        self, last_op: str, outputs: Mapping[str, dict[str, Any]], message: Any
    ) -> None:
        """Accept ``checks`` only where :func:`newton` stops.

        There the last evaluation is accepted (no halving), its Newton step is below
        ``tol`` and so is the log-likelihood change of the last accepted step.
        """
        assert self.p is not None and self.path is not None
        if last_op in TERMS:
            loglik, gradient, hessian = _summed_terms(outputs, self.p)
        elif last_op == "curvature" and self.first is not None:
            self._check_weights(message, self.first)
            curvature = sum(
                (_matrix(o, "curvature", self.p) for o in outputs.values()),
                np.zeros((self.p, self.p)),
            )
            terms = self.first.terms(curvature)
            loglik, gradient, hessian = terms.loglik, terms.gradient, terms.hessian
        else:
            raise Refusal("refused", Code.PATH)
        if self.path.would_halve(loglik):
            raise Refusal("refused", Code.PATH)
        change = 0.0 if self.accepted is None else abs(loglik - self.accepted)
        try:
            step = np.linalg.solve(-hessian, gradient)
        except np.linalg.LinAlgError:
            raise Refusal("refused", Code.PATH) from None
        if not (
            np.max(np.abs(step), initial=0.0) < _TOL
            and change < _TOL * (1 + abs(loglik))
        ):
            raise Refusal("refused", Code.PATH)

    def _first_order(
        self,
        verified: Mapping[tuple[str, int], dict[str, Any]],
        sums: Mapping[str, dict[str, Any]],
    ) -> Any:
        """Pooled first-order Cox terms from every station's design reply and sums."""
        from pht.algorithms.cox import RiskSetSums, first_order

        if self.design_round is None or self.times is None or self.path is None:
            raise Refusal("refused", Code.PATH)
        designs = self._at(verified, self.design_round, None)
        m, p = self.times.size, self.p or 0
        pooled = None
        try:
            for station in sorted(sums):
                counts, output = designs[station], sums[station]
                x_death = np.zeros((m, p))
                x_death[0] = np.asarray(counts["x_death"], dtype=np.float64).reshape(p)
                part = RiskSetSums(
                    time=self.times,
                    deaths=decode_array(counts["deaths"], (m,)),
                    x_death=x_death,
                    s0=decode_array(output["s0"], (m,)),
                    s1=decode_array(output["s1"], (m, p)),
                    d0=decode_array(output["d0"], (m,)),
                    d1=decode_array(output["d1"], (m, p)),
                )
                pooled = part if pooled is None else pooled + part
        except (KeyError, TypeError, ValueError, PhtError):
            raise Refusal("refused", Code.PATH) from None
        assert pooled is not None and self.path.expected is not None
        ties = str(self.admitted.parameters.get("ties", "efron"))
        return first_order(pooled, self.path.expected, ties)  # type: ignore[arg-type]

    @staticmethod
    def _check_weights(message: Mapping[str, Any], first: Any) -> None:
        try:
            w1 = decode_array(message["w1"], first.w1.shape)
            w2 = decode_array(message["w2"], first.w2.shape)
        except (KeyError, PhtError):
            raise Refusal("refused", Code.PATH) from None
        for given, expected in ((w1, first.w1), (w2, first.w2)):
            if not np.all(np.abs(given - expected) <= 1e-9 * (1 + np.abs(expected))):
                raise Refusal("refused", Code.PATH)

    def _check_budget(self) -> None:
        policy = self.admitted.policy
        if policy.budget is None or self.rounds == 0:
            return
        if (self.rounds + 1) % policy.budget.rounds_per_query:
            return
        by_key, by_org = self.station.budget_used(
            self.admitted.key_id,
            self.admitted.fields["organisation"],
            self.admitted.body.dataset,
            policy,
        )
        if (
            by_key >= policy.budget.queries
            or by_org >= policy.budget.organisation_queries
        ):
            raise Refusal("refused", Code.BUDGET)

    def close(self) -> str:
        """End the session; the train's stderr tail stays in the station's log."""
        if self.closed:
            return ""
        self.closed = True
        try:
            tail = self.channel.close()
        finally:
            _remove(self.run_dir)
        if tail:
            log.debug("station %s train stderr: %s", self.station.id, tail)
        return ""


def _matrix(output: Mapping[str, Any], key: str, p: int) -> np.ndarray:
    try:
        return np.asarray(output[key], dtype=np.float64).reshape(p, p)
    except (KeyError, TypeError, ValueError):
        raise Refusal("refused", Code.PATH) from None


def _summed_terms(
    outputs: Mapping[str, Mapping[str, Any]], p: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Log-likelihood, gradient and Hessian summed over stations (sorted order)."""
    loglik, gradient, hessian = 0.0, np.zeros(p), np.zeros((p, p))
    try:
        for station in sorted(outputs):
            output = outputs[station]
            if output.get("loglik") is None and output.get("gradient") is None:
                # outside the parameter space (a GLM's log link): the path halves
                nan = np.full(p, np.nan)
                return -np.inf, nan, np.full((p, p), np.nan)
            loglik += float(output["loglik"])
            gradient = gradient + np.asarray(output["gradient"], dtype=float).reshape(p)
            hessian = hessian + _matrix(output, "hessian", p)
    except (KeyError, TypeError, ValueError):
        raise Refusal("refused", Code.PATH) from None
    return loglik, gradient, hessian


def _peer(keyring: Any, name: str, now: Any) -> Any:
    """The public identity of the station ``name`` from this station's keyring."""
    for entry in keyring.entries:
        if "station" in entry.roles and entry.identity.name == name:
            try:
                return keyring.check(entry.key_id, "station", now)
            except PhtError:
                break
    raise Refusal("refused", Code.PATH)
