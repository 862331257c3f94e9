"""Benchmark: federated Cox through the embedded engine vs lifelines on the pooled rows.

Writes N synthetic patients (pht.synth) split round-robin over S stations as Parquet
files, then measures in the same run, for each mode (stratified, pooled), two fresh
Python processes started the same way:

* **federated**: loads the network and study and runs the fit through the embedded
  engine (process executor, one station process per station kept alive for all Newton
  rounds, the whole trust layer on: signed request, policy, output guard, sealing,
  receipts, audit log);
* **lifelines**: reads the same Parquet files with pandas, concatenates them and fits
  ``CoxPHFitter`` (``strata=["station"]`` for the stratified mode).

Time is the wall time of each process from start to exit (imports included on both
sides). Memory is sampled every 20 ms over the process and all its children, and
reported twice: the peak of the summed resident sets (``VmRSS``, which counts the shared
library pages of every station process again), and the heap the data and computation
add: the peak of the summed anonymous resident memory (``RssAnon``) minus that of the
same interpreters idle. The idle footprint is measured, not assumed: the orchestrator's
and lifelines' own anonymous memory after their imports, and that of a station train
process after its imports (times the number of station processes at the peak). Data
size is the in-memory size of the analysed columns (8 bytes x rows x columns).

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

ROOT = Path(__file__).resolve().parents[1]
COVARIATES = ["age", "ecog", "ldh_elevated", "brain_mets", "regimen"]
COLUMNS = ["os_days", "death", *COVARIATES]


# -- measuring ------------------------------------------------------------------------
def rss_kib(pid: int | str = "self", field: str = "VmRSS") -> int:
    """Resident set size (``VmRSS``) or its anonymous part (``RssAnon``) in KiB."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def anon_kib(pid: int | str = "self") -> int:
    """Anonymous resident memory (heap, arrays) of one process in KiB."""
    return rss_kib(pid, "RssAnon")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), from /proc (cheap: no full scan)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                out.extend(int(c) for c in handle.read().split())
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def measure(command: list[str]) -> dict:
    """Run ``command``: wall time, peaks of its tree's summed RSS and anonymous RSS."""
    peak = {"kib": 0, "anon_kib": 0, "processes": 0}
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pids = tree(proc.pid)
            total = sum(rss_kib(p) for p in pids)
            anon = sum(anon_kib(p) for p in pids)
            if total > peak["kib"]:
                peak["kib"] = total
            if anon > peak["anon_kib"]:
                peak["anon_kib"], peak["processes"] = anon, len(pids)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{err.decode()[-3000:]}")
    data = json.loads(out.decode().strip().splitlines()[-1])
    data.update(
        wall=wall,
        peak_kib=peak["kib"],
        peak_anon_kib=peak["anon_kib"],
        processes=peak["processes"],
    )
    return data


def station_idle_kib() -> tuple[int, int]:
    """RSS and anonymous RSS of a station train process after its imports (no data)."""
    code = (
        "import numpy, pyarrow, pyarrow.parquet\n"
        "import pht.runtime, pht.columns, pht.algorithms.cox, pht.wire\n"
        "status = open('/proc/self/status').read()\n"
        "print(status.split('VmRSS:')[1].split()[0], "
        "status.split('RssAnon:')[1].split()[0])"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
    )
    rss, anon = out.stdout.split()
    return int(rss), int(anon)


# -- the two sides --------------------------------------------------------------------
def child_federated(root: Path, mode: str) -> None:
    """In a fresh process: the fit through the embedded engine (prints JSON)."""
    sys.path.insert(0, str(ROOT))
    from pht.crypto import load_identity
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network, load_study
    from pht.orchestrator.engine import make_engine
    from pht.orchestrator.requester import Requester
    from pht.orchestrator.run import run_study

    idle = anon_kib()
    network = root / "network.yaml"
    catalogue = Catalogue()
    net = load_network(network)
    requester = Requester(
        load_identity(root / "keys" / "analyst.key.json"),
        {s: e.public_key for s, e in net.stations.items()},
    )
    result = run_study(
        load_study(root / f"study-{mode}.yaml", catalogue, net),
        net,
        make_engine(net, catalogue),
        requester,
    )
    cox = result["cox"]
    print(
        json.dumps(
            {
                "idle_kib": idle,
                "coef": {k: v["coef"] for k, v in cox["params"].items()},
                "se": {k: v["se"] for k, v in cox["params"].items()},
                "loglik": cox["loglik"],
                "iterations": cox["iterations"],
                "rounds": result["provenance"]["rounds"],
            }
        )
    )


