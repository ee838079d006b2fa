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
    kmeans_baseline,
    lift,
    quintile_baseline,
    repeat_share,
    split_at_cutoff,
    stability_ari,
    truth_scores,
    value_rank_baseline,
    value_score,
    value_tier_top_shares,
)
from src.features.rfm import make_transformer
from src.pipeline import prepare_data, run_pipeline
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


def test_value_score_is_spend_per_day_halved_every_90_days_of_silence():
    history = pd.DataFrame(
        {"recency": [0, 90, 180, 0], "frequency": [1, 2, 3, 1], "monetary": [100.0, 100.0, 100.0, 50.0],
         "tenure": [10, 100, 0, 200]}
    )  # fmt: skip
    # 100/10; 100/100 halved; tenure 0 counts as one day, quartered; 50/200
    assert value_score(history).tolist() == pytest.approx([10.0, 0.5, 25.0, 0.25])


def test_value_tiers_are_50_30_13_5_2_percent_at_k5_and_keep_both_ends_at_other_k():
    assert value_tier_top_shares(5) == pytest.approx([0.02, 0.07, 0.20, 0.50])
    assert value_tier_top_shares(3) == pytest.approx([0.02, 0.50])
    assert value_tier_top_shares(4) == pytest.approx([0.02, np.sqrt(0.07 * 0.20), 0.50])
    assert value_tier_top_shares(2) == pytest.approx([0.5])
    shares = value_tier_top_shares(8)
    assert shares[0] == pytest.approx(0.02) and shares[-1] == pytest.approx(0.5)
    assert np.all(np.diff(shares) > 0)
    n = 1000
    history = pd.DataFrame(
        {"recency": np.zeros(n), "frequency": np.ones(n), "monetary": np.arange(n, 0, -1.0),
         "tenure": np.ones(n)}
    )  # fmt: skip
    tiers = value_rank_baseline(history, 5)
    assert np.bincount(tiers).tolist() == [20, 50, 130, 300, 500]
    assert tiers[0] == 0 and tiers[-1] == 4  # the biggest spender per day is in the top tier


def test_kmeans_baseline_finds_log_rfm_groups_and_numbers_them_by_spend():
    rng = np.random.default_rng(1)
    n = 300
    big = np.arange(n) < 100
    history = pd.DataFrame(
        {
            "recency": np.where(big, rng.uniform(1, 10, n), rng.uniform(200, 400, n)),
            "frequency": np.where(big, rng.integers(10, 20, n), 1),
            "monetary": np.where(big, rng.uniform(5e4, 9e4, n), rng.uniform(50, 90, n)),
        }
    )
    groups = kmeans_baseline(history, 2, seed=0)
    assert (groups[big] == 0).all() and (groups[~big] == 1).all()
    assert np.array_equal(groups, kmeans_baseline(history, 2, seed=0))


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
    metrics = holdout_metrics(future, labels, {"quintile": quintile_baseline(rfm, 2)}, best)
    assert metrics["holdout/eta2_spend"] > 0.9
    assert metrics["holdout/quintile/eta2_spend"] < 0.3
    assert metrics["holdout/quintile/eta2_spend_gain"] > 0.6
    assert metrics["holdout/quintile/eta2_orders_gain"] == pytest.approx(
        metrics["holdout/eta2_orders"] - metrics["holdout/quintile/eta2_orders"]
    )
    assert metrics["holdout/lift_top"] == 0.0  # the big one-off spenders never come back
    assert metrics[f"holdout/repeat_share_segment_{1 - best}"] == 1.0
    assert not any("baseline" in name for name in metrics)


def test_every_baseline_gets_the_same_measures():
    rfm, future, labels, best = planted(future_from_groups=True)
    groups = {"kmeans": labels, "value_rank": 1 - labels}  # a relabelling explains as much
    metrics = holdout_metrics(future, labels, groups, best)
    for name in groups:
        assert {m.split("/")[-1] for m in metrics if m.startswith(f"holdout/{name}/")} == {
            "eta2_spend", "eta2_orders", "lift_top", "eta2_spend_gain", "eta2_orders_gain"
        }  # fmt: skip
        assert metrics[f"holdout/{name}/eta2_spend"] == pytest.approx(metrics["holdout/eta2_spend"])
        assert metrics[f"holdout/{name}/eta2_spend_gain"] == pytest.approx(0.0)


def test_nobody_beats_the_baseline_when_the_future_is_noise():
    rfm, future, labels, best = planted(future_from_groups=False)
    metrics = holdout_metrics(future, labels, {"quintile": quintile_baseline(rfm, 2)}, best)
    assert metrics["holdout/eta2_spend"] < 0.02
    assert abs(metrics["holdout/quintile/eta2_spend_gain"]) < 0.02


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


def test_a_run_with_holdout_is_judged_beside_three_baselines_at_its_own_k(store_path, make_cfg):
    cfg = make_cfg(
        f"data.path={store_path}", "tracking=none", "validation.holdout_days=90",
        "clusterer.n_clusters=4", "validation.stability.subsamples=0", "features.extras=[tenure]",
    )  # fmt: skip
    data = prepare_data(cfg, with_figures=False)
    assert data.history.columns.tolist() == ["recency", "frequency", "monetary", "tenure"]
    result = run_pipeline(cfg, data)
    k = len(result.profile)
    groups = data.baselines(k, int(cfg.seed))
    assert sorted(groups) == ["kmeans", "quintile", "value_rank"]
    assert all(len(np.unique(g)) == k for g in groups.values())
    future = data.future.loc[data.rfm.index]
    for name, labels in groups.items():
        assert result.metrics[f"holdout/{name}/eta2_spend"] == pytest.approx(
            eta_squared(future[FUTURE_SPEND].to_numpy(), labels)
        )
        assert result.metrics[f"holdout/{name}/eta2_orders_gain"] == pytest.approx(
            result.metrics["holdout/eta2_orders"] - result.metrics[f"holdout/{name}/eta2_orders"]
        )
    assert data.baselines(k, int(cfg.seed)) is groups  # computed once, shared by later runs
    assert any("value ranking" in note for note in result.notes)
