"""The Optuna study behind a sweep: storage, the shared trial budget, heartbeats, the answers.

Several workers (processes on this machine, or sweep commands on other machines pointing at the
same storage) run the same loop: under the study's lock (`src.stores.store_lock`, held in the
shared database itself) count the trials, ask for the next one and sample its parameters; run it,
report it. A parameter set the study has already evaluated (or is evaluating) is not run again:
that trial is told PRUNED with user attr `duplicate_of` and does not count against the budget.
A worker killed mid-trial stops sending heartbeats; once its trial is `stale_seconds` silent the
next worker that looks marks it failed, so nothing is lost silently and a rerun resumes the study.
Every storage call waits out a restarting database (`RetryingStorage`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import optuna
import pandas as pd
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from src.errors import UserError
from src.retry import is_transient, retry
from src.secrets import mask_secrets
from src.sqlite_wal import use_wal
from src.stores import ensure_database, normalise_url, scheme, store_lock
from src.tuning.objective import direction

log = logging.getLogger(__name__)
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
INFEASIBLE = [1.0]  # what a trial without recorded constraints counts as
MAX_DUPLICATES_IN_A_ROW = 25  # then the search space looks exhausted: the worker stops


def default_study_name(
    allowed: dict[str, list[str]], objectives: Sequence[str], digest: str, k: int | None
) -> str:
    """Same options, objective(s), data and sweep.k -> same study, so rerunning a command resumes
    it."""
    key = repr((sorted((g, sorted(o)) for g, o in allowed.items()), list(objectives), digest, k))
    return f"segmentation-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


_RETRIED_CALLS = (
    "create_new_study", "get_study_id_from_name", "get_study_name_from_id",
    "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "set_study_user_attr", "set_study_system_attr", "create_new_trial", "set_trial_param",
    "set_trial_user_attr", "set_trial_system_attr", "set_trial_intermediate_value",
    "get_trial", "get_all_trials", "get_trial_id_from_study_id_trial_number", "get_best_trial",
    "record_heartbeat", "_get_stale_trial_ids",
    # What Optuna's cached storage (in front of every study's RDBStorage) calls directly:
    "_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param",
)  # fmt: skip


class RetryingStorage(RDBStorage):
    """Optuna's RDBStorage whose every call waits out a database that restarts (`src.retry`).
    A write whose commit went through just before the connection dropped is not repeated:
    telling a trial's state again finds it told, which counts as done."""

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        attempts = 0

        def tell() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                if attempts > 1 and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise

        return retry(tell, f"telling trial {trial_id}")


def _retrying(name: str) -> Callable[..., Any]:
    call = getattr(RDBStorage, name)

    def method(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        return retry(lambda: call(self, *args, **kwargs), f"study storage ({name})")

    method.__name__ = name
    return method


for _name in _RETRIED_CALLS:
    setattr(RetryingStorage, _name, _retrying(_name))


def open_storage(url: str, heartbeat_seconds: int, stale_seconds: int) -> RetryingStorage:
    """The study storage at `url`; a trial whose heartbeat is `stale_seconds` old is stale."""
    url = normalise_url(url)
    if scheme(url).split("+", 1)[0] not in RDB_SCHEMES:
        raise UserError(
            f"sweep.storage={mask_secrets(url)}: use a database URL ({', '.join(RDB_SCHEMES)}), "
            "e.g. sqlite:///sweeps.db or postgresql://user:password@host/db"
        )
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a restarted server: reconnect
    if scheme(url) == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        ensure_database(url)
        # Two workers starting on a fresh database would both create its tables.
        with store_lock(url, "create"):
            storage = retry(
                lambda: RetryingStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=int(heartbeat_seconds),
                    grace_period=int(stale_seconds),
                ),
                "opening the study storage",
            )
            use_wal(url)
            return storage
    except UserError:
        raise
    except Exception as err:  # SQLAlchemy raises many kinds; all mean "cannot use this storage"
        raise UserError(
            f"sweep.storage={mask_secrets(url)}: cannot open it: {mask_secrets(str(err))}"
        ) from err


