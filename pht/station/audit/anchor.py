"""Anchors: the log's latest signed checkpoint, kept outside the log folder.

Deleting a log folder, or restoring an older copy of it, leaves a log that verifies
on its own. The *anchor* (a file beside the folder, e.g. ``<workdir>/audit.anchor``)
and the optional *witness* (a file the operator puts elsewhere: another disk, an
append-only mount) hold the station-signed checkpoint of the last append, replaced
atomically after every append. On open the log must exist and extend both
(:func:`~pht.station.audit.scan.check_extends`); otherwise the station refuses to
start with :class:`~pht.station.audit.scan.AuditRollbackError`.

Each file is one canonical :class:`~pht.station.audit.checkpoints.Checkpoint` JSON
line, so ``pht audit verify DIR --checkpoint <anchor>`` checks a log against it too.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pht.errors import AuditError, ConfigError
from pht.station.audit.checkpoints import Checkpoint
from pht.station.audit.files import atomic_write
from pht.station.audit.scan import AuditRollbackError, Scan, check_extends

__all__ = [
    "check_anchor",
    "check_placement",
    "missing_log",
    "read_anchor",
    "write_anchor",
]


def check_placement(directory: Path, anchor: Path, witness: Path | None) -> None:
    """The anchor and witness must lie outside the log folder and differ.

    Raises
    ------
    ConfigError
        Naming the path that is misplaced.
    """
    folder = directory.resolve()
    paths = [("anchor", anchor)] + ([("witness", witness)] if witness else [])
    for role, path in paths:
        if path.resolve().is_relative_to(folder):
            raise ConfigError(
                f"the audit {role} {path} lies inside the log folder {directory}: "
                "deleting the folder would delete it too; put it outside"
            )
    if witness is not None and witness.resolve() == anchor.resolve():
        raise ConfigError(
            f"the audit witness {witness} is the anchor file; put the witness on "
            "another disk or an append-only location"
        )


def read_anchor(
    path: Path, role: str, public_key: Ed25519PublicKey, station: str
) -> Checkpoint | None:
    """Read an anchor or witness file; ``None`` if it does not exist.

    Raises
    ------
    AuditError
        If it is unreadable, not a checkpoint, not signed by the station key, or
        names another station.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuditError(
            f"cannot read the audit {role} {path}: {exc}; fix its permissions or mount"
        ) from None
    remedy = (
        "restore it from a backup (or, if the log is known to be complete, move it "
        "aside: the log is then anchored anew and a log_anchored record says so)"
    )
    try:
        checkpoint = Checkpoint.from_line(data.removesuffix(b"\n"))
        checkpoint.verify(public_key, f"the audit {role} {path}")
    except AuditError as exc:
        raise AuditError(
            f"the audit {role} {path} is not a signed checkpoint of this log: {exc}; "
            f"{remedy}"
        ) from None
    if checkpoint.station != station:
        raise AuditError(
            f"the audit {role} {path} is for station {checkpoint.station!r}, not "
            f"{station!r}: give each station its own {role} file"
        )
    return checkpoint


def write_anchor(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the anchor or witness file by ``checkpoint`` (atomic, fsynced)."""
    atomic_write(path, (checkpoint.to_json() + "\n").encode("utf-8"))


def _seen(role: str, path: Path, checkpoint: Checkpoint) -> str:
    return (
        f"the audit {role} {path} (signed {checkpoint.time}, {checkpoint.size} "
        f"records, root {checkpoint.root[:16]}…)"
    )


def missing_log(
    directory: Path, role: str, path: Path, checkpoint: Checkpoint
) -> AuditRollbackError:
    """The error for a log folder that is gone while an anchor or witness is not."""
    return AuditRollbackError(
        f"the audit log in {directory} is missing but {_seen(role, path, checkpoint)} "
        "shows the station had one: restore the audit folder from a backup; pht "
        f"never starts a new log over an anchored one (to start anew on purpose, "
        f"move {path} aside and keep it as evidence)"
    )


def check_anchor(
    scan: Scan, directory: Path, role: str, path: Path, checkpoint: Checkpoint
) -> None:
    """The log must hold the anchored records unchanged (it may have grown).

    Raises
    ------
    AuditRollbackError
        If the log is shorter than the anchor or its first records differ.
    """
    check_extends(
        scan,
        checkpoint.size,
        checkpoint.root,
        _seen(role, path, checkpoint),
        f"restore the latest backup of {directory}; pht never rewinds an anchored log",
    )
