"""The demo's studies on a real local vantage6 4.15 network (marker ``vantage6``).

Every test here shares one network (the session fixture ``v6_network`` in
``conftest.py``: ``pht.vantage6_local`` starts the server and one node per demo
station, each node with its own station folder as its only database and the pht
station image as its only algorithm). They run where Docker runs and are required
under CI (``CI=true``).

Shown: the KM study through the analyst's ``engine: {kind: vantage6}`` file gives the
embedded engine's ``result.json`` numbers; a node that is down, or whose station
folder is broken, is a per-station ``error`` with a reason while the others answer;
an unknown organisation name is a one-line error listing the known ones.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pht.crypto import load_identity
from pht.errors import ConfigError
from pht.manifest import Catalogue
from pht.orchestrator.config import Network, load_network, load_study
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.engine import make_engine
from pht.orchestrator.requester import Requester
from pht.orchestrator.run import plan_request, run_study
from pht.wire import Reply

pytestmark = pytest.mark.vantage6


def _numbers(result: dict) -> dict:
    """The statistical sections of a result.json (no provenance or timings)."""
    keep = ("km", "logrank", "logrank_stratified", "rmst", "survival_at")
    return {k: result[k] for k in keep if k in result} | {
        "stations": [
            (s["id"], s["participated"], s["reason"]) for s in result["stations"]
        ]
    }


def _requester(v6: Any, net: Network) -> Requester:
    return Requester(
        load_identity(v6.demo.identity),
        {s: e.public_key for s, e in net.stations.items()},
    )


def _dispatch(v6: Any, **settings: Any) -> dict[str, Reply]:
    """Send the demo study's request to every station once; the raw replies."""
    net = load_network(v6.network)
    study = load_study(v6.demo.study, Catalogue(), net)
    body, envelope = plan_request(study, net, _requester(v6, net))
    with v6.engine(**settings) as engine:
        return engine.dispatch({s: envelope for s in body.targets})


def test_analyst_network_file_holds_no_station_secrets(v6_network) -> None:
    net = load_network(v6_network.network)
    assert net.engine == "vantage6"
    assert net.engine_settings is not None
    assert dict(net.engine_settings["organizations"]) == {
        s: s for s in ("nkr", "dica", "umc")
    }
    assert all(entry.host is None for entry in net.stations.values())
    text = v6_network.network.read_text(encoding="utf-8")
    for secret in ("policy", "identity", "keyring", "key.json", "parquet"):
        assert secret not in text


def test_km_on_vantage6_equals_embedded(v6_network) -> None:
    demo = v6_network.demo
    catalogue = Catalogue()
    analyst = load_network(v6_network.network)
    study = load_study(demo.study, catalogue, analyst)
    start = time.perf_counter()
    with make_engine(analyst, catalogue) as engine:  # engine: {kind: vantage6, ...}
        on_v6 = run_study(study, analyst, engine, _requester(v6_network, analyst))
    v6_seconds = time.perf_counter() - start
    full = load_network(demo.network)
    start = time.perf_counter()
    with EmbeddedEngine(full, catalogue) as embedded:
        here = run_study(
            load_study(demo.study, catalogue, full),
            full,
            embedded,
            _requester(v6_network, full),
        )
    embedded_seconds = time.perf_counter() - start
    print(f"KM: vantage6 {v6_seconds:.1f} s, embedded {embedded_seconds:.1f} s")
    assert on_v6["provenance"]["engine"] == "vantage6"
    assert here["provenance"]["engine"] == "embedded"
    assert sum(s["participated"] for s in on_v6["stations"]) >= 2
    assert _numbers(on_v6) == _numbers(here)


def test_unknown_organisation_name_lists_the_known_ones(v6_network) -> None:
    doc = yaml.safe_load(v6_network.network.read_text(encoding="utf-8"))
    doc["engine"]["organizations"]["umc"] = "umc-typo"
    copy = v6_network.network.with_name("network-typo.yaml")
    copy.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        make_engine(load_network(copy))
    message = str(raised.value)
    assert "\n" not in message
    assert "no organisation 'umc-typo'; use one of: dica, nkr, " in message
    assert "umc" in message.split("use one of:")[1]


def test_broken_station_folder_is_a_per_station_reason(v6_network) -> None:
    config = v6_network.local.folders / "dica" / "network.yaml"
    aside = config.with_name("network.yaml.aside")
    shutil.move(config, aside)
    try:
        replies = _dispatch(v6_network, timeout=240.0)
    finally:
        shutil.move(aside, config)
    assert replies["dica"].status == "error"
    assert "station folder" in (replies["dica"].reason or "")
    assert replies["nkr"].status in ("ok", "refused")
    assert replies["umc"].status in ("ok", "refused")


def _wait_gone(pid: int) -> None:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"node process {pid} did not stop")


def _wait_offline(v6: Any, station: str) -> None:
    """Poll until the server marks the station's node offline (its socket closed)."""
    with v6.engine() as engine:
        org = engine.settings.organizations[station]
        for _ in range(150):
            if engine.node_status().get(org) == "offline":
                return
            time.sleep(0.2)
    raise AssertionError(f"the server still shows node {station} online")


def test_node_down_is_a_per_station_reason(v6_network) -> None:
    pid = int((Path(v6_network.state) / "nodes" / "umc" / "pid").read_text())
    os.kill(pid, 15)
    try:
        _wait_gone(pid)
        _wait_offline(v6_network, "umc")
        replies = _dispatch(v6_network)
    finally:
        v6_network.local.restart_node("umc")  # the other tests need it
    assert replies["umc"].status == "error"
    assert "node offline" in (replies["umc"].reason or "")
    assert replies["dica"].status in ("ok", "refused")
    assert replies["nkr"].status in ("ok", "refused")
