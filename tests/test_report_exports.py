"""Exports next to report.html (PNG, SVG, CSV), ``write_results`` and ``pht report``."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from test_report import cox_result, km_result

from pht.cli import main
from pht.orchestrator.exports import load_result, publish_report
from pht.orchestrator.report import render_report
from pht.orchestrator.run import SCHEMA_VERSION, write_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _links(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


@pytest.mark.parametrize(
    ("build", "figures", "tables"),
    [
        (km_result, {"km"}, {"answer", "km_medians", "at_risk", "logrank"}),
        (cox_result, {"forest"}, {"answer", "cox_coefficients", "stations"}),
    ],
    ids=["km", "cox"],
)
def test_every_figure_and_table_is_exported(build, figures, tables, tmp_path) -> None:
    out = tmp_path / "out"
    page = render_report(build(), out).read_text(encoding="utf-8")
    pngs = {p.stem for p in (out / "figures").glob("*.png")}
    svgs = {p.stem for p in (out / "figures").glob("*.svg")}
    csvs = {p.stem for p in (out / "tables").glob("*.csv")}
    assert figures <= pngs and pngs == svgs
    assert tables <= csvs
    assert {"provenance", "provenance_requests", "provenance_receipts"} <= csvs
    for stem in pngs:
        assert (out / "figures" / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
        root = ET.parse(out / "figures" / f"{stem}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    for stem in csvs:
        assert not pd.read_csv(out / "tables" / f"{stem}.csv").empty
    # the page links to each file it exported, and each link resolves
    files = [link for link in _links(page) if not link.endswith("/")]
    assert len(files) == 2 * len(pngs) + len(csvs)
    assert all((out / link).is_file() for link in files)
    # figures stay embedded: the page alone is complete
    assert page.count('src="data:image/png;base64,') == len(pngs)


def test_csv_keeps_full_precision(tmp_path) -> None:
    result = cox_result()
    render_report(result, tmp_path)
    coefficients = pd.read_csv(tmp_path / "tables" / "cox_coefficients.csv")
    first = result["cox"]["params"]["regimen[T.extended_interval]"]
    row = coefficients.iloc[0]
    assert row["term"] == "regimen[T.extended_interval]"
    assert row["label"] == "regimen: extended interval"
    assert row["coef"] == pytest.approx(first["coef"], rel=1e-15)
    assert row["p_value"] == first["p_value"]
    answer = pd.read_csv(tmp_path / "tables" / "answer.csv")
    assert list(answer["label"]) == [
        "standard (reference)",
        "extended interval",
        "weight based",
    ]
    assert answer.loc[0, "hr"] == 1.0


def test_write_results_replaces_the_exports_atomically(tmp_path) -> None:
    out = tmp_path / "results"
    write_results(cox_result(), out)
    stale = out / "figures" / "old-figure.png"
    stale.write_bytes(PNG_MAGIC)
    result_path, report_path = write_results(km_result(), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "figures",
        "report.html",
        "result.json",
        "tables",
    ]
    assert not stale.exists()  # the previous report's files went with it
    assert {p.stem for p in (out / "figures").glob("*.png")} == {"km"}
    assert json.loads(result_path.read_text())["train"] == "survival.km@1.0.0"
    assert "Kaplan" in report_path.read_text(encoding="utf-8")


def test_a_failed_render_keeps_the_previous_report(tmp_path, monkeypatch) -> None:
    out = tmp_path / "results"
    write_results(km_result(), out)
    before = (out / "report.html").read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("pht.orchestrator.exports.Exports.write", boom)
    with pytest.raises(OSError, match="disk full"):
        write_results(cox_result(), out)
    assert (out / "report.html").read_bytes() == before
    assert json.loads((out / "result.json").read_text())["train"].startswith(
        "survival.km"
    )
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


# -- pht report -------------------------------------------------------------------
def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _stored(tmp_path: Path, result: dict) -> Path:
    path = tmp_path / "run" / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result | {"schema_version": SCHEMA_VERSION}))
    return path


def test_pht_report_renders_next_to_the_result(tmp_path, capsys) -> None:
    path = _stored(tmp_path, cox_result())
    code, out, err = _cli(capsys, "report", path)
    assert code == 0, err
    assert f"report: {path.parent / 'report.html'}" in out
    assert (path.parent / "figures" / "forest.svg").is_file()
    code, out, err = _cli(capsys, "report", path.parent, "--out", tmp_path / "other")
    assert code == 0, err
    assert (tmp_path / "other" / "tables" / "cox_coefficients.csv").is_file()
    assert publish_report(load_result(path), tmp_path / "api").name == "report.html"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file; give the result.json that `pht run` wrote"),
        ("{not json", "not JSON (line 1, column 2"),
        ('{"question": "x"}', "not a pht result (it needs the keys schema_version"),
        ('{"schema_version": "2", "train": "x"}', "schema_version must be a positive"),
        ('{"schema_version": 99, "train": "x"}', "schema_version 99 is newer than"),
    ],
    ids=["missing", "not-json", "not-a-result", "bad-version", "future-version"],
)
def test_pht_report_errors_are_one_line(tmp_path, capsys, content, message) -> None:
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    code, _, err = _cli(capsys, "report", path)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and message in lines[0]
    assert not (tmp_path / "report.html").exists()
