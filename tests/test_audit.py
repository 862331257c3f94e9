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

from pht.errors import AuditError, ConfigError
from pht.station import merkle
from pht.station.audit import (
    FORMAT,
    LOG_FILE,
    AuditLog,
    AuditRecord,
    AuditRollbackError,
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


def open_log(root: Path, key: Ed25519PrivateKey = KEY) -> AuditLog:
    """The log of a station whose working folder is ``root``."""
    return AuditLog.open(
        root / "audit", STATION, key, anchor=root / "audit.anchor", clock=Clock()
    )


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


def dump(data: object) -> bytes:
    """A canonical JSON line with its newline, as the log writes it."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def entry(line: bytes) -> tuple[dict[str, object], Checkpoint]:
    """The record (a dict) and checkpoint of one record line."""
    data = json.loads(line)
    return data["record"], Checkpoint(**data["checkpoint"])


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Bytes of a log of N records, plus the checkpoint after each record."""

    log: bytes
    saved: list[Checkpoint]  # saved[k] covers k records


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    root = tmp_path_factory.mktemp("shared")
    saved = []
    with open_log(root) as audit:
        saved.append(audit.checkpoint())
        for i in range(N):
            fill(audit, 1, start=i)
            saved.append(audit.checkpoint())
    return Snapshot((root / "audit" / LOG_FILE).read_bytes(), saved)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scratch")


def write(directory: Path, log: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOG_FILE).write_bytes(log)
    return directory


# -- round trip and file format ------------------------------------------------------
def test_append_verify_round_trip(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        assert audit.checkpoint().size == 0  # a new log starts with a signed genesis
        records = fill(audit, 5)
        cp = audit.checkpoint()
        assert [r.seq for r in records] == [0, 1, 2, 3, 4]
        assert audit.records() == records
    raw = lines(tmp_path / "audit" / LOG_FILE)
    assert len(raw) == 6 and all(line.endswith(b"\n") for line in raw)
    header = json.loads(raw[0])
    assert header["format"] == FORMAT == "pht-audit/2"
    assert Checkpoint(**header["checkpoint"]).root == merkle.EMPTY_ROOT.hex()
    leaves = []
    for size, (line, record) in enumerate(zip(raw[1:], records, strict=True), 1):
        obj = json.loads(line)
        assert (
            line[:-1]
            == json.dumps(
                obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        )
        data, checkpoint = entry(line)
        assert AuditRecord(**data) == record  # type: ignore[arg-type]
        leaves.append(merkle.leaf_hash(record.to_line()))  # the leaf of format 1 too
        # The checkpoint on a record's line covers the tree including that record.
        assert checkpoint.size == size
        assert checkpoint.root == merkle.root(leaves).hex()
        checkpoint.verify(PUB)
    assert cp.size == 5 and cp.root == merkle.root(leaves).hex()
    assert cp.key_id == key_id(PUB) == re.sub("[^0-9a-f]", "", cp.key_id)
    # The anchor outside the folder holds the latest checkpoint.
    anchor = (tmp_path / "audit.anchor").read_text()
    assert anchor == cp.to_json() + "\n"

    report = verify_log(tmp_path / "audit", PUB)
    assert (report.size, report.root, report.checkpoint) == (5, cp.root, cp)
    assert (report.torn_tail_bytes, report.problems, report.format) == (0, (), 2)

    with open_log(tmp_path) as audit:  # reopening continues the sequence
        assert audit.records() == records
        assert audit.append("key_change", "success").seq == 5
    assert verify_log(tmp_path / "audit", PUB).size == 6


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
    assert verify_log(tmp_path / "audit", PUB).size == 1


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
    with pytest.raises(AuditError, match="anchor .* is for station 'umcg', not 'nki'"):
        AuditLog.open(tmp_path / "audit", "nki", KEY, anchor=tmp_path / "audit.anchor")
    with pytest.raises(AuditError, match="belongs to station 'umcg', not 'nki'"):
        AuditLog.open(tmp_path / "audit", "nki", KEY, anchor=tmp_path / "nki.anchor")
    with pytest.raises(AuditError, match="line 1 is not signed by station key"):
        AuditLog.open(tmp_path / "audit", STATION, OTHER, anchor=tmp_path / "o.anchor")


def test_missing_files_and_empty_log(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="audit.jsonl is missing"):
        verify_log(tmp_path, PUB)
    with open_log(tmp_path):
        pass
    report = verify_log(tmp_path / "audit", PUB)
    assert report.size == 0 and report.root == merkle.EMPTY_ROOT.hex()
    (tmp_path / "audit" / LOG_FILE).write_bytes(b"")
    with pytest.raises(AuditError, match="has no header line"):
        verify_log(tmp_path / "audit", PUB)


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
    assert Checkpoint(**json.loads(saved_text)) == saved
    merkle.verify_consistency(
        3, 9, bytes.fromhex(saved.root), bytes.fromhex(now.root), proof
    )
    assert verify_log(tmp_path / "audit", PUB, saved).size == 9
    assert verify_log(tmp_path / "audit", PUB, [saved, now]).size == 9


def test_saved_checkpoint_detects_a_rewritten_log(tmp_path: Path) -> None:
    with open_log(tmp_path / "a") as audit:
        fill(audit, 4)
        saved = audit.checkpoint()
    # The station itself (it has the key) rebuilds history with record 1 changed.
    with open_log(tmp_path / "b") as audit:
        fill(audit, 1)
        audit.append("run", "success", user="mallory")
        fill(audit, 4)
    assert verify_log(tmp_path / "b" / "audit", PUB).size == 6  # consistent alone
    with pytest.raises(
        AuditRollbackError, match="does not extend the saved checkpoint"
    ):
        verify_log(tmp_path / "b" / "audit", PUB, saved)


def test_saved_checkpoint_of_another_key_or_station_is_refused(
    tmp_path: Path, snapshot: Snapshot
) -> None:
    directory = write(tmp_path, snapshot.log)
    forged = dataclasses.replace(snapshot.saved[3], size=2)
    with pytest.raises(AuditError, match="saved checkpoint is not signed by station"):
        verify_log(directory, PUB, forged)


# -- tampering -----------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(bit=st.integers())
@example(bit=-8)  # the final newline: the last line then lacks its newline
@example(bit=-1)
@example(bit=0)
def test_any_flipped_bit_is_detected(
    snapshot: Snapshot, scratch: Path, bit: int
) -> None:
    """Every byte of the log is committed, so every single-bit flip is an error.

    Records and checkpoints share lines, so no flip can make a committed record
    look uncommitted: a flipped final newline leaves a whole signed record followed
    by a byte that a crash cannot have written.
    """
    bit %= len(snapshot.log) * 8
    data = bytearray(snapshot.log)
    data[bit // 8] ^= 1 << (bit % 8)
    directory = write(scratch / "flip", bytes(data))
    with pytest.raises(AuditError):
        verify_log(directory, PUB)


@pytest.mark.parametrize("where", [0, 500, -2, -1])
def test_the_station_refuses_to_open_a_tampered_log(
    tmp_path: Path, snapshot: Snapshot, where: int
) -> None:
    data = bytearray(snapshot.log)
    data[where] ^= 0x04
    directory = write(tmp_path / "audit", bytes(data))
    with pytest.raises(AuditError):
        open_log(tmp_path)
    assert (directory / LOG_FILE).read_bytes() == bytes(data)  # nothing truncated


def test_a_deleted_record_is_named(tmp_path: Path, snapshot: Snapshot) -> None:
    raw = snapshot.log.splitlines(keepends=True)
    directory = write(tmp_path, b"".join(raw[:3] + raw[4:]))
    with pytest.raises(AuditError, match="line 4 holds seq 3, expected seq 2"):
        verify_log(directory, PUB)


def test_two_swapped_records_are_named(tmp_path: Path, snapshot: Snapshot) -> None:
    raw = snapshot.log.splitlines(keepends=True)
    raw[5], raw[6] = raw[6], raw[5]
    directory = write(tmp_path, b"".join(raw))
    with pytest.raises(AuditError, match="line 6 holds seq 5, expected seq 4"):
        verify_log(directory, PUB)


def test_deleted_record_with_renumbered_seqs_breaks_the_root(
    tmp_path: Path, snapshot: Snapshot
) -> None:
    raw = snapshot.log.splitlines(keepends=True)
    del raw[3]  # seq 2
    out = raw[:3]
    for seq, line in enumerate(raw[3:], start=2):
        data = json.loads(line)
        data["record"]["seq"] = seq
        out.append(dump(data))
    directory = write(tmp_path, b"".join(out))
    with pytest.raises(AuditError, match="line 4 has size 4, expected 3"):
        verify_log(directory, PUB)
    # Re-numbering the checkpoint sizes too breaks their signatures.
    for i in range(3, len(out)):
        data = json.loads(out[i])
        data["checkpoint"]["size"] -= 1
        out[i] = dump(data)
    directory = write(tmp_path, b"".join(out))
    with pytest.raises(AuditError, match="line 4 is not signed by station key"):
        verify_log(directory, PUB)


def test_an_edited_field_is_named(tmp_path: Path, snapshot: Snapshot) -> None:
    edited = snapshot.log.replace(b'"user":"bob"', b'"user":"eve"', 1)
    directory = write(tmp_path, edited)
    with pytest.raises(AuditError, match=r"line 3 \(size 2\) has root .* record seq 1"):
        verify_log(directory, PUB)


def test_checkpoints_signed_by_another_key(tmp_path: Path, snapshot: Snapshot) -> None:
    def resign(key_of: str, signer: Ed25519PrivateKey) -> bytes:
        out = []
        for line in snapshot.log.splitlines():
            data = json.loads(line)
            cp = Checkpoint(**data["checkpoint"])
            text = b"pht-audit-checkpoint/1\n" + (
                f"{cp.station}\n{cp.size}\n{cp.root}\n{cp.time}\n".encode()
            )
            assert KEY.sign(text) == base64.b64decode(cp.signature)  # the format
            data["checkpoint"] = dataclasses.asdict(
                dataclasses.replace(
                    cp,
                    key_id=key_of,
                    signature=base64.b64encode(signer.sign(text)).decode(),
                )
            )
            out.append(dump(data))
        return b"".join(out)

    kid = key_id(PUB)
    other = write(tmp_path / "other", resign(key_id(OTHER.public_key()), OTHER))
    with pytest.raises(AuditError, match=f"line 1 is not signed by station key {kid}"):
        verify_log(other, PUB)
    sneaky = write(tmp_path / "sneaky", resign(kid, OTHER))  # claims our key id
    with pytest.raises(AuditError, match="line 1 .* does not verify"):
        verify_log(sneaky, PUB)
    genuine = write(tmp_path / "genuine", snapshot.log)
    with pytest.raises(AuditError, match="not signed by station key"):
        verify_log(genuine, OTHER.public_key())


def test_lines_must_be_canonical(tmp_path: Path, snapshot: Snapshot) -> None:
    # Base64 is malleable in its padding bits: "...hAA==" and "...hAC==" decode to
    # the same signature. The log must not be malleable.
    raw = snapshot.log.splitlines(keepends=True)
    data = json.loads(raw[3])
    sig = data["checkpoint"]["signature"]
    pad = sig.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = pad[:-1] + alphabet[alphabet.index(pad[-1]) ^ 1] + "=="
    assert base64.b64decode(twin) == base64.b64decode(sig) and twin != sig
    data["checkpoint"]["signature"] = twin
    raw[3] = dump(data)
    directory = write(tmp_path / "b64", b"".join(raw))
    with pytest.raises(AuditError, match="line 4 .* not canonical base64"):
        verify_log(directory, PUB)
    raw = snapshot.log.splitlines(keepends=True)
    raw[3] = raw[3].replace(b",", b", ")
    directory = write(tmp_path / "spaces", b"".join(raw))
    with pytest.raises(AuditError, match="audit.jsonl line 4: not in canonical"):
        verify_log(directory, PUB)


def test_records_added_without_the_key_are_detected(
    tmp_path: Path, snapshot: Snapshot
) -> None:
    raw = snapshot.log.splitlines(keepends=True)
    extra = raw[1].replace(b'"seq":0', b'"seq":%d' % N)  # a copy, renumbered
    directory = write(tmp_path, snapshot.log + extra)
    with pytest.raises(AuditError, match=f"line {N + 2} has size 1, expected {N + 1}"):
        verify_log(directory, PUB)


# -- truncation ----------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(cut=st.integers(min_value=0))
@example(cut=-1)  # nothing cut
@example(cut=-2)  # only the final newline cut
def test_truncation_at_any_offset(snapshot: Snapshot, scratch: Path, cut: int) -> None:
    """Cutting the log anywhere never hides a record that is still there.

    Inside the header: an error. Inside a record line: a torn tail, reported, and
    the records before it verify. Just before a newline: the record is whole and
    signed, so it counts (its missing newline is reported). At a line boundary: a
    shorter log that verifies on its own; a saved checkpoint shows the loss.
    """
    log = snapshot.log
    cut %= len(log) + 1
    directory = write(scratch / "cut", log[:cut])
    header_end = log.index(b"\n") + 1
    if cut < header_end:
        with pytest.raises(AuditError, match="no header line"):
            verify_log(directory, PUB)
        return
    kept = log[:cut]
    whole = kept.count(b"\n") - 1  # newline-terminated record lines
    tail = kept[kept.rfind(b"\n") + 1 :]
    unterminated = bool(tail) and log[cut : cut + 1] == b"\n"
    report = verify_log(directory, PUB)
    assert report.size == whole + unterminated
    assert report.torn_tail_bytes == (0 if unterminated else len(tail))
    assert len(report.problems) == bool(tail)
    if tail and not unterminated:
        assert f"torn tail of {len(tail)} bytes" in report.problems[0]
    if report.size < N:
        with pytest.raises(
            AuditRollbackError, match=f"covers {N} records but the log holds"
        ):
            verify_log(directory, PUB, snapshot.saved[N])
    assert verify_log(directory, PUB, snapshot.saved[report.size]).size == report.size


# -- crashes -------------------------------------------------------------------------
def test_crash_mid_record_is_recovered(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 3)
        cp = audit.checkpoint()
    path = tmp_path / "audit" / LOG_FILE
    offset = path.stat().st_size
    half = b'{"checkpoint":{"key_id":"5647'
    with open(path, "ab") as handle:  # the crash: half a line
        handle.write(half)

    report = verify_log(tmp_path / "audit", PUB)
    assert (report.size, report.root, report.torn_tail_bytes) == (3, cp.root, len(half))
    assert report.problems == (
        f"audit.jsonl: torn tail of {len(half)} bytes at offset {offset} after 3 "
        "committed records, left by an interrupted append; AuditLog.open drops it "
        "and logs it in a log_recovered record",
    )
    assert len(query(tmp_path / "audit")) == 3  # query skips the torn line

    with open_log(tmp_path) as audit:
        recovered = audit.records()[-1]
    assert recovered.seq == 3 and recovered.event == "log_recovered"
    assert recovered.reason == (
        f"dropped a torn tail of {len(half)} bytes at offset {offset} of audit.jsonl"
    )
    assert recovered.details["log_dropped_bytes"] == len(half)
    assert recovered.details["log_offset"] == offset
    assert base64.b64decode(str(recovered.details["log_dropped_base64"])) == half
    assert lines(path)[-1].startswith(b'{"checkpoint"')  # the tail is gone
    assert len(lines(path)) == 5 and path.read_bytes().endswith(b"}\n")
    report = verify_log(tmp_path / "audit", PUB, cp)
    assert (report.size, report.torn_tail_bytes, report.problems) == (4, 0, ())


def test_a_missing_final_newline_never_drops_the_record(tmp_path: Path) -> None:
    """Cutting only the last newline (a crash before the last byte, or an edit)
    leaves a whole, signed record line: it stays committed and open restores it."""
    with open_log(tmp_path) as audit:
        records = fill(audit, 4)
        cp = audit.checkpoint()
    path = tmp_path / "audit" / LOG_FILE
    path.write_bytes(path.read_bytes()[:-1])
    report = verify_log(tmp_path / "audit", PUB, cp)
    assert (report.size, report.torn_tail_bytes) == (4, 0)
    assert "lacks its newline" in report.problems[0]
    assert query(tmp_path / "audit") == records
    with open_log(tmp_path) as audit:
        assert audit.records()[:4] == records
        recovered = audit.records()[-1]
    assert recovered.event == "log_recovered" and "newline" in str(recovered.reason)
    assert verify_log(tmp_path / "audit", PUB, cp).problems == ()


def test_a_changed_unterminated_last_line_is_tampering(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 3)
    path = tmp_path / "audit" / LOG_FILE
    changed = path.read_bytes()[:-1].replace(b'"user":"carol"', b'"user":"carl"')
    path.write_bytes(changed)
    with pytest.raises(AuditError, match="complete JSON but not a valid record line"):
        verify_log(tmp_path / "audit", PUB)
    with pytest.raises(AuditError):
        open_log(tmp_path)
    assert path.read_bytes() == changed  # evidence kept


def test_a_damaged_committed_last_record_is_not_treated_as_torn(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        fill(audit, 3)
    path = tmp_path / "audit" / LOG_FILE
    damaged = path.read_bytes()[:-3] + b"@\n"
    path.write_bytes(damaged)
    with pytest.raises(AuditError, match="line 4: not JSON"):
        verify_log(tmp_path / "audit", PUB)
    with pytest.raises(AuditError):
        open_log(tmp_path)
    assert path.read_bytes() == damaged  # evidence kept


# -- query and export ----------------------------------------------------------------
def test_query_filters(tmp_path: Path) -> None:
    with open_log(tmp_path) as audit:
        records = fill(audit, 10)
    folder = tmp_path / "audit"
    assert query(folder) == records
    assert query(folder, requester="bob") == [r for r in records if r.user == "bob"]
    assert query(folder, requester="UMCG") == [
        r for r in records if r.organisation == "UMCG"
    ]
    assert query(folder, purpose="research") == records[1::2]
    assert query(folder, train="km@1", dataset="melanoma") == records[0::2]
    assert query(folder, outcome="refused") == [records[4], records[9]]
    assert query(folder, event="run") == [records[2], records[6]]
    assert query(folder, dataset="other") == []
    # Clock: the genesis at 00:00:01, record i at 00:00:(2i + 2), its checkpoint
    # one second later.
    assert query(folder, since="2026-01-01T00:00:06Z") == records[2:]
    assert query(folder, until="2026-01-01T00:00:06Z") == records[:2]
    assert (
        query(
            folder,
            since=datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC),
            until=datetime(2026, 1, 1, 0, 0, 8),  # naive: taken as UTC
        )
        == records[1:3]
    )
    assert query(folder, requester="alice", outcome="refused") == [records[9]]
    # a mistyped bound is a usage error (exit 2), not a damaged log (exit 6)
    with pytest.raises(ConfigError, match="since 'yesterday' is not an ISO 8601 time"):
        query(folder, since="yesterday")


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
