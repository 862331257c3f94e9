"""Outsider attacks on ``nma.inputs@1.0.0`` (issue 13): a curious analyst with the
honest train, choosing only its parameters, tries to work out a count in (0, k) or
one patient's outcome from the released arms. Each attack broke the former
complementary suppression; they are now regression tests of the rules that hold by
construction (:mod:`pht.algorithms.nma_local`): a table with an arm of fewer than k
patients is refused whatever the request, ``treatments`` only selects among arms of
>= k patients, Cox covariates are checked on the fitted rows, and two arms never
share a label.

Every attack drives :func:`pht.trains.nma_inputs.station_output`, the station's own
recomputation: the station releases exactly ``finalize(recompute(view))``, i.e.
:func:`~pht.algorithms.nma_local.flatten` of it (see ``test_nma_inputs``'s end-to-end
test), so the numbers below are the released numbers. Margins the attack uses are
released by the same train: a one-way request (``treatment: drug``) gives every drug's
n and events, ``treatment: regimen`` every regimen's (each level of a group column
holds >= k patients at extraction, so one-way requests hide nothing).

A test *fails* while the leak is open: it asserts that the request is refused, or
that the number the rules protect cannot be recovered from what is released.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pht.algorithms.nma_local import SMALL_ARM, flatten, spanned_by_few
from pht.errors import DisclosureError
from pht.trains.nma_inputs import station_output

K = 10


def columns_of(data: pd.DataFrame) -> Any:
    return {c: data[c].to_numpy() for c in data}.__getitem__


def released(data: pd.DataFrame, **parameters: Any) -> dict[str, Any]:
    """What the station releases for these parameters (its own, flattened)."""
    wire = station_output(parameters, columns_of(data), K, {})
    return flatten(wire, parameters.get("treatment_by"))


def table(cells: dict[tuple[str, str], tuple[int, int]], seed: int = 5) -> pd.DataFrame:
    """One row per patient: (drug, regimen) -> (patients, deaths), random times/costs."""
    rng = np.random.default_rng(seed)
    rows = [
        (drug, regimen, 1 if i < deaths else 0)
        for (drug, regimen), (n, deaths) in cells.items()
        for i in range(n)
    ]
    data = pd.DataFrame(rows, columns=["drug", "regimen", "death"])
    data["days"] = rng.exponential(300, len(data)).round(1) + 1
    data["cost"] = rng.lognormal(8, 0.4, len(data)).round(2)
    return data


def arm_n(out: dict[str, Any]) -> dict[str, int]:
    return {label: int(stats["n"]) for label, stats in out["arms"].items()}


# -- 1. the same arm table through 'events' and 'cox' hid different arms -------------------
# niv / wb holds ONE patient, who died. The ipi arms and niv / std have no deaths, so
# the Cox request used to leave them out before the suppression and the small arm was
# hidden in a different rectangle than in the events request. Now the table has a
# small arm: every request on drug x regimen is refused, whatever its input.
EVENTS_VS_COX = {
    ("niv", "std"): (30, 0),
    ("niv", "ext"): (20, 10),
    ("niv", "wb"): (1, 1),
    ("pem", "std"): (40, 20),
    ("pem", "ext"): (20, 10),
    ("pem", "wb"): (20, 10),
    ("ipi", "std"): (30, 0),
    ("ipi", "ext"): (30, 0),
    ("ipi", "wb"): (30, 0),
}


def test_events_then_cox_give_a_single_patients_arm_and_death() -> None:
    data = table(EVENTS_VS_COX)
    two_way = {"treatment": "drug", "treatment_by": "regimen"}
    requests = [
        {"input": "events", "outcome": "death"},
        {"input": "rates", "time": "days", "event": "death"},
        {"input": "means", "measure": "cost"},
        {"input": "cox", "time": "days", "event": "death"},
        # selecting arms of >= k patients does not help: the table is checked whole
        {"input": "cox", "time": "days", "event": "death", "treatments": PEM},
        {"input": "events", "outcome": "death", "treatments": ["niv / ext", *PEM]},
    ]
    for request in requests:
        with pytest.raises(DisclosureError) as info:
            released(data, **request, **two_way)
        # one fixed sentence: no count, no arm named
        assert str(info.value) == SMALL_ARM
    # the one-way table (each drug >= k) is released: the margin alone gives nothing
    drugs = released(data, input="events", treatment="drug", outcome="death")
    assert drugs["arms"]["niv"] == {"n": 51, "events": 11}


PEM = ["pem / std", "pem / ext", "pem / wb"]


def test_events_then_cox_through_a_station(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Attack 1 through the station's whole release path (admission, extraction,
    guard, recomputation, finalize, sealing): both two-way requests are refused."""
    from conftest import write_network

    from pht.crypto import load_identity
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import EmbeddedEngine
    from pht.orchestrator.requester import Requester, signed_train
    from pht.wire import TrainRef

    data = table(EVENTS_VS_COX)
    network = write_network(
        tmp_path,
        {"s1": data},
        dataset="d",
        min_cell_size=K,
        classes=("aggregate", "model"),
    )
    catalogue, net = Catalogue(), load_network(network)
    requester = Requester(
        load_identity(network.parent / "keys" / "analyst.key.json"),
        {s: e.public_key for s, e in net.stations.items()},
    )
    package = catalogue.get(TrainRef.parse("nma.inputs"))

    def ask(engine: Any, **parameters: Any) -> dict[str, Any] | None:
        body, envelope = requester.request(
            role="analyst",
            purpose="package-management/reassessment",
            train=str(package.manifest.ref),
            train_digest=package.digest,
            train_envelope=signed_train(net.trains, package),
            dataset="d",
            parameters=parameters,
            targets=["s1"],
        )
        reply = requester.open(engine.station("s1").handle(envelope), body.request_id)
        if not reply.ok:
            # the train's refusal, said as such (no count, no arm)
            assert "train refused" in str(reply.reason), reply.reason
            return None
        return reply.output  # type: ignore[no-any-return]

    with EmbeddedEngine(net, catalogue) as engine:
        two_way = {"treatment": "drug", "treatment_by": "regimen"}
        events = ask(engine, input="events", outcome="death", **two_way)
        cox = ask(engine, input="cox", time="days", event="death", **two_way)
        drugs = ask(engine, input="events", treatment="drug", outcome="death")
    # both two-way requests are refused: nothing of row niv is released by arm
    assert events is None and cox is None
    assert drugs is not None and drugs["arms"]["niv"] == {"n": 51, "events": 11}


