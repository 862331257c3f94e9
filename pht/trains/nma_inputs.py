"""``nma.inputs``: each station's treatment arms as one study of a network meta-analysis.

Station side: :func:`station_output` (the kernel
:func:`pht.algorithms.nma_local.station_output` with the means train's level rules)
is what the train's entrypoint and the station's :attr:`TrainPlugin.recompute` call;
every disclosure rule, and what is not defended, is in
:mod:`pht.algorithms.nma_local`. The train's output is the wire form the output
guard can check (``arms[treatment][treatment_by or "all"]``: every key a label the
station holds with >= k rows); :func:`finalize` releases the same numbers keyed by
arm label (``"nivolumab / standard"``) with the policy's ``show_station_name``.

Orchestrator side: :func:`pool` gives the section ``nma_inputs`` (one study per
station, labelled by its id where its policy shows the name, else ``station 1``,
``station 2``... in a random order) that the NMA pools.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pht.algorithms.nma_local import (
    INPUTS,
    flatten,
    treatment_list,
)
from pht.algorithms.nma_local import (
    station_output as local_output,
)
from pht.errors import DataError
from pht.trains import register
from pht.trains.base import Contract, Sections, StationView, TrainPlugin
from pht.trains.means import level_rules

Column = Any


def station_output(
    parameters: Mapping[str, Any],
    column: Column,
    min_count: int,
    rules: Mapping[str, Any],
) -> dict[str, Any]:
    """The train's wire output (the kernel with the means train's level rules)."""
    return local_output(parameters, column, min_count, rules, level_rules=level_rules)


def recompute(view: StationView) -> dict[str, Any]:
    """The station's own output from its extract (the train's must equal it)."""
    return station_output(view.parameters, view.column, view.min_count, view.rules)


def finalize(view: StationView, output: dict[str, Any]) -> dict[str, Any]:
    """The released form: arms keyed by label, and the policy's show_station_name."""
    released = flatten(output, view.parameters.get("treatment_by"))
    return {**released, "show_station_name": view.show_station_name}


# -- study parameters -------------------------------------------------------------------
def check(parameters: Mapping[str, Any]) -> Sequence[str]:
    """Problems with the study's parameters together, as ``"key: fix"``."""
    problems: list[str] = []
    kind = parameters.get("input")
    treatment, by = parameters.get("treatment"), parameters.get("treatment_by")
    if by is not None and by == treatment:
        problems.append(
            f"treatment_by: '{by}' is also the treatment column; name another column "
            "(e.g. regimen) or leave treatment_by out"
        )
    needs = {
        "events": ("outcome",),
        "means": ("measure",),
        "rates": ("time", "event"),
        "cox": ("time", "event"),
    }
    for key in needs.get(str(kind), ()):
        if parameters.get(key) is None:
            problems.append(f"{key}: required for input '{kind}'; name the column")
    for key, used_by in (("outcome", "events"), ("measure", "means")):
        if parameters.get(key) is not None and kind != used_by:
            problems.append(
                f"{key}: only for input '{used_by}'"
                + (
                    " (give time and event)"
                    if kind in ("rates", "cox")
                    else " (input 'events' takes a 0/1 outcome, 'means' a numeric "
                    "measure)"
                )
                + "; drop it"
            )
    if kind in ("events", "means"):
        given = "outcome" if kind == "events" else "measure"
        for key in ("time", "event"):
            if parameters.get(key) is not None:
                problems.append(
                    f"{key}: not used for input '{kind}' (give {given}); drop it"
                )
    if kind != "cox":
        for key in ("covariates", "strata"):
            if parameters.get(key):
                problems.append(f"{key}: only for input 'cox'; drop it")
    arm_columns = {treatment, by} - {None}
    for key in ("outcome", "measure", "time", "event", "strata"):
        if parameters.get(key) in arm_columns:
            problems.append(
                f"{key}: '{parameters[key]}' defines the arms; name another column"
            )
    for column in parameters.get("covariates") or []:
        if column in arm_columns or column in (
            parameters.get("time"),
            parameters.get("event"),
            parameters.get("strata"),
        ):
            problems.append(
                f"covariates: '{column}' is already the arm, time, event or strata "
                "column; drop it from covariates"
            )
    try:
        chosen = treatment_list(parameters.get("treatments"))
    except DataError as exc:
        problems.append(str(exc).removeprefix("parameters."))
    else:
        if chosen is not None and len(chosen) < 2:
            problems.append(
                "treatments: list at least two arm labels (or leave "
                "it out for every arm)"
            )
    return problems


# -- pooling ----------------------------------------------------------------------------
def _labels(shown: Mapping[str, bool]) -> dict[str, str]:
    """Station id where shown, else ``station i`` in an OS-random order."""
    import secrets

    hidden = [s for s, show in sorted(shown.items()) if not show]
    secrets.SystemRandom().shuffle(hidden)
    out = {s: s for s, show in shown.items() if show}
    out.update({s: f"station {i}" for i, s in enumerate(hidden, 1)})
    return out


