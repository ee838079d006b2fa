"""Whole-command wall times, as a user experiences them (start-up included): `src.run` and
`src.sweep` in fresh subprocesses with a scratch MLflow store, printed next to the targets."""

from __future__ import annotations

import argparse
import os
import statistics
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


def run_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "src.run", *overrides]


def add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--large", type=int, default=100_000, help="customers of the large store (0: skip)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="tracked / untracked default runs, alternated this many times (medians compared)",
    )  # fmt: skip


def bench_run(args: argparse.Namespace) -> int:
    """`python -m src.run` wall times on the default sample and on a large synthetic store."""
    cases = [("default tsne-gmm-xgboost", ("reducer=tsne", "clusterer=gmm"), 45)]
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
        first, _ = timed(run_command(), cwd)
        print(f"{'first run on a fresh MLflow store (one-off)':<48} {first:7.1f} s", flush=True)
        if args.large:  # generate the large store outside the timings
            from src.data.synthetic import default_sample_path

            default_sample_path(n_customers=args.large, seed=42)
        # The shared machine's noise is as large as the overhead measured: alternate the pair
        # and compare medians.
        pair = {"tracked": [], "tracking=none": []}
        for _ in range(args.repeat):
            for label, overrides in (("tracked", ()), ("tracking=none", ("tracking=none",))):
                pair[label].append(timed(run_command(*overrides), cwd)[0])
        for label, seconds in pair.items():
            runs = ", ".join(f"{s:.1f}" for s in seconds)
            goal = "(target <= 20 s)" if label == "tracked" else ""
            print(
                f"{'default pca-kmeans-xgboost ' + label:<48} {statistics.median(seconds):7.1f} s "
                f"median of {runs} {goal}",
                flush=True,
            )
        for label, overrides, target in cases:
            seconds, _ = timed(run_command(*overrides), cwd)
            print(f"{label:<48} {seconds:7.1f} s (target <= {target} s)", flush=True)
    tracked, untracked = (statistics.median(pair[k]) for k in ("tracked", "tracking=none"))
    print(f"tracking overhead: {tracked / untracked - 1:+.0%} (target <= +15%)")
    return 0


def add_sweep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument(
        "--repeat", type=int, default=2,
        help="sweeps per worker count, alternated (medians compared)",
    )  # fmt: skip


def bench_sweep(args: argparse.Namespace) -> int:
    """Trials per minute with one and two workers on the default sample, and what tracking
    costs per trial. The two are alternated: the shared machine's noise is as large as the
    effects measured."""
    seconds: dict[int, list[float]] = {2: [], 1: []}
    trial_phases: dict[int, list[float]] = {2: [], 1: []}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        cwd = Path(tmp)
        create_store(cwd)  # a store's one-off creation is not a sweep's cost
        for repeat in range(args.repeat):
            seed = pair_seed(repeat)
            for jobs in seconds:
                study_name = free_study(jobs, repeat)
                elapsed, _ = timed(sweep_command(cwd, study_name, args.trials, jobs, seed), cwd)
                seconds[jobs].append(elapsed)
                goal = "(target <= 180 s)" if jobs == 2 else ""
                print(f"sweep {args.trials} trials {seed} n_jobs={jobs}: {elapsed:6.1f} s, "
                      f"{args.trials / elapsed * 60:.1f} trials/min {goal}", flush=True)  # fmt: skip
                trial_phases[jobs].append(print_trial_costs(cwd, study_name))
        print_stage_comparison(cwd, args.repeat)
        replayed = replay_sweeps(cwd, args.repeat)
    medians = {jobs: statistics.median(runs) for jobs, runs in seconds.items()}
    print_speed_up(f"sweeps as users run them (whole commands, medians of {args.repeat})", seconds)
    phases = {jobs: statistics.median(runs) for jobs, runs in trial_phases.items()}
    print(
        f"  from the first trial's start to the last one's end: {phases[2]:.1f} s vs "
        f"{phases[1]:.1f} s, {phases[1] / phases[2]:.2f}x; the rest of each command (start-up, "
        f"data, the parent run and its data plots, the report, registration): "
        f"{medians[2] - phases[2]:.1f} s vs {medians[1] - phases[1]:.1f} s"
    )
    print_speed_up("the same trials in both (each one-worker study's, replayed)", replayed)
    return 0


SPACE = ("sweep.reducers=[none,pca]", "sweep.clusterers=[kmeans,gmm,birch]",
         "sweep.classifiers=[xgboost]")  # fmt: skip


def free_study(jobs: int, repeat: int) -> str:
    """The study of the `repeat`-th free sweep with `jobs` workers (read again by the replay and
    the stage table)."""
    return f"bench-{jobs}-{repeat}"


def pair_seed(repeat: int) -> str:
    """The seed override of the `repeat`-th pair of sweeps (and of its replay). A one-worker
    sweep is deterministic: with one seed, every one-worker sweep would time the same 30 trials,
    against other trials in every two-worker sweep (a trial's cost varies with its settings)."""
    return f"seed={42 + repeat}"


