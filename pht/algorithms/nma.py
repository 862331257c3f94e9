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
* **tau^2**: netmeta's generalised DerSimonian-Laird
  ``max(0, (Q - df) / tr((I - H) (B B' o E / 2) W))`` with ``H = B L^+ B' W`` and
  ``E[e, f] = 1`` when edges ``e``, ``f`` come from the same study; **I^2** and its CI
  as Higgins & Thompson (2002) via ``H = sqrt(Q / df)``.
* **Random effects**: ``tau^2`` added to every contrast's variance *before* the
  multi-arm reduction, then the same fit.
* **P-scores** (Rücker & Schwarzer 2015): the mean over the other treatments of
  ``Phi(-z_ij)`` (``small_values="good"``) or ``Phi(z_ij)`` (``"bad"``).
* **SIDE split** by back-calculation (netmeta ``netsplit``): direct = inverse-variance
  pooled contrasts of the pair (variances plus ``tau^2`` for random effects), ``P =
  se_nma^2 / se_direct^2``, indirect ``(TE_nma - P TE_direct) / (1 - P)`` with
  ``se_nma / sqrt(1 - P)``, and the z-test of direct minus indirect.

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
from scipy import stats

from pht.algorithms.pairwise import Contrast
from pht.errors import DataError

FloatArray = npt.NDArray[np.float64]
SmallValues = Literal["good", "bad"]

#: netmeta's ``tol.multiarm``: largest |TE_AC - (TE_AB + TE_BC)| in a multi-arm study
MULTIARM_TOLERANCE = 0.001
#: netmeta's ``tol.direct``: a direct-evidence proportion this close to 0 or 1 is 0 or 1
DIRECT_TOLERANCE = 0.0005


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
    league table's content.
    """

    te: FloatArray
    se: FloatArray
    lower: FloatArray
    upper: FloatArray
    z: FloatArray
    pvalue: FloatArray


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

    ``direct`` is None without studies of the pair; ``indirect`` is None when the
    evidence is all direct (``prop_direct`` 1), and equals the network estimate when it
    is all indirect. ``difference`` is direct minus indirect (None unless both exist).
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
    """The fitted network: common- and random-effects estimates and their diagnostics."""

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
        ``tau.preset``); None estimates it by netmeta's DerSimonian-Laird.
    """
    if not 0.0 < level < 1.0:
        raise DataError(f"nma: level must be between 0 and 1, got {level}")
    if small_values not in ("good", "bad"):
        raise DataError(
            f"nma: small_values must be 'good' or 'bad', got {small_values!r}"
        )
    if tau2 is not None and not (math.isfinite(tau2) and tau2 >= 0):
        raise DataError(f"nma: tau2 must be a finite number >= 0, got {tau2}")
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

    tau2_dl = _tau2_dl(common, n, q.statistic, df) if df > 0 else None
    tau2_used = tau2 if tau2 is not None else (tau2_dl if tau2_dl is not None else 0.0)
    random = _fit(studies, n, tau2_used)
    i2, i2_lo, i2_hi = _i2(q.statistic, df, z_crit)

    common_est = _pairwise(common.theta, common.lplus, z_crit)
    random_est = _pairwise(random.theta, random.lplus, z_crit)
    tau2_out = tau2 if tau2 is not None else tau2_dl
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
        i2=i2,
        i2_lower=i2_lo,
        i2_upper=i2_hi,
        pscores_common=_pscores(common_est, small_values),
        pscores_random=_pscores(random_est, small_values),
        split_common=_split(treatments, studies, common_est, 0.0, z_crit),
        split_random=_split(treatments, studies, random_est, tau2_used, z_crit),
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
    return PairwiseEstimates(te, se, te - z_crit * se, te + z_crit * se, z, pvalue)


def _pscores(est: PairwiseEstimates, small_values: SmallValues) -> tuple[float, ...]:
    n = est.te.shape[0]
    sign = -1.0 if small_values == "good" else 1.0
    prob = stats.norm.cdf(sign * est.z)
    np.fill_diagonal(prob, 0.0)
    return tuple(float(v) for v in prob.sum(axis=1) / (n - 1))


def _estimate(te: float, se: float, z_crit: float) -> Estimate:
    z = te / se
    return Estimate(
        te, se, te - z_crit * se, te + z_crit * se, z, float(2 * stats.norm.sf(abs(z)))
    )


def _split(
    treatments: tuple[str, ...],
    studies: Sequence[_Study],
    est: PairwiseEstimates,
    tau2: float,
    z_crit: float,
) -> tuple[SplitRow, ...]:
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
            if (i, j) not in sums:
                rows.append(
                    SplitRow(
                        treatments[i],
                        treatments[j],
                        0,
                        0.0,
                        network,
                        None,
                        network,
                        None,
                    )
                )
                continue
            w_sum, wte, k = sums[(i, j)]
            direct = _estimate(wte / w_sum, math.sqrt(1.0 / w_sum), z_crit)
            prop = network.se**2 / direct.se**2
            indirect = difference = None
            if abs(prop - 1.0) >= DIRECT_TOLERANCE and prop < 1.0:
                indirect = _estimate(
                    (network.te - prop * direct.te) / (1.0 - prop),
                    network.se / math.sqrt(1.0 - prop),
                    z_crit,
                )
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
                    prop,
                    network,
                    direct,
                    indirect,
                    difference,
                )
            )
    return tuple(rows)