def study_lock(url: str, study_name: str) -> Callable[[], AbstractContextManager[None]]:
    """The lock every worker of the study holds to count, ask and sample, to claim a worker
    slot, and to register the answer: in the study's own database, so it spans machines."""
    return lambda: store_lock(normalise_url(url), f"study|{study_name}")


def read_constraints(trial: FrozenTrial) -> Sequence[float]:
    """Constraint values set with `Trial.set_constraint` (<= 0: satisfied); a trial that
    recorded none (it failed before measuring) counts as infeasible."""
    return list(trial.constraints.values()) or INFEASIBLE


def open_study(
    storage: RDBStorage,
    name: str,
    objectives: Sequence[str],
    seed: int,
    belongs_to: dict[str, str] | None = None,
) -> optuna.Study:
    """Create or load the study. `belongs_to` ({"mlflow_store": ..., "mlflow_experiment": ...};
    None = tracking off) is recorded on a new study; a study recorded with another MLflow store
    or experiment is refused, as is one with other objectives."""
    directions = [direction(metric) for metric in objectives]
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=tpe_sampler(seed),
            load_if_exists=True,
        )
    except ValueError as err:
        raise UserError(f"sweep.study_name={name}: {err}") from err
    recorded = study.user_attrs
    if "objectives" not in recorded:
        study.set_user_attr("objectives", list(objectives))
    elif list(recorded["objectives"]) != list(objectives):
        raise UserError(
            f"sweep.study_name={name} optimises {recorded['objectives']}, not {list(objectives)}; "
            "pick another sweep.study_name"
        )
    for key, value in (belongs_to or {}).items():
        if key not in recorded:
            study.set_user_attr(key, value)
        elif recorded[key] != value:
            raise UserError(
                f"sweep.study_name={name}: this study belongs to MLflow store "
                f"{recorded.get('mlflow_store')} (experiment '{recorded.get('mlflow_experiment')}'), "
                f"not {belongs_to.get('mlflow_store')} (experiment "
                f"'{belongs_to.get('mlflow_experiment')}'): point tracking.uri / "
                "tracking.experiment at its store, or pick another sweep.study_name or "
                "sweep.storage"
            )
    return study


def tpe_sampler(seed: int) -> optuna.samplers.TPESampler:
    # constant_liar: running trials count as bad guesses, so parallel workers spread out.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


def claim_worker_slot(study: optuna.Study, lock: Callable[[], AbstractContextManager[None]]) -> int:
    """This worker's number in the study (0 for the first worker ever, then 1, 2, ... across
    machines and resumes), counted in the shared study under its lock; recorded with the
    worker's host and process id (user attr `worker_<n>`)."""
    with lock():
        slot = int(study.user_attrs.get("workers", 0))
        study.set_user_attr("workers", slot + 1)
        study.set_user_attr(f"worker_{slot}", worker_identity())
    return slot


def worker_identity() -> str:
    """Which process on which machine runs a trial (user attr `worker`)."""
    return f"{socket.gethostname()}/{os.getpid()}"


def is_duplicate(trial: FrozenTrial) -> bool:
    return "duplicate_of" in trial.user_attrs


def started_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count against a sweep's budget: all but those still waiting in the queue
    and the duplicates that were never run."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.WAITING and not is_duplicate(t)
    ]


