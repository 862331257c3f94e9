"""Outside attack on the ``design: nma`` study (issue 13): hostile labels, trials CSVs,
station outputs and study files.

Each test states what must hold; a failing test is a finding (see the helper's
report). Nothing here runs a station: the orchestrator's functions are called
directly with forged inputs (:func:`pht.trains.nma_inputs.pool`,
:func:`pht.orchestrator.nma.network_inputs`, :func:`~pht.orchestrator.nma.fit`,
:func:`~pht.orchestrator.nma.nma_section`, :func:`pht.orchestrator.trials.read_trials`,
:func:`pht.orchestrator.config.load_study`, :func:`pht.orchestrator.run.write_results`).

Rule under test: hostile input ends in one line (:class:`pht.errors.PhtError`
subclasses) naming the file/row/station and the fix, or is handled correctly; never a
traceback (any other exception), never NaN/inf in the result, never a silently wrong
network.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from pht.algorithms.pairwise import Contrast, PairwiseResult, label_problem
from pht.errors import ConfigError, DataError
from pht.orchestrator.nma import (
    NmaDesign,
    cox_contrasts,
    fit,
    network_inputs,
    nma_section,
    r_script,
)
from pht.orchestrator.trials import read_trials
from pht.trains.nma_inputs import pool

ONE_LINE = (ConfigError, DataError)


def design(measure: str = "HR", reference: str = "A", kind: str = "cox") -> NmaDesign:
    return NmaDesign(
        inputs={"input": kind},
        measure=measure,
        reference=reference,
        small_values="good",
        model="random",
        tau="DL",
        level=0.95,
        analyses=(),
    )


def run_section(
    stations: list[dict[str, Any]],
    kind: str,
    measure: str,
    trials: PairwiseResult | None = None,
    reference: str = "A",
) -> dict[str, Any]:
    """stations + trials -> the result's nma section, as run_nma builds it."""
    inputs = network_inputs(stations, kind, measure, trials)
    d = design(measure, reference, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        section = nma_section(inputs, fit(inputs, d), d)
    json.dumps(section, allow_nan=False)  # what write_results does
    return section


def assert_one_line_or_finite(call: Any, *, name: str | None = None) -> None:
    """Either a one-line PhtError (naming ``name`` if given) or a finite section."""
    try:
        section = call()
    except ONE_LINE as exc:
        assert "\n" not in str(exc)
        if name is not None:
            assert name in str(exc), str(exc)
        return
    # handled: every estimate must be a number
    for row in section["forest"]:
        assert row["te"] is not None and math.isfinite(row["te"]), row


def write_csv(tmp_path: Path, text: str | bytes, name: str = "trials.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


H = "studlab,treat1,treat2,TE,seTE\n"
LINK = PairwiseResult(
    "HR", (Contrast("T1", "A", "B", -0.3, 0.1), Contrast("T2", "B", "C", 0.2, 0.1))
)


# == 2. hostile trials CSV ==============================================================
@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_a_trials_csv_not_in_utf8_is_one_line(tmp_path, encoding):
    """An Excel export in Windows-1252 ('Müller 2019', 'café') is the common case."""
    path = write_csv(
        tmp_path,
        (H + "Müller 2019,café,placebo,0.1,0.1\n").encode(encoding),
    )
    with pytest.raises(DataError, match=r"trials.csv: .*UTF-8"):
        read_trials(path, "HR")


@pytest.mark.parametrize(
    "rows",
    [
        "T1,A,B,800,0.1\n",  # log HR 800: exp() overflows in the result section
        "T1,A,B,0.1,1e-200\nT2,B,C,0.1,0.2\n",  # 1/seTE^2 = inf: singular Laplacian
        "T1,A,B,0.1,1e-170\nT2,B,C,0.1,0.2\nT3,A,C,0.1,0.3\n",
        "T1,A,B,0.1,1e200\nT2,B,C,0.1,0.2\n",  # seTE^2 overflows
    ],
    ids=["TE 800", "seTE 1e-200", "seTE 1e-170", "seTE 1e200"],
)
def test_extreme_but_finite_contrasts_are_one_line_or_finite(tmp_path, rows):
    path = write_csv(tmp_path, H + rows)

    def call() -> dict[str, Any]:
        return run_section([], "cox", "HR", read_trials(path, "HR"))

    assert_one_line_or_finite(call, name="trials.csv")


def test_a_huge_mean_difference_is_one_line_or_finite(tmp_path):
    path = write_csv(tmp_path, H + "T1,A,B,1e308,0.1\nT2,B,C,1e308,0.2\n")
    assert_one_line_or_finite(
        lambda: run_section([], "means", "MD", read_trials(path, "MD")),
        name="trials.csv",
    )


@pytest.mark.parametrize(
    ("rows", "measure"),
    [
        ("T,a,10,1,1e200\nT,b,10,1,1\n", "MD"),  # sd^2 overflows: OverflowError
        ("T,a,10,1,1e-200\nT,b,10,2,1e-200\n", "SMD"),  # pooled sd 0: ZeroDivision
    ],
    ids=["sd 1e200", "sd 1e-200 SMD"],
)
def test_extreme_sd_in_arm_rows_is_one_line(tmp_path, rows, measure):
    path = write_csv(tmp_path, "studlab,treatment,n,mean,sd\n" + rows)
    try:
        read_trials(path, measure)
    except ONE_LINE as exc:
        assert "trials.csv" in str(exc)


LOOKALIKES = {
    "cyrillic a": "nivolum\u0430b",
    "zero-width space": "nivolumab\u200b",
    "BOM inside the file": "\ufeffnivolumab",
    "decomposed accent": "cafe\u0301",  # vs the composed 'caf\u00e9'
    "fullwidth": "\uff4e\uff49\uff56\uff4f\uff4c\uff55\uff4d\uff41\uff42",
    "soft hyphen": "nivolu\u00admab",
}


@pytest.mark.parametrize("case", list(LOOKALIKES))
def test_a_lookalike_treatment_label_is_not_a_silent_new_node(tmp_path, case):
    """'nivolumab' and a look-alike must not become two treatments of the network.

    White space and case variants are refused (rename hint); invisible characters,
    other scripts' letters and Unicode normal forms make a second node silently.
    """
    same = "caf\u00e9" if case == "decomposed accent" else "nivolumab"
    path = write_csv(
        tmp_path,
        H
        + f"T1,{same},ipilimumab,0.1,0.1\n"
        + f"T2,{LOOKALIKES[case]},pembrolizumab,0.2,0.1\n"
        + "T3,pembrolizumab,ipilimumab,0.1,0.1\n",
    )
    with pytest.raises(ONE_LINE, match=r"trials.csv"):
        trials = read_trials(path, "HR")
        network_inputs([], "cox", "HR", trials, trials_name="trials.csv")


def test_a_lookalike_station_level_is_not_a_silent_new_node():
    """A station whose data level carries a zero-width space vs the trials' label."""
    stations = [
        {
            "label": "s1",
            "station": "s1",
            "arms": {"nivolumab\u200b": {"n": 80}, "ipilimumab": {"n": 90}},
            "cox": {
                "reference": "ipilimumab",
                "terms": ["nivolumab\u200b"],
                "coef": [-0.3],
                "cov": [[0.02]],
            },
        }
    ]
    trials = PairwiseResult(
        "HR",
        (
            Contrast("T", "nivolumab", "pembrolizumab", -0.1, 0.1),
            Contrast("U", "pembrolizumab", "ipilimumab", -0.1, 0.1),
        ),
    )
    with pytest.raises(DataError, match=r"station 's1'"):
        network_inputs(stations, "cox", "HR", trials)


def test_a_study_label_differing_only_by_an_invisible_character_is_refused(tmp_path):
    """'T1' and 'T1\\u200b' with the same contrast: one trial counted twice."""
    path = write_csv(tmp_path, H + "T1,a,b,0.1,0.1\nT1\u200b,a,b,0.1,0.1\n")
    with pytest.raises(DataError, match=r"trials.csv: "):
        read_trials(path, "HR")


@pytest.mark.parametrize(
    "label", ["a\x00b", "a\x1bb", "a\rb"], ids=["NUL", "ESC", "CR in field"]
)
def test_control_characters_in_labels_are_refused(tmp_path, label):
    """R's read.csv stops at a NUL (the R script would fit another network)."""
    path = write_csv(tmp_path, H + f'T1,"{label}",c,0.1,0.1\n')
    with pytest.raises(DataError, match=r"trials.csv: row 2"):
        read_trials(path, "HR")


@pytest.mark.parametrize("value", ["1_000", "\u0661", "infinity", " nan"])
def test_numbers_r_cannot_read_are_refused(tmp_path, value):
    """Python's float() reads '1_000' and Arabic-Indic digits; R's read.csv does not,
    so nma.R would not reproduce the fit."""
    path = write_csv(tmp_path, H + f"T1,a,b,{value},0.1\n")
    with pytest.raises(DataError, match=r"trials.csv: row 2: column 'TE'"):
        read_trials(path, "HR")


def test_row_numbers_after_a_quoted_newline_count_rows_not_lines(tmp_path):
    """The header is row 1: the bad record is row 4 (a spreadsheet's row), not line 5.

    The line break sits in an extra (ignored) column: a label with one is refused
    (a control character, see above).
    """
    path = write_csv(
        tmp_path,
        H.replace("\n", ",note\n")
        + 'T1,a,c,0.1,0.1,"line\nbreak"\nT2,c,d,0.1,0.2,\nT3,x,y,z,0.1,\n',
    )
    with pytest.raises(DataError, match=r"row 4: column 'TE'"):
        read_trials(path, "HR")


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ("T,a,-5,1\nT,b,10,2\n", r"row 2: n is -5"),
        ("T,a,5,7\nT,b,10,2\n", r"row 2: events \(7\) > n \(5\)"),
        ("T,a,5.5,1\nT,b,10,2\n", r"row 2: column 'n' is 5.5; a count must be a whole"),
        ("T,a,nan,1\nT,b,10,2\n", r"row 2: column 'n' is 'nan', not a number"),
        ("T,a,10,1\nT,a,10,2\n", r"rows 2 and 3: study 'T' has treatment 'a' twice"),
    ],
)
def test_bad_arm_rows_are_one_line(tmp_path, rows, pattern):
    """Regression (passes): the reader's checks of counts."""
    path = write_csv(tmp_path, "studlab,treatment,n,events\n" + rows)
    with pytest.raises(DataError, match=pattern):
        read_trials(path, "OR")


