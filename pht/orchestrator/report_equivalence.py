"""``report.html`` sections of an ``equivalence`` study.

The result of :func:`pht.orchestrator.equivalence.run_equivalence` holds, besides the
usual header, ``equivalence`` (per outcome the hypothesis and the ``adjusted`` and
``crude`` effects with their verdicts), ``savings`` (the quick scan) and ``analyses``
(each sub-study's own sections). This module lays them out with the report's toolkit
(:mod:`pht.orchestrator.report`); :mod:`pht.orchestrator.report` registers it:

- :func:`answer`: the primary outcome's verdict in one sentence and one table (per
  outcome: measure, hypothesis with its margins, adjusted estimate with the decisive
  CI, verdict badge, crude estimate beside it);
- :func:`equivalence`: the classic equivalence plot (:func:`equivalence_figure`: one
  panel per outcome, adjusted and crude as two rows, the decisive ``1 - 2 alpha`` CI
  against the shaded region the margins allow and the line of no difference; ratio
  measures on a log axis) and the verdict table with the numbers that decided it;
- :func:`savings`: the annual savings with their band and the one-way sensitivity
  (:func:`savings_figure`, a tornado), the regimens' costs and the inputs; a plain
  warning when the primary outcome did not show the non-inferiority the savings
  assume;
- :func:`analyses`: the balance (love) plot of any analysis with an ``iptw`` section
  (:func:`love_figure`), then one row per analysis (outcome, role, train, stations
  that took part, request id) and, folded, its own sections drawn by the train
  plugins' renderers. A failed analysis shows its error line.

Every figure and table is exported (``figures/*.png|svg``, ``tables/*.csv``); the
figures of a folded analysis are named after it (``overall_survival_adjusted_forest``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from pht.algorithms.equivalence import MEASURES
from pht.orchestrator import exports
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

__all__ = [
    "SECTIONS",
    "analyses",
    "answer",
    "balance_rows",
    "equivalence",
    "equivalence_figure",
    "love_figure",
    "savings",
    "savings_figure",
]

MEASURE_LABELS = {
    "hazard_ratio": "Hazard ratio",
    "odds_ratio": "Odds ratio",
    "risk_ratio": "Risk ratio",
    "risk_difference": "Risk difference",
    "mean_difference": "Mean difference",
    "ratio_of_geometric_means": "Ratio of geometric means",
    "rmst_difference": "RMST difference",
}

SHOWN = frozenset({"equivalent", "non-inferior", "superior"})
"""Verdicts that show what the savings assume (at least non-inferiority)."""

VERDICT_COLORS = {
    "equivalent": "#1a7f37",
    "non-inferior": "#1a7f37",
    "superior": "#1a7f37",
    "inconclusive": "#9a6700",
    "inferior": "#b42318",
}
NO_VERDICT_COLOR = "#5f6b7a"
ROLES = ("adjusted", "crude")
ROLE_STYLE = {"adjusted": (PALETTE[0], "s", True), "crude": (PALETTE[1], "o", False)}
"""Colour, marker and whether the marker is filled, per analysis role."""

BALANCE_LINE = 0.1
"""Absolute standardised mean difference below which a covariate counts as balanced."""

ANALYSIS_KEYS = frozenset(
    {"outcome", "role", "adjustment", "train", "train_digest", "parameters", "error"}
    | {"stations", "partial", "warnings", "provenance"}
)
"""Keys of an analysis that are not sections of its train."""

HEADER_KEYS = ("question", "purpose", "dataset", "created", "pht_version")
"""Header keys of the study a folded analysis's renderers may read."""


# -- small formatting helpers -----------------------------------------------------
def _finite(value: Any) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _words(value: Any) -> str:
    """``weight_based`` -> ``weight based`` (escaped)."""
    return escape(str(value).replace("_", " ")) if value is not None else MISSING


def _is_ratio(outcome: Mapping[str, Any]) -> bool:
    measure = outcome.get("measure")
    if measure in MEASURES:
        return MEASURES[str(measure)] == "ratio"
    return outcome.get("null") == 1


def _measure(outcome: Mapping[str, Any]) -> str:
    measure = str(outcome.get("measure"))
    return MEASURE_LABELS.get(measure, measure.replace("_", " ").capitalize())


def _lower_first(text: str) -> str:
    """``Hazard ratio`` -> ``hazard ratio``; ``RMST difference`` stays."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _value(value: Any, ratio: bool) -> str:
    """An estimate, bound or margin: 3 decimals for ratios, 4 digits otherwise."""
    if not _finite(value):
        return MISSING
    return number(value, 3) if ratio else number(value)


def _interval(lower: Any, upper: Any, ratio: bool) -> str:
    if not (_finite(lower) or _finite(upper)):
        return MISSING
    return f"{_value(lower, ratio)} to {_value(upper, ratio)}"


def _pct(level: Any) -> str:
    return f"{100 * level:g}%" if _finite(level) else MISSING


def _decisive(effect: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The CI the verdict reads: ``(level, lower, upper)`` (``1 - 2 alpha``)."""
    for prefix in ("decisive_", "tost_"):
        if f"{prefix}lower" in effect or f"{prefix}upper" in effect:
            return tuple(  # type: ignore[return-value]
                effect.get(f"{prefix}{k}") for k in ("level", "lower", "upper")
            )
    return effect.get("level"), effect.get("ci_lower"), effect.get("ci_upper")


def _usual(effect: Mapping[str, Any]) -> tuple[Any, Any, Any] | None:
    """The ``1 - alpha`` CI, when the result holds one distinct from the decisive.

    A ``1 - alpha`` interval contains the ``1 - 2 alpha`` one; bounds equal to the
    decisive ones mean the result holds no separate ``1 - alpha`` interval.
    """
    level, low, high = (effect.get(k) for k in ("ci_level", "ci_lower", "ci_upper"))
    d_level, d_low, d_high = _decisive(effect)
    if not (_finite(level) and _finite(low) and _finite(high)) or level == d_level:
        return None
    if _finite(d_low) and _finite(d_high) and not (low < d_low and high > d_high):
        return None
    return level, low, high


