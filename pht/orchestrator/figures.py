"""The report's figures as matplotlib :class:`~matplotlib.figure.Figure` objects.

- :func:`km_figure`: Kaplan-Meier curves with their CI bands, cut where fewer than
  ``min_at_risk`` patients remain at risk, and the numbers at risk drawn underneath
  on an axes sharing the time axis (so the counts stand under their ticks);
- :func:`forest_figure`: Cox hazard ratios grouped by covariate, with reference rows
  and an "HR (95% CI)" and a p-value column beside the bars;
- :func:`station_forest_figure`: one coefficient per station and pooled.

The figures are drawn without pyplot (their own Agg canvas), so nothing here opens a
window or touches global pyplot state.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from pht.orchestrator.tables import level_label, parse_term, term_label, units

logging.getLogger("matplotlib").setLevel(logging.WARNING)
if "matplotlib.pyplot" not in sys.modules:
    # Headless rendering; an interactive pyplot session that is already running is
    # left alone (figures here are drawn on their own Agg canvas either way).
    matplotlib.use("Agg")

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MIN_AT_RISK = 10
"""Curves stop where fewer than this many patients remain at risk."""
LOG_TICK_SETS = (
    (1,),
    (1, 2, 5),
    (1, 1.5, 2, 3, 5, 7),
    (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8),
)
GREY = "#888888"


def mpl_text(text: Any) -> str:
    """Text for a matplotlib label: ``$`` must not start mathtext."""
    return str(text).replace("$", r"\$")


def colors(labels: Iterable[Any]) -> dict[str, str]:
    """Plot colour of each group label, in order of first appearance."""
    unique = list(dict.fromkeys(str(label) for label in labels))
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(unique)}


def new_axes(width: float, height: float) -> tuple[Figure, Axes]:
    """Make a pyplot-free figure with one axes in a clean style."""
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    _clean(ax)
    return fig, ax


def _clean(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=9)


def time_unit(result: Mapping[str, Any]) -> str:
    """The study's time unit (parameter ``time_unit``; ``days`` when not given)."""
    parameters = result.get("parameters")
    unit = parameters.get("time_unit") if isinstance(parameters, Mapping) else None
    return str(unit) if unit else "days"


# -- Kaplan-Meier -----------------------------------------------------------------
def shown_points(curve: Mapping[str, Any], min_at_risk: int = MIN_AT_RISK) -> int:
    """How many points of a curve to draw: up to where ``min_at_risk`` remain.

    ``at_risk[j]`` patients are at risk on ``(time[j-1], time[j]]``; the curve is
    drawn through point ``j - 1`` (its drop included) and stops before the first
    ``j`` with fewer than ``min_at_risk`` at risk. A curve without ``at_risk`` is
    drawn whole.

    Examples
    --------
    >>> shown_points({"time": [0, 1, 2, 3], "at_risk": [40, 25, 9, 4]})
    2
    """
    time = curve.get("time") or []
    at_risk = curve.get("at_risk")
    if not isinstance(at_risk, list) or len(at_risk) != len(time):
        return len(time)
    for j, n in enumerate(at_risk):
        if isinstance(n, int | float) and n < min_at_risk:
            return j
    return len(time)


def _plot_curve(
    ax: Axes, label: str, curve: Mapping[str, Any], color: str, shown: int
) -> None:
    """One group's step curve, its step-wise CI band and censor marks."""
    time = list(curve["time"])[:shown]
    surv = list(curve["survival"])[:shown]
    n = curve.get("n")
    name = mpl_text(level_label(label)) + (
        f" (n = {n:,})" if isinstance(n, int) else ""
    )
    if not time:
        ax.plot([], [], color=color, linewidth=1.8, label=name + " (not drawn)")
        return
    lower = list(curve.get("ci_lower") or [])[:shown]
    upper = list(curve.get("ci_upper") or [])[:shown]
    if len(lower) == len(time) == len(upper) and None not in lower + upper:
        ax.fill_between(
            time, lower, upper, step="post", color=color, alpha=0.15, linewidth=0
        )
    ax.step(time, surv, where="post", color=color, linewidth=1.8, label=name)
    censored = (curve.get("censored") or [])[:shown]
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


def _at_risk_axes(
    ax: Axes, table: Mapping[str, Any], palette: Mapping[str, str]
) -> None:
    """The numbers at risk as text rows under the curves, one row per group."""
    times = [float(t) for t in table.get("times") or []]
    groups = list((table.get("groups") or {}).items())
    for row, (group, counts) in enumerate(groups):
        y = len(groups) - 1 - row
        color = palette.get(str(group), "#000000")
        for t, count in zip(times, counts, strict=False):
            text = "\u2014" if count is None else f"{int(count):,}"
            ax.text(t, y, text, ha="center", va="center", fontsize=8.5, color=color)
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.set_yticks(
        range(len(groups)), [mpl_text(level_label(g)) for g, _ in reversed(groups)]
    )
    for tick, (group, _) in zip(ax.get_yticklabels(), reversed(groups), strict=True):
        tick.set_color(palette.get(str(group), "#000000"))
    ax.tick_params(axis="x", bottom=False, labelbottom=False)
    ax.tick_params(axis="y", left=False, labelsize=9, pad=10)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title("Number at risk", loc="left", fontsize=9, fontweight="bold")


