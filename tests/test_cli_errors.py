"""Every mistake a newcomer makes with the CLI: one located line, the fix, an exit code.

Each test drives ``pht.cli.main`` as a user would and asserts the exit code and a
single ``error:`` line naming the file (or option) and what to do, with no traceback.
Also the CLI's polish: progress lines, plain JSON lines, markup that cannot eat text.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import identity_of, write_network, write_study

from pht.cli import main
from pht.errors import ConfigError, DataError


def cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """Run ``pht ARGS``; return the exit code, stdout and stderr."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    """The one ``error:`` line of stderr (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def frames(n: int = 60, seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return {
        s: pd.DataFrame(
            {
                "os_days": rng.integers(1, 900, n).astype(float),
                "death": rng.integers(0, 2, n),
                "regimen": rng.choice(["standard", "extended_interval"], n),
            }
        )
        for s in ("s1", "s2", "s3")
    }


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A provisioned three-station network (keys, keyrings, signed trains)."""
    return write_network(tmp_path_factory.mktemp("net"), frames())


# -- --out is checked before anything is dispatched ------------------------------
def test_run_out_is_a_file_is_refused_before_any_station_runs(
    tmp_path, net, capsys
) -> None:
    study = write_study(tmp_path)
    blocker = tmp_path / "results"
    blocker.write_text("not a folder", encoding="utf-8")
    code, _, err = cli(
        capsys,
        "run",
        study,
        "--network",
        net,
        "--identity",
        identity_of(net),
        "--out",
        blocker,
    )
    line = error_line(err)
    assert code == 2
    assert f"--out {blocker}: is a file, not a folder; give a folder" in line
    assert "running" not in err  # nothing was sent: no audited run is lost
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_out_below_a_file_and_unwritable_out(
    tmp_path, net, capsys, monkeypatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    code, _, err = cli(capsys, "synth", "--out", blocker / "sub")
    assert code == 2
    assert f"{blocker} is a file, so no folder can be made there" in error_line(err)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "new" / "deeper"
    study = write_study(tmp_path)
    code, _, err = cli(
        capsys,
        "run",
        study,
        "--network",
        net,
        "--identity",
        identity_of(net),
        "--out",
        target,
    )
    line = error_line(err)
    assert code == 2 and "running" not in err
    assert f"--out {target}: cannot write there (Permission denied)" in line
    assert not (tmp_path / "new").exists()  # the probe's folders are removed again


def test_out_that_can_be_made_leaves_nothing_behind_when_the_study_is_wrong(
    tmp_path, net, capsys
) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("question: [unclosed\n", encoding="utf-8")
    code, _, err = cli(
        capsys,
        "run",
        study,
        "--network",
        net,
        "--identity",
        identity_of(net),
        "--out",
        tmp_path / "out" / "a",
    )
    assert code == 2 and "malformed YAML" in error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["synth", "--out", "{file}"],
        ["demo", "--workdir", "{file}"],
        ["collect", "{file}", "--identity", "{key}"],
        ["keys", "new", "--role", "requester", "--org", "ZIN", "--name", "x"]
        + ["--out", "{file}"],
    ],
    ids=["synth", "demo", "collect", "keys-new"],
)
def test_output_folder_that_is_a_file(tmp_path, net, capsys, command) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("keep me", encoding="utf-8")
    argv = [
        a.format(file=blocker, key=identity_of(net)) for a in command
    ]  # no run, no demo network: refused first
    code, _, err = cli(capsys, *argv)
    line = error_line(err)
    assert code == 2
    assert f"{blocker}: is a file, not a folder; give a folder" in line
    assert blocker.read_text(encoding="utf-8") == "keep me"


def test_result_json_that_is_a_folder(tmp_path, net, capsys) -> None:
    out = tmp_path / "out"
    (out / "result.json").mkdir(parents=True)
    code, _, err = cli(
        capsys,
        "run",
        write_study(tmp_path),
        "--network",
        net,
        "--identity",
        identity_of(net),
        "--out",
        out,
    )
    assert code == 2 and f"{out / 'result.json'} is a folder" in error_line(err)


# -- keys --------------------------------------------------------------------------
def test_public_key_as_identity_says_so_not_chmod(tmp_path, net, capsys) -> None:
    public = net.parent / "keys" / "analyst.pub.json"
    assert os.stat(public).st_mode & 0o077  # readable by all, as public keys are
    code, _, err = cli(
        capsys,
        "run",
        write_study(tmp_path),
        "--network",
        net,
        "--identity",
        public,
        "--out",
        tmp_path / "o",
    )
    line = error_line(err)
    assert code == 2
    assert f"{public}: this is a public key; give the private key file" in line
    assert "chmod" not in line


def test_other_files_as_identity(tmp_path, net, capsys) -> None:
    study = write_study(tmp_path)
    empty = tmp_path / "empty.key.json"
    empty.write_bytes(b"")
    listing = tmp_path / "list.key.json"
    listing.write_text("[1, 2]", encoding="utf-8")
    for given, expected in [
        (net.parent / "keys", "is a folder; give the private key file in it"),
        (study, "not valid JSON, so not a pht key file"),
        (empty, "empty, so not a pht key file"),
        (listing, "not a pht private key file"),
    ]:
        os.chmod(given, 0o700 if given.is_dir() else 0o644)
        code, _, err = cli(
            capsys,
            "run",
            study,
            "--network",
            net,
            "--identity",
            given,
            "--out",
            tmp_path / "o",
        )
        line = error_line(err)
        assert code == 2 and f"{given}: {expected}" in line, line
        assert "chmod" not in line


def test_private_key_with_loose_mode_still_says_chmod(tmp_path, net, capsys) -> None:
    key = tmp_path / "copy.key.json"
    key.write_bytes(identity_of(net).read_bytes())
    os.chmod(key, 0o644)
    code, _, err = cli(
        capsys,
        "train",
        "sign",
        Path(__file__).parent.parent / "train_images" / "survival.km",
        "--key",
        key,
        "--out",
        tmp_path / "signed",
    )
    assert code == 5 and f"run `chmod 600 {key}`" in error_line(err)


def test_private_key_as_public_key(tmp_path, net, capsys) -> None:
    station = net.parent / "stations" / "s1" / "work" / "audit"
    code, _, err = cli(
        capsys, "audit", "verify", station, "--public-key", identity_of(net)
    )
    line = error_line(err)
    assert code == 2 and "this is a private key; give its public half" in line


# -- train verify ------------------------------------------------------------------
def test_train_verify_on_wrong_files(tmp_path, net, capsys) -> None:
    keyring = net.parent / "stations" / "s1" / "keyring.yaml"
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello", encoding="utf-8")
    wrong_shape = tmp_path / "other.json"
    wrong_shape.write_text('{"name": "survival.km"}', encoding="utf-8")
    for given, code_wanted, expected in [
        (tmp_path / "nope.dsse.json", 2, "no such file; give a signed"),
        (tmp_path, 2, "is a folder; give a signed"),
        (not_json, 2, "not valid JSON"),
        (wrong_shape, 2, "not a signed train (a DSSE envelope"),
    ]:
        code, _, err = cli(capsys, "train", "verify", given, "--keyring", keyring)
        line = error_line(err)
        assert code == code_wanted and str(given) in line and expected in line, line


def test_train_verify_names_the_file_when_the_signature_is_wrong(
    tmp_path, net, capsys
) -> None:
    signed = next((net.parent / "trains").glob("survival.km@*.dsse.json"))
    envelope = json.loads(signed.read_text(encoding="utf-8"))
    envelope["signatures"] = []
    forged = tmp_path / signed.name
    forged.write_text(json.dumps(envelope), encoding="utf-8")
    keyring = net.parent / "stations" / "s1" / "keyring.yaml"
    code, _, err = cli(capsys, "train", "verify", forged, "--keyring", keyring)
    assert code == 5 and error_line(err).startswith(f"error: {forged}: ")


def test_train_sign_on_a_folder_without_manifest(tmp_path, net, capsys) -> None:
    key = net.parent / "keys" / "methodologist.key.json"
    code, _, err = cli(
        capsys, "train", "sign", tmp_path, "--key", key, "--out", tmp_path / "s"
    )
    line = error_line(err)
    assert code == 2 and f"{tmp_path}: a folder without manifest.yaml" in line


# -- audit verify / query ------------------------------------------------------------
def _audit(net: Path) -> tuple[Path, Path]:
    """A station's audit folder (it has records once a study ran) and its key."""
    return (
        net.parent / "stations" / "s1" / "work" / "audit",
        net.parent / "keys" / "s1.pub.json",
    )


@pytest.fixture(scope="module")
def ran(net: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The network after one study: every station's audit log has records."""
    root = tmp_path_factory.mktemp("ran")
    study = write_study(root, min_stations=1)
    code = main(
        [
            "run",
            str(study),
            "--network",
            str(net),
            "--identity",
            str(identity_of(net)),
            "--out",
            str(root / "out"),
        ]
    )
    assert code in (0, 10)
    return root / "out"


def test_audit_verify_checkpoint_files(tmp_path, net, ran, capsys) -> None:
    folder, key = _audit(net)
    not_json = tmp_path / "saved.txt"
    not_json.write_text("size 3", encoding="utf-8")
    shape = tmp_path / "saved.json"
    shape.write_text("[1, 2, 3]", encoding="utf-8")
    for given, expected in [
        (tmp_path / "missing.json", "cannot read it"),
        (tmp_path, "cannot read it"),
        (not_json, "not JSON"),
        (shape, "neither a checkpoint nor a result.json"),
    ]:
        code, _, err = cli(
            capsys, "audit", "verify", folder, "--public-key", key,
            "--checkpoint", given,
        )  # fmt: skip
        line = error_line(err)
        assert code == 2 and f"{given}: {expected}" in line, line
        assert "give a checkpoint JSON" in line
    # and the result.json of the run is a good one
    code, out, err = cli(
        capsys, "audit", "verify", folder, "--public-key", key,
        "--checkpoint", ran / "result.json",
    )  # fmt: skip
    assert code == 0, err
    assert "consistent with" in out


def test_audit_commands_given_the_log_file_instead_of_its_folder(
    net, ran, capsys
) -> None:
    folder, key = _audit(net)
    log_file = folder / "audit.jsonl"
    for argv in (
        ["audit", "verify", log_file, "--public-key", key],
        ["audit", "query", log_file],
    ):
        code, _, err = cli(capsys, *argv)
        line = error_line(err)
        assert code == 2 and f"{log_file}: is a file, not an audit folder" in line
        assert str(folder) in line


def test_audit_query_prints_json_lines_never_wrapped(tmp_path, capsys) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pht.station.audit import AuditLog

    audit = AuditLog.open(
        tmp_path / "audit",
        "nki",
        Ed25519PrivateKey.generate(),
        anchor=tmp_path / "audit.anchor",
    )
    long_reason = "a reason that runs on " * 20  # ~440 characters: wider than 80
    audit.append("policy_decision", "refused", reason=long_reason, details={"k": 1})
    audit.append("run", "success", details={"note": "[bold]not markup[/]"})
    audit.close()
    code, out, err = cli(capsys, "audit", "query", tmp_path / "audit")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]  # each line is JSON
    assert [r["event"] for r in records][-2:] == ["policy_decision", "run"]
    assert records[-2]["reason"] == long_reason
    assert records[-1]["details"] == {"note": "[bold]not markup[/]"}


def test_audit_export_refuses_other_suffixes_and_writes_json_lines(
    tmp_path, net, ran, capsys
) -> None:
    folder, _ = _audit(net)
    for bad in ("audit.xlsx", "audit"):
        target = tmp_path / bad
        code, _, err = cli(capsys, "audit", "query", folder, "--export", target)
        line = error_line(err)
        assert code == 2 and line.startswith(f"error: --export {target}: ")
        assert ".csv, .json or .jsonl" in line
        assert not target.exists()
    code, _, err = cli(
        capsys, "audit", "query", folder, "--export", tmp_path / "no" / "a.csv"
    )
    assert code == 2 and "the folder" in error_line(err)
    target = tmp_path / "audit.jsonl"
    code, out, err = cli(capsys, "audit", "query", folder, "--export", target)
    assert code == 0, err
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines and all(json.loads(line)["station"] == "s1" for line in lines)
    assert f"{len(lines)} records -> {target}" in out


def test_audit_query_bad_time_is_a_usage_error(net, ran, capsys) -> None:
    folder, _ = _audit(net)
    code, _, err = cli(capsys, "audit", "query", folder, "--since", "yesterday")
    line = error_line(err)
    assert code == 2 and "since 'yesterday' is not an ISO 8601 time" in line
    assert "2026-01-31" in line


# -- station review, trains list -------------------------------------------------------
def test_review_list_with_nothing_waiting_says_so(net, capsys) -> None:
    code, out, err = cli(
        capsys, "station", "review", "list", "--network", net, "--station", "s2"
    )
    assert code == 0, err
    assert out == ""  # stdout stays a clean list of request ids
    assert "no outputs wait for review at station s2" in err


def test_trains_list_shows_the_disclosure_class(capsys) -> None:
    code, out, _ = cli(capsys, "trains", "list")
    assert code == 0
    km = next(line for line in out.splitlines() if line.startswith("survival.km@"))
    assert "[event_table, single, " in km and "sha256:" in km


def test_error_text_with_brackets_is_not_taken_for_markup(
    tmp_path, capsys, monkeypatch
) -> None:
    from pht import synth

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("x.yaml: classes [event_table, model] are not [bold]ok[/]")

    monkeypatch.setattr(synth, "write", fail)
    code, _, err = cli(capsys, "synth", "--out", tmp_path / "d")
    assert code == 2
    assert error_line(err) == (
        "error: x.yaml: classes [event_table, model] are not [bold]ok[/]"
    )


def test_an_os_error_the_library_missed_is_one_line(
    tmp_path, capsys, monkeypatch
) -> None:
    from pht import synth

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", "/srv/data/nkr.parquet")

    monkeypatch.setattr(synth, "write", fail)
    code, _, err = cli(capsys, "synth", "--out", tmp_path / "d")
    assert code == 1
    assert error_line(err) == (
        "error: /srv/data/nkr.parquet: Permission denied; check its permissions "
        "(or run as the user who owns it)"
    )
    code, _, err = cli(capsys, "-v", "synth", "--out", tmp_path / "d")
    assert code == 1 and "Traceback" in err  # -v still shows it


# -- datasets --------------------------------------------------------------------
def test_header_only_csv_is_a_dataset_without_rows(tmp_path, caplog) -> None:
    from pht.station.population import dataset_schema, read_table

    path = tmp_path / "nkr.csv"
    path.write_text("os_days,death,regimen\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="pht.station.population"):
        for read in (read_table, dataset_schema):
            with pytest.raises(DataError, match="the dataset file has no rows"):
                read(path)
    assert f"dataset {path} has a header but no rows" in caplog.text
    with pytest.raises(DataError, match="is a folder, not a file"):
        read_table(tmp_path)


def test_header_only_csv_at_a_station_is_the_operators_data_error(
    tmp_path, capsys
) -> None:
    data = frames()
    data["s3"] = data["s3"].iloc[:0]
    network = write_network(tmp_path, data, fmt="csv")
    code, _, err = cli(
        capsys,
        "run",
        write_study(tmp_path, min_stations=2),
        "--network",
        network,
        "--identity",
        identity_of(network),
        "--out",
        tmp_path / "out",
    )
    assert "Traceback" not in err
    s3 = [line for line in err.splitlines() if line.strip().startswith("s3 ")][-1]
    assert "data:" in s3 and "column" not in s3  # not the analyst's column


def test_configuration_file_that_is_a_folder(tmp_path, net, capsys) -> None:
    code, _, err = cli(capsys, "validate", tmp_path, "--network", net)
    line = error_line(err)
    assert code == 2 and f"{tmp_path}: is a folder, not a file" in line


# -- progress and logging ----------------------------------------------------------
def test_verbose_keeps_third_party_loggers_quiet(capsys) -> None:
    assert main(["-v", "version"]) == 0
    for name in ("matplotlib", "PIL", "fontTools", "asyncio", "urllib3", "docker"):
        assert logging.getLogger(name).level == logging.WARNING
    logging.getLogger("matplotlib.font_manager").debug("findfont: 147 lines")
    assert "findfont" not in capsys.readouterr().err


def test_images_build_prints_each_step_with_its_time(
    tmp_path, capsys, monkeypatch
) -> None:
    from pht import images

    built: list[str] = []
    monkeypatch.setattr(images, "BUILD", tmp_path)
    monkeypatch.setattr(images, "IMAGES_FILE", tmp_path / "images.json")
    monkeypatch.setattr(images, "engine_and_base", lambda: built.append("base"))
    monkeypatch.setattr(images, "runtime_image", lambda: "pht/train-runtime:abc")

    def train_image(package: Any, runtime: str) -> str:
        built.append(str(package.manifest.ref))
        return f"sha256:{len(built):064d}"

    monkeypatch.setattr(images, "train_image", train_image)
    code, out, err = cli(capsys, "images", "build")
    assert code == 0, err
    assert "  Docker engine and base image ..." in err
    assert "  runtime image: done (" in err
    for ref in built[1:]:
        assert f"  image of {ref} ..." in err
        assert f"  image of {ref}: done (" in err
        assert f"{ref}  sha256:" in out
    assert err.index("image of survival.km") < err.index("survival.km@1.2.0: done")


def test_iterative_sessions_report_each_round(capsys) -> None:
    from pht.cli import _progress
    from pht.orchestrator.engine import RoundProgress, SessionGroup
    from pht.wire import Reply

    def reply(station: str, status: str) -> Reply:
        return Reply(request_id="r", station=station, status=status)

    seen: list[tuple[str, str, Any]] = []
    group = SessionGroup(
        {"a": reply("a", "ok"), "b": reply("b", "ok")},
        lambda messages: {
            "a": reply("a", "ok"),
            "b": reply("b", "refused" if len(seen) else "ok"),
        },
        lambda: None,
        lambda station, event, detail: seen.append((station, event, detail)),
    )
    group.round({"a": {}, "b": {}})
    group.round({"a": {}, "b": {}})
    assert [(s, e) for s, e, _ in seen] == [("", "round"), ("", "round")]
    first, second = (d for _, _, d in seen)
    assert isinstance(first, RoundProgress) and isinstance(second, RoundProgress)
    assert (first.number, first.asked, first.answered) == (1, 2, 2)
    assert (second.number, second.answered) == (2, 1)
    assert second.seconds >= 0
    _progress("", "round", RoundProgress(3, 3, 3, 0.42))
    assert capsys.readouterr().err == "  round 3: 3 of 3 station(s) answered (0.4 s)\n"


def test_a_bug_is_one_line_without_verbose(tmp_path, capsys, monkeypatch) -> None:
    from pht import synth

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("groups")

    monkeypatch.setattr(synth, "write", fail)
    code, _, err = cli(capsys, "synth", "--out", tmp_path / "d")
    assert code == 1
    assert error_line(err) == (
        "error: unexpected KeyError: 'groups'; run again with -v for the traceback "
        "and report it"
    )
    code, _, err = cli(capsys, "synth", "--out", tmp_path / "d", "--verbose")
    assert code == 1 and "Traceback" in err and "KeyError" in err
