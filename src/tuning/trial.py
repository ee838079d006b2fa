"""One sweep trial: compose the run config with the sampled overrides, call the same pipeline as
`src.run`, record objectives and constraints in Optuna and everything else in a nested MLflow run.

`TrialSetup` is plain data, sent to the sweep's worker processes: they start before the data is
loaded and any database connection is open (see `src.processes`).
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError
from optuna.trial import TrialState

from src.errors import UserError
from src.outputs import write_run_outputs
from src.pipeline import PreparedData, RunResult, run_pipeline
from src.tuning.objective import (
    constraint_checks,
    describe_violations,
    objective_values,
)
from src.tuning.space import Suggestion, k_key, suggest
from src.tuning.study import best_feasible, is_feasible, pareto_front, shown_number

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialSetup:
    conf_dir: str
    base_overrides: tuple[str, ...]  # the sweep command's own overrides, applied to every trial
    allowed: dict[str, list[str]]
    search: dict[str, Any]
    objectives: tuple[str, ...]
    constraints: dict[str, float]
    k: (
        int | None
    )  # sweep.k: every clusterer with a number of clusters gets exactly k; None = sampled
    tracking: dict[str, Any] | None  # uri and experiment; None = tracking off
    parent_run_id: str | None
    trial_plots: str  # "best", "all" or "none": which trials log their plots (BestPlots)
    data: PreparedData  # loaded, cleaned and RFM'd once per sweep


# Composed configs of this worker, by their Hydra overrides: composing costs 0.35 s, a tenth of
# a small trial, and a sweep revisits the same few combinations.
_composed: dict[tuple[str, ...], DictConfig] = {}


def compose_run_config(setup: TrialSetup, suggestion: Suggestion) -> DictConfig:
    """The run config for a trial: Hydra composes the sweep's overrides and the trial's options
    exactly as `src.run` would compose them, then the sampled values are set (typed, as Optuna
    returned them) on a copy. A value for a key the option does not have is an error."""
    overrides = (*setup.base_overrides, *(f"{g}={o}" for g, o in suggestion.picked.items()))
    if overrides not in _composed:
        _composed[overrides] = _compose(setup.conf_dir, list(overrides))
    cfg = copy.deepcopy(_composed[overrides])
    for key, value in suggestion.params.items():
        try:
            OmegaConf.update(cfg, key, value, merge=False)
        except (ConfigAttributeError, ConfigKeyError):
            group, name = key.split(".", 1)
            raise UserError(
                f"search space {group}.{suggestion.picked[group]}.{name}: "
                f"the {group} option '{suggestion.picked[group]}' has no setting '{name}'"
            ) from None
    key = k_key(cfg.clusterer)
    if setup.k is not None and key is not None:
        cfg.clusterer[key] = setup.k
    return cfg


def _compose(conf_dir: str, overrides: list[str]) -> DictConfig:
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="sweep", overrides=overrides)
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        return compose(config_name="sweep", overrides=overrides)


@dataclass
class BestPlots:
    """A worker's last trial that was the best when it finished (with `trial_plots=best`): its
    plots are drawn once, when the worker's loop ends, if it is still the study's best; the
    trials it superseded never draw theirs. One per worker, so at most one plot set per worker."""

    trial_number: int | None = None
    run_id: str | None = None
    result: RunResult | None = None

    def keep(self, trial_number: int, run_id: str, result: RunResult) -> None:
        self.trial_number, self.run_id, self.result = trial_number, run_id, result

    def log_if_best(self, study: optuna.Study) -> None:
        """Draw and log the kept trial's plots to its (finished) run if it is the best feasible
        trial now. A trial still running elsewhere may beat it later; that one's worker draws.
        Plots are not the sweep's answer: failing to draw them is reported, not raised."""
        best = best_feasible(study)
        kept, self.result = self.result, None
        if kept is None or best is None or best.number != self.trial_number:
            return
        from mlflow import MlflowClient

        from src.tracking.runs import log_plots

        try:
            log_plots(kept.figures(), self.run_id)
            MlflowClient().log_metric(self.run_id, "time/plots_s", kept.metrics["time/plots_s"])
        except Exception as err:  # any failure to draw or upload
            log.warning("plots of the best trial %d not logged: %s", shown_number(best), err)


def propose(setup: TrialSetup, trial: optuna.Trial) -> Suggestion:
    """Sample the trial's options and parameters (`run_trial` reads the same values back)."""
    return suggest(trial, setup.allowed, setup.search, setup.k)


def run_trial(
    setup: TrialSetup, study: optuna.Study, trial: optuna.Trial, best_plots: BestPlots
) -> list[float]:
    suggestion = propose(setup, trial)
    combination = "-".join(suggestion.picked[g] for g in ("reducer", "clusterer", "classifier"))
    trial.set_user_attr("combination", combination)
    cfg = compose_run_config(setup, suggestion)
    with _tracked(setup, suggestion.picked, study, trial) as run:
        result = run_pipeline(cfg, setup.data)
        values = objective_values(result.metrics, setup.objectives)
        checks = constraint_checks(result.metrics, result.profile, setup.constraints, setup.k)
        _record(trial, result, checks)
        if run is not None:
            contender = _log(setup, cfg, suggestion.picked, result, study, trial, values, checks)
            if contender and setup.trial_plots == "best" and ranks_first(study, trial, values):
                best_plots.keep(trial.number, run.info.run_id, result)
    return values


