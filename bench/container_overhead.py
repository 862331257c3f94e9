"""Benchmark: what the Docker executor adds over the process executor.

Measured in the same run, on the same data (synthetic registries over 3 stations):

1. a single-round train (survival.km) through one station: median wall time per request
   with ``executor: docker`` vs ``executor: process``;
2. a 10-round iterative train (survival.cox, stratified, a fixed 10 Newton-type rounds
   of ``terms`` at one station): one container for all rounds (the session) vs a new
   container per round (open, one round, close; repeated 10 times).

Prints medians and ratios, and the time the container adds per station per train
(target: at most 1.5 s). Needs a Docker engine and the images (``pht images build``).

Usage::

    python bench/container_overhead.py [--repeats 5] [--patients 9000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pht import synth  # noqa: E402
from pht.algorithms.optimize import NewtonPath  # noqa: E402
from pht.crypto import load_identity  # noqa: E402
from pht.images import build_all  # noqa: E402
from pht.manifest import Catalogue  # noqa: E402
from pht.orchestrator.config import load_network  # noqa: E402
from pht.orchestrator.engine import make_engine  # noqa: E402
from pht.orchestrator.requester import Requester, signed_train  # noqa: E402
from pht.provision import policy_document, provision  # noqa: E402
from pht.wire import TrainRef  # noqa: E402


def network(root: Path, executor: str, images: dict[str, str], patients: int):  # type: ignore[no-untyped-def]
    paths = synth.write(root / "data", seed=1, patients=patients)
    made = provision(
        root,
        {"nkr": {"melanoma": paths["nkr"]}},
        policy=policy_document(),
        executor=executor,
        images=images,
    )
    net = load_network(made.network)
    engine = make_engine(net)
    requester = Requester(
        load_identity(made.requester_key),
        {s: e.public_key for s, e in net.stations.items()},
    )
    return net, engine, requester


def request(net, requester, train: str, parameters):  # type: ignore[no-untyped-def]
    package = Catalogue().get(TrainRef.parse(train))
    return requester.request(
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(net.trains, package),
        dataset="melanoma",
        parameters=parameters,
        targets=["nkr"],
    )


# (regimen has too few weight-based patients at nkr for a grid with k events and k
# censorings per cell: the station refuses it; sex is the demo's balanced group)
KM = {"time": "os_days", "event": "death", "group": "sex"}
COX = {
    "time": "os_days",
    "event": "death",
    "covariates": ["age", "ecog", "regimen"],
    "mode": "stratified",
    "reference": {"regimen": "standard"},
}


def single_round(net, engine, requester) -> float:  # type: ignore[no-untyped-def]
    _, envelope = request(net, requester, "survival.km", KM)
    started = time.perf_counter()
    reply = engine.station("nkr").handle(envelope)
    assert reply.ok, reply.reason
    return time.perf_counter() - started


DESIGN = {
    "op": "design",
    "design": {
        "covariates": [
            {"column": "age", "levels": [], "reference": None},
            {"column": "ecog", "levels": [], "reference": None},
            {
                "column": "regimen",
                "levels": ["extended_interval", "standard", "weight_based"],
                "reference": "standard",
            },
        ],
        "centre": [65.0, 1.0, 0.1, 0.05],
    },
}


def rounds(net, engine, requester, n: int, per_round_container: bool) -> float:  # type: ignore[no-untyped-def]
    station = engine.station("nkr")
    started = time.perf_counter()
    sessions = 1 if not per_round_container else n
    per_session = n if not per_round_container else 1
    for _ in range(sessions):
        body, envelope = request(net, requester, "survival.cox", COX)
        reply, session = station.open_session(envelope)
        assert session is not None, reply.reason
        designed = session.round(DESIGN)
        assert designed.ok, designed.reason
        own = {
            "station": "nkr",
            "output": requester.open(designed, body.request_id).output,
            "receipt": designed.receipt,
        }
        # the station answers only the Newton path: each round proves the last one
        path = NewtonPath(4)
        message: dict = {"op": "terms", "beta": path.start().tolist()}
        for _ in range(per_session):
            answer = session.round(message)
            assert answer.ok, answer.reason
            out = requester.open(answer, body.request_id).output
            point = path.next_point(
                out["loglik"], np.asarray(out["gradient"]), np.asarray(out["hessian"])
            )
            assert point is not None
            evidence = [
                own,
                {"station": "nkr", "output": out, "receipt": answer.receipt},
            ]
            message = {"op": "terms", "beta": point.tolist(), "evidence": evidence}
        session.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--patients", type=int, default=9000)
    args = parser.parse_args()
    images = build_all()
    with tempfile.TemporaryDirectory(prefix="pht-bench-") as tmp:
        nets = {
            kind: network(Path(tmp) / kind, kind, images, args.patients)
            for kind in ("process", "docker")
        }
        for kind in nets:  # warm-up: page cache, docker client
            single_round(*nets[kind])
        single = {
            k: statistics.median(single_round(*nets[k]) for _ in range(args.repeats))
            for k in nets
        }
        print(
            f"single-round survival.km at one station ({args.patients * 4 // 9:,} patients),"
            f" median of {args.repeats}:"
        )
        for k, v in single.items():
            print(f"  {k:<8} {v:.3f} s")
        added = single["docker"] - single["process"]
        print(
            f"  ratio docker/process {single['docker'] / single['process']:.2f}; "
            f"added {added:.3f} s per station per train (target <= 1.5 s)"
        )
        session = {
            k: statistics.median(
                rounds(*nets[k], 10, False) for _ in range(args.repeats)
            )
            for k in nets
        }
        per_round = statistics.median(
            rounds(*nets["docker"], 10, True) for _ in range(max(1, args.repeats // 2))
        )
        print("10-round iterative survival.cox (stratified terms) at one station:")
        print(f"  process, one process for all rounds   {session['process']:.3f} s")
        print(f"  docker, one container for all rounds  {session['docker']:.3f} s")
        print(f"  docker, a container per round         {per_round:.3f} s")
        print(
            f"  ratio per-round/session containers {per_round / session['docker']:.2f}; "
            f"docker session/process session {session['docker'] / session['process']:.2f}; "
            f"added {session['docker'] - session['process']:.3f} s per station per train"
        )


if __name__ == "__main__":
    main()