def km_figure(result: Mapping[str, Any], min_at_risk: int = MIN_AT_RISK) -> Figure:
    """Kaplan-Meier curves of all groups, with the numbers at risk underneath.

    Parameters
    ----------
    result : Mapping[str, Any]
        A parsed ``result.json`` with ``km`` (and, for the table, ``at_risk_table``).
    min_at_risk : int
        Each curve stops where fewer than this many patients remain at risk
        (:func:`shown_points`), as survminer and lifelines users expect.

    Returns
    -------
    matplotlib.figure.Figure
        The curves on top and, when the result has ``at_risk_table``, the counts
        on a second axes sharing the time axis.

    Raises
    ------
    ValueError
        The result has no ``km`` curves.
    """
    km = result.get("km")
    if not isinstance(km, Mapping) or not km:
        raise ValueError("the result has no Kaplan-Meier curves (no km)")
    table = result.get("at_risk_table")
    table = table if isinstance(table, Mapping) and table.get("groups") else {}
    palette = colors([*km, *table.get("groups", {})])
    rows = len(table.get("groups", {}))
    height = 4.8 + (0.3 * rows + 0.55 if rows else 0)
    fig = Figure(figsize=(9.5, height), layout="constrained")
    if rows:
        grid = fig.add_gridspec(2, 1, height_ratios=[4.8, 0.3 * rows + 0.55])
        ax = fig.add_subplot(grid[0])
        _at_risk_axes(fig.add_subplot(grid[1], sharex=ax), table, palette)
    else:
        ax = fig.add_subplot()
    _clean(ax)
    for label, curve in km.items():
        _plot_curve(
            ax, label, curve, palette[str(label)], shown_points(curve, min_at_risk)
        )
    ticks = [float(t) for t in table.get("times", [])]
    end = max((max(c["time"], default=0) for c in km.values()), default=0)
    _style_km_axes(ax, float(max([end, *ticks])), ticks, time_unit(result))
    return fig


def _style_km_axes(ax: Axes, end: float, ticks: Sequence[float], unit: str) -> None:
    """Survival axes: 0-1 on y, time on x with the at-risk times as ticks."""
    ax.set_ylim(0, 1.02)
    ax.set_xlim(-end * 0.04 if end > 0 else 0, end * 1.04 if end > 0 else 1)
    if len(ticks) > 1:
        ax.xaxis.set_major_locator(FixedLocator(list(ticks)))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    ax.set_xlabel(f"Time ({mpl_text(unit)})")
    ax.set_ylabel("Survival probability")
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.legend(frameon=False, loc="lower left", fontsize=9)


# -- forest plots -----------------------------------------------------------------
@dataclass(frozen=True)
class ForestRow:
    """One row of a forest plot.

    ``kind`` is ``heading`` (a covariate's name, no estimate), ``reference`` (the
    reference level: HR 1, no bar), ``term`` (an estimate with its CI) or
    ``pooled`` (a pooled estimate, drawn as a diamond).
    """

    label: str
    kind: str
    hr: float = math.nan
    lower: float = math.nan
    upper: float = math.nan
    p_value: float | None = None


def log_ticks(low: float, high: float) -> list[float]:
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


def hr_text(hr: float, lower: float, upper: float) -> str:
    """``1.01 (0.91\u20131.12)``: two decimals, three when the CI is narrow.

    >>> hr_text(1.01428, 1.01178, 1.01679)
    '1.014 (1.012\u20131.017)'
    """
    if not all(math.isfinite(v) for v in (hr, lower, upper)):
        return "\u2014"
    digits = 3 if upper - lower < 0.05 else 2

    def f(v: float) -> str:
        return f"{v:.{digits}f}" if v < 1000 else f"{v:.3g}"

    return f"{f(hr)} ({f(lower)}\u2013{f(upper)})"


