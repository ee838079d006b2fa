"""The Optuna study behind a sweep: storage, the shared trial budget, heartbeats, the answers.

Several workers (processes on this machine, or sweep commands on other machines pointing at the
same storage) run the same loop: take the next trial while the study holds fewer than `budget`
trials, run it, report it. A worker killed mid-trial stops sending heartbeats; the next worker
that looks marks its trial failed, so nothing is lost silently and a rerun resumes the study.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from src.errors import UserError
from src.locking import machine_lock
from src.sqlite_wal import use_wal
from src.tuning.objective import direction

log = logging.getLogger(__name__)
DEFAULT_STORAGE = Path("outputs") / "sweeps.db"
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
INFEASIBLE = [1.0]  # what a trial without recorded constraints counts as


def storage_url(setting: str | None) -> str:
    """`sweep.storage`, or a SQLite file under outputs/ in the working directory."""
    if setting:
        return str(setting)
    DEFAULT_STORAGE.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_STORAGE.resolve()}"


def default_study_name(
    allowed: dict[str, list[str]], objectives: Sequence[str], digest: str
) -> str:
    """Same options, objective(s) and data -> same study, so rerunning a command resumes it."""
    key = repr((sorted((g, sorted(o)) for g, o in allowed.items()), list(objectives), digest))
    return f"segmentation-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def open_storage(url: str, heartbeat_seconds: int) -> RDBStorage:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in RDB_SCHEMES:
        raise UserError(
            f"sweep.storage={url}: use a database URL ({', '.join(RDB_SCHEMES)}), e.g. "
            "sqlite:///sweeps.db or postgresql://user:password@host/db"
        )
    engine_kwargs = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {}
    try:
        # Two workers starting on a fresh database would both create its tables.
        with machine_lock(f"create|{url}"):
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=int(heartbeat_seconds),
                grace_period=3 * int(heartbeat_seconds),
            )
            use_wal(url)
            return storage
    except Exception as err:  # SQLAlchemy raises many kinds; all mean "cannot use this storage"
        raise UserError(f"sweep.storage={url}: cannot open it: {err}") from err


def read_constraints(trial: FrozenTrial) -> Sequence[float]:
    """Constraint values set with `Trial.set_constraint` (<= 0: satisfied); a trial that
    recorded none (it failed before measuring) counts as infeasible."""
    return list(trial.constraints.values()) or INFEASIBLE


def open_study(
    storage: RDBStorage, name: str, objectives: Sequence[str], seed: int
) -> optuna.Study:
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    directions = [direction(metric) for metric in objectives]
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except ValueError as err:
        raise UserError(f"sweep.study_name={name}: {err}") from err
    recorded = study.user_attrs.get("objectives")
    if recorded is None:
        study.set_user_attr("objectives", list(objectives))
    elif list(recorded) != list(objectives):
        raise UserError(
            f"sweep.study_name={name} optimises {recorded}, not {list(objectives)}; "
            "pick another sweep.study_name"
        )
    return study


def started_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count against a sweep's budget: all but those still waiting in the queue."""
    return [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]


def budget_lock(storage_url_: str, study_name: str):
    """Serialises 'count, then ask' among workers on this machine, so together they never start
    more than the budget. Workers on other machines can overshoot by at most one trial each."""
    return machine_lock(f"budget|{storage_url_}|{study_name}")


