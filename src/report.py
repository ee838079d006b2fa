"""The console summary printed at the end of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from src.currency import Currency, currency
from src.pipeline import PreparedData, RunResult

KEY_METRICS = (
    "cluster/n_clusters",
    "cluster/silhouette",
    "cluster/calinski_harabasz",
    "cluster/davies_bouldin",
    "cluster/noise_fraction",
    "cluster/stability_ari",
    "classifier/accuracy",
    "classifier/f1_macro",
    "holdout/eta2_spend",
    "holdout/value_rank/eta2_spend",
    "holdout/eta2_orders",
    "holdout/kmeans/eta2_orders",
    "holdout/lift_top",
    "synthetic/ari",
    "synthetic/ami",
)


def segment_table(profile: pd.DataFrame, money: Currency, horizon_days: float | None = None) -> str:
    """The profile for people; with lifetime value (`horizon_days` given and the profile's
    value columns present) also per customer over the horizon: expected orders and spend, then
    mean P(alive) and the segment's share of all expected value."""
    table = pd.DataFrame(
        {
            "segment": profile["segment_name"],
            "customers": profile["size"].map("{:,}".format),
            "revenue": profile["revenue_share"].map("{:.1%}".format),
            "R mean, days": profile["recency_mean"].map("{:,.0f}".format),
            "F mean, orders": profile["frequency_mean"].map("{:,.1f}".format),
            f"M mean, {money.symbol}": profile["monetary_mean"].map(money.number),
        }
    )
    if horizon_days is not None and "expected_value" in profile.columns:
        days = f"{horizon_days:g}d"
        table[f"purchases next {days}"] = profile["expected_purchases"].map("{:,.2f}".format)
        table[f"spend next {days}, {money.symbol}"] = profile["expected_value"].map(money.number)
        table["P(alive)"] = profile["p_alive"].map("{:.0%}".format)
        table["value share"] = profile["value_share"].map("{:.1%}".format)
    return table.to_string(index=False)


def print_summary(
    data: PreparedData, result: RunResult, out_dir: Path, tracking: tuple[Any, Any] | None
) -> None:
    print()
    print(
        f"{len(data.rfm):,} customers from {data.source.name} "
        f"({data.rows_raw:,} lines, {len(data.transactions):,} after cleaning)"
    )
    for note in result.notes:
        print(f"note: {note}")
    print()
    horizon = data.value_model.horizon_days if data.value_model is not None else None
    print(segment_table(result.profile, currency(data.cleaning.currency), horizon))
    print()
    for key in KEY_METRICS:
        if key in result.metrics:
            print(f"  {key:<30} {result.metrics[key]:,.4g}")
    print()
    print(f"outputs: {out_dir}")
    if tracking is not None:
        settings, run_id = tracking
        print(f"MLflow run {run_id} in experiment '{settings.experiment}'")
        print(f"open the MLflow UI: {ui_command(str(settings.uri))}")


def ui_command(uri: str) -> str:
    """How to open the UI on the store `uri`: a tracking server serves it itself."""
    if uri.startswith(("http://", "https://")):
        return uri
    return "python -m src.ui" + (
        "" if uri == "sqlite:///mlflow.db" else f" --backend-store-uri {uri}"
    )
