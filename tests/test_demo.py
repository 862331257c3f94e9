"""End to end: the demo creates its network and the report; the CLI shows the way."""

from __future__ import annotations

import json

from pht.cli import main


def test_demo_end_to_end(tmp_path, capsys) -> None:
    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work), "--patients", "6000"]) == 0
    captured = capsys.readouterr()
    assert "report.html" in captured.out
    for station in ("nkr", "dica", "umc"):
        assert station in captured.err  # progress per station
    result = json.loads((work / "results" / "result.json").read_text())
    assert result["train"] == "survival.km@1.0.0"
    assert [s["id"] for s in result["stations"]] == ["nkr", "dica", "umc"]
    assert all(s["participated"] for s in result["stations"])
    assert sum(s["n"] for s in result["stations"]) == 6000
    assert set(result["km"]) == {"extended_interval", "standard", "weight_based"}
    for curve in result["km"].values():
        assert {
            "time",
            "survival",
            "ci_lower",
            "ci_upper",
            "at_risk",
            "events_at",
        } <= set(curve)
    assert result["logrank"]["df"] == 2 and result["logrank"]["stratified"] is False
    assert result["logrank_stratified"]["stratified"] is True
    assert result["rmst"]["tau"] == 730 and result["survival_at"]["time"] == 365
    page = (work / "results" / "report.html").read_text()
    assert "data:image/png;base64" in page and "Log-rank" in page
    assert "Netherlands Cancer Registry" in page
    # the orchestrator's provenance names a request per station
    assert len(result["provenance"]["requests"]) == 3


def test_report_escapes_text_and_renders_unknown_sections(tmp_path) -> None:
    from pht.orchestrator.report import render_report

    result = {
        "question": "<script>alert(1)</script>",
        "stations": [
            {
                "id": "a",
                "name": "A",
                "participated": False,
                "n": None,
                "events": None,
                "excluded": None,
                "reason": "group 'x' has fewer than 10 patients",
            }
        ],
        "km": {
            "g": {
                "n": 20,
                "events": 5,
                "time": [0, 1, 2],
                "survival": [1, 0.9, 0.8],
                "ci_lower": [1, 0.7, 0.6],
                "ci_upper": [1, 1, 0.9],
                "median": {"estimate": None, "ci_lower": None, "ci_upper": None},
            }
        },
        "future_train_output": {"answer": 42},
    }
    page = render_report(result, tmp_path).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "fewer than 10 patients" in page and "not reached" in page
    assert "future_train_output" in page and "42" in page
