"""``report.html`` sections of an ``nma`` study (network meta-analysis).

The result of :func:`pht.orchestrator.nma.run_nma` holds the ``nma`` section (every
number of the network and its fit) next to the usual header. This module lays it out
with the report's toolkit (:mod:`pht.orchestrator.report`), which registers it:

- :func:`answer`: the best-ranked treatment by P-score and its effect against the
  reference, in one sentence and one table (every treatment's rank, P-score and
  effect against the reference in the model the study reads);
- :func:`network`: the network graph (:func:`network_figure`: treatments on a circle,
  node area by patients, edge width by number of studies, labelled), the treatments
  and the comparisons; the forest plot of every treatment against the reference,
  common and random effects (:func:`forest_figure`); the league tables; the ranking;
  heterogeneity and inconsistency (Q and its design-by-treatment decomposition, the
  Q of each design, tau-squared and I-squared, the split of direct and indirect
  evidence); the studies, the contrasts used, the notes and the exported files
  (``nma_contrasts.csv``, ``nma.R``).

Every figure and table is exported (``figures/*.png|svg``, ``tables/*.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from pht.orchestrator.figures import GREY, PALETTE, log_ticks, mpl_text
from pht.orchestrator.report import (
    MISSING,
    Renderer,
    escape,
    number,
    p_value,
    png,
    section,
    table,
)

__all__ = ["SECTIONS", "answer", "forest_figure", "network", "network_figure"]

MODEL_NAMES = {"common": "common effects", "random": "random effects"}
NOT_GIVEN = "not given"
"""A treatment's patients when no arm of it gives its size (trials without n1/n2)."""
NOT_GIVEN_SIZE = 120
"""The network graph's node area for a treatment whose patients are not given."""


