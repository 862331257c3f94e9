"""Run a study: plan the requests, dispatch them, pool the aggregates, write results.

``run_study`` returns the result dict that ``write_results`` stores as
``result.json`` next to ``report.html``. Outputs are written to temporary files and moved
into place only when complete, so a failed run never destroys an earlier result.

Partial results are results. A station that refuses (its policy) or fails (its data,
executor, a timeout) is left out and reported in its station row and in the result's
``partial`` record, with its fixed reason, whose side must act (``acts``: the analyst,
the station operator, or nobody as the policy decided) and a one-line ``advice``. The
study's quorum ``min_stations`` (default: every requested station) decides whether
a result is written at all: with fewer stations, :class:`~pht.errors.QuorumError`
lists every missing station. An iterative train's stations are counted after its
session: a station that refuses the model design leaves it like a round-0 refusal,
but a station that *fails* mid-session stops the study (the session cannot be
finished without a station whose data are already in the fit).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pht import __version__
from pht.crypto import Identity, canonical_json, digest, sign_envelope, verify_envelope
from pht.errors import (
    CompanionWarning,
    ConfigError,
    DataError,
    PhtError,
    PhtWarning,
    PolicyError,
    QuorumError,
    ReviewPending,
    TrustError,
)
from pht.orchestrator.config import Network, Study
from pht.orchestrator.engine import Engine, ProgressCallback
from pht.orchestrator.requester import Requester, signed_train
from pht.signing import SignedRequestBody
from pht.station.codes import ANALYST, OPERATOR, POLICY, acts
from pht.timefmt import format_seconds_offset, utc_now
from pht.trains import plugin_for, run_strategy
from pht.wire import Reply

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
"""Version of the keys of ``result.json``: 2 renamed Cox ``params.*.p`` to ``p_value``
and added ``schema_version`` and ``provenance.budget``; 3 added ``partial`` and the
station rows' ``acts`` and ``advice``."""


def _now() -> str:
    return format_seconds_offset(utc_now())


def plan_request(
    study: Study, network: Network, requester: Requester
) -> tuple[SignedRequestBody, dict[str, Any]]:
    """One signed request addressed to every target station."""
    targets = study.stations or tuple(network.stations)
    if study.min_stations is not None and study.min_stations > len(targets):
        # a study checked without its network (load_study(path, catalogue))
        raise ConfigError(
            f"{study.source}: min_stations: {study.min_stations} is more than the "
            f"{len(targets)} station(s) the study asks; lower it to at most "
            f"{len(targets)}, or add stations"
        )
    manifest = study.train.manifest
    return requester.request(
        role=study.role,
        purpose=study.purpose,
        train=str(manifest.ref),
        train_digest=study.train.digest,
        train_envelope=signed_train(network.trains, study.train),
        dataset=study.dataset,
        parameters=study.parameters,
        targets=targets,
    )


def side(reply: Reply, replies: Mapping[str, Reply]) -> str:
    """Whose side must act on a station's reply that was not ``ok``.

    The code's own side (:func:`pht.station.codes.acts`), except that a *fault*
    (status ``error``) with a request-side code at a station while another station
    accepted the same signed request lies with that station (its data differ, e.g. a
    text value in a time column): its operator acts, not the analyst.
    """
    who = acts(reply.reason)
    if (
        who == ANALYST
        and reply.status == "error"
        and any(r.ok for s, r in replies.items() if s != reply.station)
    ):
        return OPERATOR
    return who


def advice(reply: Reply, who: str, study: Study, request_id: str | None) -> str:
    """One line: what the side that must act can do about a station's reply."""
    station = reply.station
    if who == ANALYST:
        return (
            f"change the request in {study.source} (parameters, columns, "
            f"dataset, role) or leave {station} out under 'stations', and run again"
        )
    if who == OPERATOR:
        ref = f" request {request_id}" if request_id else " this request"
        return (
            f"the fault is on {station}'s side: ask its operator to check{ref} in "
            "the station's log (its data, executor or set-up); the analysis itself "
            "needs no change"
        )
    return (
        f"{station}'s policy withheld its output and nobody has to fix anything: the "
        "result stands without it where min_stations allows (ask its data steward "
        "about the policy)"
    )


