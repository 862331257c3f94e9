"""A newcomer's realistic mistakes found after issue 11: each is one located line with
the fix, or a kept result with a caveat; nothing audited is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cli_errors import cli, error_line

import pht
from pht.demo import create_demo
from pht.orchestrator.report import forest_figure, km_figure
from pht.orchestrator.tables import summary_frame

COX = {
    "time": "os_days",
    "event": "death",
    "covariates": ["regimen", "age"],
    "reference": {"regimen": "standard"},
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return create_demo(tmp_path_factory.mktemp("demo") / "demo", patients=4000)


def study(demo: Any, name: str, **fields: Any) -> Path:
    doc = yaml.safe_load(demo.study.read_text())
    doc.update(fields)
    path = demo.root / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(demo: Any, path: Path, out: str, capsys: Any) -> tuple[int, str, str]:
    return cli(
        capsys,
        "run",
        path,
        "--network",
        demo.network,
        "--identity",
        demo.identity,
        "--out",
        demo.root / out,
    )


def test_figure_helpers_take_the_api_result(demo: Any) -> None:
    cox = study(demo, "cox.yaml", train="survival.cox", parameters=COX)
    result = pht.run(pht.Study.load(cox, demo.network), demo.network, demo.identity)
    assert forest_figure(result) is not None
    assert list(summary_frame(result)["term"]) == list(result["cox"]["params"])
    km = pht.run(pht.Study.load(demo.study, demo.network), demo.network, demo.identity)
    assert km_figure(km) is not None


def test_a_misspelt_reference_keeps_the_audited_run(demo: Any, capsys: Any) -> None:
    params = {**COX, "reference": {"regimen": "standrd"}}
    cox = study(demo, "ref.yaml", train="survival.cox", parameters=params)
    code, out, err = run(demo, cox, "ref", capsys)
    assert code == 0, err
    result = json.loads((demo.root / "ref" / "result.json").read_text())
    assert result["cox"]["reference_levels"]["regimen"] == "extended_interval"
    (caveat,) = [w for w in result["warnings"] if w["category"] == "ReferenceWarning"]
    assert "parameters.reference.regimen" in caveat["message"]
    assert "standrd" in caveat["message"]
    km = study(
        demo,
        "refkm.yaml",
        parameters={
            "time": "os_days",
            "event": "death",
            "group": "regimen",
            "reference_group": "standrd",
        },
    )
    code, out, err = run(demo, km, "refkm", capsys)
    assert code == 10, err  # written; partial as the demo study (nkr refuses)
    result = json.loads((demo.root / "refkm" / "result.json").read_text())
    assert any(w["category"] == "ReferenceWarning" for w in result["warnings"])


def test_a_reference_or_categorical_outside_the_covariates_is_refused(
    demo: Any, capsys: Any
) -> None:
    for extra in ({"reference": {"sex": "F"}}, {"categorical": ["ecog"]}):
        cox = study(demo, "x.yaml", train="survival.cox", parameters={**COX, **extra})
        code, _, err = cli(capsys, "validate", cox, "--network", demo.network)
        assert code == 2
        assert "x.yaml" in error_line(err) and "not one of the covariates" in err


def test_a_misspelt_column_names_the_study_and_the_dry_run(
    demo: Any, capsys: Any
) -> None:
    typo = study(demo, "typo.yaml", parameters={"time": "os_dys", "event": "death"})
    code, _, err = run(demo, typo, "typo", capsys)
    line = error_line(err)
    assert code == 3
    assert str(typo) in line and "pht validate" in line and "--identity" in line
    assert not (demo.root / "typo").exists() or not any((demo.root / "typo").iterdir())


def test_usage_errors_are_one_line(capsys: Any) -> None:
    for args in (["run"], ["bogus"], ["demo", "--patients", "10"]):
        code, _, err = cli(capsys, *args)
        assert code == 2
        assert "--help" in error_line(err)
        assert "Usage:" not in err


def test_report_out_a_file_is_refused_before_writing(demo: Any, capsys: Any) -> None:
    results = demo.root / "results"
    assert pht.run(
        pht.Study.load(demo.study, demo.network), demo.network, demo.identity
    ).save(results)
    code, _, err = cli(capsys, "report", results, "--out", demo.study)
    assert code == 2 and "is a file" in error_line(err)


def test_audit_query_mistakes(demo: Any, capsys: Any) -> None:
    work = demo.root / "stations" / "nkr" / "work"
    code, _, err = cli(capsys, "audit", "query", work)
    assert code == 2 and str(work / "audit") in error_line(err)
    code, _, err = cli(capsys, "audit", "query", work / "audit", "--outcome", "refusd")
    assert code == 2 and "refused" in error_line(err)
    code, out, _ = cli(
        capsys, "audit", "query", work / "audit", "--train", "survival.km"
    )
    assert code == 0 and out.strip()
    assert all(
        json.loads(line)["train"].startswith("survival.km@")
        for line in out.splitlines()
        if json.loads(line)["train"]
    )


def test_review_with_a_misspelt_action(demo: Any, capsys: Any) -> None:
    code, _, err = cli(
        capsys,
        "station",
        "review",
        "lst",
        "--network",
        demo.network,
        "--station",
        "nkr",
    )
    assert code == 2 and "unknown action 'lst'" in error_line(err)


def test_trains_list_says_what_the_station_recomputes(capsys: Any) -> None:
    code, out, _ = cli(capsys, "trains", "list")
    assert code == 0
    assert "[model, iterative, station recomputes (kernel cox)]" in out
    assert "[event_table, single, station recomputes (event tables)]" in out


def test_the_time_column_as_a_covariate_is_refused_at_load(
    demo: Any, capsys: Any
) -> None:
    params = {**COX, "covariates": ["os_days", "regimen"]}
    cox = study(demo, "t.yaml", train="survival.cox", parameters=params)
    code, _, err = cli(capsys, "validate", cox, "--network", demo.network)
    assert code == 2 and "is the time column" in error_line(err)


def test_a_private_key_as_a_station_public_key_is_said_at_its_line(
    demo: Any, capsys: Any
) -> None:
    text = demo.network.read_text()
    bad = demo.root / "net-private.yaml"
    bad.write_text(text.replace("keys/nkr.pub.json", "keys/nkr.key.json", 1))
    code, _, err = cli(capsys, "validate", demo.study, "--network", bad)
    line = error_line(err)
    assert code == 2 and "net-private.yaml:" in line and "public_key" in line
    assert "this is a private key" in line


def test_validate_says_each_problem_once_and_no_station_advice_when_everywhere(
    demo: Any, capsys: Any
) -> None:
    params = {**COX, "time": "os_dys", "group": "regimn"}
    typo = study(demo, "two.yaml", train="survival.cox", parameters=params)
    code, _, err = cli(
        capsys,
        "validate",
        typo,
        "--network",
        demo.network,
        "--identity",
        demo.identity,
    )
    line = error_line(err)
    assert code == 2 and "2 problem(s)" in line  # not repeated for the companion
    assert "leave a station out" not in line
