"""Stations on a real PostgreSQL server: tables, views and an OMOP CDM cohort (issue 15).

The server is Debian's PostgreSQL, started by ``deploy/postgres.sh`` (the ``postgres``
fixture in conftest); the station connects as the read-only role ``pht_station``. The
same synthetic registries are loaded as plain tables and as OMOP CDM v5.4 instances
(``pht.synth_db``), and the same studies give the same numbers from Parquet,
PostgreSQL and OMOP.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet
import pytest
import yaml
from conftest import run_embedded, write_study

from pht import synth, synth_db
from pht.cli import main
from pht.provision import policy_document, provision
from pht.station.codes import Code

pytestmark = pytest.mark.postgres

PATIENTS = 6000
SEED = 2026


@pytest.fixture(scope="module")
def loaded(postgres: Any) -> Any:
    """The synthetic registries of every station, as tables and as OMOP schemas."""
    synth_db.load_registries(
        synth_db.read_dsn(postgres.admin_dsn), seed=SEED, patients=PATIENTS
    )
    return postgres


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return synth.generate(seed=SEED, patients=PATIENTS)


def admin(postgres: Any, *statements: str) -> None:
    import psycopg

    with psycopg.connect(synth_db.read_dsn(postgres.admin_dsn)) as conn:
        for statement in statements:
            conn.execute(statement)


def postgres_entry(postgres: Any, table: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "postgres",
        "table": table,
        "dsn_file": str(postgres.station_dsn),
        **extra,
    }


def omop_entry(postgres: Any, schema: str, **cohort: Any) -> dict[str, Any]:
    return {
        "kind": "omop",
        "schema": schema,
        "dsn_file": str(postgres.station_dsn),
        "cohort": {**synth_db.COHORT, **cohort},
    }


def demo_network(root: Path, switched: dict[str, dict[str, Any]] | None = None) -> Path:
    """The demo's three stations on Parquet, some switched to a database source."""
    paths = synth.write(root / "data", seed=SEED, patients=PATIENTS)
    held: dict[str, Any] = {s: {"melanoma": paths[s]} for s in synth.STATIONS}
    for station, entry in (switched or {}).items():
        held[station] = {"melanoma": entry}
    return provision(root, held, policy=policy_document()).network


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("created", "provenance")}


def source_of(network: Path, station: str) -> Any:
    from pht.orchestrator.config import load_network

    return load_network(network).stations[station].hosted().datasets["melanoma"].held()


# -- the mapping --------------------------------------------------------------------
def test_table_and_omop_cohort_read_back_the_registry_exactly(loaded, frames, tmp_path):
    from pht.station import sources

    network = demo_network(
        tmp_path,
        {
            "dica": postgres_entry(loaded, "registry.dica"),
            "umc": omop_entry(loaded, "omop_umc"),
        },
    )
    table_source, omop_source = source_of(network, "dica"), source_of(network, "umc")
    got = pa.Table.from_batches(
        list(sources.stream(table_source, list(frames["dica"].columns), batch_rows=500))
    ).to_pandas()
    want = frames["dica"]
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for column in want.columns:
        if want[column].dtype.kind == "M":
            assert (got[column].to_numpy() == want[column].to_numpy()).all(), column
        else:
            assert got[column].astype(str).tolist() == want[column].astype(str).tolist()
    batches = list(
        sources.stream(omop_source, sources.source_schema(omop_source).names)
    )
    assert len(batches) == 1  # 1333 patients: less than one batch
    got = pa.Table.from_batches(batches).to_pandas()
    want = frames["umc"]
    assert len(got) == len(want)
    for column in got.columns:
        if column.endswith("_date"):
            expected = want[column].to_numpy().astype("datetime64[D]")
            assert (np.asarray(got[column], dtype="datetime64[D]") == expected).all()
        elif want[column].dtype.kind in "iuf":
            # exactly equal: the OMOP rules rebuild the registry's own numbers
            np.testing.assert_array_equal(
                got[column].to_numpy(dtype=np.float64),
                want[column].to_numpy(dtype=np.float64),
                err_msg=column,
            )
        else:
            assert got[column].tolist() == want[column].astype(str).tolist(), column


def test_the_station_role_is_read_only(loaded):
    import psycopg

    with psycopg.connect(synth_db.read_dsn(loaded.station_dsn)) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM registry.umc")


