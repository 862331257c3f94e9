"""report.html reads answer first: page structure, the answer, labels, figures, checks.

The page is parsed (html.parser) and walked: the first section after the header is
the answer; visible text (not the folded raw JSON) has no ``None``, ``nan`` or base64.
"""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from test_report import REASON, RECEIPT_B64, cox_result, km_result

from pht.orchestrator.figures import forest_rows, km_figure, shown_points
from pht.orchestrator.report import forest_figure, render_report, summary_frame
from pht.orchestrator.tables import term_label, variable_of_interest

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "wbr"}


class Node:
    """An element of the parsed page: tag, attributes, children and text."""

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Node | str] = []

    def text(self, skip: Any = lambda n: False) -> str:
        """Visible text, leaving out ``<style>`` and nodes ``skip`` names."""
        if self.tag in ("style", "script") or skip(self):
            return ""
        parts = [c if isinstance(c, str) else c.text(skip) for c in self.children]
        return " ".join(" ".join(parts).split())

    def elements(self) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node)]

    def find_all(self, tag: str) -> list[Node]:
        found = []
        for child in self.elements():
            if child.tag == tag:
                found.append(child)
            found += child.find_all(tag)
        return found

    def by_id(self, key: str) -> Node:
        for node in [self, *self.find_all("section"), *self.find_all("div")]:
            if node.attrs.get("id") == key:
                return node
        raise KeyError(key)


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [tree.root], "unclosed elements"
    return tree.root


def raw(node: Node) -> bool:
    return node.tag == "details" and "raw" in node.attrs.get("class", "")


def render(result: dict[str, Any], tmp_path: Path) -> tuple[str, Node]:
    page = render_report(result, tmp_path / "out").read_text(encoding="utf-8")
    return page, parse(page)


def main_children(root: Node) -> list[Node]:
    (main,) = root.find_all("main")
    return main.elements()


# -- structure --------------------------------------------------------------------
@pytest.mark.parametrize("build", [km_result, cox_result], ids=["km", "cox"])
def test_answer_is_the_first_section_after_the_header(build, tmp_path) -> None:
    _, root = render(build(), tmp_path)
    children = main_children(root)
    assert children[0].tag == "header"
    assert children[1].tag == "section" and children[1].attrs["id"] == "answer"
    answer = children[1]
    assert len(answer.find_all("table")) == 1
    assert answer.find_all("p")[0].attrs.get("class") == "lead"


def test_visible_text_has_no_none_nan_or_base64(tmp_path) -> None:
    result = km_result()
    result["survival_at"] = {
        "time": 200.0,
        "groups": {
            "control": {"estimate": 0.8, "se": math.nan, "ci_lower": None}
            | {"ci_upper": None, "at_risk": 18},
        },
        "differences": [],
    }
    result["stations"][0]["executor"] = None
    page, root = render(result, tmp_path)
    visible = root.text(skip=raw)
    assert not re.search(r"\bNone\b|\bnan\b|\bNaN\b", visible), visible
    runs = re.findall(r"[A-Za-z0-9+/=]{60,}", visible)
    assert not [r for r in runs if not re.fullmatch(r"[0-9a-f]+", r)]  # hex digests
    assert RECEIPT_B64 not in visible
    assert RECEIPT_B64 in page  # kept only in the folded raw JSON
    assert "p = &lt;" not in page and "p = <" not in visible


def test_print_stylesheet(tmp_path) -> None:
    page, _ = render(km_result(), tmp_path)
    css = page[page.index("@media print") :]
    assert "break-inside: avoid" in css
    assert "details.raw" in css  # the raw JSON is not printed
    assert "overflow-wrap: anywhere" in page


def test_provenance_is_tables_with_raw_json_folded(tmp_path) -> None:
    _, root = render(km_result(), tmp_path)
    prov = root.by_id("provenance")
    shown = prov.text(skip=raw)
    assert "d1d9554d-98d9-42c3-abbd-223e8a563006" in shown  # request id
    assert "ZIN / analyst / analyst" in shown
    assert "Station receipts" in shown and "sha256:b8a2e2d05e31\u2026" in shown
    assert "Requests per station" in shown and REASON in shown
    assert "{" not in shown  # no JSON outside the folded raw listing
    (details,) = [d for d in prov.find_all("details") if raw(d)]
    assert "payloadType" in details.text()


