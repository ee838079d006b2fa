"""`python -m src.sweep [key=value ...]`: an Optuna search over reducer x clusterer x classifier.

Load, clean and RFM run once; every trial then calls the same `run_pipeline` as `src.run` with a
config composed by Hydra from the sweep's overrides plus the trial's sampled ones. Trials are
nested MLflow runs under the study's one parent run (named after the study, shared by every
worker on every machine); the best feasible trial's model is registered once, with alias
`candidate`. Rerunning the same command resumes the study. The study lives beside the MLflow store
unless sweep.storage says otherwise (`src.stores.study_storage`).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import hydra
import optuna
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from src.cli import exit_on_user_error, quiet_libraries, run_command, skip_collection_at_exit
from src.errors import UserError
from src.evaluation import plots
from src.models.factory import GROUPS
from src.outputs import rounded, write_csv
from src.pipeline import cpu_threads, exploratory_figures, prepare_data
from src.preflight import check_sweep
from src.processes import helper_context
from src.progress import LiveLine
from src.retry import retry
from src.secrets import mask_secrets
from src.stores import store_identity, study_storage
from src.tuning.objective import check_objectives_for_k, objective_metrics
from src.tuning.space import FEATURES, allowed_options, k_key, require_value_fit, sweep_k
from src.tuning.study import (
    Outcome,
    best_feasible,
    claim_worker_slot,
    default_study_name,
    fail_stale,
    is_feasible,
    leaderboard,
    open_storage,
    open_study,
    outcome,
    pareto_front,
    progress_line,
    shown_number,
    started_trials,
    study_lock,
    tpe_sampler,
    trial_note,
    work,
)
from src.tuning.trial import BestPlots, TrialSetup, end_orphan_runs, propose, run_trial

log = logging.getLogger(__name__)
WORKER_GRACE_SECONDS = 10
TRIAL_PLOTS = ("best", "all", "none")
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@dataclasses.dataclass(frozen=True)
class WorkerArgs:
    setup: TrialSetup
    storage_url: str
    study_name: str
    budget: int
    heartbeat_seconds: int
    stale_seconds: int
    seed: int
    started: float
    verbose: bool  # every trial's stage timings (src.timing) too: they bury the progress line


def sampler_seed(seed: int, worker_slot: int) -> int:
    """The sampler seed of the study's worker number `worker_slot` (`claim_worker_slot`):
    `seed` for the first worker of a fresh study, so a one-worker sweep is reproducible; distinct
    for every other worker, on this machine or another, and for every resume."""
    return seed + 104_729 * worker_slot


def quiet_optuna() -> None:
    """Our one line per trial replaces Optuna's log lines; TPE's multivariate/group options are
    marked experimental, which users cannot act on."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def run_worker(args: WorkerArgs) -> None:
    """One worker's loop; runs in this process or in a started one (`_worker_main`)."""
    quiet_optuna()
    if not args.verbose:  # each trial's stage lines would bury the progress (time/* has them)
        logging.getLogger("src.timing").setLevel(logging.WARNING)
    # A sweep started in the background inherits an ignored SIGINT; the parent stops its workers
    # with SIGINT, so that each fails its running trial as interrupted before exiting.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    storage = open_storage(args.storage_url, args.heartbeat_seconds, args.stale_seconds)
    study = open_study(storage, args.study_name, args.setup.objectives, args.seed)
    lock = study_lock(args.storage_url, args.study_name)
    study.sampler = tpe_sampler(sampler_seed(args.seed, claim_worker_slot(study, lock)))
    best_plots = BestPlots()
    progress = LiveLine()

    def report(trial: optuna.trial.FrozenTrial) -> None:
        note = trial_note(trial)
        if note is not None:
            progress.note(note)
        progress.show(progress_line(study, trial, args.budget, args.started))
        if _stop_requested.is_set():  # the signal's exception was raised where it got lost
            raise KeyboardInterrupt

    def end_runs_of_dead_workers(stale: list[optuna.trial.FrozenTrial]) -> None:
        numbers = ", ".join(str(shown_number(t)) for t in stale)
        progress.note(f"trial(s) {numbers} failed: no heartbeat for {args.stale_seconds} s")
        end_orphan_runs(args.setup, study)

    try:
        end_orphan_runs(args.setup, study)
        work(
            study,
            storage,
            lock,
            args.budget,
            lambda t: propose(args.setup, t),
            lambda s, t: run_trial(args.setup, s, t, best_plots),
            args.heartbeat_seconds,
            on_finish=report,
            on_stale=end_runs_of_dead_workers,
        )
        progress.close()
        best_plots.log_if_best(study)
    except KeyboardInterrupt:
        progress.close()
        if multiprocessing.parent_process() is None:
            raise  # the only worker: the command reports the interruption


