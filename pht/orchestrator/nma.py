"""The ``nma`` study: a network meta-analysis of stations' arms and published trials.

A place-in-therapy question (how do treatments A, B, C, D compare when no trial
compared them all?) is one ``study.yaml`` with ``design: nma``::

    design: nma
    question: Which first-line anti-PD-1 regimen gives the longest overall survival?
    purpose: package-management/reassessment
    dataset: melanoma
    inputs: {treatment: drug, treatment_by: regimen, input: cox,
             time: os_days, event: death, covariates: [age, ecog]}
    measure: HR                  # OR RR RD (events), MD SMD (means), IRR (rates), HR (cox)
    trials: trials.csv           # optional: published trials, next to the study file
    rename: {Nivolumab: nivolumab / standard}   # optional: label -> network label
    reference: ipilimumab        # the forest plot's and the answer's comparator
    small_values: good           # good: a lower effect is better (HR of death)
    model: random                # the model the answer reads; both are computed
    tau: DL                      # DL (netmeta's default), REML or ML
    level: 0.95

It sends one ``nma.inputs`` request (:func:`parse` builds it from ``inputs``); each
station that took part becomes one study of the network, labelled as the train's
``nma_inputs`` section labels it (a station's name only where its policy shows
names). Arm-level inputs (``events``, ``means``, ``rates``) become contrasts as R's
``pairwise()`` makes them (:mod:`pht.algorithms.pairwise`), ``cox`` inputs become every
pair of the station's arms from its coefficients and their covariance
(``TE_ij = b_i - b_j``, ``var = V_ii + V_jj - 2 V_ij``, the reference arm has
``b = 0``). The published trials (:func:`pht.orchestrator.trials.read_trials`) join
them, and :func:`pht.algorithms.nma.nma` fits the network (common and random
effects). :func:`network_inputs` refuses, in one line naming the station, file or
study and the fix: a treatment spelled differently in two places (equal after case
folding and removing all white space), a ``rename`` key that matches no label, a
study with one arm, a study label used by a station and a trial, a network of one
treatment, and a disconnected network (its components, which studies and treatments
each holds, and per stray part the fix its sources allow; nothing is fitted).
:func:`parse` refuses a chained ``rename`` and an ``inputs.treatments`` label
without the arm form the inputs imply; when the stations refuse while
``treatments`` is set, :func:`run_nma` adds a hint to check those labels.

The result's ``nma`` section (:func:`nma_section`) holds every number; next to
``result.json`` :func:`write_exports` writes ``nma_contrasts.csv`` (netmeta-ready)
and ``nma.R`` (the same analysis in R's netmeta).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import inspect
import io
import math
import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pht import yamlcfg
from pht.algorithms.nma import NmaResult, PairwiseEstimates, SplitRow, nma
from pht.algorithms.pairwise import (
    MAX_LOG_TE,
    MAX_SE,
    MIN_SE,
    BinaryArm,
    ContinuousArm,
    Contrast,
    PairwiseResult,
    RateArm,
    label_problem,
    pairwise_binary,
    pairwise_continuous,
    pairwise_rates,
)
from pht.errors import ConfigError, DataError, QuorumError

if TYPE_CHECKING:
    from pht.manifest import Catalogue, TrainPackage
    from pht.orchestrator.config import Network, Study
    from pht.orchestrator.engine import Engine, ProgressCallback
    from pht.orchestrator.equivalence import Analysis
    from pht.orchestrator.requester import Requester

DESIGN = "nma"
TRAIN = "nma.inputs"
INPUTS = "network inputs"
"""The analysis name of the ``nma.inputs`` request."""

CONTRASTS_FILE = "nma_contrasts.csv"
R_FILE = "nma.R"
CONTRAST_FIELDS = ("studlab", "treat1", "treat2", "TE", "seTE", "n1", "n2", "source")

STUDY_KEYS = frozenset(
    {
        "question",
        "purpose",
        "design",
        "dataset",
        "stations",
        "min_stations",
        "role",
        "requester",
        "inputs",
        "measure",
        "trials",
        "rename",
        "reference",
        "small_values",
        "model",
        "tau",
        "level",
    }
)
"""Top-level keys of an ``nma`` study (``requester`` only to say it is not one)."""

MEASURES: dict[str, tuple[str, ...]] = {
    "events": ("OR", "RR", "RD"),
    "means": ("MD", "SMD"),
    "rates": ("IRR",),
    "cox": ("HR",),
}
"""The measures each station input gives."""

RATIO = frozenset({"OR", "RR", "HR", "IRR"})
"""Measures analysed on the log scale and shown as ratios."""

MEASURE_NAMES = {
    "OR": "odds ratio",
    "RR": "risk ratio",
    "RD": "risk difference",
    "MD": "mean difference",
    "SMD": "standardised mean difference",
    "IRR": "incidence rate ratio",
    "HR": "hazard ratio",
}

TAU_METHODS = ("DL", "REML", "ML")
MODELS = ("common", "random")
Model = Literal["common", "random"]


@dataclass(frozen=True)
class NmaDesign:
    """An ``nma`` study's own keys; :attr:`analyses` holds its one request."""

    inputs: Mapping[str, Any]
    measure: str
    reference: str
    small_values: Literal["good", "bad"]
    model: Model
    tau: str
    level: float
    analyses: tuple[Analysis, ...]
    trials: Path | None = None
    trial_contrasts: PairwiseResult | None = None
    rename: Mapping[str, str] = field(default_factory=dict)
    where: Mapping[str, str] = field(default_factory=dict)
    """Key -> ``file:line: key`` of the study file, for errors found after the run."""
    summary: Mapping[str, Any] = field(default_factory=dict)


# -- parsing --------------------------------------------------------------------------
def _where(node: yamlcfg.Node) -> str:
    """``file:line: key`` of a node, the prefix of an error found after the run."""
    return str(node.error("x")).removesuffix(" x")


def _choice(node: yamlcfg.Node | None, choices: Sequence[str], default: str) -> str:
    if node is None:
        return default
    value = node.value()
    if value not in choices:
        raise node.error(
            f"{yamlcfg.quote(value)} is not one of {', '.join(choices)}; use one of them"
        )
    return str(value)


def _label(node: yamlcfg.Node) -> str:
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise node.error(f"must be a treatment label, not {yamlcfg.quote(value)}")
    text = str(value).strip()
    if not text:
        raise node.error("must not be empty")
    problem = label_problem(text)
    if problem:
        raise node.error(f"{text!r} {problem}")
    return text


