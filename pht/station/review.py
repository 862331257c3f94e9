"""Manual review: outputs a policy holds until a person at the station approves them.

Pending outputs are addressed only by canonical request ids (UUIDs), never by a path
the requester chose; an approval goes through the same sealing and receipt as an
automatic release.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pht.crypto import (
    PublicIdentity,
    digest,
)
from pht.errors import ConfigError
from pht.station.base import (
    Admission,
    StationBase,
    clean_reason,
)
from pht.station.codes import Code
from pht.wire import Reply

log = logging.getLogger(__name__)


class Reviewing(StationBase):
    """Outputs held for a person: list, show, approve (seal) or reject, collect."""

    if TYPE_CHECKING:  # provided by Releasing; Station joins both

        def _seal_for(
            self,
            request_id: str,
            requester: PublicIdentity,
            train_digest: str,
            fields: Mapping[str, Any],
            plain: bytes,
            round_no: int,
            key_id: str,
        ) -> tuple[dict[str, Any], dict[str, Any]]: ...

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
            # the operator's own words reach the analyst (cleaned: one short line)
            why = clean_reason(reason)
            reply = self._reply(
                request_id,
                "refused",
                f"{Code.REVIEW_REJECTED.reason}: {why}"
                if why
                else Code.REVIEW_REJECTED.reason,
            )
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