def _worker_main(orders: Connection, warm_tracking: bool) -> None:
    """A started worker: import what trials need while the parent prepares the data and opens
    its run (seconds of start-up off the sweep's serial part), then run the loop it is sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until it has a loop to stop; the parent waits
    # Read the orders as soon as they come: the parent's send blocks until they are read (they
    # hold the data, more than a pipe buffers), and it has its own work to do meanwhile.
    received: list[WorkerArgs | None] = []
    reader = threading.Thread(target=lambda: received.append(_receive(orders)), daemon=True)
    reader.start()
    if warm_tracking:
        _warm_up_tracking()
    reader.join()
    if received[0] is None:  # the sweep stopped before its trials, or the parent died
        return
    run_worker(received[0])
    skip_collection_at_exit()  # the parent waits for this process to exit before it reports


def _receive(orders: Connection) -> WorkerArgs | None:
    try:
        return orders.recv()
    except EOFError:  # the parent died before the trials started
        return None


def _warm_up_tracking() -> None:
    """What a worker's first tracked trial would otherwise pay: MLflow and its SQL store, and
    the installed-packages map MLflow builds when it first loads a model back to check it (1.2 s;
    a private, per-process cache, hence looked up defensively)."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from mlflow.utils import requirements_utils

    import src.tracking.runs  # noqa: F401

    getattr(requirements_utils, "_init_packages_to_modules_map", lambda: None)()


@contextmanager
def _started_workers(count: int, warm_tracking: bool) -> Iterator[list[tuple[Any, Connection]]]:
    """`count` worker processes waiting for their loop (the sweep's own process is one more
    worker). Workers that never got a loop are released on the way out."""
    context = helper_context()
    workers = []
    for i in range(1, count + 1):
        orders, theirs = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(theirs, warm_tracking), name=f"sweep-worker-{i}"
        )
        process.start()
        theirs.close()
        workers.append((process, orders))
    try:
        yield workers
    finally:
        for process, orders in workers:
            if process.is_alive():
                with suppress(OSError):  # it already has its loop, or is gone
                    orders.send(None)
            process.join()


def _run_workers(
    args: WorkerArgs, workers: list[tuple[Any, Connection]], meanwhile: Callable[[], Any]
) -> None:
    """This process is a worker too (warm: no start-up); the started workers get their loop
    first, so that `meanwhile` (the parent run's logging) does not hold them up. Each claims its
    own worker slot, hence its own sampler seed, in the study."""
    for _, orders in workers:
        orders.send(args)
        orders.close()
    workers = [process for process, _ in workers]
    # `kill <sweep pid>` must stop the sweep as Ctrl-C (sent to the whole group) does: each
    # worker fails its running trial as interrupted.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        meanwhile()
        run_worker(args)
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second kill must not cut the clean-up
        for worker in workers:  # each fails its running trial as interrupted, then exits
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGINT)
        deadline = time.monotonic() + WORKER_GRACE_SECONDS
        for worker in workers:
            worker.join(timeout=max(deadline - time.monotonic(), 0))
            if worker.is_alive():  # stuck where Ctrl-C cannot reach: its trial goes stale
                worker.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