def test_crlf_and_a_huge_field_are_handled(tmp_path):
    """Regression (passes): CRLF reads; a 200 kB field is one line."""
    path = write_csv(tmp_path, (H + "T1,a,b,0.1,0.1\n").replace("\n", "\r\n"))
    assert read_trials(path, "HR").treatments == ("a", "b")
    path = write_csv(tmp_path, H + "T1," + "a" * 200_000 + ",c,0.1,0.1\n")
    with pytest.raises(DataError, match=r"row 2: not valid CSV"):
        read_trials(path, "HR")


# == 3. hostile station outputs =========================================================
def cox_station(cox: dict[str, Any], arms: dict[str, Any] | None = None) -> list[Any]:
    return [
        {
            "label": "s1",
            "station": "s1",
            "arms": arms or {"A": {"n": 50}, "B": {"n": 60}},
            "cox": cox,
        }
    ]


def test_a_huge_cox_coefficient_is_refused_naming_the_station():
    """coef 1000 passes cox_contrasts; exp(1000) overflows in nma_section."""
    stations = cox_station(
        {"reference": "A", "terms": ["B"], "coef": [1000.0], "cov": [[0.04]]}
    )
    assert_one_line_or_finite(
        lambda: run_section(stations, "cox", "HR", LINK), name="station 's1'"
    )


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_cox_coefficient_names_the_station_and_the_fix(value):
    """Today the error comes from nma() as "nma: study 's1' (A vs B): TE must be a
    finite number" - not "station 's1'" and without the fix (leave it out)."""
    stations = cox_station(
        {"reference": "A", "terms": ["B"], "coef": [value], "cov": [[0.04]]}
    )
    with pytest.raises(DataError, match=r"^station 's1': .*leave the station out"):
        network_inputs(stations, "cox", "HR", LINK)


