"""The pht station as a vantage6 algorithm: a signed request in, a sealed reply out.

vantage6 4.15's wrapper (``wrap_algorithm``, ``PKG_NAME=pht_v6``) calls
:func:`station` with the task input's ``kwargs``: ``{"envelope": <signed pht
request>}``. The station is the node's own: its folder is the node's database of
type ``folder`` labelled ``pht`` (``PHT_DATABASE_URI``, mounted read-write at
``/mnt/pht`` by the node) holding a one-station ``network.yaml`` with the station's
policy, identity, keyring, data and audit log (``station_folder.py`` writes it).
The station runs the whole pht pipeline (admission, extraction, the train under the
process executor in this container, the output guard, sealing, audit) and the
return value is its :class:`pht.wire.Reply` as JSON (the aggregate sealed to the
requester; vantage6 only carries it).

Nothing in the task input chooses the folder or the station: a request names its
station inside the signed envelope, and the station refuses one addressed elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

FOLDER_LABEL = "PHT"
"""The node's database label of the station folder, upper-cased as vantage6 does."""
TRAINS = Path(os.environ.get("PHT_V6_TRAINS", "/opt/pht/train_images"))
"""The train catalogue baked into the image (the checkout's ``train_images``)."""


def _folder() -> Path:
    uri = os.environ.get(f"{FOLDER_LABEL}_DATABASE_URI")
    if not uri:
        raise RuntimeError(
            "this node has no station folder: add a database "
            "{label: pht, type: folder, uri: <station folder>} to its configuration"
        )
    return Path(uri)


def station(envelope: dict[str, Any]) -> dict[str, Any]:
    """Answer one signed single-round (or describe) request as the node's station.

    Parameters
    ----------
    envelope
        The signed pht request envelope (:mod:`pht.signing`), as JSON.

    Returns
    -------
    dict
        The station's reply (:class:`pht.wire.Reply`) as JSON: status, fixed
        reason code, sealed aggregate and signed receipt.
    """
    logging.basicConfig(level=logging.WARNING)
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import host_station

    network = load_network(_folder() / "network.yaml")
    if len(network.stations) != 1:
        raise RuntimeError(
            f"{network.source}: a node's station folder names exactly one station"
        )
    (entry,) = network.stations.values()
    host = host_station(entry, Catalogue(TRAINS))
    _log_sandbox_failures(host.executor)
    try:
        reply = host.handle(envelope)
    finally:
        host.close()
    out: dict[str, Any] = json.loads(reply.to_json())
    return out


def _log_sandbox_failures(executor: Any) -> None:
    """On a sandbox failure, copy the init's stderr to the container log.

    The station removes the run folder (and its ``stderr.log``) after every run;
    this node-side log (the node's, and the server's when ``share_algorithm_logs``
    is true) is then the only place the operator finds why.
    """
    from pht.errors import ExecutorError

    run = executor.run

    def logged(job: Any) -> Any:
        try:
            return run(job)
        except ExecutorError:
            tail = Path(job.workdir, "stderr.log")
            if tail.is_file():
                text = tail.read_bytes()[-3000:].decode("utf-8", "replace")
                logging.getLogger(__name__).warning("sandbox stderr: %s", text)
            raise

    executor.run = logged
