"""Readable labels and data frames of a study's ``result.json``.

The names in ``result.json`` are the API (``regimen[T.extended_interval]``); people
read ``regimen: extended interval``. :func:`term_label` is the one mapping, used by
the forest plot, the report's tables and their CSV exports. :func:`summary_frame`
gives the study's main table as a :class:`pandas.DataFrame` for the Python API.

Nothing here reads files; every function takes the parsed result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

_TERM = re.compile(r"^(?P<column>.+?)\[T\.(?P<level>.*)\]$")


def parse_term(name: str) -> tuple[str, str | None]:
    """Split a model parameter name into its column and level.

    Parameters
    ----------
    name : str
        A parameter name of ``cox.params``: ``column[T.level]`` for a level of a
        categorical covariate, the column itself for a numeric one.

    Returns
    -------
    tuple[str, str | None]
        ``(column, level)``; ``level`` is ``None`` for a numeric covariate.

    Examples
    --------
    >>> parse_term("regimen[T.extended_interval]")
    ('regimen', 'extended_interval')
    >>> parse_term("age")
    ('age', None)
    """
    match = _TERM.match(name)
    if match is None:
        return name, None
    return match["column"], match["level"]


def level_label(level: Any) -> str:
    """A level or group as people read it: underscores become spaces.

    >>> level_label("extended_interval")
    'extended interval'
    """
    return str(level).replace("_", " ")


def term_label(name: str, units: Mapping[str, str] | None = None) -> str:
    """The readable label of a model parameter.

    Parameters
    ----------
    name : str
        A parameter name of ``cox.params``.
    units : Mapping[str, str], optional
        Unit of a numeric covariate (``{"age": "year"}`` gives ``age (per year)``);
        a covariate without a known unit is shown by its name.

    Examples
    --------
    >>> term_label("regimen[T.extended_interval]")
    'regimen: extended interval'
    >>> term_label("age", {"age": "year"})
    'age (per year)'
    """
    column, level = parse_term(name)
    if level is not None:
        return f"{column}: {level_label(level)}"
    unit = (units or {}).get(column)
    return f"{column} (per {unit})" if unit else column


def units(result: Mapping[str, Any]) -> dict[str, str]:
    """Units of numeric covariates from the study parameter ``units``, if given."""
    parameters = result.get("parameters")
    given = parameters.get("units") if isinstance(parameters, Mapping) else None
    if not isinstance(given, Mapping):
        return {}
    return {str(k): str(v) for k, v in given.items() if v}


def variable_of_interest(result: Mapping[str, Any]) -> str | None:
    """The covariate a Cox study asks about.

    The study's ``group`` parameter when the model has it, else the first
    covariate (``parameters.covariates[0]``); ``None`` when neither is known.
    """
    parameters = result.get("parameters")
    if not isinstance(parameters, Mapping):
        return None
    cox = result.get("cox")
    params = cox.get("params") if isinstance(cox, Mapping) else None
    columns = [parse_term(n)[0] for n in params or {}]
    group = parameters.get("group")
    if isinstance(group, str) and (group in columns or not columns):
        return group
    covariates = parameters.get("covariates")
    if isinstance(covariates, list) and covariates:
        return str(covariates[0])
    return columns[0] if columns else None


def _float(value: Any) -> float:
    """A number of the result as float; ``None`` (not released) becomes NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def cox_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per Cox coefficient: label, coef, se, hr, CI, z and p-value.

    Raises
    ------
    ValueError
        The result has no ``cox.params``.
    """
    cox = result.get("cox")
    params = cox.get("params") if isinstance(cox, Mapping) else None
    if not isinstance(params, Mapping) or not params:
        raise ValueError("the result has no Cox model (no cox.params)")
    given = units(result)
    rows = []
    for name, p in params.items():
        column, level = parse_term(name)
        rows.append(
            {
                "term": name,
                "label": term_label(name, given),
                "covariate": column,
                "level": level,
                **{
                    k: _float(p.get(k))
                    for k in ("coef", "se", "hr", "ci_lower", "ci_upper", "z")
                },
                "p_value": _float(p.get("p_value")),
            }
        )
    return pd.DataFrame(rows)


def km_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per group: patients, events, median with CI, RMST and survival at t.

    Medians come from the released curves (``km.<group>.median``); ``NaN`` means
    not reached. RMST and survival-at-time columns appear when the study asked for
    them (``tau``, ``at``).

    Raises
    ------
    ValueError
        The result has no ``km`` curves.
    """
    km = result.get("km")
    if not isinstance(km, Mapping) or not km:
        raise ValueError("the result has no Kaplan-Meier curves (no km)")
    rmst = result.get("rmst") if isinstance(result.get("rmst"), Mapping) else {}
    at = result.get("survival_at")
    at = at if isinstance(at, Mapping) else {}
    rows = []
    for group, curve in km.items():
        median = curve.get("median") or {}
        row: dict[str, Any] = {
            "group": group,
            "label": level_label(group),
            "n": curve.get("n"),
            "events": curve.get("events"),
            "median": _float(median.get("estimate")),
            "median_ci_lower": _float(median.get("ci_lower")),
            "median_ci_upper": _float(median.get("ci_upper")),
        }
        for prefix, part in (("rmst", rmst), ("survival_at", at)):
            if not part:
                continue
            est = (part.get("groups") or {}).get(group) or {}
            row[prefix] = _float(est.get("estimate"))
            row[f"{prefix}_ci_lower"] = _float(est.get("ci_lower"))
            row[f"{prefix}_ci_upper"] = _float(est.get("ci_upper"))
        rows.append(row)
    return pd.DataFrame(rows)


def summary_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """The study's main table: Cox coefficients, else the Kaplan-Meier groups.

    Parameters
    ----------
    result : Mapping[str, Any]
        A parsed ``result.json``.

    Returns
    -------
    pandas.DataFrame
        Cox: :func:`cox_frame` (one row per coefficient); Kaplan-Meier:
        :func:`km_frame` (one row per group).

    Raises
    ------
    ValueError
        The result has neither a Cox model nor Kaplan-Meier curves.
    """
    cox = result.get("cox")
    if isinstance(cox, Mapping) and cox.get("params"):
        return cox_frame(result)
    if isinstance(result.get("km"), Mapping) and result["km"]:
        return km_frame(result)
    raise ValueError(
        "the result has neither a Cox model nor Kaplan-Meier curves; "
        f"its sections are: {', '.join(map(str, result)) or 'none'}"
    )
