"""The embedded demo network: three synthetic registries, a policy, a network, a study."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pht import synth
from pht.errors import ConfigError
from pht.provision import policy_document, provision

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
        shutil.rmtree(root)
    elif root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file; choose another --workdir")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(
        "made by `pht demo`, which replaces this folder when run again\n",
        encoding="utf-8",
    )
    paths = synth.write(root / "data", seed=seed, patients=patients)
    images = None
    if executor == "docker":
        from pht.images import build_all

        images = build_all()
    made = provision(
        root,
        {s: {"melanoma": paths[s]} for s in synth.STATIONS},
        names=STATION_NAMES,
        policy=policy_document(),
        executor=executor,
        images=images,
    )
    study = root / "study.yaml"
    study.write_text(STUDY, encoding="utf-8")
    (root / "study-utilisation.yaml").write_text(UTILISATION_STUDY, encoding="utf-8")
    (root / "study-dose.yaml").write_text(DOSE_STUDY, encoding="utf-8")
    return Demo(root, made.network, study, root / "results", made.requester_key)
