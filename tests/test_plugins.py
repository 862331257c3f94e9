"""Trains as plugins: a toy train registered through the public API alone runs end to
end on the fake engine and on the embedded engine; the engine seam; the catalogue."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pht.crypto import load_identity, save_identity
from pht.errors import ConfigError, DisclosureError
from pht.manifest import TRAINS_DIR, Catalogue
from pht.orchestrator.config import load_network, load_study
from pht.orchestrator.engine import make_engine
from pht.orchestrator.fake import FakeEngine, FakeStation
from pht.orchestrator.report import render_report
from pht.orchestrator.requester import Requester
from pht.orchestrator.run import run_study
from pht.provision import default_trains, policy_document, provision
from pht.trains import (
    Rounds,
    RoundsStrategy,
    Sections,
    TrainPlugin,
    plugin_for,
    plugins,
    register,
    unregister,
)

TOY_MANIFEST = """\
name: toy.count
version: 1.0.0
description: Rows per level of a column (a toy train registered by a test).
rounds: single
parameters:
  group:
    type: column
    kind: categorical
    role: group
    required: true
    doc: the column to count by
output:
  class: aggregate
  schema:
    type: object
    fields:
      n: {type: count}
      levels:
        type: map
        keys: labels
        max_keys: 20
        values: {type: cell}
