"""``utilisation``: patients and spend per drug, and a re-assessment priority list.

Each station releases, per year of the study's period column, its table of patients,
administrations, mg and cost per drug x regimen (x care site) with every margin, after
its own threshold, dominance, secondary-suppression and rounding rules
(:mod:`pht.algorithms.utilisation`); the station recomputes the table from its own
extract and releases its own (:attr:`~pht.trains.TrainPlugin.recompute`). The
orchestrator adds the tables exactly and ranks the drugs on the study's weights.

Result keys: ``utilisation`` (tables per drug, regimen and, with ``by``, care site,
per year of the study's range) and ``priority`` (the ranked drugs with every score
component).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from pht.algorithms.utilisation import (
    COMPONENTS,
    MEASURE_PARAMETERS,
    MEASURES,
    Listed,
    Pooled,
    PooledEntry,
    Rules,
    Weights,
    audit_releases,
    listed_entries,
    pool_utilisation,
    priority_list,
    station_output,
)
from pht.errors import ConfigError, DataError, DisclosureError
from pht.orchestrator.report import (
    colors,
    escape,
    new_axes,
    number,
    png,
    section,
    table,
)
from pht.trains import register
from pht.trains.base import Contract, Sections, StationView, TrainPlugin

WEIGHT_KEYS = tuple(f"weight_{c}" for c in COMPONENTS)
SUPPRESSED = "suppressed"


# -- study parameters ---------------------------------------------------------------
def check(parameters: Mapping[str, Any]) -> Sequence[str]:
    """Problems with the study's parameters together, as ``"key: fix"``."""
    problems = []
    weights = [float(parameters.get(key, 1)) for key in WEIGHT_KEYS]
    for key, weight in zip(WEIGHT_KEYS, weights, strict=True):
        if not math.isfinite(weight):
            problems.append(
                f"{key}: {weight:g} is not a finite number; give a number >= 0, e.g. 1"
            )
    if problems:
        return problems
    if sum(weights) <= 0:
        problems.append(
            f"{WEIGHT_KEYS[0]}: the weights sum to {sum(weights):g}; give at least "
            f"one of {', '.join(WEIGHT_KEYS)} a positive value"
        )
    first, last = parameters.get("year_from"), parameters.get("year_to")
    if first is not None and last is not None and first > last:
        problems.append(
            f"year_from: {first} is after year_to {last}; give year_from <= year_to"
        )
    used = [parameters.get(p) for p in ("drug", "regimen", "indication")]
    given = [u for u in used if u is not None]
    if len(set(given)) < len(given):
        problems.append(
            "indication: the drug, regimen and indication columns must differ; name "
            "three different columns (or leave indication out)"
        )
    if parameters.get("by") is not None and parameters["by"] in used:
        problems.append(
            f"by: '{parameters['by']}' is already the drug, regimen or indication "
            "column; name the care-site column, e.g. hospital"
        )
    return problems


def _weights(parameters: Mapping[str, Any]) -> Weights:
    return Weights(**{c: float(parameters.get(f"weight_{c}", 1)) for c in COMPONENTS})


# -- station side ---------------------------------------------------------------------
def recompute(view: StationView) -> dict[str, Any]:
    """The station's own table from its extract (the train's must equal it)."""
    return station_output(
        view.parameters,
        view.has_column,
        view.column,
        Rules.of(view.min_count, view.rules),
    )


HISTORY = "utilisation"
"""The name of the station's release history of this train (per data version)."""


def _measure_columns(view: StationView) -> list[str]:
    parameters = view.parameters
    return [
        str(parameters[p])
        for p in MEASURE_PARAMETERS.values()
        if parameters.get(p) is not None and view.has_column(str(parameters[p]))
    ]


