"""Do the segments mean anything for the business? Future value, stability, and the truth.

- Temporal hold-out: history split at a cutoff; segments are built on the calibration window and
  judged on what each customer spends in the following `holdout_days` (eta-squared: the share of
  the variance of future spend / orders explained by segment membership), next to the textbook
  RFM quintile segmentation with the same number of groups.
- Stability: agreement (adjusted Rand index) between the run's labels and labels refitted on
  seeded subsamples.
- Truth: on the synthetic store, agreement between segments and the latent groups it was drawn from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from src.data.schema import AMOUNT, CUSTOMER_ID, DATE, FREQUENCY, MONETARY, ORDER_ID, RECENCY
from src.errors import UserError

FUTURE_SPEND = "future_spend"
FUTURE_ORDERS = "future_orders"


# ------------------------------------------------------------------------------ temporal split
@dataclass(frozen=True)
class HoldoutSplit:
    cutoff: pd.Timestamp  # first moment of the hold-out window; also the features' snapshot
    end: pd.Timestamp  # end of the hold-out window (exclusive)
    calibration: pd.DataFrame  # transactions before the cutoff: the only ones features may see
    future: pd.DataFrame  # transactions in [cutoff, end)


def split_at_cutoff(transactions: pd.DataFrame, holdout_days: int) -> HoldoutSplit:
    """The last `holdout_days` whole days of the history become the hold-out window."""
    if holdout_days <= 0:
        raise ValueError("holdout_days must be positive")
    end = transactions[DATE].max().normalize() + pd.Timedelta(days=1)
    cutoff = end - pd.Timedelta(days=int(holdout_days))
    if cutoff <= transactions[DATE].min():
        raise UserError(
            f"validation.holdout_days={holdout_days}: the export covers only "
            f"{(end - transactions[DATE].min()).days} days; leave a calibration window before it"
        )
    dates = transactions[DATE]
    return HoldoutSplit(
        cutoff=cutoff,
        end=end,
        calibration=transactions[dates < cutoff],
        future=transactions[(dates >= cutoff) & (dates < end)],
    )


def future_value(future: pd.DataFrame, customers: pd.Index) -> pd.DataFrame:
    """Future spend and distinct orders of each calibration customer (0 for those who did not buy)."""
    grouped = future.groupby(CUSTOMER_ID, observed=True)
    table = pd.DataFrame(
        {FUTURE_SPEND: grouped[AMOUNT].sum(), FUTURE_ORDERS: grouped[ORDER_ID].nunique()}
    )
    table = table.reindex(customers).fillna(0.0)
    table.index.name = CUSTOMER_ID
    return table.astype({FUTURE_SPEND: float, FUTURE_ORDERS: float})


# ------------------------------------------------------------------------------------ measures
def eta_squared(values: np.ndarray, labels: np.ndarray) -> float:
    """Between-group sum of squares over total sum of squares (0: groups say nothing about the
    values; 1: groups explain them fully). NaN when the values do not vary."""
    values = np.asarray(values, dtype=float)
    labels = np.asarray(labels)
    total = float(((values - values.mean()) ** 2).sum())
    if total == 0.0:
        return float("nan")
    means = pd.Series(values).groupby(labels).transform("mean").to_numpy()
    between = float(((means - values.mean()) ** 2).sum())
    return between / total


def lift(values: np.ndarray, labels: np.ndarray, group: int) -> float:
    """Mean value of `group` over the mean of everyone."""
    values = np.asarray(values, dtype=float)
    overall = values.mean()
    if overall == 0.0:
        return float("nan")
    return float(values[np.asarray(labels) == group].mean() / overall)


def repeat_share(future_spend: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Per segment, the share of customers who bought again in the hold-out window."""
    bought = pd.Series(np.asarray(future_spend, dtype=float) > 0)
    return {int(k): float(v) for k, v in bought.groupby(np.asarray(labels)).mean().items()}


def quintile_baseline(rfm: pd.DataFrame, k: int) -> np.ndarray:
    """The textbook segmentation: R, F and M each scored 1-5 by quintile (R: recent = 5), summed
    (3-15) and cut into `k` groups of (nearly) equal size. Group 0 has the highest scores, so it
    plays the role of a run's best segment."""

    def score(values: pd.Series, ascending: bool) -> np.ndarray:
        ranks = values.rank(method="first", ascending=ascending)
        return pd.qcut(ranks, 5, labels=False).to_numpy() + 1

    total = (
        score(rfm[RECENCY], ascending=False)
        + score(rfm[FREQUENCY], ascending=True)
        + score(rfm[MONETARY], ascending=True)
    )
    ranks = pd.Series(total).rank(method="first", ascending=False)
    return pd.qcut(ranks, k, labels=False).to_numpy().astype(int)


def holdout_metrics(
    future: pd.DataFrame, labels: np.ndarray, baseline: np.ndarray, best_segment: int
) -> dict[str, float]:
    """The contract's `holdout/*` metrics for the run's segments and for the quintile baseline."""
    spend = future[FUTURE_SPEND].to_numpy()
    orders = future[FUTURE_ORDERS].to_numpy()
    ours = {
        "eta2_spend": eta_squared(spend, labels),
        "eta2_orders": eta_squared(orders, labels),
        "lift_top": lift(spend, labels, best_segment),
        "repeat_share": float((spend > 0).mean()),
    }
    theirs = {
        "eta2_spend": eta_squared(spend, baseline),
        "eta2_orders": eta_squared(orders, baseline),
        "lift_top": lift(spend, baseline, 0),
    }
    metrics = {f"holdout/{k}": v for k, v in ours.items()}
    metrics |= {f"holdout/baseline_{k}": v for k, v in theirs.items()}
    metrics["holdout/eta2_spend_gain"] = ours["eta2_spend"] - theirs["eta2_spend"]
    metrics["holdout/eta2_orders_gain"] = ours["eta2_orders"] - theirs["eta2_orders"]
    for segment, share in repeat_share(spend, labels).items():
        metrics[f"holdout/repeat_share_segment_{segment}"] = share
    return metrics


# ----------------------------------------------------------------------------------- stability
def stability_ari(
    labels: np.ndarray,
    refit: Callable[[np.ndarray], np.ndarray],
    n: int,
    n_subsamples: int,
    fraction: float,
    seed: int,
) -> float:
    """Mean ARI between `labels` and `refit(rows)` (labels of a refit on those rows), over seeded
    subsamples; noise points of either labelling are compared like any other label."""
    if n_subsamples <= 0:
        return float("nan")
    if not 0.0 < fraction < 1.0:
        raise UserError(f"validation.stability.fraction={fraction}: must be between 0 and 1")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_subsamples):
        rows = np.sort(rng.choice(n, size=max(int(n * fraction), 2), replace=False))
        scores.append(adjusted_rand_score(np.asarray(labels)[rows], refit(rows)))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------- truth
def truth_scores(segments: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """ARI and AMI between segments and the synthetic store's latent groups, on shared customers."""
    merged = segments[["customer_id", "segment_id"]].merge(
        truth.astype({"customer_id": str}), on="customer_id", how="inner"
    )
    if merged.empty:
        return {}
    return {
        "synthetic/ari": float(adjusted_rand_score(merged["group"], merged["segment_id"])),
        "synthetic/ami": float(adjusted_mutual_info_score(merged["group"], merged["segment_id"])),
        "synthetic/customers_matched": float(len(merged)),
    }