def _finite(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _ratio(nma: Mapping[str, Any]) -> bool:
    return nma.get("scale") == "log"


def _est(row: Mapping[str, Any] | None, ratio: bool) -> tuple[Any, Any, Any]:
    """Estimate, lower and upper on the shown scale (ratios for log measures)."""
    if not row:
        return None, None, None
    if ratio:
        return row.get("ratio"), row.get("ratio_lower"), row.get("ratio_upper")
    return row.get("te"), row.get("lower"), row.get("upper")


def _effect_text(row: Mapping[str, Any] | None, ratio: bool) -> str:
    est, lo, hi = _est(row, ratio)
    if not all(_finite(v) for v in (est, lo, hi)):
        return MISSING
    return f"{est:.2f} ({lo:.2f} to {hi:.2f})"


def _pct(level: Any) -> str:
    return f"{100 * float(level):g}%" if _finite(level) else "95%"


def _forest_row(
    nma: Mapping[str, Any], treatment: str, model: str
) -> Mapping[str, Any] | None:
    for row in nma.get("forest") or []:
        if row.get("treatment") == treatment and row.get("model") == model:
            return row  # type: ignore[no-any-return]
    return None


# -- answer ---------------------------------------------------------------------------
def answer(result: Mapping[str, Any]) -> str:
    """The answer: the sentence and every treatment's rank and effect vs the reference."""
    nma = result["nma"]
    model = nma["model"]
    ratio = _ratio(nma)
    reference = nma["reference"]
    header = [
        "Rank",
        "Treatment",
        f"P-score ({MODEL_NAMES[model]})",
        f"{nma['measure']} vs {reference} ({_pct(nma['level'])} CI)",
        "p",
    ]
    rows, records = [], []
    for rank, score in enumerate(nma["pscores"], start=1):
        t = score["treatment"]
        row = _forest_row(nma, t, model)
        rows.append(
            [
                str(rank),
                escape(t),
                number(score[model], 3),
                "reference" if t == reference else escape(_effect_text(row, ratio)),
                MISSING if row is None else p_value(row.get("p")),
            ]
        )
        est, lo, hi = _est(row, ratio)
        records.append(
            {
                "rank": rank,
                "treatment": t,
                "pscore": score[model],
                "estimate": est,
                "lower": lo,
                "upper": hi,
                "p": None if row is None else row.get("p"),
            }
        )
    lead = f'<p class="lead">{escape(nma["answer"])}</p>'
    return lead + table(
        header, rows, "rl", "answer", name="answer", frame=pd.DataFrame(records)
    )


# -- figures --------------------------------------------------------------------------
def network_figure(nma: Mapping[str, Any]) -> Figure:
    """The network graph: treatments on a circle, node area ~ patients, edge ~ studies.

    Raises
    ------
    ValueError
        The section has no treatments.
    """
    nodes = list(nma.get("treatments") or [])
    if not nodes:
        raise ValueError("the nma section has no treatments")
    k = len(nodes)
    fig = Figure(figsize=(9.0, 6.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.axis("off")
    where = {}
    for i, node in enumerate(nodes):
        angle = math.pi / 2 - 2 * math.pi * i / k
        where[node["name"]] = (math.cos(angle), math.sin(angle))
    most = max((e.get("studies") or 0 for e in nma.get("edges") or []), default=1)
    for edge in nma.get("edges") or []:
        (x1, y1), (x2, y2) = where[edge["treat1"]], where[edge["treat2"]]
        width = 0.8 + 5.0 * (edge.get("studies") or 0) / max(most, 1)
        ax.plot([x1, x2], [y1, y2], color=PALETTE[0], linewidth=width, alpha=0.55)
        ax.text(
            (x1 + x2) / 2,
            (y1 + y2) / 2,
            str(edge.get("studies")),
            fontsize=8,
            ha="center",
            va="center",
            color=PALETTE[0],
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"},
        )
    largest = max((n.get("patients") or 0 for n in nodes), default=0)
    not_given = False
    for node in nodes:
        x, y = where[node["name"]]
        patients = node.get("patients")
        if _finite(patients):
            size = 80 + 1400 * (math.sqrt(patients / largest) if largest else 0)
            label = (
                mpl_text(node["name"])
                + f"\n{patients:,} patients"
                + ("*" if node.get("arms_without_n") else "")
            )
            color = PALETTE[1]
        else:  # no arm of the treatment gives its size: a fixed small node
            size, color, not_given = NOT_GIVEN_SIZE, GREY, True
            label = mpl_text(node["name"]) + "\npatients not given"
        ax.scatter([x], [y], s=size, color=color, zorder=3, edgecolors="white")
        ax.text(
            1.22 * x,
            1.22 * y,
            label,
            fontsize=9,
            ha="center" if abs(x) < 0.3 else ("left" if x > 0 else "right"),
            va="center",
        )
    ax.set_xlim(-2.6, 2.6)
    ax.set_ylim(-1.45, 1.45)
    notes = ["Node area: patients; edge width and number: studies"]
    if not_given:
        notes.append(
            "grey nodes: patients not given (trials without n1/n2), drawn at a "
            "fixed small size"
        )
    if any(n.get("arms_without_n") and _finite(n.get("patients")) for n in nodes):
        notes.append("*: known arm sizes only")
    ax.set_title("\n".join(notes), fontsize=9, color=GREY)
    return fig


def forest_figure(nma: Mapping[str, Any]) -> Figure:
    """Every treatment against the reference, common and random effects.

    Ratio measures are drawn on a log axis with a line at 1, differences on a
    linear axis with a line at 0.
    """
    ratio = _ratio(nma)
    reference = nma["reference"]
    treatments = [n["name"] for n in nma["treatments"] if n["name"] != reference]
    rows: list[tuple[str, str, Any, Any, Any]] = []
    for t in treatments:
        for model in ("common", "random"):
            est, lo, hi = _est(_forest_row(nma, t, model), ratio)
            rows.append((t, model, est, lo, hi))
    n = len(rows)
    fig = Figure(figsize=(9.0, 0.34 * n + 1.4), layout="constrained")
    ax, text = fig.subplots(1, 2, sharey=True, width_ratios=[3.0, 1.4])
    ax.spines[["top", "right"]].set_visible(False)
    null = 1.0 if ratio else 0.0
    values = [null]
    styles = {"common": (PALETTE[0], "s"), "random": (PALETTE[1], "D")}
    labels = []
    for i, (t, model, est, lo, hi) in enumerate(rows):
        y = n - 1 - i
        labels.append(f"{t} ({model})" if model == "common" else f"    ({model})")
        if all(_finite(v) for v in (est, lo, hi)):
            color, marker = styles[model]
            ax.plot([lo, hi], [y, y], color=color, linewidth=1.8)
            ax.plot([est], [y], marker=marker, markersize=6, color=color)
            values += [lo, hi]
            text.text(
                0.0, y, f"{est:.2f} ({lo:.2f} to {hi:.2f})", va="center", fontsize=9
            )
    ax.axvline(null, color=GREY, linewidth=1, linestyle="--")
    if ratio:
        ax.set_xscale("log")
        low, high = min(values) / 1.15, max(values) * 1.15
        ax.set_xlim(low, high)
        ax.xaxis.set_major_locator(FixedLocator(log_ticks(low, high)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        span = max(values) - min(values) or 1.0
        ax.set_xlim(min(values) - 0.08 * span, max(values) + 0.08 * span)
    ax.set_yticks(range(n), [mpl_text(label) for label in reversed(labels)])
    ax.tick_params(axis="y", left=False, labelsize=9)
    ax.set_ylim(-0.7, n + 0.3)
    scale = ", log scale" if ratio else ""
    ax.set_xlabel(
        f"{nma['measure_name'].capitalize()} vs {mpl_text(reference)} "
        f"({_pct(nma['level'])} CI{scale})"
    )
    ax.grid(alpha=0.3, axis="x", linewidth=0.6)
    text.set_xlim(0, 1)
    text.axis("off")
    text.text(
        0.0,
        n,
        f"{nma['measure']} ({_pct(nma['level'])} CI)",
        va="center",
        fontsize=9,
        fontweight="bold",
    )
    return fig


# -- sections -------------------------------------------------------------------------
def _network(nma: Mapping[str, Any]) -> str:
    figure = png(
        network_figure(nma),
        "Network graph of the treatments",
        "The network: one node per treatment, one edge per pair compared in a study.",
        name="nma_network",
    )
    nodes = table(
        ["Treatment", "Patients", "Studies"],
        [
            [escape(n["name"]), _patients(n), number(n.get("studies"))]
            for n in nma["treatments"]
        ],
        "l",
        name="nma_treatments",
    )
    edges = table(
        ["Treatment 1", "Treatment 2", "Studies", "Patients"],
        [
            [
                escape(e["treat1"]),
                escape(e["treat2"]),
                number(e.get("studies")),
                _patients(e),
            ]
            for e in nma["edges"]
        ],
        "ll",
        name="nma_comparisons",
    )
    studies = sum(1 for _ in nma.get("studies") or [])
    lead = (
        f"<p>{len(nma['treatments'])} treatments, {len(nma['edges'])} pairs compared "
        f"directly, {studies} studies ({_sources(nma)}), {len(nma['contrasts'])} "
        f"contrasts; measure: {escape(nma['measure_name'])} ({escape(nma['measure'])})."
        f"{_total(nma)}</p>"
    )
    return section("nma", "Network", lead + figure + nodes + edges)


def _patients(row: Mapping[str, Any]) -> str:
    """A patients cell: the known total, marked when some arms give no size."""
    n = row.get("patients")
    if not _finite(n):
        return NOT_GIVEN
    if row.get("arms_without_n"):
        return f"{number(n)} (known sizes only; {number(row['arms_without_n'])} arm(s) not given)"
    return number(n)


def _total(nma: Mapping[str, Any]) -> str:
    """The sentence on the network's patients: known arm sizes only, when some lack n."""
    info = nma.get("patients")
    if not isinstance(info, Mapping):
        return ""
    total, missing = info.get("total"), info.get("arms_without_n") or 0
    if not _finite(total):
        return " Patients: not given (no arm gives its size)."
    if missing:
        return (
            f" Patients: {number(total)} in arms with a known size; {number(missing)} "
            "arm(s) (contrast-level trials without n1/n2) do not give theirs, so the "
            "totals cover only the known counts."
        )
    return f" Patients: {number(total)}."


def _sources(nma: Mapping[str, Any]) -> str:
    studies = nma.get("studies") or []
    stations = sum(1 for s in studies if s.get("source") == "station")
    trials = sum(1 for s in studies if s.get("source") == "trial")
    return f"{stations} station(s), {trials} published trial(s)"


def _forest(nma: Mapping[str, Any]) -> str:
    ratio = _ratio(nma)
    figure = png(
        forest_figure(nma),
        f"Forest plot against {nma['reference']}",
        f"Every treatment against {nma['reference']}, common and random effects.",
        name="nma_forest",
    )
    rows, records = [], []
    for row in nma["forest"]:
        est, lo, hi = _est(row, ratio)
        rows.append(
            [
                escape(row["treatment"]),
                escape(MODEL_NAMES[row["model"]]),
                escape(_effect_text(row, ratio)),
                number(row.get("se"), 4),
                p_value(row.get("p")),
            ]
        )
        records.append(
            {
                "treatment": row["treatment"],
                "model": row["model"],
                "estimate": est,
                "lower": lo,
                "upper": hi,
                "te": row.get("te"),
                "se": row.get("se"),
                "p": row.get("p"),
            }
        )
    body = figure + table(
        [
            "Treatment",
            "Model",
            f"{nma['measure']} ({_pct(nma['level'])} CI)",
            "SE (TE)",
            "p",
        ],
        rows,
        "ll",
        name="nma_forest",
        frame=pd.DataFrame(records),
    )
    return section("nma-forest", f"Against {nma['reference']}", body)


def _league(nma: Mapping[str, Any]) -> str:
    names = [n["name"] for n in nma["treatments"]]
    parts = [
        f"<p>Cell in row A, column B: {escape(nma['measure'])} of A versus B "
        f"({_pct(nma['level'])} CI); the treatments are on the diagonal.</p>"
    ]
    for model in (
        nma["model"],
        *[m for m in ("common", "random") if m != nma["model"]],
    ):
        cells = nma["league"][model]
        parts.append(f"<h3>{escape(MODEL_NAMES[model].capitalize())}</h3>")
        parts.append(
            table(
                ["", *names],
                [
                    [escape(names[i]), *(escape(c) for c in row)]
                    for i, row in enumerate(cells)
                ],
                "l" * (len(names) + 1),
                "league",
                name=f"nma_league_{model}",
                frame=pd.DataFrame(cells, columns=names, index=names).reset_index(
                    names="treatment"
                ),
            )
        )
    return section("nma-league", "League table", "".join(parts))


def _ranking(nma: Mapping[str, Any]) -> str:
    rows = [
        [
            escape(s["treatment"]),
            number(s["common"], 3),
            number(s["random"], 3),
        ]
        for s in nma["pscores"]
    ]
    better = "lower" if nma["small_values"] == "good" else "higher"
    lead = (
        f"<p>P-scores (Rücker &amp; Schwarzer 2015): the mean certainty that a "
        f"treatment is better than another ({better} {escape(nma['measure'])} is "
        f"better); 1 is best. Ordered by the {escape(MODEL_NAMES[nma['model']])} "
        "model.</p>"
    )
    body = lead + table(
        ["Treatment", "P-score (common)", "P-score (random)"],
        rows,
        "l",
        name="nma_pscores",
    )
    return section("nma-ranking", "Ranking", body)


def _q_row(name: str, q: Mapping[str, Any]) -> list[str]:
    return [
        escape(name),
        number(q.get("q"), 3),
        number(q.get("df")),
        p_value(q.get("p")),
    ]


def _heterogeneity(nma: Mapping[str, Any]) -> str:
    het = nma["heterogeneity"]
    q_table = table(
        ["Source", "Q", "df", "p"],
        [
            _q_row("Total", het["q"]),
            _q_row("Within designs", het["within"]),
            _q_row("Between designs (inconsistency)", het["between"]),
        ],
        "l",
        name="nma_q",
    )
    i2 = het.get("i2")
    i2_text = (
        MISSING
        if not _finite(i2)
        else f"{100 * i2:.1f}%"
        + (
            f" ({100 * het['i2_lower']:.1f}% to {100 * het['i2_upper']:.1f}%)"
            if _finite(het.get("i2_lower")) and _finite(het.get("i2_upper"))
            else ""
        )
    )
    facts = (
        f"<p>tau² = {number(het.get('tau2'), 4)} (tau = {number(het.get('tau'), 4)}, "
        f"{escape(nma['tau_method'])}); I² = {escape(i2_text)}.</p>"
    )
    designs = table(
        ["Design", "Studies", "Q", "df", "p"],
        [
            [
                escape(" : ".join(d["design"])),
                number(d.get("studies")),
                number(d.get("q"), 3),
                number(d.get("df")),
                p_value(d.get("p")),
            ]
            for d in het["designs"]
        ],
        "l",
        name="nma_designs",
    )
    body = (
        "<h3>Heterogeneity and design-by-treatment decomposition</h3>"
        + q_table
        + facts
        + "<h3>Within each design</h3>"
        + designs
        + _split_table(nma)
    )
    return section("nma-heterogeneity", "Heterogeneity and inconsistency", body)


def _split_table(nma: Mapping[str, Any]) -> str:
    ratio = _ratio(nma)
    model = nma["model"]
    log = "_log" if ratio else ""
    rows, records = [], []
    for r in nma["split"][model]:
        diff = r.get("difference") or {}
        rows.append(
            [
                escape(f"{r['treat1']} vs {r['treat2']}"),
                number(r.get("studies")),
                number(r.get("prop_direct"), 2),
                escape(_effect_text(r.get("network"), ratio)),
                escape(_effect_text(r.get("direct"), ratio)),
                escape(_effect_text(r.get("indirect"), ratio)),
                number(diff.get("te"), 3) if diff else MISSING,
                p_value(diff.get("p")) if diff else MISSING,
            ]
        )
        record: dict[str, Any] = {
            "model": model,
            "treat1": r["treat1"],
            "treat2": r["treat2"],
            "studies": r.get("studies"),
            "prop_direct": r.get("prop_direct"),
        }
        for part in ("network", "direct", "indirect"):
            est, lo, hi = _est(r.get(part), ratio)
            record.update({f"{part}": est, f"{part}_lower": lo, f"{part}_upper": hi})
        record.update(
            {
                f"difference{log}": diff.get("te"),
                f"difference{log}_se": diff.get("se"),
                "difference_p": diff.get("p"),
            }
        )
        records.append(record)
    scale = (
        " (log scale: direct minus indirect log " + nma["measure"] + ")"
        if ratio
        else ""
    )
    return (
        f"<h3>Direct and indirect evidence ({escape(MODEL_NAMES[model])})</h3>"
        "<p>SIDE split by back-calculation: per pair the direct estimate (its "
        "studies), the indirect one (the rest of the network) and their difference"
        f"{scale} with its z-test.</p>"
        + table(
            [
                "Comparison",
                "Studies",
                "Direct share",
                "Network",
                "Direct",
                "Indirect",
                f"Difference{' (log scale)' if ratio else ''}",
                "p",
            ],
            rows,
            "l",
            name="nma_split",
            frame=pd.DataFrame(records),
        )
    )


def _inputs(nma: Mapping[str, Any]) -> str:
    studies = table(
        ["Study", "Source", "Arms (n)"],
        [
            [
                escape(s["label"]),
                escape(s["source"]),
                escape(
                    "; ".join(
                        f"{a['treatment']} ({a['n']:,})"
                        if isinstance(a.get("n"), int)
                        else f"{a['treatment']} ({NOT_GIVEN})"
                        for a in s["arms"]
                    )
                ),
            ]
            for s in nma["studies"]
        ],
        "lll",
        name="nma_studies",
    )
    ratio = _ratio(nma)
    measure = str(nma["measure"])
    header = ["Study", "Treatment 1", "Treatment 2", "TE", "seTE"]
    if ratio:  # the ratio itself next to its log
        header.append(f"{measure} (exp(TE))")
    header += ["n1", "n2", "Source"]
    rows, records = [], []
    for c in nma["contrasts"]:
        cells = [
            escape(c["studlab"]),
            escape(c["treat1"]),
            escape(c["treat2"]),
            number(c["TE"], 4),
            number(c["seTE"], 4),
        ]
        record = {k: c.get(k) for k in ("studlab", "treat1", "treat2", "TE", "seTE")}
        if ratio:
            te = c["TE"]
            value = math.exp(te) if _finite(te) and abs(te) < 700 else None
            cells.append(number(value, 3))
            record[measure] = value
        cells += [
            NOT_GIVEN if c.get("n1") is None else number(c.get("n1")),
            NOT_GIVEN if c.get("n2") is None else number(c.get("n2")),
            escape(c["source"]),
        ]
        record.update(n1=c.get("n1"), n2=c.get("n2"), source=c.get("source"))
        rows.append(cells)
        records.append(record)
    contrasts = table(
        header,
        rows,
        "lll",
        name="nma_contrasts_used",
        frame=pd.DataFrame(records),
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in nma.get("notes") or [])
    exports = nma.get("exports") or {}
    files = (
        f'<p>For R: <a href="{escape(exports.get("contrasts"))}">'
        f"{escape(exports.get('contrasts'))}</a> (netmeta-ready contrasts) and "
        f'<a href="{escape(exports.get("r_script"))}">{escape(exports.get("r_script"))}'
        "</a> (the same analysis with <code>netmeta</code>) are next to "
        "result.json.</p>"
        if exports
        else ""
    )
    body = (
        files
        + "<h3>Studies</h3>"
        + studies
        + f"<h3>Contrasts ({escape(nma['scale'])} scale)</h3>"
        + contrasts
        + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
    )
    return section("nma-inputs", "Studies and contrasts", body)


def network(result: Mapping[str, Any]) -> str:
    """Every section of the ``nma`` result, in reading order."""
    nma = result["nma"]
    return "".join(
        part(nma)
        for part in (_network, _forest, _league, _ranking, _heterogeneity, _inputs)
    )


SECTIONS: tuple[tuple[str, Renderer], ...] = (("nma", network),)
"""Result key to renderer, for :func:`pht.orchestrator.report._sections`."""
