"""Benchmark: federated Cox through the embedded engine vs lifelines on the pooled rows.

Writes N synthetic patients (pht.synth) split round-robin over S stations as Parquet
files, then measures in the same run, for each mode (stratified, pooled):

* the federated fit: ``pht run`` logic through the embedded engine (process executor,
  one station process kept alive for all Newton rounds); wall time and peak memory of
  the whole process tree (orchestrator + station processes), sampled every 10 ms;
* the reference: a fresh Python process that reads the same Parquet files with pandas,
  concatenates them and fits lifelines ``CoxPHFitter`` (``strata=["station"]`` for the
  stratified mode); wall time and peak memory.

Memory is reported as peak resident set size, and as the increase over the idle
interpreter(s) (what the data and the computation add). Data size is the in-memory
size of the analysed columns (8 bytes x rows x columns).

Usage::

    python bench/cox_vs_lifelines.py                      # 1,000,000 patients, 10 stations
    python bench/cox_vs_lifelines.py --patients 10000000 --stations 20 --no-reference
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pht import synth  # noqa: E402
from pht.crypto import load_identity  # noqa: E402
from pht.manifest import Catalogue  # noqa: E402
from pht.orchestrator.config import load_network, load_study  # noqa: E402
from pht.orchestrator.engine import EmbeddedEngine  # noqa: E402
from pht.orchestrator.requester import Requester  # noqa: E402
from pht.orchestrator.run import run_study  # noqa: E402
from pht.provision import policy_document, provision  # noqa: E402

COVARIATES = ["age", "ecog", "ldh_elevated", "brain_mets", "regimen"]
COLUMNS = ["os_days", "death", *COVARIATES]


def rss_kib(pid: int) -> int:
    """Resident set size of one process in KiB (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class PeakMemory:
    """Samples the summed RSS of a process tree in a background thread."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = tree(self.pid)
            total = sum(rss_kib(p) for p in pids)
            if total > self.peak_kib:
                self.peak_kib, self.peak_processes = total, len(pids)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_network(root: Path, patients: int, stations: int, seed: int) -> Path:
    frames = synth.generate(seed, patients)
    pooled = pd.concat(frames.values(), ignore_index=True)[COLUMNS]
    pooled = pooled.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    (root / "data").mkdir(parents=True)
    held = {}
    for s in range(stations):
        path = root / "data" / f"st{s:02d}.parquet"
        pooled.iloc[s::stations].to_parquet(path, index=False)
        held[f"st{s:02d}"] = {"melanoma": path}
    return provision(root, held, policy=policy_document(columns=COLUMNS)).network


def federated(root: Path, network: Path, mode: str) -> dict:
    study = root / f"study-{mode}.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "question": "benchmark",
                "purpose": "package-management/reassessment",
                "train": "survival.cox",
                "dataset": "melanoma",
                "parameters": {
                    "time": "os_days",
                    "event": "death",
                    "covariates": COVARIATES,
                    "mode": mode,
                    "reference": {"regimen": "standard"},
                },
            }
        )
    )
    catalogue = Catalogue()
    before = rss_kib(os.getpid())
    with PeakMemory(os.getpid()) as memory:
        started = time.perf_counter()
        net = load_network(network)
        requester = Requester(
            load_identity(network.parent / "keys" / "analyst.key.json"),
            {s: e.public_key for s, e in net.stations.items()},
        )
        result = run_study(
            load_study(study, catalogue, net),
            net,
            EmbeddedEngine(net, catalogue),
            requester,
        )
        wall = time.perf_counter() - started
    return {
        "wall": wall,
        "peak_kib": memory.peak_kib,
        "processes": memory.peak_processes,
        "orchestrator_idle_kib": before,
        "coef": {k: v["coef"] for k, v in result["cox"]["params"].items()},
        "iterations": result["cox"]["iterations"],
        "rounds": result["provenance"]["rounds"],
    }


REFERENCE = """
import json, resource, sys, time
t0 = time.perf_counter()
import pandas as pd
from lifelines import CoxPHFitter
mode, files = sys.argv[1], sys.argv[2:]
t1 = time.perf_counter()
idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
frames = [pd.read_parquet(f).assign(station=i) for i, f in enumerate(files)]
rows = pd.concat(frames, ignore_index=True)
for level in ["extended_interval", "weight_based"]:
    rows["regimen[T." + level + "]"] = (rows["regimen"] == level).astype(float)
rows = rows.drop(columns="regimen")
if mode == "pooled":
    rows = rows.drop(columns="station")
fit = CoxPHFitter(strata=["station"] if mode == "stratified" else None).fit(
    rows, "os_days", "death"
)
t2 = time.perf_counter()
print(json.dumps({"wall_fit": t2 - t1, "import": t1 - t0, "idle_kib": idle,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "coef": fit.params_.to_dict()}))
"""


def reference(network_root: Path, mode: str) -> dict:
    files = sorted(str(p) for p in (network_root / "data").glob("st*.parquet"))
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", REFERENCE, mode, *files],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["wall"] = wall
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--modes", default="stratified,pooled")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()

    data_mib = args.patients * len(COLUMNS) * 8 / 2**20
    with tempfile.TemporaryDirectory(prefix="pht-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        network = write_network(root, args.patients, args.stations, args.seed)
        print(
            f"data: {args.patients:,} patients over {args.stations} stations, "
            f"{len(COVARIATES)} covariates (6 parameters), {data_mib:.0f} MiB in "
            f"memory; written in {time.perf_counter() - started:.1f} s"
        )
        for mode in args.modes.split(","):
            fed = federated(root, network, mode)
            peak = fed["peak_kib"] / 1024
            print(
                f"[{mode}] federated: {fed['wall']:.2f} s, {fed['iterations']} "
                f"iterations, {fed['rounds']} rounds, peak RSS {peak:.0f} MiB over "
                f"{fed['processes']} processes ({peak / data_mib:.2f} x data)"
            )
            if args.no_reference:
                continue
            ref = reference(root, mode)
            ref_peak = ref["peak_kib"] / 1024
            ref_delta = (ref["peak_kib"] - ref["idle_kib"]) / 1024
            diff = max(abs(fed["coef"][k] - ref["coef"][k]) for k in fed["coef"])
            print(
                f"[{mode}] lifelines: {ref['wall']:.2f} s (read + fit "
                f"{ref['wall_fit']:.2f} s, imports {ref['import']:.2f} s), peak RSS "
                f"{ref_peak:.0f} MiB ({ref_delta:.0f} MiB over idle, "
                f"{ref_peak / data_mib:.2f} x data)"
            )
            print(
                f"[{mode}] ratio federated/lifelines: time {fed['wall'] / ref['wall']:.3f}"
                f" (vs read+fit only {fed['wall'] / ref['wall_fit']:.3f}), "
                f"memory {peak / ref_peak:.3f}; max |coef diff| {diff:.2e}"
            )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
