"""means: exact pooled moments (pandas and SciPy oracles), station refusals, hostile
trains, bad parameters.

End to end on the synthetic registries through the embedded engine (process
executor): n, mean and SD per group equal a pandas ``groupby`` on the pooled rows, on
the raw and the log scale, and every comparison equals ``scipy.stats.ttest_ind`` on
the pooled rows. The station refuses a small level, a dominant patient, a tied mass,
non-positive values on the log scale and a rounding policy, releasing nothing; a
train whose output differs from the station's own is refused. Bad study parameters:
one line naming the key, exit 2, nothing written. (No statsmodels or lifelines here.)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import identity_of, run_embedded, write_network, write_study
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pht import synth
from pht.cli import main
from pht.crypto import load_identity
from pht.errors import ConfigError, DataError, DisclosureError
from pht.manifest import TRAINS_DIR, Catalogue
from pht.orchestrator.config import load_network, load_study
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester
from pht.orchestrator.run import plan_request
from pht.provision import policy_document, provision
from pht.station.codes import Code
from pht.trains.means import pool, station_output

K = 10
PURPOSE = "efficiency-research/dose-reduction"
REL = 1e-10


def means_study(root: Path, **parameters: Any) -> Path:
    return write_study(
        root,
        question="Does the cost per patient differ between regimens?",
        purpose=PURPOSE,
        train="means",
        parameters={"measure": "cost_eur", "group": "regimen", **parameters},
    )


# -- end to end on the synthetic registries ---------------------------------------------
@pytest.fixture(scope="module")
def registries(tmp_path_factory):  # type: ignore[no-untyped-def]
    """6,000 synthetic patients over nkr, dica and umc; names shown."""
    root = tmp_path_factory.mktemp("registries")
    frames = synth.generate(seed=2026, patients=6000)
    network = write_network(
        root, frames, columns=["regimen", "cost_eur"], show_station_name=True
    )
    rows = pd.concat(
        [f.assign(station=s) for s, f in frames.items()], ignore_index=True
    ).dropna(subset=["regimen", "cost_eur"])
    return {"root": root, "network": network, "rows": rows}


CASES = [("raw", "welch"), ("raw", "pooled"), ("log", "welch"), ("log", "pooled")]


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def run(registries, request):  # type: ignore[no-untyped-def]
    scale, variance = request.param
    root = registries["root"] / f"{scale}-{variance}"
    root.mkdir()
    study = means_study(
        root, scale=scale, variance=variance, reference_group="standard", alpha=0.1
    )
    released: dict[str, Any] = {}
    result = run_embedded(study, registries["network"], released)
    (outputs,) = released.values()
    return {
        "scale": scale,
        "variance": variance,
        "result": result,
        "outputs": {s: o[0] for s, o in outputs.items()},
    }


def oracle_values(rows: pd.DataFrame, scale: str) -> pd.Series:
    values = rows["cost_eur"].astype(float)
    return np.log(values) if scale == "log" else values


def test_pooled_n_mean_and_sd_equal_a_pandas_groupby_on_the_pooled_rows(
    registries, run
) -> None:  # type: ignore[no-untyped-def]
    rows = registries["rows"]
    assert all(s["participated"] for s in run["result"]["stations"])
    # the oracle: pandas groupby on the pooled rows (of the log values on the log scale)
    values = oracle_values(rows, run["scale"])
    want = values.groupby(rows["regimen"]).agg(["size", "mean", "std"])
    data = run["result"]["means"]
    assert list(data["groups"]) == sorted(want.index)
    for level, got in data["groups"].items():
        n, mean, sd = want.loc[level]
        assert got["n"] == n
        if run["scale"] == "raw":
            assert got["mean"] == pytest.approx(mean, rel=REL)
            assert got["sd"] == pytest.approx(sd, rel=REL)
        else:
            assert got["mean_log"] == pytest.approx(mean, rel=REL)
            assert got["sd_log"] == pytest.approx(sd, rel=REL)
            assert got["geometric_mean"] == pytest.approx(np.exp(mean), rel=REL)
        # the 1 - alpha t interval of the mean, by scipy.stats.t on the pooled rows
        low, high = stats.t.interval(0.9, n - 1, loc=mean, scale=sd / np.sqrt(n))
        back = np.exp if run["scale"] == "log" else float
        assert got["ci_lower"] == pytest.approx(back(low), rel=REL)
        assert got["ci_upper"] == pytest.approx(back(high), rel=REL)


def test_comparisons_equal_scipy_ttest_ind_on_the_pooled_rows(registries, run) -> None:  # type: ignore[no-untyped-def]
    rows = registries["rows"]
    values = oracle_values(rows, run["scale"])
    reference = values[rows["regimen"] == "standard"].to_numpy()
    pooled = run["variance"] == "pooled"
    comparisons = run["result"]["means"]["comparisons"]
    assert [c["group"] for c in comparisons] == ["extended_interval", "weight_based"]
    for c in comparisons:
        group = values[rows["regimen"] == c["group"]].to_numpy()
        # the oracle: scipy's two-sample t test on the pooled rows
        test = stats.ttest_ind(group, reference, equal_var=pooled)
        ci = test.confidence_interval(0.9)
        difference = group.mean() - reference.mean()
        assert c["reference"] == "standard"
        assert c["method"] == ("pooled t" if pooled else "Welch t")
        assert c["statistic"] == pytest.approx(test.statistic, rel=1e-9)
        assert c["p_value"] == pytest.approx(test.pvalue, rel=1e-8)
        assert c["df"] == pytest.approx(test.df, rel=1e-9)
        assert c["ci_level"] == pytest.approx(0.9)
        if run["scale"] == "raw":
            assert c["measure"] == "mean_difference"
            assert c["estimate"] == pytest.approx(difference, rel=REL)
            assert c["ci_lower"] == pytest.approx(ci.low, rel=1e-9)
            assert c["ci_upper"] == pytest.approx(ci.high, rel=1e-9)
        else:
            assert c["measure"] == "ratio_of_geometric_means"
            assert c["estimate"] == pytest.approx(np.exp(difference), rel=REL)
            assert c["ci_lower"] == pytest.approx(np.exp(ci.low), rel=1e-9)
            assert c["ci_upper"] == pytest.approx(np.exp(ci.high), rel=1e-9)


def test_every_station_releases_its_own_exact_moments(registries, run) -> None:  # type: ignore[no-untyped-def]
    rows = registries["rows"]
    for station, output in run["outputs"].items():
        mine = rows[rows["station"] == station]
        values = oracle_values(mine, run["scale"])
        assert output["n"] == len(mine)
        assert output["show_station_name"] is True
        for level, got in output["groups"].items():
            x = values[mine["regimen"] == level].to_numpy()
            assert K <= got["n"] == x.size
            assert got["total"] == pytest.approx(x.sum(), rel=REL)
            assert got["squares"] == pytest.approx(
                ((x - x.mean()) ** 2).sum(), rel=1e-9
            )
    lines = run["result"]["means"]["stations"]
    assert [line["station"] for line in lines] == ["dica", "nkr", "umc"]


def test_the_report_shows_the_table_and_the_comparisons(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pht.orchestrator.report import render_report

    page = render_report(run["result"], tmp_path).read_text()
    assert 'id="means"' in page and "could not be laid out" not in page
    assert "weight_based" in page and "Each group against standard" in page
    assert (tmp_path / "tables" / "means_comparisons.csv").is_file()


# -- the station's rules ---------------------------------------------------------------
def frame(n_a: int, n_b: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "regimen": ["a"] * n_a + ["b"] * n_b,
            "cost_eur": np.round(rng.lognormal(8, 0.3, n_a + n_b), 2),
        }
    )


def rule_frames() -> dict[str, pd.DataFrame]:
    """One station per rule (and one that breaks none)."""
    dominant = frame(30, 30, 2)
    dominant.loc[0, "cost_eur"] = 1e3 * dominant["cost_eur"].iloc[1:30].sum()
    zero = frame(30, 30, 4)
    zero.loc[3, "cost_eur"] = 0.0
    return {
        "fine": frame(30, 30, 1),
        "small": frame(30, 5, 3),
        "dominant": dominant,
        "zero": zero,
    }


def dispatch(network: Path, study: Path, catalogue: Catalogue | None = None) -> dict:  # type: ignore[type-arg]
    """Send the study's request to every station; the replies, opened."""
    catalogue = catalogue or Catalogue()
    net = load_network(network)
    requester = Requester(
        load_identity(identity_of(network)),
        {s: e.public_key for s, e in net.stations.items()},
    )
    body, envelope = plan_request(load_study(study, catalogue, net), net, requester)
    replies = EmbeddedEngine(net, catalogue).dispatch(
        {s: envelope for s in body.targets}
    )
    return {s: requester.open(r, body.request_id) for s, r in replies.items()}


