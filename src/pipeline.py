"""The pipeline: load -> clean -> RFM (once per data set), then transform -> reduce -> cluster ->
score -> profile -> classify (once per configuration).

`prepare_data` and `run_pipeline` are the only two entry points; `src.run` calls both once, a sweep
calls `prepare_data` once and `run_pipeline` per trial. Neither imports MLflow or Hydra: tracking and
config composition stay at the edges.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.inspection import permutation_importance
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

from src.currency import Currency, currency
from src.data.clean import CleaningReport, clean_transactions, freeze_thresholds
from src.data.columns import describe
from src.data.load import LoadSettings, read_export, to_canonical
from src.data.synthetic import default_sample_path, truth_path
from src.errors import UserError
from src.evaluation import plots
from src.evaluation.metrics import NOISE, check_degenerate, classifier_scores, cluster_scores
from src.evaluation.profile import name_segments, profile_segments
from src.evaluation.validation import (
    baseline_labels,
    future_value,
    holdout_metrics,
    split_at_cutoff,
    stability_ari,
    truth_scores,
    value_tier_top_shares,
)
from src.features.rfm import TENURE, compute_rfm, make_transformer
from src.features.value import (
    ValueModel,
    check_columns,
    check_fallback,
    check_horizon,
    feature_table,
    fit_value_model,
    needs_value,
)
from src.models.factory import build_estimator, can_label_new_points
from src.models.segmenter import Segmenter
from src.timing import Stopwatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """A loaded, cleaned export and its per-customer RFM table, shared by every run on it."""

    source: Path
    digest: str
    rows_raw: int
    transactions: pd.DataFrame
    cleaning: CleaningReport
    rfm: pd.DataFrame
    timings: dict[str, float]
    example: pd.DataFrame  # a few customers' raw lines, as the model's input example
    figures: dict[str, Figure] = field(default_factory=dict)
    # Hold-out validation (validation.holdout_days > 0): future spend and orders per customer of
    # `rfm`, measured from `cutoff` on; features only ever see transactions before it.
    future: pd.DataFrame | None = None
    cutoff: pd.Timestamp | None = None
    # RFM and tenure of the same customers at the cutoff, whatever `features` are: what the
    # hold-out baselines segment (`baselines`).
    history: pd.DataFrame | None = None
    # The synthetic store's latent groups (customer_id, group), when its sidecar file is present.
    truth: pd.DataFrame | None = None
    # Lifetime value (MBG/NBD + Gamma-Gamma) fitted on the same transactions as `rfm`, and each
    # customer's p_alive, expected_purchases, expected_spend and expected_value (index as `rfm`);
    # None with `value_error` saying why when the store cannot identify the models.
    value_model: ValueModel | None = None
    value: pd.DataFrame | None = None
    value_error: str | None = None

    _baselines: dict[tuple[int, int], dict[str, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def baselines(self, k: int, seed: int) -> dict[str, np.ndarray]:
        """The hold-out baselines' groups at `k` (rows of `rfm`), computed once per k and seed:
        a sweep's trials share them."""
        if (k, seed) not in self._baselines:
            history = self.history.loc[self.rfm.index]
            self._baselines[(k, seed)] = baseline_labels(history, k, seed)
        return self._baselines[(k, seed)]

    def value_note(self) -> str | None:
        """The run's note when the profile goes without lifetime value."""
        if self.value_error is None:
            return None
        return f"no lifetime-value columns in the profile: {self.value_error}"

    def metrics(self) -> dict[str, float]:
        return {
            "data/rows_raw": float(self.rows_raw),
            "data/rows_clean": float(len(self.transactions)),
            "data/customers": float(len(self.rfm)),
        } | {f"time/{name}_s": round(sec, 4) for name, sec in self.timings.items()}


@dataclass
class RunResult:
    """Everything one configuration produced; written to disk and MLflow by the caller."""

    segments: pd.DataFrame  # customer_id, segment_id, segment_name, assigned_by, is_noise
    profile: pd.DataFrame
    metrics: dict[str, float]
    segmenter: Segmenter
    notes: list[str]
    draw: Callable[[], dict[str, Figure]] = field(repr=False)
    _figures: dict[str, Figure] | None = field(default=None, init=False, repr=False)

    def figures(self) -> dict[str, Figure]:
        """The run's plots, drawn on the first call and timed as `time/plots_s`. Drawing costs
        more than the rest of a small run, so a sweep trial that keeps no plots never draws them."""
        if self._figures is None:
            watch = Stopwatch()
            with watch.stage("plots"):
                self._figures = self.draw()
            self.metrics |= watch.as_metrics()
        return self._figures