SEPARATOR = " / "
"""Between the ``treatment`` and ``treatment_by`` levels of an arm label."""


def arm_form(inputs: Mapping[str, Any]) -> str:
    """The arm label form the inputs imply: ``<drug> / <regimen>`` or ``<drug>``.

    >>> arm_form({"treatment": "drug", "treatment_by": "regimen"})
    "'<drug> / <regimen>' (a level of drug, ' / ', a level of regimen)"
    >>> arm_form({"treatment": "drug"})
    "'<drug>' (a level of drug, without ' / ')"
    """
    treatment, by = inputs.get("treatment"), inputs.get("treatment_by")
    if by:
        return (
            f"'<{treatment}>{SEPARATOR}<{by}>' (a level of {treatment}, "
            f"'{SEPARATOR}', a level of {by})"
        )
    return f"'<{treatment}>' (a level of {treatment}, without '{SEPARATOR}')"


def _check_arm_labels(inputs_node: yamlcfg.Node, inputs: Mapping[str, Any]) -> None:
    """Each ``inputs.treatments`` label must have the arm form the inputs imply."""
    labels = inputs.get("treatments")
    if not labels:
        return
    by = bool(inputs.get("treatment_by"))
    for label in labels:
        text = str(label)
        parts = text.split(SEPARATOR)
        good = (
            len(parts) == 2 and all(p.strip() for p in parts)
            if by
            else SEPARATOR not in text
        )
        if not good:
            at = inputs_node.mapping(None).get("treatments") or inputs_node
            raise at.error(
                f"{text!r} is not an arm label of the form {arm_form(inputs)}: write "
                f"each arm as {arm_form(inputs).split(' (')[0]}"
                + ("" if by else " (or set treatment_by)")
            )


def _refusal_hint(inputs: Mapping[str, Any], message: str) -> str:
    """What to check when the stations refused while ``inputs.treatments`` is set.

    A station's refusal is a fixed code (its reason stays in its log); when a train
    refused (``train-refused``), a mistyped arm label in ``treatments`` (fewer than
    two selected arms present) is the analyst's most common cause.
    """
    if not inputs.get("treatments") or "train-refused" not in message:
        return ""  # e.g. a station's policy or its train allowlist: not the labels
    treatment, by = inputs.get("treatment"), inputs.get("treatment_by")
    form = (
        f"<{treatment} value>{SEPARATOR}<{by} value>" if by else f"<{treatment} value>"
    )
    return (
        f"; check inputs.treatments: the stations label arms '{form}' exactly as "
        "their data holds the levels (`pht network show NETWORK --identity KEY "
        "--purpose PURPOSE` lists the levels)"
    )


def tau_methods() -> tuple[str, ...]:
    """The between-study variance estimators :func:`pht.algorithms.nma.nma` offers."""
    return TAU_METHODS if "method_tau" in inspect.signature(nma).parameters else ("DL",)


def parse(
    root: yamlcfg.Mapping,
    path: Path,
    catalogue: Catalogue,
    base: Mapping[str, Any],
) -> NmaDesign:
    """The ``nma`` keys of ``study.yaml`` and the study of its ``nma.inputs`` request.

    ``base`` holds the common study keys already checked (question, purpose,
    dataset, stations, role, min_stations). The trials file is read here, so a bad
    row is said before anything is sent.
    """
    from pht.orchestrator.config import Study
    from pht.orchestrator.equivalence import Analysis
    from pht.orchestrator.trials import read_trials
    from pht.trains import lookup
    from pht.wire import TrainRef

    inputs_node = root.require("inputs")
    given = {key: node.value() for key, node in inputs_node.raw_mapping_nodes()}
    kind = given.get("input")
    if not isinstance(kind, str) or kind not in MEASURES:
        at = inputs_node.mapping(None).get("input") or inputs_node
        raise at.error(
            f"input {yamlcfg.quote(kind)} is not one of {', '.join(MEASURES)}; say "
            "what the stations compute per arm (events, means, rates) or cox"
        )
    measure_node = root.get("measure")
    measure = _choice(measure_node, [m for ms in MEASURES.values() for m in ms], "")
    if not measure:
        measure = MEASURES[kind][0]
    if measure not in MEASURES[kind]:
        raise measure_node.error(  # type: ignore[union-attr]
            f"{measure} does not fit input: {kind}; use "
            f"{' or '.join(MEASURES[kind])} (or change inputs.input)"
        )
    try:
        package = catalogue.get(TrainRef.parse(TRAIN))
    except ConfigError as exc:
        raise inputs_node.error(
            f"{exc}; the nma design needs the {TRAIN} train"
        ) from None
    resolved, problems = package.manifest.resolve(given)
    if not problems:
        plugin = lookup(package.manifest.name)
        check = plugin.check if plugin is not None else None
        problems = list(check(resolved)) if check is not None else []
    if problems:
        key = problems[0].split(":", 1)[0]
        node = inputs_node.mapping(None).get(key)
        said = problems[0].split(":", 1)[1].strip() if node is not None else problems[0]
        raise (node or inputs_node).error(f"{said} (train {package.manifest.ref})")
    _check_arm_labels(inputs_node, resolved)
    trials_node = root.get("trials")
    trials = contrasts = None
    digest = ""
    if trials_node is not None:
        folder = path.parent.resolve()
        try:
            trials = (path.parent / trials_node.as_str()).resolve()
            found = trials.is_file()
        except (OSError, RuntimeError) as exc:  # ENAMETOOLONG, a symlink loop
            raise trials_node.error(
                f"cannot use this path ({getattr(exc, 'strerror', None) or exc}); "
                "give the CSV's path relative to the study file, or drop the key"
            ) from None
        if not found:
            raise trials_node.error(
                f"trials file '{trials_node.as_str()}' not found (looked in {trials}); "
                "give the CSV's path relative to the study file, or drop the key"
            )
        if not trials.is_relative_to(folder):
            raise trials_node.error(
                f"'{trials_node.as_str()}' resolves to {trials}, outside the study "
                f"file's folder {folder}; put the CSV next to the study file (or in "
                "a folder below it) and give its relative path"
            )
        try:
            data = trials.read_bytes()
        except OSError as exc:
            raise trials_node.error(
                f"cannot read {trials} ({exc.strerror}); check the file"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        contrasts = read_trials(trials, measure, data=data)
    rename: dict[str, str] = {}
    rename_node = root.get("rename")
    if rename_node is not None:
        for key, node in rename_node.raw_mapping_nodes():
            rename[str(key).strip()] = _label(node)
        for key, target in rename.items():
            if target != key and target in rename and rename[target] != target:
                raise rename_node.error(
                    f"{key!r} -> {target!r} -> {rename[target]!r} is a chain: a "
                    "rename is applied once, to the labels of the stations and the "
                    f"trials; map {key!r} straight to the final label"
                )
    reference_node = root.require("reference")
    reference = _label(reference_node)
    small_node = root.get("small_values")
    if small_node is None and measure != "HR":
        raise root.require("measure").error(
            f"{measure} needs small_values (good when a lower {measure} is better, "
            "e.g. the odds of a harm; bad when a higher one is better)"
        )
    small = _choice(small_node, ("good", "bad"), "good")
    model = _choice(root.get("model"), MODELS, "random")
    tau_node = root.get("tau")
    tau = _choice(tau_node, TAU_METHODS, "DL")
    if tau not in tau_methods():
        raise tau_node.error(  # type: ignore[union-attr]
            f"{tau} is not available in this pht's nma(); use "
            f"{' or '.join(tau_methods())}"
        )
    level_node = root.get("level")
    level = 0.95
    if level_node is not None:
        value = level_node.value()
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0.5 <= value < 1
        ):
            raise level_node.error(
                f"must be a confidence level in [0.5, 1), not {yamlcfg.quote(value)}; "
                "e.g. 0.95"
            )
        level = float(value)
    where = {"reference": _where(reference_node), "inputs": _where(inputs_node)}
    if rename_node is not None:
        where["rename"] = _where(rename_node)
    if trials_node is not None:
        where["trials"] = _where(trials_node)
    analysis = Analysis(
        INPUTS,
        "stations",
        "none",
        Study(
            source=path,
            question=f"{base['question']} [{INPUTS}]",
            purpose=base["purpose"],
            train=package,
            dataset=base["dataset"],
            stations=base["stations"],
            parameters=resolved,
            role=base["role"],
            min_stations=base["min_stations"],
        ),
    )
    summary = {
        "design": DESIGN,
        "inputs": dict(resolved),
        "measure": measure,
        "reference": reference,
        "small_values": small,
        "model": model,
        "tau": tau,
        "level": level,
        **({"trials": str(trials)} if trials is not None else {}),
        **({"trials_sha256": digest} if digest else {}),
        **({"rename": rename} if rename else {}),
    }
    return NmaDesign(
        inputs=resolved,
        measure=measure,
        reference=reference,
        small_values=small,  # type: ignore[arg-type]
        model=model,  # type: ignore[arg-type]
        tau=tau,
        level=level,
        analyses=(analysis,),
        trials=trials,
        trial_contrasts=contrasts,
        rename=rename,
        where=where,
        summary=summary,
    )