"""

TOY_ENTRYPOINT = '''\
"""Station side of toy.count: rows per level (pht.trains registers its plugin)."""

from collections import Counter

from pht.runtime import run_train


def local(columns, train_input):
    values = columns[train_input.parameters["group"]].tolist()
    return {"n": len(values), "levels": dict(Counter(str(v) for v in values))}


if __name__ == "__main__":
    raise SystemExit(run_train(local))
'''


def _pool(
    released: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]
) -> Sections:
    levels: dict[str, int] = {}
    for output in released.values():
        for level, count in output["levels"].items():
            levels[level] = levels.get(level, 0) + int(count)
    return {"toy": {"n": sum(int(o["n"]) for o in released.values()), "levels": levels}}


def _render(result: Mapping[str, Any]) -> str:
    return f'<section id="toy"><h2>Toy</h2><p>{result["toy"]["n"]} rows</p></section>'


TOY = TrainPlugin(name="toy.count", pool=_pool, sections=(("toy", _render),))


@pytest.fixture
def toy_catalogue(tmp_path: Path) -> Iterator[Catalogue]:
    """The real catalogue plus the toy train, and the toy plugin registered."""
    root = tmp_path / "catalogue"
    shutil.copytree(TRAINS_DIR, root)
    (root / "toy.count").mkdir()
    (root / "toy.count" / "manifest.yaml").write_text(TOY_MANIFEST)
    (root / "toy.count" / "entrypoint.py").write_text(TOY_ENTRYPOINT)
    register(TOY)
    try:
        yield Catalogue(root)
    finally:
        unregister("toy.count")


def _network(tmp_path: Path, catalogue: Catalogue) -> Any:
    rng = np.random.default_rng(3)
    datasets = {}
    for station in ("s1", "s2"):
        path = tmp_path / f"{station}.parquet"
        pd.DataFrame(
            {
                "os_days": rng.integers(1, 500, 60).astype(float),
                "death": rng.integers(0, 2, 60),
                "regimen": rng.choice(["a", "b"], 60),
            }
        ).to_parquet(path)
        datasets[station] = {"melanoma": path}
    made = provision(
        tmp_path / "net",
        datasets,
        policy=policy_document(
            columns=["os_days", "death", "regimen"], catalogue=catalogue
        ),
        catalogue=catalogue,
    )
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "question": "rows per regimen",
                "purpose": "package-management/reassessment",
                "train": "toy.count",
                "dataset": "melanoma",
                "parameters": {"group": "regimen"},
            }
        )
    )
    return made, study, datasets


def test_toy_train_runs_on_the_embedded_engine(tmp_path, toy_catalogue) -> None:
    made, study_path, datasets = _network(tmp_path, toy_catalogue)
    assert "toy.count" in default_trains(toy_catalogue)
    network = load_network(made.network)
    study = load_study(study_path, toy_catalogue, network)
    requester = Requester(
        load_identity(made.requester_key),
        {s: e.public_key for s, e in network.stations.items()},
    )
    result = run_study(study, network, make_engine(network, toy_catalogue), requester)
    pooled = pd.concat([pd.read_parquet(p["melanoma"]) for p in datasets.values()])
    assert result["toy"]["levels"] == pooled["regimen"].value_counts().to_dict()
    assert result["toy"]["n"] == 120
    html = render_report(result, tmp_path / "out").read_text()
    assert "120 rows" in html


def test_toy_train_runs_on_the_fake_engine(tmp_path, toy_catalogue) -> None:
    made, study_path, _ = _network(tmp_path, toy_catalogue)
    network = load_network(made.network)
    study = load_study(study_path, toy_catalogue, network)
    requester_pub = made.requester_key.with_name(
        made.requester_key.name.replace(".key.json", ".pub.json")
    )
    answers = {"s1": {"a": 11, "b": 12}, "s2": {"a": 20, "b": 30}}
    stations = {
        s: FakeStation.trusting(
            s,
            requester_pub,
            lambda params, message, s=s: {
                "n": sum(answers[s].values()),
                "levels": answers[s],
            },
        )
        for s in answers
    }
    keys = tmp_path / "fake-keys"
    requester = Requester(
        load_identity(made.requester_key),
        {s: save_identity(st.identity, keys)[1] for s, st in stations.items()},
    )
    result = run_study(study, network, FakeEngine(stations), requester)
    assert result["toy"] == {"n": 73, "levels": {"a": 31, "b": 42}}
    assert result["provenance"]["engine"] == "fake"
    assert len(requester.receipts) == 2  # every reply's receipt was checked


class _Mean(RoundsStrategy):
    """A toy iterative strategy: ask every station for its sum, then its count."""

    def __init__(self, opened: Mapping[str, Any], params: Mapping[str, Any]):
        super().__init__()
        self.stations = sorted(opened)

    def rounds(self) -> Rounds:
        sums = yield {s: {"op": "sum"} for s in self.stations}
        counts = yield {s: {"op": "count"} for s in self.stations}
        total = sum(r.output["value"] for r in sums.values())  # type: ignore[index]
        n = sum(r.output["value"] for r in counts.values())  # type: ignore[index]
        return {"toy": {"n": n, "mean": total / n}}


def test_iterative_strategy_on_the_fake_engine(tmp_path, toy_catalogue) -> None:
    rows = {"s1": [1.0, 2.0, 3.0], "s2": [10.0, 20.0]}

    def answer(station: str) -> Any:
        def reply(params: Mapping[str, Any], message: Mapping[str, Any] | None) -> Any:
            if message is None:
                return {"ready": True}
            if message["op"] == "sum":
                return {"value": sum(rows[station])}
            if message["op"] == "count":
                return {"value": len(rows[station])}
            raise DisclosureError("unknown op")

        return reply

    manifest = toy_catalogue.root / "toy.count" / "manifest.yaml"
    manifest.write_text(
        TOY_MANIFEST.replace("rounds: single", "rounds: iterative")
        + "  rounds:\n    open: {type: object, fields: {ready: {type: boolean}}}\n"
        + "session:\n  evaluate: [sum]\n  dof: none\n  inputs:\n"
        + "    sum: {type: object, fields: {op: {type: string, choices: [sum]}}}\n"
    )
    unregister("toy.count")
    register(TrainPlugin(name="toy.count", strategy=_Mean, sections=TOY.sections))
    catalogue = Catalogue(toy_catalogue.root)
    made, study_path, _ = _network(tmp_path, catalogue)
    network = load_network(made.network)
    study = load_study(study_path, catalogue, network)
    requester_pub = made.requester_key.with_name(
        made.requester_key.name.replace(".key.json", ".pub.json")
    )
    stations = {s: FakeStation.trusting(s, requester_pub, answer(s)) for s in rows}
    requester = Requester(
        load_identity(made.requester_key),
        {
            s: save_identity(st.identity, tmp_path / "k")[1]
            for s, st in stations.items()
        },
    )
    result = run_study(study, network, FakeEngine(stations), requester)
    assert result["toy"] == {"n": 5, "mean": 36.0 / 5}
    assert result["provenance"]["rounds"] == 3


def test_registry_catalogue_and_errors() -> None:
    assert {"survival.km", "survival.cox"} <= set(plugins())
    assert plugin_for("survival.cox").rounds == "iterative"
    assert plugin_for("survival.km").rounds == "single"
    with pytest.raises(ConfigError, match="no plugin is registered for train 'nope'"):
        plugin_for("nope")
    with pytest.raises(ConfigError, match="registered twice"):
        register(TrainPlugin(name="survival.km", pool=_pool))
    with pytest.raises(ConfigError, match="exactly one of pool"):
        TrainPlugin(name="x")
    # every catalogue train has a plugin, and the default policy lists every one
    names = Catalogue().names()
    assert set(names) <= set(plugins())
    policy = yaml.safe_load(
        (TRAINS_DIR.parent / "policies" / "default.yaml").read_text()
    )
    listed = {t["name"] for t in policy["datasets"]["*"]["trains"]}
    assert set(default_trains()) == listed


def test_engine_key_in_network_yaml(tmp_path) -> None:
    made = provision(
        tmp_path / "net",
        {"s1": {"d": _tiny(tmp_path)}},
        policy=policy_document(columns=["os_days"]),
    )
    text = made.network.read_text()
    assert "engine: embedded" in text
    made.network.write_text(text.replace("engine: embedded", "engine: carrier-pigeon"))
    with pytest.raises(ConfigError, match="engine 'carrier-pigeon' is not available"):
        load_network(made.network)


def test_analyst_side_network_has_no_station_secrets(tmp_path) -> None:
    """An analyst's network file names stations and keys only; the embedded engine
    says clearly that it cannot run such stations."""
    made = provision(
        tmp_path / "net",
        {"s1": {"d": _tiny(tmp_path)}},
        policy=policy_document(columns=["os_days"]),
    )
    doc = yaml.safe_load(made.network.read_text())
    for entry in doc["stations"]:
        for key in ("policy", "identity", "keyring", "executor", "workdir", "witness"):
            entry.pop(key)
        for dataset in entry["datasets"]:
            dataset.pop("path")
    analyst = made.network.with_name("analyst-network.yaml")
    analyst.write_text(yaml.safe_dump(doc))
    network = load_network(analyst)
    assert network.stations["s1"].host is None
    assert network.stations["s1"].datasets == ("d",)
    with pytest.raises(ConfigError, match="station 's1' has no local configuration"):
        make_engine(network)
    # a path without the station's own keys is a mistake, said as such
    doc["stations"][0]["datasets"][0]["path"] = "x.parquet"
    analyst.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="belongs to the station's own configuration"):
        load_network(analyst)


def _tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.parquet"
    pd.DataFrame({"os_days": np.arange(30.0)}).to_parquet(path)
    return path


def _km_request(tmp_path: Path, catalogue: Catalogue, train: str) -> Any:
    """A fresh network and one signed request for ``train`` to its station s1."""
    from pht.orchestrator.requester import signed_train
    from pht.wire import TrainRef

    tmp_path.mkdir(parents=True, exist_ok=True)
    made, _, _ = _network(tmp_path, catalogue)
    network = load_network(made.network)
    requester = Requester(
        load_identity(made.requester_key),
        {s: e.public_key for s, e in network.stations.items()},
    )
    package = catalogue.get(TrainRef.parse(train))
    _, envelope = requester.request(
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(network.trains, package),
        dataset="melanoma",
        parameters={"time": "os_days", "event": "death"},
        targets=["s1"],
    )
    return network, envelope


def _handle(network: Any, envelope: Any, catalogue: Catalogue) -> Any:
    from pht.orchestrator.embedded import local_station

    station = local_station(network, "s1", catalogue)
    try:
        return station.handle(envelope)
    finally:
        station.close()


def _handle_km(tmp_path: Path, catalogue: Catalogue, train: str) -> Any:
    network, envelope = _km_request(tmp_path, catalogue, train)
    return _handle(network, envelope, catalogue)


def test_a_signed_train_breaking_its_plugins_contract_is_refused(tmp_path) -> None:
    """A trusted key signs survival.km@1.9.0 whose manifest gives a column another
    role: the station's own computation for survival.km assumes the honest roles, so
    it refuses the train before it runs."""
    from pht.station.codes import Code

    root = tmp_path / "catalogue"
    shutil.copytree(TRAINS_DIR, root)
    evil = root / "survival.km-evil"
    shutil.copytree(root / "survival.km", evil)
    manifest = (evil / "manifest.yaml").read_text()
    assert "    role: event\n" in manifest
    (evil / "manifest.yaml").write_text(
        manifest.replace("version: 1.2.0", "version: 1.9.0").replace(
            "    kind: binary\n    role: event\n",
            "    kind: numeric\n    role: event\n",
        )
    )
    catalogue = Catalogue(root)
    reply = _handle_km(tmp_path / "a", catalogue, "survival.km@1.9.0")
    assert reply.status == "refused" and reply.reason == Code.CONTRACT.reason
    honest = _handle_km(tmp_path / "b", catalogue, "survival.km@1.2.0")
    assert honest.ok, honest.reason


def test_a_broken_plugin_registry_fails_closed(tmp_path, monkeypatch) -> None:
    """An installed plugin that does not load must not make known trains look
    plugin-less (released after the guard alone): the station refuses everything."""
    import pht.trains as registry

    class Broken:
        name = "broken"

        def load(self) -> None:
            raise ImportError("no module named broken_plugin")

    network, envelope = _km_request(tmp_path, Catalogue(), "survival.km")
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [Broken()])
    reply = _handle(network, envelope, Catalogue())
    assert not reply.ok and reply.sealed is None
    with pytest.raises(registry.RegistryError, match="did not load"):
        registry.lookup("survival.km")
