"""The ``equivalence`` study: verdicts per outcome from several trains, and the savings.

A dose-reduction question (is extended-interval or weight-based dosing non-inferior
to standard dosing on overall survival, and not worse on toxicity, after adjusting
for case mix; what would it save?) is one ``study.yaml`` with ``design:
equivalence``. It names the comparison (a column, the alternative level and the
reference level), the case-mix covariates, and per outcome the measure, the
hypothesis with its margins and the adjustment::

    design: equivalence
    comparison: {column: regimen, treatment: extended_interval, reference: standard}
    covariates: [age, ecog, ldh_elevated, brain_mets, stage, drug, line]
    outcomes:
      - {name: overall survival, primary: true, measure: hazard_ratio,
         time: os_days, event: death, hypothesis: non_inferiority, margin: 1.15}
      - {name: grade >= 3 toxicity, measure: odds_ratio, outcome: tox_grade3,
         hypothesis: non_inferiority, margin: 1.25, higher_is_better: false}

Each outcome becomes one signed request per analysis (:func:`analyses`): the
adjusted analysis the outcome names and, with ``crude: true`` (the default), the
crude one beside it, each through its own train, policy decision, budget unit,
audit record and receipts. Measures, adjustments and the trains behind them:

======================== ============ ===============================================
measure                  adjustment   analysis
======================== ============ ===============================================
hazard_ratio             none         survival.cox, pooled (one baseline hazard)
                         stratified   survival.cox stratified by station
                         regression   survival.cox stratified by station + covariates
rmst_difference          none         survival.km (RMST at ``tau``)
odds_ratio, risk_ratio,  none         glm binomial (logit, log, identity link)
risk_difference          stratified   means per station -> Mantel-Haenszel
                         regression   glm binomial + covariates
mean_difference          none         means (pooled or Welch t)
                         regression   glm gaussian + covariates
(all but RMST, RGM)      iptw         iptw: a propensity model on the covariates,
                                      weights at the stations, a weighted outcome
                                      model (glm or Cox) with robust SEs
ratio_of_geometric_means none         means on the log scale
======================== ============ ===============================================

The effect of each analysis (:mod:`pht.algorithms.equivalence`) is judged against
the outcome's hypothesis (:func:`pht.algorithms.equivalence.verdict`): equivalent,
non-inferior, inconclusive, inferior or superior, with the numbers and the rule that
decided it. The quick scan of savings (:mod:`pht.algorithms.savings`) is computed
from the study's ``savings`` inputs and shown next to the verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pht import yamlcfg
from pht.algorithms import equivalence as eq
from pht.algorithms.savings import QuickScan, quick_scan, regimen_cost
from pht.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pht.manifest import Catalogue, TrainPackage
    from pht.orchestrator.config import Network, Study
    from pht.orchestrator.engine import Engine, ProgressCallback
    from pht.orchestrator.requester import Requester

DESIGN = "equivalence"

ADJUSTMENTS = ("none", "stratified", "regression", "iptw")

SAVINGS = "savings"
"""The analysis name of the utilisation request behind the quick scan."""

OUTCOME_KEYS = {
    "covariates",
    "categorical",
    "min_stations",
    "name",
    "primary",
    "measure",
    "hypothesis",
    "margin",
    "lower",
    "upper",
    "higher_is_better",
    "alpha",
    "adjustment",
    "time",
    "event",
    "outcome",
    "tau",
    "variance",
}

STUDY_KEYS = {
    "question",
    "purpose",
    "design",
    "dataset",
    "stations",
    "min_stations",
    "role",
    "requester",
    "comparison",
    "covariates",
    "categorical",
    "alpha",
    "crude",
    "outcomes",
    "savings",
    "weighting",
}

SUPPORTED: dict[str, tuple[str, ...]] = {
    "hazard_ratio": ("none", "stratified", "regression", "iptw"),
    "rmst_difference": ("none",),
    "odds_ratio": ("none", "stratified", "regression", "iptw"),
    "risk_ratio": ("none", "stratified", "regression", "iptw"),
    "risk_difference": ("none", "stratified", "regression", "iptw"),
    "mean_difference": ("none", "regression", "iptw"),
    "ratio_of_geometric_means": ("none",),
}
"""The adjustments each measure supports."""

WEIGHTING_KEYS = {"estimand", "stabilised", "truncate"}
"""``weighting``: how the ``iptw`` adjustment weights (the iptw train's keys)."""

DEFAULT_ADJUSTMENT = {
    "hazard_ratio": "regression",
    "rmst_difference": "none",
    "odds_ratio": "regression",
    "risk_ratio": "regression",
    "risk_difference": "regression",
    "mean_difference": "none",
    "ratio_of_geometric_means": "none",
}

HIGHER_IS_BETTER = {"hazard_ratio": False, "rmst_difference": True}
"""Measures with a natural direction (death hazards, survival time); the others
need ``higher_is_better`` in the study (toxicity: false; response: true)."""

LINK = {"odds_ratio": "logit", "risk_ratio": "log", "risk_difference": "identity"}

COLUMN_KEYS = {
    "hazard_ratio": ("time", "event"),
    "rmst_difference": ("time", "event", "tau"),
    "odds_ratio": ("outcome",),
    "risk_ratio": ("outcome",),
    "risk_difference": ("outcome",),
    "mean_difference": ("outcome",),
    "ratio_of_geometric_means": ("outcome",),
}


@dataclass(frozen=True)
class Comparison:
    """The alternative (``treatment``) and the standard (``reference``) of a column."""

    column: str
    treatment: str
    reference: str

    @property
    def term(self) -> str:
        """The model term of the alternative (``regimen[T.extended_interval]``)."""
        return f"{self.column}[T.{self.treatment}]"


@dataclass(frozen=True)
class Analysis:
    """One request of the study: an outcome's adjusted or crude analysis."""

    outcome: str
    role: str  # "adjusted" or "crude"
    adjustment: str
    study: Study

    @property
    def key(self) -> str:
        """Its key in ``result.json``'s ``analyses``."""
        return f"{self.outcome} ({self.role})"


@dataclass(frozen=True)
class OutcomeSpec:
    """One outcome of the study: measure, hypothesis, adjustment and columns."""

    name: str
    primary: bool
    measure: str
    hypothesis: eq.Hypothesis
    adjustment: str
    columns: Mapping[str, Any]
    variance: str = "welch"
    min_stations: int | None = None
    covariates: tuple[str, ...] | None = None
    """This outcome's own case mix (default: the study's ``covariates``)."""
    categorical: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EquivalenceDesign:
    """An equivalence study's own keys (the requests are its :attr:`analyses`)."""

    comparison: Comparison
    covariates: tuple[str, ...]
    categorical: tuple[str, ...]
    alpha: float
    crude: bool
    outcomes: tuple[OutcomeSpec, ...]
    analyses: tuple[Analysis, ...]
    savings: Mapping[str, Any] | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)
    weighting: Mapping[str, Any] = field(default_factory=dict)


