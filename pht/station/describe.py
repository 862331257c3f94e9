"""The station's answer to a describe request: allowed columns and rules, never data.

A requester asks before it writes a study (``pht network show``, ``pht validate
--identity``). The station admits the request like a train request
(:meth:`~pht.station.admission.Admitting._admit_describe`: signature, key, identity,
freshness, addressing, replay, then the policy's requester and purpose rules) and
answers, per dataset the requester may use, with a
:class:`~pht.description.DatasetDescription` built by :func:`describe_dataset` from
the policy and the file's schema only: column names, roles and types; the disclosure
classes, trains, minimum cell size, station-name rule, review mode and disclosure
rules; the asking key's budget use. No value, count, level, range or row is read for
it (a Parquet file's schema is its footer; a CSV's types are inferred on reading).

The answer is sealed to the requester, bound to
:data:`~pht.signing.DESCRIBE_BINDING` in place of a train digest, logged as one
``describe`` audit record and covered by a signed receipt naming the audit
checkpoint; it costs no query budget.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from pht.crypto import canonical_json, digest, seal, sealed_digest
from pht.description import (
    AllowedTrain,
    BudgetDescription,
    ColumnDescription,
    DatasetDescription,
    StationDescription,
)
from pht.errors import DataError
from pht.manifest import COLUMN_ROLES
from pht.signing import DESCRIBE_BINDING, Receipt, sign_receipt
from pht.station.admission import Admitting, DescribeAdmission
from pht.station.policy import DatasetPolicy
from pht.station.population import dataset_schema
from pht.station.release import SALT
from pht.timefmt import format_iso_offset, utc_now
from pht.wire import Reply

log = logging.getLogger(__name__)


def column_type(dtype: Any) -> str:
    """The description type of an Arrow column type (see :mod:`pht.description`).

    >>> import pyarrow as pa
    >>> column_type(pa.int64()), column_type(pa.float64()), column_type(pa.string())
    ('integer', 'numeric', 'text')
    """
    import pyarrow as pa

    if pa.types.is_dictionary(dtype):
        return "categorical"
    if pa.types.is_boolean(dtype):
        return "binary"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype):
        return "numeric"
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return "date"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "text"
    return "other"


def describe_dataset(
    dataset: str,
    policy: DatasetPolicy,
    schema: Any,
    budget_used: int,
) -> DatasetDescription:
    """What a requester may use on ``dataset``: the policy and the schema, no data.

    Parameters
    ----------
    dataset
        The dataset id.
    policy
        The dataset's policy entry.
    schema
        The file's Arrow schema, or None when it could not be read (the description
        then lists no columns and says ``readable: false``).
    budget_used
        Query units the asking key used in the budget period.

    Returns
    -------
    DatasetDescription
        Only columns the policy allows *and* the file holds, by name; each with its
        roles in :data:`pht.manifest.COLUMN_ROLES` order and its schema type.
    """
    columns: list[ColumnDescription] = []
    if schema is not None:
        for name in sorted(policy.columns):
            index = schema.get_field_index(name)
            if index < 0:
                continue
            roles = policy.roles_of(name)
            columns.append(
                ColumnDescription(
                    name=name,
                    roles=tuple(r for r in COLUMN_ROLES if r in roles),
                    type=column_type(schema.field(index).type),
                )
            )
    budget = policy.budget
    return DatasetDescription(
        id=dataset,
        columns=tuple(columns),
        disclosure_classes=tuple(sorted(policy.disclosure_classes)),
        trains=tuple(
            AllowedTrain(rule.name, rule.versions.text)
            for rule in sorted(policy.trains, key=lambda r: (r.name, r.versions.text))
        ),
        min_cell_size=policy.min_cell_size,
        show_station_name=policy.show_station_name,
        review=policy.review,
        rules=dict(policy.rules),
        budget=None
        if budget is None
        else BudgetDescription(budget.queries, budget.period_days, budget_used),
        readable=schema is not None,
    )


class Describing(Admitting):
    """Answer describe requests (see the module docstring)."""

    def describe(self, envelope: Any) -> Reply:
        """Admit a describe request and answer it sealed, logged and receipted."""
        admitted = self._admit_describe(envelope)
        if isinstance(admitted, Reply):
            return admitted
        description = StationDescription(
            station=self.id,
            datasets=tuple(
                self._describe_one(admitted, name, policy)
                for name, policy in admitted.datasets
            ),
        )
        # salted like every release: the digest in the receipt and the audit log is a
        # commitment, not a fingerprint of what this requester was shown
        plain = canonical_json({**description.to_dict(), SALT: secrets.token_hex(16)})
        body = admitted.verified.body
        sealed = seal(
            plain,
            admitted.verified.requester.sealing_key,
            request_id=body.request_id,
            station_id=self.id,
            manifest_digest=DESCRIBE_BINDING,
        )
        self.audit.append(
            "describe",
            "success",
            output_digest=digest(plain),
            details={**admitted.details, "datasets": len(description.datasets)},
            **admitted.fields,
        )
        checkpoint = self.audit.checkpoint()
        receipt = Receipt(
            request_id=body.request_id,
            station=self.id,
            round=0,
            output_digest=digest(plain),
            sealed_digest=sealed_digest(sealed),
            audit_size=checkpoint.size,
            audit_root=checkpoint.root,
            time=format_iso_offset(utc_now()),
        )
        return self._reply(
            body.request_id,
            "ok",
            None,
            train_digest=DESCRIBE_BINDING,
            sealed=sealed,
            receipt=sign_receipt(receipt, self.config.identity),
        )

    def _describe_one(
        self, admitted: DescribeAdmission, dataset: str, policy: DatasetPolicy
    ) -> DatasetDescription:
        try:
            schema = dataset_schema(self.config.datasets[dataset])
        except DataError as exc:
            log.warning("station %s cannot read dataset %s: %s", self.id, dataset, exc)
            schema = None
        used = 0
        if policy.budget is not None:
            used, _ = self.budget_used(
                admitted.verified.requester.key_id,
                admitted.verified.organisation,
                dataset,
                policy,
            )
        return describe_dataset(dataset, policy, schema, used)
