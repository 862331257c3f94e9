"""A station: answers a signed request with a sealed aggregate and a signed receipt.

The station is a pipeline; every step is audit-logged and a failure at any step is a
refusal with a fixed, data-free code (:mod:`pht.station.codes`), never an exception:

1. **admission** (pure checks, nothing runs): the envelope and every signed field
   (:func:`pht.signing.verify_signed_request`: signature by a requester key in the
   keyring, fresh, addressed here, user and role from the key's keyring entry), replay
   (request ids and nonces seen before, kept in the audit log), the policy (dataset,
   purpose, organisation and role, train name, version, signer and digests, columns
   and the roles the request gives them, disclosure class, the process-sandbox rule),
   the query budget per key and per organisation;
2. **extraction** (:mod:`pht.station.population`): the dataset's one fixed population
   (rows complete on every allowed column), only the columns the request needs written
   to the run folder, and for per-time outputs the station's own time grid;
3. **executor**: the train runs in the sandbox on the extracted file only;
4. **release**: the output guard (schema, integers bounded by the population, labels
   the station observed with at least k rows, times on the station's grid, every cell
   at least k), then manual review or sealing to the requester, the release record and
   a signed receipt naming the audit checkpoint. One release path serves single-round
   runs, every round of an iterative session (:mod:`pht.station.sessions`) and
   reviewed outputs.

The run folder is named by the station (a fresh UUID), created new for each run and
removed after it; the station never deletes what it did not create.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pht.algorithms.disclosure import coarser, refine_for_groups
from pht.crypto import (
    Identity,
    PublicIdentity,
    canonical_json,
    digest,
    seal,
    sealed_digest,
)
from pht.errors import ConfigError, DataError, DisclosureError, ExecutorError, PhtError
from pht.keyring import Keyring
from pht.manifest import Catalogue, TrainPackage
from pht.signing import (
    Receipt,
    SignedRequestBody,
    TrainStatement,
    sign_receipt,
    utc_now,
    verify_signed_request,
    verify_train,
)
from pht.station.audit import AuditLog
from pht.station.codes import Code
from pht.station.executors import Executor, Job, Limits
from pht.station.guard import Guard, GuardLimits, parse_strict
from pht.station.kernels import KERNELS
from pht.station.policy import DatasetPolicy, Policy
from pht.station.population import (
    GridStore,
    Population,
    VersionStore,
    dataset_schema,
    load_population,
)
from pht.wire import STATUSES, Reply, TrainInput, TrainRef

log = logging.getLogger(__name__)
MAX_REASON = 300
CELL_LEVELS = 20
"""A covariate with at most this many distinct values defines cells of per-time sums."""


@dataclass(frozen=True)
class StationConfig:
    """Who a station is and what it holds."""

    id: str
    name: str
    datasets: Mapping[str, Path]
    policy: Policy
    workdir: Path
    identity: Identity
    keyring: Keyring
    executor: str = "process"
    witness: Path | None = None


def kind_problem(kind: str, dtype: Any) -> bool:
    """Whether a column of arrow ``dtype`` cannot serve as ``kind``."""
    import pyarrow as pa

    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    if kind == "numeric":
        return not numeric
    if kind == "binary":
        return not (numeric or pa.types.is_boolean(dtype))
    return not (
        numeric
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_dictionary(dtype)
    )


def clean_reason(text: str | None) -> str | None:
    """Station-authored text cut to printable characters of bounded length."""
    if text is None:
        return None
    printable = "".join(ch for ch in str(text) if ch.isprintable())
    return printable[:MAX_REASON]


@dataclass
class Admission:
    """An admitted request: everything needed to run and release it."""

    body: SignedRequestBody
    requester: PublicIdentity
    key_id: str
    package: TrainPackage
    statement: TrainStatement
    signer: PublicIdentity
    parameters: dict[str, Any]
    policy: DatasetPolicy
    disclosure_class: str
    fields: dict[str, Any] = field(default_factory=dict)
    limits: GuardLimits | None = None
    population: Population | None = None
    grid: tuple[float, ...] | None = None
    version: str | None = None


class Refusal(Exception):
    """Internal: stop the pipeline with a status and a fixed code."""

    def __init__(self, status: str, code: Code, detail: str = "") -> None:
        super().__init__(code.reason)
        self.status = status
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        """The fixed reason, with a station-authored detail where one is safe."""
        return self.code.reason + (f" ({self.detail})" if self.detail else "")


class Station:
    """One data station with its datasets, policy, keys, executor and audit log."""

    def __init__(
        self, config: StationConfig, executor: Executor, catalogue: Catalogue
    ) -> None:
        self.config = config
        self.executor = executor
        self.catalogue = catalogue
        config.workdir.mkdir(parents=True, exist_ok=True)
        self.audit = AuditLog.open(
            config.workdir / "audit",
            config.id,
            config.identity.signing,
            anchor=config.workdir / "audit.anchor",
            witness=config.witness,
        )
        self.limits = Limits()
        self.grids = GridStore(config.workdir / "grids")
        self.versions = VersionStore(config.workdir / "versions")
        # replay check, budget check and the decision record happen as one step, so
        # concurrent requests cannot all pass a budget that has room for one
        self._admission = threading.Lock()
        self._record_changes()
        self._seen: set[str] = set()
        for record in self.audit.records():
            if record.event == "request_received" and record.request_id:
                self._seen.add(record.request_id)
            nonce = record.details.get("nonce") if record.details else None
            if isinstance(nonce, str):
                self._seen.add(nonce)

    @property
    def id(self) -> str:
        """The station id."""
        return self.config.id

    def _record_changes(self) -> None:
        """Log a policy_change / key_change record when the files changed."""
        current = {
            "policy_change": digest(self.config.policy.source.read_bytes()),
            "key_change": digest(
                canonical_json(
                    sorted(
                        f"{e.key_id}:{','.join(e.roles)}:{e.revoked_at}:{e.valid_until}"
                        for e in self.config.keyring.entries
                    )
                )
            ),
        }
        last: dict[str, str | None] = {"policy_change": None, "key_change": None}
        for record in self.audit.records():
            if record.event in last:
                last[record.event] = record.output_digest
        for event, value in current.items():
            if last[event] != value:
                self.audit.append(
                    event,
                    "success",
                    output_digest=value,
                    reason="policy file changed"
                    if event == "policy_change"
                    else "keyring changed",
                )

    # -- replies ------------------------------------------------------------------
    def _reply(
        self, request_id: str, status: str, reason: str | None, **kw: Any
    ) -> Reply:
        if status not in STATUSES:
            raise ValueError(status)
        return Reply(
            request_id=request_id,
            station=self.id,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            executor=self.executor.name,
            **kw,
        )

    def reply(self, request_id: str, status: str, reason: str | None) -> Reply:
        """A reply that is not logged (a message to a closed session)."""
        return self._reply(request_id, status, reason)

    def _refuse(
        self, rid: str, refusal: Refusal, event: str, /, **fields: Any
    ) -> Reply:
        fields = {**fields, "request_id": rid}
        status = refusal.status
        self.audit.append(
            event if status == "refused" else "error",
            "refused" if status == "refused" else "error",
            reason=refusal.reason,
            **fields,
        )
        log.info("station %s %s request %s: %s", self.id, status, rid, refusal.reason)
        return self._reply(rid, status, refusal.reason)

    def refuse(self, admitted: Admission, refusal: Refusal) -> Reply:
        """Log and return a refusal of an admitted request."""
        return self._refuse(
            admitted.body.request_id, refusal, "refusal", **admitted.fields
        )

    # -- admission ----------------------------------------------------------------
    def _admit(self, envelope: Any) -> Admission | Reply:
        with self._admission:
            return self._admit_locked(envelope)

    def _admit_locked(self, envelope: Any) -> Admission | Reply:
        try:
            verified = verify_signed_request(envelope, self.config.keyring, self.id)
        except PhtError as exc:
            log.info("station %s rejected a request: %s", self.id, exc)
            return self._refuse("unknown", _trust_refusal(str(exc)), "request_received")
        body = verified.body
        if body.request_id in self._seen or body.nonce in self._seen:
            return self._refuse(
                body.request_id, Refusal("refused", Code.REPLAYED), "request_received"
            )
        self._seen.update((body.request_id, body.nonce))
        fields = {
            "request_id": body.request_id,
            "user": verified.user,
            "organisation": verified.organisation,
            "role": verified.role,
            "purpose": body.purpose,
            "dataset": body.dataset,
            "train": body.train,
            "train_digest": body.train_digest,
        }
        self.audit.append(
            "request_received",
            "success",
            details={"nonce": body.nonce, "key": verified.requester.key_id},
            **fields,
        )
        try:
            admission = self._decide(body, verified.requester, fields)
        except Refusal as r:
            return self._refuse(body.request_id, r, "policy_decision", **fields)
        self.audit.append(
            "policy_decision",
            "success",
            decision="admit",
            details={
                "signer": admission.signer.key_id,
                "class": admission.disclosure_class,
                "key": admission.key_id,
            },
            **fields,
        )
        return admission

    def _decide(
        self, body: SignedRequestBody, requester: PublicIdentity, fields: dict[str, Any]
    ) -> Admission:
        if body.dataset not in self.config.datasets:
            raise Refusal("refused", Code.DATASET)
        policy = self.config.policy.for_dataset(body.dataset)
        if policy is None:
            raise Refusal("refused", Code.DATASET)
        if policy.purpose_refusal(body.purpose):
            raise Refusal("refused", Code.PURPOSE)
        if policy.requester_refusal(fields["organisation"], fields["role"]):
            raise Refusal("refused", Code.REQUESTER)
        try:
            statement, signer = verify_train(body.train_statement, self.config.keyring)
            package = self.catalogue.get(TrainRef.parse(body.train))
        except PhtError as exc:
            log.info("station %s train rejected: %s", self.id, exc)
            raise Refusal("refused", Code.TRAIN) from None
        m = package.manifest
        if (
            (statement.name, statement.version) != (m.name, m.version)
            or statement.code_digest != package.digest
            or body.train_digest != package.digest
            or statement.manifest_sha256 != digest(package.manifest_bytes)
        ):
            raise Refusal("refused", Code.TRAIN, "digest mismatch")
        if policy.train_refusal(m.name, m.version, signer.key_id, signer.name):
            raise Refusal("refused", Code.TRAIN)
        parameters, problems = m.resolve(body.parameters)
        if problems:
            raise Refusal("error", Code.PARAMETERS)
        self._check_columns(package, body.dataset, parameters, policy)
        disclosure_class = m.output_class_for(parameters)
        if policy.class_refusal(disclosure_class):
            raise Refusal("refused", Code.CLASS)
        if policy.review == "manual" and m.rounds == "iterative":
            raise Refusal("refused", Code.REVIEW_ITERATIVE)
        if m.rounds == "iterative" and (
            m.session is None or m.session.kernel not in KERNELS
        ):
            # iterative answers leave only when the station can recompute them
            raise Refusal("refused", Code.TRAIN)
        missing = getattr(self.executor, "missing_controls", lambda: ())()
        if missing and not policy.unsafe_process_sandbox:
            log.warning("station %s lacks sandbox controls: %s", self.id, missing)
            raise Refusal("refused", Code.SANDBOX)
        self._check_budget(requester.key_id, fields["organisation"], body, policy)
        return Admission(
            body=body,
            requester=requester,
            key_id=requester.key_id,
            package=package,
            statement=statement,
            signer=signer,
            parameters=parameters,
            policy=policy,
            disclosure_class=disclosure_class,
            fields=fields,
        )

    def _check_columns(
        self,
        package: TrainPackage,
        dataset: str,
        parameters: Mapping[str, Any],
        policy: DatasetPolicy,
    ) -> None:
        manifest = package.manifest
        columns = manifest.columns_of(parameters)
        if policy.column_refusal(list(columns)):
            raise Refusal("refused", Code.COLUMN)
        if policy.role_refusal(manifest.roles_of(parameters)):
            raise Refusal("refused", Code.COLUMN)
        try:
            schema = dataset_schema(self.config.datasets[dataset])
        except DataError:
            raise Refusal("error", Code.DATA) from None
        for column, kind in columns.items():
            index = schema.get_field_index(column)
            if index < 0 or kind_problem(kind, schema.field(index).type):
                raise Refusal("error", Code.COLUMN)

    def budget_used(
        self, key_id: str, organisation: str, dataset: str, policy: DatasetPolicy
    ) -> tuple[int, int]:
        """Query units used in the budget period: by this key, by its organisation."""
        assert policy.budget is not None
        since = utc_now() - dt.timedelta(days=policy.budget.period_days)
        by_key = by_org = 0
        rounds_key: dict[str, int] = {}
        rounds_org: dict[str, int] = {}
        for r in (
            *self.audit.by_event("policy_decision"),
            *self.audit.by_event("release"),
        ):
            if r.dataset != dataset or r.organisation != organisation:
                continue
            if _parse(r.time) < since:
                continue
            mine = (r.details or {}).get("key") == key_id
            if r.event == "policy_decision" and r.outcome == "success":
                by_org += 1
                by_key += 1 if mine else 0
            elif r.event == "release" and r.request_id:
                if int((r.details or {}).get("round", 0)) > 0:
                    rounds_org[r.request_id] = rounds_org.get(r.request_id, 0) + 1
                    if mine:
                        rounds_key[r.request_id] = rounds_key.get(r.request_id, 0) + 1
        per = policy.budget.rounds_per_query
        by_key += sum(n // per for n in rounds_key.values())
        by_org += sum(n // per for n in rounds_org.values())
        return by_key, by_org

    def _check_budget(
        self,
        key_id: str,
        organisation: str,
        body: SignedRequestBody,
        policy: DatasetPolicy,
    ) -> None:
        if policy.budget is None:
            return
        by_key, by_org = self.budget_used(key_id, organisation, body.dataset, policy)
        if (
            by_key >= policy.budget.queries
            or by_org >= policy.budget.organisation_queries
        ):
            raise Refusal("refused", Code.BUDGET)

    # -- extraction -----------------------------------------------------------------
    def _extract(self, admitted: Admission, run_dir: Path) -> Path:
        """The population, the guard's limits and the grid; the train's input file."""
        body, manifest = admitted.body, admitted.package.manifest
        policy, params = admitted.policy, admitted.parameters
        k = policy.min_cell_size
        path = self.config.datasets[body.dataset]
        schema_names = set(dataset_schema(path).names)
        # one population per file: complete on every column any policy entry over
        # this file allows (two dataset entries cannot differ by a patient)
        allowed = sorted(
            c
            for other, other_path in self.config.datasets.items()
            if Path(other_path).resolve() == Path(path).resolve()
            for entry in [self.config.policy.for_dataset(other)]
            if entry is not None
            for c in entry.columns
            if c in schema_names
        )
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
        columns = list(manifest.columns_of(params))
        for column, role in roles:
            if role == "group":
                held = population.labels.get(column)
                values = {str(v) for v in population.column(column).tolist()}
                if held is None or not values <= held:
                    raise Refusal("refused", Code.SMALL_CELL)
        grid = None
        per_time = admitted.disclosure_class in ("event_table", "risk_set_sums")
        if per_time:
            grid = self._grid(admitted, population, roles)
        admitted.population = population
        admitted.grid = None if grid is None else tuple(float(b) for b in grid)
        labelled = [c for c, r in roles if r in ("group", "covariate")]
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
            return np.asarray(
                [str(v) for v in population.column(group).tolist()], dtype=object
            )
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
        parts = [[str(v) for v in population.column(c).tolist()] for c in categorical]
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
            log.warning("station %s extraction failed: %s", self.id, exc)
            raise Refusal("error", Code.DATA) from None
        train_input = TrainInput(
            request_id=admitted.body.request_id,
            train=str(manifest.ref),
            parameters=dict(admitted.parameters),
            columns=tuple(manifest.columns_of(admitted.parameters)),
            min_count=admitted.policy.min_cell_size,
            grid=admitted.grid,
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

    # -- running and releasing ----------------------------------------------------
    def handle(self, envelope: Any) -> Reply:
        """Decide on, run and answer one single-round request. Never raises."""
        try:
            return self._handle(envelope)
        except Exception:  # noqa: BLE001 - any failure is a logged refusal
            log.exception("station %s: internal error", self.id)
            rid = _request_id(envelope)
            try:
                return self._refuse(rid, Refusal("error", Code.INTERNAL), "error")
            except Exception:  # noqa: BLE001 - the audit log itself failed
                return self._reply(rid, "error", Code.INTERNAL.reason)

    def _handle(self, envelope: Any) -> Reply:
        admitted = self._admit(envelope)
        if isinstance(admitted, Reply):
            return admitted
        if admitted.package.manifest.rounds != "single":
            return self.refuse(admitted, Refusal("error", Code.PARAMETERS))
        try:
            job, run_dir = self.prepare(admitted)
        except Refusal as r:
            return self.refuse(admitted, r)
        try:
            self.audit.append(
                "run",
                "success",
                **admitted.fields,
                details={
                    "executor": self.executor.name,
                    "version": admitted.version or "",
                },
            )
            try:
                result = self.executor.run(job)
            except ExecutorError as exc:
                log.warning("station %s executor: %s", self.id, exc)
                return self.refuse(admitted, Refusal("error", Code.EXECUTOR))
            if result.stderr_tail:
                log.debug("station %s train stderr: %s", self.id, result.stderr_tail)
            if result.timed_out:
                return self.refuse(admitted, Refusal("error", Code.TIMEOUT))
            if result.output is None:
                return self.refuse(admitted, Refusal("error", Code.TRAIN_FAILED))
            return self.release(admitted, result.output, None)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def guarded(
        self,
        admitted: Admission,
        raw: bytes,
        op: str | None,
        expect: Callable[[Any], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """The train's aggregate after the output guard, or a :class:`Refusal`."""
        limits = admitted.limits or GuardLimits(admitted.policy.min_cell_size)
        try:
            message = parse_strict(raw, limits)
            if not isinstance(message, dict) or message.get("status") not in STATUSES:
                raise DisclosureError("the train's output message is malformed")
            if set(message) - {"wire", "status", "reason", "output"}:
                raise DisclosureError("the train's output message has undeclared keys")
            if message["status"] == "refused":
                raise Refusal("refused", Code.TRAIN_REFUSED)
            if message["status"] != "ok":
                raise Refusal("error", Code.TRAIN_FAILED)
            schema = admitted.package.manifest.schema_for(op)
            Guard(limits).check(message.get("output"), schema)
            if expect is not None:
                replacement = expect(message["output"])
                if replacement is not None:
                    message["output"] = replacement
            if admitted.disclosure_class == "event_table" and op is None:
                # the class is the station's: per group, events and censorings per
                # interval of its grid. It recomputes the table from the extract it
                # gave the train and releases nothing else (no bits ride on it)
                if message["output"] != self._event_tables(admitted):
                    raise DisclosureError("the event tables differ from the station's")
        except DisclosureError as exc:
            log.info("station %s output guard: %s", self.id, exc)
            raise Refusal("refused", Code.GUARD) from None
        except ConfigError:
            raise Refusal("refused", Code.GUARD) from None
        return message["output"]  # type: ignore[no-any-return]

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
                None if group is None else population.column(group).astype(object),
                min_count=admitted.policy.min_cell_size,
            )
        except PhtError:
            raise DisclosureError("the station's own table is not releasable") from None
        return {
            "n": tables.n,
            "events": tables.n_events,
            "excluded": 0,
            "groups": {label: t.to_dict() for label, t in tables.tables.items()},
        }

    def release(
        self,
        admitted: Admission,
        raw: bytes,
        op: str | None,
        round_no: int = 0,
        extra: Mapping[str, Any] | None = None,
        sink: dict[str, Any] | None = None,
        expect: Callable[[Any], dict[str, Any] | None] | None = None,
    ) -> Reply:
        """Guard, then review or seal, log and sign: the one release path.

        ``sink`` receives the released output (for the session that asked).
        """
        body = admitted.body
        try:
            output = self.guarded(admitted, raw, op, expect)
        except Refusal as r:
            return self.refuse(admitted, r)
        if extra:
            output = {**output, **extra}
        if sink is not None:
            sink.clear()
            sink.update(output)
        plain = canonical_json(output)
        output_digest = digest(plain)
        common = {
            "disclosure_class": admitted.disclosure_class,
            "train_digest": admitted.statement.code_digest,
            # the orchestrator shows results by station name only where allowed
            "details": {"show_station_name": admitted.policy.show_station_name},
        }
        if admitted.policy.review == "manual":
            pending = self._review_dir() / f"{body.request_id}.json"
            pending.write_bytes(plain)
            self.audit.append(
                "review", "pending", output_digest=output_digest, **admitted.fields
            )
            self._save_admission(admitted)
            return self._reply(
                body.request_id, "pending", Code.REVIEW_PENDING.reason, **common
            )
        sealed, receipt = self._seal_for(
            body.request_id,
            admitted.requester,
            admitted.statement.code_digest,
            {**admitted.fields},
            plain,
            round_no,
            admitted.key_id,
        )
        return self._reply(
            body.request_id, "ok", None, sealed=sealed, receipt=receipt, **common
        )

    def _seal_for(
        self,
        request_id: str,
        requester: PublicIdentity,
        train_digest: str,
        fields: Mapping[str, Any],
        plain: bytes,
        round_no: int,
        key_id: str,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Seal ``plain`` to the requester, log the release, sign the receipt."""
        output_digest = digest(plain)
        sealed = seal(
            plain,
            requester.sealing_key,
            request_id=request_id,
            station_id=self.id,
            manifest_digest=train_digest,
        )
        self.audit.append(
            "release",
            "success",
            output_digest=output_digest,
            details={"round": round_no, "key": key_id},
            **fields,
        )
        checkpoint = self.audit.checkpoint()
        receipt = Receipt(
            request_id=request_id,
            station=self.id,
            round=round_no,
            output_digest=output_digest,
            sealed_digest=sealed_digest(sealed),
            audit_size=checkpoint.size,
            audit_root=checkpoint.root,
            time=utc_now().isoformat(),
        )
        return sealed, sign_receipt(receipt, self.config.identity)

    # -- manual review --------------------------------------------------------------
    def _review_dir(self) -> Path:
        folder = self.config.workdir / "review"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _review_path(self, request_id: str, suffix: str) -> Path:
        try:
            canonical = str(uuid.UUID(request_id))
        except (ValueError, TypeError, AttributeError):
            raise ConfigError("not a request id; see `list`") from None
        if canonical != request_id:
            raise ConfigError("not a request id; see `list`")
        return self._review_dir() / f"{request_id}{suffix}"

    def _save_admission(self, admitted: Admission) -> None:
        path = self._review_path(admitted.body.request_id, ".request.json")
        path.write_text(
            json.dumps(
                {
                    "requester": admitted.requester.to_dict(),
                    "fields": admitted.fields,
                    "key": admitted.key_id,
                    "train_digest": admitted.statement.code_digest,
                    "disclosure_class": admitted.disclosure_class,
                }
            ),
            encoding="utf-8",
        )

    def pending(self) -> list[str]:
        """Request ids whose output waits for review."""
        folder = self.config.workdir / "review"
        if not folder.is_dir():
            return []
        return sorted(
            p.name.removesuffix(".json")
            for p in folder.glob("*.json")
            if not p.name.endswith((".request.json", ".reply.json"))
        )

    def show_pending(self, request_id: str) -> dict[str, Any]:
        """The pending output and who asked for it (for the reviewer)."""
        output = self._review_path(request_id, ".json")
        if not output.is_file():
            raise ConfigError(f"no pending output for request {request_id}; see `list`")
        meta = json.loads(self._review_path(request_id, ".request.json").read_text())
        return {"request": meta["fields"], "output": json.loads(output.read_bytes())}

    def review(
        self, request_id: str, approve: bool, reviewer: str, reason: str = ""
    ) -> Reply:
        """Approve (seal and release) or reject a pending output."""
        output_path = self._review_path(request_id, ".json")
        if not output_path.is_file():
            raise ConfigError(f"no pending output for request {request_id}; see `list`")
        meta = json.loads(self._review_path(request_id, ".request.json").read_text())
        fields = meta["fields"]
        plain = output_path.read_bytes()
        if not approve:
            self.audit.append(
                "review",
                "rejected",
                reason=clean_reason(reason) or "rejected",
                details={"reviewer": clean_reason(reviewer) or "unknown"},
                **fields,
            )
            reply = self._reply(request_id, "refused", Code.REVIEW_REJECTED.reason)
        else:
            self.audit.append(
                "review",
                "approved",
                output_digest=digest(plain),
                details={"reviewer": clean_reason(reviewer) or "unknown"},
                **fields,
            )
            sealed, receipt = self._seal_for(
                request_id,
                PublicIdentity.from_dict(meta["requester"]),
                meta["train_digest"],
                fields,
                plain,
                0,
                meta.get("key", ""),
            )
            reply = self._reply(
                request_id,
                "ok",
                None,
                sealed=sealed,
                receipt=receipt,
                disclosure_class=meta["disclosure_class"],
                train_digest=meta["train_digest"],
            )
        self._review_path(request_id, ".reply.json").write_text(
            reply.to_json(), encoding="utf-8"
        )
        output_path.unlink()
        return reply

    def collect(self, request_id: str) -> Reply | None:
        """A reviewed reply waiting to be collected by the requester, if any."""
        try:
            path = self._review_path(request_id, ".reply.json")
        except ConfigError:
            return None
        return Reply.from_json(path.read_bytes()) if path.is_file() else None

    # -- sessions -------------------------------------------------------------------
    def open_session(self, envelope: Any) -> tuple[Reply, Any]:
        """Admit an iterative request and start its train; the reply to round 0."""
        from pht.station.sessions import open_session

        try:
            return open_session(self, envelope)
        except Exception:  # noqa: BLE001 - any failure is a logged refusal
            log.exception("station %s: internal error", self.id)
            rid = _request_id(envelope)
            return self._refuse(rid, Refusal("error", Code.INTERNAL), "error"), None

    def admit(self, envelope: Any) -> Admission | Reply:
        """Admission only (for sessions)."""
        return self._admit(envelope)


_FIELD = re.compile(r"field '([a-z_]{1,32})'")
_SIGNED_FIELDS = frozenset(
    {
        "type",
        "request_id",
        "nonce",
        "issued_at",
        "expires_at",
        "organisation",
        "user",
        "role",
        "purpose",
        "train",
        "train_digest",
        "train_statement",
        "dataset",
        "parameters",
        "targets",
    }
)


def _trust_refusal(message: str) -> Refusal:
    """A trust failure as a fixed code, naming at most a signed field (never a value).

    The full text stays in the station's log.
    """
    field_name = _FIELD.search(message)
    if field_name and field_name.group(1) in _SIGNED_FIELDS:
        return Refusal("refused", Code.MALFORMED, f"field '{field_name.group(1)}'")
    return Refusal("refused", _trust_code(message))


def _trust_code(message: str) -> Code:
    """The fixed code of a trust failure (its text stays in the station's log)."""
    text = message.lower()
    if "unsigned" in text or "bad signature" in text or "does not verify" in text:
        return Code.SIGNATURE
    if "envelope" in text or "payload" in text:
        return Code.MALFORMED
    if "expired" in text or "future" in text or "lifetime" in text:
        return Code.EXPIRED
    if "not addressed" in text:
        return Code.ELSEWHERE
    if "role" in text or "user" in text or "organisation" in text:
        return Code.IDENTITY
    if "unsigned" in text or "no signature" in text or "signature" in text:
        return Code.SIGNATURE
    return Code.REJECTED


def _request_id(envelope: Any) -> str:
    """A label for a refusal before verification: never taken from the input."""
    return "unknown"


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