def resolve_export(data_cfg: DictConfig) -> Path:
    """The export named by `data.path`, or the embedded synthetic store when it is empty."""
    if data_cfg.path:
        path = Path(str(data_cfg.path)).expanduser()
        if not path.exists():
            raise UserError(f"data.path={data_cfg.path}: file not found")
        return path
    return default_sample_path(
        n_customers=int(data_cfg.synthetic.customers), seed=int(data_cfg.synthetic.seed)
    )


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def prepare_data(cfg: DictConfig, with_figures: bool = True) -> PreparedData:
    """Load, clean and build RFM features once for a data set."""
    watch = Stopwatch()
    source = resolve_export(cfg.data)
    log.info("export: %s", source)
    with watch.stage("load"):
        raw = read_export(source, fmt=cfg.data.format, sheet=cfg.data.sheet)
        loaded, loading = to_canonical(raw, LoadSettings.from_config(cfg.data), str(source))
    with watch.stage("clean"):
        transactions, report = clean_transactions(
            loaded, OmegaConf.to_container(cfg.clean), currency_code=cfg.data.currency
        )
    report.load = loading.to_dict()
    log.info("columns %s", describe(loading.columns))
    log.info("cleaning report\n%s", report.to_table())
    if transactions.empty:
        raise UserError(f"{source}: no rows left after cleaning; see the cleaning report above")
    future = cutoff = history = None
    calibration, snapshot = (
        transactions,
        cfg.features.snapshot_date or None,
    )  # compute_rfm checks it
    holdout_days = int(cfg.validation.holdout_days)
    if holdout_days > 0:
        split = split_at_cutoff(transactions, holdout_days)
        calibration, snapshot, cutoff = split.calibration, split.cutoff, split.cutoff
        log.info(
            "hold-out: features from %s lines before %s; the %s lines of the %d days after judge them",
            f"{len(split.calibration):,}", cutoff.date(), f"{len(split.future):,}", holdout_days,
        )  # fmt: skip
    with watch.stage("rfm"):
        rfm = compute_rfm(calibration, snapshot=snapshot, extras=tuple(cfg.features.extras))
    with watch.stage("clv"):
        value_model, value, value_error = _lifetime_value(calibration, snapshot, rfm, cfg)
    if holdout_days > 0:
        future = future_value(split.future, rfm.index)
        history = compute_rfm(calibration, snapshot=snapshot, extras=(TENURE,))
    figures: dict[str, Figure] = {}
    if with_figures:
        with watch.stage("eda_plots"):
            figures = _exploratory_figures(
                transactions, rfm, report, cfg.features.transform, int(cfg.seed)
            )
    return PreparedData(
        source=source,
        digest=file_digest(source),
        rows_raw=report.rows_raw,
        transactions=transactions,
        cleaning=report,
        rfm=rfm,
        timings=dict(watch.seconds),
        example=_example_lines(raw, transactions),
        figures=figures,
        future=future,
        cutoff=cutoff,
        history=history,
        truth=_truth(source),
        value_model=value_model,
        value=value,
        value_error=value_error,
    )


def _lifetime_value(
    calibration: pd.DataFrame, snapshot: Any, rfm: pd.DataFrame, cfg: DictConfig
) -> tuple[ValueModel | None, pd.DataFrame | None, str | None]:
    """MBG/NBD + Gamma-Gamma on the training transactions, or why they cannot be fitted: a run
    on RFM features goes on without them (one note), one on value features too when
    `features.fallback_columns` names its replacement, and stops here otherwise, before any run
    exists."""
    columns = check_columns(cfg.features.columns, cfg.features.extras)
    horizon = check_horizon(cfg.clv.horizon_days)
    fallback = check_fallback(cfg.features.get("fallback_columns"))
    try:
        model, value = fit_value_model(calibration, snapshot, horizon)
    except UserError as err:
        if needs_value(columns) and fallback is None:
            raise UserError(_value_refusal(columns, str(err))) from None
        log.warning("no lifetime-value columns in the profile: %s", err)
        return None, None, str(err)
    return model, value.reindex(rfm.index), None