_stop_requested = threading.Event()


def _raise_interrupt(signum: int, frame: Any) -> None:
    # Raised wherever the main thread is; inside a garbage-collector callback Python prints and
    # drops it ("Exception ignored in ..."), so the worker loop also checks the flag.
    _stop_requested.set()
    raise KeyboardInterrupt


@contextmanager
def _parent_run(
    cfg: DictConfig, allowed: dict[str, list[str]], study: optuna.Study, lock: Any
) -> Iterator[tuple[Any, bool]]:
    """The study's one parent run (named after the study, its id recorded on the study), resumed
    by every worker that joins it; yields (run, whether this worker created it)."""
    if not cfg.tracking.enabled:
        yield None, False
        return
    import mlflow

    from src.tracking import runs

    picked = {group: "+".join(allowed[group]) for group in GROUPS}
    tags = {"study": study.study_name}
    with lock():
        run_id = study.user_attrs.get("mlflow_parent_run_id")
        created = run_id is None
        if created:
            experiment = mlflow.get_experiment_by_name(str(cfg.tracking.experiment))
            run_id = retry(
                lambda: (
                    mlflow.MlflowClient()
                    .create_run(
                        experiment.experiment_id,
                        tags=runs.contract_tags(picked, "sweep") | tags,
                        run_name=study.study_name,
                    )
                    .info.run_id
                ),
                "creating the sweep's run",
            )
            study.set_user_attr("mlflow_parent_run_id", run_id)
    with runs.tracked_run(picked, "sweep", tags=tags, name=study.study_name, run_id=run_id) as run:
        yield run, created


def _bound_store(cfg: DictConfig) -> dict[str, str] | None:
    """What a study records about the MLflow store and experiment it belongs to: the
    experiment's id and creation time identify it whatever host name a worker reaches the
    store by; the store's URI (password masked) is there for people to read."""
    if not cfg.tracking.enabled:
        return None
    import mlflow

    from src.tracking import runs

    runs.configure(cfg.tracking)
    experiment = mlflow.get_experiment_by_name(str(cfg.tracking.experiment))
    return {
        "mlflow_store": store_identity(str(cfg.tracking.uri)),
        "mlflow_experiment": str(cfg.tracking.experiment),
        "mlflow_experiment_key": f"{experiment.experiment_id}@{experiment.creation_time}",
    }