def test_a_cox_covariance_not_positive_definite_names_the_station():
    """Each pair's variance is > 0 but the matrix is not PD; the error should say
    the station's covariance, not 'check the seTE of its rows' (a CSV's fix)."""
    arms = {t: {"n": 60} for t in "ABCD"}
    cov = [[1, -0.9, -0.9], [-0.9, 1, -0.9], [-0.9, -0.9, 1]]
    stations = cox_station(
        {
            "reference": "A",
            "terms": ["B", "C", "D"],
            "coef": [0.1, 0.2, 0.3],
            "cov": cov,
        },
        arms,
    )
    with pytest.raises(DataError, match=r"^station 's1': .*covariance"):
        network_inputs(stations, "cox", "HR", LINK)


def test_an_asymmetric_cox_covariance_is_refused():
    """Only the upper triangle is read: V_12 = 0.01, V_21 = 0.5 passes silently."""
    arms = {t: {"n": 60} for t in "ABC"}
    with pytest.raises(DataError, match=r"station 's'.*symmetric"):
        cox_contrasts(
            "s",
            {
                "reference": "A",
                "terms": ["B", "C"],
                "coef": [0.1, 0.2],
                "cov": [[0.04, 0.01], [0.5, 0.09]],
            },
            {k: v["n"] for k, v in arms.items()},
        )


