"""Set up a working network on one machine: keys, keyrings, signed trains, policies.

Used by ``pht demo`` and by tests; a real deployment does the same steps by hand with
``pht keys new``, ``pht train sign`` and each station's own keyring and policy.

Layout written under ``root``::

    keys/            analyst (requester, ZIN), methodologist, one key per station
    trains/          <name>@<version>.dsse.json: every catalogue train, signed
    stations/<id>/   keyring.yaml (trusts the analyst, who may claim the role
                     ``analyst``, and the methodologist),
                     policy.yaml, and the station's working folder
    network.yaml
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pht.crypto import new_identity, save_identity
from pht.keyring import Keyring
from pht.manifest import Catalogue
from pht.signing import sign_train

CLINICAL_COLUMNS = (
    "os_days",
    "death",
    "pfs_days",
    "progression",
    "regimen",
    "drug",
    "age",
    "sex",
    "stage",
    "ecog",
    "ldh_elevated",
    "brain_mets",
    "line",
    "tox_grade3",
    "response",
    "diagnosis_date",
    "start_date",
    "cost_eur",
    "n_administrations",
    "dose_mg_total",
    "hospital",
)

CLINICAL_ROLES: dict[str, list[str]] = {
    column: (
        ["time"]
        if column in ("os_days", "pfs_days")
        else ["event", "outcome"]
        if column in ("death", "progression")
        else ["covariate"]
        if column == "age"
        else ["period"]
        if column in ("diagnosis_date", "start_date")
        else ["measure", "outcome"]
        if column in ("cost_eur", "n_administrations", "dose_mg_total")
        else ["site"]
        if column == "hospital"
        else ["group", "covariate", "outcome", "measure"]
        if column == "tox_grade3"
        else ["group", "covariate"]
    )
    for column in CLINICAL_COLUMNS
}
"""The role each clinical column may serve as (as in ``policies/default.yaml``)."""


@dataclass(frozen=True)
class Provisioned:
    """Paths of a provisioned network."""

    root: Path
    network: Path
    requester_key: Path
    methodologist_key: Path


def default_trains(catalogue: Catalogue | None = None) -> list[str]:
    """The catalogue's trains whose plugin belongs in a default policy."""
    from pht.trains import plugins

    registered = plugins()
    return [
        name
        for name in (catalogue or Catalogue()).names()
        if name in registered and registered[name].in_default_policy
    ]


