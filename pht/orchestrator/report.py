"""``report.html``: a self-contained page (plots as inline PNG, no external resources).

The report is a sequence of sections, one renderer per result key (:data:`SECTIONS`);
keys without a renderer are shown as JSON so results of new trains stay readable.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

Renderer = Callable[[Mapping[str, Any]], str]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d2330;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;
border-bottom:1px solid #d5d9e0;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d5d9e0;padding:.25rem .55rem;text-align:right}
th{background:#f1f3f7}td.l,th.l{text-align:left}
.meta td{text-align:left}.muted{color:#667085}.no{color:#a4262c}.yes{color:#1a7f37}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.8rem}
img{max-width:100%}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "&ndash;"
        return f"{value:.{digits}g}"
    return _e(value)


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "&ndash;"
    return "&lt;0.0001" if value < 1e-4 else f"{value:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    head = "".join(
        f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


# -- sections ---------------------------------------------------------------------------
def _stations(result: Mapping[str, Any]) -> str:
    rows = []
    for s in result["stations"]:
        took = s.get("participated")
        rows.append(
            [
                f"{_e(s['id'])}<br><span class=muted>{_e(s.get('name', ''))}</span>",
                f'<span class="{"yes" if took else "no"}">{"yes" if took else "no"}</span>',
                _num(s.get("n")),
                _num(s.get("events")),
                _num(s.get("excluded")),
                _e(s.get("reason") or ""),
            ]
        )
    return "<h2>Stations</h2>" + _table(
        ["station", "took part", "n", "events", "excluded", "reason"], rows
    )


def _km(result: Mapping[str, Any]) -> str:
    km = result["km"]
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    for label, curve in km.items():
        (line,) = ax.step(
            curve["time"], curve["survival"], where="post", label=f"{label}", lw=1.6
        )
        ax.fill_between(
            curve["time"],
            curve["ci_lower"],
            curve["ci_upper"],
            step="post",
            alpha=0.18,
            color=line.get_color(),
        )
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel("time (days)")
    ax.set_ylabel("survival probability")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    parts = ["<h2>Kaplan-Meier survival (95% CI, log(-log))</h2>", _png(fig)]
    table = result.get("at_risk_table")
    if table:
        header = ["number at risk"] + [_num(t, 6) for t in table["times"]]
        rows = [[_e(g)] + [_num(int(v)) for v in counts]
                for g, counts in table["groups"].items()]
        parts.append(_table(header, rows))
    rows = []
    for label, curve in km.items():
        m = curve["median"]
        est = "not reached" if m["estimate"] is None else _num(m["estimate"], 6)
        lo = "not reached" if m["ci_lower"] is None else _num(m["ci_lower"], 6)
        hi = "not reached" if m["ci_upper"] is None else _num(m["ci_upper"], 6)
        rows.append([_e(label), _num(curve["n"]), _num(curve["events"]), est, lo, hi])
    parts.append("<h3>Median survival</h3>")
    parts.append(
        _table(["group", "n", "events", "median", "95% CI lower", "95% CI upper"], rows)
    )
    return "".join(parts)


def _logrank(result: Mapping[str, Any]) -> str:
    rows = []
    for key in ("logrank", "logrank_stratified"):
        test = result.get(key)
        if test:
            rows.append(
                [_e(test["method"]), _num(test["statistic"], 6), _num(test["df"]),
                 _p(test["p_value"])]
            )
    if not rows:
        return ""
    return "<h2>Log-rank tests</h2>" + _table(["test", "chi-square", "df", "p"], rows)


def _estimates(title: str, section: Mapping[str, Any], value: str) -> str:
    rows = [
        [_e(g), _num(e.get(value, e.get("estimate")), 5), _num(e["se"], 4),
         _num(e["ci_lower"], 5), _num(e["ci_upper"], 5)]
        for g, e in section["groups"].items()
    ]
    parts = [f"<h2>{title}</h2>", _table(["group", value, "SE", "95% CI lower",
                                          "95% CI upper"], rows)]
    diffs = section.get("differences") or []
    if diffs:
        rows = [
            [f"{_e(d['group'])} &minus; {_e(d['reference'])}", _num(d["difference"], 5),
             _num(d["se"], 4), _num(d["ci_lower"], 5), _num(d["ci_upper"], 5),
             _p(d["p_value"])]
            for d in diffs
        ]
        parts.append(
            _table(["difference", "estimate", "SE", "95% CI lower", "95% CI upper",
                    "p"], rows)
        )
    return "".join(parts)


def _rmst(result: Mapping[str, Any]) -> str:
    section = result["rmst"]
    title = f"Restricted mean survival time up to {_num(section['tau'], 6)}"
    return _estimates(title, section, "estimate")


def _survival_at(result: Mapping[str, Any]) -> str:
    section = result["survival_at"]
    return _estimates(f"Survival at time {_num(section['time'], 6)}", section, "estimate")


def _cox(result: Mapping[str, Any]) -> str:
    cox = result["cox"]
    params = cox["params"]
    rows = [
        [_e(name), _num(p["coef"], 5), _num(p["se"], 4), _num(p["hr"], 4),
         _num(p["ci_lower"], 4), _num(p["ci_upper"], 4), _num(p["z"], 4), _p(p["p"])]
        for name, p in params.items()
    ]
    names = list(params)
    fig = Figure(figsize=(8, 0.45 * len(names) + 1.2))
    ax = fig.add_subplot()
    ys = list(range(len(names)))[::-1]
    for y, name in zip(ys, names, strict=True):
        p = params[name]
        ax.plot([p["ci_lower"], p["ci_upper"]], [y, y], color="#35507a", lw=1.6)
        ax.plot([p["hr"]], [y], "s", color="#35507a")
    ax.axvline(1.0, color="#888", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_yticks(ys)
    ax.set_yticklabels(names)
    ax.set_xlabel("hazard ratio (95% CI, log scale)")
    ax.grid(alpha=0.3, axis="x")
    lr = cox["lr_test"]
    meta = (
        f"<p>mode <b>{_e(cox['mode'])}</b>, ties <b>{_e(cox['ties'])}</b>, "
        f"n = {_num(cox.get('n'))}, events = {_num(cox.get('events'))}, "
        f"log-likelihood {_num(cox['loglik'], 10)}, likelihood-ratio test "
        f"{_num(lr['statistic'], 6)} on {_num(lr['df'])} df (p {_p(lr['p_value'])}), "
        f"{_num(cox['iterations'])} iterations, "
        f"{'converged' if cox['converged'] else 'NOT converged'}.</p>"
    )
    warnings = "".join(f"<li>{_e(w)}</li>" for w in cox.get("warnings") or [])
    return (
        "<h2>Cox proportional hazards</h2>"
        + meta
        + _png(fig)
        + _table(["parameter", "coef", "SE", "HR", "95% CI lower", "95% CI upper", "z",
                  "p"], rows)
        + (f"<ul>{warnings}</ul>" if warnings else "")
    )


def _provenance(result: Mapping[str, Any]) -> str:
    prov = result.get("provenance") or {}
    rows = [
        [_e(k), f"<pre>{_e(json.dumps(v, indent=1))}</pre>"
         if isinstance(v, dict | list) else _e(v)]
        for k, v in prov.items()
    ]
    return "<h2>Provenance</h2>" + _table(["item", "value"], rows, left=2)


SECTIONS: dict[str, Renderer] = {
    "stations": _stations,
    "km": _km,
    "logrank": _logrank,
    "rmst": _rmst,
    "survival_at": _survival_at,
    "cox": _cox,
    "provenance": _provenance,
}
_HEADER_KEYS = {
    "train", "train_digest", "question", "purpose", "dataset", "parameters", "created",
    "pht_version", "logrank_stratified", "at_risk_table",
}


def _header(result: Mapping[str, Any]) -> str:
    rows = [
        ["purpose", _e(result.get("purpose", ""))],
        ["dataset", _e(result.get("dataset", ""))],
        ["train", f"{_e(result.get('train', ''))} <span class=muted>"
                  f"{_e(result.get('train_digest', ''))}</span>"],
        ["parameters", _e(json.dumps(result.get("parameters", {})))],
        ["created", _e(result.get("created", ""))],
        ["pht", _e(result.get("pht_version", ""))],
    ]
    return (
        f"<h1>{_e(result.get('question', 'pht result'))}</h1>"
        f'<table class="meta">'
        + "".join(f'<tr><th class="l">{k}</th><td>{v}</td></tr>' for k, v in rows)
        + "</table>"
    )


def render_html(result: Mapping[str, Any]) -> str:
    """The report page as a string."""
    body = [_header(result)]
    for key in result:
        if key in SECTIONS:
            body.append(SECTIONS[key](result))
        elif key not in _HEADER_KEYS:
            body.append(
                f"<h2>{_e(key)}</h2><pre>{_e(json.dumps(result[key], indent=1))}</pre>"
            )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(result.get('question', 'pht result'))}</title>"
        f"<style>{_CSS}</style></head><body>" + "".join(body) + "</body></html>"
    )


def render_report(result: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` (self-contained) and return its path."""
    path = out_dir / "report.html"
    path.write_text(render_html(result), encoding="utf-8")
    return path
