"""Benchmark of `src.predict`'s work on a ~1M-line export: read the 1C JSON with the project's
loader, then segment it through the MLflow pyfunc (schema enforcement, cleaning, RFM, classifier).

The model is trained in-process on a small synthetic store and saved as a pyfunc to a temp dir
(no tracking store involved); the big export is written by `src.data.synthetic.write_export`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

LINES_PER_CUSTOMER = 12.0  # the synthetic store's average, measured; refined after a first write
TRAIN_CUSTOMERS = 3000


def _train_pyfunc(workdir: Path) -> object:
    """A real segmenter (pca + kmeans + xgboost) on a small store, saved and loaded as a pyfunc."""
    import mlflow
    from hydra import compose, initialize_config_dir

    from src.data.synthetic import write_export
    from src.pipeline import prepare_data, run_pipeline
    from src.tracking.pyfunc import SRC_DIR, SegmenterModel, signature_for

    train_path = write_export(workdir / "train.json", TRAIN_CUSTOMERS, seed=1)
    with initialize_config_dir(config_dir=str(SRC_DIR.parent / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"data.path={train_path}", "tracking=none"])
    data = prepare_data(cfg, with_figures=False)
    result = run_pipeline(cfg, data)
    model_dir = workdir / "model"
    mlflow.pyfunc.save_model(
        str(model_dir),
        python_model=SegmenterModel(result.segmenter),
        code_paths=[str(SRC_DIR)],
        signature=signature_for(result.segmenter),
    )
    return mlflow.pyfunc.load_model(str(model_dir))


def bench_predict(lines: int = 1_000_000, with_enforcement: bool = True) -> None:
    """Print lines, seconds (read, segment, total) and lines/s for an export of ~`lines` lines,
    segmented as `src.predict` does; `with_enforcement` also times MLflow's own
    `PyFuncModel.predict` (per-cell schema enforcement, what a served model pays per request)."""
    from src.data.load import read_export
    from src.data.synthetic import write_export
    from src.predict import run_model

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        workdir = Path(tmp)
        start = time.perf_counter()
        model = _train_pyfunc(workdir)
        print(f"model trained and saved as pyfunc in {time.perf_counter() - start:.1f} s")
        customers = max(int(lines / LINES_PER_CUSTOMER), 1)
        start = time.perf_counter()
        export = write_export(workdir / "export.json", customers, seed=7)
        size_mb = export.stat().st_size / 1e6
        print(f"export: {customers:,} customers, {size_mb:.0f} MB, written in "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip

        start = time.perf_counter()
        raw = read_export(export)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        segments = run_model(model, raw, None, str(export))
        predict_s = time.perf_counter() - start
        total = read_s + predict_s
        print(f"lines:            {len(raw):,}")
        print(f"customers:        {len(segments):,}")
        print(f"read_export:      {read_s:.2f} s")
        print(f"pyfunc predict:   {predict_s:.2f} s")
        print(f"total:            {total:.2f} s")
        print(f"lines/s:          {len(raw) / total:,.0f}")
        if with_enforcement:
            start = time.perf_counter()
            model.predict(raw)  # type: ignore[attr-defined]
            print(f"(PyFuncModel.predict with schema enforcement: "
                  f"{time.perf_counter() - start:.2f} s)")  # fmt: skip
