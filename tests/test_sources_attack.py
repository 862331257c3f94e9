"""Attacks on the database stations of issue 15 (each test fails while the hole is open).

Outside attacker and careful station operator: credential leaks, identifier
validation, the one-population-per-source rule, a frozen database, and the OMOP
mapping on records the README's table covers (a second ``death`` row, an impossible
birth date, one concept under two drug labels).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from test_sources_config import COHORT, network_with

from pht import synth_db
from pht.datasources import Cohort, Connection, DatabaseSource
from pht.errors import ConfigError, PhtError
from pht.orchestrator.config import load_network
from pht.provision import policy_document

SECRET = "Hunter2Secret"


# -- credentials ----------------------------------------------------------------------
def test_a_dsn_pasted_into_dsn_file_is_not_echoed(tmp_path):
    # dsn_env refuses a pasted DSN without quoting it; dsn_file quotes it twice
    entry = {
        "kind": "postgres",
        "table": "registry.nkr",
        "dsn_file": f"host=db.example.org dbname=pht user=pht_station password={SECRET}",
    }
    with pytest.raises(ConfigError) as caught:
        load_network(network_with(tmp_path, entry))
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "dsn",
    [
        # an unquoted space in a password: libpq echoes the word after it
        "host=/tmp/phtpg-none port=5432 dbname=pht user=pht_station "
        f"password=correct {SECRET}",
        # the same password in a URI: libpq echoes the whole password
        f"postgresql://pht_station:correct {SECRET}@/pht?host=/tmp/phtpg-none",
    ],
    ids=["keyword", "uri"],
)
def test_a_malformed_dsn_does_not_reach_the_verbose_log(tmp_path, capsys, caplog, dsn):
    from pht.cli import main

    network = network_with(
        tmp_path, {"kind": "postgres", "table": "registry.nkr", "dsn_file": "bad.dsn"}
    )
    (tmp_path / "bad.dsn").write_text(dsn + "\n")
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy_document()))
    caplog.set_level(logging.DEBUG)
    code = main(
        ["station", "check", "--network", str(network), "--station", "s1", "-v"]
    )
    captured = capsys.readouterr()
    assert code != 0 or "cannot be read" in captured.out
    # `-v` sends these records to stderr (logging.basicConfig in pht.cli.main)
    assert SECRET not in caplog.text
    assert SECRET not in captured.out + captured.err


# -- identifiers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "entry",
    [
        {"kind": "postgres", "table": "registry.nkr\n", "dsn_file": "station.dsn"},
        {
            "kind": "omop",
            "schema": "cdm\n",
            "dsn_file": "station.dsn",
            "cohort": COHORT,
        },
    ],
)
def test_an_identifier_with_a_trailing_newline_is_refused(tmp_path, entry):
    # IDENTIFIER ends in '$', which also matches before a final newline
    with pytest.raises(ConfigError, match="identifier"):
        load_network(network_with(tmp_path, entry))


def test_an_observation_column_named_person_id_is_refused(tmp_path):
    # accepted, then every cohort query fails ("person_id is ambiguous")
    cohort = {
        **COHORT,
        "observations": {"person_id": {"concept": 5, "type": "integer"}},
    }
    entry = {
        "kind": "omop",
        "schema": "cdm",
        "dsn_file": "station.dsn",
        "cohort": cohort,
    }
    with pytest.raises(ConfigError, match="observation column"):
        load_network(network_with(tmp_path, entry))


def test_one_drug_concept_under_two_labels_is_refused(tmp_path):
    # each exposure of 11 joins both labels: drug 'a+b', 'standard', dose and cost x2
    cohort = {"condition_concepts": [1], "drug_concepts": {"a": [11], "b": [11, 12]}}
    entry = {
        "kind": "omop",
        "schema": "cdm",
        "dsn_file": "station.dsn",
        "cohort": cohort,
    }
    with pytest.raises(ConfigError, match="11"):
        load_network(network_with(tmp_path, entry))


def test_a_wrongly_typed_value_gets_the_wrong_type_fix():
    """``_translate`` tests ``errors.DataException`` (SQLSTATE 22000 only); psycopg's
    classes of real data errors (22P02, 22003, 22008, 22012, ...) derive from
    ``psycopg.DataError``, so the operator never gets the "cast it in a view" fix."""
    from psycopg import errors

    from pht.station.sources import _translate

    source = DatabaseSource(
        kind="postgres",
        station="s1",
        dataset="melanoma",
        connection=Connection(dsn_env="PHT_DSN"),
        table=("registry", "nkr"),
    )
    for exc in (
        errors.InvalidTextRepresentation("invalid input syntax for type integer"),
        errors.DatetimeFieldOverflow("date/time field value out of range"),
        errors.NumericValueOutOfRange("value out of range"),
    ):
        assert "wrong type" in str(_translate(source, exc)), type(exc).__name__


# -- one population per source -----------------------------------------------------------
def test_two_dataset_ids_over_one_table_are_one_source():
    """Two entries over one file share one population (complete on the union of their
    policies' columns), so no patient is in one and not the other. Over one table they
    are two sources: populations that differ by the patients missing a column only
    one policy allows, which two requests then tell apart (differencing)."""
    from pht.station.extraction import same_dataset

    a = DatabaseSource(
        kind="postgres",
        station="s1",
        dataset="melanoma",
        connection=Connection(dsn_env="PHT_DSN"),
        table=("registry", "nkr"),
    )
    b = replace(a, dataset="melanoma-lite")
    assert same_dataset(Path("data/nkr.parquet"), Path("data/nkr.parquet"))
    assert same_dataset(a, b)


# -- a database that stops answering -----------------------------------------------------
def admin(postgres: Any, *statements: str) -> None:
    import psycopg

    with psycopg.connect(synth_db.read_dsn(postgres.admin_dsn), autocommit=True) as c:
        for statement in statements:
            c.execute(statement)


@pytest.mark.postgres
def test_a_frozen_database_does_not_hang_the_station(postgres):
    """statement_timeout is enforced by the server: a server that stops (a frozen VM,
    a TCP path that drops packets) never answers and the station waits for ever,
    holding its admission lock (``_check_columns`` runs under it)."""
    import psycopg

    from pht.station import sources

    if os.geteuid() != 0:
        pytest.skip("signals the server's backend: needs root")
    admin(
        postgres,
        "CREATE SCHEMA IF NOT EXISTS atk_hang",
        "CREATE TABLE IF NOT EXISTS atk_hang.t (age integer)",
        "GRANT USAGE ON SCHEMA atk_hang TO pht_station",
        "GRANT SELECT ON atk_hang.t TO pht_station",
    )
    source = DatabaseSource(
        kind="postgres",
        station="s1",
        dataset="melanoma",
        connection=Connection(
            dsn_file=postgres.station_dsn, connect_timeout=2, statement_timeout=2
        ),
        table=("atk_hang", "t"),
    )
    outcome: list[Any] = []

    def read() -> None:
        try:
            outcome.append(sources.source_schema(source))
        except PhtError as exc:
            outcome.append(exc)

    holder = psycopg.connect(synth_db.read_dsn(postgres.admin_dsn))
    watcher = psycopg.connect(synth_db.read_dsn(postgres.admin_dsn), autocommit=True)
    stopped: int | None = None
    worker = threading.Thread(target=read, daemon=True)
    try:
        holder.execute("LOCK TABLE atk_hang.t IN ACCESS EXCLUSIVE MODE")
        worker.start()
        deadline = time.monotonic() + 10
        while stopped is None and time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = "
                "'pht-station' AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None:
                stopped = int(row[0])
                os.kill(stopped, signal.SIGSTOP)  # the server stops answering
            else:
                time.sleep(0.05)
        assert stopped is not None, "the station's query never waited"
        worker.join(timeout=15)  # statement_timeout 2 s, connect_timeout 2 s
        assert not worker.is_alive(), "the station still waits for the database"
        assert outcome and isinstance(outcome[0], sources.SourceUnavailable)
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        holder.rollback()
        holder.close()
        watcher.close()
        worker.join(timeout=30)


# -- the OMOP mapping on records the README covers ------------------------------------------
OMOP_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.person (person_id bigint PRIMARY KEY, gender_concept_id bigint,
    year_of_birth integer, month_of_birth integer, day_of_birth integer);
CREATE TABLE {s}.observation_period (person_id bigint,
    observation_period_start_date date, observation_period_end_date date);
CREATE TABLE {s}.death (person_id bigint, death_date date);
CREATE TABLE {s}.condition_occurrence (person_id bigint,
    condition_concept_id bigint, condition_start_date date);
CREATE TABLE {s}.drug_exposure (drug_exposure_id bigint, person_id bigint,
    drug_concept_id bigint, drug_exposure_start_date date, quantity numeric,
    dose_unit_source_value text);
CREATE TABLE {s}.cost (cost_event_id bigint, cost_domain_id text, total_cost numeric);
CREATE TABLE {s}.observation (observation_id bigint, person_id bigint,
    observation_concept_id bigint, observation_date date, value_as_number numeric,
    value_as_string text);
GRANT USAGE ON SCHEMA {s} TO pht_station;
GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO pht_station;
"""


def tiny_cdm(postgres: Any, schema: str, *rows: str) -> DatabaseSource:
    """Persons 1 and 2 with melanoma (concept 1) and drug 11 (label 'a')."""
    admin(
        postgres,
        f"DROP SCHEMA IF EXISTS {schema} CASCADE",
        *[s for s in OMOP_DDL.format(s=schema).split(";") if s.strip()],
        f"INSERT INTO {schema}.person VALUES (1, 8507, 1950, 6, 1), "
        "(2, 8532, 1960, 1, 1)",
        f"INSERT INTO {schema}.observation_period VALUES "
        "(1, '2019-01-01', '2022-01-01'), (2, '2019-01-01', '2022-01-01')",
        f"INSERT INTO {schema}.condition_occurrence VALUES "
        "(1, 1, '2020-01-01'), (2, 1, '2020-01-01')",
        f"INSERT INTO {schema}.drug_exposure VALUES "
        "(1, 1, 11, '2020-02-01', 200, 'mg'), (2, 2, 11, '2020-02-01', 200, 'mg')",
        *rows,
    )
    return DatabaseSource(
        kind="omop",
        station="s1",
        dataset="melanoma",
        connection=Connection(dsn_file=postgres.station_dsn),
        schema=schema,
        cohort=Cohort(
            condition_concepts=(1,), drug_concepts=(("a", (11,)),), dose_drugs=("a",)
        ),
    )


def cohort_rows(source: DatabaseSource) -> pa.Table:
    from pht.station import sources

    names = sources.source_schema(source).names
    return pa.Table.from_batches(list(sources.stream(source, names)))


@pytest.mark.postgres
def test_a_second_death_record_does_not_duplicate_a_person(postgres):
    # CDM v5.4 `death` has no primary key; real instances hold duplicates
    source = tiny_cdm(
        postgres,
        "atk_death",
        "INSERT INTO atk_death.death VALUES (1, '2021-01-01'), (1, '2021-01-03')",
    )
    table = cohort_rows(source)
    assert table.num_rows == 2, table.to_pydict()


@pytest.mark.postgres
def test_one_impossible_birth_date_does_not_make_the_cohort_unreadable(postgres):
    # day_of_birth 31 in April: make_date() raises, and the whole dataset is refused;
    # the README's rule has a fallback (year_of_birth alone) for an unusable date
    source = tiny_cdm(
        postgres,
        "atk_birth",
        "UPDATE atk_birth.person SET month_of_birth = 4, day_of_birth = 31 "
        "WHERE person_id = 2",
    )
    table = cohort_rows(source)
    assert table.num_rows == 2
    assert table.column("age").to_pylist() == [69, 60]


# -- process listings --------------------------------------------------------------------
@pytest.mark.postgres
def test_the_server_script_keeps_passwords_out_of_argv(tmp_path):
    """``deploy/postgres.sh start`` hands psql the admin DSN, password included, as a
    command-line argument: readable by any local user in ``ps`` / /proc/PID/cmdline
    while psql runs. ``bash -x`` prints each command with its expanded arguments."""
    import shutil
    import subprocess
    import tempfile

    if not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed")
    script = Path(__file__).resolve().parents[1] / "deploy" / "postgres.sh"
    folder = Path(tempfile.mkdtemp(prefix="phtpg-", dir="/tmp"))
    try:
        done = subprocess.run(
            ["bash", "-x", str(script), "start", str(folder)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        password = (folder / "admin.dsn").read_text().split("password=")[1].strip()
        commands = [line for line in done.stderr.splitlines() if "/psql " in line]
        assert commands, "psql was not run"
        assert not [line for line in commands if password in line]
    finally:
        subprocess.run(
            ["bash", str(script), "stop", str(folder)], check=False, timeout=120
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.postgres
def test_two_exposures_on_the_index_day_add_up_to_the_index_dose(postgres):
    # 400 mg given as two 200 mg vials (two drug_exposure rows on the index day): the
    # index dose is 400 mg and reaches min_dose_mg 400; the query takes MAX(quantity)
    source = tiny_cdm(
        postgres,
        "atk_split",
        "INSERT INTO atk_split.drug_exposure VALUES "
        "(3, 1, 11, '2020-02-01', 200, 'mg')",
    )
    assert source.cohort is not None
    source = replace(
        source, cohort=replace(source.cohort, extended=(("a", 400.0, 42.0),))
    )
    table = cohort_rows(source)
    assert table.column("dose_mg_total").to_pylist() == [400.0, 200.0]
    assert table.column("regimen").to_pylist() == ["extended_interval", "standard"]
