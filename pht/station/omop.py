"""An OMOP CDM v5.4 cohort as the project's columns: the mapping and its one query.

The station turns a declared cohort (:class:`pht.datasources.Cohort`) into one SQL
query over the CDM tables ``person``, ``observation_period``, ``death``,
``condition_occurrence``, ``drug_exposure`` and ``cost``. Identifiers are composed
with :class:`psycopg.sql.Identifier`; concept ids, labels and thresholds are query
parameters (arrays), so nothing from the configuration is pasted into SQL text.

The mapping (one row per person in the cohort; README "Stations on databases"):

=====================  ==================================================================
column                 rule
=====================  ==================================================================
(cohort)               a person with a ``condition_occurrence`` of a condition concept
                       and an exposure (``drug_exposure``) of a drug concept on or after
                       the first such condition; not a person whose death is recorded
                       before the index date (a data error)
start_date             index date: the first such exposure (``drug_exposure_start_date``)
diagnosis_date         the first condition occurrence of a condition concept
drug                   the drug labels with an exposure on the index date, sorted,
                       joined by ``+`` (``ipilimumab+nivolumab``)
regimen                ``standard`` for a combination; ``weight_based`` when an index
                       exposure's ``dose_unit_source_value`` is the weight unit
                       (``mg/kg``); ``extended_interval`` when the index dose (mg: the
                       sum of ``quantity`` of the drug's exposures on the index date)
                       or the days to the next exposure reach the drug's
                       extended-interval thresholds; else ``standard``
os_days                days from the index date to death (the earliest
                       ``death.death_date`` of the person), or else to the end of the
                       ``observation_period`` that holds the index date
death                  1 when that death date lies on or before that end, else 0
age                    completed years at the index date from ``year/month/day_of_birth``
                       (without month and day, or when they are no calendar date such
                       as April 31: the difference of the years)
sex                    ``M`` for ``gender_concept_id`` 8507, ``F`` for 8532, else missing
n_administrations      distinct exposure days of the drug concepts from the index date
dose_mg_total          sum of ``quantity`` (mg) of the exposures of the dose drugs from
                       the index date; missing when none is recorded
cost_eur               sum of ``cost.total_cost`` of those exposures
                       (``cost_domain_id = 'Drug'``); missing when none is recorded
=====================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from pht.datasources import Cohort

COLUMNS: Mapping[str, pa.DataType] = {
    "os_days": pa.float64(),
    "death": pa.int64(),
    "drug": pa.string(),
    "regimen": pa.string(),
    "age": pa.int64(),
    "sex": pa.string(),
    "start_date": pa.date32(),
    "diagnosis_date": pa.date32(),
    "n_administrations": pa.int64(),
    "dose_mg_total": pa.float64(),
    "cost_eur": pa.float64(),
}
"""The columns an OMOP cohort maps to, with their types (as the synthetic registries)."""

TABLES = (
    "observation",
    "person",
    "observation_period",
    "death",
    "condition_occurrence",
    "drug_exposure",
    "cost",
)
"""The CDM tables the cohort query reads (the station role needs SELECT on them)."""

RESERVED = frozenset({*COLUMNS, "pfs_days", "progression", "person_id"})
"""Names an observation column may not take: the mapped columns and the names the
cohort query itself uses (``person_id`` joins every part of it)."""

GENDER = {"M": 8507, "F": 8532}
"""OMOP gender concepts: MALE 8507, FEMALE 8532."""

_COHORT = """
WITH lbl AS (
    SELECT t.concept_id, t.label
    FROM unnest(%(drug_ids)s::bigint[], %(drug_labels)s::text[]) AS t(concept_id, label)
),
exposure AS (
    SELECT de.person_id, de.drug_exposure_id, de.drug_exposure_start_date AS day,
           de.quantity::float8 AS quantity, de.dose_unit_source_value AS unit, lbl.label
    FROM {drug_exposure} AS de
    JOIN lbl ON de.drug_concept_id = lbl.concept_id
),
diagnosed AS (
    SELECT co.person_id, MIN(co.condition_start_date) AS diagnosis_date
    FROM {condition_occurrence} AS co
    WHERE co.condition_concept_id = ANY(%(conditions)s::bigint[])
    GROUP BY co.person_id
),
indexed AS (
    SELECT e.person_id, MIN(e.day) AS index_date
    FROM exposure AS e
    JOIN diagnosed AS d ON d.person_id = e.person_id AND d.diagnosis_date <= e.day
    GROUP BY e.person_id
),
index_dose AS (
    SELECT e.person_id, e.label, SUM(e.quantity) AS quantity,
           bool_or(e.unit = %(weight_unit)s) AS per_kg
    FROM exposure AS e
    JOIN indexed AS i ON i.person_id = e.person_id AND e.day = i.index_date
    GROUP BY e.person_id, e.label
),
first_day AS (
    SELECT d.person_id,
           string_agg(d.label, '+' ORDER BY d.label) AS drug,
           COUNT(*) AS n_drugs,
           bool_or(d.per_kg) AS per_kg,
           MAX(d.quantity) AS first_dose
    FROM index_dose AS d
    GROUP BY d.person_id
),
later AS (
    SELECT e.person_id,
           MIN(e.day) FILTER (WHERE e.day > i.index_date) AS second_day,
           COUNT(DISTINCT e.day) AS n_administrations,
           SUM(e.quantity) FILTER (
               WHERE e.label = ANY(%(dose_drugs)s::text[])
           ) AS dose_mg_total
    FROM exposure AS e
    JOIN indexed AS i ON i.person_id = e.person_id AND e.day >= i.index_date
    GROUP BY e.person_id
),
costs AS (
    SELECT e.person_id, SUM(c.total_cost) AS cost_eur
    FROM exposure AS e
    JOIN indexed AS i ON i.person_id = e.person_id AND e.day >= i.index_date
    JOIN {cost} AS c
      ON c.cost_event_id = e.drug_exposure_id AND c.cost_domain_id = 'Drug'
    GROUP BY e.person_id
),
period AS (
    SELECT op.person_id, MAX(op.observation_period_end_date) AS end_date
    FROM {observation_period} AS op
    JOIN indexed AS i ON i.person_id = op.person_id
     AND op.observation_period_start_date <= i.index_date
     AND op.observation_period_end_date >= i.index_date
    GROUP BY op.person_id
),
ext AS (
    SELECT t.label, t.min_dose, t.min_days
    FROM unnest(%(ext_labels)s::text[], %(ext_doses)s::float8[],
                %(ext_days)s::float8[]) AS t(label, min_dose, min_days)
),
died AS (
    SELECT dd.person_id, MIN(dd.death_date) AS death_date
    FROM {death} AS dd
    GROUP BY dd.person_id
),
followed AS (
    SELECT i.person_id, dt.death_date,
           CASE WHEN dt.death_date IS NOT NULL
                     AND (p.end_date IS NULL OR dt.death_date <= p.end_date)
                THEN dt.death_date ELSE p.end_date END AS end_date,
           (dt.death_date IS NOT NULL
            AND (p.end_date IS NULL OR dt.death_date <= p.end_date)) AS died
    FROM indexed AS i
    LEFT JOIN period AS p ON p.person_id = i.person_id
    LEFT JOIN died AS dt ON dt.person_id = i.person_id
),
progressed AS (
    SELECT o.person_id, MIN(o.observation_date) AS progression_date
    FROM {observation} AS o
    JOIN indexed AS i ON i.person_id = o.person_id AND o.observation_date >= i.index_date
    WHERE o.observation_concept_id = ANY(%(progression)s::bigint[])
    GROUP BY o.person_id
),
latest AS (
    SELECT DISTINCT ON (o.person_id, o.observation_concept_id)
           o.person_id, o.observation_concept_id, o.value_as_number::float8 AS number,
           o.value_as_string AS text
    FROM {observation} AS o
    WHERE o.observation_concept_id = ANY(%(observed)s::bigint[])
    ORDER BY o.person_id, o.observation_concept_id, o.observation_date DESC,
             o.observation_id DESC
),
observed AS (
    SELECT l.person_id{observed_columns}
    FROM latest AS l
    GROUP BY l.person_id
),
cohort AS (
    SELECT
        i.person_id,
        (fu.end_date - i.index_date)::float8 AS os_days,
        fu.died::int::int8 AS death,
        (CASE WHEN pr.progression_date <= fu.end_date THEN pr.progression_date
              ELSE fu.end_date END - i.index_date)::float8 AS pfs_days,
        (pr.progression_date IS NOT NULL
         AND pr.progression_date <= fu.end_date)::int::int8 AS progression,
        {observation_select}
        f.drug,
        CASE WHEN f.n_drugs > 1 THEN 'standard'
             WHEN f.per_kg THEN 'weight_based'
             WHEN x.min_dose IS NOT NULL
                  AND (f.first_dose >= x.min_dose
                       OR (l.second_day - i.index_date) >= x.min_days)
             THEN 'extended_interval'
             ELSE 'standard' END AS regimen,
        -- completed years; a month/day that is no calendar date (April 31, a
        -- month 13) falls back to the years' difference; nothing here can raise
        (date_part('year', i.index_date) - pe.year_of_birth
         - CASE WHEN pe.month_of_birth BETWEEN 1 AND 12
                     AND pe.day_of_birth BETWEEN 1 AND
                         (ARRAY[31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[
                             pe.month_of_birth]
                         + (pe.month_of_birth = 2
                            AND pe.year_of_birth %% 4 = 0
                            AND (pe.year_of_birth %% 100 <> 0
                                 OR pe.year_of_birth %% 400 = 0))::int
                     AND (date_part('month', i.index_date),
                          date_part('day', i.index_date))
                         < (pe.month_of_birth, pe.day_of_birth)
                THEN 1 ELSE 0 END)::int8 AS age,
        CASE pe.gender_concept_id WHEN 8507 THEN 'M' WHEN 8532 THEN 'F' END AS sex,
        i.index_date AS start_date,
        d.diagnosis_date,
        l.n_administrations::int8 AS n_administrations,
        l.dose_mg_total::float8 AS dose_mg_total,
        c.cost_eur::float8 AS cost_eur
    FROM indexed AS i
    JOIN {person} AS pe ON pe.person_id = i.person_id
    JOIN diagnosed AS d ON d.person_id = i.person_id
    JOIN first_day AS f ON f.person_id = i.person_id
    JOIN later AS l ON l.person_id = i.person_id
    JOIN followed AS fu ON fu.person_id = i.person_id
    LEFT JOIN progressed AS pr ON pr.person_id = i.person_id
    LEFT JOIN observed AS ob ON ob.person_id = i.person_id
    LEFT JOIN costs AS c ON c.person_id = i.person_id
    LEFT JOIN ext AS x ON x.label = f.drug
    -- a death recorded before the index date is a data error: not in the cohort
    WHERE fu.death_date IS NULL OR fu.death_date >= i.index_date
)
SELECT {columns} FROM cohort ORDER BY 1
"""


PROGRESSION: Mapping[str, pa.DataType] = {
    "pfs_days": pa.float64(),
    "progression": pa.int64(),
}
"""Exported when the cohort declares ``progression_concepts``."""

_OBSERVATION_TYPES = {
    "integer": ("number", "int8", pa.int64()),
    "numeric": ("number", "float8", pa.float64()),
    "text": ("text", "text", pa.string()),
}


def column_types(cohort: Cohort) -> dict[str, pa.DataType]:
    """The columns the cohort exports and their Arrow types."""
    wanted = set(cohort.columns) if cohort.columns else set(COLUMNS)
    out = {c: t for c, t in COLUMNS.items() if c in wanted}
    if cohort.progression_concepts:
        out.update(PROGRESSION)
    for name, _, kind in cohort.observations:
        out[name] = _OBSERVATION_TYPES[kind][2]
    return out


def exported(cohort: Cohort) -> list[str]:
    """The names of :func:`column_types`, in order."""
    return list(column_types(cohort))


def cohort_query(
    schema: str, cohort: Cohort, columns: Sequence[str], limit_zero: bool = False
) -> tuple[Any, dict[str, Any]]:
    """The cohort's SQL (a :class:`psycopg.sql.Composed`) and its parameters.

    ``columns`` must be names of :func:`column_types`; they and ``schema`` are
    composed as identifiers. The query's first column is ``person_id`` (the rows'
    order). With ``limit_zero`` the query returns no row (a check that the CDM
    tables and columns exist and may be read, without reading data).
    """
    from psycopg import sql

    known = column_types(cohort)
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"not mapped OMOP columns: {unknown}")
    tables = {name: sql.Identifier(schema, name) for name in TABLES}
    # person_id first (the order of the rows), then the asked columns
    select = sql.SQL(", ").join(
        [sql.Identifier("person_id"), *(sql.Identifier(c) for c in columns)]
    )
    pivot = sql.SQL("").join(
        sql.SQL(
            ", MAX(l.{value}::{cast}) FILTER (WHERE l.observation_concept_id = {id}) AS {name}"
        ).format(
            value=sql.Identifier(_OBSERVATION_TYPES[kind][0]),
            cast=sql.SQL(_OBSERVATION_TYPES[kind][1]),
            id=sql.Literal(int(concept)),
            name=sql.Identifier(name),
        )
        for name, concept, kind in cohort.observations
    )
    observation_select = sql.SQL("").join(
        sql.SQL("{},").format(sql.Identifier("ob", name))
        for name, _, _ in cohort.observations
    )
    query = sql.SQL(_COHORT).format(
        columns=select,
        observed_columns=pivot,
        observation_select=observation_select,
        **tables,
    )
    if limit_zero:
        query = sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(query)
    params = {
        "drug_ids": [c for _, ids in cohort.drug_concepts for c in ids],
        "drug_labels": [label for label, ids in cohort.drug_concepts for _ in ids],
        "conditions": list(cohort.condition_concepts),
        "weight_unit": cohort.weight_unit,
        "dose_drugs": list(cohort.dose_drugs),
        "ext_labels": [label for label, _, _ in cohort.extended],
        "ext_doses": [dose for _, dose, _ in cohort.extended],
        "ext_days": [days for _, _, days in cohort.extended],
        "progression": list(cohort.progression_concepts),
        "observed": [concept for _, concept, _ in cohort.observations],
    }
    return query, params