def _badge(verdict: Any) -> str:
    """A verdict as a coloured badge (``no verdict`` when there is none)."""
    text = str(verdict) if verdict else "no verdict"
    color = VERDICT_COLORS.get(text, NO_VERDICT_COLOR)
    style = (
        f"display:inline-block;padding:0 9px;border-radius:999px;color:#fff;"
        f"background:{color};font-size:13px;font-weight:600;white-space:nowrap;"
        "-webkit-print-color-adjust:exact;print-color-adjust:exact"
    )
    return f'<span class="verdict" style="{style}">{escape(text)}</span>'


def _sub(text: str) -> str:
    return f'<span class="sub">{text}</span>' if text else ""


def _eur(value: Any, digits: int = 1) -> str:
    """``EUR 15.9 million``, ``EUR 24,872`` (escaped; a true minus sign)."""
    if not _finite(value):
        return MISSING
    sign = "\u2212" if value < 0 else ""
    size = abs(float(value))
    if size >= 1e6:
        return f"EUR {sign}{size / 1e6:,.{digits}f} million"
    return f"EUR {sign}{size:,.0f}"


def _outcomes(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The outcomes, primary first (then in study order)."""
    block = result.get("equivalence")
    found = block.get("outcomes") if isinstance(block, Mapping) else None
    rows = [o for o in found or [] if isinstance(o, Mapping)]
    return sorted(rows, key=lambda o: not o.get("primary"))


def _effect(outcome: Mapping[str, Any], role: str) -> Mapping[str, Any] | None:
    found = outcome.get(role)
    return found if isinstance(found, Mapping) else None


def _level(outcome: Mapping[str, Any]) -> Any:
    """The decisive level of an outcome: ``1 - 2 alpha``."""
    for role in ROLES:
        effect = _effect(outcome, role)
        if effect is not None and _finite(_decisive(effect)[0]):
            return _decisive(effect)[0]
    alpha = outcome.get("alpha")
    return 1 - 2 * alpha if _finite(alpha) else None


def hypothesis_text(outcome: Mapping[str, Any]) -> str:
    """The hypothesis and its margin(s) in words (escaped).

    >>> hypothesis_text({"hypothesis": "non_inferiority", "measure": "hazard_ratio",
    ...                  "upper": 1.15, "higher_is_better": False})
    'non-inferiority: upper bound below 1.150'
    """
    ratio = _is_ratio(outcome)
    lower, upper = outcome.get("lower"), outcome.get("upper")
    if outcome.get("hypothesis") == "equivalence":
        return f"equivalence: within {_interval(lower, upper, ratio)}"
    if outcome.get("hypothesis") == "non_inferiority":
        if _finite(upper) and not outcome.get("higher_is_better"):
            return f"non-inferiority: upper bound below {_value(upper, ratio)}"
        if _finite(lower):
            return f"non-inferiority: lower bound above {_value(lower, ratio)}"
    return _words(outcome.get("hypothesis"))


def _estimate_cell(effect: Mapping[str, Any] | None, ratio: bool) -> str:
    """Estimate with its decisive CI, or why there is none."""
    if effect is None:
        return MISSING
    if "error" in effect:
        return '<span class="warn">not estimated</span>'
    level, low, high = _decisive(effect)
    return (
        f"{_value(effect.get('estimate'), ratio)}"
        f"{_sub(f'{_pct(level)} CI {_interval(low, high, ratio)}')}"
    )


def _effect_record(prefix: str, effect: Mapping[str, Any] | None) -> dict[str, Any]:
    """An effect's numbers for a CSV row, full precision, keys prefixed."""
    if effect is None:
        return {}
    return {
        f"{prefix}_{k}": v
        for k, v in effect.items()
        if not isinstance(v, Mapping | list) or k == "notes"
    }


# -- the answer -------------------------------------------------------------------
def _lead(result: Mapping[str, Any], outcomes: Sequence[Mapping[str, Any]]) -> str:
    """The answer sentence: the study's own, else built from the primary outcome."""
    block = result.get("equivalence") or {}
    given = block.get("answer") if isinstance(block, Mapping) else None
    if isinstance(given, str) and given:
        return escape(given)
    primary = outcomes[0]
    adjusted = _effect(primary, "adjusted") or {}
    if "verdict" not in adjusted:
        reason = adjusted.get("error") or "its analysis did not run"
        return f"No verdict on the primary outcome {escape(primary.get('name'))}: {escape(reason)}."
    ratio = _is_ratio(primary)
    level, low, high = _decisive(adjusted)
    return (
        f"{escape(adjusted.get('verdict')).capitalize()} on "
        f"{escape(primary.get('name'))}: {escape(_lower_first(_measure(primary)))} "
        f"{_value(adjusted.get('estimate'), ratio)} ({_pct(level)} CI "
        f"{_interval(low, high, ratio)}; {escape(adjusted.get('rule'))})."
    )


def _crude_note(primary: Mapping[str, Any]) -> str:
    """Say so when the crude analysis of the primary outcome reads differently."""
    adjusted, crude = _effect(primary, "adjusted"), _effect(primary, "crude")
    if adjusted is None or crude is None:
        return ""
    a, c = adjusted.get("verdict"), crude.get("verdict")
    if not a or not c:
        return ""
    if a == c:
        return f'<p class="note">The crude analysis reads the same ({escape(c)}).</p>'
    return (
        f'<p class="warn">The crude analysis would read <strong>{escape(c)}</strong>, '
        f"the adjusted one reads <strong>{escape(a)}</strong>: the arms differ in case "
        "mix (confounding by indication), so read the adjusted analysis.</p>"
    )


def answer(result: Mapping[str, Any]) -> str:
    """The primary outcome's verdict in one sentence and one table (all outcomes)."""
    outcomes = _outcomes(result)
    if not outcomes:
        return ""
    block = result.get("equivalence") or {}
    comparison = block.get("comparison") if isinstance(block, Mapping) else None
    versus = ""
    if isinstance(comparison, Mapping):
        versus = (
            f'<p class="note">{_words(comparison.get("treatment"))} versus '
            f"{_words(comparison.get('reference'))} (column "
            f"<code>{escape(comparison.get('column'))}</code>); an estimate above the "
            "line of no difference means a higher value in the first.</p>"
        )
    rows, frame = [], []
    for outcome in outcomes:
        ratio = _is_ratio(outcome)
        adjusted, crude = _effect(outcome, "adjusted"), _effect(outcome, "crude")
        name = escape(outcome.get("name")) + (
            _sub("primary") if outcome.get("primary") else _sub("secondary")
        )
        crude_cell = _estimate_cell(crude, ratio)
        if crude is not None and crude.get("verdict"):
            crude_cell += _sub(escape(crude["verdict"]))
        rows.append(
            [
                name,
                escape(_measure(outcome)),
                hypothesis_text(outcome),
                _estimate_cell(adjusted, ratio),
                _badge((adjusted or {}).get("verdict")),
                crude_cell,
            ]
        )
        frame.append(
            {
                k: outcome.get(k)
                for k in ("name", "primary", "measure", "hypothesis", "lower", "upper")
            }
            | {"null": outcome.get("null"), "adjustment": outcome.get("adjustment")}
            | _answer_numbers("adjusted", adjusted)
            | _answer_numbers("crude", crude)
        )
    header = ["Outcome", "Measure", "Hypothesis", "Adjusted", "Verdict", "Crude"]
    body = table(
        header, rows, "lllrlr", "answer", name="answer", frame=pd.DataFrame(frame)
    )
    return (
        f'<p class="lead">{_lead(result, outcomes)}</p>'
        f"{_crude_note(outcomes[0])}{body}{versus}"
    )


def _answer_numbers(role: str, effect: Mapping[str, Any] | None) -> dict[str, Any]:
    if effect is None:
        return {f"{role}_verdict": None}
    level, low, high = _decisive(effect)
    return {
        f"{role}_estimate": effect.get("estimate"),
        f"{role}_level": level,
        f"{role}_lower": low,
        f"{role}_upper": high,
        f"{role}_verdict": effect.get("verdict"),
        f"{role}_error": effect.get("error"),
    }


# -- the equivalence plot ---------------------------------------------------------
def _panel_limits(
    outcome: Mapping[str, Any], effects: Sequence[Mapping[str, Any]], ratio: bool
) -> tuple[float, float]:
    values = [
        float(v)
        for v in (outcome.get("lower"), outcome.get("upper"), outcome.get("null"))
        if _finite(v)
    ]
    for effect in effects:
        _, low, high = _decisive(effect)
        values += [float(v) for v in (low, high, effect.get("estimate")) if _finite(v)]
    if ratio:
        values = [v for v in values if v > 0] or [1.0]
        low, high = min(values), max(values)
        span = max(high / low, 1.1)
        pad = span**0.12
        return low / pad, high * pad
    if not values:
        return -1.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.12 or max(abs(high) * 0.12, 0.1)
    return low - pad, high + pad


def _acceptable(
    outcome: Mapping[str, Any], limits: tuple[float, float]
) -> tuple[float, float] | None:
    """The region the decisive CI must lie in: inside the margins, or beyond one."""
    lower, upper = outcome.get("lower"), outcome.get("upper")
    if outcome.get("hypothesis") == "equivalence" and _finite(lower) and _finite(upper):
        return float(lower), float(upper)
    if outcome.get("higher_is_better") and _finite(lower):
        return float(lower), limits[1]
    if not outcome.get("higher_is_better") and _finite(upper):
        return limits[0], float(upper)
    return None


def _style_axis(ax: Any, limits: tuple[float, float], ratio: bool) -> None:
    ax.set_xlim(*limits)
    if ratio:
        ax.set_xscale("log")
        ax.set_xlim(*limits)
        ax.xaxis.set_major_locator(FixedLocator(log_ticks(*limits)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=7))
        ax.xaxis.set_major_formatter(
            FuncFormatter(lambda v, _: f"{v:,.6g}".replace("-", "\u2212"))
        )


def _panel(ax: Any, text: Any, outcome: Mapping[str, Any]) -> None:
    """One outcome: shaded region, margins, null, and one row per analysis."""
    ratio = _is_ratio(outcome)
    shown = [(r, e) for r in ROLES if (e := _effect(outcome, r)) is not None]
    drawn = [e for _, e in shown if _finite(e.get("estimate"))]
    limits = _panel_limits(outcome, drawn, ratio)
    _style_axis(ax, limits, ratio)
    region = _acceptable(outcome, limits)
    if region is not None:
        ax.axvspan(*region, color="#1a7f37", alpha=0.12, linewidth=0)
    for margin in (outcome.get("lower"), outcome.get("upper")):
        if _finite(margin):
            ax.axvline(float(margin), color="#1a7f37", linewidth=1.2, linestyle="--")
    if _finite(outcome.get("null")):
        ax.axvline(float(outcome["null"]), color=GREY, linewidth=1)
    n = len(shown)
    for i, (role, effect) in enumerate(shown):
        y = n - 1 - i
        color, marker, filled = ROLE_STYLE[role]
        _, low, high = _decisive(effect)
        if _finite(low) and _finite(high):
            ax.plot([low, high], [y, y], color=color, linewidth=2.2)
        if _finite(effect.get("estimate")):
            ax.plot(
                [effect["estimate"]],
                [y],
                marker=marker,
                markersize=7,
                color=color,
                markerfacecolor=color if filled else "white",
                markeredgewidth=1.6,
            )
        label = (
            effect.get("verdict") or "no verdict"
            if "error" not in effect
            else "not estimated"
        )
        text.text(
            0.0,
            y,
            mpl_text(
                f"{_plain_value(effect.get('estimate'), ratio)} "
                f"({_plain_value(low, ratio)} to {_plain_value(high, ratio)})"
            ),
            va="center",
            fontsize=8.5,
        )
        text.text(
            0.98,
            y,
            mpl_text(label),
            va="center",
            ha="right",
            fontsize=8.5,
            fontweight="bold",
            color=VERDICT_COLORS.get(str(label), NO_VERDICT_COLOR),
        )
    ax.set_yticks(range(n), [r for r, _ in reversed(shown)])
    for tick, (role, _) in zip(ax.get_yticklabels(), reversed(shown), strict=True):
        tick.set_color(ROLE_STYLE[role][0])
    ax.set_ylim(-0.7, n - 0.3)
    ax.tick_params(axis="y", left=False)
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3, axis="x", linewidth=0.6)
    title = (
        f"{outcome.get('name')}"
        + (" (primary)" if outcome.get("primary") else "")
        + f": {_lower_first(_measure(outcome))}, {_pct(_level(outcome))} CI"
        + (", log scale" if ratio else "")
    )
    ax.set_title(mpl_text(title), loc="left", fontsize=9.5, fontweight="bold")
    text.set_xlim(0, 1)
    text.set_ylim(-0.7, n - 0.3)
    text.axis("off")


