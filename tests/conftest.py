"""Shared fixtures: build small networks from data frames, run studies end to end."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from pht.manifest import Catalogue
from pht.provision import policy_document, provision


def write_network(
    root: Path,
    frames: Mapping[str, pd.DataFrame],
    *,
    dataset: str = "melanoma",
    min_cell_size: int = 10,
    fmt: str = "parquet",
    policy: Mapping[str, Any] | None = None,
    **policy_options: Any,
) -> Path:
    """Write one data file per station and provision keys, keyrings, signed trains,
    policies and network.yaml; return the network file. The analyst's key is
    ``root/keys/analyst.key.json``."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    held = {}
    for station_id, frame in frames.items():
        path = root / "data" / f"{station_id}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        held[station_id] = {dataset: path}
    policy_options.setdefault(
        "columns", sorted({c for f in frames.values() for c in f.columns})
    )
    document = policy or policy_document(min_cell_size=min_cell_size, **policy_options)
    made = provision(
        root, held, names={s: f"Station {s}" for s in frames}, policy=document
    )
    return made.network


def identity_of(network: Path) -> Path:
    """The analyst key provisioned next to ``network``."""
    return network.parent / "keys" / "analyst.key.json"


def write_study(root: Path, **fields: Any) -> Path:
    """Write study.yaml with sensible defaults overridden by ``fields``."""
    doc: dict[str, Any] = {
        "question": "Does survival differ between groups?",
        "purpose": "package-management/reassessment",
        "train": "survival.km",
        "dataset": "melanoma",
        "parameters": {"time": "os_days", "event": "death", "group": "regimen"},
    }
    doc.update(fields)
    doc = {k: v for k, v in doc.items() if v is not None}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def run_embedded(study: Path, network: Path) -> dict[str, Any]:
    """Run a study through the embedded engine and return the result dict."""
    from pht.crypto import load_identity
    from pht.orchestrator.config import load_network, load_study
    from pht.orchestrator.engine import EmbeddedEngine
    from pht.orchestrator.requester import Requester
    from pht.orchestrator.run import run_study

    catalogue = Catalogue()
    net = load_network(network)
    st = load_study(study, catalogue, net)
    requester = Requester(
        load_identity(identity_of(network)),
        {s: e.public_key for s, e in net.stations.items()},
    )
    return run_study(st, net, EmbeddedEngine(net, catalogue), requester)


@pytest.fixture(scope="session")
def lung() -> pd.DataFrame:
    """lifelines' real NCCTG lung data, with institution and complete time/status."""
    from lifelines.datasets import load_lung

    frame = load_lung().dropna(subset=["inst"]).reset_index(drop=True)
    frame["inst"] = frame["inst"].astype(int)
    return frame
