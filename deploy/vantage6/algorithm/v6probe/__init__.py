"""A minimal vantage6 algorithm: describe the node's database (rows, columns).

It proves the node -> container -> result path of a vantage6 network built from the
project's offline base image; it is no pht train. Called by vantage6's
``wrap_algorithm`` with the task input ``{"method": "describe", "kwargs": {}}``.
"""

from __future__ import annotations

import os

import pandas as pd
from vantage6.algorithm.tools.decorators import data


@data(1)
def describe(df: pd.DataFrame) -> dict[str, object]:
    """Row count, column names and the runtime that answered.

    Parameters
    ----------
    df : pandas.DataFrame
        The database the task named (loaded by vantage6's ``@data`` decorator).

    Returns
    -------
    dict
        ``rows``, ``columns``, ``uid`` (the user the container ran as) and
        ``pandas`` (the version in the image).
    """
    return {
        "rows": int(len(df)),
        "columns": [str(c) for c in df.columns],
        "uid": os.getuid(),
        "pandas": pd.__version__,
    }