def run_sweep(cfg: DictConfig, base_overrides: Sequence[str]) -> optuna.Study:
    sweep = cfg.sweep
    search = OmegaConf.to_container(cfg.search, resolve=True)
    allowed = allowed_options(sweep, search)
    objectives = objective_metrics(sweep)
    k = sweep_k(sweep)
    check_objectives_for_k(objectives, k)
    budget, n_jobs = int(sweep.n_trials), int(sweep.n_jobs)
    if budget < 1 or n_jobs < 1:
        raise UserError(f"sweep.n_trials={budget}, sweep.n_jobs={n_jobs}: both must be at least 1")
    if str(sweep.trial_plots) not in TRIAL_PLOTS:
        raise UserError(
            f"sweep.trial_plots={sweep.trial_plots}: choose one of {', '.join(TRIAL_PLOTS)}"
        )
    heartbeat_seconds, stale_seconds = int(sweep.heartbeat_seconds), int(sweep.stale_seconds)
    if stale_seconds <= heartbeat_seconds:
        raise UserError(
            f"sweep.stale_seconds={stale_seconds} must exceed sweep.heartbeat_seconds="
            f"{heartbeat_seconds}: a live trial would be failed between two heartbeats"
        )
    trial_overrides = list(base_overrides)
    if cfg.threads is None:  # the workers on this machine share its cores
        trial_overrides.append(f"threads={max(1, cpu_threads(None) // n_jobs)}")

    _announce_k(k, allowed["clusterer"])
    quiet_optuna()
    # Workers start now, before any data, database connection or thread pool exists (a forked
    # worker could not use them): their warm-up overlaps with loading the data and the run.
    with _started_workers(n_jobs - 1, bool(cfg.tracking.enabled)) as workers:
        data = prepare_data(cfg, with_figures=False)  # drawn once the workers are busy
        require_value_fit(allowed[FEATURES], data.value_error)  # before any study or run
        url = study_storage(sweep.storage, str(cfg.tracking.uri) if cfg.tracking.enabled else None)
        name = str(sweep.study_name or default_study_name(allowed, objectives, data.digest, k))
        storage = open_storage(url, heartbeat_seconds, stale_seconds)
        study = open_study(storage, name, objectives, int(cfg.seed), _bound_store(cfg))
        _check_study_k(study, k)
        lock = study_lock(url, name)
        done = len(started_trials(study))
        print(
            f"study '{name}' in {mask_secrets(url)}: {done} trial(s) so far, budget {budget}; "
            f"{min(n_jobs, max(budget - done, 0))} worker(s) on this machine",
            flush=True,
        )

        with _parent_run(cfg, allowed, study, lock) as (parent, created):
            setup = TrialSetup(
                conf_dir=CONF_DIR,
                base_overrides=tuple(trial_overrides),
                allowed=allowed,
                search=search,
                objectives=tuple(objectives),
                constraints=dict(OmegaConf.to_container(sweep.constraints)),
                k=k,
                tracking=(
                    {"uri": str(cfg.tracking.uri), "experiment": str(cfg.tracking.experiment)}
                    if parent is not None
                    else None
                ),
                parent_run_id=parent.info.run_id if parent is not None else None,
                trial_plots=str(sweep.trial_plots),
                data=data,
            )
            args = WorkerArgs(
                setup, url, name, budget, heartbeat_seconds, stale_seconds, int(cfg.seed),
                time.time(), bool(cfg.verbose),
            )  # fmt: skip
            log_start = (lambda: _log_parent_start(cfg, data)) if created else (lambda: None)
            _run_workers(args, workers, meanwhile=log_start)
            study = open_study(storage, name, objectives, int(cfg.seed))
            _wait_for_other_workers(study, heartbeat_seconds)
            end_orphan_runs(setup, study)
            _report(study, objectives, tracked=parent is not None)
        if parent is not None and sweep.register:
            _register_best(cfg, study, objectives, lock)
        return study


def _announce_k(k: int | None, clusterers: Sequence[str]) -> None:
    """Say how the number of segments is decided, naming the clusterers held to k only by the
    k_segments constraint."""
    if k is None:
        print("sweep.k=null: the number of segments is sampled (sweep.constraints.min_segments "
              "to max_segments)", flush=True)  # fmt: skip
        return
    folder = Path(CONF_DIR) / "clusterer"
    own = [c for c in clusterers if k_key(OmegaConf.load(folder / f"{c}.yaml")) is None]
    print(f"sweep.k={k}: every trial makes {k} segments"
          + (f"; {', '.join(own)} set no number of clusters: their trials count only when they "
             f"find exactly {k}" if own else ""), flush=True)  # fmt: skip


def _check_study_k(study: optuna.Study, k: int | None) -> None:
    """A study is searched at one sweep.k (a study from before sweep.k sampled it: null)."""
    recorded = study.user_attrs
    if "k" not in recorded:
        if study.get_trials(deepcopy=False):
            recorded = {"k": None}
        else:
            study.set_user_attr("k", k)
            return
    if recorded["k"] != k:
        was, now = ("null" if value is None else value for value in (recorded["k"], k))
        raise UserError(
            f"sweep.study_name={study.study_name} was searched with sweep.k={was}, not {now}; "
            f"pass sweep.k={was} or pick another sweep.study_name"
        )


