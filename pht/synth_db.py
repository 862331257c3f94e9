"""The synthetic registries in PostgreSQL: as plain tables and as an OMOP CDM v5.4 instance.

The same truth as the Parquet files (:mod:`pht.synth`), so a study gives identical
numbers from Parquet, from a PostgreSQL table and from an OMOP cohort:

* :func:`load_table`: a frame as a table (``registry.<station>``), one column per
  frame column (bigint, double precision, text, timestamp);
* :func:`load_omop`: a frame as the CDM tables the station's cohort query reads
  (``person``, ``observation_period``, ``death``, ``condition_occurrence``,
  ``drug_exposure``, ``cost``, and ``concept`` for the concepts used). The drug
  administrations are rebuilt from the frame with the generator's own dosing rules
  (:func:`administrations`): every administration a ``drug_exposure`` with its mg
  (``quantity``), ``mg/kg`` as ``dose_unit_source_value`` for weight-based doses;
  the patient's drug cost on the first exposure (``cost``); death and the end of
  follow-up (``observation_period``) at ``start_date + os_days``; a birth date giving
  ``age`` completed years at ``start_date``;
* :func:`load_registries`: every station, both ways, and the station role's grants.

The synthetic instance uses OMOP's standard gender concepts (8507, 8532) and, for the
disease and the drugs, concept ids from the range OMOP leaves to local concepts (above
2,000,000,000: :data:`CONDITION_CONCEPT`, :data:`DRUG_CONCEPTS`); a real instance lists
its SNOMED condition and RxNorm ingredient concepts instead (cohort configuration).

Loading connects with an administrator's DSN (it creates schemas and tables); the
station reads as the read-only role (``deploy/postgres.sh``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pht import synth
from pht.datasources import IDENTIFIER
from pht.errors import ConfigError

STATION_ROLE = "pht_station"
CONDITION_CONCEPT = 2_000_000_001
"""The synthetic instance's condition concept: advanced melanoma (local concept)."""
DRUG_CONCEPTS: Mapping[str, int] = {
    "pembrolizumab": 2_000_000_011,
    "nivolumab": 2_000_000_012,
    "ipilimumab": 2_000_000_013,
}
"""The synthetic instance's drug concepts (local concepts, one per ingredient)."""
PROGRESSION_CONCEPT = 2_000_000_021
"""The synthetic instance's observation concept of disease progression (local)."""
OBSERVATION_CONCEPTS: Mapping[str, tuple[int, str]] = {
    "ecog": (2_000_000_031, "integer"),
    "ldh_elevated": (2_000_000_032, "integer"),
    "brain_mets": (2_000_000_033, "integer"),
    "line": (2_000_000_034, "integer"),
    "tox_grade3": (2_000_000_035, "integer"),
    "stage": (2_000_000_036, "text"),
    "response": (2_000_000_037, "text"),
}
"""Registry columns kept as observations (local concepts), recorded on the start date."""
EHR_TYPE = 32817
"""Type concept 'EHR' (provenance of every synthetic record)."""

COHORT: Mapping[str, Any] = {
    "condition_concepts": [CONDITION_CONCEPT],
    "drug_concepts": {label: [cid] for label, cid in DRUG_CONCEPTS.items()},
    "dose_drugs": ["pembrolizumab", "nivolumab"],
    "progression_concepts": [PROGRESSION_CONCEPT],
    "observations": {
        name: {"concept": concept, "type": kind}
        for name, (concept, kind) in OBSERVATION_CONCEPTS.items()
    },
}
"""The cohort (network.yaml ``cohort:``) of the synthetic OMOP instance."""

_SQL_TYPES = {"i": "bigint", "u": "bigint", "f": "double precision", "b": "boolean"}


def _identifier(name: str, what: str) -> str:
    if not IDENTIFIER.fullmatch(name):
        raise ConfigError(f"{what} {name!r} is not a plain identifier")
    return name


def _sql_type(series: pd.Series) -> str:
    kind = series.dtype.kind
    if kind in _SQL_TYPES:
        return _SQL_TYPES[kind]
    if kind == "M":
        return "timestamp"
    return "text"