# -- 2. the transposed table hid different arms -------------------------------------------
# the same cells as drug x regimen and as regimen x drug: the rectangle's tie-breaks
# and the margins' 'smallest released arm' followed the (row, column) order. Now both
# orders are refused (b / z holds one patient).
TRANSPOSED = {
    ("a", "y"): (20, 10),
    ("a", "z"): (12, 0),
    ("b", "x"): (20, 10),
    ("b", "y"): (30, 10),
    ("b", "z"): (1, 1),
    ("c", "x"): (30, 10),
    ("c", "z"): (12, 0),
}


def test_swapping_treatment_and_treatment_by_is_refused_both_ways() -> None:
    data = table(TRANSPOSED)
    common = {"input": "events", "outcome": "death"}
    for treatment, by in (("drug", "regimen"), ("regimen", "drug")):
        with pytest.raises(DisclosureError, match="fewer than k patients"):
            released(data, treatment=treatment, treatment_by=by, **common)
    # what is released (the one-way margins) holds only arms of >= k patients
    drugs = released(data, treatment="drug", **common)
    assert drugs["arms"]["b"] == {"n": 51, "events": 21}


def test_two_way_releases_differ_only_by_whole_arms() -> None:
    """Every arm >= k: any difference of released arms and margins is a sum of whole
    arms (0 or >= k), whichever orientation or list the analyst combines."""
    cells = {
        ("a", "y"): (20, 10),
        ("a", "z"): (12, 0),
        ("b", "x"): (20, 10),
        ("b", "y"): (30, 10),
        ("b", "z"): (11, 0),
        ("c", "x"): (30, 10),
        ("c", "z"): (12, 0),
    }
    data = table(cells)
    common = {"input": "events", "outcome": "death"}
    rows = released(data, treatment="drug", treatment_by="regimen", **common)
    cols = released(data, treatment="regimen", treatment_by="drug", **common)
    listed = released(
        data,
        treatment="drug",
        treatment_by="regimen",
        treatments=["b / x", "c / z"],
        **common,
    )
    assert set(listed["arms"]) == {"b / x", "c / z"}
    # every present arm is released, with its exact count: nothing is hidden
    assert {k: (v["n"], v["events"]) for k, v in rows["arms"].items()} == {
        f"{d} / {r}": cell for (d, r), cell in cells.items()
    }
    flipped = {" / ".join(k.split(" / ")[::-1]): v for k, v in cols["arms"].items()}
    assert flipped == rows["arms"]
    assert listed["arms"] == {k: rows["arms"][k] for k in listed["arms"]}
    # a margin minus any released arms of its row is a sum of whole arms of >= k
    drugs = released(data, treatment="drug", **common)
    for drug, total in drugs["arms"].items():
        mine = [v["n"] for k, v in rows["arms"].items() if k.startswith(f"{drug} /")]
        assert total["n"] == sum(mine)
        for left_out in mine:
            assert total["n"] - left_out == 0 or total["n"] - left_out >= K


