"""Discovery and dry runs: ask the stations what may be used; check a study against it.

:func:`describe_stations` sends one signed describe request
(:class:`pht.signing.DescribeRequestBody`) through the network's engine, opens each
sealed answer after checking its receipt, and returns one :class:`StationAnswer` per
station: a refusal, an unreachable station or a rejected answer is an answer with
its reason, never an exception. :func:`check_study` compares a study's train and
parameters with the answers (pure: no I/O) and returns one :class:`Problem` per
column, role, type, train or disclosure class a station would refuse.

Nothing here reads data: stations answer with column names, roles and schema types
only (:mod:`pht.description`); each describe request is audited at the station and
costs no query budget.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pht.crypto import Identity
from pht.description import DatasetDescription, StationDescription, accepts
from pht.errors import ConfigError, PhtError
from pht.manifest import Catalogue, TrainPackage
from pht.orchestrator.config import PURPOSE, Network, Study
from pht.orchestrator.engine import Engine
from pht.orchestrator.requester import Requester
from pht.signing import ALL_DATASETS
from pht.station.policy import VersionRange

log = logging.getLogger(__name__)

MAX_REASON = 300


@dataclass(frozen=True)
class StationAnswer:
    """One station's answer to a describe request.

    ``status`` is the reply's (``ok``, ``refused``, ``error``, ``pending``) or
    ``unreachable`` when the engine could not deliver the request; ``reason`` says
    why there is no description.
    """

    station: str
    status: str
    reason: str | None = None
    description: StationDescription | None = None

    @property
    def ok(self) -> bool:
        """Whether the station described what the requester may use."""
        return self.status == "ok" and self.description is not None


@dataclass(frozen=True)
class Problem:
    """Something stations would refuse in a study, found before anything runs."""

    stations: tuple[str, ...]
    message: str
    key: str | None = None
    """The study's parameter naming the column (None: the train, class or station)."""
    column: str | None = None

    def line(self, source: object) -> str:
        """``study.yaml: parameters.time: column 'x' ... at station s1, s2``."""
        where = f"parameters.{self.key}: " if self.key else ""
        plural = "s" if len(self.stations) > 1 else ""
        return (
            f"{source}: {where}{self.message} at station{plural} "
            f"{', '.join(self.stations)}"
        )


def _merged(problems: Sequence[Problem]) -> list[Problem]:
    """One problem per (key, column, message), naming every station it holds at."""
    merged: dict[tuple[str | None, str | None, str], list[str]] = {}
    for p in problems:
        stations = merged.setdefault((p.key, p.column, p.message), [])
        stations.extend(s for s in p.stations if s not in stations)
    return [
        Problem(tuple(stations), message, key, column)
        for (key, column, message), stations in merged.items()
    ]


def describe_stations(
    engine: Engine,
    requester: Requester,
    *,
    role: str,
    purpose: str,
    dataset: str,
    targets: Sequence[str],
) -> dict[str, StationAnswer]:
    """Ask ``targets`` what ``requester`` may use for ``purpose`` on ``dataset``.

    Parameters
    ----------
    engine
        The network's engine (:func:`pht.orchestrator.engine.make_engine`).
    requester
        The analyst's identity and the stations' public keys.
    role, purpose
        What the requester claims and wants; stations apply their policy's rules.
    dataset
        A dataset id, or ``*`` for every dataset the requester may use.
    targets
        Station ids, in the order the answers are returned.

    Returns
    -------
    dict
        Station id -> :class:`StationAnswer`, one per target.
    """
    body, envelope = requester.describe(
        role=role, purpose=purpose, dataset=dataset, targets=targets
    )
    request_ids = {s: body.request_id for s in targets}
    unreachable: dict[str, str] = {}
    try:
        replies = engine.dispatch({s: envelope for s in targets})
    except PhtError as exc:
        # one station the engine cannot reach must not hide the others' answers:
        # ask each on its own, with a fresh request (the first may have arrived)
        log.info("describe dispatch failed (%s); asking one station at a time", exc)
        replies = {}
        for station in targets:
            one, alone = requester.describe(
                role=role, purpose=purpose, dataset=dataset, targets=[station]
            )
            request_ids[station] = one.request_id
            try:
                replies.update(engine.dispatch({station: alone}))
            except PhtError as failure:
                unreachable[station] = _clean(str(failure))
    answers: dict[str, StationAnswer] = {}
    for station in targets:
        reply = replies.get(station)
        if station in unreachable or reply is None:
            reason = unreachable.get(station, "no reply")
            answers[station] = StationAnswer(station, "unreachable", reason)
        elif not reply.ok:
            answers[station] = StationAnswer(
                station, reply.status, _clean(reply.reason or "no reason given")
            )
        else:
            try:
                description = requester.open_describe(reply, request_ids[station])
            except PhtError as exc:
                answers[station] = StationAnswer(
                    station, "error", _clean(f"answer rejected: {exc}")
                )
            else:
                answers[station] = StationAnswer(station, "ok", None, description)
    return answers