def finalize(view: StationView, output: dict[str, Any]) -> dict[str, Any]:
    """The station's table checked against its earlier releases of this data version.

    Under the history's lock: the candidate's listed entries together with every
    earlier release (:func:`~pht.algorithms.utilisation.audit_releases`); entries
    it must hide more are released as null; then the release is recorded and the
    table returned. A release that adds nothing new (every entry listed before,
    every released one released before) is returned as it is. Refuses
    (DisclosureError) when no further suppression protects the earlier releases.
    """
    parameters = view.parameters
    candidate = listed_entries(output, parameters)
    measures = _measure_columns(view)
    history = view.history(HISTORY)
    with history.locked():
        records = history.records()
        earlier = [Listed.of(r) for r in records]
        listed = {e.key for e in earlier}
        released = {e.key for e in earlier if e.released}
        if all(
            e.key in listed and (e.key in released or not e.released) for e in candidate
        ):
            return output
        used = {c for e in [*earlier, *candidate] for c, _ in e.where}
        used |= {e.period for e in [*earlier, *candidate]}
        named = set(measures)
        for r in records:
            named.update(str(m) for m in r.get("measures") or ())
        for column in sorted(used | named):
            if not view.has_column(column):
                raise DisclosureError(
                    f"column '{column}' of an earlier release is not in the extract"
                )
        hide = set(
            audit_releases(
                {c: view.column(c) for c in sorted(used)},
                {c: view.column(c) for c in sorted(named)},
                earlier,
                candidate,
                Rules.of(view.min_count, view.rules),
            )
        )
        rows = []
        for i, row in enumerate(output["rows"]):
            if i in hide:
                row = {
                    k: (None if k == "patients" or k in MEASURES else v)
                    for k, v in row.items()
                }
            rows.append(row)
        final = {**output, "rows": rows}
        history.add([e.record(measures) for e in listed_entries(final, parameters)])
    return final


# -- pooling ----------------------------------------------------------------------------
def _span(pooled: Pooled, parameters: Mapping[str, Any]) -> list[int]:
    released = pooled.years()
    if not released:
        raise DataError(
            "no station released a utilisation entry (every station's population "
            "was empty or suppressed); check 'dataset' and the column parameters"
        )
    first = int(parameters.get("year_from") or released[0])
    last = int(parameters.get("year_to") or released[-1])
    span = list(range(max(first, released[0]), min(last, released[-1]) + 1))
    if not span:
        raise DataError(
            f"parameters.year_from..year_to ({first}..{last}): no station released "
            f"data for these years (released: {released[0]}..{released[-1]}); "
            "choose years within that span"
        )
    return span


def _values(entry: PooledEntry | None) -> dict[str, Any]:
    """An entry's values; an absent entry is zero patients (stations list all)."""
    if entry is None:
        return {"patients": 0, "suppressed_at": 0}
    out: dict[str, Any] = {
        "patients": entry.patients,
        **dict(entry.sums),
        "suppressed_at": entry.suppressed,
    }
    if entry.partial:
        # a station without the column holds patients here: a sum over the others
        out["partial"] = sorted(entry.partial)
    return out


def _add(parts: Sequence[PooledEntry | None], name: str) -> float | None:
    """Exact sum of a measure over entries (None when any part is not released)."""
    total = 0
    for part in parts:
        if part is None:
            continue
        value = part.sums.get(name)
        if value is None:
            return None
        total += round(value * 100)
    return total / 100


def _tables(
    pooled: Pooled, span: Sequence[int], by: str | None
) -> dict[str, list[dict[str, Any]]]:
    drugs = pooled.drugs()
    regimens = sorted({k[3] for k in pooled.entries if k[3] is not None})
    per_drug, per_regimen, overall, sites = [], [], [], []
    for year in span:
        overall.append({"year": year, **_values(pooled.get(year))})
        for drug, indication in drugs:
            parts = [pooled.get(year, drug, indication, r) for r in regimens]
            row = {
                "drug": drug,
                "indication": indication,
                "year": year,
                **_values(pooled.get(year, drug, indication)),
            }
            # administrations and mg are released per regimen only: add them here
            for name in ("administrations", "mg"):
                if any(p is not None and name in p.sums for p in parts):
                    row[name] = _add(parts, name)
                    if any(p is not None and name in p.partial for p in parts):
                        row["partial"] = sorted({*row.get("partial", ()), name})
            per_drug.append(row)
            for regimen, part in zip(regimens, parts, strict=True):
                if part is not None:
                    per_regimen.append(
                        {
                            "drug": drug,
                            "indication": indication,
                            "regimen": regimen,
                            "year": year,
                            **_values(part),
                        }
                    )
    if by is not None:
        for key, entry in pooled.entries.items():
            at, medicine, indicated, kind, station, site = key
            if site is not None and at in span:
                sites.append(
                    {
                        "station": station,
                        "site": site,
                        "drug": medicine,
                        "indication": indicated,
                        "regimen": kind,
                        "year": at,
                        **_values(entry),
                    }
                )
    return {
        "drugs": per_drug,
        "regimens": per_regimen,
        "all_drugs": overall,
        "sites": sites,
    }


