"""Wall time of studies on a local vantage6 4.15 network against the embedded engine.

Issue 14's measure: the demo's KM study (single round: one task) and a stratified
Cox study (iterative: a session host task, an open task and one task per round) run
through :class:`~pht.orchestrator.vantage6_engine.Vantage6Engine` and through the
embedded engine, in the same run, on the same demo network and request. Prints each
wall time, their ratio, and the per-round overhead: the mean vantage6 round time
minus the mean embedded round time (what one task per round costs: container start
at every node, the node's 1 s result polling, upload, the engine's polling).

    .venv/bin/python bench/vantage6_walltime.py [--patients 6000] [--repeat 1]

Needs Docker and starts its own local network (one runs per machine: it waits for
another to stop). The numbers must agree (checked: the script exits 1 otherwise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _timed(run: Any) -> tuple[dict[str, Any], float, list[float]]:
    rounds: list[float] = []

    def progress(station: str, event: str, detail: Any) -> None:
        if event == "round":
            rounds.append(float(detail.seconds))

    start = time.perf_counter()
    result = run(progress)
    return result, time.perf_counter() - start, rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    from pht.crypto import load_identity
    from pht.demo import create_demo
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network, load_study
    from pht.orchestrator.embedded import EmbeddedEngine
    from pht.orchestrator.requester import Requester
    from pht.orchestrator.run import run_study
    from pht.orchestrator.vantage6_config import make_engine
    from pht.vantage6_local import (
        DEMO_COX_STUDY,
        comparable,
        start_local_network,
    )

    root = Path(tempfile.mkdtemp(prefix="pht-bench-v6-"))
    demo = create_demo(root / "demo", patients=args.patients)
    (demo.root / "study-cox.yaml").write_text(DEMO_COX_STUDY, encoding="utf-8")
    started = time.perf_counter()
    local = start_local_network(demo.network, root / "v6", wait=1800)
    print(f"network up in {time.perf_counter() - started:.1f} s (image {local.image})")
    ok = True
    try:
        catalogue = Catalogue()
        net = load_network(demo.network)
        analyst = load_network(local.network)
        requester = Requester(
            load_identity(demo.identity),
            {s: e.public_key for s, e in net.stations.items()},
        )
        for name, file in (("KM", demo.study), ("Cox", demo.root / "study-cox.yaml")):
            study = load_study(file, catalogue, net)
            for _ in range(args.repeat):
                with make_engine(analyst) as engine:
                    v6, v6_s, v6_rounds = _timed(
                        lambda p, e=engine, s=study: run_study(s, net, e, requester, p)
                    )
                with EmbeddedEngine(net, catalogue) as embedded:
                    here, here_s, here_rounds = _timed(
                        lambda p, e=embedded, s=study: run_study(
                            s, net, e, requester, p
                        )
                    )
                same = comparable(v6) == comparable(here)
                ok = ok and same
                line = (
                    f"{name}: vantage6 {v6_s:.1f} s, embedded {here_s:.2f} s, "
                    f"ratio {v6_s / here_s:.1f}x; numbers equal: {same}"
                )
                if v6_rounds:
                    overhead = statistics.mean(v6_rounds) - statistics.mean(
                        here_rounds or [0.0]
                    )
                    line += (
                        f"; {len(v6_rounds)} rounds, {statistics.mean(v6_rounds):.2f} s "
                        f"each on vantage6 vs {statistics.mean(here_rounds or [0.0]):.3f}"
                        f" s embedded: per-round overhead {overhead:.2f} s"
                    )
                print(line, flush=True)
    finally:
        local.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
