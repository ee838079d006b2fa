"""`python -m src.run` end to end, as a user runs it: real subprocesses, a temporary MLflow store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from src.cli import BROKEN_PIPE
from tests.conftest import store_records, write_json

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd: Path, module: str = "src.run") -> subprocess.CompletedProcess:
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_folders(cwd: Path) -> list[Path]:
    """The results folders of the runs started in `cwd`: outputs/<date>/<HH-MM-SS>-<id>."""
    return sorted((cwd / "outputs").glob("*/*"))


def run_count(cwd: Path) -> int:
    """Runs in the SQLite store of `cwd` (0 without a store), read without MLflow."""
    if not (cwd / "mlflow.db").exists():
        return 0
    with sqlite3.connect(cwd / "mlflow.db") as db:
        return db.execute("select count(*) from runs").fetchone()[0]


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


def test_run_is_logged_by_the_contract(finished):
    cwd, done, client, run = finished
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "none-value_tiers-xgboost"  # the default
    tags = run.data.tags
    assert [tags[k] for k in ("reducer", "clusterer", "classifier")] == [
        "none", "value_tiers", "xgboost"
    ]  # fmt: skip
    assert tags["run_kind"] == "single"
    assert tags["git_sha"] and len(tags["data_digest"]) == 16
    params = run.data.params
    assert params["clusterer.n_clusters"] == "4"
    assert [params[g] for g in ("reducer", "clusterer", "classifier")] == [
        "none", "value_tiers", "xgboost"
    ]  # fmt: skip
    assert params["data_digest"] == tags["data_digest"] and params["seed"] == "42"
    # Only what differs between runs: each chosen option's own settings, not the whole config
    # (that is config.yaml); no option's class path (its name says it).
    groups = {name.split(".")[0] for name in params if "." in name}
    assert groups == {"clusterer", "classifier"}  # reducer=none has no settings
    assert not [name for name in params if name.endswith("_target_")]
    assert len(params) < 30
    note = tags["mlflow.note.content"]
    assert "4 segments of 300 customers" in note and "cluster/silhouette" in note
    assert "digest " + tags["data_digest"] in note
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    metrics = run.data.metrics
    assert metrics["cluster/n_clusters"] == 4
    assert 0.2 < metrics["cluster/silhouette"] <= 1  # tiers along one column: low by nature
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
    assert "open the MLflow UI: python -m src.ui --backend-store-uri sqlite:///" in done.stdout


def test_segments_cover_every_clean_customer_once(finished):
    cwd, _, client, run = finished
    (folder,) = run_folders(cwd)
    assert folder.name.endswith(f"-{run.info.run_id[:8]}")
    assert f"outputs: {folder.relative_to(cwd)}" in finished[1].stdout
    segments = pd.read_csv(folder / "segments.csv", dtype={"customer_id": str})
    assert list(segments.columns[:3]) == ["customer_id", "segment_id", "segment_name"]
    assert segments["customer_id"].is_unique and len(segments) == 300
    report = json.loads((folder / "cleaning_report.json").read_text())
    assert report["rows_clean"] == run.data.metrics["data/rows_clean"]
    profile = pd.read_csv(folder / "profile.csv")
    assert profile["size"].sum() == 300
    assert profile["segment_name"].is_unique


def test_logged_model_segments_an_export_it_never_saw(finished, tmp_path):
    _, _, _, run = finished
    # The logged model is named for what it is; the runs:/ URI reaches it by that name.
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/segmenter-none-value_tiers-xgboost")
    records, truth = store_records(seed=5, id_offset=10_000)
    fresh = pd.DataFrame(records[:400])
    out = model.predict(fresh)
    assert list(out.columns) == ["customer_id", "segment_id", "segment_name"]
    assert set(out["customer_id"]) == {str(c) for c in fresh["CustomerID"]}
    assert set(out["customer_id"]).isdisjoint(
        pd.read_csv(run_folders(finished[0])[0] / "segments.csv", dtype=str)["customer_id"]
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
    assert client.search_logged_models([run.info.experiment_id]) == []
    assert run_folders(tmp_path) == []


def test_missing_required_column_names_file_and_column(tmp_path):
    records, _ = store_records()
    for record in records:
        del record["CustomerID"]
    path = write_json(tmp_path / "no_customer.json", records)
    done = run_cli(f"data.path={path}", "tracking=none", cwd=tmp_path)
    assert done.returncode == 2
    assert str(path) in done.stderr and "CustomerID" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("reducer=tsnee",), "error: In 'config': Could not find 'reducer/tsnee'; Available options in 'reducer': none, pca, tsne, umap"),
        (("clusterer.n_clusterz=4",), "error: Could not override 'clusterer.n_clusterz'; To append to your config use +clusterer.n_clusterz=4; Key 'n_clusterz' is not in struct"),
        (("seed=[",), "error: no viable alternative at input '['"),
        (("data.path=.",), "error: data.path=.: is a directory, expected an export file"),
        (("data.path=missing.json",), "error: data.path=missing.json: file not found"),
        (("data.path=export.txt",), "error: export.txt: cannot tell the format from the extension '.txt'"),
        (("clean.returns.mode=keepp",), "error: clean.returns.mode=keepp: expected one of"),
        (("threads=0",), "error: threads=0: must be at least 1"),
        (("+clusterer.n_clusterz=4",), "error: clusterer: ValueTiers rejected the settings"),
        (("data.columns.customer_id=client",), "error: {store}: "),
    ],
)  # fmt: skip
def test_refusals_are_one_line_exit_2_and_leave_the_store_as_it_was(
    finished, store_path, args, message
):
    """Each refusal happens before any MLflow run, results folder or log file exists."""
    cwd = finished[0]
    (cwd / "export.txt").write_text("CustomerID,date,sum\n")
    before = sorted(p.relative_to(cwd) for p in cwd.rglob("*") if "mlruns" not in p.parts)
    runs = run_count(cwd)
    args = list(args)
    if not any(a.startswith("data.path") for a in args):
        args.append(f"data.path={store_path}")
    done = run_cli(*args, cwd=cwd)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message.format(store=store_path)), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert run_count(cwd) == runs == 1
    (cwd / "export.txt").unlink()
    after = sorted(p.relative_to(cwd) for p in cwd.rglob("*") if "mlruns" not in p.parts)
    assert [p for p in after if p != Path("export.txt")] == [
        p for p in before if p != Path("export.txt")
    ]


def test_an_export_refused_after_loading_leaves_no_run(tmp_path):
    records, _ = store_records()
    path = write_json(tmp_path / "tests_only.json", [r | {"CustomerID": "test-1"} for r in records])
    done = run_cli(f"data.path={path}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "no rows left after cleaning" in done.stderr and "Traceback" not in done.stderr
    assert run_count(tmp_path) == 0 and run_folders(tmp_path) == []


def test_a_closed_output_pipe_stops_with_one_line(tmp_path, store_path):
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    command = [sys.executable, "-m", "src.run", f"data.path={store_path}"]
    with subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:  # `python -m src.run | head -1`
        assert process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=300) == 2
    assert stderr.splitlines()[-1] == f"error: {BROKEN_PIPE}" and "Traceback" not in stderr
    assert run_count(tmp_path) == 0  # it stopped while loading, before the run was created


def test_two_runs_started_together_keep_their_own_folders(tmp_path, store_path):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "src.run", f"data.path={store_path}", "tracking=none"]
    stale = tmp_path / "outputs" / "2020-01-01" / ".00-00-00-deadbeef.999999999.partial"
    stale.mkdir(parents=True)  # a run killed while writing (no such process)
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    folders = [f for f in run_folders(tmp_path) if f.parent.name != "2020-01-01"]
    assert len(folders) == 2
    assert all((f / "segments.csv").exists() for f in folders)
    assert not stale.exists()
    assert not list((tmp_path / "outputs").glob("*/.*"))  # no partial folder left


def test_help_and_cfg_job_work(tmp_path):
    shown = run_cli("--help", cwd=tmp_path)
    assert shown.returncode == 0 and "reducer: none, pca, tsne, umap" in shown.stdout
    job = run_cli(
        "reducer=tsne", "reducer.perplexity=50", "clusterer=kmeans", "clusterer.n_clusters=6",
        "seed=7", "--cfg", "job", cwd=tmp_path,
    )  # fmt: skip
    assert job.returncode == 0 and "perplexity: 50" in job.stdout
    assert "n_clusters: 6" in job.stdout and "seed: 7" in job.stdout
