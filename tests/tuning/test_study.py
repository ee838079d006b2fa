import signal

import pytest
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from src.errors import UserError
from src.sweep import sampler_seed
from src.tuning.study import (
    claim_worker_slot,
    interrupts_deferred,
    open_storage,
    open_study,
    study_lock,
    work,
)

# Heartbeats, TPE's group option and fail_stale_trials are marked experimental; sweeps silence it.
pytestmark = pytest.mark.filterwarnings("ignore", category=ExperimentalWarning)


def _study(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    storage = open_storage(url, heartbeat_seconds=10, stale_seconds=30)
    return open_study(storage, "queue", ["cluster/silhouette"], seed=0), storage, url


def _suggest_x(trial):
    return trial.suggest_float("x", 0.0, 1.0)


def _x(study, trial):
    return [_suggest_x(trial)]


def _work(study, storage, url, budget, run_trial=_x, propose=_suggest_x):
    lock = study_lock(url, study.study_name)
    work(study, storage, lock, budget, propose, run_trial, heartbeat_seconds=10)


def test_enqueued_trials_run_first_and_count_against_the_budget_once_started(tmp_path):
    study, storage, url = _study(tmp_path)
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
    _work(study, storage, url, budget=3)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [t.params["x"] for t in trials] == [0.1, 0.2, 0.3]

    study.enqueue_trial({"x": 0.9})
    _work(study, storage, url, budget=5)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert trials[3].params["x"] == 0.9  # the queued trial, then one sampled


def test_a_parameter_set_already_evaluated_is_not_run_again_nor_counted(tmp_path):
    study, storage, url = _study(tmp_path)
    ran = []

    def propose(trial):
        return trial.suggest_int("k", 1, 3)  # three parameter sets only

    def run(study, trial):
        ran.append(propose(trial))
        return [float(ran[-1])]

    _work(study, storage, url, budget=3, run_trial=run, propose=propose)
    assert sorted(ran) == [1, 2, 3]
    trials = study.get_trials(deepcopy=False)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    duplicates = [t for t in trials if t.state == TrialState.PRUNED]
    assert all(t.user_attrs["duplicate_of"] in (0, 1, 2) for t in duplicates)
    # A bigger budget on an exhausted space: the worker gives up instead of looping.
    _work(study, storage, url, budget=5, run_trial=run, propose=propose)
    assert sorted(ran) == [1, 2, 3]


def test_a_trial_that_lost_its_store_runs_again(tmp_path):
    study, storage, url = _study(tmp_path)
    attempts = []

    def flaky(study, trial):
        attempts.append(trial.number)
        if len(attempts) == 1:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
        return _x(study, trial)

    _work(study, storage, url, budget=1, run_trial=flaky)
    (trial,) = study.get_trials(deepcopy=False)
    assert attempts == [0, 0]
    assert trial.state == TrialState.COMPLETE


def test_a_study_belongs_to_one_mlflow_store_and_experiment(tmp_path):
    _, storage, _ = _study(tmp_path)
    here = {
        "mlflow_store": "sqlite:///a/mlflow.db",
        "mlflow_experiment": "e",
        "mlflow_experiment_key": "1@5",
    }
    open_study(storage, "bound", ["cluster/silhouette"], seed=0, belongs_to=here)
    open_study(storage, "bound", ["cluster/silhouette"], seed=0, belongs_to=here)  # resumes
    elsewhere = here | {"mlflow_store": "sqlite:///b/mlflow.db", "mlflow_experiment_key": "1@9"}
    with pytest.raises(UserError, match="belongs to MLflow store sqlite:///a/mlflow.db"):
        open_study(storage, "bound", ["cluster/silhouette"], seed=0, belongs_to=elsewhere)


def test_every_worker_of_a_study_gets_its_own_slot_and_sampler_seed(tmp_path):
    study, _, url = _study(tmp_path)
    lock = study_lock(url, study.study_name)
    slots = [claim_worker_slot(study, lock) for _ in range(3)]  # e.g. two machines, then a resume
    assert slots == [0, 1, 2]
    assert sampler_seed(42, 0) == 42  # a fresh one-worker sweep samples as `seed` says
    assert len({sampler_seed(42, slot) for slot in slots}) == 3
    assert study.user_attrs["workers"] == 3 and "worker_2" in study.user_attrs


def test_an_interrupt_inside_the_deferred_block_arrives_when_it_ends():
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        reached.append("after the signal")  # the block is not cut
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_second_interrupt_inside_the_deferred_block_arrives_at_once():
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        reached.append("after two signals")
    assert reached == []


def test_a_deferred_sigterm_goes_to_the_handler_installed_before():
    seen = []

    def handler(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with interrupts_deferred():
            signal.raise_signal(signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_interrupt_while_asking_for_a_trial_fails_it_instead_of_leaving_it_running(
    tmp_path, monkeypatch
):
    """`kill` landing inside `study.ask` (the trial's row exists, the loop does not hold it yet)
    used to leave a RUNNING trial until it went stale."""
    study, storage, url = _study(tmp_path)
    ask = study.ask

    def ask_then_interrupted(*args, **kwargs):
        trial = ask(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Python delivers it before ask returns
        return trial

    monkeypatch.setattr(study, "ask", ask_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        _work(study, storage, url, budget=3)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert trials[0].user_attrs["error"] == "interrupted (Ctrl-C)"
