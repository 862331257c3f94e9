"""``survival.km``: Kaplan-Meier, log-rank, RMST and survival at a time.

Stations release event tables per group on their grid (class ``event_table``); the
orchestrator adds them per time and computes everything exactly
(:mod:`pht.algorithms.km`).
"""

from __future__ import annotations

from pht.orchestrator.pooling import pool_survival_km
from pht.orchestrator.report import _km, _logrank, _rmst, _survival_at
from pht.trains import register
from pht.trains.base import Contract, TrainPlugin

PLUGIN = register(
    TrainPlugin(
        name="survival.km",
        pool=pool_survival_km,
        # the station recomputes event tables from these roles (class event_table)
        contract=Contract(
            columns={
                "time": ("column", "numeric", "time", False),
                "event": ("column", "binary", "event", False),
                "group": ("column", "categorical", "group", False),
            },
            output_class="event_table",
        ),
        sections=(
            ("km", _km),
            ("at_risk_table", _km),
            ("logrank", _logrank),
            ("logrank_stratified", _logrank),
            ("rmst", _rmst),
            ("survival_at", _survival_at),
        ),
    )
)
