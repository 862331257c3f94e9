"""Station side of glm: one session, rounds of GLM terms.

A thin adapter: the computation and its disclosure rules are
:class:`pht.algorithms.glm_local.LocalGlm`, which the station's own kernel also uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pht.algorithms.glm_local import LocalGlm, used_columns
from pht.columns import Columns
from pht.runtime import Session, run_session
from pht.wire import TrainInput


class GlmSession(Session):
    """Keeps the station's complete cases for all Newton-Raphson rounds."""

    def __init__(self, columns: Columns, train_input: TrainInput) -> None:
        params = train_input.parameters
        self.local = LocalGlm(
            {c: columns[c] for c in used_columns(params)},
            params,
            train_input.min_count,
            train_input.rules,
        )

    def opened(self) -> Mapping[str, Any]:
        """Round 0: sizes, events, covariate sums and level counts (>= k)."""
        return self.local.describe()

    def round(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """``design`` once, then ``terms`` per Newton evaluation, ``checks`` last."""
        return self.local.answer(message)


if __name__ == "__main__":
    raise SystemExit(run_session(GlmSession))
