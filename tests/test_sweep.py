"""`python -m src.sweep` as users run it: real processes, a temporary MLflow store and study."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from src.tuning.study import started_trials

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SMALL = ("sweep.reducers=[none,pca]", "sweep.clusterers=[kmeans,gmm]", "sweep.classifiers=[knn]")


def sweep_cmd(cwd: Path, store_path: Path, *args: str) -> list[str]:
    plots = (
        [] if any(a.startswith("sweep.trial_plots=") for a in args) else ["sweep.trial_plots=none"]
    )
    return [
        sys.executable, "-m", "src.sweep", f"hydra.run.dir={cwd}/out", f"data.path={store_path}",
        f"sweep.storage=sqlite:///{cwd}/study.db", "sweep.study_name=test",
        *plots, *SMALL, *args,
    ]  # fmt: skip


def env(cwd: Path) -> dict[str, str]:
    return os.environ | {
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }


def run_sweep(cwd: Path, store_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_cmd(cwd, store_path, *args), cwd=cwd, env=env(cwd), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def study(cwd: Path) -> optuna.Study:
    return optuna.load_study(study_name="test", storage=f"sqlite:///{cwd}/study.db")


def client(cwd: Path) -> MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlflow.db")
    return MlflowClient()


def versions(cwd: Path) -> list:
    return client(cwd).search_model_versions("name = 'customer-segmentation'")


@pytest.fixture(scope="module")
def swept(tmp_path_factory, store_path):
    cwd = tmp_path_factory.mktemp("sweep")
    done = run_sweep(cwd, store_path, "sweep.n_trials=4", "sweep.trial_plots=best")
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd, done


def test_trials_are_nested_under_one_sweep_run(swept):
    cwd, done = swept
    mlflow_client = client(cwd)
    experiment = mlflow_client.get_experiment_by_name("customer-segmentation")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = mlflow_client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["run_kind"] == "sweep"]
    trials = [r for r in runs if r.data.tags["run_kind"] == "trial"]
    assert len(trials) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert sorted(int(r.data.tags["trial"]) for r in trials) == [1, 2, 3, 4]  # as people count
    for run in trials:
        combination = "-".join(run.data.tags[g] for g in ("reducer", "clusterer", "classifier"))
        assert run.info.run_name == f"t{int(run.data.tags['trial']):03d}-{combination}"
        assert "cluster/silhouette" in run.data.metrics
        assert not [m for m in run.data.metrics if m.startswith("trial/")]  # no duplicates
        assert run.data.metrics["time/tracking_s"] > 0
        assert run.data.params["classifier"] == "knn"
        assert run.data.params["objective"] == "cluster/silhouette"
        assert run.data.tags["data_digest"] == parent.data.tags["data_digest"]
        assert "classifier.n_neighbors" in run.data.params
        assert "classifier._target_" not in run.data.params  # the name says it
        assert not [p for p in run.data.params if p.startswith(("clean.", "tracking.", "data."))]
        assert "segments of" in run.data.tags["mlflow.note.content"]
    (best,) = [r for r in trials if r.data.tags.get("best") == "true"]
    assert parent.data.tags["best_trial"] == best.info.run_name
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert best.info.run_id in parent.data.tags["mlflow.note.content"]
    for name in ("cluster/silhouette", "classifier/f1_macro"):
        assert parent.data.metrics[name] == best.data.metrics[name]
    assert not [m for m in parent.data.metrics if m.startswith("best/")]
    assert parent.info.run_name == "test"  # the study's name
    assert parent.data.params["objective"] == "cluster/silhouette"
    assert parent.data.params["data_digest"] == parent.data.tags["data_digest"]
    assert not [p for p in parent.data.params if p.startswith("data.")]  # in config.yaml
    artifacts = {a.path for a in mlflow_client.list_artifacts(parent.info.run_id)}
    assert "leaderboard.csv" in artifacts
    plots = {Path(a.path).name for a in mlflow_client.list_artifacts(parent.info.run_id, "plots")}
    assert {"best_by_combination.png", "optimization_history.png"} <= plots
    assert {"eda_cleaning_waterfall.png", "eda_rfm_distributions.png"} <= plots
    assert parent.data.tags["data_digest"]
    assert parent.data.metrics["sweep/trials_completed"] == 4
    assert "4 trial(s) completed" in done.stdout
    # Progress on stderr (a log here, so one plain line per trial), trials counted from 1
    progress = [line for line in done.stderr.splitlines() if re.match(r"trial \d+/", line)]
    assert [line.split()[1] for line in progress] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(" | best " in line and ", ETA " in line for line in progress)


def test_model_for_trials_that_were_the_best_when_they_finished_plots_for_the_best(swept):
    cwd, _ = swept
    mlflow_client = client(cwd)
    trials = sorted(study(cwd).trials, key=lambda t: t.number)
    best_so_far, contenders = float("-inf"), []
    for t in trials:
        feasible = all(v <= 0 for v in t.constraints.values())
        contenders.append(feasible and t.value > best_so_far)  # one worker: in number order
        if feasible:
            best_so_far = max(best_so_far, t.value)
    assert contenders[0] and not all(contenders)  # both kinds are checked below
    best = max((t for t, c in zip(trials, contenders, strict=True) if c), key=lambda t: t.value)
    assert sum(contenders) >= 2  # so a superseded best (a model, no plots) is checked too
    for t, contender in zip(trials, contenders, strict=True):
        run_id = t.user_attrs["mlflow_run_id"]
        plots = mlflow_client.list_artifacts(run_id, "plots")
        assert bool(plots) == (t.number == best.number), (t.number, plots)
        assert ("model_uri" in t.user_attrs) == contender
        artifacts = {a.path for a in mlflow_client.list_artifacts(run_id)}
        assert {"segments.csv", "profile.csv", "config.yaml"} <= artifacts
    names = {
        Path(a.path).name
        for a in mlflow_client.list_artifacts(best.user_attrs["mlflow_run_id"], "plots")
    }
    assert {"snake_plot.png", "embedding.png", "confusion_matrix.png"} <= names
    assert mlflow_client.get_run(best.user_attrs["mlflow_run_id"]).data.metrics["time/plots_s"] > 0


def test_best_feasible_model_is_registered_as_candidate(swept):
    cwd, done = swept
    (version,) = versions(cwd)
    # said once, by the sweep; MLflow's own lines would repeat it
    assert (
        f"registered customer-segmentation version {version.version}" in done.stdout + done.stderr
    )
    assert "Successfully registered model" not in done.stdout + done.stderr
    best = max(
        (
            t
            for t in study(cwd).trials
            if t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())
        ),
        key=lambda t: t.value,
    )
    assert version.tags["trial"] == str(best.number + 1)
    assert version.tags["run_id"] == best.user_attrs["mlflow_run_id"]
    assert version.tags["objective"] == "cluster/silhouette"
    assert float(version.tags["objective_value"]) == pytest.approx(best.value, rel=1e-5)
    combination = best.user_attrs["combination"]
    model_id = best.user_attrs["model_uri"].removeprefix("models:/")
    assert client(cwd).get_logged_model(model_id).name == f"segmenter-{combination}"
    run_name = f"t{best.number + 1:03d}-{combination}"
    assert f"From run `{run_name}` ({version.run_id})" in version.description
    digest = client(cwd).get_run(version.run_id).data.tags["data_digest"]
    assert f"data digest {digest}" in version.description
    assert "cluster/silhouette" in version.description
    model = client(cwd).get_registered_model("customer-segmentation")
    assert "**Input**" in model.description and "segment_name" in model.description
    assert (
        client(cwd).get_model_version_by_alias("customer-segmentation", "candidate").version
        == version.version
    )
    with pytest.raises(mlflow.exceptions.MlflowException):
        client(cwd).get_model_version_by_alias("customer-segmentation", "production")


def test_rerun_with_a_bigger_budget_resumes_and_registers_once(swept, store_path):
    cwd, _ = swept
    again = run_sweep(cwd, store_path, "sweep.n_trials=4")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(study(cwd).trials) == 4
    assert len(versions(cwd)) == 1


def test_killed_sweep_resumes_to_the_budget_and_marks_the_lost_trial_failed(tmp_path, store_path):
    args = ("sweep.n_trials=4", "sweep.heartbeat_seconds=1", "sweep.stale_seconds=3")
    process = subprocess.Popen(
        sweep_cmd(tmp_path, store_path, *args), cwd=tmp_path, env=env(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in process.stderr:
        if line.startswith("trial 1/4"):
            break
    deadline = time.time() + 60
    while len(study(tmp_path).trials) < 2 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-way through trial 2: no chance to clean up
    process.wait()
    assert len(study(tmp_path).trials) == 2
    done = run_sweep(tmp_path, store_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = study(tmp_path).trials
    assert len(trials) == 4
    assert [t.state for t in trials].count(TrialState.FAIL) == 1
    assert trials[1].state == TrialState.FAIL
    assert "1 failed" in done.stdout
    assert len(versions(tmp_path)) == 1


def test_two_sweeps_on_one_storage_share_the_study(tmp_path, store_path):
    commands = [
        sweep_cmd(tmp_path, store_path, "sweep.n_trials=6", "sweep.trial_plots=best")
        for _ in range(2)
    ]
    processes = [
        subprocess.Popen(
            c,
            cwd=tmp_path,
            env=env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for c in commands
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert all(p.returncode == 0 for p in processes), [o[1][-2000:] for o in outputs]
    trials = study(tmp_path).trials
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    mlflow_client = client(tmp_path)
    runs = mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name("customer-segmentation").experiment_id],
        filter_string="tags.run_kind = 'trial'",
    )
    assert sorted(int(r.data.tags["trial"]) for r in runs) == list(range(1, 7))
    assert len(versions(tmp_path)) == 1
    # Each worker draws the plots of its latest best-so-far trial if that is still the best when
    # it ends: the final best always has them, and no more than one trial per worker does.
    with_plots = {
        int(r.data.tags["trial"]) - 1  # Optuna's number
        for r in runs
        if mlflow_client.list_artifacts(r.info.run_id, "plots")
    }
    best = max(
        (t for t in trials if all(v <= 0 for v in t.constraints.values())), key=lambda t: t.value
    )
    assert best.number in with_plots and len(with_plots) <= 2, (best.number, with_plots)


def test_sweep_with_no_feasible_trial_fails_and_registers_nothing(tmp_path, store_path):
    done = run_sweep(
        tmp_path, store_path, "sweep.n_trials=2", "sweep.constraints.min_f1_macro=1.01"
    )
    assert done.returncode == 2
    assert "no feasible trial among 2" in done.stderr
    assert versions(tmp_path) == []


def test_failing_trials_are_recorded_with_their_reason_and_grouped(tmp_path, store_path):
    done = run_sweep(
        tmp_path, store_path, "sweep.n_trials=2", "sweep.clusterers=[dbscan]",
        "search.clusterer.dbscan.eps.low=40", "search.clusterer.dbscan.eps.high=50",
    )  # fmt: skip
    assert done.returncode == 2
    assert "2 x UserError: degenerate clustering" in done.stderr
    trials = study(tmp_path).trials
    assert all(t.state == TrialState.FAIL for t in trials)
    mlflow_client = client(tmp_path)
    runs = mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name("customer-segmentation").experiment_id],
        filter_string="tags.run_kind = 'trial'",
    )
    assert {r.info.status for r in runs} == {"FAILED"}
    assert all("degenerate" in r.data.tags["error"] for r in runs)
    assert versions(tmp_path) == []


def test_unknown_trial_plots_setting_is_a_clear_error(tmp_path, store_path):
    done = run_sweep(tmp_path, store_path, "sweep.trial_plots=some")
    assert done.returncode == 2
    assert "sweep.trial_plots=some: choose one of best, all, none" in done.stderr


def test_parallel_sweep_stopped_with_kill_then_resumed(tmp_path, store_path):
    """n_jobs=2: this process and a started worker share the study; `kill` stops both, failing
    their running trials instead of leaving them running; a rerun finishes the budget. The budget
    is far above what runs before the kill (a 40-trial one was once met before the kill took
    effect on a loaded machine: 41 trials, one a PRUNED duplicate, so nothing was left to test)."""
    process = subprocess.Popen(
        sweep_cmd(tmp_path, store_path, "sweep.n_trials=200", "sweep.n_jobs=2"), cwd=tmp_path,
        env=env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    finished = 0
    for line in process.stderr:
        finished += bool(re.match(r"trial \d+/", line))
        if finished == 3:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    # Counted as the budget counts them: sampled parameter sets already evaluated (PRUNED
    # duplicates, frequent in this small space with k fixed) are not trials that ran.
    stopped = started_trials(study(tmp_path))
    assert 3 <= len(stopped) < 200, [(t.number, t.state.name) for t in study(tmp_path).trials]
    assert TrialState.RUNNING not in {t.state for t in study(tmp_path).trials}
    done = run_sweep(tmp_path, store_path, f"sweep.n_trials={len(stopped) + 4}", "sweep.n_jobs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    # no trial prints its stage timings, the forked worker's neither (they bury the progress
    # line; the data's preparation, once, does)
    assert "[src.timing][INFO] - load" in done.stdout + done.stderr
    assert "[src.timing][INFO] - classify" not in done.stdout + done.stderr
    trials = study(tmp_path).trials
    assert len(started_trials(study(tmp_path))) == len(stopped) + 4  # the budget, met
    assert TrialState.RUNNING not in {t.state for t in trials}
    assert len(versions(tmp_path)) == 1


def test_parallel_sweep_with_spawned_workers_as_on_macos(tmp_path, store_path):
    """Linux forks the workers; macOS and Windows spawn them, which must work the same way: the
    worker gets everything it needs through its orders, nothing through inherited state."""
    spawning = tmp_path / "spawning_sweep.py"
    spawning.write_text(
        "import multiprocessing, runpy, src.processes\n"
        "def spawning():\n"
        "    print('workers spawned', flush=True)\n"
        "    return multiprocessing.get_context('spawn')\n"
        "src.processes.helper_context = spawning\n"
        "runpy.run_module('src.sweep', run_name='__main__', alter_sys=True)\n"
    )
    command = sweep_cmd(tmp_path, store_path, "sweep.n_trials=4", "sweep.n_jobs=2")
    done = subprocess.run(
        [sys.executable, str(spawning), *command[3:]], cwd=tmp_path, env=env(tmp_path),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "workers spawned" in done.stdout
    trials = study(tmp_path).trials
    assert [t.number for t in trials] == list(range(4))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len(versions(tmp_path)) == 1


def test_default_study_and_artifacts_live_beside_the_sqlite_store_and_stay_with_it(
    tmp_path, store_path
):
    """No sweep.storage: the study is mlflow.optuna.db next to mlflow.db, the artifacts go to
    mlartifacts/ next to it (not ./mlruns); the same study with another MLflow store is refused."""
    store = tmp_path / "store"
    store.mkdir()
    command = [
        a for a in sweep_cmd(tmp_path, store_path, "sweep.n_trials=1")
        if not a.startswith("sweep.storage=")
    ]  # fmt: skip
    first = env(tmp_path) | {"MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
    done = subprocess.run(command, cwd=tmp_path, env=first, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (store / "mlflow.optuna.db").exists() and any((store / "mlartifacts").rglob("MLmodel"))
    assert not (tmp_path / "mlruns").exists()
    other = env(tmp_path) | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/other.db"}
    storage = f"sweep.storage=sqlite:///{store}/mlflow.optuna.db"
    refused = subprocess.run(
        [*command, storage], cwd=tmp_path, env=other, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert f"belongs to MLflow store sqlite:///{store}/mlflow.db" in refused.stderr
    assert "Traceback" not in refused.stderr