def evaluated_twin(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial | None:
    """An earlier trial with the same parameters that completed, is running, or failed for a
    reason of its own (not a lost worker's heartbeat, an interruption or an unreachable store)."""
    params = trial.params
    for other in study.get_trials(deepcopy=False):
        if other.number == trial.number or is_duplicate(other) or other.params != params:
            continue
        settled_failure = other.state == TrialState.FAIL and not other.user_attrs.get(
            "retryable", "error" not in other.user_attrs
        )
        if other.state in (TrialState.COMPLETE, TrialState.RUNNING) or settled_failure:
            return other
    return None


def fail_stale(study: optuna.Study) -> list[FrozenTrial]:
    """Fail the running trials whose worker died (returns them): those whose heartbeat is older
    than the storage's grace period, and those that never got a worker (a trial created twice
    when the database dropped the connection after creating it: the retry made another)."""
    storage = study._storage  # the heartbeat API of Optuna's storages takes the study's ids
    grace = timedelta(seconds=getattr(storage, "_backend", storage).grace_period)
    unowned = [
        t._trial_id
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if "worker" not in t.user_attrs and datetime.now() - t.datetime_start > grace
    ]
    failed = []
    for trial_id in [*storage._get_stale_trial_ids(study._study_id), *unowned]:
        try:
            storage.set_trial_user_attr(trial_id, "error", "no heartbeat: its worker died")
            storage.set_trial_user_attr(trial_id, "retryable", True)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(storage.get_trial(trial_id))
        except UpdateFinishedTrialError:  # another worker failed it first
            pass
    return failed


@contextmanager
def heartbeat(storage: RDBStorage, trial: optuna.Trial, seconds: float) -> Iterator[None]:
    """Record the trial's heartbeat every `seconds` while it runs. A beat that fails (the
    database is unreachable for longer than the retries wait) is logged; the next one tries
    again: the thread lives as long as the trial."""
    stop = threading.Event()
    trial_id = trial._trial_id  # Optuna's ask/tell API has no public handle for this id

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as err:  # noqa: BLE001 - a missed beat is not the trial's failure
                log.warning("trial %d: heartbeat not recorded: %s", shown_number(trial), err)
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
TRIAL_ATTEMPTS = 2  # a trial that lost its store (after the retries' wait) runs once more


def work(
    study: optuna.Study,
    storage: RDBStorage,
    lock: Callable[[], AbstractContextManager[None]],
    budget: int,
    propose: Callable[[optuna.Trial], Any],
    run_trial: TrialBody,
    heartbeat_seconds: float,
    on_finish: Callable[[FrozenTrial], None] | None = None,
    on_stale: Callable[[list[FrozenTrial]], None] | None = None,
) -> None:
    """Run trials until `budget` trials of the study have started; trials enqueued with
    `Study.enqueue_trial` wait until a worker takes them, first. `propose` samples a trial's
    parameters under the lock, so that a parameter set already evaluated is caught before it
    runs. A trial that raises is told FAIL with its reason (user attr `error`) and the loop goes
    on; one that fails because its store is unreachable is run once more first; Ctrl-C fails the
    current trial and stops."""
    duplicates = 0
    while True:
        trial = None
        try:
            with lock(), _own_heartbeat():
                stale = fail_stale(study)
                if len(started_trials(study)) < budget:
                    # An interrupt inside `ask` would come after the trial's row exists but before
                    # this loop holds it, leaving it RUNNING: it waits until the trial is held.
                    with interrupts_deferred():
                        trial = study.ask()
                        # Before anything else: a worker killed from here on leaves a trial that
                        # goes stale, not one RUNNING for ever (one without a heartbeat never does).
                        storage.record_heartbeat(trial._trial_id)
                        trial.set_user_attr("worker", worker_identity())
                    propose(trial)
                    twin = evaluated_twin(study, trial)
                    if twin is not None:
                        trial.set_user_attr("duplicate_of", twin.number)
                        study.tell(trial, state=TrialState.PRUNED)
            if stale and on_stale is not None:
                on_stale(stale)
            if trial is None:
                return
            if twin is not None:
                duplicates += 1
                if duplicates >= MAX_DUPLICATES_IN_A_ROW:
                    print(
                        f"{duplicates} sampled parameter sets in a row were evaluated already: "
                        "the search space looks exhausted; this worker stops",
                        flush=True,
                    )
                    return
                continue
            duplicates = 0
            with heartbeat(storage, trial, heartbeat_seconds):
                frozen = _run_and_tell(study, trial, run_trial)
        except KeyboardInterrupt:
            # Anywhere from asking for the trial to telling its result (sampling under the lock
            # included): the trial ends FAIL as interrupted, not RUNNING until it goes stale.
            if trial is not None:
                _fail_interrupted(study, storage, trial)
            raise
        if on_finish is not None:
            on_finish(frozen)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C and `kill` (SIGINT, SIGTERM) arriving inside the block take effect when it ends (a
    second one at once); their handlers are the ones installed before. Only the main thread can
    handle signals: elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, Any]] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def defer(signum: int, frame: Any) -> None:
        if pending:  # asked twice: the user means it
            _deliver(previous[signum], signum, frame)
        pending.append((signum, frame))

    for sig in previous:
        signal.signal(sig, defer)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            _deliver(previous[pending[0][0]], *pending[0])


