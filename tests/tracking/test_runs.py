"""src.tracking.runs against a temporary SQLite store."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src.tracking import runs


def test_configure_marks_new_and_found_experiments_as_model_development(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    MlflowClient().create_experiment("made-elsewhere")  # an older store: no kind tag
    for name in ("made-elsewhere", "fresh"):
        runs.configure(OmegaConf.create({"uri": uri, "experiment": name}))
        tags = MlflowClient().get_experiment_by_name(name).tags
        assert tags[runs.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_carry_best_trial_moves_the_best_tag_and_copies_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("carry")
    trials = {}
    for name, silhouette in (("t001-pca-kmeans-knn", 0.4), ("t002-none-gmm-knn", 0.5)):
        with mlflow.start_run(run_name=name, tags={"study": "s", "run_kind": "trial"}) as run:
            mlflow.log_metrics({"cluster/silhouette": silhouette, "time/cluster_s": 1.0})
            trials[name] = run.info.run_id
    with mlflow.start_run(run_name="s") as parent:
        runs.carry_best_trial("s", trials["t001-pca-kmeans-knn"], "Sweep 's'.")
        runs.carry_best_trial("s", trials["t002-none-gmm-knn"], "Sweep 's'.")  # a resumed sweep
    client = MlflowClient()
    got = client.get_run(parent.info.run_id).data
    assert got.metrics == {"cluster/silhouette": 0.5}  # the trial's name; timings stay its own
    assert got.tags["best_trial"] == "t002-none-gmm-knn"
    assert got.tags["best_run_id"] == trials["t002-none-gmm-knn"]
    assert f"runs/{trials['t002-none-gmm-knn']})" in got.tags[runs.NOTE_TAG]
    best = {n: client.get_run(i).data.tags.get("best") for n, i in trials.items()}
    assert best == {"t001-pca-kmeans-knn": "false", "t002-none-gmm-knn": "true"}