def budget(study: Study) -> dict[str, Any]:
    """Query units per station: the one ``nma.inputs`` request."""
    design = study.design
    assert isinstance(design, NmaDesign)
    return {
        "queries_per_station": 1,
        "requests": [str(design.analyses[0].study.train.manifest.ref)],
        "note": "one nma.inputs request per station",
    }


def train_package(design: NmaDesign) -> TrainPackage:
    """The ``nma.inputs`` train (what `pht validate` shows)."""
    return design.analyses[0].study.train


# -- the network ----------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkInputs:
    """The contrasts of the network and what was made of each study.

    ``sources`` gives per contrast ``station`` or ``trial``; ``studies`` one record per
    study (label, source, station id or None, arms; an arm's ``n`` is None when a
    trial does not give it); ``notes`` the continuity corrections and exclusions, one
    sentence each.
    """

    contrasts: tuple[Contrast, ...]
    sources: tuple[str, ...]
    studies: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...]

    @property
    def treatments(self) -> tuple[str, ...]:
        """The nodes, sorted."""
        return tuple(sorted({t for c in self.contrasts for t in (c.treat1, c.treat2)}))


def normal_form(label: str) -> str:
    """A label in NFKC without format characters or white space, case-folded.

    The form finds near-duplicates: format characters are Unicode category Cf (a
    zero-width space, a soft hyphen). Two labels with the same normal form name one
    treatment spelled two ways (``"ipilimumab + nivolumab"`` and
    ``"ipilimumab+nivolumab"``, a decomposed and a composed accent, full-width
    letters).

    >>> normal_form("  Nivolumab  /  Standard ")
    'nivolumab/standard'
    >>> normal_form("ipilimumab + nivolumab") == normal_form("Ipilimumab+Nivolumab")
    True
    >>> normal_form("cafe\u0301") == normal_form("caf\u00e9")
    True
    >>> normal_form("\uff2e\uff49\uff56\u200b")
    'niv'
    """
    text = unicodedata.normalize("NFKC", label)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", "".join(text.split()).casefold())


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{what} is {value!r}, not a number")
    if not math.isfinite(value):
        raise DataError(
            f"{what} is {value!r}, not a finite number; ask its operator to check "
            "the run"
        )
    return float(value)


def _whole(value: Any, what: str) -> int:
    """A station's count: a finite whole number >= 0 (never truncated)."""
    x = _number(value, what)
    if not x.is_integer() or x < 0:
        raise DataError(
            f"{what} is {value!r}, not a whole count; ask its operator to check the run"
        )
    return int(x)


def _check_label(label: str, where: str, what: str) -> None:
    """One line for a label that :func:`label_problem` refuses."""
    problem = label_problem(label)
    if problem:
        also = (
            "; or map it with rename: in the study file"
            if what in ("arm", "treatment")
            else ""
        )
        raise DataError(f"{where}: {what} {label!r} {problem}{also}")


