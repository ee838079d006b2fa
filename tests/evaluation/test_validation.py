import json

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans

from src.evaluation.validation import (
    FUTURE_ORDERS,
    FUTURE_SPEND,
    eta_squared,
    future_value,
    holdout_metrics,
    lift,
    quintile_baseline,
    repeat_share,
    split_at_cutoff,
    stability_ari,
    truth_scores,
)
from src.features.rfm import make_transformer
from src.pipeline import prepare_data
from tests.conftest import store_records, write_json


def test_eta_squared_by_hand():
    # groups {1, 3} and {5, 7}: grand mean 4, total SS 9+1+1+9 = 20, between SS 4*(2^2) = 16
    assert eta_squared(np.array([1.0, 3.0, 5.0, 7.0]), np.array([0, 0, 1, 1])) == pytest.approx(0.8)
    assert eta_squared(np.array([1.0, 5.0, 3.0, 7.0]), np.array([0, 0, 1, 1])) == pytest.approx(
        0.2
    )  # means 3 and 5: between 4*1 = 4
    assert np.isnan(eta_squared(np.ones(4), np.array([0, 0, 1, 1])))


def test_lift_and_repeat_share_by_hand():
    spend = np.array([0.0, 100.0, 300.0, 0.0])
    labels = np.array([1, 1, 0, 0])
    assert lift(spend, labels, 0) == pytest.approx(150.0 / 100.0)
    assert repeat_share(spend, labels) == {0: 0.5, 1: 0.5}


def test_quintile_baseline_scores_recent_frequent_big_spenders_first():
    n = 100
    rank = np.arange(n, dtype=float)
    rfm = pd.DataFrame({"recency": n - rank, "frequency": rank + 1, "monetary": (rank + 1) * 10})
    groups = quintile_baseline(rfm, k=4)
    assert sorted(np.bincount(groups).tolist()) == [25, 25, 25, 25]
    assert groups[-1] == 0 and groups[0] == 3  # the best customer is in group 0


def planted(future_from_groups: bool, n: int = 400, seed: int = 0):
    """Frequent small buyers vs one-off big spenders: the same RFM quintile sums, different
    futures (when `future_from_groups`)."""
    rng = np.random.default_rng(seed)
    half = n // 2
    rfm = pd.DataFrame(
        {
            "recency": rng.uniform(10, 60, n),
            "frequency": np.r_[rng.integers(8, 15, half), np.ones(n - half)],
            "monetary": np.r_[rng.uniform(800, 1500, half), rng.uniform(50_000, 90_000, n - half)],
        }
    )
    if future_from_groups:
        spend = np.r_[rng.uniform(3000, 6000, half), np.zeros(n - half)]
    else:
        spend = rng.exponential(2000, n) * (rng.random(n) < 0.4)
    future = pd.DataFrame({FUTURE_SPEND: spend, FUTURE_ORDERS: (spend > 0) * 2.0})
    X = make_transformer({"log": True, "scaler": "standard"}, seed=0).fit_transform(rfm)
    labels = KMeans(2, n_init=10, random_state=0).fit_predict(X)
    best = int(pd.Series(rfm["monetary"].to_numpy()).groupby(labels).mean().idxmax())
    return rfm, future, labels, best


def test_segments_that_capture_behaviour_beat_the_quintile_baseline():
    rfm, future, labels, best = planted(future_from_groups=True)
    metrics = holdout_metrics(future, labels, quintile_baseline(rfm, 2), best)
    assert metrics["holdout/eta2_spend"] > 0.9
    assert metrics["holdout/baseline_eta2_spend"] < 0.3
    assert metrics["holdout/eta2_spend_gain"] > 0.6
    assert metrics["holdout/lift_top"] == 0.0  # the big one-off spenders never come back
    assert metrics[f"holdout/repeat_share_segment_{1 - best}"] == 1.0


def test_nobody_beats_the_baseline_when_the_future_is_noise():
    rfm, future, labels, best = planted(future_from_groups=False)
    metrics = holdout_metrics(future, labels, quintile_baseline(rfm, 2), best)
    assert metrics["holdout/eta2_spend"] < 0.02
    assert abs(metrics["holdout/eta2_spend_gain"]) < 0.02


def stability(X: np.ndarray, k: int) -> float:
    labels = KMeans(k, n_init=5, random_state=0).fit_predict(X)
    refit = lambda rows: KMeans(k, n_init=5, random_state=1).fit_predict(X[rows])  # noqa: E731
    return stability_ari(labels, refit, len(X), 5, 0.8, seed=3)


def test_stability_is_near_one_on_blobs_and_lower_on_noise():
    rng = np.random.default_rng(0)
    blobs = np.vstack([rng.normal(c, 0.3, (150, 2)) for c in ((0, 0), (5, 5), (0, 6))])
    assert stability(blobs, 3) > 0.98
    # Six clusters forced onto structureless 4-D noise: each refit cuts it differently.
    assert stability(rng.uniform(0, 1, (450, 4)), 6) < 0.8


def test_truth_scores_on_shared_customers():
    segments = pd.DataFrame({"customer_id": ["1", "2", "3", "4"], "segment_id": [0, 0, 1, 1]})
    truth = pd.DataFrame({"customer_id": [1, 2, 3, 4, 5], "group": ["a", "a", "b", "b", "c"]})
    scores = truth_scores(segments, truth)
    assert scores["synthetic/ari"] == pytest.approx(1.0)
    assert scores["synthetic/customers_matched"] == 4


def test_split_and_future_value():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "c"],
            "date": pd.to_datetime(
                ["2024-01-01", "2024-03-05", "2024-01-10", "2024-03-09 23:00", "2024-03-09"],
                format="ISO8601",
            ),  # fmt: skip
            "amount": [10.0, 20.0, 30.0, 40.0, 50.0],
            "order_id": ["1", "2", "3", "4", "5"],
        }
    )
    split = split_at_cutoff(tx, holdout_days=7)
    assert split.cutoff == pd.Timestamp("2024-03-03") and split.end == pd.Timestamp("2024-03-10")
    assert split.calibration["order_id"].tolist() == ["1", "3"]
    future = future_value(split.future, pd.Index(["a", "b"], name="customer_id"))
    assert future[FUTURE_SPEND].tolist() == [20.0, 40.0]  # c is new: not a calibration customer
    assert future[FUTURE_ORDERS].tolist() == [1.0, 1.0]


def test_holdout_never_leaks_future_transactions_into_features(tmp_path, make_cfg):
    records, _ = store_records()
    cutoff = "2025-10-02"  # the store ends 2025-12-31: 90 days of hold-out
    changed = [
        r | {"sum": r["sum"] * 10, "order_id": r["order_id"] + 10**7} if r["date"] >= cutoff else r
        for r in records
    ]
    changed += [records[0] | {"CustomerID": 999_999, "date": "2025-12-01T10:00:00"}]
    original = write_json(tmp_path / "a.json", records)
    altered = write_json(tmp_path / "b.json", changed)
    prepared = [
        prepare_data(make_cfg(f"data.path={p}", "validation.holdout_days=90"), with_figures=False)
        for p in (original, altered)
    ]
    assert prepared[0].cutoff == pd.Timestamp(cutoff)
    pd.testing.assert_frame_equal(prepared[0].rfm, prepared[1].rfm)
    # The changed lines reach the future (minus what cleaning fences off), never the features.
    assert prepared[1].future[FUTURE_SPEND].sum() > 5 * prepared[0].future[FUTURE_SPEND].sum() > 0
    assert "999999" not in prepared[1].rfm.index
    assert json.dumps(records) != json.dumps(changed)