def sweep_command(cwd: Path, study_name: str, trials: int, jobs: int, *overrides: str) -> list[str]:
    """The benchmark's sweep over SPACE, in its own study of the scratch storage."""
    return [
        sys.executable, "-m", "src.sweep", *SPACE,
        f"sweep.n_trials={trials}", f"sweep.n_jobs={jobs}", f"sweep.study_name={study_name}",
        f"sweep.storage=sqlite:///{cwd}/study.db", *overrides,
    ]  # fmt: skip


def replay_sweeps(cwd: Path, repeats: int) -> dict[int, list[float]]:
    """Trials per minute on identical work: a study explored by two workers holds other trials
    than one explored by one (a trial's cost depends on its segments and settings), so each
    pair's one-worker study's trials are enqueued in two fresh studies and run by each worker
    count."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{cwd}/study.db"
    seconds: dict[int, list[float]] = {2: [], 1: []}
    for repeat in range(repeats):
        source = free_study(1, repeat)
        trials = optuna.load_study(study_name=source, storage=storage).trials
        for jobs in seconds:
            name = f"replay-{jobs}-{repeat}"
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
            for trial in sorted(trials, key=lambda t: t.number):
                study.enqueue_trial(trial.params)
            elapsed, _ = timed(sweep_command(cwd, name, len(trials), jobs, pair_seed(repeat)), cwd)
            seconds[jobs].append(elapsed)
            print(f"trials of {source} replayed, n_jobs={jobs}: {elapsed:6.1f} s", flush=True)
    return seconds


def print_speed_up(label: str, seconds: dict[int, list[float]]) -> None:
    medians = {jobs: statistics.median(runs) for jobs, runs in seconds.items()}
    pairs = ", ".join(f"{one / two:.2f}x" for two, one in zip(seconds[2], seconds[1], strict=True))
    print(
        f"speed-up n_jobs=2 / n_jobs=1 on {label}: {medians[1] / medians[2]:.2f}x "
        f"(target >= 1.6x); each pair: {pairs}"
    )


# Not part of a trial's own time: the data stages run once per sweep (their times are copied to
# every trial), and the best trial's plots are drawn after it finished.
NOT_TRIAL_STAGES = ("time/load_s", "time/clean_s", "time/rfm_s", "time/plots_s")


def print_stage_comparison(cwd: Path, repeats: int) -> None:
    """Mean seconds per trial of each pipeline stage (`time/<stage>_s`) and of the rest of the
    trial (Optuna, MLflow, composing), with two workers against one: where parallel trials
    lose time."""
    import mlflow
    import optuna

    every_trial = mlflow.search_runs(
        experiment_names=["customer-segmentation"], filter_string="tags.run_kind = 'trial'"
    )
    means = {}
    for jobs in (2, 1):
        names = [free_study(jobs, r) for r in range(repeats)]
        runs = every_trial[every_trial["tags.study"].isin(names)]
        stages = [c for c in runs.columns if c.startswith("metrics.time/")]
        stages = [c for c in stages if c[len("metrics.") :] not in NOT_TRIAL_STAGES]
        table = runs[stages].fillna(0).mean()
        table.index = [c[len("metrics.time/") : -2] for c in table.index]
        trials = [
            t
            for name in names
            for t in optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/study.db").trials
            if t.duration is not None
        ]
        durations = [t.duration.total_seconds() for t in trials]
        table["outside the stages"] = statistics.mean(durations) - table.sum()
        table["whole trial"] = statistics.mean(durations)
        # The classifier fits one set of trees per segment: the two studies explore differently,
        # so their stage times differ by workload too, not only by running side by side.
        table["(segments per trial)"] = statistics.mean(
            t.user_attrs.get("n_segments", 0) for t in trials
        )
        means[jobs] = table
    print("  seconds per trial     n_jobs=2  n_jobs=1")
    for stage in means[1].index:
        two, one = means[2].get(stage, 0.0), means[1][stage]
        if max(two, one) >= 0.01:
            print(f"  {stage:<20} {two:9.2f} {one:9.2f}")


def create_store(cwd: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlflow.db")
    mlflow.set_experiment("customer-segmentation")


def print_trial_costs(cwd: Path, study_name: str) -> float:
    """Print the seconds of tracking (the trial's `time/tracking_s`: outputs, params, dataset,
    metrics, artifacts, model) against each Optuna trial's whole duration; the best trial's
    plots, drawn once when its worker's loop ends, apart. Returns the seconds between the first
    trial's start and the last trial's end."""
    import mlflow
    import optuna

    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{cwd}/study.db")
    trials = [t for t in study.trials if t.duration is not None]
    duration = sum(t.duration.total_seconds() for t in trials)
    runs = mlflow.search_runs(
        experiment_names=["customer-segmentation"],
        filter_string=f"tags.study = '{study_name}' and tags.run_kind = 'trial'",
    )
    tracking = float(runs["metrics.time/tracking_s"].sum())
    plots = runs["metrics.time/plots_s"].dropna()
    models = sum("model_uri" in t.user_attrs for t in trials)
    print(
        f"  per trial: {duration / len(trials):.2f} s, of which tracking "
        f"{tracking / len(trials):.2f} s = {tracking / duration:.0%} (target <= 15%); "
        f"{models} of {len(trials)} trials logged a model; plots drawn for {len(plots)} "
        f"({plots.sum():.1f} s)",
        flush=True,
    )
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    return (last - first).total_seconds()
