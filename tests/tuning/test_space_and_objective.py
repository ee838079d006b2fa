import dataclasses
import re
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.errors import UserError
from src.tuning.objective import (
    check_objectives_for_k,
    constraint_checks,
    describe_violations,
    direction,
    objective_metrics,
    objective_values,
)
from src.tuning.space import Suggestion, allowed_options, suggest, sweep_k
from src.tuning.study import (
    best_feasible,
    duration,
    is_feasible,
    leaderboard,
    pareto_front,
    progress_line,
)
from src.tuning.trial import TrialSetup, compose_run_config, could_be_best, ranks_first

CONF = Path(__file__).resolve().parents[2] / "conf"
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
SWEEP = {
    "reducers": ["none", "pca"],
    "clusterers": ["kmeans", "gmm"],
    "classifiers": ["knn"],
    "features": ["rfm"],
}


def test_only_the_chosen_components_parameters_are_sampled():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    allowed = allowed_options(SWEEP, SEARCH)
    for _ in range(20):
        trial = study.ask()
        s = suggest(trial, allowed, SEARCH)
        clusterer = s.picked["clusterer"]
        sampled = {name.split(".")[1] for name in trial.params if name.count(".") == 2}
        assert sampled <= {s.picked["reducer"], clusterer, "knn"}
        assert {key.split(".")[0] for key in s.params} <= {"reducer", "clusterer", "classifier"}
        if clusterer == "gmm":
            assert "clusterer.covariance_type" in s.params
            assert "clusterer.n_clusters" not in s.params
        study.tell(trial, 0.0)


def test_with_sweep_k_the_number_of_clusters_is_not_sampled_but_k():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    allowed = allowed_options(SWEEP, SEARCH)
    for _ in range(10):
        trial = study.ask()
        s = suggest(trial, allowed, SEARCH, k=5)
        assert not {"clusterer.n_clusters", "clusterer.n_components"} & set(s.params)
        assert not any(name.endswith((".n_clusters", ".n_components")) for name in trial.params
                       if name.startswith("clusterer."))  # fmt: skip
        if s.picked["reducer"] == "pca":
            assert "reducer.n_components" in s.params  # the reducer's own is still searched
        picked = s.picked | {"classifier": "knn"}
        cfg = compose_run_config(_setup_k(5), Suggestion(picked, s.params))
        key = "n_clusters" if s.picked["clusterer"] == "kmeans" else "n_components"
        assert cfg.clusterer[key] == 5
        study.tell(trial, 0.0)
    dbscan = compose_run_config(
        _setup_k(4), Suggestion({"reducer": "none", "clusterer": "dbscan", "classifier": "knn"}, {})
    )
    assert "n_clusters" not in dbscan.clusterer and "n_components" not in dbscan.clusterer


def test_sweep_k_is_an_integer_of_at_least_two_or_null():
    assert sweep_k({"k": 5}) == 5 and sweep_k({"k": None}) is None
    for bad in (1, 2.5, "five", True):
        with pytest.raises(UserError, match=f"sweep.k={bad}: the number of segments"):
            sweep_k({"k": bad})


def test_free_k_refuses_objectives_that_grow_with_k():
    for blind in ("holdout/eta2_spend", "holdout/eta2_orders", "holdout/value_rank/eta2_spend",
                  "holdout/lift_top"):  # fmt: skip
        with pytest.raises(UserError, match=f"sweep.k=null with objective {blind}: it grows"):
            check_objectives_for_k(["cluster/silhouette", blind], None)
        check_objectives_for_k([blind], 5)  # at a fixed k they compare like with like
    for fair in ("holdout/value_rank/eta2_spend_gain", "holdout/kmeans/eta2_orders_gain",
                 "cluster/silhouette", "cluster/calinski_harabasz"):  # fmt: skip
        check_objectives_for_k([fair], None)


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


LIMITS = {"min_segments": 3, "max_segments": 8, "min_segment_share": 0.02, "min_f1_macro": 0.9}