def child_lifelines(root: Path, mode: str) -> None:
    """In a fresh process: lifelines on the concatenated rows (prints JSON).

    ``mode`` is ``stratified`` or ``pooled``, optionally with ``-tight``: lifelines'
    default convergence rule, or the tight one exactness is judged with
    (``precision=1e-13``, ``r_precision=1e-15``; pht stops at steps below 1e-10).
    """
    mode, _, tight = mode.partition("-")
    import pandas as pd
    from lifelines import CoxPHFitter

    idle = anon_kib()
    started = time.perf_counter()
    files = sorted((root / "data").glob("st*.parquet"))
    frames = [pd.read_parquet(f).assign(station=i) for i, f in enumerate(files)]
    rows = pd.concat(frames, ignore_index=True)
    del frames
    for level in ["extended_interval", "weight_based"]:
        rows["regimen[T." + level + "]"] = (rows["regimen"] == level).astype(float)
    rows = rows.drop(columns="regimen")
    if mode == "pooled":
        rows = rows.drop(columns="station")
    fit = CoxPHFitter(strata=["station"] if mode == "stratified" else None).fit(
        rows,
        "os_days",
        "death",
        fit_options={"precision": 1e-13, "r_precision": 1e-15} if tight else None,
    )
    print(
        json.dumps(
            {
                "idle_kib": idle,
                "read_fit": time.perf_counter() - started,
                "coef": fit.params_.to_dict(),
                "se": fit.standard_errors_.to_dict(),
                "loglik": fit.log_likelihood_,
            }
        )
    )


# -- set-up -------------------------------------------------------------------------
def write_network(root: Path, patients: int, stations: int, seed: int) -> None:
    """Synthetic rows over ``stations`` Parquet files, keys, policies, studies."""
    sys.path.insert(0, str(ROOT))
    import pandas as pd
    import yaml

    from pht import synth
    from pht.provision import policy_document, provision

    frames = synth.generate(seed, patients)
    pooled = pd.concat(frames.values(), ignore_index=True)[COLUMNS]
    pooled = pooled.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    (root / "data").mkdir(parents=True)
    held = {}
    for s in range(stations):
        path = root / "data" / f"st{s:02d}.parquet"
        pooled.iloc[s::stations].to_parquet(path, index=False)
        held[f"st{s:02d}"] = {"melanoma": path}
    policy = policy_document(
        columns=COLUMNS,
        classes=("aggregate", "model", "event_table", "risk_set_sums"),
    )
    network = provision(root, held, policy=policy).network
    assert network == root / "network.yaml", network
    for mode in ("stratified", "pooled"):
        (root / f"study-{mode}.yaml").write_text(
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--modes", default="stratified,pooled")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "ROOT", "MODE"))
    args = parser.parse_args()
    if args.child:
        side, root, mode = args.child
        (child_federated if side == "federated" else child_lifelines)(Path(root), mode)
        return

    data_mib = args.patients * len(COLUMNS) * 8 / 2**20
    with tempfile.TemporaryDirectory(prefix="pht-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        # in a child process, so that the generator's memory is not in anyone's way
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); "
                "from bench.cox_vs_lifelines import write_network as w; "
                "from pathlib import Path; "
                "w(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))",
                str(ROOT),
                str(root),
                str(args.patients),
                str(args.stations),
                str(args.seed),
            ],
            check=True,
        )
        station_idle = station_idle_kib()
        print(
            f"data: {args.patients:,} patients over {args.stations} stations, "
            f"{len(COVARIATES)} covariates (6 parameters), {data_mib:.0f} MiB in "
            f"memory; written in {time.perf_counter() - started:.1f} s; an idle station "
            f"process holds {station_idle[0] / 1024:.0f} MiB "
            f"({station_idle[1] / 1024:.0f} MiB heap)"
        )
        me = [sys.executable, str(Path(__file__).resolve()), "--child"]
        for mode in args.modes.split(","):
            fed = measure([*me, "federated", str(root), mode])
            peak = fed["peak_kib"] / 1024
            idle = (fed["idle_kib"] + (fed["processes"] - 1) * station_idle[1]) / 1024
            added = fed["peak_anon_kib"] / 1024 - idle
            print(
                f"[{mode}] federated: {fed['wall']:.2f} s, {fed['iterations']} "
                f"iterations, {fed['rounds']} rounds; peak RSS {peak:.0f} MiB over "
                f"{fed['processes']} processes; heap added over their idle footprint "
                f"{added:.0f} MiB ({added / data_mib:.2f} x data)"
            )
            if args.no_reference:
                continue
            for variant in ("", "-tight"):
                ref = measure([*me, "lifelines", str(root), mode + variant])
                ref_peak = ref["peak_kib"] / 1024
                ref_added = ref["peak_anon_kib"] / 1024 - ref["idle_kib"] / 1024
                diff = {
                    key: max(abs(fed[key][k] - ref[key][k]) for k in fed[key])
                    for key in ("coef", "se")
                }
                label = "tight options" if variant else "default options"
                print(
                    f"[{mode}] lifelines ({label}): {ref['wall']:.2f} s (read + fit "
                    f"{ref['read_fit']:.2f} s); peak RSS {ref_peak:.0f} MiB; heap added "
                    f"over idle {ref_added:.0f} MiB ({ref_added / data_mib:.2f} x data)"
                )
                print(
                    f"[{mode}] ratio federated/lifelines ({label}): time "
                    f"{fed['wall'] / ref['wall']:.3f}, added memory "
                    f"{added / ref_added:.3f}; max |diff| coef {diff['coef']:.1e}, "
                    f"se {diff['se']:.1e}, loglik "
                    f"{abs(fed['loglik'] - ref['loglik']):.1e}"
                    + (
                        " (pooled: the stations release times on their grids, "
                        "lifelines fits the exact times; the difference is the grid's)"
                        if mode == "pooled"
                        else ""
                    )
                )


if __name__ == "__main__":
    main()
