"""``engine: {kind: vantage6, ...}`` in network.yaml: strict parsing and name lookup.

No vantage6 network is needed: names are resolved against a tiny HTTP server that
answers like the vantage6 4.15 REST API (``token/user``, ``organization``,
``collaboration``). The real network is in ``test_vantage6.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_network

from pht.errors import ConfigError
from pht.orchestrator.config import load_network
from pht.orchestrator.engine import make_engine
from pht.orchestrator.vantage6_engine import Vantage6Engine
from pht.vantage6_local import write_analyst_network


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A provisioned two-station network (stations configured in the file)."""
    rng = np.random.default_rng(14)
    frames = {
        s: pd.DataFrame(
            {"os_days": rng.integers(1, 900, 40), "death": rng.integers(0, 2, 40)}
        )
        for s in ("nkr", "dica")
    }
    root = tmp_path_factory.mktemp("v6cfg")
    network = write_network(root, frames)
    (root / "v6").mkdir()
    (root / "v6" / "analyst.password").write_text("Secret-1a!\n", encoding="utf-8")
    return network


def _engine(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "kind": "vantage6",
        "server": "http://127.0.0.1:9/api",
        "collaboration": "pht",
        "username": "analyst",
        "password_file": "v6/analyst.password",
        "image": "pht/v6-station:abc",
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def _analyst(full: Path, engine: Any) -> Path:
    """The analyst's side of ``full`` with ``engine``, as a fresh file."""
    path = write_analyst_network(full, ("nkr", "dica"), engine)
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_network(path)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_analyst_file_with_vantage6_engine_loads_without_station_config(
    full: Path,
) -> None:
    net = load_network(_analyst(full, _engine(timeout=120, offline_grace=5)))
    assert net.engine == "vantage6"
    assert all(entry.host is None for entry in net.stations.values())
    s = net.engine_settings
    assert s is not None
    assert dict(s["organizations"]) == {"nkr": "nkr", "dica": "dica"}  # default
    assert s["password_file"] == full.parent / "v6" / "analyst.password"
    assert (s["timeout"], s["offline_grace"]) == (120.0, 5.0)
    text = net.source.read_text(encoding="utf-8")
    assert "policy" not in text and "identity" not in text


def test_defaults_and_plain_embedded_engine(full: Path) -> None:
    net = load_network(_analyst(full, _engine()))
    assert net.engine_settings is not None
    assert (net.engine_settings["timeout"], net.engine_settings["offline_grace"]) == (
        300.0,
        15.0,
    )
    assert load_network(full).engine_settings is None
    doc = yaml.safe_load(full.read_text(encoding="utf-8"))
    doc["engine"] = {"kind": "embedded"}
    mapped = full.with_name("network-embedded.yaml")
    mapped.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert load_network(mapped).engine == "embedded"


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        (_engine(bogus=1), "key 'engine.bogus' is not allowed here"),
        (_engine(timeout="soon"), "engine.timeout: expected a number"),
        (_engine(timeout=0), "engine.timeout: expected seconds between 0 and"),
        (_engine(server="127.0.0.1:7601"), "engine.server: '127.0.0.1:7601' is not"),
        (_engine(server=None), "missing required key 'engine.server'"),
        (_engine(image=None), "missing required key 'engine.image'"),
        (_engine(collaboration=0), "engine.collaboration: a vantage6 id is a"),
        (_engine(collaboration=["pht"]), "engine.collaboration: expected"),
        (
            _engine(password_file="v6/missing.password"),
            "engine.password_file: password file 'v6/missing.password' not found",
        ),
        (
            _engine(organizations={"nkr": "nkr"}),
            "station 'dica' has no vantage6 organisation; add 'dica: <organisation",
        ),
        (
            _engine(organizations={"nkr": 1, "dica": 2, "umc": 3}),
            "key 'engine.organizations.umc' is not allowed here; allowed: dica, nkr",
        ),
        ("vantage6", "the vantage6 engine needs its settings"),
        ({"kind": "embedded", "server": "x"}, "key 'engine.server' is not allowed"),
        ({"kind": "nope"}, "engine.kind: engine 'nope' is not available"),
        ({"server": "x"}, "missing required key 'engine.kind'"),
    ],
)
def test_bad_engine_settings_are_one_located_line(
    full: Path, engine: Any, expected: str
) -> None:
    message = _error(_analyst(full, engine))
    assert expected in message
    assert "network-vantage6.yaml:" in message


class _FakeV6(BaseHTTPRequestHandler):
    """Answers like a vantage6 4.15 server: a login and two listings."""

    records = {
        "organization": [{"id": 3, "name": "nkr"}, {"id": 4, "name": "dica"}],
        "collaboration": [{"id": 7, "name": "pht"}],
    }

    def _send(self, body: Any, code: int = 200) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        if self.path == "/api/token/user" and body["password"] == "Secret-1a!":
            self._send({"access_token": "t"})
        else:
            self._send({"msg": "no"}, 401)

    def do_GET(self) -> None:  # noqa: N802
        kind = self.path.removeprefix("/api/").split("?")[0]
        if kind in self.records and self.headers["Authorization"] == "Bearer t":
            self._send({"data": self.records[kind]})
        else:
            self._send({"msg": "no"}, 404)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def fake_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _FakeV6)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_names_resolve_to_ids_through_the_server(full: Path, fake_server: str) -> None:
    net = load_network(_analyst(full, _engine(server=fake_server)))
    engine = make_engine(net)
    assert isinstance(engine, Vantage6Engine)
    assert engine.settings.collaboration == 7
    assert dict(engine.settings.organizations) == {"nkr": 3, "dica": 4}
    assert engine.settings.image == "pht/v6-station:abc"
    # iterative rounds are sealed to the stations' public keys
    assert dict(engine.settings.station_keys) == {
        s: e.public_key for s, e in net.stations.items()
    }


def test_unknown_organisation_name_lists_the_known_ones(
    full: Path, fake_server: str
) -> None:
    engine = _engine(server=fake_server, organizations={"nkr": "nkr", "dica": "DICA"})
    net = load_network(_analyst(full, engine))
    with pytest.raises(ConfigError) as raised:
        make_engine(net)
    message = str(raised.value)
    assert "\n" not in message
    assert "no organisation 'DICA'; use one of: dica, nkr" in message


def test_numeric_ids_need_no_server(full: Path) -> None:
    # port 9 (discard) is closed: a lookup would fail
    engine = _engine(collaboration=7, organizations={"nkr": 3, "dica": 4})
    built = make_engine(load_network(_analyst(full, engine)))
    assert isinstance(built, Vantage6Engine)
    assert built.settings.collaboration == 7
    assert dict(built.settings.organizations) == {"nkr": 3, "dica": 4}


def test_unreachable_server_is_one_line(full: Path) -> None:
    net = load_network(_analyst(full, _engine()))
    with pytest.raises(ConfigError) as raised:
        make_engine(net)
    assert "\n" not in str(raised.value)
    assert "is not reachable" in str(raised.value)
