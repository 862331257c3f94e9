"""End to end: the demo creates its network and the report; the CLI shows the way."""

from __future__ import annotations

import json

from pht import synth
from pht.cli import main
from pht.demo import STATION_NAMES
from pht.station.codes import Code


def test_demo_end_to_end(tmp_path, capsys) -> None:
    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work), "--patients", "6000"]) == 0
    captured = capsys.readouterr()
    assert "report.html" in captured.out
    for station in ("nkr", "dica", "umc"):
        assert station in captured.err  # progress per station
    result = json.loads((work / "results" / "result.json").read_text())
    assert result["train"] == "survival.km@1.2.0"
    assert [s["id"] for s in result["stations"]] == ["nkr", "dica", "umc"]
    # a station takes part, or refuses with a fixed code when a regimen cannot get
    # k events and k censorings in every interval of its grid (nkr: almost only
    # standard dosing)
    took = [s["id"] for s in result["stations"] if s["participated"]]
    assert len(took) >= 2
    refused = {s["reason"] for s in result["stations"] if not s["participated"]}
    assert refused <= {Code.GRID.reason, Code.SMALL_CELL.reason}
    # a partial result is a result: the demo study's quorum is 2 of 3, the result
    # says who is missing and that nobody has to fix a policy refusal; `pht demo`
    # prints the banner and still exits 0
    partial = result["partial"]
    assert partial["min_stations"] == 2 and partial["requested"] == 3
    assert partial["took_part"] == len(took)
    assert [m["station"] for m in partial["missing"]] == [
        s["id"] for s in result["stations"] if not s["participated"]
    ]
    assert all(m["acts"] == "none (policy)" for m in partial["missing"])
    assert partial["complete"] is (len(took) == 3)
    assert ("partial result:" in captured.err) is (len(took) < 3)
    # every patient of a station that took part is analysed (a fixed population)
    sizes = synth.station_sizes(6000)
    assert sum(c["n"] for c in result["km"].values()) == sum(sizes[s] for s in took)
    # the demo's policy has show_station_name: false: no names, no per-station counts
    assert all(s["name"] is None and s["n"] is None for s in result["stations"])
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
    assert not any(name in page for name in STATION_NAMES.values())
    # the orchestrator's provenance names a request per station
    assert len(result["provenance"]["requests"]) == 3
    # the demo's second study, the command the demo prints, runs too
    assert "study-utilisation.yaml" in captured.out
    out = work / "results-utilisation"
    code = main(
        [
            "run",
            str(work / "study-utilisation.yaml"),
            "--network",
            str(work / "network.yaml"),
            "--identity",
            str(work / "keys" / "analyst.key.json"),
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    utilisation = json.loads((out / "result.json").read_text())
    assert utilisation["train"].startswith("utilisation@")
    assert utilisation["priority"]["rows"]


def test_demo_runs_again_and_leaves_other_folders_alone(tmp_path, capsys) -> None:
    work = tmp_path / "demo"
    for _ in range(2):  # `make demo` twice: the second replaces the first
        # (4000 patients: with fewer, a second registry refuses the regimen grid and
        # the study's min_stations: 2 is not met)
        assert main(["demo", "--workdir", str(work), "--patients", "4000"]) == 0
    assert (work / "results" / "result.json").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["demo", "--workdir", str(mine), "--patients", "4000"]) == 2
    assert "was not made by `pht demo`" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"


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
                "reason": Code.SMALL_CELL.reason,
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
    assert Code.SMALL_CELL.reason in page and "not reached" in page
    assert "future_train_output" in page and "42" in page
