"""Benchmark: a federated logistic GLM through the embedded engine vs statsmodels.

Writes N synthetic patients (pht.synth) split round-robin over S stations as Parquet
files, then measures in the same run two fresh Python processes started the same way:

* **federated**: loads the network and study and runs the ``glm`` train (binomial,
  logit link, outcome ``tox_grade3``, 10 covariate parameters and an intercept)
  through the embedded engine (process executor, one train process per station kept
  alive for all Newton rounds, each answer recomputed by the station's own kernel, the
  whole trust layer on: signed request, policy, output guard, sealing, receipts, audit
  log);
* **statsmodels**: reads the same Parquet files with pandas, concatenates them, codes
  the same dummies and fits ``GLM(y, X, family=Binomial())`` by IRLS to a relative
  deviance change below ``1e-12`` (pht stops at Newton steps below 1e-10), then
  computes the model-based and HC0 standard errors pht also returns.

Time is the wall time of each process from start to exit (imports included on both
sides). Memory is sampled every 20 ms over the process and all its children, and
reported twice: the peak of the summed resident sets (``VmRSS``, which counts the shared
library pages of every station process again), and the heap the data and computation
add: the peak of the summed anonymous resident memory (``RssAnon``) minus that of the
same interpreters idle. The idle footprint is measured, not assumed: the orchestrator's
and statsmodels' own anonymous memory after their imports, and that of a station train
process after its imports (times the number of station processes at the peak). Data
size is the in-memory size of the analysed columns (8 bytes x rows x columns).

The coefficients and standard errors of the two fits are compared (max |difference|).

Usage::

    python bench/glm_vs_statsmodels.py                    # 1,000,000 patients, 10 stations
    python bench/glm_vs_statsmodels.py --quick            # 200,000 patients, 2 stations
    python bench/glm_vs_statsmodels.py --patients 10000000 --stations 20 --no-reference
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cox_vs_lifelines import anon_kib, measure  # noqa: E402

OUTCOME = "tox_grade3"
NUMERIC = ["age", "weight_kg", "ldh_elevated", "brain_mets", "line"]
REFERENCE = {"sex": "F", "drug": "pembrolizumab", "regimen": "standard"}
COVARIATES = [*NUMERIC, *REFERENCE]
COLUMNS = [OUTCOME, *COVARIATES]
TOL = 1e-12  # statsmodels: relative change of the deviance between IRLS iterations


def station_idle_kib() -> tuple[int, int]:
    """RSS and anonymous RSS of a station train process after its imports (no data)."""
    code = (
        "import numpy, pyarrow, pyarrow.parquet\n"
        "import pht.runtime, pht.columns, pht.algorithms.glm_local, pht.wire\n"
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
def child_federated(root: Path) -> None:
    """In a fresh process: the fit through the embedded engine (prints JSON)."""
    from pht.crypto import load_identity
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network, load_study
    from pht.orchestrator.engine import make_engine
    from pht.orchestrator.requester import Requester
    from pht.orchestrator.run import run_study

    idle = anon_kib()
    started = time.perf_counter()
    opened: list[float] = []
    rounds: list[float] = []

    def progress(station: str, event: str, detail: object) -> None:
        # from the engine's threads: when each session opened, each round's wall time
        if event == "opened":
            opened.append(time.perf_counter() - started)
        elif event == "round":
            rounds.append(float(getattr(detail, "seconds", 0.0)))

    catalogue = Catalogue()
    net = load_network(root / "network.yaml")
    requester = Requester(
        load_identity(root / "keys" / "analyst.key.json"),
        {s: e.public_key for s, e in net.stations.items()},
    )
    result = run_study(
        load_study(root / "study.yaml", catalogue, net),
        net,
        make_engine(net, catalogue),
        requester,
        progress,
    )
    glm = result["glm"]
    print(
        json.dumps(
            {
                "idle_kib": idle,
                "coef": {k: v["coef"] for k, v in glm["params"].items()},
                "se": {k: v["se_model"] for k, v in glm["params"].items()},
                "se_hc0": {k: v["se_hc0"] for k, v in glm["params"].items()},
                "deviance": glm["deviance"],
                "n": glm["n"],
                "iterations": glm["iterations"],
                "converged": glm["converged"],
                "rounds": result["provenance"]["rounds"],
                "opened": max(opened),
                "round_seconds": rounds,
            }
        )
    )


def child_statsmodels(root: Path) -> None:
    """In a fresh process: statsmodels ``GLM`` on the concatenated rows (prints JSON).

    The design is coded by hand, with pht's names (``drug[T.nivolumab]``): levels in
    sorted order, the reference dropped, as the study agrees them.
    """
    import numpy as np
    import pandas as pd
    import statsmodels.api as sm

    idle = anon_kib()
    started = time.perf_counter()
    files = sorted((root / "data").glob("st*.parquet"))
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    names = ["Intercept", *NUMERIC]
    parts = [np.ones(len(rows)), *(rows[c].to_numpy(dtype=float) for c in NUMERIC)]
    for column, reference in REFERENCE.items():
        values = rows[column].astype(str).to_numpy()
        for level in sorted(set(np.unique(values)) - {reference}):
            names.append(f"{column}[T.{level}]")
            parts.append((values == level).astype(float))
    y = rows[OUTCOME].to_numpy(dtype=float)
    del rows
    x = np.column_stack(parts)
    del parts
    model = sm.GLM(y, x, family=sm.families.Binomial())
    fit = model.fit(tol=TOL, maxiter=200, cov_type="HC0")
    se_model = np.sqrt(np.diag(fit.normalized_cov_params) * fit.scale)
    print(
        json.dumps(
            {
                "idle_kib": idle,
                "read_fit": time.perf_counter() - started,
                "coef": dict(zip(names, fit.params.tolist(), strict=True)),
                "se": dict(zip(names, se_model.tolist(), strict=True)),
                "se_hc0": dict(zip(names, fit.bse.tolist(), strict=True)),
                "deviance": float(fit.deviance),
                "n": int(fit.nobs),
                "iterations": int(fit.fit_history["iteration"]),
            }
        )
    )


# -- set-up -------------------------------------------------------------------------
def write_network(root: Path, patients: int, stations: int, seed: int) -> None:
    """Synthetic rows over ``stations`` Parquet files, keys, policies, the study."""
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
    policy = policy_document(columns=COLUMNS, classes=("aggregate", "model"))
    network = provision(root, held, policy=policy).network
    assert network == root / "network.yaml", network
    (root / "study.yaml").write_text(
        yaml.safe_dump(
            {
                "question": "benchmark",
                "purpose": "efficiency-research/dose-reduction",
                "train": "glm",
                "dataset": "melanoma",
                "parameters": {
                    "outcome": OUTCOME,
                    "family": "binomial",
                    "covariates": COVARIATES,
                    "reference": REFERENCE,
                    "cov_type": "HC0",
                },
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="60,000 patients over 3 stations (a smoke run)",
    )
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "ROOT"))
    args = parser.parse_args()
    if args.child:
        side, root = args.child
        (child_federated if side == "federated" else child_statsmodels)(Path(root))
        return
    if args.quick:
        args.patients, args.stations = 200_000, 2

    data_mib = args.patients * len(COLUMNS) * 8 / 2**20
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pht-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        # in a child process, so that the generator's memory is not in anyone's way
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); "
                "from bench.glm_vs_statsmodels import write_network as w; "
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
            f"{len(COVARIATES)} covariates (10 parameters and an intercept), "
            f"{data_mib:.0f} MiB in memory; written in "
            f"{time.perf_counter() - started:.1f} s; an idle station process holds "
            f"{station_idle[0] / 1024:.0f} MiB ({station_idle[1] / 1024:.0f} MiB heap); "
            f"load average before the fits {load:.2f} on {os.cpu_count()} CPUs"
        )
        me = [sys.executable, str(Path(__file__).resolve()), "--child"]
        fed = measure([*me, "federated", str(root)])
        peak = fed["peak_kib"] / 1024
        idle = (fed["idle_kib"] + (fed["processes"] - 1) * station_idle[1]) / 1024
        added = fed["peak_anon_kib"] / 1024 - idle
        print(
            f"federated: {fed['wall']:.2f} s, {fed['iterations']} Newton iterations, "
            f"{fed['rounds']} rounds, converged {fed['converged']}; peak RSS "
            f"{peak:.0f} MiB over {fed['processes']} processes; heap added over their "
            f"idle footprint {added:.0f} MiB ({added / data_mib:.2f} x data)"
        )
        design, *evaluations, checks = fed["round_seconds"]
        print(
            f"federated phases: all sessions open {fed['opened']:.2f} s after the "
            f"start of the study (policy, extraction, train start-up, round 0); "
            f"design round {design:.2f} s; {len(evaluations)} evaluation rounds "
            f"{sum(evaluations):.2f} s; checks round {checks:.2f} s"
        )
        if args.no_reference:
            return
        ref = measure([*me, "statsmodels", str(root)])
        ref_peak = ref["peak_kib"] / 1024
        ref_added = ref["peak_anon_kib"] / 1024 - ref["idle_kib"] / 1024
        print(
            f"statsmodels (tol={TOL:g}): {ref['wall']:.2f} s (read + fit "
            f"{ref['read_fit']:.2f} s), {ref['iterations']} IRLS iterations; peak RSS "
            f"{ref_peak:.0f} MiB; heap added over idle {ref_added:.0f} MiB "
            f"({ref_added / data_mib:.2f} x data)"
        )
        if fed["n"] != ref["n"] or set(fed["coef"]) != set(ref["coef"]):
            raise SystemExit(
                f"the fits differ in rows ({fed['n']} vs {ref['n']}) or parameters "
                f"({sorted(fed['coef'])} vs {sorted(ref['coef'])})"
            )
        diff = {
            key: max(abs(fed[key][k] - ref[key][k]) for k in fed[key])
            for key in ("coef", "se", "se_hc0")
        }
        print(
            f"ratio federated/statsmodels: time {fed['wall'] / ref['wall']:.3f}, "
            f"added memory {added / ref_added:.3f}, peak RSS {peak / ref_peak:.3f}; "
            f"max |diff| coef {diff['coef']:.1e}, se {diff['se']:.1e}, se HC0 "
            f"{diff['se_hc0']:.1e}, deviance "
            f"{abs(fed['deviance'] - ref['deviance']):.1e}"
        )


if __name__ == "__main__":
    main()
