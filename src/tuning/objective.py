"""What a sweep optimises and which answers marketers can use (the constraints)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from src.errors import UserError

MINIMISED = frozenset({"cluster/davies_bouldin", "cluster/noise_fraction"})


def objective_metrics(sweep: Mapping[str, Any]) -> list[str]:
    """`sweep.objectives` when set (multi-objective), else `[sweep.objective]`."""
    metrics = list(sweep.get("objectives") or []) or [str(sweep["objective"])]
    if len(set(metrics)) != len(metrics):
        raise UserError(f"sweep.objectives lists a metric twice: {metrics}")
    return metrics


# Hold-out scores that grow with the number of segments whatever their quality (a finer split of
# the same ranking explains more variance; a smaller top segment has a higher lift): the run's
# own and every baseline's. Their `_gain` forms compare with a baseline at the same k.
GROW_WITH_K = re.compile(r"holdout/(\w+/)?(eta2_spend|eta2_orders|lift_top)")


def check_objectives_for_k(names: Sequence[str], k: int | None) -> None:
    """With free k (`sweep.k=null`) an objective that rewards more segments blindly is refused."""
    blind = [name for name in names if k is None and GROW_WITH_K.fullmatch(name)]
    if blind:
        raise UserError(
            f"sweep.k=null with objective {', '.join(blind)}: it grows with the number of "
            "segments, so a sweep with free k would pick the most segments; compare at a fixed "
            "number of segments (sweep.k=5) or optimise a gain over a baseline with the same "
            "number of segments (holdout/value_rank/eta2_spend_gain, "
            "holdout/kmeans/eta2_orders_gain)"
        )


def direction(metric: str) -> str:
    return "minimize" if metric in MINIMISED else "maximize"


def objective_values(metrics: Mapping[str, float], names: Sequence[str]) -> list[float]:
    """The objective values of a finished run; a missing or NaN objective is the user's error
    (an unknown metric name) or an undefined score, reported as such."""
    values = []
    for name in names:
        if name not in metrics:
            if name.startswith("holdout/"):
                raise UserError(
                    f"sweep.objective={name} needs the temporal hold-out: set "
                    "validation.holdout_days (e.g. validation.holdout_days=90)"
                )
            known = ", ".join(sorted(k for k in metrics if not k.startswith("time/")))
            raise UserError(f"sweep.objective={name}: the run logs no such metric; known: {known}")
        value = float(metrics[name])
        if math.isnan(value):
            raise ValueError(f"{name} is undefined (NaN) for this segmentation")
        values.append(value)
    return values


def constraint_checks(
    metrics: Mapping[str, float],
    profile: pd.DataFrame,
    limits: Mapping[str, Any],
    k: int | None = None,
) -> dict[str, float]:
    """Each constraint's violation (<= 0 means satisfied), in Optuna's convention; every
    objective, single or multi, is subject to all of them (`src.tuning.study.is_feasible`).

    Segments are counted and measured on the final assignment (noise customers included, as the
    classifier assigned them), which is what marketers receive. With `k` (sweep.k) set, exactly
    k segments (`k_segments`: the distance from k) replaces min_segments and max_segments; it
    is what holds DBSCAN and HDBSCAN, which choose their own number of clusters, to k.
    """
    n_segments = float(len(profile))
    smallest = float(profile["customer_share"].min()) if len(profile) else 0.0
    f1 = float(metrics.get("classifier/f1_macro", float("nan")))
    if k is None:
        checks = {
            "min_segments": float(limits["min_segments"]) - n_segments,
            "max_segments": n_segments - float(limits["max_segments"]),
        }
    else:
        checks = {"k_segments": abs(n_segments - float(k))}
    checks |= {
        "min_segment_share": float(limits["min_segment_share"]) - smallest,
        "min_f1_macro": float(limits["min_f1_macro"]) - f1 if not math.isnan(f1) else 1.0,
    }
    return checks


def describe_violations(checks: Mapping[str, float]) -> str:
    broken = [name for name, value in checks.items() if value > 0]
    return ", ".join(broken)
