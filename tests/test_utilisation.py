"""utilisation: exact pooled totals (pandas oracle), disclosure properties, bad input.

End to end on the synthetic registries (nkr, dica with hospitals, umc with
administrations and mg) through the embedded engine: every released entry equals a
pandas ``groupby`` on the pooled rows. Properties (hypothesis): no released count in
(0, k), no released sum dominated by one row, and no suppressed entry solvable from
the released ones (the attacker's linear system, solved exactly modulo a large
prime). Adversarial: a train whose output differs from the station's own
recomputation is refused. Bad input: one line naming file and key, non-zero exit,
nothing in ``--out``.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import identity_of, run_embedded, write_network, write_study
from hypothesis import given, settings
from hypothesis import strategies as st

from pht import synth
from pht.algorithms.utilisation import (
    COMPONENTS,
    Rules,
    Weights,
    determinable,
    extend,
    local_utilisation,
    pool_utilisation,
    priority_list,
)
from pht.cli import main
from pht.crypto import load_identity
from pht.errors import (
    ConfigError,
    DataError,
    DisclosureError,
    PopulationWarning,
    SuppressionWarning,
)
from pht.manifest import TRAINS_DIR, Catalogue
from pht.orchestrator.config import load_network, load_study
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester
from pht.orchestrator.run import plan_request
from pht.provision import CLINICAL_COLUMNS, policy_document, provision
from pht.station.codes import Code
from pht.station.release import SALT

K = 10
DIMS = ("drug", "indication", "regimen", "site")
PRIME = (1 << 61) - 1


def cents(values: Any) -> np.ndarray:
    """The kernel's resolution: each value rounded to 0.01, in integers."""
    return np.rint(np.asarray(values, dtype=np.float64) * 100).astype(np.int64)


def pooled_rows(frames: Mapping[str, pd.DataFrame], period: str) -> pd.DataFrame:
    """Every station's rows with a station column, the year and cost in cents."""
    parts = []
    for station, frame in frames.items():
        rows = frame.copy()
        rows["station"] = station
        rows["year"] = rows[period].dt.year
        rows["cost_cents"] = cents(rows["cost_eur"])
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


# -- end to end on the synthetic registries -------------------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):  # type: ignore[no-untyped-def]
    """18,000 patients (dica's smallest hospital then holds >= k), names shown."""
    root = tmp_path_factory.mktemp("synthetic")
    frames = synth.generate(seed=2026, patients=18000)
    network = write_network(
        root, frames, columns=CLINICAL_COLUMNS, show_station_name=True
    )
    study = write_study(
        root,
        question="Which expensive medicines should be re-assessed first?",
        train="utilisation",
        parameters={"by": "hospital", "year_from": 2018, "year_to": 2024},
    )
    released: dict[str, dict[str, list[dict[str, Any]]]] = {}
    result = run_embedded(study, network, released)
    (outputs,) = released.values()
    return {
        "frames": frames,
        "network": network,
        "result": result,
        "outputs": {s: o[0] for s, o in outputs.items()},
    }


def test_utilisation_totals_equal_a_pandas_groupby_on_the_pooled_rows(
    synthetic,
) -> None:  # type: ignore[no-untyped-def]
    rows = pooled_rows(synthetic["frames"], "start_date")
    rows = rows[rows["year"].between(2018, 2024)]
    umc = rows[rows["station"] == "umc"]
    # the oracle: pandas groupby on the pooled rows
    per_drug = rows.groupby(["drug", "year"]).agg(
        patients=("drug", "size"), cost=("cost_cents", "sum")
    )
    per_regimen = rows.groupby(["drug", "regimen", "year"]).agg(
        patients=("drug", "size"), cost=("cost_cents", "sum")
    )
    overall = rows.groupby("year").agg(
        patients=("drug", "size"), cost=("cost_cents", "sum")
    )
    doses = umc.groupby(["drug", "regimen", "year"]).agg(
        administrations=("n_administrations", "sum"),
        mg=("dose_mg_total", lambda v: int(cents(v).sum())),
    )
    data = synthetic["result"]["utilisation"]
    assert data["years"] == list(range(2018, 2025))
    checked = 0
    for row in data["drugs"]:
        want = per_drug.loc[(row["drug"], row["year"])]
        if row["patients"] is not None:
            assert row["patients"] == want["patients"]
            assert row["cost"] == want["cost"] / 100
            checked += 1
    for row in data["regimens"]:
        want = per_regimen.loc[(row["drug"], row["regimen"], row["year"])]
        if row["patients"] is not None:
            assert row["patients"] == want["patients"]
            assert row["cost"] == want["cost"] / 100
            if row.get("administrations") is not None:  # from umc, which holds them
                dose = doses.loc[(row["drug"], row["regimen"], row["year"])]
                assert row["administrations"] == dose["administrations"]
                assert row["mg"] == dose["mg"] / 100
            checked += 1
    for row in data["all_drugs"]:
        if row["patients"] is None:
            continue
        assert row["patients"] == overall.loc[row["year"], "patients"]
        assert row["cost"] == overall.loc[row["year"], "cost"] / 100
    # the released part is most of the table, so the comparison is not vacuous
    assert checked >= 0.5 * (len(data["drugs"]) + len(data["regimens"]))


def test_a_pooled_entry_is_suppressed_exactly_when_a_station_suppressed_it(
    synthetic,
) -> None:  # type: ignore[no-untyped-def]
    hidden = {
        (r["year"], r["drug"], r.get("indication"), r["regimen"])
        for output in synthetic["outputs"].values()
        for r in output["rows"]
        if r["patients"] is None and r.get("site") is None
    }
    data = synthetic["result"]["utilisation"]
    for row in data["regimens"] + data["drugs"]:
        key = (row["year"], row["drug"], row["indication"], row.get("regimen"))
        assert (row["patients"] is None) == (key in hidden)
        assert (row["suppressed_at"] > 0) == (key in hidden)
    assert hidden  # some entries are suppressed on these data


def test_every_station_releases_its_exact_cells_and_margins(synthetic) -> None:  # type: ignore[no-untyped-def]
    for station, output in synthetic["outputs"].items():
        frame = pooled_rows({station: synthetic["frames"][station]}, "start_date")
        for row in output["rows"]:
            mask = frame["year"] == row["year"]
            for dim, column in (("drug", "drug"), ("regimen", "regimen")):
                if row[dim] is not None:
                    mask &= frame[column] == row[dim]
            if row.get("site") is not None:
                mask &= frame["hospital"] == row["site"]
            cell = frame[mask]
            assert len(cell) > 0  # absent entries are not listed
            if row["patients"] is None:
                assert all(
                    row[m] is None
                    for m in ("cost", "administrations", "mg")
                    if m in row
                )
                continue
            assert K <= row["patients"] == len(cell)
            assert row["cost"] == cell["cost_cents"].sum() / 100
            if "mg" in row:
                assert row["mg"] == cents(cell["dose_mg_total"]).sum() / 100
                assert row["administrations"] == cell["n_administrations"].sum()
            # dominance: no released sum with one row above 90% of it
            assert cell["cost_cents"].max() <= 0.9 * cell["cost_cents"].sum()


