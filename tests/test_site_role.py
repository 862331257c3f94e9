"""A care-site column (hospital) is a site and nothing else: its values are names a
station shows only where its policy says show_station_name: true."""

from __future__ import annotations

import pytest
import yaml

from pht.errors import ConfigError
from pht.provision import policy_document
from pht.station.policy import load_policy


def _policy(tmp_path, columns, **extra):  # type: ignore[no-untyped-def]
    doc = policy_document(columns=["os_days"])
    entry = doc["datasets"]["*"]
    entry["columns"] = columns
    entry.update(extra)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_policy(path).for_dataset("d")


def test_a_plain_column_list_gives_no_column_the_site_role(tmp_path) -> None:
    policy = _policy(tmp_path, ["hospital", "drug"])
    assert "site" not in policy.roles_of("hospital")
    assert "group" in policy.roles_of("hospital")  # the operator listed it plainly
    assert policy.role_refusal([("hospital", "site")]) is not None


def test_a_site_column_serves_as_nothing_else(tmp_path) -> None:
    policy = _policy(tmp_path, {"hospital": ["site"], "drug": ["group"]})
    assert policy.role_refusal([("hospital", "site")]) is None
    for role in ("group", "covariate", "measure", "period"):
        assert policy.role_refusal([("hospital", role)]) is not None
    with pytest.raises(ConfigError, match="give it the role site alone"):
        _policy(tmp_path, {"hospital": ["site", "group"]})
