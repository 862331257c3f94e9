"""Anchored audit logs: one adversarial fixture per attack on a station's history.

An attacker with write access to a station's working folder tries to make the
station forget what it logged (query budgets, seen requests): delete the audit
folder, restore an older copy, cut the last line, delete the whole working folder.
The anchor (beside the folder), the witness (elsewhere) and the receipts an analyst
keeps make each attempt a refusal or a failed verification, never a clean log.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pht.cli import main
from pht.crypto import Identity, new_identity, save_identity
from pht.errors import AuditError, ConfigError
from pht.signing import Receipt, sign_receipt
from pht.station import merkle
from pht.station.audit import (
    LEGACY_CHECKPOINT_FILE,
    LEGACY_LOG_FILE,
    LOG_FILE,
    AuditLog,
    AuditRecord,
    AuditRollbackError,
    Checkpoint,
    verify_log,
)
from pht.station.audit.checkpoints import sign_checkpoint

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key()
STATION = "umcg"


class Clock:
    """A deterministic clock: one second per call from 2026-01-01."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def open_station(
    workdir: Path, witness: Path | None = None, key: Ed25519PrivateKey = KEY
) -> AuditLog:
    """Open the log the way the station does: ``<workdir>/audit`` + its anchor."""
    return AuditLog.open(
        workdir / "audit",
        STATION,
        key,
        anchor=workdir / "audit.anchor",
        witness=witness,
        clock=Clock(),
    )


def grow(audit: AuditLog, n: int) -> None:
    for i in range(n):
        audit.append(
            "policy_decision",
            "success",
            user="alice",
            organisation="ZIN",
            dataset="melanoma",
            request_id=f"req-{audit.size}",
            details={"nonce": f"nonce-{audit.size}", "i": i},
        )


def log_path(workdir: Path) -> Path:
    return workdir / "audit" / LOG_FILE


# -- first start, anchoring on every append ------------------------------------------
def test_first_start_creates_log_anchor_and_witness(tmp_path: Path) -> None:
    witness = tmp_path / "other-disk" / "umcg.witness"
    witness.parent.mkdir()
    with open_station(tmp_path / "work", witness) as audit:
        assert audit.size == 0 and audit.records() == []  # nothing to note
        for _ in range(3):
            grow(audit, 1)
            expected = audit.checkpoint().to_json() + "\n"
            assert (tmp_path / "work" / "audit.anchor").read_text() == expected
            assert witness.read_text() == expected
    # The anchor is a signed checkpoint: an auditor can verify against it too.
    saved = Checkpoint.from_json((tmp_path / "work" / "audit.anchor").read_text())
    assert verify_log(tmp_path / "work" / "audit", PUB, saved).size == 3
    with open_station(tmp_path / "work", witness) as audit:  # a normal restart
        assert [r.event for r in audit.records()] == ["policy_decision"] * 3


def test_the_anchor_must_lie_outside_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inside the log folder"):
        AuditLog.open(tmp_path / "audit", STATION, KEY, anchor=tmp_path / "audit" / "a")
    with pytest.raises(ConfigError, match="witness .* is the anchor file"):
        AuditLog.open(
            tmp_path / "audit",
            STATION,
            KEY,
            anchor=tmp_path / "a",
            witness=tmp_path / "a",
        )


