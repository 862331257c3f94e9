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
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pht import __version__
from pht.errors import DataError, PolicyError
from pht.orchestrator.config import Network, Study
from pht.orchestrator.engine import Engine, ProgressCallback
from pht.orchestrator.drivers import driver_for
from pht.orchestrator.pooling import pooler_for
from pht.wire import Reply, Request

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def plan_requests(study: Study, network: Network) -> dict[str, Request]:
    """One request per target station that holds the study's dataset."""
    targets = study.stations or tuple(network.stations)
    manifest = study.train.manifest
    issued = _now()
    return {
        station_id: Request(
            request_id=str(uuid.uuid4()),
            train=str(manifest.ref),
            train_digest=study.train.digest,
            dataset=study.dataset,
            parameters=dict(study.parameters),
            purpose=study.purpose,
            requester=study.requester,
            issued_at=issued,
        )
        for station_id in targets
    }


def _station_rows(
    study: Study, network: Network, replies: Mapping[str, Reply]
) -> list[dict[str, Any]]:
    rows = []
    for station_id, reply in replies.items():
        output = reply.output or {}
        rows.append(
            {
                "id": station_id,
                "name": network.stations[station_id].name,
                "participated": reply.ok,
                "status": reply.status,
                "n": output.get("n") if reply.ok else None,
                "events": output.get("events") if reply.ok else None,
                "excluded": output.get("excluded") if reply.ok else None,
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
    released = {s: r.output for s, r in replies.items() if r.ok and r.output is not None}
    if not released:
        reasons = "; ".join(f"{s}: {r.reason}" for s, r in replies.items())
        raise PolicyError(f"no station took part ({reasons})")
    return released


def run_study(
    study: Study,
    network: Network,
    engine: Engine,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Dispatch the study's train and pool the released aggregates into a result."""
    manifest = study.train.manifest
    requests = plan_requests(study, network)
    if manifest.rounds == "iterative":
        driver = driver_for(manifest.name)
        with engine.open_sessions(requests, progress) as group:
            replies = group.opened
            _check_participation(study, replies)
            sections = driver(group, study.parameters)
            rounds = group.rounds + 1
            replies = group.outcome
    else:
        replies = engine.dispatch(requests, progress)
        released = _check_participation(study, replies)
        sections = pooler_for(manifest.name)(released, study.parameters)
        rounds = 1
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
            "requester": study.requester,
            "disclosure_class": manifest.output_class_for(study.parameters),
            "rounds": rounds,
            "requests": [
                {
                    "station": s,
                    "request_id": requests[s].request_id,
                    "issued_at": requests[s].issued_at,
                    "status": replies[s].status,
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