def _station_rows(
    study: Study,
    network: Network,
    replies: Mapping[str, Reply],
    request_id: str | None = None,
) -> list[dict[str, Any]]:
    rows = []

    def named(reply: Reply) -> bool:
        return reply.ok and bool(reply.details.get("show_station_name", False))

    # with exactly one hidden station taking part, the totals minus the shown
    # stations' counts would give its counts: then no station shows counts
    hidden = [r for r in replies.values() if r.ok and not named(r)]
    counted = len(hidden) != 1
    for station_id, reply in replies.items():
        who = None if reply.ok else side(reply, replies)
        output = reply.output or {}
        # a station whose policy says show_station_name: false releases nothing
        # attributable to it by name: no name, no per-station counts in the result
        shown = named(reply)
        counts = shown and counted
        rows.append(
            {
                "id": station_id,
                "name": network.stations[station_id].name if shown else None,
                "participated": reply.ok,
                "status": reply.status,
                "n": output.get("n") if counts else None,
                "events": output.get("events") if counts else None,
                "excluded": output.get("excluded") if counts else None,
                "reason": reply.reason,
                "acts": who,
                "advice": None
                if who is None
                else advice(reply, who, study, request_id),
                "elapsed_seconds": reply.elapsed_seconds,
                "executor": reply.executor,
            }
        )
    return rows


def _pool(
    pool: Any, released: Mapping[str, Mapping[str, Any]], study: Study
) -> dict[str, Any]:
    """Pool the released outputs (a parameter problem found there names the study)."""
    try:
        return dict(pool(released, study.parameters))
    except (ConfigError, DataError) as exc:
        raise type(exc)(f"{study.source}: {exc}") from None


def partial_record(
    study: Study, replies: Mapping[str, Reply], request_id: str | None = None
) -> dict[str, Any]:
    """Who took part, out of how many requested, and why each other station did not.

    ``complete`` is true when every requested station released its output; ``missing``
    lists the others with status, fixed reason, whose side acts and advice.
    """
    took = [s for s, r in replies.items() if r.ok and r.output is not None]
    missing = [
        {
            "station": s,
            "status": r.status,
            "reason": r.reason,
            "acts": side(r, replies),
            "advice": advice(r, side(r, replies), study, request_id),
        }
        for s, r in replies.items()
        if s not in took
    ]
    return {
        "complete": not missing,
        "requested": len(replies),
        "took_part": len(took),
        "min_stations": study.quorum(len(replies)),
        "missing": missing,
    }


def _check_quorum(study: Study, partial: Mapping[str, Any]) -> None:
    """Raise :class:`QuorumError` when fewer stations took part than the quorum."""
    took, quorum = partial["took_part"], partial["min_stations"]
    if took >= quorum:
        return
    why = "; ".join(
        f"station {m['station']}: {m['reason']} [{m['status']}, acts: {m['acts']}]"
        for m in partial["missing"]
    )
    missing = partial["missing"]
    reasons = {m["reason"] for m in missing}
    codes = {str(r).split(":", 1)[0] for r in reasons}
    if (
        len(reasons) == 1
        and codes <= {"column", "parameters"}
        and all(m["acts"] == ANALYST for m in missing)
    ):
        # every station said the same about the study's columns or parameters: a
        # dry run names which (station codes carry no column names)
        (reason,) = reasons
        error: type[PhtError] = DataError if codes == {"column"} else ConfigError
        raise error(
            f"{study.source}: {took} of {partial['requested']} station(s) took part; "
            f"the others all answered {reason}; `pht validate {study.source} "
            "--network NETWORK --identity KEY` asks the stations which parameter "
            "and column (nothing runs, no budget is spent)"
        )
    if took == 0:
        raise QuorumError(f"no station took part ({why})")
    needs = (
        f"all {quorum}"
        if study.min_stations is None
        else f"min_stations: {quorum} in {study.source}"
    )
    fix = (
        f"set min_stations: {took} in {study.source} to accept a result from "
        f"{took} station(s), or"
        if study.min_stations is None
        else "lower min_stations, or"
    )
    then = (
        "coarsen the question (fewer groups or covariates, merged levels) so that "
        "their policies can release it"
        if all(m["acts"] == POLICY for m in missing)
        else "act as each station's line says"
    )
    raise QuorumError(
        f"{took} of {partial['requested']} station(s) took part, the study needs "
        f"{needs} ({why}); {fix} {then} and run again"
    )