@contextmanager
def _tracked(
    setup: TrialSetup, picked: dict[str, str], study: optuna.Study, trial: optuna.Trial
) -> Iterator[Any]:
    """The trial's nested MLflow run (None when tracking is off)."""
    if setup.tracking is None:
        yield None
        return
    from src.tracking.runs import configure, tracked_run

    configure(OmegaConf.create(setup.tracking))
    tags = {
        "trial": str(shown_number(trial)),
        "study": study.study_name,
        "data_digest": setup.data.digest,
    }
    name = trial_run_name(shown_number(trial), picked)
    with tracked_run(
        picked, "trial", parent_run_id=setup.parent_run_id, tags=tags, name=name
    ) as run:
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        yield run


def trial_run_name(shown: int, picked: dict[str, str]) -> str:
    """`t007-pca-kmeans-xgboost` for trial 7 (`shown_number`, Optuna's trial 6), zero-padded so
    the runs table sorts them in order."""
    from src.tracking.runs import run_name

    return f"t{shown:03d}-{run_name(picked)}"


def end_orphan_runs(setup: TrialSetup, study: optuna.Study) -> int:
    """End as KILLED the study's trial runs still RUNNING in MLflow whose Optuna trial is not
    running (their worker died: killed, or cut off from the store); returns how many."""
    if setup.tracking is None:
        return 0
    from mlflow import MlflowClient

    from src.retry import retry
    from src.tracking.runs import configure

    configure(OmegaConf.create(setup.tracking))
    client = MlflowClient()
    experiment = client.get_experiment_by_name(setup.tracking["experiment"])
    query = (
        f"tags.study = '{study.study_name}' and tags.run_kind = 'trial' "
        "and attributes.status = 'RUNNING'"
    )
    running = retry(
        lambda: client.search_runs([experiment.experiment_id], query), "finding orphan runs"
    )
    live = {
        shown_number(t) for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING
    }
    orphans = [r for r in running if int(r.data.tags.get("trial", -1)) not in live]
    for run in orphans:
        retry(lambda r=run: client.set_terminated(r.info.run_id, "KILLED"), "ending an orphan run")
    return len(orphans)


def _record(trial: optuna.Trial, result: RunResult, checks: dict[str, float]) -> None:
    for name, value in checks.items():
        trial.set_constraint(name, value)
    trial.set_user_attr("violations", describe_violations(checks))
    trial.set_user_attr("n_segments", int(len(result.profile)))
    trial.set_user_attr("smallest_share", round(float(result.profile["customer_share"].min()), 4))
    for key in ("cluster/silhouette", "classifier/f1_macro"):
        trial.set_user_attr(key.split("/")[1], round(float(result.metrics.get(key, "nan")), 4))


def _log(
    setup: TrialSetup,
    cfg: DictConfig,
    picked: dict[str, str],
    result: RunResult,
    study: optuna.Study,
    trial: optuna.Trial,
    values: list[float],
    checks: dict[str, float],
) -> bool:
    """Log the trial to its run; returns whether it could be the best (then its model is logged:
    it may be registered)."""
    import mlflow

    from src.tracking.runs import log_record, run_record

    start = time.perf_counter()
    feasible = all(v <= 0 for v in checks.values())
    contender = feasible and could_be_best(study, trial, values)
    mlflow.set_tags({"feasible": str(feasible), "violations": describe_violations(checks)})
    with tempfile.TemporaryDirectory(prefix="trial-") as tmp:
        out_dir = write_run_outputs(
            Path(tmp) / "results", setup.data, result, OmegaConf.to_yaml(cfg, resolve=True),
            with_plots=setup.trial_plots == "all",
        )  # fmt: skip
        record = run_record(
            cfg, picked, setup.data, result, out_dir, contender, ",".join(setup.objectives)
        )
        model_uri = log_record(record)
    if model_uri:
        trial.set_user_attr("model_uri", model_uri)
    # What tracking costs this trial (outputs, params, dataset, metrics, artifacts, the model;
    # plots with trial_plots=all), next to the pipeline's own time/<stage>_s.
    mlflow.log_metric("time/tracking_s", round(time.perf_counter() - start, 4))
    return contender


def could_be_best(study: optuna.Study, trial: optuna.Trial, values: list[float]) -> bool:
    """Log a model only for a trial that could end up registered: one that ranks first now
    (`ranks_first`), or in multi-objective mode one not dominated by the Pareto front. The final
    best always had its model logged, because the best only ever improves."""
    if len(study.directions) == 1:
        return ranks_first(study, trial, values)
    return _not_dominated(study, values)


def ranks_first(study: optuna.Study, trial: optuna.Trial, values: list[float]) -> bool:
    """Whether the trial would be `best_feasible` if the study ended now: it beats the best
    feasible trial so far on the first objective by `best_feasible`'s own ranking (a tie goes to
    the lower trial number) and, in multi-objective mode, no feasible trial dominates it."""
    best = best_feasible(study)
    if best is None:
        return True
    sign = 1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1.0
    if (sign * values[0], -trial.number) <= (sign * best.values[0], -best.number):
        return False
    return len(study.directions) == 1 or _not_dominated(study, values)


def _not_dominated(study: optuna.Study, values: list[float]) -> bool:
    finished = [t for t in study.get_trials(deepcopy=False) if is_feasible(t)]
    probe = optuna.trial.create_trial(values=values, state=optuna.trial.TrialState.COMPLETE)
    return any(t is probe for t in pareto_front(study, [*finished, probe]))
