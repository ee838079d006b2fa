import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from src.errors import UserError
from src.evaluation.metrics import (
    NOISE,
    ClusterScores,
    check_degenerate,
    classifier_scores,
    cluster_scores,
)

CLUSTER_KEYS = {
    "cluster/silhouette",
    "cluster/calinski_harabasz",
    "cluster/davies_bouldin",
    "cluster/n_clusters",
    "cluster/noise_fraction",
}


def blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(
        n_samples=n, centers=[[0, 0, 0], [6, 0, 0], [0, 6, 0]], cluster_std=0.4, random_state=seed
    )
    return X, y


def with_noise(X: np.ndarray, y: np.ndarray, n_noise: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-5, 10, size=(n_noise, X.shape[1]))
    X_all = np.vstack([noise[: n_noise // 2], X, noise[n_noise // 2 :]])
    y_all = np.concatenate(
        [np.full(n_noise // 2, NOISE), y, np.full(n_noise - n_noise // 2, NOISE)]
    )
    return X_all, y_all


def test_separated_blobs_score_well_and_equal_sklearn():
    X, y = blobs()
    scores = cluster_scores(X, y)
    assert isinstance(scores, ClusterScores)
    assert scores.silhouette > 0.8
    assert scores.davies_bouldin < 0.3
    assert scores.silhouette == pytest.approx(silhouette_score(X, y), rel=1e-12)
    assert scores.calinski_harabasz == pytest.approx(calinski_harabasz_score(X, y), rel=1e-12)
    assert scores.davies_bouldin == pytest.approx(davies_bouldin_score(X, y), rel=1e-12)
    assert scores.n_clusters == 3
    assert scores.noise_fraction == 0.0
    assert not scores.sampled
    assert scores.silhouette_points == 300


def test_as_metrics_has_exactly_the_contract_keys():
    X, y = blobs()
    metrics = cluster_scores(X, y).as_metrics()
    assert set(metrics) == CLUSTER_KEYS
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["cluster/n_clusters"] == 3.0


def test_overlapping_labels_score_worse_than_true_labels():
    X, y = blobs()
    shuffled = np.random.default_rng(0).permutation(y)
    good, bad = cluster_scores(X, y), cluster_scores(X, shuffled)
    assert bad.silhouette < 0.1 < good.silhouette
    assert bad.davies_bouldin > good.davies_bouldin
    assert bad.calinski_harabasz < good.calinski_harabasz


def test_noise_points_are_excluded_from_scores():
    X, y = blobs()
    clean = cluster_scores(X, y)
    X_noisy, y_noisy = with_noise(X, y, 50)
    noisy = cluster_scores(X_noisy, y_noisy)
    assert noisy.silhouette == clean.silhouette
    assert noisy.calinski_harabasz == clean.calinski_harabasz
    assert noisy.davies_bouldin == clean.davies_bouldin
    assert noisy.n_clusters == 3
    assert noisy.noise_fraction == pytest.approx(50 / 350)


def test_silhouette_sampled_above_sample_size_with_seed():
    X, y = blobs(n=600)
    scores = cluster_scores(X, y, sample_size=200, seed=3)
    assert scores.sampled
    assert scores.silhouette_points == 200
    assert scores.silhouette == pytest.approx(
        silhouette_score(X, y, sample_size=200, random_state=3), rel=1e-12
    )
    assert scores.silhouette != pytest.approx(silhouette_score(X, y), rel=1e-9)
    # CH and DB are cheap: always on every point
    assert scores.calinski_harabasz == pytest.approx(calinski_harabasz_score(X, y), rel=1e-12)
    assert scores.davies_bouldin == pytest.approx(davies_bouldin_score(X, y), rel=1e-12)


def test_sampled_silhouette_is_deterministic_and_depends_on_seed():
    X, y = blobs(n=600)
    first = cluster_scores(X, y, sample_size=100, seed=7).silhouette
    again = cluster_scores(X, y, sample_size=100, seed=7).silhouette
    other = cluster_scores(X, y, sample_size=100, seed=8).silhouette
    assert first == again
    assert first != other


def test_no_sampling_at_or_below_sample_size_counting_only_clustered_points():
    X, y = blobs(n=300)
    assert not cluster_scores(X, y, sample_size=300).sampled
    assert cluster_scores(X, y, sample_size=299).sampled
    # 300 clustered + 100 noise: the 100 noise points do not push it over the limit
    X_noisy, y_noisy = with_noise(X, y, 100)
    scores = cluster_scores(X_noisy, y_noisy, sample_size=300)
    assert not scores.sampled
    assert scores.silhouette == pytest.approx(silhouette_score(X, y), rel=1e-12)


def test_sampling_ignores_noise_so_scores_match_the_clustered_subset():
    X, y = blobs(n=600)
    X_noisy, y_noisy = with_noise(X, y, 80)
    assert cluster_scores(X_noisy, y_noisy, 100, seed=5).silhouette == pytest.approx(
        silhouette_score(X, y, sample_size=100, random_state=5), rel=1e-12
    )


def test_sampling_can_be_switched_off():
    X, y = blobs(n=300)
    scores = cluster_scores(X, y, sample_size=None)
    assert not scores.sampled
    assert scores.silhouette == pytest.approx(silhouette_score(X, y), rel=1e-12)


def test_scores_are_nan_when_undefined():
    X, _ = blobs(n=30)
    one = cluster_scores(X, np.zeros(30, dtype=int))
    assert math.isnan(one.silhouette)
    assert math.isnan(one.calinski_harabasz)
    assert math.isnan(one.davies_bouldin)
    assert one.n_clusters == 1
    all_noise = cluster_scores(X, np.full(30, NOISE))
    assert all_noise.n_clusters == 0
    assert all_noise.noise_fraction == 1.0
    assert math.isnan(all_noise.silhouette)


def test_tiny_silhouette_sample_is_a_user_error():
    X, y = blobs(n=30)
    with pytest.raises(UserError, match="silhouette_sample_size=1"):
        cluster_scores(X, y, sample_size=1)


def test_mismatched_lengths_are_a_programming_error():
    X, y = blobs(n=30)
    with pytest.raises(ValueError):
        cluster_scores(X, y[:-1])


# --- degenerate clusterings ---------------------------------------------------------------------


def test_healthy_clustering_passes():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10 + [NOISE] * 5)
    check_degenerate(labels, 0.95, "KMeans")  # no exception


def test_one_cluster_holding_too_many_customers():
    labels = np.array([0] * 973 + [1] * 27)
    with pytest.raises(UserError) as err:
        check_degenerate(labels, 0.95, "DBSCAN")
    message = str(err.value)
    assert "DBSCAN put 97.3% of customers into one cluster" in message
    assert "limit 95%" in message
    assert "degenerate_max_share" in message
    assert "clusterer.eps / clusterer.min_samples" in message


def test_share_is_measured_among_non_noise_customers():
    ok = np.array([0] * 90 + [1] * 10 + [NOISE] * 900)
    check_degenerate(ok, 0.95, "dbscan")
    bad = np.array([0] * 96 + [1] * 4 + [NOISE] * 900)
    with pytest.raises(UserError) as err:
        check_degenerate(bad, 0.95, "dbscan")
    message = str(err.value)
    assert "96.0% of the 100 clustered (non-noise) customers" in message
    assert "900 of 1,000 customers (90.0%) are noise" in message


def test_share_just_over_the_limit_does_not_read_as_the_limit():
    labels = np.array([0] * 9501 + [1] * 499)
    with pytest.raises(UserError, match=r"95\.01% of customers"):
        check_degenerate(labels, 0.95)
    check_degenerate(labels, 0.96)


def test_fewer_than_two_clusters():
    labels = np.array([0] * 50 + [NOISE] * 10)
    with pytest.raises(UserError) as err:
        check_degenerate(labels, 0.95, "HDBSCAN")
    message = str(err.value)
    assert "found 1 cluster" in message
    assert "10 of 60 customers (16.7%) are noise" in message
    assert "clusterer.min_cluster_size / clusterer.min_samples" in message


def test_everything_noise():
    with pytest.raises(UserError) as err:
        check_degenerate(np.full(1234, NOISE), 0.95, "DBSCAN")
    message = str(err.value)
    assert "all 1,234 customers as noise" in message
    assert "clusterer.eps" in message


@pytest.mark.parametrize(
    ("clusterer", "hint"),
    [
        ("KMeans", "clusterer.n_clusters"),
        ("GaussianMixture", "clusterer.n_components"),
        ("gmm", "clusterer.n_components"),
        ("Birch", "clusterer.n_clusters / clusterer.threshold"),
        ("MyOwnClusterer", "clusterer.* hyperparameters"),
        (None, "clusterer.* hyperparameters"),
    ],
)
def test_message_names_the_settings_of_the_clusterer(clusterer, hint):
    with pytest.raises(UserError, match=hint.replace(".", r"\.").replace("*", r"\*")):
        check_degenerate(np.zeros(10, dtype=int), 0.95, clusterer)


def test_bad_max_share_names_the_setting():
    labels = np.array([0, 0, 1, 1])
    for bad in (0.0, 1.5):
        with pytest.raises(UserError, match="degenerate_max_share"):
            check_degenerate(labels, bad)


# --- classifier -----------------------------------------------------------------------------------


def test_classifier_scores_hand_computed():
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 1])
    scores = classifier_scores(y_true, y_pred)
    assert set(scores) == {"classifier/accuracy", "classifier/f1_macro", "classifier/f1_weighted"}
    f1_class0 = 2 * 1.0 * 0.75 / (1.0 + 0.75)  # precision 3/3, recall 3/4 -> 6/7
    f1_class1 = 2 * (2 / 3) * 1.0 / ((2 / 3) + 1.0)  # precision 2/3, recall 2/2 -> 0.8
    assert scores["classifier/accuracy"] == pytest.approx(5 / 6)
    assert scores["classifier/f1_macro"] == pytest.approx((f1_class0 + f1_class1) / 2)
    assert scores["classifier/f1_weighted"] == pytest.approx((4 * f1_class0 + 2 * f1_class1) / 6)


def test_classifier_scores_perfect_and_missing_class():
    y = np.array([0, 1, 2, 2])
    assert classifier_scores(y, y) == {
        "classifier/accuracy": 1.0,
        "classifier/f1_macro": 1.0,
        "classifier/f1_weighted": 1.0,
    }
    # class 1 never predicted: its F1 is 0 (no warning, no NaN)
    scores = classifier_scores(np.array([0, 1, 2, 2]), np.array([0, 0, 2, 2]))
    assert scores["classifier/f1_macro"] == pytest.approx((2 / 3 + 0 + 1) / 3)
