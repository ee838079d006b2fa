"""Value tiers: customers cut into `n_clusters` tiers along one value column (a customer pyramid).

The cuts are Fisher's natural breaks: the partition of the sorted column into contiguous tiers
that maximises the between-tier sum of squares (one-dimensional k-means, solved exactly over the
candidate cuts by dynamic programming), with every tier holding at least `min_share` of the
customers. The sum of squares is taken of (value - its minimum) ** `power`: on expected value in
money (features=value, whose expected_value column is not logged) `power` 1 makes the tiers differ
most in what customers are expected to spend (the top tiers as small as `min_share` allows, one
large bottom tier: the customer pyramid of marketing texts); lower powers move the cuts down the
pyramid, so the tiers also separate the many customers at the bottom. An affine scaling of the
column (features.transform.scaler=standard) changes nothing; a log would (keep it off the column).

Customers with equal values always share a tier (cuts fall only where the value changes).
Inductive: `predict` places new customers by the fitted thresholds.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from src.errors import UserError

# Candidate cuts considered: every change of value when there are at most this many, else this
# many, evenly spaced in rank and moved to the nearest change of value (a 0.1% grid on a large
# store; the DP costs O(n_clusters * MAX_CANDIDATES^2)).
MAX_CANDIDATES = 1000


class ValueTiers(ClusterMixin, BaseEstimator):
    """Tiers of column `column` of X, highest values in tier 0."""

    def __init__(
        self, n_clusters: int = 5, min_share: float = 0.02, column: int = 0, power: float = 0.3
    ):
        self.n_clusters = n_clusters
        self.min_share = min_share
        self.column = column
        self.power = power

    def fit(self, X, y=None):  # noqa: ARG002 (scikit-learn's signature)
        values = self._values(X)
        n, k = len(values), int(self.n_clusters)
        if k < 1:
            raise UserError(f"clusterer.n_clusters={self.n_clusters}: at least 1 tier")
        if not 0.0 <= float(self.min_share) * k <= 1.0:
            raise UserError(
                f"clusterer.min_share={self.min_share}: {k} tiers of at least that share do not "
                "fit in 100% of the customers"
            )
        if not float(self.power) > 0:
            raise UserError(f"clusterer.power={self.power}: must be positive")
        ranked = np.sort(values)[::-1]
        spread = (ranked - ranked[-1]) ** float(self.power)  # what the tiers should separate
        smallest = max(1, math.ceil(float(self.min_share) * n))
        cuts = _natural_breaks(spread, k, smallest, self.n_clusters, self.min_share)
        # thresholds_[i]: the lowest value of tier i (tiers 0..k-2; the last takes the rest)
        self.thresholds_ = ranked[np.array(cuts, dtype=int) - 1]
        self.labels_ = self.predict(X)
        return self

    def predict(self, X) -> np.ndarray:
        values = self._values(X)
        # tier = how many thresholds lie strictly above the value
        return np.searchsorted(-self.thresholds_, -values, side="left").astype(int)

    def _values(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or not 0 <= int(self.column) < X.shape[1]:
            raise UserError(
                f"clusterer.column={self.column}: the features have "
                f"{X.shape[1] if X.ndim == 2 else 0} column(s)"
            )
        values = X[:, int(self.column)]
        if not np.isfinite(values).all():
            raise ValueError("value tiers: non-finite values")
        return values


def _natural_breaks(
    ranked: np.ndarray, k: int, smallest: int, n_clusters: object, min_share: object
) -> list[int]:
    """Cut positions (1..n-1, increasing) splitting `ranked` (descending) into k contiguous tiers
    of at least `smallest` rows, maximising sum over tiers of (tier sum)^2 / (tier size), which is
    the between-tier sum of squares plus a constant."""
    n = len(ranked)
    changes = np.flatnonzero(ranked[1:] != ranked[:-1]) + 1  # positions where a new value starts
    if len(changes) > MAX_CANDIDATES:
        grid = np.linspace(0, n, MAX_CANDIDATES + 2)[1:-1]
        nearest = np.searchsorted(changes, grid).clip(0, len(changes) - 1)
        changes = np.unique(changes[nearest])
    positions = np.concatenate([[0], changes, [n]]).astype(int)
    totals = np.concatenate([[0.0], np.cumsum(ranked)])[positions]
    m = len(positions)
    gain = np.full((k + 1, m), -np.inf)
    back = np.zeros((k + 1, m), dtype=int)
    gain[0, 0] = 0.0
    for tiers in range(1, k + 1):
        for end in range(1, m):
            sizes = positions[end] - positions[:end]
            ok = (sizes >= smallest) & np.isfinite(gain[tiers - 1, :end])
            if not ok.any():
                continue
            candidates = np.where(
                ok,
                gain[tiers - 1, :end] + (totals[end] - totals[:end]) ** 2 / np.maximum(sizes, 1),
                -np.inf,
            )
            best = int(np.argmax(candidates))
            gain[tiers, end], back[tiers, end] = candidates[best], best
    if not np.isfinite(gain[k, m - 1]):
        raise UserError(
            f"clusterer=value_tiers: {n} customers with {len(np.unique(ranked))} distinct values "
            f"cannot make clusterer.n_clusters={n_clusters} tiers of at least "
            f"clusterer.min_share={min_share} each"
        )
    cuts, end = [], m - 1
    for tiers in range(k, 0, -1):
        end = back[tiers, end]
        cuts.append(int(positions[end]))
    return sorted(cuts)[1:]