def _copy(cur: Any, table: Any, frame: pd.DataFrame, chunk: int = 200_000) -> None:
    """COPY a frame into ``table`` (a composed identifier) as CSV, in chunks."""
    from psycopg import sql

    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    statement = sql.SQL(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER false, NULL '')"
    ).format(table, columns)
    with cur.copy(statement) as copy:
        for start in range(0, len(frame), chunk):
            part = pa.Table.from_pandas(
                frame.iloc[start : start + chunk], preserve_index=False
            )
            buffer = io.BytesIO()
            pacsv.write_csv(part, buffer, pacsv.WriteOptions(include_header=False))
            copy.write(buffer.getvalue())


def load_table(
    conn: Any, frame: pd.DataFrame, schema: str, table: str, grant: str = STATION_ROLE
) -> None:
    """(Re)create ``schema.table`` from ``frame`` and let ``grant`` read it."""
    from psycopg import sql

    schema, table = _identifier(schema, "schema"), _identifier(table, "table")
    target = sql.Identifier(schema, table)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_sql_type(frame[c])))
        for c in frame.columns
    )
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
        )
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(target, columns))
        _copy(cur, target, frame)
        _grant(cur, schema, grant)
    conn.commit()


def _grant(cur: Any, schema: str, role: str) -> None:
    from psycopg import sql

    cur.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(role)
        )
    )
    cur.execute(
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(role)
        )
    )


def administrations(frame: pd.DataFrame) -> pd.DataFrame:
    """Every drug administration of the frame's patients (the generator's rules).

    Monotherapy: ``n`` doses of the regimen's mg every ``interval`` weeks from the
    start (standard 200 mg / 3 weeks pembrolizumab, 240 mg / 2 weeks nivolumab;
    extended interval double dose and interval; weight-based 2 mg/kg pembrolizumab in
    steps of 50 mg from 100 to 200, 3 mg/kg nivolumab in steps of 40 mg from 120 to
    240), until ``stop_date``. Combination: up to 4 cycles every 3 weeks of nivolumab
    1 mg/kg (to 10 mg) and ipilimumab 3 mg/kg (to 10 mg), then nivolumab 240 mg every
    2 weeks from week 12.

    Returns
    -------
    pandas.DataFrame
        Columns ``row`` (the patient's row), ``day`` (days after the start),
        ``drug`` (ingredient), ``mg`` and ``unit`` (``mg`` or ``mg/kg``).
    """
    start = frame["start_date"].to_numpy(dtype="datetime64[D]")
    stop = frame["stop_date"].to_numpy(dtype="datetime64[D]")
    treated = (stop - start).astype(np.int64).astype(np.float64)
    weight = frame["weight_kg"].to_numpy(dtype=np.float64)
    drug = frame["drug"].astype(str).to_numpy()
    regimen = frame["regimen"].astype(str).to_numpy()
    pembro = drug == "pembrolizumab"
    combination = drug == "ipilimumab+nivolumab"
    extended = regimen == "extended_interval"
    weight_based = regimen == "weight_based"
    wb_dose = np.where(
        pembro,
        np.clip(np.rint(2.0 * weight / 50.0) * 50.0, 100.0, 200.0),
        np.clip(np.rint(3.0 * weight / 40.0) * 40.0, 120.0, 240.0),
    )
    dose = np.select(
        [extended, weight_based],
        [np.where(pembro, 400.0, 480.0), wb_dose],
        np.where(pembro, 200.0, 240.0),
    )
    interval = (np.where(pembro, 3, 2) * np.where(extended, 2, 1)).astype(np.int64)
    rows = np.arange(len(frame))
    parts = []
    # monotherapy
    mono = ~combination
    n_mono = (np.floor(treated / (7.0 * interval)) + 1.0).astype(np.int64)
    r = np.repeat(rows[mono], n_mono[mono])
    j = np.arange(r.size) - np.repeat(
        np.cumsum(n_mono[mono]) - n_mono[mono], n_mono[mono]
    )
    parts.append(
        pd.DataFrame(
            {
                "row": r,
                "day": j * 7 * interval[r],
                "drug": np.where(pembro[r], "pembrolizumab", "nivolumab"),
                "mg": dose[r],
                "unit": np.where(weight_based[r], "mg/kg", "mg"),
            }
        )
    )
    # combination: induction (nivolumab + ipilimumab), then nivolumab maintenance
    induction = np.minimum(np.floor(treated / 21.0) + 1.0, 4.0).astype(np.int64)
    maintenance = np.where(
        treated >= 84.0, np.floor((treated - 84.0) / 14.0) + 1.0, 0.0
    ).astype(np.int64)
    r = np.repeat(rows[combination], induction[combination])
    j = np.arange(r.size) - np.repeat(
        np.cumsum(induction[combination]) - induction[combination],
        induction[combination],
    )
    for name, mg in (
        ("nivolumab", np.rint(weight / 10.0) * 10.0),
        ("ipilimumab", np.rint(0.3 * weight) * 10.0),
    ):
        parts.append(
            pd.DataFrame(
                {"row": r, "day": j * 21, "drug": name, "mg": mg[r], "unit": "mg/kg"}
            )
        )
    r = np.repeat(rows[combination], maintenance[combination])
    j = np.arange(r.size) - np.repeat(
        np.cumsum(maintenance[combination]) - maintenance[combination],
        maintenance[combination],
    )
    parts.append(
        pd.DataFrame(
            {
                "row": r,
                "day": 84 + j * 14,
                "drug": "nivolumab",
                "mg": dose[r],
                "unit": "mg",
            }
        )
    )
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["row", "day", "drug"], kind="stable").reset_index(drop=True)