def pool(
    released: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, Any]
) -> Sections:
    """Pool the stations' tables exactly; rank the drugs for re-assessment."""
    pooled = pool_utilisation(released)
    by = parameters.get("by")
    if by is not None and len(pooled.missing.get("by", ())) == len(pooled.stations):
        raise ConfigError(
            f"parameters.by: no station holds a column '{by}'; name the care-site "
            "column the stations hold (e.g. hospital) or leave 'by' out"
        )
    span = _span(pooled, parameters)
    ranking = priority_list(pooled, span, _weights(parameters))
    return {
        "utilisation": {
            "years": span,
            "period": parameters.get("period"),
            "by": by,
            "measures": list(MEASURES),
            "missing": {k: list(v) for k, v in pooled.missing.items()},
            "stations": list(pooled.stations),
            **_tables(pooled, span, by),
            "note": (
                "Each station released, per year, every cell and margin of its "
                "drug x regimen" + (" x site" if by else "") + " table after its "
                "threshold, dominance ((1, p) on every sum), hypercube secondary "
                "suppression and rounding rules; sums here are exact over the "
                "stations, and an entry suppressed at any station is shown as "
                "suppressed (never imputed). A sum marked partial leaves out the "
                "patients of a station without that column. A row counts one "
                "treatment start."
            ),
        },
        "priority": {
            "years": list(ranking.years),
            "weights": dict(ranking.weights),
            "excluded": list(ranking.excluded),
            "definitions": dict(ranking.definitions),
            "rows": [asdict(row) for row in ranking.rows],
        },
    }


# -- report -------------------------------------------------------------------------
def _cell(row: Mapping[str, Any], name: str, digits: int | None = None) -> str:
    if name not in row:
        return number(None)
    value = row[name]
    if value is None and row.get("suppressed_at"):
        return f'<span class="muted">{SUPPRESSED}</span>'
    if value is not None and name in (row.get("partial") or ()):
        return number(value, digits) + ' <span class="muted">(partial)</span>'
    return number(value, digits)


def _drug_text(row: Mapping[str, Any]) -> str:
    label = str(row.get("drug") or "all drugs")
    indication = row.get("indication")
    return label if not indication else f"{label} ({indication})"


def _drug(row: Mapping[str, Any]) -> str:
    return escape(_drug_text(row))


def _by_drug(row: Mapping[str, Any]) -> tuple[str, str, int]:
    return _drug_text(row), str(row.get("regimen") or ""), int(row["year"])


def _spend_chart(data: Mapping[str, Any]) -> str:
    """Grouped bars: spend per drug per year (absent bar: suppressed or no cost)."""
    rows = [r for r in data["drugs"] if isinstance(r.get("cost"), int | float)]
    if not rows:
        return ""
    years = list(data["years"])
    drugs = list(dict.fromkeys(_drug_text(r) for r in data["drugs"]))
    palette = colors(drugs)
    fig, ax = new_axes(7.5, 3.6)
    width = 0.8 / len(drugs)
    for i, drug in enumerate(drugs):
        spend = {r["year"]: r["cost"] / 1e6 for r in rows if _drug_text(r) == drug}
        shown = [j for j, year in enumerate(years) if year in spend]
        ax.bar(
            [j + (i - (len(drugs) - 1) / 2) * width for j in shown],
            [spend[years[j]] for j in shown],
            width=width,
            color=palette[drug],
            label=drug.replace("$", r"\$"),
        )
    ax.set_xticks(range(len(years)), [str(y) for y in years])
    ax.set_ylabel("spend (EUR million)")
    ax.legend(fontsize=8, frameon=False)
    return png(
        fig,
        "bar chart of spend per drug per year",
        "Spend per drug per year, pooled over the stations (no bar: suppressed at "
        "a station, or no cost released).",
    )


