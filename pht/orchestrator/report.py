"""``report.html``: a self-contained page for a study's ``result.json``.

The page is a header followed by one section per result key. Each train plugin maps
its result keys to renderers (:attr:`pht.trains.TrainPlugin.sections`); several keys
may share one renderer (``km`` and
``at_risk_table``, ``logrank`` and ``logrank_stratified``), which then runs once.
A key without a renderer is shown as JSON, so results of new trains stay readable.
Plots are embedded as base64 PNG; the page loads no external resources.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

if "matplotlib.pyplot" not in sys.modules:
    # Headless rendering; an interactive pyplot session that is already running is
    # left alone (figures here are drawn on their own Agg canvas either way).
    matplotlib.use("Agg")

Renderer = Callable[[Mapping[str, Any]], str]

DPI = 192  # PNG pixels per inch; shown at 96 CSS px per inch, so sharp on HiDPI
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MISSING = "\u2014"
NOT_REACHED = "not reached"
HEADER_KEYS = frozenset(
    {"train", "train_digest", "question", "purpose", "dataset", "parameters"}
    | {"created", "pht_version", "schema_version"}
)
LONG_JSON_LINES = 40
LOG_TICK_SETS = (
    (1,),
    (1, 2, 5),
    (1, 1.5, 2, 3, 5, 7),
    (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8),
)

CSS = """
:root { --ink: #1f2633; --muted: #5f6b7a; --line: #dde2e8; --soft: #f4f6f9;
  --accent: #0b5cad; --ok: #1a7f37; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f5; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
  sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 20px 48px; }
header.top, section { background: #fff; border: 1px solid var(--line);
  border-radius: 10px; padding: 22px 26px; margin-bottom: 18px; }
.eyebrow { margin: 0; color: var(--accent); font-size: 12px; font-weight: 600;
  letter-spacing: .08em; text-transform: uppercase; }
h1 { font-size: 22px; line-height: 1.35; margin: 6px 0 16px; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
p { margin: 6px 0; }
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
  padding: 10px 12px; margin: 6px 0; overflow: auto; max-height: 480px; }
td pre { margin: 0; max-height: 240px; }
.chip { display: inline-block; background: var(--soft); border: 1px solid var(--line);
  border-radius: 999px; padding: 0 9px; margin: 0 6px 4px 0; font-size: 13px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px;
  font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: right;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; font-size: 13px; white-space: nowrap; }
th.l, td.l { text-align: left; }
tbody tr:hover { background: #fafbfd; }
table.kv > tbody > tr > td:first-child { color: var(--muted); white-space: nowrap; }
table.nested { margin: 0; font-size: 12px; }
table.nested th, table.nested td { padding: 3px 8px; overflow-wrap: anywhere; }
.yes { color: var(--ok); font-weight: 600; }
.no { color: var(--bad); font-weight: 600; }
.warn { color: var(--bad); }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 7px; vertical-align: baseline; }
.sub { display: block; color: var(--muted); font-size: 12px; }
figure { margin: 8px 0 4px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
details summary { cursor: pointer; color: var(--accent); }
footer { color: var(--muted); font-size: 12px; text-align: center; }
"""


# -- formatting -------------------------------------------------------------------
def _e(value: Any) -> str:
    """Escape any value for HTML text or attributes."""
    return html.escape(str(value), quote=True)


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


def _p(value: Any) -> str:
    """Format a p-value as ``0.0014`` or ``<0.0001`` (escaped)."""
    if not isinstance(value, int | float) or math.isnan(value):
        return MISSING
    return "&lt;0.0001" if value < 1e-4 else f"{value:.4f}"


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


def _mpl_text(text: Any) -> str:
    """Text for a matplotlib label: ``$`` must not start mathtext."""
    return str(text).replace("$", r"\$")


# -- HTML building blocks ---------------------------------------------------------
def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    align: str = "l",
    cls: str = "",
) -> str:
    """Build an HTML table of already escaped cells.

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
    """

    def cell(tag: str, i: int, content: str) -> str:
        cls = ' class="l"' if align[i : i + 1] == "l" else ""
        return f"<{tag}{cls}>{content}</{tag}>"

    head = "".join(cell("th", i, _e(h)) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="table-wrap"><table{attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _section(key: str, title: str, body: str) -> str:
    """Wrap a report section, with an anchor named after its result key."""
    return f'<section id="{_e(key)}"><h2>{_e(title)}</h2>{body}</section>'


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
    """Show a group label, with its plot colour when it has one."""
    color = colors.get(str(label))
    return (_swatch(color) if color else "") + _e(label)


def _colors(labels: Iterable[Any]) -> dict[str, str]:
    """Plot colour of each group label, in order of first appearance."""
    unique = list(dict.fromkeys(str(label) for label in labels))
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(unique)}


def _png(fig: Figure, alt: str, caption: str = "") -> str:
    """Embed a figure as PNG in a ``<figure>``, shown at 96 CSS px per inch."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    width, height = (round(v * 96) for v in fig.get_size_inches())
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img alt="{_e(alt)}" width="{width}" height="{height}" '
        f'src="data:image/png;base64,{data}">{cap}</figure>'
    )