def test_constraints_measure_the_final_segments():
    profile = pd.DataFrame({"customer_share": [0.5, 0.49, 0.01]})
    checks = constraint_checks({"classifier/f1_macro": 0.95}, profile, LIMITS)
    assert checks["min_segments"] == 0 and checks["max_segments"] == -5
    assert checks["min_segment_share"] == pytest.approx(0.01)
    assert checks["min_f1_macro"] == pytest.approx(-0.05)
    assert describe_violations(checks) == "min_segment_share"


def test_with_sweep_k_exactly_k_segments_replaces_min_and_max_segments():
    profile = pd.DataFrame({"customer_share": [0.4, 0.3, 0.2, 0.1]})
    checks = constraint_checks({"classifier/f1_macro": 0.95}, profile, LIMITS, k=5)
    assert "min_segments" not in checks and "max_segments" not in checks
    assert checks["k_segments"] == 1.0 and describe_violations(checks) == "k_segments"
    assert constraint_checks({"classifier/f1_macro": 0.95}, profile, LIMITS, k=4)["k_segments"] == 0
    too_many = pd.DataFrame({"customer_share": [0.1] * 10})  # max_segments=8 no longer applies
    assert (
        describe_violations(constraint_checks({"classifier/f1_macro": 1}, too_many, LIMITS, 10))
        == ""
    )


def _study_of(profiles, directions):
    """A study whose trials carry the constraints `constraint_checks` gives their segments, with
    the objective values given; as `run_trial` records them."""
    study = optuna.create_study(directions=directions)
    for values, shares in profiles:
        checks = constraint_checks(
            {"classifier/f1_macro": 0.95}, pd.DataFrame({"customer_share": shares}), LIMITS, k=3
        )
        study.add_trial(optuna.trial.create_trial(values=values, constraints=checks, user_attrs={}))
    return study


def test_a_tiny_segment_makes_a_trial_infeasible_under_every_objective():
    tiny, fair = [0.6, 0.39, 0.01], [0.5, 0.3, 0.2]
    single = _study_of([([0.9], tiny), ([0.5], fair)], ["maximize"])
    assert best_feasible(single).number == 1
    minimise = _study_of([([0.1], tiny), ([0.5], fair)], ["minimize"])
    assert best_feasible(minimise).number == 1
    # Multi-objective: the tiny-segment trial dominates, yet the answer is the feasible one.
    multi = _study_of([([0.9, 0.9], tiny), ([0.5, 0.5], fair)], ["maximize", "maximize"])
    assert best_feasible(multi).number == 1
    assert not could_be_best(multi, SimpleNamespace(number=2), [0.4, 0.4])


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
    # 1-based, as people read trial numbers ("trial 2/3"): Optuna's trial.number 1
    assert board.set_index("combination").loc["pca-kmeans-knn", "best_trial"] == 2
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


def test_only_a_trial_that_would_rank_first_gets_a_model():
    study = optuna.create_study(direction="maximize")
    assert could_be_best(study, SimpleNamespace(number=0), [0.1])  # nothing feasible yet
    study.add_trial(_trial(study, 0, 0.9, feasible=False))
    study.add_trial(_trial(study, 1, 0.5, feasible=True))
    study.add_trial(_trial(study, 2, 0.5, feasible=True))
    assert could_be_best(study, SimpleNamespace(number=3), [0.51])
    # A tie goes to the lower trial number, as in best_feasible: a later equal trial can never
    # be registered, an earlier one finishing late (parallel workers) can.
    assert not could_be_best(study, SimpleNamespace(number=3), [0.5])
    assert could_be_best(study, SimpleNamespace(number=0), [0.5])
    assert not could_be_best(study, SimpleNamespace(number=3), [0.4])
    minimise = optuna.create_study(direction="minimize")
    minimise.add_trial(_trial(minimise, 0, 0.7, feasible=True))
    assert could_be_best(minimise, SimpleNamespace(number=1), [0.6])
    assert not could_be_best(minimise, SimpleNamespace(number=1), [0.8])