def _arms(
    study: Mapping[str, Any], kind: str, rename: Mapping[str, str], where: str
) -> list[Any]:
    """A station's released arms as typed arms, renamed; one line if malformed."""
    arms = study.get("arms")
    if not isinstance(arms, Mapping):
        raise DataError(f"{where}: released no arms; ask its operator to check the run")
    out: list[Any] = []
    for label, arm in arms.items():
        name = rename.get(str(label), str(label))
        _check_label(name, where, "arm")
        if not isinstance(arm, Mapping):
            raise DataError(f"{where}: arm {label!r} is not a mapping of counts")
        n = _whole(arm.get("n"), f"{where}: arm {label!r} n")
        try:
            if kind == "cox":  # a Cox input's arms carry n only
                out.append(BinaryArm(name, n, 0))
            elif kind == "events":
                events = _whole(arm.get("events"), f"{where}: arm {label!r} events")
                out.append(BinaryArm(name, n, events))
            elif kind == "means":
                out.append(
                    ContinuousArm(
                        name,
                        n,
                        _number(arm.get("mean"), f"{where}: arm {label!r} mean"),
                        _number(arm.get("sd"), f"{where}: arm {label!r} sd"),
                    )
                )
            else:
                out.append(
                    RateArm(
                        name,
                        n,
                        _whole(arm.get("events"), f"{where}: arm {label!r} events"),
                        _number(arm.get("person_time"), f"{where}: arm {label!r} time"),
                    )
                )
        except DataError as exc:
            if str(exc).startswith(where):
                raise
            raise DataError(
                f"{where}: {exc}; ask its operator to check the run"
            ) from None
    names = [a.treatment for a in out]
    for name in names:
        if names.count(name) > 1:
            raise DataError(
                f"{where}: two arms are named {name!r} after rename; a study's arms "
                "must differ: change rename in the study file"
            )
    if len(out) < 2:
        raise DataError(
            f"{where}: one arm ({', '.join(names) or 'none'}) after exclusions; a "
            "study needs two or more arms: widen inputs.treatments or leave the "
            "station out under stations"
        )
    return out


def cox_contrasts(
    label: str,
    cox: Mapping[str, Any],
    sizes: Mapping[str, int],
    rename: Mapping[str, str] | None = None,
) -> list[Contrast]:
    """Every pair of a station's arms from its Cox coefficients and covariance.

    ``cox`` is the released ``{"reference", "terms", "coef", "cov"}``: the log hazard
    ratio of each term arm versus the reference arm (``b = 0``) and their covariance
    ``V``. For arms ``i < j`` in the order reference, terms: ``TE = b_i - b_j`` and
    ``var = V_ii + V_jj - 2 V_ij``.

    >>> c = cox_contrasts("s", {"reference": "A", "terms": ["B", "C"],
    ...     "coef": [0.5, 0.2], "cov": [[0.04, 0.01], [0.01, 0.09]]}, {})
    >>> [(x.treat1, x.treat2, round(x.TE, 6), round(x.seTE ** 2, 6)) for x in c]
    [('A', 'B', -0.5, 0.04), ('A', 'C', -0.2, 0.09), ('B', 'C', 0.3, 0.11)]
    """
    rename = rename or {}
    where = f"station {label!r}"
    fix = "leave the station out under stations and ask its operator to check the run"
    try:
        reference = str(cox["reference"])
        raw_terms, raw_coef, given = cox["terms"], cox["coef"], cox["cov"]
    except (KeyError, TypeError) as exc:
        raise DataError(
            f"{where}: its cox section lacks {exc}; ask its operator to check the run"
        ) from None
    if not all(isinstance(x, list | tuple) for x in (raw_terms, raw_coef, given)) or (
        not all(isinstance(r, list | tuple) for r in given)
    ):
        raise DataError(
            f"{where}: its Cox terms, coefficients and covariance must be lists "
            f"(a matrix for the covariance); {fix}"
        )
    terms = [str(t) for t in raw_terms]
    k = len(terms)
    if len(raw_coef) != k or len(given) != k or any(len(r) != k for r in given):
        raise DataError(
            f"{where}: the Cox terms, coefficients and covariance differ in size; {fix}"
        )
    try:
        coef = [0.0] + [_number(b, f"{where}: a Cox coefficient") for b in raw_coef]
        matrix = [
            [_number(v, f"{where}: a Cox covariance") for v in row] for row in given
        ]
    except DataError as exc:
        raise DataError(f"{str(exc).split('; ask')[0]}; {fix}") from None
    for b in coef:
        if abs(b) > MAX_LOG_TE:
            raise DataError(
                f"{where}: a Cox coefficient is {b:.6g}, beyond +-{MAX_LOG_TE:g} "
                f"(a log hazard ratio); {fix}"
            )
    if k:
        v = np.array(matrix, dtype=float)
        if not np.allclose(v, v.T, rtol=1e-8, atol=1e-12):
            raise DataError(f"{where}: its Cox covariance is not symmetric; {fix}")
    cov = [[0.0] * (k + 1)] + [[0.0, *row] for row in matrix]
    arms = [reference, *terms]
    out = []
    for i in range(k + 1):
        for j in range(i + 1, k + 1):
            var = cov[i][i] + cov[j][j] - 2 * cov[i][j]
            one, two = rename.get(arms[i], arms[i]), rename.get(arms[j], arms[j])
            if not (math.isfinite(var) and MIN_SE**2 < var < MAX_SE**2):
                raise DataError(
                    f"{where}: {one} vs {two} has variance {var:.3g} (seTE must lie "
                    f"between {MIN_SE:g} and {MAX_SE:g}); its Cox covariance is "
                    f"degenerate: {fix}"
                )
            out.append(
                Contrast(
                    label,
                    one,
                    two,
                    coef[i] - coef[j],
                    math.sqrt(var),
                    sizes.get(arms[i]),
                    sizes.get(arms[j]),
                )
            )
    if k > 1:  # each pair's variance is > 0; the whole matrix must be PD too
        v = np.array(matrix, dtype=float)
        eig = np.linalg.eigvalsh((v + v.T) / 2)
        if not eig[0] > 1e-12 * max(float(eig[-1]), 0.0):
            raise DataError(
                f"{where}: its Cox covariance is not positive definite (eigenvalues "
                f"{float(eig[0]):.3g} to {float(eig[-1]):.3g}); {fix}"
            )
    return out