def _count(value: Any, what: str) -> int:
    """A released count: a finite whole number >= 0 (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} is {value!r}, not a number")
    if not (math.isfinite(value) and float(value).is_integer() and value >= 0):
        raise ValueError(f"{what} is {value!r}, not a finite whole count")
    return int(value)


def _study(station: str, output: Mapping[str, Any], kind: str) -> dict[str, Any]:
    try:
        if not isinstance(output, Mapping):
            raise ValueError(f"the output is a {type(output).__name__}, not a mapping")
        if output["input"] != kind:
            raise ValueError(f"input {output['input']!r}, expected {kind!r}")
        arms = {str(a): dict(v) for a, v in output["arms"].items()}
        for arm, stats in arms.items():
            stats["n"] = _count(stats["n"], f"arm {arm!r} n")
            if kind in ("events", "rates"):
                stats["events"] = _count(stats["events"], f"arm {arm!r} events")
        study: dict[str, Any] = {"arms": arms}
        if kind == "cox":
            cox = output["cox"]
            terms = [str(t) for t in cox["terms"]]
            if cox["reference"] not in arms or not set(terms) <= set(arms):
                raise ValueError("Cox terms name arms the station did not release")
            if len(cox["coef"]) != len(terms) or len(cox["cov"]) != len(terms):
                raise ValueError("Cox coefficients do not match the terms")
            study["cox"] = {
                "reference": str(cox["reference"]),
                "terms": terms,
                "coef": [float(v) for v in cox["coef"]],
                "cov": [[float(v) for v in row] for row in cox["cov"]],
            }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(
            f"station {station} returned malformed NMA inputs ({exc})"
        ) from None
    return study


def pool(
    released: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, Any]
) -> Sections:
    """The section ``nma_inputs``: one study per station, arm totals over stations."""
    kind = str(parameters["input"])
    if kind not in INPUTS:
        raise DataError(f"parameters.input: '{kind}' is not one of {', '.join(INPUTS)}")
    if not released:
        raise DataError("no station released NMA inputs; see the stations' reasons")
    for station, output in released.items():
        if not isinstance(output, Mapping):
            raise DataError(
                f"station {station} returned malformed NMA inputs (the output is a "
                f"{type(output).__name__}, not a mapping)"
            )
    labels = _labels(
        {s: o.get("show_station_name") is True for s, o in released.items()}
    )
    studies = []
    totals: dict[str, dict[str, int]] = {}
    for station in sorted(released, key=lambda s: labels[s]):
        study = _study(station, released[station], kind)
        for arm, stats in study["arms"].items():
            entry = totals.setdefault(arm, {"n": 0, "studies": 0})
            entry["n"] += int(stats["n"])
            entry["studies"] += 1
        shown = labels[station] == station
        studies.append(
            {"label": labels[station], "station": station if shown else None, **study}
        )
    what = {
        "events": "n and events",
        "means": "n, mean and SD",
        "rates": "n, events and person-time",
        "cox": "n and its own Cox log hazard ratios (with covariance)",
    }[kind]
    section = {
        "input": kind,
        "treatment": parameters["treatment"],
        "treatment_by": parameters.get("treatment_by"),
        "studies": studies,
        "treatments": dict(sorted(totals.items())),
        "note": (
            f"Each station is one study: it released {what} per treatment arm; every "
            "arm of its table holds at least k patients (else it refused), and its "
            "events, dominance and model rules held. Stations whose policy hides "
            "their name are labelled 'station 1', 'station 2'... in a random order."
        ),
    }
    return {"nma_inputs": section}


# -- report -------------------------------------------------------------------------
def _cell(stats: Mapping[str, Any], kind: str) -> str:
    from pht.orchestrator.report import number

    if kind == "means":
        return f"{number(stats['n'])}: {number(stats['mean'])} ({number(stats['sd'])})"
    if kind == "rates":
        return (
            f"{number(stats['events'])} / {number(stats['n'])}, "
            f"{number(stats['person_time'])}"
        )
    if kind == "cox":  # the arms of a Cox input carry n only
        return number(stats["n"])
    return f"{number(stats['events'])} / {number(stats['n'])}"


def _render(result: Mapping[str, Any]) -> str:
    # lazy: the train's entrypoint imports this module
    from pht.orchestrator.report import escape, section, table

    data = result["nma_inputs"]
    kind = data["input"]
    arms = list(data["treatments"])
    how = {
        "events": "events / n",
        "means": "n: mean (SD)",
        "rates": "events / n, person-time",
        "cox": "n",
    }[kind]
    rows = [
        [escape(s["label"])]
        + [
            escape(_cell(s["arms"][a], kind)) if a in s["arms"] else "&ndash;"
            for a in arms
        ]
        for s in data["studies"]
    ]
    rows.append(
        ["<b>total</b>"]
        + [
            escape(
                f"{data['treatments'][a]['n']} in {data['treatments'][a]['studies']}"
            )
            for a in arms
        ]
    )
    by = f" by {escape(data['treatment_by'])}" if data["treatment_by"] else ""
    parts = [
        f'<p class="note">Arms of {escape(data["treatment"])}{by}; cells: {how} '
        f"(total: patients in studies). {escape(data['note'])}</p>",
        table(["study", *map(escape, arms)], rows, "l", name="nma_inputs"),
    ]
    return section("nma_inputs", "NMA inputs: studies by arm", "".join(parts))


PLUGIN = register(
    TrainPlugin(
        name="nma.inputs",
        pool=pool,
        sections=(("nma_inputs", _render),),
        recompute=recompute,
        finalize=finalize,
        # what station_output assumes of the manifest: the station refuses any other
        contract=Contract(
            columns={
                "treatment": ("column", "categorical", "group", False),
                "treatment_by": ("column", "categorical", "group", False),
                "outcome": ("column", "binary", "outcome", False),
                "measure": ("column", "numeric", "measure", False),
                "time": ("column", "numeric", "time", False),
                "event": ("column", "binary", "event", False),
                "covariates": ("columns", "categorical", "covariate", False),
                "strata": ("column", "categorical", "group", False),
            },
            output_class="aggregate",
            class_by={"input": {"cox": "model"}},
        ),
        check=check,
    )
)
