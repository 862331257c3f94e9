"""The suite runs against the pandas major version its job promises (``make test``)."""

from __future__ import annotations

import os

import pandas as pd
import pytest


def test_pandas_major_version_is_the_one_this_run_expects() -> None:
    expected = os.environ.get("PHT_EXPECT_PANDAS")
    if expected is None:
        pytest.skip("PHT_EXPECT_PANDAS not set: the main run, with the test extras")
    assert pd.__version__.split(".")[0] == expected, pd.__version__