def network_inputs(
    stations: Sequence[Mapping[str, Any]],
    kind: str,
    measure: str,
    trials: PairwiseResult | None = None,
    *,
    trials_name: str = "trials",
    rename: Mapping[str, str] | None = None,
    incr: float = 0.5,
) -> NetworkInputs:
    """Stations' released inputs and published trials as one network's contrasts.

    Parameters
    ----------
    stations
        The ``studies`` of the ``nma_inputs`` section: ``label``, ``station``,
        ``arms`` and, for ``cox``, ``cox``.
    kind
        ``events``, ``means``, ``rates`` or ``cox`` (the request's ``input``).
    measure
        The network's measure (one of :data:`MEASURES` of ``kind``).
    trials
        The published trials' contrasts (already converted), or None.
    trials_name
        The trials file's name in messages.
    rename
        Treatment label -> the network's label, applied to stations and trials.
    incr
        The continuity correction of arm-level inputs (``pairwise()``'s 0.5).

    Raises
    ------
    DataError
        A study with one arm, a treatment named two ways, a ``rename`` key that
        matches no label, a study label used twice, fewer than two treatments or a
        disconnected network (one line each).
    """
    rename = dict(rename or {})
    contrasts: list[Contrast] = []
    sources: list[str] = []
    studies: list[dict[str, Any]] = []
    notes: list[str] = []
    seen: dict[str, tuple[str, str]] = {}  # normal form -> (label, where)
    used: set[str] = set()
    labels_seen: set[str] = set()  # the labels as given, before rename

    def name(label: str, where: str) -> None:
        form = normal_form(label)
        first = seen.get(form)
        if first is None:
            seen[form] = (label, where)
        elif first[0] != label:
            if (
                "".join(label.split()).casefold()
                == "".join(first[0].split()).casefold()
            ):
                fix = (
                    f"add rename: {{{label!r}: {first[0]!r}}} to the study file (or "
                    "correct one of them)"
                )
            else:  # equal only in Unicode's compatibility form (NFKC)
                fix = (
                    "they differ only in Unicode form (an accent typed as two "
                    "characters, full-width letters): retype one of them"
                )
            raise DataError(
                f"{where} names the treatment {label!r} but {first[1]} names it "
                f"{first[0]!r}; {fix}"
            )

    for study in stations:
        if not isinstance(study, Mapping):
            raise DataError(
                f"a station's study is {type(study).__name__}, not a mapping; ask "
                "its operator to check the run"
            )
        label = str(study.get("label"))
        where = f"station {label!r}"
        _check_label(label, where, "study label")
        labels_seen |= {str(a) for a in study.get("arms") or {}}
        used |= {str(a) for a in study.get("arms") or {}} & set(rename)
        if kind == "cox":
            arms = _arms(study, "cox", rename, where)
            sizes = {str(k): int(v["n"]) for k, v in study["arms"].items()}  # checked
            if not isinstance(study.get("cox"), Mapping):
                raise DataError(f"{where}: released no cox section for input cox")
            made = cox_contrasts(label, study["cox"], sizes, rename)
            covered = {t for c in made for t in (c.treat1, c.treat2)}
            if covered != {a.treatment for a in arms}:
                raise DataError(
                    f"{where}: its Cox terms do not cover its arms; ask its operator "
                    "to check the run"
                )
            result = PairwiseResult(measure, tuple(made))
        else:
            arms = _arms(study, kind, rename, where)
            if kind == "events":
                result = pairwise_binary(
                    {label: arms}, measure, incr=incr, source=where
                )
            elif kind == "means":
                result = pairwise_continuous({label: arms}, measure, source=where)
            else:
                result = pairwise_rates({label: arms}, measure, incr=incr, source=where)
        for arm in arms:
            name(arm.treatment, where)
        notes += [f"{where}: {n}" for n in result.notes]
        contrasts += result.contrasts
        sources += ["station"] * len(result.contrasts)
        studies.append(
            {
                "label": label,
                "source": "station",
                "station": study.get("station"),
                "arms": [
                    {"treatment": a.treatment, **_arm_numbers(a, kind)} for a in arms
                ],
                "contrasts": len(result.contrasts),
            }
        )
    labels = {s["label"] for s in studies}
    if trials is not None:
        notes += [f"{trials_name}: {n}" for n in trials.notes]
        by_study: dict[str, list[Contrast]] = {}
        for c in trials.contrasts:
            t1, t2 = rename.get(c.treat1, c.treat1), rename.get(c.treat2, c.treat2)
            labels_seen |= {c.treat1, c.treat2}
            used |= {c.treat1, c.treat2} & set(rename)
            where = f"{trials_name}: study {c.studlab!r}"
            _check_label(c.studlab, trials_name, "study")
            _check_label(t1, where, "treatment")
            _check_label(t2, where, "treatment")
            if c.studlab in labels:
                raise DataError(
                    f"{where} has the label of a station's study; rename the study "
                    "in the file"
                )
            if t1 == t2:
                raise DataError(
                    f"{where}: {c.treat1} and {c.treat2} are both {t1!r} after "
                    "rename; a contrast compares two treatments: change rename"
                )
            name(t1, where)
            name(t2, where)
            by_study.setdefault(c.studlab, []).append(
                Contrast(c.studlab, t1, t2, c.TE, c.seTE, c.n1, c.n2, c.incr)
            )
        for studlab, rows in by_study.items():
            contrasts += rows
            sources += ["trial"] * len(rows)
            arms_n: dict[str, int | None] = {}
            for c in rows:
                arms_n.setdefault(c.treat1, c.n1)
                arms_n.setdefault(c.treat2, c.n2)
            studies.append(
                {
                    "label": studlab,
                    "source": "trial",
                    "station": None,
                    "arms": [{"treatment": t, "n": n} for t, n in arms_n.items()],
                    "contrasts": len(rows),
                }
            )
    unused = sorted(set(rename) - used)
    if unused:
        raise DataError(_unused_rename(unused[0], labels_seen))
    out = NetworkInputs(tuple(contrasts), tuple(sources), tuple(studies), tuple(notes))
    if len(out.treatments) < 2:
        raise DataError(
            f"the network has {len(out.treatments)} treatment(s) "
            f"({', '.join(out.treatments) or 'none'}); it needs two or more: ask "
            "for more arms (inputs.treatments) or add trials"
        )
    _check_connected(out, trials_name)
    return out


