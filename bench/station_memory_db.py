"""Station memory while extracting from PostgreSQL, against the size of the columns.

A station reads a database dataset through a server-side cursor in batches, writes the
batches one by one into its owner-only snapshot file, then builds the dataset's fixed
population from that file and writes the train's extract (pht.station.sources,
pht.station.population). This measures, in fresh processes, the peak resident memory
above the process's baseline (imports and connection done; Linux: the peak is reset
through /proc/self/clear_refs, read as VmHWM) for

* ``stream``: cursor -> Arrow batches -> snapshot file (the database step alone);
* ``extract``: the whole extraction (stream, population, train extract);

against the Arrow size of the columns read (the policy's allowed columns, those the
population keeps). Target: at most 2x. Prints the ratios.

    .venv/bin/python bench/station_memory_db.py [--rows 1000000]

Starts a throw-away server with deploy/postgres.sh (or use --cluster DIR of a running
one) and loads the synthetic nkr registry with the given number of rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
from pathlib import Path
import pyarrow as pa
import pyarrow.parquet as pq
from pht.datasources import Connection, DatabaseSource
from pht.station import sources
from pht.station.population import load_population

stage, dsn, work, columns, needed = sys.argv[1:6]
columns, needed = json.loads(columns), json.loads(needed)
source = DatabaseSource(
    "postgres", "bench", "melanoma", Connection(dsn_file=Path(dsn)),
    table=("registry", "bench"),
)
schema = sources.source_schema(source)  # imports psycopg, connects once
def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(key)
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
base = status("VmRSS")
path, _ = sources.snapshot(source, columns, Path(work))
if stage == "extract":
    population = load_population(path, columns, 10)
    population.extract(needed, Path(work) / "extract.parquet")
peak = status("VmHWM")
size = pq.read_table(path).nbytes
print(json.dumps({"base": base, "peak": peak, "columns_bytes": size}))
"""

COLUMNS = [
    "os_days",
    "death",
    "pfs_days",
    "progression",
    "regimen",
    "drug",
    "age",
    "sex",
    "stage",
    "ecog",
    "ldh_elevated",
    "brain_mets",
    "line",
    "tox_grade3",
    "response",
    "cost_eur",
]
"""The default policy's clinical columns the nkr registry holds (dates aside)."""
NEEDED = ["os_days", "death", "regimen"]
"""What a survival.km request extracts for the train."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cluster", type=Path, default=None)
    args = parser.parse_args()
    script = REPO / "deploy" / "postgres.sh"
    cluster = args.cluster
    started = cluster is None
    if started:
        cluster = Path(tempfile.mkdtemp(prefix="phtpg-", dir="/tmp"))
        subprocess.run(["bash", str(script), "start", str(cluster)], check=True)
    assert cluster is not None
    try:
        import psycopg

        from pht import synth, synth_db

        patients = args.rows * 9 // 4 + 9
        frame = synth.generate(patients=patients)["nkr"].iloc[: args.rows]
        with psycopg.connect(synth_db.read_dsn(cluster / "admin.dsn")) as conn:
            synth_db.load_table(conn, frame, "registry", "bench")
        del frame
        print(f"rows: {args.rows:,}; columns read: {len(COLUMNS)}")
        for stage in ("stream", "extract"):
            with tempfile.TemporaryDirectory() as work:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        stage,
                        str(cluster / "station.dsn"),
                        work,
                        json.dumps(COLUMNS),
                        json.dumps(NEEDED),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            m = json.loads(done.stdout.strip().splitlines()[-1])
            grown = m["peak"] - m["base"]
            print(
                f"{stage:8s} peak above baseline {grown / 2**20:8.1f} MiB; columns "
                f"{m['columns_bytes'] / 2**20:8.1f} MiB; ratio "
                f"{grown / m['columns_bytes']:.2f} (target <= 2)"
            )
    finally:
        if started:
            subprocess.run(["bash", str(script), "stop", str(cluster)], check=False)
            subprocess.run(["rm", "-rf", str(cluster)], check=False)


if __name__ == "__main__":
    main()
