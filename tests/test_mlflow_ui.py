"""MLflow's UI in a real browser (Debian's headless chromium through selenium): a tiny sweep,
`mlflow server` on its store, and the runs table as an analyst uses it. Skipped when chromium,
chromedriver or selenium is missing, except in CI (CI=true), where that is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from src.bench.mlflow_ui import (
    browser_missing,
    choose_compare_view,
    chromium,
    column_ids,
    mlflow_server,
    open_runs_table,
    table_rows,
    wait_for,
)
from src.tracking.ui_view import metric_order, runs_table_url

ROOT = Path(__file__).resolve().parents[1]
STUDY = "ui-check"
RUN_NAME = "attributes.`Run Name`"
BEST = "tags.`best`"
pytestmark = pytest.mark.slow


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def swept(tmp_path_factory, store_path):
    """A 4-trial sweep of the tiny store into a SQLite store: (its URI, experiment id, runs)."""
    reason = browser_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("ui")
    store = f"sqlite:///{home}/mlflow.db"
    done = subprocess.run(
        [sys.executable, "-m", "src.sweep", f"hydra.run.dir={home}/out", f"data.path={store_path}",
         f"sweep.storage=sqlite:///{home}/study.db", f"sweep.study_name={STUDY}",
         "sweep.trial_plots=none", "sweep.n_trials=4", "sweep.reducers=[none,pca]",
         "sweep.clusterers=[kmeans,gmm]", "sweep.classifiers=[knn]"],
        cwd=home, env=os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": store},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    mlflow.set_tracking_uri(store)
    experiment = mlflow.get_experiment_by_name("customer-segmentation").experiment_id
    runs = MlflowClient().search_runs([experiment])
    return home, store, experiment, runs


@pytest.fixture(scope="module")
def browser(swept):
    """The server on the sweep's store and a browser; afterwards neither leaves a process."""
    home, store, _, _ = swept
    with mlflow_server(store, home / "server.log") as server, chromium() as driver:
        driver_pid = driver.service.process.pid
        yield server, driver
    assert "Application shutdown complete" in (home / "server.log").read_text()  # not killed
    assert not processes_mentioning(str(home)), "mlflow server processes left running"
    assert not Path(f"/proc/{driver_pid}").exists(), "chromedriver left running"


def test_experiment_opens_on_its_runs_table_with_the_sweep_and_its_trials(swept, browser):
    _, _, experiment, runs = swept
    server, driver = browser
    open_runs_table(driver, server, experiment)
    assert f"/experiments/{experiment}/runs" in driver.current_url
    assert "overview" not in driver.current_url and "genai" not in driver.current_url
    (parent,) = table_rows(driver)  # trials are nested under their sweep, collapsed
    assert parent[RUN_NAME] == STUDY
    wait_for(driver, "[data-component-id$='runnamecellrenderer.tsx_46']").click()
    wait_for(driver, ".ag-row[row-index='4']")
    shown = [row[RUN_NAME] for row in table_rows(driver)]
    trials = sorted(r.info.run_name for r in runs if r.data.tags["run_kind"] == "trial")
    assert trials == [f"t00{n}-{name[5:]}" for n, name in enumerate(trials, 1)]
    assert shown[0] == STUDY and sorted(shown[1:]) == trials


def test_compare_view_shows_the_best_tag_and_metrics_in_reading_order(swept, browser):
    _, _, experiment, runs = swept
    server, driver = browser
    open_runs_table(driver, server, experiment)
    choose_compare_view(driver)

    columns = column_ids(driver)
    metrics = [c[len("metrics.`") : -1] for c in columns if c.startswith("metrics.`")]
    assert {"cluster/silhouette", "classifier/f1_macro"} <= set(metrics)
    assert metrics == metric_order(metrics)
    groups = [m.split("/")[0] for m in metrics]
    assert groups == sorted(groups, key=["cluster", "classifier", "data", "time"].index)
    assert columns.index(BEST) < columns.index("metrics.`cluster/silhouette`")

    (best,) = [r for r in runs if r.data.tags.get("best") == "true"]
    rows = {row[RUN_NAME]: row for row in table_rows(driver)}
    assert rows[best.info.run_name][BEST] == "true"
    assert rows[STUDY]["tags.`best_trial`"] == best.info.run_name
    others = [r.info.run_name for r in runs if r.data.tags["run_kind"] == "trial" and r != best]
    assert {rows[name][BEST] for name in others} == {"-"}
    shown = float(rows[best.info.run_name]["metrics.`classifier/f1_macro`"])
    assert shown == pytest.approx(best.data.metrics["classifier/f1_macro"], rel=1e-6)

    ranked = [row["metrics.`cluster/silhouette`"] for row in table_rows(driver)]
    scores = [float(s) for s in ranked if s != "-"]
    assert scores == sorted(scores, reverse=True) and len(scores) >= 4


def test_readme_link_opens_the_compare_view_as_model_training(swept, browser):
    _, _, experiment, _ = swept
    server, driver = browser
    driver.get(runs_table_url(server, experiment))
    wait_for(driver, ".ag-header-cell[col-id='metrics.`cluster/silhouette`']")
    assert "workflowType=machine_learning" in driver.current_url
    assert "orderByKey=metrics.%60cluster%2Fsilhouette%60" in driver.current_url
    assert len(table_rows(driver)) == 5  # the sweep and its 4 trials, flat when ranked