def _unused_rename(key: str, labels: set[str]) -> str:
    """The one line for a ``rename`` key that matches no label, with the close ones.

    >>> _unused_rename("Keytruda", {"keytruda ", "nivolumab"})[:72]
    "rename: the key 'Keytruda' matches no treatment label of the stations or"
    """
    forms = sorted({normal_form(label) for label in labels})
    matches = difflib.get_close_matches(normal_form(key), forms, n=3, cutoff=0.6)
    close = [
        label
        for form in matches
        for label in sorted(labels)
        if normal_form(label) == form
    ]
    said = (
        f"close labels: {', '.join(repr(c) for c in close[:4])}"
        if close
        else f"the labels are: {', '.join(repr(x) for x in sorted(labels)) or 'none'}"
    )
    return (
        f"rename: the key {key!r} matches no treatment label of the stations or the "
        f"trials ({said}); a key must be a label exactly as given: correct it or "
        "remove it"
    )


def _arm_numbers(arm: Any, kind: str) -> dict[str, Any]:
    if kind == "cox":  # a Cox input's arms carry n only (nma.inputs)
        return {"n": arm.n}
    if isinstance(arm, BinaryArm):
        return {"n": arm.n, "events": arm.events}
    if isinstance(arm, ContinuousArm):
        return {"n": arm.n, "mean": arm.mean, "sd": arm.sd}
    return {"n": arm.n, "events": arm.events, "person_time": arm.time}


def components(inputs: NetworkInputs) -> list[dict[str, list[str]]]:
    """The connected parts of the network: treatments and studies of each."""
    parent = {t: t for t in inputs.treatments}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for c in inputs.contrasts:
        parent[root(c.treat1)] = root(c.treat2)
    parts: dict[str, dict[str, list[str]]] = {}
    for t in inputs.treatments:
        parts.setdefault(root(t), {"treatments": [], "studies": []})[
            "treatments"
        ].append(t)
    for c in inputs.contrasts:
        studies = parts[root(c.treat1)]["studies"]
        if c.studlab not in studies:
            studies.append(c.studlab)
    return sorted(parts.values(), key=lambda p: p["treatments"])


def _check_connected(inputs: NetworkInputs, trials_name: str = "trials") -> None:
    """Refuse a disconnected network, saying for each stray part how to fix it.

    The part with the most studies (then treatments) is the main one; every other
    part gets the fix its studies' sources allow: trials only, add a linking trial
    or remove their rows from the trials file; stations only, restrict
    ``inputs.treatments``; both, either.
    """
    parts = components(inputs)
    if len(parts) == 1:
        return
    source = {s["label"]: s["source"] for s in inputs.studies}
    main = max(parts, key=lambda p: (len(p["studies"]), len(p["treatments"])))
    said = "; ".join(
        f"part {i}: {', '.join(p['treatments'])} (studies: {', '.join(p['studies'])})"
        for i, p in enumerate(parts, start=1)
    )
    fixes = []
    for i, part in enumerate(parts, start=1):
        if part is main:
            continue
        kinds = {source.get(label) for label in part["studies"]}
        what = f"part {i} ({', '.join(part['treatments'])})"
        trial_fix = (
            f"add a trial linking {what} to the rest or remove those rows from "
            f"{trials_name}"
        )
        station_fix = (
            f"restrict inputs.treatments to leave out {what} (its arms come from "
            "the stations)"
        )
        if kinds == {"trial"}:
            fixes.append(trial_fix)
        elif kinds == {"station"}:
            fixes.append(station_fix)
        else:
            fixes.append(f"{trial_fix}, and {station_fix}")
    raise DataError(
        f"the network is disconnected, {len(parts)} parts ({said}); nothing was "
        f"fitted: {'; '.join(fixes)}"
    )


# -- the fit and the result section ---------------------------------------------------
def fit(inputs: NetworkInputs, design: NmaDesign) -> NmaResult:
    """:func:`~pht.algorithms.nma.nma` on the network with the study's settings."""
    options: dict[str, Any] = {
        "level": design.level,
        "small_values": design.small_values,
    }
    if "method_tau" in inspect.signature(nma).parameters:
        options["method_tau"] = design.tau
    return nma(inputs.contrasts, **options)


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _exp(value: float) -> float | None:
    """``exp(value)``, or None where it is not a finite number (overflow, NaN)."""
    value = float(value)
    if not math.isfinite(value) or value > 709:
        return None
    return math.exp(value)


def _matrix(values: Any) -> list[list[float | None]]:
    return [[_finite(v) for v in row] for row in values.tolist()]


def _pairs(est: PairwiseEstimates, ratio: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "te": _matrix(est.te),
        "se": _matrix(est.se),
        "lower": _matrix(est.lower),
        "upper": _matrix(est.upper),
        "z": _matrix(est.z),
        "p": _matrix(est.pvalue),
    }
    if ratio:
        out["ratio"] = [[_exp(v) for v in row] for row in est.te.tolist()]
        out["ratio_lower"] = [[_exp(v) for v in row] for row in est.lower.tolist()]
        out["ratio_upper"] = [[_exp(v) for v in row] for row in est.upper.tolist()]
    return out


def _estimate(e: Any, ratio: bool) -> dict[str, Any] | None:
    if e is None:
        return None
    out = {  # z and p are None where the algorithm gives NaN (a zero SE)
        "te": _finite(e.te),
        "se": _finite(e.se),
        "lower": _finite(e.lower),
        "upper": _finite(e.upper),
        "z": _finite(e.z),
        "p": _finite(e.pvalue),
    }
    if ratio:
        out.update(
            ratio=_exp(e.te),
            ratio_lower=_exp(e.lower),
            ratio_upper=_exp(e.upper),
        )
    return out


def _split(rows: Sequence[SplitRow], ratio: bool) -> list[dict[str, Any]]:
    return [
        {
            "treat1": r.treat1,
            "treat2": r.treat2,
            "studies": r.studies,
            "prop_direct": r.prop_direct,
            "network": _estimate(r.network, ratio),
            "direct": _estimate(r.direct, ratio),
            "indirect": _estimate(r.indirect, ratio),
            "difference": _estimate(r.difference, False),
        }
        for r in rows
    ]


def _league(
    est: PairwiseEstimates, names: Sequence[str], ratio: bool
) -> list[list[str]]:
    """Cell ``[i][j]``: row ``i`` versus column ``j`` (ratio scale for ratios)."""

    def f(v: float) -> str:
        shown = _exp(v) if ratio else _finite(v)
        return "not defined" if shown is None else f"{shown:.2f}"

    return [
        [
            name
            if i == j
            else f"{f(est.te[i, j])} ({f(est.lower[i, j])} to {f(est.upper[i, j])})"
            for j in range(len(names))
        ]
        for i, name in enumerate(names)
    ]


