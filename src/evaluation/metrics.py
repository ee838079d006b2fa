"""Scores of a clustering (silhouette, Calinski-Harabasz, Davies-Bouldin) and of the classifier.

Cluster scores are computed in the transformed RFM space for every run, so every reducer is judged
on the same ground. Noise points (label -1 from DBSCAN / HDBSCAN) belong to no cluster: they are
left out of the three scores and reported as `cluster/noise_fraction` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    f1_score,
    silhouette_score,
)

from src.errors import UserError

NOISE = -1

# The hyperparameters that decide how many clusters each clusterer finds, named as the user types
# them (`clusterer.<key>`). Keys: config option names and scikit-learn class names, lower-cased.
_CLUSTER_COUNT_KEYS: dict[str, tuple[str, ...]] = {
    "kmeans": ("n_clusters",),
    "minibatchkmeans": ("n_clusters",),
    "gmm": ("n_components",),
    "gaussianmixture": ("n_components",),
    "agglomerative": ("n_clusters", "linkage"),
    "agglomerativeclustering": ("n_clusters", "linkage"),
    "birch": ("n_clusters", "threshold"),
    "dbscan": ("eps", "min_samples"),
    "hdbscan": ("min_cluster_size", "min_samples"),
}


@dataclass(frozen=True)
class ClusterScores:
    """The cluster metrics of one labelling, and how the silhouette was obtained."""

    silhouette: float
    calinski_harabasz: float
    davies_bouldin: float
    n_clusters: int
    noise_fraction: float
    sampled: bool  # silhouette computed on a seeded sample rather than on every clustered point
    silhouette_points: int  # how many points the silhouette was computed on

    def as_metrics(self) -> dict[str, float]:
        """The contract's `cluster/*` metric names and values."""
        return {
            "cluster/silhouette": float(self.silhouette),
            "cluster/calinski_harabasz": float(self.calinski_harabasz),
            "cluster/davies_bouldin": float(self.davies_bouldin),
            "cluster/n_clusters": float(self.n_clusters),
            "cluster/noise_fraction": float(self.noise_fraction),
        }


def cluster_scores(
    X: np.ndarray, labels: np.ndarray, sample_size: int | None = 10_000, seed: int = 0
) -> ClusterScores:
    """Silhouette (higher is better), Calinski-Harabasz (higher), Davies-Bouldin (lower).

    Noise points are excluded from all three. Silhouette costs O(n^2), so above `sample_size`
    clustered points it is computed on a sample drawn with `seed` (the same sample scikit-learn's
    `silhouette_score(sample_size=..., random_state=seed)` draws); CH and DB are O(n) and always use
    every clustered point. Where a score is undefined (fewer than two clusters, or every point its
    own cluster) it is NaN.
    """
    X = np.asarray(X, dtype=float)
    labels = np.asarray(labels)
    if X.ndim != 2 or labels.ndim != 1 or len(X) != len(labels):
        raise ValueError(f"X {X.shape} and labels {labels.shape} do not describe the same points")
    if sample_size is not None and sample_size < 2:
        raise UserError(
            f"silhouette_sample_size={sample_size}: the silhouette needs a sample of at least 2"
        )
    clustered = labels != NOISE
    X_c, labels_c = X[clustered], labels[clustered]
    n = len(labels_c)
    n_clusters = len(np.unique(labels_c))
    noise_fraction = float(1.0 - clustered.mean()) if len(labels) else 0.0

    sampled = sample_size is not None and n > sample_size
    if sampled:
        # Exactly the permutation silhouette_score(sample_size=..., random_state=seed) uses; drawn
        # here so an unlucky one-cluster sample gives NaN instead of an exception.
        idx = np.random.RandomState(seed).permutation(n)[:sample_size]
        X_s, labels_s = X_c[idx], labels_c[idx]
    else:
        X_s, labels_s = X_c, labels_c

    return ClusterScores(
        silhouette=_defined(silhouette_score, X_s, labels_s),
        calinski_harabasz=_defined(calinski_harabasz_score, X_c, labels_c),
        davies_bouldin=_defined(davies_bouldin_score, X_c, labels_c),
        n_clusters=n_clusters,
        noise_fraction=noise_fraction,
        sampled=sampled,
        silhouette_points=len(labels_s),
    )


def _defined(score, X: np.ndarray, labels: np.ndarray) -> float:
    """The score where scikit-learn defines it (2 <= clusters <= points - 1), else NaN."""
    k = len(np.unique(labels))
    if k < 2 or k > len(labels) - 1:
        return float("nan")
    return float(score(X, labels))


def check_degenerate(
    labels: np.ndarray, max_share: float = 0.95, clusterer: str | None = None
) -> None:
    """Raise UserError when a clustering cannot make useful segments.

    Degenerate means: every customer is noise, fewer than two clusters, or one cluster holds more
    than `max_share` of the clustered (non-noise) customers. The message gives the numbers and the
    settings to change (`clusterer.*` hyperparameters, `degenerate_max_share`).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError("check_degenerate needs a non-empty 1-D array of labels")
    if not 0.0 < max_share <= 1.0:
        raise UserError(
            f"degenerate_max_share={max_share}: must be a share above 0 and at most 1 (e.g. 0.95)"
        )
    who = clusterer or "the clusterer"
    hint = f"try other {_hyperparameters(clusterer)}, or another clusterer"
    n = len(labels)
    clustered = labels[labels != NOISE]
    if len(clustered) == 0:
        raise UserError(
            f"degenerate clustering: {who} marked all {n:,} customers as noise (label -1); {hint}"
        )
    ids, counts = np.unique(clustered, return_counts=True)
    n_noise = n - len(clustered)
    noise_note = (
        f", {n_noise:,} of {n:,} customers ({n_noise / n:.1%}) are noise" if n_noise else ""
    )
    if len(ids) < 2:
        raise UserError(
            f"degenerate clustering: {who} found {len(ids)} cluster{noise_note}; segmentation needs "
            f"at least 2; {hint}"
        )
    share = counts.max() / len(clustered)
    if share > max_share:
        of_whom = (
            f"of the {len(clustered):,} clustered (non-noise) customers"
            if n_noise
            else "of customers"
        )
        raise UserError(
            f"degenerate clustering: {who} put {_percent_above(share, max_share)} {of_whom} into one "
            f"cluster (limit {max_share * 100:g}%, setting degenerate_max_share){noise_note}; {hint}"
        )


def _hyperparameters(clusterer: str | None) -> str:
    """'clusterer.eps / clusterer.min_samples' for a known clusterer, else 'clusterer.*' settings."""
    keys = _CLUSTER_COUNT_KEYS.get((clusterer or "").strip().lower().replace("_", ""))
    if not keys:
        return "clusterer.* hyperparameters"
    return " / ".join(f"clusterer.{key}" for key in keys)


def _percent_above(share: float, limit: float) -> str:
    """`share` as a percentage with enough decimals that it does not read as equal to `limit`."""
    for decimals in range(1, 5):
        text = f"{share:.{decimals}%}"
        if float(text.rstrip("%")) > limit * 100:
            return text
    return f"{share:.4%}"


def classifier_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 (macro: every segment counts equally; weighted: by segment size)."""
    return {
        "classifier/accuracy": float(accuracy_score(y_true, y_pred)),
        "classifier/f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "classifier/f1_weighted": float(
            f1_score(y_true, y_pred, average="weighted", zero_division=0)
        ),
    }