# -- parsing --------------------------------------------------------------------------
def _bool(node: yamlcfg.Node | None, default: bool) -> bool:
    if node is None:
        return default
    value = node.value()
    if not isinstance(value, bool):
        raise node.error(f"must be true or false, not {yamlcfg.quote(value)}")
    return value


def _number(node: yamlcfg.Node | None) -> float | None:
    if node is None:
        return None
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise node.error(f"must be a number, not {yamlcfg.quote(value)}")
    if not math.isfinite(float(value)):
        raise node.error("must be a finite number")
    return float(value)


def _comparison(node: yamlcfg.Node) -> Comparison:
    m = node.mapping({"column", "treatment", "reference"})
    values = {}
    for key in ("column", "treatment", "reference"):
        item = m.require(key)
        value = item.value()
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise item.error(f"must be a name or a level, not {yamlcfg.quote(value)}")
        values[key] = str(value).strip()
        if not values[key]:
            raise item.error("must not be empty")
    if values["treatment"] == values["reference"]:
        raise m.require("treatment").error(
            f"'{values['treatment']}' is also the reference; compare the alternative "
            "regimen with the standard one (e.g. treatment: extended_interval, "
            "reference: standard)"
        )
    return Comparison(**values)


def _outcome(node: yamlcfg.Node, alpha: float, index: int) -> OutcomeSpec:
    from pht.station.guard import is_label

    m = node.mapping(OUTCOME_KEYS)
    name = m.require("name").as_str().strip()
    if not is_label(name):
        raise m.require("name").error(
            "an outcome name is letters, digits, spaces and punctuation (no control "
            "or direction characters, at most 128 characters); rename it"
        )
    measure_node = m.require("measure")
    measure = measure_node.as_str()
    if measure not in SUPPORTED:
        raise measure_node.error(
            f"'{measure}' is not a measure; use one of {', '.join(SUPPORTED)}"
        )
    adjustment_node = m.get("adjustment")
    adjustment = (
        adjustment_node.as_str()
        if adjustment_node is not None
        else DEFAULT_ADJUSTMENT[measure]
    )
    if adjustment not in ADJUSTMENTS:
        raise adjustment_node.error(  # type: ignore[union-attr]
            f"'{adjustment}' is not an adjustment; use one of {', '.join(ADJUSTMENTS)}"
        )
    if adjustment not in SUPPORTED[measure]:
        raise (adjustment_node or measure_node).error(
            f"{measure} with adjustment '{adjustment}' is not available; use "
            f"{' or '.join(SUPPORTED[measure])}"
        )
    columns: dict[str, Any] = {}
    for key in COLUMN_KEYS[measure]:
        item = m.require(key)
        columns[key] = _number(item) if key == "tau" else item.as_str()
    for key in sorted({"time", "event", "outcome", "tau"} - set(COLUMN_KEYS[measure])):
        if key in m:
            raise m.require(key).error(
                f"{measure} does not use '{key}'; it needs "
                f"{', '.join(COLUMN_KEYS[measure])}"
            )
    better_node = m.get("higher_is_better")
    if better_node is None and measure not in HIGHER_IS_BETTER:
        raise measure_node.error(
            f"{measure} needs higher_is_better (false for a harm such as grade >= 3 "
            "toxicity or cost, true for a benefit such as response)"
        )
    higher = _bool(better_node, HIGHER_IS_BETTER.get(measure, False))
    own_alpha = _number(m.get("alpha"))
    kind_node = m.require("hypothesis")
    kind = kind_node.as_str()
    try:
        if kind == "equivalence":
            for key in ("margin",):
                if key in m:
                    raise m.require(key).error(
                        "an equivalence hypothesis takes lower and upper, not margin"
                    )
            hypothesis = eq.Hypothesis.equivalence(
                measure,
                _number(m.require("lower")),  # type: ignore[arg-type]
                _number(m.require("upper")),  # type: ignore[arg-type]
                higher_is_better=higher,
                alpha=own_alpha if own_alpha is not None else alpha,
                outcome=name,
            )
        elif kind == "non_inferiority":
            for key in ("lower", "upper"):
                if key in m:
                    raise m.require(key).error(
                        "a non-inferiority hypothesis takes one margin (margin:), "
                        "not lower/upper"
                    )
            hypothesis = eq.Hypothesis.non_inferiority(
                measure,
                _number(m.require("margin")),  # type: ignore[arg-type]
                higher_is_better=higher,
                alpha=own_alpha if own_alpha is not None else alpha,
                outcome=name,
            )
        else:
            raise kind_node.error(
                f"'{kind}' is not a hypothesis; use equivalence or non_inferiority"
            )
    except ConfigError as exc:
        if str(exc).startswith(str(node.file)):
            raise
        raise node.error(str(exc)) from None
    for key in ("margin", "lower", "upper"):
        if key not in m:
            continue
        value = _number(m.require(key))
        assert value is not None
        if measure == "risk_difference" and not -1 < value < 1:
            raise m.require(key).error(
                f"{value:g} is not a risk difference: margins lie in (-1, 1), e.g. "
                "0.05 for five percentage points"
            )
        if eq.MEASURES[measure] == "ratio" and not 0.01 <= value <= 100:
            raise m.require(key).error(
                f"{value:g} is not a plausible ratio margin (0.01 to 100), e.g. 1.25"
            )
    variance = "welch"
    variance_node = m.get("variance")
    if variance_node is not None:
        variance = variance_node.as_str()
        if measure not in ("mean_difference", "ratio_of_geometric_means"):
            raise variance_node.error(f"{measure} does not take a variance choice")
        if variance not in ("welch", "pooled"):
            raise variance_node.error(f"'{variance}' is not welch or pooled")
    quorum = m.get("min_stations")
    min_stations = None
    if quorum is not None:
        value = quorum.value()
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise quorum.error(
                f"must be a whole number of stations >= 1, not {yamlcfg.quote(value)}"
            )
        min_stations = int(value)
    own: dict[str, tuple[str, ...] | None] = {"covariates": None, "categorical": None}
    for key in own:
        given = m.get(key)
        if given is not None:
            own[key] = tuple(given.as_str_list())
    return OutcomeSpec(
        name=name,
        primary=_bool(m.get("primary"), False),
        min_stations=min_stations,
        covariates=own["covariates"],
        categorical=own["categorical"],
        measure=measure,
        hypothesis=hypothesis,
        adjustment=adjustment,
        columns=columns,
        variance=variance,
    )


