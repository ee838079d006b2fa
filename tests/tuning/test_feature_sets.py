"""`sweep.features`: the feature set is a trial param picked like the estimators, and the trial's
config is the one `python -m src.run features=<pick>` composes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from src.errors import UserError
from src.tuning.space import allowed_options, suggest
from src.tuning.trial import TrialSetup, compose_run_config

CONF = Path(__file__).resolve().parents[2] / "conf"
SEARCH = {"reducer": {"none": {}}, "clusterer": {"kmeans": {}}, "classifier": {"knn": {}}}
SWEEP = {"reducers": ["none"], "clusterers": ["kmeans"], "classifiers": ["knn"]}


def test_each_trial_picks_a_feature_set_as_its_features_param():
    allowed = allowed_options(SWEEP | {"features": ["rfm", "value"]}, SEARCH)
    assert allowed["features"] == ["rfm", "value"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        picked = suggest(trial, allowed, SEARCH).picked
        assert trial.params["features"] == picked["features"]
        seen.add(picked["features"])
        study.tell(trial, 0.0)
    assert seen == {"rfm", "value"}


def test_unknown_or_no_feature_set_is_named():
    with pytest.raises(UserError, match=r"sweep.features: unknown feature set\(s\) \['clv'\]"):
        allowed_options(SWEEP | {"features": ["rfm", "clv"]}, SEARCH)
    with pytest.raises(UserError, match="sweep.features is empty"):
        allowed_options(SWEEP | {"features": []}, SEARCH)


def test_the_default_sweep_keeps_rfm_only():
    from omegaconf import OmegaConf

    assert list(OmegaConf.load(CONF / "sweep.yaml").sweep.features) == ["rfm"]


def test_trial_config_of_the_value_feature_set():
    fields = dict.fromkeys(f.name for f in dataclasses.fields(TrialSetup))
    setup = TrialSetup(**(fields | {"conf_dir": str(CONF), "base_overrides": ("seed=3",)}))
    allowed = allowed_options(SWEEP | {"features": ["value"]}, SEARCH)
    suggestion = suggest(optuna.create_study().ask(), allowed, SEARCH)
    cfg = compose_run_config(setup, suggestion)
    assert list(cfg.features.columns) == ["expected_value", "p_alive", "recency", "frequency"]
    assert list(cfg.features.transform.log) == ["recency", "frequency"]  # money stays money
    assert cfg.features.transform.scaler == "standard"
    assert cfg.clv.horizon_days == 90
