"""Network meta-analysis (NMA) of study contrasts, as R's netmeta (graph-theoretical).

Hypotheses: each study reports the contrasts ``TE`` (treatment 1 minus treatment 2 on
an additive scale: log OR, log HR, MD, ...) of its arms with their standard errors
``seTE``; a multi-arm study gives all ``k (k - 1) / 2`` contrasts of its ``k`` arms
(as netmeta takes them), and these must be consistent (``TE_AC = TE_AB + TE_BC``).

Method (Rücker 2012, *Res Synth Methods* 3:312; Rücker & Schwarzer 2014, *Stat Med*
33:4353; netmeta's ``nma.ruecker``, ``multiarm``, ``decomp.design``, ``netsplit``,
``netrank``):

* **Reduced weights** for a ``k``-arm study: with ``R`` the ``k x k`` matrix of the
  contrast variances and ``P = I - J/k``, ``L_s = (-P R P / 2)^+`` is the study's
  Laplacian and the reduced weight of edge ``ij`` is ``-L_s[i, j]`` (negative weights
  under 0.1 % of the study's total are set to 0, as netmeta). For arm-level variances
  this is exactly the generalised least-squares (GLS) fit with the full multi-arm
  covariance (contrasts sharing an arm covary by that arm's variance).
* **Common effects**: ``B`` edge-vertex incidence (``+1`` treat1, ``-1`` treat2),
  ``W`` the reduced weights, ``L = B' W B`` and its Moore-Penrose pseudoinverse
  ``L^+``; ``theta = L^+ B' W TE``, ``TE[i, j] = theta_i - theta_j`` with variance
  ``L^+_ii + L^+_jj - 2 L^+_ij``.
* **Q** ``= sum w (TE - fitted)^2`` with ``df = sum_s (k_s - 1) - (n - 1)``; its
  design-by-treatment decomposition (Krahn et al. 2013): **within designs** is the sum
  over designs (sets of arms) of the Q of a fit with a free effect per design, and
  **between designs** (inconsistency) is the rest.
* **tau^2**, ``method_tau="DL"`` (default): netmeta's generalised DerSimonian-Laird
  ``max(0, (Q - df) / tr((I - H) (B B' o E / 2) W))`` with ``H = B L^+ B' W`` and
  ``E[e, f] = 1`` when edges ``e``, ``f`` come from the same study; **I^2** and its CI
  as Higgins & Thompson (2002) via ``H = sqrt(Q / df)`` (from Q, whatever the method).
* **tau^2**, ``"REML"`` / ``"ML"``: the (restricted) maximum likelihood of the
  contrast-based model on each study's basic contrasts (its other arms minus its first)
  ``y ~ N(X d, V + tau^2 V0)``: ``V0`` has 1 on the diagonal and 1/2 between contrasts
  of one study (netmeta's ``rma.mv(..., random = ~ factor(comparison) | studlab,
  rho = 0.5)``), and ``V`` is the multi-arm covariance the reduced weights imply
  (``C Lt C'`` with ``Lt = -P R P / 2``: contrasts sharing an arm covary by that arm's
  variance; for arm-level variances exactly that). The fixed effects are profiled out
  and the 1-D problem in ``tau^2 >= 0`` is solved by a grid, a bracketed root of the
  score (Brent) and Newton polishing. netmeta 3.6-2 given contrasts only (no arm-level
  ``n``/``event``/``mean``/``sd``) uses a *diagonal* ``V`` there, so for multi-arm
  studies its REML/ML tau^2 differs from this one; given arm-level data (its ``calcV``)
  it uses this covariance and agrees. Two-arm networks agree either way. Senn2013
  (one 3-arm study): REML tau^2 0.099915 here, 0.101114 from netmeta's contrast-only
  call.
* **Random effects**: ``tau^2`` added to every contrast's variance *before* the
  multi-arm reduction, then the same fit.
* **Covariance**: ``PairwiseEstimates.cov`` is ``L^+``, the covariance of the basic
  parameters ``theta`` (centred to mean 0); :meth:`NmaResult.covariance` turns it into
  the covariance of all treatments versus any reference (for a forest plot).
* **P-scores** (Rücker & Schwarzer 2015): the mean over the other treatments of
  ``Phi(-z_ij)`` (``small_values="good"``) or ``Phi(z_ij)`` (``"bad"``).
* **SIDE split** by back-calculation, as netmeta 3.6-2 (``netmeta``, ``netmeasures``,
  ``nma_krahn``, ``direct.indirect``): direct = inverse-variance pooled contrasts of
  the pair as given (``seTE^2``, plus ``tau^2`` for random effects; contrasts of a
  multi-arm study are pooled as if independent); ``P = v_net / v_direct`` with
  ``v_net`` from Krahn et al.'s GLS (each multi-arm study's basic contrasts versus its
  first arm, covariance ``(v_1i + v_1j - v_ij) / 2``; equal to the network variance
  unless a study with four or more arms has variances no arm-level model gives), P = 0
  without direct evidence and 1 in a two-treatment network; indirect ``(TE_nma - P
  TE_direct) / (1 - P)`` with ``se_nma / sqrt(1 - P)`` (``TE_direct`` taken as 0 when
  ``P < sqrt(eps)``; none when ``P > 1`` or ``|P - 1| < sqrt(eps)``); then netsplit's
  ``tol.direct``: no indirect estimate when ``|P - 1| < 0.0005``, no direct estimate
  when the *common-effects* ``P < 0.0005`` (for both models, as netmeta), the network
  estimate as indirect without direct evidence; and the z-test of direct minus
  indirect.

Example
-------
>>> r = nma([
...     Contrast("s1", "A", "B", 1.0, 1.0),
...     Contrast("s2", "B", "C", 1.0, 1.0),
...     Contrast("s3", "A", "C", 1.0, 1.0),
... ])
>>> r.treatments
('A', 'B', 'C')
>>> round(r.estimate("A", "C").te, 6), round(r.estimate("A", "C").se, 6)
(1.333333, 0.816497)
>>> round(r.q.statistic, 6), r.q.df
(0.333333, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

from pht.algorithms.pairwise import Contrast, multiarm_variance_problem
from pht.errors import DataError

FloatArray = npt.NDArray[np.float64]
SmallValues = Literal["good", "bad"]
TauMethod = Literal["DL", "REML", "ML"]

#: netmeta's ``tol.multiarm``: largest |TE_AC - (TE_AB + TE_BC)| in a multi-arm study
MULTIARM_TOLERANCE = 0.001
#: netsplit's ``tol.direct``: a direct-evidence proportion this close to 0 (1) shows no
#: direct (indirect) estimate
DIRECT_TOLERANCE = 0.0005
#: netmeta's ``.Machine$double.eps^0.5`` in the back-calculation
_SQRT_EPS = math.sqrt(np.finfo(float).eps)


@dataclass(frozen=True)
class Estimate:
    """One pairwise estimate (treat1 minus treat2) with its CI, z and two-sided p."""

    te: float
    se: float
    lower: float
    upper: float
    z: float
    pvalue: float


@dataclass(frozen=True)
class PairwiseEstimates:
    """All-pairs ``n x n`` matrices: ``te[i, j]`` estimates treatment i minus j.

    The diagonal is 0 (``te``, ``se``, ``z``, the CI) with ``pvalue`` 1. This is the
    league table's content. ``theta`` are the basic parameters (treatment effects
    centred to mean 0, ``te[i, j] = theta[i] - theta[j]``) and ``cov`` their covariance
    ``L^+`` (singular: it sums to 0 over rows); see :meth:`NmaResult.covariance`.
    """

    te: FloatArray
    se: FloatArray
    lower: FloatArray
    upper: FloatArray
    z: FloatArray
    pvalue: FloatArray
    theta: FloatArray
    cov: FloatArray


@dataclass(frozen=True)
class QTest:
    """A Q statistic with its degrees of freedom and chi-squared p (None when df = 0)."""

    statistic: float
    df: int
    pvalue: float | None


@dataclass(frozen=True)
class DesignQ:
    """Within-design heterogeneity of one design (the sorted set of a study's arms)."""

    design: tuple[str, ...]
    studies: int
    q: QTest


@dataclass(frozen=True)
class SplitRow:
    """Direct and indirect evidence of one pair (treat1 minus treat2), back-calculated.

    ``direct`` is None without studies of the pair, and when the common-effects
    ``prop_direct`` is under 0.0005 (netsplit's ``tol.direct``); ``indirect`` is None
    when the evidence is (within 0.0005 of) all direct, and equals the network
    estimate without studies of the pair. ``difference`` is direct minus indirect
    (None unless both exist). See the module docstring for netmeta's rules.
    """

    treat1: str
    treat2: str
    studies: int
    prop_direct: float
    network: Estimate
    direct: Estimate | None
    indirect: Estimate | None
    difference: Estimate | None


@dataclass(frozen=True)
class NmaResult:
    """The fitted network: common- and random-effects estimates and their diagnostics.

    ``tau2_method`` says where ``tau2`` came from: ``"DL"``, ``"REML"``, ``"ML"`` or
    ``"preset"`` (given by the caller). ``tau2`` is None (and the random-effects model
    equals the common one) when ``q.df`` is 0 and nothing was preset.
    """

    treatments: tuple[str, ...]
    studies: tuple[str, ...]
    level: float
    small_values: SmallValues
    common: PairwiseEstimates
    random: PairwiseEstimates
    q: QTest
    q_within: QTest
    q_between: QTest
    q_designs: tuple[DesignQ, ...]
    tau2: float | None
    tau: float | None
    tau2_method: Literal["DL", "REML", "ML", "preset"]
    i2: float | None
    i2_lower: float | None
    i2_upper: float | None
    pscores_common: tuple[float, ...]
    pscores_random: tuple[float, ...]
    split_common: tuple[SplitRow, ...]
    split_random: tuple[SplitRow, ...]

    def index(self, treatment: str) -> int:
        """Position of ``treatment`` in :attr:`treatments`."""
        try:
            return self.treatments.index(treatment)
        except ValueError:
            known = ", ".join(self.treatments)
            raise DataError(
                f"nma: unknown treatment {treatment!r}; the network has {known}"
            ) from None

    def estimate(
        self, treat1: str, treat2: str, model: Literal["common", "random"] = "common"
    ) -> Estimate:
        """The network estimate of ``treat1`` minus ``treat2``."""
        est = self.common if model == "common" else self.random
        i, j = self.index(treat1), self.index(treat2)
        return Estimate(
            float(est.te[i, j]),
            float(est.se[i, j]),
            float(est.lower[i, j]),
            float(est.upper[i, j]),
            float(est.z[i, j]),
            float(est.pvalue[i, j]),
        )

    def covariance(
        self, reference: str, model: Literal["common", "random"] = "common"
    ) -> FloatArray:
        """Covariance of every treatment versus ``reference``.

        Element ``[i, j]`` is ``Cov(te[i, r], te[j, r])`` with ``r`` the reference, so
        the diagonal is ``se[:, r] ** 2``; row and column ``r`` are 0. Rows follow
        :attr:`treatments`.
        """
        est = self.common if model == "common" else self.random
        r = self.index(reference)
        c = est.cov
        out = c - c[:, [r]] - c[[r], :] + c[r, r]
        out[r, :] = 0.0
        out[:, r] = 0.0
        return np.asarray((out + out.T) / 2, dtype=np.float64)


@dataclass(frozen=True)
class _Study:
    label: str
    arms: tuple[int, ...]  # treatment indices, sorted
    pairs: tuple[tuple[int, int], ...]  # (i, j) with i < j, one per contrast
    te: FloatArray  # theta_i - theta_j per pair
    var: FloatArray  # seTE^2 per pair


@dataclass(frozen=True)
class _Fit:
    theta: FloatArray
    lplus: FloatArray
    q: float
    edges: tuple[tuple[int, int], ...]
    weights: FloatArray
    te: FloatArray
    study_of_edge: tuple[int, ...]


def nma(
    contrasts: Iterable[Contrast],
    *,
    level: float = 0.95,
    small_values: SmallValues = "good",
    tau2: float | None = None,
    method_tau: TauMethod = "DL",
) -> NmaResult:
    """Fit the network meta-analysis of ``contrasts`` (see the module docstring).

    Parameters
    ----------
    contrasts
        Every contrast of every study; a multi-arm study gives all its pairs.
    level
        Confidence level of the CIs.
    small_values
        ``"good"`` when small effects are desirable (P-scores), else ``"bad"``.
    tau2
        A preset between-study variance for the random-effects model (netmeta's
        ``tau.preset``); None estimates it by ``method_tau``.
    method_tau
        ``"DL"`` (netmeta's generalised DerSimonian-Laird), ``"REML"`` or ``"ML"``
        (see the module docstring for the multi-arm covariance used).
    """
    if not 0.0 < level < 1.0:
        raise DataError(f"nma: level must be between 0 and 1, got {level}")
    if small_values not in ("good", "bad"):
        raise DataError(
            f"nma: small_values must be 'good' or 'bad', got {small_values!r}"
        )
    if tau2 is not None and not (math.isfinite(tau2) and tau2 >= 0):
        raise DataError(f"nma: tau2 must be a finite number >= 0, got {tau2}")
    if method_tau not in ("DL", "REML", "ML"):
        raise DataError(
            f"nma: method_tau must be 'DL', 'REML' or 'ML', got {method_tau!r}"
        )
    treatments, studies = _studies(list(contrasts))
    n = len(treatments)
    _check_connected(treatments, studies)
    z_crit = float(stats.norm.ppf(0.5 + level / 2))

    common = _fit(studies, n, 0.0)
    df = sum(len(s.arms) - 1 for s in studies) - (n - 1)
    q = QTest(common.q, df, _chi2_p(common.q, df))

    # design-by-treatment decomposition: a free effect per design
    designs: dict[tuple[int, ...], list[_Study]] = {}
    for s in studies:
        designs.setdefault(s.arms, []).append(s)
    q_designs = []
    for arms, members in sorted(designs.items()):
        local = {t: k for k, t in enumerate(arms)}
        renamed = [
            _Study(
                s.label,
                tuple(local[t] for t in s.arms),
                tuple((local[i], local[j]) for i, j in s.pairs),
                s.te,
                s.var,
            )
            for s in members
        ]
        df_d = (len(members) - 1) * (len(arms) - 1)
        # one study of a design fits exactly: its Q is 0, not rounding noise
        q_d = _fit(renamed, len(arms), 0.0).q if df_d > 0 else 0.0
        q_designs.append(
            DesignQ(
                tuple(treatments[t] for t in arms),
                len(members),
                QTest(q_d, df_d, _chi2_p(q_d, df_d)),
            )
        )
    q_w = sum(d.q.statistic for d in q_designs)
    df_w = sum(d.q.df for d in q_designs)
    q_within = QTest(q_w, df_w, _chi2_p(q_w, df_w))
    q_between = QTest(
        q.statistic - q_w, df - df_w, _chi2_p(q.statistic - q_w, df - df_w)
    )

    tau2_est: float | None = None
    if tau2 is None and df > 0:
        if method_tau == "DL":
            tau2_est = _tau2_dl(common, n, q.statistic, df)
        else:
            tau2_est = _tau2_likelihood(studies, n, reml=method_tau == "REML")
    tau2_out = tau2 if tau2 is not None else tau2_est
    tau2_used = 0.0 if tau2_out is None else tau2_out
    random = _fit(studies, n, tau2_used)
    i2, i2_lo, i2_hi = _i2(q.statistic, df, z_crit)

    common_est = _pairwise(common.theta, common.lplus, z_crit)
    random_est = _pairwise(random.theta, random.lplus, z_crit)
    prop_common = _prop_direct(studies, n, 0.0)
    prop_random = _prop_direct(studies, n, tau2_used)
    return NmaResult(
        treatments=treatments,
        studies=tuple(s.label for s in studies),
        level=level,
        small_values=small_values,
        common=common_est,
        random=random_est,
        q=q,
        q_within=q_within,
        q_between=q_between,
        q_designs=tuple(q_designs),
        tau2=tau2_out,
        tau=None if tau2_out is None else math.sqrt(tau2_out),
        tau2_method="preset" if tau2 is not None else method_tau,
        i2=i2,
        i2_lower=i2_lo,
        i2_upper=i2_hi,
        pscores_common=_pscores(common_est, small_values),
        pscores_random=_pscores(random_est, small_values),
        split_common=_split(
            treatments, studies, common_est, 0.0, prop_common, prop_common, z_crit
        ),
        split_random=_split(
            treatments, studies, random_est, tau2_used, prop_random, prop_common, z_crit
        ),
    )


def league_table(
    result: NmaResult, model: Literal["common", "random"] = "common", digits: int = 2
) -> tuple[tuple[str, ...], ...]:
    """The league table as text: treatments on the diagonal, ``TE (lower; upper)``.

    Cell ``[i][j]`` (``i != j``) is row treatment ``i`` minus column treatment ``j``,
    as ``PairwiseEstimates.te[i, j]``; the upper triangle repeats the lower one with
    the sign flipped.
    """
    est = result.common if model == "common" else result.random
    rows = []
    for i, name in enumerate(result.treatments):
        cells = []
        for j in range(len(result.treatments)):
            if i == j:
                cells.append(name)
            else:
                cells.append(
                    f"{est.te[i, j]:.{digits}f} "
                    f"({est.lower[i, j]:.{digits}f}; {est.upper[i, j]:.{digits}f})"
                )
        rows.append(tuple(cells))
    return tuple(rows)


# -- input ---------------------------------------------------------------------------


def _studies(contrasts: Sequence[Contrast]) -> tuple[tuple[str, ...], list[_Study]]:
    if not contrasts:
        raise DataError("nma: no contrasts given; give at least one study's contrasts")
    for c in contrasts:
        where = f"nma: study {c.studlab!r} ({c.treat1} vs {c.treat2})"
        for key in ("studlab", "treat1", "treat2"):
            value = getattr(c, key)
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"{where}: {key} must be a non-empty name, got {value!r}"
                )
        if c.treat1 == c.treat2:
            raise DataError(
                f"{where}: compares a treatment with itself (a single-arm study); "
                "a study needs two or more different arms"
            )
        if not math.isfinite(float(c.TE)):
            raise DataError(f"{where}: TE must be a finite number, got {c.TE!r}")
        if not (math.isfinite(float(c.seTE)) and float(c.seTE) > 0):
            raise DataError(
                f"{where}: seTE must be a finite number > 0, got {c.seTE!r}"
            )
    treatments = tuple(
        sorted({c.treat1 for c in contrasts} | {c.treat2 for c in contrasts})
    )
    if len(treatments) < 2:
        raise DataError("nma: the network has only one treatment; it needs two or more")
    pos = {t: k for k, t in enumerate(treatments)}
    by_study: dict[str, list[Contrast]] = {}
    for c in contrasts:
        by_study.setdefault(c.studlab, []).append(c)
    studies = []
    for label in sorted(by_study):
        rows = by_study[label]
        arms = tuple(
            sorted({pos[c.treat1] for c in rows} | {pos[c.treat2] for c in rows})
        )
        seen: dict[tuple[int, int], Contrast] = {}
        te, var = [], []
        for c in rows:
            i, j = pos[c.treat1], pos[c.treat2]
            pair, sign = ((i, j), 1.0) if i < j else ((j, i), -1.0)
            if pair in seen:
                raise DataError(
                    f"nma: study {label!r} gives {c.treat1} vs {c.treat2} twice; "
                    "give each pair of arms once"
                )
            seen[pair] = c
            te.append(sign * float(c.TE))
            var.append(float(c.seTE) ** 2)
        k = len(arms)
        if len(seen) != k * (k - 1) // 2:
            missing = [
                f"{treatments[a]} vs {treatments[b]}"
                for n_a, a in enumerate(arms)
                for b in arms[n_a + 1 :]
                if (a, b) not in seen
            ]
            raise DataError(
                f"nma: study {label!r} has {k} arms but lacks the contrasts "
                f"{', '.join(missing)}; a multi-arm study must give all its pairs"
            )
        study = _Study(label, arms, tuple(seen), np.array(te), np.array(var))
        if k > 2:
            _check_multiarm(study, treatments)
            problem = multiarm_variance_problem(
                label,
                [treatments[a] for a in arms],
                {
                    (treatments[i], treatments[j]): float(v)
                    for (i, j), v in zip(study.pairs, study.var, strict=True)
                },
            )
            if problem:
                raise DataError(f"nma: {problem}")
        studies.append(study)
    return treatments, studies


