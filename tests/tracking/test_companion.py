"""The companion process that logs a single run: finished, failed, and dead-parent runs, against
a real (temporary) SQLite store."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src.errors import UserError
from src.tracking.companion import companion_run
from src.tracking.runs import RunRecord

PICKED = {"reducer": "pca", "clusterer": "kmeans", "classifier": "xgboost"}


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    return OmegaConf.create(
        {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "companion-test"}
    )


def runs_in(tracking) -> list[mlflow.entities.Run]:
    client = MlflowClient(str(tracking.uri))
    experiment = client.get_experiment_by_name("companion-test")
    return client.search_runs([experiment.experiment_id])


def only_run(tracking) -> mlflow.entities.Run:
    (run,) = runs_in(tracking)
    return run


def record(tmp_path) -> RunRecord:
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    (out_dir / "profile.csv").write_text("segment_id\n0\n")
    sample = pd.DataFrame({"customer_id": ["a", "b"], "amount": [1.0, 2.0]})
    return RunRecord(
        params={"clusterer.n_clusters": "5"},
        metrics={"cluster/silhouette": 0.5},
        description="3 segments of 10 customers.",
        source=str(tmp_path / "export.json"),
        digest="abc123",
        transactions_sample=sample,
        transactions_shape=(1000, 2),
        out_dir=str(out_dir),
        segmenter=None,
        example=sample,
    )


def test_a_finished_run_is_fully_logged_then_ended(tracking, tmp_path):
    with companion_run(tracking, PICKED) as run:
        run.start({"data_digest": "abc123"})
        run_id = run.check()
        done = record(tmp_path)
        run.log(dataclasses.replace(done, out_dir=None))
        logged = run.finish(done.out_dir, {"time/plots_s": 1.5})
    assert logged.model_uri is None and logged.version is None
    logged_run = only_run(tracking)
    assert logged_run.info.run_id == logged.run_id == run_id
    assert logged_run.info.status == "FINISHED"
    assert logged_run.info.run_name == "pca-kmeans-xgboost"
    assert logged_run.data.tags["run_kind"] == "single"
    assert logged_run.data.tags["data_digest"] == "abc123"
    assert logged_run.data.params["clusterer.n_clusters"] == "5"
    assert logged_run.data.tags["mlflow.note.content"] == "3 segments of 10 customers."
    assert logged_run.data.metrics["cluster/silhouette"] == 0.5
    assert logged_run.data.metrics["time/plots_s"] == 1.5
    assert logged_run.data.metrics["time/tracking_s"] >= 0
    (dataset,) = logged_run.inputs.dataset_inputs
    assert dataset.dataset.digest == "abc123" and '"num_rows": 1000' in dataset.dataset.profile
    artifacts = MlflowClient(str(tracking.uri)).list_artifacts(logged.run_id)
    assert [a.path for a in artifacts] == ["profile.csv"]


def test_an_error_in_the_pipeline_fails_the_run_with_its_message(tracking):
    with pytest.raises(UserError, match="degenerate"), companion_run(tracking, PICKED) as run:
        run.start({"data_digest": "abc123"})
        raise UserError("degenerate clustering")
    failed = only_run(tracking)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error"] == "UserError: degenerate clustering"
    assert failed.data.tags["data_digest"] == "abc123"


@pytest.mark.parametrize("how", ["refused", "ended"])
def test_data_refused_before_the_start_leave_no_run(tracking, how):
    """A refused export (or a pipeline that ends before its data are ready) creates no run."""
    expected = pytest.raises(UserError) if how == "refused" else nullcontext()
    with expected, companion_run(tracking, PICKED):
        if how == "refused":
            raise UserError("export.json: no CustomerID column")
    assert runs_in(tracking) == []


@pytest.mark.parametrize("when", ["before the check", "after it"])
def test_a_started_run_the_pipeline_never_logs_ends_failed(tracking, when):
    """What the companion sees when the pipeline's process dies (or returns without logging)."""
    with companion_run(tracking, PICKED) as run:
        run.start({})
        if when == "after it":
            run.check()
    failed = only_run(tracking)
    assert failed.info.status == "FAILED"
    assert "ended before the run was logged" in failed.data.tags["error"]


def test_a_store_that_cannot_be_opened_is_a_clear_error_before_outputs(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    tracking = OmegaConf.create({"uri": uri, "experiment": "companion-test"})
    with (
        pytest.raises(UserError, match=f"tracking \\({uri}\\)"),
        companion_run(tracking, PICKED) as run,
    ):
        run.start({})
        run.check()
