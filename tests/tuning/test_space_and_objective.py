import optuna
import pandas as pd
import pytest

from src.errors import UserError
from src.tuning.objective import (
    constraint_checks,
    describe_violations,
    direction,
    objective_metrics,
    objective_values,
)
from src.tuning.space import allowed_options, suggest
from src.tuning.study import best_feasible, is_feasible, leaderboard, pareto_front

SEARCH = {
    "reducer": {"none": {}, "pca": {"n_components": {"type": "int", "low": 2, "high": 3}}},
    "clusterer": {
        "kmeans": {"n_clusters": {"type": "int", "low": 3, "high": 8}},
        "gmm": {
            "n_components": {"type": "int", "low": 3, "high": 8},
            "covariance_type": {"type": "categorical", "choices": ["full", "diag"]},
        },
    },
    "classifier": {"knn": {"n_neighbors": {"type": "int", "low": 3, "high": 30, "log": True}}},
}
SWEEP = {"reducers": ["none", "pca"], "clusterers": ["kmeans", "gmm"], "classifiers": ["knn"]}


def test_only_the_chosen_components_parameters_are_sampled():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    allowed = allowed_options(SWEEP, SEARCH)
    for _ in range(20):
        trial = study.ask()
        s = suggest(trial, allowed, SEARCH)
        clusterer = s.picked["clusterer"]
        sampled = {name.split(".")[1] for name in trial.params if name.count(".") == 2}
        assert sampled <= {s.picked["reducer"], clusterer, "knn"}
        assert s.overrides[:3] == [
            f"{g}={s.picked[g]}" for g in ("reducer", "clusterer", "classifier")
        ]
        if clusterer == "gmm":
            assert any(o.startswith("clusterer.covariance_type=") for o in s.overrides)
            assert not any(o.startswith("clusterer.n_clusters=") for o in s.overrides)
        study.tell(trial, 0.0)


def test_unknown_option_and_bad_space_are_named():
    with pytest.raises(UserError, match=r"sweep.clusterers: unknown option\(s\) \['dbscn'\]"):
        allowed_options(SWEEP | {"clusterers": ["dbscn"]}, SEARCH)
    with pytest.raises(UserError, match="sweep.reducers is empty"):
        allowed_options(SWEEP | {"reducers": []}, SEARCH)
    bad = SEARCH | {
        "classifier": {"knn": {"n_neighbors": {"type": "integer", "low": 1, "high": 2}}}
    }
    trial = optuna.create_study().ask()
    with pytest.raises(UserError, match="classifier.knn.n_neighbors: type must be one of"):
        suggest(trial, allowed_options(SWEEP, bad), bad)


def test_objectives_and_directions():
    assert objective_metrics({"objective": "cluster/silhouette", "objectives": []}) == [
        "cluster/silhouette"
    ]
    assert objective_metrics({"objective": "x", "objectives": ["a", "b"]}) == ["a", "b"]
    assert direction("cluster/davies_bouldin") == "minimize"
    assert direction("holdout/eta2_spend") == "maximize"
    with pytest.raises(UserError, match="sweep.objective=cluster/silhoutte: the run logs no such"):
        objective_values({"cluster/silhouette": 0.4}, ["cluster/silhoutte"])
    with pytest.raises(ValueError, match="undefined"):
        objective_values({"cluster/silhouette": float("nan")}, ["cluster/silhouette"])


def test_constraints_measure_the_final_segments():
    profile = pd.DataFrame({"customer_share": [0.5, 0.49, 0.01]})
    limits = {"min_segments": 3, "max_segments": 8, "min_segment_share": 0.02, "min_f1_macro": 0.9}
    checks = constraint_checks({"classifier/f1_macro": 0.95}, profile, limits)
    assert checks["min_segments"] == 0 and checks["max_segments"] == -5
    assert checks["min_segment_share"] == pytest.approx(0.01)
    assert checks["min_f1_macro"] == pytest.approx(-0.05)
    assert describe_violations(checks) == "min_segment_share"


def _trial(study, number, value, feasible, combination="pca-kmeans-knn"):
    return optuna.trial.create_trial(
        values=value if isinstance(value, list) else [value],
        user_attrs={"combination": combination},
        constraints={"min_f1_macro": -1.0 if feasible else 0.5},
    )


def test_infeasible_trials_are_never_best():
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(study, 0, 0.9, feasible=False))
    study.add_trial(_trial(study, 1, 0.5, feasible=True))
    study.add_trial(_trial(study, 2, 0.6, feasible=True, combination="none-gmm-knn"))
    best = best_feasible(study)
    assert best.number == 2
    assert not is_feasible(study.trials[0])
    board = leaderboard(study, ["cluster/silhouette"])
    assert board["combination"].tolist() == ["none-gmm-knn", "pca-kmeans-knn"]
    assert board.set_index("combination").loc["pca-kmeans-knn", "best_trial"] == 1
    assert board.set_index("combination").loc["pca-kmeans-knn", "trials"] == 2


def test_minimised_objective_and_pareto_front():
    study = optuna.create_study(direction="minimize")
    study.add_trial(_trial(study, 0, 0.9, feasible=True))
    study.add_trial(_trial(study, 1, 0.7, feasible=True))
    assert best_feasible(study).number == 1
    multi = optuna.create_study(directions=["maximize", "maximize"])
    for values in ([0.5, 0.9], [0.6, 0.8], [0.4, 0.7], [0.7, 0.95]):
        multi.add_trial(_trial(multi, 0, values, feasible=True))
    front = pareto_front(multi, multi.trials)
    assert [t.number for t in front] == [3]
    assert best_feasible(multi).number == 3


def test_holdout_objective_without_holdout_says_how_to_turn_it_on():
    with pytest.raises(UserError, match="validation.holdout_days"):
        objective_values({"cluster/silhouette": 0.4}, ["holdout/eta2_spend"])
