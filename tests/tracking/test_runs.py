"""src.tracking.runs against a temporary SQLite store."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
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


def test_a_worker_that_loses_the_race_to_tag_the_experiment_goes_on(tmp_path, monkeypatch):
    # A tracking server refuses the second insert of the tag (UniqueViolation) when two workers
    # start together; the tag is there, so the loser goes on. Refused for another reason: raised.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = MlflowClient().create_experiment("raced")
    original = MlflowClient.set_experiment_tag

    def other_worker_won(self, *args):
        original(self, *args)
        raise MlflowException("duplicate key value violates unique constraint")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", other_worker_won)
    runs._tag_experiment_kind(experiment_id)

    def refused(self, *args):
        raise MlflowException("permission denied")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", refused)
    other = MlflowClient().create_experiment("refused")
    with pytest.raises(MlflowException, match="permission denied"):
        runs._tag_experiment_kind(other)


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