# -- the answer: Kaplan-Meier -----------------------------------------------------
def test_km_answer_reads_the_stratified_test_and_explains_a_disagreement(
    tmp_path,
) -> None:
    # the unstratified test mixes case mix between stations with the group effect
    page, root = render(km_result(p_plain=0.00001, p_stratified=0.48), tmp_path)
    answer = root.by_id("answer").text()
    assert answer.startswith("Answer Survival does not differ significantly")
    assert "log-rank stratified by station" in answer and "p = 0.4800" in answer
    assert "The two log-rank tests disagree: unstratified p < 0.0001" in answer
    assert "case mix" in answer and "read the stratified test" in answer
    rows = [r.text() for r in root.by_id("answer").find_all("tr")]
    assert rows[1].startswith("control") and "250" in rows[1]
    assert rows[2].startswith("treated") and "not reached" in rows[2]
    # the log-rank section lists the test the study reads first
    tests = root.by_id("logrank").find_all("tr")
    assert "stratified by station (the test read)" in tests[1].text()


def test_km_answer_when_the_tests_agree(tmp_path) -> None:
    _, root = render(km_result(p_plain=0.00139, p_stratified=0.00001), tmp_path)
    answer = root.by_id("answer").text()
    assert "Survival differs between the 2 groups of arm" in answer
    assert "p < 0.0001" in answer and "agrees (p = 0.0014)" in answer
    assert "disagree" not in answer


# -- the answer: Cox --------------------------------------------------------------
def test_cox_answer_gives_the_adjusted_hazard_ratio_first(tmp_path) -> None:
    _, root = render(cox_result(), tmp_path)
    answer = root.by_id("answer")
    lead = answer.find_all("p")[0].text()
    assert lead == (
        "Adjusted for age and sex, and stratified by station, the hazard ratio of "
        "regimen extended interval versus standard is 1.01 (95% CI 0.91 to 1.12; "
        "p = 0.8878) and of weight based versus standard 1.06 (95% CI 0.91 to 1.22; "
        "p = 0.4657)."
    )
    assert "Every 95% CI includes 1" in answer.text()
    rows = [r.text() for r in answer.find_all("tr")]
    assert rows[0] == "regimen Hazard ratio 95% CI p-value"
    assert rows[1] == "standard (reference) 1.00"
    assert rows[2] == "extended interval 1.01 0.91 to 1.12 0.8878"


def test_cox_answer_follows_the_group_parameter(tmp_path) -> None:
    result = cox_result(group="sex")
    assert variable_of_interest(result) == "sex"
    _, root = render(result, tmp_path)
    text = root.by_id("answer").text()
    assert "Adjusted for regimen and age, and stratified by station" in text
    assert "sex M versus F is 0.60 (95% CI 0.45 to 0.80; p = 0.0004)" in text
    assert "The 95% CI of M lies below 1 (lower hazard)." in text


def test_cox_answer_for_a_numeric_variable(tmp_path) -> None:
    result = cox_result(covariates=["age", "regimen", "sex"], units={"age": "year"})
    _, root = render(result, tmp_path)
    text = root.by_id("answer").text()
    assert "each one-unit increase in age (per year) multiplies the hazard by" in text
    assert "1.014 (95% CI 1.012 to 1.017; p < 0.0001)" in text


# -- labels and figures -----------------------------------------------------------
def test_term_labels_are_readable() -> None:
    assert term_label("regimen[T.extended_interval]") == "regimen: extended interval"
    assert term_label("stage[T.IV-M1c]") == "stage: IV-M1c"
    assert term_label("age") == "age"
    assert term_label("age", {"age": "year"}) == "age (per year)"


def test_forest_has_headings_reference_rows_and_numbers(tmp_path) -> None:
    result = cox_result()
    rows = [(r.label.strip(), r.kind) for r in forest_rows(result)]
    assert rows == [
        ("regimen", "heading"),
        ("standard", "reference"),
        ("extended interval", "term"),
        ("weight based", "term"),
        ("age", "term"),
        ("sex", "heading"),
        ("F", "reference"),
        ("M", "term"),
    ]
    fig = forest_figure(result)
    plot, numbers = fig.axes
    labels = [t.get_text().strip() for t in plot.get_yticklabels()]
    assert labels[::-1][:3] == ["regimen", "standard", "extended interval"]
    assert not any("[T." in label for label in labels)
    assert plot.get_xscale() == "log"
    texts = [t.get_text() for t in numbers.texts]
    assert "HR (95% CI)" in texts and "1 (reference)" in texts
    assert "1.01 (0.91\u20131.12)" in texts and "1.014 (1.012\u20131.017)" in texts
    # the coefficient table shows the readable label and keeps the API name
    _, root = render(result, tmp_path)
    cox = root.by_id("cox").text()
    assert "regimen: extended interval regimen[T.extended_interval]" in cox
    assert "regimen: standard (reference)" in cox


