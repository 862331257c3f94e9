"""pht.timefmt: the one home of UTC time parsing and formatting.

The formats are inside signed and hashed bytes (identity files, requests, train
statements, receipts, audit records and checkpoints), so every formatter must write
exactly what the code it replaced wrote, and every value that code wrote must still
parse. The old expressions are written out here as the oracles.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from pht import crypto, timefmt
from pht.crypto import load_public, new_identity, save_identity
from pht.errors import AuditError, ConfigError, TrustError
from pht.keyring import Keyring
from pht.manifest import Catalogue
from pht.signing import (
    _parse_time,
    new_request,
    sign_train,
    train_statement,
    verify_train,
)
from pht.station import audit
from pht.station.audit import AuditLog, encoding
from pht.station.base import parse_time as station_parse_time
from pht.wire import TrainRef

SECONDS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")
MICROS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

# years 1000-9998: strftime("%Y") pads no further than the digits it has
aware_times = st.datetimes(
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9998, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
    ),
)


# -- formats: byte for byte what the replaced code wrote ------------------------------
@given(aware_times)
def test_formats_equal_the_expressions_they_replace(when: datetime) -> None:
    utc = when.astimezone(UTC)
    # pht.crypto._utc_now (identity 'created'), on datetime.now(UTC)
    assert timefmt.format_seconds_z(when) == utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    # pht.signing._iso and pht.keyring._iso
    assert timefmt.format_iso_z(when) == utc.isoformat().replace("+00:00", "Z")
    # pht.station.audit.encoding.format_time
    assert timefmt.format_micros_z(when) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert encoding.format_time(when) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # pht.station.release receipt time: utc_now().isoformat()
    assert timefmt.format_iso_offset(when) == utc.isoformat()
    # pht.orchestrator.run._now: datetime.now(UTC).isoformat(timespec="seconds")
    assert timefmt.format_seconds_offset(when) == utc.isoformat(timespec="seconds")


@pytest.mark.parametrize(
    ("micro", "expected"),
    [
        (
            0,
            [
                "2026-01-31T12:00:00Z",
                "2026-01-31T12:00:00Z",
                "2026-01-31T12:00:00.000000Z",
                "2026-01-31T12:00:00+00:00",
                "2026-01-31T12:00:00+00:00",
            ],
        ),
        (
            1,
            [
                "2026-01-31T12:00:00Z",
                "2026-01-31T12:00:00.000001Z",
                "2026-01-31T12:00:00.000001Z",
                "2026-01-31T12:00:00.000001+00:00",
                "2026-01-31T12:00:00+00:00",
            ],
        ),
    ],
)
def test_formats_are_pinned(micro: int, expected: list[str]) -> None:
    when = datetime(2026, 1, 31, 14, 0, 0, micro, tzinfo=timezone(timedelta(hours=2)))
    assert [
        timefmt.format_seconds_z(when),
        timefmt.format_iso_z(when),
        timefmt.format_micros_z(when),
        timefmt.format_iso_offset(when),
        timefmt.format_seconds_offset(when),
    ] == expected


@pytest.mark.parametrize(
    "formatter",
    [
        timefmt.format_seconds_z,
        timefmt.format_iso_z,
        timefmt.format_micros_z,
        timefmt.format_iso_offset,
        timefmt.format_seconds_offset,
    ],
)
def test_formatters_refuse_naive_times(formatter: Callable[[datetime], str]) -> None:
    with pytest.raises(ValueError, match="time zone"):
        formatter(datetime(2026, 1, 31, 12, 0))


# -- parsing: every value the old code wrote still reads -------------------------------
@pytest.mark.parametrize(
    ("text", "formatter"),
    [
        ("2026-01-31T12:00:00Z", timefmt.format_seconds_z),
        ("2026-01-31T12:00:00Z", timefmt.format_iso_z),
        ("2026-01-31T12:00:00.000001Z", timefmt.format_iso_z),
        ("2026-01-31T12:00:00.000000Z", timefmt.format_micros_z),
        ("2026-01-31T12:00:00.250000Z", timefmt.format_micros_z),
        ("2026-01-31T12:00:00.250000+00:00", timefmt.format_iso_offset),
        ("2026-01-31T12:00:00+00:00", timefmt.format_iso_offset),
        ("2026-01-31T12:00:00+00:00", timefmt.format_seconds_offset),
    ],
)
def test_old_values_parse_and_format_back_unchanged(
    text: str, formatter: Callable[[datetime], str]
) -> None:
    when = timefmt.parse_utc(text)
    assert when.tzinfo is UTC
    assert formatter(when) == text
    assert encoding.parse_time(text, "time") == when
    assert station_parse_time(text) == when


def test_offsets_are_converted_to_utc() -> None:
    when = timefmt.parse_utc("2026-01-31T14:00:00.5+02:00")
    assert when == datetime(2026, 1, 31, 12, 0, 0, 500000, tzinfo=UTC)
    assert when.tzinfo is UTC


def test_audit_times_without_a_zone_are_utc() -> None:
    expected = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert encoding.parse_time("2026-01-01T00:00:01", "since") == expected
    # the station read these as naive datetimes, which cannot be compared with its
    # aware budget window
    assert station_parse_time("2026-01-01T00:00:01") == expected
    with pytest.raises(timefmt.TimeFormatError, match="^has no time zone$"):
        timefmt.parse_utc("2026-01-01T00:00:01")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("yesterday", "is not an ISO 8601 time"),
        ("", "is not an ISO 8601 time"),
        ("2026-01-31T12:00:00Z" + " " * 30, "is not an ISO 8601 time"),
        ("2026-01-31Z12:00:00Z", "is not an ISO 8601 time"),  # Z as the separator
        ("2026-01-31T12:00:00Z.5", "is not an ISO 8601 time"),
        (None, "is not an ISO 8601 time"),
        ("0001-01-01T00:00:00+01:00", "is out of range"),
    ],
)
def test_bad_times_name_the_problem_not_the_value(text: object, problem: str) -> None:
    with pytest.raises(timefmt.TimeFormatError) as info:
        timefmt.parse_utc(text)
    assert str(info.value) == problem


def test_callers_keep_their_error_types() -> None:
    with pytest.raises(AuditError, match="since is not an ISO 8601 time: 'x'"):
        encoding.parse_time("x", "since")
    with pytest.raises(ValueError, match="is not an ISO 8601 time"):
        station_parse_time("x")


# -- the producers write their formats ----------------------------------------------
def test_identity_request_statement_and_keyring_times(tmp_path: Path) -> None:
    analyst = new_identity("requester", "ZIN", "analyst")
    methodologist = new_identity("methodologist", "UMCG", "bob")
    assert SECONDS_Z.fullmatch(analyst.public.created)
    package = Catalogue().get(TrainRef.parse("survival.km"))
    assert ISO_Z.fullmatch(train_statement(package, None).signed_at)
    envelope = sign_train(package, methodologist)
    body, _ = new_request(
        analyst,
        user="analyst",
        role="analyst",
        purpose="package-management/reassessment",
        train=package.manifest.ref,
        train_digest=package.digest,
        train_envelope=envelope,
        dataset="melanoma",
        parameters={},
        targets=["s1"],
    )
    issued = timefmt.parse_utc(body.issued_at)
    assert ISO_Z.fullmatch(body.issued_at) and ISO_Z.fullmatch(body.expires_at)
    assert timefmt.parse_utc(body.expires_at) - issued == timedelta(hours=1)

    _, pub = save_identity(methodologist, tmp_path)
    keyring = Keyring()
    since = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    keyring.add(pub, roles=["methodologist"], valid_from=since)
    keyring.save(tmp_path / "keyring.yaml")
    text = (tmp_path / "keyring.yaml").read_text(encoding="utf-8")
    assert "valid_from: '2026-01-01T00:00:00Z'" in text
    loaded = Keyring.load(tmp_path / "keyring.yaml")
    assert verify_train(envelope, loaded)[1].key_id == load_public(pub).key_id


def test_identity_files_with_bad_created_times_are_refused(tmp_path: Path) -> None:
    _, pub = save_identity(new_identity("requester", "ZIN", "alice"), tmp_path)
    text = pub.read_text(encoding="utf-8")
    created = load_public(pub).created
    pub.write_text(text.replace(created, created.rstrip("Z")), encoding="utf-8")
    with pytest.raises(ConfigError, match="key 'created' must be an ISO 8601 time"):
        load_public(pub)


def test_audit_records_and_checkpoints_carry_microsecond_times(tmp_path: Path) -> None:
    log = AuditLog.open(
        tmp_path / "audit",
        "s1",
        Ed25519PrivateKey.generate(),
        anchor=tmp_path / "audit.anchor",
        clock=lambda: datetime(2026, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    record = log.append("request_received", "success", user="alice")
    assert record.time == "2026-01-31T12:00:00.000000Z"
    assert log.checkpoint().time == "2026-01-31T12:00:00.000000Z"
    log.close()


def test_request_times_refused_with_trust_errors() -> None:
    with pytest.raises(TrustError, match="^request issued_at has no time zone$"):
        _parse_time("2026-01-31T12:00:00", "request issued_at")
    with pytest.raises(TrustError, match="^request issued_at is not an ISO 8601 time$"):
        _parse_time(12, "request issued_at")


# -- one key id ---------------------------------------------------------------------
def test_one_key_id_for_identities_and_audit_checkpoints() -> None:
    key = Ed25519PrivateKey.generate()
    assert audit.key_id is crypto.key_id
    identity = new_identity("station", "NKR", "nkr")
    assert crypto.key_id(identity.signing.public_key()) == identity.public.key_id
    assert len(crypto.key_id(key.public_key())) == 16
