"""Whole-command wall times, as a user experiences them (start-up included): `src.run` and
`src.sweep` in fresh subprocesses with a scratch MLflow store, printed next to the targets."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def run_command(cwd: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "src.run", f"hydra.run.dir={cwd}/out", *overrides]


def add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--large", type=int, default=100_000, help="customers of the large store (0: skip)"
    )


def bench_run(args: argparse.Namespace) -> int:
    """`python -m src.run` wall times on the default sample and on a large synthetic store."""
    cases = [
        ("default pca-kmeans-xgboost", (), 20),
        ("default pca-kmeans-xgboost tracking=none", ("tracking=none",), None),
        ("default tsne-gmm-xgboost", ("reducer=tsne", "clusterer=gmm"), 45),
    ]
    if args.large:
        big = f"data.synthetic.customers={args.large}"
        cases += [
            (f"{args.large:,} customers pca-kmeans-xgboost", (big,), 90),
            (
                f"{args.large:,} customers tsne-gmm-xgboost",
                (big, "reducer=tsne", "clusterer=gmm"),
                180,
            ),
        ]
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        cwd = Path(tmp)
        # Warm-up: caches the default store and creates the MLflow database, a one-off cost of
        # a store's first run (printed, not counted in the overhead).
        first, _ = timed(run_command(cwd), cwd)
        print(f"{'first run on a fresh MLflow store (one-off)':<48} {first:7.1f} s", flush=True)
        if args.large:  # generate the large store outside the timings
            from src.data.synthetic import default_sample_path

            default_sample_path(n_customers=args.large, seed=42)
        seconds = {}
        for label, overrides, target in cases:
            seconds[label], _ = timed(run_command(cwd, *overrides), cwd)
            goal = f"(target <= {target} s)" if target else ""
            print(f"{label:<48} {seconds[label]:7.1f} s {goal}", flush=True)
    tracked = seconds["default pca-kmeans-xgboost"]
    untracked = seconds["default pca-kmeans-xgboost tracking=none"]
    print(f"tracking overhead: {tracked / untracked - 1:+.0%} (target <= +15%)")
    return 0


def add_sweep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=30)


def bench_sweep(args: argparse.Namespace) -> int:
    """Trials per minute with one and two workers on the default sample."""
    space = ("sweep.reducers=[none,pca]", "sweep.clusterers=[kmeans,gmm,birch]",
             "sweep.classifiers=[xgboost]")  # fmt: skip
    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        cwd = Path(tmp)
        for jobs in (2, 1):
            command = [
                sys.executable, "-m", "src.sweep", f"hydra.run.dir={cwd}/out{jobs}", *space,
                f"sweep.n_trials={args.trials}", f"sweep.n_jobs={jobs}",
                f"sweep.study_name=bench-{jobs}", f"sweep.storage=sqlite:///{cwd}/study.db",
            ]  # fmt: skip
            seconds, _ = timed(command, cwd)
            rates[jobs] = args.trials / seconds * 60
            goal = "(target <= 180 s)" if jobs == 2 else ""
            print(f"sweep {args.trials} trials n_jobs={jobs}: {seconds:6.1f} s, "
                  f"{rates[jobs]:.1f} trials/min {goal}", flush=True)  # fmt: skip
    print(f"speed-up n_jobs=2 / n_jobs=1: {rates[2] / rates[1]:.2f}x (target >= 1.6x)")
    return 0
