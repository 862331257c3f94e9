"""Admission: the pure checks before anything runs, as one serialised step.

The envelope and every signed field (:func:`pht.signing.verify_signed_request`; user
and role from the key's keyring entry), replay (request ids and nonces kept in the
audit log), the policy (dataset, purpose, requester, train and digests, every
(column, role) pair, disclosure class, the process-sandbox rule, kernels for
iterative trains) and the budget per key and per organisation (sessions' rounds
included). The decision record is appended under the same lock, so concurrent
requests cannot overspend a budget. The signature is checked, and a database
dataset's column types asked, before the lock is taken: a database that stops
answering holds up its own requests only, never the station's admission.

A describe request (:mod:`pht.station.describe`) passes the same trust and replay
checks, then only the policy's requester and purpose rules; it spends no budget.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pht.crypto import (
    PublicIdentity,
    digest,
)
from pht.datasources import DatabaseSource
from pht.errors import DataError, PhtError
from pht.manifest import TrainPackage
from pht.signing import (
    ALL_DATASETS,
    SignedRequestBody,
    VerifiedDescribe,
    VerifiedRequest,
    utc_now,
    verify_signed_describe,
    verify_signed_request,
    verify_train,
)
from pht.station.base import (
    Admission,
    Refusal,
    StationBase,
    data_refusal,
    kind_problem,
    parse_time,
    trust_refusal,
)
from pht.station.codes import Code
from pht.station.kernels import KERNELS
from pht.station.policy import DatasetPolicy
from pht.station.population import (
    dataset_schema,
)
from pht.trains import lookup
from pht.wire import Reply, TrainRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DescribeAdmission:
    """An admitted describe request: who asks, and the datasets it may be told about.

    ``datasets`` are the (dataset id, policy) pairs whose policy allows the
    requester's organisation and role and the request's purpose; ``fields`` and
    ``details`` go into the audit record of the answer.
    """

    verified: VerifiedDescribe
    datasets: tuple[tuple[str, DatasetPolicy], ...]
    fields: dict[str, Any]
    details: dict[str, Any]


class Admitting(StationBase):
    """Admission: verification, replay, policy, budget and the decision record."""

    _admission: threading.Lock
    _seen: set[str]

    # -- admission ----------------------------------------------------------------
    def _admit(self, envelope: Any) -> Admission | Reply:
        try:
            verified = verify_signed_request(envelope, self.config.keyring, self.id)
        except PhtError as exc:
            log.info("station %s rejected a request: %s", self.id, exc)
            return self._refuse("unknown", trust_refusal(str(exc)), "request_received")
        schema = self._source_schema(verified)
        with self._admission:
            return self._admit_locked(verified, schema)

    def _source_schema(self, verified: VerifiedRequest) -> pa.Schema | DataError | None:
        """A database dataset's column types, asked outside the admission lock.

        Only for a dataset this requester may use for this purpose (else nothing is
        asked, so the time of a refusal does not tell which datasets are held); None
        for a file (read under the lock, cached per file version); the error when
        the database cannot be read.
        """
        body = verified.body
        held = self.config.datasets.get(body.dataset)
        if not isinstance(held, DatabaseSource):
            return None
        try:
            self._describable(
                body.dataset, body.purpose, verified.organisation, verified.role
            )
        except Refusal:
            return None
        try:
            return dataset_schema(held)
        except DataError as exc:
            return exc

    def _replayed(self, request_id: str, nonce: str, event: str) -> Reply | None:
        """Refuse a request id or nonce seen before, else remember both.

        Train and describe requests share them; called with the admission lock held.
        """
        if request_id in self._seen or nonce in self._seen:
            return self._refuse(request_id, Refusal("refused", Code.REPLAYED), event)
        self._seen.update((request_id, nonce))
        return None

    def _admit_locked(
        self, verified: VerifiedRequest, schema: pa.Schema | DataError | None
    ) -> Admission | Reply:
        body = verified.body
        replayed = self._replayed(body.request_id, body.nonce, "request_received")
        if replayed is not None:
            return replayed
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
            admission = self._decide(body, verified.requester, fields, schema)
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
        self,
        body: SignedRequestBody,
        requester: PublicIdentity,
        fields: dict[str, Any],
        schema: pa.Schema | DataError | None = None,
    ) -> Admission:
        # the same order and codes as a describe request: a dataset this requester
        # may not use for this purpose is refused exactly like one not held, so a
        # train request does not tell which datasets exist either
        if body.dataset == ALL_DATASETS:
            raise Refusal("refused", Code.DATASET)
        ((_, policy),) = self._describable(
            body.dataset, body.purpose, fields["organisation"], fields["role"]
        )
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
        plugin = lookup(m.name)  # a broken registry raises: refused as internal
        if plugin is not None and plugin.contract is not None:
            broken = plugin.contract.differs(m)
            if broken is not None:
                log.info(
                    "station %s: %s breaks its plugin's contract: %s",
                    self.id,
                    m.ref,
                    broken,
                )
                raise Refusal("refused", Code.CONTRACT)
        parameters, problems = m.resolve(body.parameters)
        if problems:
            raise Refusal("error", Code.PARAMETERS)
        self._check_columns(package, body.dataset, parameters, policy, schema)
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
        known: pa.Schema | DataError | None = None,
    ) -> None:
        """Refuse columns and roles the policy or the dataset's types do not allow.

        ``known`` is the database dataset's schema (or why it cannot be read),
        asked before the admission lock; a file's is read here.
        """
        manifest = package.manifest
        try:
            if isinstance(known, DataError):
                raise known
            schema = (
                known
                if known is not None
                else dataset_schema(self.config.datasets[dataset])
            )
        except DataError as exc:
            raise data_refusal(self.id, exc) from None
        # an if_present column the dataset does not hold is simply absent (the
        # train says so); a held one is checked like any other
        absent = {
            c
            for c in manifest.optional_columns(parameters)
            if schema.get_field_index(c) < 0
        }
        columns = {
            c: kind
            for c, kind in manifest.columns_of(parameters).items()
            if c not in absent
        }
        roles = [(c, r) for c, r in manifest.roles_of(parameters) if c not in absent]
        if policy.column_refusal(list(columns)):
            raise Refusal("refused", Code.COLUMN)
        if policy.role_refusal(roles):
            raise Refusal("refused", Code.COLUMN)
        if not policy.show_station_name and any(role == "site" for _, role in roles):
            # a care site's name is a label only where the station shows names
            raise Refusal("refused", Code.SITE)
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
            if parse_time(r.time) < since:
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

    def admit(self, envelope: Any) -> Admission | Reply:
        """Admission only (for sessions)."""
        return self._admit(envelope)

    # -- describe requests ----------------------------------------------------------
    def _admit_describe(self, envelope: Any) -> DescribeAdmission | Reply:
        """Admit a describe request, or refuse it with a fixed code.

        The trust checks of a train request (signature, key, fields, identity,
        freshness, addressing, replay), then the policy's requester and purpose
        rules. A refusal is one ``describe`` audit record; an admitted request is
        logged with its answer. No query budget is spent.
        """
        with self._admission:
            try:
                verified = verify_signed_describe(
                    envelope, self.config.keyring, self.id
                )
            except PhtError as exc:
                log.info("station %s rejected a describe request: %s", self.id, exc)
                return self._refuse("unknown", trust_refusal(str(exc)), "describe")
            body = verified.body
            replayed = self._replayed(body.request_id, body.nonce, "describe")
            if replayed is not None:
                return replayed
        fields = {
            "request_id": body.request_id,
            "user": verified.user,
            "organisation": verified.organisation,
            "role": verified.role,
            "purpose": body.purpose,
            "dataset": body.dataset,
        }
        details = {"nonce": body.nonce, "key": verified.requester.key_id}
        try:
            usable = self._describable(
                body.dataset, body.purpose, verified.organisation, verified.role
            )
        except Refusal as r:
            return self._refuse(
                body.request_id, r, "describe", details=details, **fields
            )
        return DescribeAdmission(verified, usable, fields, details)

    def _describable(
        self, dataset: str, purpose: str, organisation: str, role: str
    ) -> tuple[tuple[str, DatasetPolicy], ...]:
        """The datasets a describe request may be told about, or a refusal.

        The requester first (refused where no dataset's policy lists it: says
        nothing about any dataset), then the purpose (likewise), then the dataset: a
        named dataset the requester may not use for this purpose is refused exactly
        like one the station does not hold.
        """
        allowed: list[tuple[str, DatasetPolicy]] = []
        for name in sorted(self.config.datasets):
            policy = self.config.policy.for_dataset(name)
            if policy is not None and not policy.requester_refusal(organisation, role):
                allowed.append((name, policy))
        if not allowed:
            raise Refusal("refused", Code.REQUESTER)
        usable = [(n, p) for n, p in allowed if not p.purpose_refusal(purpose)]
        if not usable:
            raise Refusal("refused", Code.PURPOSE)
        if dataset == ALL_DATASETS:
            return tuple(usable)
        named = tuple((n, p) for n, p in usable if n == dataset)
        if not named:
            raise Refusal("refused", Code.DATASET)
        return named
