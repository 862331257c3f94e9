"""The embedded demo network: three synthetic registries, a policy, a network, a study."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pht import synth
from pht.errors import ConfigError
from pht.provision import policy_document, provision

SOURCES = ("parquet", "mixed")
"""``pht demo --sources``: all stations on Parquet, or Parquet, PostgreSQL and OMOP."""

MARKER = ".pht-demo"
"""The file that marks a folder as the demo's own (safe to replace)."""

STATION_NAMES = {
    "nkr": "Netherlands Cancer Registry (synthetic)",
    "dica": "Dutch Melanoma Treatment Registry, DICA (synthetic)",
    "umc": "University medical centre EHR + pharmacy (synthetic)",
}

STUDY = """\
# An analyst's question for the demo network (see README: "study.yaml").
question: Does overall survival of advanced-melanoma patients on anti-PD-1 differ between
  dosing regimens (standard, extended-interval, weight-based) in daily practice?
purpose: package-management/reassessment
train: survival.km
dataset: melanoma
stations: [nkr, dica, umc]
# The quorum: a result from at least 2 of the 3 registries is a result. nkr's policy
# refuses this grouping (too few weight-based patients for its cell size), so the
# result is partial and says so; leave the key out to need every station.
min_stations: 2
parameters:
  {time: os_days, event: death, group: regimen, reference_group: standard, tau: 730, at: 365}
"""


UTILISATION_STUDY = """\
# Which expensive medicines should be re-assessed first? Patients, spend and growth per
# drug, pooled over the registries with their disclosure rules (README: "utilisation").
question: Which anti-PD-1/CTLA-4 medicines have the largest patient numbers, budget
  impact and spend growth in daily practice?
purpose: package-management/reassessment
train: utilisation
dataset: melanoma
stations: [nkr, dica, umc]
parameters:
  {period: start_date, weight_patients: 1, weight_budget_impact: 2,
   weight_relative_budget_impact: 1, weight_growth: 1}
"""


DOSE_STUDY = """\
# The dose-reduction question (README: "equivalence studies"): is weight-based anti-PD-1
# dosing non-inferior to standard dosing on overall survival and not worse on grade >= 3
# toxicity, after adjusting for case mix, and what would it save per year? Each outcome
# runs as its own signed requests (adjusted and crude side by side).
question: Is weight-based anti-PD-1 dosing non-inferior to standard dosing in daily
  practice, and what would it save?
purpose: efficiency-research/dose-reduction
design: equivalence
dataset: melanoma
stations: [nkr, dica, umc]
comparison: {column: regimen, treatment: weight_based, reference: standard}
# case mix: treatment choice depends on prognosis (confounding by indication)
covariates: [age, ecog, ldh_elevated, stage, drug, line]
categorical: [ecog]
outcomes:
  - name: overall survival
    primary: true
    measure: hazard_ratio
    time: os_days
    event: death
    hypothesis: non_inferiority
    margin: 1.2            # the upper bound of the 90% CI of the HR must stay below
    adjustment: regression # Cox stratified by station, adjusted for the covariates
  - name: grade >= 3 toxicity
    measure: odds_ratio
    outcome: tox_grade3
    higher_is_better: false
    hypothesis: non_inferiority
    margin: 1.25
    adjustment: regression # logistic regression on this outcome's own case mix:
    covariates: [drug]     # the combination, always standard-dosed, is the toxic one;
    # a station refuses a model whose terms would count fewer patients than its
    # minimum cell size (two covariate values together, events in a level): nkr and
    # dica hold fewer toxicities among their weight-based patients than that, so this
    # outcome rests on umc alone, and says so
    min_stations: 1
# the quick scan: list prices (assumptions), a mean weight-based dose of 150 mg
savings:
  drug: pembrolizumab
  price_per_mg: 28.6
  standard: {dose_mg: 200, interval_weeks: 3}
  alternative: {dose_mg: 150, interval_weeks: 3}
  patients_per_year: 600
  uptake: 0.8
  band: 0.15
"""


NMA_STUDY = """\
# Place in therapy (README: "network meta-analysis studies"): how do the first-line
# anti-PD-1 regimens compare on overall survival when no trial compared them all?
# Each station is one study: its own Cox model (adjusted for age and ECOG) between
# its drug / regimen arms; published trials (trials-nma.csv) add ipilimumab, the
# comparator of the landmark trials, which no station uses as monotherapy.
question: Which first-line anti-PD-1 regimen gives the longest overall survival?
purpose: package-management/reassessment
design: nma
dataset: melanoma
stations: [nkr, dica, umc]
min_stations: 2
inputs:
  treatment: drug
  treatment_by: regimen
  input: cox
  time: os_days
  event: death
  covariates: [age, ecog]
measure: HR
trials: trials-nma.csv
# the trials' arm names -> the network's labels: CheckMate 067 gave nivolumab 3 mg/kg
# every 2 weeks (the weight-based regimen); KEYNOTE-006 gave pembrolizumab 10 mg/kg
# every 2 or 3 weeks, mapped to the standard flat dose by assumption
rename:
  nivolumab: nivolumab / weight_based
  pembrolizumab: pembrolizumab / standard
  ipilimumab+nivolumab: ipilimumab+nivolumab / standard
reference: ipilimumab
small_values: good
model: random
tau: DL
"""

