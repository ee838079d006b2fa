"""MLflow runs: start one with the contract's name and tags, log a pipeline result, fail cleanly."""

from __future__ import annotations

import logging
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf

from src.models.factory import GROUPS
from src.pipeline import PreparedData, RunResult
from src.tracking.pyfunc import log_segmenter

log = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 6000


def configure(tracking: DictConfig) -> None:
    mlflow.set_tracking_uri(str(tracking.uri))
    mlflow.set_experiment(str(tracking.experiment))


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
    """Nested config -> {"clusterer.n_clusters": "5", ...} (MLflow params are strings)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def run_name(picked: Mapping[str, str]) -> str:
    """`{reducer}-{clusterer}-{classifier}` from the chosen option names."""
    return "-".join(picked[group] for group in GROUPS)


@contextmanager
def tracked_run(
    picked: Mapping[str, str],
    run_kind: str,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run named and tagged by the contract; FAILED with the error as a tag on exceptions.

    The `data_digest` tag is set by the caller once the export is loaded inside the run, so a run
    that fails on a bad export is recorded too.
    """
    all_tags = {group: picked[group] for group in GROUPS} | {
        "run_kind": run_kind,
        "git_sha": git_sha(),
    }
    run = mlflow.start_run(
        run_name=name or run_name(picked),
        tags=all_tags | dict(tags or {}),
        parent_run_id=parent_run_id,
        nested=parent_run_id is not None,
    )
    try:
        yield run
    except BaseException as err:
        mlflow.set_tag("error", f"{type(err).__name__}: {err}"[:5000])
        mlflow.end_run(status=RunStatus.to_string(RunStatus.FAILED))
        raise
    mlflow.end_run()


def log_result(
    cfg: DictConfig, data: PreparedData, result: RunResult, out_dir: Path, with_model: bool = True
) -> str | None:
    """Log params, dataset, metrics, artifacts and (unless `with_model` is false) the model to
    the active run; returns the model URI. Sweep settings and search spaces are not run params."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved = {k: v for k, v in resolved.items() if k not in ("sweep", "search")}
    mlflow.log_params(flatten(resolved))
    with warnings.catch_warnings():
        # MLflow registers its local-file dataset source twice and warns that the path is
        # ambiguous between the two identical classes; nothing for a user to act on.
        warnings.filterwarnings("ignore", message="The specified dataset source")
        dataset = mlflow.data.from_pandas(
            data.transactions, source=str(data.source), name=data.source.name, digest=data.digest
        )
    mlflow.log_input(dataset, context="training")
    mlflow.log_metrics(data.metrics() | result.metrics)
    mlflow.log_artifacts(str(out_dir))
    return log_segmenter(result.segmenter, data.example) if with_model else None