@pytest.fixture(scope="module")
def rules_network(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("rules")
    return write_network(root, rule_frames(), columns=["regimen", "cost_eur"])


def test_each_rule_refuses_at_its_station_and_nothing_is_released(
    rules_network, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    replies = dispatch(rules_network, means_study(tmp_path))
    assert replies["fine"].ok and replies["zero"].ok
    # a level of 5 < k patients: the station's extraction refuses the group column
    assert replies["small"].reason == Code.SMALL_CELL.reason
    # one patient holds 99.9% of a level's sum: the train refuses, as would the station
    assert replies["dominant"].reason == Code.TRAIN_REFUSED.reason
    for station in ("small", "dominant"):
        assert replies[station].status == "refused"
        assert replies[station].output is None and replies[station].sealed is None
    # on the log scale a value of 0 has no logarithm: the station's own computation
    # says the column cannot serve as asked ('column', the analyst acts), nothing
    # released
    replies = dispatch(rules_network, means_study(tmp_path, scale="log"))
    assert replies["zero"].status == "refused"
    assert replies["zero"].reason == Code.COLUMN.reason
    assert replies["zero"].output is None
    assert replies["fine"].ok


def columns_of(data: pd.DataFrame) -> Any:
    return {c: data[c].to_numpy() for c in data}.__getitem__


PARAMS = {"measure": "cost_eur", "group": "regimen"}


def test_the_kernel_refuses_what_the_station_must_not_release() -> None:
    frames = rule_frames()
    with pytest.raises(DisclosureError, match="fewer than 10 patients.*merge levels"):
        station_output(PARAMS, columns_of(frames["small"]), K, {})
    with pytest.raises(DisclosureError, match="more than 0.9 of the sum"):
        station_output(PARAMS, columns_of(frames["dominant"]), K, {})
    # the policy's share decides: at p = 1 the rule never fires
    station_output(PARAMS, columns_of(frames["dominant"]), K, {"dominance_share": 1})
    with pytest.raises(DataError, match="column 'cost_eur' has values <= 0"):
        station_output({**PARAMS, "scale": "log"}, columns_of(frames["zero"]), K, {})
    with pytest.raises(DisclosureError, match="rounding_base 5"):
        station_output(PARAMS, columns_of(frames["fine"]), K, {"rounding_base": 5})


def test_a_lone_outlier_dominating_the_squares_is_refused() -> None:
    """The sum passes (one patient is 34% of it) but the squares would give it away."""
    rng = np.random.default_rng(5)
    cost = np.concatenate([100 + rng.random(19), [1000.0]])
    data = pd.DataFrame({"regimen": ["a"] * 20, "cost_eur": cost})
    assert cost.max() < 0.9 * cost.sum()
    with pytest.raises(DisclosureError, match="squared deviations"):
        station_output(PARAMS, columns_of(data), K, {})


def test_a_few_values_beside_a_tied_mass_are_refused() -> None:
    """A fixed dose shared by 30 patients and 3 others: known dose, total and squares
    would give the others; with 12 others (>= k) the level is released."""
    few = np.concatenate([np.full(30, 4800.0), [2400.0, 3600.0, 4000.0]])
    data = pd.DataFrame({"regimen": ["a"] * few.size, "cost_eur": few})
    with pytest.raises(DisclosureError, match="most common value"):
        station_output(PARAMS, columns_of(data), K, {})
    enough = np.concatenate([np.full(30, 4800.0), 2000.0 + 100 * np.arange(12)])
    data = pd.DataFrame({"regimen": ["a"] * enough.size, "cost_eur": enough})
    assert station_output(PARAMS, columns_of(data), K, {})["groups"]["a"]["n"] == 42
    # k distinct values are no tied mass
    data = pd.DataFrame({"regimen": ["a"] * K, "cost_eur": np.arange(1.0, K + 1)})
    assert station_output(PARAMS, columns_of(data), K, {})["n"] == K


def test_a_rounding_policy_refuses_means(tmp_path) -> None:  # type: ignore[no-untyped-def]
    document = policy_document(columns=["regimen", "cost_eur"], min_cell_size=K)
    document["datasets"]["*"]["rounding_base"] = 5
    network = write_network(tmp_path / "net", {"s1": frame(30, 30, 1)}, policy=document)
    (reply,) = dispatch(network, means_study(tmp_path)).values()
    assert reply.status == "refused" and reply.reason == Code.TRAIN_REFUSED.reason
    assert reply.output is None


# -- hostile trains ------------------------------------------------------------------------
def hostile_network(root: Path, change: tuple[str, str]) -> tuple[Path, Catalogue]:
    """A signed means@1.0.0 whose entrypoint was changed by its methodologist."""
    shutil.copytree(TRAINS_DIR, root / "catalogue")
    entry = root / "catalogue" / "means" / "entrypoint.py"
    text = entry.read_text()
    assert change[0] in text
    entry.write_text(text.replace(*change, 1))
    catalogue = Catalogue(root / "catalogue")
    (root / "data").mkdir()
    held = {}
    frames = rule_frames()
    for station in ("fine", "dominant"):
        frames[station].to_parquet(root / "data" / f"{station}.parquet", index=False)
        held[station] = {"melanoma": root / "data" / f"{station}.parquet"}
    document = policy_document(columns=["regimen", "cost_eur"], min_cell_size=K)
    made = provision(root, held, policy=document, catalogue=catalogue)
    return made.network, catalogue


UNSUPPRESS = ("train_input.rules,", "{'dominance_share': 1.0},")
SMUGGLE = (
    "    return station_output(",
    "    out = station_output(\n"
    "        train_input.parameters, columns.__getitem__, train_input.min_count,\n"
    "        train_input.rules)\n"
    "    level = sorted(out['groups'])[0]\n"
    "    out['groups'][level]['total'] += 0.5 + int(columns['cost_eur'][0]) % 2\n"
    "    return out\n"
    "    return station_output(",
)


@pytest.mark.parametrize(
    ("change", "station", "logged"),
    [
        (UNSUPPRESS, "dominant", "the station's own output is not releasable"),
        (SMUGGLE, "fine", "the output differs from the station's"),
    ],
    ids=["unsuppress", "bit"],
)
def test_an_output_other_than_the_stations_own_is_refused(
    tmp_path, caplog, change, station, logged
) -> None:  # type: ignore[no-untyped-def]
    network, catalogue = hostile_network(tmp_path, change)
    study = means_study(tmp_path)
    with caplog.at_level(logging.INFO, logger="pht.station.release"):
        replies = dispatch(network, study, catalogue)
    # the output fits the schema (labels, counts >= k, bounded numbers) but is not
    # the station's own: refused with the guard's fixed code, nothing released
    assert replies[station].status == "refused"
    assert replies[station].reason == Code.GUARD.reason
    assert replies[station].output is None
    assert logged in caplog.text


def test_the_honest_train_passes_the_same_station(tmp_path) -> None:  # type: ignore[no-untyped-def]
    network, catalogue = hostile_network(
        tmp_path, ("from __future__", "from __future__")
    )
    replies = dispatch(network, means_study(tmp_path), catalogue)
    assert replies["fine"].ok
    assert replies["dominant"].reason == Code.TRAIN_REFUSED.reason


# -- pooling: names, splits ----------------------------------------------------------------
def released(shown: dict[str, bool]) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(9)
    columns = {"regimen": np.array(["a", "b"] * 15), "cost_eur": rng.random(30)}
    return {
        s: {
            **station_output(PARAMS, columns.__getitem__, K, {}),
            "show_station_name": v,
        }
        for s, v in shown.items()
    }


@pytest.mark.parametrize(
    ("shown", "lines"),
    [
        ({"s1": True, "s2": True, "s3": True}, ["s1", "s2", "s3"]),
        ({"s1": True, "s2": False, "s3": False}, ["s1"]),
        # exactly one hidden station: the total minus the shown lines would be its own
        ({"s1": True, "s2": True, "s3": False}, []),
        ({"s1": False, "s2": True}, []),
    ],
)
def test_station_lines_only_where_names_are_shown_and_never_one_hidden(
    shown, lines
) -> None:  # type: ignore[no-untyped-def]
    result = pool(released(shown), PARAMS)
    assert [line["station"] for line in result["means"]["stations"]] == lines


@settings(max_examples=30, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 120), min_size=2, max_size=2),
    order=st.permutations(["s1", "s2", "s3"]),
)
def test_the_pooled_result_does_not_depend_on_the_split_or_station_order(
    cuts, order
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    data = pd.DataFrame(
        {
            "regimen": rng.choice(["a", "b"], 120),
            "cost_eur": np.round(rng.lognormal(8, 1, 120), 2),
        }
    )
    low, high = sorted(cuts)
    parts = [data.iloc[:low], data.iloc[low:high], data.iloc[high:]]
    outputs = {}
    for station, part in zip(order, parts, strict=True):
        if part["regimen"].value_counts().min() < K or part["regimen"].nunique() < 2:
            return  # such a station refuses; the property is about releases
        outputs[station] = station_output(PARAMS, columns_of(part), K, {})
    whole = station_output(PARAMS, columns_of(data), K, {})
    params = {**PARAMS, "reference_group": "a"}
    split, one = pool(outputs, params)["means"], pool({"s": whole}, params)["means"]
    for level, got in split["groups"].items():
        assert got["n"] == one["groups"][level]["n"]
        assert got["mean"] == pytest.approx(one["groups"][level]["mean"], rel=1e-12)
        assert got["sd"] == pytest.approx(one["groups"][level]["sd"], rel=1e-10)
    (c,) = split["comparisons"]
    assert c["p_value"] == pytest.approx(one["comparisons"][0]["p_value"], rel=1e-8)


# -- bad study parameters -------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    argv = [str(a) for a in args]
    network = Path(argv[argv.index("--network") + 1])
    code = main([*argv, "--identity", str(identity_of(network))])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("parameters", "key", "says"),
    [
        ({"group": "cost_eur"}, "group", "also the measure column"),
        ({"alpha": 0.5}, "alpha", "(0, 0.5)"),
        ({"alpha": float("nan")}, "alpha", "(0, 0.5)"),
        ({"scale": "sqrt"}, "scale", "raw, log"),
        ({"variance": "student"}, "variance", "welch, pooled"),
        ({"measure": None}, "measure", "required"),
        ({"reference_group": " a"}, "reference_group", "spaces"),
    ],
)
def test_bad_parameters_give_one_line_naming_the_key(
    rules_network, tmp_path, capsys, parameters, key, says
) -> None:  # type: ignore[no-untyped-def]
    study = means_study(tmp_path, **parameters)
    if parameters.get("measure", "") is None:
        document = study.read_text().replace("  measure: null\n", "")
        study.write_text(document)
    out = tmp_path / "o"
    code, err = run_cli(capsys, "run", study, "--network", rules_network, "--out", out)
    line = error_line(err)
    assert code == 2 and key in line and says in line, line
    assert not out.exists() or not any(out.iterdir())


def test_an_unknown_reference_group_names_the_key_and_the_levels(
    registries, tmp_path, capsys
) -> None:  # type: ignore[no-untyped-def]
    study = means_study(tmp_path, reference_group="flat")
    out = tmp_path / "o"
    code, err = run_cli(
        capsys, "run", study, "--network", registries["network"], "--out", out
    )
    line = error_line(err)
    assert code == 2 and "reference_group" in line and "weight_based" in line, line
    with pytest.raises(ConfigError, match="reference_group"):
        pool(released({"s1": True}), {**PARAMS, "reference_group": "c"})