def test_km_curves_stop_where_few_remain_at_risk(tmp_path) -> None:
    result = km_result()
    curve = result["km"]["treated"]
    curve["at_risk"] = [20, 20, 12, 6]  # fewer than 10 after 200 days
    assert shown_points(curve) == 3
    assert shown_points(curve, min_at_risk=5) == 4
    fig = km_figure(result)
    curves, at_risk = fig.axes
    assert curves.get_shared_x_axes().joined(curves, at_risk)
    lines = {line.get_label(): line for line in curves.get_lines()}
    assert list(lines["treated (n = 20)"].get_xdata())[-1] == 200.0
    assert list(lines["control (n = 20)"].get_xdata())[-1] == 300.0
    # the numbers at risk stand at the table's times, under the time ticks
    xs = sorted({t.get_position()[0] for t in at_risk.texts})
    assert xs == result["at_risk_table"]["times"]
    assert [t for t in curves.get_xticks()] == result["at_risk_table"]["times"]
    _, root = render(result, tmp_path)
    caption = root.by_id("km").find_all("figcaption")[0].text()
    assert "fewer than 10 patients remain at risk (treated after 200 days)" in caption


# -- model checks and partial results ---------------------------------------------
def test_model_checks_render_when_present(tmp_path) -> None:
    result = cox_result()
    cox = result["cox"]
    cox["ph_test"] = {
        "transform": "log",
        "terms": {"regimen": {"chisq": 2.1, "df": 2, "p_value": 0.35}},
        "global": {"chisq": 9.5, "df": 4, "p_value": 0.0497},
    }
    cox["concordance"] = {"c": 0.6812, "se": 0.004, "concordant": 1000}
    cox["concordance"] |= {"discordant": 467, "tied_risk": 3, "within_stations": True}
    estimate = {"coef": 0.1, "se": 0.1, "hr": 1.105, "ci_lower": 0.9, "ci_upper": 1.3}
    cox["station_estimates"] = {
        "station 1": {"regimen[T.extended_interval]": estimate},
        "station 2": {"regimen[T.extended_interval]": estimate | {"hr": 0.8}},
    }
    cox["heterogeneity"] = {
        "regimen[T.extended_interval]": {"q": 2.7, "df": 1, "p_value": 0.1}
        | {"i2": 0.63, "tau2": 0.012}
    }
    page, root = render(result, tmp_path)
    text = root.by_id("cox").text()
    assert "Proportional hazards (like R cox.zph)" in text
    assert "global 9.50 4 0.0497" in text
    assert "Harrell's C = 0.681 (SE 0.004)" in text and "within stations" in text
    assert "regimen: extended interval 2.70 1 0.1000 63%" in text
    assert (tmp_path / "out" / "figures" / "forest_stations.png").is_file()
    assert "could not be laid out" not in page


def test_partial_result_banner_on_top(tmp_path) -> None:
    result = km_result()
    result["partial"] = {
        "complete": False,
        "requested": 3,
        "took_part": 2,
        "min_stations": 2,
        "missing": [
            {"station": "nkr", "status": "refused", "reason": REASON}
            | {"acts": "station operator", "advice": "ask nkr's operator"}
        ],
    }
    _, root = render(result, tmp_path)
    first = main_children(root)[0]
    assert first.attrs.get("class") == "banner"
    text = first.text()
    assert "Partial result: 2 of 3 stations took part" in text
    assert REASON in text and "to act: station operator" in text
    assert main_children(root)[2].attrs["id"] == "answer"
    result["partial"]["complete"] = True
    _, root = render(result, tmp_path)
    assert main_children(root)[0].tag == "header"


# -- data frames for the Python API -----------------------------------------------
def test_summary_frame() -> None:
    cox = summary_frame(cox_result())
    assert list(cox["label"])[:2] == [
        "regimen: extended interval",
        "regimen: weight based",
    ]
    assert {"coef", "se", "hr", "ci_lower", "ci_upper", "p_value"} <= set(cox)
    km = summary_frame(km_result())
    assert list(km["group"]) == ["control", "treated"]
    assert km.loc[0, "median"] == 250.0 and math.isnan(km.loc[1, "median"])
    with pytest.raises(ValueError, match="neither a Cox model nor Kaplan-Meier"):
        summary_frame({"train": "x", "utilisation": {}})
    with pytest.raises(ValueError, match="no Cox model"):
        forest_figure(km_result())
    with pytest.raises(ValueError, match="no Kaplan-Meier"):
        km_figure(cox_result())