def _clean(text: str) -> str:
    """Station-authored text as one printable line of bounded length."""
    return "".join(ch for ch in text if ch.isprintable())[:MAX_REASON]


def check_study(
    study: Study,
    answers: Mapping[str, StationAnswer],
    companion: tuple[TrainPackage, Mapping[str, Any]] | None = None,
) -> list[Problem]:
    """Everything the stations' answers say they would refuse in ``study``.

    For every station: its answer (a refusal or an unreachable station is a
    problem), the dataset (described and readable), the train and its version, the
    disclosure class of the study's parameters, and every column parameter's columns
    (allowed and held, in the parameter's role, of a type its kind accepts; a site
    only where station names are shown). ``companion`` (a package and its
    parameters) is the second train the study sends, checked the same way.
    """
    problems: list[Problem] = []
    trains = [(study.train, study.parameters, "")]
    if companion is not None:
        trains.append(
            (companion[0], companion[1], f" (companion {companion[0].manifest.ref})")
        )
    for station, answer in answers.items():
        if not answer.ok or answer.description is None:
            problems.append(
                Problem(
                    (station,),
                    f"dataset '{study.dataset}' was not described "
                    f"({answer.status}: {answer.reason})",
                )
            )
            continue
        described = answer.description.dataset(study.dataset)
        if described is None:
            problems.append(
                Problem(
                    (station,),
                    f"dataset '{study.dataset}' is not offered to you for this purpose",
                )
            )
            continue
        if not described.readable:
            problems.append(
                Problem(
                    (station,),
                    f"dataset '{study.dataset}' cannot be read; ask its operator",
                )
            )
            continue
        said: set[tuple[str | None, str | None]] = set()
        for package, parameters, label in trains:
            for p in _check_train(
                station, study.dataset, described, package, parameters
            ):
                if p.key is not None and (p.key, p.column) in said:
                    continue  # the companion's copy of a column problem: said once
                said.add((p.key, p.column))
                problems.append(dataclasses.replace(p, message=p.message + label))
    return _merged(problems)