OMOP_TABLES: Mapping[str, Sequence[tuple[str, str]]] = {
    "concept": (
        ("concept_id", "integer NOT NULL"),
        ("concept_name", "varchar(255) NOT NULL"),
        ("domain_id", "varchar(20) NOT NULL"),
        ("vocabulary_id", "varchar(20) NOT NULL"),
        ("concept_class_id", "varchar(20) NOT NULL"),
        ("standard_concept", "varchar(1)"),
        ("concept_code", "varchar(50) NOT NULL"),
        ("valid_start_date", "date NOT NULL"),
        ("valid_end_date", "date NOT NULL"),
        ("invalid_reason", "varchar(1)"),
    ),
    "person": (
        ("person_id", "integer NOT NULL"),
        ("gender_concept_id", "integer NOT NULL"),
        ("year_of_birth", "integer NOT NULL"),
        ("month_of_birth", "integer"),
        ("day_of_birth", "integer"),
        ("birth_datetime", "timestamp"),
        ("race_concept_id", "integer NOT NULL"),
        ("ethnicity_concept_id", "integer NOT NULL"),
        ("location_id", "integer"),
        ("provider_id", "integer"),
        ("care_site_id", "integer"),
        ("person_source_value", "varchar(50)"),
        ("gender_source_value", "varchar(50)"),
        ("gender_source_concept_id", "integer"),
        ("race_source_value", "varchar(50)"),
        ("race_source_concept_id", "integer"),
        ("ethnicity_source_value", "varchar(50)"),
        ("ethnicity_source_concept_id", "integer"),
    ),
    "observation_period": (
        ("observation_period_id", "integer NOT NULL"),
        ("person_id", "integer NOT NULL"),
        ("observation_period_start_date", "date NOT NULL"),
        ("observation_period_end_date", "date NOT NULL"),
        ("period_type_concept_id", "integer NOT NULL"),
    ),
    "death": (
        ("person_id", "integer NOT NULL"),
        ("death_date", "date NOT NULL"),
        ("death_datetime", "timestamp"),
        ("death_type_concept_id", "integer"),
        ("cause_concept_id", "integer"),
        ("cause_source_value", "varchar(50)"),
        ("cause_source_concept_id", "integer"),
    ),
    "condition_occurrence": (
        ("condition_occurrence_id", "integer NOT NULL"),
        ("person_id", "integer NOT NULL"),
        ("condition_concept_id", "integer NOT NULL"),
        ("condition_start_date", "date NOT NULL"),
        ("condition_start_datetime", "timestamp"),
        ("condition_end_date", "date"),
        ("condition_end_datetime", "timestamp"),
        ("condition_type_concept_id", "integer NOT NULL"),
        ("condition_status_concept_id", "integer"),
        ("stop_reason", "varchar(20)"),
        ("provider_id", "integer"),
        ("visit_occurrence_id", "integer"),
        ("visit_detail_id", "integer"),
        ("condition_source_value", "varchar(50)"),
        ("condition_source_concept_id", "integer"),
        ("condition_status_source_value", "varchar(50)"),
    ),
    "drug_exposure": (
        ("drug_exposure_id", "integer NOT NULL"),
        ("person_id", "integer NOT NULL"),
        ("drug_concept_id", "integer NOT NULL"),
        ("drug_exposure_start_date", "date NOT NULL"),
        ("drug_exposure_start_datetime", "timestamp"),
        ("drug_exposure_end_date", "date NOT NULL"),
        ("drug_exposure_end_datetime", "timestamp"),
        ("verbatim_end_date", "date"),
        ("drug_type_concept_id", "integer NOT NULL"),
        ("stop_reason", "varchar(20)"),
        ("refills", "integer"),
        ("quantity", "numeric"),
        ("days_supply", "integer"),
        ("sig", "text"),
        ("route_concept_id", "integer"),
        ("lot_number", "varchar(50)"),
        ("provider_id", "integer"),
        ("visit_occurrence_id", "integer"),
        ("visit_detail_id", "integer"),
        ("drug_source_value", "varchar(50)"),
        ("drug_source_concept_id", "integer"),
        ("route_source_value", "varchar(50)"),
        ("dose_unit_source_value", "varchar(50)"),
    ),
    "observation": (
        ("observation_id", "integer NOT NULL"),
        ("person_id", "integer NOT NULL"),
        ("observation_concept_id", "integer NOT NULL"),
        ("observation_date", "date NOT NULL"),
        ("observation_datetime", "timestamp"),
        ("observation_type_concept_id", "integer NOT NULL"),
        ("value_as_number", "numeric"),
        ("value_as_string", "varchar(60)"),
        ("value_as_concept_id", "integer"),
        ("qualifier_concept_id", "integer"),
        ("unit_concept_id", "integer"),
        ("provider_id", "integer"),
        ("visit_occurrence_id", "integer"),
        ("visit_detail_id", "integer"),
        ("observation_source_value", "varchar(50)"),
        ("observation_source_concept_id", "integer"),
        ("unit_source_value", "varchar(50)"),
        ("qualifier_source_value", "varchar(50)"),
        ("value_source_value", "varchar(50)"),
        ("observation_event_id", "bigint"),
        ("obs_event_field_concept_id", "integer"),
    ),
    "cost": (
        ("cost_id", "integer NOT NULL"),
        ("cost_event_id", "integer NOT NULL"),
        ("cost_domain_id", "varchar(20) NOT NULL"),
        ("cost_type_concept_id", "integer NOT NULL"),
        ("currency_concept_id", "integer"),
        ("total_charge", "numeric"),
        ("total_cost", "numeric"),
        ("total_paid", "numeric"),
        ("paid_by_payer", "numeric"),
        ("paid_by_patient", "numeric"),
        ("paid_patient_copay", "numeric"),
        ("paid_patient_coinsurance", "numeric"),
        ("paid_patient_deductible", "numeric"),
        ("paid_by_primary", "numeric"),
        ("paid_ingredient_cost", "numeric"),
        ("paid_dispensing_fee", "numeric"),
        ("payer_plan_period_id", "integer"),
        ("amount_allowed", "numeric"),
        ("revenue_code_concept_id", "integer"),
        ("revenue_code_source_value", "varchar(50)"),
        ("drg_concept_id", "integer"),
        ("drg_source_value", "varchar(3)"),
    ),
}
"""The CDM v5.4 tables the synthetic instance holds, with their columns and types."""


