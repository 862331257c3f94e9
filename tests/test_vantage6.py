"""The demo's KM study on a real vantage6 4.15 network equals the embedded engine's.

Skipped unless ``PHT_V6=1`` (needs Docker, the vantage6 venv ``.venv-v6`` and the
train runtime image; ``deploy/vantage6/README.md``). Starts the network with
``deploy/vantage6/start-network.sh`` (one node per demo station, each with its own
station folder from ``pht-algorithm/station_folder.py``), runs the study through
:class:`~pht.orchestrator.vantage6_engine.Vantage6Engine` and the embedded engine,
compares the result numbers, and stops the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pht.crypto import load_identity
from pht.demo import create_demo
from pht.manifest import Catalogue
from pht.orchestrator.config import load_network, load_study
from pht.orchestrator.embedded import EmbeddedEngine
from pht.orchestrator.requester import Requester
from pht.orchestrator.run import run_study
from pht.orchestrator.vantage6_engine import Vantage6Engine, Vantage6Settings

pytestmark = [
    pytest.mark.vantage6,
    pytest.mark.skipif(
        os.environ.get("PHT_V6") != "1",
        reason="set PHT_V6=1 to run against a local vantage6 network",
    ),
]

REPO = Path(__file__).resolve().parent.parent
V6 = REPO / "deploy" / "vantage6"


def _numbers(result: dict) -> dict:
    """The statistical sections of a result.json (no provenance or timings)."""
    keep = ("km", "logrank", "logrank_stratified", "rmst", "survival_at")
    return {k: result[k] for k in keep if k in result} | {
        "stations": [
            (s["id"], s["participated"], s["reason"]) for s in result["stations"]
        ]
    }


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """The demo network, the station folders and a running vantage6 network."""
    root = tmp_path_factory.mktemp("v6")
    demo = create_demo(root / "demo", patients=6000)
    folders = root / "stations"
    folders.mkdir(mode=0o700)
    for station in ("nkr", "dica", "umc"):
        subprocess.run(
            [
                sys.executable,
                str(V6 / "pht-algorithm" / "station_folder.py"),
                str(demo.network),
                station,
                str(folders / station),
                "--unsafe-process-sandbox",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # the algorithm container runs as uid 10001 and writes the audit log
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "10001:10001", str(folders / station)])
        else:
            subprocess.run(["chmod", "-R", "a+rwX", str(folders / station)])
    image = subprocess.run(
        ["bash", str(V6 / "pht-algorithm" / "build.sh")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # a state folder of its own (kept, like .build/vantage6: wheelhouse, data)
    state = REPO / ".build" / "vantage6-test"
    env = os.environ | {
        "PHT_V6_DIR": str(state),
        "PHT_V6_STATION_FOLDERS": str(folders),
        "PHT_V6_EXTRA_IMAGES": image,
    }
    subprocess.run(["bash", str(V6 / "start-network.sh")], check=True, env=env)
    try:
        yield demo, state, image
    finally:
        subprocess.run(["bash", str(V6 / "stop-network.sh")], env=env, check=False)


def _engine(state: Path, image: str) -> Vantage6Engine:
    info = json.loads((state / "network.json").read_text())
    probe = Vantage6Settings(
        server=f"http://127.0.0.1:{info['server_port']}/api",
        collaboration=0,
        username="analyst",
        password_file=state / "analyst.password",
        organizations={},
        image=image,
    )
    lookup = Vantage6Engine(probe)
    orgs = lookup.names("organization")
    return Vantage6Engine(
        Vantage6Settings(
            server=probe.server,
            collaboration=lookup.names("collaboration")["pht"],
            username="analyst",
            password_file=probe.password_file,
            organizations={s: orgs[s] for s in ("nkr", "dica", "umc")},
            image=image,
            timeout=240.0,
        )
    )


def test_km_on_vantage6_equals_embedded(network) -> None:
    demo, state, image = network
    catalogue = Catalogue()
    net = load_network(demo.network)
    study = load_study(demo.study, catalogue, net)
    requester = Requester(
        load_identity(demo.identity),
        {s: e.public_key for s, e in net.stations.items()},
    )
    start = time.perf_counter()
    with _engine(state, image) as engine:
        on_v6 = run_study(study, net, engine, requester)
    v6_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with EmbeddedEngine(net, catalogue) as embedded:
        here = run_study(study, net, embedded, requester)
    embedded_seconds = time.perf_counter() - start
    print(f"KM: vantage6 {v6_seconds:.1f} s, embedded {embedded_seconds:.1f} s")
    assert on_v6["provenance"]["engine"] == "vantage6"
    assert here["provenance"]["engine"] == "embedded"
    assert sum(s["participated"] for s in on_v6["stations"]) >= 2
    assert _numbers(on_v6) == _numbers(here)


def test_node_down_is_a_per_station_reason(network) -> None:
    demo, state, image = network
    catalogue = Catalogue()
    net = load_network(demo.network)
    study = load_study(demo.study, catalogue, net)
    requester = Requester(
        load_identity(demo.identity),
        {s: e.public_key for s, e in net.stations.items()},
    )
    pid = int((state / "nodes" / "umc" / "pid").read_text())
    os.kill(pid, 15)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    from pht.orchestrator.run import plan_request

    body, envelope = plan_request(study, net, requester)
    engine = _engine(state, image)
    # the server marks a node offline when its socket closes; give it a moment
    time.sleep(2)
    replies = engine.dispatch({s: envelope for s in body.targets})
    assert replies["umc"].status == "error"
    assert "node offline" in (replies["umc"].reason or "")
    assert replies["dica"].status in ("ok", "refused")
