"""The parts every step of a station shares: configuration, admission state, refusals.

:class:`StationConfig` (who a station is and what it holds), :class:`Admission` (an
admitted request and what extraction adds to it), :class:`Refusal` (a fixed code that
stops the pipeline) and :class:`StationBase` (its replies and logged refusals). The
steps are mixins over it: :mod:`~pht.station.admission`,
:mod:`~pht.station.extraction`, :mod:`~pht.station.release`,
:mod:`~pht.station.review`; :class:`~pht.station.station.Station` joins them.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pht.crypto import (
    Identity,
    PublicIdentity,
)
from pht.datasources import DatabaseSource
from pht.keyring import Keyring
from pht.manifest import Catalogue, TrainPackage
from pht.signing import (
    REQUEST_FIELDS,
    SignedRequestBody,
    TrainStatement,
)
from pht.station.audit import AuditLog
from pht.station.codes import Code
from pht.station.executors import Executor, Limits
from pht.station.guard import GuardLimits
from pht.station.policy import DatasetPolicy, Policy
from pht.station.population import (
    GridStore,
    Population,
    VersionStore,
)
from pht.timefmt import parse_utc
from pht.wire import STATUSES, Reply

log = logging.getLogger(__name__)

MAX_REASON = 300


@dataclass(frozen=True)
class StationConfig:
    """Who a station is and what it holds."""

    id: str
    name: str
    datasets: Mapping[str, Path | DatabaseSource]
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
    if kind == "date":
        return not (
            pa.types.is_timestamp(dtype)
            or pa.types.is_date(dtype)
            or pa.types.is_integer(dtype)
        )
    return not (
        numeric
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_dictionary(dtype)
    )


def data_refusal(station: str, exc: Exception) -> Refusal:
    """The refusal for a dataset that cannot be read; the operator's fix to the log.

    A database that is down or slow is ``source`` (try again later); anything else
    ``data``. The message (station, dataset, source kind and table, the fix; never a
    DSN or a value) goes to the station's own log only.
    """
    from pht.station.sources import SourceUnavailable

    log.warning("station %s: %s", station, exc)
    if isinstance(exc, SourceUnavailable):
        return Refusal("error", Code.SOURCE)
    return Refusal("error", Code.DATA)


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
    source: dict[str, str] | None = None
    """A database dataset's kind, table and query digest, for the audit record."""


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


class StationBase:
    """What every part of a station shares: who it is, its state, its replies."""

    config: StationConfig
    executor: Executor
    catalogue: Catalogue
    audit: AuditLog
    limits: Limits
    grids: GridStore
    versions: VersionStore

    @property
    def id(self) -> str:
        """The station id."""
        return self.config.id

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


_FIELD = re.compile(r"field '([a-z_]{1,32})'")
_SIGNED_FIELDS = frozenset(REQUEST_FIELDS)


def trust_refusal(message: str) -> Refusal:
    """A trust failure as a fixed code, naming at most a signed field (never a value).

    The full text stays in the station's log.
    """
    field_name = _FIELD.search(message)
    if field_name and field_name.group(1) in _SIGNED_FIELDS:
        return Refusal("refused", Code.MALFORMED, f"field '{field_name.group(1)}'")
    return Refusal("refused", trust_code(message))


def trust_code(message: str) -> Code:
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


def parse_time(text: str) -> dt.datetime:
    """An audit record's UTC time (``...Z``) as an aware UTC datetime.

    Read like :func:`pht.station.audit.encoding.parse_time` (a naive time is UTC);
    raises :class:`~pht.timefmt.TimeFormatError` (a ``ValueError``) otherwise.
    """
    return parse_utc(text, naive_as_utc=True)
