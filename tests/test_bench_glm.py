"""Smoke run of ``bench/glm_vs_statsmodels.py --quick`` (200,000 patients, 2 stations).

The script is run as a user runs it; the test checks that it prints the figures the
benchmark promises (rounds, iterations, times, memory, the ratios) and that the
federated fit equals statsmodels' on the pooled rows. It asserts no speed: speed
targets are the benchmark's printed ratios, not timed assertions.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "glm_vs_statsmodels.py"

# the script's reference side imports statsmodels (not in the newest-pandas run)
pytest.importorskip("statsmodels")


@pytest.mark.slow
def test_quick_benchmark_prints_ratios_and_matches_statsmodels():
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "200,000 patients over 2 stations" in out
    federated = re.search(
        r"^federated: [\d.]+ s, (\d+) Newton iterations, (\d+) rounds, "
        r"converged True; peak RSS \d+ MiB over \d+ processes; heap added",
        out,
        re.MULTILINE,
    )
    assert federated, out
    iterations, rounds = int(federated[1]), int(federated[2])
    phases = re.search(
        r"^federated phases: all sessions open [\d.]+ s .*; design round [\d.]+ s; "
        r"(\d+) evaluation rounds [\d.]+ s; checks round [\d.]+ s$",
        out,
        re.MULTILINE,
    )
    assert phases, out
    # open, design, a terms round per Newton evaluation (one more than the
    # iterations, plus any step halvings), the checks round
    evaluations = int(phases[1])
    assert 1 <= iterations < evaluations and rounds == evaluations + 3, out
    assert re.search(
        r"^statsmodels \(tol=1e-12\): [\d.]+ s \(read \+ fit [\d.]+ s\), \d+ IRLS",
        out,
        re.MULTILINE,
    ), out
    ratio = re.search(
        r"^ratio federated/statsmodels: time ([\d.]+), added memory (-?[\d.]+), "
        r"peak RSS ([\d.]+); max \|diff\| coef (\S+), se (\S+), se HC0 (\S+), "
        r"deviance (\S+)$",
        out,
        re.MULTILINE,
    )
    assert ratio, out
    assert float(ratio[1]) > 0
    coef, se, se_hc0, deviance = (float(ratio[i].rstrip(",")) for i in range(4, 8))
    assert max(coef, se, se_hc0) <= 1e-8, out
    assert deviance <= 1e-6, out
