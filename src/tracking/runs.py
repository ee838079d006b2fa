"""MLflow runs: start one with the contract's name and tags, log a pipeline result, fail cleanly."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from omegaconf import DictConfig, OmegaConf

from src.models.factory import GROUPS
from src.models.segmenter import Segmenter
from src.outputs import save_figures
from src.pipeline import PreparedData, RunResult
from src.retry import retry
from src.secrets import mask_secrets
from src.sqlite_wal import use_wal
from src.stores import normalise_url, sqlite_path, store_lock
from src.tracking.pyfunc import log_segmenter
from src.tracking.ui_view import ensure_compare_view, metric_order

log = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 6000


ARTIFACTS_BESIDE_SQLITE = "mlartifacts"  # a SQLite store's artifacts: <its folder>/mlartifacts
# MLflow 3's UI opens an experiment by its kind: without this tag it guesses GenAI (traces) and
# hides the runs under "Model training"; with it the experiment opens on its runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the description MLflow's UI shows on a run or model


def configure(tracking: DictConfig) -> None:
    """Point MLflow at the store and experiment (waiting out a store that restarts). Under the
    store's lock: processes starting together on a fresh store (sweep workers) would otherwise
    race to create its tables and the experiment."""
    uri = normalise_url(str(tracking.uri))
    with store_lock(uri, "mlflow-configure"):
        retry(lambda: _configure(uri, str(tracking.experiment)), "opening the MLflow store")
        use_wal(uri)


def _configure(uri: str, experiment: str) -> None:
    mlflow.set_tracking_uri(uri)
    launched = os.environ.get("MLFLOW_RUN_ID")
    if launched:
        # Started by `mlflow run`: it created the run in its own experiment (--experiment-name,
        # default "Default") and start_run resumes it; naming another experiment would fail.
        mlflow.set_experiment(experiment_id=mlflow.get_run(launched).info.experiment_id)
        return
    database = sqlite_path(uri)
    if database is not None and mlflow.get_experiment_by_name(experiment) is None:
        # MLflow's default would be ./mlruns of whatever folder the command runs in.
        artifacts = database.resolve().parent / ARTIFACTS_BESIDE_SQLITE
        MlflowClient().create_experiment(experiment, artifact_location=artifacts.as_uri())
    found = mlflow.set_experiment(experiment)
    if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        _tag_experiment_kind(found.experiment_id)


def _tag_experiment_kind(experiment_id: str) -> None:
    """Set the experiment's kind. Workers starting together on a tracking server (which has no
    store lock) may both set it: the server refuses the second insert, and the tag is there."""
    client = MlflowClient()
    try:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    except MlflowException:
        if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            raise


@functools.cache  # a sweep's trials would otherwise start two git processes each
def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"clusterer.n_clusters": "5", ...} (MLflow params are strings, any
    password in a URI masked)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = mask_secrets(str(value))[:MAX_PARAM_LENGTH]
    return flat


def run_params(
    cfg: DictConfig, picked: Mapping[str, str], digest: str, objective: str | None = None
) -> dict[str, str]:
    """What differs between runs, as params (the runs table compares them): the option names
    (the estimators' and the feature set's), each chosen option's own settings (`_target_` is
    the name's class), the seed, the data's digest and, for a trial, its objective. Everything else is in the run's config.yaml."""
    options = {
        group: {k: v for k, v in OmegaConf.to_container(cfg[group], resolve=True).items()
                if k != "_target_"}
        for group in GROUPS
    }  # fmt: skip
    names = {group: picked[group] for group in (*GROUPS, "features") if group in picked}
    extra = {"objective": objective} if objective else {}
    return names | flatten(options) | {"seed": str(cfg.seed), "data_digest": digest} | extra


def run_name(picked: Mapping[str, str]) -> str:
    """`{reducer}-{clusterer}-{classifier}` from the chosen option names."""
    return "-".join(picked[group] for group in GROUPS)


def contract_tags(picked: Mapping[str, str], run_kind: str) -> dict[str, str]:
    """The contract's run tags: the chosen options, `run_kind` and `git_sha`."""
    return {group: picked[group] for group in GROUPS} | {"run_kind": run_kind, "git_sha": git_sha()}