def policy_document(
    *,
    columns: Sequence[str] = CLINICAL_COLUMNS,
    classes: Sequence[str] = ("aggregate", "model", "event_table"),
    min_cell_size: int = 10,
    purposes: Sequence[str] = (
        "package-management/reassessment",
        "efficiency-research/dose-reduction",
    ),
    budget: Mapping[str, int] | None = None,
    review: str = "automatic",
    trains: Sequence[Mapping[str, Any]] | None = None,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """A policy (as a YAML-ready dict) for every dataset of a station."""
    entry: dict[str, Any] = {
        "purposes": list(purposes),
        "requesters": [{"organisation": "ZIN", "roles": ["analyst"]}],
        "trains": list(
            trains
            or [
                {"name": n, "versions": ">=1.0.0,<2.0.0", "signers": ["keyring"]}
                for n in default_trains(catalogue)
            ]
        ),
        # the clinical columns with their roles; any other list: every role
        "columns": dict(CLINICAL_ROLES)
        if tuple(columns) == CLINICAL_COLUMNS
        else list(columns),
        "disclosure_classes": list(classes),
        "min_cell_size": min_cell_size,
        "show_station_name": False,
        # the Cox model checks may show this station's own fit next to the pooled one
        "station_estimates": True,
        "review": review,
    }
    if budget is not None:
        entry["budget"] = dict(budget)
    return {"version": 1, "datasets": {"*": entry}}


def provision(
    root: Path,
    datasets: Mapping[str, Mapping[str, Path | Mapping[str, Any]]],
    *,
    names: Mapping[str, str] | None = None,
    policy: Mapping[str, Any] | None = None,
    executor: str = "process",
    catalogue: Catalogue | None = None,
    images: Mapping[str, str] | None = None,
) -> Provisioned:
    """Write keys, keyrings, signed trains, policies and ``network.yaml``.

    ``datasets`` maps station id to {dataset id: data file}; data paths are written
    relative to ``root`` when they lie under it. A dataset given as a mapping is a
    database source entry (``{kind: postgres, table: ..., dsn_file: ...}``, see
    :mod:`pht.datasources`), written as it is. ``images`` (train ref -> image ID)
    puts the image digests into the signed statements, for the docker executor.
    """
    root.mkdir(parents=True, exist_ok=True)
    keys = root / "keys"
    keys.mkdir(exist_ok=True)
    analyst = new_identity("requester", "ZIN", "analyst")
    methodologist = new_identity("methodologist", "pht-methods", "methodologist")
    analyst_key, analyst_pub = save_identity(analyst, keys)
    method_key, method_pub = save_identity(methodologist, keys)
    trains = root / "trains"
    trains.mkdir(exist_ok=True)
    for package in (catalogue or Catalogue()).packages():
        m = package.manifest
        envelope = sign_train(package, methodologist, (images or {}).get(str(m.ref)))
        (trains / f"{m.name}@{m.version}.dsse.json").write_text(
            json.dumps(envelope, indent=1), encoding="utf-8"
        )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    document = dict(policy or policy_document())
    entries = []
    (root / "witnesses").mkdir(exist_ok=True)
    # every station's key first: each keyring trusts its peers' station keys, which
    # sign the receipts that prove an iterative fit's path (pht.station.sessions)
    station_keys = {
        station_id: save_identity(
            new_identity("station", station_id.upper(), station_id), keys
        )
        for station_id in datasets
    }
    for station_id, held in datasets.items():
        for path in held.values():
            if not isinstance(path, Path | str):
                continue  # a database source: the DSN file is the operator's
            path = Path(path)
            # the station's data: owner-only, plus the train group (gid 10001) that
            # the docker executor adds to its otherwise unprivileged containers
            os.chmod(path, 0o640)
            if os.geteuid() == 0:
                os.chown(path, -1, 10001)
        folder = root / "stations" / station_id
        folder.mkdir(parents=True, exist_ok=True)
        station_key, station_pub = station_keys[station_id]
        keyring = Keyring()
        keyring.add(
            analyst_pub,
            roles=["requester"],
            valid_from=since,
            requester_roles=["analyst"],
        )
        keyring.add(method_pub, roles=["methodologist"], valid_from=since)
        for peer, (_, peer_pub) in station_keys.items():
            if peer != station_id:
                keyring.add(peer_pub, roles=["station"], valid_from=since)
        keyring.save(folder / "keyring.yaml")
        (folder / "policy.yaml").write_text(
            yaml.safe_dump(document, sort_keys=False), encoding="utf-8"
        )

        def rel(path: Path) -> str:
            try:
                return str(path.resolve().relative_to(root.resolve()))
            except ValueError:
                return str(path.resolve())

        entries.append(
            {
                "id": station_id,
                "name": (names or {}).get(station_id, station_id),
                "datasets": [
                    {"id": d, "path": rel(Path(p))}
                    if isinstance(p, Path | str)
                    else {"id": d, **p}
                    for d, p in held.items()
                ],
                "policy": rel(folder / "policy.yaml"),
                "identity": rel(station_key),
                "keyring": rel(folder / "keyring.yaml"),
                "public_key": rel(station_pub),
                "executor": executor,
                "workdir": rel(folder / "work"),
                # the audit checkpoint kept outside the station's folder
                "witness": rel(root / "witnesses" / f"{station_id}.witness"),
            }
        )
    network = root / "network.yaml"
    network.write_text(
        "# A pht network: stations, their keys, keyrings, policies and data.\n"
        + yaml.safe_dump(
            {"engine": "embedded", "trains": "trains", "stations": entries},
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    return Provisioned(root, network, analyst_key, method_key)
