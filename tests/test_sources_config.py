"""Database dataset entries in network.yaml: strict parsing, identifiers, no DSN leaks.

No server is needed here: these are the checks that run before any connection (hostile
YAML, identifiers and concept ids, how the SQL is composed) and the messages of a
source that cannot be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pht.errors import ConfigError, DataError
from pht.orchestrator.config import load_network


def network_with(tmp_path: Path, entry: dict[str, Any]) -> Path:
    """A one-station network file whose dataset entry is ``entry`` (host keys too)."""
    from pht.crypto import new_identity, save_identity
    from pht.keyring import Keyring

    keys = tmp_path / "keys"
    key, pub = keys / "s1.key.json", keys / "s1.pub.json"
    if not key.is_file():
        key, pub = save_identity(new_identity("station", "S1", "s1"), keys)
    Keyring().save(tmp_path / "keyring.yaml")
    (tmp_path / "policy.yaml").write_text("version: 1\ndatasets: {}\n")
    (tmp_path / "trains").mkdir(exist_ok=True)
    (tmp_path / "station.dsn").write_text("host=/nowhere dbname=pht password=secret\n")
    doc = {
        "trains": "trains",
        "stations": [
            {
                "id": "s1",
                "public_key": str(pub),
                "identity": str(key),
                "keyring": "keyring.yaml",
                "policy": "policy.yaml",
                "datasets": [{"id": "melanoma", **entry}],
            }
        ],
    }
    path = tmp_path / "network.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


COHORT = {
    "condition_concepts": [2000000001],
    "drug_concepts": {"pembrolizumab": [2000000011], "nivolumab": [2000000012]},
}


def test_postgres_and_omop_entries_parse(tmp_path):
    net = load_network(
        network_with(
            tmp_path,
            {"kind": "postgres", "table": "registry.nkr", "dsn_file": "station.dsn"},
        )
    )
    source = net.stations["s1"].hosted().datasets["melanoma"].held()
    assert source.kind == "postgres" and source.table == ("registry", "nkr")
    assert source.label() == "postgres table registry.nkr"
    net = load_network(
        network_with(
            tmp_path,
            {
                "kind": "omop",
                "schema": "cdm",
                "dsn_env": "PHT_CDM_DSN",
                "cohort": {**COHORT, "dose_drugs": ["nivolumab"]},
            },
        )
    )
    source = net.stations["s1"].hosted().datasets["melanoma"].held()
    assert source.cohort.dose_drugs == ("nivolumab",)
    # the anti-PD-1 defaults of the extended-interval rule
    assert dict((k, (d, t)) for k, d, t in source.cohort.extended) == {
        "nivolumab": (480.0, 28.0),
        "pembrolizumab": (400.0, 42.0),
    }


BAD = [
    ({"kind": "mysql", "table": "a.b", "dsn_file": "station.dsn"}, "kind"),
    ({"kind": "postgres", "table": "nkr", "dsn_file": "station.dsn"}, "schema.table"),
    (
        {"kind": "postgres", "table": "a.b; DROP TABLE x", "dsn_file": "station.dsn"},
        "identifier",
    ),
    ({"kind": "postgres", "table": 'a."B"', "dsn_file": "station.dsn"}, "identifier"),
    ({"kind": "postgres", "table": ["a", "b"], "dsn_file": "station.dsn"}, "string"),
    ({"kind": "postgres", "table": "a.b"}, "dsn_file"),
    (
        {
            "kind": "postgres",
            "table": "a.b",
            "dsn_file": "station.dsn",
            "dsn_env": "X",
        },
        "exactly one",
    ),
    (
        {"kind": "postgres", "table": "a.b", "dsn_env": "host=db password=secret"},
        "environment variable name",
    ),
    ({"kind": "postgres", "table": "a.b", "dsn_file": "missing.dsn"}, "not found"),
    (
        {"kind": "postgres", "table": "a.b", "dsn_file": "station.dsn", "dsn": "x"},
        "not allowed",
    ),
    (
        {"kind": "postgres", "table": "a.b", "dsn_file": "station.dsn", "path": "x"},
        "not allowed",
    ),
    (
        {
            "kind": "postgres",
            "table": "a.b",
            "dsn_file": "station.dsn",
            "statement_timeout": "1 OR 1=1",
        },
        "whole number",
    ),
    ({"kind": "omop", "schema": "cdm", "dsn_file": "station.dsn"}, "cohort"),
    (
        {
            "kind": "omop",
            "schema": "cdm",
            "dsn_file": "station.dsn",
            "cohort": {**COHORT, "condition_concepts": ["melanoma"]},
        },
        "positive integer",
    ),
    (
        {
            "kind": "omop",
            "schema": "cdm",
            "dsn_file": "station.dsn",
            "cohort": {**COHORT, "condition_concepts": [True]},
        },
        "positive integer",
    ),
    (
        {
            "kind": "omop",
            "schema": "cdm",
            "dsn_file": "station.dsn",
            "cohort": {**COHORT, "condition_concepts": []},
        },
        "at least one",
    ),
    (
        {
            "kind": "omop",
            "schema": "cdm",
            "dsn_file": "station.dsn",
            "cohort": {**COHORT, "index": "first"},
        },
        "not allowed",
    ),
    (
        {
            "kind": "omop",
            "schema": "Cdm",
            "dsn_file": "station.dsn",
            "cohort": COHORT,
        },
        "identifier",
    ),
    (
        {
            "kind": "omop",
            "schema": "cdm",
            "dsn_file": "station.dsn",
            "cohort": {**COHORT, "dose_drugs": ["aspirin"]},
        },
        "not in drug_concepts",
    ),
    (
        {
            "kind": "omop",
            "schema": "cdm",
            "dsn_file": "station.dsn",
            "cohort": {**COHORT, "columns": ["os_days", "password"]},
        },
        "not a mapped OMOP column",
    ),
    (
        {
            "kind": "omop",
            "schema": "cdm",
            "dsn_file": "station.dsn",
            "cohort": {**COHORT, "observations": {"ecog": {"concept": 5, "type": "x"}}},
        },
        "type",
    ),
    ({"kind": "parquet", "path": "station.dsn"}, ".parquet"),
]


@pytest.mark.parametrize(("entry", "said"), BAD)
def test_malformed_database_entries_are_one_located_line(tmp_path, entry, said):
    with pytest.raises(ConfigError) as caught:
        load_network(network_with(tmp_path, entry))
    message = str(caught.value)
    assert "\n" not in message
    assert "network.yaml:" in message and said in message
    assert "secret" not in message


def test_identifiers_are_composed_never_pasted():
    from psycopg import sql

    from pht.datasources import Cohort
    from pht.station.omop import cohort_query

    cohort = Cohort(
        condition_concepts=(1,),
        drug_concepts=(("pembrolizumab", (2, 3)),),
        dose_drugs=("pembrolizumab",),
    )
    query, params = cohort_query("cdm", cohort, ["os_days", "regimen"])
    assert isinstance(query, sql.Composed)
    assert params["drug_ids"] == [2, 3] and params["conditions"] == [1]
    with pytest.raises(ValueError, match="not mapped"):
        cohort_query("cdm", cohort, ['os_days"; DROP TABLE person; --'])


def test_an_unreachable_database_names_station_dataset_and_fix_never_the_dsn(
    tmp_path,
):
    from pht.station.sources import SourceUnavailable, source_schema

    net = load_network(
        network_with(
            tmp_path,
            {
                "kind": "postgres",
                "table": "registry.nkr",
                "dsn_file": "station.dsn",
                "connect_timeout": 1,
            },
        )
    )
    source = net.stations["s1"].hosted().datasets["melanoma"].held()
    with pytest.raises(SourceUnavailable) as caught:
        source_schema(source)
    message = str(caught.value)
    assert message.startswith("station s1, dataset melanoma:")
    assert "postgres table registry.nkr" in message and "DSN" in message
    assert "secret" not in message and "/nowhere" not in message
    assert isinstance(caught.value, DataError)


def test_an_empty_dsn_variable_is_said(tmp_path, monkeypatch):
    from pht.station.sources import SourceError, source_schema

    monkeypatch.setenv("PHT_TEST_DSN", "")
    net = load_network(
        network_with(
            tmp_path, {"kind": "postgres", "table": "a.b", "dsn_env": "PHT_TEST_DSN"}
        )
    )
    source = net.stations["s1"].hosted().datasets["melanoma"].held()
    with pytest.raises(SourceError, match="variable PHT_TEST_DSN .* is empty"):
        source_schema(source)


def test_two_dsn_files_naming_one_database_are_one_source(tmp_path):
    """Two DSN files (other users, other passwords) over one database and table are
    one source; another database, table or cohort is not."""
    from dataclasses import replace

    from pht.datasources import Connection, DatabaseSource
    from pht.station.extraction import same_dataset

    def dsn(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text + "\n")
        return path

    a = DatabaseSource(
        kind="postgres",
        station="s1",
        dataset="melanoma",
        connection=Connection(
            dsn_file=dsn("a.dsn", "host=db port=5432 dbname=pht user=a password=1")
        ),
        table=("registry", "nkr"),
    )
    b = replace(
        a,
        dataset="lite",
        connection=Connection(
            dsn_file=dsn("b.dsn", "postgresql://b:2@db:5432/pht?connect_timeout=3")
        ),
    )
    other_db = replace(
        a,
        connection=Connection(
            dsn_file=dsn("c.dsn", "host=db port=5432 dbname=other password=1")
        ),
    )
    assert same_dataset(a, b)
    assert not same_dataset(a, other_db)
    assert not same_dataset(a, replace(b, table=("registry", "dica")))
    assert not same_dataset(a, Path("data/nkr.parquet"))
    # an unreadable DSN is compared by where it is kept, and says nothing
    broken = replace(a, connection=Connection(dsn_file=dsn("d.dsn", "host='db")))
    assert not same_dataset(a, broken)
    assert same_dataset(broken, replace(broken, dataset="lite"))


@pytest.mark.parametrize(
    "value",
    ["postgresql://pht:secret@db/pht", "password=secret host=db", "dbname=secret"],
)
def test_a_dsn_written_as_dsn_file_is_refused_unquoted(tmp_path, value):
    entry = {"kind": "postgres", "table": "registry.nkr", "dsn_file": value}
    with pytest.raises(ConfigError, match="never write the DSN here") as caught:
        load_network(network_with(tmp_path, entry))
    assert "secret" not in str(caught.value)


def test_database_errors_are_logged_by_class_never_by_text():
    from psycopg import ProgrammingError, errors

    from pht.station.sources import _plain

    said = _plain(ProgrammingError('missing "=" after "Hunter2" in connection info'))
    assert said == "ProgrammingError"
    assert _plain(errors.QueryCanceled("canceling statement")) == (
        "QueryCanceled (SQLSTATE 57014)"
    )


def test_station_check_names_policy_columns_the_dataset_lacks() -> None:
    # found by a newcomer: a view without `regimen` passed the check silently
    from pht.station.check import ColumnCheck, DatasetCheck

    found = DatasetCheck(
        "dica",
        "melanoma",
        "postgres table registry.dica_view",
        rows=30,
        columns=(ColumnCheck("death", "integer", 30, 0, True),),
        absent=("regimen",),
    )
    line = found.lines()[-1]
    assert line.split()[0] == "regimen"
    assert "absent: the policy allows it but the dataset has no such column" in line