def omop_frames(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The CDM tables of one station's frame (see the module docstring)."""
    n = len(frame)
    person_id = np.arange(1, n + 1, dtype=np.int64)
    start = frame["start_date"].to_numpy(dtype="datetime64[D]")
    diagnosis = frame["diagnosis_date"].to_numpy(dtype="datetime64[D]")
    os_days = frame["os_days"].to_numpy(dtype=np.float64).astype(np.int64)
    end = start + os_days.astype("timedelta64[D]")
    age = frame["age"].to_numpy(dtype=np.int64)
    # a birthday 1 to 300 days before the age-th anniversary of the start: exactly
    # `age` completed years at the start date
    years_back = np.array(
        [
            _minus_years(day, years)
            for day, years in zip(start.tolist(), age.tolist(), strict=True)
        ],
        dtype="datetime64[D]",
    )
    birth = years_back - (1 + (person_id * 7919) % 300).astype("timedelta64[D]")
    birth_index = pd.DatetimeIndex(birth)
    sex = frame["sex"].astype(str).to_numpy()
    person = pd.DataFrame(
        {
            "person_id": person_id,
            "gender_concept_id": np.where(sex == "F", 8532, 8507),
            "year_of_birth": birth_index.year.to_numpy(),
            "month_of_birth": birth_index.month.to_numpy(),
            "day_of_birth": birth_index.day.to_numpy(),
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
            "person_source_value": frame["patient_id"].astype(str).to_numpy(),
            "gender_source_value": sex,
        }
    )
    period = pd.DataFrame(
        {
            "observation_period_id": person_id,
            "person_id": person_id,
            "observation_period_start_date": diagnosis,
            "observation_period_end_date": end,
            "period_type_concept_id": EHR_TYPE,
        }
    )
    dead = frame["death"].to_numpy(dtype=np.int64) == 1
    death = pd.DataFrame(
        {
            "person_id": person_id[dead],
            "death_date": end[dead],
            "death_type_concept_id": EHR_TYPE,
        }
    )
    condition = pd.DataFrame(
        {
            "condition_occurrence_id": person_id,
            "person_id": person_id,
            "condition_concept_id": CONDITION_CONCEPT,
            "condition_start_date": diagnosis,
            "condition_type_concept_id": EHR_TYPE,
            "condition_source_value": "C43",
        }
    )
    given = administrations(frame)
    rows = given["row"].to_numpy()
    day = start[rows] + given["day"].to_numpy().astype("timedelta64[D]")
    exposure_id = np.arange(1, len(given) + 1, dtype=np.int64)
    drug_exposure = pd.DataFrame(
        {
            "drug_exposure_id": exposure_id,
            "person_id": person_id[rows],
            "drug_concept_id": given["drug"].map(DRUG_CONCEPTS).to_numpy(),
            "drug_exposure_start_date": day,
            "drug_exposure_end_date": day,
            "drug_type_concept_id": EHR_TYPE,
            "quantity": given["mg"].to_numpy(),
            "drug_source_value": given["drug"].to_numpy(),
            "dose_unit_source_value": given["unit"].to_numpy(),
        }
    )
    # the patient's drug cost on the first exposure of the first day
    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    cost_value = frame["cost_eur"].to_numpy(dtype=np.float64)[rows[first]]
    cost = pd.DataFrame(
        {
            "cost_id": np.arange(1, first.size + 1, dtype=np.int64),
            "cost_event_id": exposure_id[first],
            "cost_domain_id": "Drug",
            "cost_type_concept_id": EHR_TYPE,
            "currency_concept_id": 0,
            "total_cost": cost_value,
        }
    )
    observed = []
    progressed = frame["progression"].to_numpy(dtype=np.int64) == 1
    pfs = frame["pfs_days"].to_numpy(dtype=np.float64).astype(np.int64)
    observed.append(
        pd.DataFrame(
            {
                "person_id": person_id[progressed],
                "observation_concept_id": PROGRESSION_CONCEPT,
                "observation_date": (start + pfs.astype("timedelta64[D]"))[progressed],
                "observation_source_value": "progression",
            }
        )
    )
    for name, (concept_id, kind) in OBSERVATION_CONCEPTS.items():
        if name not in frame.columns:
            continue
        values = frame[name]
        observed.append(
            pd.DataFrame(
                {
                    "person_id": person_id,
                    "observation_concept_id": concept_id,
                    "observation_date": start,
                    "value_as_number": values.to_numpy(dtype=np.float64)
                    if kind != "text"
                    else np.nan,
                    "value_as_string": values.astype(str).to_numpy()
                    if kind == "text"
                    else None,
                    "observation_source_value": name,
                }
            )
        )
    observation = pd.concat(observed, ignore_index=True)
    observation.insert(
        0, "observation_id", np.arange(1, len(observation) + 1, dtype=np.int64)
    )
    observation["observation_type_concept_id"] = EHR_TYPE
    concept = pd.DataFrame(
        {
            "concept_id": [
                CONDITION_CONCEPT,
                *DRUG_CONCEPTS.values(),
                PROGRESSION_CONCEPT,
                *(c for c, _ in OBSERVATION_CONCEPTS.values()),
            ],
            "concept_name": [
                "Advanced melanoma (synthetic)",
                *DRUG_CONCEPTS,
                "Disease progression (synthetic)",
                *OBSERVATION_CONCEPTS,
            ],
            "domain_id": ["Condition"]
            + ["Drug"] * len(DRUG_CONCEPTS)
            + ["Observation"] * (1 + len(OBSERVATION_CONCEPTS)),
            "vocabulary_id": "PHT synthetic",
            "concept_class_id": ["Clinical Finding"]
            + ["Ingredient"] * len(DRUG_CONCEPTS)
            + ["Observable Entity"] * (1 + len(OBSERVATION_CONCEPTS)),
            "standard_concept": "S",
            "concept_code": [
                "melanoma",
                *DRUG_CONCEPTS,
                "progression",
                *OBSERVATION_CONCEPTS,
            ],
            "valid_start_date": np.datetime64("1970-01-01", "D"),
            "valid_end_date": np.datetime64("2099-12-31", "D"),
        }
    )
    return {
        "concept": concept,
        "person": person,
        "observation_period": period,
        "death": death,
        "condition_occurrence": condition,
        "drug_exposure": drug_exposure,
        "observation": observation,
        "cost": cost,
    }


def _minus_years(day: Any, years: int) -> np.datetime64:
    """The date ``years`` before ``day`` (29 February goes to 28 February)."""
    try:
        moved = day.replace(year=day.year - int(years))
    except ValueError:
        moved = day.replace(year=day.year - int(years), day=28)
    return np.datetime64(moved, "D")


def load_omop(
    conn: Any, frame: pd.DataFrame, schema: str, grant: str = STATION_ROLE
) -> None:
    """(Re)create the CDM tables of ``frame`` in ``schema``; let ``grant`` read them."""
    from psycopg import sql

    schema = _identifier(schema, "schema")
    tables = omop_frames(frame)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for name, columns in OMOP_TABLES.items():
            target = sql.Identifier(schema, name)
            cur.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    target,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                        for c, t in columns
                    ),
                )
            )
            _copy(cur, target, tables[name])
        for name, column in (
            ("drug_exposure", "person_id"),
            ("condition_occurrence", "person_id"),
            ("cost", "cost_event_id"),
            ("observation", "person_id"),
        ):
            cur.execute(
                sql.SQL("CREATE INDEX ON {} ({})").format(
                    sql.Identifier(schema, name), sql.Identifier(column)
                )
            )
        _grant(cur, schema, grant)
    conn.commit()
    with conn.cursor() as cur:  # planner statistics for the cohort query
        for name in OMOP_TABLES:
            cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, name)))
    conn.commit()


