"""Station side of nma.inputs: one station's arms (see pht.algorithms.nma_local)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pht.columns import Columns
from pht.runtime import run_train
from pht.trains.nma_inputs import station_output
from pht.wire import TrainInput


def local(columns: Columns, train_input: TrainInput) -> Mapping[str, Any]:
    """The station's arms, exactly as the station recomputes them."""
    return station_output(
        train_input.parameters,
        columns.__getitem__,
        train_input.min_count,
        train_input.rules,
    )


if __name__ == "__main__":
    raise SystemExit(run_train(local))
