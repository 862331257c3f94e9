"""`review: manual` end to end: the run stops with the outputs held, operators approve
or reject, and `pht collect` ends in the same result.json and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import identity_of, write_network, write_study

from pht.cli import main


def _frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(11)
    return {
        s: pd.DataFrame(
            {
                "os_days": rng.integers(1, 700, 80).astype(float),
                "death": rng.integers(0, 2, 80),
                "regimen": rng.choice(["standard", "extended_interval"], 80),
            }
        )
        for s in ("s1", "s2")
    }


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _request_id(capsys, network: Path, station: str) -> str:
    code, text = _cli(
        capsys, "station", "review", "list", "--network", network, "--station", station
    )
    assert code == 0, text
    ids = [line for line in text.splitlines() if line.strip()]
    assert len(ids) == 1, text
    return ids[0].strip()


def _held_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, Path, Path, str]:
    """A KM run on a manual-review network: (network, out, key, what the CLI said)."""
    network = write_network(tmp_path / "net", _frames(), review="manual")
    study = write_study(
        tmp_path, parameters={"time": "os_days", "event": "death"}, min_stations=1
    )
    out = tmp_path / "out"
    key = identity_of(network)
    code, text = _cli(
        capsys, "run", study, "--network", network, "--out", out, "--identity", key
    )
    assert code == 9, text
    return network, out, key, text


def test_manual_review_ends_in_a_result(tmp_path, capsys) -> None:
    network, out, key, text = _held_run(tmp_path, capsys)
    assert "manual review" in text and "pht collect" in text
    assert (out / "pending.json").is_file()
    assert not (out / "result.json").exists()  # nothing half-written

    # nothing approved yet: still pending, still no result
    code, text = _cli(capsys, "collect", out, "--identity", key)
    assert code == 9, text
    assert "s1" in text and "s2" in text
    assert not (out / "result.json").exists()

    for station, action in (("s1", "approve"), ("s2", "reject")):
        request = _request_id(capsys, network, station)
        code, text = _cli(
            capsys,
            "station",
            "review",
            action,
            "--network",
            network,
            "--station",
            station,
            "--request",
            request,
            "--reason",
            "counts by regimen too fine",
        )
        assert code == 0, text

    code, text = _cli(capsys, "collect", out, "--identity", key)
    assert code == 10, text  # a result from s1 alone: partial, as min_stations allows
    assert "partial result: 1 of 2 stations took part" in text
    result = json.loads((out / "result.json").read_text())
    assert (out / "report.html").is_file()
    assert not (out / "pending.json").exists()
    rows = {r["id"]: r for r in result["stations"]}
    assert rows["s1"]["participated"] and rows["s1"]["status"] == "ok"
    assert rows["s2"]["status"] == "refused"
    assert "counts by regimen too fine" in rows["s2"]["reason"]
    assert "rejected at manual review" in rows["s2"]["reason"]
    # only s1's rows are in the pooled curve, and its receipt was checked
    assert result["at_risk_table"]["groups"]["all"][0] == 80
    assert [r["station"] for r in result["provenance"]["receipts"]] == ["s1"]


def test_collect_without_a_pending_run_is_one_line(tmp_path, capsys) -> None:
    code, text = _cli(capsys, "collect", tmp_path, "--identity", tmp_path / "k.json")
    assert code == 2
    assert "no pending run here" in text


def test_a_tampered_pending_run_is_not_collected(tmp_path, capsys) -> None:
    """pending.json names the network whose keys check the receipts: it is signed by
    the analyst's key, so pointing it at another network (or editing replies) fails."""
    _, out, key, _ = _held_run(tmp_path, capsys)
    path = out / "pending.json"
    envelope = json.loads(path.read_text())
    import base64

    doc = json.loads(base64.b64decode(envelope["payload"]))
    doc["network"] = str(tmp_path / "forged-network.yaml")
    envelope["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    path.write_text(json.dumps(envelope))
    code, text = _cli(capsys, "collect", out, "--identity", key)
    assert code == 5, text
    assert "not signed by your key" in text
    assert not (out / "result.json").exists()
    assert not (tmp_path / "forged-network.yaml").exists()


def test_a_changed_network_file_is_not_trusted_by_collect(tmp_path, capsys) -> None:
    network, out, key, _ = _held_run(tmp_path, capsys)
    network.write_text(network.read_text() + "\n# edited\n")
    code, text = _cli(capsys, "collect", out, "--identity", key)
    assert code == 2, text
    assert "changed since the run was sent" in text