def _segment_features(
    cfg: DictConfig, data: PreparedData, notes: list[str]
) -> tuple[list[str], Any]:
    """The run's feature columns and transform: `features.columns` and `features.transform`, or,
    when those columns need lifetime value the store cannot identify, `features.fallback_columns`
    all logged (with a note; refused when it is null)."""
    features = list(check_columns(cfg.features.columns, cfg.features.extras))
    if data.value_error is None:
        return features, cfg.features.transform
    if not needs_value(features):
        notes.append(str(data.value_note()))
        return features, cfg.features.transform
    fallback = check_fallback(cfg.features.get("fallback_columns"))
    if fallback is None:
        raise UserError(_value_refusal(tuple(features), data.value_error))
    chosen = [*fallback, *(str(e) for e in cfg.features.extras)]
    notes.append(
        f"segmented on {chosen}, all logged (features.fallback_columns), instead of {features}: "
        f"{data.value_error}"
    )
    transform = OmegaConf.to_container(cfg.features.transform, resolve=True)
    return chosen, {**transform, "log": True}


def _value_refusal(columns: tuple[str, ...], reason: str) -> str:
    return (
        f"features=value (features.columns {list(columns)}) needs the lifetime-value models, "
        f"which this store cannot identify: {reason}; use features=rfm (or "
        "features.fallback_columns=[monetary,recency,frequency])"
    )


def _truth(source: Path) -> pd.DataFrame | None:
    """The synthetic store's sidecar of latent groups, if `source` has one (evaluation only)."""
    path = truth_path(source)
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"customer_id": str, "group": str})


def _example_lines(raw: pd.DataFrame, clean: pd.DataFrame, customers: int = 3) -> pd.DataFrame:
    """All raw lines of the first few customers that survived cleaning (row i of the canonical
    table is record i of the raw export)."""
    chosen = clean["customer_id"].drop_duplicates().head(customers)
    rows = clean.index[clean["customer_id"].isin(chosen)]
    return raw.iloc[rows].reset_index(drop=True)


def exploratory_figures(cfg: DictConfig, data: PreparedData) -> dict[str, Figure]:
    """The data set's plots, for data prepared without them."""
    return _exploratory_figures(
        data.transactions, data.rfm, data.cleaning, cfg.features.transform, int(cfg.seed)
    )


def _exploratory_figures(
    transactions: pd.DataFrame,
    rfm: pd.DataFrame,
    report: CleaningReport,
    transform: DictConfig,
    seed: int,
) -> dict[str, Figure]:
    """Plots of the data itself, drawn once per data set (a sweep's trials share them). The
    features' transform depends on `features.*` only, so its before/after view belongs here."""
    money = currency(report.currency)
    transformed = pd.DataFrame(
        make_transformer(transform, seed=seed).fit_transform(rfm),
        index=rfm.index,
        columns=rfm.columns,
    )
    return {
        "eda_rfm_distributions": plots.rfm_distributions(rfm, transformed, money),
        "eda_monthly_revenue": plots.monthly_revenue(transactions, money),
        "eda_order_value": plots.order_value_distribution(transactions, money),
        "eda_orders_per_customer": plots.orders_per_customer(rfm),
        "eda_rfm_pairwise": plots.rfm_pairwise(rfm, money=money),
        "eda_cleaning_waterfall": plots.cleaning_waterfall(report.to_dict()),
    }


def cpu_threads(setting: Any) -> int:
    """The `threads` setting as a count: null = every core this process may run on."""
    if setting is None:
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    if int(setting) < 1:
        raise UserError(f"threads={setting}: must be at least 1, or null for every core")
    return int(setting)


def run_pipeline(cfg: DictConfig, data: PreparedData) -> RunResult:
    """Segment the customers of `data` with the reducer, clusterer and classifier of `cfg`, with
    at most `cfg.threads` OpenMP/BLAS threads (t-SNE's gradient and KMeans use them)."""
    with threadpool_limits(limits=cpu_threads(cfg.threads)):
        return _run_pipeline(cfg, data)


