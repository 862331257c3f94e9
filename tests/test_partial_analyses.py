"""A study whose analysis gave no result at all is a partial result, not a complete one.

Found by a newcomer: a database stopped in the middle of an equivalence study made
three of its four analyses fail, yet the run said nothing and exited 0.
"""

from __future__ import annotations

from pht.orchestrator.equivalence import _combined
from pht.orchestrator.report import _partial

FULL = {"complete": True, "requested": 3, "took_part": 3, "min_stations": 3}


def test_a_failed_analysis_makes_the_study_incomplete() -> None:
    analyses = {
        "os (adjusted)": {"partial": {**FULL, "missing": []}},
        "os (crude)": {"error": "no station took part"},
    }
    combined = _combined(analyses, "os (adjusted)")
    assert combined["complete"] is False
    assert combined["failed"] == [
        {"analysis": "os (crude)", "error": "no station took part"}
    ]
    banner = _partial({"partial": combined})
    assert "os (crude)" in banner and "gave no result" in banner


def test_every_analysis_with_a_result_is_complete() -> None:
    analyses = {"os (adjusted)": {"partial": {**FULL, "missing": []}}}
    combined = _combined(analyses, "os (adjusted)")
    assert combined["complete"] is True and combined["failed"] == []
    assert _partial({"partial": combined}) == ""
