"""Station side of means: n, sum and squares per group (see pht.trains.means)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pht.columns import Columns
from pht.runtime import run_train
from pht.trains.means import station_output
from pht.wire import TrainInput


def local(columns: Columns, train_input: TrainInput) -> Mapping[str, Any]:
    """The station's moments per group, exactly as the station recomputes them."""
    return station_output(
        train_input.parameters,
        columns.__getitem__,
        train_input.min_count,
        train_input.rules,
    )


if __name__ == "__main__":
    raise SystemExit(run_train(local))