def test_a_station_lacking_a_column_says_so(synthetic) -> None:  # type: ignore[no-untyped-def]
    outputs = synthetic["outputs"]
    assert outputs["nkr"]["missing"] == ["administrations", "by", "mg"]
    assert outputs["dica"]["missing"] == ["administrations", "mg"]
    assert outputs["umc"]["missing"] == ["by"]
    assert not any("mg" in r or "site" in r for r in outputs["nkr"]["rows"])
    assert synthetic["result"]["utilisation"]["missing"] == {
        "administrations": ["dica", "nkr"],
        "by": ["nkr", "umc"],
        "mg": ["dica", "nkr"],
    }


def test_care_sites_are_shown_by_name_where_the_policy_allows(synthetic) -> None:  # type: ignore[no-untyped-def]
    sites = synthetic["result"]["utilisation"]["sites"]
    assert {r["station"] for r in sites} == {"dica"}
    assert {r["site"] for r in sites} == set(synth.HOSPITALS)
    dica = pooled_rows({"dica": synthetic["frames"]["dica"]}, "start_date")
    totals = dica.groupby(["hospital", "year"]).size()
    shown = [
        r
        for r in sites
        if r["drug"] is None and r["regimen"] is None and r["patients"] is not None
    ]
    assert shown
    for r in shown:  # a hospital's inclusion per year, all drugs
        assert r["patients"] == totals.loc[(r["site"], r["year"])]


def test_the_priority_list_ranks_every_drug_with_its_components(synthetic) -> None:  # type: ignore[no-untyped-def]
    priority = synthetic["result"]["priority"]
    assert [r["rank"] for r in priority["rows"]] == [1, 2, 3]
    rows = pooled_rows(synthetic["frames"], "start_date")
    rows = rows[rows["year"].between(2018, 2024)]
    for row in priority["rows"]:
        mine = rows[rows["drug"] == row["drug"]]
        per_year = mine.groupby("year").size().reindex(range(2018, 2025), fill_value=0)
        spend = (
            mine.groupby("year")["cost_cents"].sum().reindex(range(2018, 2025)) / 100
        )
        assert row["patients_per_year"] == pytest.approx(per_year.mean(), rel=1e-12)
        assert row["annual_spend"] == pytest.approx(spend.mean(), rel=1e-12)
        slope = np.polyfit(spend.index.to_numpy(float), spend.to_numpy(), 1)[0]
        assert row["spend_trend"] == pytest.approx(slope, rel=1e-9)
        parts = row["components"]
        assert row["score"] == pytest.approx(
            sum(parts[c]["contribution"] for c in COMPONENTS), rel=1e-12
        )
    scores = [r["score"] for r in priority["rows"]]
    assert scores == sorted(scores, reverse=True)


