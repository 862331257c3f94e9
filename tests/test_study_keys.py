"""study.yaml's ``role`` and ``requester`` keys.

``role`` is the role the signed request claims; each station decides: the requester
key's keyring entry must list it in ``requester_roles`` and the policy must allow the
organisation in that role. ``requester`` is not a study key: who asks is the key given
to ``pht run --identity``, so the key is refused with the fix instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import identity_of, run_embedded, write_network, write_study

from pht.crypto import load_identity
from pht.errors import ConfigError, PolicyError
from pht.keyring import Keyring
from pht.manifest import Catalogue
from pht.orchestrator.config import Study, load_network, load_study
from pht.orchestrator.requester import Requester
from pht.orchestrator.run import plan_request
from pht.provision import policy_document
from pht.signing import verify_signed_request
from pht.station.codes import Code


def frames(n: int = 200) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    return {
        s: pd.DataFrame(
            {
                "os_days": rng.integers(1, 900, n).astype(float),
                "death": rng.integers(0, 2, n),
                "regimen": rng.choice(["standard", "extended_interval"], n),
            }
        )
        for s in ("s1", "s2")
    }


def load(study: Path, network: Path) -> Study:
    return load_study(study, Catalogue(), load_network(network))


def allow_roles_in_keyrings(network: Path, roles: list[str]) -> None:
    """Let the analyst's key claim ``roles`` at every station (its keyring entry)."""
    for keyring in (network.parent / "stations").glob("*/keyring.yaml"):
        doc = yaml.safe_load(keyring.read_text(encoding="utf-8"))
        for entry in doc["keys"]:
            if "requester_roles" in entry:
                entry["requester_roles"] = roles
        keyring.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


@pytest.fixture
def net(tmp_path: Path) -> Path:
    return write_network(tmp_path / "net", frames())


def test_role_is_read_from_the_study(tmp_path: Path, net: Path) -> None:
    assert load(write_study(tmp_path, role="reviewer"), net).role == "reviewer"


def test_role_defaults_to_analyst(tmp_path: Path, net: Path) -> None:
    assert load(write_study(tmp_path), net).role == "analyst"


@pytest.mark.parametrize("role", ["Analyst", "data analyst", "9lives", "a" * 33])
def test_role_must_be_a_role_name(tmp_path: Path, net: Path, role: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write_study(tmp_path, role=role), net)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'study.yaml'}:")
    assert f": role: role {role!r} must be a lower-case name such as analyst" in message
    assert "requester_roles" in message and "\n" not in message


def test_role_must_be_a_string(tmp_path: Path, net: Path) -> None:
    with pytest.raises(ConfigError, match=r"study\.yaml:\d+: role: expected a string"):
        load(write_study(tmp_path, role=["analyst"]), net)


def test_requester_key_is_refused_with_the_fix(tmp_path: Path, net: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(write_study(tmp_path, requester="alice"), net)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'study.yaml'}:")
    assert ": requester: not a study key" in message
    assert "pht run --identity KEY" in message and "remove this line" in message


def test_the_request_is_signed_with_the_study_role(tmp_path: Path, net: Path) -> None:
    network = load_network(net)
    study = load_study(write_study(tmp_path, role="reviewer"), Catalogue(), network)
    requester = Requester(
        load_identity(identity_of(net)),
        {s: e.public_key for s, e in network.stations.items()},
    )
    body, envelope = plan_request(study, network, requester)
    assert body.role == "reviewer"
    allow_roles_in_keyrings(net, ["reviewer"])
    keyring = Keyring.load(net.parent / "stations" / "s1" / "keyring.yaml")
    assert verify_signed_request(envelope, keyring, "s1").body.role == "reviewer"


def run_with_role(
    tmp_path: Path, role: str, claimable: list[str], policy_roles: list[str]
) -> dict[str, Any]:
    """Run a study claiming ``role`` on a fresh network whose keyrings let the key
    claim ``claimable`` and whose policies allow ZIN in ``policy_roles``."""
    document = policy_document(columns=["os_days", "death", "regimen"])
    document["datasets"]["*"]["requesters"] = [
        {"organisation": "ZIN", "roles": policy_roles}
    ]
    folder = tmp_path / f"{role}-{'-'.join(claimable)}-{'-'.join(policy_roles)}"
    net = write_network(folder, frames(), policy=document)
    allow_roles_in_keyrings(net, claimable)
    return run_embedded(write_study(folder, role=role), net)


def test_a_role_the_key_may_not_claim_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no station took part") as info:
        run_with_role(tmp_path, "reviewer", ["analyst"], ["analyst", "reviewer"])
    assert str(info.value).count(Code.IDENTITY.value) == 2


def test_the_station_policy_decides_the_role(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no station took part") as info:
        run_with_role(tmp_path, "reviewer", ["analyst", "reviewer"], ["analyst"])
    assert str(info.value).count(Code.REQUESTER.value) == 2
    with pytest.raises(PolicyError, match="no station took part") as info:
        run_with_role(tmp_path, "analyst", ["analyst", "reviewer"], ["reviewer"])
    assert str(info.value).count(Code.REQUESTER.value) == 2

    result = run_with_role(tmp_path, "reviewer", ["analyst", "reviewer"], ["reviewer"])
    assert [s["participated"] for s in result["stations"]] == [True, True]