def _check_train(
    station: str,
    dataset: str,
    described: DatasetDescription,
    package: TrainPackage,
    parameters: Mapping[str, Any],
) -> list[Problem]:
    """Problems of one train with ``parameters`` on one station's description."""
    m = package.manifest
    problems: list[Problem] = []
    rules = [t for t in described.trains if t.name == m.name]
    if not rules:
        allowed = ", ".join(sorted({t.name for t in described.trains})) or "none"
        problems.append(
            Problem(
                (station,),
                f"train {m.name} is not allowed on dataset '{dataset}' "
                f"(allowed: {allowed})",
            )
        )
    elif not any(_in_range(t.versions, m.version) for t in rules):
        ranges = ", ".join(t.versions for t in rules)
        problems.append(
            Problem(
                (station,),
                f"train {m.ref} is outside the versions allowed ({ranges})",
            )
        )
    disclosure_class = m.output_class_for(parameters)
    if disclosure_class not in described.disclosure_classes:
        allowed = ", ".join(described.disclosure_classes)
        problems.append(
            Problem(
                (station,),
                f"{m.ref} releases class '{disclosure_class}', which is not allowed "
                f"(allowed: {allowed})",
            )
        )
    for spec in m.column_params():
        value = parameters.get(spec.name)
        if value is None:
            continue
        role = spec.role or "covariate"
        kind = spec.kind or "numeric"
        for column in [value] if isinstance(value, str) else list(value):
            found = described.column(column)
            if found is None:
                if spec.if_present:
                    continue  # a station may lack it: the train then says so
                candidates = described.with_role(role)
                close = difflib.get_close_matches(column, candidates, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                listed = ", ".join(candidates) or "none"
                problems.append(
                    Problem(
                        (station,),
                        f"column '{column}' is not a column you may use "
                        f"({hint}columns allowed as {role}: {listed})",
                        spec.name,
                        column,
                    )
                )
            elif role not in found.roles:
                problems.append(
                    Problem(
                        (station,),
                        f"column '{column}' may not serve as {role} (it may "
                        f"serve as: {', '.join(found.roles)})",
                        spec.name,
                        column,
                    )
                )
            elif role == "site" and not described.show_station_name:
                problems.append(
                    Problem(
                        (station,),
                        f"column '{column}' is a care site, and the station does "
                        "not show station or site names",
                        spec.name,
                        column,
                    )
                )
            elif not accepts(kind, found.type):
                problems.append(
                    Problem(
                        (station,),
                        f"column '{column}' is {found.type}; {m.name} needs a "
                        f"{kind} column here",
                        spec.name,
                        column,
                    )
                )
    return problems


def _in_range(text: str, version: str) -> bool:
    parsed = VersionRange.parse(text)
    return parsed is not None and parsed.contains(version)


def companion_of(
    study: Study, catalogue: Catalogue
) -> tuple[TrainPackage, dict[str, Any]] | None:
    """The second train ``study`` sends (a plugin's companion), with its parameters."""
    from pht.trains import plugin_for
    from pht.wire import TrainRef

    spec = plugin_for(study.train.manifest.name).companion
    if spec is None or study.parameters.get(spec.trigger) is None:
        return None
    try:
        package = catalogue.get(TrainRef.parse(spec.train))
    except ConfigError:
        return None
    parameters = {
        k: study.parameters[k]
        for k in spec.parameters
        if study.parameters.get(k) is not None
    }
    return package, parameters


# -- the analyst's commands (``pht network show``, ``pht validate --identity``) -------
def discover(
    network: Network,
    identity: Identity,
    *,
    purpose: str,
    role: str = "analyst",
    dataset: str = ALL_DATASETS,
    targets: Sequence[str] | None = None,
    catalogue: Catalogue | None = None,
) -> dict[str, StationAnswer]:
    """Ask the stations of ``network`` (or ``targets``) through its engine."""
    from pht.orchestrator.engine import make_engine

    if not PURPOSE.match(purpose):
        raise ConfigError(
            f"purpose '{purpose}' must be a path such as "
            "package-management/reassessment (the purpose your study states)"
        )
    requester = Requester(
        identity, {s: e.public_key for s, e in network.stations.items()}
    )
    chosen = list(targets or network.stations)
    with make_engine(network, catalogue) as engine:
        return describe_stations(
            engine,
            requester,
            role=role,
            purpose=purpose,
            dataset=dataset,
            targets=chosen,
        )


def validate_at_stations(
    study: Study,
    network: Network,
    identity: Identity,
    catalogue: Catalogue,
) -> tuple[list[Problem], list[str]]:
    """Describe the study's dataset at its target stations and check the study.

    Returns the problems and the stations asked (the study's ``stations``, else every
    station of the network, as ``pht run`` sends it).
    """
    targets = list(study.stations or network.stations)
    answers = discover(
        network,
        identity,
        purpose=study.purpose,
        role=study.role,
        dataset=study.dataset,
        targets=targets,
        catalogue=catalogue,
    )
    if study.design is not None:  # an equivalence study: every analysis's request
        problems: list[Problem] = []
        import dataclasses

        for analysis in study.design.analyses:
            for problem in check_study(
                analysis.study, answers, companion_of(analysis.study, catalogue)
            ):
                # the train's parameter is not a key of the study file: say whose
                where = (
                    f"outcome '{analysis.outcome}' ({analysis.study.train.manifest.name}"
                    + (f" {problem.key}" if problem.key else "")
                    + "): "
                )
                named = dataclasses.replace(
                    problem, key=None, message=where + problem.message
                )
                if named not in problems:
                    problems.append(named)
        return problems, targets
    return check_study(study, answers, companion_of(study, catalogue)), targets


def network_document(
    network: Network, answers: Mapping[str, StationAnswer] | None = None
) -> dict[str, Any]:
    """The network file's stations (and, with ``answers``, what they described)."""
    stations = []
    for entry in network.stations.values():
        row: dict[str, Any] = {
            "id": entry.id,
            "name": entry.name,
            "address": entry.address,
            "datasets": list(entry.datasets),
        }
        if answers is not None and entry.id in answers:
            answer = answers[entry.id]
            row["describe"] = {
                "status": answer.status,
                "reason": answer.reason,
                "datasets": []
                if answer.description is None
                else answer.description.to_dict()["datasets"],
            }
        stations.append(row)
    return {
        "network": str(network.source),
        "engine": network.engine,
        "address": network.address,
        "stations": stations,
    }


def network_lines(
    network: Network, answers: Mapping[str, StationAnswer] | None = None
) -> list[str]:
    """``pht network show`` as text lines (see :func:`network_document`)."""
    lines = [
        f"network {network.source} (engine {network.engine}, "
        f"{len(network.stations)} station(s))"
    ]
    for entry in network.stations.values():
        address = f" at {entry.address}" if entry.address else ""
        lines.append(
            f"{entry.id}: {entry.name}{address}; datasets: {', '.join(entry.datasets)}"
        )
        if answers is None or entry.id not in answers:
            continue
        answer = answers[entry.id]
        if answer.description is None:
            lines.append(f"  {answer.status}: {answer.reason}")
            continue
        if not answer.description.datasets:
            lines.append("  no dataset you may use for this purpose")
        for d in answer.description.datasets:
            lines.extend(_dataset_lines(d))
    if answers is None:
        lines.append(
            "columns: add --identity KEY --purpose PURPOSE to ask the stations which "
            "columns you may use (a signed, audited describe request; no data)"
        )
    return lines


def _dataset_lines(d: DatasetDescription) -> list[str]:
    names = "station names shown" if d.show_station_name else "station names hidden"
    budget = (
        "no query budget"
        if d.budget is None
        else f"budget {d.budget.used}/{d.budget.queries} query unit(s) used in "
        f"{d.budget.period_days} days"
    )
    lines = [
        f"  dataset {d.id}: k={d.min_cell_size}; classes: "
        f"{', '.join(d.disclosure_classes)}; review {d.review}; {names}; {budget}",
        "    trains: "
        + ("; ".join(f"{t.name} {t.versions}" for t in d.trains) or "none"),
    ]
    if not d.readable:
        lines.append(
            "    columns: the station cannot read this dataset; ask its operator"
        )
        return lines
    if not d.columns:
        lines.append("    columns: none you may use")
    width = max((len(c.name) for c in d.columns), default=0)
    for c in d.columns:
        lines.append(f"    {c.name:<{width}}  {c.type:<11}  {', '.join(c.roles)}")
    return lines