# -- attacks -------------------------------------------------------------------------
def test_deleting_the_audit_folder_is_refused(tmp_path: Path) -> None:
    with open_station(tmp_path) as audit:
        grow(audit, 5)
    shutil.rmtree(tmp_path / "audit")
    with pytest.raises(AuditRollbackError) as caught:
        open_station(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"the audit log in {tmp_path / 'audit'} is missing" in message
    assert (
        "5 records" in message and "restore the audit folder from a backup" in message
    )
    assert not (tmp_path / "audit").exists()  # no silent new log
    # Also when the folder is there but empty (deleted files, recreated folder).
    (tmp_path / "audit").mkdir()
    with pytest.raises(AuditRollbackError, match="is missing"):
        open_station(tmp_path)
    assert list((tmp_path / "audit").iterdir()) == []


def test_restoring_an_older_copy_is_refused(tmp_path: Path) -> None:
    with open_station(tmp_path) as audit:
        grow(audit, 3)
    shutil.copytree(tmp_path / "audit", tmp_path / "backup")
    with open_station(tmp_path) as audit:
        grow(audit, 4)  # budgets used after the backup
    shutil.rmtree(tmp_path / "audit")
    shutil.copytree(tmp_path / "backup", tmp_path / "audit")
    before = log_path(tmp_path).read_bytes()
    with pytest.raises(
        AuditRollbackError,
        match=r"anchor .* covers 7 records but the log holds 3: the log was truncated "
        r"or rolled back; restore the latest backup",
    ):
        open_station(tmp_path)
    assert log_path(tmp_path).read_bytes() == before  # nothing written


def test_a_forked_history_of_the_same_size_is_refused(tmp_path: Path) -> None:
    """The station key holder rewrites history (same size, other records)."""
    with open_station(tmp_path / "real") as audit:
        grow(audit, 4)
    with open_station(tmp_path / "fork") as audit:
        grow(audit, 2)
        audit.append("run", "success", user="mallory")
        grow(audit, 1)
    shutil.rmtree(tmp_path / "real" / "audit")
    shutil.copytree(tmp_path / "fork" / "audit", tmp_path / "real" / "audit")
    with pytest.raises(AuditRollbackError, match="does not extend the audit anchor"):
        open_station(tmp_path / "real")


def test_cutting_the_last_line_is_refused(tmp_path: Path) -> None:
    """Removing the last line removes a record *and* its checkpoint: a rollback."""
    with open_station(tmp_path) as audit:
        grow(audit, 4)
    raw = log_path(tmp_path).read_bytes().splitlines(keepends=True)
    log_path(tmp_path).write_bytes(b"".join(raw[:-1]))
    with pytest.raises(
        AuditRollbackError, match="covers 4 records but the log holds 3"
    ):
        open_station(tmp_path)


def test_deleting_the_last_checkpoint_cannot_demote_a_committed_record(
    tmp_path: Path,
) -> None:
    """The format 1 attack: delete the last checkpoint so the last record looks
    like a torn tail and is dropped. Now the checkpoint shares the record's line."""
    with open_station(tmp_path) as audit:
        grow(audit, 4)
        committed = audit.records()
    path = log_path(tmp_path)
    raw = path.read_bytes().splitlines(keepends=True)
    # (a) Strip the checkpoint from the last line, keeping the record.
    record_only = json.dumps(
        {"record": json.loads(raw[-1])["record"]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    path.write_bytes(b"".join(raw[:-1]) + record_only + b"\n")
    with pytest.raises(AuditError, match="line 5: a record line must have keys"):
        verify_log(tmp_path / "audit", PUB)
    with pytest.raises(AuditError, match="line 5"):
        open_station(tmp_path)
    assert path.read_bytes().endswith(record_only + b"\n")  # not truncated
    # (b) Cut only the final newline: the record is whole and signed, so it stays.
    path.write_bytes(b"".join(raw)[:-1])
    assert verify_log(tmp_path / "audit", PUB).size == 4
    with open_station(tmp_path) as audit:
        assert audit.records()[:4] == committed
        assert audit.records()[4].event == "log_recovered"


def test_the_witness_catches_deletion_of_the_whole_workdir(tmp_path: Path) -> None:
    workdir, witness = tmp_path / "station", tmp_path / "witness" / "umcg.cp"
    witness.parent.mkdir()
    with open_station(workdir, witness) as audit:
        grow(audit, 6)
    shutil.rmtree(workdir)  # audit folder and anchor gone
    with pytest.raises(
        AuditRollbackError, match=f"missing but the audit witness {witness}"
    ):
        open_station(workdir, witness)
    assert not (workdir / "audit").exists()
    # Restoring an older copy of the whole workdir (anchor included) is caught too.
    with open_station(tmp_path / "w2", witness.with_name("w2.cp")) as audit:
        grow(audit, 2)
    shutil.copytree(tmp_path / "w2", tmp_path / "w2-backup")
    with open_station(tmp_path / "w2", witness.with_name("w2.cp")) as audit:
        grow(audit, 2)
    shutil.rmtree(tmp_path / "w2")
    shutil.copytree(tmp_path / "w2-backup", tmp_path / "w2")
    with pytest.raises(AuditRollbackError, match="witness .* covers 4 records"):
        open_station(tmp_path / "w2", witness.with_name("w2.cp"))


def test_a_flipped_byte_is_refused_and_kept(tmp_path: Path) -> None:
    with open_station(tmp_path) as audit:
        grow(audit, 3)
    path = log_path(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(AuditError):
        open_station(tmp_path)
    with pytest.raises(AuditError):
        verify_log(tmp_path / "audit", PUB)
    assert path.read_bytes() == bytes(data)


def test_a_damaged_or_foreign_anchor_is_refused(tmp_path: Path) -> None:
    with open_station(tmp_path) as audit:
        grow(audit, 2)
    anchor = tmp_path / "audit.anchor"
    good = anchor.read_bytes()
    anchor.write_bytes(good.replace(b'"size":2', b'"size":1'))
    with pytest.raises(AuditError, match="anchor .* is not a signed checkpoint"):
        open_station(tmp_path)
    anchor.write_bytes(b"{not json")
    with pytest.raises(AuditError, match="anchor .* is not a signed checkpoint"):
        open_station(tmp_path)
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
    forged = sign_checkpoint(other, STATION, 0, merkle.EMPTY_ROOT.hex(), "2026")
    anchor.write_text(forged.to_json() + "\n")
    with pytest.raises(AuditError, match="not signed by station key"):
        open_station(tmp_path)
    anchor.write_bytes(good)
    open_station(tmp_path).close()


def test_a_deleted_anchor_is_a_rollback_not_a_first_start(tmp_path: Path) -> None:
    """Deleting the anchor (and restoring an older log) must not pass as an upgrade."""
    with open_station(tmp_path) as audit:
        grow(audit, 3)
    (tmp_path / "audit.anchor").unlink()
    with pytest.raises(AuditRollbackError, match="anchor .* is missing"):
        open_station(tmp_path)


def test_a_new_witness_is_created_and_noted(tmp_path: Path) -> None:
    with open_station(tmp_path / "w") as audit:
        grow(audit, 2)
    witness = tmp_path / "umcg.witness"
    with open_station(tmp_path / "w", witness) as audit:
        note = audit.records()[-1]
        assert note.event == "log_anchored" and "created the witness" in str(
            note.reason
        )
        assert witness.read_text() == audit.checkpoint().to_json() + "\n"


def test_an_unwritable_witness_stops_the_log(tmp_path: Path) -> None:
    """Fail closed: a witness that cannot be written refuses the open."""
    with pytest.raises(AuditError, match="witness .* could not be updated"):
        open_station(tmp_path / "w", tmp_path / "not-mounted" / "umcg.witness")


# -- crashes -------------------------------------------------------------------------
CRASH = """
import os, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pht.station.audit import AuditLog

workdir = Path(sys.argv[1])
key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
audit = AuditLog.open(workdir / "audit", "umcg", key, anchor=workdir / "audit.anchor")
for i in range(3):
    audit.append("run", "success", request_id=f"req-{i}")
real = os.write

def torn(fd, data):  # the power fails halfway through the next write
    real(fd, bytes(data)[: len(data) // 2])
    os._exit(9)

os.write = torn
audit.append("release", "success", request_id="req-3", reason="x" * 200)
"""


def test_a_real_crash_mid_write_is_reported_and_recovered(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH), str(tmp_path)],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr.decode()
    data = log_path(tmp_path).read_bytes()
    torn = data[data.rfind(b"\n") + 1 :]
    assert torn and not data.endswith(b"\n")
    report = verify_log(tmp_path / "audit", PUB)
    assert (report.size, report.torn_tail_bytes) == (3, len(torn))
    assert "torn tail" in report.problems[0]
    anchored = Checkpoint.from_json((tmp_path / "audit.anchor").read_text())
    assert anchored.size == 3  # the torn record was never anchored
    with open_station(tmp_path) as audit:
        note = audit.records()[-1]
        assert [r.request_id for r in audit.records()[:3]] == [
            "req-0",
            "req-1",
            "req-2",
        ]
    assert note.event == "log_recovered" and note.seq == 3
    assert base64.b64decode(str(note.details["log_dropped_base64"])) == torn
    assert verify_log(tmp_path / "audit", PUB, anchored).problems == ()


# -- cheap per-request reads ---------------------------------------------------------
def test_views_by_event_request_and_nonce(tmp_path: Path) -> None:
    with open_station(tmp_path) as audit:
        grow(audit, 3)
        audit.append("run", "success", request_id="req-1")
        decisions = audit.by_event("policy_decision")
        assert [r.seq for r in decisions] == [0, 1, 2] and len(decisions) == 3
        assert [r.seq for r in audit.by_request("req-1")] == [1, 3]
        assert [r.seq for r in audit.by_nonce("nonce-2")] == [2]
        assert len(audit.by_request("unknown")) == 0
        grow(audit, 2)
        assert len(decisions) == 3  # a view is a snapshot, unaffected by appends
        assert len(audit.by_event("policy_decision")) == 5
        assert decisions[-1].seq == 2 and decisions[0:2] == list(decisions)[0:2]
        with pytest.raises(IndexError):
            decisions[3]
        assert list(audit.view()) == audit.records()
    with open_station(tmp_path) as audit:  # rebuilt from the file on open
        assert [r.seq for r in audit.by_request("req-1")] == [1, 3]


# -- format 1 logs -------------------------------------------------------------------
def write_format1(directory: Path, n: int, torn: bytes = b"") -> list[Checkpoint]:
    """A log as pht 0.1 wrote it: audit.log and checkpoints.jsonl."""
    directory.mkdir(parents=True)
    tree, checkpoints, records = merkle.CompactRange(), [], []
    clock = Clock()

    def stamp() -> str:
        return clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    checkpoints.append(sign_checkpoint(KEY, STATION, 0, tree.root().hex(), stamp()))
    for seq in range(n):
        record = AuditRecord(
            seq=seq, time=stamp(), event="run", outcome="success", station=STATION
        )
        records.append(record.to_line())
        tree.append(merkle.leaf_hash(records[-1]))
        checkpoints.append(
            sign_checkpoint(KEY, STATION, tree.size, tree.root().hex(), stamp())
        )
    (directory / LEGACY_LOG_FILE).write_bytes(
        b"".join(line + b"\n" for line in records) + torn
    )
    (directory / LEGACY_CHECKPOINT_FILE).write_text(
        "".join(cp.to_json() + "\n" for cp in checkpoints)
    )
    return checkpoints


def test_a_format1_log_is_verified_migrated_and_anchored(tmp_path: Path) -> None:
    old = write_format1(tmp_path / "audit", 5, torn=b'{"dataset":nu')
    report = verify_log(tmp_path / "audit", PUB, old[5])  # auditors read format 1
    assert (report.format, report.size, report.root) == (1, 5, old[5].root)
    with open_station(tmp_path) as audit:
        events = [r.event for r in audit.records()]
        assert events == ["run"] * 5 + ["log_recovered", "log_anchored"]
        anchored = audit.records()[-1]
        assert anchored.details["migrated_from"] == "pht-audit/1"
        assert anchored.details["checkpoints_signed"] == 0  # all carried over
    assert not (tmp_path / "audit" / LEGACY_LOG_FILE).exists()
    assert not (tmp_path / "audit" / LEGACY_CHECKPOINT_FILE).exists()
    # Same leaves, same roots: receipts issued before the upgrade still verify.
    report = verify_log(tmp_path / "audit", PUB, old)
    assert report.format == 2 and report.size == 7 and report.problems == ()
    lines = log_path(tmp_path).read_bytes().splitlines()
    assert [json.loads(line)["checkpoint"] for line in lines[:6]] == [
        cp.to_dict() for cp in old
    ]


# -- pht audit verify --checkpoint result.json ---------------------------------------
def result_json(path: Path, receipts: list[tuple[Identity, Receipt]]) -> Path:
    """The provenance part of a result.json, as pht.orchestrator.run writes it."""
    rows = [
        {
            "station": receipt.station,
            "round": receipt.round,
            "output_digest": receipt.output_digest,
            "audit_checkpoint": {
                "size": receipt.audit_size,
                "root": receipt.audit_root,
            },
            "receipt": sign_receipt(receipt, identity),
        }
        for identity, receipt in receipts
    ]
    path.write_text(json.dumps({"provenance": {"receipts": rows}}, indent=2))
    return path


def receipt(station: str, checkpoint: Checkpoint, request: str = "r-1") -> Receipt:
    return Receipt(
        request_id=request,
        station=station,
        round=1,
        output_digest="sha256:" + "0" * 64,
        sealed_digest="sha256:" + "1" * 64,
        audit_size=checkpoint.size,
        audit_root=checkpoint.root,
        time="2026-01-01T00:00:00+00:00",
    )


Keys = tuple[Identity, Identity, Path]


@pytest.fixture
def station_keys(tmp_path: Path) -> Keys:
    umcg = new_identity("station", "UMCG", "umcg")
    nki = new_identity("station", "NKI", "nki")
    _, pub = save_identity(umcg, tmp_path / "keys")
    return umcg, nki, pub


def test_cli_verify_against_a_result_json(
    tmp_path: Path, station_keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    umcg, nki, pub = station_keys
    work = tmp_path / "umcg"
    log = AuditLog.open(work / "audit", "umcg", umcg.signing, anchor=work / "a")
    with log:
        grow(log, 3)
        first = log.checkpoint()
        grow(log, 2)
        second = log.checkpoint()
    shutil.copytree(work / "audit", tmp_path / "backup")
    other = Checkpoint("nki", 9, "ab" * 32, "2026", "0" * 16, "")
    result = result_json(
        tmp_path / "result.json",
        [
            (umcg, receipt("umcg", first)),
            (nki, receipt("nki", other)),  # another station's receipt: skipped
            (umcg, receipt("umcg", second, "r-2")),
        ],
    )
    with AuditLog.open(work / "audit", "umcg", umcg.signing, anchor=work / "a") as log:
        grow(log, 4)  # the log grew since the run: fine
    args = ["audit", "verify", str(work / "audit"), "--public-key", str(pub)]
    assert main([*args, "--checkpoint", str(result)]) == 0
    printed = capsys.readouterr().out
    assert "intact: 9 records" in printed
    assert "consistent with the receipt of request r-1 round 1" in printed
    assert "(size 5)" in printed

    # Rolled back to before the second receipt: verification fails, exit 6.
    shutil.rmtree(work / "audit")
    shutil.copytree(tmp_path / "backup", work / "audit")
    raw = log_path(work).read_bytes().splitlines(keepends=True)
    log_path(work).write_bytes(b"".join(raw[:4]))  # 3 records
    assert main([*args, "--checkpoint", str(result)]) == 6
    err = capsys.readouterr().err
    assert "receipt of request r-2 round 1" in err and "covers 5 records" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_verify_refuses_a_forged_receipt(
    tmp_path: Path, station_keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    umcg, _, pub = station_keys
    work = tmp_path / "umcg"
    with AuditLog.open(work / "audit", "umcg", umcg.signing, anchor=work / "a") as log:
        grow(log, 2)
        cp = log.checkpoint()
    result = result_json(tmp_path / "result.json", [(umcg, receipt("umcg", cp))])
    data = json.loads(result.read_text())
    envelope = data["provenance"]["receipts"][0]["receipt"]
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["audit_size"] = 1
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    result.write_text(json.dumps(data))
    args = ["audit", "verify", str(work / "audit"), "--public-key", str(pub)]
    assert main([*args, "--checkpoint", str(result)]) == 6
    err = capsys.readouterr().err
    assert "is not a valid receipt of station key" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "content",
    [
        None,  # missing
        "folder",
        "{not json",
        "[1, 2]",
        '{"size": 3}',
        '{"provenance": {}}',
        '{"provenance": {"receipts": [{"station": "umcg"}]}}',
        "nki-only",
    ],
)
def test_cli_verify_bad_checkpoint_files_exit_2_with_one_line(
    tmp_path: Path,
    station_keys: Keys,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
) -> None:
    umcg, nki, pub = station_keys
    work = tmp_path / "umcg"
    with AuditLog.open(work / "audit", "umcg", umcg.signing, anchor=work / "a") as log:
        grow(log, 1)
    saved = tmp_path / "saved.json"
    if content == "folder":
        saved.mkdir()
    elif content == "nki-only":
        nki_cp = Checkpoint("nki", 1, "ab" * 32, "2026", "0" * 16, "")
        result_json(saved, [(nki, receipt("nki", nki_cp))])
    elif content is not None:
        saved.write_text(content)
    args = ["audit", "verify", str(work / "audit"), "--public-key", str(pub)]
    assert main([*args, "--checkpoint", str(saved)]) == ConfigError.exit_code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert str(saved) in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_cli_verify_accepts_the_anchor_file(
    tmp_path: Path, station_keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    umcg, _, pub = station_keys
    work = tmp_path / "umcg"
    with AuditLog.open(work / "audit", "umcg", umcg.signing, anchor=work / "a") as log:
        grow(log, 2)
    shutil.copy(work / "a", tmp_path / "kept.anchor")
    with AuditLog.open(work / "audit", "umcg", umcg.signing, anchor=work / "a") as log:
        grow(log, 1)
    args = ["audit", "verify", str(work / "audit"), "--public-key", str(pub)]
    assert main([*args, "--checkpoint", str(tmp_path / "kept.anchor")]) == 0
    assert "consistent with the saved checkpoint" in capsys.readouterr().out
    os.truncate(log_path(work), log_path(work).stat().st_size - 1)  # cut a newline
    assert main([*args, "--checkpoint", str(tmp_path / "kept.anchor")]) == 0
    assert "note: the line of the last record (seq 2) lacks its newline" in (
        capsys.readouterr().out
    )
