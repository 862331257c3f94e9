"""Copy one station's own side of a pht ``network.yaml`` into a folder for its node.

Run with pht's venv (``.venv/bin/python``)::

    station_folder.py NETWORK_YAML STATION_ID DEST [--unsafe-process-sandbox]

The vantage6 node of that station lists DEST as a database of its own (type
``folder``, label ``pht``): vantage6 4.15 bind-mounts a folder database read-write
at ``/mnt/pht`` into every algorithm container it runs, and passes the entry's
``env`` as ``PHT_DB_PARAM_<KEY>`` variables. The pht algorithm image
(``pht_v6``) reads ``/mnt/pht/network.yaml`` and runs that station.

DEST gets, at the same relative paths as in the source network: the station's
datasets, policy, identity (its PRIVATE key: DEST is the station's secret side),
keyring and every public key the keyring names, its witness folder, the signed
trains folder, and a ``network.yaml`` naming only this station. Paths in the source
file must stay inside its folder (as ``pht demo`` writes them).

``--unsafe-process-sandbox`` sets ``unsafe_process_sandbox: true`` on every dataset
of the copied policy: inside the algorithm container (uid 10001, no privileges) the
process executor has no namespaces or cgroups of its own; the container vantage6
starts is then the train's only isolation. The station refuses to run trains
without that line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml


def _inside(root: Path, relative: str, what: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise SystemExit(
            f"station_folder: {what} '{relative}' is outside {root}; keep the "
            "station's files in the network file's folder"
        )
    return path


def _copy(src: Path, root: Path, dest: Path) -> None:
    target = dest / src.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, target, dirs_exist_ok=True)
    else:
        shutil.copy2(src, target)


def make_station_folder(
    network_file: Path, station_id: str, dest: Path, unsafe_sandbox: bool = False
) -> Path:
    """Write ``station_id``'s side of ``network_file`` into ``dest``; return ``dest``.

    Parameters
    ----------
    network_file
        A pht ``network.yaml`` that configures the station (policy, identity, ...).
    station_id
        The station to copy.
    dest
        The new folder (created; must not exist or be empty).
    unsafe_sandbox
        Set ``unsafe_process_sandbox: true`` in the copied policy (see the module
        docstring).

    Returns
    -------
    Path
        ``dest``, resolved.
    """
    root = network_file.resolve().parent
    doc: dict[str, Any] = yaml.safe_load(network_file.read_text(encoding="utf-8"))
    entries = [e for e in doc.get("stations") or [] if e.get("id") == station_id]
    if not entries:
        raise SystemExit(f"station_folder: no station '{station_id}' in {network_file}")
    entry = dict(entries[0])
    dest = dest.resolve()
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"station_folder: {dest} is not empty; choose a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    for ds in entry.get("datasets") or []:
        if isinstance(ds, dict) and "path" in ds:
            _copy(_inside(root, ds["path"], "dataset path"), root, dest)
    for key in ("identity", "public_key"):
        _copy(_inside(root, entry[key], key), root, dest)
    keyring = _inside(root, entry["keyring"], "keyring")
    _copy(keyring, root, dest)
    for key in yaml.safe_load(keyring.read_text(encoding="utf-8")).get("keys") or []:
        public = (keyring.parent / key["public"]).resolve()
        if not public.is_relative_to(root):
            raise SystemExit(f"station_folder: keyring key {public} is outside {root}")
        _copy(public, root, dest)
    if entry.get("witness"):
        witness = _inside(root, entry["witness"], "witness")
        (dest / witness.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
    _copy(_inside(root, doc["trains"], "trains"), root, dest)
    policy = _inside(root, entry["policy"], "policy")
    _copy(policy, root, dest)
    if unsafe_sandbox:
        copied = dest / policy.relative_to(root)
        pol = yaml.safe_load(copied.read_text(encoding="utf-8"))
        for rules in (pol.get("datasets") or {}).values():
            rules["unsafe_process_sandbox"] = True
        copied.write_text(yaml.safe_dump(pol, sort_keys=False), encoding="utf-8")
    entry["executor"] = "process"
    entry.setdefault("workdir", f"stations/{station_id}/work")
    out = {"engine": "embedded", "trains": doc["trains"], "stations": [entry]}
    (dest / "network.yaml").write_text(
        "# one station's own side, for its vantage6 node (station_folder.py)\n"
        + yaml.safe_dump(out, sort_keys=False),
        encoding="utf-8",
    )
    return dest


def main() -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", type=Path)
    parser.add_argument("station")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--unsafe-process-sandbox", action="store_true")
    args = parser.parse_args()
    print(
        make_station_folder(
            args.network, args.station, args.dest, args.unsafe_process_sandbox
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