@contextmanager
def tracked_run(
    picked: Mapping[str, str],
    run_kind: str,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    name: str | None = None,
    run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run named and tagged by the contract (the existing run `run_id`, resumed, if
    given); FAILED with the error as a tag on exceptions.

    `tags` add to the contract's (a single run's `data_digest`: its run starts once the export
    was accepted, so a refused export leaves no run).
    """
    run = retry(
        lambda: mlflow.start_run(
            run_id=run_id,
            run_name=name or run_name(picked),
            tags=contract_tags(picked, run_kind) | dict(tags or {}),
            parent_run_id=parent_run_id,
            nested=parent_run_id is not None,
        ),
        "starting an MLflow run",
    )
    try:
        yield run
    except BaseException as err:
        mlflow.set_tag("error", mask_secrets(f"{type(err).__name__}: {err}")[:5000])
        mlflow.end_run(status=RunStatus.to_string(RunStatus.FAILED))
        raise
    retry(mlflow.end_run, "ending an MLflow run")


SCHEMA_SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class RunRecord:
    """What a run logs, gathered where the pipeline ran: plain data, small enough to send to the
    process that talks to MLflow (only a sample of the transactions travels)."""

    params: dict[str, str]
    metrics: dict[str, float]
    description: str  # the run's note: segments and their sizes, headline metrics, data
    source: str
    digest: str
    transactions_sample: pd.DataFrame  # for the dataset's schema
    transactions_shape: tuple[int, int]
    out_dir: str | None  # outputs written by write_run_outputs; None: logged later (log_outputs)
    segmenter: Segmenter | None  # None: no model
    example: pd.DataFrame  # the model's input example


def run_record(
    cfg: DictConfig,
    picked: Mapping[str, str],
    data: PreparedData,
    result: RunResult,
    out_dir: Path | None,
    with_model: bool = True,
    objective: str | None = None,
) -> RunRecord:
    """The record of a finished pipeline run (`objective`: a sweep trial's)."""
    metrics = data.metrics() | result.metrics
    return RunRecord(
        params=run_params(cfg, picked, data.digest, objective),
        metrics=metrics,
        description=describe_run(data, result.profile, metrics),
        source=str(data.source),
        digest=data.digest,
        transactions_sample=data.transactions.head(SCHEMA_SAMPLE_ROWS),
        transactions_shape=data.transactions.shape,
        out_dir=str(out_dir) if out_dir is not None else None,
        segmenter=result.segmenter if with_model else None,
        example=data.example,
    )


def log_record(record: RunRecord) -> str | None:
    """Log params, dataset, metrics, artifacts and the model (if any) to the active run; returns
    the model URI."""
    mlflow.log_params(record.params)
    mlflow.set_tag(NOTE_TAG, record.description)
    log_dataset(record)
    # in reading order: the run page lists metrics as they were logged
    mlflow.log_metrics({name: record.metrics[name] for name in metric_order(record.metrics)})
    ensure_compare_view(mlflow.active_run().info.experiment_id, record.metrics)
    if record.out_dir is not None:
        log_outputs(record.out_dir, {})
    if record.segmenter is None:
        return None
    return log_segmenter(record.segmenter, record.example, model_name(record.params))


def model_name(params: Mapping[str, str]) -> str:
    """A logged model's name says what it is: `segmenter-pca-kmeans-xgboost`."""
    return "segmenter-" + run_name(params)


HEADLINE_METRICS = (
    "cluster/silhouette",
    "cluster/davies_bouldin",
    "classifier/accuracy",
    "classifier/f1_macro",
)


def describe_run(data: PreparedData, profile: pd.DataFrame, metrics: Mapping[str, float]) -> str:
    """The run's description (Markdown, shown in MLflow's run page): the segments with their
    sizes, the headline metrics and the data they were measured on."""
    segments = "\n".join(
        f"| {row.segment_id} | {row.segment_name} | {int(row.size):,} | {row.customer_share:.1%} |"
        for row in profile.itertuples()
    )
    headline = ", ".join(f"{m} {metrics[m]:.4g}" for m in HEADLINE_METRICS if m in metrics)
    return (
        f"{len(profile)} segments of {len(data.rfm):,} customers.\n\n"
        "| segment | name | customers | share |\n|---|---|---|---|\n"
        f"{segments}\n\n{headline}.\n\n"
        f"Data: {Path(str(data.source)).name} (digest {data.digest}), "
        f"{data.rows_raw:,} lines read, {len(data.transactions):,} kept."
    )


def log_outputs(out_dir: str, metrics: Mapping[str, float]) -> None:
    """Log a run's written outputs as artifacts, with the metrics measured while writing them."""
    mlflow.log_metrics(dict(metrics))
    mlflow.log_artifacts(out_dir)


def log_plots(figures: Mapping[str, Figure], run_id: str | None = None) -> None:
    """Save the figures as PNGs (as a run's outputs are saved) and log them under `plots/` of
    the run `run_id`, or of the active run."""
    with tempfile.TemporaryDirectory(prefix="plots-") as tmp:
        save_figures(dict(figures), Path(tmp))
        if run_id is None:
            mlflow.log_artifacts(tmp, "plots")
        else:
            MlflowClient().log_artifacts(run_id, tmp, "plots")


def log_dataset(record: RunRecord) -> None:
    """Log the clean transactions as the run's training dataset, with the export's digest."""
    dataset = _dataset(record)
    context = InputTag(key=MLFLOW_DATASET_CONTEXT, value="training")
    MlflowClient().log_inputs(mlflow.active_run().info.run_id, [DatasetInput(dataset, [context])])


_datasets: dict[tuple[str, str, tuple[int, int]], Dataset] = {}


def _dataset(record: RunRecord) -> Dataset:
    """The dataset entity, built once per data set in this process (every trial of a sweep logs
    the same one; building it costs 45 ms, a sixth of a trial's tracking).

    MLflow infers a dataset's schema value by value (5 s for 57k lines); the schema of a
    1,000-line sample is the same, so it is inferred on that and the profile is filled in for the
    whole table.
    """
    key = (record.source, record.digest, record.transactions_shape)
    if key in _datasets:
        return _datasets[key]
    with warnings.catch_warnings():
        # MLflow registers its local-file dataset source twice and warns that the path is
        # ambiguous between the two identical classes; nothing for a user to act on.
        warnings.filterwarnings("ignore", message="The specified dataset source")
        sample = mlflow.data.from_pandas(
            record.transactions_sample,
            source=record.source,
            name=Path(record.source).name,
            digest=record.digest,
        )._to_mlflow_entity()
    rows, columns = record.transactions_shape
    _datasets[key] = Dataset(
        name=sample.name,
        digest=sample.digest,
        source_type=sample.source_type,
        source=sample.source,
        schema=sample.schema,
        profile=json.dumps({"num_rows": rows, "num_elements": rows * columns}),
    )
    return _datasets[key]


BEST_TAG = "best"


def carry_best_trial(study_name: str, best_run_id: str, description: str) -> None:
    """Show a sweep's answer on its (active) parent run and on its trials: the parent gets the
    best trial's metrics under the trials' own names (one column compares parent and trials;
    timings stay the trial's), tags `best_trial` (its run name) and `best_run_id`, and a
    description linking to it; that trial is tagged best=true and a previous best of the same
    study best=false."""
    client = MlflowClient()
    parent = mlflow.active_run()
    best = client.get_run(best_run_id)
    mlflow.log_metrics({k: v for k, v in best.data.metrics.items() if not k.startswith("time/")})
    ensure_compare_view(best.info.experiment_id, best.data.metrics)  # with the trial's late timings
    mlflow.set_tags({"best_trial": best.info.run_name, "best_run_id": best_run_id})
    link = f"[{best.info.run_name}](#/experiments/{best.info.experiment_id}/runs/{best_run_id})"
    mlflow.set_tag(NOTE_TAG, f"{description}\n\nBest trial: {link}.")
    previous = client.search_runs(
        [parent.info.experiment_id],
        f"tags.study = '{study_name}' and tags.run_kind = 'trial' and tags.{BEST_TAG} = 'true'",
    )
    for run in previous:
        if run.info.run_id != best_run_id:
            client.set_tag(run.info.run_id, BEST_TAG, "false")
    client.set_tag(best_run_id, BEST_TAG, "true")