def minimum_customers(cfg: DictConfig) -> tuple[int, str]:
    """The fewest customers the configured run can segment, and the setting that demands them.

    Each segment must be in the classifier's stratified hold-out and in its training part, so
    `k` segments (2 for the density clusterers, which need at least two clusters of
    `min_samples` / `min_cluster_size`) need k / test_size customers; the reducer and a k-NN
    classifier add their own neighbourhood sizes.
    """
    clusterer, reducer, classifier = cfg.clusterer, cfg.reducer, cfg.classifier
    test_size = float(classifier.get("test_size", 0.25))
    if not 0.0 < test_size < 1.0:
        raise UserError(f"classifier.test_size={test_size:g}: expected a share between 0 and 1")
    part = min(test_size, 1.0 - test_size)
    needs: list[tuple[int, str]] = []
    for key in ("n_clusters", "n_components"):
        k = clusterer.get(key)
        if isinstance(k, int):
            needs.append(
                (math.ceil(k / part), f"clusterer.{key}={k} segments, each in the classifier's "
                 f"hold-out (classifier.test_size={test_size:g}) and its training part")
            )  # fmt: skip
    for key in ("min_cluster_size", "min_samples"):
        size = clusterer.get(key)
        if isinstance(size, int) and not needs:
            needs.append((2 * size, f"two clusters of clusterer.{key}={size}"))
    if not needs:
        needs.append((math.ceil(2 / part), f"2 segments and classifier.test_size={test_size:g}"))
    for key, offset in (("perplexity", 1), ("n_neighbors", 1), ("n_components", 0)):
        value = reducer.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            needs.append((math.floor(value) + offset, f"reducer.{key}={value:g}"))
    neighbours = classifier.get("n_neighbors")
    if isinstance(neighbours, int):
        needs.append(
            (math.ceil(neighbours / (1 - test_size)),
             f"classifier.n_neighbors={neighbours} in the classifier's training part")
        )  # fmt: skip
    return max(needs, key=lambda need: need[0])


def require_customers(cfg: DictConfig, n_customers: int, source: Path) -> None:
    """UserError when `source` has fewer customers than the configured run needs."""
    minimum, reason = minimum_customers(cfg)
    if n_customers < minimum:
        raise UserError(
            f"{source}: {n_customers:,} customer{'s' if n_customers != 1 else ''} after cleaning, "
            f"but this run needs at least {minimum:,} ({reason}); use a larger export or fewer "
            "segments"
        )