def analysis_parameters(
    spec: OutcomeSpec,
    comparison: Comparison,
    covariates: Sequence[str],
    categorical: Sequence[str],
    adjustment: str,
    alpha: float,
    weighting: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The train and parameters of one analysis of an outcome."""
    column = comparison.column
    if adjustment == "iptw":
        case_mix = [c for c in covariates if c != column]
        params_w: dict[str, Any] = {
            "treatment": column,
            "treated": comparison.treatment,
            "control": comparison.reference,
            "covariates": case_mix,
            "alpha": alpha,
            **dict(weighting or {}),
        }
        declared_w = [c for c in categorical if c in case_mix]
        if declared_w:
            params_w["categorical"] = declared_w
        if spec.measure == "hazard_ratio":
            params_w.update(
                outcome_model="cox",
                time=spec.columns["time"],
                event=spec.columns["event"],
            )
        else:
            params_w.update(outcome_model="glm", outcome=spec.columns["outcome"])
            if spec.measure in LINK:
                params_w.update(family="binomial", link=LINK[spec.measure])
            else:
                params_w.update(family="gaussian")
        return "iptw", params_w
    adjust = (
        [c for c in covariates if c != column] if adjustment == "regression" else []
    )
    reference = {column: comparison.reference}
    declared = [c for c in categorical if c in adjust]
    measure, cols = spec.measure, spec.columns
    if measure == "hazard_ratio":
        params: dict[str, Any] = {
            "time": cols["time"],
            "event": cols["event"],
            "covariates": [column, *adjust],
            "reference": reference,
            "mode": "pooled" if adjustment == "none" else "stratified",
            "checks": False,
        }
        if declared:
            params["categorical"] = declared
        return "survival.cox", params
    if measure == "rmst_difference":
        return "survival.km", {
            "time": cols["time"],
            "event": cols["event"],
            "group": column,
            "reference_group": comparison.reference,
            "tau": cols["tau"],
        }
    if adjustment == "stratified":  # Mantel-Haenszel from per-station counts
        return "means", {
            "measure": cols["outcome"],
            "group": column,
            "reference_group": comparison.reference,
        }
    if measure in LINK:
        params = {
            "outcome": cols["outcome"],
            "family": "binomial",
            "link": LINK[measure],
            "covariates": [column, *adjust],
            "reference": reference,
            "alpha": alpha,
        }
    elif measure == "mean_difference" and adjustment == "regression":
        params = {
            "outcome": cols["outcome"],
            "family": "gaussian",
            "covariates": [column, *adjust],
            "reference": reference,
            "cov_type": "HC0",
            "alpha": alpha,
        }
    else:
        return "means", {
            "measure": cols["outcome"],
            "group": column,
            "reference_group": comparison.reference,
            "scale": "log" if measure == "ratio_of_geometric_means" else "raw",
            "variance": spec.variance,
        }
    if declared:
        params["categorical"] = declared
    return "glm", params


def parse(
    root: yamlcfg.Mapping,
    path: Path,
    catalogue: Catalogue,
    base: Mapping[str, Any],
) -> EquivalenceDesign:
    """The equivalence keys of ``study.yaml`` and the studies of its analyses.

    ``base`` holds the common study keys already checked (question, purpose,
    dataset, stations, role, min_stations).
    """
    from pht.orchestrator.config import Study
    from pht.trains import plugin_for
    from pht.wire import TrainRef

    comparison = _comparison(root.require("comparison"))
    covariates_node = root.get("covariates")
    covariates = tuple(covariates_node.as_str_list()) if covariates_node else ()
    if covariates_node is not None:
        for item, column in zip(covariates_node.items(), covariates, strict=True):
            if column == comparison.column:
                raise item.error(
                    f"'{column}' is the comparison column; the analyses add it "
                    "themselves: drop it from covariates"
                )
    categorical_node = root.get("categorical")
    categorical = tuple(categorical_node.as_str_list()) if categorical_node else ()
    for item, column in zip(
        categorical_node.items() if categorical_node else [], categorical, strict=True
    ):
        if column not in covariates:
            raise item.error(
                f"'{column}' is not one of the covariates; add it to covariates or "
                "drop it here"
            )
    alpha = _number(root.get("alpha"))
    alpha = 0.05 if alpha is None else alpha
    if not 0 < alpha < 0.5:
        raise root.require("alpha").error(
            f"must be in (0, 0.5), got {alpha:g}; 0.05 reads 90% CIs (TOST), 0.025 "
            "reads 95% CIs"
        )
    crude = _bool(root.get("crude"), True)
    weighting: dict[str, Any] = {}
    weighting_node = root.get("weighting")
    if weighting_node is not None:
        w = weighting_node.mapping(WEIGHTING_KEYS)
        if "estimand" in w:
            estimand = w.require("estimand").value()
            if estimand not in ("ATE", "ATT"):
                raise w.require("estimand").error(
                    f"{yamlcfg.quote(estimand)} is not an estimand; use ATE (the "
                    "whole population) or ATT (the treated)"
                )
            weighting["estimand"] = estimand
        if "stabilised" in w:
            weighting["stabilised"] = _bool(w.require("stabilised"), False)
        if "truncate" in w:
            q = _number(w.require("truncate"))
            if q is None or not 0.5 <= q <= 0.9999:
                raise w.require("truncate").error(
                    f"{q:g} is not a percentile to truncate at; give one in "
                    "[0.5, 0.9999], e.g. 0.99 (the pooled 99th percentile)"
                )
            weighting["truncate"] = q
    outcomes_node = root.require("outcomes")
    items = outcomes_node.items()
    if not items:
        raise outcomes_node.error("list at least one outcome")
    outcomes = [_outcome(item, alpha, i) for i, item in enumerate(items)]
    for item, o in zip(items, outcomes, strict=True):
        asked = base["stations"]
        if o.min_stations is not None and asked and o.min_stations > len(asked):
            raise (
                item.mapping(None)
                .require("min_stations")
                .error(
                    f"{o.min_stations} is more than the {len(asked)} station(s) the study "
                    "asks"
                )
            )
    names = [o.name for o in outcomes]
    for item, o in zip(items, outcomes, strict=True):
        if names.count(o.name) > 1:
            raise item.error(f"outcome name '{o.name}' is used twice; names are keys")
        if comparison.column in o.columns.values():
            raise item.error(
                f"'{comparison.column}' is the comparison column; it cannot also be "
                "the outcome, time or event"
            )
    for item, o in zip(items, outcomes, strict=True):
        mapping = item.mapping(None)
        if o.covariates is not None and comparison.column in o.covariates:
            raise mapping.require("covariates").error(
                f"'{comparison.column}' is the comparison column; the analyses add "
                "it themselves: drop it from covariates"
            )
        own = o.covariates if o.covariates is not None else covariates
        for column in o.categorical or ():
            if column not in own:
                raise mapping.require("categorical").error(
                    f"'{column}' is not one of this outcome's covariates; add it to "
                    "covariates or drop it here"
                )
    weighted = [o for o in outcomes if o.adjustment == "iptw"]
    if weighting_node is not None and not weighted:
        raise weighting_node.error(
            "no outcome has adjustment: iptw, so nothing is weighted; drop weighting "
            "or set adjustment: iptw on an outcome"
        )
    for item, o in zip(items, outcomes, strict=True):
        own = o.covariates if o.covariates is not None else covariates
        if o.adjustment == "iptw" and not own:
            raise item.error(
                "adjustment: iptw needs the case-mix covariates of the propensity "
                "model; give covariates (the study's or this outcome's)"
            )
    primaries = [i for i, o in enumerate(outcomes) if o.primary]
    if len(primaries) > 1:
        raise items[primaries[1]].error(
            "only one outcome can be primary (the others are secondary)"
        )
    if not primaries:
        outcomes[0] = OutcomeSpec(**{**asdict_shallow(outcomes[0]), "primary": True})
    analyses: list[Analysis] = []
    for item, spec in zip(items, outcomes, strict=True):
        roles = [("adjusted", spec.adjustment)]
        # crude: without the case-mix covariates; a hazard ratio keeps its strata
        # (a pooled Cox needs the risk_set_sums class, which few policies allow)
        unadjusted = "stratified" if spec.measure == "hazard_ratio" else "none"
        if crude and spec.adjustment not in ("none", unadjusted):
            roles.append(("crude", unadjusted))
        for role, adjustment in roles:
            train, params = analysis_parameters(
                spec,
                comparison,
                spec.covariates if spec.covariates is not None else covariates,
                spec.categorical
                if spec.categorical is not None
                else (categorical if spec.covariates is None else ()),
                adjustment,
                spec.hypothesis.alpha,
                weighting,
            )
            package = catalogue.get(TrainRef.parse(train))
            resolved, problems = package.manifest.resolve(params)
            if not problems:
                check = plugin_for(package.manifest.name).check
                problems = list(check(resolved)) if check is not None else []
            if problems:
                raise item.error(
                    f"the {role} analysis ({train}) cannot be asked: {problems[0]}"
                )
            analyses.append(
                Analysis(
                    spec.name,
                    role,
                    adjustment,
                    Study(
                        source=path,
                        question=f"{base['question']} [{spec.name}, {role}]",
                        purpose=base["purpose"],
                        train=package,
                        dataset=base["dataset"],
                        stations=base["stations"],
                        parameters=resolved,
                        role=base["role"],
                        min_stations=spec.min_stations
                        if spec.min_stations is not None
                        else base["min_stations"],
                    ),
                )
            )
    savings_node = root.get("savings")
    savings = None
    if savings_node is not None:
        savings = {k: n.value() for k, n in savings_node.raw_mapping_nodes()}
        try:
            scan(savings, comparison)  # every key checked before anything is sent
        except ConfigError as exc:
            raise savings_node.error(str(exc).removeprefix("quick scan: ")) from None
        if utilisation_years(savings) is not None:
            package = catalogue.get(TrainRef.parse("utilisation"))
            resolved, problems = package.manifest.resolve(
                {"regimen": comparison.column}
            )
            if problems:
                raise savings_node.error(f"the utilisation request: {problems[0]}")
            analyses.append(
                Analysis(
                    SAVINGS,
                    "utilisation",
                    "none",
                    Study(
                        source=path,
                        question=f"{base['question']} [savings: utilisation]",
                        purpose=base["purpose"],
                        train=package,
                        dataset=base["dataset"],
                        stations=base["stations"],
                        parameters=resolved,
                        role=base["role"],
                        min_stations=base["min_stations"],
                    ),
                )
            )
    summary = {
        "design": DESIGN,
        "comparison": asdict(comparison),
        "covariates": list(covariates),
        "categorical": list(categorical),
        "alpha": alpha,
        "crude": crude,
        **({"weighting": weighting} if weighting else {}),
        "outcomes": [
            {
                "name": o.name,
                "primary": o.primary,
                "measure": o.measure,
                "hypothesis": o.hypothesis.kind,
                "lower": o.hypothesis.lower,
                "upper": o.hypothesis.upper,
                "higher_is_better": o.hypothesis.higher_is_better,
                "alpha": o.hypothesis.alpha,
                "adjustment": o.adjustment,
                **(
                    {"covariates": list(o.covariates)}
                    if o.covariates is not None
                    else {}
                ),
                **dict(o.columns),
            }
            for o in outcomes
        ],
        **({"savings": savings} if savings is not None else {}),
    }
    return EquivalenceDesign(
        comparison=comparison,
        covariates=covariates,
        categorical=categorical,
        alpha=alpha,
        crude=crude,
        outcomes=tuple(outcomes),
        analyses=tuple(analyses),
        savings=savings,
        summary=summary,
        weighting=weighting,
    )


def asdict_shallow(spec: OutcomeSpec) -> dict[str, Any]:
    """An outcome's fields (not converting the hypothesis)."""
    return {k: getattr(spec, k) for k in spec.__dataclass_fields__}


# -- the quick scan -----------------------------------------------------------------------
SAVINGS_KEYS = {
    "utilisation",
    "drug",
    "price_per_mg",
    "standard",
    "alternative",
    "patients_per_year",
    "uptake",
    "band",
    "price_range",
    "uptake_range",
    "patients_range",
}


def utilisation_years(inputs: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The years of ``savings.utilisation`` (None without it); one-line errors."""
    given = inputs.get("utilisation")
    if given is None:
        return None
    years = given.get("years") if isinstance(given, Mapping) else None
    if (
        not isinstance(given, Mapping)
        or set(given) != {"years"}
        or not isinstance(years, list)
        or not years
        or not all(isinstance(y, int) and not isinstance(y, bool) for y in years)
    ):
        raise ConfigError(
            "quick scan: utilisation must be {years: [2022, 2023, 2024]}: the years "
            "whose pooled utilisation gives the doses and patients per year"
        )
    return tuple(sorted(set(years)))


def scan(
    inputs: Mapping[str, Any], comparison: Comparison, pooled: Any = None
) -> QuickScan:
    """The quick scan from the study's ``savings`` inputs (one-line errors).

    With ``savings.utilisation`` the dose per administration of a regimen without
    ``dose_mg`` and ``patients_per_year: utilisation`` come from the pooled
    utilisation tables (``pooled``; None while only the keys are checked).
    """
    from pht.algorithms.savings import (
        patients_per_year_from_utilisation,
        regimen_cost_from_utilisation,
    )

    unknown = sorted(set(inputs) - SAVINGS_KEYS)
    if unknown:
        raise ConfigError(
            f"quick scan: {unknown[0]} is not a savings key; use "
            + ", ".join(sorted(SAVINGS_KEYS))
        )
    years = utilisation_years(inputs)
    for key in ("price_per_mg", "standard", "alternative", "patients_per_year"):
        if key not in inputs:
            raise ConfigError(
                f"quick scan: {key} is missing (e.g. price_per_mg: 28.6, standard: "
                "{dose_mg: 200, interval_weeks: 3}, alternative: {dose_mg: 400, "
                "interval_weeks: 6}, patients_per_year: 800)"
            )
    regimens = {}
    for key, regimen in (
        ("standard", comparison.reference),
        ("alternative", comparison.treatment),
    ):
        given = inputs[key]
        if not isinstance(given, Mapping) or set(given) - {
            "dose_mg",
            "interval_weeks",
            "price_per_mg",
        }:
            raise ConfigError(
                f"quick scan: {key} must be {{dose_mg: ..., interval_weeks: ...}}"
            )
        if "interval_weeks" not in given:
            raise ConfigError(f"quick scan: {key}.interval_weeks is missing")
        price = given.get("price_per_mg", inputs["price_per_mg"])
        if "dose_mg" not in given:
            if years is None:
                raise ConfigError(
                    f"quick scan: {key}.dose_mg is missing; give it, or add "
                    "utilisation: {years: [...]} to take the mean dose per "
                    "administration from the pooled utilisation"
                )
            if not inputs.get("drug"):
                raise ConfigError(
                    "quick scan: drug is missing; the utilisation tables are per drug"
                )
            if pooled is None:  # checking the keys only: a placeholder dose
                regimens[key] = regimen_cost(
                    regimen,
                    price_per_mg=price,
                    dose_mg=1.0,
                    interval_weeks=given["interval_weeks"],
                )
                continue
            regimens[key] = regimen_cost_from_utilisation(
                pooled,
                drug=str(inputs["drug"]),
                regimen=regimen,
                years=years,
                price_per_mg=price,
                interval_weeks=given["interval_weeks"],
            )
            continue
        regimens[key] = regimen_cost(
            regimen,
            price_per_mg=price,
            dose_mg=given["dose_mg"],
            interval_weeks=given["interval_weeks"],
        )
    options = {
        k: inputs[k]
        for k in ("uptake", "band", "price_range", "uptake_range", "patients_range")
        if k in inputs
    }
    for key in ("price_range", "uptake_range", "patients_range"):
        if key in options:
            options[key] = (
                tuple(options[key]) if isinstance(options[key], list) else options[key]
            )
    patients = inputs["patients_per_year"]
    if patients == "utilisation":
        if years is None or not inputs.get("drug"):
            raise ConfigError(
                "quick scan: patients_per_year: utilisation needs drug and "
                "utilisation: {years: [...]}"
            )
        patients = (
            100.0
            if pooled is None
            else patients_per_year_from_utilisation(
                pooled, drug=str(inputs["drug"]), years=years
            )
        )
    return quick_scan(
        regimens["standard"],
        regimens["alternative"],
        patients_per_year=patients,
        drug=str(inputs.get("drug", "")),
        **options,
    )


def scan_section(result: QuickScan) -> dict[str, Any]:
    """The ``savings`` section of ``result.json``."""
    from pht.algorithms.savings import FORMULA

    return {
        "drug": result.drug,
        "formula": FORMULA,
        "standard": asdict(result.standard),
        "alternative": asdict(result.alternative),
        "patients_per_year": result.patients_per_year,
        "uptake": result.uptake,
        "saving_per_patient_year": result.saving_per_patient_year,
        "annual_savings": result.annual_savings,
        "band": result.band,
        "savings_low": result.savings_low,
        "savings_high": result.savings_high,
        "sensitivity": [asdict(row) for row in result.sensitivity],
    }


# -- effects from the analyses' results ---------------------------------------------------
def _from_model(
    measure: str, coef: float, se: float, alpha: float, method: str
) -> eq.Effect:
    return eq.from_model(measure, coef, se, alpha=alpha, method=method)


def effect_of(
    spec: OutcomeSpec,
    analysis: Analysis,
    sections: Mapping[str, Any],
    released: Mapping[str, Mapping[str, Any]],
    comparison: Comparison,
    covariates: Sequence[str],
) -> eq.Effect:
    """The outcome's effect of the alternative vs the reference from one analysis."""
    alpha = spec.hypothesis.alpha
    arms = (comparison.treatment, comparison.reference)
    own = spec.covariates if spec.covariates is not None else covariates
    adjusted = [c for c in own if c != comparison.column]
    by = (
        f", adjusted for {', '.join(adjusted)}"
        if analysis.adjustment == "regression"
        else ""
    )
    train = analysis.study.train.manifest.name
    if train == "survival.cox":
        _reference(sections["cox"], comparison)
        params = sections["cox"]["params"]
        term = _term(params, comparison)
        mode = sections["cox"].get("mode")
        method = "Cox, " + (
            "stratified by station" if mode == "stratified" else "one baseline hazard"
        )
        return eq.hazard_ratio(
            params[term]["coef"], params[term]["se"], alpha=alpha, method=method + by
        )
    if train == "iptw":
        section = sections["iptw"]
        out = section["outcome"]
        term = _term(out["params"], comparison)
        weights = (
            f"IPTW ({section.get('estimand')}"
            + (", stabilised" if section.get("stabilised") else "")
            + (", truncated" if section.get("truncation") else "")
            + f") on {', '.join(adjusted)}"
        )
        if out.get("model") == "cox":
            return eq.hazard_ratio(
                out["params"][term]["coef"],
                out["params"][term]["se"],
                alpha=alpha,
                method=f"Cox stratified by station, {weights}, robust SE",
            )
        return eq.from_model(
            spec.measure,
            out["params"][term]["coef"],
            out["params"][term]["se"],
            alpha=alpha,
            method=f"GLM {out.get('family')} ({out.get('link')} link), {weights}, "
            "robust SE",
        )
    if train == "survival.km":
        for row in sections["rmst"]["differences"]:
            if str(row.get("reference")) != comparison.reference:
                raise ConfigError(
                    f"comparison.reference: '{comparison.reference}' is not a level "
                    f"of '{comparison.column}' at the stations that took part (the "
                    f"Kaplan-Meier fell back to '{row.get('reference')}'); check its "
                    "spelling"
                )
            if str(row["group"]) == comparison.treatment:
                return eq.rmst_difference(
                    row["difference"], row["se"], alpha=alpha, method="Kaplan-Meier"
                )
        raise DataError(
            f"outcome '{spec.name}': no RMST difference of "
            f"'{comparison.treatment}' vs '{comparison.reference}' at the stations "
            "that took part"
        )
    if train == "glm":
        glm = sections["glm"]
        _reference(glm, comparison)
        params = glm["params"]
        term = _term(params, comparison)
        link = glm.get("link")
        method = f"GLM {glm.get('family')} ({link} link)" + by
        if glm.get("cov_type") == "HC0":
            method += ", robust SE"
        return eq.from_model(
            spec.measure,
            params[term]["coef"],
            params[term]["se"],
            alpha=alpha,
            method=method,
        )
    if train == "means":
        from pht.trains.means import _moments

        log = spec.measure == "ratio_of_geometric_means"
        parts = {s: _moments(o, s, log) for s, o in sorted(released.items())}
        if spec.measure in LINK:  # per-station 2x2 tables: Mantel-Haenszel
            tables = []
            for station, groups in parts.items():
                g = groups.get(comparison.treatment)
                r = groups.get(comparison.reference)
                tables.append(
                    eq.BinaryCounts(
                        int(round(g.total)) if g else 0,
                        g.n if g else 0,
                        int(round(r.total)) if r else 0,
                        r.n if r else 0,
                        station,
                    )
                )
            build = {
                "odds_ratio": eq.mantel_haenszel_odds_ratio,
                "risk_ratio": eq.mantel_haenszel_risk_ratio,
                "risk_difference": eq.mantel_haenszel_risk_difference,
            }[spec.measure]
            return build(tables, alpha=alpha, arms=arms)
        from pht.algorithms.means import pool_moments

        pooled = pool_moments(parts)
        for level in arms:
            if level not in pooled:
                raise DataError(
                    f"outcome '{spec.name}': no patient with {comparison.column} = "
                    f"'{level}' at the stations that took part"
                )
        build_t = eq.ratio_of_geometric_means if log else eq.mean_difference
        return build_t(
            pooled[comparison.treatment],
            pooled[comparison.reference],
            variance=spec.variance,  # type: ignore[arg-type]
            alpha=alpha,
            arms=arms,
        )
    raise ConfigError(f"no effect of {spec.measure} from train {train}")


def _term(params: Mapping[str, Any], comparison: Comparison) -> str:
    if comparison.term in params:
        return comparison.term
    levels = [
        name.split("[T.", 1)[1].rstrip("]")
        for name in params
        if name.startswith(f"{comparison.column}[T.")
    ]
    raise ConfigError(
        f"comparison.treatment: '{comparison.treatment}' is not a level of "
        f"'{comparison.column}' at the stations that took part (levels besides the "
        f"reference: {', '.join(levels) or 'none'}); check its spelling"
    )


def _reference(section: Mapping[str, Any], comparison: Comparison) -> None:
    """Refuse an analysis whose reference level is not the comparison's reference.

    A train falls back to the first level when the given reference does not occur
    (with a warning); an equivalence verdict against another arm would be wrong.
    """
    used = (section.get("reference_levels") or {}).get(comparison.column)
    if used is not None and str(used) != comparison.reference:
        raise ConfigError(
            f"comparison.reference: '{comparison.reference}' is not a level of "
            f"'{comparison.column}' at the stations that took part (the fit fell back "
            f"to '{used}'); check its spelling"
        )


def effect_dict(effect: eq.Effect) -> dict[str, Any]:
    """An :class:`Effect` as JSON numbers."""
    return {
        "measure": effect.measure,
        "method": effect.method,
        "estimate": effect.estimate,
        "se": effect.se,
        "df": effect.df,
        "ci_level": effect.ci.level,
        "ci_lower": effect.ci.lower,
        "ci_upper": effect.ci.upper,
        "tost_level": effect.tost_ci.level,
        "tost_lower": effect.tost_ci.lower,
        "tost_upper": effect.tost_ci.upper,
        "n_treatment": effect.n_group,
        "n_reference": effect.n_reference,
        "continuity_correction": effect.continuity_correction,
        "notes": list(effect.notes),
    }


def verdict_dict(v: eq.Verdict) -> dict[str, Any]:
    """A :class:`Verdict` as JSON."""
    return {
        "verdict": v.verdict,
        "rule": v.rule,
        "p_value": v.p_value,
        "p_lower": v.p_lower,
        "p_upper": v.p_upper,
        "p_superiority": v.p_superiority,
        # the interval the verdict reads (1 - 2 alpha); ci_* above are 1 - alpha
        "decisive_level": v.level,
        "decisive_lower": v.ci_lower,
        "decisive_upper": v.ci_upper,
    }


# -- running ----------------------------------------------------------------------------
def run_equivalence(
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run every analysis of an equivalence study; verdicts, savings, provenance."""
    from pht import __version__
    from pht.errors import PhtError
    from pht.orchestrator.run import SCHEMA_VERSION, _now, run_study

    design = study.design
    assert isinstance(design, EquivalenceDesign)
    analyses: dict[str, Any] = {}
    utilisation: Any = None
    effects: dict[tuple[str, str], eq.Effect] = {}
    errors: dict[tuple[str, str], str] = {}
    specs = {o.name: o for o in design.outcomes}
    for analysis in design.analyses:
        released: dict[str, Any] = {}
        try:
            result = run_study(
                analysis.study, network, engine, requester, progress, released
            )
        except PhtError as exc:
            text = str(exc)
            for prefix, key, level in (
                ("treated:", "comparison.treatment", design.comparison.treatment),
                ("control:", "comparison.reference", design.comparison.reference),
            ):
                if text.startswith(prefix) and "held by no patient" in text:
                    raise ConfigError(
                        f"{key}: '{level}' is not a level of "
                        f"'{design.comparison.column}' at the stations that took part; "
                        "check its spelling"
                    ) from None
            if analysis.outcome == SAVINGS:
                raise type(exc)(f"savings (the utilisation request): {exc}") from None
            hint = _hint(specs[analysis.outcome], str(exc))
            said = f"{exc}{hint}"
            if analysis.role == "adjusted" and specs[analysis.outcome].primary:
                # every station's train failed on the outcome: a data question (3)
                kind = DataError if hint else type(exc)
                raise kind(
                    f"outcome '{analysis.outcome}' ({analysis.role} analysis): {said}"
                ) from None
            errors[(analysis.outcome, analysis.role)] = said
            analyses[analysis.key] = {
                "outcome": analysis.outcome,
                "role": analysis.role,
                "adjustment": analysis.adjustment,
                "train": str(analysis.study.train.manifest.ref),
                "parameters": dict(analysis.study.parameters),
                "error": str(exc),
            }
            continue
        sections = {
            k: v
            for k, v in result.items()
            if k
            not in (
                "schema_version",
                "train",
                "train_digest",
                "question",
                "purpose",
                "dataset",
                "parameters",
                "created",
                "pht_version",
            )
        }
        if analysis.outcome == SAVINGS:
            from pht.algorithms.utilisation import pool_utilisation

            utilisation = pool_utilisation(released)
            analyses[analysis.key] = {
                "outcome": analysis.outcome,
                "role": analysis.role,
                "adjustment": analysis.adjustment,
                "train": result["train"],
                "train_digest": result["train_digest"],
                "parameters": result["parameters"],
                **sections,
            }
            continue
        try:
            effect = effect_of(
                specs[analysis.outcome],
                analysis,
                result,
                released,
                design.comparison,
                design.covariates,
            )
            effects[(analysis.outcome, analysis.role)] = effect
        except PhtError as exc:
            if analysis.role == "adjusted" and specs[analysis.outcome].primary:
                raise
            errors[(analysis.outcome, analysis.role)] = str(exc)
        analyses[analysis.key] = {
            "outcome": analysis.outcome,
            "role": analysis.role,
            "adjustment": analysis.adjustment,
            "train": result["train"],
            "train_digest": result["train_digest"],
            "parameters": result["parameters"],
            **sections,
        }
    outcomes = []
    extra_warnings: list[str] = []
    for spec in design.outcomes:
        row: dict[str, Any] = {
            "name": spec.name,
            "primary": spec.primary,
            "measure": spec.measure,
            "hypothesis": spec.hypothesis.kind,
            "lower": spec.hypothesis.lower,
            "upper": spec.hypothesis.upper,
            "null": spec.hypothesis.null,
            "higher_is_better": spec.hypothesis.higher_is_better,
            "alpha": spec.hypothesis.alpha,
            "adjustment": spec.adjustment,
        }
        for role in ("adjusted", "crude"):
            found = effects.get((spec.name, role))
            if found is None:
                if (spec.name, role) in errors:
                    row[role] = {"error": errors[(spec.name, role)]}
                continue
            judged = eq.verdict(found, spec.hypothesis)
            done = analyses[f"{spec.name} ({role})"]
            balance = (done.get("iptw") or {}).get("balance") or []
            unbalanced = [
                str(b.get("term"))
                for b in balance
                if isinstance(b, Mapping)
                and isinstance(b.get("smd_after"), int | float)
                and abs(b["smd_after"]) > 0.1
            ]
            if unbalanced:
                caveat = (
                    f"outcome '{spec.name}' ({role}): after weighting, "
                    f"{', '.join(unbalanced)} still differ(s) between the arms "
                    "(|SMD| > 0.1): the weights do not balance the case mix, so the "
                    "IPTW estimate is not an adjusted comparison"
                )
                extra_warnings.append(caveat)
            part = done.get("partial") or {}
            row[role] = {
                **effect_dict(found),
                **verdict_dict(judged),
                "stations": part.get("took_part"),
                "stations_requested": part.get("requested"),
            }
        outcomes.append(row)
    primary = next(o for o in outcomes if o["primary"])
    savings = None
    if design.savings:
        try:
            savings = scan_section(scan(design.savings, design.comparison, utilisation))
        except PhtError as exc:
            savings = {"error": str(exc)}

    first = analyses[next(iter(analyses))]
    stations = first.get("stations", [])
    primary_key = next(
        a.key
        for a in design.analyses
        if specs[a.outcome].primary and a.role == "adjusted"
    )
    partial = _combined(analyses, primary_key)
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "train": DESIGN,
        "train_digest": None,
        "question": study.question,
        "purpose": study.purpose,
        "dataset": study.dataset,
        "parameters": dict(design.summary),
        "created": _now(),
        "pht_version": __version__,
        "stations": stations,
        "partial": partial,
        "equivalence": {
            "comparison": asdict(design.comparison),
            "alpha": design.alpha,
            "answer": _answer_sentence(primary, design.comparison, outcomes),
            "outcomes": outcomes,
        },
        **({"savings": savings} if savings is not None else {}),
        "analyses": analyses,
        "warnings": [],
        "provenance": {
            "engine": engine.name,
            "study_file": str(study.source),
            "network_file": str(network.source),
            "requester": {
                "organisation": requester.identity.public.organisation,
                "user": requester.identity.public.name,
                "role": study.role,
                "key_id": requester.identity.key_id,
            },
            "budget": budget(study),
            "requests": [
                {
                    "analysis": key,
                    "train": a.get("train"),
                    "request_id": (a.get("provenance") or {}).get("request_id"),
                }
                for key, a in analyses.items()
            ],
        },
    }
    caveats: list[Any] = [
        {"category": "BalanceWarning", "message": m} for m in extra_warnings
    ]
    for a in analyses.values():
        for w in a.get("warnings") or []:
            if w not in caveats:
                caveats.append(w)
    out["warnings"] = caveats
    return out


def _hint(spec: OutcomeSpec, message: str) -> str:
    """What the analyst can check when every station's train failed on an outcome.

    Station reasons are fixed codes (nothing of the data rides on them), so the
    orchestrator says what the measure needs of the outcome column.
    """
    if "train-failed" not in message:
        return ""
    column = spec.columns.get("outcome")
    if spec.measure in LINK and column:
        return (
            f"; {spec.measure} needs a 0/1 outcome: check that '{column}' holds only "
            "0 and 1 (a continuous outcome takes mean_difference or "
            "ratio_of_geometric_means)"
        )
    if spec.measure == "ratio_of_geometric_means" and column:
        return (
            f"; a ratio of geometric means needs '{column}' > 0 everywhere (use "
            "mean_difference otherwise)"
        )
    if spec.measure == "mean_difference" and column:
        return f"; check that '{column}' is a number"
    return ""


def _combined(
    analyses: Mapping[str, Mapping[str, Any]], primary: str
) -> dict[str, Any]:
    """One ``partial`` record for the study: complete only if every analysis was.

    The counts are the primary analysis's; every missing station is listed with the
    analysis it is missing from (``analysis``), ``analyses`` gives each one's
    stations that took part, and ``failed`` every analysis that gave no result at all
    (with its one-line error).
    """
    partials = {k: a["partial"] for k, a in analyses.items() if a.get("partial")}
    # an analysis that failed as a whole (no station took part, or its fit failed)
    # makes the study incomplete as surely as a missing station does
    failed = [
        {"analysis": key, "error": str(a["error"])}
        for key, a in analyses.items()
        if a.get("error")
    ]
    if not partials:
        return {
            "complete": not failed,
            "requested": 0,
            "took_part": 0,
            "missing": [],
            "failed": failed,
        }
    head = partials.get(primary) or next(iter(partials.values()))
    missing = [
        {**m, "analysis": key}
        for key, p in partials.items()
        for m in p.get("missing") or []
    ]
    return {
        **dict(head),
        "complete": not failed
        and all(p.get("complete", True) for p in partials.values()),
        "missing": missing,
        "failed": failed,
        "analyses": {
            key: {
                "took_part": p.get("took_part"),
                "requested": p.get("requested"),
                "min_stations": p.get("min_stations"),
            }
            for key, p in partials.items()
        },
    }


def _answer_sentence(
    primary: Mapping[str, Any], comparison: Comparison, outcomes: Sequence[Any]
) -> str:
    """The study's answer in one sentence: the primary outcome's verdict."""
    adjusted = primary.get("adjusted") or {}
    verdict = adjusted.get("verdict")
    if verdict is None:
        return (
            f"No verdict on the primary outcome '{primary['name']}': "
            f"{adjusted.get('error', 'its analysis did not run')}"
        )
    measure = primary["measure"].replace("_", " ")
    return (
        f"{comparison.treatment.replace('_', ' ')} vs {comparison.reference.replace('_', ' ')}: "
        f"{verdict} on {primary['name']} ({measure} {adjusted['estimate']:.3g}, "
        f"{100 * adjusted['decisive_level']:.0f}% CI "
        f"{adjusted['decisive_lower']:.3g} to {adjusted['decisive_upper']:.3g}; "
        f"{adjusted['rule']})."
    )


def budget(study: Study) -> dict[str, Any]:
    """Query units per station: one per analysis request (and its companions)."""
    from pht.orchestrator.run import budget_use

    design = study.design
    assert isinstance(design, EquivalenceDesign)
    requests: list[str] = []
    for analysis in design.analyses:
        requests += budget_use(analysis.study)["requests"]
    return {
        "queries_per_station": len(requests),
        "requests": requests,
        "note": (
            f"{len(design.analyses)} analyses (adjusted and crude per outcome), one "
            "request each"
        ),
    }


def train_package(design: EquivalenceDesign) -> TrainPackage:
    """The primary outcome's adjusted analysis train (what `pht validate` shows)."""
    return design.analyses[0].study.train
