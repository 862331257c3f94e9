"""report.html: self-contained, escaped, one section per result key."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from pht.orchestrator.report import render_report
from pht.station.codes import Code

QUESTION = "Does <script>alert('x')</script> survival differ & why?"
REASON = Code.SMALL_CELL.reason  # stations refuse with fixed codes only


def _curve(n: int, deaths: list[int], median: float | None) -> dict[str, Any]:
    time = [0.0, 100.0, 200.0, 300.0]
    at_risk = [n, n, n - deaths[1], n - deaths[1] - deaths[2]]
    survival, s = [], 1.0
    for r, d in zip(at_risk, deaths, strict=True):
        s *= 1 - d / r
        survival.append(s)
    return {
        "n": n,
        "events": sum(deaths),
        "time": time,
        "survival": survival,
        "ci_lower": [max(v - 0.1, 0.0) for v in survival],
        "ci_upper": [min(v + 0.1, 1.0) for v in survival],
        "at_risk": at_risk,
        "events_at": deaths,
        "censored": [0, 1, 0, 2],
        "median": {"estimate": median, "ci_lower": None, "ci_upper": None},
    }


def _test(stratified: bool, p: float) -> dict[str, Any]:
    method = "log-rank stratified by station" if stratified else "log-rank"
    return {"statistic": 10.2, "df": 1, "p_value": p, "stratified": stratified} | {
        "method": method
    }


def _result() -> dict[str, Any]:
    return {
        "train": "survival.km@1.0.0",
        "train_digest": "sha256:" + "ab" * 32,
        "question": QUESTION,
        "purpose": "package-management/reassessment",
        "dataset": "melanoma",
        "parameters": {"time": "os_days", "event": "death", "group": "arm"},
        "created": "2026-11-23T06:00:00+00:00",
        "pht_version": "0.1.0",
        "stations": [
            {"id": "nkr", "name": "Registry A", "participated": True, "n": 40}
            | {"events": 9, "excluded": 0, "reason": None}
            | {"elapsed_seconds": 1.25, "executor": "process"},
            {"id": "umc", "name": "Hospital B", "participated": False, "n": None}
            | {"events": None, "excluded": None, "reason": REASON}
            | {"elapsed_seconds": None, "executor": None},
        ],
        "km": {
            "control": _curve(20, [0, 2, 3, 4], 250.0),
            "treated": _curve(20, [0, 1, 1, 2], None),
        },
        "at_risk_table": {
            "times": [0.0, 100.0, 200.0, 300.0],
            "groups": {"control": [20, 20, 18, 15], "treated": [20, 20, 19, 18]},
        },
        "logrank": _test(False, 0.00139),
        "logrank_stratified": _test(True, 0.00001),
        "cox": {
            "params": {
                "arm[treated]": {"coef": -0.6931, "se": 0.3, "hr": 0.5}
                | {
                    "ci_lower": 0.2777,
                    "ci_upper": 0.9002,
                    "z": -2.31,
                    "p_value": 0.0209,
                },
                "age": {"coef": 0.02, "se": 0.01, "hr": 1.0202}
                | {"ci_lower": 1.0004, "ci_upper": 1.0404, "z": 2.0, "p_value": 0.0455},
            },
            "loglik": -120.5,
            "lr_test": {"statistic": 7.9, "df": 2, "p_value": 0.0193},
            "mode": "federated",
            "ties": "breslow",
            "iterations": 4,
            "converged": True,
            "n": 40,
            "events": 9,
        },
        "frobnicate": {"brand_new_output": [1, 2, 3]},
        "provenance": {
            "engine": "embedded",
            "requests": [{"station": "nkr", "request_id": "r-1"}],
            "rounds": 1,
        },
    }


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report")
    path = render_report(_result(), out)
    assert path == out / "report.html"
    assert path.is_file()
    return path.read_text(encoding="utf-8")


def test_header_and_stations(page: str) -> None:
    assert "Does &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; survival" in page
    assert "differ &amp; why?" in page
    assert REASON in page
    assert "sha256:" + "ab" * 32 in page
    assert "package-management/reassessment" in page
    assert "1 of 2 stations took part" in page


def test_self_contained_and_safe(page: str) -> None:
    assert "<script" not in page
    assert "<link" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert page.count("<img") == 2  # KM plot and forest plot
    assert 'src="data:image/png;base64,' in page


def test_km_sections(page: str) -> None:
    assert "Number at risk (time in days)" in page
    assert "not reached" in page  # the treated arm's median is null
    assert "250" in page
    assert "0.0014" in page
    assert "&lt;0.0001" in page
    assert "log-rank stratified by station" in page


def test_cox_table(page: str) -> None:
    cox = page[page.index('<section id="cox">') :]
    cox = cox[: cox.index("</section>")]
    assert "Hazard ratio" in cox
    assert "arm[treated]" in cox
    assert "0.500" in cox
    assert "0.278 to 0.900" in cox
    assert "0.0209" in cox
    assert "<img" in cox


def test_unknown_key_and_provenance(page: str) -> None:
    assert '<section id="frobnicate">' in page
    assert "brand_new_output" in page
    assert page.index('id="frobnicate"') < page.index('id="provenance"')
    assert "embedded" in page
    assert "r-1" in page
    assert "could not be laid out" not in page


def test_malformed_section_falls_back_to_json(tmp_path: Path) -> None:
    broken = _result()
    del broken["cox"]["params"]
    del broken["km"]
    del broken["at_risk_table"]
    broken["logrank"] = None
    page = render_report(broken, tmp_path / "new").read_text(encoding="utf-8")
    assert "could not be laid out" in page
    assert "&quot;ties&quot;: &quot;breslow&quot;" in page
    assert "<img" not in page
    assert "log-rank stratified by station" in page


# -- shared by tests/test_report_*.py ---------------------------------------------
RECEIPT_B64 = "eyJhdWRpdF9yb290IjoiMjQ1OWNiY2EwNThhYTc5ZDMxOTgzMDg0YjMxOGMzN2I5MGVh" * 3


def provenance() -> dict[str, Any]:
    """A provenance record shaped like ``pht run``'s, with a signed receipt."""
    digest = "sha256:" + "b8a2e2d05e3127a1" * 4
    return {
        "engine": "embedded",
        "study_file": "study.yaml",
        "requester": {"organisation": "ZIN", "user": "analyst", "role": "analyst"}
        | {"key_id": "0724cf2c850d658c"},
        "request_id": "d1d9554d-98d9-42c3-abbd-223e8a563006",
        "issued_at": "2026-11-30T21:35:33Z",
        "train_signers": ["13828f76507835c5"],
        "receipts": [
            {
                "station": "dica",
                "round": 0,
                "output_digest": digest,
                "audit_checkpoint": {"size": 6, "root": "2459cbca" * 8},
                "receipt": {
                    "payload": RECEIPT_B64,
                    "payloadType": "application/vnd.pht.receipt+json",
                    "signatures": [{"keyid": "b8b7f122c9ca27df", "sig": "Eb3v" * 22}],
                },
            }
        ],
        "rounds": 1,
        "budget": {"queries_per_station": 1, "requests": ["survival.km@1.2.0"]},
        "requests": [
            {"station": "nkr", "request_id": "r-1", "status": "refused"}
            | {"reason": REASON, "executor": "process", "train_digest": None},
            {"station": "dica", "request_id": "r-1", "status": "ok"}
            | {"reason": None, "executor": "process", "train_digest": digest},
        ],
    }


