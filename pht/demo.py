"""The embedded demo network: three synthetic registries, a policy, a network, a study."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pht import synth
from pht.station.policy import DEFAULT_POLICY

STATION_NAMES = {
    "nkr": "Netherlands Cancer Registry (synthetic)",
    "dica": "Dutch Melanoma Treatment Registry, DICA (synthetic)",
    "umc": "University medical centre EHR + pharmacy (synthetic)",
}

STUDY = """\
# An analyst's question for the demo network (see README: "study.yaml").
question: Does overall survival of advanced-melanoma patients on anti-PD-1 differ between
  dosing regimens (standard, extended-interval, weight-based) in daily practice?
purpose: package-management/reassessment
train: survival.km
dataset: melanoma
stations: [nkr, dica, umc]
parameters:
  {time: os_days, event: death, group: regimen, reference_group: standard, tau: 730, at: 365}
"""


@dataclass(frozen=True)
class Demo:
    """Where the demo's files are."""

    root: Path
    network: Path
    study: Path
    out: Path


def network_yaml(stations: list[str]) -> str:
    """A network file for the demo stations (data in ``data/``, policy in ``policies/``)."""
    lines = ["# The demo's embedded network: one entry per data station.", "stations:"]
    for station in stations:
        lines += [
            f"  - id: {station}",
            f"    name: {STATION_NAMES[station]}",
            "    datasets:",
            "      - id: melanoma",
            f"        path: data/{station}.parquet",
            "    policy: policies/default.yaml",
            "    executor: process",
        ]
    return "\n".join(lines) + "\n"


def create_demo(
    root: Path, seed: int = 2026, patients: int = synth.DEFAULT_PATIENTS
) -> Demo:
    """Write synthetic data, the default policy, ``network.yaml`` and ``study.yaml``."""
    root.mkdir(parents=True, exist_ok=True)
    synth.write(root / "data", seed=seed, patients=patients)
    (root / "policies").mkdir(exist_ok=True)
    shutil.copyfile(DEFAULT_POLICY, root / "policies" / "default.yaml")
    network = root / "network.yaml"
    network.write_text(network_yaml(list(synth.STATIONS)), encoding="utf-8")
    study = root / "study.yaml"
    study.write_text(STUDY, encoding="utf-8")
    return Demo(root, network, study, root / "results")
