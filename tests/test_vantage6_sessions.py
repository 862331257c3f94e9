"""Iterative trains on a real vantage6 4.15 network equal the embedded engine.

A pht session needs one train process and the station's replay state for all rounds;
vantage6 starts a container per task. The pht node image keeps a session host per
node (one long task) and every round is a short task whose container hands the
message to the host through a spool in the station's folder
(``deploy/vantage6/pht-algorithm/pht_v6``). These tests run a stratified Cox study
that way and compare every number of ``result.json`` with the embedded engine's, and
check that the station still checks every round message (a message off the Newton
path is refused and ends the session), and that a round for a session the node does
not hold is a per-station reason.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pht.crypto import load_identity
from pht.manifest import Catalogue
from pht.orchestrator.config import load_network, load_study
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester
from pht.orchestrator.run import plan_request, run_study
from pht.vantage6_local import DEMO_COX_STUDY, comparable

pytestmark = [pytest.mark.vantage6]

COX = DEMO_COX_STUDY


def _requester(net: Any, demo: Any) -> Requester:
    return Requester(
        load_identity(demo.identity),
        {s: e.public_key for s, e in net.stations.items()},
    )


def test_cox_on_vantage6_equals_embedded(v6_network: Any) -> None:
    demo = v6_network.demo
    study_file = demo.root / "study-cox-v6.yaml"
    study_file.write_text(COX, encoding="utf-8")
    catalogue = Catalogue()
    net = load_network(demo.network)
    study = load_study(study_file, catalogue, net)
    requester = _requester(net, demo)
    rounds: list[float] = []

    def progress(station: str, event: str, detail: Any) -> None:
        if event == "round":
            rounds.append(detail.seconds)

    start = time.perf_counter()
    with v6_network.engine(timeout=300.0) as engine:
        on_v6 = run_study(study, net, engine, requester, progress=progress)
    v6_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with EmbeddedEngine(net, catalogue) as embedded:
        here = run_study(study, net, embedded, requester)
    print(
        f"Cox: vantage6 {v6_seconds:.1f} s ({len(rounds)} rounds, "
        f"{sum(rounds) / max(1, len(rounds)):.1f} s each), embedded "
        f"{time.perf_counter() - start:.1f} s"
    )
    assert on_v6["provenance"]["engine"] == "vantage6"
    assert on_v6["provenance"]["rounds"] == here["provenance"]["rounds"] >= 3
    assert len(rounds) >= 3
    assert comparable(on_v6) == comparable(here)
    assert sum(s["participated"] for s in on_v6["stations"]) == 3


def test_a_round_off_the_path_is_refused_and_ends_the_session(
    v6_network: Any,
) -> None:
    """The host checks round messages as the embedded station does."""
    demo = v6_network.demo
    study_file = demo.root / "study-cox-v6.yaml"
    study_file.write_text(COX, encoding="utf-8")
    net = load_network(demo.network)
    study = load_study(study_file, Catalogue(), net)
    requester = _requester(net, demo)
    body, envelope = plan_request(study, net, requester)
    engine = v6_network.engine(timeout=240.0)
    engine.sign_rounds_with(requester.identity)
    stations = ["dica", "umc"]
    with engine.open_sessions(
        {s: envelope for s in stations},
        opener=lambda reply: requester.open(reply, body.request_id),
    ) as group:
        assert all(group.opened[s].ok for s in stations), group.opened
        # an evaluation at a point the analyst chose (not the Newton path's start)
        first = group.round({s: {"op": "terms", "beta": [0.5, -0.5]} for s in stations})
        for station in stations:
            assert first[station].status in ("refused", "error"), first[station]
        # the session is over at the node: a further round is a per-station reason
        again = group.round({s: {"op": "terms", "beta": [0.0, 0.0]} for s in stations})
        for station in stations:
            assert again[station].status == "error"
            assert "no open session" in (again[station].reason or "")


def test_nodes_run_only_the_pinned_station_image(v6_network: Any) -> None:
    """A task naming any other image is 'not allowed' at every node, per station."""
    import shutil
    import subprocess

    if shutil.which("docker-registry"):
        # nodes pinned to the registry digest of the station image
        assert "@sha256:" in v6_network.image, v6_network.image
    other = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    runtime = next(i for i in other if i.startswith("pht/train-runtime:"))
    demo = v6_network.demo
    net = load_network(demo.network)
    study = load_study(demo.study, Catalogue(), net)
    requester = _requester(net, demo)
    body, envelope = plan_request(study, net, requester)
    engine = v6_network.engine(image=runtime, timeout=120.0)
    replies = engine.dispatch({s: envelope for s in body.targets})
    for station in body.targets:
        assert replies[station].status == "error", replies[station]
        assert "not allowed" in (replies[station].reason or ""), replies[station]