def _utilisation(result: Mapping[str, Any]) -> str:
    data = result["utilisation"]
    measures = ("patients", "cost", "administrations", "mg")
    titles = ("patients", "spend (EUR)", "administrations", "mg")

    def rows(items: Sequence[Mapping[str, Any]], *keys: str) -> list[list[str]]:
        out = []
        for r in items:
            labels = [
                _drug(r) if k == "drug" else escape(r[k] if r[k] is not None else "all")
                for k in keys
            ]
            values = [_cell(r, m, 2 if m == "cost" else None) for m in measures]
            out.append([*labels, *values])
        return out

    parts = [f'<p class="note">{escape(data["note"])}</p>']
    missing = data.get("missing") or {}
    if missing:
        said = "; ".join(f"{k}: {', '.join(v)}" for k, v in missing.items())
        parts.append(
            f'<p class="note">Columns a station lacks (it says so): {escape(said)}.</p>'
        )
    parts.append(_spend_chart(data))
    parts.append("<h3>Per drug and year</h3>")
    parts.append(
        table(
            ["drug", "year", *titles],
            rows(
                [*sorted(data["drugs"], key=_by_drug), *data["all_drugs"]],
                "drug",
                "year",
            ),
            "ll",
        )
    )
    parts.append("<h3>Per drug, regimen and year</h3>")
    parts.append(
        table(
            ["drug", "regimen", "year", *titles],
            rows(sorted(data["regimens"], key=_by_drug), "drug", "regimen", "year"),
            "lll",
        )
    )
    if data.get("sites"):
        parts.append(
            "<h3>Per care site (by name, where the station's policy allows)</h3>"
        )
        parts.append(
            table(
                ["drug", "station", "site", "regimen", "year", *titles],
                rows(
                    sorted(
                        data["sites"],
                        key=lambda r: (r["station"], r["site"], *_by_drug(r)),
                    ),
                    "drug",
                    "station",
                    "site",
                    "regimen",
                    "year",
                ),
                "lllll",
            )
        )
    return section("utilisation", "Utilisation and spend", "".join(parts))


def _priority(result: Mapping[str, Any]) -> str:
    data = result["priority"]
    weights = data["weights"]
    header = [
        "rank",
        "drug",
        "patients / year",
        "annual spend (EUR)",
        "spend / patient (EUR)",
        "growth / year",
        *(f"{c.replace('_', ' ')} (w={number(weights[c])})" for c in COMPONENTS),
        "score",
        "note",
    ]
    body = []
    for row in data["rows"]:
        comps = row["components"]
        growth = comps["growth"]["value"]
        body.append(
            [
                number(row["rank"]),
                _drug(row),
                number(row["patients_per_year"], 1),
                number(row["annual_spend"], 0),
                number(comps["relative_budget_impact"]["value"], 0),
                number(None if growth is None else 100 * growth, 1)
                + ("%" if growth is not None else ""),
                *(
                    f"{number(comps[c]['normalised'], 3)} &rarr; "
                    f"{number(comps[c]['contribution'], 3)}"
                    for c in COMPONENTS
                ),
                number(row["score"], 3),
                escape(
                    "; ".join(
                        n
                        for n in (
                            row["note"],
                            "spend from the stations with cost only"
                            if row.get("partial")
                            else "",
                        )
                        if n
                    )
                ),
            ]
        )
    definitions = "".join(
        f"<li><b>{escape(k.replace('_', ' '))}</b>: {escape(v)}</li>"
        for k, v in data["definitions"].items()
    )
    if data.get("excluded"):
        definitions += (
            "<li><b>left out of the score</b>: "
            + escape(", ".join(c.replace("_", " ") for c in data["excluded"]))
            + " (a station without a cost column holds patients of a drug: its "
            "spend is over the other stations only)</li>"
        )
    years = data["years"]
    intro = (
        f'<p class="note">Years {escape(years[0])}&ndash;{escape(years[-1])}. Per '
        "component: normalised value &rarr; contribution to the score.</p>"
        if years
        else ""
    )
    return section(
        "priority",
        "Re-assessment priority list",
        intro + table(header, body, "ll") + f"<ul>{definitions}</ul>",
    )


PLUGIN = register(
    TrainPlugin(
        name="utilisation",
        pool=pool,
        sections=(("utilisation", _utilisation), ("priority", _priority)),
        recompute=recompute,
        finalize=finalize,
        # what recompute assumes of the manifest: the station refuses any other
        contract=Contract(
            columns={
                "drug": ("column", "categorical", "group", False),
                "regimen": ("column", "categorical", "group", False),
                "period": ("column", "date", "period", False),
                "indication": ("column", "categorical", "group", False),
                "by": ("column", "categorical", "site", True),
                "cost": ("column", "numeric", "measure", True),
                "administrations": ("column", "numeric", "measure", True),
                "mg": ("column", "numeric", "measure", True),
            },
            output_class="aggregate",
        ),
        check=check,
    )
)