def test_cox_terms_given_as_a_string_are_refused():
    """'terms': 'BC' is iterated letter by letter into arms B and C."""
    arms = {t: {"n": 60} for t in "ABC"}
    stations = cox_station(
        {
            "reference": "A",
            "terms": "BC",
            "coef": [0.1, 0.2],
            "cov": [[0.04, 0.01], [0.01, 0.09]],
        },
        arms,
    )
    with pytest.raises(DataError, match=r"station 's1'"):
        network_inputs(stations, "cox", "HR", LINK)


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("kind", ["events", "cox"])
def test_a_non_finite_arm_size_is_one_line_naming_the_station(kind, value):
    """int(nan) / int(inf) in _arms: ValueError / OverflowError tracebacks."""
    arms = {"A": {"n": value, "events": 3}, "B": {"n": 60, "events": 4}}
    stations = cox_station(
        {"reference": "A", "terms": ["B"], "coef": [0.1], "cov": [[0.04]]}, arms
    )
    with pytest.raises(DataError, match=r"station 's1'"):
        network_inputs(stations, kind, "HR" if kind == "cox" else "OR", LINK)


def test_pool_refuses_an_infinite_arm_size_in_one_line():
    """A station's JSON may say 1e999 (Python's json reads it as inf): the pool's
    int() raises OverflowError, which its except tuple does not catch."""
    released = {
        "s1": {
            "input": "events",
            "arms": {"A": {"n": math.inf, "events": 3}, "B": {"n": 30, "events": 4}},
        },
        "s2": {
            "input": "events",
            "arms": {"A": {"n": 20, "events": 3}, "B": {"n": 30, "events": 4}},
        },
    }
    with pytest.raises(DataError, match=r"station s1"):
        pool(released, {"input": "events", "treatment": "drug"})


def test_pool_refuses_an_output_that_is_not_a_mapping():
    released: dict[str, Any] = {
        "s1": ["not", "a", "mapping"],
        "s2": {"input": "events", "arms": {"A": {"n": 20, "events": 3}}},
    }
    with pytest.raises(DataError, match=r"station s1"):
        pool(released, {"input": "events", "treatment": "drug"})


def test_an_arm_without_events_for_input_events_is_refused():
    """_arms reads arm.get('events', 0): a missing count becomes 0 events silently."""
    stations = [
        {
            "label": "s1",
            "station": "s1",
            "arms": {"A": {"n": 50, "events": 20}, "B": {"n": 60}},
        }
    ]
    with pytest.raises(DataError, match=r"station 's1': arm 'B' events"):
        network_inputs(stations, "events", "OR")


@pytest.mark.parametrize(
    "arm",
    [{"n": 50.9, "events": 10}, {"n": 50, "events": 3.7}],
    ids=["n 50.9", "events 3.7"],
)
def test_fractional_counts_from_a_station_are_refused(arm):
    """int() truncates 50.9 to 50 and 3.7 to 3: a silently different network."""
    stations = [
        {
            "label": "s1",
            "station": "s1",
            "arms": {"A": arm, "B": {"n": 60, "events": 5}},
        }
    ]
    with pytest.raises(DataError, match=r"station 's1'"):
        network_inputs(stations, "events", "OR")


def test_a_huge_sd_from_a_station_is_one_line():
    stations = [
        {
            "label": "s1",
            "station": "s1",
            "arms": {
                "A": {"n": 50, "mean": 1.0, "sd": 1e200},
                "B": {"n": 60, "mean": 2.0, "sd": 1.0},
            },
        }
    ]
    trials = PairwiseResult("MD", (Contrast("T", "A", "C", 0.1, 0.2),))
    assert_one_line_or_finite(
        lambda: run_section(stations, "means", "MD", trials), name="station 's1'"
    )