def km_result(p_plain: float = 0.00139, p_stratified: float = 0.00001) -> dict:
    """A Kaplan-Meier result whose two log-rank tests have the given p-values."""
    result = _result()
    del result["cox"], result["frobnicate"]
    result["logrank"] = _test(False, p_plain)
    result["logrank_stratified"] = _test(True, p_stratified)
    result["provenance"] = provenance()
    return result


def _coef(hr: float, lower: float, upper: float, p: float) -> dict[str, float]:
    return {"coef": math.log(hr), "se": 0.05, "hr": hr, "ci_lower": lower} | {
        "ci_upper": upper,
        "z": 1.0,
        "p_value": p,
    }


def cox_result(**parameters: Any) -> dict[str, Any]:
    """A Cox result: regimen (3 levels), age, sex; stratified by station."""
    result = _result()
    for key in ("km", "at_risk_table", "logrank", "logrank_stratified", "frobnicate"):
        del result[key]
    result["train"] = "survival.cox@1.3.0"
    result["parameters"] = {
        "time": "os_days",
        "event": "death",
        "covariates": ["regimen", "age", "sex"],
        "reference": {"regimen": "standard"},
        "mode": "stratified",
    } | parameters
    result["cox"] = {
        "params": {
            "regimen[T.extended_interval]": _coef(1.0075, 0.908, 1.1179, 0.8878),
            "regimen[T.weight_based]": _coef(1.0563, 0.9117, 1.2239, 0.4657),
            "age": _coef(1.0143, 1.0118, 1.0168, 2.7e-29),
            "sex[T.M]": _coef(0.6, 0.45, 0.8, 0.0004),
        },
        "loglik": -36533.0,
        "lr_test": {"statistic": 1007.2, "df": 4, "p_value": 5.3e-209},
        "n": 9000,
        "events": 5066,
        "mode": "stratified",
        "ties": "efron",
        "iterations": 4,
        "converged": True,
        "reference_levels": {"regimen": "standard", "sex": "F"},
        "warnings": [],
    }
    result["provenance"] = provenance()
    return result