def test_the_report_shows_tables_chart_and_ranking(synthetic, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pht.orchestrator.report import render_report

    page = render_report(synthetic["result"], tmp_path).read_text()
    assert "could not be laid out" not in page
    assert 'id="utilisation"' in page and 'id="priority"' in page
    assert "bar chart of spend per drug per year" in page
    assert "Re-assessment priority list" in page and "H01" in page


# -- the station's policy: names, dominance ---------------------------------------------
def dispatch(network: Path, study: Path) -> dict[str, Any]:
    """Send a study's request and return the stations' replies (opened)."""
    catalogue = Catalogue()
    net = load_network(network)
    requester = Requester(
        load_identity(identity_of(network)),
        {s: e.public_key for s, e in net.stations.items()},
    )
    body, envelope = plan_request(load_study(study, catalogue, net), net, requester)
    engine = EmbeddedEngine(net, catalogue)
    replies = engine.dispatch({s: envelope for s in body.targets})
    return {s: requester.open(r, body.request_id) for s, r in replies.items()}


@pytest.fixture(scope="module")
def hidden_names(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("hidden")
    frames = synth.generate(seed=7, patients=18000)
    return write_network(root, frames, columns=CLINICAL_COLUMNS)


def test_by_site_is_refused_where_the_policy_hides_names(
    hidden_names, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    study = write_study(
        tmp_path, train="utilisation", parameters={"by": "hospital"}, min_stations=2
    )
    replies = dispatch(hidden_names, study)
    assert replies["dica"].status == "refused"
    assert replies["dica"].reason == Code.SITE.reason
    for station in ("nkr", "umc"):  # no hospital column: they take part and say so
        assert replies[station].ok and "by" in replies[station].output["missing"]
    with pytest.raises(ConfigError, match="parameters.by"):
        run_embedded(study, hidden_names)
    # without `by` every station takes part, and nothing is per site
    study = write_study(tmp_path, train="utilisation", parameters={})
    result = run_embedded(study, hidden_names)
    assert all(s["participated"] for s in result["stations"])
    assert result["utilisation"]["sites"] == []
    assert all(s["name"] is None for s in result["stations"])


def dominated_frames() -> dict[str, pd.DataFrame]:
    """Two stations; at s1 one patient holds 95% of (drug a, standard, 2021)."""
    rng = np.random.default_rng(11)
    out = {}
    for station, n in (("s1", 200), ("s2", 150)):
        frame = pd.DataFrame(
            {
                "drug": rng.choice(["a", "b"], n),
                "regimen": rng.choice(["standard", "extended"], n),
                "start_date": pd.to_datetime(
                    rng.choice(["2020-03-01", "2021-06-01"], n)
                ),
                "cost_eur": rng.integers(100, 200, n).astype(float),
            }
        )
        out[station] = frame
    s1 = out["s1"]
    cell = (
        (s1["drug"] == "a")
        & (s1["regimen"] == "standard")
        & (s1["start_date"].dt.year == 2021)
    )
    assert cell.sum() >= K
    rest = s1.loc[cell, "cost_eur"].iloc[1:].sum()
    s1.loc[s1.index[cell][0], "cost_eur"] = 19 * rest  # 95% of the cell
    return out


def dominance_network(root: Path, share: float) -> Path:
    document = policy_document(
        columns=["drug", "regimen", "start_date", "cost_eur"], min_cell_size=K
    )
    document["datasets"]["*"]["dominance_share"] = share
    return write_network(root, dominated_frames(), policy=document)


@pytest.mark.parametrize("share", [0.9, 0.96])
def test_a_dominated_cell_is_suppressed_by_the_policys_share(tmp_path, share) -> None:  # type: ignore[no-untyped-def]
    network = dominance_network(tmp_path / "net", share)
    study = write_study(tmp_path, train="utilisation", parameters={})
    replies = dispatch(network, study)
    rows = replies["s1"].output["rows"]
    (cell,) = [
        r
        for r in rows
        if (r["year"], r["drug"], r["regimen"]) == (2021, "a", "standard")
    ]
    frame = dominated_frames()["s1"]
    mask = (
        (frame["drug"] == "a")
        & (frame["regimen"] == "standard")
        & (frame["start_date"].dt.year == 2021)
    )
    if share < 0.95:
        assert cell["patients"] is None and cell["cost"] is None
        # and its partners: at least one more entry of that year is hidden
        hidden = [r for r in rows if r["year"] == 2021 and r["patients"] is None]
        assert len(hidden) >= 4
    else:
        assert cell["patients"] == mask.sum()
        assert cell["cost"] == cents(frame.loc[mask, "cost_eur"]).sum() / 100


# -- a hostile train ---------------------------------------------------------------------
def hostile_network(root: Path, change: tuple[str, str]) -> tuple[Path, Catalogue]:
    """A signed utilisation@1.0.0 whose entrypoint was changed by its methodologist."""
    shutil.copytree(TRAINS_DIR, root / "catalogue")
    entry = root / "catalogue" / "utilisation" / "entrypoint.py"
    text = entry.read_text()
    assert change[0] in text
    entry.write_text(text.replace(*change, 1))
    catalogue = Catalogue(root / "catalogue")
    (root / "data").mkdir()
    held = {}
    for station, frame in dominated_frames().items():
        frame.to_parquet(root / "data" / f"{station}.parquet", index=False)
        held[station] = {"melanoma": root / "data" / f"{station}.parquet"}
    document = policy_document(
        columns=["drug", "regimen", "start_date", "cost_eur"], min_cell_size=K
    )
    made = provision(root, held, policy=document, catalogue=catalogue)
    return made.network, catalogue


UNSUPPRESS = (
    "Rules.of(train_input.min_count, train_input.rules)",
    "Rules(train_input.min_count, dominance_share=1.0)",
)
SMUGGLE = (
    "    return station_output(",
    "    out = station_output(\n"
    "        train_input.parameters, columns.__contains__, columns.__getitem__,\n"
    "        Rules.of(train_input.min_count, train_input.rules))\n"
    "    row = next(r for r in out['rows'] if r['patients'])\n"
    "    row['patients'] += int(columns['cost_eur'][0]) % 2\n"
    "    row['patients'] += 1 - int(columns['cost_eur'][0]) % 2\n"
    "    return out\n"
    "    return station_output(",
)


@pytest.mark.parametrize("change", [UNSUPPRESS, SMUGGLE], ids=["unsuppress", "bit"])
def test_an_output_other_than_the_stations_own_is_refused(
    tmp_path, change, caplog
) -> None:  # type: ignore[no-untyped-def]
    network, catalogue = hostile_network(tmp_path, change)
    net = load_network(network)
    requester = Requester(
        load_identity(identity_of(network)),
        {s: e.public_key for s, e in net.stations.items()},
    )
    study = write_study(tmp_path, train="utilisation", parameters={})
    body, envelope = plan_request(load_study(study, catalogue, net), net, requester)
    with caplog.at_level(logging.INFO, logger="pht.station.release"):
        reply = EmbeddedEngine(net, catalogue).station("s1").handle(envelope)
    # the output passes the schema (labels, counts >= k, two decimals) but is not
    # the station's own table: refused with the guard's fixed code
    assert reply.status == "refused" and reply.reason == Code.GUARD.reason
    assert "the output differs from the station's" in caplog.text


def test_the_honest_train_passes_the_same_station(tmp_path) -> None:  # type: ignore[no-untyped-def]
    network, catalogue = hostile_network(
        tmp_path, ("from __future__", "from __future__")
    )
    net = load_network(network)
    requester = Requester(
        load_identity(identity_of(network)),
        {s: e.public_key for s, e in net.stations.items()},
    )
    study = write_study(tmp_path, train="utilisation", parameters={})
    body, envelope = plan_request(load_study(study, catalogue, net), net, requester)
    assert EmbeddedEngine(net, catalogue).station("s1").handle(envelope).ok


# -- properties of the station's table -----------------------------------------------------
@st.composite
def station_rows(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(min_value=0, max_value=90))
    drugs = draw(st.lists(st.sampled_from("abc"), min_size=n, max_size=n))
    regimens = draw(st.lists(st.sampled_from("sew"), min_size=n, max_size=n))
    sites = draw(st.lists(st.sampled_from(["h1", "h2", "h3"]), min_size=n, max_size=n))
    years = draw(st.lists(st.sampled_from([2020, 2021]), min_size=n, max_size=n))
    cost = draw(
        st.lists(
            st.one_of(st.integers(0, 50), st.integers(1000, 5000)),
            min_size=n,
            max_size=n,
        )
    )
    with_site = draw(st.booleans())
    k = draw(st.integers(min_value=1, max_value=7))
    share = draw(st.sampled_from([0.5, 0.8, 0.9, 1.0]))
    return (
        np.array(drugs, dtype=object),
        np.array(regimens, dtype=object),
        np.array(sites, dtype=object) if with_site else None,
        np.array(years, dtype=np.int64),
        np.array(cost, dtype=np.float64) / 10,
        Rules(min_count=k, dominance_share=share),
    )


def _rank_mod_p(rows: list[list[int]]) -> int:
    """Rank over GF(p), p = 2^61 - 1 (a vector in the row space over Q is in it
    modulo p too, so this finds every exact recomputation)."""
    matrix = [list(r) for r in rows]
    rank, width = 0, len(matrix[0]) if matrix else 0
    for col in range(width):
        pivot = next(
            (i for i in range(rank, len(matrix)) if matrix[i][col] % PRIME), None
        )
        if pivot is None:
            continue
        matrix[rank], matrix[pivot] = matrix[pivot], matrix[rank]
        inverse = pow(matrix[rank][col], PRIME - 2, PRIME)
        matrix[rank] = [v * inverse % PRIME for v in matrix[rank]]
        for i in range(len(matrix)):
            if i != rank and matrix[i][col] % PRIME:
                factor = matrix[i][col]
                matrix[i] = [
                    (a - factor * b) % PRIME
                    for a, b in zip(matrix[i], matrix[rank], strict=True)
                ]
        rank += 1
    return rank


def solvable_entries(
    frame: pd.DataFrame, entries: Sequence[Any], dims: Sequence[str]
) -> list[Any]:
    """The suppressed entries the attacker can solve for (independent of the kernel).

    Unknowns: the values of the nonempty base cells (drug x regimen [x site]) of a
    year whose entries are suppressed; equations: every released entry of that year
    (its base cells sum). An entry is solvable when its row lies in the span of the
    equations: adding it does not raise the rank.
    """
    solved = []
    for year, rows in frame.groupby("year"):
        cells = sorted(rows.groupby(list(dims)).size().index.tolist())
        cells = [c if isinstance(c, tuple) else (c,) for c in cells]

        def covers(entry: Any, cell: tuple[str, ...]) -> bool:
            return all(
                getattr(entry, d) is None or getattr(entry, d) == v
                for d, v in zip(dims, cell, strict=True)
            )

        mine = [e for e in entries if e.year == year]
        unknown = [
            c
            for c in cells
            if any(
                e.suppressed and covers(e, c)
                for e in mine
                if all(getattr(e, d) is not None for d in dims)
            )
        ]
        if not unknown:
            solved += [e for e in mine if e.suppressed]
            continue
        known = [[int(covers(e, c)) for c in unknown] for e in mine if not e.suppressed]
        base = _rank_mod_p(known) if known else 0
        for e in mine:
            if e.suppressed:
                row = [int(covers(e, c)) for c in unknown]
                if _rank_mod_p([*known, row]) == base:
                    solved.append(e)
    return solved


@settings(max_examples=120, deadline=None)
@given(station_rows())
def test_no_released_cell_in_0_k_none_dominated_none_recomputable(data) -> None:  # type: ignore[no-untyped-def]
    drug, regimen, site, year, cost, rules = data
    table = local_utilisation(
        drug=drug,
        regimen=regimen,
        year=year,
        site=site,
        measures={"cost": cost},
        rules=rules,
    )
    frame = pd.DataFrame(
        {
            "drug": drug,
            "regimen": regimen,
            "site": site if site is not None else "-",
            "year": year,
            "cost": cents(cost),
        }
    )
    dims = ("drug", "regimen", "site") if site is not None else ("drug", "regimen")
    for e in table.entries:
        mask = frame["year"] == e.year
        for d in dims:
            if getattr(e, d) is not None:
                mask &= frame[d] == getattr(e, d)
        cell = frame[mask]
        assert len(cell) > 0
        if e.suppressed:
            assert e.sums["cost"] is None
            continue
        # threshold, exactness and dominance of every released entry
        assert e.patients == len(cell) >= rules.min_count
        assert e.sums["cost"] == cell["cost"].sum() / 100
        assert not cell["cost"].max() > rules.dominance_share * cell["cost"].sum() > 0
    # every nonempty entry of every year is listed, once
    assert len({(e.year, e.drug, e.regimen, e.site) for e in table.entries}) == len(
        table.entries
    )
    # the attacker's linear system leaves every suppressed entry undetermined
    assert solvable_entries(frame, table.entries, dims) == []


def test_the_rank_test_finds_a_cell_the_margins_give_away() -> None:
    """A 2 x 2 table with its margins (index 2 = total)."""
    patients = extend(np.array([[[12, 15], [20, 3]]]))[0]

    def pattern(*cells: tuple[int, int]) -> np.ndarray:
        out = np.zeros(patients.shape, dtype=bool)
        for cell in cells:
            out[cell] = True
        return out

    assert determinable(patients, pattern((1, 1)))[1, 1]  # row total - other cell
    pair = determinable(patients, pattern((1, 1), (0, 1)))  # via the row totals
    assert pair[1, 1] and pair[0, 1]
    assert not determinable(patients, pattern((0, 0), (0, 1), (1, 0), (1, 1))).any()
    # a hypercube through two row totals: +1/-1 on (1,1)/(0,1) moves only those
    assert not determinable(patients, pattern((1, 1), (0, 1), (1, 2), (0, 2))).any()
    assert determinable(patients, pattern((2, 2)))[2, 2]  # the sum of released cells


def test_the_kernel_refuses_when_its_suppression_would_not_protect(
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    """Its final rank test is live: primary suppression alone is refused."""
    import pht.algorithms.utilisation as kernel

    monkeypatch.setattr(kernel, "hypercube_suppression", lambda p, primary, *a: primary)
    monkeypatch.setattr(kernel, "protect_remainders", lambda p, pattern, *a: pattern)
    drug = np.array(["a"] * 5 + ["a"] * 15 + ["b"] * 20, dtype=object)
    with pytest.raises(DisclosureError, match="derivable"):
        local_utilisation(
            drug=drug,
            regimen=np.array(["s"] * 5 + ["e"] * 15 + ["s"] * 20, dtype=object),
            year=np.full(40, 2021),
            measures={"cost": np.ones(40)},
            rules=Rules(min_count=10),
        )


def test_rounding_gives_multiples_of_the_base_never_under_k() -> None:
    rng = np.random.default_rng(5)
    n = 400
    table = local_utilisation(
        drug=rng.choice(["a", "b"], n),
        regimen=rng.choice(["s", "e"], n),
        year=np.full(n, 2022),
        measures={"cost": rng.integers(1, 100, n).astype(float)},
        rules=Rules(min_count=10, rounding_base=7),
    )
    released = [e for e in table.entries if not e.suppressed]
    assert released
    for e in released:
        assert e.patients % 7 == 0 and e.patients >= 10
        assert e.sums["cost"] % 7 == 0


def test_threshold_and_dominance_on_a_small_table() -> None:
    """Drug a / standard / 2021 has 12 patients, one of whom costs 95%."""
    drug = np.array(["a"] * 12 + ["a"] * 15 + ["b"] * 20, dtype=object)
    regimen = np.array(["s"] * 12 + ["e"] * 15 + ["s"] * 20, dtype=object)
    cost = np.array([1045.0] + [5.0] * 11 + [100.0] * 35)
    table = local_utilisation(
        drug=drug,
        regimen=regimen,
        year=np.full(47, 2021),
        measures={"cost": cost},
        rules=Rules(min_count=10, dominance_share=0.9),
    )
    got = {(e.drug, e.regimen): e.patients for e in table.entries}
    assert got[("a", "s")] is None  # 1045 / 1100 = 0.95 > 0.9
    assert got[(None, None)] == 47
    released = Rules(min_count=10, dominance_share=0.96)
    table = local_utilisation(
        drug=drug,
        regimen=regimen,
        year=np.full(47, 2021),
        measures={"cost": cost},
        rules=released,
    )
    assert {(e.drug, e.regimen): e.patients for e in table.entries}[("a", "s")] == 12


# -- pooling and the priority list ---------------------------------------------------------
def station(
    rows: Sequence[tuple[Any, ...]], missing: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "missing": list(missing),
        "rows": [
            {"year": y, "drug": d, "regimen": r, "patients": n, "cost": c}
            for y, d, r, n, c in rows
        ],
    }


def test_pooling_adds_exactly_and_never_imputes() -> None:
    pooled = pool_utilisation(
        {
            "s1": station([(2020, "a", None, 10, 0.1), (2020, "b", None, None, None)]),
            "s2": station([(2020, "a", None, 20, 0.2), (2020, "b", None, 30, 5.0)]),
        }
    )
    a = pooled.get(2020, "a")
    assert (
        a is not None and a.patients == 30 and a.sums["cost"] == 0.3
    )  # not 0.30000004
    b = pooled.get(2020, "b")
    assert b is not None and b.patients is None and b.sums["cost"] is None
    assert b.suppressed == 1 and b.stations == 2


def test_priority_list_by_hand() -> None:
    """Two drugs over 2020-2022; the numbers worked out by hand below."""
    pooled = pool_utilisation(
        {
            "s1": station(
                [
                    (2020, "a", None, 10, 100.0),
                    (2021, "a", None, 20, 300.0),
                    (2022, "a", None, 30, 500.0),
                    (2020, "b", None, 40, 400.0),
                    (2021, "b", None, 40, 400.0),
                    (2022, "b", None, 40, 400.0),
                ]
            )
        }
    )
    ranking = priority_list(pooled, [2020, 2021, 2022], Weights(1, 1, 0, 2))
    a, b = ranking.rows
    # a: patients 20/yr, spend 300/yr, slope 200/yr -> growth 2/3; b: 40, 400, 0
    assert (a.drug, a.patients_per_year, a.annual_spend, a.spend_trend) == (
        "a",
        20.0,
        300.0,
        200.0,
    )
    assert a.components["growth"].value == pytest.approx(2 / 3)
    # normalised: patients a 0, b 1; budget a 0, b 1; growth a 1, b 0
    assert a.score == pytest.approx((1 * 0 + 1 * 0 + 2 * 1) / 4)
    assert b.score == pytest.approx((1 * 1 + 1 * 1 + 2 * 0) / 4)
    assert (a.rank, b.rank) == (1, 2)  # 0.5 vs 0.5: a tie ranks alphabetically
    assert a.components["relative_budget_impact"].contribution == 0.0


def test_a_suppressed_year_leaves_a_drug_unranked_with_the_reason() -> None:
    pooled = pool_utilisation(
        {
            "s1": station([(2020, "a", None, None, None), (2021, "a", None, 12, 1.0)]),
            "s2": station([(2020, "b", None, 12, 1.0), (2021, "b", None, 14, 2.0)]),
        }
    )
    with pytest.warns(SuppressionWarning, match="not ranked: suppressed in 2020"):
        rows = priority_list(pooled, [2020, 2021], Weights()).rows
    assert [(r.drug, r.rank) for r in rows] == [("b", 1), ("a", None)]
    assert rows[1].note == "suppressed in 2020"


def test_weights_must_sum_to_a_positive_number() -> None:
    with pytest.raises(ConfigError, match="weights sum to 0"):
        Weights(0, 0, 0, 0)


# -- bad input through the CLI ------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    argv = [str(a) for a in args]
    network = Path(argv[argv.index("--network") + 1])
    code = main([*argv, "--identity", str(identity_of(network))])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def small(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("small")
    frames = {
        s: f.drop(columns=["hospital"], errors="ignore")
        for s, f in synth.generate(seed=3, patients=6000).items()
    }
    return write_network(root, frames, columns=CLINICAL_COLUMNS)


def test_a_good_study_writes_result_and_report(small, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    study = write_study(tmp_path, train="utilisation", parameters={"year_from": 2019})
    code, err = run_cli(
        capsys, "run", study, "--network", small, "--out", tmp_path / "o"
    )
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["utilisation"]["years"][0] == 2019


def test_bad_weights_name_the_file_and_key(small, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    weights = {f"weight_{c}": 0 for c in COMPONENTS}
    study = write_study(tmp_path, train="utilisation", parameters=weights)
    out = tmp_path / "o"
    code, err = run_cli(capsys, "run", study, "--network", small, "--out", out)
    line = error_line(err)
    assert code == 2 and "study.yaml:" in line and "weight_patients" in line
    assert "weights sum to 0" in line and "positive value" in line
    assert nothing_written(out)


def test_a_negative_weight_names_the_key(small, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    study = write_study(tmp_path, train="utilisation", parameters={"weight_growth": -1})
    code, err = run_cli(
        capsys, "run", study, "--network", small, "--out", tmp_path / "o"
    )
    line = error_line(err)
    assert code == 2 and "weight_growth" in line and ">= 0" in line


def test_a_year_range_without_data(small, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    study = write_study(
        tmp_path, train="utilisation", parameters={"year_from": 2030, "year_to": 2031}
    )
    out = tmp_path / "o"
    code, err = run_cli(capsys, "run", study, "--network", small, "--out", out)
    line = error_line(err)
    assert code == DataError.exit_code and f"{study}:" in line
    assert "parameters.year_from..year_to (2030..2031)" in line
    assert "released: 2017..2025" in line and "choose years" in line
    assert nothing_written(out)


def test_a_reversed_year_range(small, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    study = write_study(
        tmp_path, train="utilisation", parameters={"year_from": 2024, "year_to": 2020}
    )
    code, err = run_cli(
        capsys, "run", study, "--network", small, "--out", tmp_path / "o"
    )
    line = error_line(err)
    assert code == 2 and "study.yaml:" in line and "year_from" in line


def test_an_unknown_by_column(small, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    study = write_study(tmp_path, train="utilisation", parameters={"by": "hospitl"})
    out = tmp_path / "o"
    code, err = run_cli(capsys, "run", study, "--network", small, "--out", out)
    line = error_line(err)
    assert code == 2 and f"{study}:" in line and "parameters.by" in line
    assert "'hospitl'" in line and "leave 'by' out" in line
    assert nothing_written(out)


@pytest.mark.parametrize("share", [0, 1.5, -0.2])
def test_a_dominance_share_outside_0_1_in_a_policy_file(
    tmp_path, capsys, share
) -> None:  # type: ignore[no-untyped-def]
    frames = synth.generate(seed=4, patients=600)
    network = write_network(tmp_path / "net", frames, columns=CLINICAL_COLUMNS)
    policy = tmp_path / "net" / "stations" / "umc" / "policy.yaml"
    document = yaml.safe_load(policy.read_text())
    document["datasets"]["*"]["dominance_share"] = share
    policy.write_text(yaml.safe_dump(document, sort_keys=False))
    study = write_study(tmp_path, train="utilisation", parameters={})
    out = tmp_path / "o"
    code, err = run_cli(capsys, "run", study, "--network", network, "--out", out)
    line = error_line(err)
    assert code == 2 and "umc/policy.yaml:" in line and "dominance_share" in line
    assert "must be in (0, 1]" in line
    assert nothing_written(out)


def test_only_the_ratio_of_the_weights_matters() -> None:
    rows = [
        (
            year,
            drug,
            None,
            10 + 7 * i + 3 * (year - 2020),
            100.0 * (i + 1) ** (year - 2019),
        )
        for i, drug in enumerate("abcd")
        for year in (2020, 2021, 2022)
    ]
    pooled = pool_utilisation({"s": station(rows)})
    for weights in itertools.product([0, 1, 3], repeat=4):
        if sum(weights) == 0:
            continue
        one = priority_list(pooled, [2020, 2021, 2022], Weights(*weights))
        ten = priority_list(
            pooled, [2020, 2021, 2022], Weights(*(10 * w for w in weights))
        )
        assert [r.drug for r in one.rows] == [r.drug for r in ten.rows]
        for r1, r10 in zip(one.rows, ten.rows, strict=True):
            assert r1.score == pytest.approx(r10.score)


# -- the container image ---------------------------------------------------------------
def _docker_reason() -> str | None:
    from pht.station import docker_executor

    return docker_executor.available()


@pytest.mark.docker
@pytest.mark.skipif(_docker_reason() is not None, reason="no Docker engine")
def test_docker_and_process_executors_release_the_same_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pht.images import build_all

    images = build_all()
    assert "utilisation@1.0.0" in images
    frames = synth.generate(seed=5, patients=1500)
    results = {}
    for executor in ("process", "docker"):
        root = tmp_path / executor
        (root / "data").mkdir(parents=True)
        held = {}
        for s, frame in frames.items():
            frame.to_parquet(root / "data" / f"{s}.parquet", index=False)
            held[s] = {"melanoma": root / "data" / f"{s}.parquet"}
        made = provision(
            root,
            held,
            policy=policy_document(columns=CLINICAL_COLUMNS),
            executor=executor,
            images=images,
        )
        study = write_study(root, train="utilisation", parameters={}, min_stations=2)
        results[executor] = run_embedded(study, made.network)
    a, b = results["process"], results["docker"]
    assert {s["executor"] for s in b["stations"]} == {"docker"}
    for key in ("utilisation", "priority"):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True)


# -- attacks on the released tables: bounds, linked tables, swapped axes -----------------
def union_exposed(
    frame: pd.DataFrame,
    releases: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
) -> list[tuple[Any, ...]]:
    """The attacker's view of several releases of one station (independent of the kernel).

    Unknowns: the station's rows grouped by every column the releases use (the year
    of each period column too); equations: every released entry. Returns the
    listed-but-suppressed entries under k that the equations determine (rank over
    GF(p)) or pin to one value (linear programs with every listed entry >= 1 and
    every group >= 0: their range holds fewer than two whole numbers).
    """
    from scipy.optimize import linprog

    dims = ("drug", "regimen", "indication", "by")
    data = frame.copy()
    keys: list[str] = []
    for params, _ in releases:
        period = params.get("period", "start_date")
        data[f"year:{period}"] = data[period].dt.year
        keys.append(f"year:{period}")
        keys += [params.get(d, d) for d in dims if params.get(d, d) in frame]
    keys = sorted(set(keys))
    cells = data.groupby(keys).size()
    index = [
        dict(zip(keys, c if isinstance(c, tuple) else (c,), strict=True))
        for c in cells.index
    ]

    def vector(params: Mapping[str, Any], row: Mapping[str, Any]) -> list[int]:
        want = {f"year:{params.get('period', 'start_date')}": row["year"]}
        for d, field_ in (
            ("drug", "drug"),
            ("regimen", "regimen"),
            ("indication", "indication"),
            ("by", "site"),
        ):
            column = params.get(d, d if d in ("drug", "regimen") else None)
            if column is not None and row.get(field_) is not None:
                want[column] = row[field_]
        return [
            int(
                all(
                    str(c[k]) == str(v) if not k.startswith("year:") else c[k] == v
                    for k, v in want.items()
                )
            )
            for c in index
        ]

    known, values, hidden = [], [], []
    for params, rows in releases:
        for row in rows:
            v = vector(params, row)
            if row["patients"] is None:
                hidden.append((params, row, v))
            else:
                known.append(v)
                values.append(row["patients"])
    truth = cells.to_numpy()
    base = _rank_mod_p(known) if known else 0
    a_eq = np.array(known, dtype=float) if known else None
    presence = np.array([v for _, _, v in hidden], dtype=float)
    exposed = []
    for params, row, v in hidden:
        n = int(np.dot(v, truth))
        if not 0 < n < K:
            continue
        what = (
            params.get("period", "start_date"),
            row["year"],
            row.get("drug"),
            row.get("indication"),
            row.get("regimen"),
            row.get("site"),
        )
        if _rank_mod_p([*known, v]) == base:
            exposed.append(("determined", *what))
            continue
        bounds = []
        for sign in (1.0, -1.0):
            res = linprog(
                sign * np.array(v, dtype=float),
                A_ub=-presence,
                b_ub=-np.ones(len(presence)),
                A_eq=a_eq,
                b_eq=np.array(values, dtype=float) if known else None,
                bounds=(0, None),
                method="highs",
            )
            assert res.status in (0, 3)  # 3: unbounded (nothing holds it)
            bounds.append(sign * res.fun if res.status == 0 else -sign * np.inf)
        if bounds[1] - bounds[0] < 1 - 1e-7:
            exposed.append(("pinned", *what))
    return exposed


def linked_network(root: Path, frame: pd.DataFrame) -> Path:
    """One station holding ``frame`` (its columns with their roles), names shown."""
    roles = {
        c: ["site"]
        if c == "hospital"
        else ["period"]
        if c.endswith("_date")
        else ["measure"]
        if c == "cost_eur"
        else ["group"]
        for c in frame.columns
    }
    document = policy_document(columns=sorted(frame.columns), min_cell_size=K)
    document["datasets"]["*"]["columns"] = roles
    document["datasets"]["*"]["show_station_name"] = True
    return write_network(root, {"s1": frame}, policy=document)


def ask(network: Path, root: Path, parameters: Mapping[str, Any]) -> Any:
    study = write_study(root, train="utilisation", parameters=dict(parameters))
    return dispatch(network, study)["s1"]


def a4_frame() -> pd.DataFrame:
    """The attacker's A4 table (one year): a row of 54 with cells 1, 52, 1."""
    counts = {
        ("a", "e"): 1,
        ("a", "s"): 52,
        ("a", "w"): 1,
        ("b", "e"): 44,
        ("b", "w"): 34,
        ("c", "e"): 17,
        ("c", "s"): 18,
        ("c", "w"): 6,
    }
    rows = [(d, r) for (d, r), n in counts.items() for _ in range(n)]
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "drug": [d for d, _ in rows],
            "regimen": [r for _, r in rows],
            "start_date": pd.to_datetime(["2021-06-01"] * len(rows)),
            "cost_eur": rng.integers(500, 5000, len(rows)).astype(float),
        }
    )


def test_a4_one_request_pins_no_suppressed_cell_by_presence_and_margins(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    """A4: listed suppressed cells hold >= 1; with the margins no cell may be pinned."""
    frame = a4_frame()
    reply = ask(linked_network(tmp_path / "net", frame), tmp_path, {})
    assert reply.ok
    rows = reply.output["rows"]
    assert any(r["patients"] is None for r in rows)
    assert union_exposed(frame, [({}, rows)]) == []
    # the rule the kernel enforces: a released total leaves a suppressed remainder of
    # no patients, or >= k and more than the number of suppressed cells in it
    for total in (r for r in rows if r["patients"] is not None):
        for axis in ("drug", "regimen"):
            if total[axis] is not None:
                continue
            kids = [
                r
                for r in rows
                if r[axis] is not None
                and all(r[a] == total[a] for a in ("drug", "regimen") if a != axis)
            ]
            hidden = [r for r in kids if r["patients"] is None]
            rest = total["patients"] - sum(
                r["patients"] for r in kids if r["patients"] is not None
            )
            assert rest == 0 or (rest >= K and rest > len(hidden))


def a1_frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    cells = {
        ("a", "mel", "std"): 40,
        ("a", "mel", "ext"): 30,
        ("a", "rcc", "std"): 1,
        ("a", "rcc", "ext"): 20,
        ("b", "mel", "std"): 30,
        ("b", "mel", "ext"): 30,
        ("b", "rcc", "std"): 25,
        ("b", "rcc", "ext"): 25,
    }
    parts = [
        pd.DataFrame(
            {
                "drug": [d] * n,
                "ind": [i] * n,
                "regimen": [r] * n,
                "start_date": pd.to_datetime(["2021-05-01"] * n),
                "cost_eur": rng.integers(1000, 3000, n).astype(float),
            }
        )
        for (d, i, r), n in cells.items()
    ]
    return pd.concat(parts, ignore_index=True)


def a2_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)

    def block(drug: str, reg: str, n: int, diag: str, start: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "drug": [drug] * n,
                "regimen": [reg] * n,
                "diagnosis_date": pd.to_datetime([diag] * n),
                "start_date": pd.to_datetime([start] * n),
                "cost_eur": rng.integers(1000, 3000, n).astype(float),
            }
        )

    return pd.concat(
        [
            block("a", "std", 40, "2020-02-01", "2020-03-01"),
            block("a", "ext", 30, "2020-02-01", "2020-03-01"),
            block("a", "std", 1, "2020-12-20", "2021-01-10"),  # the patient
            block("a", "ext", 25, "2021-02-01", "2021-03-01"),
            block("b", "std", 30, "2020-02-01", "2020-03-01"),
            block("b", "ext", 30, "2020-02-01", "2020-03-01"),
            block("b", "std", 30, "2021-02-01", "2021-03-01"),
            block("b", "ext", 30, "2021-02-01", "2021-03-01"),
        ],
        ignore_index=True,
    )


def random_frame(trial: int, sparse: bool) -> pd.DataFrame:
    """The attacker's searched stations (a3: seed 0 trial 58; a3b: trial 9, sparse)."""
    rng = np.random.default_rng(0)
    for _ in range(trial + 1):
        n = int(rng.integers(60, 250))
        if sparse:
            d = rng.choice(list("abc"), n, p=rng.dirichlet(np.ones(3)))
            r = rng.choice(["s", "e", "w"][: int(rng.integers(2, 4))], n)
            h = rng.choice(["h1", "h2", "h3"], n, p=rng.dirichlet(np.ones(3)))
        else:
            d = rng.choice(list("abc"), n)
            r = rng.choice(["s", "e", "w"][: int(rng.integers(2, 4))], n)
            h = rng.choice(["h1", "h2", "h3"], n)
        rng.choice(["x", "z"], n)
        y1 = rng.choice([2020, 2021], n)
        cost = rng.integers(100, 1000, n).astype(float)
        np.where(rng.random(n) < 0.2, y1 - 1, y1)
    return pd.DataFrame(
        {
            "drug": d,
            "regimen": r,
            "hospital": h,
            "start_date": pd.to_datetime(pd.Series(y1).astype(str) + "-06-01"),
            "cost_eur": cost,
        }
    )


LINKED = {
    "a1_indication": (a1_frame, {"indication": "ind"}, {}),
    "a2_period": (a2_frame, {"period": "start_date"}, {"period": "diagnosis_date"}),
    "a3_swapped": (
        lambda: random_frame(58, False).drop(columns="hospital"),
        {},
        {"drug": "regimen", "regimen": "drug"},
    ),
    "a3b_by_site": (lambda: random_frame(9, True), {}, {"by": "hospital"}),
}


def unsalted(output: Any) -> Any:
    """An output without the random salt every release carries."""
    return {k: v for k, v in output.items() if k != SALT}


@pytest.mark.parametrize("attack", sorted(LINKED))
def test_two_linked_requests_recover_no_cell_together(tmp_path, attack) -> None:  # type: ignore[no-untyped-def]
    """A1/A2/A3: each request alone is safe; the second is further suppressed or
    refused so that the union of both releases determines and pins no cell."""
    make, first, second = LINKED[attack]
    frame = make()
    network = linked_network(tmp_path / "net", frame)
    one = ask(network, tmp_path, first)
    assert one.ok
    two = ask(network, tmp_path, second)
    releases = [(first, one.output["rows"])]
    if two.ok:
        releases.append((second, two.output["rows"]))
    else:  # refused by the station's audit (the guard's code), not by its policy
        assert two.status == "refused" and two.reason == Code.GUARD.reason
    assert union_exposed(frame, releases) == []
    # the earlier release is kept: asking the first again adds nothing new
    again = ask(network, tmp_path, first)
    assert again.ok and unsalted(again.output) == unsalted(one.output)


def test_the_second_request_is_suppressed_further_where_the_first_gave_a_margin(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    """A1 by hand: (a, rcc, std) holds 1 patient; without the station's history the
    plain table's (a, std) minus the released (a, mel, std) gives it exactly."""
    frame = a1_frame()
    network = linked_network(tmp_path / "net", frame)
    with_ind = ask(network, tmp_path, {"indication": "ind"}).output["rows"]
    plain = ask(network, tmp_path, {})
    if plain.ok:
        (total,) = [
            r for r in plain.output["rows"] if (r["drug"], r["regimen"]) == ("a", "std")
        ]
        (mel,) = [
            r
            for r in with_ind
            if (r["drug"], r["indication"], r["regimen"]) == ("a", "mel", "std")
        ]
        assert total["patients"] is None or mel["patients"] is None
    history = list((tmp_path / "net").rglob("history/**/utilisation.jsonl"))
    assert len(history) == 1 and history[0].read_text().count("\n") >= len(with_ind)


def test_swapped_drug_and_regimen_give_the_same_pattern() -> None:
    """The table and its suppression do not depend on which parameter names which column."""
    from pht.algorithms.utilisation import station_output

    frame = random_frame(58, False).drop(columns="hospital")
    columns = {c: frame[c].to_numpy() for c in frame}
    rules = Rules(min_count=K)
    base = {"period": "start_date", "cost": "cost_eur"}

    def pattern(params: Mapping[str, Any]) -> set[tuple[Any, ...]]:
        out = station_output(
            {**base, **params}, columns.__contains__, columns.__getitem__, rules
        )
        found = set()
        for row in out["rows"]:
            where = frozenset(
                {(params["drug"], row["drug"]), (params["regimen"], row["regimen"])}
                - {(params["drug"], None), (params["regimen"], None)}
            )
            found.add((row["year"], where, row["patients"], row["cost"]))
        return found

    plain = pattern({"drug": "drug", "regimen": "regimen"})
    swapped = pattern({"drug": "regimen", "regimen": "drug"})
    assert plain == swapped
    assert any(p is None for _, _, p, _ in plain)


def test_a_table_too_costly_to_protect_is_refused_before_the_search() -> None:
    """B2: the hypercube search's cost is estimated first and bounded."""
    import time

    rng = np.random.default_rng(0)
    n = 40000
    start = time.perf_counter()
    with pytest.raises(DataError, match="would take too long"):
        local_utilisation(
            drug=rng.integers(0, 80, n),
            regimen=rng.integers(0, 6, n),
            site=rng.integers(0, 20, n),
            year=np.full(n, 2021),
            measures={"cost": rng.random(n) * 1000},
            rules=Rules(min_count=10),
        )
    assert time.perf_counter() - start < 5
    # and the synthetic registries by hospital and stage take well under that
    frame = synth.generate(seed=2026, patients=18000)["dica"]
    start = time.perf_counter()
    local_utilisation(
        drug=frame["drug"].to_numpy(object),
        regimen=frame["regimen"].to_numpy(object),
        site=frame["hospital"].to_numpy(object),
        indication=frame["stage"].to_numpy(object),
        year=frame["start_date"].to_numpy(),
        measures={"cost": frame["cost_eur"].to_numpy()},
        rules=Rules(min_count=K),
    )
    assert time.perf_counter() - start < 5


@settings(max_examples=25, deadline=None)
@given(station_rows())
def test_what_a_station_releases_pins_no_suppressed_entry(data) -> None:  # type: ignore[no-untyped-def]
    """A4 as a property: the kernel's table after the station's audit (no history)
    leaves every listed suppressed entry under k open (or the station refuses)."""
    from pht.algorithms.utilisation import audit_releases, listed_entries

    drug, regimen, site, year, cost, rules = data
    rules = Rules(min_count=K, dominance_share=rules.dominance_share)
    frame = pd.DataFrame(
        {
            "drug": drug,
            "regimen": regimen,
            "hospital": site if site is not None else np.full(drug.size, "h"),
            "start_date": pd.to_datetime([f"{y}-06-01" for y in year]),
            "cost_eur": cost,
        }
    )
    params = {"drug": "drug", "regimen": "regimen", "period": "start_date"}
    params |= {"cost": "cost_eur"} | ({"by": "hospital"} if site is not None else {})
    columns = {c: frame[c].to_numpy() for c in frame}
    try:
        from pht.algorithms.utilisation import station_output

        out = station_output(params, columns.__contains__, columns.__getitem__, rules)
        listed = listed_entries(out, params)
        used = {"drug", "regimen", "start_date"} | (
            {"hospital"} if site is not None else set()
        )
        hide = audit_releases(
            {c: columns[c] for c in used},
            {"cost_eur": columns["cost_eur"]},
            [],
            listed,
            rules,
        )
    except DisclosureError:
        return  # the station refuses: nothing is released
    rows = [
        {**r, "patients": None} if i in hide else r for i, r in enumerate(out["rows"])
    ]
    assert union_exposed(frame, [(params, rows)]) == []


def test_a_station_without_cost_makes_spend_partial_not_wrong() -> None:
    """D1: spend per patient divides by the patients of the stations that hold cost;
    annual spend, a partial total, is left out of the score with a warning."""

    def out(n_a: int, n_b: int, cost: tuple[float, float] | None) -> dict[str, Any]:
        drug = np.array(["a"] * n_a + ["b"] * n_b)
        measures = (
            {}
            if cost is None
            else {
                "cost": np.concatenate([np.full(n_a, cost[0]), np.full(n_b, cost[1])])
            }
        )
        return local_utilisation(
            drug=drug,
            regimen=np.array(["std"] * (n_a + n_b)),
            year=np.full(n_a + n_b, 2021),
            measures=measures,
            rules=Rules(10),
            missing=() if cost is not None else ("cost",),
        ).to_output()

    pooled = pool_utilisation(
        {"s1": out(20, 20, (1000.0, 1000.0)), "s2": out(180, 10, None)}
    )
    a = pooled.get(2021, "a")
    assert a is not None and a.patients == 200 and a.sums["cost"] == 20000.0
    assert a.partial == {"cost"} and a.measured["cost"] == 20
    with pytest.warns(PopulationWarning, match="annual spend is left out"):
        ranking = priority_list(pooled, [2021], Weights(1, 1, 1, 0))
    per_patient = {
        r.drug: r.components["relative_budget_impact"].value for r in ranking.rows
    }
    assert per_patient == {"a": 1000.0, "b": 1000.0}
    assert ranking.excluded == ("budget_impact",)
    assert all(r.components["budget_impact"].contribution == 0.0 for r in ranking.rows)
    assert all("budget_impact" in r.partial for r in ranking.rows)
    # a station that holds cost everywhere: nothing partial, nothing left out
    whole = priority_list(
        pool_utilisation({"s1": out(20, 20, (1000.0, 1000.0))}),
        [2021],
        Weights(1, 1, 1, 0),
    )
    assert whole.excluded == () and all(r.partial == () for r in whole.rows)


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_a_non_finite_weight_names_the_key(small, tmp_path, capsys, weight) -> None:  # type: ignore[no-untyped-def]
    """C3b: .nan or .inf weights: one line naming the key and the fix, exit 2."""
    study = write_study(
        tmp_path, train="utilisation", parameters={"weight_growth": weight}
    )
    out = tmp_path / "o"
    code, err = run_cli(capsys, "run", study, "--network", small, "--out", out)
    line = error_line(err)
    assert code == 2 and "weight_growth" in line and "finite" in line
    assert nothing_written(out)
