"""src.tracking.ui_view: the "Compare runs" saved view, on a temporary SQLite store (the browser
check is tests/test_mlflow_ui.py)."""

from __future__ import annotations

import json

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from src.tracking import ui_view


def test_metrics_read_cluster_classifier_validity_checks_other_data_time():
    names = [
        "time/cluster_s", "data/customers", "classifier/accuracy", "validity/holdout_ari",
        "cluster/n_clusters", "clv/mean", "classifier/f1_macro", "cluster/silhouette",
        "cluster/davies_bouldin", "time/load_s", "data/rows_raw", "synthetic/ari",
        "holdout/eta2_spend",
    ]  # fmt: skip
    assert ui_view.metric_order(names) == [
        "cluster/silhouette", "cluster/davies_bouldin", "cluster/n_clusters",
        "classifier/f1_macro", "classifier/accuracy", "validity/holdout_ari",
        "holdout/eta2_spend", "synthetic/ari", "clv/mean",
        "data/customers", "data/rows_raw", "time/cluster_s", "time/load_s",
    ]  # fmt: skip


def view(experiment_id: str) -> dict:
    tag = MlflowClient().get_experiment(experiment_id).tags[ui_view.VIEW_TAG]
    envelope = json.loads(tag)
    assert envelope["name"] == "Compare runs" and isinstance(envelope["createdAt"], int)
    return json.loads(envelope["state"])


def test_view_grows_with_new_metrics_and_is_not_rewritten_for_known_ones(tmp_path, monkeypatch):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = MlflowClient().create_experiment("viewed")
    ui_view.ensure_compare_view(experiment_id, ["time/load_s", "cluster/silhouette"])
    state = view(experiment_id)
    assert state["selectedColumns"] == [
        "tags.`best`", "tags.`best_trial`", "metrics.`cluster/silhouette`", "metrics.`time/load_s`",
    ]  # fmt: skip
    assert state["columnOrder"] == state["selectedColumns"]
    assert state["orderByKey"] == "metrics.`cluster/silhouette`" and state["orderByAsc"] is False

    ui_view.ensure_compare_view(experiment_id, ["classifier/f1_macro"])
    assert [c for c in view(experiment_id)["columnOrder"] if c.startswith("metrics.")] == [
        "metrics.`cluster/silhouette`", "metrics.`classifier/f1_macro`", "metrics.`time/load_s`",
    ]  # fmt: skip

    def no_write(self, *args):
        raise AssertionError("rewrote a view that already shows these metrics")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", no_write)
    ui_view.ensure_compare_view(experiment_id, ["cluster/silhouette", "classifier/f1_macro"])


def test_a_refused_write_is_retried_once_then_warned_about(tmp_path, monkeypatch, caplog):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = MlflowClient().create_experiment("raced")
    original = MlflowClient.set_experiment_tag
    calls = []

    def lost_the_race_once(self, *args):
        calls.append(args)
        if len(calls) == 1:
            raise MlflowException("duplicate key value violates unique constraint")
        original(self, *args)

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", lost_the_race_once)
    ui_view.ensure_compare_view(experiment_id, ["cluster/silhouette"])
    assert len(calls) == 2 and "metrics.`cluster/silhouette`" in view(experiment_id)["columnOrder"]

    def refused(self, *args):
        raise MlflowException("permission denied")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", refused)
    ui_view.ensure_compare_view(experiment_id, ["data/customers"])  # the run goes on
    assert "view was not updated: permission denied" in caplog.text
    assert "metrics.`data/customers`" not in view(experiment_id)["columnOrder"]


def test_runs_table_url_opens_model_training_in_the_view():
    assert ui_view.runs_table_url("http://127.0.0.1:5000/", "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs"
        "?workflowType=machine_learning&viewStateShareKey=compare-runs"
    )