def nma_section(
    inputs: NetworkInputs, result: NmaResult, design: NmaDesign
) -> dict[str, Any]:
    """The result's ``nma`` section: every number of the network and its fit."""
    names = result.treatments
    ratio = design.measure in RATIO
    if design.reference not in names:
        at = design.where.get("reference", "reference")
        raise ConfigError(
            f"{at} {design.reference!r} is not a treatment of the network; the "
            f"treatments are: {', '.join(names)}"
        )
    # patients: the sum of the arms' known sizes; None ("not given") when no arm of
    # the treatment has one (a contrast-level trial without n1/n2), never 0
    patients: dict[str, int | None] = dict.fromkeys(names)
    counted: dict[str, int] = dict.fromkeys(names, 0)
    unknown: dict[str, int] = dict.fromkeys(names, 0)
    for study in inputs.studies:
        nodes = {
            t
            for c in inputs.contrasts
            if c.studlab == study["label"]
            for t in (c.treat1, c.treat2)
        }
        for arm in study["arms"]:
            t = arm["treatment"]
            if t not in nodes:  # a study left out (not estimable)
                continue
            counted[t] += 1
            n = arm.get("n")
            if isinstance(n, int) and not isinstance(n, bool):
                patients[t] = (patients[t] or 0) + n
            else:
                unknown[t] += 1
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for c in inputs.contrasts:
        key = tuple(sorted((c.treat1, c.treat2)))
        edge = edges.setdefault(
            key,  # type: ignore[arg-type]
            {
                "treat1": key[0],
                "treat2": key[1],
                "studies": 0,
                "patients": None,
                "arms_without_n": 0,
            },
        )
        edge["studies"] += 1
        for n in (c.n1, c.n2):
            if n is None:
                edge["arms_without_n"] += 1
            else:
                edge["patients"] = (edge["patients"] or 0) + n
    known = [v for v in patients.values() if v is not None]
    ref = result.index(design.reference)
    forest = []
    for model in MODELS:
        for t in names:
            if t == design.reference:
                continue
            e = result.estimate(t, design.reference, model)  # type: ignore[arg-type]
            row = {"treatment": t, "model": model, **(_estimate(e, ratio) or {})}
            shown = ("ratio", "ratio_lower", "ratio_upper") if ratio else ("te",)
            if e is not None and any(row.get(k) is None for k in shown):
                raise DataError(
                    f"the network's {model}-effects estimate of {t} vs "
                    f"{design.reference} is {e.te:.6g} ({design.measure}"
                    f"{', log scale' if ratio else ''}), too large to show: check the "
                    "inputs' TE and seTE (a ratio given where its log belongs?)"
                )
            forest.append(row)
    scores: list[dict[str, Any]] = [
        {"treatment": t, "common": pc, "random": pr}
        for t, pc, pr in zip(
            names, result.pscores_common, result.pscores_random, strict=True
        )
    ]
    pscores = sorted(scores, key=lambda r: -float(r[design.model]))
    section: dict[str, Any] = {
        "measure": design.measure,
        "measure_name": MEASURE_NAMES[design.measure],
        "scale": "log" if ratio else "identity",
        "input": design.inputs.get("input"),
        "reference": design.reference,
        "reference_index": ref,
        "small_values": design.small_values,
        "model": design.model,
        "tau_method": design.tau,
        "level": design.level,
        "treatments": [
            {
                "name": t,
                "patients": patients[t],
                "studies": counted[t],
                "arms_without_n": unknown[t],
            }
            for t in names
        ],
        "patients": {
            "total": sum(known) if known else None,
            "arms_without_n": sum(unknown.values()),
            "complete": not any(unknown.values()),
        },
        "edges": [edges[k] for k in sorted(edges)],
        "studies": list(inputs.studies),
        "contrasts": [
            {
                "studlab": c.studlab,
                "treat1": c.treat1,
                "treat2": c.treat2,
                "TE": c.TE,
                "seTE": c.seTE,
                "n1": c.n1,
                "n2": c.n2,
                "source": s,
            }
            for c, s in zip(inputs.contrasts, inputs.sources, strict=True)
        ],
        "notes": list(inputs.notes),
        "common": _pairs(result.common, ratio),
        "random": _pairs(result.random, ratio),
        "league": {
            "common": _league(result.common, names, ratio),
            "random": _league(result.random, names, ratio),
        },
        "forest": forest,
        "pscores": pscores,
        "heterogeneity": {
            "q": _q(result.q),
            "within": _q(result.q_within),
            "between": _q(result.q_between),
            "designs": [
                {"design": list(d.design), "studies": d.studies, **_q(d.q)}
                for d in result.q_designs
            ],
            "tau2": result.tau2,
            "tau": result.tau,
            "i2": result.i2,
            "i2_lower": result.i2_lower,
            "i2_upper": result.i2_upper,
        },
        "split": {
            "common": _split(result.split_common, ratio),
            "random": _split(result.split_random, ratio),
        },
        "exports": {"contrasts": CONTRASTS_FILE, "r_script": R_FILE},
    }
    section["answer"] = answer_sentence(section)
    return section


def _q(q: Any) -> dict[str, Any]:
    return {"q": q.statistic, "df": q.df, "p": q.pvalue}


#: P-scores of the first two treatments closer than this are "close" in the answer
PSCORE_CLOSE = 0.05


def _versus(section: Mapping[str, Any], one: str, two: str) -> tuple[float, ...]:
    """``one`` versus ``two`` in the answer's model: estimate, lower, upper (shown scale)."""
    names = [t["name"] for t in section["treatments"]]
    i, j = names.index(one), names.index(two)
    pairs = section[section["model"]]
    keys = ("ratio", "ratio_lower", "ratio_upper")
    if section["scale"] != "log":
        keys = ("te", "lower", "upper")
    return tuple(float(pairs[k][i][j]) for k in keys)


