"""An authorised-but-curious analyst and a hostile signed train against the station.

One fixture per attack of issue 9 (the finding's number in each test name); each
failed on the code before the fix: small cells, analyst-made designs and evaluation
points, reasons carrying values, differencing by inclusion, station names, guard
channels, protocol oddities.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import pht
from pht.crypto import load_identity
from pht.manifest import TRAINS_DIR, Catalogue
from pht.orchestrator.config import load_network
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester, signed_train
from pht.provision import policy_document, provision
from pht.station.codes import Code
from pht.wire import TrainRef

K = 10
ROLES = {
    "os_days": ["time"],
    "death": ["event"],
    "age": ["covariate", "group"],
    "sex": ["group", "covariate"],
    "ldh": ["covariate"],
    "stage": ["group", "covariate"],
}
SCRIPT = """\
import pathlib, sys
args = sys.argv
out = pathlib.Path(args[args.index("--output") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "output.json").write_text({message!r})
"""
HOSTILE = {
    # finding 9: a 1,635-digit integer packing patient ids into a count
    "bigint": {
        "status": "ok",
        "output": {"n": int("9" * 1635), "events": 20, "excluded": 0, "groups": {}},
    },
    # finding 9: patient ids as group labels
    "idlabels": {
        "status": "ok",
        "output": {
            "n": 200,
            "events": 100,
            "excluded": 0,
            "groups": {"S1-000017": {"time": [7.0], "events": [10], "censored": [10]}},
        },
    },
    # finding 9: ids in the train-written reason
    "idreason": {"status": "refused", "reason": "patients S1-000017 S1-000018 died"},
    # a time that is a patient's, off the station's grid
    "offgrid": {
        "status": "ok",
        "output": {
            "n": 200,
            "events": 100,
            "excluded": 0,
            "groups": {"all": {"time": [123.456], "events": [10], "censored": [10]}},
        },
    },
    # a one-patient cell
    "onecell": {
        "status": "ok",
        "output": {
            "n": 200,
            "events": 100,
            "excluded": 0,
            "groups": {"all": {"time": [7.0], "events": [1], "censored": [0]}},
        },
    },
}


def frame(seed: int, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(40, 80, n).astype(float)
    age[0] = 32.0  # one patient aged 32
    ldh = rng.integers(0, 2, n).astype(float)
    ldh[1] = np.nan  # one patient with missing LDH (finding 5)
    return pd.DataFrame(
        {
            "os_days": rng.integers(1, 1500, n).astype(float),
            "death": rng.integers(0, 2, n),
            "age": age,
            "sex": rng.choice(["F", "M"], n),
            "ldh": ldh,
            "stage": rng.choice(["III", "IV"], n),
            "patient_id": [f"S{seed}-{i:06d}" for i in range(n)],
        }
    )


def hostile_catalogue(root: Path) -> Catalogue:
    shutil.copytree(TRAINS_DIR, root)
    manifest = (TRAINS_DIR / "survival.km" / "manifest.yaml").read_text()
    for name, message in HOSTILE.items():
        folder = root / f"evil.{name}"
        folder.mkdir()
        (folder / "manifest.yaml").write_text(
            manifest.replace("name: survival.km", f"name: evil.{name}")
        )
        (folder / "entrypoint.py").write_text(
            SCRIPT.format(message=json.dumps(message))
        )
    # finding 8: a train that looks at everything its data descriptor holds; it says
    # "refused" when it can see a column the request did not name, "error" otherwise
    folder = root / "evil.snoopcolumns"
    folder.mkdir()
    (folder / "manifest.yaml").write_text(
        manifest.replace("name: survival.km", "name: evil.snoopcolumns")
    )
    (folder / "entrypoint.py").write_text(SNOOP)
    # the outside review: a well-formed table whose cells carry the rows (every
    # value an allowed count, every time a grid boundary, labels observed >= k)
    folder = root / "evil.bulk"
    folder.mkdir()
    (folder / "manifest.yaml").write_text(
        manifest.replace("name: survival.km", "name: evil.bulk")
    )
    honest = (TRAINS_DIR / "survival.km" / "entrypoint.py").read_text()
    (folder / "entrypoint.py").write_text(
        honest.replace(
            "    return {\n",
            "    table = next(iter(result.tables.values())).to_dict()\n"
            "    digits = [int(v) % 40 + 10 for v in columns[params['time']][:20]]\n"
            "    table['time'] += [table['time'][0]] * 20\n"
            "    table['events'] += digits\n"
            "    table['censored'] += [10] * 20\n"
            "    return {'n': result.n, 'events': result.n_events, 'excluded': 0,\n"
            "            'groups': {'all': table}}\n"
            "    return {\n",
            1,
        )
    )
    # a session whose round 0 hides a bit in n (one patient fewer)
    folder = root / "evil.coxn"
    folder.mkdir()
    (folder / "manifest.yaml").write_text(
        (TRAINS_DIR / "survival.cox" / "manifest.yaml")
        .read_text()
        .replace("name: survival.cox", "name: evil.coxn")
    )
    (folder / "entrypoint.py").write_text(
        hostile_cox('"n": int(self.time.size),', '"n": int(self.time.size) - 1,')
    )
    # sessions whose answers hide bits in the low digits of the gradient, or lie
    folder = root / "evil.coxexcluded"  # a chosen count in round 0's `excluded`
    folder.mkdir()
    (folder / "manifest.yaml").write_text(
        (TRAINS_DIR / "survival.cox" / "manifest.yaml")
        .read_text()
        .replace("name: survival.cox", "name: evil.coxexcluded")
    )
    (folder / "entrypoint.py").write_text(
        hostile_cox('"excluded": int(self.excluded)', '"excluded": 72')
    )
    for name, change in (
        ("coxbits", "(terms.gradient * (1 + 1e-12)).tolist()"),
        ("coxlie", "(terms.gradient + 1.0).tolist()"),
    ):
        folder = root / f"evil.{name}"
        folder.mkdir()
        (folder / "manifest.yaml").write_text(
            (TRAINS_DIR / "survival.cox" / "manifest.yaml")
            .read_text()
            .replace("name: survival.cox", f"name: evil.{name}")
        )
        (folder / "entrypoint.py").write_text(
            hostile_cox(
                '"gradient": terms.gradient.tolist(),', f'"gradient": {change},'
            )
        )
    return Catalogue(root)


COX_ADAPTER = """

from pht.runtime import Session, run_session


class CoxSession(Session):
    def __init__(self, columns, train_input):
        self.local = LocalCox(
            columns, train_input.parameters, train_input.min_count, train_input.grid
        )

    def opened(self):
        return self.local.describe()

    def round(self, message):
        return self.local.answer(message)


if __name__ == "__main__":
    raise SystemExit(run_session(CoxSession))
"""


def hostile_cox(honest: str, hostile: str) -> str:
    """The survival.cox train with one line of its station code changed: a trusted
    methodologist's key signs a train that lies (pht.algorithms.cox_local inlined)."""
    local = (Path(pht.__file__).parent / "algorithms" / "cox_local.py").read_text()
    assert local.count(honest) == 1, honest  # the lie really is in the train
    return local.replace(honest, hostile) + COX_ADAPTER


SNOOP = """\
import os, pathlib, sys
import pyarrow.parquet as pq
args = sys.argv
out = pathlib.Path(args[args.index("--output") + 1])
fd = int(args[args.index("--data-fd") + 1])
names = set(pq.ParquetFile(os.fdopen(fd, "rb")).schema_arrow.names)
seen = names - {"os_days", "death"}
status = "refused" if seen else "error"
(out / "output.json").write_text('{"status": "%s"}' % status)
"""


def make_world(root: Path, columns: Any, **options: Any) -> dict[str, Any]:
    catalogue = hostile_catalogue(root / "catalogue")
    (root / "data").mkdir()
    held = {}
    for i, s in enumerate(("s1", "s2")):
        frame(i + 1).to_parquet(root / "data" / f"{s}.parquet", index=False)
        held[s] = {"d": root / "data" / f"{s}.parquet"}
    document = policy_document(
        columns=[],
        trains=[
            {"name": n, "versions": ">=1.0.0,<2.0.0", "signers": ["keyring"]}
            for n in catalogue.names()
        ],
        classes=("aggregate", "model", "event_table"),
        min_cell_size=K,
        **options,
    )
    document["datasets"]["*"]["columns"] = columns
    made = provision(root, held, policy=document, catalogue=catalogue)
    network = load_network(made.network)
    return {
        "catalogue": catalogue,
        "network": network,
        "engine": EmbeddedEngine(network, catalogue),
        "requester": Requester(
            load_identity(made.requester_key),
            {s: e.public_key for s, e in network.stations.items()},
        ),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    return make_world(tmp_path_factory.mktemp("roles"), ROLES)


@pytest.fixture(scope="module")
def loose(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A policy with a plain column list: every column in every role."""
    return make_world(
        tmp_path_factory.mktemp("loose"),
        ["os_days", "death", "age", "sex", "stage"],
        budget={"queries": 200, "period_days": 30},
    )


def request(world, train: str = "survival.km", **parameters: Any):  # type: ignore[no-untyped-def]
    package = world["catalogue"].get(TrainRef.parse(train))
    return world["requester"].request(
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(world["network"].trains, package),
        dataset="d",
        parameters=parameters or {"time": "os_days", "event": "death"},
        targets=["s1", "s2"],
    )


def handle(world, envelope, station: str = "s1"):  # type: ignore[no-untyped-def]
    return world["engine"].station(station).handle(envelope)


def opened(world, **parameters: Any) -> tuple[Any, dict[str, Any]]:  # type: ignore[no-untyped-def]
    body, envelope = request(world, **parameters)
    reply = handle(world, envelope)
    if not reply.ok:
        return reply, {}
    return reply, dict(world["requester"].open(reply, body.request_id).output or {})


# -- findings 1 and 3: per-time cells of one patient ----------------------------------
def test_f3_km_on_any_time_column_releases_only_cells_of_k(loose) -> None:
    for group in ("sex", "stage"):
        reply, output = opened(loose, time="age", event="death", group=group)
        assert reply.ok
        for table in output["groups"].values():
            assert all(e >= K for e in table["events"])
            assert all(c >= K for c in table["censored"])
            # labelled by lattice points (step 1), never by a patient's own value
            assert all(float(t).is_integer() for t in table["time"])


def test_f3_time_role_is_the_policys(world) -> None:
    reply = handle(world, request(world, time="age", event="death", group="sex")[1])
    assert reply.status == "refused" and reply.reason.startswith("column:")


def test_f1_grid_does_not_move_with_the_request(loose) -> None:
    station = loose["engine"].station("s1")
    _, first = opened(loose, time="os_days", event="death")
    _, again = opened(loose, time="os_days", event="death", time_grid=1.0)
    kept = json.loads((station.config.workdir / "grids" / "d.os_days.json").read_text())
    assert first["groups"]["all"]["time"] == kept["boundaries"]
    assert again["groups"]["all"]["time"] == kept["boundaries"]
    _, coarse = opened(loose, time="os_days", event="death", time_grid=500.0)
    assert set(coarse["groups"]["all"]["time"]) <= set(kept["boundaries"])


# -- finding 4: reasons with values -------------------------------------------------------
def test_f4_refusal_for_a_small_group_names_no_value(loose) -> None:
    reply = handle(loose, request(loose, time="os_days", event="death", group="age")[1])
    assert reply.status == "refused"
    assert reply.reason == Code.SMALL_CELL.reason
    assert "32" not in reply.reason


def test_f4_semicolon_csv_gives_a_data_free_reason(tmp_path) -> None:
    world = make_world(tmp_path, ["os_days", "death"])
    path = tmp_path / "data" / "s1.csv"
    frame(1).to_csv(path, sep=";", index=False)
    station = world["engine"].station("s1")
    station.config.datasets["d"] = path  # type: ignore[index]
    reply = handle(world, request(world)[1])
    assert reply.status in ("refused", "error")
    assert reply.reason in (Code.COLUMN.reason, Code.DATA.reason)
    assert "S1-" not in reply.reason and str(tmp_path) not in reply.reason


# -- finding 5: differencing by inclusion -------------------------------------------------
def test_f5_one_population_whatever_the_covariates(world) -> None:
    station = world["engine"].station("s1")
    ns = []
    for covariates in (["age"], ["age", "ldh"]):
        body, envelope = request(
            world,
            "survival.cox",
            time="os_days",
            event="death",
            covariates=covariates,
        )
        reply, session = station.open_session(envelope)
        assert reply.ok
        ns.append(world["requester"].open(reply, body.request_id).output["n"])
        session.close()
    assert ns[0] == ns[1] == 199  # the patient with missing LDH is never analysed


# -- finding 2: analyst-made designs and evaluation points ----------------------------
def _session(world):  # type: ignore[no-untyped-def]
    body, envelope = request(
        world, "survival.cox", time="os_days", event="death", covariates=["age", "sex"]
    )
    reply, session = world["engine"].station("s1").open_session(envelope)
    assert reply.ok
    return body, session


DESIGN = {
    "op": "design",
    "design": {
        "covariates": [
            {"column": "age", "levels": [], "reference": None},
            {"column": "sex", "levels": ["F", "M"], "reference": "F"},
        ],
        "centre": [60.0, 0.5],
    },
}


def test_f2_dummies_on_a_numeric_column_are_refused(world) -> None:
    _, session = _session(world)
    evil = json.loads(json.dumps(DESIGN))
    evil["design"]["covariates"][0] = {
        "column": "age",
        "levels": ["32", "50"],
        "reference": "50",
    }
    evil["design"]["centre"] = [0.0, 0.5]
    reply = session.round(evil)
    assert reply.status in ("refused", "error") and session.closed


def test_f2_coefficients_off_the_newton_path_are_refused(world) -> None:
    _, session = _session(world)
    assert session.round(DESIGN).ok
    reply = session.round({"op": "terms", "beta": [30.0, 0.0]})
    assert (
        reply.status == "refused"
        and reply.reason == Code.ROUND.reason
        or (reply.reason == Code.PATH.reason)
    )
    _, session = _session(world)
    assert session.round(DESIGN).ok
    assert session.round({"op": "terms", "beta": [0.0, 0.0]}).ok
    # the next point must follow from signed pooled terms; without evidence: refused
    reply = session.round({"op": "terms", "beta": [0.05, 0.0]})
    assert reply.status == "refused" and reply.reason == Code.PATH.reason


def test_f2_evidence_must_be_signed_by_the_stations(world) -> None:
    body, session = _session(world)
    assert session.round(DESIGN).ok
    first = session.round({"op": "terms", "beta": [0.0, 0.0]})
    own = world["requester"].open(first, body.request_id).output
    forged = {**own, "loglik": own["loglik"] + 1.0}
    reply = session.round(
        {
            "op": "terms",
            "beta": [0.01, 0.0],
            "evidence": [
                {"station": "s1", "output": own, "receipt": first.receipt},
                {"station": "s2", "output": forged, "receipt": first.receipt},
            ],
        }
    )
    assert reply.status == "refused" and reply.reason == Code.PATH.reason


def test_f2_rounds_are_capped(tmp_path) -> None:
    world = make_world(tmp_path, ROLES, review="automatic")
    station = world["engine"].station("s1")
    policy = station.config.policy.for_dataset("d")
    object.__setattr__(policy, "max_rounds", 3)
    _, session = _session(world)
    assert session.round(DESIGN).ok
    assert session.round({"op": "terms", "beta": [0.0, 0.0]}).ok
    replies = [session.round({"op": "terms", "beta": [0.0, 0.0]}) for _ in range(3)]
    assert all(not r.ok for r in replies)


def test_f2_federated_cox_still_fits_on_the_path(world) -> None:
    from conftest import write_study  # noqa: F401 - same fixtures as the oracle tests

    from pht.orchestrator.config import Study  # noqa: F401
    from pht.trains import plugin_for, run_strategy

    body, envelope = request(
        world, "survival.cox", time="os_days", event="death", covariates=["age", "sex"]
    )
    group = world["engine"].open_sessions(
        {"s1": envelope, "s2": envelope},
        opener=lambda r: world["requester"].open(r, body.request_id),
    )
    strategy = plugin_for("survival.cox").strategy
    assert strategy is not None
    with group:
        result = run_strategy(
            strategy(
                group.opened,
                {
                    "time": "os_days",
                    "event": "death",
                    "covariates": ["age", "sex"],
                    "mode": "stratified",
                    "ties": "efron",
                },
            ),
            group,
        )
    assert result["cox"]["converged"]


# -- finding 6: station names -------------------------------------------------------------
def test_f6_show_station_name_false_hides_names_and_counts(tmp_path) -> None:
    from conftest import run_embedded, write_study

    network = make_world(tmp_path / "net", ROLES)["network"].source
    study = write_study(
        tmp_path,
        dataset="d",
        parameters={"time": "os_days", "event": "death"},
    )
    result = run_embedded(study, network)
    for row in result["stations"]:
        assert row["name"] is None and row["n"] is None


# -- finding 9: guard channels ------------------------------------------------------------
@pytest.mark.parametrize("name", ["bigint", "idlabels", "offgrid", "onecell"])
def test_f9_hostile_outputs_are_refused(world, name) -> None:
    reply = handle(world, request(world, f"evil.{name}")[1])
    assert reply.status == "refused" and reply.reason == Code.GUARD.reason
    assert reply.elapsed_seconds is None


def test_f9_train_written_reason_is_replaced_by_a_code(world) -> None:
    body, envelope = request(world, "evil.idreason")
    reply = handle(world, envelope)
    assert reply.reason == Code.TRAIN_REFUSED.reason
    audit = world["engine"].station("s1").audit
    logged = [
        r.reason or "" for r in audit.records() if r.request_id == body.request_id
    ]
    assert logged and not any("S1-" in text for text in logged)


# -- findings 10 and 11: protocol -------------------------------------------------------------
@pytest.mark.parametrize(
    "envelope",
    [
        None,
        [],
        "x",
        {"payload": "\ud800", "payloadType": "x", "signatures": []},
        {"payload": 5, "payloadType": [], "signatures": {"a": 1}},
    ],
)
def test_f11_odd_envelopes_are_refused_not_raised(world, envelope) -> None:
    reply = handle(world, envelope)
    assert reply.status in ("refused", "error")
    assert handle(world, request(world)[1]).ok  # still serving


def test_f10_run_folders_are_named_by_the_station_and_removed(world) -> None:
    station = world["engine"].station("s1")
    before = set(station.config.workdir.iterdir())
    assert handle(world, request(world)[1]).ok
    runs = station.config.workdir / "runs"
    assert not any(runs.iterdir())  # nothing of the run (extracted data) stays
    assert set(station.config.workdir.iterdir()) - before <= {runs}


# -- finding 1: pooled Cox (risk_set_sums) evaluation points ---------------------------
@pytest.fixture(scope="module")
def pooled(tmp_path_factory):  # type: ignore[no-untyped-def]
    world = make_world(tmp_path_factory.mktemp("pooled"), ROLES)
    for station in ("s1", "s2"):
        policy = world["engine"].station(station).config.policy.for_dataset("d")
        classes = frozenset({*policy.disclosure_classes, "risk_set_sums"})
        object.__setattr__(policy, "disclosure_classes", classes)
    return world


def _pooled_session(world):  # type: ignore[no-untyped-def]
    body, envelope = request(
        world,
        "survival.cox",
        time="os_days",
        event="death",
        covariates=["age", "sex"],
        mode="pooled",
    )
    reply, session = world["engine"].station("s1").open_session(envelope)
    assert reply.ok, reply.reason
    opened = world["requester"].open(reply, body.request_id).output
    design = {**DESIGN, "times": opened["event_times"]}
    designed = session.round(design)
    assert designed.ok
    session.designed = designed  # type: ignore[attr-defined]
    return body, session


def test_f1_pooled_sums_only_at_zero_first(pooled) -> None:
    _, session = _pooled_session(pooled)
    reply = session.round({"op": "sums", "beta": [5.0, 0.0]})
    assert reply.status == "refused" and reply.reason == Code.PATH.reason


def test_f1_pooled_curvature_weights_must_follow_from_signed_sums(pooled) -> None:
    from pht.wire import encode_array

    body, session = _pooled_session(pooled)
    first = session.round({"op": "sums", "beta": [0.0, 0.0]})
    assert first.ok
    own = pooled["requester"].open(first, body.request_id).output
    designed = session.designed
    design = pooled["requester"].open(designed, body.request_id).output
    weights = encode_array(np.ones(len(session.times)))  # chosen, not derived
    reply = session.round(
        {
            "op": "curvature",
            "beta": [0.0, 0.0],
            "w1": weights,
            "w2": weights,
            "evidence": [
                {"station": "s1", "output": design, "receipt": designed.receipt},
                {"station": "s1", "output": own, "receipt": first.receipt},
            ],
        }
    )
    assert reply.status == "refused" and reply.reason == Code.PATH.reason


def test_f1_pooled_per_time_outputs_are_on_the_grid(pooled) -> None:
    body, envelope = request(
        pooled,
        "survival.cox",
        time="os_days",
        event="death",
        covariates=["age", "sex"],
        mode="pooled",
    )
    reply, session = pooled["engine"].station("s1").open_session(envelope)
    times = pooled["requester"].open(reply, body.request_id).output["event_times"]
    session.close()
    kept = json.loads(
        (
            pooled["engine"].station("s1").config.workdir / "grids" / "d.os_days.json"
        ).read_text()
    )
    assert set(times) <= set(kept["boundaries"])


# -- the outside review's findings ------------------------------------------------------
def test_grouped_grid_does_not_depend_on_the_event_column(tmp_path) -> None:
    """Grouped tables for two event columns cannot be intersected into finer cells."""
    world = make_world(
        tmp_path,
        {**ROLES, "ldh": ["event", "covariate"]},
        budget={"queries": 50, "period_days": 30},
    )
    times = []
    for event in ("death", "ldh"):
        reply, output = opened(world, time="os_days", event=event, group="sex")
        if reply.ok:
            times.append(
                sorted({t for g in output["groups"].values() for t in g["time"]})
            )
    assert len(times) == 2 and times[0] == times[1]


def test_a_column_is_checked_in_every_role_it_is_given(world) -> None:
    body, envelope = request(
        world, "survival.cox", time="os_days", event="death", covariates=["os_days"]
    )
    reply, session = world["engine"].station("s1").open_session(envelope)
    assert session is None and reply.reason == Code.COLUMN.reason


def test_concurrent_requests_cannot_overspend_the_budget(tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    world = make_world(tmp_path, ROLES, budget={"queries": 2, "period_days": 30})
    envelopes = [request(world)[1] for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda e: handle(world, e), envelopes))
    assert sum(r.ok for r in replies) == 2
    assert all(r.reason == Code.BUDGET.reason for r in replies if not r.ok)


def test_a_tiny_time_grid_is_cheap_and_changes_nothing(loose) -> None:
    import time

    started = time.monotonic()
    reply, output = opened(loose, time="os_days", event="death", time_grid=1e-6)
    assert reply.ok and time.monotonic() - started < 20
    station = loose["engine"].station("s1")
    kept = json.loads((station.config.workdir / "grids" / "d.os_days.json").read_text())
    assert output["groups"]["all"]["time"] == kept["boundaries"]


def test_pooled_cox_cells_of_every_covariate_pattern_hold_k(pooled) -> None:
    """Per-time sums with categorical covariates are per-pattern cells: each >= k."""
    body, envelope = request(
        pooled,
        "survival.cox",
        time="os_days",
        event="death",
        covariates=["sex", "stage"],
        mode="pooled",
    )
    station = pooled["engine"].station("s1")
    reply, session = station.open_session(envelope)
    if session is None:
        assert reply.reason == Code.GRID.reason  # refusing is also safe
        return
    times = np.asarray(
        pooled["requester"].open(reply, body.request_id).output["event_times"]
    )
    session.close()
    data = frame(1)
    data = data.dropna()
    released = times[
        np.minimum(np.searchsorted(times, data["os_days"]), times.size - 1)
    ]
    for _, cell in data.assign(t=released).groupby(["sex", "stage", "t"]):
        assert (cell["death"] == 1).sum() >= K and (cell["death"] == 0).sum() >= K


def test_f8_the_train_sees_only_the_requested_columns(world) -> None:
    reply = handle(world, request(world, "evil.snoopcolumns")[1])
    assert reply.reason == Code.TRAIN_FAILED.reason  # it saw os_days and death only


def test_f7_budgets_hold_per_organisation_across_keys(tmp_path) -> None:
    from pht.crypto import new_identity, save_identity
    from pht.keyring import Keyring

    world = make_world(
        tmp_path,
        ROLES,
        budget={"queries": 5, "period_days": 30, "organisation_queries": 2},
    )
    # a second analyst of the same organisation, trusted by s1
    bob = new_identity("requester", "ZIN", "bob")
    _, bob_pub = save_identity(bob, tmp_path / "keys")
    keyring_path = tmp_path / "stations" / "s1" / "keyring.yaml"
    keyring = Keyring.load(keyring_path)
    import datetime as dt

    keyring.add(
        bob_pub,
        roles=["requester"],
        valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
        requester_roles=["analyst"],
    )
    keyring.save(keyring_path)
    for station in ("s1", "s2"):  # restart the stations with the new keyring
        world["engine"].station(station).audit.close()
    world = {**world, "engine": EmbeddedEngine(world["network"], world["catalogue"])}
    assert handle(world, request(world)[1]).ok
    assert handle(world, request(world)[1]).ok
    other = {
        **world,
        "requester": Requester(bob, {"s1": tmp_path / "keys" / "s1.pub.json"}),
    }
    body, envelope = request(other)
    reply = handle(world, envelope)
    assert reply.reason == Code.BUDGET.reason  # the organisation's budget is spent


def test_event_tables_are_the_stations_own_no_bits_ride_on_them(world) -> None:
    """A hostile train hides 20 patients' times in extra, well-formed cells."""
    reply = handle(world, request(world, "evil.bulk")[1])
    assert reply.status == "refused" and reply.reason == Code.GUARD.reason
    assert handle(world, request(world)[1]).ok  # the honest table still leaves


def test_the_path_is_bound_to_one_design_at_every_station(world) -> None:
    """Steering: a peer given another design (centre) cannot feed this station's path."""
    body, envelope = request(
        world, "survival.cox", time="os_days", event="death", covariates=["age", "sex"]
    )
    sessions = {}
    for station in ("s1", "s2"):
        reply, session = world["engine"].station(station).open_session(envelope)
        assert reply.ok
        sessions[station] = session
    other = json.loads(json.dumps(DESIGN))
    other["design"]["centre"] = [1.0e6, 0.5]
    designed = {s: sessions[s].round(DESIGN if s == "s1" else other) for s in sessions}
    first = {
        s: sessions[s].round({"op": "terms", "beta": [0.0, 0.0]}) for s in sessions
    }
    assert all(r.ok for r in [*designed.values(), *first.values()])
    evidence = [
        {
            "station": s,
            "output": world["requester"].open(r, body.request_id).output,
            "receipt": r.receipt,
        }
        for part in (designed, first)
        for s, r in part.items()
    ]
    # the honest next point of the pooled terms: right arithmetic, wrong design
    from pht.algorithms.optimize import NewtonPath

    outputs = [item["output"] for item in evidence[2:]]
    path = NewtonPath(2)
    path.start()
    step = path.next_point(
        sum(o["loglik"] for o in outputs),
        np.sum([o["gradient"] for o in outputs], axis=0),
        np.sum([o["hessian"] for o in outputs], axis=0),
    )
    assert step is not None
    message = {"op": "terms", "beta": step.tolist(), "evidence": evidence}
    reply = sessions["s1"].round(message)
    assert reply.status == "refused" and reply.reason == Code.PATH.reason
    sessions["s2"].close()


def test_a_dataset_changed_by_fewer_than_k_patients_is_not_released(tmp_path) -> None:
    """Differencing across time: one patient joining (or leaving, or changing)."""
    world = make_world(tmp_path, ROLES)
    assert handle(world, request(world)[1]).ok
    path = tmp_path / "data" / "s1.parquet"
    data = pd.read_parquet(path)
    joined = pd.concat([data, data.iloc[[5]].assign(patient_id="S1-NEW")])
    joined.to_parquet(path, index=False)
    reply = handle(world, request(world)[1])
    assert reply.status == "refused" and reply.reason == Code.DATA_CHANGED.reason
    changed = data.copy()
    changed.loc[7, "death"] = 1 - changed.loc[7, "death"]
    changed.to_parquet(path, index=False)
    assert handle(world, request(world)[1]).reason == Code.DATA_CHANGED.reason
    many = pd.concat([data, data.iloc[2 : 2 + K].assign(patient_id="S1-NEW")])
    many.to_parquet(path, index=False)
    assert handle(world, request(world)[1]).ok  # k patients joined: a new version


def test_two_dataset_entries_over_one_file_have_one_population(tmp_path) -> None:
    """Differencing across datasets: an entry that does not allow ldh (one missing)."""
    world = make_world(tmp_path, ROLES)
    station = world["engine"].station("s1")
    path = station.config.datasets["d"]
    station.config.datasets["core"] = path  # type: ignore[index]
    policy = station.config.policy
    narrow = dataclasses.replace(
        policy.for_dataset("d"),
        columns=frozenset(ROLES) - {"ldh"},
        roles={c: frozenset(r) for c, r in ROLES.items() if c != "ldh"},
    )
    object.__setattr__(policy, "datasets", {**policy.datasets, "core": narrow})
    ns = []
    for dataset in ("d", "core"):
        package = world["catalogue"].get(TrainRef.parse("survival.km"))
        body, envelope = world["requester"].request(
            role="analyst",
            purpose="package-management/reassessment",
            train=str(package.manifest.ref),
            train_digest=package.digest,
            train_envelope=signed_train(world["network"].trains, package),
            dataset=dataset,
            parameters={"time": "os_days", "event": "death"},
            targets=["s1"],
        )
        reply = station.handle(envelope)
        assert reply.ok, reply.reason
        ns.append(world["requester"].open(reply, body.request_id).output["n"])
    assert ns[0] == ns[1] == 199


def test_a_sessions_round_0_is_the_stations_own_description(world) -> None:
    body, envelope = request(
        world, "evil.coxn", time="os_days", event="death", covariates=["age", "sex"]
    )
    reply, session = world["engine"].station("s1").open_session(envelope)
    assert session is None and reply.reason == Code.GUARD.reason


def test_a_re_export_with_one_more_patient_is_still_a_change_of_one(tmp_path) -> None:
    """Column order, numeric width and an extra column do not hide one new patient."""
    world = make_world(tmp_path, ROLES)
    assert handle(world, request(world)[1]).ok
    path = tmp_path / "data" / "s1.parquet"
    data = pd.read_parquet(path)
    joined = pd.concat([data, data.iloc[[5]].assign(patient_id="S1-NEW")])
    joined = joined.assign(etl_batch=7, age=joined["age"].astype("float32"))
    joined[list(reversed(joined.columns))].to_parquet(path, index=False)
    reply = handle(world, request(world)[1])
    assert reply.reason == Code.DATA_CHANGED.reason


def test_a_chain_of_releases_cannot_isolate_one_patient(tmp_path) -> None:
    """v0, then v0 + X + k others, then v0 + X: v2 - v0 is one patient."""
    world = make_world(tmp_path, ROLES)
    path = tmp_path / "data" / "s1.parquet"
    data = pd.read_parquet(path)
    assert handle(world, request(world)[1]).ok
    x = data.iloc[[5]].assign(patient_id="S1-X")
    batch = data.iloc[2 : 2 + K].assign(patient_id="S1-B")
    pd.concat([data, x, batch]).to_parquet(path, index=False)
    assert handle(world, request(world)[1]).ok  # k + 1 joined: a new version
    pd.concat([data, x]).to_parquet(path, index=False)
    reply = handle(world, request(world)[1])
    assert reply.reason == Code.DATA_CHANGED.reason


def test_deleting_the_version_history_does_not_reset_it(tmp_path) -> None:
    world = make_world(tmp_path, ROLES)
    assert handle(world, request(world)[1]).ok
    station = world["engine"].station("s1")
    shutil.rmtree(station.config.workdir / "versions")
    reply = handle(world, request(world)[1])
    assert reply.reason == Code.DATA_CHANGED.reason  # the audit log names a version


def _first_terms(world, train: str):  # type: ignore[no-untyped-def]
    body, envelope = request(
        world, train, time="os_days", event="death", covariates=["age", "sex"]
    )
    reply, session = world["engine"].station("s1").open_session(envelope)
    assert reply.ok
    assert session.round(DESIGN).ok
    answer = session.round({"op": "terms", "beta": [0.0, 0.0]})
    session.close()
    if not answer.ok:
        return answer, None
    return answer, world["requester"].open(answer, body.request_id).output


def test_session_answers_are_the_stations_own_values(world) -> None:
    """Low-order bits a hostile train hides in its terms never leave the station."""
    _, honest = _first_terms(world, "survival.cox")
    _, hidden = _first_terms(world, "evil.coxbits")
    assert hidden is not None
    for key in ("loglik", "gradient", "hessian"):
        assert hidden[key] == honest[key]  # bit for bit: the station's own numbers
    lie, _ = _first_terms(world, "evil.coxlie")
    assert lie.status == "refused" and lie.reason == Code.GUARD.reason


def test_round_0_fields_a_train_chooses_are_refused(world) -> None:
    body, envelope = request(
        world, "evil.coxexcluded", time="os_days", event="death", covariates=["age"]
    )
    reply, session = world["engine"].station("s1").open_session(envelope)
    assert session is None and reply.reason == Code.GUARD.reason
