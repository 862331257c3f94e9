"""``means``: n, mean and SD of a continuous outcome per group, pooled exactly.

For continuous outcomes such as ``cost_eur`` or ``dose_mg_total`` (issue 12): per
level of a group column (e.g. ``regimen``) each station releases the
:class:`~pht.algorithms.means.Moments` of the measure (of its logarithm with
``scale: log``); the orchestrator adds them exactly (Chan's update,
:func:`~pht.algorithms.means.pool_moments`) and compares every group with a reference
(:func:`~pht.algorithms.equivalence.mean_difference`,
:func:`~pht.algorithms.equivalence.ratio_of_geometric_means`).

Station side
------------
:func:`station_output` is the one computation: the train's entrypoint calls it, and
the station calls it again on its own extract (:attr:`TrainPlugin.recompute`) and
releases its own values. Per level: ``n``, ``total`` (the sum) and ``squares`` (the
sum of squared deviations from the level's mean at this station). Before anything
leaves, the whole request is refused (:class:`~pht.errors.DisclosureError`, nothing
released) when:

1. **rounding**: the policy sets ``rounding_base > 1``. Rounding ``n`` while the sums
   stay exact would make ``total / n`` a wrong mean, and rounding the sums would break
   the exact pooling; so the station refuses means rather than release numbers that
   are neither exact nor protected by the rounding;
2. **threshold**: a level holds ``0 < n < k`` patients (the station's extraction
   refuses such a group column first, as for ``survival.km``): merge levels, or leave
   the level out of the population;
3. a level count above :data:`MAX_GROUPS` (the output schema's cap);
4. **tied mass**: in a level, a value is shared by two or more patients and fewer
   than ``k`` (but some) patients differ from it. Someone who knows the common value
   (a fixed dose is public) would solve one or two others from ``total`` and
   ``squares`` (two equations) and narrow a few more down; the rule the station
   applies to covariates, applied to the measure within each level;
5. **dominance** ((1, p) rule, ``p = dominance_share``) on both released sums: one
   patient's ``|x|`` over ``p`` of the level's sum of ``|x|``, or one patient's squared
   deviation over ``p`` of ``squares`` (a lone outlier among similar values would be
   nearly determined by ``n``, ``total`` and ``squares``). With ``p = 1`` it never
   fires. On the log scale both apply to the log values, which are what is summed.

What this does not protect, by design or not yet:

* a level whose patients all share one value (``squares = 0``) discloses that value
  for every member: attribute disclosure about a group of at least ``k``, as a count
  table gives when all of a level fall in one cell;
* ``n``, mean and SD bound every value of the level (Samuelson: each lies within
  ``mean +/- sd (n - 1) / sqrt(n)``); that is what a mean and an SD are;
* differencing across requests: the station keeps no release history for ``means``.
  Two requests whose group levels differ by fewer than ``k`` patients (a level of one
  column that equals a level of another plus a few patients), or the same measure on
  the raw and the log scale, add equations about the same patients that no single
  request shows;
* sums are released at full double precision. A train cannot hide bits in them (the
  station releases its own values), but they carry all the data's information.

Orchestrator side
-----------------
:func:`pool`: result key ``means`` with per group ``n``, ``mean``, ``sd`` and the
``1 - alpha`` t CI of the mean (log scale: ``mean_log``, ``sd_log`` and the geometric
mean with its CI); with ``reference_group``, ``comparisons`` of every other group
against it (estimate, SE, df, CI, t, two-sided p, method). Per-station lines only for
stations whose policy shows their name, and none when exactly one station that took
part hides its name (the pooled numbers minus the shown lines would give its own).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pht.algorithms.equivalence import (
    Effect,
    mean_difference,
    ratio_of_geometric_means,
)
from pht.algorithms.levels import (
    agree_level_type,
    canonical_level,
    labels,
    sort_levels,
)
from pht.algorithms.means import Moments, group_moments, pool_moments
from pht.algorithms.utilisation import Rules
from pht.errors import ConfigError, DataError, DisclosureError
from pht.trains import register
from pht.trains.base import Contract, Sections, StationView, TrainPlugin

MAX_GROUPS = 50
"""The most levels a station releases (the manifest's ``max_keys``)."""
MAX_TOTAL = 1e15
"""The largest ``|total|`` the manifest's output schema allows."""
MAX_SQUARES = 1e24
"""The largest ``squares`` the manifest's output schema allows."""
SCALES = ("raw", "log")
VARIANCES = ("welch", "pooled")

Column = Callable[[str], Any]


# -- station side -----------------------------------------------------------------------
def _refuse_level(
    x: np.ndarray, mean: float, k: int, share: float, measure: str, group: str
) -> None:
    """Raise DisclosureError when one level's values may not leave (rules 4 and 5)."""
    _, ties = np.unique(x, return_counts=True)
    common = int(ties.max()) if ties.size else 0
    # all values distinct (common 1) is no tied mass: n = k distinct values pass
    if common >= 2 and 0 < x.size - common < k:
        raise DisclosureError(
            f"a level of '{group}' has fewer than {k} patients whose '{measure}' "
            "differs from the level's most common value (they would follow from the "
            "sum and squares); merge levels or leave the level out"
        )
    size = np.abs(x)
    if size.size and size.max() > share * math.fsum(size) > 0:
        raise DisclosureError(
            f"one patient contributes more than {share:g} of the sum of '{measure}' in "
            f"a level of '{group}' (dominance); merge levels or use the log scale"
        )
    deviation = (x - mean) ** 2
    if deviation.size and deviation.max() > share * math.fsum(deviation) > 0:
        raise DisclosureError(
            f"one patient contributes more than {share:g} of the squared deviations "
            f"of '{measure}' in a level of '{group}' (dominance); merge levels or use "
            "the log scale"
        )


level_rules = _refuse_level
"""The tied-value and dominance rules of one level (also the glm train's, on a
continuous outcome within each covariate value)."""


def station_output(
    parameters: Mapping[str, Any],
    column: Column,
    min_count: int,
    rules: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``means`` train's output from a station's columns (module docstring).

    The one function both the train's entrypoint and the station's recomputation
    call, so they agree exactly. ``column(name)`` returns a column of the extract.

    Raises
    ------
    DisclosureError
        A rule of the module docstring refuses the request.
    DataError
        Missing or (on the log scale) non-positive values, naming the column; sums
        beyond the output schema's bounds.

    Examples
    --------
    >>> data = {"cost": np.arange(1.0, 21.0), "arm": np.array(["a", "b"] * 10)}
    >>> out = station_output({"measure": "cost", "group": "arm"}, data.__getitem__,
    ...                      10, {})
    >>> out["groups"]["a"]
    {'n': 10, 'total': 100.0, 'squares': 330.0}
    """
    measure, group = str(parameters["measure"]), str(parameters["group"])
    log = parameters.get("scale", "raw") == "log"
    policy = Rules.of(min_count, rules)
    if policy.rounding_base > 1:
        raise DisclosureError(
            f"the policy rounds released numbers (rounding_base {policy.rounding_base})"
            " and means are released exact or not at all: rounding n alone would make "
            "the means wrong, rounding the sums would break exact pooling"
        )
    try:
        values = np.asarray(column(measure), dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"column '{measure}' does not hold numbers; name a numeric measure"
        ) from None
    groups = np.asarray(column(group))
    keys, kind = labels(groups)
    found = group_moments(values, groups, log=log, name=measure)
    k, share = policy.min_count, float(policy.dominance_share)
    if any(0 < m.n < k for m in found.values()):
        raise DisclosureError(
            f"a level of '{group}' has fewer than {k} patients at this station; "
            "merge levels or leave the small level out"
        )
    if len(found) > MAX_GROUPS:
        raise DisclosureError(
            f"'{group}' has {len(found)} levels, more than {MAX_GROUPS}; use a "
            "coarser group column"
        )
    scaled = np.log(values) if log else values
    for level, m in found.items():
        _refuse_level(scaled[keys == level], m.mean, k, share, measure, group)
        if abs(m.total) > MAX_TOTAL or m.squares > MAX_SQUARES:
            raise DataError(
                f"column '{measure}': the sums are beyond the bounds the output "
                f"schema allows (|sum| <= {MAX_TOTAL:g}); check the column's unit"
            )
    return {
        "n": int(sum(m.n for m in found.values())),
        "level_type": kind,
        "groups": {
            level: {"n": int(m.n), "total": float(m.total), "squares": float(m.squares)}
            for level, m in found.items()
        },
    }


def recompute(view: StationView) -> dict[str, Any]:
    """The station's own output from its extract (the train's must equal it)."""
    return station_output(view.parameters, view.column, view.min_count, view.rules)


def finalize(view: StationView, output: dict[str, Any]) -> dict[str, Any]:
    """The station's output with its policy's ``show_station_name`` (no data).

    The orchestrator's pooling sees outputs only; this flag (also in the reply's
    details) tells it whether the station's own line may be shown.
    """
    return {**output, "show_station_name": view.show_station_name}


# -- study parameters -------------------------------------------------------------------
def check(parameters: Mapping[str, Any]) -> Sequence[str]:
    """Problems with the study's parameters together, as ``"key: fix"``."""
    problems = []
    measure, group = parameters.get("measure"), parameters.get("group")
    if measure is not None and measure == group:
        problems.append(
            f"group: '{group}' is also the measure column; name a categorical column "
            "to compare, e.g. regimen"
        )
    alpha = parameters.get("alpha", 0.05)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool):
        problems.append(f"alpha: {alpha!r} is not a number; give e.g. 0.05")
    elif not (math.isfinite(alpha) and 0 < alpha < 0.5):
        problems.append(f"alpha: {alpha:g} is not in (0, 0.5); give e.g. 0.05")
    reference = parameters.get("reference_group")
    if isinstance(reference, str) and reference != reference.strip():
        problems.append(
            f"reference_group: {reference!r} has leading or trailing spaces; give the "
            "level as the stations hold it, e.g. standard"
        )
    return problems


