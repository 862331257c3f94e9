"""Verifying a log from its files and the station's public key alone (auditors).

:func:`verify_log` checks every line of the log and every checkpoint in it; given
tree heads saved earlier (a checkpoint, an anchor, the receipts of a ``result.json``)
it also proves with RFC 9162 consistency proofs that the log only grew since.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pht.errors import AuditError
from pht.station.audit.checkpoints import Checkpoint
from pht.station.audit.reader import read_folder
from pht.station.audit.saved import TreeHead
from pht.station.audit.scan import check_extends

__all__ = ["VerifyReport", "verify_log"]

log = logging.getLogger(__name__)

Saved = Checkpoint | TreeHead


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_log` established.

    Attributes
    ----------
    size
        Number of committed records (covered by the latest checkpoint).
    root
        Hex Merkle root of those records.
    checkpoint
        The latest valid signed checkpoint (its ``root`` equals ``root``).
    torn_tail_bytes
        Bytes of the log file after the committed records (an interrupted append).
    problems
        Non-fatal findings (torn tails), one sentence each; empty if none.
    format
        File format version of the folder (1: not yet migrated by a station).
    extends
        The saved tree heads the log was proven to extend.
    """

    size: int
    root: str
    checkpoint: Checkpoint
    torn_tail_bytes: int
    problems: tuple[str, ...]
    format: int = 2
    extends: tuple[TreeHead, ...] = ()


def verify_log(
    directory: Path,
    public_key: Ed25519PublicKey,
    saved: Saved | Iterable[Saved] | None = None,
) -> VerifyReport:
    """Verify a station's audit log from its files and the station's public key.

    Checks every line (canonical; the header first; record ``i`` with seq ``i``),
    every checkpoint (signed by ``public_key``, one station, the Merkle root of the
    records up to and including its line) and, given ``saved``, that the log extends
    each saved head (RFC 9162 consistency proof). Format 1 folders are checked by
    format 1's rules.

    Parameters
    ----------
    directory
        The log folder.
    public_key
        The station's Ed25519 public key.
    saved
        Heads kept from earlier: a :class:`Checkpoint` (its signature is checked
        here) or :class:`~pht.station.audit.saved.TreeHead` (e.g. from
        :func:`~pht.station.audit.saved.load_saved`), or several. A truncated,
        rolled-back or rewritten log no longer extends them.

    Returns
    -------
    VerifyReport
        Size and root of the committed log; a torn tail is reported, not fatal.

    Raises
    ------
    AuditRollbackError
        If the log does not extend a saved head.
    AuditError
        On any damage or tampering, naming the line, seq or checkpoint.
    """
    directory = Path(directory)
    scan = read_folder(directory, public_key)
    if scan.latest is None:
        raise AuditError(
            f"{directory} holds no signed checkpoint: the log cannot be verified"
        )
    heads = _heads(saved, public_key)
    for head in heads:
        if head.station != scan.latest.station:
            raise AuditError(
                f"{head.source} is for station {head.station!r}, the log for "
                f"{scan.latest.station!r}"
            )
        check_extends(
            scan,
            head.size,
            head.root,
            head.source,
            "the station lost records it had signed: report it as an incident",
        )
    problems = scan.problems()
    for problem in problems:
        log.warning("audit log %s: %s", directory, problem)
    return VerifyReport(
        size=scan.size,
        root=scan.latest.root,
        checkpoint=scan.latest,
        torn_tail_bytes=sum(len(t.data) for t in scan.tails if t.key == "log"),
        problems=problems,
        format=scan.format,
        extends=heads,
    )


def _heads(
    saved: Saved | Iterable[Saved] | None, public_key: Ed25519PublicKey
) -> tuple[TreeHead, ...]:
    if saved is None:
        return ()
    items = [saved] if isinstance(saved, Checkpoint | TreeHead) else list(saved)
    heads = []
    for item in items:
        if isinstance(item, Checkpoint):
            item.verify(public_key, "the saved checkpoint")
            item = TreeHead.of(item, "the saved checkpoint")
        heads.append(item)
    return tuple(heads)
