"""A station: answers a signed request with a sealed aggregate and a signed receipt.

In order, refusing with a reason at the first failure (every step is audit-logged):

1. the request is signed by a requester key in the station's keyring, valid now, fresh
   (not expired, not replayed) and addressed to this station;
2. the policy has an entry for the dataset, allows the purpose and the requester's
   organisation and role;
3. the train statement is signed by a trusted methodologist key that was valid when it
   signed and is valid now, the policy allows the train, version and signer, and the
   code digest of the station's own copy equals the signed digest;
4. the parameters fit the manifest, the named columns exist with the right kind and are
   allowed by the policy, the disclosure class is allowed, the requester's query
   budget for the dataset is not spent;

then the train runs through the executor. Its output passes the output guard (schema
and disclosure rules) or is refused; in ``manual`` review it waits for a person; else
it is sealed to the requester (HPKE, bound to request, station and train digest), the
release is logged, and the station signs a receipt naming the audit checkpoint. A
train's stdout, stderr and tracebacks stay in the station's working folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pht.crypto import (
    Identity,
    PublicIdentity,
    canonical_json,
    digest,
    seal,
    sealed_digest,
)
from pht.errors import (
    ConfigError,
    DataError,
    DisclosureError,
    ExecutorError,
    TrustError,
)
from pht.keyring import Keyring
from pht.manifest import Catalogue, TrainPackage
from pht.signing import (
    Receipt,
    SignedRequestBody,
    TrainStatement,
    sign_receipt,
    utc_now,
    verify_request,
    verify_train,
)
from pht.station.audit import AuditLog
from pht.station.executors import Channel, Executor, Job, Limits
from pht.station.guard import Guard, GuardLimits, parse_strict
from pht.station.policy import DatasetPolicy, Policy
from pht.wire import STATUSES, Reply, TrainInput

log = logging.getLogger(__name__)
MAX_REASON = 300


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


def dataset_schema(path: Path) -> pa.Schema:
    """The column types of a Parquet or CSV dataset."""
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found; check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_schema(path)
        if suffix == ".csv":
            return pacsv.read_csv(path).schema
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot be read as {suffix[1:]} ({exc})") from None
    raise DataError(f"{path}: format '{suffix}' is not supported; use .parquet or .csv")


def kind_problem(kind: str, dtype: pa.DataType) -> str | None:
    """Why a column of ``dtype`` cannot serve as ``kind``, or None."""
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    if kind == "numeric" and not numeric:
        return f"must be numeric, but has type {dtype}"
    if kind == "binary" and not (numeric or pa.types.is_boolean(dtype)):
        return f"must be 0/1 or boolean, but has type {dtype}"
    if kind == "categorical" and not (
        numeric
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_dictionary(dtype)
    ):
        return f"must be categorical (text, integer or boolean), but has type {dtype}"
    return None


def clean_reason(text: str | None) -> str | None:
    """A train-authored reason, cut to printable text of bounded length."""
    if text is None:
        return None
    printable = "".join(ch for ch in str(text) if ch.isprintable())
    return printable[:MAX_REASON]


@dataclass
class Admission:
    """An admitted request: everything needed to run and release it."""

    body: SignedRequestBody
    requester: PublicIdentity
    package: TrainPackage
    statement: TrainStatement
    signer: PublicIdentity
    parameters: dict[str, Any]
    policy: DatasetPolicy
    disclosure_class: str
    fields: dict[str, Any] = field(default_factory=dict)


class Refusal(Exception):
    """Internal: stop admission with a status and reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
            config.workdir / "audit", config.id, config.identity.signing
        )
        self.last_released: dict[str, Any] = {}
        self.limits = Limits()
        self._record_changes()
        self._nonces_path = config.workdir / "nonces.log"
        self._nonces = set(
            self._nonces_path.read_text().split() if self._nonces_path.exists() else ()
        )

    @property
    def id(self) -> str:
        """The station id."""
        return self.config.id

    def _record_changes(self) -> None:
        """Log a policy_change / key_change record when the files changed.

        Compared with the last ones this station logged (first start included).
        """
        current = {
            "policy_change": digest(self.config.policy.source.read_bytes()),
            "key_change": digest(
                canonical_json(
                    sorted(
                        e.key_id
                        + ":"
                        + ",".join(e.roles)
                        + ":"
                        + str(e.revoked_at)
                        + ":"
                        + str(e.valid_until)
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
                    details={
                        "source": str(self.config.policy.source)
                        if event == "policy_change"
                        else "keyring"
                    },
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

    def _refuse(
        self, rid: str, status: str, reason: str, event: str, /, **fields: Any
    ) -> Reply:
        fields = {**fields, "request_id": rid}
        self.audit.append(
            event if status == "refused" else "error",
            "refused" if status == "refused" else "error",
            reason=reason,
            **fields,
        )
        log.info("station %s %s request %s: %s", self.id, status, rid, reason)
        return self._reply(rid, status, reason)

    # -- admission ----------------------------------------------------------------
    def _verify(
        self, envelope: Mapping[str, Any]
    ) -> tuple[SignedRequestBody, PublicIdentity]:
        try:
            body, requester = verify_request(envelope, self.config.keyring, self.id)
        except TrustError as exc:
            raise Refusal("refused", f"request rejected: {exc}") from None
        token = f"{body.request_id}:{body.nonce}"
        if body.nonce in self._nonces or body.request_id in self._nonces:
            raise Refusal("refused", "request rejected: replayed (nonce seen before)")
        with open(self._nonces_path, "a", encoding="utf-8") as handle:
            handle.write(f"{body.nonce}\n{body.request_id}\n")
        self._nonces.update(token.split(":"))
        return body, requester

    def _admit(self, envelope: Mapping[str, Any]) -> Admission | Reply:
        request_id = (
            clean_reason(str(_peek(envelope, "request_id") or "unknown")) or "unknown"
        )[:64]
        try:
            body, requester = self._verify(envelope)
        except Refusal as r:
            return self._refuse(request_id, r.status, r.reason, "request_received")
        fields = {
            "request_id": body.request_id,
            "user": body.user,
            "organisation": body.organisation,
            "role": body.role,
            "purpose": body.purpose,
            "dataset": body.dataset,
            "train": body.train,
            "train_digest": body.train_digest,
        }
        self.audit.append("request_received", "success", **fields)
        try:
            admission = self._decide(body, requester, fields)
        except Refusal as r:
            return self._refuse(
                body.request_id, r.status, r.reason, "policy_decision", **fields
            )
        self.audit.append(
            "policy_decision",
            "success",
            decision="admit",
            details={
                "signer": admission.signer.key_id,
                "class": admission.disclosure_class,
            },
            **fields,
        )
        return admission

    def _decide(
        self, body: SignedRequestBody, requester: PublicIdentity, fields: dict[str, Any]
    ) -> Admission:
        if body.dataset not in self.config.datasets:
            raise Refusal("refused", f"this station holds no dataset '{body.dataset}'")
        policy = self.config.policy.for_dataset(body.dataset)
        if policy is None:
            raise Refusal(
                "refused", f"the policy has no entry for dataset '{body.dataset}'"
            )
        for refusal in (
            policy.purpose_refusal(body.purpose),
            policy.requester_refusal(body.organisation, body.role),
        ):
            if refusal:
                raise Refusal("refused", refusal)
        try:
            statement, signer = verify_train(body.train_statement, self.config.keyring)
        except TrustError as exc:
            raise Refusal("refused", f"train rejected: {exc}") from None
        try:
            package = self.catalogue.get(_ref(body.train))
        except ConfigError as exc:
            raise Refusal("refused", str(exc)) from None
        m = package.manifest
        if (statement.name, statement.version) != (m.name, m.version):
            raise Refusal(
                "refused",
                f"train statement is for {statement.name}@{statement.version}, "
                f"not {m.ref}",
            )
        if (
            statement.code_digest != package.digest
            or body.train_digest != package.digest
        ):
            raise Refusal(
                "refused",
                f"train {m.ref} digest mismatch: this station runs {package.digest}, "
                f"signed {statement.code_digest}, requested {body.train_digest}",
            )
        if statement.manifest_sha256 != digest(package.manifest_bytes):
            raise Refusal(
                "refused", f"train {m.ref} manifest differs from the signed one"
            )
        refusal = policy.train_refusal(m.name, m.version, signer.key_id, signer.name)
        if refusal:
            raise Refusal("refused", refusal)
        parameters, problems = m.resolve(body.parameters)
        if problems:
            raise Refusal("error", "; ".join(problems))
        self._check_columns(package, body.dataset, parameters, policy)
        disclosure_class = m.output_class_for(parameters)
        refusal = policy.class_refusal(disclosure_class)
        if refusal:
            raise Refusal("refused", refusal)
        if policy.review == "manual" and m.rounds == "iterative":
            raise Refusal(
                "refused",
                "this dataset's policy holds outputs for manual review, which an "
                "iterative train cannot wait for",
            )
        self._check_budget(body, policy)
        return Admission(
            body,
            requester,
            package,
            statement,
            signer,
            parameters,
            policy,
            disclosure_class,
            fields,
        )

    def _check_columns(
        self,
        package: TrainPackage,
        dataset: str,
        parameters: Mapping[str, Any],
        policy: DatasetPolicy,
    ) -> None:
        columns = package.manifest.columns_of(parameters)
        try:
            schema = dataset_schema(self.config.datasets[dataset])
        except DataError as exc:
            raise Refusal("error", str(exc)) from None
        for column, kind in columns.items():
            index = schema.get_field_index(column)
            if index < 0:
                raise Refusal(
                    "error",
                    f"dataset '{dataset}' has no column '{column}'; "
                    f"available: {', '.join(schema.names)}",
                )
            problem = kind_problem(kind, schema.field(index).type)
            if problem:
                raise Refusal(
                    "error", f"column '{column}' of dataset '{dataset}' {problem}"
                )
        refusal = policy.column_refusal(list(columns))
        if refusal:
            raise Refusal("refused", refusal)

    def _check_budget(self, body: SignedRequestBody, policy: DatasetPolicy) -> None:
        if policy.budget is None:
            return
        since = utc_now() - dt.timedelta(days=policy.budget.period_days)
        used = [
            r
            for r in self.audit.records()
            if r.event == "policy_decision"
            and r.outcome == "success"
            and r.dataset == body.dataset
            and r.organisation == body.organisation
            and r.user == body.user
            and _parse(r.time) >= since
        ]
        if len(used) >= policy.budget.queries:
            raise Refusal(
                "refused",
                f"query budget spent: {policy.budget.queries} requests per "
                f"{policy.budget.period_days} days on dataset '{body.dataset}'",
            )

    # -- running and releasing ----------------------------------------------------
    def handle(self, envelope: Mapping[str, Any]) -> Reply:
        """Decide on, run and answer one single-round request. Never raises."""
        admitted = self._admit(envelope)
        if isinstance(admitted, Reply):
            return admitted
        if admitted.package.manifest.rounds != "single":
            return self._refuse(
                admitted.body.request_id,
                "error",
                f"train {admitted.body.train} is iterative; open a session",
                "error",
            )
        job = self._prepare(admitted)
        self.audit.append(
            "run",
            "success",
            **admitted.fields,
            details={"executor": self.executor.name},
        )
        try:
            result = self.executor.run(job)
        except ExecutorError as exc:
            return self._refuse(
                admitted.body.request_id, "error", str(exc), "error", **admitted.fields
            )
        if result.timed_out:
            return self._refuse(
                admitted.body.request_id,
                "error",
                "the train timed out",
                "error",
                **admitted.fields,
            )
        if result.output is None:
            log.warning(
                "station %s: no valid output; stderr: %s", self.id, result.stderr_tail
            )
            return self._refuse(
                admitted.body.request_id,
                "error",
                "the train wrote no valid output (missing, a symlink or over the size cap)",
                "error",
                **admitted.fields,
            )
        return self._release(admitted, result.output, None, result.elapsed_seconds)

    def _prepare(self, admitted: Admission) -> Job:
        body, manifest = admitted.body, admitted.package.manifest
        run_dir = self.config.workdir / "runs" / body.request_id
        if run_dir.exists():
            shutil.rmtree(run_dir)
        (run_dir / "output").mkdir(parents=True)
        train_input = TrainInput(
            request_id=body.request_id,
            train=str(manifest.ref),
            parameters=dict(admitted.parameters),
            columns=tuple(manifest.columns_of(admitted.parameters)),
            min_count=admitted.policy.min_cell_size,
        )
        input_file = run_dir / "input.json"
        input_file.write_text(train_input.to_json(), encoding="utf-8")
        return Job(
            entrypoint=admitted.package.entrypoint,
            input_file=input_file,
            dataset=self.config.datasets[body.dataset],
            output_dir=run_dir / "output",
            workdir=run_dir,
            limits=self.limits,
            image=admitted.statement.image_digest,
        )

    def _guarded(
        self, admitted: Admission, raw: bytes, op: str | None
    ) -> tuple[str, str | None, dict[str, Any] | None]:
        """Parse the train's output message and pass its aggregate through the guard."""
        limits = GuardLimits(admitted.policy.min_cell_size)
        try:
            message = parse_strict(raw, limits)
            if not isinstance(message, dict) or message.get("status") not in STATUSES:
                raise DisclosureError("the train's output message is malformed")
            extra = set(message) - {"wire", "status", "reason", "output"}
            if extra:
                raise DisclosureError("the train's output message has undeclared keys")
            if message["status"] != "ok":
                return message["status"], clean_reason(message.get("reason")), None
            schema = admitted.package.manifest.schema_for(op)
            Guard(limits).check(message.get("output"), schema)
        except DisclosureError as exc:
            return "refused", f"output guard: {exc}", None
        return "ok", None, message["output"]

    def _release(
        self,
        admitted: Admission,
        raw: bytes,
        op: str | None,
        elapsed: float,
        round_no: int = 0,
    ) -> Reply:
        body = admitted.body
        status, reason, output = self._guarded(admitted, raw, op)
        common = {
            "disclosure_class": admitted.disclosure_class,
            "train_digest": admitted.statement.code_digest,
            "elapsed_seconds": round(elapsed, 3),
        }
        if status != "ok" or output is None:
            status = status if status in ("refused", "error") else "error"
            self.audit.append(
                "refusal" if status == "refused" else "error",
                status,
                reason=reason,
                **admitted.fields,
            )
            return self._reply(body.request_id, status, reason, **common)
        self.last_released = output
        plain = canonical_json(output)
        output_digest = digest(plain)
        if admitted.policy.review == "manual":
            pending = self.config.workdir / "review" / f"{body.request_id}.json"
            pending.parent.mkdir(parents=True, exist_ok=True)
            pending.write_bytes(plain)
            self.audit.append(
                "review", "pending", output_digest=output_digest, **admitted.fields
            )
            self._save_admission(admitted)
            return self._reply(
                body.request_id,
                "pending",
                "the output waits for manual review at the station",
                **common,
            )
        sealed, receipt = self._seal(admitted, plain, output_digest, round_no)
        return self._reply(
            body.request_id, "ok", None, sealed=sealed, receipt=receipt, **common
        )

    def _seal(
        self, admitted: Admission, plain: bytes, output_digest: str, round_no: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._seal_for(
            admitted.body.request_id,
            admitted.requester,
            admitted.statement.code_digest,
            admitted.fields,
            plain,
            round_no,
        )

    def _seal_for(
        self,
        request_id: str,
        requester: PublicIdentity,
        train_digest: str,
        fields: Mapping[str, Any],
        plain: bytes,
        round_no: int,
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
            details={"round": round_no},
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
    def _save_admission(self, admitted: Admission) -> None:
        path = (
            self.config.workdir / "review" / f"{admitted.body.request_id}.request.json"
        )
        path.write_text(
            json.dumps(
                {
                    "requester": admitted.requester.to_dict(),
                    "fields": admitted.fields,
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
        folder = self.config.workdir / "review"
        output = folder / f"{request_id}.json"
        if not output.is_file():
            raise ConfigError(f"no pending output for request {request_id}; see `list`")
        meta = json.loads((folder / f"{request_id}.request.json").read_text())
        return {"request": meta["fields"], "output": json.loads(output.read_bytes())}

    def review(
        self, request_id: str, approve: bool, reviewer: str, reason: str = ""
    ) -> Reply:
        """Approve (seal and release) or reject a pending output."""
        folder = self.config.workdir / "review"
        output_path = folder / f"{request_id}.json"
        if not output_path.is_file():
            raise ConfigError(f"no pending output for request {request_id}; see `list`")
        meta = json.loads((folder / f"{request_id}.request.json").read_text())
        fields = meta["fields"]
        plain = output_path.read_bytes()
        if not approve:
            self.audit.append(
                "review",
                "rejected",
                reason=reason or "rejected",
                details={"reviewer": reviewer},
                **fields,
            )
            reply = self._reply(
                request_id,
                "refused",
                f"rejected at manual review: {reason or 'no reason given'}",
            )
        else:
            self.audit.append(
                "review",
                "approved",
                output_digest=digest(plain),
                details={"reviewer": reviewer},
                **fields,
            )
            sealed, receipt = self._seal_for(
                request_id,
                PublicIdentity.from_dict(meta["requester"]),
                meta["train_digest"],
                fields,
                plain,
                0,
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
        (folder / f"{request_id}.reply.json").write_text(
            reply.to_json(), encoding="utf-8"
        )
        output_path.unlink()
        return reply

    def collect(self, request_id: str) -> Reply | None:
        """A reviewed reply waiting to be collected by the requester, if any."""
        path = self.config.workdir / "review" / f"{request_id}.reply.json"
        return Reply.from_json(path.read_bytes()) if path.is_file() else None

    # -- sessions -------------------------------------------------------------------
    def open_session(
        self, envelope: Mapping[str, Any]
    ) -> tuple[Reply, StationSession | None]:
        """Admit an iterative request and start its train; the reply to round 0."""
        admitted = self._admit(envelope)
        if isinstance(admitted, Reply):
            return admitted, None
        if admitted.package.manifest.rounds != "iterative":
            return self._refuse(
                admitted.body.request_id,
                "error",
                f"train {admitted.body.train} is single-round",
                "error",
            ), None
        self.audit.append(
            "run",
            "success",
            **admitted.fields,
            details={"executor": self.executor.name, "session": "open"},
        )
        try:
            channel = self.executor.start(self._prepare(admitted))
        except ExecutorError as exc:
            return self._refuse(
                admitted.body.request_id, "error", str(exc), "error", **admitted.fields
            ), None
        session = StationSession(self, admitted, channel)
        reply = session.receive("open")
        if not reply.ok:
            session.close()
            return reply, None
        session.n = int(session.last_output.get("n") or 0)
        return reply, session


class StationSession:
    """A running iterative train at a station: rounds are messages to one process."""

    def __init__(self, station: Station, admitted: Admission, channel: Channel) -> None:
        self.station = station
        self.admitted = admitted
        self.channel = channel
        self.rounds = 0
        self.closed = False
        self.n = 0  # patients the train described when the session opened
        self.last_output: dict[str, Any] = {}

    def receive(self, op: str, timeout: float = 600.0) -> Reply:
        """Read, guard, seal and release the train's answer to the latest message."""
        started = time.monotonic()
        raw = self.channel.receive(timeout)
        if raw is None:
            tail = self.close()
            log.warning("station %s: session ended; stderr: %s", self.station.id, tail)
            return self.station._refuse(
                self.admitted.body.request_id,
                "error",
                "the train stopped answering",
                "error",
                **self.admitted.fields,
            )
        reply = self.station._release(
            self.admitted, raw, op, time.monotonic() - started, self.rounds
        )
        self.last_output = self.station.last_released
        return reply

    def round(self, message: Mapping[str, Any]) -> Reply:
        """Send one round message and return the train's released answer."""
        if self.closed:
            return self.station._reply(
                self.admitted.body.request_id, "error", "the session is closed"
            )
        op = message.get("op")
        if op not in self.admitted.package.manifest.round_schemas:
            return self.station._reply(
                self.admitted.body.request_id,
                "error",
                f"round operation {op!r} is not declared",
            )
        beta = message.get("beta")
        if (
            self.admitted.disclosure_class == "model"
            and isinstance(beta, list)
            and self.n < 10 * len(beta)
        ):  # degrees-of-freedom rule for model statistics
            self.close()
            return self.station._refuse(
                self.admitted.body.request_id,
                "refused",
                f"fewer than 10 patients per parameter ({len(beta)} parameters) at this "
                "station",
                "refusal",
                **self.admitted.fields,
            )
        self.rounds += 1
        self.channel.send(json.dumps(dict(message), allow_nan=False).encode("utf-8"))
        reply = self.receive(str(op))
        if not reply.ok:
            self.close()
        return reply

    def close(self) -> str:
        """End the session; return the train's stderr tail (station log only)."""
        if self.closed:
            return ""
        self.closed = True
        return self.channel.close()


def _peek(envelope: Mapping[str, Any], key: str) -> Any:
    """Read a field of an unverified request for logging only."""
    try:
        import base64

        return json.loads(base64.b64decode(envelope["payload"])).get(key)
    except Exception:  # noqa: BLE001 - unverified input, used only to label the log
        return None


def _ref(text: str) -> Any:
    from pht.wire import TrainRef

    return TrainRef.parse(text)


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
