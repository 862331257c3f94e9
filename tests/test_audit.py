"""The station audit log: round trips, proofs, tampering, torn tails, queries."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pht.errors import AuditError
from pht.station import merkle
from pht.station.audit import (
    CHECKPOINT_FILE,
    LOG_FILE,
    AuditLog,
    AuditRecord,
    Checkpoint,
    export_csv,
    export_json,
    key_id,
    query,
    verify_log,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
PUB = KEY.public_key()
STATION = "umcg"
N = 8  # records in the shared log


class Clock:
    """A deterministic clock: one second per call from 2026-01-01."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def open_log(directory: Path, key: Ed25519PrivateKey = KEY) -> AuditLog:
    return AuditLog.open(directory, STATION, key, clock=Clock())


def fill(audit: AuditLog, n: int, start: int = 0) -> list[AuditRecord]:
    users = [("alice", "UMCG"), ("bob", "NKI"), ("carol", "UMCG")]
    out = []
    for i in range(start, start + n):
        user, org = users[i % 3]
        out.append(
            audit.append(
                ("request_received", "policy_decision", "run", "release")[i % 4],
                ("success", "refused")[i % 5 == 4],
                user=user,
                organisation=org,
                role="analyst",
                purpose=("pakketbeheer", "research")[i % 2],
                dataset="melanoma",
                train=("km@1", "cox@2")[i % 2],
                request_id=f"req-{i}",
                details={"i": i, "x": 0.5 * i, "note": "é"},
            )
        )
    return out


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Bytes of a log of N records, plus the checkpoint after each record."""

    log: bytes
    checkpoints: bytes
    saved: list[Checkpoint]  # saved[k] covers k records


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    directory = tmp_path_factory.mktemp("shared")
    saved = []
    with open_log(directory) as audit:
        saved.append(audit.checkpoint())
        for i in range(N):
            fill(audit, 1, start=i)
            saved.append(audit.checkpoint())
    return Snapshot(
        (directory / LOG_FILE).read_bytes(),
        (directory / CHECKPOINT_FILE).read_bytes(),
        saved,
    )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scratch")


def write(directory: Path, log: bytes, checkpoints: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOG_FILE).write_bytes(log)
    (directory / CHECKPOINT_FILE).write_bytes(checkpoints)
    return directory


# -- round trip and file format ------------------------------------------------------
def test_append_verify_round_trip(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        assert audit.checkpoint().size == 0  # a new log starts with a signed genesis
        records = fill(audit, 5)
        cp = audit.checkpoint()
        assert [r.seq for r in records] == [0, 1, 2, 3, 4]
        assert audit.records() == records
    raw = lines(tmp_path / LOG_FILE)
    assert len(raw) == 5 and all(line.endswith(b"\n") for line in raw)
    for line, record in zip(raw, records, strict=True):
        obj = json.loads(line)
        assert (
            line[:-1]
            == json.dumps(
                obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        )
        assert AuditRecord(**obj) == record
    leaves = [merkle.leaf_hash(line[:-1]) for line in raw]
    assert cp.size == 5 and cp.root == merkle.root(leaves).hex()
    assert cp.key_id == key_id(PUB) == re.sub("[^0-9a-f]", "", cp.key_id)
    assert len(lines(tmp_path / CHECKPOINT_FILE)) == 6  # genesis + one per record

    report = verify_log(tmp_path, PUB)
    assert (report.size, report.root, report.checkpoint) == (5, cp.root, cp)
    assert (report.torn_tail_bytes, report.problems) == (0, ())

    with open_log(tmp_path) as audit:  # reopening continues the sequence
        assert audit.records() == records
        assert audit.append("key_change", "success").seq == 5
    assert verify_log(tmp_path, PUB).size == 6


def test_record_fields_and_validation(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        record = audit.append(
            "policy_decision", "refused", user="alice", reason="k < 10", decision="deny"
        )
        assert record.station == STATION and record.dataset is None
        assert record.details == {}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record.time)
        with pytest.raises(AuditError, match="unknown event 'deleted'"):
            audit.append("deleted", "success")
        with pytest.raises(AuditError, match="unknown outcome"):
            audit.append("run", "maybe")
        with pytest.raises(AuditError, match=r"unknown audit field\(s\) \['rows'\]"):
            audit.append("run", "success", rows="1,2,3")
        with pytest.raises(AuditError, match="seq"):
            audit.append("run", "success", seq=7)
        with pytest.raises(AuditError, match="finite"):
            audit.append("run", "success", details={"x": float("nan")})
        with pytest.raises(AuditError, match="details"):
            audit.append("run", "success", details={"flag": True})
        with pytest.raises(AuditError, match="user must be a string"):
            audit.append("run", "success", user=3)
        assert audit.size == 1  # nothing was written by the failed appends
    assert verify_log(tmp_path, PUB).size == 1


def test_one_writer_per_folder(tmp_path: Path) -> None:
    with open_log(tmp_path):
        with pytest.raises(AuditError, match="already open"):
            open_log(tmp_path)
    with open_log(tmp_path) as audit:
        audit.close()
        with pytest.raises(AuditError, match="closed"):
            audit.append("run", "success")
    audit = open_log(tmp_path)
    del audit  # a forgotten log releases its lock when collected
    open_log(tmp_path).close()


def test_log_belongs_to_one_station_and_key(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 2)
    with pytest.raises(AuditError, match="belongs to station 'umcg', not 'nki'"):
        AuditLog.open(tmp_path, "nki", KEY)
    with pytest.raises(AuditError, match="checkpoint 0 is not signed by station key"):
        AuditLog.open(tmp_path, STATION, OTHER)


def test_missing_files_and_empty_log(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="audit.log is missing"):
        verify_log(tmp_path, PUB)
    with open_log(tmp_path):
        pass
    report = verify_log(tmp_path, PUB)
    assert report.size == 0 and report.root == merkle.EMPTY_ROOT.hex()
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"")
    with pytest.raises(AuditError, match="holds no signed checkpoint"):
        verify_log(tmp_path, PUB)


# -- proofs --------------------------------------------------------------------------
def test_inclusion_proof_for_every_record(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        records = fill(audit, 13)
        cp = audit.checkpoint()
        root = bytes.fromhex(cp.root)
        for record in records:
            proof = audit.inclusion_proof(record.seq)
            leaf = merkle.leaf_hash(record.to_line())
            assert leaf == audit.leaf_hash(record.seq)
            merkle.verify_inclusion(record.seq, cp.size, leaf, proof, root)
            with pytest.raises(AuditError):  # the proof is for this record only
                merkle.verify_inclusion(
                    (record.seq + 1) % cp.size, cp.size, leaf, proof, root
                )
        with pytest.raises(AuditError, match="no record seq 13"):
            audit.inclusion_proof(13)


def test_consistency_from_an_old_saved_checkpoint(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 3)
        saved_text = audit.checkpoint().to_json()
        fill(audit, 6)
        proof = audit.consistency_proof(3)
        now = audit.checkpoint()
    saved = Checkpoint.from_json(saved_text)
    assert Checkpoint(**json.loads(saved_text)) == saved  # as the CLI reads it
    merkle.verify_consistency(
        3, 9, bytes.fromhex(saved.root), bytes.fromhex(now.root), proof
    )
    assert verify_log(tmp_path, PUB, saved).size == 9
    assert verify_log(tmp_path, PUB, now).size == 9


def test_saved_checkpoint_detects_a_rewritten_log(tmp_path: Path) -> None:
    with open_log(tmp_path / "a") as audit:
        fill(audit, 4)
        saved = audit.checkpoint()
    # The station itself (it has the key) rebuilds history with record 1 changed.
    with open_log(tmp_path / "b") as audit:
        fill(audit, 1)
        audit.append("run", "success", user="mallory")
        fill(audit, 4)
    assert verify_log(tmp_path / "b", PUB).size == 6  # self-consistent on its own
    with pytest.raises(AuditError, match="does not extend the saved checkpoint"):
        verify_log(tmp_path / "b", PUB, saved)


def test_saved_checkpoint_of_another_key_or_station_is_refused(
    tmp_path: Path, snapshot: Snapshot
) -> None:
    directory = write(tmp_path, snapshot.log, snapshot.checkpoints)
    forged = dataclasses.replace(snapshot.saved[3], size=2)
    with pytest.raises(AuditError, match="saved checkpoint is not signed by station"):
        verify_log(directory, PUB, forged)


# -- tampering -----------------------------------------------------------------------
@settings(max_examples=120, deadline=None)
@given(bit=st.integers())
@example(bit=-8)  # the final newline: the last line then looks torn
@example(bit=0)
def test_any_flipped_bit_in_committed_records_is_detected(
    snapshot: Snapshot, scratch: Path, bit: int
) -> None:
    """Every byte of audit.log is committed, so every single-bit flip is an error.

    Even a flip of the final newline (which makes the last line look torn) is
    caught: the latest checkpoint covers that record, and a torn tail may only
    follow the last checkpoint.
    """
    bit %= len(snapshot.log) * 8
    data = bytearray(snapshot.log)
    data[bit // 8] ^= 1 << (bit % 8)
    directory = write(scratch / "flip", bytes(data), snapshot.checkpoints)
    with pytest.raises(AuditError):
        verify_log(directory, PUB)


@pytest.mark.parametrize("where", [0, 500, -2, -1])
def test_the_station_refuses_to_open_a_tampered_log(
    tmp_path: Path, snapshot: Snapshot, where: int
) -> None:
    data = bytearray(snapshot.log)
    data[where] ^= 0x04
    directory = write(tmp_path, bytes(data), snapshot.checkpoints)
    with pytest.raises(AuditError):
        open_log(directory)
    assert (directory / LOG_FILE).read_bytes() == bytes(data)  # nothing truncated


@settings(max_examples=100, deadline=None)
@given(bit=st.integers())
@example(bit=-8)  # the final newline of the last checkpoint
def test_any_flipped_bit_in_checkpoints_is_detected_or_reported(
    snapshot: Snapshot, scratch: Path, bit: int
) -> None:
    """A flip raises, except one that makes the *last* checkpoint line unreadable:
    that looks exactly like a crash before the last checkpoint was written, so the
    report is one record shorter and names both torn tails (never silently intact).
    """
    bit %= len(snapshot.checkpoints) * 8
    data = bytearray(snapshot.checkpoints)
    data[bit // 8] ^= 1 << (bit % 8)
    directory = write(scratch / "cpflip", snapshot.log, bytes(data))
    try:
        report = verify_log(directory, PUB)
    except AuditError:
        return
    last_line_start = snapshot.checkpoints.rstrip(b"\n").rfind(b"\n") + 1
    assert bit // 8 >= last_line_start
    assert report.size == N - 1 and len(report.problems) == 2
    assert report.torn_tail_bytes == len(lines(directory / LOG_FILE)[-1])


def test_a_deleted_record_is_named(tmp_path: Path, snapshot: Snapshot) -> None:
    raw = snapshot.log.splitlines(keepends=True)
    directory = write(tmp_path, b"".join(raw[:2] + raw[3:]), snapshot.checkpoints)
    with pytest.raises(AuditError, match="line 3 holds seq 3, expected seq 2"):
        verify_log(directory, PUB)


def test_two_swapped_records_are_named(tmp_path: Path, snapshot: Snapshot) -> None:
    raw = snapshot.log.splitlines(keepends=True)
    raw[4], raw[5] = raw[5], raw[4]
    directory = write(tmp_path, b"".join(raw), snapshot.checkpoints)
    with pytest.raises(AuditError, match="line 5 holds seq 5, expected seq 4"):
        verify_log(directory, PUB)


def test_deleted_record_with_renumbered_seqs_breaks_the_root(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 6)
    records = [json.loads(line) for line in lines(tmp_path / LOG_FILE)]
    del records[2]
    for seq, record in enumerate(records):
        record["seq"] = seq
    (tmp_path / LOG_FILE).write_bytes(
        b"".join(AuditRecord(**r).to_line() + b"\n" for r in records)
    )
    with pytest.raises(
        AuditError,
        match=r"checkpoint 3 \(size 3\) has root .* seq 2\.\.2 \(lines 3\.\.3",
    ):
        verify_log(tmp_path, PUB)


def test_an_edited_field_is_named(tmp_path: Path, snapshot: Snapshot) -> None:
    edited = snapshot.log.replace(b'"user":"bob"', b'"user":"eve"', 1)
    directory = write(tmp_path, edited, snapshot.checkpoints)
    with pytest.raises(AuditError, match=r"seq 1\.\.1 \(lines 2\.\.2 of audit.log\)"):
        verify_log(directory, PUB)


def test_checkpoints_signed_by_another_key(tmp_path: Path, snapshot: Snapshot) -> None:
    re_signed = []
    for line in snapshot.checkpoints.splitlines():
        cp = Checkpoint.from_json(line)
        text = b"pht-audit-checkpoint/1\n" + (
            f"{cp.station}\n{cp.size}\n{cp.root}\n{cp.time}\n".encode()
        )
        genuine = KEY.sign(text)
        assert genuine == base64.b64decode(cp.signature)
        forged = OTHER.sign(text)
        re_signed.append(
            dataclasses.replace(
                cp,
                key_id=key_id(OTHER.public_key()),
                signature=base64.b64encode(forged).decode(),
            )
        )
    body = "".join(cp.to_json() + "\n" for cp in re_signed).encode()
    directory = write(tmp_path / "other", snapshot.log, body)
    kid = key_id(PUB)
    with pytest.raises(
        AuditError, match=f"checkpoint 0 is not signed by station key {kid}"
    ):
        verify_log(directory, PUB)
    # Same key id claimed, but the signature is by the other key.
    sneaky = [dataclasses.replace(cp, key_id=kid) for cp in re_signed]
    body = "".join(cp.to_json() + "\n" for cp in sneaky).encode()
    directory = write(tmp_path / "sneaky", snapshot.log, body)
    with pytest.raises(AuditError, match="checkpoint 0 .* does not verify"):
        verify_log(directory, PUB)
    # And a genuine log does not verify with another station's key.
    directory = write(tmp_path / "genuine", snapshot.log, snapshot.checkpoints)
    with pytest.raises(AuditError, match="not signed by station key"):
        verify_log(directory, OTHER.public_key())


def test_checkpoint_lines_must_be_canonical(tmp_path: Path, snapshot: Snapshot) -> None:
    # Base64 is malleable in its padding bits: "...hAA==" and "...hAC==" decode to
    # the same signature. The checkpoint text must not be malleable.
    raw = snapshot.checkpoints.splitlines(keepends=True)
    cp = Checkpoint.from_json(raw[3])
    sig = base64.b64decode(cp.signature)
    pad = cp.signature.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = pad[:-1] + alphabet[alphabet.index(pad[-1]) ^ 1] + "=="
    assert base64.b64decode(twin) == sig and twin != cp.signature
    raw[3] = (dataclasses.replace(cp, signature=twin).to_json() + "\n").encode()
    directory = write(tmp_path / "b64", snapshot.log, b"".join(raw))
    with pytest.raises(AuditError, match="checkpoint 3 .* not canonical base64"):
        verify_log(directory, PUB)
    raw = snapshot.checkpoints.splitlines(keepends=True)
    raw[3] = raw[3].replace(b",", b", ")
    directory = write(tmp_path / "spaces", snapshot.log, b"".join(raw))
    with pytest.raises(AuditError, match="checkpoints.jsonl line 4: not in canonical"):
        verify_log(directory, PUB)


def test_records_added_without_the_key_are_detected(
    tmp_path: Path, snapshot: Snapshot
) -> None:
    raw = snapshot.log.splitlines(keepends=True)
    extra = [raw[i].replace(b'"seq":%d' % i, b'"seq":%d' % (N + i)) for i in (0, 1)]
    directory = write(tmp_path, snapshot.log + b"".join(extra), snapshot.checkpoints)
    with pytest.raises(AuditError, match="2 lines after the last signed checkpoint"):
        verify_log(directory, PUB)


# -- truncation ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, int]:
    """N committed records plus one whose checkpoint was never written (a crash
    between the two fsyncs). Returns the files and where the uncommitted line starts.
    """
    directory = tmp_path_factory.mktemp("interrupted")
    with open_log(directory) as audit:
        fill(audit, N + 1)
    log = (directory / LOG_FILE).read_bytes()
    checkpoints = b"".join(lines(directory / CHECKPOINT_FILE)[:-1])
    return log, checkpoints, log.rstrip(b"\n").rfind(b"\n") + 1


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0))
@example(cut=-1)  # nothing cut
def test_truncation_at_any_offset(
    interrupted: tuple[bytes, bytes, int], scratch: Path, cut: int
) -> None:
    """Cutting audit.log anywhere in the uncommitted last line leaves a torn tail
    that is reported while the N committed records verify; cutting into committed
    records (whole or in part) is an error: the checkpoints cover them.
    """
    log, checkpoints, committed_end = interrupted
    cut %= len(log) + 1
    directory = write(scratch / "cut", log[:cut], checkpoints)
    if cut < committed_end:
        with pytest.raises(AuditError, match=f"covers {N} records but"):
            verify_log(directory, PUB)
        return
    report = verify_log(directory, PUB)
    assert report.size == N and report.torn_tail_bytes == cut - committed_end
    assert bool(report.problems) == (cut > committed_end)
    if report.problems:
        assert (
            f"torn tail of {cut - committed_end} bytes at offset {committed_end}"
            in (report.problems[0])
        )


@settings(max_examples=30, deadline=None)
@given(keep=st.integers(min_value=0, max_value=N - 1))
def test_rolled_back_log_fails_against_a_saved_checkpoint(
    snapshot: Snapshot, scratch: Path, keep: int
) -> None:
    """Cutting whole records *and* their checkpoints leaves a log that is consistent
    on its own; only a checkpoint saved earlier (a receipt) shows the truncation.
    """
    records = snapshot.log.splitlines(keepends=True)[:keep]
    checkpoints = snapshot.checkpoints.splitlines(keepends=True)[: keep + 1]
    directory = write(scratch / "rollback", b"".join(records), b"".join(checkpoints))
    assert verify_log(directory, PUB).size == keep
    assert verify_log(directory, PUB, snapshot.saved[keep]).size == keep
    with pytest.raises(
        AuditError, match=f"covers {N} records but the log holds {keep}"
    ):
        verify_log(directory, PUB, snapshot.saved[N])


# -- crashes -------------------------------------------------------------------------
def test_crash_mid_record_is_recovered(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 3)
        cp = audit.checkpoint()
    offset = (tmp_path / LOG_FILE).stat().st_size
    half = b'{"dataset":"melanoma","details":{"i":3'
    with open(tmp_path / LOG_FILE, "ab") as handle:  # the crash: half a line
        handle.write(half)

    report = verify_log(tmp_path, PUB)
    assert (report.size, report.root, report.torn_tail_bytes) == (3, cp.root, len(half))
    assert report.problems == (
        f"audit.log: torn tail of {len(half)} bytes at offset {offset} after the last "
        "signed checkpoint (size 3), left by an interrupted append; AuditLog.open "
        "drops it",
    )
    assert len(query(tmp_path)) == 3  # query skips the torn line

    with open_log(tmp_path) as audit:
        recovered = audit.records()[-1]
    assert recovered.seq == 3 and recovered.event == "log_recovered"
    assert recovered.reason == (
        f"dropped a torn tail of {len(half)} bytes at offset {offset} of audit.log"
    )
    assert recovered.details["log_dropped_bytes"] == len(half)
    assert recovered.details["log_offset"] == offset
    assert base64.b64decode(str(recovered.details["log_dropped_base64"])) == half
    assert half not in (tmp_path / LOG_FILE).read_bytes()
    report = verify_log(tmp_path, PUB, cp)
    assert (report.size, report.torn_tail_bytes, report.problems) == (4, 0, ())


def test_crash_between_record_and_checkpoint_is_recovered(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 4)
        cp = audit.checkpoint()
    # The crash: a whole record, then half of its checkpoint line.
    whole = lines(tmp_path / LOG_FILE)[-1].replace(b'"seq":3', b'"seq":4')
    with open(tmp_path / LOG_FILE, "ab") as handle:
        handle.write(whole)
    with open(tmp_path / CHECKPOINT_FILE, "ab") as handle:
        handle.write(b'{"key_id":"')
    report = verify_log(tmp_path, PUB)
    assert (report.size, report.torn_tail_bytes) == (4, len(whole))
    assert [p.split(":")[0] for p in report.problems] == [LOG_FILE, CHECKPOINT_FILE]
    with open_log(tmp_path) as audit:
        assert audit.size == 5
        recovered = audit.records()[-1]
    assert recovered.event == "log_recovered"
    assert recovered.details["checkpoints_dropped_bytes"] == len(b'{"key_id":"')
    assert recovered.details["log_dropped_bytes"] == len(whole)
    assert verify_log(tmp_path, PUB, cp).problems == ()


def test_crash_while_creating_the_log_is_recovered(tmp_path: Path) -> None:
    (tmp_path / LOG_FILE).write_bytes(b"")
    (tmp_path / CHECKPOINT_FILE).write_bytes(b'{"key_id":"5647')  # half a genesis
    with pytest.raises(AuditError, match="holds no signed checkpoint"):
        verify_log(tmp_path, PUB)
    with open_log(tmp_path) as audit:
        assert [r.event for r in audit.records()] == ["log_recovered"]
    report = verify_log(tmp_path, PUB)
    assert (report.size, report.problems) == (1, ())


def test_a_damaged_committed_last_record_is_not_treated_as_torn(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 3)
    damaged = (tmp_path / LOG_FILE).read_bytes()[:-3] + b"@\n"
    (tmp_path / LOG_FILE).write_bytes(damaged)
    with pytest.raises(AuditError, match="covers 3 records but audit.log holds only 2"):
        verify_log(tmp_path, PUB)
    with pytest.raises(AuditError):
        open_log(tmp_path)
    assert (tmp_path / LOG_FILE).read_bytes() == damaged  # evidence kept


# -- query and export ----------------------------------------------------------------
def test_query_filters(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        records = fill(audit, 10)
    assert query(tmp_path) == records
    assert query(tmp_path, requester="bob") == [r for r in records if r.user == "bob"]
    assert query(tmp_path, requester="UMCG") == [
        r for r in records if r.organisation == "UMCG"
    ]
    assert query(tmp_path, purpose="research") == records[1::2]
    assert query(tmp_path, train="km@1", dataset="melanoma") == records[0::2]
    assert query(tmp_path, outcome="refused") == [records[4], records[9]]
    assert query(tmp_path, event="run") == [records[2], records[6]]
    assert query(tmp_path, dataset="other") == []
    # Clock: record i at 00:00:(2i + 1), its checkpoint one second later.
    assert query(tmp_path, since="2026-01-01T00:00:05Z") == records[2:]
    assert query(tmp_path, until="2026-01-01T00:00:05Z") == records[:2]
    assert (
        query(
            tmp_path,
            since=datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC),
            until=datetime(2026, 1, 1, 0, 0, 7),  # naive: taken as UTC
        )
        == records[1:3]
    )
    assert query(tmp_path, requester="alice", outcome="refused") == [records[9]]
    with pytest.raises(AuditError, match="since is not an ISO 8601 time"):
        query(tmp_path, since="yesterday")


def test_export_csv_and_json(tmp_path: Path) -> None:
    with open_log(tmp_path / "log") as audit:
        fill(audit, 4)
        audit.append("review", "pending", reason='says "hi", then\nleaves')
        records = audit.records()
    export_csv(records, tmp_path / "out.csv")
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [f.name for f in dataclasses.fields(AuditRecord)] == list(rows[0])
    assert [int(r["seq"]) for r in rows] == [0, 1, 2, 3, 4]
    assert rows[1]["user"] == "bob" and rows[4]["user"] == ""
    assert json.loads(rows[1]["details"]) == {"i": 1, "x": 0.5, "note": "é"}
    assert rows[4]["reason"] == 'says "hi", then\nleaves'

    export_json(records, tmp_path / "out.json")
    loaded = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [AuditRecord(**r) for r in loaded] == records
