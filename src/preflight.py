"""Checks every command makes before it changes anything: no MLflow run, results folder or output
file exists yet when a setting, an optional package or the input file is refused.

The input is judged on its head (the header line or first records, at most HEAD_BYTES read): the
path, the format and the required columns, the same mapping the loader applies to the whole file.
A head that cannot be judged is left to the loader, which reads the file before any run starts.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from src.data.clean import resolve_rules
from src.data.load import (
    LoadSettings,
    decode_export,
    detect_format,
    require_excel_engine,
    sniff_delimiter,
    to_canonical,
)
from src.errors import UserError
from src.features.rfm import check_log_columns, make_transformer
from src.features.value import check_columns, check_fallback, check_horizon, needs_value
from src.models.factory import GROUPS, build_estimator, estimator_class
from src.pipeline import cpu_threads

HEAD_BYTES = 1 << 16
HEAD_RECORDS = 20
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def check_run(cfg: DictConfig) -> None:
    """`src.run`: the settings, the estimators (and their optional packages), the export."""
    check_settings(cfg)
    for group in GROUPS:
        build_estimator(group, OmegaConf.to_container(cfg[group], resolve=True))
    if _is_value_tiers(cfg.clusterer):
        for setting, columns in _column_sets(cfg.features):
            check_value_tiers(
                _reducer_choice(cfg), columns, int(cfg.clusterer.get("column", 0)), setting=setting
            )
    check_writable_folder(Path(str(cfg.outputs_dir)), f"outputs_dir={cfg.outputs_dir}")
    check_export(cfg.data)


def check_sweep(cfg: DictConfig) -> None:
    """`src.sweep`: the settings, the estimator classes (and their optional packages) of the
    options a trial may pick, the export."""
    from src.tuning.space import allowed_options

    check_settings(cfg)
    allowed = allowed_options(cfg.sweep, cfg.search)
    for group in GROUPS:
        for option in allowed[group]:
            spec = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
            estimator_class(group, spec.get("_target_"))
    tiers = [c for c in allowed["clusterer"] if _is_value_tiers(_option("clusterer", c))]
    for clusterer in tiers:
        column = int(_option("clusterer", clusterer).get("column", 0))
        for reducer in allowed["reducer"]:
            for features in allowed["features"]:
                for setting, columns in _column_sets(_option("features", features)):
                    check_value_tiers(reducer, columns, column, sweep=True, setting=setting)
    check_export(cfg.data)


# Feature columns whose larger values mean a more valuable customer: what value tiers may cut.
TIERABLE = ("expected_value", "monetary", "expected_purchases")


def check_value_tiers(
    reducer: str,
    columns: list[str],
    column: int,
    sweep: bool = False,
    setting: str = "features.columns",
) -> None:
    """clusterer=value_tiers cuts one feature column into tiers: it needs the features themselves
    (reducer=none) and a column where more is better (of `setting`, the list `columns`)."""
    where = "sweep.reducers/sweep.clusterers" if sweep else "reducer"
    if reducer != "none":
        raise UserError(
            f"clusterer=value_tiers tiers a feature column, not a {reducer} component: use "
            f"reducer=none ({where}; sweep value_tiers in a sweep of its own with "
            "'sweep.reducers=[none]')"
        )
    name = columns[column] if 0 <= column < len(columns) else None
    if name not in TIERABLE:
        raise UserError(
            f"clusterer=value_tiers (clusterer.column={column}) would tier {name or 'no column'} of "
            f"{setting} {columns}: it needs one of {list(TIERABLE)}, e.g. features=value"
        )


def _column_sets(features: DictConfig) -> list[tuple[str, list[str]]]:
    """The feature columns a run may segment on: `features.columns`, and when they need lifetime
    value, `features.fallback_columns` (the columns of a store the models cannot fit)."""
    columns = [str(c) for c in features.get("columns") or []]
    sets = [("features.columns", columns)]
    fallback = check_fallback(features.get("fallback_columns"))
    if needs_value(columns) and fallback is not None:
        sets.append(("features.fallback_columns", list(fallback)))
    return sets


def _is_value_tiers(spec: object) -> bool:
    return str(spec.get("_target_", "")).endswith(".ValueTiers")  # type: ignore[attr-defined]


def _option(group: str, name: str) -> DictConfig:
    """conf/<group>/<name>.yaml with its defaults (a feature set inherits rfm's columns)."""
    spec = OmegaConf.load(CONF_DIR / group / f"{name}.yaml")
    base = [d for d in spec.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    merged = OmegaConf.merge(*(_option(group, b) for b in base), spec) if base else spec
    return merged


def _reducer_choice(cfg: DictConfig) -> str:
    """The reducer option of the running Hydra app; outside one, "none" for the identity."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices["reducer"])
    target = str(cfg.reducer.get("_target_", ""))
    return "none" if target.endswith("FunctionTransformer") else target.rsplit(".", 1)[-1]


def check_predict(cfg: DictConfig) -> None:
    """`src.predict`: the export and the earlier segments file exist and are readable (the
    columns are the model's to judge; the output is checked by `predict` itself)."""
    if not cfg.input or not cfg.output:
        raise UserError(
            "both input=PATH (an export) and output=PATH (the segments CSV) are required"
        )
    check_input_file(Path(str(cfg.input)).expanduser(), "input", str(cfg.format))
    if cfg.previous:
        check_input_file(Path(str(cfg.previous)).expanduser(), "previous", "csv")


def check_settings(cfg: DictConfig) -> None:
    """Settings read only after the data are loaded: refused now instead."""
    resolve_rules(OmegaConf.to_container(cfg.clean, resolve=True))
    make_transformer(cfg.features.transform, seed=int(cfg.seed))
    columns = check_columns(cfg.features.columns, cfg.features.extras)
    check_log_columns(cfg.features.transform.get("log", True), columns)
    check_horizon(cfg.clv.horizon_days)
    check_fallback(cfg.features.get("fallback_columns"))
    cpu_threads(cfg.threads)
    if int(cfg.validation.holdout_days) < 0:
        raise UserError(f"validation.holdout_days={cfg.validation.holdout_days}: must be 0 or more")
    stability = cfg.validation.stability
    if int(stability.subsamples) > 0 and not 0 < float(stability.fraction) < 1:
        raise UserError(
            f"validation.stability.fraction={stability.fraction}: must be between 0 and 1"
        )


def check_input_file(path: Path, setting: str, fmt: str = "auto") -> None:
    """`path` is a readable regular file whose format is known (or forced by `fmt`)."""
    if not path.exists():
        raise UserError(f"{setting}={path}: file not found")
    if path.is_dir():
        raise UserError(f"{setting}={path}: is a directory, expected an export file")
    if not stat.S_ISREG(path.stat().st_mode):
        raise UserError(f"{setting}={path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{setting}={path}: not readable (permission denied)")
    detect_format(path, fmt)


def check_writable_folder(folder: Path, setting: str) -> None:
    """`folder` is a directory this process can write in, or can be created in one."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{setting}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{setting}: cannot write in {existing} (permission denied)")


def check_export(data: DictConfig) -> None:
    """`data.path` (empty: the synthetic store, nothing to check) and its required columns."""
    if not data.path:
        return
    path = Path(str(data.path)).expanduser()
    check_input_file(path, "data.path", str(data.format))
    settings = LoadSettings.from_config(data)  # also refuses a bad data.timezone or max_bad_share
    kind = detect_format(path, str(data.format))
    if kind == "excel":  # a workbook is read whole; its columns are checked when it is loaded
        require_excel_engine(path)
        return
    # The loader says what it decides (encoding, mapping) when it reads the whole file.
    with _quiet("src.data.load"):
        head = export_head(path, kind)
        if head is not None:  # a few bad values in the head say nothing of the whole file
            to_canonical(head, replace(settings, max_bad_share=1.0), str(path))


def export_head(path: Path, kind: str) -> pd.DataFrame | None:
    """The first records of the export with the file's own column names, or None when its head
    cannot be read that way (the loader then reports what is wrong with the whole file)."""
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path) if gzipped else path.open("rb") as handle:
            if kind == "parquet":
                return _parquet_head(handle)
            data = handle.read(HEAD_BYTES + 1)
    except (OSError, EOFError, ValueError):
        return None
    if len(data) > HEAD_BYTES:  # only whole lines
        data = data[: data.rfind(b"\n") + 1]
    text = _text(data, path)
    if text is None or not text.strip():
        return None
    if kind == "csv":
        return _csv_head(text.lstrip())
    records = _json_records(text, kind)
    if not records or not all(isinstance(r, dict) for r in records):
        return None
    return pd.DataFrame(records, dtype=object)


def _csv_head(text: str) -> pd.DataFrame | None:
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sniff_delimiter(text.split("\n", 1)[0]),
            dtype=str,
            keep_default_na=False,
            nrows=HEAD_RECORDS,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return None


def _parquet_head(handle: object) -> pd.DataFrame | None:
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(handle).iter_batches(batch_size=HEAD_RECORDS)
        return next(batches).to_pandas()
    except StopIteration:
        return None
    except Exception:  # noqa: BLE001 - pyarrow raises several types for a non-Parquet file
        return None


def _text(data: bytes, path: Path) -> str | None:
    """The head's text, decoded by the loader's rule for the whole file; None when that rule
    refuses it (the loader says why for the whole file) or the cut split a UTF-16 character."""
    try:
        return decode_export(data, path)[0]
    except (UserError, UnicodeDecodeError):
        return None


def _json_records(text: str, kind: str) -> list[object] | None:
    """The first records of a JSON array (the first element only) or of JSON Lines."""
    decoder = json.JSONDecoder()
    try:
        if kind == "jsonl":
            lines = [line for line in text.splitlines() if line.strip()][:HEAD_RECORDS]
            return [json.loads(line) for line in lines]
        body = text.lstrip()
        if not body.startswith("["):
            return None
        start = len(body) - len(body[1:].lstrip())
        first, _ = decoder.raw_decode(body, start)
        return [first]
    except json.JSONDecodeError:
        return None


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