def answer_sentence(section: Mapping[str, Any]) -> str:
    """The study's answer: the best-ranked treatment and its effect vs the reference.

    When the runner-up's P-score is within :data:`PSCORE_CLOSE` of the best one, or
    the CI of the best versus the runner-up includes the null (1 for ratios, 0 for
    differences), the sentence says the best is not clearly ahead of it, with that
    comparison.
    """
    model = section["model"]
    ranked = section["pscores"]
    best = ranked[0]
    reference = section["reference"]
    measure = section["measure"]
    ratio = section["scale"] == "log"
    pct = f"{100 * section['level']:g}%"
    better = "lower" if section["small_values"] == "good" else "higher"
    lead = (
        f"{best['treatment']} ranks first of {len(ranked)} treatments "
        f"({model} effects, P-score {best[model]:.2f}; a {better} {measure} is better)"
    )
    if len(ranked) > 1:
        second = ranked[1]
        est, lo, hi = _versus(section, best["treatment"], second["treatment"])
        null = 1.0 if ratio else 0.0
        if abs(best[model] - second[model]) < PSCORE_CLOSE or lo <= null <= hi:
            lead += (
                f" but not clearly ahead of {second['treatment']} "
                f"({second[model]:.2f}; {measure} {best['treatment']} vs "
                f"{second['treatment']} {est:.2f}, {pct} CI {lo:.2f} to {hi:.2f})"
            )
    other = best["treatment"]
    if other == reference:
        other = ranked[1]["treatment"]
        lead = lead.replace(" ranks first", " (the reference) ranks first", 1)
    row = next(
        r for r in section["forest"] if r["treatment"] == other and r["model"] == model
    )
    est, lo, hi = (
        (row["ratio"], row["ratio_lower"], row["ratio_upper"])
        if ratio
        else (row["te"], row["lower"], row["upper"])
    )
    p = row["p"]
    numbers = (
        f"{measure} {est:.2f} ({pct} CI {lo:.2f} to {hi:.2f}, "
        + (
            "p not defined"
            if p is None
            else "p < 0.0001"
            if p < 1e-4
            else f"p = {p:.4f}"
        )
        + ")"
    )
    if other != best["treatment"]:
        return f"{lead}; the next, {other}, has {numbers} against it."
    return f"{lead}; against {reference}: {numbers}."


# -- running ----------------------------------------------------------------------------
def run_nma(
    study: Study,
    network: Network,
    engine: Engine,
    requester: Requester,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Send the ``nma.inputs`` request, build the network, fit it; the result dict."""
    from pht import __version__
    from pht.orchestrator.run import SCHEMA_VERSION, _now, run_study

    design = study.design
    assert isinstance(design, NmaDesign)
    analysis = design.analyses[0]
    released: dict[str, Any] = {}
    try:
        result = run_study(
            analysis.study, network, engine, requester, progress, released
        )
    except QuorumError as exc:
        hint = _refusal_hint(design.inputs, str(exc))
        if not hint:
            raise
        raise QuorumError(f"{exc}{hint}") from None
    section = result.get("nma_inputs")
    if not isinstance(section, Mapping) or not isinstance(section.get("studies"), list):
        raise DataError(
            f"{study.source}: the {TRAIN} train gave no studies (no nma_inputs "
            "section); check the train's version"
        )
    trials_name = design.trials.name if design.trials is not None else "trials"
    try:
        inputs = network_inputs(
            section["studies"],
            str(design.inputs["input"]),
            design.measure,
            design.trial_contrasts,
            trials_name=trials_name,
            rename=design.rename,
        )
    except DataError as exc:
        raise DataError(f"{study.source}: {exc}") from None
    fitted = fit(inputs, design)
    nma_out = nma_section(inputs, fitted, design)
    provenance = dict(result.get("provenance") or {})
    provenance.update(
        study_file=str(study.source),
        budget=budget(study),
        **({"trials_file": str(design.trials)} if design.trials else {}),
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "train": DESIGN,
        "train_digest": result.get("train_digest"),
        "question": study.question,
        "purpose": study.purpose,
        "dataset": study.dataset,
        "parameters": dict(design.summary),
        "created": _now(),
        "pht_version": __version__,
        "stations": result.get("stations", []),
        "partial": result.get("partial"),
        "nma": nma_out,
        "nma_inputs": section,
        "warnings": result.get("warnings", []),
        "provenance": provenance,
    }


# -- exports ----------------------------------------------------------------------------
def contrasts_csv(section: Mapping[str, Any]) -> str:
    """``nma_contrasts.csv``: netmeta's columns, then ``n1, n2, source``.

    Floats are written with :func:`repr` (17 significant digits), so the file reads
    back to the same numbers.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CONTRAST_FIELDS)
    for c in section["contrasts"]:
        writer.writerow(
            [
                c["studlab"],
                c["treat1"],
                c["treat2"],
                repr(float(c["TE"])),
                repr(float(c["seTE"])),
                "" if c.get("n1") is None else c["n1"],
                "" if c.get("n2") is None else c["n2"],
                c["source"],
            ]
        )
    return buffer.getvalue()


def _r_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def r_script(section: Mapping[str, Any]) -> str:
    """``nma.R``: the same network in R's netmeta, from ``nma_contrasts.csv``."""
    small = "desirable" if section["small_values"] == "good" else "undesirable"
    return f"""# The network meta-analysis of this result in R's netmeta (written by pht).
# Run it in the folder that holds {CONTRASTS_FILE}:  Rscript {R_FILE}
# Contrasts: TE = treat1 vs treat2 on the {section["scale"]} scale of the
# {section["measure_name"]}; multi-arm studies give all their pairs.
library(netmeta)
d <- read.csv({_r_string(CONTRASTS_FILE)}, stringsAsFactors = FALSE,
              na.strings = character(0), encoding = "UTF-8",
              colClasses = c(studlab = "character", treat1 = "character",
                             treat2 = "character", TE = "numeric",
                             seTE = "numeric", source = "character"))
net <- netmeta(TE, seTE, treat1, treat2, studlab, data = d,
               sm = {_r_string(section["measure"])}, common = TRUE, random = TRUE,
               method.tau = {_r_string(section["tau_method"])},
               level.ma = {section["level"]!r},
               reference.group = {_r_string(section["reference"])},
               small.values = {_r_string(small)})
print(net)
print(decomp.design(net))
print(netsplit(net))
print(netrank(net))
"""


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_exports(result: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write ``nma_contrasts.csv`` and ``nma.R`` next to ``result.json`` (atomically).

    Returns the paths written; nothing when the result has no ``nma`` section.
    """
    section = result.get("nma")
    if not isinstance(section, Mapping) or not section.get("contrasts"):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        (CONTRASTS_FILE, contrasts_csv(section)),
        (R_FILE, r_script(section)),
    ):
        _atomic_write(out_dir / name, text)
        written.append(out_dir / name)
    return written