# -- same numbers from Parquet, PostgreSQL and OMOP ---------------------------------
COX = {
    "train": "survival.cox",
    "parameters": {
        "time": "os_days",
        "event": "death",
        "covariates": ["age", "ecog", "ldh_elevated", "regimen"],
        "categorical": ["ecog"],
        "reference": {"regimen": "standard"},
        "checks": False,
    },
}
KM = {
    "train": "survival.km",
    "min_stations": 1,
    "parameters": {
        "time": "os_days",
        "event": "death",
        "group": "regimen",
        "reference_group": "standard",
        "tau": 730,
        "at": 365,
    },
}


@pytest.mark.parametrize("kind", ["postgres", "omop"])
def test_km_and_cox_give_identical_numbers_with_a_station_on_a_database(
    loaded, tmp_path, kind
):
    entry = (
        postgres_entry(loaded, "registry.umc")
        if kind == "postgres"
        else omop_entry(loaded, "omop_umc")
    )
    results = {}
    for name, switched in (("parquet", None), (kind, {"umc": entry})):
        root = tmp_path / name
        network = demo_network(root, switched)
        for study_name, study in (("km", KM), ("cox", COX)):
            (root / study_name).mkdir()
            path = write_study(root / study_name, **study)
            results[name, study_name] = run_embedded(path, network)
    for study_name in ("km", "cox"):
        parquet, database = results["parquet", study_name], results[kind, study_name]
        took = [s["id"] for s in database["stations"] if s["participated"]]
        assert "umc" in took
        assert comparable(database) == comparable(parquet), study_name
    # a fitted model over every station's patients, not refusals
    assert results[kind, "cox"]["cox"]["params"]["age"]["se"] > 0
    took = [s["id"] for s in results[kind, "cox"]["stations"] if s["participated"]]
    assert took == list(synth.STATIONS)


def test_demo_mixed_gives_the_numbers_of_the_parquet_demo(tmp_path, postgres, capsys):
    # `postgres`: the same server install the demo's own cluster needs
    runs = {}
    for sources in ("parquet", "mixed"):
        work = tmp_path / sources
        argv = ["demo", "--workdir", str(work), "--patients", str(PATIENTS)]
        try:
            assert main([*argv, "--sources", sources]) == 0, capsys.readouterr().err
            runs[sources] = json.loads((work / "results" / "result.json").read_text())
            network = yaml.safe_load((work / "network.yaml").read_text())
        finally:
            from pht.demo_db import stop_cluster

            stop_cluster(work)
        kinds = [s["datasets"][0].get("kind", "parquet") for s in network["stations"]]
        assert kinds == (
            ["parquet", "postgres", "omop"] if sources == "mixed" else ["parquet"] * 3
        )
    assert comparable(runs["mixed"]) == comparable(runs["parquet"])
    # the analyst's side never sees the DSN: not in the result, not in the report
    password = synth_db.read_dsn(postgres.station_dsn).split("password=")[1]
    assert password not in json.dumps(runs["mixed"])


# -- audit, streaming, snapshot -------------------------------------------------------
def test_synth_cli_loads_the_registries(loaded, tmp_path, capsys):
    argv = ["synth", "--out", str(tmp_path / "data"), "--patients", str(PATIENTS)]
    assert main([*argv, "--postgres", str(loaded.admin_dsn)]) == 0
    out = capsys.readouterr().out
    assert "umc: postgres table registry.umc, omop schema omop_umc" in out


def test_audit_names_the_source_and_query_digest_never_the_dsn(loaded, tmp_path):
    from pht.provision import CLINICAL_COLUMNS

    network = demo_network(
        tmp_path,
        {
            "dica": postgres_entry(loaded, "registry.dica"),
            "umc": omop_entry(loaded, "omop_umc"),
        },
    )
    study = write_study(tmp_path, **KM)
    run_embedded(study, network)
    # policy columns apply to database columns: the station selected no other column
    # (the table also holds patient_id, weight_kg, stop_date, ...)
    for station in ("dica", "umc"):
        kept = list((tmp_path / "stations" / station).rglob("sources/*.parquet"))
        assert kept
        for path in kept:
            names = set(pa.parquet.read_schema(path).names)
            assert names <= set(CLINICAL_COLUMNS) and "patient_id" not in names
    log = b"".join(
        p.read_bytes()
        for p in (tmp_path / "stations" / "umc").rglob("*")
        if p.is_file()
    )
    assert b"omop schema omop_umc (cohort)" in log and b"query_digest" in log
    dsn = synth_db.read_dsn(loaded.station_dsn)
    assert dsn.split("password=")[1].encode() not in log
    assert str(loaded.folder).encode() not in log


