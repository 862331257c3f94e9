"""The requester's side of trust: sign requests, check receipts, open sealed outputs.

Every released output must come with a receipt signed by the station key named in the
network file, for this request and this station, whose digests match the sealed bytes
and the opened plaintext; anything else is a :class:`~pht.errors.TrustError`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pht.crypto import (
    Identity,
    PublicIdentity,
    digest,
    load_public,
    open_sealed,
    sealed_digest,
)
from pht.description import StationDescription
from pht.errors import ConfigError, TrustError
from pht.manifest import TrainPackage
from pht.signing import (
    DESCRIBE_BINDING,
    DescribeRequestBody,
    Receipt,
    SignedRequestBody,
    new_describe,
    new_request,
    verify_receipt,
)
from pht.wire import Reply


def signed_train(folder: Path, package: TrainPackage) -> dict[str, Any]:
    """The methodologist-signed statement of ``package`` from the network's folder."""
    m = package.manifest
    path = folder / f"{m.name}@{m.version}.dsse.json"
    if not path.is_file():
        raise ConfigError(
            f"{path}: train {m.ref} is not signed; a methodologist signs it with "
            f"`pht train sign train_images/{m.name} --key KEY --out {folder}`"
        )
    from pht import yamlcfg

    envelope = yamlcfg.load_json(path)
    if not isinstance(envelope, dict):
        raise ConfigError(f"{path}: not a signed envelope; sign the train again")
    return envelope


class Requester:
    """An analyst's identity plus the public keys of the stations it talks to."""

    def __init__(self, identity: Identity, stations: Mapping[str, Path]) -> None:
        if identity.public.role != "requester":
            raise TrustError(
                f"requests are signed with a requester key, not a {identity.public.role} "
                "key; create one with `pht keys new --role requester`"
            )
        self.identity = identity
        self.stations: dict[str, PublicIdentity] = {
            s: load_public(path) for s, path in stations.items()
        }
        self.receipts: list[dict[str, Any]] = []

    def request(
        self,
        *,
        role: str,
        purpose: str,
        train: str,
        train_digest: str,
        train_envelope: Mapping[str, Any],
        dataset: str,
        parameters: Mapping[str, Any],
        targets: Sequence[str],
    ) -> tuple[SignedRequestBody, dict[str, Any]]:
        """A new signed request."""
        return new_request(
            self.identity,
            user=self.identity.public.name,
            role=role,
            purpose=purpose,
            train=train,
            train_digest=train_digest,
            train_envelope=train_envelope,
            dataset=dataset,
            parameters=parameters,
            targets=targets,
        )

    def describe(
        self, *, role: str, purpose: str, dataset: str, targets: Sequence[str]
    ) -> tuple[DescribeRequestBody, dict[str, Any]]:
        """A new signed describe request (``dataset`` may be ``*``: all I may use)."""
        return new_describe(
            self.identity,
            user=self.identity.public.name,
            role=role,
            purpose=purpose,
            dataset=dataset,
            targets=targets,
        )

    def open_describe(self, reply: Reply, request_id: str) -> StationDescription:
        """Verify the receipt of an ``ok`` describe reply and parse its description.

        Raises
        ------
        TrustError
            The seal, receipt or binding do not check out, or the station described
            itself as another station.
        ConfigError
            The opened answer is not a ``pht.description/1`` message.
        """
        if reply.train_digest != DESCRIBE_BINDING:
            raise TrustError(
                f"station {reply.station} answered a describe request with an output "
                "bound to something else"
            )
        _, plain = self._verified(reply, request_id, DESCRIBE_BINDING)
        description = StationDescription.from_dict(_parse(reply.station, plain))
        if description.station != reply.station:
            raise TrustError(
                f"station {reply.station} sent the description of another station"
            )
        return description

    def open(self, reply: Reply, request_id: str) -> Reply:
        """Verify the receipt and open the sealed output of an ``ok`` reply."""
        if not reply.ok:
            return reply
        receipt, plain = self._verified(reply, request_id, str(reply.train_digest))
        self.receipts.append(
            {
                "station": reply.station,
                "round": receipt.round,
                "output_digest": receipt.output_digest,
                "audit_checkpoint": {
                    "size": receipt.audit_size,
                    "root": receipt.audit_root,
                },
                "receipt": dict(reply.receipt or {}),
            }
        )
        return dataclasses.replace(reply, output=_parse(reply.station, plain))

    def _verified(
        self, reply: Reply, request_id: str, binding: str
    ) -> tuple[Receipt, bytes]:
        """The receipt and opened plaintext of an ``ok`` reply, all digests checked."""
        station = self.stations.get(reply.station)
        if station is None or reply.sealed is None or reply.receipt is None:
            raise TrustError(
                f"station {reply.station} released an output without a seal or receipt"
            )
        receipt = verify_receipt(reply.receipt, station)
        if receipt.request_id != request_id or receipt.station != reply.station:
            raise TrustError(f"station {reply.station} receipt is for another request")
        if receipt.sealed_digest != sealed_digest(reply.sealed):
            raise TrustError(
                f"station {reply.station} sealed output does not match its receipt"
            )
        plain = open_sealed(
            reply.sealed,
            self.identity.sealing,
            request_id=request_id,
            station_id=reply.station,
            manifest_digest=binding,
        )
        if digest(plain) != receipt.output_digest:
            raise TrustError(
                f"station {reply.station} output does not match its receipt"
            )
        return receipt, plain


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name}, which is not a finite number")


def _parse(station: str, plain: bytes) -> Any:
    """A station's opened output as JSON, refusing NaN and Infinity as its guard does.

    >>> _parse("s1", b'{"n": 3}')
    {'n': 3}
    >>> try:
    ...     _parse("s1", b'{"n": NaN}')
    ... except TrustError as exc:
    ...     print(str(exc)[:57])
    station s1 released an output pht cannot read (NaN, which
    """
    try:
        return json.loads(plain, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise TrustError(
            f"station {station} released an output pht cannot read ({exc}); a "
            "station's guard refuses such output: ask its operator to check the "
            "station's pht version"
        ) from None
