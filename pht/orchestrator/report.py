"""``report.html``: a self-contained page for a study's ``result.json``.

The page opens with the study's answer (:func:`_answer`: one sentence and one table;
for a Cox study the adjusted hazard ratio of the variable of interest, for a
Kaplan-Meier study the medians and the log-rank test the study reads), then one
section per result key. Each train plugin maps its result keys to renderers
(:attr:`pht.trains.TrainPlugin.sections`); several keys may share one renderer
(``km`` and ``at_risk_table``, ``logrank`` and ``logrank_stratified``), which then
runs once. A key without a renderer is shown as JSON, so results of new trains stay
readable. Provenance comes last, as tables.

Plots are embedded as base64 PNG; the page loads no external resources and prints
cleanly (``@media print``). Every figure and table is also written next to the page
(:mod:`pht.orchestrator.exports`): ``figures/<name>.png`` and ``.svg``,
``tables/<name>.csv``. The figures themselves live in :mod:`pht.orchestrator.figures`,
the readable labels and data frames in :mod:`pht.orchestrator.tables`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pht.orchestrator import exports, figures
from pht.orchestrator.figures import (
    MIN_AT_RISK,
    forest_figure,
    km_figure,
    shown_points,
    station_forest_figure,
)
from pht.orchestrator.tables import (
    cox_frame,
    level_label,
    parse_term,
    summary_frame,
    term_label,
    units,
    variable_of_interest,
)

__all__ = [
    "MIN_AT_RISK",
    "forest_figure",
    "km_figure",
    "render_report",
    "station_forest_figure",
    "summary_frame",
]

Renderer = Callable[[Mapping[str, Any]], str]

DPI = 192  # PNG pixels per inch; shown at 96 CSS px per inch, so sharp on HiDPI
MISSING = "\u2014"
NOT_REACHED = "not reached"
HEADER_KEYS = frozenset(
    {"train", "train_digest", "question", "purpose", "dataset", "parameters"}
    | {"created", "pht_version", "schema_version", "partial"}
)
LONG_JSON_LINES = 40
DEFAULT_ALPHA = 0.05

CSS = """
:root { --ink: #1f2633; --muted: #5f6b7a; --line: #dde2e8; --soft: #f4f6f9;
  --accent: #0b5cad; --ok: #1a7f37; --bad: #b42318; --warnbg: #fff4e5; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f5; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
  sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 20px 48px; }
header.top, section, .banner { background: #fff; border: 1px solid var(--line);
  border-radius: 10px; padding: 22px 26px; margin-bottom: 18px; min-width: 0; }