def _deliver(handler: Any, signum: int, frame: Any) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL and signum == signal.SIGINT:
        raise KeyboardInterrupt
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # the default action (SIGTERM: exit)


def _fail_interrupted(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial) -> None:
    with _own_heartbeat():
        if storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
            return  # told already (a duplicate, or the result went through)
        trial.set_user_attr("error", "interrupted (Ctrl-C)")
        trial.set_user_attr("retryable", True)
        study.tell(trial, state=TrialState.FAIL)


def _run_and_tell(study: optuna.Study, trial: optuna.Trial, run_trial: TrialBody) -> FrozenTrial:
    attempt = 1
    while True:
        try:
            values = run_trial(study, trial)
        except Exception as err:  # a failing trial must not stop the sweep
            transient = is_transient(err)
            if transient and attempt < TRIAL_ATTEMPTS:
                log.warning(
                    "trial %d lost its store (%s): running it again", shown_number(trial), err
                )
                attempt += 1
                continue
            log.debug("trial %d failed", shown_number(trial), exc_info=True)
            trial.set_user_attr("error", mask_secrets(f"{type(err).__name__}: {err}")[:2000])
            trial.set_user_attr("retryable", transient)
            with _own_heartbeat():
                return study.tell(trial, state=TrialState.FAIL)
        with _own_heartbeat():
            return study.tell(trial, values)


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
    """The best feasible trial of every combination tried (and how many trials each got); each
    number once: an objective is not repeated among the trial's attributes."""
    attrs = [a for a in LEADERBOARD_ATTRS if not any(o.endswith(f"/{a}") for o in objectives)]
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
            row |= {"best_trial": shown_number(best)}
            row |= dict(zip(objectives, best.values, strict=True))
            row |= {attr: best.user_attrs.get(attr) for attr in attrs}
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


def shown_number(trial: optuna.trial.BaseTrial) -> int:
    """A trial's number as people read it (console, leaderboard): 1-based, as in "trial 1/30";
    Optuna's own `trial.number` counts from 0."""
    return trial.number + 1


def duration(seconds: float) -> str:
    """ "42s", "3m05s", "1h02m": short enough for a progress line."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(study: optuna.Study, trial: FrozenTrial, budget: int, started: float) -> str:
    """The sweep's progress after a finished trial: "trial 3/30 pca-kmeans-xgboost 0.412 | best
    0.431 (trial 2) | elapsed 1m05s, ETA 9m30s"; the ETA assumes the trials still to run take as
    long as this session's took."""
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
        result = "failed"
    else:
        result = ", ".join(f"{v:.4g}" for v in trial.values)
        if not is_feasible(trial):
            result += " infeasible"
    best = best_feasible(study)
    best_text = f"best {best.values[0]:.4g} (trial {shown_number(best)})" if best else "no best yet"
    return (
        f"trial {len(finished)}/{budget} {combination} {result} | {best_text} | "
        f"elapsed {duration(elapsed)}, ETA {duration(eta)}"
    )


def trial_note(trial: FrozenTrial) -> str | None:
    """What a person must see of a finished trial beyond the progress line: why it failed or is
    infeasible (None for a feasible one)."""
    if trial.state == TrialState.FAIL:
        return f"trial {shown_number(trial)} failed: {str(trial.user_attrs.get('error', ''))[:160]}"
    if trial.state == TrialState.COMPLETE and not is_feasible(trial):
        return f"trial {shown_number(trial)} infeasible: {trial.user_attrs.get('violations', '')}"
    return None
