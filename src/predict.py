"""`python -m src.predict input=PATH output=PATH [previous=OLD.csv]`: segment a fresh export with
the registered model holding alias `production` (or any `model=` URI).

The export is read with the project's loader, so every format and 1C quirk training accepts works
here too; the model does the rest (cleaning, RFM, classifier), exactly as `mlflow models serve`
does. Customers the model never saw are the point: they go through the trained classifier. Files
are written only once everything succeeded, each atomically (temp file + rename). An existing
file is replaced only with `overwrite=true`, and never the input, `previous=`, a directory or
anything but a regular file; `output=DIR/` writes DIR/segments.csv.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from src.cli import exit_on_user_error, run_command
from src.data.load import read_export
from src.errors import UserError
from src.evaluation.migration import biggest_movements, migration_matrix
from src.preflight import check_predict, check_writable_folder

OUTPUT_COLUMNS = ["customer_id", "segment_id", "segment_name"]
DEFAULT_OUTPUT_NAME = "segments.csv"
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


def migration_paths(output: Path) -> tuple[Path, Path]:
    """`segments.csv` -> (`segments.migration.csv`, `segments.migration.png`) beside it."""
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(f"{stem}.migration.csv"), output.with_name(f"{stem}.migration.png")


def segment_counts(segments: pd.DataFrame) -> pd.DataFrame:
    """Customers per segment, in segment_id order, with their share."""
    counts = (
        segments.groupby(["segment_id", "segment_name"], sort=True)
        .size()
        .rename("customers")
        .reset_index()
    )
    counts["share"] = (counts["customers"] / max(len(segments), 1)).map("{:.1%}".format)
    return counts


def read_previous(path: Path) -> pd.DataFrame:
    """An earlier segments CSV (customer_id, segment_name; segment_id optional)."""
    if not path.exists():
        raise UserError(f"previous={path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"previous={path}: not a readable CSV ({err})") from None
    missing = [c for c in ("customer_id", "segment_name") if c not in frame.columns]
    if missing:
        raise UserError(
            f"previous={path}: missing column(s) {', '.join(missing)}; expected a segments CSV "
            f"written by src.predict ({', '.join(OUTPUT_COLUMNS)}); has {', '.join(frame.columns)}"
        )
    return frame


def run_model(
    model: object,
    raw: pd.DataFrame,
    snapshot_date: str | None,
    source: str,
    columns: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The pyfunc's answer on `raw`, with the model's own errors reworded to name the file.

    `columns` (``data.columns.*``: role -> column) maps headers that differ from the training
    export's. For this project's models the wrapped Python model is called directly: MLflow's
    schema enforcement walks every cell of the `Any`-typed input columns one by one (14 s of 34 s
    on a 1M-line export), and the segmenter matches and checks the columns itself (every missing
    one in one message). Served models keep it.
    """
    from mlflow.exceptions import MlflowException

    params = {"snapshot_date": snapshot_date} if snapshot_date else {}
    if columns:
        params["columns"] = json.dumps(columns)
    predict = _direct_predict(model) or model.predict  # type: ignore[attr-defined]
    try:
        segments = predict(raw, params=params or None)
    except (UserError, MlflowException) as err:
        # The segmenter's own errors name "model input"; schema enforcement names none.
        message = str(getattr(err, "message", err))
        if "model input" in message:
            raise UserError(message.replace("model input", source)) from None
        raise UserError(f"{source}: the model rejected the input: {message}") from None
    segments = pd.DataFrame(segments)[OUTPUT_COLUMNS]
    if segments.empty:
        raise UserError(f"{source}: no customers left after cleaning; nothing to segment")
    return segments


def _direct_predict(model: object) -> Callable[..., pd.DataFrame] | None:
    """`predict(frame, params=...)` of the wrapped SegmenterModel, or None for other models."""
    from mlflow.exceptions import MlflowException

    try:
        inner = model.unwrap_python_model()  # type: ignore[attr-defined]
    except (AttributeError, MlflowException):  # not a PythonModel flavour
        return None
    if not hasattr(inner, "segmenter"):
        return None
    return lambda frame, params=None: inner.predict(None, frame, params=params)


def output_file(value: str) -> Path:
    """The segments file `output=` names: the path itself, or DIR/segments.csv for a directory
    (`output=DIR/`, or an existing directory)."""
    path = Path(value).expanduser()
    if value.endswith(("/", os.sep)) or path.is_dir():
        return path / DEFAULT_OUTPUT_NAME
    return path