def _new_axes(width: float, height: float) -> tuple[Figure, Axes]:
    """Make a pyplot-free figure with one axes in a clean style."""
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=9)
    return fig, ax


# -- header -----------------------------------------------------------------------
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
    n = sum(s.get("n") or 0 for s in took)
    events = sum(s.get("events") or 0 for s in took)
    return (
        f'<p class="summary">{len(took)} of {len(stations)} stations took part '
        f"&middot; {_num(n)} patients &middot; {_num(events)} events</p>"
    )


def _header(result: Mapping[str, Any]) -> str:
    """Question, purpose, dataset, train, digest, parameters and creation time."""
    train = result.get("train", MISSING)
    items = [
        _meta_item("Purpose", _e(result.get("purpose", MISSING))),
        _meta_item("Dataset", f"<code>{_e(result.get('dataset', MISSING))}</code>"),
        _meta_item("Train", f"<code>{_e(train)}</code>"),
        _meta_item("Created", _e(result.get("created", MISSING))),
        _meta_item("pht version", _e(result.get("pht_version", MISSING))),
        _meta_item(
            "Train digest",
            f"<code>{_e(result.get('train_digest', MISSING))}</code>",
            wide=True,
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


# -- stations ---------------------------------------------------------------------
def _station_row(station: Mapping[str, Any]) -> list[str]:
    """Table cells of one station."""
    took = bool(station.get("participated"))
    name = station.get("name")
    elapsed = station.get("elapsed_seconds")
    return [
        _e(station.get("id", MISSING))
        + (f'<span class="sub">{_e(name)}</span>' if name else ""),
        f'<span class="{"yes" if took else "no"}">{"yes" if took else "no"}</span>',
        _num(station.get("n")),
        _num(station.get("events")),
        _num(station.get("excluded")),
        MISSING if elapsed is None else f"{float(elapsed):.1f} s",
        _e(station.get("executor") or MISSING),
        _e(station.get("reason") or ""),
    ]


def _stations(result: Mapping[str, Any]) -> str:
    """Which stations took part, their counts and why others did not."""
    header = ["Station", "Took part", "Patients", "Events", "Excluded", "Run time"]
    table = _table(
        [*header, "Executor", "Reason"],
        (_station_row(s) for s in result["stations"]),
        align="llrrrrll",
    )
    return _section("stations", "Stations", table)


# -- Kaplan-Meier -----------------------------------------------------------------
def _plot_curve(ax: Axes, label: str, curve: Mapping[str, Any], color: str) -> None:
    """One group's step curve, its step-wise CI band and censor marks."""
    time, surv = curve["time"], curve["survival"]
    ax.fill_between(
        time,
        curve["ci_lower"],
        curve["ci_upper"],
        step="post",
        color=color,
        alpha=0.15,
        linewidth=0,
    )
    n = curve.get("n")
    name = _mpl_text(label) + (f" (n = {n:,})" if isinstance(n, int) else "")
    ax.step(time, surv, where="post", color=color, linewidth=1.8, label=name)
    censored = curve.get("censored") or []
    marks = [(t, s) for t, s, c in zip(time, surv, censored, strict=False) if c]
    if marks:
        ct, cs = zip(*marks, strict=True)
        ax.plot(
            ct,
            cs,
            linestyle="none",
            marker="|",
            markersize=4,
            markeredgewidth=0.8,
            color=color,
        )


def _unit(result: Mapping[str, Any]) -> str:
    """The study's time unit (parameter ``time_unit``; ``days`` when not given)."""
    parameters = result.get("parameters")
    unit = parameters.get("time_unit") if isinstance(parameters, Mapping) else None
    return str(unit) if unit else "days"


def _style_km_axes(
    ax: Axes, end: float, ticks: Sequence[float], unit: str = "days"
) -> None:
    """Survival axes: 0-1 on y, time on x with the at-risk times as ticks."""
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, end * 1.02 if end > 0 else 1)
    if len(ticks) > 1:
        ax.xaxis.set_major_locator(FixedLocator(list(ticks)))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    ax.set_xlabel(f"Time ({_mpl_text(unit)})")
    ax.set_ylabel("Survival probability")
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.legend(frameon=False, loc="upper right", fontsize=9)


def _km_figure(
    km: Mapping[str, Any],
    colors: Mapping[str, str],
    ticks: Sequence[float],
    unit: str = "days",
) -> Figure:
    """Plot the Kaplan-Meier curves of all groups."""
    fig, ax = _new_axes(9.5, 5.0)
    for label, curve in km.items():
        _plot_curve(ax, label, curve, colors[str(label)])
    end = max((max(c["time"], default=0) for c in km.values()), default=0)
    _style_km_axes(ax, float(max(end, *ticks) if ticks else end), ticks, unit)
    return fig


def _at_risk(
    table: Mapping[str, Any], colors: Mapping[str, str], unit: str = "days"
) -> str:
    """Tabulate the numbers at risk (shown under the plot)."""
    times = table["times"]
    header = ["Group", *(_num(float(t)) for t in times)]
    rows = (
        [_group_cell(g, colors), *(_num(int(c)) for c in counts)]
        for g, counts in table["groups"].items()
    )
    title = f"Number at risk (time in {_e(unit)})"
    return f"<h3>{title}</h3>" + _table(header, rows)


def _medians(
    km: Mapping[str, Any], colors: Mapping[str, str], unit: str = "days"
) -> str:
    """Median survival with its CI per group; ``None`` means not reached."""
    rows = []
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
    header = ["Group", "Patients", "Events", f"Median ({unit})", "95% CI"]
    return "<h3>Median survival</h3>" + _table(header, rows)


def _km(result: Mapping[str, Any]) -> str:
    """Kaplan-Meier plot, numbers at risk and median survival."""
    km = result.get("km") or {}
    table = result.get("at_risk_table") or {}
    colors = _colors([*km, *table.get("groups", {})])
    ticks = [float(t) for t in table.get("times", [])]
    unit = _unit(result)
    parts = []
    if km:
        alt = "Kaplan-Meier survival curves per group with 95% confidence bands"
        caption = "Shaded: pointwise 95% confidence band; ticks mark censored times."
        parts.append(_png(_km_figure(km, colors, ticks, unit), alt, caption))
    if table:
        parts.append(_at_risk(table, colors, unit))
    if km:
        parts.append(_medians(km, colors, unit))
    return _section("km", "Kaplan\u2013Meier survival", "".join(parts))


# -- log-rank ---------------------------------------------------------------------
def _tests(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Collect the log-rank tests of the result, unstratified first."""
    keys = ("logrank", "logrank_stratified")
    return [result[k] for k in keys if isinstance(result.get(k), Mapping)]


def _observed_expected(tests: Sequence[Mapping[str, Any]]) -> str:
    """Observed and expected events per group, one expected column per test."""
    with_counts = [t for t in tests if t.get("observed") and t.get("expected")]
    if not with_counts:
        return ""
    observed = with_counts[0]["observed"]
    header = ["Group", "Observed events"]
    header += [f"Expected ({t.get('method', 'test')})" for t in with_counts]
    rows = (
        [_e(g), _num(o), *(_num(t["expected"].get(g), 1) for t in with_counts)]
        for g, o in observed.items()
    )
    return "<h3>Events per group</h3>" + _table(header, rows)


def _logrank(result: Mapping[str, Any]) -> str:
    """Show the log-rank tests: statistic, degrees of freedom, p-value."""
    tests = _tests(result)
    rows = (
        [
            _e(t.get("method", "log-rank")),
            _num(t.get("statistic"), 2),
            _num(t.get("df")),
            _p(t.get("p_value")),
        ]
        for t in tests
    )
    table = _table(["Test", "Chi-square", "df", "p-value"], rows)
    return _section("logrank", "Log-rank tests", table + _observed_expected(tests))


# -- estimates at a time: RMST, survival at t -------------------------------------
def _estimate_rows(
    groups: Mapping[str, Any], extra: bool, digits: int
) -> list[list[str]]:
    """Cells of per-group estimates (``extra`` adds the number at risk)."""
    rows = []
    for g, e in groups.items():
        row = [_e(g), _num(e.get("estimate"), digits), _num(e.get("se"), digits + 1)]
        row.append(_ci(e.get("ci_lower"), e.get("ci_upper"), digits=digits))
        rows.append(row + ([_num(e.get("at_risk"))] if extra else []))
    return rows


def _differences(differences: Sequence[Mapping[str, Any]], digits: int) -> str:
    """Group-minus-reference differences with CI and Wald p-value."""
    if not differences:
        return ""
    rows = (
        [
            f"{_e(d.get('group'))} \u2212 {_e(d.get('reference'))}",
            _num(d.get("difference"), digits),
            _num(d.get("se"), digits + 1),
            _ci(d.get("ci_lower"), d.get("ci_upper"), digits=digits),
            _p(d.get("p_value")),
        ]
        for d in differences
    )
    header = ["Comparison", "Difference", "SE", "95% CI", "p-value"]
    return "<h3>Differences to the reference group</h3>" + _table(header, rows)


def _estimates(key: str, title: str, section: Mapping[str, Any], digits: int) -> str:
    """Per-group estimates and their differences, as in ``rmst``/``survival_at``."""
    groups = section.get("groups") or {}
    extra = any("at_risk" in e for e in groups.values())
    header = ["Group", "Estimate", "SE", "95% CI"] + (["At risk"] if extra else [])
    body = _table(header, _estimate_rows(groups, extra, digits))
    body += _differences(section.get("differences") or [], digits)
    beyond = section.get("beyond_follow_up") or []
    if beyond:
        names = ", ".join(_e(g) for g in beyond)
        body += f'<p class="warn">Follow-up ends before this time in: {names}.</p>'
    return _section(key, title, body)


def _rmst(result: Mapping[str, Any]) -> str:
    """Restricted mean survival time up to ``tau``."""
    section = result["rmst"]
    tau = _num(section.get("tau"))
    title = f"Restricted mean survival time up to {tau} {_unit(result)}"
    return _estimates("rmst", title, section, digits=1)


def _survival_at(result: Mapping[str, Any]) -> str:
    """Survival probability at a fixed time."""
    section = result["survival_at"]
    title = f"Survival at {_num(section.get('time'))} {_unit(result)}"
    return _estimates("survival_at", title, section, digits=3)


# -- Cox --------------------------------------------------------------------------
def _log_ticks(low: float, high: float) -> list[float]:
    """Readable ticks on a log axis: the densest "nice" set with at most 9 ticks."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    ticks: list[float] = []
    for mantissas in LOG_TICK_SETS:
        candidates = (m * 10.0**e for e in range(first, last + 1) for m in mantissas)
        inside = [float(f"{t:.6g}") for t in candidates if low <= t <= high]
        if len(inside) > 9 and ticks:
            break
        ticks = inside
    return ticks if len(ticks) >= 2 else [low, high]


def _forest(params: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Hazard ratios with their CIs on a log axis, one row per parameter."""
    names = list(params)
    fig, ax = _new_axes(8.0, 0.42 * len(names) + 1.3)
    values = [1.0]
    for y, name in enumerate(reversed(names)):
        p = params[name]
        lo, hr, hi = (float(p[k]) for k in ("ci_lower", "hr", "ci_upper"))
        ax.plot([lo, hi], [y, y], color=PALETTE[0], linewidth=1.8)
        ax.plot([hr], [y], marker="s", markersize=6, color=PALETTE[0])
        values += [v for v in (lo, hr, hi) if math.isfinite(v) and v > 0]
    ax.axvline(1.0, color="#888888", linewidth=1, linestyle="--")
    ax.set_xscale("log")
    low, high = min(values) / 1.25, max(values) * 1.25
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(FixedLocator(_log_ticks(low, high)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_yticks(range(len(names)), [_mpl_text(n) for n in reversed(names)])
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlabel("Hazard ratio (95% CI, log scale)")
    ax.grid(alpha=0.3, axis="x", linewidth=0.6)
    return fig


def _cox_facts(cox: Mapping[str, Any]) -> str:
    """Model facts: counts, ties, iterations, convergence, likelihood-ratio test."""
    lr = cox.get("lr_test") or {}
    converged = cox.get("converged")
    state = "yes" if converged else "no"
    items = [
        _meta_item("Patients", _num(cox.get("n"))),
        _meta_item("Events", _num(cox.get("events"))),
        _meta_item("Mode", _e(cox.get("mode", MISSING))),
        _meta_item("Ties", _e(cox.get("ties", MISSING))),
        _meta_item("Iterations", _num(cox.get("iterations"))),
        _meta_item("Converged", f'<span class="{state}">{state}</span>'),
        _meta_item("Log-likelihood", _num(cox.get("loglik"), 2)),
        _meta_item(
            "Likelihood-ratio test",
            f"&chi;&sup2; = {_num(lr.get('statistic'), 2)} on {_num(lr.get('df'))} df, "
            f"p = {_p(lr.get('p_value'))}",
        ),
    ]
    return f'<dl class="meta">{"".join(items)}</dl>'


def _cox_table(params: Mapping[str, Mapping[str, Any]]) -> str:
    """Coefficients, hazard ratios, CIs and Wald tests."""
    rows = (
        [
            _e(name),
            _num(p.get("coef"), 4),
            _num(p.get("se"), 4),
            _num(p.get("hr"), 3),
            _ci(p.get("ci_lower"), p.get("ci_upper"), digits=3),
            _num(p.get("z"), 2),
            _p(p.get("p_value")),
        ]
        for name, p in params.items()
    )
    header = ["Term", "coef", "SE", "Hazard ratio", "95% CI", "z", "p-value"]
    return _table(header, rows, cls="cox")


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


def _cox(result: Mapping[str, Any]) -> str:
    """Cox proportional hazards model: facts, forest plot and coefficient table."""
    cox = result["cox"]
    params = cox["params"]
    parts = [_cox_facts(cox)]
    if params:
        alt = "Forest plot of hazard ratios with 95% confidence intervals"
        parts.append(_png(_forest(params), alt))
        parts.append(_cox_table(params))
    parts.append(_cox_notes(cox))
    return _section("cox", "Cox proportional hazards model", "".join(parts))


# -- provenance and anything else -------------------------------------------------
def _is_record_list(value: Any) -> bool:
    """Tell whether a value is a non-empty list of flat mappings (a table)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
        and all(not isinstance(x, Mapping | list) for v in value for x in v.values())
    )


def _value(value: Any) -> str:
    """Show a provenance value as text, a table of records or JSON."""
    if _is_record_list(value):
        columns = list(dict.fromkeys(k for record in value for k in record))
        rows = ([_e(r.get(c, "")) for c in columns] for r in value)
        return _table(columns, rows, "l" * len(columns), "nested")
    if isinstance(value, Mapping | list):
        return f"<pre>{_e(_json(value))}</pre>"
    return _e(value)


def _provenance(result: Mapping[str, Any]) -> str:
    """Where the result came from, as a key/value table."""
    prov = result["provenance"]
    if not isinstance(prov, Mapping):
        return _section("provenance", "Provenance", _pre(prov))
    rows = ([_e(k), _value(v)] for k, v in prov.items())
    return _section(
        "provenance", "Provenance", _table(["Item", "Value"], rows, "ll", "kv")
    )


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
    from pht.trains import renderers

    sections: dict[str, Renderer] = {"stations": _stations, "warnings": _warnings}
    for key, renderer in renderers():
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
    try:
        return renderer(result)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
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
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{CSS}</style></head><body><main>"
        f"{_header(result)}{_body(result)}<footer>{footer}</footer>"
        "</main></body></html>\n"
    )


def render_report(result: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` and return its path.

    The page is self-contained: CSS inline, plots embedded as base64 PNG, no
    scripts and no external resources.

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
    path = out_dir / "report.html"
    path.write_text(_page(result), encoding="utf-8")
    return path


# -- toolkit for train plugins ----------------------------------------------------
# A train plugin renders its own sections (a Renderer over the whole result) with
# these; they escape and format exactly as the built-in sections do.
escape = _e
number = _num
p_value = _p
table = _table
section = _section
new_axes = _new_axes
png = _png
colors = _colors