def test_multi_objective_models_for_the_front_plots_for_the_one_that_would_be_registered():
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.add_trial(_trial(study, 0, [0.5, 0.90], feasible=True))
    # Not dominated, so it gets a model (a trade-off the user may pick), but best_feasible is
    # the front's best on the first objective: trial 0 stays the one registered and plotted.
    assert could_be_best(study, SimpleNamespace(number=1), [0.4, 0.95])
    assert not ranks_first(study, SimpleNamespace(number=1), [0.4, 0.95])
    assert ranks_first(study, SimpleNamespace(number=1), [0.6, 0.80])
    assert not could_be_best(study, SimpleNamespace(number=1), [0.4, 0.85])  # dominated


def _setup(*base: str) -> TrialSetup:
    fields = dict.fromkeys(f.name for f in dataclasses.fields(TrialSetup))
    return TrialSetup(**(fields | {"conf_dir": str(CONF), "base_overrides": base}))


def _setup_k(k: int) -> TrialSetup:
    return dataclasses.replace(_setup(), k=k)


def test_trial_config_is_what_hydra_composes_from_the_same_overrides():
    setup = _setup("seed=7")
    picked = {"reducer": "pca", "clusterer": "gmm", "classifier": "knn"}
    params = {"clusterer.n_components": 6, "clusterer.covariance_type": "diag"}
    cfg = compose_run_config(setup, Suggestion(picked, params))
    overrides = ["seed=7", "reducer=pca", "clusterer=gmm", "classifier=knn",
                 "clusterer.n_components=6", "clusterer.covariance_type=diag"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        expected = compose(config_name="sweep", overrides=overrides)
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(expected)
    # The next trial of the same combination starts from the composed config, not from this one.
    other = compose_run_config(setup, Suggestion(picked, {"clusterer.n_components": 3}))
    assert other.clusterer.n_components == 3 and cfg.clusterer.n_components == 6
    assert other.clusterer.covariance_type != "diag"  # the option's default, not the last trial's


def test_a_sampled_setting_the_option_lacks_is_named():
    picked = {"reducer": "pca", "clusterer": "kmeans", "classifier": "knn"}
    with pytest.raises(UserError, match="search space clusterer.kmeans.n_componentz"):
        compose_run_config(_setup(), Suggestion(picked, {"clusterer.n_componentz": 3}))


def test_leaderboard_shows_each_number_once():
    study = optuna.create_study(direction="maximize")
    trial = _trial(study, 0, 0.61234, feasible=True)
    trial.user_attrs.update({"silhouette": 0.61234, "f1_macro": 0.97, "n_segments": 4})
    study.add_trial(trial)
    board = leaderboard(study, ["cluster/silhouette"])
    assert "silhouette" not in board and board.loc[0, "cluster/silhouette"] == 0.61234
    assert board.loc[0, "f1_macro"] == 0.97  # not an objective: shown


def test_progress_line_counts_trials_from_one_and_gives_an_eta():
    study = optuna.create_study(direction="maximize")
    for value in (0.3, 0.5, 0.4):
        study.add_trial(_trial(study, 0, value, feasible=True))
    started = time.time() - 65  # the three trials finished in this session's 65 s
    line = progress_line(study, study.trials[-1], budget=10, started=started)
    assert re.fullmatch(
        r"trial 3/10 pca-kmeans-knn 0\.4 \| best 0\.5 \(trial 2\) \| "
        r"elapsed 1m0[56]s, ETA 2m3[0-9]s",
        line,
    ), line


def test_durations_read_as_a_clock():
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]


def test_a_study_keeps_the_k_it_was_searched_with():
    from src.sweep import _check_study_k

    study = optuna.create_study()
    _check_study_k(study, 5)
    _check_study_k(study, 5)  # resuming with the same k
    with pytest.raises(UserError, match="searched with sweep.k=5, not null; pass sweep.k=5"):
        _check_study_k(study, None)
    before = optuna.create_study()  # a study from before sweep.k, with trials: k was sampled
    before.add_trial(_trial(before, 0, 0.5, feasible=True))
    _check_study_k(before, None)
    with pytest.raises(UserError, match="searched with sweep.k=null, not 5"):
        _check_study_k(before, 5)
