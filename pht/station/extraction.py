"""Extraction: what the train gets, and what the station will hold its output to.

The dataset's one population (:mod:`pht.station.population`), refused while the
data changed by fewer than k patients; the labels and the population size the guard
bounds outputs by; for per-time classes the station's grid, merged per group or per
covariate pattern; only the columns the request needs written into a fresh run
folder named by the station; and, for ``event_table``, the tables the station itself
computes from that extract.
"""

from __future__ import annotations

import logging
import math
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pht.algorithms.disclosure import coarser, refine_for_groups
from pht.algorithms.levels import labels
from pht.datasources import DatabaseSource
from pht.errors import DataError, DisclosureError, PhtError
from pht.station.base import (
    Admission,
    Refusal,
    StationBase,
    data_refusal,
)
from pht.station.codes import Code
from pht.station.executors import Job
from pht.station.guard import GuardLimits
from pht.station.population import (
    Population,
    dataset_schema,
    load_population,
)
from pht.station.sources import same_source, snapshot
from pht.wire import TrainInput

log = logging.getLogger(__name__)

CELL_LEVELS = 20
"""A covariate with at most this many distinct values defines cells of per-time sums."""

SURVIVAL_CLASSES = ("event_table", "risk_set_sums", "model")
"""Classes whose outputs need at least k events at a station (per-time tables, models)."""


def spanned_by_few(population: Population, covariates: Sequence[str], k: int) -> bool:
    """Whether a few patients alone span a direction of the covariates' design.

    The design is an intercept, the numeric covariates and dummies of every level of
    the others (so any coding the request may ask for lies inside its span). A
    pattern is a combination of the values of the covariates with at most
    :data:`CELL_LEVELS` values; one held by fewer than ``k`` patients is rare. If the
    design loses rank without the patients of one rare pattern (or of all rare
    patterns together, when they are fewer than ``k`` patients), some combination of
    covariates would be estimated from those patients alone: two one-hot columns
    with one patient at 0/0, or a number with its own yes/no version. Ranks come
    from the Gram matrix minus each pattern's part, so the check costs one pass
    over the rows.
    """
    parts: list[np.ndarray] = [np.ones(population.n)]
    pattern: list[np.ndarray] = []
    for column in covariates:
        raw = population.column(column)
        named = labels(raw)[0].reshape(-1).tolist()
        index = {label: j for j, label in enumerate(dict.fromkeys(named))}
        codes = np.fromiter(map(index.__getitem__, named), np.int64, len(named))
        levels = np.arange(len(index))
        if levels.size <= CELL_LEVELS:
            pattern.append(codes)
        if np.asarray(raw).dtype.kind in "biuf":
            values = np.asarray(raw, dtype=np.float64)
            spread = values.std()
            if spread > 0:
                parts.append((values - values.mean()) / spread)
        else:
            parts.extend(
                (codes.reshape(-1) == j).astype(np.float64) for j in range(levels.size)
            )
    if not pattern or population.n == 0:
        return False
    sizes = [int(codes.max()) + 1 for codes in pattern]
    if math.prod(sizes) < 2**62:  # one int64 key per pattern (mixed radix)
        key = np.zeros(population.n, dtype=np.int64)
        for codes, size in zip(pattern, sizes, strict=True):
            key = key * size + codes
        _, which, counts = np.unique(key, return_inverse=True, return_counts=True)
    else:
        _, which, counts = np.unique(
            np.stack(pattern, axis=1), axis=0, return_inverse=True, return_counts=True
        )
    which = which.reshape(-1)
    rare = np.flatnonzero(counts < k)
    if rare.size == 0:
        return False
    design = np.stack(parts, axis=1)
    gram = design.T @ design

    def rank(matrix: np.ndarray) -> int:
        eigen = np.linalg.eigvalsh((matrix + matrix.T) / 2)
        return int(np.sum(eigen > 1e-9 * max(float(eigen.max()), 1.0)))

    full = rank(gram)
    order = np.argsort(which, kind="stable")
    starts = np.searchsorted(which[order], rare)
    without_all = gram.copy()
    for pattern_id, start in zip(rare, starts, strict=True):
        rows = design[order[start : start + counts[pattern_id]]]
        part = rows.T @ rows
        without_all -= part
        if rank(gram - part) < full:
            return True
    return int(counts[rare].sum()) < k and rank(without_all) < full


def same_dataset(a: Path | DatabaseSource, b: Path | DatabaseSource) -> bool:
    """Whether two dataset entries read the same file or the same database source.

    Two entries over one table, view or cohort of one database are one source
    (:func:`pht.station.sources.same_source`), as two entries over one file are:
    they share one population, so no two requests can tell them apart by a patient.
    """
    if isinstance(a, DatabaseSource) and isinstance(b, DatabaseSource):
        return same_source(a, b)
    if isinstance(a, DatabaseSource) or isinstance(b, DatabaseSource):
        return False
    return Path(a).resolve() == Path(b).resolve()