section.answer { border-left: 5px solid var(--accent); }
.banner { background: var(--warnbg); border-color: #f0b46b; }
.banner strong { color: var(--bad); }
.banner ul { margin: 6px 0 0; padding-left: 20px; }
.eyebrow { margin: 0; color: var(--accent); font-size: 12px; font-weight: 600;
  letter-spacing: .08em; text-transform: uppercase; }
h1 { font-size: 22px; line-height: 1.35; margin: 6px 0 16px; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
p { margin: 6px 0; }
p.lead { font-size: 17px; line-height: 1.5; margin: 0 0 10px; }
.note { color: var(--muted); font-size: 13px; }
.summary { margin: 14px 0 0; color: var(--muted); }
dl.meta { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
  gap: 10px 24px; margin: 0; }
dl.meta div { min-width: 0; }
dl.meta .wide { grid-column: 1 / -1; }
dt { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
dd { margin: 2px 0 0; overflow-wrap: anywhere; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 13px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; margin: 6px 0; overflow: auto; max-height: 480px;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.chip { display: inline-block; background: var(--soft); border: 1px solid var(--line);
  border-radius: 999px; padding: 0 9px; margin: 0 6px 4px 0; font-size: 13px;
  max-width: 100%; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px;
  font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: right;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; font-size: 13px; white-space: nowrap; }
th.l, td.l { text-align: left; }
tbody tr:hover { background: #fafbfd; }
tr.ref td { color: var(--muted); }
table.kv, table.prov { width: 100%; table-layout: auto; }
table.kv td, table.prov td { overflow-wrap: anywhere; word-break: break-word; }
table.kv > tbody > tr > td:first-child { color: var(--muted); white-space: nowrap;
  width: 1%; }
.yes { color: var(--ok); font-weight: 600; }
.no { color: var(--bad); font-weight: 600; }
.warn { color: var(--bad); }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 7px; vertical-align: baseline; }
.sub { display: block; color: var(--muted); font-size: 12px; }
figure { margin: 8px 0 4px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.dl { font-size: 12px; margin-left: 6px; white-space: nowrap; }
.dl a, footer a { color: var(--accent); }
details summary { cursor: pointer; color: var(--accent); }
footer { color: var(--muted); font-size: 12px; text-align: center; }
@media print {
  @page { margin: 14mm; }
  body { background: #fff; font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  header.top, section, .banner { border: 0; border-radius: 0; padding: 0;
    margin: 0 0 14pt; }
  section.answer { border-left: 3pt solid var(--accent); padding-left: 10pt; }
  .banner { border: 1pt solid #f0b46b; padding: 6pt 10pt; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  figure, table, tr, .banner, section.answer, dl.meta div {
    break-inside: avoid; page-break-inside: avoid; }
  .table-wrap { overflow: visible; }
  table { font-size: 9pt; }
  th, td { padding: 2pt 6pt; }
  pre { max-height: none; overflow: visible; }
  tbody tr:hover { background: none; }
  details.raw, .dl, footer .files { display: none; }
  figure img { max-width: 100%; }
  a { color: inherit; text-decoration: none; }
}
"""


# -- formatting -------------------------------------------------------------------
def _e(value: Any) -> str:
    """Escape any value for HTML text or attributes (``None`` becomes a dash)."""
    return MISSING if value is None else html.escape(str(value), quote=True)


def _num(value: Any, digits: int | None = None) -> str:
    """Format a number for a table cell (escaped; ``None`` becomes a dash).

    Parameters
    ----------
    value : Any
        An int, float, bool, ``None`` or anything else (escaped as text).
    digits : int, optional
        Fixed number of decimals; by default integers are shown whole and other
        floats with four significant digits.

    Returns
    -------
    str
        The number with thousands separators and a true minus sign.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return _e(value)
    return _real(float(value) if digits is not None else value, digits)


def _real(value: float, digits: int | None) -> str:
    """Format an int or float (see :func:`_num`)."""
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    if isinstance(value, float) and math.isinf(value):
        return "\u221e" if value > 0 else "\u2212\u221e"
    if digits is not None:
        text = f"{value:,.{digits}f}"
    elif isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        text = f"{int(value):,}"
    elif abs(value) >= 1000:
        text = f"{value:,.1f}"
    elif abs(value) < 1e-4:
        text = f"{value:.2e}"
    else:
        text = f"{value:.4g}"
    return text.replace("-", "\u2212", 1) if text.startswith("-") else text


def _is_num(value: Any) -> TypeGuard[int | float]:
    """Tell whether a value is a finite number (not a bool)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _p(value: Any) -> str:
    """Format a p-value for a table cell: ``0.0014`` or ``<0.0001`` (escaped)."""
    if not _is_num(value):
        return MISSING
    return "&lt;0.0001" if value < 1e-4 else f"{value:.4f}"


def _p_is(value: Any) -> str:
    """A p-value in a sentence: ``p = 0.0014``, ``p &lt; 0.0001`` (escaped)."""
    if not _is_num(value):
        return "p not released"
    return "p &lt; 0.0001" if value < 1e-4 else f"p = {value:.4f}"


def _hr(value: Any, narrow: bool = False) -> str:
    """A hazard ratio in text: two decimals, three when its CI is narrow."""
    if not _is_num(value):
        return MISSING
    return f"{value:.3f}" if narrow else f"{value:.2f}"


def _ci(
    lower: Any, upper: Any, missing: str = MISSING, digits: int | None = None
) -> str:
    """Format a confidence interval; a ``None`` bound is shown as ``missing``."""
    low = missing if lower is None else _num(lower, digits)
    high = missing if upper is None else _num(upper, digits)
    return f"{low} to {high}"


def _json(value: Any) -> str:
    """Pretty JSON of any value (not escaped)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _and(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _short(digest: Any, keep: int = 12) -> str:
    """A long digest or id shortened for a table; the full value in its title."""
    if digest is None:
        return MISSING
    text = str(digest)
    algo, _, hexpart = text.rpartition(":")
    if len(hexpart) <= keep + 4:
        return f"<code>{_e(text)}</code>"
    shown = (f"{algo}:" if algo else "") + hexpart[:keep] + "\u2026"
    return f'<code title="{_e(text)}">{_e(shown)}</code>'


_TAG = re.compile(r"<[^>]+>")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[-+]?\d+)?$")


def _plain(cell: str) -> Any:
    """The text of an HTML cell for CSV; formatted numbers become numbers."""
    text = html.unescape(_TAG.sub(" ", cell)).strip()
    text = re.sub(r"\s+", " ", text)
    if text == MISSING:
        return None
    candidate = text.replace(",", "").replace("\u2212", "-")
    if _NUMBER.match(candidate):
        return float(candidate) if any(c in candidate for c in ".e") else int(candidate)
    return text


# -- HTML building blocks ---------------------------------------------------------
def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    align: str = "l",
    cls: str = "",
    name: str | None = None,
    frame: pd.DataFrame | None = None,
    row_classes: Sequence[str] | None = None,
) -> str:
    """Build an HTML table of already escaped cells (and export it as CSV).

    Parameters
    ----------
    header : Sequence[str]
        Column titles (escaped here).
    rows : Iterable[Sequence[str]]
        Cells as HTML (escaped by the caller).
    align : str
        One letter per column, ``l`` for left-aligned text and ``r`` for numbers;
        columns beyond its length are right-aligned.
    cls : str
        CSS class of the table.
    name : str, optional
        File stem of its CSV export (``tables/<name>.csv``); by default the key
        of the section being rendered.
    frame : pandas.DataFrame, optional
        The table's data at full precision for the CSV; by default the cells'
        text, with formatted numbers turned back into numbers.
    row_classes : Sequence[str], optional
        CSS class per row (``ref`` for a reference row).
    """
    rows = [list(row) for row in rows]

    def cell(tag: str, i: int, content: str) -> str:
        cls = ' class="l"' if align[i : i + 1] == "l" else ""
        return f"<{tag}{cls}>{content}</{tag}>"

    def tr(i: int) -> str:
        extra = row_classes[i] if row_classes and i < len(row_classes) else ""
        return f' class="{extra}"' if extra else ""

    head = "".join(cell("th", i, _e(h)) for i, h in enumerate(header))
    body = "".join(
        f"<tr{tr(r)}>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
        for r, row in enumerate(rows)
    )
    attr = f' class="{cls}"' if cls else ""
    link = ""
    collector = exports.current()
    if collector is not None and rows:
        if frame is None:
            names = list(header) + [f"column_{i}" for i in range(len(header), 99)]
            frame = pd.DataFrame(
                [[_plain(c) for c in row] for row in rows],
                columns=names[: max(len(r) for r in rows)],
            )
        stem = collector.add_table(name, frame)
        href = f"{exports.TABLES}/{stem}.csv"
        link = f'<span class="dl"><a href="{_e(href)}">CSV</a></span>'
    return (
        f'<div class="table-wrap"><table{attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>{link}</div>"
    )


def _section(key: str, title: str, body: str, cls: str = "") -> str:
    """Wrap a report section, with an anchor named after its result key."""
    attr = f' class="{_e(cls)}"' if cls else ""
    return f'<section id="{_e(key)}"{attr}><h2>{_e(title)}</h2>{body}</section>'


def _pre(value: Any) -> str:
    """JSON in a ``<pre>``; long listings are folded into a ``<details>``."""
    text = _json(value)
    lines = text.count("\n") + 1
    pre = f"<pre>{_e(text)}</pre>"
    if lines <= LONG_JSON_LINES:
        return pre
    return f"<details><summary>show {lines:,} lines of JSON</summary>{pre}</details>"


def _swatch(color: str) -> str:
    """Draw a small coloured square matching a group's plot colour."""
    return f'<span class="sw" style="background:{_e(color)}"></span>'


def _group_cell(label: Any, colors: Mapping[str, str]) -> str:
    """Show a group label readably, with its plot colour when it has one."""
    color = colors.get(str(label))
    return (_swatch(color) if color else "") + _e(level_label(label))


def _png(fig: Figure, alt: str, caption: str = "", name: str | None = None) -> str:
    """Embed a figure as PNG in a ``<figure>``, shown at 96 CSS px per inch.

    While a report is rendered, the figure is also kept for ``figures/<name>.png``
    and ``.svg`` and the caption links to both.
    """
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    png = buffer.getvalue()
    data = base64.b64encode(png).decode("ascii")
    width, height = (round(v * 96) for v in fig.get_size_inches())
    links = ""
    collector = exports.current()
    if collector is not None:
        stem = collector.add_figure(name, png, fig)
        files = (f"{exports.FIGURES}/{stem}.{ext}" for ext in ("png", "svg"))
        links = (
            '<span class="dl">'
            + " &middot; ".join(
                f'<a href="{_e(f)}">{f.rsplit(".", 1)[1].upper()}</a>' for f in files
            )
            + "</span>"
        )
    cap = f"<figcaption>{_e(caption)}{links}</figcaption>" if caption or links else ""
    return (
        f'<figure><img alt="{_e(alt)}" width="{width}" height="{height}" '
        f'src="data:image/png;base64,{data}">{cap}</figure>'
    )


# -- header and partial banner ----------------------------------------------------
def _meta_item(title: str, value: str, wide: bool = False) -> str:
    """One ``<dt>``/``<dd>`` pair of the header."""
    cls = ' class="wide"' if wide else ""
    return f"<div{cls}><dt>{_e(title)}</dt><dd>{value}</dd></div>"


def _parameters(parameters: Any) -> str:
    """Study parameters as chips (or JSON for anything but a flat mapping)."""
    if not isinstance(parameters, Mapping):
        return f"<code>{_e(_json(parameters))}</code>"
    if not parameters:
        return MISSING
    return "".join(
        f'<span class="chip">{_e(k)} = <code>{_e(_json(v))}</code></span>'
        for k, v in parameters.items()
    )


def _summary(stations: Any) -> str:
    """One line: how many stations took part, patients and events pooled."""
    if not isinstance(stations, list) or not stations:
        return ""
    took = [s for s in stations if isinstance(s, Mapping) and s.get("participated")]
    line = f"{len(took)} of {len(stations)} stations took part"
    if any(s.get("n") is not None for s in took):
        n = sum(s.get("n") or 0 for s in took)
        events = sum(s.get("events") or 0 for s in took)
        line += f" &middot; {_num(n)} patients &middot; {_num(events)} events"
    return f'<p class="summary">{line}</p>'


def _header(result: Mapping[str, Any]) -> str:
    """Question, purpose, dataset, train, digest, parameters and creation time."""
    items = [
        _meta_item("Purpose", _e(result.get("purpose"))),
        _meta_item("Dataset", f"<code>{_e(result.get('dataset'))}</code>"),
        _meta_item("Train", f"<code>{_e(result.get('train'))}</code>"),
        _meta_item("Created", _e(result.get("created"))),
        _meta_item("pht version", _e(result.get("pht_version"))),
        _meta_item(
            "Train digest", f"<code>{_e(result.get('train_digest'))}</code>", wide=True
        ),
        _meta_item("Parameters", _parameters(result.get("parameters")), wide=True),
    ]
    return (
        '<header class="top"><p class="eyebrow">Personal Health Train '
        "&middot; study report</p>"
        f"<h1>{_e(result.get('question', 'Study result'))}</h1>"
        f'<dl class="meta">{"".join(items)}</dl>'
        f"{_summary(result.get('stations'))}</header>"
    )


def _partial(result: Mapping[str, Any]) -> str:
    """A banner above everything when not every station took part (``partial``)."""
    partial = result.get("partial")
    if not isinstance(partial, Mapping) or partial.get("complete", True):
        return ""
    took, asked = partial.get("took_part"), partial.get("requested")
    head = f"Partial result: {_num(took)} of {_num(asked)} stations took part"
    if partial.get("analyses"):
        head = (
            f"Partial result: {_num(took)} of {_num(asked)} stations took part in the "
            "primary analysis; not every station in every analysis"
        )
    least = partial.get("min_stations")
    if _is_num(least):
        head += f" (the study needs at least {_num(least)})"
    items = []
    for missing in partial.get("missing") or []:
        if not isinstance(missing, Mapping):
            continue
        acts, advice = missing.get("acts"), missing.get("advice")
        who = f" &mdash; to act: <strong>{_e(acts)}</strong>" if acts else ""
        what = f'<span class="sub">{_e(advice)}</span>' if advice else ""
        analysis = missing.get("analysis")
        where = f" (in {_e(analysis)})" if analysis else ""
        items.append(
            f"<li><strong>{_e(missing.get('station'))}</strong>{where}: "
            f"{_e(missing.get('reason') or 'no reason given')}{who}{what}</li>"
        )
    for failed in partial.get("failed") or []:
        if isinstance(failed, Mapping):
            items.append(
                f"<li><strong>{_e(failed.get('analysis'))}</strong>: gave no result "
                f"({_e(failed.get('error'))})</li>"
            )
    listing = f"<ul>{''.join(items)}</ul>" if items else ""
    return (
        f'<div class="banner" id="partial" role="alert"><p><strong>{head}.</strong> '
        "The estimates below pool only the stations that took part.</p>"
        f"{listing}</div>"
    )


# -- the answer -------------------------------------------------------------------
def _parameter(result: Mapping[str, Any], key: str, default: Any = None) -> Any:
    parameters = result.get("parameters")
    value = parameters.get(key) if isinstance(parameters, Mapping) else None
    return default if value is None else value


def _cox_answer(result: Mapping[str, Any]) -> str:
    """Adjusted hazard ratio(s) of the variable of interest, with a table."""
    cox = result["cox"]
    params = cox["params"]
    var = variable_of_interest(result)
    terms = [(n, parse_term(n)[1]) for n in params if parse_term(n)[0] == var]
    if var is None or not terms:
        return ""
    columns = list(dict.fromkeys(parse_term(n)[0] for n in params))
    others = [c for c in columns if c != var]
    context = f"Adjusted for {_e(_and(others))}" if others else "Without adjustment"
    if cox.get("mode") == "stratified":
        context += (
            ", and stratified by station" if others else " and stratified by station"
        )
    reference = (cox.get("reference_levels") or {}).get(var)
    given = units(result)
    pieces, rows, classes = [], [], []
    frame: list[dict[str, Any]] = []
    if reference is not None:
        rows.append([f"{_e(level_label(reference))} (reference)", "1.00", "", ""])
        classes.append("ref")
        frame.append({"term": None, "label": f"{level_label(reference)} (reference)"})
        frame[-1] |= {"hr": 1.0, "ci_lower": None, "ci_upper": None, "p_value": None}
    above, below = [], []
    for name, level in terms:
        p = params[name]
        lo, hi = p.get("ci_lower"), p.get("ci_upper")
        narrow = _is_num(lo) and _is_num(hi) and hi - lo < 0.05
        label = level_label(level) if level is not None else term_label(name, given)
        ci = f"{_hr(lo, narrow)} to {_hr(hi, narrow)}"
        stats = f"95% CI {ci}; {_p_is(p.get('p_value'))}"
        if level is None:
            pieces.append(
                f"each one-unit increase in {_e(label)} multiplies the hazard by "
                f"{_hr(p.get('hr'), narrow)} ({stats})"
            )
        else:
            ref = _e(level_label(reference)) if reference is not None else "reference"
            verb = "is " if not pieces else ""
            pieces.append(
                f"of {_e(label)} versus {ref} {verb}{_hr(p.get('hr'), narrow)} ({stats})"
            )
        if _is_num(lo) and lo > 1:
            above.append(_e(label))
        elif _is_num(hi) and hi < 1:
            below.append(_e(label))
        rows.append([_e(label), _hr(p.get("hr"), narrow), ci, _p(p.get("p_value"))])
        classes.append("")
        frame.append({"term": name, "label": label, "hr": p.get("hr")})
        frame[-1] |= {"ci_lower": lo, "ci_upper": hi, "p_value": p.get("p_value")}
    if terms[0][1] is None:
        lead = f"{context}, {pieces[0]}."
    else:
        pieces[0] = f"{_e(var)} {pieces[0][3:]}"
        lead = f"{context}, the hazard ratio of {_and(pieces)}."
    if above or below:
        verdict = " ".join(
            f"The 95% CI of {_and(names)} lies {side} 1 ({what} hazard)."
            for names, side, what in (
                (above, "above", "higher"),
                (below, "below", "lower"),
            )
            if names
        )
    elif len(terms) == 1:
        verdict = "The 95% CI includes 1: no difference is shown at the 5% level."
    else:
        verdict = "Every 95% CI includes 1: no difference is shown at the 5% level."
    header = [str(var), "Hazard ratio", "95% CI", "p-value"]
    table = _table(
        header,
        rows,
        "lrrr",
        "answer",
        name="answer",
        frame=pd.DataFrame(frame),
        row_classes=classes,
    )
    return f'<p class="lead">{lead}</p><p>{verdict}</p>{table}'


def _chosen_test(
    result: Mapping[str, Any],
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """The log-rank test the study reads and the other one (if any).

    The station-stratified test when the result has it (stations differ in case
    mix; it compares the groups within each station), else the unstratified one.
    """
    stratified, plain = result.get("logrank_stratified"), result.get("logrank")
    stratified = stratified if isinstance(stratified, Mapping) else None
    plain = plain if isinstance(plain, Mapping) else None
    if stratified is not None:
        return stratified, plain
    return plain, None


def _km_answer(result: Mapping[str, Any]) -> str:
    """Median survival per group and the log-rank test the study chose."""
    km = result["km"]
    if not isinstance(km, Mapping) or not km:
        return ""
    unit = figures.time_unit(result)
    alpha = _parameter(result, "alpha", DEFAULT_ALPHA)
    group = _parameter(result, "group", "group")
    chosen, other = _chosen_test(result)
    parts = []
    if chosen is not None and _is_num(chosen.get("p_value")):
        p = chosen["p_value"]
        verb = "differs" if p < alpha else "does not differ significantly"
        method = _e(chosen.get("method", "log-rank"))
        parts.append(
            f'<p class="lead">Survival {verb} between the {len(km)} groups of '
            f"{_e(group)} ({method}: &chi;&sup2; = {_num(chosen.get('statistic'), 2)} "
            f"on {_num(chosen.get('df'))} df, {_p_is(p)}; &alpha; = {_num(alpha)}).</p>"
        )
        if chosen.get("stratified"):
            parts.append(
                '<p class="note">This is the log-rank test stratified by station: '
                "it compares the groups within each station, so differences in case "
                "mix between the stations do not count as a difference between the "
                "groups.</p>"
            )
        q = other.get("p_value") if other is not None else None
        if _is_num(q) and (q < alpha) != (p < alpha):
            parts.append(
                '<p class="warn">The two log-rank tests disagree: unstratified '
                f"{_p_is(q)}, stratified by station {_p_is(p)}. The unstratified "
                "test pools all patients, so it mixes differences between the "
                "stations (their case mix) with the difference between the groups; "
                "read the stratified test.</p>"
            )
        elif _is_num(q):
            parts.append(
                f'<p class="note">The unstratified log-rank test agrees ({_p_is(q)}).'
                "</p>"
            )
    else:
        parts.append(
            f'<p class="lead">Kaplan&ndash;Meier survival of {len(km)} group(s) of '
            f"{_e(group)}; no log-rank test was released.</p>"
        )
    palette = figures.colors(km)
    parts.append(_medians(km, palette, unit, name="answer"))
    return "".join(parts)


def _priority_answer(result: Mapping[str, Any]) -> str:
    """The top of the re-assessment priority list (ranked drugs only)."""
    rows = [r for r in result["priority"]["rows"] if isinstance(r, Mapping)]
    ranked = [r for r in rows if r.get("rank") is not None]
    if not ranked:
        return ""

    def drug(row: Mapping[str, Any]) -> str:
        extra = row.get("indication")
        return _e(row.get("drug")) + (f" ({_e(extra)})" if extra else "")

    top = ranked[0]
    lead = (
        f'<p class="lead">Highest re-assessment priority: {drug(top)} (score '
        f"{_num(top.get('score'), 2)}; {_num(top.get('patients_per_year'), 0)} "
        f"patients a year, annual spend EUR {_num(top.get('annual_spend'), 0)}).</p>"
    )
    body = (
        [
            _num(r.get("rank")),
            drug(r),
            _num(r.get("score"), 3),
            _num(r.get("patients_per_year"), 1),
            _num(r.get("annual_spend"), 0),
        ]
        for r in ranked[:5]
    )
    header = ["Rank", "Drug", "Score", "Patients / year", "Annual spend (EUR)"]
    unranked = [r for r in rows if r.get("rank") is None]
    note = (
        '<p class="note">Not ranked: '
        + "; ".join(
            drug(r) + (f" ({_e(r['note'])})" if r.get("note") else "") for r in unranked
        )
        + ".</p>"
        if unranked
        else ""
    )
    return lead + _table(header, body, "rl", "answer", name="answer") + note


def _equivalence_answer(result: Mapping[str, Any]) -> str:
    """The equivalence study's answer (:mod:`pht.orchestrator.report_equivalence`)."""
    from pht.orchestrator.report_equivalence import answer

    return answer(result)


def _nma_answer(result: Mapping[str, Any]) -> str:
    """The network meta-analysis's answer (:mod:`pht.orchestrator.report_nma`)."""
    from pht.orchestrator.report_nma import answer

    return answer(result)


ANSWERS: tuple[tuple[str, Renderer], ...] = (
    ("cox", _cox_answer),
    ("km", _km_answer),
    ("priority", _priority_answer),
    ("equivalence", _equivalence_answer),
    ("nma", _nma_answer),
)
"""Result key to the answer it gives, first present one wins."""


def _answer(result: Mapping[str, Any]) -> str:
    """The study's answer in one sentence and one table (first section)."""
    collector = exports.current()
    for key, build in ANSWERS:
        if result.get(key) is None:
            continue
        mark = collector.mark() if collector is not None else None
        try:
            body = build(result)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            body = ""
        if body:
            return _section("answer", "Answer", body, "answer")
        if collector is not None and mark is not None:
            collector.rollback(mark)
    return ""


# -- stations ---------------------------------------------------------------------
def _station_row(station: Mapping[str, Any], acts: bool) -> list[str]:
    """Table cells of one station."""
    took = bool(station.get("participated"))
    name = station.get("name")
    elapsed = station.get("elapsed_seconds")
    row = [
        _e(station.get("id"))
        + (f'<span class="sub">{_e(name)}</span>' if name else ""),
        f'<span class="{"yes" if took else "no"}">{"yes" if took else "no"}</span>',
        _num(station.get("n")),
        _num(station.get("events")),
        _num(station.get("excluded")),
        f"{float(elapsed):.1f} s" if _is_num(elapsed) else MISSING,
        _e(station.get("executor") or MISSING),
        _e(station.get("reason") or ""),
    ]
    if not acts:
        return row
    advice = station.get("advice")
    return [
        *row,
        _e(station.get("acts") or "")
        + (f'<span class="sub">{_e(advice)}</span>' if advice else ""),
    ]


def _stations(result: Mapping[str, Any]) -> str:
    """Which stations took part, their counts and why others did not."""
    stations = [s for s in result["stations"] if isinstance(s, Mapping)]
    acts = any(s.get("acts") for s in stations)
    header = ["Station", "Took part", "Patients", "Events", "Excluded", "Run time"]
    header += ["Executor", "Reason"] + (["Who must act"] if acts else [])
    align = "llrrrrlll"[: len(header)]
    rows = [_station_row(s, acts) for s in stations]
    # counts a policy hides (no station shows its name) and run times no station
    # gives would be columns of dashes only: left out
    keys = {2: "n", 3: "events", 4: "excluded", 5: "elapsed_seconds"}
    empty = {i for i, key in keys.items() if all(s.get(key) is None for s in stations)}
    keep = [i for i in range(len(header)) if i not in empty]
    fields = ("id", "name", "participated", "status", "n", "events", "excluded")
    frame = pd.DataFrame(
        [
            {k: s.get(k) for k in fields}
            | {k: s.get(k) for k in ("reason", "acts", "advice", "executor")}
            for s in stations
        ]
    )
    table = _table(
        [header[i] for i in keep],
        ([row[i] for i in keep] for row in rows),
        align="".join(align[i] for i in keep),
        name="stations",
        frame=frame,
    )
    note = (
        '<p class="note">Per-station patients and events are shown only for '
        "stations whose policy shows their name.</p>"
        if {2, 3} <= empty
        else ""
    )
    return _section("stations", "Stations", table + note)


# -- Kaplan-Meier -----------------------------------------------------------------
def _at_risk(
    table: Mapping[str, Any], colors: Mapping[str, str], unit: str = "days"
) -> str:
    """Tabulate the numbers at risk (also drawn under the plot)."""
    times = table["times"]
    header = ["Group", *(_num(float(t)) for t in times)]
    rows = (
        [_group_cell(g, colors), *(_num(c) for c in counts)]
        for g, counts in table["groups"].items()
    )
    frame = pd.DataFrame(  # long: one row per group and time
        [
            {"group": g, "time": float(t), "at_risk": c}
            for g, counts in table["groups"].items()
            for t, c in zip(times, counts, strict=False)
        ]
    )
    title = f"Number at risk (time in {_e(unit)})"
    return f"<h3>{title}</h3>" + _table(header, rows, name="at_risk", frame=frame)


def _medians(
    km: Mapping[str, Any],
    colors: Mapping[str, str],
    unit: str = "days",
    name: str = "km_medians",
) -> str:
    """Median survival with its CI per group; ``None`` means not reached."""
    rows, frame = [], []
    for label, curve in km.items():
        median = curve.get("median") or {}
        estimate = median.get("estimate")
        rows.append(
            [
                _group_cell(label, colors),
                _num(curve.get("n")),
                _num(curve.get("events")),
                NOT_REACHED if estimate is None else _num(estimate),
                _ci(median.get("ci_lower"), median.get("ci_upper"), NOT_REACHED),
            ]
        )
        frame.append(
            {"group": label, "n": curve.get("n"), "events": curve.get("events")}
            | {f"median_{unit}": estimate, "ci_lower": median.get("ci_lower")}
            | {"ci_upper": median.get("ci_upper")}
        )
    header = ["Group", "Patients", "Events", f"Median ({unit})", "95% CI"]
    return ("<h3>Median survival</h3>" if name != "answer" else "") + _table(
        header, rows, name=name, frame=pd.DataFrame(frame)
    )


def _km_caption(km: Mapping[str, Any], unit: str) -> str:
    """Say how the curves are drawn and which ones are cut where."""
    cut = []
    for label, curve in km.items():
        shown = shown_points(curve, MIN_AT_RISK)
        if shown < len(curve.get("time") or []):
            at = curve["time"][shown - 1] if shown else None
            where = f"after {_real(float(at), None)} {unit}" if at is not None else ""
            cut.append(f"{level_label(label)} {where or '(not drawn)'}")
    text = (
        "Shaded: pointwise 95% confidence band; ticks mark censored times. Each "
        f"curve stops where fewer than {MIN_AT_RISK} patients remain at risk"
    )
    return text + (f" ({'; '.join(cut)})." if cut else "; none reaches that point.")


def _km(result: Mapping[str, Any]) -> str:
    """Kaplan-Meier plot with numbers at risk, and median survival."""
    km = result.get("km") or {}
    table = result.get("at_risk_table") or {}
    colors = figures.colors([*km, *table.get("groups", {})])
    unit = figures.time_unit(result)
    parts = []
    if km:
        alt = "Kaplan-Meier survival curves per group with 95% confidence bands"
        fig = km_figure(result, MIN_AT_RISK)
        parts.append(_png(fig, alt, _km_caption(km, unit), name="km"))
    if table:
        parts.append(_at_risk(table, colors, unit))
    if km:
        parts.append(_medians(km, colors, unit))
    return _section("km", "Kaplan\u2013Meier survival", "".join(parts))


# -- log-rank ---------------------------------------------------------------------
def _tests(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Collect the log-rank tests of the result, the one the study reads first."""
    chosen, other = _chosen_test(result)
    return [t for t in (chosen, other) if t is not None]


def _observed_expected(tests: Sequence[Mapping[str, Any]]) -> str:
    """Observed and expected events per group, one expected column per test."""
    with_counts = [t for t in tests if t.get("observed") and t.get("expected")]
    if not with_counts:
        return ""
    observed = with_counts[0]["observed"]
    header = ["Group", "Observed events"]
    header += [f"Expected ({t.get('method', 'test')})" for t in with_counts]
    rows = (
        [
            _e(level_label(g)),
            _num(o),
            *(_num(t["expected"].get(g), 1) for t in with_counts),
        ]
        for g, o in observed.items()
    )
    frame = pd.DataFrame(
        [
            {"group": g, "observed": o}
            | {
                f"expected_{'stratified' if t.get('stratified') else 'unstratified'}": (
                    t["expected"].get(g)
                )
                for t in with_counts
            }
            for g, o in observed.items()
        ]
    )
    return "<h3>Events per group</h3>" + _table(
        header, rows, name="logrank_events", frame=frame
    )


def _logrank(result: Mapping[str, Any]) -> str:
    """Show the log-rank tests: statistic, degrees of freedom, p-value."""
    tests = _tests(result)
    rows = (
        [
            _e(t.get("method", "log-rank"))
            + (" (the test read)" if i == 0 and len(tests) > 1 else ""),
            _num(t.get("statistic"), 2),
            _num(t.get("df")),
            _p(t.get("p_value")),
        ]
        for i, t in enumerate(tests)
    )
    frame = pd.DataFrame(
        [
            {
                "test": t.get("method", "log-rank"),
                "stratified": bool(t.get("stratified")),
                "statistic": t.get("statistic"),
                "df": t.get("df"),
                "p_value": t.get("p_value"),
            }
            for t in tests
        ]
    )
    table = _table(
        ["Test", "Chi-square", "df", "p-value"], rows, name="logrank", frame=frame
    )
    return _section("logrank", "Log-rank tests", table + _observed_expected(tests))


# -- estimates at a time: RMST, survival at t -------------------------------------
def _estimate_rows(
    groups: Mapping[str, Any], extra: bool, digits: int
) -> list[list[str]]:
    """Cells of per-group estimates (``extra`` adds the number at risk)."""
    rows = []
    for g, e in groups.items():
        row = [
            _e(level_label(g)),
            _num(e.get("estimate"), digits),
            _num(e.get("se"), digits + 1),
        ]
        row.append(_ci(e.get("ci_lower"), e.get("ci_upper"), digits=digits))
        rows.append(row + ([_num(e.get("at_risk"))] if extra else []))
    return rows


def _estimate_frame(groups: Mapping[str, Any]) -> pd.DataFrame:
    keys = ("estimate", "se", "ci_lower", "ci_upper", "at_risk")
    return pd.DataFrame(
        [
            {"group": g} | {k: e.get(k) for k in keys if k in e}
            for g, e in groups.items()
        ]
    )


def _differences(
    differences: Sequence[Mapping[str, Any]], digits: int, key: str
) -> str:
    """Group-minus-reference differences with CI and Wald p-value."""
    if not differences:
        return ""
    rows = (
        [
            f"{_e(level_label(d.get('group')))} \u2212 "
            f"{_e(level_label(d.get('reference')))}",
            _num(d.get("difference"), digits),
            _num(d.get("se"), digits + 1),
            _ci(d.get("ci_lower"), d.get("ci_upper"), digits=digits),
            _p(d.get("p_value")),
        ]
        for d in differences
    )
    header = ["Comparison", "Difference", "SE", "95% CI", "p-value"]
    frame = pd.DataFrame([dict(d) for d in differences])
    return "<h3>Differences to the reference group</h3>" + _table(
        header, rows, name=f"{key}_differences", frame=frame
    )


def _estimates(key: str, title: str, section: Mapping[str, Any], digits: int) -> str:
    """Per-group estimates and their differences, as in ``rmst``/``survival_at``."""
    groups = section.get("groups") or {}
    extra = any("at_risk" in e for e in groups.values())
    header = ["Group", "Estimate", "SE", "95% CI"] + (["At risk"] if extra else [])
    body = _table(
        header,
        _estimate_rows(groups, extra, digits),
        name=key,
        frame=_estimate_frame(groups),
    )
    body += _differences(section.get("differences") or [], digits, key)
    beyond = section.get("beyond_follow_up") or []
    if beyond:
        names = ", ".join(_e(g) for g in beyond)
        body += f'<p class="warn">Follow-up ends before this time in: {names}.</p>'
    return _section(key, title, body)


def _rmst(result: Mapping[str, Any]) -> str:
    """Restricted mean survival time up to ``tau``."""
    section = result["rmst"]
    tau = _num(section.get("tau"))
    title = f"Restricted mean survival time up to {tau} {figures.time_unit(result)}"
    return _estimates("rmst", title, section, digits=1)


def _survival_at(result: Mapping[str, Any]) -> str:
    """Survival probability at a fixed time."""
    section = result["survival_at"]
    title = f"Survival at {_num(section.get('time'))} {figures.time_unit(result)}"
    return _estimates("survival_at", title, section, digits=3)


# -- Cox --------------------------------------------------------------------------
def _cox_facts(cox: Mapping[str, Any]) -> str:
    """Model facts: counts, ties, iterations, convergence, likelihood-ratio test."""
    lr = cox.get("lr_test") or {}
    converged = cox.get("converged")
    state = "yes" if converged else "no"
    items = [
        _meta_item("Patients", _num(cox.get("n"))),
        _meta_item("Events", _num(cox.get("events"))),
        _meta_item("Mode", _e(cox.get("mode"))),
        _meta_item("Ties", _e(cox.get("ties"))),
        _meta_item("Iterations", _num(cox.get("iterations"))),
        _meta_item("Converged", f'<span class="{state}">{state}</span>'),
        _meta_item("Log-likelihood", _num(cox.get("loglik"), 2)),
        _meta_item(
            "Likelihood-ratio test",
            f"&chi;&sup2; = {_num(lr.get('statistic'), 2)} on {_num(lr.get('df'))} df, "
            f"{_p_is(lr.get('p_value'))}",
        ),
    ]
    return f'<dl class="meta">{"".join(items)}</dl>'


def _cox_table(result: Mapping[str, Any]) -> str:
    """Coefficients, hazard ratios, CIs and Wald tests; reference rows included."""
    cox = result["cox"]
    params = cox["params"]
    references = cox.get("reference_levels") or {}
    given = units(result)
    rows, classes, seen = [], [], set()
    for name, p in params.items():
        column, level = parse_term(name)
        if level is not None and column not in seen and column in references:
            ref = f"{column}: {level_label(references[column])}"
            rows.append([f"{_e(ref)} (reference)", "", "", "1.000", "", "", ""])
            classes.append("ref")
        seen.add(column)
        rows.append(
            [
                _e(term_label(name, given))
                + f'<span class="sub"><code>{_e(name)}</code></span>',
                _num(p.get("coef"), 4),
                _num(p.get("se"), 4),
                _num(p.get("hr"), 3),
                _ci(p.get("ci_lower"), p.get("ci_upper"), digits=3),
                _num(p.get("z"), 2),
                _p(p.get("p_value")),
            ]
        )
        classes.append("")
    header = ["Term", "coef", "SE", "Hazard ratio", "95% CI", "z", "p-value"]
    return _table(
        header,
        rows,
        cls="cox",
        name="cox_coefficients",
        frame=cox_frame(result),
        row_classes=classes,
    )


def _cox_notes(cox: Mapping[str, Any]) -> str:
    """List reference levels of categorical covariates and fitting warnings."""
    parts = []
    levels = cox.get("reference_levels") or {}
    if levels:
        text = ", ".join(f"{_e(c)} = {_e(r)}" for c, r in levels.items())
        parts.append(f'<p class="note">Reference levels: {text}.</p>')
    for warning in cox.get("warnings") or []:
        parts.append(f'<p class="warn">Warning: {_e(warning)}</p>')
    return "".join(parts)


def _ph_test(cox: Mapping[str, Any]) -> str:
    """Proportional-hazards tests per covariate and global (like R ``cox.zph``)."""
    ph = cox.get("ph_test")
    if not isinstance(ph, Mapping):
        return ""
    terms = ph.get("terms") or {}
    rows = [
        [_e(c), _num(t.get("chisq"), 2), _num(t.get("df")), _p(t.get("p_value"))]
        for c, t in terms.items()
    ]
    overall = ph.get("global")
    if isinstance(overall, Mapping):
        rows.append(
            [
                "<strong>global</strong>",
                _num(overall.get("chisq"), 2),
                _num(overall.get("df")),
                _p(overall.get("p_value")),
            ]
        )
    frame = pd.DataFrame(
        [{"term": c} | dict(t) for c, t in terms.items()]
        + ([{"term": "global"} | dict(overall)] if isinstance(overall, Mapping) else [])
    )
    transform = _e(ph.get("transform") or "log")
    return (
        "<h3>Proportional hazards (like R cox.zph)</h3>"
        + _table(
            ["Covariate", "Chi-square", "df", "p-value"],
            rows,
            "lrrr",
            name="cox_ph_test",
            frame=frame,
        )
        + '<p class="note">Scaled Schoenfeld residuals against '
        f"{transform}-transformed time; a small p-value says the covariate's hazard "
        "ratio changes over time (the proportional-hazards assumption fails).</p>"
    )


def _concordance(cox: Mapping[str, Any]) -> str:
    """Harrell's concordance of the fitted model."""
    c = cox.get("concordance")
    if not isinstance(c, Mapping) or not _is_num(c.get("c")):
        return ""
    se = c.get("se")
    where = (
        " Pairs are compared within stations only." if c.get("within_stations") else ""
    )
    return (
        "<h3>Concordance</h3>"
        f"<p>Harrell's C = {_num(c['c'], 3)}"
        + (f" (SE {_num(se, 3)})" if _is_num(se) else "")
        + f": {_num(c.get('concordant'))} concordant, {_num(c.get('discordant'))} "
        f"discordant and {_num(c.get('tied_risk'))} tied pairs.{where}</p>"
    )


def _heterogeneity(result: Mapping[str, Any]) -> str:
    """Per-station estimates of the variable of interest and their heterogeneity."""
    cox = result["cox"]
    stations = cox.get("station_estimates")
    if not isinstance(stations, Mapping) or not stations:
        return ""
    var = variable_of_interest(result)
    names = [n for n in cox["params"] if parse_term(n)[0] == var]
    parts = ["<h3>Per-station estimates</h3>"]
    if names:
        alt = "Forest plot of per-station and pooled hazard ratios"
        caption = (
            f"Hazard ratios of {term_label(names[0]).split(':')[0]} per station and "
            "pooled, with 95% CIs."
        )
        fig = station_forest_figure(result, names)
        parts.append(_png(fig, alt, caption, name="forest_stations"))
    het = cox.get("heterogeneity")
    if isinstance(het, Mapping) and het:
        rows = (
            [
                _e(term_label(n, units(result))),
                _num(h.get("q"), 2),
                _num(h.get("df")),
                _p(h.get("p_value")),
                MISSING if not _is_num(h.get("i2")) else f"{100 * h['i2']:.0f}%",
                _num(h.get("tau2"), 4),
            ]
            for n, h in het.items()
        )
        frame = pd.DataFrame([{"term": n} | dict(h) for n, h in het.items()])
        parts.append(
            _table(
                ["Term", "Cochran's Q", "df", "p-value", "I\u00b2", "\u03c4\u00b2"],
                rows,
                name="cox_heterogeneity",
                frame=frame,
            )
        )
        parts.append(
            '<p class="note">I&sup2;: the share of the variation between the '
            "stations' estimates that is beyond chance.</p>"
        )
    return "".join(parts)


def _cox(result: Mapping[str, Any]) -> str:
    """Cox model: facts, forest plot, coefficients and model checks."""
    cox = result["cox"]
    params = cox["params"]
    parts = [_cox_facts(cox)]
    if params:
        alt = "Forest plot of hazard ratios with 95% confidence intervals"
        caption = (
            "Hazard ratios with 95% CIs on a log scale; open circles mark the "
            "reference level of each categorical covariate."
        )
        parts.append(_png(forest_figure(result), alt, caption, name="forest"))
        parts.append(_cox_table(result))
    parts.append(_cox_notes(cox))
    checks = _ph_test(cox) + _concordance(cox) + _heterogeneity(result)
    if checks:
        parts.append(f"<h3>Model checks</h3>{checks}")
    return _section("cox", "Cox proportional hazards model", "".join(parts))


# -- provenance -------------------------------------------------------------------
PROVENANCE_ITEMS = (
    ("request_id", "Request id"),
    ("issued_at", "Issued"),
    ("expires_at", "Expires"),
    ("requester", "Requester"),
    ("engine", "Engine"),
    ("rounds", "Rounds"),
    ("disclosure_class", "Disclosure class"),
    ("budget", "Budget"),
    ("train_signers", "Train signed by (key ids)"),
    ("study_file", "Study file"),
    ("network_file", "Network file"),
)
"""Provenance keys shown in the summary table, in this order, with their titles."""


def _text(value: Any) -> str:
    """A provenance value as escaped text: lists joined, mappings as key: value."""
    if value is None:
        return MISSING
    if isinstance(value, Mapping):
        return "; ".join(f"{_e(k)}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or MISSING
    if isinstance(value, str) and len(value) > 80:
        return _short(value, 24)
    return _num(value)


def _requester(value: Any) -> str:
    if not isinstance(value, Mapping):
        return _text(value)
    who = " / ".join(
        _e(value[k]) for k in ("organisation", "user", "role") if value.get(k)
    )
    key = value.get("key_id")
    return who + (f' <span class="sub">key {_short(key)}</span>' if key else "")


def _budget(value: Any) -> str:
    if not isinstance(value, Mapping):
        return _text(value)
    parts = []
    if value.get("queries_per_station") is not None:
        parts.append(f"{_num(value['queries_per_station'])} query unit(s) per station")
    if value.get("requests"):
        parts.append(f"requests: {_text(value['requests'])}")
    if value.get("note"):
        parts.append(_e(value["note"]))
    rest = {
        k: v
        for k, v in value.items()
        if k not in ("queries_per_station", "requests", "note")
    }
    if rest:
        parts.append(_text(rest))
    return "; ".join(parts) or MISSING


def _requests(requests: Any) -> str:
    """Per-station request status."""
    if not isinstance(requests, list) or not requests:
        return ""
    rows = [
        [
            _e(r.get("station")),
            _e(r.get("status")),
            _e(r.get("reason") or ""),
            _e(r.get("executor")),
            _short(r.get("train_digest")),
        ]
        for r in requests
        if isinstance(r, Mapping)
    ]
    frame = pd.DataFrame(
        [
            {k: r.get(k) for k in ("station", "status", "reason", "executor")}
            | {"train_digest": r.get("train_digest"), "request_id": r.get("request_id")}
            for r in requests
            if isinstance(r, Mapping)
        ]
    )
    header = ["Station", "Status", "Reason", "Executor", "Train digest"]
    return "<h3>Requests per station</h3>" + _table(
        header, rows, "lllll", "prov", name="provenance_requests", frame=frame
    )


def _receipts(receipts: Any) -> str:
    """Signed station receipts: station, round, output digest, audit checkpoint."""
    if not isinstance(receipts, list) or not receipts:
        return ""
    rows, records = [], []
    for r in receipts:
        if not isinstance(r, Mapping):
            continue
        checkpoint = r.get("audit_checkpoint") or {}
        envelope = r.get("receipt") or {}
        signers = [
            s.get("keyid")
            for s in envelope.get("signatures") or []
            if isinstance(s, Mapping)
        ]
        rows.append(
            [
                _e(r.get("station")),
                _num(r.get("round")),
                _short(r.get("output_digest")),
                _num(checkpoint.get("size")),
                _short(checkpoint.get("root")),
                ", ".join(_short(s) for s in signers) or MISSING,
            ]
        )
        records.append(
            {"station": r.get("station"), "round": r.get("round")}
            | {"output_digest": r.get("output_digest")}
            | {
                "audit_size": checkpoint.get("size"),
                "audit_root": checkpoint.get("root"),
            }
            | {"signed_by": " ".join(str(s) for s in signers)}
        )
    header = ["Station", "Round", "Output digest", "Audit log size", "Audit root"]
    return (
        "<h3>Station receipts</h3>"
        + _table(
            [*header, "Signed by"],
            rows,
            "lrlrll",
            "prov",
            name="provenance_receipts",
            frame=pd.DataFrame(records),
        )
        + '<p class="note">Each station signed a receipt for what it released; '
        "the full signed envelopes are in result.json (and below, as raw JSON).</p>"
    )


def _provenance(result: Mapping[str, Any]) -> str:
    """Where the result came from, as readable tables; the raw JSON folded away."""
    prov = result["provenance"]
    if not isinstance(prov, Mapping):
        return _section("provenance", "Provenance", _pre(prov))
    special = {"requester": _requester, "budget": _budget}
    rows = [
        [_e(title), special.get(key, _text)(prov[key])]
        for key, title in PROVENANCE_ITEMS
        if key in prov
    ]
    listed = {key for key, _ in PROVENANCE_ITEMS} | {"requests", "receipts"}
    rows += [[_e(k), _text(v)] for k, v in prov.items() if k not in listed]
    frame = pd.DataFrame(
        [
            {"item": k, "value": v if not isinstance(v, Mapping | list) else _json(v)}
            for k, v in prov.items()
            if k not in ("requests", "receipts")
        ]
    )
    body = _table(["Item", "Value"], rows, "ll", "kv", name="provenance", frame=frame)
    body += _requests(prov.get("requests")) + _receipts(prov.get("receipts"))
    raw = _e(_json(prov))
    body += (
        '<details class="raw"><summary>Raw provenance (JSON, with the signed '
        f"receipts)</summary><pre>{raw}</pre></details>"
    )
    return _section("provenance", "Provenance", body)


# -- caveats and anything else ----------------------------------------------------
def _warnings(result: Mapping[str, Any]) -> str:
    """The statistical caveats of the result (``warnings``), one line each."""
    items = result.get("warnings") or []
    if not items:
        return ""
    body = "".join(
        f"<li><strong>{_e(w.get('category', ''))}</strong>: {_e(w.get('message', ''))}"
        "</li>"
        for w in items
    )
    return _section("warnings", "Caveats", f"<ul>{body}</ul>")


def _generic(key: str, value: Any, note: str = "") -> str:
    """Any result key without a dedicated renderer, as JSON."""
    note = note or "No dedicated view for this result key; its content as JSON:"
    return _section(key, key, f'<p class="note">{_e(note)}</p>{_pre(value)}')


def _sections() -> dict[str, Renderer]:
    """Result key to section renderer, in page order (``provenance`` comes last).

    The header's ``stations``, then every train plugin's sections
    (:attr:`pht.trains.TrainPlugin.sections`), then ``provenance``.
    """
    from pht.orchestrator.report_equivalence import SECTIONS as EQUIVALENCE
    from pht.orchestrator.report_nma import SECTIONS as NMA
    from pht.trains import renderers

    sections: dict[str, Renderer] = {"stations": _stations, "warnings": _warnings}
    for key, renderer in [*EQUIVALENCE, *NMA, *renderers()]:
        sections.setdefault(key, renderer)
    sections["provenance"] = _provenance
    return sections


LAST = ("provenance",)


# -- assembly ---------------------------------------------------------------------
def _order(result: Mapping[str, Any]) -> list[str]:
    """Keys to show: known ones in plugin order, unknown ones, then last."""
    sections = _sections()
    present = [k for k in result if k not in HEADER_KEYS and result[k] is not None]
    known = [k for k in sections if k in present and k not in LAST]
    unknown = [k for k in present if k not in sections]
    return known + unknown + [k for k in LAST if k in present]


def _render(renderer: Renderer, keys: Sequence[str], result: Mapping[str, Any]) -> str:
    """Run a section renderer; a section of unexpected shape is shown as JSON."""
    collector = exports.current()
    mark = None
    if collector is not None:
        collector.section = keys[0]
        mark = collector.mark()
    try:
        return renderer(result)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        if collector is not None and mark is not None:
            collector.rollback(mark)
        note = (
            f"This section could not be laid out ({type(error).__name__}: {error}); "
            "its content as JSON:"
        )
        value = result[keys[0]] if len(keys) == 1 else {k: result[k] for k in keys}
        return _generic(" + ".join(keys), value, note)


def _body(result: Mapping[str, Any]) -> str:
    """All sections, each shared renderer run once."""
    keys = _order(result)
    sections = _sections()
    parts, done = [], set()
    for key in keys:
        renderer = sections.get(key)
        if renderer is None:
            parts.append(_generic(key, result[key]))
        elif renderer not in done:
            done.add(renderer)
            shared = [k for k in keys if sections.get(k) is renderer]
            parts.append(_render(renderer, shared, result))
    return "".join(parts)


def _page(result: Mapping[str, Any]) -> str:
    """Assemble the whole HTML document."""
    title = _e(result.get("question", "Study result"))
    footer = (
        f"Generated by pht {_e(result.get('pht_version', ''))} from result.json "
        f"of {_e(result.get('train', 'a train'))}."
    )
    if exports.current() is not None:
        footer += (
            f' <span class="files">Figures (PNG, SVG) are in <a href="{exports.FIGURES}/">'
            f'{exports.FIGURES}/</a>, tables (CSV) in <a href="{exports.TABLES}/">'
            f"{exports.TABLES}/</a> next to this page.</span>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{CSS}</style></head><body><main>"
        f"{_partial(result)}{_header(result)}{_answer(result)}{_body(result)}"
        f"<footer>{footer}</footer></main></body></html>\n"
    )


def render_report(result: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``report.html``, ``figures/`` and ``tables/`` into ``out_dir``.

    The page is self-contained: CSS inline, plots embedded as base64 PNG, no
    scripts and no external resources; it links to its exported files. To replace
    an earlier report atomically use
    :func:`pht.orchestrator.exports.publish_report`.

    Parameters
    ----------
    result : Mapping[str, Any]
        The parsed ``result.json`` of a study run.
    out_dir : Path
        Folder to write into; created if missing.

    Returns
    -------
    Path
        ``out_dir / "report.html"``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exports.collecting() as collected:
        page = _page(result)
    collected.write(out_dir)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def render(result: Mapping[str, Any], out_dir: Path) -> Path:
    """Alias of :func:`render_report` for the Python API."""
    return render_report(result, out_dir)


# -- toolkit for train plugins ----------------------------------------------------
# A train plugin renders its own sections (a Renderer over the whole result) with
# these; they escape and format exactly as the built-in sections do.
escape = _e
number = _num
p_value = _p
p_is = _p_is
table = _table
section = _section
new_axes = figures.new_axes
png = _png
colors = figures.colors
