"""Bad input of every kind: one line naming file/key/column and the fix, non-zero exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import identity_of, write_network, write_study

from pht.cli import main
from pht.station.codes import Code


def frames(n: int = 60, seed: int = 1) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for i, station in enumerate(["s1", "s2", "s3"]):
        out[station] = pd.DataFrame(
            {
                "os_days": rng.integers(1, 900, n).astype(float),
                "death": rng.integers(0, 2, n),
                "regimen": rng.choice(["standard", "extended_interval"], n),
                "site": [f"site{i}"] * n,
            }
        )
    return out


@pytest.fixture
def net(tmp_path: Path) -> Path:
    return write_network(tmp_path, frames())


def run_cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    argv = [str(a) for a in args]
    if "run" in argv and "--network" in argv and "--identity" not in argv:
        network = Path(argv[argv.index("--network") + 1])
        argv += ["--identity", str(identity_of(network))]
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_good_study_runs(tmp_path, net, capsys) -> None:
    # s3's policy refuses the grid (60 patients): a result from 2 of 3 (exit 10)
    study = write_study(tmp_path, min_stations=2)
    code, err = run_cli(
        capsys, "run", study, "--network", net, "--out", tmp_path / "out"
    )
    assert code == 10, err
    assert (tmp_path / "out" / "result.json").is_file()


def test_malformed_yaml_names_file_and_line(tmp_path, net, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("question: ok\ntrain: [survival.km\n", encoding="utf-8")
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    line = error_line(err)
    assert code == 2 and "study.yaml:" in line and "malformed YAML" in line


def test_unknown_study_key_is_named_with_allowed_keys(tmp_path, net, capsys) -> None:
    study = write_study(tmp_path, paramters={"time": "os_days"})
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    line = error_line(err)
    assert code == 2 and "'paramters' is not allowed" in line and "parameters" in line
    assert "study.yaml:9:" in line  # after the four lines of parameters


def test_unknown_network_key(tmp_path, capsys) -> None:
    network = write_network(tmp_path, frames())
    doc = yaml.safe_load(network.read_text())
    doc["stations"][1]["exectuor"] = "process"
    network.write_text(yaml.safe_dump(doc))
    study = write_study(tmp_path)
    code, err = run_cli(
        capsys, "run", study, "--network", network, "--out", tmp_path / "o"
    )
    line = error_line(err)
    assert "network.yaml:" in line and "stations[1].exectuor" in line


def test_missing_dataset_file(tmp_path, capsys) -> None:
    network = write_network(tmp_path, frames())
    (tmp_path / "data" / "s2.parquet").unlink()
    study = write_study(tmp_path)
    code, err = run_cli(
        capsys, "run", study, "--network", network, "--out", tmp_path / "o"
    )
    line = error_line(err)
    assert code == 2 and "data/s2.parquet" in line and "not found" in line


def test_missing_study_file(tmp_path, net, capsys) -> None:
    code, err = run_cli(
        capsys, "run", tmp_path / "nope.yaml", "--network", net, "--out", tmp_path / "o"
    )
    assert code == 2 and "nope.yaml: file not found" in error_line(err)


def test_dataset_without_the_named_column(tmp_path, net, capsys) -> None:
    study = write_study(tmp_path, parameters={"time": "os_dayz", "event": "death"})
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    line = error_line(err)
    # a column the policy does not list is refused with a fixed code: a station
    # does not describe its data to a requester
    assert code == 3 and "0 of 3 station(s) took part" in line
    assert Code.COLUMN.reason in line and "os_dayz" not in line
    assert "pht validate" in line and "--identity" in line


def test_wrong_column_type(tmp_path, capsys) -> None:
    data = frames()
    data["s1"]["os_days"] = data["s1"]["os_days"].astype(str)
    network = write_network(tmp_path, data)
    study = write_study(tmp_path)
    code, err = run_cli(
        capsys, "run", study, "--network", network, "--out", tmp_path / "o"
    )
    line = error_line(err)
    # every station is needed by default (min_stations): the study stops, naming
    # the station, its reason and whose side acts
    assert code == 4 and f"station s1: {Code.COLUMN.reason}" in line
    assert "acts: station operator" in line


def test_event_column_with_other_values(tmp_path, capsys) -> None:
    data = frames()
    data["s2"]["death"] = data["s2"]["death"] + 1
    network = write_network(tmp_path, data)
    study = write_study(tmp_path)
    code, err = run_cli(
        capsys, "run", study, "--network", network, "--out", tmp_path / "o"
    )
    # death is not a 0/1 column at s2, so it cannot serve as the event there
    assert code == 4 and f"station s2: {Code.COLUMN.reason}" in error_line(err)


def test_unknown_train(tmp_path, net, capsys) -> None:
    study = write_study(tmp_path, train="survival.kmx")
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    line = error_line(err)
    assert (
        code == 2 and "unknown train 'survival.kmx'" in line and "survival.km" in line
    )


def test_unknown_train_version(tmp_path, net, capsys) -> None:
    study = write_study(tmp_path, train="survival.km@9.9.9")
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    assert "no version 9.9.9" in error_line(err)


def test_unknown_station(tmp_path, net, capsys) -> None:
    study = write_study(tmp_path, stations=["s1", "s9"])
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    line = error_line(err)
    assert (
        code == 2
        and "stations[1]: unknown station 's9'" in line
        and "s1, s2, s3" in line
    )


def test_wrong_parameter_type_and_missing_parameter(tmp_path, net, capsys) -> None:
    study = write_study(
        tmp_path, parameters={"time": "os_days", "event": "death", "alpha": "0.05"}
    )
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    assert code == 2 and "parameters.alpha" in error_line(err)
    study = write_study(tmp_path, parameters={"time": "os_days"})
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    assert code == 2 and "parameters.event: required" in error_line(err)


def test_group_with_a_single_level(tmp_path, net, capsys) -> None:
    study = write_study(
        tmp_path, parameters={"time": "os_days", "event": "death", "group": "site"}
    )
    code, err = run_cli(capsys, "run", study, "--network", net, "--out", tmp_path / "o")
    assert code == 0  # three sites over three stations: three groups
    data = frames()
    for frame in data.values():
        frame["regimen"] = "standard"
    network = write_network(tmp_path / "single", data)
    study = write_study(tmp_path / "single")
    code, err = run_cli(
        capsys, "run", study, "--network", network, "--out", tmp_path / "o2"
    )
    line = error_line(err)
    assert code == 3 and "'regimen' has patients in only one level" in line


def test_empty_group_everywhere_is_refused(tmp_path, capsys) -> None:
    data = frames()
    for frame in data.values():
        frame["regimen"] = None
        frame["regimen"] = frame["regimen"].astype("string")
    network = write_network(tmp_path, data)
    study = write_study(tmp_path)
    code, err = run_cli(
        capsys, "run", study, "--network", network, "--out", tmp_path / "o"
    )
    line = error_line(err)
    # regimen is an allowed column: rows without it are outside every station's
    # fixed population, which is then empty
    assert code == 4 and "no station took part" in line
    assert line.count(Code.SMALL_POPULATION.reason) == 3


def test_bad_policy_key_names_file_and_line(tmp_path, capsys) -> None:
    network = write_network(tmp_path, frames())
    policy = tmp_path / "stations" / "s2" / "policy.yaml"
    policy.write_text(policy.read_text().replace("min_cell_size:", "min_cel_size:"))
    study = write_study(tmp_path)
    code, err = run_cli(
        capsys, "run", study, "--network", network, "--out", tmp_path / "o"
    )
    line = error_line(err)
    assert code == 2 and "s2/policy.yaml:" in line and "min_cel_size" in line


def test_failed_run_keeps_the_previous_result(tmp_path, net, capsys) -> None:
    out = tmp_path / "out"
    good = write_study(tmp_path, min_stations=2)
    assert run_cli(capsys, "run", good, "--network", net, "--out", out)[0] == 10
    before = (out / "result.json").read_bytes()
    bad = write_study(tmp_path, parameters={"time": "nope", "event": "death"})
    assert run_cli(capsys, "run", bad, "--network", net, "--out", out)[0] != 0
    assert (out / "result.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [
        "figures",
        "report.html",
        "result.json",
        "tables",
    ]


def test_verbose_shows_the_traceback(tmp_path, net, capsys) -> None:
    study = write_study(tmp_path, train="survival.kmx")
    code, err = run_cli(
        capsys, "-v", "run", study, "--network", net, "--out", tmp_path / "o"
    )
    assert code == 2 and "Traceback" in err


def test_every_command_has_help(capsys) -> None:
    for command in (
        ["--help"],
        ["run", "--help"],
        ["synth", "--help"],
        ["demo", "--help"],
        ["validate", "--help"],
        ["trains", "list", "--help"],
    ):
        assert main(command) == 0
        assert "Usage" in capsys.readouterr().out