def _events(population: Population, column: str) -> int:
    """Number of events (value 1) in a 0/1 column of the population."""
    return int(np.sum(np.asarray(population.column(column), dtype=np.float64) == 1.0))


class Extracting(StationBase):
    """Extraction: population, version, labels, grid, the extract, the job."""

    # -- extraction -----------------------------------------------------------------
    def _extract(self, admitted: Admission, run_dir: Path) -> Path:
        """The population, the guard's limits and the grid; the train's input file."""
        body, manifest = admitted.body, admitted.package.manifest
        policy, params = admitted.policy, admitted.parameters
        k = policy.min_cell_size
        data = self.config.datasets[body.dataset]
        schema_names = set(dataset_schema(data).names)
        # one population per file or database source: complete on every column any
        # policy entry over it allows (two dataset entries cannot differ by a patient)
        allowed = sorted(
            c
            for other, other_held in self.config.datasets.items()
            if same_dataset(other_held, data)
            for entry in [self.config.policy.for_dataset(other)]
            if entry is not None
            for c in entry.columns
            if c in schema_names
        )
        if isinstance(data, DatabaseSource):
            # streamed into the station's own folder: the train never sees the source
            path, query = snapshot(
                data, sorted(set(allowed)), self.config.workdir / "sources"
            )
            admitted.source = {
                "source": data.label(),
                "query_digest": query,
            }
        else:
            path = data
        population = load_population(path, sorted(set(allowed)), k)
        if population.n < k:
            raise Refusal("refused", Code.SMALL_POPULATION)
        logged = frozenset(
            str(r.details["version"])
            for r in self.audit.by_event("run")
            if r.dataset == body.dataset and r.details and r.details.get("version")
        )
        version = self.versions.admit(body.dataset, population, k, logged)
        if version is None:
            raise Refusal("refused", Code.DATA_CHANGED)
        admitted.version = version
        roles = manifest.roles_of(params)
        # if_present columns the dataset lacks are left out (the train says so)
        columns = [
            c for c in manifest.columns_of(params) if c in population.table.column_names
        ]
        for column, role in roles:
            if role in ("group", "site") and column in columns:
                held = population.labels.get(column)
                values = set(labels(population.column(column))[0].tolist())
                if held is None or not values <= held:
                    raise Refusal("refused", Code.SMALL_CELL)
            if role in ("covariate", "outcome") and column in columns:
                # whatever its type or whether the request calls it categorical (a
                # 0/1 number is one): if fewer than k patients differ from the most
                # common value, the model terms and the model checks (concordance
                # counts) would describe those few patients against a tied mass;
                # a model's outcome (events of a binary one) likewise
                _, counts = np.unique(
                    labels(population.column(column))[0].astype(str),
                    return_counts=True,
                )
                others = int(counts.sum() - counts.max()) if counts.size else 0
                if 0 < others < k:
                    raise Refusal("refused", Code.SMALL_CELL)
        covariates = [c for c, r in roles if r == "covariate" and c in columns]
        if len(covariates) > 1 and spanned_by_few(population, covariates, k):
            raise Refusal("refused", Code.SMALL_CELL)
        event = next((c for c, r in roles if r == "event"), None)
        if (
            event is not None
            and event in population.table.column_names
            and admitted.disclosure_class in SURVIVAL_CLASSES
            and _events(population, event) < k
        ):
            # said as such (not as a failed grid or a train's refusal), so the result
            # can say that these patients are not in the estimate
            raise Refusal("refused", Code.FEW_EVENTS)
        grid = None
        per_time = admitted.disclosure_class in ("event_table", "risk_set_sums")
        if per_time:
            grid = self._grid(admitted, population, roles)
        admitted.population = population
        admitted.grid = None if grid is None else tuple(float(b) for b in grid)
        labelled = [c for c, r in roles if r in ("group", "covariate", "site")]
        admitted.limits = GuardLimits(
            k,
            max_count=population.n,
            labels=population.all_labels(labelled),
            columns=frozenset(columns),
            grid=frozenset(admitted.grid or ()),
        )
        return population.extract(columns, run_dir / "data" / "columns.parquet")

    def _grid(
        self,
        admitted: Admission,
        population: Population,
        roles: Sequence[tuple[str, str]],
    ) -> np.ndarray:
        """The released grid: the station's, merged per group or covariate pattern.

        Every (group, interval) cell (KM) or (pattern of the categorical covariates,
        interval) cell (pooled Cox sums) holds k events and k censorings of every event
        column the policy allows with this time column.
        """
        policy, params = admitted.policy, admitted.parameters
        k = policy.min_cell_size
        time_col = next((c for c, r in roles if r == "time"), None)
        event_col = next((c for c, r in roles if r == "event"), None)
        if time_col is None or event_col is None:
            raise Refusal("refused", Code.GRID)
        time = np.asarray(population.column(time_col), dtype=np.float64)
        if time.size == 0 or np.any(time < 0):
            raise Refusal("error", Code.DATA)
        event_cols = population.binary_columns(policy.columns_with_role("event"))
        if event_col not in event_cols:
            raise Refusal("error", Code.COLUMN)
        grid = self.grids.grid(
            admitted.body.dataset,
            population,
            time_col,
            event_cols,
            k=k,
            step=policy.grid_step(time_col),
        )
        if grid is None:
            raise Refusal("refused", Code.GRID)
        cells = self._cells(admitted, population, roles)
        if cells is not None:
            events = [
                np.asarray(population.column(c), dtype=np.float64) for c in event_cols
            ]
            grid = refine_for_groups(grid, time, events, cells, k=k)
            if grid is None:
                raise Refusal("refused", Code.GRID)
        step = params.get("time_grid")
        if isinstance(step, int | float) and step >= policy.grid_step(time_col):
            grid = coarser(grid, float(step))
        return grid

    @staticmethod
    def _cells(
        admitted: Admission,
        population: Population,
        roles: Sequence[tuple[str, str]],
    ) -> np.ndarray | None:
        """Per row, the cell label its per-time counts are released in (or None)."""
        if admitted.package.manifest.rounds == "single":
            group = next((c for c, r in roles if r == "group"), None)
            if group is None:
                return None
            return labels(population.column(group))[0]
        # every covariate with few distinct values is a cell maker, whatever its type
        # or whether the request calls it categorical (a 0/1 integer column is one)
        categorical = [
            c
            for c, r in roles
            if r == "covariate"
            and np.unique(population.column(c).astype(str)).size <= CELL_LEVELS
        ]
        if not categorical:
            return None
        parts = [labels(population.column(c))[0].tolist() for c in categorical]
        return np.asarray(
            ["\x1f".join(p) for p in zip(*parts, strict=True)], dtype=object
        )

    def prepare(self, admitted: Admission) -> tuple[Job, Path]:
        """A fresh run folder named by the station, the extracted data, the job."""
        manifest = admitted.package.manifest
        run_dir = self.config.workdir / "runs" / str(uuid.uuid4())
        (run_dir / "output").mkdir(parents=True, exist_ok=False)
        try:
            data = self._extract(admitted, run_dir)
        except Refusal:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        except (DataError, OSError, ValueError) as exc:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise data_refusal(self.id, exc) from None
        train_input = TrainInput(
            request_id=admitted.body.request_id,
            train=str(manifest.ref),
            parameters=dict(admitted.parameters),
            columns=tuple(
                c
                for c in manifest.columns_of(admitted.parameters)
                if admitted.population is None
                or c in admitted.population.table.column_names
            ),
            min_count=admitted.policy.min_cell_size,
            grid=admitted.grid,
            rules=admitted.policy.rules,
        )
        input_file = run_dir / "input.json"
        input_file.write_text(train_input.to_json(), encoding="utf-8")
        job = Job(
            entrypoint=admitted.package.entrypoint,
            input_file=input_file,
            dataset=data,
            output_dir=run_dir / "output",
            workdir=run_dir,
            limits=self.limits,
            image=admitted.statement.image_digest,
        )
        return job, run_dir

    def _event_tables(self, admitted: Admission) -> dict[str, Any]:
        """The ``event_table`` output the station computes from its own extract."""
        from pht.algorithms.disclosure import coarsen
        from pht.algorithms.km import local_event_tables

        population, grid = admitted.population, admitted.grid
        if population is None or not grid:
            raise DisclosureError("no station grid for an event table")
        roles = admitted.package.manifest.roles_of(admitted.parameters)
        column = {r: c for c, r in reversed(roles)}
        if "time" not in column or "event" not in column:
            raise DisclosureError("an event table needs a time and an event column")
        group = column.get("group")
        try:
            tables = local_event_tables(
                coarsen(population.column(column["time"]), grid),
                population.column(column["event"]),
                None if group is None else population.column(group),
                min_count=admitted.policy.min_cell_size,
            )
        except PhtError:
            raise DisclosureError("the station's own table is not releasable") from None
        return {
            "n": tables.n,
            "events": tables.n_events,
            "excluded": 0,
            "level_type": tables.level_type,
            "groups": {label: t.to_dict() for label, t in tables.tables.items()},
        }