def test_snapshot_streams_in_batches_and_keeps_an_unchanged_file(loaded, tmp_path):
    from pht.station import sources

    network = demo_network(tmp_path, {"dica": postgres_entry(loaded, "registry.dica")})
    source = source_of(network, "dica")
    batches = list(sources.stream(source, ["os_days", "death"], batch_rows=256))
    assert len(batches) == -(-2000 // 256)
    assert all(b.num_rows <= 256 for b in batches)
    first, digest = sources.snapshot(source, ["death", "os_days"], tmp_path / "s")
    before = first.stat()
    again, digest2 = sources.snapshot(source, ["death", "os_days"], tmp_path / "s")
    assert again == first and digest2 == digest
    assert again.stat().st_mtime_ns == before.st_mtime_ns  # the cache stays valid
    assert oct(first.stat().st_mode & 0o777) == "0o600"


# -- pht station check ----------------------------------------------------------------
def test_station_check_counts_values_and_missingness_per_column(
    loaded, tmp_path, capsys
):
    admin(
        loaded,
        "DROP VIEW IF EXISTS registry.gappy",
        "CREATE VIEW registry.gappy AS SELECT os_days, death, "
        "CASE WHEN age > 80 THEN NULL ELSE age END AS age, "
        "'{}'::json AS extra FROM registry.nkr",
        "GRANT SELECT ON registry.gappy TO pht_station",
    )
    network = demo_network(
        tmp_path,
        {
            "dica": postgres_entry(loaded, "registry.gappy"),
            "umc": omop_entry(loaded, "omop_umc"),
        },
    )
    code = main(["station", "check", "--network", str(network), "--station", "dica"])
    out = capsys.readouterr().out
    assert code == 0
    old = int((synth.generate(seed=SEED, patients=PATIENTS)["nkr"]["age"] > 80).sum())
    assert "postgres table registry.gappy): 2667 rows" in out
    age = next(line for line in out.splitlines() if line.split()[:1] == ["age"])
    assert age.split()[1:4] == ["integer", str(2667 - old), str(old)]
    assert "extra" in out and "not read" in out and "cast it in a view" in out
    code = main(["station", "check", "--network", str(network), "--station", "umc"])
    out = capsys.readouterr().out
    assert code == 0 and "omop schema omop_umc (cohort)): 1333 rows" in out
    for column in ("os_days", "regimen", "dose_mg_total", "cost_eur", "ecog"):
        line = next(x for x in out.splitlines() if x.split()[:1] == [column])
        assert line.split()[2:4] == ["1333", "0"], line


# -- bad input: one line naming station, dataset and the fix ---------------------------
def one_line(capsys: Any) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def check_fails(network: Path, station: str, capsys: Any) -> str:
    code = main(["station", "check", "--network", str(network), "--station", station])
    assert code != 0
    line = one_line(capsys)
    assert f"station {station}, dataset melanoma" in line
    return line


def test_unknown_table_is_one_line_and_a_data_refusal(loaded, tmp_path, capsys):
    network = demo_network(
        tmp_path, {"umc": postgres_entry(loaded, "registry.no_such_table")}
    )
    line = check_fails(network, "umc", capsys)
    assert "does not exist" in line and "fix 'table'" in line
    result = run_embedded(write_study(tmp_path, **KM), network)
    umc = next(s for s in result["stations"] if s["id"] == "umc")
    assert umc["reason"] == Code.DATA.reason  # the analyst learns no table name
    assert any(s["participated"] for s in result["stations"])


def test_unreachable_database_is_a_source_refusal_and_other_datasets_serve(
    loaded, tmp_path, capsys
):
    nowhere = tmp_path / "nowhere.dsn"
    nowhere.write_text(
        "host=/tmp/phtpg-none port=5432 dbname=pht user=pht_station password=x\n"
    )
    paths = synth.write(tmp_path / "data", seed=SEED, patients=PATIENTS)
    network = provision(
        tmp_path,
        {
            "nkr": {"melanoma": paths["nkr"]},
            "dica": {"melanoma": paths["dica"]},
            "umc": {
                "melanoma": {
                    "kind": "postgres",
                    "table": "registry.umc",
                    "dsn_file": str(nowhere),
                    "connect_timeout": 2,
                },
                "other": paths["umc"],
            },
        },
        policy=policy_document(),
    ).network
    line = check_fails(network, "umc", capsys)
    assert "cannot be reached" in line and "password" not in line
    result = run_embedded(write_study(tmp_path, **KM), network)
    umc = next(s for s in result["stations"] if s["id"] == "umc")
    assert umc["reason"] == Code.SOURCE.reason
    # the same station keeps serving its other dataset
    (tmp_path / "other").mkdir()
    other = run_embedded(
        write_study(tmp_path / "other", **{**KM, "dataset": "other"}), network
    )
    assert next(s for s in other["stations"] if s["id"] == "umc")["participated"]


def test_a_refused_login_is_data_not_try_again_later(loaded, tmp_path, capsys):
    # found by a newcomer: a wrong password was told as "did not answer in time"
    dsn = synth_db.read_dsn(loaded.station_dsn)
    wrong = tmp_path / "wrong.dsn"
    wrong.write_text(re.sub(r"password=\S+", "password=not-the-password", dsn) + "\n")
    wrong.chmod(0o600)
    network = demo_network(
        tmp_path,
        {"umc": {**postgres_entry(loaded, "registry.umc"), "dsn_file": str(wrong)}},
    )
    line = check_fails(network, "umc", capsys)
    assert "refused the station's login" in line
    assert "not-the-password" not in line
    result = run_embedded(write_study(tmp_path, **KM), network)
    umc = next(s for s in result["stations"] if s["id"] == "umc")
    assert umc["reason"] == Code.DATA.reason


def test_slow_database_is_a_source_refusal(loaded, tmp_path):
    admin(
        loaded,
        "CREATE OR REPLACE FUNCTION registry.slow() RETURNS bigint "
        "LANGUAGE sql AS 'SELECT 1 FROM pg_sleep(5)'",
        "DROP VIEW IF EXISTS registry.slow_umc",
        "CREATE VIEW registry.slow_umc AS SELECT u.* FROM registry.umc AS u "
        "WHERE registry.slow() = 1",
        "GRANT SELECT ON registry.slow_umc TO pht_station",
    )
    network = demo_network(
        tmp_path,
        {"umc": postgres_entry(loaded, "registry.slow_umc", statement_timeout=1)},
    )
    result = run_embedded(write_study(tmp_path, **KM), network)
    umc = next(s for s in result["stations"] if s["id"] == "umc")
    assert umc["reason"] == Code.SOURCE.reason


def test_missing_and_wrongly_typed_columns_are_column_refusals(loaded, tmp_path):
    admin(
        loaded,
        "DROP VIEW IF EXISTS registry.odd_umc",
        "CREATE VIEW registry.odd_umc AS SELECT os_days::text AS os_days, death, age "
        "FROM registry.umc",
        "GRANT SELECT ON registry.odd_umc TO pht_station",
    )
    network = demo_network(
        tmp_path, {"umc": postgres_entry(loaded, "registry.odd_umc")}
    )
    # os_days is text (the wrong type for a time) and regimen is missing
    result = run_embedded(write_study(tmp_path, **KM), network)
    umc = next(s for s in result["stations"] if s["id"] == "umc")
    assert umc["reason"] == Code.COLUMN.reason


def test_concept_set_matching_no_patient_is_one_line(loaded, tmp_path, capsys):
    network = demo_network(
        tmp_path, {"umc": omop_entry(loaded, "omop_umc", condition_concepts=[4])}
    )
    line = check_fails(network, "umc", capsys)
    assert "match no patient" in line and "concept" in line
    result = run_embedded(write_study(tmp_path, **KM), network)
    umc = next(s for s in result["stations"] if s["id"] == "umc")
    assert umc["reason"] == Code.DATA.reason


def test_a_death_before_the_index_date_leaves_the_person_out(postgres):
    """A death recorded before the first exposure is a data error (os_days would be
    negative): that person is not in the cohort, the others are."""
    from test_sources_attack import cohort_rows, tiny_cdm

    source = tiny_cdm(
        postgres,
        "dead_early",
        "INSERT INTO dead_early.death VALUES (1, '2020-01-15'), (2, '2021-02-01')",
    )
    table = cohort_rows(source)
    assert table.num_rows == 1, table.to_pydict()
    assert table.column("os_days").to_pylist() == [366.0]
    assert table.column("death").to_pylist() == [1]


def test_no_database_round_trip_under_the_admission_lock(loaded, tmp_path, monkeypatch):
    """A database that stops answering must not hold the station's admission (every
    other dataset's requests wait on it): its schema is asked before the lock."""
    import inspect

    from pht.datasources import DatabaseSource
    from pht.station import admission

    asked: list[list[str]] = []
    real = admission.dataset_schema

    def watched(held: Any) -> Any:
        if isinstance(held, DatabaseSource):
            asked.append([frame.function for frame in inspect.stack()])
        return real(held)

    monkeypatch.setattr(admission, "dataset_schema", watched)
    network = demo_network(tmp_path, {"umc": postgres_entry(loaded, "registry.umc")})
    result = run_embedded(write_study(tmp_path, **KM), network)
    assert next(s for s in result["stations"] if s["id"] == "umc")["participated"]
    assert asked and not [s for s in asked if "_admit_locked" in s]