# -- pooling ----------------------------------------------------------------------------
def _moments(output: Mapping[str, Any], station: str, log: bool) -> dict[str, Moments]:
    try:
        return {
            str(level): Moments(
                int(v["n"]), float(v["total"]), float(v["squares"]), log
            )
            for level, v in output["groups"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError, DataError) as exc:
        raise DataError(f"station {station} returned malformed means ({exc})") from None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _summary(m: Moments, log: bool, alpha: float) -> dict[str, Any]:
    """n, mean, SD and the t CI of the mean (log scale: back-transformed)."""
    from scipy.special import stdtrit  # lazy: scipy.special is slow to import

    mean = m.mean
    sd = math.sqrt(m.variance) if m.n > 1 else None
    low = high = None
    if sd is not None:
        half = float(stdtrit(m.n - 1, 1 - alpha / 2)) * sd / math.sqrt(m.n)
        low, high = mean - half, mean + half
    if not log:
        return {"n": m.n, "mean": mean, "sd": sd, "ci_lower": low, "ci_upper": high}
    return {
        "n": m.n,
        "mean_log": mean,
        "sd_log": sd,
        "geometric_mean": _finite(math.exp(min(mean, 709.0))),
        "ci_lower": None if low is None else _finite(math.exp(min(low, 709.0))),
        "ci_upper": None if high is None else _finite(math.exp(min(high, 709.0))),
    }


def _comparison(effect: Effect, group: str, reference: str) -> dict[str, Any]:
    from scipy.special import stdtr

    t = effect.log_estimate / effect.se
    df = float(effect.df) if effect.df is not None else math.inf
    return {
        "group": group,
        "reference": reference,
        "measure": effect.measure,
        "method": effect.method,
        "estimate": effect.estimate,
        "se": effect.se,
        "se_scale": "log" if effect.scale == "ratio" else "difference",
        "df": effect.df,
        "statistic": t,
        "p_value": float(2 * stdtr(df, -abs(t))),
        "ci_level": effect.ci.level,
        "ci_lower": effect.ci.lower,
        "ci_upper": effect.ci.upper,
    }


def _shown(released: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Stations whose own line may be shown (none when exactly one hides its name)."""
    named = [s for s, o in released.items() if o.get("show_station_name") is True]
    return [] if len(released) - len(named) == 1 else sorted(named)


def pool(
    released: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, Any]
) -> Sections:
    """Pool the stations' moments per group; compare with the reference group."""
    log = parameters.get("scale", "raw") == "log"
    alpha = float(parameters.get("alpha", 0.05))
    variance = parameters.get("variance", "welch")
    group = str(parameters["group"])
    parts = {s: _moments(o, s, log) for s, o in sorted(released.items())}
    kind = agree_level_type(
        group, {s: released[s].get("level_type") for s in parts}, "group column"
    )
    pooled = pool_moments(parts)
    order = sort_levels([g for g, m in pooled.items() if m.n > 0], kind)
    if not order:
        raise DataError(
            f"no station released a group of '{group}' (every population was empty); "
            "check 'dataset' and the column parameters"
        )
    section: dict[str, Any] = {
        "measure": parameters["measure"],
        "group": group,
        "scale": "log" if log else "raw",
        "variance": variance,
        "alpha": alpha,
        "level": 1 - alpha,
        "level_type": kind,
        "reference_group": None,
        "groups": {g: _summary(pooled[g], log, alpha) for g in order},
        "stations": [
            {
                "station": s,
                "groups": {
                    g: _summary(m, log, alpha)
                    for g, m in sorted(
                        parts[s].items(), key=lambda item: order.index(item[0])
                    )
                },
            }
            for s in _shown(released)
        ],
        "comparisons": [],
        "note": (
            "Each station released, per group, n, the sum and the sum of squared "
            "deviations from its own mean"
            + (" of the log values" if log else "")
            + ", after its threshold, tied-value and dominance rules; they are added "
            "exactly (Chan's update), so every number equals the same analysis on "
            "the pooled rows. Per-station lines only for stations whose policy "
            "shows their name."
        ),
    }
    given = parameters.get("reference_group")
    if given is None:
        return {"means": section}
    reference = canonical_level(given, kind)
    if reference not in pooled:
        raise ConfigError(
            f"parameters.reference_group: '{given}' is not a level of '{group}' at the "
            f"stations that took part; give one of {', '.join(order)}"
        )
    if len(order) < 2:
        raise DataError(
            f"group column '{group}' has patients in only one level ({order[0]}) at "
            "the stations that took part; a comparison needs two: choose another "
            "'group' or leave 'reference_group' out"
        )
    compare = ratio_of_geometric_means if log else mean_difference
    section["reference_group"] = reference
    section["comparisons"] = [
        _comparison(
            compare(
                pooled[g],
                pooled[reference],
                variance=variance,
                alpha=alpha,
                arms=(g, reference),
            ),
            g,
            reference,
        )
        for g in order
        if g != reference
    ]
    return {"means": section}


# -- report -------------------------------------------------------------------------
def _render(result: Mapping[str, Any]) -> str:
    # lazy: the train's entrypoint imports this module, and the report's imports
    # (pandas, matplotlib) have no place in a train process
    from pht.orchestrator.report import escape, number, p_value, section, table

    data = result["means"]
    log = data["scale"] == "log"
    level = f"{100 * data['level']:.3g}% CI"
    name = escape(data["measure"])
    if log:
        header = ["group", "n", "geometric mean", level, "mean of logs", "SD of logs"]
    else:
        header = ["group", "n", "mean", level, "SD"]

    def row(label: str, g: Mapping[str, Any]) -> list[str]:
        ci = f"{number(g['ci_lower'])} to {number(g['ci_upper'])}"
        if log:
            return [
                escape(label),
                number(g["n"]),
                number(g["geometric_mean"]),
                ci,
                number(g["mean_log"]),
                number(g["sd_log"]),
            ]
        return [escape(label), number(g["n"]), number(g["mean"]), ci, number(g["sd"])]

    parts = [
        f'<p class="note">{name} by {escape(data["group"])}'
        + (" (log scale)" if log else "")
        + f". {escape(data['note'])}</p>",
        table(header, [row(g, v) for g, v in data["groups"].items()], "l"),
    ]
    if data["stations"]:
        parts.append(
            "<h3>Per station (by name, where the station's policy allows)</h3>"
        )
        parts.append(
            table(
                ["station", *header],
                [
                    [escape(s["station"]), *row(g, v)]
                    for s in data["stations"]
                    for g, v in s["groups"].items()
                ],
                "ll",
                name="means_stations",
            )
        )
    if data["comparisons"]:
        what = "ratio of geometric means" if log else "difference of means"
        parts.append(
            f"<h3>Each group against {escape(data['reference_group'])} ({what})</h3>"
        )
        parts.append(
            table(
                ["group", "estimate", level, "SE", "df", "t", "p", "method"],
                [
                    [
                        escape(c["group"]),
                        number(c["estimate"]),
                        f"{number(c['ci_lower'])} to {number(c['ci_upper'])}",
                        number(c["se"]) + (" (log)" if c["se_scale"] == "log" else ""),
                        number(c["df"], 1),
                        number(c["statistic"], 2),
                        p_value(c["p_value"]),
                        escape(c["method"]),
                    ]
                    for c in data["comparisons"]
                ],
                "l",
                name="means_comparisons",
            )
        )
    return section("means", f"Means of {data['measure']}", "".join(parts))


PLUGIN = register(
    TrainPlugin(
        name="means",
        pool=pool,
        sections=(("means", _render),),
        recompute=recompute,
        finalize=finalize,
        # what station_output assumes of the manifest: the station refuses any other
        contract=Contract(
            columns={
                "measure": ("column", "numeric", "measure", False),
                "group": ("column", "categorical", "group", False),
            },
            output_class="aggregate",
        ),
        check=check,
    )
)
