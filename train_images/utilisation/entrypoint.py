"""Station side of utilisation: the released table (see pht.algorithms.utilisation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pht.algorithms.utilisation import Rules, station_output
from pht.columns import Columns
from pht.runtime import run_train
from pht.wire import TrainInput


def local(columns: Columns, train_input: TrainInput) -> Mapping[str, Any]:
    """The station's utilisation table, exactly as the station recomputes it."""
    return station_output(
        train_input.parameters,
        columns.__contains__,
        columns.__getitem__,
        Rules.of(train_input.min_count, train_input.rules),
    )


if __name__ == "__main__":
    raise SystemExit(run_train(local))