# -- 3. 'treatments' lists chose which arms were hidden ------------------------------------
def test_a_treatments_list_cannot_reach_a_small_arms_table() -> None:
    cells = {
        ("niv", "std"): (228, 0),
        ("niv", "ext"): (42, 0),
        ("niv", "wb"): (1, 0),
        ("pem", "std"): (377, 0),
        ("pem", "ext"): (93, 0),
        ("pem", "wb"): (20, 0),
        ("ipi", "std"): (231, 0),
    }
    data = table(cells)
    common = {"input": "means", "measure": "cost"}
    for chosen in (None, ["niv / ext", "ipi / std"], ["niv / std", "pem / std"]):
        extra = {} if chosen is None else {"treatments": chosen}
        with pytest.raises(DisclosureError) as info:
            released(data, treatment="drug", treatment_by="regimen", **common, **extra)
        assert str(info.value) == SMALL_ARM
    # the refusal is the same whatever the list: one bit, the table has a small arm
    drugs = released(data, treatment="drug", **common)
    assert drugs["arms"]["niv"]["n"] == 271


# -- 4. one request pinned two small arms together ------------------------------------------
def test_one_request_with_two_small_arms_is_refused() -> None:
    sizes = {
        ("a", "x"): 30,
        ("a", "y"): 1,
        ("a", "z"): 20,
        ("b", "x"): 20,
        ("b", "y"): 11,
        ("b", "z"): 11,
        ("c", "x"): 12,
        ("c", "y"): 1,
        ("c", "z"): 2,
        ("d", "x"): 20,
        ("d", "y"): 11,
        ("d", "z"): 10,
    }
    data = table({c: (n, 0) for c, n in sizes.items()})
    common = {"input": "means", "measure": "cost"}
    with pytest.raises(DisclosureError, match="fewer than k patients"):
        released(data, treatment="drug", treatment_by="regimen", **common)
    with pytest.raises(DisclosureError, match="fewer than k patients"):
        released(data, treatment="regimen", treatment_by="drug", **common)
    # c / y + c / z was the pinned sum (3): drug c's margin alone is 15 >= k
    assert arm_n(released(data, treatment="drug", **common))["c"] == 15