def _check_multiarm(study: _Study, treatments: tuple[str, ...]) -> None:
    te = {p: t for p, t in zip(study.pairs, study.te, strict=True)}
    arms = study.arms
    for a in range(len(arms)):
        for b in range(a + 1, len(arms)):
            for c in range(b + 1, len(arms)):
                i, j, k = arms[a], arms[b], arms[c]
                gap = te[(i, k)] - te[(i, j)] - te[(j, k)]
                if abs(gap) > MULTIARM_TOLERANCE:
                    raise DataError(
                        f"nma: study {study.label!r} is inconsistent: TE "
                        f"{treatments[i]} vs {treatments[k]} differs from "
                        f"{treatments[i]} vs {treatments[j]} plus {treatments[j]} vs "
                        f"{treatments[k]} by {gap:.6g}; a multi-arm study's contrasts "
                        "must come from the same arms"
                    )


def _check_connected(treatments: tuple[str, ...], studies: list[_Study]) -> None:
    parent = list(range(len(treatments)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s in studies:
        for i, j in s.pairs:
            parent[root(i)] = root(j)
    groups: dict[int, list[str]] = {}
    for k, t in enumerate(treatments):
        groups.setdefault(root(k), []).append(t)
    if len(groups) > 1:
        parts = sorted(groups.values())
        listed = "; ".join("{" + ", ".join(p) + "}" for p in parts)
        raise DataError(
            f"nma: the network is disconnected ({len(parts)} components: {listed}); "
            "add studies linking them or analyse each component separately"
        )


# -- kernels -------------------------------------------------------------------------


def reduced_weights(variances: FloatArray, k: int) -> FloatArray:
    """The reduced weights of a ``k``-arm study, as netmeta's (Rücker & Schwarzer 2014).

    ``variances`` lists the contrast variances in the order (1,2), (1,3), ...,
    (k-1,k); the result lists the edge weights in the same order.

    >>> reduced_weights(np.array([2.0, 2.0, 2.0]), 3).round(6).tolist()
    [0.333333, 0.333333, 0.333333]
    """
    m = k * (k - 1) // 2
    if variances.shape != (m,):
        raise DataError(f"nma: a {k}-arm study needs {m} contrast variances")
    if k == 2:
        return 1.0 / variances
    r = np.zeros((k, k))
    iu = np.triu_indices(k, 1)
    r[iu] = variances
    r = r + r.T
    p = np.eye(k) - 1.0 / k
    lt = -0.5 * p @ r @ p
    lap = np.linalg.pinv(lt)
    w = -lap[iu]
    # netmeta: a negative weight contributing under 0.1 % of the total is set to 0
    total = float(np.abs(w).sum())
    w[(w < 0) & (np.abs(w) / total < 0.001)] = 0.0
    return np.asarray(w, dtype=np.float64)


def _fit(studies: Sequence[_Study], n: int, tau2: float) -> _Fit:
    edges: list[tuple[int, int]] = []
    weights: list[float] = []
    te: list[float] = []
    study_of_edge: list[int] = []
    for s_idx, s in enumerate(studies):
        k = len(s.arms)
        local = {t: a for a, t in enumerate(s.arms)}
        # order the pairs as (1,2), (1,3), ... in the study's arm order
        order = sorted(
            range(len(s.pairs)),
            key=lambda e: (local[s.pairs[e][0]], local[s.pairs[e][1]]),
        )
        var = s.var[order] + tau2
        w = reduced_weights(var, k)
        for e, weight in zip(order, w, strict=True):
            edges.append(s.pairs[e])
            weights.append(float(weight))
            te.append(float(s.te[e]))
            study_of_edge.append(s_idx)
    b = _incidence(edges, n)
    w_arr = np.array(weights)
    y = np.array(te)
    lap = b.T @ (w_arr[:, None] * b)
    lplus = _laplacian_pinv(lap)
    theta = lplus @ (b.T @ (w_arr * y))
    theta = theta - theta.mean()
    resid = y - b @ theta
    q = float(np.sum(w_arr * resid**2))
    return _Fit(theta, lplus, q, tuple(edges), w_arr, y, tuple(study_of_edge))


def _incidence(edges: Sequence[tuple[int, int]], n: int) -> FloatArray:
    b = np.zeros((len(edges), n))
    for e, (i, j) in enumerate(edges):
        b[e, i] = 1.0
        b[e, j] = -1.0
    return b


def _laplacian_pinv(lap: FloatArray) -> FloatArray:
    """Moore-Penrose pseudoinverse of a connected graph's Laplacian: (L + J/n)^-1 - J/n."""
    n = lap.shape[0]
    j = np.full((n, n), 1.0 / n)
    out = np.linalg.inv(lap + j) - j
    return np.asarray((out + out.T) / 2, dtype=np.float64)


def _tau2_dl(fit: _Fit, n: int, q: float, df: int) -> float:
    b = _incidence(fit.edges, n)
    w = fit.weights
    h = (b @ fit.lplus @ b.T) * w[None, :]
    same = np.equal.outer(np.array(fit.study_of_edge), np.array(fit.study_of_edge))
    m0 = (b @ b.T) * same / 2.0
    mw = m0 * w[None, :]
    denom = float(np.trace(mw) - np.trace(h @ mw))
    return max(0.0, (q - df) / denom)


def _i2(q: float, df: int, z: float) -> tuple[float | None, float | None, float | None]:
    if df <= 0:
        return None, None, None
    k = df + 1
    h = math.sqrt(q / df)
    if q > k:
        se_log_h: float | None = (
            0.5
            * (math.log(q) - math.log(df))
            / (math.sqrt(2 * q) - math.sqrt(2 * k - 3))
        )
    elif k > 2:
        se_log_h = math.sqrt(1 / (2 * (k - 2)) * (1 - 1 / (3 * (k - 2) ** 2)))
    else:
        se_log_h = None
    h_point = max(h, 1.0)

    def to_i2(x: float) -> float:
        return (x**2 - 1) / x**2

    if se_log_h is None:
        return to_i2(h_point), None, None
    log_h = math.log(h_point)
    lower = max(math.exp(log_h - z * se_log_h), 1.0)
    upper = max(math.exp(log_h + z * se_log_h), 1.0)
    return to_i2(h_point), to_i2(lower), to_i2(upper)


def _chi2_p(q: float, df: int) -> float | None:
    return float(stats.chi2.sf(q, df)) if df > 0 else None


def _pairwise(theta: FloatArray, lplus: FloatArray, z_crit: float) -> PairwiseEstimates:
    te = theta[:, None] - theta[None, :]
    d = np.diag(lplus)
    var = d[:, None] + d[None, :] - 2 * lplus
    np.fill_diagonal(var, 0.0)
    se = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, te / np.where(se > 0, se, 1.0), 0.0)
    pvalue = 2 * stats.norm.sf(np.abs(z))
    return PairwiseEstimates(
        te, se, te - z_crit * se, te + z_crit * se, z, pvalue, theta, lplus
    )


def _pscores(est: PairwiseEstimates, small_values: SmallValues) -> tuple[float, ...]:
    n = est.te.shape[0]
    sign = -1.0 if small_values == "good" else 1.0
    prob = stats.norm.cdf(sign * est.z)
    np.fill_diagonal(prob, 0.0)
    return tuple(float(v) for v in prob.sum(axis=1) / (n - 1))


def _estimate(te: float, se: float, z_crit: float) -> Estimate:
    """An estimate with its CI, z and p; z and p are NaN when ``se`` is not > 0."""
    if not (math.isfinite(se) and se > 0.0):
        return Estimate(te, se, te, te, math.nan, math.nan)
    z = te / se
    return Estimate(
        te, se, te - z_crit * se, te + z_crit * se, z, float(2 * stats.norm.sf(abs(z)))
    )


def _split(
    treatments: tuple[str, ...],
    studies: Sequence[_Study],
    est: PairwiseEstimates,
    tau2: float,
    prop: FloatArray,
    prop_common: FloatArray,
    z_crit: float,
) -> tuple[SplitRow, ...]:
    """The back-calculation of netmeta.R with the display rules of netsplit.

    ``prop`` is this model's direct-evidence proportion, ``prop_common`` the
    common-effects one (netsplit hides the direct estimate of *both* models by it).
    """
    sums: dict[tuple[int, int], list[float]] = {}
    for s in studies:
        for (i, j), te, var in zip(s.pairs, s.te, s.var, strict=True):
            acc = sums.setdefault((i, j), [0.0, 0.0, 0.0])
            w = 1.0 / (var + tau2)
            acc[0] += w
            acc[1] += w * te
            acc[2] += 1
    rows = []
    n = len(treatments)
    for i in range(n):
        for j in range(i + 1, n):
            network = _estimate(float(est.te[i, j]), float(est.se[i, j]), z_crit)
            p = float(prop[i, j])
            if (i, j) not in sums:
                # only indirect evidence: netsplit shows the network estimate
                rows.append(
                    SplitRow(
                        treatments[i], treatments[j], 0, p, network, None, network, None
                    )
                )
                continue
            w_sum, wte, k = sums[(i, j)]
            direct_te, direct_se = wte / w_sum, math.sqrt(1.0 / w_sum)
            # netmeta.R: TE.direct is 0 where P ~ 0; no indirect where P ~ 1 or P > 1
            te_dir = 0.0 if abs(p) < _SQRT_EPS else direct_te
            indirect = None
            if not (abs(p - 1.0) < _SQRT_EPS or p > 1.0):
                indirect = _estimate(
                    (network.te - p * te_dir) / (1.0 - p),
                    math.sqrt(network.se**2 / (1.0 - p)),
                    z_crit,
                )
            # netsplit's direct.indirect(): tol.direct, the direct by the common P
            if abs(p - 1.0) < DIRECT_TOLERANCE:
                indirect = None
            direct = None
            if not abs(float(prop_common[i, j])) < DIRECT_TOLERANCE:
                direct = _estimate(direct_te, direct_se, z_crit)
            difference = None
            if direct is not None and indirect is not None:
                difference = _estimate(
                    direct.te - indirect.te,
                    math.sqrt(direct.se**2 + indirect.se**2),
                    z_crit,
                )
            rows.append(
                SplitRow(
                    treatments[i],
                    treatments[j],
                    int(k),
                    p,
                    network,
                    direct,
                    indirect,
                    difference,
                )
            )
    return tuple(rows)


def _prop_direct(studies: Sequence[_Study], n: int, tau2: float) -> FloatArray:
    """The direct-evidence proportions of netmeta (``netmeasures``, ``nma_krahn``).

    ``v_net / v_direct`` per pair with studies, where ``v_net`` is the GLS variance of
    Krahn et al. (2013): each study's basic contrasts versus its first arm with
    covariance ``(v_1i + v_1j - v_ij) / 2`` (contrast variances plus ``tau2``), and
    ``v_direct`` the inverse-variance pooled variance of the pair's contrasts. 0 without
    direct evidence; 1 everywhere off the diagonal for two treatments.
    """
    prop = np.zeros((n, n))
    if n == 2:
        prop[0, 1] = prop[1, 0] = 1.0
        return prop
    info = np.zeros((n, n))
    w_direct = np.zeros((n, n))
    for s in studies:
        var = {p: v + tau2 for p, v in zip(s.pairs, s.var, strict=True)}
        for (i, j), v in var.items():
            w_direct[i, j] += 1.0 / v
        base, others = s.arms[0], s.arms[1:]
        k = len(others)
        v_s = np.empty((k, k))
        for a, ta in enumerate(others):
            for b, tb in enumerate(others):
                v_s[a, b] = (
                    var[(base, ta)]
                    if a == b
                    else (var[(base, ta)] + var[(base, tb)] - var[_pair(ta, tb)]) / 2
                )
        c = np.zeros((k, n))
        c[np.arange(k), list(others)] = 1.0
        c[:, base] = -1.0
        info += c.T @ np.linalg.pinv(v_s) @ c
    cov = _laplacian_pinv(info)
    d = np.diag(cov)
    v_net = d[:, None] + d[None, :] - 2 * cov
    has = w_direct > 0
    prop[has] = v_net[has] * w_direct[has]
    return np.asarray(np.maximum(prop, prop.T), dtype=np.float64)


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


# -- (restricted) maximum likelihood -------------------------------------------------


@dataclass(frozen=True)
class _Gls:
    """The basic-contrast model ``y ~ N(X d, V + tau2 V0)`` of a network."""

    y: FloatArray
    x: FloatArray
    v: FloatArray
    v0: FloatArray


def _basic_model(studies: Sequence[_Study], n: int) -> _Gls:
    ys: list[float] = []
    xs: list[FloatArray] = []
    blocks: list[tuple[FloatArray, FloatArray]] = []
    for s in studies:
        k = len(s.arms)
        te = dict(zip(s.pairs, s.te, strict=True))
        var = dict(zip(s.pairs, s.var, strict=True))
        # Lt = -P R P / 2 over the study's arms: the arm-level covariance (up to
        # centring) that the reduced weights imply
        r = np.zeros((k, k))
        for a in range(k):
            for b in range(a + 1, k):
                r[a, b] = r[b, a] = var[(s.arms[a], s.arms[b])]
        centre = np.eye(k) - 1.0 / k
        lt = -0.5 * centre @ r @ centre
        c_local = np.zeros((k - 1, k))
        c_local[:, 0] = -1.0
        c_local[np.arange(k - 1), np.arange(1, k)] = 1.0
        blocks.append(
            (c_local @ lt @ c_local.T, (np.eye(k - 1) + np.ones((k - 1, k - 1))) / 2)
        )
        base = s.arms[0]
        for other in s.arms[1:]:
            ys.append(-float(te[(base, other)]))  # theta_other - theta_base
            row = np.zeros(n)
            row[other], row[base] = 1.0, -1.0
            xs.append(row[1:])
    m = len(ys)
    v = np.zeros((m, m))
    v0 = np.zeros((m, m))
    at = 0
    for b_v, b_v0 in blocks:
        size = b_v.shape[0]
        v[at : at + size, at : at + size] = b_v
        v0[at : at + size, at : at + size] = b_v0
        at += size
    return _Gls(np.array(ys), np.array(xs), v, v0)


def _loglik_parts(model: _Gls, tau2: float, reml: bool) -> tuple[float, float, float]:
    """Log-likelihood (up to a constant), score and observed information in tau2."""
    sigma = model.v + tau2 * model.v0
    chol = np.linalg.cholesky(sigma)
    inv = np.linalg.inv(chol)
    s_inv = inv.T @ inv
    s_inv_x = s_inv @ model.x
    info_x = model.x.T @ s_inv_x
    proj = s_inv - s_inv_x @ np.linalg.solve(info_x, s_inv_x.T)
    py = proj @ model.y
    logdet = 2.0 * float(np.sum(np.log(np.diag(chol))))
    ll = -0.5 * (logdet + float(model.y @ py))
    a = proj if reml else s_inv
    if reml:
        ll -= 0.5 * float(np.linalg.slogdet(info_x)[1])
    av0 = a @ model.v0
    v0py = model.v0 @ py
    score = -0.5 * float(np.trace(av0)) + 0.5 * float(py @ v0py)
    # -d2l/dtau2^2 = -tr(A V0 A V0) / 2 + y'P V0 P V0 P y (A = P for REML)
    obs = -0.5 * float(np.sum(av0 * av0.T)) + float(v0py @ proj @ v0py)
    return ll, score, obs


def _tau2_likelihood(studies: Sequence[_Study], n: int, *, reml: bool = True) -> float:
    """REML (or ML) estimate of tau^2 in the contrast-based network model.

    Maximises the profile (restricted) log-likelihood of ``y ~ N(X d, V + tau2 V0)`` on
    the basic contrasts (module docstring) over ``tau2 >= 0``: a log-spaced grid
    brackets the maximum, Brent's method finds the root of the score there, and Newton
    steps polish it (to about 1e-12 relative). Returns 0 when the score at 0 is <= 0
    and the grid finds nothing higher.
    """
    model = _basic_model(studies, n)
    scale = float(np.mean(np.diag(model.v)))
    grid = [0.0] + [scale * 10.0**e for e in np.arange(-8.0, 4.01, 0.25)]
    lls = [_loglik_parts(model, t, reml)[0] for t in grid]
    while int(np.argmax(lls)) == len(grid) - 1:
        if grid[-1] > 1e12 * scale:
            raise DataError(
                "nma: the REML/ML likelihood of tau2 keeps rising; the contrasts "
                "cannot identify tau2, use method_tau='DL' or preset tau2"
            )
        grid.append(grid[-1] * 10.0)
        lls.append(_loglik_parts(model, grid[-1], reml)[0])
    g = int(np.argmax(lls))

    def score(t: float) -> float:
        return _loglik_parts(model, t, reml)[1]

    s_g = score(grid[g])
    if g == 0 and s_g <= 0.0:
        return 0.0
    lo, hi = (grid[g], grid[g + 1]) if s_g > 0 else (grid[g - 1], grid[g])
    if score(lo) > 0.0 > score(hi):
        est = float(optimize.brentq(score, lo, hi, xtol=1e-300, rtol=1e-15))
    else:  # no sign change: maximise directly within the grid cell pair
        lo, hi = grid[max(g - 1, 0)], grid[g + 1]
        res = optimize.minimize_scalar(
            lambda t: -_loglik_parts(model, t, reml)[0],
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-14 * max(hi, 1e-300)},
        )
        est = float(res.x)
    for _ in range(5):  # Newton polishing, kept only while it stays in the bracket
        _, sc, obs = _loglik_parts(model, est, reml)
        if obs <= 0.0:
            break
        step = sc / obs
        if not lo <= est + step <= hi:
            break
        est += step
        if abs(step) <= 1e-13 * max(est, scale):
            break
    return max(est, 0.0)