def _wait_for_other_workers(study: optuna.Study, poll_seconds: int) -> None:
    """Wait until no trial of the study runs: other workers' trials finish, or go stale when
    their worker died (at most sweep.stale_seconds). The last worker then reports, ends the
    runs of dead workers and registers the answer: nothing is left RUNNING."""
    announced = False
    while True:
        fail_stale(study)
        running = outcome(study).running
        if not running:
            return
        if not announced:
            print(f"waiting for {running} trial(s) running in other workers", flush=True)
            announced = True
        time.sleep(poll_seconds)


def _report(study: optuna.Study, objectives: Sequence[str], tracked: bool) -> None:
    """Print the summary and leaderboard (and log them to the parent run); fail without a
    feasible trial."""
    result = outcome(study)
    board = leaderboard(study, objectives)
    _print_summary(result, board)
    if tracked:
        _log_parent_end(study, board, objectives)
    if result.usable == 0:
        reasons = "\n".join(f"  {n} x {reason}" for reason, n in result.failures.items())
        raise UserError(
            f"no feasible trial among {result.completed + result.failed} in study "
            f"'{study.study_name}' ({result.infeasible} infeasible, {result.failed} failed)"
            + (f"; failures:\n{reasons}" if reasons else "")
        )


def _log_parent_start(cfg: DictConfig, data: Any) -> None:
    import mlflow

    from src.tracking.runs import flatten, log_plots

    mlflow.set_tag("data_digest", data.digest)
    settings = OmegaConf.to_container(cfg.sweep, resolve=True)
    # The sweep's settings; `objective` and `data_digest` under the trials' names (one column).
    objective = ",".join(objective_metrics(settings))
    mlflow.log_params(
        flatten({"sweep": settings}) | {"objective": objective, "data_digest": data.digest}
    )
    mlflow.log_metrics(data.metrics())
    log_plots(exploratory_figures(cfg, data))


def _log_parent_end(study: optuna.Study, board: pd.DataFrame, objectives: Sequence[str]) -> None:
    import mlflow

    from src.tracking.runs import carry_best_trial, log_plots

    result = outcome(study)
    mlflow.log_metrics(
        {
            "sweep/trials_completed": result.completed,
            "sweep/trials_infeasible": result.infeasible,
            "sweep/trials_failed": result.failed,
        }
    )
    best = best_feasible(study)
    if best is not None:
        # Tags, not params: the study's run is resumed by later sweeps, whose best may differ.
        mlflow.set_tags(
            {f"best.{k}": str(v) for k, v in best.params.items()}
            | {"best_combination": best.user_attrs["combination"]}
        )
        description = (
            f"Sweep '{study.study_name}': {result.completed} trials completed, "
            f"{result.infeasible} infeasible, {result.failed} failed; objective "
            f"{', '.join(objectives)}."
        )
        carry_best_trial(study.study_name, best.user_attrs["mlflow_run_id"], description)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "leaderboard.csv"
        write_csv(board, path)
        mlflow.log_artifact(str(path))
        if len(study.directions) > 1:
            feasible = [t for t in study.get_trials(deepcopy=False) if is_feasible(t)]
            front = pareto_front(study, feasible)
            pareto = [{"trial": shown_number(t), **dict(zip(objectives, t.values, strict=True))}
                      for t in front]  # fmt: skip
            write_csv(pd.DataFrame(pareto), Path(tmp) / "pareto_front.csv")
            mlflow.log_artifact(str(Path(tmp) / "pareto_front.csv"))
    log_plots(_sweep_figures(study, board, objectives))


