import pytest
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from src.tuning.study import open_storage, open_study, work

# Heartbeats, TPE's group option and fail_stale_trials are marked experimental; sweeps silence it.
pytestmark = pytest.mark.filterwarnings("ignore", category=ExperimentalWarning)


def _study(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    storage = open_storage(url, heartbeat_seconds=10)
    return open_study(storage, "queue", ["cluster/silhouette"], seed=0), storage, url


def _x(study, trial):
    return [trial.suggest_float("x", 0.0, 1.0)]


def test_enqueued_trials_run_first_and_count_against_the_budget_once_started(tmp_path):
    study, storage, url = _study(tmp_path)
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
    work(study, storage, url, budget=3, run_trial=_x, heartbeat_seconds=10)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [t.params["x"] for t in trials] == [0.1, 0.2, 0.3]

    study.enqueue_trial({"x": 0.9})
    work(study, storage, url, budget=5, run_trial=_x, heartbeat_seconds=10)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert trials[3].params["x"] == 0.9  # the queued trial, then one sampled