def _plain_value(value: Any, ratio: bool) -> str:
    if not _finite(value):
        return "\u2014"
    text = f"{value:.3f}" if ratio else f"{value:,.4g}"
    return text.replace("-", "\u2212")


def equivalence_figure(outcomes: Sequence[Mapping[str, Any]]) -> Figure:
    """The classic equivalence plot: one panel per outcome, adjusted and crude rows.

    Parameters
    ----------
    outcomes : Sequence[Mapping[str, Any]]
        ``result["equivalence"]["outcomes"]`` (primary first): per outcome the
        hypothesis (``hypothesis``, ``lower``, ``upper``, ``null``,
        ``higher_is_better``) and the ``adjusted`` and ``crude`` effects.

    Returns
    -------
    matplotlib.figure.Figure
        Per outcome its own x axis (log for ratio measures): the region the
        decisive CI must lie in shaded green with the margins dashed, the line of
        no difference in grey, and per analysis the estimate with its decisive
        ``1 - 2 alpha`` CI (adjusted: filled squares, crude: open circles), the
        numbers and the verdict in a column on the right.

    Raises
    ------
    ValueError
        No outcome has an adjusted or crude effect to draw.
    """
    panels = [o for o in outcomes if any(_effect(o, r) is not None for r in ROLES)]
    if not panels:
        raise ValueError("no outcome has an effect to draw")
    heights = [
        0.45 * sum(_effect(o, r) is not None for r in ROLES) + 0.75 for o in panels
    ]
    fig = Figure(figsize=(9.0, sum(heights) + 0.2), layout="constrained")
    grid = fig.add_gridspec(
        len(panels), 2, height_ratios=heights, width_ratios=[3, 1.5]
    )
    for i, outcome in enumerate(panels):
        _panel(fig.add_subplot(grid[i, 0]), fig.add_subplot(grid[i, 1]), outcome)
    return fig