def test_a_station_negative_or_zero_variance_is_refused():
    """Regression (passes): cox_contrasts refuses var <= 0 and inf."""
    for cov in ([[-0.04]], [[0.0]], [[math.inf]]):
        with pytest.raises(DataError, match=r"station 's'"):
            cox_contrasts(
                "s", {"reference": "A", "terms": ["B"], "coef": [0.1], "cov": cov}, {}
            )


# == 4. hostile study YAML ==============================================================
BASE: dict[str, Any] = {
    "question": "Which treatment?",
    "purpose": "package-management/reassessment",
    "design": "nma",
    "dataset": "melanoma",
    "inputs": {"treatment": "drug", "input": "events", "outcome": "death"},
    "measure": "OR",
    "reference": "a",
    "small_values": "good",
}


def load(tmp_path: Path, changes: dict[str, Any] | None = None, raw: str = "") -> Any:
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_study

    path = tmp_path / "study.yaml"
    text = raw or yaml.safe_dump({**BASE, **(changes or {})}, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return load_study(path, Catalogue())


@pytest.mark.parametrize("value", [["events"], {"a": 1}], ids=["list", "mapping"])
def test_inputs_input_of_the_wrong_type_is_one_line(tmp_path, value):
    """`kind not in MEASURES` with a list: TypeError unhashable type."""
    inputs = {**BASE["inputs"], "input": value}
    with pytest.raises(ConfigError, match=r"study.yaml:\d+: inputs.input"):
        load(tmp_path, {"inputs": inputs})


def test_a_trials_path_too_long_is_one_line(tmp_path):
    """Path.is_file() raises OSError ENAMETOOLONG: a traceback."""
    with pytest.raises(ConfigError, match=r"study.yaml:\d+: trials"):
        load(tmp_path, {"trials": "a" * 5000})


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"level": 1.0}, r"level: must be a confidence level"),
        ({"level": 0}, r"level: must be a confidence level"),
        ({"level": "x"}, r"level: must be a confidence level"),
        ({"level": float("nan")}, r"level: must be a confidence level"),
        ({"tau": "reml"}, r"tau: 'reml' is not one of DL, REML, ML"),
        ({"model": "both"}, r"model: 'both' is not one of common, random"),
        ({"rename": {"a": ["x"]}}, r"rename.a: must be a treatment label"),
        ({"rename": ["a"]}, r"rename: expected a mapping"),
        ({"rename": {"a": "b", "b": "a"}}, r"is a chain"),
        ({"reference": ["a", "b"]}, r"reference: must be a treatment label"),
        ({"inputs": ["drug"]}, r"inputs: expected a mapping"),
        ({"trials": ["t.csv"]}, r"trials: expected a string"),
        ({"trials": "t\x00.csv"}, r"control character"),
    ],
)
def test_hostile_study_values_are_one_line(tmp_path, changes, pattern):
    """Regression (passes): the study keys' own checks."""
    with pytest.raises(ConfigError, match=pattern):
        load(tmp_path, changes)


def test_deep_nesting_is_one_line(tmp_path):
    """Regression (passes): yamlcfg's depth limit."""
    raw = yaml.safe_dump(BASE) + "rename: " + "{a: " * 3000 + "b" + "}" * 3000 + "\n"
    with pytest.raises(ConfigError, match=r"nested deeper than"):
        load(tmp_path, raw=raw)


@pytest.mark.parametrize("target", ["/dev/zero", ".", "fifo.csv"])
def test_special_files_are_not_read(tmp_path, target):
    """Regression (passes): only a regular file is read (no hang on /dev/zero, FIFO)."""
    if target == "fifo.csv":
        os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(ConfigError, match=r"trials: trials file .* not found"):
        load(tmp_path, {"trials": target})


def test_a_study_file_cannot_read_files_outside_its_folder(tmp_path):
    """`trials: /etc/passwd` (or a symlink, or ../..) is read today, and a file's
    values can land in error lines and, once they parse, in result.json and the
    report. A study file (shared between analysts) should read trials next to it."""
    inner = tmp_path / "study"
    inner.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text(H + "T1,a,b,0.1,0.1\n", encoding="utf-8")
    for target in (str(secret), "../secret.csv"):
        from pht.manifest import Catalogue
        from pht.orchestrator.config import load_study

        path = inner / "study.yaml"
        path.write_text(yaml.safe_dump({**BASE, "trials": target}), encoding="utf-8")
        with pytest.raises(ConfigError, match=r"trials: .*(outside|next to)"):
            load_study(path, Catalogue())


