"""Design agreement and the estimability check of federated regression models.

From the stations' round-0 descriptions (sizes, covariate sums, level counts: each
already checked by the station's small-cell rule) the orchestrator agrees one design
every station codes its rows with: covariate kinds, canonical levels in R's order,
reference levels and a common centre. After the first evaluation,
:func:`check_estimable` names covariates the pooled information cannot separate.
Used by ``survival.cox`` and reusable by any GLM train.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from warnings import warn

import numpy as np

from pht.algorithms.cox import Covariate, Design
from pht.algorithms.levels import agree_level_type, canonical_level, sort_levels
from pht.algorithms.numeric import dependent_columns
from pht.errors import DataError, ReferenceWarning, SingleStationLevelWarning


def agree_design(
    described: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, Any]
) -> tuple[Design, list[str]]:
    """Covariate kinds, levels, references and centre agreed over the stations.

    ``described`` are the stations' round-0 descriptions (``n``, ``events`` and per
    covariate its ``kind``; numeric: ``sum``, ``constant``; categorical: ``levels``
    with counts and their ``level_type``). Levels are canonical labels in R's
    ``factor()`` order; the default reference is the first. Returns the design and its
    caveats (each also issued as a :class:`SingleStationLevelWarning`). Raises
    :class:`DataError` with what to change when no design fits.
    """
    mode = parameters.get("mode", "stratified")
    references: Mapping[str, Any] = parameters.get("reference") or {}
    n_total = sum(int(d["n"]) for d in described.values())
    warnings: list[str] = []
    covariates: list[Covariate] = []
    centre: list[float] = []
    for column in parameters["covariates"]:
        infos = {s: d["columns"][column] for s, d in described.items()}
        kinds = {info["kind"] for info in infos.values()}
        if len(kinds) > 1:
            numeric = sorted(s for s, i in infos.items() if i["kind"] == "numeric")
            raise DataError(
                f"covariate '{column}' is numeric at {', '.join(numeric)} but text at "
                "other stations; harmonise the column or declare it in 'categorical'"
            )
        if kinds == {"numeric"}:
            total = sum(float(i["sum"]) for i in infos.values())
            if all(i["constant"] for i in infos.values()):
                means = {float(i["sum"]) / described[s]["n"] for s, i in infos.items()}
                if len(means) == 1 or mode == "stratified":
                    where = "at every station" if len(means) > 1 else "overall"
                    raise DataError(
                        f"covariate '{column}' is constant {where}, so its effect "
                        "cannot be estimated"
                        + (
                            " in stratified mode: switch mode to pooled"
                            if len(means) > 1
                            else ""
                        )
                        + f" or drop '{column}' from covariates"
                    )
            covariates.append(Covariate(column))
            centre.append(total / n_total)
            continue
        counts: dict[str, int] = {}
        seen_at: dict[str, list[str]] = {}
        for station, info in infos.items():
            for level, count in info["levels"].items():
                counts[level] = counts.get(level, 0) + int(count)
                seen_at.setdefault(level, []).append(station)
        # labels are canonical at every station (1 and 1.0 are one level); the
        # stations must agree on the type behind them; levels in R's factor() order
        kind = agree_level_type(
            column, {s: i.get("level_type") for s, i in infos.items()}, "covariate"
        )
        levels = tuple(sort_levels(counts, kind))
        if len(levels) < 2:
            raise DataError(
                f"covariate '{column}' has a single level ({levels[0]}) at the stations "
                f"that took part; drop '{column}' from covariates"
            )
        given = references.get(column)
        reference = levels[0] if given is None else canonical_level(given, kind)
        if reference not in counts:
            message = (
                f"parameters.reference.{column}: level '{reference}' does not occur at "
                f"the stations that took part; the reference is '{levels[0]}' (the "
                f"first level) instead; levels: {', '.join(levels)}"
            )
            warnings.append(message)
            warn(ReferenceWarning(message), stacklevel=2)
            reference = levels[0]
        if len(described) > 1:
            for level, stations in seen_at.items():
                if len(stations) == 1:
                    message = (
                        f"level '{level}' of '{column}' occurs only at station "
                        f"{stations[0]}: its effect rests on that station alone; "
                        "merge levels or check coding"
                        + (" (or switch mode)" if mode == "stratified" else "")
                    )
                    warnings.append(message)
                    warn(SingleStationLevelWarning(message), stacklevel=2)
        cov = Covariate(column, levels, reference)
        covariates.append(cov)
        centre.extend(counts[lv] / n_total for lv in levels if lv != reference)
    return Design(tuple(covariates), tuple(centre)), warnings


def check_estimable(information: np.ndarray, names: Sequence[str]) -> None:
    """Raise a :class:`DataError` naming the covariates that are collinear or constant."""
    p = len(names)
    scale = np.sqrt(np.clip(np.diag(information), 0, None))
    zero = [names[i] for i in range(p) if scale[i] <= 1e-12 * max(1.0, scale.max())]
    if zero:
        raise DataError(
            f"covariate(s) {', '.join(zero)} do not vary within the risk sets; drop "
            "them (or switch mode if they only vary between stations)"
        )
    corr = information / np.outer(scale, scale)
    rest = dependent_columns(corr)
    if rest.size:
        dependent = [names[i] for i in rest]
        raise DataError(
            f"covariate(s) {', '.join(dependent)} are collinear with other covariates; "
            "drop them or merge levels"
        )


def covariate_problems(parameters: Mapping[str, Any]) -> list[str]:
    """``reference`` and ``categorical`` entries naming no covariate, as ``key: fix``.

    A train plugin's parameter check (glm, iptw, survival.cox).
    """
    covariates = list(parameters.get("covariates") or [])
    listed = ", ".join(covariates)
    problems = [
        f"reference.{column}: '{column}' is not one of the covariates ({listed}); "
        "add it to covariates or drop its reference"
        for column in (parameters.get("reference") or {})
        if column not in covariates
    ]
    problems += [
        f"categorical: '{column}' is not one of the covariates ({listed}); add it to "
        "covariates or drop it here"
        for column in (parameters.get("categorical") or [])
        if column not in covariates
    ]
    return problems