# -- the verdict table ------------------------------------------------------------
def _n_cell(effect: Mapping[str, Any]) -> str:
    a, b = effect.get("n_treatment"), effect.get("n_reference")
    if not (_finite(a) or _finite(b)):
        return MISSING
    return f"{number(a)} / {number(b)}"


def _rule_cell(effect: Mapping[str, Any]) -> str:
    notes = [n for n in effect.get("notes") or [] if n]
    if effect.get("continuity_correction"):
        notes.append("0.5 added to every cell (a zero cell)")
    return escape(effect.get("rule") or "") + "".join(
        _sub(escape(note)) for note in notes
    )


def _pooled_from(result: Mapping[str, Any], outcome: Any, role: str) -> str:
    """``pools 1 of 3 stations`` when that analysis did not pool every station."""
    for analysis in (result.get("analyses") or {}).values():
        if not isinstance(analysis, Mapping) or (
            analysis.get("outcome"),
            analysis.get("role"),
        ) != (outcome, role):
            continue
        partial = analysis.get("partial")
        if isinstance(partial, Mapping) and not partial.get("complete", True):
            took, asked = partial.get("took_part"), partial.get("requested")
            return (
                f'<span class="sub"><span class="warn">pools {number(took)} of '
                f"{number(asked)} stations</span></span>"
            )
    return ""


