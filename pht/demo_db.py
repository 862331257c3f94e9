"""The demo network on databases: ``pht demo --sources mixed``.

``nkr`` keeps its Parquet file, ``dica`` reads a PostgreSQL table
(``registry.dica``) and ``umc`` an OMOP CDM v5.4 cohort (schema ``omop_umc``), loaded
from the same synthetic data (:mod:`pht.synth_db`), so the demo study gives the same
numbers as on Parquet. The PostgreSQL server is a throw-away cluster that
``deploy/postgres.sh`` starts in a short folder under ``/tmp``; the demo folder keeps
its path (``db/cluster``) and the station role's DSN (``db/station.dsn``, mode 0600).
It keeps running after the demo (the printed ``pht run`` commands use it); stop it with
``bash deploy/postgres.sh stop DIR``. Running the demo again stops the old one first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pht import synth_db
from pht.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "postgres.sh"
"""deploy/postgres.sh of the source tree pht runs from."""


def stop_cluster(root: Path) -> None:
    """Stop the server an earlier mixed demo in ``root`` started (if any)."""
    marker = root / "db" / "cluster"
    if not marker.is_file() or not SCRIPT.is_file():
        return
    folder = Path(marker.read_text(encoding="utf-8").strip())
    if folder.name.startswith("phtpg-") and folder.is_dir():
        subprocess.run(
            ["bash", str(SCRIPT), "stop", str(folder)], check=False, timeout=120
        )
        shutil.rmtree(folder, ignore_errors=True)


def start_cluster() -> Path:
    """Start a throw-away PostgreSQL server; its folder (with the DSN files)."""
    if not SCRIPT.is_file():
        raise ConfigError(
            "`pht demo --sources mixed` needs deploy/postgres.sh of the pht source "
            "tree; run it from a checkout (make demo), or use --sources parquet"
        )
    folder = Path(tempfile.mkdtemp(prefix="phtpg-", dir="/tmp"))
    done = subprocess.run(
        ["bash", str(SCRIPT), "start", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise ConfigError(
            f"cannot start PostgreSQL for the mixed demo ({reason}); install "
            "Debian's postgresql package, or use --sources parquet"
        )
    return folder


def mixed_datasets(
    root: Path, paths: Mapping[str, Path], seed: int, patients: int
) -> dict[str, dict[str, Any]]:
    """Start the database, load the registries; the stations' dataset entries."""
    folder = start_cluster()
    db = root / "db"
    db.mkdir(exist_ok=True)
    (db / "cluster").write_text(f"{folder}\n", encoding="utf-8")
    dsn = db / "station.dsn"
    shutil.copyfile(folder / "station.dsn", dsn)
    os.chmod(dsn, 0o600)
    synth_db.load_registries(
        synth_db.read_dsn(folder / "admin.dsn"),
        seed=seed,
        patients=patients,
        stations=("dica", "umc"),
    )
    rel = "db/station.dsn"
    return {
        "nkr": {"melanoma": paths["nkr"]},
        "dica": {
            "melanoma": {"kind": "postgres", "table": "registry.dica", "dsn_file": rel}
        },
        "umc": {
            "melanoma": {
                "kind": "omop",
                "schema": "omop_umc",
                "dsn_file": rel,
                "cohort": dict(synth_db.COHORT),
            }
        },
    }
