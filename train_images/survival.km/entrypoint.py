"""Station side of survival.km: event tables per group (see pht.algorithms.km)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pht.algorithms.disclosure import coarsen
from pht.algorithms.km import local_event_tables
from pht.columns import Columns, numbers
from pht.runtime import run_train
from pht.wire import TrainInput


def local(columns: Columns, train_input: TrainInput) -> Mapping[str, Any]:
    """Reduce the station's rows to event tables per group."""
    params = train_input.parameters
    group = params.get("group")
    time = numbers(columns[params["time"]])
    if train_input.grid:
        # released only on the station's grid: each time as its interval's boundary
        time = coarsen(time, train_input.grid)
    result = local_event_tables(
        time,
        numbers(columns[params["event"]]),
        None if group is None else columns[group],
        min_count=train_input.min_count,
    )
    return {
        "n": result.n,
        "events": result.n_events,
        # a small number of excluded rows is itself a small cell: suppress it
        "excluded": result.excluded
        if result.excluded == 0 or result.excluded >= train_input.min_count
        else None,
        # labels are canonical (1 for both 1 and 1.0); the type behind them
        "level_type": result.level_type,
        "groups": {label: table.to_dict() for label, table in result.tables.items()},
    }


if __name__ == "__main__":
    raise SystemExit(run_train(local))
