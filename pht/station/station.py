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

A describe request (its own signed payload type) stops after admission: the station
answers with the columns, roles, types and rules its policy allows the requester, no
data (:mod:`pht.station.describe`), logged as one ``describe`` audit record.

The run folder is named by the station (a fresh UUID), created new for each run and
removed after it; the station never deletes what it did not create.
"""

from __future__ import annotations

import logging
import shutil
import threading
from typing import Any

from pht.crypto import (
    canonical_json,
    digest,
)
from pht.errors import ExecutorError
from pht.manifest import Catalogue
from pht.signing import is_describe
from pht.station.audit import AuditLog
from pht.station.base import (
    Admission,
    Refusal,
    StationBase,
    StationConfig,
    clean_reason,
    kind_problem,
)
from pht.station.codes import Code
from pht.station.describe import Describing
from pht.station.executors import Executor, Limits
from pht.station.extraction import CELL_LEVELS, Extracting
from pht.station.population import (
    GridStore,
    VersionStore,
)
from pht.station.release import Releasing
from pht.station.review import Reviewing
from pht.wire import Reply

__all__ = [
    "CELL_LEVELS",
    "Admission",
    "Refusal",
    "Station",
    "StationBase",
    "StationConfig",
    "clean_reason",
    "kind_problem",
]

log = logging.getLogger(__name__)


class Station(Describing, Extracting, Releasing, Reviewing):
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
            if record.event in ("request_received", "describe") and record.request_id:
                self._seen.add(record.request_id)
            nonce = record.details.get("nonce") if record.details else None
            if isinstance(nonce, str):
                self._seen.add(nonce)

    def close(self) -> None:
        """Close the audit log (its lock is then free for another station process)."""
        self.audit.close()

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

    # -- running and releasing ----------------------------------------------------
    def handle(self, envelope: Any) -> Reply:
        """Decide on, run and answer one single-round or describe request.

        Never raises.
        """
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
        if is_describe(envelope):
            return self.describe(envelope)
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
                    **(admitted.source or {}),
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


def _request_id(envelope: Any) -> str:
    """A label for a refusal before verification: never taken from the input."""
    return "unknown"
