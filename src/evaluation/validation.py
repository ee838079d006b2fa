"""Do the segments mean anything for the business? Future value, stability, and the truth.

- Temporal hold-out: history split at a cutoff; segments are built on the calibration window and
  judged on what each customer spends in the following `holdout_days` (eta-squared: the share of
  the variance of future spend / orders explained by segment membership), next to three
  baselines with the same number of groups, built from the same calibration window: the textbook
  RFM quintile score, KMeans on log-RFM, and a ranking by recency-damped spend per day.
- Stability: agreement (adjusted Rand index) between the run's labels and labels refitted on
  seeded subsamples.
- Truth: on the synthetic store, agreement between segments and the latent groups it was drawn from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from src.data.schema import AMOUNT, CUSTOMER_ID, DATE, FREQUENCY, MONETARY, ORDER_ID, RECENCY
from src.errors import UserError
from src.features.rfm import TENURE, make_transformer

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


# ----------------------------------------------------------------------------------- baselines
# What a run's segments must beat, each with the run's number of groups and group 0 the most
# valuable one. All three read only the calibration window's RFM and tenure (`history`).
BASELINES = ("kmeans", "quintile", "value_rank")

# Value ranking: score = monetary / max(tenure, 1 day) * 0.5 ** (recency / VALUE_HALF_LIFE_DAYS),
# i.e. past spend per day of the customer's life, halved for every 90 days since the last purchase.
VALUE_HALF_LIFE_DAYS = 90.0
# Tiers at k = 5, from the top: the best 2% of customers by score, the next 5%, 13%, 30%, and the
# bottom 50%; as cumulative shares from the top, 2%, 7%, 20%, 50% (and 100%).
VALUE_TOP_SHARES_K5 = (0.02, 0.07, 0.20, 0.50)


def quintile_baseline(history: pd.DataFrame, k: int) -> np.ndarray:
    """The textbook segmentation: R, F and M each scored 1-5 by quintile (R: recent = 5), summed
    (3-15) and cut into `k` groups of (nearly) equal size. Group 0 has the highest scores."""

    def score(values: pd.Series, ascending: bool) -> np.ndarray:
        ranks = values.rank(method="first", ascending=ascending)
        return pd.qcut(ranks, 5, labels=False).to_numpy() + 1

    total = (
        score(history[RECENCY], ascending=False)
        + score(history[FREQUENCY], ascending=True)
        + score(history[MONETARY], ascending=True)
    )
    ranks = pd.Series(total).rank(method="first", ascending=False)
    return pd.qcut(ranks, k, labels=False).to_numpy().astype(int)


def kmeans_baseline(history: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """KMeans (k clusters, 10 seeded starts) on log1p(R, F, M) scaled to unit variance, the
    clusters numbered by descending mean past spend (group 0 spent most)."""
    rfm = history[[RECENCY, FREQUENCY, MONETARY]]
    X = make_transformer({"log": True, "scaler": "standard"}, seed=seed).fit_transform(rfm)
    found = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)
    means = pd.Series(rfm[MONETARY].to_numpy()).groupby(found).mean()
    order = {int(old): new for new, old in enumerate(means.sort_values(ascending=False).index)}
    return np.array([order[int(c)] for c in found], dtype=int)


def value_score(history: pd.DataFrame) -> np.ndarray:
    """Recency-damped spend per day: monetary / max(tenure, 1) * 0.5 ** (recency / 90), where
    tenure is days from the first purchase to the cutoff and recency days from the last one."""
    per_day = history[MONETARY].to_numpy(float) / np.maximum(history[TENURE].to_numpy(float), 1.0)
    damping = 0.5 ** (history[RECENCY].to_numpy(float) / VALUE_HALF_LIFE_DAYS)
    return per_day * damping


def value_tier_top_shares(k: int) -> np.ndarray:
    """Cumulative customer shares from the top at which the value ranking is cut into `k` tiers.

    k = 5: 2%, 7%, 20%, 50% (tiers of 2/5/13/30/50%). Other k: the k = 5 boundaries read as a curve
    over [0, 1] (at 0, 1/3, 2/3, 1), interpolated linearly in log share, at k - 1 evenly spaced
    points, so the top tier is always 2% and the bottom tier always 50% (k = 3: 2/48/50%; k = 4:
    2/9.8/38.2/50%). k = 2: the top and bottom halves; k = 1: everyone."""
    if k <= 1:
        return np.array([])
    if k == 2:
        return np.array([0.5])
    anchors = np.linspace(0.0, 1.0, len(VALUE_TOP_SHARES_K5))
    points = np.linspace(0.0, 1.0, k - 1)
    return np.exp(np.interp(points, anchors, np.log(VALUE_TOP_SHARES_K5)))


def value_rank_baseline(history: pd.DataFrame, k: int) -> np.ndarray:
    """Customers ranked by `value_score` (ties: table order) and cut at `value_tier_top_shares(k)`;
    group 0 is the top tier."""
    score = pd.Series(value_score(history))
    position = score.rank(method="first", ascending=False).to_numpy() / len(score)  # (0, 1]
    return np.searchsorted(value_tier_top_shares(k), position, side="left").astype(int)


def baseline_labels(history: pd.DataFrame, k: int, seed: int) -> dict[str, np.ndarray]:
    """Every baseline's groups for the customers of `history` (RFM and tenure at the cutoff)."""
    return {
        "kmeans": kmeans_baseline(history, k, seed),
        "quintile": quintile_baseline(history, k),
        "value_rank": value_rank_baseline(history, k),
    }


def holdout_metrics(
    future: pd.DataFrame,
    labels: np.ndarray,
    baselines: dict[str, np.ndarray],
    best_segment: int,
) -> dict[str, float]:
    """The `holdout/*` metrics: the run's own (`holdout/eta2_spend`, ...), and per baseline `b`
    `holdout/<b>/eta2_spend`, `holdout/<b>/eta2_orders`, `holdout/<b>/lift_top` and the run's
    margin over it, `holdout/<b>/eta2_spend_gain` and `holdout/<b>/eta2_orders_gain` (the run's
    eta-squared minus the baseline's; >= 0: the run does at least as well)."""
    spend = future[FUTURE_SPEND].to_numpy()
    orders = future[FUTURE_ORDERS].to_numpy()

    def measures(groups: np.ndarray, top: int) -> dict[str, float]:
        return {
            "eta2_spend": eta_squared(spend, groups),
            "eta2_orders": eta_squared(orders, groups),
            "lift_top": lift(spend, groups, top),
        }

    ours = measures(labels, best_segment)
    metrics = {f"holdout/{k}": v for k, v in ours.items()}
    metrics["holdout/repeat_share"] = float((spend > 0).mean())
    for segment, share in repeat_share(spend, labels).items():
        metrics[f"holdout/repeat_share_segment_{segment}"] = share
    for name, groups in baselines.items():
        theirs = measures(groups, 0)
        metrics |= {f"holdout/{name}/{k}": v for k, v in theirs.items()}
        for measure in ("eta2_spend", "eta2_orders"):
            metrics[f"holdout/{name}/{measure}_gain"] = ours[measure] - theirs[measure]
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