def test_the_trials_file_is_recorded_by_its_digest(tmp_path):
    """result.json records the trials path only; the file can change afterwards and
    nothing shows which trials were pooled. Expect a SHA-256 in the study summary."""
    (tmp_path / "t.csv").write_text(H + "T1,a,b,0.1,0.1\n", encoding="utf-8")
    study = load(tmp_path, {"trials": "t.csv"})
    summary = json.dumps(study.design.summary)
    assert re.search(r"[0-9a-f]{64}", summary), summary


# == 1. injection through labels into report.html, nma.R, CSV exports ===================
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    "=cmd|' /C calc'!A0",
    '+HYPERLINK("http://x")',
    "@SUM(1+1)",
    'a\\"); system("id"); #',
    "${x}`id`\\u0041\nq",
]


@pytest.fixture(scope="module")
def hostile_out(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A result whose every label (treatments, studies, station, notes, file name,
    reference) is hostile, written by write_results."""
    from pht.orchestrator.run import write_results

    # labels starting a formula or holding a control character are refused (see
    # test_formula_and_control_labels_are_refused); the rest must survive the output
    safe = [h for h in HOSTILE if label_problem(h) is None]
    assert HOSTILE[6] in safe and len(safe) >= 4
    k = len(safe)
    trials = PairwiseResult(
        "HR",
        tuple(
            Contrast(safe[i], safe[i], safe[(i + 1) % k], 0.1 * i - 0.3, 0.1)
            for i in range(k)
        ),
        notes=("<b>note</b><script>n()</script>",),
    )
    stations = [
        {
            "label": "<script>st()</script>",
            "station": "<i>x</i>",
            "arms": {HOSTILE[0]: {"n": 50}, "<u>arm</u>": {"n": 60}},
            "cox": {
                "reference": HOSTILE[0],
                "terms": ["<u>arm</u>"],
                "coef": [0.2],
                "cov": [[0.04]],
            },
        }
    ]
    inputs = network_inputs(
        stations, "cox", "HR", trials, trials_name="<script>f()</script>.csv"
    )
    d = design("HR", HOSTILE[6], "cox")
    section = nma_section(inputs, fit(inputs, d), d)
    result = {
        "schema_version": 1,
        "train": "nma",
        "question": "<script>q()</script>?",
        "purpose": "package-management/reassessment",
        "dataset": "melanoma",
        "parameters": {},
        "created": "2026-01-01T00:00:00Z",
        "pht_version": "x",
        "stations": [],
        "partial": None,
        "nma": section,
        "nma_inputs": {
            "input": "cox",
            "treatment": "drug",
            "treatment_by": None,
            "studies": stations,
            "treatments": {},
            "note": "x",
        },
        "warnings": [],
        "provenance": {},
    }
    out = tmp_path_factory.mktemp("hostile")
    write_results(result, out)
    return out, section


def test_no_label_reaches_report_html_as_markup(hostile_out):
    """Regression (passes): every label, note and the answer are escaped."""
    out, _ = hostile_out
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "could not be laid out" not in html
    for bad in ("<script", "<svg", "<u>", "<b>note", "<i>x", "onerror=alert"):
        assert bad not in html.replace("&lt;", "").replace("onerror=alert(2)&gt;", "")
    assert html.count("<img ") == html.count('src="data:image/png;base64,')
    for svg in (out / "figures").glob("*.svg"):
        text = svg.read_text(encoding="utf-8")
        assert "<script" not in text and "<img" not in text


def test_the_r_script_keeps_the_reference_one_string(hostile_out):
    """Regression (passes): reference.group is one R string literal."""
    _, section = hostile_out
    script = r_script(section)
    line = next(x for x in script.splitlines() if "reference.group" in x)
    literal = line.split("=", 1)[1].strip().removesuffix(",")
    # an R double-quoted literal: starts and ends with ", every inner " escaped
    assert literal.startswith('"') and literal.endswith('"')
    body = literal[1:-1]
    assert re.fullmatch(r'(?:[^"\\]|\\.)*', body), body
    assert body.replace('\\"', '"').replace("\\\\", "\\") == HOSTILE[6]


def test_the_r_script_reads_labels_as_text():
    """read.csv turns a label 'NA' into a missing value and 'TRUE'/'1' into logical /
    integer columns: nma.R would then fit another network than pht. The script must
    read the label columns as character with no NA strings."""
    section = {
        "small_values": "good",
        "scale": "log",
        "measure_name": "hazard ratio",
        "measure": "HR",
        "tau_method": "DL",
        "level": 0.95,
        "reference": "NA",
    }
    script = r_script(section)
    assert "na.strings" in script and "colClasses" in script, script


@pytest.mark.parametrize("label", [h for h in HOSTILE if label_problem(h)])
@pytest.mark.parametrize("where", ["treatment", "study", "station arm"])
def test_formula_and_control_labels_are_refused(label, where):
    """nma_contrasts.csv is read by R: a quote prefix would change the label, so a
    label a spreadsheet runs (= + - @) or one with a control character is refused,
    in one line naming the source and the fix (rename)."""
    if where == "station arm":
        stations = [
            {
                "label": "s1",
                "station": "s1",
                "arms": {label: {"n": 50, "events": 5}, "B": {"n": 60, "events": 6}},
            }
        ]
        with pytest.raises(DataError, match=r"^station 's1': arm .*rename"):
            network_inputs(stations, "events", "OR")
        return
    contrast = (
        Contrast("T", label, "B", 0.1, 0.1)
        if where == "treatment"
        else Contrast(label, "A", "B", 0.1, 0.1)
    )
    trials = PairwiseResult("HR", (contrast, Contrast("U", "B", "C", 0.1, 0.1)))
    with pytest.raises(DataError, match=r"^t.csv: .*(rename|retype)") as info:
        network_inputs([], "cox", "HR", trials, trials_name="t.csv")
    assert "\n" not in str(info.value)


def test_exported_tables_defuse_formulas_but_keep_numbers(tmp_path):
    """exports.py's tables/*.csv: a text cell starting = + - @ TAB CR gets a quote;
    numbers (also negative ones, also as text) stay numbers."""
    import pandas as pd

    from pht.orchestrator.exports import Exports

    exports = Exports()
    frame = pd.DataFrame(
        {
            "label": ["=cmd|' /C calc'!A0", "+1+1", "@SUM(1)", "-x", "\tx", "ok"],
            "value": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0],
            "text": ["-0.25", "1e-3", "a", "b", "c", "d"],
        }
    )
    exports.add_table("t", frame)
    exports.write(tmp_path)
    with (tmp_path / "tables" / "t.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert [r[0] for r in rows[1:]] == [
        "'=cmd|' /C calc'!A0",
        "'+1+1",
        "'@SUM(1)",
        "'-x",
        "'\tx",
        "ok",
    ]
    assert [r[1] for r in rows[1:]][:3] == ["-1.5", "2.0", "-3.0"]
    assert [r[2] for r in rows[1:]][:2] == ["-0.25", "1e-3"]


@pytest.mark.parametrize("name", ["nma_contrasts.csv", "tables"])
def test_no_exported_csv_cell_starts_a_spreadsheet_formula(hostile_out, name):
    """CSV injection: a label '=cmd|...' / '+HYPERLINK(...)' / '@SUM(...)' is written
    as is, and a spreadsheet runs it. (exports.py's tables/*.csv do not guard either.)
    """
    out, _ = hostile_out
    files = (
        [out / name] if name.endswith(".csv") else sorted((out / name).glob("*.csv"))
    )
    bad = []
    for path in files:
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh):
                bad += [
                    f"{path.name}: {cell!r}"
                    for cell in row
                    if cell[:1] in ("=", "+", "@") and not _number(cell)
                ]
    assert not bad, bad[:5]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("raw", [b'{"n": NaN}', b'{"n": -Infinity}', b"{"])
def test_the_requester_refuses_station_output_its_guard_would_refuse(raw):
    """A station's guard refuses NaN/Infinity; the requester reads output the same way
    (json.loads accepts them by default and they would reach the pool as floats)."""
    from pht.errors import TrustError
    from pht.orchestrator.requester import _parse

    with pytest.raises(TrustError, match=r"^station s1 released an output"):
        _parse("s1", raw)
