"""`python -m src.bench team`: trials per minute of one study with 1 and 2 workers, on SQLite
stores (mlflow.db, mlflow.optuna.db beside it) against PostgreSQL (the MLflow store and the study
on the server at --database, in databases made for the run and dropped after), and PostgreSQL
behind an `mlflow server` (`src.team_servers`), as a team runs it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

from src.stores import ensure_database, libpq_url, study_storage, with_database

ROOT = Path(__file__).resolve().parents[2]
SPACE = ("sweep.reducers=[none,pca]", "sweep.clusterers=[kmeans,gmm]", "sweep.classifiers=[knn]")


def add_team(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--port", type=int, default=5097, help="the mlflow server's port")


def _sweep(cwd: Path, tracking: str, storage: str | None, trials: int, jobs: int) -> float:
    """Trials per minute of one sweep, from its study: trials over the span from the first
    trial's start to the last one's end (the command's start-up is not the store's cost)."""
    name = f"bench-{jobs}-{uuid.uuid4().hex[:6]}"
    command = [
        sys.executable, "-m", "src.sweep", f"hydra.run.dir={cwd}/out-{name}", *SPACE,
        f"sweep.n_trials={trials}", f"sweep.n_jobs={jobs}", f"sweep.study_name={name}",
        "sweep.trial_plots=none", "sweep.register=false",
        *([f"sweep.storage={storage}"] if storage else []),
    ]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": tracking}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    trials_ = optuna.load_study(study_name=name, storage=study_storage(storage, tracking)).trials
    counted = [t for t in trials_ if "duplicate_of" not in t.user_attrs]
    start = min(t.datetime_start for t in counted)
    end = max(t.datetime_complete for t in counted)
    return len(counted) / (end - start).total_seconds() * 60


def _drop(server: str, *names: str) -> None:
    import psycopg

    admin = libpq_url(with_database(server, "postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_team(args: argparse.Namespace) -> int:
    database = f"bench_team_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-team-") as tmp:
        cwd = Path(tmp)
        log = (cwd / "server.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "src.team_servers", "--database", args.database,
             "--mlflow-db", f"{database}_http", "--artifacts", str(cwd / "artifacts"),
             "--port", str(args.port)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            while "Ctrl-C stops" not in (cwd / "server.log").read_text():
                if server.poll() is not None:
                    raise SystemExit((cwd / "server.log").read_text()[-2000:])
                time.sleep(0.5)
            http_storage = with_database(args.database, f"{database}_http_optuna")
            ensure_database(with_database(args.database, database))  # MLflow's, used directly
            backends = {
                "sqlite": (f"sqlite:///{cwd}/mlflow.db", None),
                "postgresql": (with_database(args.database, database), None),
                "postgresql + mlflow server": (f"http://127.0.0.1:{args.port}", http_storage),
            }
            print(f"{'stores':<28} {'1 worker':>10} {'2 workers':>10}  (trials per minute)")
            for label, (tracking, storage) in backends.items():
                rates = [_sweep(cwd, tracking, storage, args.trials, jobs) for jobs in (1, 2)]
                print(f"{label:<28} {rates[0]:10.1f} {rates[1]:10.1f}", flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            names = [f"{database}{s}" for s in ("", "_optuna", "_http", "_http_optuna")]
            _drop(args.database, *names)
    return 0
