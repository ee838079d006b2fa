"""What a sweep optimises and which answers marketers can use (the constraints)."""

from __future__ import annotations

import math
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
    metrics: Mapping[str, float], profile: pd.DataFrame, limits: Mapping[str, Any]
) -> dict[str, float]:
    """Each constraint's violation (<= 0 means satisfied), in Optuna's convention.

    Segments are counted and measured on the final assignment (noise customers included, as the
    classifier assigned them), which is what marketers receive.
    """
    n_segments = float(len(profile))
    smallest = float(profile["customer_share"].min()) if len(profile) else 0.0
    f1 = float(metrics.get("classifier/f1_macro", float("nan")))
    checks = {
        "min_segments": float(limits["min_segments"]) - n_segments,
        "max_segments": n_segments - float(limits["max_segments"]),
        "min_segment_share": float(limits["min_segment_share"]) - smallest,
        "min_f1_macro": float(limits["min_f1_macro"]) - f1 if not math.isnan(f1) else 1.0,
    }
    return checks


def describe_violations(checks: Mapping[str, float]) -> str:
    broken = [name for name, value in checks.items() if value > 0]
    return ", ".join(broken)
