"""`python -m src.run` end to end, as a user runs it: real subprocesses, a temporary MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import store_records, write_json

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd: Path, module: str = "src.run") -> subprocess.CompletedProcess:
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }
    return subprocess.run(
        [sys.executable, "-m", module, f"hydra.run.dir={cwd}/out", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory, store_path):
    cwd = tmp_path_factory.mktemp("run")
    done = run_cli(f"data.path={store_path}", "clusterer.n_clusters=4", cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlflow.db")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("customer-segmentation")
    (run,) = client.search_runs([experiment.experiment_id])
    return cwd, done, client, run


def test_run_is_logged_by_the_contract(finished, store_path):
    cwd, done, client, run = finished
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "pca-kmeans-xgboost"
    tags = run.data.tags
    assert {tags[k] for k in ("reducer", "clusterer", "classifier")} == {"pca", "kmeans", "xgboost"}
    assert tags["run_kind"] == "single"
    assert tags["git_sha"] and len(tags["data_digest"]) == 16
    params = run.data.params
    assert params["clusterer.n_clusters"] == "4"
    assert params["data.path"] == str(store_path)
    metrics = run.data.metrics
    assert metrics["cluster/n_clusters"] == 4
    assert 0.3 < metrics["cluster/silhouette"] <= 1
    assert metrics["cluster/calinski_harabasz"] > 0 and metrics["cluster/davies_bouldin"] > 0
    assert metrics["classifier/f1_macro"] > 0.9 and metrics["classifier/accuracy"] > 0.9
    assert metrics["data/rows_raw"] >= metrics["data/rows_clean"] > 0
    assert metrics["data/customers"] == 300
    assert all(metrics[f"time/{s}_s"] >= 0 for s in ("load", "clean", "rfm", "cluster", "classify"))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "segments.csv",
        "profile.csv",
        "cleaning_report.json",
        "config.yaml",
        "plots",
    } <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {
        "snake_plot.png",
        "embedding.png",
        "confusion_matrix.png",
        "silhouette.png",
        "segment_sizes.png",
        "eda_cleaning_waterfall.png",
    } <= plots
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == tags["data_digest"]
    assert "mlflow ui --backend-store-uri" in done.stdout


def test_segments_cover_every_clean_customer_once(finished):
    cwd, _, client, run = finished
    segments = pd.read_csv(cwd / "out" / "results" / "segments.csv", dtype={"customer_id": str})
    assert list(segments.columns[:3]) == ["customer_id", "segment_id", "segment_name"]
    assert segments["customer_id"].is_unique and len(segments) == 300
    report = json.loads((cwd / "out" / "results" / "cleaning_report.json").read_text())
    assert report["rows_clean"] == run.data.metrics["data/rows_clean"]
    profile = pd.read_csv(cwd / "out" / "results" / "profile.csv")
    assert profile["size"].sum() == 300
    assert profile["segment_name"].is_unique


def test_logged_model_segments_an_export_it_never_saw(finished, tmp_path):
    _, _, _, run = finished
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    records, truth = store_records(seed=5, id_offset=10_000)
    fresh = pd.DataFrame(records[:400])
    out = model.predict(fresh)
    assert list(out.columns) == ["customer_id", "segment_id", "segment_name"]
    assert set(out["customer_id"]) == {str(c) for c in fresh["CustomerID"]}
    assert set(out["customer_id"]).isdisjoint(
        pd.read_csv(finished[0] / "out" / "results" / "segments.csv", dtype=str)["customer_id"]
    )
    assert out["segment_id"].between(0, 3).all()


def test_degenerate_clustering_fails_the_run_without_a_model(tmp_path, store_path):
    done = run_cli(f"data.path={store_path}", "clusterer=dbscan", "clusterer.eps=50", cwd=tmp_path)
    assert done.returncode == 2
    assert "error: degenerate clustering" in done.stderr
    assert "Traceback" not in done.stderr
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    (run,) = client.search_runs(
        [client.get_experiment_by_name("customer-segmentation").experiment_id]
    )
    assert run.info.status == "FAILED"
    assert "degenerate" in run.data.tags["error"]
    assert not [a for a in client.list_artifacts(run.info.run_id) if a.path == "model"]
    assert not (tmp_path / "out" / "results").exists()


def test_missing_required_column_names_file_and_column(tmp_path):
    records, _ = store_records()
    for record in records:
        del record["CustomerID"]
    path = write_json(tmp_path / "no_customer.json", records)
    done = run_cli(f"data.path={path}", "tracking=none", cwd=tmp_path)
    assert done.returncode == 2
    assert str(path) in done.stderr and "CustomerID" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_option_lists_the_available_ones(tmp_path):
    done = run_cli("reducer=tsnee", "tracking=none", cwd=tmp_path)
    assert done.returncode != 0
    assert "reducer/tsnee" in done.stderr and "tsne" in done.stderr


def test_help_and_cfg_job_work(tmp_path):
    shown = run_cli("--help", cwd=tmp_path)
    assert shown.returncode == 0 and "reducer: none, pca, tsne, umap" in shown.stdout
    job = run_cli("reducer=tsne", "reducer.perplexity=50", "--cfg", "job", cwd=tmp_path)
    assert job.returncode == 0 and "perplexity: 50" in job.stdout