def load_registries(
    admin_dsn: str,
    seed: int = 2026,
    patients: int = synth.DEFAULT_PATIENTS,
    stations: Sequence[str] = synth.STATIONS,
    omop: bool = True,
) -> dict[str, dict[str, str]]:
    """Load every station's registry as ``registry.<station>`` and ``omop_<station>``.

    Returns, per station, the dataset entries' ``table`` and ``schema``.
    """
    import psycopg

    from pht.station.sources import _plain

    frames = synth.generate(seed=seed, patients=patients)
    out: dict[str, dict[str, str]] = {}
    try:
        connection = psycopg.connect(admin_dsn, connect_timeout=10)
    except psycopg.Error as exc:
        # the class and SQLSTATE only: libpq's text may quote the DSN (a password)
        raise ConfigError(
            f"cannot connect to PostgreSQL ({_plain(exc)}: the server is down, the "
            "DSN is malformed or the login is refused); start it with "
            "`bash deploy/postgres.sh start DIR` and pass DIR/admin.dsn"
        ) from None
    try:
        with connection as conn:
            for station in stations:
                load_table(conn, frames[station], "registry", station)
                out[station] = {"table": f"registry.{station}"}
                if omop:
                    load_omop(conn, frames[station], f"omop_{station}")
                    out[station]["schema"] = f"omop_{station}"
    except psycopg.OperationalError as exc:
        raise ConfigError(
            f"cannot load into PostgreSQL ({_plain(exc)}: the server stopped "
            "answering); check it and load again"
        ) from None
    return out


def read_dsn(path: Path) -> str:
    """The DSN in ``path`` (a one-line file), or a :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise ConfigError(
            f"{path}: cannot read the DSN file; give the file deploy/postgres.sh "
            "wrote (DIR/admin.dsn)"
        ) from None
    if not text:
        raise ConfigError(f"{path}: the DSN file is empty")
    return text