def _sweep_figures(
    study: optuna.Study, board: pd.DataFrame, objectives: Sequence[str]
) -> dict[str, Figure]:
    from optuna.visualization import matplotlib as optuna_plots

    figures: dict[str, Figure] = {}
    if objectives[0] in board:
        figures["best_by_combination"] = plots.leaderboard_bars(board, objectives[0])
    # Single-objective: Optuna's own target, so the history also draws the best-so-far line.
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    attempts = {
        "optimization_history": lambda: optuna_plots.plot_optimization_history(
            study, target=target, target_name=objectives[0]
        ),
        "param_importances": lambda: optuna_plots.plot_param_importances(
            study, target=target, target_name=objectives[0]
        ),
    }
    if len(study.directions) > 1:
        attempts["pareto_front"] = lambda: optuna_plots.plot_pareto_front(
            study, target_names=list(objectives)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for figure_name, draw in attempts.items():
            try:
                figure = draw().figure
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                log.info("sweep plot %s skipped: %s", figure_name, err)
                continue
            # Optuna draws at 6.4 x 4.8 in. and clips long parameter names and the legend.
            figure.set_size_inches(11, 6)
            figure.tight_layout()
            figures[figure_name] = figure
    return figures


def _register_best(
    cfg: DictConfig, study: optuna.Study, objectives: Sequence[str], lock: Any
) -> None:
    """Register the best feasible trial's model once per study: under the study's lock, the
    trial registered last is recorded on the study (user attrs `registered_trial`,
    `registered_version`), so no other worker, here or on another machine, registers it again."""
    from src.tracking.registry import register_candidate

    with lock():
        fail_stale(study)
        running = outcome(study).running
        if running:
            # Another worker (another terminal or machine) is still running trials: its result
            # may be the best, so the last worker to finish registers; a resumed sweep does if
            # none does.
            print(
                f"{running} trial(s) still running in other workers: the last to finish registers"
            )
            return
        best = best_feasible(study)
        model_uri = best.user_attrs.get("model_uri") if best is not None else None
        if best is None or not model_uri:
            print("nothing registered: the best feasible trial has no logged model")
            return
        if study.user_attrs.get("registered_trial") == best.number:
            print(
                f"trial {shown_number(best)} is registered already "
                f"(version {study.user_attrs.get('registered_version')})"
            )
            return
        attrs = best.user_attrs
        version = register_candidate(
            model_uri,
            str(cfg.tracking.model_name),
            tags={
                "run_id": attrs["mlflow_run_id"],
                "combination": attrs["combination"],
                "objective": objectives[0],
                "objective_value": f"{best.values[0]:.6g}",
                "f1_macro": str(attrs.get("f1_macro")),
            },
            once_key={"study": study.study_name, "trial": str(shown_number(best))},
        )
        study.set_user_attr("registered_trial", best.number)
        study.set_user_attr("registered_version", str(version.version))
    print(
        f"registered {version.name} version {version.version} (trial {shown_number(best)}, "
        f"{attrs['combination']}) with alias 'candidate'; promote it with: "
        f"python -m src.promote version={version.version}"
    )


def _print_summary(result: Outcome, board: pd.DataFrame) -> None:
    print()
    print(
        f"{result.completed} trial(s) completed ({result.infeasible} infeasible), "
        f"{result.failed} failed, {result.running} still running elsewhere"
    )
    for reason, count in result.failures.items():
        print(f"  failed {count} x: {reason[:160]}")
    if not board.empty:
        print()
        shown = rounded(board.drop(columns=["mlflow_run_id"], errors="ignore"))
        print(shown.to_string(index=False))


@hydra.main(version_base="1.3", config_path="../conf", config_name="sweep")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        quiet_libraries(bool(cfg.verbose))
        overrides = list(HydraConfig.get().overrides.task)
        check_sweep(cfg)  # before any worker, study or run exists
        try:
            run_sweep(cfg, overrides)
        except KeyboardInterrupt:
            print("\ninterrupted: running trials are marked failed; rerun the same command to "
                  "resume the study", file=sys.stderr)  # fmt: skip
            sys.exit(130)


if __name__ == "__main__":
    run_command(main)
