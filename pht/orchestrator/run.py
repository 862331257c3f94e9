"""Run a study: plan the requests, dispatch them, pool the aggregates, write results.

``run_study`` returns the result dict that ``write_results`` stores as
``result.json`` next to ``report.html``. Outputs are written to temporary files and moved
into place only when complete, so a failed run never destroys an earlier result.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pht import __version__
from pht.errors import ConfigError, DataError, PolicyError
from pht.orchestrator.config import Network, Study
from pht.orchestrator.drivers import driver_for
from pht.orchestrator.engine import Engine, ProgressCallback
from pht.orchestrator.pooling import pooler_for
from pht.orchestrator.requester import Requester, signed_train
from pht.signing import SignedRequestBody
from pht.wire import Reply

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def plan_request(
    study: Study, network: Network, requester: Requester
) -> tuple[SignedRequestBody, dict[str, Any]]:
    """One signed request addressed to every target station."""
    targets = study.stations or tuple(network.stations)
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


def _station_rows(
    study: Study, network: Network, replies: Mapping[str, Reply]
) -> list[dict[str, Any]]:
    rows = []
    for station_id, reply in replies.items():
        output = reply.output or {}
        # a station whose policy says show_station_name: false releases nothing
        # attributable to it by name: no name, no per-station counts in the result
        shown = reply.ok and bool(reply.details.get("show_station_name", False))
        rows.append(
            {
                "id": station_id,
                "name": network.stations[station_id].name if shown else None,
                "participated": reply.ok,
                "status": reply.status,
                "n": output.get("n") if shown else None,
                "events": output.get("events") if shown else None,
                "excluded": output.get("excluded") if shown else None,
                "reason": reply.reason,
                "elapsed_seconds": reply.elapsed_seconds,
                "executor": reply.executor,
            }
        )
    return rows


def _check_participation(
    study: Study, replies: Mapping[str, Reply]
) -> dict[str, Mapping[str, Any]]:
    """Raise on station errors or when nobody took part; return released outputs."""
    errors = [r for r in replies.values() if r.status == "error"]
    if errors:
        first = errors[0]
        raise DataError(
            f"station {first.station}: {first.reason}; fix {study.source.name} "
            "(parameters, or leave the station out under 'stations') and run again"
        )
    released = {
        s: r.output for s, r in replies.items() if r.ok and r.output is not None
    }
    if not released:
        reasons = "; ".join(f"{s}: {r.reason}" for s, r in replies.items())
        raise PolicyError(f"no station took part ({reasons})")
    return released


# A Cox study that names a group (with tau and/or at) also gets the group-wise answers
# of survival.km: KM curves, log-rank, RMST at tau and survival at a time. They come
# from a second, separately signed request (its own disclosure class, policy decision,
# budget use and receipts at every station), so a station may allow one and not the other.
COMPANIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "survival.cox": (
        "survival.km",
        ("time", "event", "group", "reference_group", "tau", "at"),
    ),
}


def _run_companion(
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
    progress: ProgressCallback | None,
) -> dict[str, Any] | None:
    """Run the companion train of ``study`` if its parameters ask for one."""
    spec = COMPANIONS.get(study.train.manifest.name)
    if spec is None or study.parameters.get("group") is None:
        return None
    from pht.manifest import Catalogue
    from pht.wire import TrainRef

    name, keys = spec
    parameters = {
        k: study.parameters[k] for k in keys if study.parameters.get(k) is not None
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
    )
    try:
        body, envelope = plan_request(companion, network, requester)
    except ConfigError as exc:  # e.g. the network has no signed survival.km
        log.warning("companion %s not sent: %s", name, exc)
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
        "stations": _station_rows(companion, network, replies),
        "error": None,
        "sections": {},
    }
    try:
        released = _check_participation(companion, replies)
        record["sections"] = pooler_for(name)(released, parameters)
    except (DataError, PolicyError) as exc:  # the Cox result stands; say why not
        record["error"] = f"{name}: {exc}"
        log.warning("companion %s did not give a result: %s", name, exc)
    return record


def run_study(
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Dispatch the study's train and pool the released aggregates into a result."""
    manifest = study.train.manifest
    body, envelope = plan_request(study, network, requester)
    requests = {s: envelope for s in body.targets}

    def opener(reply: Reply) -> Reply:
        return requester.open(reply, body.request_id)

    if manifest.rounds == "iterative":
        driver = driver_for(manifest.name)
        with engine.open_sessions(requests, progress, opener) as group:
            replies = group.opened
            _check_participation(study, replies)
            sections = driver(group, study.parameters)
            rounds = group.rounds + 1
            replies = group.outcome
    else:
        replies = {s: opener(r) for s, r in engine.dispatch(requests, progress).items()}
        released = _check_participation(study, replies)
        sections = pooler_for(manifest.name)(released, study.parameters)
        rounds = 1
    companion = _run_companion(study, network, engine, requester, progress)
    if companion is not None:
        sections = {**companion.pop("sections"), **sections}
    hidden = {
        s
        for s, r in replies.items()
        if r.ok and not r.details.get("show_station_name", False)
    }
    cox = sections.get("cox")
    if isinstance(cox, dict) and isinstance(cox.get("per_station"), dict):
        cox["per_station"] = {
            s: v for s, v in cox["per_station"].items() if s not in hidden
        }
    return {
        "train": str(manifest.ref),
        "train_digest": study.train.digest,
        "question": study.question,
        "purpose": study.purpose,
        "dataset": study.dataset,
        "parameters": dict(study.parameters),
        "created": _now(),
        "pht_version": __version__,
        "stations": _station_rows(study, network, replies),
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
    """Write ``result.json`` and ``report.html`` into ``out_dir``."""
    from pht.orchestrator.report import render_report

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{os.getpid()}"
    staging.mkdir(exist_ok=True)
    try:
        report = render_report(result, staging)
        result_path = out_dir / "result.json"
        _atomic_write(result_path, json.dumps(result, indent=2, allow_nan=False) + "\n")
        report_path = out_dir / "report.html"
        os.replace(report, report_path)
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return result_path, report_path
