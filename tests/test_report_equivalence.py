"""report.html of an ``equivalence`` study: answer, equivalence plot, savings, analyses.

The fixture ``tests/reference/equivalence_result.json`` is a real ``result.json`` of
``pht run`` on an equivalence study over the synthetic registries (weight-based versus
standard dosing: overall survival, toxicity by GLM and by Mantel-Haenszel, drug cost,
RMST at two years; the quick scan for pembrolizumab), trimmed to stay small: the
analyses' signed receipts and covariance matrices are left out, their other floats
rounded to six significant digits, and the study and network paths shortened. The
``equivalence`` and ``savings`` blocks are as the run wrote them.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_report_answer import Node, main_children, parse, raw

from pht.cli import main
from pht.orchestrator import report_equivalence as re_eq
from pht.orchestrator.report import render_report

FIXTURE = Path(__file__).parent / "reference" / "equivalence_result.json"
CAVEAT = "These savings assume a non-inferiority that was not shown"

# floats read back exactly: pandas 3 does so by default (and deprecates the option)
EXACT: dict[str, str] = (
    {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
)


def sample() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def small() -> dict[str, Any]:
    """The sample with only the two toxicity MH analyses (no figures: fast)."""
    result = sample()
    result["analyses"] = {
        k: v for k, v in result["analyses"].items() if k.startswith("toxicity MH")
    }
    return result


def outcome(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in result["equivalence"]["outcomes"] if o["name"] == name)


def render(result: dict[str, Any], out: Path) -> tuple[str, Node]:
    page = render_report(result, out).read_text(encoding="utf-8")
    return page, parse(page)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Node]:
    """The whole sample, rendered once for the module (a few seconds)."""
    result = sample()
    result["equivalence"]["outcomes"][1]["name"] = "tox <script>alert(1)</script>"
    for key in ("grade >= 3 toxicity (adjusted)", "grade >= 3 toxicity (crude)"):
        result["analyses"][key]["outcome"] = "tox <script>alert(1)</script>"
    out = tmp_path_factory.mktemp("equivalence")
    page, root = render(result, out)
    return out, page, root


# -- structure --------------------------------------------------------------------
def test_answer_first_then_verdicts_savings_analyses_provenance(rendered) -> None:
    _, _, root = rendered
    children = main_children(root)
    ids = [c.attrs.get("id") for c in children if c.tag == "section"]
    assert children[0].attrs.get("id") == "partial"  # the banner of the sample
    assert ids[0] == "answer"
    order = ["equivalence", "savings", "analyses", "provenance"]
    assert [i for i in ids if i in order] == order
    assert ids.index("savings") == ids.index("equivalence") + 1  # next to the verdicts
    assert ids[-1] == "provenance"
    assert not [c for c in children if c.attrs.get("id") in ("equivalence",)][
        0
    ].find_all("pre"), "the verdicts must not fall back to raw JSON"


def test_answer_has_the_primary_verdict_and_one_table(rendered) -> None:
    _, _, root = rendered
    answer = root.by_id("answer")
    (table,) = answer.find_all("table")
    lead = answer.find_all("p")[0]
    assert lead.attrs.get("class") == "lead"
    assert "inconclusive on overall survival" in lead.text()
    rows = table.find_all("tr")[1:]
    assert [r.find_all("td")[0].text().split()[:2] for r in rows][0] == [
        "overall",
        "survival",
    ]
    first = rows[0].text()
    assert "primary" in first and "1.051" in first and "90% CI 0.927 to 1.192" in first
    assert "upper bound below 1.150" in first
    badge = [
        s for s in rows[0].find_all("span") if "verdict" in s.attrs.get("class", "")
    ]
    assert badge[0].text() == "inconclusive" and "#9a6700" in badge[0].attrs["style"]
    assert "0.984" in first and "non-inferior" in first  # the crude estimate beside it
    # the crude analysis reads differently: said in words
    assert "The crude analysis would read non-inferior" in answer.text()


def test_visible_text_has_no_none_nan_or_base64(rendered) -> None:
    _, page, root = rendered
    visible = root.text(skip=raw)
    assert not re.search(r"\bNone\b|\bnan\b|\bNaN\b|\binf\b", visible), visible
    runs = re.findall(r"[A-Za-z0-9+/=]{60,}", visible)
    assert not [r for r in runs if not re.fullmatch(r"[0-9a-f]+", r)]
    assert not root.find_all("script")
    assert "tox &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_ids_are_unique_and_folded_sections_are_parts(rendered) -> None:
    _, page, root = rendered
    ids = re.findall(r'\sid="([^"]*)"', page)
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    analyses = root.by_id("analyses")
    folds = analyses.find_all("details")
    assert len(folds) == 8
    assert not analyses.find_all("section")  # the trains' sections became parts
    cox = next(d for d in folds if d.attrs["id"] == "overall_survival_adjusted")
    assert "Cox proportional hazards model" in cox.text()
    assert cox.find_all("img")  # the forest plot of the adjusted Cox model


def test_equivalence_plot_and_verdict_table(rendered) -> None:
    out, _, root = rendered
    section = root.by_id("equivalence")
    (figure,) = section.find_all("figure")
    caption = figure.find_all("figcaption")[0].text()
    assert "90% CI (1 \u2212 2\u03b1, \u03b1 = 0.05)" in caption
    assert "log scale" in caption and "crude" in caption
    (table,) = section.find_all("table")
    rows = table.find_all("tr")[1:]
    assert len(rows) == 8  # 3 outcomes with crude and adjusted, 2 adjusted only
    text = rows[0].text()
    assert "0.927 to 1.192" in text and "0.905 to 1.221" in text  # 90% and 95%
    assert "contains the margin 1.15" in text
    mh = next(r for r in rows if "Mantel-Haenszel" in r.text())
    assert "pools 1 of 3 stations" in mh.text() and "346 / 1,188" in mh.text()
    verdicts = pd.read_csv(out / "tables" / "verdicts.csv", **EXACT)
    primary = outcome(sample(), "overall survival")["adjusted"]
    row = verdicts[(verdicts.outcome == "overall survival")].iloc[0]
    assert row.analysis == "adjusted"
    assert row.estimate == primary["estimate"]  # full precision in the CSV
    assert row.p_value == primary["p_value"]


def test_exports_cover_every_figure_and_table(rendered) -> None:
    out, page, _ = rendered
    links = re.findall(r'href="((?:figures|tables)/[^"]+)"', page)
    assert links and all((out / link).is_file() for link in links)
    figures = {p.name for p in (out / "figures").iterdir()}
    for stem in ("equivalence", "savings", "overall_survival_adjusted_forest"):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures
    tables = {p.stem for p in (out / "tables").iterdir()}
    assert {"answer", "verdicts", "savings", "savings_sensitivity"} <= tables
    assert {
        "savings_regimens",
        "analyses",
        "overall_survival_crude_cox_coefficients",
    } <= (tables)
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) == len(
        [f for f in figures if f.endswith(".png")]
    )


# -- savings ------------------------------------------------------------------------
def test_savings_section_with_band_inputs_and_sensitivity(rendered) -> None:
    out, _, root = rendered
    section = root.by_id("savings")
    text = section.text()
    assert "EUR 15.9 million a year" in text
    assert "\u00b115%: EUR 13.5 million to EUR 18.3 million" in text
    assert CAVEAT in text and "the verdict is inconclusive" in text
    assert len(section.find_all("figure")) == 1
    assert "99,487" in text and "74,615" in text  # both regimens' cost per year
    sensitivity = pd.read_csv(out / "tables" / "savings_sensitivity.csv", **EXACT)
    assert list(sensitivity.parameter) == ["price", "uptake", "patients_per_year"]
    assert (
        sensitivity.savings_low.iloc[0]
        == sample()["savings"]["sensitivity"][0]["savings_low"]
    )


@pytest.mark.parametrize(
    ("verdict", "caveat"),
    [
        ("non-inferior", False),
        ("equivalent", False),
        ("superior", False),
        ("inconclusive", True),
        ("inferior", True),
        (None, True),
    ],
)
def test_savings_say_when_the_non_inferiority_was_not_shown(verdict, caveat) -> None:
    result = sample()
    primary = outcome(result, "overall survival")
    if verdict is None:
        primary["adjusted"] = {"error": "DataError: no events in an arm"}
    else:
        primary["adjusted"]["verdict"] = verdict
    html = re_eq.savings(result)
    assert (CAVEAT in html) is caveat
    if verdict is None:
        assert "there is no verdict" in html
    elif not caveat:
        assert f"was shown {verdict}" in html


def test_savings_error_and_negative_savings() -> None:
    result = sample()
    result["savings"] = {"error": "quick scan: price_per_mg must be > 0"}
    assert "No quick scan: quick scan: price_per_mg must be &gt; 0" in re_eq.savings(
        result
    )
    result = sample()
    scan = result["savings"]
    scan["annual_savings"], scan["savings_low"], scan["savings_high"] = (
        -2e6,
        -2.3e6,
        -1.7e6,
    )
    assert "costs EUR 2.0 million a year" in re_eq.savings(result)


# -- failures and balance ---------------------------------------------------------
def test_a_failed_analysis_shows_its_error(tmp_path) -> None:
    result = small()
    error = "DataError: no patient of 'weight_based' at the stations that took part"
    result["analyses"]["toxicity MH (crude)"] = {
        "outcome": "toxicity MH",
        "role": "crude",
        "adjustment": "none",
        "train": "glm@1.0.0",
        "parameters": {"outcome": "tox_grade3"},
        "error": error,
    }
    outcome(result, "toxicity MH")["crude"] = {"error": error}
    _, root = render(result, tmp_path / "out")
    analyses = root.by_id("analyses")
    row = next(r for r in analyses.find_all("tr") if "toxicity MH (crude)" in r.text())
    assert "failed" in row.text() and "no patient of 'weight_based'" in row.text()
    assert [d.attrs["id"] for d in analyses.find_all("details")] == [
        "toxicity_mh_adjusted"
    ]
    verdicts = root.by_id("equivalence").find_all("tr")
    failed = next(
        r for r in verdicts if "crude" in r.text() and "toxicity MH" in r.text()
    )
    assert "no verdict" in failed.text() and "no patient of" in failed.text()
    answer = next(r for r in root.by_id("answer").find_all("tr") if "MH" in r.text())
    assert "not estimated" in answer.text()


@pytest.mark.parametrize("shape", ["list", "mapping"])
def test_love_plot_from_an_iptw_balance_table(shape, tmp_path) -> None:
    result = small()
    rows = [
        {"term": "age", "smd_before": 0.42, "smd_after": 0.03},
        {"term": "ecog[T.1]", "smd_before": -0.25, "smd_after": -0.12},
        {"term": "ldh_elevated", "smd_before": 0.18, "smd_after": None},
    ]
    balance: Any = rows
    if shape == "mapping":
        balance = {r["term"]: {k: v for k, v in r.items() if k != "term"} for r in rows}
    for key in result["analyses"]:
        result["analyses"][key]["iptw"] = {"balance": copy.deepcopy(balance)}
    out = tmp_path / "out"
    page, root = render(result, out)
    section = root.by_id("balance")
    assert len(section.find_all("figure")) == 1  # identical tables merged
    assert "toxicity MH (adjusted), toxicity MH (crude)" in section.text()
    body = section.find_all("table")[0].find_all("tr")[1:]
    assert [r.find_all("td")[3].text() for r in body] == ["yes", "no", "\u2014"]
    assert (out / "figures" / "balance.svg").is_file()
    frame = pd.read_csv(out / "tables" / "balance.csv")
    assert frame.smd_before.tolist() == [0.42, -0.25, 0.18]
    ids = [c.attrs.get("id") for c in main_children(root) if c.tag == "section"]
    assert ids.index("balance") == ids.index("analyses") - 1
    assert "\u2192 iptw" in page or "iptw" in root.by_id("analyses").text()


def test_no_balance_section_without_iptw(rendered) -> None:
    _, page, _ = rendered
    assert 'id="balance"' not in page


def test_balance_rows_take_both_shapes() -> None:
    as_list = [{"term": "age", "smd_before": 0.3, "smd_after": 0.01}, {"x": 1}]
    as_map = {"age": {"smd_before": 0.3, "smd_after": 0.01}, "bad": 3}
    assert (
        re_eq.balance_rows(as_list)
        == re_eq.balance_rows(as_map)
        == [("age", 0.3, 0.01)]
    )
    assert re_eq.balance_rows(None) == [] and re_eq.balance_rows("x") == []


# -- figures ----------------------------------------------------------------------
def test_equivalence_figure_axes_per_measure() -> None:
    outcomes = sample()["equivalence"]["outcomes"]
    fig = re_eq.equivalence_figure(outcomes)
    plots = [ax for ax in fig.axes if ax.axison]
    assert len(plots) == len(outcomes)
    scales = {ax.get_title(loc="left"): ax.get_xscale() for ax in plots}
    assert (
        scales["overall survival (primary): hazard ratio, 90% CI, log scale"] == "log"
    )
    assert scales["RMST 2y: RMST difference, 90% CI"] == "linear"
    primary = plots[0]
    assert [t.get_text() for t in primary.get_yticklabels()] == ["crude", "adjusted"]
    low, high = primary.get_xlim()
    assert low < 0.927 and high > 1.192 and low < 1.15 < high  # CI, margin in view
    with pytest.raises(ValueError, match="no outcome has an effect"):
        re_eq.equivalence_figure([{"name": "x", "measure": "odds_ratio"}])


def test_primary_outcome_comes_first_in_the_answer() -> None:
    result = sample()
    outcomes = result["equivalence"]["outcomes"]
    outcomes.append(outcomes.pop(0))  # primary listed last
    del result["equivalence"]["answer"]  # the sentence is then built here
    html = re_eq.answer(result)
    rows = parse(f"<div>{html}</div>").find_all("tr")[1:]
    assert rows[0].text().startswith("overall survival primary")
    lead = parse(f"<div>{html}</div>").find_all("p")[0].text()
    assert lead.startswith("Inconclusive on overall survival: hazard ratio 1.051")


# -- pht report -------------------------------------------------------------------
def test_pht_report_renders_an_equivalence_result(tmp_path, capsys) -> None:
    result = small()
    path = tmp_path / "run" / "result.json"
    path.parent.mkdir()
    path.write_text(json.dumps(result), encoding="utf-8")
    code = main(["report", str(path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    page = (path.parent / "report.html").read_text(encoding="utf-8")
    for key in ("answer", "equivalence", "savings", "analyses"):
        assert f'<section id="{key}"' in page
    assert (path.parent / "figures" / "equivalence.svg").is_file()
    assert (path.parent / "tables" / "verdicts.csv").is_file()
