"""Write a run's outputs to a directory of its own, all or nothing.

A run's folder is `<outputs_dir>/<date>/<HH-MM-SS>-<id>` (`run_folder`), unique even for runs
started in the same second. It is written as a hidden sibling `.<name>.<pid>.partial` and renamed
when complete; a partial folder whose process is gone (or older than an hour) is removed by the
next run (`remove_stale_partials`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from src.pipeline import PreparedData, RunResult  # noqa: E402
from src.secrets import mask_secrets  # noqa: E402

PLOT_DPI = 110
# Decimals a person needs in a CSV column, by what its name says it holds (first match wins);
# any other float column keeps 4 significant-enough decimals (scores such as silhouette).
DECIMALS = (
    (re.compile(r"share|fraction"), 4),
    (re.compile(r"monetary|amount|revenue|spend|expected_value"), 2),
    (re.compile(r"recency|frequency|purchases"), 2),
)
OTHER_DECIMALS = 4
STALE_PARTIAL_SECONDS = 3600
_PARTIAL = re.compile(r"^\..+\.(?P<pid>\d+)\.partial$")

log = logging.getLogger(__name__)


def run_folder(root: Path, started: datetime, run_id: str | None) -> Path:
    """`root/<YYYY-MM-DD>/<HH-MM-SS>-<id>`: the id is the MLflow run id's first 8 characters, or
    8 random hex digits for an untracked run."""
    suffix = run_id[:8] if run_id else secrets.token_hex(4)
    return Path(root) / started.strftime("%Y-%m-%d") / f"{started.strftime('%H-%M-%S')}-{suffix}"


def remove_stale_partials(root: Path, now: float | None = None) -> list[Path]:
    """Remove the partial folders under `root/<date>/` of runs that were killed while writing:
    their process is gone, or they are older than an hour (the pid may have been reused)."""
    now = time.time() if now is None else now
    removed = []
    for path in Path(root).glob("*/.*.partial"):
        match = _PARTIAL.match(path.name)
        if match is None or not path.is_dir():
            continue
        try:
            old = now - path.stat().st_mtime > STALE_PARTIAL_SECONDS
        except FileNotFoundError:  # its run just finished or removed it
            continue
        if old or not _process_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.info("removed the partial outputs of an interrupted run: %s", path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_run_outputs(
    out_dir: Path, data: PreparedData, result: RunResult, config_yaml: str, with_plots: bool = True
) -> Path:
    """Write segments.csv, profile.csv, cleaning_report.json, config.yaml and plots/*.png (the
    run's own plots only `with_plots`: drawing them is the costly part) to `out_dir`, which must
    not exist yet.

    Files go to a hidden sibling directory first and are moved into place only when every one
    of them was written, so a failure never leaves half the outputs behind.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: a run's outputs folder exists already")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.partial")
    staging.mkdir()
    try:
        write_csv(result.segments, staging / "segments.csv")
        write_csv(result.profile, staging / "profile.csv")
        (staging / "cleaning_report.json").write_text(
            json.dumps(data.cleaning.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
        (staging / "config.yaml").write_text(mask_secrets(config_yaml), encoding="utf-8")
        save_figures(data.figures | (result.figures() if with_plots else {}), staging / "plots")
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with each float column rounded to what it means (`DECIMALS`): money to
    2 decimals, shares to 4 (counts are integer columns already)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if not pd.api.types.is_float_dtype(values):
            continue
        decimals = next(
            (d for pattern, d in DECIMALS if pattern.search(str(column))), OTHER_DECIMALS
        )
        out[column] = values.round(decimals)
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """`frame` as a CSV a person reads: no index, numbers `rounded`."""
    rounded(frame).to_csv(path, index=False)


def save_figures(figures: dict[str, Figure], directory: Path) -> None:
    """Save each figure as `<name>.png` in `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        # Our figures use constrained layout, which keeps every label inside the canvas;
        # bbox_inches="tight" would only re-render each one to measure it (30% of saving).
        figure.savefig(directory / f"{name}.png", dpi=PLOT_DPI)