@contextmanager
def heartbeat(storage: RDBStorage, trial: optuna.Trial, seconds: float) -> Iterator[None]:
    """Record the trial's heartbeat every `seconds` while it runs."""
    stop = threading.Event()
    trial_id = trial._trial_id  # Optuna's ask/tell API has no public handle for this id

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(seconds):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def _own_heartbeat() -> Iterator[None]:
    """Optuna warns that heartbeats belong to `Study.optimize`; this loop records its own
    (`heartbeat`), because `optimize` cannot count and ask under one lock."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


TrialBody = Callable[[optuna.Study, optuna.Trial], list[float]]


def work(
    study: optuna.Study,
    storage: RDBStorage,
    storage_url_: str,
    budget: int,
    run_trial: TrialBody,
    heartbeat_seconds: float,
    on_finish: Callable[[FrozenTrial], None] | None = None,
) -> None:
    """Run trials until `budget` trials of the study have started; trials enqueued with
    `Study.enqueue_trial` wait until a worker takes them, first. A trial that raises is told FAIL
    with its reason (user attr `error`) and the loop goes on; Ctrl-C fails the current trial and
    stops."""
    while True:
        with budget_lock(storage_url_, study.study_name), _own_heartbeat():
            fail_stale_trials(study)
            if len(started_trials(study)) >= budget:
                return
            trial = study.ask()
        with heartbeat(storage, trial, heartbeat_seconds):
            try:
                values = run_trial(study, trial)
            except KeyboardInterrupt:
                trial.set_user_attr("error", "interrupted (Ctrl-C)")
                with _own_heartbeat():
                    study.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as err:  # a failing trial must not stop the sweep
                log.debug("trial %d failed", trial.number, exc_info=True)
                trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
                with _own_heartbeat():
                    frozen = study.tell(trial, state=TrialState.FAIL)
            else:
                with _own_heartbeat():
                    frozen = study.tell(trial, values)
        if on_finish is not None:
            on_finish(frozen)


# ------------------------------------------------------------------------------------ answers
def is_feasible(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.COMPLETE and all(c <= 0 for c in read_constraints(trial))


def best_feasible(study: optuna.Study) -> FrozenTrial | None:
    """The best feasible trial; in multi-objective mode the Pareto-optimal feasible trial that is
    best on the first objective."""
    feasible = [t for t in study.get_trials(deepcopy=False) if is_feasible(t)]
    if not feasible:
        return None
    sign = 1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1.0
    candidates = pareto_front(study, feasible) if len(study.directions) > 1 else feasible
    return max(candidates, key=lambda t: (sign * t.values[0], -t.number))


def pareto_front(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    signs = [1.0 if d == optuna.study.StudyDirection.MAXIMIZE else -1.0 for d in study.directions]

    def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a.values, b.values, strict=True)]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return [t for t in trials if not any(dominates(o, t) for o in trials if o is not t)]


@dataclass(frozen=True)
class Outcome:
    completed: int
    infeasible: int
    failed: int
    running: int
    failures: dict[str, int]  # reason -> count

    @property
    def usable(self) -> int:
        return self.completed - self.infeasible


def outcome(study: optuna.Study) -> Outcome:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    failures: dict[str, int] = {}
    for t in failed:
        reason = str(t.user_attrs.get("error", "no heartbeat: its process died"))
        failures[reason] = failures.get(reason, 0) + 1
    return Outcome(
        completed=len(complete),
        infeasible=sum(not is_feasible(t) for t in complete),
        failed=len(failed),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        failures=dict(sorted(failures.items(), key=lambda kv: -kv[1])),
    )


LEADERBOARD_ATTRS = ("n_segments", "smallest_share", "silhouette", "f1_macro", "mlflow_run_id")


def leaderboard(study: optuna.Study, objectives: Sequence[str]) -> pd.DataFrame:
    """The best feasible trial of every combination tried (and how many trials each got)."""
    rows = []
    trials = [t for t in study.get_trials(deepcopy=False) if "combination" in t.user_attrs]
    sign = 1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1.0
    for combination in sorted({t.user_attrs["combination"] for t in trials}):
        mine = [t for t in trials if t.user_attrs["combination"] == combination]
        feasible = [t for t in mine if is_feasible(t)]
        row = {
            "combination": combination,
            "trials": len(mine),
            "feasible": len(feasible),
            "failed": sum(t.state == TrialState.FAIL for t in mine),
        }
        if feasible:
            best = max(feasible, key=lambda t: (sign * t.values[0], -t.number))
            row |= {"best_trial": best.number}
            row |= dict(zip(objectives, best.values, strict=True))
            row |= {attr: best.user_attrs.get(attr) for attr in LEADERBOARD_ATTRS}
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in ("best_trial", "n_segments"):
        if column in table:
            table[column] = table[column].astype("Int64")
    if table.empty or objectives[0] not in table:
        return table
    return table.sort_values(objectives[0], ascending=sign < 0, na_position="last").reset_index(
        drop=True
    )


def progress_line(study: optuna.Study, trial: FrozenTrial, budget: int, started: float) -> str:
    """One line per finished trial: number, combination, objective, best so far, time left."""
    trials = started_trials(study)
    finished = [t for t in trials if t.state.is_finished()]
    this_session = [
        t for t in finished if t.datetime_complete and t.datetime_complete.timestamp() >= started
    ]
    elapsed = time.time() - started
    left = max(budget - len(trials), 0) + sum(t.state == TrialState.RUNNING for t in trials)
    eta = elapsed / max(len(this_session), 1) * left
    combination = trial.user_attrs.get("combination", "?")
    if trial.state == TrialState.FAIL:
        result = f"FAILED: {str(trial.user_attrs.get('error', ''))[:80]}"
    else:
        value = ", ".join(f"{v:.4g}" for v in trial.values)
        result = (
            value
            if is_feasible(trial)
            else f"{value} infeasible ({trial.user_attrs.get('violations', '')})"
        )
    best = best_feasible(study)
    best_text = f"best {best.values[0]:.4g} (#{best.number})" if best else "no feasible trial yet"
    return (
        f"trial {trial.number + 1:>3}/{budget}  {combination:<32} {result:<40} {best_text}  "
        f"{elapsed:,.0f} s elapsed, ~{eta:,.0f} s left"
    )
