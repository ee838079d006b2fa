"""Every reducer x clusterer x classifier combination composes from conf/ and runs on tiny data."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from src.errors import UserError
from src.features.value import feature_table
from src.pipeline import cpu_threads, prepare_data, run_pipeline
from tests.conftest import RFM_KMEANS, store_records

CONF = Path(__file__).resolve().parents[1] / "conf"
REDUCERS = sorted(p.stem for p in (CONF / "reducer").glob("*.yaml"))
CLUSTERERS = sorted(p.stem for p in (CONF / "clusterer").glob("*.yaml"))
CLASSIFIERS = sorted(p.stem for p in (CONF / "classifier").glob("*.yaml"))
# The tiny store has 300 customers: density-based clusterers need settings of its scale.
TINY = {
    "dbscan": ["clusterer.eps=0.5", "clusterer.min_samples=10"],
    "hdbscan": ["clusterer.min_cluster_size=20", "clusterer.min_samples=5"],
    "tsne": ["reducer.perplexity=20", "reducer.max_iter=250"],
    "umap": ["reducer.n_neighbors=15"],
}


@pytest.fixture(scope="module")
def data(store_path, make_cfg):
    return prepare_data(make_cfg(f"data.path={store_path}", "tracking=none"), with_figures=False)


def test_option_files_are_all_there():
    assert REDUCERS == ["none", "pca", "tsne", "umap"]
    assert CLUSTERERS == [
        "agglomerative",
        "birch",
        "dbscan",
        "gmm",
        "hdbscan",
        "kmeans",
        "value_tiers",
    ]
    assert CLASSIFIERS == ["knn", "logistic_regression", "random_forest", "xgboost"]


@pytest.mark.parametrize(
    ("reducer", "clusterer", "classifier"),
    [
        combination
        for combination in itertools.product(REDUCERS, CLUSTERERS, CLASSIFIERS)
        if combination[1] != "value_tiers"  # tiers a feature column: its own test below
    ],
)
def test_combination_runs(data, make_cfg, store_path, reducer, clusterer, classifier):
    if reducer == "umap" and importlib.util.find_spec("umap") is None:
        pytest.skip("umap-learn is not installed (pip install -e '.[umap]')")
    cfg = make_cfg(
        f"data.path={store_path}",
        "tracking=none",
        f"reducer={reducer}",
        f"clusterer={clusterer}",
        f"classifier={classifier}",
        *TINY.get(reducer, []),
        *TINY.get(clusterer, []),
    )
    result = run_pipeline(cfg, data)
    segments = result.segments
    assert segments["customer_id"].is_unique and len(segments) == len(data.rfm)
    assert set(segments["segment_id"]) == set(result.profile["segment_id"])
    assert result.metrics["cluster/n_clusters"] >= 2
    assert -1 <= result.metrics["cluster/silhouette"] <= 1
    assert 0 <= result.metrics["classifier/f1_macro"] <= 1
    assert result.profile["segment_name"].is_unique
    # Segment ids are ordered by mean spend, best first.
    assert result.profile["monetary_mean"].is_monotonic_decreasing
    labelled = segments.set_index("customer_id").loc[data.rfm.index]
    relabelled = result.segmenter.classifier.predict(
        result.segmenter.transformer.transform(
            feature_table(data.rfm, data.value, result.segmenter.features)
        )
    )
    by_classifier = labelled["assigned_by"] == "classifier"
    np.testing.assert_array_equal(
        relabelled[by_classifier.to_numpy()], labelled["segment_id"][by_classifier].to_numpy()
    )


@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_value_tiers_cut_expected_value_into_contiguous_tiers(make_cfg, store_path, classifier):
    cfg = make_cfg(
        f"data.path={store_path}",
        "tracking=none",
        "features=value",
        "reducer=none",
        "clusterer=value_tiers",
        f"classifier={classifier}",
    )
    data = prepare_data(cfg, with_figures=False)
    result = run_pipeline(cfg, data)
    value = data.value["expected_value"]
    segments = result.segments.set_index("customer_id")["segment_id"].reindex(value.index)
    assert segments.nunique() == 5
    assert (segments.value_counts() >= np.ceil(0.02 * len(segments))).all()
    # contiguous in expected value: no customer of a tier is worth less than one of a lower tier
    ranges = value.groupby(segments).agg(["min", "max"]).sort_values("min")
    assert (ranges["min"].to_numpy()[1:] > ranges["max"].to_numpy()[:-1]).all()
    assert result.metrics["classifier/f1_macro"] > 0.8


def test_load_section_of_the_report_and_the_model_remember_the_column_mapping(
    data, make_cfg, store_path
):
    load = data.cleaning.to_dict()["load"]
    assert load["columns"] == {
        "customer_id": "CustomerID",
        "date": "date",
        "amount": "sum",
        "order_id": "order_id",
        "sale_id": "sale_id",
        "quantity": "quantity",
        "product_id": "StockCode",
        "site_id": "site_id",
        "address": "address",
    }
    assert (load["format"], load["encoding"]) == ("json", "utf-8")
    result = run_pipeline(make_cfg(f"data.path={store_path}", "tracking=none"), data)
    assert result.segmenter.columns == load["columns"]


def test_planted_groups_are_found(data, make_cfg, store_path):
    cfg = make_cfg(
        f"data.path={store_path}", "tracking=none", "clusterer.n_clusters=4", *RFM_KMEANS
    )
    result = run_pipeline(cfg, data)
    _, truth = store_records()
    found = result.segments.set_index("customer_id")["segment_id"]
    planted = pd.Series(truth).loc[found.index]
    assert adjusted_rand_score(planted, found) > 0.8
    assert result.metrics["cluster/silhouette"] > 0.4
    assert result.metrics["classifier/f1_macro"] > 0.9


def test_transductive_methods_fit_on_a_sample_and_the_classifier_labels_the_rest(
    data, make_cfg, store_path
):
    cfg = make_cfg(
        f"data.path={store_path}", "tracking=none", "clusterer=agglomerative", "fit_sample_size=120"
    )
    result = run_pipeline(cfg, data)
    assigned = result.segments["assigned_by"].value_counts()
    assert assigned["clusterer"] == 120
    assert assigned["classifier"] == len(data.rfm) - 120
    assert any("fitted on a seeded sample of 120" in note for note in result.notes)


def test_noise_customers_are_flagged_and_assigned_a_segment(data, make_cfg, store_path):
    cfg = make_cfg(
        f"data.path={store_path}",
        "tracking=none",
        *RFM_KMEANS,
        "clusterer=dbscan",
        "clusterer.eps=0.35",
        "clusterer.min_samples=15",
    )
    result = run_pipeline(cfg, data)
    noise = result.segments["is_noise"]
    assert 0 < noise.mean() == pytest.approx(result.metrics["cluster/noise_fraction"])
    assert (result.segments.loc[noise, "segment_id"] >= 0).all()
    assert (result.segments.loc[noise, "assigned_by"] == "classifier").all()


def test_degenerate_clustering_is_a_clear_error(data, make_cfg, store_path):
    cfg = make_cfg(
        f"data.path={store_path}", "tracking=none", "clusterer=dbscan", "clusterer.eps=50"
    )
    with pytest.raises(UserError, match="degenerate"):
        run_pipeline(cfg, data)


def test_plots_are_drawn_once_on_demand_and_timed(data, make_cfg, store_path):
    result = run_pipeline(make_cfg(f"data.path={store_path}", "tracking=none"), data)
    assert "time/plots_s" not in result.metrics  # nothing drawn until asked
    figures = result.figures()
    assert {"snake_plot", "embedding", "silhouette", "feature_importance"} <= set(figures)
    assert result.metrics["time/plots_s"] > 0
    assert result.figures() is figures


def test_threads_setting(data, make_cfg, store_path):
    assert cpu_threads(None) >= 1
    assert cpu_threads(3) == 3
    cfg = make_cfg(f"data.path={store_path}", "tracking=none", "threads=0")
    with pytest.raises(UserError, match="threads=0: must be at least 1"):
        run_pipeline(cfg, data)