def check_targets(targets: list[Path], protected: list[Path], overwrite: bool) -> None:
    """Refuse, before any work, to write over an input (`protected`), a directory or a
    non-regular file, or over an existing file without `overwrite`; each target's folder must be
    creatable."""
    for target in targets:
        for kept in protected:
            if _same_file(target, kept):
                raise UserError(f"output={target}: is the input file {kept}; choose another path")
        if target.exists() or target.is_symlink():
            if not target.is_file():
                raise UserError(f"output={target}: exists and is not a regular file")
            if not overwrite:
                raise UserError(
                    f"output={target}: exists already; pass overwrite=true to replace it"
                )
        check_writable_folder(target.parent, f"output={target}")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def write_atomically(writers: dict[Path, Callable[[Path], None]], overwrite: bool) -> None:
    """Write every file to a temp file beside it, then put them all in place: on any error
    nothing appears and no earlier file is half-replaced. Without `overwrite` each is linked
    into place, which fails if a file of that name appeared meanwhile (another process): that
    file is kept, and none of ours stays."""
    temps: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for path, write in writers.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            temps[path] = Path(name)
            write(temps[path])
            temps[path].chmod(0o644)
        for path, temp in temps.items():
            if overwrite:
                os.replace(temp, path)
            else:
                _place_new(temp, path)
                placed.append(path)
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def _place_new(temp: Path, path: Path) -> None:
    """Put `temp` at `path`, which must not exist: another process's file is never clobbered."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise UserError(
            f"output={path}: another process wrote this file meanwhile; it is kept and nothing "
            "was written (pass overwrite=true to replace it)"
        ) from None


# --------------------------------------------------------------------------------------------
# The MLflow side
# --------------------------------------------------------------------------------------------


def check_model_uri(uri: str, tracking_uri: str) -> str:
    """For `models:/NAME@ALIAS`, fail early and clearly when the alias is not set; returns a
    description of the model for the printout."""
    match = _ALIAS_URI.match(uri)
    if not uri.startswith("models:/"):
        return uri
    from mlflow import MlflowClient

    from src.tracking import registry

    missing = registry.sqlite_store_missing(tracking_uri)
    if missing is not None:
        raise UserError(
            f"tracking.uri={tracking_uri}: no tracking store at {missing}, so model={uri} cannot "
            "be found; run from the directory that holds mlflow.db or set tracking.uri"
        )
    if match is None:
        return uri
    name, alias = match["name"], match["alias"]
    client = MlflowClient()
    version = registry.version_by_alias(client, name, alias)
    if version is None:
        how = (
            "promote one with: python -m src.promote version=N (list versions: python -m src.promote)"
            if alias == registry.PRODUCTION
            else f"set alias {alias} or pass model=models:/{name}/N"
        )
        raise UserError(f"model={uri}: no version of '{name}' has alias '{alias}'; {how}")
    return f"{name} version {version.version} (alias {alias})"


def load_model(uri: str) -> object:
    """The pyfunc at `uri`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as err:
        raise UserError(f"model={uri}: cannot load it: {getattr(err, 'message', err)}") from None
    except (AttributeError, ImportError) as err:  # unpickling names a class this code lacks
        raise UserError(
            f"model={uri}: cannot load it: it was saved by another version of this project "
            f"({type(err).__name__}: {err}); train it again with this version (python -m src.run "
            "or python -m src.sweep) and promote the new version"
        ) from None
    return model


def predict(cfg: DictConfig) -> pd.DataFrame:
    """Segment `cfg.input` and write `cfg.output` (plus the migration files); returns segments."""
    import mlflow

    check_predict(cfg)  # before any work: the paths
    source, output = Path(str(cfg.input)), output_file(str(cfg.output))
    targets = [output, *migration_paths(output)] if cfg.previous else [output]
    inputs = [source, *([Path(str(cfg.previous))] if cfg.previous else [])]
    check_targets(targets, inputs, bool(cfg.overwrite))
    snapshot = _snapshot(cfg.snapshot_date)
    previous = read_previous(Path(str(cfg.previous))) if cfg.previous else None
    mlflow.set_tracking_uri(str(cfg.tracking.uri))
    described = check_model_uri(str(cfg.model), str(cfg.tracking.uri))
    start = time.perf_counter()
    raw = read_export(source, str(cfg.format))
    read_s = time.perf_counter() - start
    model = load_model(str(cfg.model))
    overrides = {role: str(name) for role, name in cfg.data.columns.items() if name is not None}
    start = time.perf_counter()
    segments = run_model(model, raw, snapshot, str(source), overrides)
    predict_s = time.perf_counter() - start

    writers: dict[Path, Callable[[Path], None]] = {
        output: lambda p: segments.to_csv(p, index=False),
    }
    movements = None
    if previous is not None:
        from src.evaluation.plots import migration_heatmap

        matrix = migration_matrix(previous, segments)
        movements = biggest_movements(matrix)
        figure = migration_heatmap(matrix)
        matrix_path, plot_path = migration_paths(output)
        writers[matrix_path] = lambda p: matrix.to_csv(p)
        writers[plot_path] = lambda p: figure.savefig(p, format="png", dpi=120, bbox_inches="tight")
    write_atomically(writers, bool(cfg.overwrite))

    print(f"model: {described}")
    print(
        f"{source}: {len(raw):,} lines -> {len(segments):,} customers "
        f"(read {read_s:.1f} s, segmented {predict_s:.1f} s)"
    )
    print()
    print(segment_counts(segments).to_string(index=False))
    print()
    print(f"segments: {output}")
    if movements is not None:
        print(f"migration since {cfg.previous}: {' and '.join(map(str, migration_paths(output)))}")
        if movements.empty:
            print("  nobody moved")
        for row in movements.itertuples(index=False):
            print(
                f"  {row[0]} -> {row[1]}: {row.customers:,} customers "
                f"({row.share_of_from:.0%} of {row[0]})"
            )
    return segments


def _snapshot(value: object) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return pd.Timestamp(str(value)).date().isoformat()
    except ValueError:
        raise UserError(f"snapshot_date={value}: not a date; use YYYY-MM-DD") from None


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        predict(cfg)


if __name__ == "__main__":
    run_command(main)
