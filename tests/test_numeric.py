"""Small numerical tools (pht.algorithms.numeric) against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pht.algorithms.numeric import chi2_sf, dependent_columns


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 6, 7, 12, 25, 40, 201, 400])
def test_chi2_sf_equals_scipy(df: int) -> None:
    for x in [0.0, 1e-6, 0.3, 1.0, 3.84, 10.0, 55.5, 300.0, 1200.0, 1e4, 1e5]:
        ours, theirs = chi2_sf(x, df), float(stats.chi2.sf(x, df))
        assert abs(ours - theirs) <= 5e-13 * max(theirs, 1e-300) + 1e-300, (x, df)


def test_dependent_names_the_later_duplicates() -> None:
    x = np.random.default_rng(1).normal(size=(200, 3))
    x = np.column_stack([x, 12 * x[:, 0], x[:, 1] + x[:, 2]])
    assert dependent_columns(np.corrcoef(x, rowvar=False)).tolist() == [3, 4]
    assert dependent_columns(np.corrcoef(x[:, :3], rowvar=False)).size == 0
