"""Station side of survival.cox: one session, rounds of Cox sums.

A thin adapter: the computation and its disclosure rules are
:class:`pht.algorithms.cox_local.LocalCox`, which the station's own kernel also uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pht.algorithms.cox_local import LocalCox
from pht.columns import Columns
from pht.runtime import Session, run_session
from pht.wire import TrainInput


class CoxSession(Session):
    """Keeps the station's sorted complete cases for all Newton-Raphson rounds."""

    def __init__(self, columns: Columns, train_input: TrainInput) -> None:
        self.local = LocalCox(
            columns, train_input.parameters, train_input.min_count, train_input.grid
        )

    def opened(self) -> Mapping[str, Any]:
        """Round 0: sizes, covariate sums and level counts (>= k), event times."""
        return self.local.describe()

    def round(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """``design`` once, then one operation per Newton evaluation."""
        return self.local.answer(message)


if __name__ == "__main__":
    raise SystemExit(run_session(CoxSession))