NMA_TRIALS = (
    # (study, treat1, treat2, HR, lower, upper, n1, n2, source): hazard ratios of
    # death with their 95% CIs and the arms' randomised patients
    (
        "CheckMate 067",
        "ipilimumab+nivolumab",
        "ipilimumab",
        0.55,
        0.45,
        0.69,
        314,
        315,
        "Wolchok et al., N Engl J Med 2017;377:1345 (3-year OS)",
    ),
    (
        "CheckMate 067",
        "nivolumab",
        "ipilimumab",
        0.65,
        0.53,
        0.80,
        316,
        315,
        "Wolchok et al., N Engl J Med 2017;377:1345 (3-year OS)",
    ),
    (
        "CheckMate 067",
        "ipilimumab+nivolumab",
        "nivolumab",
        0.85,
        0.68,
        1.07,
        314,
        316,
        "Wolchok et al. 2017, descriptive; TE = the two contrasts above (a three-arm "
        "trial's contrasts must add up), seTE from this CI",
    ),
    (
        "KEYNOTE-006",
        "pembrolizumab",
        "ipilimumab",
        0.73,
        0.61,
        0.88,
        556,
        278,
        "Robert et al., Lancet Oncol 2019;20:1239 (5-year OS); n1: both "
        "pembrolizumab arms (every 2 and 3 weeks)",
    ),
)
"""Published trials of the demo NMA: hazard ratios of death with their 95% CIs."""


def nma_trials_csv() -> str:
    """``trials-nma.csv``: the trials at contrast level (log HR, seTE from the CI).

    ``seTE = (log(upper) - log(lower)) / (2 * 1.959964)``; the third contrast of the
    three-arm CheckMate 067 is the difference of the other two (netmeta needs a
    multi-arm study's contrasts to be consistent). Columns after ``seTE`` are
    ignored by the reader and say where each number comes from.
    """
    import csv
    import io
    import math

    z = 1.959964
    te = {(s, a, b): math.log(hr) for s, a, b, hr, *_ in NMA_TRIALS}
    derived = ("CheckMate 067", "ipilimumab+nivolumab", "nivolumab")
    te[derived] = (
        te[("CheckMate 067", "ipilimumab+nivolumab", "ipilimumab")]
        - te[("CheckMate 067", "nivolumab", "ipilimumab")]
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["studlab", "treat1", "treat2", "TE", "seTE", "n1", "n2", "hr", "ci", "source"]
    )
    for s, a, b, hr, lo, hi, n1, n2, source in NMA_TRIALS:
        se = (math.log(hi) - math.log(lo)) / (2 * z)
        writer.writerow(
            [s, a, b, f"{te[(s, a, b)]:.6f}", f"{se:.6f}", n1, n2, hr, f"{lo}-{hi}"]
            + [source]
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class Demo:
    """Where the demo's files are."""

    root: Path
    network: Path
    study: Path
    out: Path
    identity: Path


def create_demo(
    root: Path,
    seed: int = 2026,
    patients: int = synth.DEFAULT_PATIENTS,
    executor: str = "process",
    sources: str = "parquet",
) -> Demo:
    """Write synthetic data, keys, signed trains, policies, ``network.yaml``, a study.

    Re-runnable: a folder an earlier demo made (it holds :data:`MARKER`) is replaced
    by a fresh one from the seed; any other non-empty folder is left alone and is an
    error naming the fix.
    """
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise ConfigError(
                f"{root} exists and was not made by `pht demo`; choose another "
                "--workdir (or empty that folder)"
            )
        from pht.demo_db import stop_cluster

        stop_cluster(root)  # the database an earlier `--sources mixed` started
        shutil.rmtree(root)
    elif root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file; choose another --workdir")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(
        "made by `pht demo`, which replaces this folder when run again\n",
        encoding="utf-8",
    )
    paths = synth.write(root / "data", seed=seed, patients=patients)
    held: dict[str, Any] = {s: {"melanoma": paths[s]} for s in synth.STATIONS}
    if sources == "mixed":  # nkr: Parquet, dica: PostgreSQL, umc: OMOP (demo_db)
        from pht.demo_db import mixed_datasets

        held = mixed_datasets(root, paths, seed, patients)
    images = None
    if executor == "docker":
        from pht.images import build_all

        images = build_all()
    made = provision(
        root,
        held,
        names=STATION_NAMES,
        policy=policy_document(),
        executor=executor,
        images=images,
    )
    study = root / "study.yaml"
    study.write_text(STUDY, encoding="utf-8")
    (root / "study-utilisation.yaml").write_text(UTILISATION_STUDY, encoding="utf-8")
    (root / "study-dose.yaml").write_text(DOSE_STUDY, encoding="utf-8")
    (root / "study-nma.yaml").write_text(NMA_STUDY, encoding="utf-8")
    (root / "trials-nma.csv").write_text(nma_trials_csv(), encoding="utf-8")
    return Demo(root, made.network, study, root / "results", made.requester_key)