def _check_participation(
    study: Study, replies: Mapping[str, Reply]
) -> dict[str, Mapping[str, Any]]:
    """Check the quorum; return the released outputs by station."""
    _check_quorum(study, partial_record(study, replies))
    return {s: r.output for s, r in replies.items() if r.ok and r.output is not None}


def _run_companion(
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
    progress: ProgressCallback | None,
) -> dict[str, Any] | None:
    """Run the companion train of ``study`` if its parameters ask for one."""
    spec = plugin_for(study.train.manifest.name).companion
    if spec is None or study.parameters.get(spec.trigger) is None:
        return None
    from pht.manifest import Catalogue
    from pht.wire import TrainRef

    name = spec.train
    parameters = {
        k: study.parameters[k]
        for k in spec.parameters
        if study.parameters.get(k) is not None
    }
    companion = Study(
        source=study.source,
        question=study.question,
        purpose=study.purpose,
        train=Catalogue().get(TrainRef.parse(name)),
        dataset=study.dataset,
        stations=study.stations,
        parameters=parameters,
        role=study.role,
        min_stations=study.min_stations,
    )
    try:
        body, envelope = plan_request(companion, network, requester)
    except ConfigError as exc:  # e.g. the network has no signed survival.km
        log.info("companion %s not sent: %s", name, exc)
        warnings.warn(CompanionWarning(f"{name} not sent: {exc}"), stacklevel=2)
        return {"train": name, "error": f"{name}: {exc}", "sections": {}}
    replies = {
        s: requester.open(r, body.request_id)
        for s, r in engine.dispatch(
            {s: envelope for s in body.targets}, progress
        ).items()
    }
    record: dict[str, Any] = {
        "train": str(companion.train.manifest.ref),
        "train_digest": companion.train.digest,
        "request_id": body.request_id,
        "parameters": parameters,
        "stations": _station_rows(companion, network, replies, body.request_id),
        "partial": partial_record(companion, replies, body.request_id),
        "error": None,
        "sections": {},
    }
    try:
        released = _check_participation(companion, replies)
        pool = plugin_for(name).pool
        if pool is None:
            raise ConfigError(f"companion train '{name}' is not a single-round train")
        record["sections"] = pool(released, parameters)
    except (DataError, PolicyError) as exc:  # the main result stands; say why not
        record["error"] = f"{name}: {exc}"
        warnings.warn(CompanionWarning(record["error"]), stacklevel=2)
        log.info("companion %s did not give a result: %s", name, exc)
    return record


def budget_use(study: Study) -> dict[str, Any]:
    """Query-budget units this study spends at each target station, and why.

    One unit per signed request (an iterative session costs one more per
    ``rounds_per_query`` rounds at stations whose policy says so); a companion
    train is a second request, so a second unit.
    """
    if study.design is not None:
        from pht.orchestrator import equivalence, nma

        module: Any = nma if isinstance(study.design, nma.NmaDesign) else equivalence
        return dict(module.budget(study))
    trains = [str(study.train.manifest.ref)]
    spec = plugin_for(study.train.manifest.name).companion
    if spec is not None and study.parameters.get(spec.trigger) is not None:
        trains.append(spec.train)
    return {
        "queries_per_station": len(trains),
        "requests": trains,
        "note": (
            f"'{spec.trigger}' adds a {spec.train} request: each station's query "
            "budget is spent twice"
            if len(trains) > 1 and spec is not None
            else "one request per station"
        ),
    }