def p_text(p: float | None) -> str:
    """A p-value for a figure column: ``0.047``, ``<0.001``."""
    if p is None or not math.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def draw_forest(rows: Sequence[ForestRow], xlabel: str) -> Figure:
    """Draw forest rows: labels left, bars on a log axis, numbers right."""
    n = len(rows)
    fig = Figure(figsize=(9.0, 0.32 * n + 1.3), layout="constrained")
    ax, text = fig.subplots(1, 2, sharey=True, width_ratios=[3.0, 1.55])
    _clean(ax)
    values = [1.0]
    for i, row in enumerate(rows):
        y = n - 1 - i
        if row.kind == "reference":
            ax.plot([1.0], [y], marker="o", markersize=5, mfc="white", color=GREY)
            text.text(0.0, y, "1 (reference)", va="center", fontsize=9, color=GREY)
            continue
        if row.kind == "heading":
            continue
        finite = [
            v for v in (row.lower, row.hr, row.upper) if math.isfinite(v) and v > 0
        ]
        values += finite
        if len(finite) == 3:
            color = "#000000" if row.kind == "pooled" else PALETTE[0]
            ax.plot([row.lower, row.upper], [y, y], color=color, linewidth=1.8)
            marker = "D" if row.kind == "pooled" else "s"
            ax.plot([row.hr], [y], marker=marker, markersize=6, color=color)
        text.text(
            0.0,
            y,
            hr_text(row.hr, row.lower, row.upper),
            va="center",
            fontsize=9,
            fontweight="bold" if row.kind == "pooled" else "normal",
        )
        text.text(0.97, y, p_text(row.p_value), va="center", ha="right", fontsize=9)
    ax.axvline(1.0, color=GREY, linewidth=1, linestyle="--")
    ax.set_xscale("log")
    low, high = min(values) / 1.25, max(values) * 1.25
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(FixedLocator(log_ticks(low, high)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_yticks(range(n), [mpl_text(r.label) for r in reversed(rows)])
    for tick, row in zip(ax.get_yticklabels(), reversed(rows), strict=True):
        if row.kind in ("heading", "pooled"):
            tick.set_fontweight("bold")
    ax.tick_params(axis="y", left=False)
    ax.set_ylim(-0.7, n + 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x", linewidth=0.6)
    text.set_xlim(0, 1)
    text.axis("off")
    text.text(0.0, n, "HR (95% CI)", va="center", fontsize=9, fontweight="bold")
    text.text(0.97, n, "p", va="center", ha="right", fontsize=9, fontweight="bold")
    return fig


def _estimate(label: str, p: Mapping[str, Any], kind: str = "term") -> ForestRow:
    def f(key: str) -> float:
        v = p.get(key)
        return float(v) if isinstance(v, int | float) else math.nan

    pv = p.get("p_value")
    return ForestRow(
        label,
        kind,
        f("hr"),
        f("ci_lower"),
        f("ci_upper"),
        float(pv) if isinstance(pv, int | float) else None,
    )


def forest_rows(result: Mapping[str, Any]) -> list[ForestRow]:
    """Rows of the Cox forest plot, grouped by covariate in model order.

    A categorical covariate gets a heading row, its reference level (from
    ``cox.reference_levels``) and one row per other level; a numeric covariate
    one row under its (unit-aware) label.
    """
    cox = result.get("cox")
    if not isinstance(cox, Mapping) or not isinstance(cox.get("params"), Mapping):
        raise ValueError("the result has no Cox model (no cox.params)")
    params = cox["params"]
    if not params:
        raise ValueError("the result has no Cox model (no cox.params)")
    references = cox.get("reference_levels") or {}
    given = units(result)
    grouped: dict[str, list[tuple[str, str | None]]] = {}
    for name in params:
        column, level = parse_term(name)
        grouped.setdefault(column, []).append((name, level))
    rows: list[ForestRow] = []
    for column, terms in grouped.items():
        if all(level is None for _, level in terms):
            rows += [_estimate(term_label(n, given), params[n]) for n, _ in terms]
            continue
        rows.append(ForestRow(column, "heading"))
        reference = references.get(column)
        if reference is not None:
            rows.append(ForestRow(f"    {level_label(reference)}", "reference"))
        rows += [
            _estimate(f"    {level_label(level)}", params[n]) for n, level in terms
        ]
    return rows


def forest_figure(result: Mapping[str, Any]) -> Figure:
    """Forest plot of a Cox model's hazard ratios.

    Parameters
    ----------
    result : Mapping[str, Any]
        A parsed ``result.json`` with ``cox``.

    Returns
    -------
    matplotlib.figure.Figure
        One row per coefficient, grouped by covariate, with reference rows, a log
        hazard-ratio axis with a line at 1 and the numbers in a column.

    Raises
    ------
    ValueError
        The result has no ``cox.params``.
    """
    return draw_forest(forest_rows(result), "Hazard ratio (95% CI, log scale)")


def station_forest_figure(result: Mapping[str, Any], names: Sequence[str]) -> Figure:
    """Per-station and pooled hazard ratios of the parameters ``names``.

    Uses ``cox.station_estimates`` (station label -> parameter -> estimate) and the
    pooled ``cox.params``; raises :class:`ValueError` when either is absent.
    """
    cox = result.get("cox")
    if not isinstance(cox, Mapping):
        raise ValueError("the result has no Cox model (no cox)")
    stations = cox.get("station_estimates")
    if not isinstance(stations, Mapping) or not stations:
        raise ValueError("the result has no per-station estimates")
    params = cox.get("params") or {}
    rows: list[ForestRow] = []
    for name in names:
        rows.append(ForestRow(term_label(name, units(result)), "heading"))
        for station, estimates in stations.items():
            if isinstance(estimates, Mapping) and name in estimates:
                rows.append(_estimate(f"    {station}", estimates[name]))
        if name in params:
            rows.append(_estimate("    pooled", params[name], "pooled"))
    return draw_forest(rows, "Hazard ratio (95% CI, log scale)")
