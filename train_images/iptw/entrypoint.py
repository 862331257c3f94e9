"""Station side of iptw: one session, the propensity and the outcome model's rounds.

A thin adapter: the computation and its disclosure rules are
:class:`pht.algorithms.iptw_local.LocalIptw`, which the station's own kernel also
uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pht.algorithms.iptw_local import LocalIptw, used_columns
from pht.columns import Columns
from pht.runtime import Session, run_session
from pht.wire import TrainInput


class IptwSession(Session):
    """Keeps the station's complete cases of both arms for all rounds."""

    def __init__(self, columns: Columns, train_input: TrainInput) -> None:
        params = train_input.parameters
        self.local = LocalIptw(
            {c: columns[c] for c in used_columns(params)},
            params,
            train_input.min_count,
            train_input.rules,
        )

    def opened(self) -> Mapping[str, Any]:
        """Round 0: sizes, arms, events, covariate sums and level counts (>= k)."""
        return self.local.describe()

    def round(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """``design``, ``terms``, ``weights`` (``truncate``), ``outcome``, ``checks``."""
        return self.local.answer(message)


if __name__ == "__main__":
    raise SystemExit(run_session(IptwSession))