# -- 5. Cox: a covariate that isolated one patient in the fitted arms ----------------------
def tox_frame(dead: int, in_a: int = 1) -> pd.DataFrame:
    """Arms a, b, c of 60; 20 toxicity patients in arm c and ``in_a`` in arm a."""
    rng = np.random.default_rng(3)
    n = 60
    data = pd.DataFrame(
        {
            "drug": np.repeat(["a", "b", "c"], n),
            "death": np.tile([0, 1], 3 * n // 2),
            "days": rng.exponential(300, 3 * n).round(1) + 1,
            "tox": np.zeros(3 * n, dtype=np.int64),
        }
    )
    # 21 patients with grade-3 toxicity (>= k differ from the mode: the
    # extraction's covariate rule passes), 20 of them in arm c and in_a in arm a
    data.loc[2 * n : 2 * n + 19, "tox"] = 1
    data.loc[5 : 5 + in_a - 1, "tox"] = 1
    data.loc[5, "death"] = dead
    return data


COX_TOX = {
    "input": "cox",
    "treatment": "drug",
    "time": "days",
    "event": "death",
    "covariates": ["tox"],
    "treatments": ["a", "b"],
}


@pytest.mark.parametrize("as_text", [False, True])
def test_cox_covariate_rules_hold_on_the_fitted_rows(as_text: bool) -> None:
    outcome = {}
    for dead in (0, 1):
        data = tox_frame(dead)
        if as_text:
            data["tox"] = data["tox"].map({0: "none", 1: "grade3"})
        with pytest.raises(DisclosureError, match="covariate 'tox'") as info:
            released(data, **COX_TOX)
        outcome[dead] = str(info.value)
    # refused whether or not that patient died, with the same sentence
    assert outcome[0] == outcome[1]
    # with arm c in the fit the covariate varies in >= k fitted patients: released
    out = released(tox_frame(1), **{**COX_TOX, "treatments": ["a", "b", "c"]})
    assert set(out["arms"]) == {"a", "b", "c"}
    assert out["arms"]["a"] == {"n": 60}  # n only: a Cox input releases no events


def test_cox_refuses_a_rare_pattern_of_the_fitted_rows() -> None:
    """Two covariates whose rare pattern spans a direction only in the fitted rows."""
    data = tox_frame(1, in_a=12)
    data["site"] = "north"
    # 'south' has 12 patients in c (>= k at the station), and one patient in a:
    # among the fitted arms a and b, that patient alone is 'south', off the mode
    # by one (the most-common-value rule refuses)
    data.loc[2 * 60 + 20 : 2 * 60 + 31, "site"] = "south"
    data.loc[7, "site"] = "south"
    with pytest.raises(DisclosureError, match="site"):
        released(data, **{**COX_TOX, "covariates": ["tox", "site"]})
    # the pattern rule through the kernel: in arms a and b, 'grade' is 'g' for the
    # 12 toxicity patients of a and ONE patient of b; every level and value rule
    # passes there, but without that patient 'g' equals 'tox': it alone spans g
    data = tox_frame(1, in_a=12)
    data["grade"] = "f"
    data.loc[5:16, "grade"] = "g"
    data.loc[2 * 60 + 20 : 2 * 60 + 39, "grade"] = "g"  # c: g without toxicity
    data.loc[65, "grade"] = "g"
    params = {**COX_TOX, "covariates": ["tox", "grade"]}
    with pytest.raises(DisclosureError, match="rare pattern"):
        released(data, **params)
    data.loc[65, "grade"] = "f"
    data.loc[60:71, "grade"] = "g"  # 12 in b: no longer a few patients
    assert len(released(data, **params)["cox"]["coef"]) == 1
    arm = np.repeat(np.array(["a", "b"], dtype=object), 60)
    tox = np.zeros(120)
    tox[:12] = 1
    grade = np.array(["f"] * 120, dtype=object)
    grade[:12] = "g"
    grade[60] = "g"
    assert spanned_by_few([arm, tox, grade], K)
    grade[60] = "f"
    assert not spanned_by_few([arm, tox, grade], K)


def test_cox_strata_need_k_patients_and_k_events_in_the_fitted_rows() -> None:
    data = tox_frame(1, in_a=0)
    data["stage"] = np.where(np.arange(len(data)) % 4 < 2, "II", "III")
    params = {**COX_TOX, "covariates": [], "strata": "stage"}
    out = released(data, **params)
    assert len(out["cox"]["coef"]) == 1
    # stage IV: 24 patients (12 deaths) in c, 4 in the fitted arm a
    data.loc[2 * 60 + 20 : 2 * 60 + 43, "stage"] = "IV"
    data.loc[10:13, "stage"] = "IV"
    with pytest.raises(DisclosureError, match="stratum"):
        released(data, **params)
    out = released(data, **{**params, "treatments": ["b", "c"]})  # 24 in IV: fine
    assert set(out["arms"]) == {"b", "c"}
    # >= k patients in a stratum but fewer than k events in it: refused as well
    data.loc[(data["stage"] == "IV") & (data.index > 150), "death"] = 0
    with pytest.raises(DisclosureError, match="stratum"):
        released(data, **{**params, "treatments": ["b", "c"]})


def test_cox_needs_k_events_in_every_selected_arm() -> None:
    data = tox_frame(1, in_a=0)
    data.loc[(data["drug"] == "c") & (data.index % 7 != 0), "death"] = 0  # c: 5 < k
    cox = {"input": "cox", "treatment": "drug", "time": "days", "event": "death"}
    with pytest.raises(DisclosureError, match="k events per arm"):
        released(data, **cox)
    # no arm is left out behind the analyst's back; they may leave c out themselves
    out = released(data, **{**cox, "treatments": ["a", "b"]})
    assert set(out["arms"]) == {"a", "b"} and "events" not in out["arms"]["a"]


# -- 6. labels: two arms shared one released label ------------------------------------------
def test_two_arms_that_would_share_a_label_are_refused() -> None:
    from pht.errors import DataError

    data = table({("x /", "y"): (20, 0), ("x", "/ y"): (30, 0), ("z", "y"): (25, 0)})
    # 'x /' + 'y' and 'x' + '/ y' are both labelled 'x / / y'
    with pytest.raises(DataError, match="share a label"):
        released(
            data,
            input="means",
            measure="cost",
            treatment="drug",
            treatment_by="regimen",
        )
    data = table({("x / a", "y"): (20, 0), ("z", "y"): (25, 0)})
    with pytest.raises(DataError, match="separates arm labels"):
        released(data, input="means", measure="cost", treatment="drug")


# -- defended: parameters the orchestrator's check() refuses, sent to the station raw ------
@pytest.mark.parametrize(
    "extra",
    [
        {"strata": "drug"},
        {"covariates": ["drug"]},
        {"covariates": ["regimen"]},
        {"strata": "regimen"},
    ],
)
def test_station_refuses_arm_columns_as_strata_or_covariates(
    extra: dict[str, Any],
) -> None:
    data = table(
        {
            ("a", "r"): (40, 20),
            ("a", "s"): (40, 20),
            ("b", "r"): (40, 20),
            ("b", "s"): (40, 20),
        }
    )
    params = {"input": "cox", "treatment": "drug", "time": "days", "event": "death"}
    if "regimen" in str(extra):
        params["treatment_by"] = "regimen"
    with pytest.raises(DisclosureError):
        released(data, **params, **extra)