def _verdict_rows(
    result: Mapping[str, Any],
    outcomes: Sequence[Mapping[str, Any]],
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Verdict table cells and full-precision CSV records, one per outcome and role.

    Cells: outcome and analysis, estimate, decisive CI, ``1 - alpha`` CI, p-values,
    patients per arm, verdict with its rule.
    """
    rows, frame = [], []
    for outcome in outcomes:
        ratio = _is_ratio(outcome)
        for role in ROLES:
            effect = _effect(outcome, role)
            if effect is None:
                continue
            base = {"outcome": outcome.get("name"), "analysis": role}
            method = effect.get("method")
            what = (
                f"<strong>{escape(outcome.get('name'))}</strong>"
                + _sub(escape(role) + (f": {escape(method)}" if method else ""))
                + _pooled_from(result, outcome.get("name"), role)
            )
            if "error" in effect:
                error = f'<span class="warn">{escape(effect["error"])}</span>'
                rows.append([what, *[MISSING] * 5, _badge(None) + _sub(error)])
                frame.append(base | {"error": effect["error"]})
                continue
            level, low, high = _decisive(effect)
            usual = _usual(effect)
            se = effect.get("se")
            rows.append(
                [
                    what,
                    _value(effect.get("estimate"), ratio)
                    + (_sub(f"SE {number(se)}") if _finite(se) else ""),
                    _interval(low, high, ratio) + _sub(_pct(level)),
                    (_interval(usual[1], usual[2], ratio) + _sub(_pct(usual[0])))
                    if usual
                    else MISSING,
                    _p_cell(effect),
                    _n_cell(effect),
                    _badge(effect.get("verdict")) + _sub(_rule_cell(effect)),
                ]
            )
            frame.append(
                base
                | {"measure": outcome.get("measure")}
                | {"hypothesis": outcome.get("hypothesis")}
                | {"margin_lower": outcome.get("lower")}
                | {"margin_upper": outcome.get("upper")}
                | {
                    k: (" | ".join(map(str, v)) if isinstance(v, list) else v)
                    for k, v in effect.items()
                    if not isinstance(v, Mapping)
                }
            )
    return rows, frame


def _p_cell(effect: Mapping[str, Any]) -> str:
    """The p-value against the margin(s), the TOST sides, and the superiority one."""
    cell = p_value(effect.get("p_value"))
    sides = [
        f"{side} {p_value(effect.get(key))}"
        for side, key in (("lower", "p_lower"), ("upper", "p_upper"))
        if _finite(effect.get(key))
    ]
    if len(sides) == 2:
        cell += _sub(", ".join(sides))
    if _finite(effect.get("p_superiority")):
        cell += _sub(f"superiority {p_value(effect['p_superiority'])}")
    return cell


def equivalence(result: Mapping[str, Any]) -> str:
    """The equivalence plot and the verdicts with the numbers that decided them."""
    block = result["equivalence"]
    outcomes = _outcomes(result)
    alpha = block.get("alpha")
    parts = []
    if any(_effect(o, r) is not None for o in outcomes for r in ROLES):
        level = _level(outcomes[0])
        caption = (
            f"Estimates with their {_pct(level)} CI (1 \u2212 2\u03b1"
            + (f", \u03b1 = {alpha:g}" if _finite(alpha) else "")
            + "): every hypothesis is tested one-sided at level \u03b1, so the verdict "
            "reads this interval: inside both margins for equivalence (TOST), its bound "
            "on the unfavourable side within the margin for non-inferiority. Shaded "
            "green: where the interval must lie; dashed: the margin(s); grey: no "
            "difference. Filled squares: adjusted analysis; open circles: crude. Ratio "
            "measures on a log scale; each outcome has its own axis."
        )
        alt = "Equivalence plot: estimates and confidence intervals per outcome against the margins"
        parts.append(
            png(equivalence_figure(outcomes), alt, caption, name="equivalence")
        )
    rows, frame = _verdict_rows(result, outcomes)
    if rows:
        header = [
            "Outcome and analysis",
            "Estimate",
            "Decisive CI",
            "CI (1 \u2212 \u03b1)",
            "p-value",
            "Patients (alt. / ref.)",
            "Verdict and rule",
        ]
        keep = [
            i
            for i in range(len(header))
            if i != 5 or any(r[5] != MISSING for r in rows)
        ]
        parts.append("<h3>Verdicts and the numbers that decided them</h3>")
        parts.append(
            table(
                [header[i] for i in keep],
                ([r[i] for i in keep] for r in rows),
                "lrrrr" + "r" * (len(keep) == 7) + "l",
                name="verdicts",
                frame=pd.DataFrame(frame),
            )
        )
        parts.append(
            '<p class="note">p-value: the one-sided p-value against the margin (for '
            "equivalence the larger of the two TOST p-values, each shown underneath), "
            "and the one-sided p-value of no benefit (superiority). The decisive CI is "
            "the 1 \u2212 2\u03b1 interval every verdict reads; the 1 \u2212 \u03b1 "
            "interval is the usual two-sided one.</p>"
        )
    missing = [
        escape(o.get("name"))
        for o in outcomes
        if all(_effect(o, r) is None for r in ROLES)
    ]
    if missing:
        parts.append(
            f'<p class="warn">No analysis of {", ".join(missing)} came back.</p>'
        )
    return section("equivalence", "Equivalence and non-inferiority", "".join(parts))


# -- the savings ------------------------------------------------------------------
def savings_figure(scan: Mapping[str, Any]) -> Figure:
    """The annual savings with their band, and the one-way sensitivity (tornado).

    Parameters
    ----------
    scan : Mapping[str, Any]
        ``result["savings"]``: ``annual_savings``, ``savings_low``/``savings_high``
        (the band) and ``sensitivity`` rows (``parameter``, ``low``, ``high``,
        ``savings_low``, ``savings_high``).

    Returns
    -------
    matplotlib.figure.Figure
        Top row the base case as a bar with its band; below it one tornado row per
        parameter, widest swing first, bars from the base case to the savings at
        the parameter's low and high values. Amounts in EUR million.

    Raises
    ------
    ValueError
        ``annual_savings`` is missing or not a finite number.
    """
    base = scan.get("annual_savings")
    if not _finite(base):
        raise ValueError("the quick scan has no annual_savings")
    rows = [
        r
        for r in scan.get("sensitivity") or []
        if isinstance(r, Mapping)
        and _finite(r.get("savings_low"))
        and _finite(r.get("savings_high"))
    ]
    rows.sort(key=lambda r: -abs(r["savings_high"] - r["savings_low"]))
    scale = (
        1e6 if max(abs(base), *(abs(r["savings_high"]) for r in rows)) >= 1e6 else 1.0
    )
    unit = "EUR million" if scale == 1e6 else "EUR"
    n = len(rows) + 1
    fig = Figure(figsize=(9.0, 0.5 * n + 1.3), layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.tick_params(labelsize=9)
    b = base / scale
    labels = ["Annual savings"]
    y0 = n - 1
    ax.barh([y0], [b], color=PALETTE[0], height=0.55)
    low, high = scan.get("savings_low"), scan.get("savings_high")
    if _finite(low) and _finite(high):
        ax.errorbar(
            [b],
            [y0],
            xerr=[[b - low / scale], [high / scale - b]],
            fmt="none",
            ecolor="#000000",
            capsize=5,
            linewidth=1.4,
        )
        band = scan.get("band")
        labels[0] += f" (\u00b1{100 * band:g}%)" if _finite(band) else " (band)"
    for i, row in enumerate(rows):
        y = n - 2 - i
        for value, color in (
            (row["savings_low"], PALETTE[1]),
            (row["savings_high"], PALETTE[2]),
        ):
            ax.barh([y], [value / scale - b], left=b, color=color, height=0.55)
        labels.append(
            f"{str(row.get('parameter')).replace('_', ' ')} "
            f"{_plain(row.get('low'))} to {_plain(row.get('high'))}"
        )
    ax.axvline(b, color=GREY, linewidth=1, linestyle="--")
    ax.axvline(0, color="#000000", linewidth=0.8)
    ax.set_yticks(range(n), [mpl_text(t) for t in reversed(labels)])
    ax.tick_params(axis="y", left=False)
    ax.set_xlabel(f"Annual savings ({unit})")
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v:,.6g}".replace("-", "\u2212"))
    )
    ax.grid(alpha=0.3, axis="x", linewidth=0.6)
    if rows:
        handles = [
            Patch(color=PALETTE[1], label="savings at the low value"),
            Patch(color=PALETTE[2], label="savings at the high value"),
        ]
        fig.legend(
            handles=handles,
            loc="outside upper right",
            ncols=2,
            frameon=False,
            fontsize=8.5,
        )
    return fig


def _plain(value: Any) -> str:
    if not _finite(value):
        return "\u2014"
    return f"{value:,.4g}".replace("-", "\u2212")


REGIMEN_COLUMNS = (
    ("price_per_mg", "Price per mg (EUR)", 2),
    ("dose_mg", "Dose (mg)", None),
    ("interval_weeks", "Interval (weeks)", None),
    ("administrations_per_year", "Administrations / year", 2),
    ("cost_per_patient_year", "Cost per patient-year (EUR)", 0),
)
"""Columns of the regimens table: key, title, decimals."""


def _regimens(scan: Mapping[str, Any]) -> str:
    """Cost per patient-year of both regimens and what it came from."""
    regimens = [
        (role, scan[role])
        for role in ("standard", "alternative")
        if isinstance(scan.get(role), Mapping)
    ]
    if not regimens:
        return ""
    rows = []
    for role, regimen in regimens:
        basis = regimen.get("basis")
        where = escape(role) + (f" &middot; {_words(basis)}" if basis else "")
        rows.append(
            [_words(regimen.get("regimen") or role) + _sub(where)]
            + [
                number(regimen.get(k), digits) if _finite(regimen.get(k)) else MISSING
                for k, _, digits in REGIMEN_COLUMNS
            ]
        )
    frame = pd.DataFrame([{"role": role} | dict(r) for role, r in regimens])
    header = ["Regimen", *(title for _, title, _ in REGIMEN_COLUMNS)]
    return "<h3>Cost per patient-year</h3>" + table(
        header, rows, "l", name="savings_regimens", frame=frame
    )


def _inputs(scan: Mapping[str, Any]) -> str:
    items = [
        ("Patients per year", number(scan.get("patients_per_year"))),
        (
            "Uptake (share who would switch)",
            f"{100 * scan['uptake']:g}%" if _finite(scan.get("uptake")) else MISSING,
        ),
        ("Saving per patient-year", _eur(scan.get("saving_per_patient_year"))),
        ("Annual savings", _eur(scan.get("annual_savings"), 2)),
        (
            "Band",
            f"\u00b1{100 * scan['band']:g}%: {_eur(scan.get('savings_low'), 2)} to "
            f"{_eur(scan.get('savings_high'), 2)}"
            if _finite(scan.get("band"))
            else MISSING,
        ),
    ]
    keys = (
        "drug",
        "patients_per_year",
        "uptake",
        "saving_per_patient_year",
        "annual_savings",
        "band",
        "savings_low",
        "savings_high",
    )
    frame = pd.DataFrame([{"item": k, "value": scan.get(k)} for k in keys if k in scan])
    return "<h3>Inputs and result</h3>" + table(
        ["Item", "Value"],
        [[escape(k), v] for k, v in items],
        "ll",
        "kv",
        name="savings",
        frame=frame,
    )


def _sensitivity(scan: Mapping[str, Any]) -> str:
    rows = [r for r in scan.get("sensitivity") or [] if isinstance(r, Mapping)]
    if not rows:
        return ""
    body = [
        [
            _words(r.get("parameter")),
            escape(r.get("unit") or ""),
            number(r.get("base")),
            number(r.get("low")),
            number(r.get("high")),
            number(r.get("savings_low"), 0),
            number(r.get("savings_high"), 0),
        ]
        for r in rows
    ]
    header = [
        "Parameter",
        "Unit",
        "Base",
        "Low",
        "High",
        "Savings at low (EUR)",
        "Savings at high (EUR)",
    ]
    return "<h3>One-way sensitivity</h3>" + table(
        header, body, "ll", name="savings_sensitivity", frame=pd.DataFrame(rows)
    )


def _assumption(result: Mapping[str, Any]) -> str:
    """Whether the primary outcome showed what the savings assume; a warning if not."""
    outcomes = _outcomes(result)
    if not outcomes:
        return (
            '<p class="warn"><strong>These savings assume a non-inferiority that this '
            "result does not show</strong> (it holds no verdict).</p>"
        )
    primary = outcomes[0]
    adjusted = _effect(primary, "adjusted") or {}
    verdict = adjusted.get("verdict")
    name = escape(primary.get("name"))
    if verdict in SHOWN:
        return (
            f'<p class="note">The primary outcome ({name}) was shown {escape(verdict)}'
            ", the condition these savings rest on.</p>"
        )
    shown = f"the verdict is {escape(verdict)}" if verdict else "there is no verdict"
    return (
        '<p class="warn" role="alert"><strong>These savings assume a non-inferiority '
        f"that was not shown</strong>: on the primary outcome ({name}) {shown}. Do not "
        "read them as the savings of a safe dose reduction.</p>"
    )


def savings(result: Mapping[str, Any]) -> str:
    """The quick scan: savings with their band, the assumption, inputs, sensitivity."""
    scan = result["savings"]
    if not isinstance(scan, Mapping):
        raise TypeError("savings is not a mapping")
    if "error" in scan:
        body = f'<p class="warn">No quick scan: {escape(scan["error"])}</p>'
        return section("savings", "Quick scan of savings", body)
    total = scan.get("annual_savings")
    drug = escape(scan.get("drug") or "the drug")
    verb = "saves" if not _finite(total) or total >= 0 else "costs"
    shown = abs(total) if _finite(total) else total
    lead = (
        f'<p class="lead">Switching to the alternative regimen of {drug} {verb} '
        f"{_eur(shown)} a year"
    )
    if _finite(scan.get("band")):
        lead += (
            f" (\u00b1{100 * scan['band']:g}%: {_eur(scan.get('savings_low'))} to "
            f"{_eur(scan.get('savings_high'))})"
        )
    lead += (
        f": {number(scan.get('patients_per_year'))} patients a year \u00d7 uptake "
        + (f"{100 * scan['uptake']:g}%" if _finite(scan.get("uptake")) else MISSING)
        + f" \u00d7 {_eur(scan.get('saving_per_patient_year'))} per patient-year.</p>"
    )
    parts = [lead, _assumption(result)]
    if _finite(total):
        caption = (
            "Top: the annual savings with their uncertainty band. Below: one-way "
            "sensitivity, each parameter varied over its range with the others at their "
            "base values (widest first); the dashed line is the base case."
        )
        alt = "Annual savings with their band and a tornado plot of the one-way sensitivity"
        parts.append(png(savings_figure(scan), alt, caption, name="savings"))
    parts += [_inputs(scan), _regimens(scan), _sensitivity(scan)]
    if scan.get("formula"):
        parts.append(
            f'<p class="note">{escape(scan["formula"])}. Drug costs only, list prices.</p>'
        )
    return section("savings", "Quick scan of savings", "".join(parts))


# -- balance (love) plot ----------------------------------------------------------
def balance_rows(balance: Any) -> list[tuple[str, float | None, float | None]]:
    """``(term, SMD before, SMD after)`` from a list of rows or a term -> row mapping.

    >>> balance_rows({"age": {"smd_before": 0.3, "smd_after": 0.02}})
    [('age', 0.3, 0.02)]
    """
    if isinstance(balance, Mapping):
        items = [
            (str(term), row)
            for term, row in balance.items()
            if isinstance(row, Mapping)
        ]
    elif isinstance(balance, list):
        items = [
            (str(row.get("term")), row)
            for row in balance
            if isinstance(row, Mapping) and row.get("term") is not None
        ]
    else:
        return []

    def f(value: Any) -> float | None:
        return float(value) if _finite(value) else None

    return [(t, f(r.get("smd_before")), f(r.get("smd_after"))) for t, r in items]


def _balances(result: Mapping[str, Any]) -> list[tuple[list[str], list[Any]]]:
    """Balance tables of the analyses, identical ones merged: (analyses, rows)."""
    found: list[tuple[list[str], list[Any]]] = []
    for key, analysis in (result.get("analyses") or {}).items():
        iptw = analysis.get("iptw") if isinstance(analysis, Mapping) else None
        if not isinstance(iptw, Mapping):
            continue
        rows = balance_rows(iptw.get("balance"))
        if not rows:
            continue
        for names, known in found:
            if known == rows:
                names.append(str(key))
                break
        else:
            found.append(([str(key)], rows))
    return found


def love_figure(rows: Sequence[tuple[str, float | None, float | None]]) -> Figure:
    """Love plot: absolute standardised mean differences before and after weighting.

    Parameters
    ----------
    rows : Sequence[tuple[str, float | None, float | None]]
        ``(term, SMD before, SMD after)`` per covariate term (:func:`balance_rows`).

    Returns
    -------
    matplotlib.figure.Figure
        One row per term (in the given order, top to bottom): before as an open
        orange circle, after as a filled blue square, joined by a line; a dashed
        line at 0.1.

    Raises
    ------
    ValueError
        No term has a finite SMD.
    """
    drawn = [r for r in rows if r[1] is not None or r[2] is not None]
    if not drawn:
        raise ValueError("no term has a standardised mean difference")
    n = len(drawn)
    fig = Figure(figsize=(7.5, 0.3 * n + 1.4), layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=9)
    largest = BALANCE_LINE
    for i, (_, before, after) in enumerate(drawn):
        y = n - 1 - i
        values = [abs(v) for v in (before, after) if v is not None]
        largest = max(largest, *values)
        if len(values) == 2:
            ax.plot(values, [y, y], color="#bbbbbb", linewidth=1)
        if before is not None:
            ax.plot([abs(before)], [y], "o", color=PALETTE[1], mfc="white", mew=1.5)
        if after is not None:
            ax.plot([abs(after)], [y], "s", color=PALETTE[0], markersize=6)
    ax.plot(
        [], [], "o", color=PALETTE[1], mfc="white", mew=1.5, label="before weighting"
    )
    ax.plot([], [], "s", color=PALETTE[0], label="after weighting")
    ax.axvline(BALANCE_LINE, color=GREY, linewidth=1, linestyle="--")
    ax.set_xlim(0, largest * 1.1)
    ax.set_yticks(range(n), [mpl_text(t) for t, _, _ in reversed(drawn)])
    ax.tick_params(axis="y", left=False)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("Absolute standardised mean difference")
    ax.grid(alpha=0.3, axis="x", linewidth=0.6)
    fig.legend(loc="outside upper right", ncols=2, frameon=False, fontsize=8.5)
    return fig


def _balance(result: Mapping[str, Any]) -> str:
    """The balance section: a love plot and a table per distinct balance table."""
    found = _balances(result)
    if not found:
        return ""
    parts = []
    for names, rows in found:
        which = ", ".join(escape(n) for n in names)
        stem = "balance" if len(found) == 1 else f"balance_{_slug(names[0])}"
        if len(found) > 1:
            parts.append(f"<h3>{which}</h3>")
        try:
            caption = (
                f"Absolute standardised mean differences of the covariates before and "
                f"after propensity-score weighting ({which}); dashed: {BALANCE_LINE:g}, "
                "below which a covariate counts as balanced."
            )
            alt = (
                "Love plot of standardised mean differences before and after weighting"
            )
            parts.append(png(love_figure(rows), alt, caption, name=stem))
        except ValueError:
            pass
        body = [
            [
                escape(term),
                number(before, 3) if before is not None else MISSING,
                number(after, 3) if after is not None else MISSING,
                (
                    '<span class="yes">yes</span>'
                    if abs(after) < BALANCE_LINE
                    else '<span class="no">no</span>'
                )
                if after is not None
                else MISSING,
            ]
            for term, before, after in rows
        ]
        frame = pd.DataFrame(rows, columns=["term", "smd_before", "smd_after"])
        parts.append(
            table(
                [
                    "Term",
                    "SMD before",
                    "SMD after",
                    f"Balanced (|SMD| < {BALANCE_LINE:g})",
                ],
                body,
                "lrrl",
                name=stem,
                frame=frame,
            )
        )
    parts.append(
        '<p class="note">SMD: the difference in the covariate\'s mean between the arms '
        "divided by the pooled standard deviation; the iptw analyses' own sections "
        "(below, under Analyses) say how it was computed.</p>"
    )
    return section("balance", "Covariate balance (love plot)", "".join(parts))


# -- the analyses -----------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "analysis"


def _took_part(analysis: Mapping[str, Any]) -> str:
    stations = [s for s in analysis.get("stations") or [] if isinstance(s, Mapping)]
    if not stations:
        return MISSING
    took = [s for s in stations if s.get("participated")]
    names = ", ".join(escape(s.get("id")) for s in took) or "none"
    cell = f"{len(took)} of {len(stations)}" + _sub(names)
    left = [s for s in stations if not s.get("participated")]
    if left:
        why = "; ".join(
            f"{escape(s.get('id'))}: "
            + escape(s.get("reason") or s.get("status") or "did not take part")
            for s in left
        )
        cell += f'<span class="sub"><span class="warn">{why}</span></span>'
    return cell


def _request(analysis: Mapping[str, Any]) -> str:
    prov = analysis.get("provenance")
    rid = prov.get("request_id") if isinstance(prov, Mapping) else None
    if not rid:
        return MISSING
    text = str(rid)
    return f'<code title="{escape(text)}">{escape(text[:8])}</code>'


def _subresult(
    result: Mapping[str, Any], analysis: Mapping[str, Any]
) -> dict[str, Any]:
    """A result of the analysis's own train, as its plugin's renderers expect."""
    header = {k: result[k] for k in HEADER_KEYS if k in result}
    return {**header, **analysis}


def _free(stem: str, taken: Mapping[str, Any]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... when taken."""
    candidate, i = stem, 2
    while candidate in taken:
        candidate, i = f"{stem}_{i}", i + 1
    return candidate


def _rehome(html: str, prefix: str, mark: tuple[int, int]) -> str:
    """Name an analysis's exports and section ids after it (no clash between two).

    Exports added since ``mark`` are renamed ``<prefix>_<stem>`` and the page's
    links follow; the renderers' ``<section id="key">`` become ``<div>`` parts with
    an ``<h3>`` title and an id starting with the prefix.
    """
    collector = exports.current()
    if collector is not None:
        figures = list(collector.figures)[mark[0] :]
        tables = list(collector.tables)[mark[1] :]
        for stem in figures:
            new = _free(f"{prefix}_{stem}", collector.figures)
            collector.figures[new] = collector.figures.pop(stem)
            for ext in ("png", "svg"):
                html = html.replace(
                    f'"{exports.FIGURES}/{stem}.{ext}"',
                    f'"{exports.FIGURES}/{new}.{ext}"',
                )
        for stem in tables:
            new = _free(f"{prefix}_{stem}", collector.tables)
            collector.tables[new] = collector.tables.pop(stem)
            html = html.replace(
                f'"{exports.TABLES}/{stem}.csv"', f'"{exports.TABLES}/{new}.csv"'
            )
    opened = re.compile(r'<section id="([^"]*)"((?: class="[^"]*")?)><h2>(.*?)</h2>')
    html, count = opened.subn(
        lambda m: f'<div id="{prefix}-{m[1]}"{m[2]}><h3>{m[3]}</h3>', html
    )
    if count and "<section" not in html:
        html = html.replace("</section>", "</div>")
    return html


def _render_analysis(
    result: Mapping[str, Any], key: str, analysis: Mapping[str, Any]
) -> str:
    """The sections of one analysis through its train plugin's renderers."""
    from pht.trains import renderers

    sections: dict[str, Renderer] = {}
    for name, renderer in renderers():
        sections.setdefault(name, renderer)
    sub = _subresult(result, analysis)
    keys = [k for k in analysis if k not in ANALYSIS_KEYS and analysis[k] is not None]
    collector = exports.current()
    prefix = _slug(key)
    parts: list[str] = []
    done: list[Renderer] = []
    for name in keys:
        found = sections.get(name)
        if found in done:
            continue
        mark = collector.mark() if collector is not None else (0, 0)
        if collector is not None:
            collector.section = name
        why = "no view for this key"
        if found is not None:
            done.append(found)
            try:
                parts.append(_rehome(found(sub), prefix, mark))
                continue
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                if collector is not None:
                    collector.rollback(mark)
                why = f"could not be laid out ({type(exc).__name__}: {exc})"
        parts.append(
            f'<div id="{prefix}-{escape(name)}"><h3>{escape(name)}</h3>'
            f'<p class="note">{escape(why)}; its content is in result.json '
            f"(analyses \u2192 {escape(key)} \u2192 {escape(name)}).</p></div>"
        )
    return "".join(parts)


def _fold(result: Mapping[str, Any], key: str, analysis: Mapping[str, Any]) -> str:
    """One analysis folded: parameters, caveats and its own sections."""
    parameters = analysis.get("parameters")
    chips = ""
    if isinstance(parameters, Mapping) and parameters:
        chips = (
            "<p>"
            + "".join(
                f'<span class="chip">{escape(k)} = <code>{escape(_compact(v))}</code></span>'
                for k, v in parameters.items()
            )
            + "</p>"
        )
    caveats = "".join(
        f'<p class="warn">{escape(w.get("category", ""))}: {escape(w.get("message", ""))}</p>'
        if isinstance(w, Mapping)
        else f'<p class="warn">{escape(w)}</p>'
        for w in analysis.get("warnings") or []
    )
    body = _render_analysis(result, key, analysis)
    summary = f"{escape(key)}: {escape(analysis.get('train'))}"
    return (
        f'<details id="{_slug(key)}"><summary>{summary}</summary>'
        f"{chips}{caveats}{body}</details>"
    )


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def analyses(result: Mapping[str, Any]) -> str:
    """The balance plot (if any), the analyses listed, each one's sections folded."""
    found = result["analyses"]
    if not isinstance(found, Mapping):
        raise TypeError("analyses is not a mapping")
    rows, frame, folds = [], [], []
    for key, analysis in found.items():
        if not isinstance(analysis, Mapping):
            continue
        error = analysis.get("error")
        prov = analysis.get("provenance")
        status = (
            f'<span class="no">failed</span>{_sub(escape(error))}'
            if error
            else '<span class="yes">done</span>'
        )
        rows.append(
            [
                escape(key),
                escape(analysis.get("outcome")),
                escape(analysis.get("role")) + _sub(_words(analysis.get("adjustment"))),
                f"<code>{escape(analysis.get('train'))}</code>",
                _took_part(analysis) if not error else MISSING,
                _request(analysis),
                status,
            ]
        )
        frame.append(
            {"analysis": key}
            | {k: analysis.get(k) for k in ("outcome", "role", "adjustment", "train")}
            | {
                "stations_took_part": " ".join(
                    str(s.get("id"))
                    for s in analysis.get("stations") or []
                    if isinstance(s, Mapping) and s.get("participated")
                ),
                "request_id": prov.get("request_id")
                if isinstance(prov, Mapping)
                else None,
                "rounds": prov.get("rounds") if isinstance(prov, Mapping) else None,
                "error": error,
            }
        )
        if not error:
            folds.append(_fold(result, str(key), analysis))
    header = ["Analysis", "Outcome", "Role", "Train", "Stations", "Request", "Status"]
    body = table(header, rows, "lllllll", name="analyses", frame=pd.DataFrame(frame))
    body += (
        '<p class="note">Each analysis is its own signed request, policy decision, '
        "budget unit and audit record; the request column shows the start of its id "
        "(the whole id on hover and in result.json).</p>"
    )
    if folds:
        body += "<h3>Each analysis in full</h3>" + "".join(folds)
    return _balance(result) + section("analyses", "Analyses", body)


SECTIONS: tuple[tuple[str, Renderer], ...] = (
    ("equivalence", equivalence),
    ("savings", savings),
    ("analyses", analyses),
)
"""Result key to renderer, in page order, for :func:`pht.orchestrator.report._sections`."""