def _with_caveats(compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``compute``; put the statistical caveats it raised into ``warnings``.

    Caveats are :class:`~pht.errors.PhtWarning` subclasses (each once, in order);
    other warnings are passed on as usual.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute()
    caveats: list[dict[str, str]] = []
    for w in caught:
        if issubclass(w.category, PhtWarning):
            item = {"category": w.category.__name__, "message": str(w.message)}
            if item not in caveats:
                caveats.append(item)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    provenance = result.pop("provenance")
    return {**result, "warnings": caveats, "provenance": provenance}


def run_study(
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
    progress: ProgressCallback | None = None,
    released: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Dispatch the study's train and pool the released aggregates into a result.

    Statistical caveats (:class:`~pht.errors.PhtWarning`) land in ``warnings``; who
    took part lands in ``partial`` (see the module docstring). Raises
    :class:`~pht.errors.QuorumError` when fewer than the study's ``min_stations``
    took part. ``released`` (a single-round train) receives the opened outputs by
    station. An ``equivalence`` study runs each of its analyses
    (:mod:`pht.orchestrator.equivalence`); an ``nma`` study its ``nma.inputs``
    request and the network meta-analysis (:mod:`pht.orchestrator.nma`).
    """
    if study.design is not None:
        from pht.orchestrator.equivalence import run_equivalence
        from pht.orchestrator.nma import NmaDesign, run_nma

        if isinstance(study.design, NmaDesign):
            return run_nma(study, network, engine, requester, progress)
        return run_equivalence(study, network, engine, requester, progress)
    return _with_caveats(
        lambda: _run_study(study, network, engine, requester, progress, released)
    )


def _run_study(
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
    progress: ProgressCallback | None = None,
    keep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    manifest = study.train.manifest
    plugin = plugin_for(manifest.name)
    if plugin.rounds != manifest.rounds:
        raise ConfigError(
            f"train {manifest.ref} says rounds: {manifest.rounds} but its plugin is "
            f"{plugin.rounds}; fix the manifest or the plugin"
        )
    body, envelope = plan_request(study, network, requester)
    requests = {s: envelope for s in body.targets}

    def opener(reply: Reply) -> Reply:
        return requester.open(reply, body.request_id)

    if plugin.strategy is not None:
        sign_rounds = getattr(engine, "sign_rounds_with", None)
        if sign_rounds is not None:  # engines that carry rounds over a third party
            sign_rounds(requester.identity)
        with engine.open_sessions(requests, progress, opener) as group:
            _check_participation(study, group.opened)
            # every round-0 reply, refusals included (a strategy may say who is
            # missing from its result); only active stations get messages
            strategy = plugin.strategy(dict(group.opened), study.parameters)
            sections = run_strategy(strategy, group)
            rounds = group.rounds + 1
            replies = group.outcome
    else:
        assert plugin.pool is not None
        raw = engine.dispatch(requests, progress)
        held = sorted(s for s, r in raw.items() if r.status == "pending")
        if held:
            raise StudyPending(
                f"{len(held)} station(s) ({', '.join(held)}) hold the output for manual "
                "review; after their operators approve, run `pht collect` on the "
                "output folder",
                PendingRun(study.source, network.source, body, raw, engine.name),
            )
        replies = {s: opener(r) for s, r in raw.items()}
        released = _check_participation(study, replies)
        if keep is not None:
            keep.update(released)
        sections = _pool(plugin.pool, released, study)
        rounds = 1
    return _result(
        study, network, engine, requester, body, replies, sections, rounds, progress
    )


PENDING_FILE = "pending.json"
PENDING_TYPE = "application/vnd.pht.pending+json"
"""In ``--out``: a run whose outputs wait for manual review (``pht collect`` ends it)."""


@dataclass(frozen=True)
class PendingRun:
    """A dispatched single-round study some of whose stations hold the output for review.

    ``replies`` are the stations' raw replies (outputs still sealed to the requester);
    the requester opens them, checking every receipt, when the run is collected.
    """

    study: Path
    network: Path
    body: SignedRequestBody
    replies: Mapping[str, Reply]
    engine: str

    @property
    def waiting(self) -> list[str]:
        """Stations whose reply is still ``pending``."""
        return sorted(s for s, r in self.replies.items() if r.status == "pending")

    def save(self, out_dir: Path, identity: Identity) -> Path:
        """Write ``out_dir/pending.json`` (atomically), signed by the requester.

        The signature makes the file tamper-evident: ``pht collect`` trusts the
        network (the stations' public keys) and study it names only because the
        analyst's own key signed them.
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / PENDING_FILE
        doc = {
            "format": "pht.pending/1",
            "study": str(self.study.resolve()),
            "network": str(self.network.resolve()),
            "network_sha256": digest(self.network.read_bytes()),
            "engine": self.engine,
            "body": dataclasses.asdict(self.body),
            "replies": {s: json.loads(r.to_json()) for s, r in self.replies.items()},
        }
        envelope = sign_envelope(canonical_json(doc), PENDING_TYPE, identity)
        _atomic_write(path, json.dumps(envelope, indent=1) + "\n")
        return path

    @staticmethod
    def file(out_dir: Path) -> Path:
        """``out_dir/pending.json``, or a one-line error when there is none."""
        path = out_dir / PENDING_FILE
        if not path.is_file():
            raise ConfigError(
                f"{path}: no pending run here; `pht collect` takes the --out folder "
                "of a `pht run` that stopped for manual review"
            )
        return path

    @classmethod
    def load(cls, out_dir: Path, identity: Identity) -> PendingRun:
        """Read ``out_dir/pending.json`` signed by ``identity``; one line if not."""
        path = cls.file(out_dir)
        try:
            envelope = json.loads(path.read_text(encoding="utf-8"))
            raw, _ = verify_envelope(
                envelope,
                PENDING_TYPE,
                {identity.key_id: identity.signing.public_key()},
            )
        except (ValueError, TypeError, AttributeError, PhtError):
            raise TrustError(
                f"{path}: not signed by your key {identity.key_id} (changed since "
                "`pht run` wrote it, or another analyst's run); run the study again"
            ) from None
        try:
            doc = json.loads(raw)
            if doc.get("format") != "pht.pending/1":
                raise ValueError("format")
            if digest(Path(doc["network"]).read_bytes()) != doc["network_sha256"]:
                raise ConfigError(
                    f"{doc['network']} changed since the run was sent (its stations' "
                    "keys may differ); run the study again"
                )
            return cls(
                study=Path(doc["study"]),
                network=Path(doc["network"]),
                body=SignedRequestBody(**doc["body"]),
                replies={
                    s: Reply.from_json(json.dumps(r)) for s, r in doc["replies"].items()
                },
                engine=str(doc["engine"]),
            )
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            raise ConfigError(
                f"{path}: not a pending run written by `pht run`; run the study again"
            ) from None


class StudyPending(ReviewPending):
    """:class:`ReviewPending` with the run to save (see :meth:`PendingRun.save`)."""

    def __init__(self, message: str, pending: PendingRun) -> None:
        super().__init__(message)
        self.pending = pending


def collect_study(
    pending: PendingRun,
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
) -> dict[str, Any]:
    """Finish a pending run: collect reviewed replies, open, pool, build the result.

    Raises :class:`StudyPending` (with the updated run) while a station still waits.
    """
    body = pending.body
    if (
        str(study.train.manifest.ref) != body.train
        or dict(study.parameters) != dict(body.parameters)
        or study.dataset != body.dataset
    ):
        raise ConfigError(
            f"{study.source}: the study changed since the run was sent (train, "
            "dataset or parameters); run it again with `pht run`"
        )
    replies = dict(pending.replies)
    for station in pending.waiting:
        reviewed = engine.collect(station, body.request_id)
        if reviewed is not None:
            replies[station] = reviewed
    updated = dataclasses.replace(pending, replies=replies)
    if updated.waiting:
        raise StudyPending(
            f"still waiting for review at {', '.join(updated.waiting)}; run "
            "`pht collect` again after their operators approve or reject",
            updated,
        )
    plugin = plugin_for(study.train.manifest.name)
    if plugin.pool is None:
        raise ConfigError("only single-round trains are held for review")
    opened = {s: requester.open(r, body.request_id) for s, r in replies.items()}
    released = _check_participation(study, opened)
    pool = plugin.pool

    def compute() -> dict[str, Any]:
        sections = _pool(pool, released, study)
        return _result(study, network, engine, requester, body, opened, sections, 1)

    return _with_caveats(compute)


def _result(
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
    body: SignedRequestBody,
    replies: Mapping[str, Reply],
    sections: dict[str, Any],
    rounds: int,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """The result dict: header, station rows, sections, provenance."""
    manifest = study.train.manifest
    requests = list(body.targets)
    partial = partial_record(study, replies, body.request_id)
    _check_quorum(study, partial)  # again: stations may leave a session
    companion = _run_companion(study, network, engine, requester, progress)
    if companion is not None:
        sections = {**companion.pop("sections"), **sections}
    return {
        "schema_version": SCHEMA_VERSION,
        "train": str(manifest.ref),
        "train_digest": study.train.digest,
        "question": study.question,
        "purpose": study.purpose,
        "dataset": study.dataset,
        "parameters": dict(study.parameters),
        "created": _now(),
        "pht_version": __version__,
        "stations": _station_rows(study, network, replies, body.request_id),
        "partial": partial,
        **sections,
        "provenance": {
            "engine": engine.name,
            "study_file": str(study.source),
            "network_file": str(network.source),
            "requester": {
                "organisation": requester.identity.public.organisation,
                "user": requester.identity.public.name,
                "role": study.role,
                "key_id": requester.identity.key_id,
            },
            "request_id": body.request_id,
            "issued_at": body.issued_at,
            "expires_at": body.expires_at,
            "train_signers": [
                sig.get("keyid") for sig in body.train_statement.get("signatures", [])
            ],
            "receipts": requester.receipts,
            "disclosure_class": manifest.output_class_for(study.parameters),
            "rounds": rounds,
            "budget": budget_use(study),
            **({"companion": companion} if companion is not None else {}),
            "requests": [
                {
                    "station": s,
                    "request_id": body.request_id,
                    "status": replies[s].status,
                    "reason": replies[s].reason,
                    "executor": replies[s].executor,
                    "train_digest": replies[s].train_digest,
                }
                for s in requests
            ],
        },
    }


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(result: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``result.json``, ``report.html`` and its ``figures/`` and ``tables/``.

    An ``nma`` result also gets ``nma_contrasts.csv`` and ``nma.R`` (written before
    ``result.json``, each atomically).

    The report is rendered into a staging folder first and published only after
    ``result.json`` is written, so a failure leaves the previous files in place.
    """
    from pht.orchestrator.exports import staged_report
    from pht.orchestrator.nma import write_exports

    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    with staged_report(result, out_dir) as publish:
        write_exports(result, out_dir)  # an nma study's netmeta CSV and R script
        result_path = out_dir / "result.json"
        _atomic_write(result_path, text)
        report_path = publish()
    return result_path, report_path
