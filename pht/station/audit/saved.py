"""What an auditor kept: saved checkpoints and run receipts, read as tree heads.

A *tree head* is a size and root of a station's log that the station's key vouched
for at some time. Two kinds of file hold them:

* a checkpoint JSON (:meth:`Checkpoint.to_json`), e.g. a copy of the station's
  ``audit.anchor`` or one printed by the station;
* a ``result.json`` written by ``pht run``: ``provenance.receipts`` lists, per
  station and round, a DSSE envelope of a signed receipt
  (:class:`pht.signing.Receipt`) whose ``audit_size`` and ``audit_root`` name the
  station's log right after it logged the release.

A log that no longer extends one of these heads was rolled back or rewritten.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pht.crypto import PublicIdentity
from pht.errors import AuditError, ConfigError, TrustError
from pht.signing import verify_receipt
from pht.station.audit.checkpoints import Checkpoint
from pht.station.audit.encoding import one_line

__all__ = ["TreeHead", "load_saved"]

_ROOT = re.compile(r"[0-9a-f]{64}")
_USE = (
    "give a checkpoint JSON (e.g. a copy of audit.anchor) or a result.json of pht run"
)


@dataclass(frozen=True)
class TreeHead:
    """A size and root of a station's log, authenticated by the station key.

    Attributes
    ----------
    station
        The station the head is for.
    size
        Number of records.
    root
        Hex Merkle root of the first ``size`` records.
    source
        Where it came from, for messages ("the receipt of request r-1 round 1 in
        result.json").
    """

    station: str
    size: int
    root: str
    source: str

    def __post_init__(self) -> None:
        one_line(self.station, f"the station of {self.source}")
        if type(self.size) is not int or self.size < 0:
            raise AuditError(f"{self.source} has size {self.size!r}, not an int >= 0")
        if not isinstance(self.root, str) or not _ROOT.fullmatch(self.root):
            raise AuditError(
                f"{self.source} has root {self.root!r}, not 64 lowercase hex digits"
            )

    @classmethod
    def of(cls, checkpoint: Checkpoint, source: str) -> TreeHead:
        """The head of a checkpoint whose signature was checked by the caller."""
        return cls(checkpoint.station, checkpoint.size, checkpoint.root, source)


def load_saved(path: Path, station: PublicIdentity) -> tuple[TreeHead, ...]:
    """Read the tree heads of ``station`` from a saved checkpoint or a result.json.

    Every head returned is signed by ``station``'s key. Receipts signed by other
    keys (the other stations of a run) are skipped.

    Raises
    ------
    ConfigError
        The file is missing, unreadable, not JSON, neither a checkpoint nor a
        result.json, or holds no receipt of this station.
    AuditError
        A checkpoint or receipt that claims the station's key does not verify.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror}); {_USE}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc}); {_USE}") from None
    if isinstance(data, dict) and "provenance" in data:
        return _receipts(path, data["provenance"], station)
    try:
        checkpoint = Checkpoint.from_dict(data)
    except AuditError as exc:
        raise ConfigError(
            f"{path}: neither a checkpoint nor a result.json ({exc}); {_USE}"
        ) from None
    checkpoint.verify(station.signing_key, f"the saved checkpoint {path}")
    return (TreeHead.of(checkpoint, f"the saved checkpoint {path}"),)


def _receipts(
    path: Path, provenance: Any, station: PublicIdentity
) -> tuple[TreeHead, ...]:
    receipts = provenance.get("receipts") if isinstance(provenance, dict) else None
    if not isinstance(receipts, list):
        raise ConfigError(f"{path}: provenance.receipts is missing; {_USE}")
    heads, others = [], set()
    for i, entry in enumerate(receipts):
        envelope = entry.get("receipt") if isinstance(entry, dict) else None
        if not isinstance(envelope, dict):
            raise ConfigError(
                f"{path}: provenance.receipts[{i}] holds no receipt envelope; {_USE}"
            )
        signatures = envelope.get("signatures")
        keyids = {
            s.get("keyid")
            for s in (signatures if isinstance(signatures, list) else [])
            if isinstance(s, dict)
        }
        if station.key_id not in keyids:
            others.add(str(entry.get("station")))
            continue
        try:
            receipt = verify_receipt(envelope, station)
        except TrustError as exc:
            raise AuditError(
                f"{path}: provenance.receipts[{i}] is not a valid receipt of station "
                f"key {station.key_id}: {exc}"
            ) from None
        source = (
            f"the receipt of request {receipt.request_id} round {receipt.round} "
            f"in {path}"
        )
        heads.append(
            TreeHead(receipt.station, receipt.audit_size, receipt.audit_root, source)
        )
    if not heads:
        raise ConfigError(
            f"{path} holds no receipt signed by station key {station.key_id} "
            f"(it has receipts of {', '.join(sorted(others)) or 'no station'}); "
            "give the result.json of a run this station answered"
        )
    return tuple(heads)
