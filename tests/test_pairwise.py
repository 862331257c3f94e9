"""pairwise: arm-level trials to contrasts as R's pairwise() (meta/netmeta) does.

Oracle: ``tests/reference/pairwise_reference.R`` (metafor ``escalc`` with
pairwise()'s per-study continuity correction, on metadat's ``dat.hasselblad1998``
(smoking cessation, binary, two three-arm studies, zero cells), a synthetic binary set
with multi-arm zero / all-events cases, and ``dat.senn2013`` (HbA1c, continuous, one
three-arm study)) wrote ``pairwise_reference.json``; every contrast must agree to
1e-10, and the contrasts R leaves out must be left out here with a note. Then the
published-trials CSV: both levels read, and every bad input gives one line naming
the file, the row or study, and the fix.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pht.algorithms.pairwise import (
    BinaryArm,
    ContinuousArm,
    Contrast,
    PairwiseResult,
    check_contrasts,
    pairwise_binary,
    pairwise_continuous,
)
from pht.errors import ConfigError, DataError
from pht.orchestrator.trials import read_trials

REF = json.loads(
    (Path(__file__).parent / "reference" / "pairwise_reference.json").read_text()
)
TOL = 1e-10


def _binary_studies(arms: list[dict[str, Any]]) -> dict[str, list[BinaryArm]]:
    out: dict[str, list[BinaryArm]] = {}
    for a in arms:
        out.setdefault(a["studlab"], []).append(
            BinaryArm(a["treatment"], int(a["n"]), int(a["events"]))
        )
    return out


def _continuous_studies(arms: list[dict[str, Any]]) -> dict[str, list[ContinuousArm]]:
    out: dict[str, list[ContinuousArm]] = {}
    for a in arms:
        out.setdefault(a["studlab"], []).append(
            ContinuousArm(a["treatment"], int(a["n"]), a["mean"], a["sd"])
        )
    return out


def _assert_matches(result: PairwiseResult, expected: dict[str, Any]) -> None:
    want = expected["contrasts"]
    got = result.contrasts
    assert [(c.studlab, c.treat1, c.treat2) for c in got] == [
        (w["studlab"], w["treat1"], w["treat2"]) for w in want
    ]
    for c, w in zip(got, want, strict=True):
        assert c.TE == pytest.approx(w["TE"], abs=TOL, rel=TOL)
        assert c.seTE == pytest.approx(w["seTE"], abs=TOL, rel=TOL)
        assert (c.n1, c.n2) == (w["n1"], w["n2"])
        if "incr" in w:
            assert c.incr == w["incr"]
    for gone in expected.get("left_out", []):
        line = (
            f"study {gone['studlab']!r}: {gone['treat1']} vs {gone['treat2']} left out"
        )
        assert any(n.startswith(line) for n in result.notes), (line, result.notes)


@pytest.mark.parametrize("measure", ["OR", "RR", "RD"])
@pytest.mark.parametrize("dataset", ["hasselblad1998", "synthetic_binary"])
def test_binary_contrasts_equal_R_escalc_with_pairwise_rules(
    dataset: str, measure: str
) -> None:
    # oracle: tests/reference/pairwise_reference.R (escalc on all pairs, per-study incr)
    ref = REF[dataset]
    result = pairwise_binary(_binary_studies(ref["arms"]), measure)
    _assert_matches(result, ref[measure])
    assert result.measure == measure


@pytest.mark.parametrize("measure", ["MD", "SMD"])
def test_continuous_contrasts_equal_R_on_senn2013(measure: str) -> None:
    # oracle: escalc("MD"); SMD = Cohen's d, SD pooled over all arms, Crippa-Orsini SE
    ref = REF["senn2013"]
    result = pairwise_continuous(_continuous_studies(ref["arms"]), measure)
    _assert_matches(result, ref[measure])
    assert result.notes == ()


def test_hasselblad_has_multiarm_and_zero_cells() -> None:
    # the oracle data exercise what they should: three-arm studies and zero cells
    result = pairwise_binary(_binary_studies(REF["hasselblad1998"]["arms"]), "OR")
    per_study: dict[str, int] = {}
    for c in result.contrasts:
        per_study[c.studlab] = per_study.get(c.studlab, 0) + 1
    assert sorted(per_study.values()).count(3) == 2
    assert {c.studlab for c in result.contrasts if c.incr} == {"5", "19"}
    assert len(result.treatments) == 4


def test_zero_in_third_arm_corrects_every_pair_of_the_study() -> None:
    # pairwise()'s rule is per study: escalc's per-table "only0" would leave B vs C alone
    arms = [BinaryArm("A", 20, 0), BinaryArm("B", 25, 6), BinaryArm("C", 30, 9)]
    bc = pairwise_binary({"s": arms}, "OR").contrasts[2]
    assert (bc.treat1, bc.treat2, bc.incr) == ("B", "C", 0.5)
    assert bc.TE == pytest.approx(math.log(6.5 * 21.5 / (19.5 * 9.5)), rel=1e-14)


def test_study_with_no_events_is_excluded_for_or_and_rr_but_not_rd() -> None:
    studies = {
        "none": [BinaryArm("A", 15, 0), BinaryArm("B", 18, 0)],
        "ok": [BinaryArm("A", 15, 3), BinaryArm("B", 18, 5)],
    }
    for measure in ("OR", "RR"):
        r = pairwise_binary(studies, measure)
        assert r.excluded == ("none",)
        assert r.studies == ("ok",)
        assert f"study 'none' excluded: no estimable {measure} contrast" in r.notes
    rd = pairwise_binary(studies, "RD")
    assert rd.excluded == () and rd.studies == ("none", "ok")


def test_smd_of_a_multiarm_study_is_consistent() -> None:
    # Cohen's d with one pooled SD: d_AC = d_AB + d_BC (Hedges' g per pair is not)
    arms = [
        ContinuousArm("A", 29, -2.5, 0.862),
        ContinuousArm("B", 31, -2.3, 1.782),
        ContinuousArm("C", 29, -1.3, 1.831),
    ]
    ab, ac, bc = pairwise_continuous({"w": arms}, "SMD").contrasts
    assert ac.TE == pytest.approx(ab.TE + bc.TE, abs=1e-14)


def test_reversed_arm_order_negates_the_effect() -> None:
    a, b = BinaryArm("A", 30, 4), BinaryArm("B", 28, 0)
    for measure in ("OR", "RR", "RD"):
        fwd = pairwise_binary({"s": [a, b]}, measure).contrasts[0]
        rev = pairwise_binary({"s": [b, a]}, measure).contrasts[0]
        assert rev.TE == pytest.approx(-fwd.TE, abs=1e-14)
        assert rev.seTE == pytest.approx(fwd.seTE, rel=1e-14)


# -- the published-trials CSV ---------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "trials.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_binary_arm_csv_equals_R(tmp_path: Path) -> None:
    ref = REF["hasselblad1998"]
    lines = ["author,studlab,treatment,n,events"]
    lines += [
        f"x,{a['studlab']},{a['treatment']},{a['n']},{a['events']}" for a in ref["arms"]
    ]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    _assert_matches(read_trials(path, "OR"), ref["OR"])


def test_read_continuous_arm_csv_equals_R(tmp_path: Path) -> None:
    ref = REF["senn2013"]
    lines = ["studlab,treatment,n,mean,sd"]
    lines += [
        f'"{a["studlab"]}",{a["treatment"]},{a["n"]},{a["mean"]!r},{a["sd"]!r}'
        for a in ref["arms"]
    ]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    _assert_matches(read_trials(path, "SMD"), ref["SMD"])


def test_read_contrast_csv_passes_through_and_drops_exact_repeats(
    tmp_path: Path,
) -> None:
    ref = REF["hasselblad1998"]["OR"]["contrasts"]
    lines = ["studlab,treat1,treat2,TE,seTE"]
    lines += [
        f"{c['studlab']},{c['treat1']},{c['treat2']},{c['TE']!r},{c['seTE']!r}"
        for c in ref
    ]
    first = ref[0]
    lines.append(
        f"{first['studlab']},{first['treat2']},{first['treat1']},{-first['TE']!r},{first['seTE']!r}"
    )
    path = _write(tmp_path, "\n".join(lines) + "\n")
    result = read_trials(path, "OR")
    assert [(c.TE, c.seTE) for c in result.contrasts] == [
        (c["TE"], c["seTE"]) for c in ref
    ]
    assert result.notes == (f"row {len(ref) + 2}: repeats row 2 (study '1'); dropped",)
    assert all(c.n1 is None for c in result.contrasts)


def test_read_contrast_csv_log_hr(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "studlab,treat1,treat2,TE,seTE,n1,n2\nT1,A,B,-0.2,0.1,50,\n"
    )
    (c,) = read_trials(path, "HR").contrasts
    assert c == Contrast("T1", "A", "B", -0.2, 0.1, 50, None)


BAD = [
    # (file text, measure, error, regex the one line must match)
    (
        "studlab,treatment,n\ns,A,10\ns,B,12\n",
        "OR",
        DataError,
        r"binary arm-level file has no column 'events': the header needs studlab,",
    ),
    (
        "studlab,treatment,events\ns,A,1\ns,B,2\n",
        "OR",
        DataError,
        r"no column 'n': the header needs studlab,treatment,n,events",
    ),
    ("studlab,treat1,TE,seTE\ns,A,0.1,0.2\n", "OR", DataError, r"no column 'treat2'"),
    (
        "studlab,treatment,n,events\ns,A,ten,1\ns,B,12,2\n",
        "OR",
        DataError,
        r"row 2: column 'n' is 'ten', not a number",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1\ns,B,0,0\n",
        "OR",
        DataError,
        r"row 3: n is 0; an arm needs n > 0",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1\ns,B,12,13\n",
        "RR",
        DataError,
        r"row 3: events \(13\) > n \(12\)",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1.5\ns,B,12,3\n",
        "OR",
        DataError,
        r"row 2: column 'events' is 1.5; a count must be a whole number",
    ),
    (
        "studlab,treatment,n,mean,sd\ns,A,10,1,0\ns,B,12,2,1\n",
        "MD",
        DataError,
        r"row 2: sd is 0.0; sd must be > 0",
    ),
    (
        "studlab,treatment,n,mean,sd\ns,A,10,1,\ns,B,12,2,1\n",
        "MD",
        DataError,
        r"row 2: column 'sd' is empty",
    ),
    (
        "studlab,treat1,treat2,TE,seTE\ns,A,B,0.1,0\n",
        "OR",
        DataError,
        r"row 2: seTE is 0.0; it must be > 0",
    ),
    (
        "studlab,treat1,treat2,TE,seTE\ns,A,A,0.1,0.2\n",
        "OR",
        DataError,
        r"row 2: treat1 and treat2 are both 'A'",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1\ns,B,12,2\nt,A,9,1\n",
        "OR",
        DataError,
        r"row 4: study 't' has one arm.*add the other arm",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1\ns,A,12,2\n",
        "OR",
        DataError,
        r"rows 2 and 3: study 's' has treatment 'A' twice",
    ),
    (
        "studlab,treat1,treat2,TE,seTE\ns,A,B,0.1,0.2\ns,B,A,0.1,0.2\n",
        "OR",
        DataError,
        r"row 3 and row 2 both give study 's' A vs B with different TE/seTE: keep one",
    ),
    (
        "studlab,treat1,treat2,TE,seTE\ns,A,B,0.1,0.2\ns,A,C,0.3,0.2\n",
        "OR",
        DataError,
        r"study 's' has 3 treatments but no contrast B vs C.*add the missing row",
    ),
    (
        "studlab,treat1,treat2,TE,seTE\ns,A,B,0.1,0.2\ns,A,C,0.3,0.2\ns,B,C,0.5,0.2\n",
        "OR",
        DataError,
        r"study 's': B vs C differs by 0.3 .*correct the rows",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1\ns,B,12,2\n",
        "MD",
        ConfigError,
        r"measure MD needs continuous arms \(n, mean, sd\); this file has binary"
        r" arms \(events\): use OR, RR or RD",
    ),
    (
        "studlab,treatment,n,mean,sd\ns,A,10,1,1\ns,B,12,2,1\n",
        "OR",
        ConfigError,
        r"measure OR needs binary arms \(n, events\).*use MD or SMD",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1\ns,B,12,2\n",
        "HR",
        ConfigError,
        r"measure HR needs contrast-level rows",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1\ns,B,12,2\n",
        "logOR",
        ConfigError,
        r"measure 'logOR' is unknown: use one of OR, RR, RD, MD, SMD, HR",
    ),
    (
        "studlab,treatment,n,events\ns,A,10,1\ns,B,12\n",
        "OR",
        DataError,
        r"row 3: 3 fields, the header has 4",
    ),
    (
        "studlab,arm,n,events\ns,A,10,1\n",
        "OR",
        DataError,
        r"neither 'treatment' .* nor 'treat1'",
    ),
    ("studlab,treatment,n,events\n", "OR", DataError, r"no data rows below the header"),
    ("", "OR", DataError, r"the file is empty"),
]


@pytest.mark.parametrize(("text", "measure", "error", "pattern"), BAD)
def test_bad_csv_gives_one_line_naming_file_row_and_fix(
    tmp_path: Path, text: str, measure: str, error: type[Exception], pattern: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(error, match=pattern) as info:
        read_trials(path, measure)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.csv: cannot read the trials file"):
        read_trials(tmp_path / "nope.csv", "OR")


def test_kernels_reject_bad_arms_and_measures() -> None:
    with pytest.raises(DataError, match=r"arm 'A': events \(5\) > n \(4\)"):
        BinaryArm("A", 4, 5)
    with pytest.raises(DataError, match=r"study 's' has one arm"):
        pairwise_binary({"s": [BinaryArm("A", 4, 1)]}, "OR")
    with pytest.raises(ConfigError, match=r"measure 'MD' does not fit binary arm data"):
        pairwise_binary({"s": [BinaryArm("A", 4, 1), BinaryArm("B", 4, 1)]}, "MD")
    with pytest.raises(DataError, match=r"every arm has n = 1"):
        pairwise_continuous(
            {"s": [ContinuousArm("A", 1, 0.0, 1.0), ContinuousArm("B", 1, 1.0, 1.0)]},
            "SMD",
        )
    with pytest.raises(DataError, match=r"contrast 1: seTE is nan"):
        check_contrasts([Contrast("s", "A", "B", 0.0, math.nan)], "HR")


def test_check_contrasts_refuses_multiarm_standard_errors_that_do_not_fit(
    tmp_path: Path,
) -> None:
    """Issue 13: seTE 0.02, 0.02, 0.5 in one 3-arm trial is refused at load time."""
    path = tmp_path / "trials.csv"
    path.write_text(
        "studlab,treat1,treat2,TE,seTE\n"
        "CM067,ipilimumab+nivolumab,ipilimumab,-0.5978,0.02\n"
        "CM067,nivolumab,ipilimumab,-0.4308,0.02\n"
        "CM067,ipilimumab+nivolumab,nivolumab,-0.1670,0.5\n",
        encoding="utf-8",
    )
    with pytest.raises(
        DataError,
        match=r"trials.csv: study 'CM067': its standard errors do not fit together "
        r"for a multi-arm study \(.*\); check the seTE of its rows$",
    ):
        read_trials(path, "HR")


@pytest.mark.parametrize(
    ("sep", "said"),
    [
        (";", r"the file uses ';' between fields"),
        ("\t", "the file uses tabs between fields"),
    ],
)
def test_read_trials_names_a_semicolon_or_tab_separated_file(
    tmp_path: Path, sep: str, said: str
) -> None:
    path = tmp_path / "trials.csv"
    rows = ["studlab,treat1,treat2,TE,seTE", "T,a,b,0.3,0.1"]
    path.write_text("\n".join(r.replace(",", sep) for r in rows) + "\n")
    with pytest.raises(DataError, match=rf"{said}; save it as comma-separated \(CSV"):
        read_trials(path, "HR")


def test_read_trials_names_the_spelling_of_a_column_given_in_other_case(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trials.csv"
    path.write_text("studlab,Treat1,treat2,te,sete\nT,a,b,0.3,0.1\n")
    with pytest.raises(
        DataError, match=r"column 'Treat1' must be spelled 'treat1' \(column names"
    ):
        read_trials(path, "HR")
