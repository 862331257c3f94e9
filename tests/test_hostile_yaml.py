"""Adversarial fixtures for every YAML file pht reads: one hostile file per attack, each
refused fast with a one-line ConfigError naming the file and line, by the library and
through the CLI (exit 2, no traceback)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import write_network, write_study

from pht import yamlcfg
from pht.cli import main
from pht.errors import ConfigError
from pht.keyring import Keyring
from pht.manifest import TRAINS_DIR, Catalogue, load_manifest, load_package
from pht.orchestrator.config import load_network
from pht.station.policy import load_policy


def _alias_bomb() -> bytes:
    """Billion laughs: nine levels of nine aliases each, 9**9 strings when expanded."""
    lines = ['question: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        previous, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(
            f"{name}{level}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]"
        )
    return ("\n".join(lines) + "\n").encode()


HOSTILE: dict[str, tuple[bytes, int, str]] = {
    # name: (file bytes, line of the error, words the error must contain)
    "alias_bomb": (_alias_bomb(), 1, "YAML aliases/anchors are not allowed"),
    "alias_later": (
        b"question: ok\nx: &x 1\ny: *x\n",
        2,
        "aliases/anchors are not allowed; write the value out",
    ),
    # deeper than Python's recursion limit: a recursive composer would crash
    "deep_flow": (b"x: " + b"[" * 5_000 + b"]" * 5_000 + b"\n", 1, "nested deeper"),
    "deep_block": (
        "".join("  " * i + f"k{i}:\n" for i in range(40)).encode()
        + b"  " * 40
        + b"1\n",
        32,
        "nested deeper than 32",
    ),
    "huge": (b"# padding\n" * 40_000 + b"question: ok\n", 0, "larger than 256 KiB"),
    "many_values": (b"x: [" + b"0," * 6_000 + b"0]\n", 1, "more than 5000 values"),
    "python_tag": (
        b"question: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        1,
        "explicit YAML tags",
    ),
    "python_name": (b"question: !!python/name:os.system\n", 1, "explicit YAML tags"),
    "custom_tag": (b"question: !foo bar\n", 1, "explicit YAML tags ('!foo')"),
    "str_tag": (b"question: ok\ntrain: !!str 1\n", 2, "explicit YAML tags"),
    "latin1": ("question: caf\u00e9 au lait\n".encode("latin-1"), 1, "not valid UTF-8"),
    "latin1_later": (
        b"question: ok\npurpose: x\ntrain: \xe9\n",
        3,
        "not valid UTF-8 (byte 0xe9)",
    ),
    "utf16": ("question: ok\n".encode("utf-16"), 1, "UTF-16 or UTF-32"),
    "nul": (b"question: ok\ntrain: a\x00b\n", 2, "NUL byte"),
    "merge_key": (b"question: ok\nx:\n  <<: {a: 1}\n  b: 2\n", 3, "merge keys (<<)"),
    "escape_sequence": (b'question: "\\e[2J\\e[31mred"\n', 1, "control character"),
    "lone_surrogate": (b'question: "\\ud800"\n', 1, "invalid code point"),
    "bell": (b"question: a\x07b\n", 1, "U+0007 is not allowed"),
    "long_key": (b"k" * 500 + b": 1\n", 1, "longer than 200 characters"),
    "two_documents": (b"question: a\n---\nquestion: b\n", 2, "single document"),
    "syntax": (b"question: [ok\n", 2, "malformed YAML"),
}


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def assert_one_line(exc: ConfigError, path: Path, line: int, words: str) -> str:
    message = str(exc)
    assert "\n" not in message and len(message) <= yamlcfg.MAX_MESSAGE_CHARS
    assert message.startswith(f"{path}:{line}:" if line else f"{path}:")
    assert words in message
    return message


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_is_a_fast_one_line_config_error(
    tmp_path: Path, name: str
) -> None:
    data, line, words = HOSTILE[name]
    path = write(tmp_path, "study.yaml", data)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        yamlcfg.load(path).mapping(None)
    elapsed = time.perf_counter() - start
    assert_one_line(info.value, path, line, words)
    assert elapsed < 1.0, (
        f"{name} took {elapsed:.2f} s"
    )  # a hang guard, not a benchmark


def test_the_alias_bomb_message_does_not_expand_anything(tmp_path: Path) -> None:
    path = write(tmp_path, "study.yaml", HOSTILE["alias_bomb"][0])
    with pytest.raises(ConfigError) as info:
        yamlcfg.load(path)
    assert "lol" not in str(info.value)


LOADERS: dict[str, Callable[[Path], Any]] = {
    "network.yaml": load_network,
    "policy.yaml": load_policy,
    "keyring.yaml": Keyring.load,
    "manifest.yaml": load_manifest,
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("name", ["alias_bomb", "python_tag", "latin1", "nul"])
def test_every_loader_reads_through_yamlcfg(
    tmp_path: Path, loader: str, name: str
) -> None:
    data, line, words = HOSTILE[name]
    path = write(tmp_path, loader, data)
    with pytest.raises(ConfigError) as info:
        LOADERS[loader](path)
    assert_one_line(info.value, path, line, words)


def test_a_hostile_train_manifest_stops_the_catalogue_with_a_config_error(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "evil.bomb"
    folder.mkdir(parents=True)
    manifest = write(folder, "manifest.yaml", _alias_bomb())
    (folder / "entrypoint.py").write_text("print('hi')\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        Catalogue(tmp_path)
    assert time.perf_counter() - start < 1.0
    assert_one_line(info.value, manifest, 1, "aliases/anchors")


def test_the_code_digest_covers_the_bytes_that_were_parsed() -> None:
    folder = next(
        p for p in sorted(TRAINS_DIR.iterdir()) if (p / "manifest.yaml").is_file()
    )
    package = load_package(folder)
    assert package.manifest_bytes == (folder / "manifest.yaml").read_bytes()


# -- values and messages ---------------------------------------------------------------
def _value(tmp_path: Path, text: str) -> yamlcfg.Node:
    path = write(tmp_path, "x.yaml", text.encode())
    return yamlcfg.load(path).mapping(None).require("x")


def test_values_quoted_in_errors_are_cut_and_structures_are_not_expanded(
    tmp_path: Path,
) -> None:
    long = _value(tmp_path, "x: " + "a" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        long.as_type(int)
    message = str(info.value)
    assert "a" * yamlcfg.MAX_QUOTE_CHARS not in message and "…" in message
    listed = _value(tmp_path, "x: [" + ", ".join(["lol"] * 500) + "]\n")
    with pytest.raises(ConfigError, match="expected a string, got a list$"):
        listed.as_str()
    with pytest.raises(ConfigError, match="expected a mapping .*got a list$"):
        listed.mapping()


@pytest.mark.parametrize(
    "text",
    [
        "x: 2026-13-45",  # a date that does not exist
        "x: 2026-01-01T00:00:00+99:00",  # a time zone out of range
        "x: " + "1" * 5000,  # more digits than Python converts
    ],
)
def test_unreadable_scalars_are_config_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml:1: x: cannot read this value"):
        _value(tmp_path, text + "\n").value()


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", b"\xef\xbb\xbfx: ok\n")
    assert yamlcfg.load(path).mapping(None).require("x").as_str() == "ok"


def test_long_messages_keep_their_start_and_their_fix(tmp_path: Path) -> None:
    node = _value(tmp_path, "x: 1\n")
    message = str(node.error("y" * 5000 + " ; fix it like this"))
    assert len(message) <= yamlcfg.MAX_MESSAGE_CHARS
    assert message.startswith(f"{tmp_path / 'x.yaml'}:1: x:")
    assert message.endswith("fix it like this")


# -- JSON files get the same caps --------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "nested deeper"),
        (b"[" * 40 + b"]" * 40, "nested deeper than 32"),
        (b'{"a": NaN}', "NaN is not allowed"),
        (b'{"a": 1, "a": 2}', "appears twice"),
        (b'{"a": "caf\xe9"}', "not valid UTF-8"),
        (b'{"a": 1,\n "b": }', "not valid JSON"),
        (b" " * (300 * 1024) + b"{}", "larger than 256 KiB"),
    ],
)
def test_hostile_json_is_a_config_error(
    tmp_path: Path, data: bytes, words: str
) -> None:
    path = write(tmp_path, "x.json", data)
    with pytest.raises(ConfigError) as info:
        yamlcfg.load_json(path)
    assert words in str(info.value) and str(info.value).startswith(f"{path}:")


def test_good_json_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "x.json", b'{"a": [1, 2.5, "x", null, true]}')
    assert yamlcfg.load_json(path) == {"a": [1, 2.5, "x", None, True]}


# -- through the CLI ---------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(11)
    frames = {
        "s1": pd.DataFrame(
            {
                "os_days": rng.integers(1, 900, 30).astype(float),
                "death": rng.integers(0, 2, 30),
            }
        )
    }
    return write_network(tmp_path_factory.mktemp("net"), frames)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_pht_validate_on_a_hostile_study_exits_2_without_a_traceback(
    tmp_path: Path, network: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    data, line, words = HOSTILE[name]
    study = write(tmp_path, "study.yaml", data)
    code, err = run_cli(capsys, "validate", study, "--network", network)
    assert code == 2
    message = error_line(err)
    assert words in message
    assert f"study.yaml:{line}:" in message if line else "study.yaml:" in message


@pytest.mark.parametrize("name", ["alias_bomb", "python_tag", "latin1", "merge_key"])
def test_pht_validate_on_a_hostile_network_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    study = write_study(tmp_path)
    hostile = write(tmp_path, "network.yaml", HOSTILE[name][0])
    code, err = run_cli(capsys, "validate", study, "--network", hostile)
    assert code == 2
    assert "network.yaml:" in error_line(err)
