"""Team mode on the real thing: PostgreSQL, `python -m src.team_servers` running `mlflow server`,
and sweep commands as a team runs them (two workers on one study, one killed with SIGKILL, the
database restarted mid-sweep). Skipped when no PostgreSQL answers on 127.0.0.1:5432, except in
CI (CI=true), where that is a failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Tm-s3cret-" + uuid.uuid4().hex[:8]  # trust auth accepts it; it must leak nowhere
SERVER = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432"
SMALL = ("sweep.reducers=[none,pca]", "sweep.clusterers=[kmeans,gmm]", "sweep.classifiers=[knn]")
pytestmark = pytest.mark.slow


def _postgres_up() -> bool:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A team server on fresh databases; stopped with SIGTERM (it must exit cleanly) and its
    databases dropped afterwards."""
    if not _postgres_up():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432")
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    home = tmp_path_factory.mktemp("team")
    database = f"team_test_{uuid.uuid4().hex[:8]}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = home / "server.log"  # a file, not a pipe: the server logs every request it serves
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "src.team_servers", "--database", SERVER, "--mlflow-db",
             database, "--artifacts", str(home / "artifacts"), "--port", str(port)],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    deadline = time.monotonic() + 180
    while "Ctrl-C stops the server" not in log.read_text() and time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    try:
        yield {
            "home": home,
            "tracking": f"http://127.0.0.1:{port}",
            "storage": f"{SERVER}/{database}_optuna",
            "databases": (database, f"{database}_optuna"),
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        _drop(database, f"{database}_optuna")
    printed = log.read_text()
    assert server.returncode == 0 and "mlflow server stopped" in printed, printed[-2000:]
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1" in printed and PASSWORD not in printed


def _drop(*databases: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        for name in databases:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sweep(team, cwd: Path, study: str, *args: str) -> subprocess.Popen:
    cwd.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "src.sweep", f"hydra.run.dir={cwd}/out", f"data.path={team['data']}",
         f"sweep.storage={team['storage']}", f"sweep.study_name={study}",
         "sweep.trial_plots=none", "sweep.heartbeat_seconds=1", "sweep.stale_seconds=4",
         *SMALL, *args],
        cwd=cwd, env=os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": team["tracking"]},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def until_trial_line(process: subprocess.Popen) -> list[str]:
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("trial "):
            break
    return seen


def psycopg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def check_study(team, name: str, budget: int) -> None:
    """Budget met, nothing running, no parameter set evaluated twice, one parent run with every
    trial nested under it, no MLflow run left RUNNING, the answer registered exactly once."""
    study = optuna.load_study(
        study_name=name, storage=team["storage"].replace("://", "+psycopg://", 1)
    )
    trials = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trials) == budget
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len({tuple(sorted(t.params.items())) for t in complete}) == len(complete)
    mlflow.set_tracking_uri(team["tracking"])
    client = MlflowClient()
    experiment = client.get_experiment_by_name("customer-segmentation")
    runs = client.search_runs([experiment.experiment_id], f"tags.study = '{name}'")
    (parent,) = [r for r in runs if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.run_name == name and parent.info.status == "FINISHED"
    trial_runs = [r for r in runs if r.data.tags["run_kind"] == "trial"]
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {parent.info.run_id}
    assert "RUNNING" not in {r.info.status for r in runs}
    versions = client.search_model_versions("name = 'customer-segmentation'")
    assert len([v for v in versions if v.tags.get("study") == name]) == 1
    assert study.user_attrs["mlflow_store"] == team["tracking"]


def assert_no_password(team, *texts: str) -> None:
    """Not in the console output, the Hydra output folders, the MLflow and Optuna databases
    (dumped) nor the artifact store."""
    assert all(PASSWORD not in text for text in texts)
    for database in team["databases"]:
        dump = subprocess.run(
            ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", database],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "customer-segmentation" in dump or "study" in dump
        assert PASSWORD not in dump, database
    for path in team["home"].rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def team_with_data(team, store_path):
    return team | {"data": store_path}


def test_two_workers_share_one_study_and_survive_one_killed(team_with_data):
    team = team_with_data
    home = team["home"]
    first = sweep(team, home / "a", "shared", "sweep.n_trials=6")
    second = sweep(team, home / "b", "shared", "sweep.n_trials=6")
    until_trial_line(second)
    study = optuna.load_study(study_name="shared", storage=psycopg_url(team["storage"]))
    victim = f"{socket.gethostname()}/{second.pid}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
        t.state == TrialState.RUNNING and t.user_attrs.get("worker") == victim
        for t in study.get_trials(deepcopy=False)
    ):
        time.sleep(0.05)
    second.send_signal(signal.SIGKILL)  # mid-way through its trial: no clean-up
    second.wait()
    out = first.communicate(timeout=600)[0]
    assert first.returncode == 0, out[-3000:]
    (lost,) = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert lost.user_attrs["worker"] == victim
    assert lost.user_attrs["error"] == "no heartbeat: its worker died"
    check_study(team, "shared", 6)
    assert_no_password(team, out)


def test_postgres_restarted_mid_sweep(team_with_data):
    team = team_with_data
    running = sweep(team, team["home"] / "restart", "restart", "sweep.n_trials=6", "sweep.n_jobs=2")
    seen = until_trial_line(running)
    restart = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *os.listdir("/etc/postgresql"), "main",
         "restart"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert restart.returncode == 0, restart.stderr
    out = "".join(seen) + running.communicate(timeout=600)[0]
    assert running.returncode == 0, out[-3000:]
    check_study(team, "restart", 6)
    assert_no_password(team, out)
