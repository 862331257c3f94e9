"""The one release path: single-round runs, every session round and reviewed outputs.

The output guard (schema, bounds, labels, grid, cells), the station's own
expectations (event tables it recomputes; a session's kernel answers), then manual
review or sealing to the requester, the release record and the signed receipt naming
the audit checkpoint.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pht.crypto import (
    PublicIdentity,
    canonical_json,
    digest,
    seal,
    sealed_digest,
)
from pht.errors import ConfigError, DataError, DisclosureError, PhtError
from pht.signing import (
    Receipt,
    sign_receipt,
)
from pht.station.base import (
    Admission,
    Refusal,
    StationBase,
)
from pht.station.codes import Code
from pht.station.guard import Guard, GuardLimits, parse_strict
from pht.timefmt import format_iso_offset, utc_now
from pht.wire import STATUSES, Reply

log = logging.getLogger(__name__)

SALT = "salt"
"""The key of the random salt a station adds to every released output (128 bits)."""


class Releasing(StationBase):
    """Release: guard, station-side expectations, review or seal, audit, receipt."""

    if TYPE_CHECKING:  # provided by Extracting and Reviewing; Station joins them

        def _event_tables(self, admitted: Admission) -> dict[str, Any]: ...

        def _review_dir(self) -> Path: ...

        def _save_admission(self, admitted: Admission) -> None: ...

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
                raise self._failure(admitted, op)
            schema = admitted.package.manifest.schema_for(op)
            Guard(limits).check(message.get("output"), schema)
            if expect is not None:
                replacement = expect(message["output"])
                if replacement is not None:
                    message["output"] = replacement
            if op is None:
                own = self._recomputed(admitted)
                if own is not None:
                    # the plugin's own computation from the station's extract: the
                    # train's output must equal it, and the station's is released
                    if message["output"] != own:
                        raise DisclosureError("the output differs from the station's")
                    message["output"] = self._finalized(admitted, own)
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

    def _recomputed(self, admitted: Admission) -> dict[str, Any] | None:
        """The output the train's plugin computes from the station's own extract.

        None for a train without a station-side computation (its output passes the
        guard alone). Plugins are the station's installed ones, never the train's.
        """
        from pht.trains import StationView, lookup

        # a broken registry raises (RegistryError): the request fails closed
        plugin = lookup(admitted.package.manifest.name)
        if plugin is None or plugin.recompute is None:
            return None
        try:
            return plugin.recompute(StationView(admitted, self.config.workdir))
        except PhtError as exc:
            log.info("station %s recomputation: %s", self.id, exc)
            raise DisclosureError(
                "the station's own output is not releasable"
            ) from None

    def _failure(self, admitted: Admission, op: str | None) -> Refusal:
        """Why a train failed, told by the station's own computation, not the train's.

        When the plugin's own computation on the station's extract stops on a
        :class:`~pht.errors.DataError` (e.g. an ``outcome`` that is not 0/1), the
        request asked for a column that cannot serve as asked: ``column``, which the
        analyst fixes. Otherwise ``train-failed`` (the operator looks at the log).
        The code is a function of the request and the station's data alone (an
        honest train fails exactly then), so a failing train adds nothing to it.
        """
        from pht.trains import StationView, lookup

        plugin = lookup(admitted.package.manifest.name)
        if op is None and plugin is not None and plugin.recompute is not None:
            try:
                plugin.recompute(StationView(admitted, self.config.workdir))
            except DataError as exc:
                log.info("station %s: the request's columns: %s", self.id, exc)
                return Refusal("refused", Code.COLUMN)
            except PhtError:
                pass
        return Refusal("error", Code.TRAIN_FAILED)

    def _finalized(self, admitted: Admission, own: dict[str, Any]) -> dict[str, Any]:
        """The station's output after the plugin's second step (after the comparison).

        The step may only withhold more (e.g. against the station's release history).
        """
        from pht.trains import StationView, lookup

        plugin = lookup(admitted.package.manifest.name)
        if plugin is None or plugin.finalize is None:
            return own
        try:
            return plugin.finalize(StationView(admitted, self.config.workdir), own)
        except PhtError as exc:
            log.info("station %s release check: %s", self.id, exc)
            raise DisclosureError(
                "the station's own output is not releasable"
            ) from None

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
        # a random salt inside the sealed output: its digest (in the signed receipt,
        # result.json's provenance and the audit log) is then a commitment nobody can
        # brute-force back to small outputs such as round 0's counts
        output = {**output, SALT: secrets.token_hex(16)}
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
            time=format_iso_offset(utc_now()),
        )
        return sealed, sign_receipt(receipt, self.config.identity)
