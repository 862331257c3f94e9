"""Reproduce every number in rmst_reference.json from the formulas in README.md.

Run from the repository root:  .venv/bin/python tests/reference/check_rmst_formula.py

The Kaplan-Meier table is built here with numpy from the CSV rows (no R), then
RMST, se(rmean), survival at t with Greenwood SE, the log and log-log CIs and the
group differences are computed as documented and compared with R's constants.
lifelines' KaplanMeierFitter is used as an independent check of S(t) and of the
log-log band. Exits non-zero if any difference exceeds 1e-10.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import restricted_mean_survival_time
from scipy.stats import norm

HERE = Path(__file__).parent
REF = json.loads((HERE / "rmst_reference.json").read_text())
TOL = 1e-10


def km_table(time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Distinct times t_i (events or censorings), n_i at risk, d_i events, S(t_i)."""
    t = np.unique(time)
    n = np.array([(time >= x).sum() for x in t], dtype=float)
    d = np.array([((time == x) & (event == 1)).sum() for x in t], dtype=float)
    s = np.cumprod(1.0 - d / n)
    # Greenwood increment, 0 when n_i == d_i (as survmean's hh)
    h = np.divide(d, n * (n - d), out=np.zeros_like(d), where=(n - d) > 0)
    return pd.DataFrame({"t": t, "n": n, "d": d, "S": s, "h": h})


def rmst(tab: pd.DataFrame, tau: float) -> tuple[float, float]:
    """RMST = int_0^tau S and its SE as survival:::survmean.

    var = sum_{t_i <= tau} A_i^2 d_i / (n_i (n_i - d_i)),  A_i = int_{t_i}^tau S.
    """
    k = tab[tab.t <= tau]
    knots = np.concatenate([[0.0], k.t.to_numpy(), [tau]])  # S = 1 on [0, t_1)
    level = np.concatenate([[1.0], k.S.to_numpy()])  # S on [knots[j], knots[j+1])
    # the last piece carries S(t_k) flat up to tau (also when tau > last time)
    pieces = np.diff(knots) * level
    # A_i = int_{t_i}^tau S(t) dt, one per kept t_i
    a = np.cumsum(pieces[::-1])[::-1][1:]
    return float(pieces.sum()), float(np.sqrt(np.sum(a**2 * k.h.to_numpy())))


def surv_at(tab: pd.DataFrame, at: float, z: float) -> dict[str, float]:
    row = tab[tab.t <= at].iloc[-1]  # right-continuous step function
    s = float(row.S)
    v = float(tab[tab.t <= at].h.sum())  # Greenwood sum = var of the cumulative hazard
    se_h = np.sqrt(v)
    c = np.exp(z * se_h / np.log(s))  # log-log: S ** exp(+-z se_H / log S)
    return {
        "surv": s,
        "std_err": s * se_h,
        "lower": s ** (1 / c),
        "upper": s**c,
        "log_lower": s * np.exp(-z * se_h),
        "log_upper": min(s * np.exp(z * se_h), 1.0),
        # R's n.risk at a requested time is #{time >= at}, not n_i of the last t_i <= at
        "n_risk": float(tab[tab.t >= at].n.iloc[0]) if (tab.t >= at).any() else 0.0,
        "cumhaz_se": se_h,
    }


def diff(group: str, ref: str, est: dict, se: dict, z: float) -> dict:
    dd = est[group] - est[ref]
    s = float(np.hypot(se[group], se[ref]))
    return {
        "group": group,
        "reference": ref,
        "difference": dd,
        "se": s,
        "ci_lower": dd - z * s,
        "ci_upper": dd + z * s,
    }


def main() -> int:
    z = float(norm.ppf(0.975))
    worst: dict[str, float] = {}

    def compare(kind: str, ours: dict, theirs: dict, where: str) -> None:
        for key, value in theirs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                err = abs(float(ours[key]) - float(value))
                worst[kind] = max(worst.get(kind, 0.0), err)
                if err > TOL:
                    print(f"  MISMATCH {where}.{key}: ours {ours[key]!r} R {value!r}")
            elif isinstance(value, str):
                assert ours[key] == value, (where, key)

    compare("z", {"z": z}, {"z": REF["header"]["z"]}, "header")
    extra: dict[str, float] = {}
    for case, body in REF.items():
        if case == "header":
            continue
        spec = body["spec"]
        frame = pd.read_csv(HERE / spec["csv"])
        groups = spec["groups"]
        tabs, kms = {}, {}
        for g in groups:
            rows = frame[frame[spec["group"]].astype(str) == g]
            tabs[g] = km_table(
                rows[spec["time"]].to_numpy(float), rows[spec["event"]].to_numpy(int)
            )
            kms[g] = KaplanMeierFitter().fit(rows[spec["time"]], rows[spec["event"]])
            # independent check of S(t_i) and of the log-log band against lifelines
            # drop lifelines' extra t = 0 row
            sf = kms[g].survival_function_.iloc[1:, 0].to_numpy()
            ci = kms[g].confidence_interval_.iloc[1:].to_numpy()
            extra["lifelines S(t)"] = max(
                extra.get("lifelines S(t)", 0.0),
                float(np.max(np.abs(sf - tabs[g].S.to_numpy()))),
            )
            ok = (tabs[g].S > 0).to_numpy()
            mine = np.array(
                [
                    [surv_at(tabs[g], t, z)["lower"], surv_at(tabs[g], t, z)["upper"]]
                    for t in tabs[g].t[ok]
                ]
            )
            extra["lifelines log-log CI"] = max(
                extra.get("lifelines log-log CI", 0.0),
                float(np.max(np.abs(mine - ci[ok]))),
            )
        for key, value in body.items():
            kind, _, num = key.rpartition("_")
            if kind == "rmst":
                tau = float(num)
                est, se = {}, {}
                for g in groups:
                    est[g], se[g] = rmst(tabs[g], tau)
                    t = tabs[g]
                    ours = {
                        "rmean": est[g],
                        "se": se[g],
                        "records": t.n.iloc[0],
                        "events": t.d.sum(),
                        "last_time": t.t.max(),
                    }
                    compare("rmst", ours, value[g], f"{case}.{key}.{g}")
                    lf = restricted_mean_survival_time(kms[g], t=tau)
                    extra["lifelines RMST estimate"] = max(
                        extra.get("lifelines RMST estimate", 0.0), abs(lf - est[g])
                    )
                    assert value[g]["tau_beyond_last_time"] == bool(tau > t.t.max())
                compare(
                    "rmst diff",
                    diff(groups[1], groups[0], est, se, z),
                    body[f"diff_rmst_{num}"],
                    f"{case}.diff_rmst_{num}",
                )
            elif kind == "surv":
                at = float(num)
                ests = {g: surv_at(tabs[g], at, z) for g in groups}
                for g in groups:
                    compare("surv", ests[g], value[g], f"{case}.{key}.{g}")
                compare(
                    "surv diff",
                    diff(
                        groups[1],
                        groups[0],
                        {g: ests[g]["surv"] for g in groups},
                        {g: ests[g]["std_err"] for g in groups},
                        z,
                    ),
                    body[f"diff_surv_{num}"],
                    f"{case}.diff_surv_{num}",
                )
    print("max |Python formula - R| by quantity:")
    for kind, err in worst.items():
        print(f"  {kind:12s} {err:.3e}")
    overall = max(worst.values())
    print(f"overall max abs difference: {overall:.3e} (tolerance {TOL:g})")
    print("independent cross-checks (informational):")
    for kind, err in extra.items():
        print(f"  {kind:24s} {err:.3e}")
    return 0 if overall <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