def _run_pipeline(cfg: DictConfig, data: PreparedData) -> RunResult:
    watch = Stopwatch()
    notes: list[str] = []
    seed = int(cfg.seed)
    rfm = data.rfm
    require_customers(cfg, len(rfm), data.source)
    features, transform = _segment_features(cfg, data, notes)
    table = feature_table(rfm, data.value, features)

    with watch.stage("transform"):
        transformer = make_transformer(transform, seed=seed)
        X = np.asarray(transformer.fit_transform(table), dtype=float)

    reducer = build_estimator("reducer", cfg.reducer)
    clusterer = build_estimator("clusterer", cfg.clusterer)
    fit_idx = _fit_sample(len(rfm), reducer, clusterer, int(cfg.fit_sample_size), seed, notes)

    def reduce_and_cluster(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with watch.stage("reduce"):
            points = np.asarray(_fit(reducer, "reducer", lambda est: est.fit_transform(X[rows])))
        with watch.stage("cluster"):
            found = _fit(clusterer, "clusterer", lambda est: est.fit_predict(points))
        return X[rows], points.astype(float), np.asarray(found)

    X_fit, embedding, raw_labels = reduce_and_cluster(fit_idx)
    clusterer_name = type(clusterer).__name__
    max_share = float(cfg.degenerate_max_share)
    try:
        check_degenerate(raw_labels, max_share, clusterer_name)
    except UserError:
        # A few customers far from everyone (a whale) can take clusters of their own and leave
        # the rest in one: cluster without them, and let the classifier place them.
        loners = _single_customer_clusters(raw_labels)
        if not loners.any():
            raise
        notes.append(
            f"{int(loners.sum())} customer(s) in clusters of their own "
            f"({', '.join(str(c) for c in rfm.index[fit_idx[loners]][:5])}) left every other "
            "customer in one cluster: clustered without them, the classifier assigns them"
        )
        log.info(notes[-1])
        fit_idx = fit_idx[~loners]
        with watch.stage("transform"):  # their extreme values no longer set the scale
            transformer.fit(table.iloc[fit_idx])
            X = np.asarray(transformer.transform(table), dtype=float)
        X_fit, embedding, raw_labels = reduce_and_cluster(fit_idx)
        check_degenerate(raw_labels, max_share, clusterer_name)
    labels_fit = _order_by_value(raw_labels, rfm["monetary"].to_numpy()[fit_idx])

    with watch.stage("score"):
        scores = cluster_scores(X_fit, labels_fit, int(cfg.silhouette_sample_size), seed)
        embedding_scores = cluster_scores(
            embedding, labels_fit, int(cfg.silhouette_sample_size), seed
        )
    if scores.sampled:
        notes.append(
            f"silhouette computed on a seeded sample of {int(cfg.silhouette_sample_size):,} "
            f"of {len(fit_idx):,} customers"
        )

    with watch.stage("classify"):
        labelled = labels_fit != NOISE
        fitted = _train_classifier(cfg.classifier, X_fit[labelled], labels_fit[labelled], seed)
        labels = fitted.model.predict(X).astype(int)
        from_clusterer = np.zeros(len(rfm), dtype=bool)
        from_clusterer[fit_idx[labelled]] = True
        labels[fit_idx[labelled]] = labels_fit[labelled]
    is_noise = np.zeros(len(rfm), dtype=bool)
    is_noise[fit_idx[~labelled]] = True
    if fitted.unscored:
        notes.append(
            f"segment{'s' if len(fitted.unscored) > 1 else ''} "
            f"{', '.join(map(str, fitted.unscored))} (a single customer each) trained on but left "
            "out of the classifier's hold-out: one customer cannot be both trained on and scored"
        )

    with watch.stage("profile"):
        profile = profile_segments(rfm, labels, data.value)
        names = name_segments(profile)
        profile.insert(1, "segment_name", profile["segment_id"].map(names))
    segments = pd.DataFrame(
        {
            "customer_id": rfm.index.to_numpy(),
            "segment_id": labels,
            "segment_name": pd.Series(labels).map(names).to_numpy(),
            "assigned_by": np.where(from_clusterer, "clusterer", "classifier"),
            "is_noise": is_noise,
        }
    )

    validation: dict[str, float] = {}
    with watch.stage("stability"):
        validation |= _stability(cfg, reducer, clusterer, X_fit, embedding, labels_fit, notes)
    baseline = None
    if data.future is not None:
        baselines = data.baselines(len(profile), seed)
        baseline = baselines["value_rank"]
        validation |= holdout_metrics(data.future.loc[rfm.index], labels, baselines, best_segment=0)
        notes.append(_holdout_verdict(validation, data.cutoff, int(cfg.validation.holdout_days)))
    if data.truth is not None:
        validation |= truth_scores(segments, data.truth)

    money = currency(data.cleaning.currency)

    def draw() -> dict[str, Figure]:
        figures = _segment_figures(
            X, X_fit, embedding, labels_fit, labels, profile, fitted, table, money
        )
        if baseline is not None:
            figures |= _holdout_figures(data.future.loc[rfm.index], labels, baseline, names, money)
        return figures

    metrics = (
        scores.as_metrics()
        | {"cluster/silhouette_embedding": embedding_scores.as_metrics()["cluster/silhouette"]}
        | fitted.scores
        | validation
        | watch.as_metrics()
    )
    segmenter = Segmenter(
        columns=dict(data.cleaning.load["columns"]),
        load_settings=LoadSettings.from_config(cfg.data),
        clean_rules=freeze_thresholds(OmegaConf.to_container(cfg.clean), data.cleaning),
        extras=tuple(cfg.features.extras),
        features=tuple(features),
        transformer=transformer,
        classifier=fitted.model,
        segment_names=dict(names),
        value_model=data.value_model if needs_value(features) else None,
    )
    return RunResult(segments, profile, metrics, segmenter, notes, draw)


def _stability(
    cfg: DictConfig,
    reducer: Any,
    clusterer: Any,
    X_fit: np.ndarray,
    embedding: np.ndarray,
    labels_fit: np.ndarray,
    notes: list[str],
) -> dict[str, float]:
    """`cluster/stability_ari`: refit on seeded subsamples, compare on the shared customers."""
    settings = cfg.validation.stability
    if int(settings.subsamples) <= 0:
        return {}
    whole = can_label_new_points(reducer)

    def refit(rows: np.ndarray) -> np.ndarray:
        points = clone(reducer).fit_transform(X_fit[rows]) if whole else embedding[rows]
        return clone(clusterer).fit_predict(np.asarray(points, dtype=float))

    if not whole:
        notes.append(
            f"stability: {type(reducer).__name__} is not refitted; the clusterer is refitted on "
            "subsamples of its embedding"
        )
    score = stability_ari(
        labels_fit, refit, len(labels_fit), int(settings.subsamples), float(settings.fraction),
        int(cfg.seed),
    )  # fmt: skip
    return {"cluster/stability_ari": score}


def _holdout_verdict(metrics: dict[str, float], cutoff: pd.Timestamp, days: int) -> str:
    spend, orders = metrics["holdout/eta2_spend"], metrics["holdout/eta2_orders"]
    value, kmeans = metrics["holdout/value_rank/eta2_spend"], metrics["holdout/kmeans/eta2_orders"]
    return (
        f"hold-out ({days} days from {cutoff.date()}): segments explain {spend:.1%} of the variance "
        f"of future spend (value ranking {value:.1%}, KMeans on log-RFM "
        f"{metrics['holdout/kmeans/eta2_spend']:.1%}, RFM quintiles "
        f"{metrics['holdout/quintile/eta2_spend']:.1%}) and {orders:.1%} of future orders "
        f"(KMeans {kmeans:.1%}); they {'reach' if spend >= value else 'fall short of'} the value "
        f"ranking on spend and {'reach' if orders >= kmeans else 'fall short of'} KMeans on orders"
    )


def _holdout_figures(
    future: pd.DataFrame,
    labels: np.ndarray,
    baseline: np.ndarray,
    names: dict[int, str],
    money: Currency,
) -> dict[str, Figure]:
    table = future.assign(segment=labels, baseline=baseline)
    bounds = np.r_[0.0, value_tier_top_shares(len(names)), 1.0]
    shares = np.diff(bounds)
    groups = {
        g: ("top" if g == 0 else "bottom" if g == len(shares) - 1 else "next") + f" {shares[g]:.0%}"
        for g in np.unique(baseline).tolist()
    }
    return {
        "holdout_future_spend": plots.future_spend_by_segment(
            table, "segment", names, "Future spend per segment (hold-out window)", money
        ),
        "holdout_value_rank_future_spend": plots.future_spend_by_segment(
            table, "baseline", groups,
            "Future spend per value-ranking tier (baseline with as many groups)",
            money,
        ),
    }  # fmt: skip


def _fit_sample(
    n: int, reducer: Any, clusterer: Any, limit: int, seed: int, notes: list[str]
) -> np.ndarray:
    """Row indices the reducer and clusterer are fitted on: all, or a seeded sample when a
    transductive method would otherwise face more than `limit` customers."""
    transductive = [
        type(est).__name__ for est in (reducer, clusterer) if not can_label_new_points(est)
    ]
    if not transductive or n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    notes.append(
        f"{' and '.join(transductive)} cannot label new points: fitted on a seeded sample of "
        f"{limit:,} of {n:,} customers (fit_sample_size); the classifier labels the rest"
    )
    log.info(notes[-1])
    return np.sort(rng.choice(n, size=limit, replace=False))


def _single_customer_clusters(labels: np.ndarray) -> np.ndarray:
    """Mask of the customers that are alone in their cluster (noise is no cluster)."""
    ids, counts = np.unique(labels, return_counts=True)
    alone = ids[(counts == 1) & (ids != NOISE)]
    return np.isin(labels, alone)


def _fit(estimator: Any, group: str, fit: Any) -> Any:
    try:
        return fit(estimator)
    except InvalidParameterError as err:
        raise UserError(f"{group} ({type(estimator).__name__}): {err}") from err


def _order_by_value(labels: np.ndarray, monetary: np.ndarray) -> np.ndarray:
    """Renumber clusters 0..k-1 by descending mean spend, so ids are stable and readable; noise
    stays -1."""
    labels = np.asarray(labels)
    clusters = np.unique(labels[labels != NOISE])
    means = [monetary[labels == c].mean() for c in clusters]
    order = clusters[np.argsort(means, kind="stable")[::-1]]
    renumbered = np.full(len(labels), NOISE, dtype=int)
    for new, old in enumerate(order):
        renumbered[labels == old] = new
    return renumbered


@dataclass(frozen=True)
class FittedClassifier:
    model: Any  # refitted on every labelled customer: the deployable one
    probe: Any  # fitted on the training part only: scored, and probed for feature importances
    scores: dict[str, float]
    X_test: np.ndarray
    y_test: np.ndarray
    y_pred: np.ndarray
    seed: int
    unscored: tuple[int, ...] = ()  # one-customer segments: trained on, not in the hold-out

    def importances(self) -> np.ndarray:
        """Permutation importance of each feature on the hold-out (drop in F1 macro)."""
        return permutation_importance(
            self.probe, self.X_test, self.y_test, scoring="f1_macro", n_repeats=3,
            random_state=self.seed,
        ).importances_mean  # fmt: skip


def _train_classifier(
    spec: DictConfig, X: np.ndarray, y: np.ndarray, seed: int
) -> FittedClassifier:
    """Score on a stratified hold-out, then refit on all labelled customers for deployment.
    A one-customer segment (a whale) cannot be both trained on and scored: it goes to the
    training part only, and the hold-out is stratified over the other segments."""
    counts = np.bincount(y)
    unscored = np.flatnonzero(counts == 1)
    held = ~np.isin(y, unscored)
    classes = int(np.count_nonzero(counts >= 2))
    test_size = float(spec.get("test_size", 0.25))
    n_test = max(math.ceil(test_size * held.sum()), classes)  # scikit-learn's ceil, >= 1 each
    if classes == 0 or held.sum() - n_test < classes:
        raise UserError(
            f"classifier.test_size={test_size:g}: {int(held.sum()):,} customers in segments of 2 "
            f"or more cannot give each of their {classes} segments a customer in both the "
            "classifier's training part and its hold-out; use a larger export or fewer segments"
        )
    train, test = train_test_split(
        np.flatnonzero(held), test_size=n_test, stratify=y[held], random_state=seed
    )
    train = np.concatenate([train, np.flatnonzero(~held)])
    X_train, X_test, y_train, y_test = X[train], X[test], y[train], y[test]
    probe = build_estimator("classifier", spec)
    _fit(probe, "classifier", lambda est: est.fit(X_train, y_train))
    y_pred = probe.predict(X_test).astype(int)
    return FittedClassifier(
        model=clone(probe).fit(X, y),
        probe=probe,
        scores=classifier_scores(y_test, y_pred),
        X_test=X_test,
        y_test=y_test,
        y_pred=y_pred,
        seed=seed,
        unscored=tuple(int(segment) for segment in unscored),
    )


def _segment_figures(
    X: np.ndarray,
    X_fit: np.ndarray,
    embedding: np.ndarray,
    labels_fit: np.ndarray,
    labels: np.ndarray,
    profile: pd.DataFrame,
    fitted: FittedClassifier,
    table: pd.DataFrame,
    money: Currency,
) -> dict[str, Figure]:
    names = dict(zip(profile["segment_id"], profile["segment_name"], strict=True))
    if embedding.shape[1] == 2:
        view, title = embedding, "Customers in the reducer's 2-D embedding"
    else:
        view = PCA(n_components=2, random_state=0).fit_transform(X_fit)
        title = "Customers in the first two principal components of the features"
    transformed = pd.DataFrame(X, index=table.index, columns=table.columns)
    ordered_names = [names[i] for i in sorted(names)]
    return {
        "snake_plot": plots.snake_plot(transformed, labels, names, money),
        "embedding": plots.embedding_scatter(view, labels_fit, names, title),
        "segment_sizes": plots.segment_bars(profile),
        "silhouette": plots.silhouette_plot(X_fit, labels_fit, names),
        "confusion_matrix": plots.confusion_matrix_plot(
            fitted.y_test, fitted.y_pred, ordered_names
        ),
        "feature_importance": plots.feature_importance_plot(
            list(table.columns),
            fitted.importances(),
            "Permutation importance (drop in F1 macro)",
            money,
        ),
    }
