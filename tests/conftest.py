"""Tiny seeded stores built in code, and configs composed exactly as the CLI composes them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

MODEL_NAME = "customer-segmentation"
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
END = np.datetime64("2025-12-31")
# The clustering classic, k-means on log-RFM after PCA (the default before value tiers): the
# overrides of tests about clusters in the RFM space (planted groups, whales, noise).
RFM_KMEANS = ("features=rfm", "reducer=pca", "clusterer=kmeans")

# Planted behaviour: (customers, orders range, mean days since last order, basket rubles)
PLANTED = {
    "champions": (60, (8, 14), 10, 6000.0),
    "regular": (90, (3, 6), 60, 2500.0),
    "lapsed": (90, (1, 3), 400, 1500.0),
    "new": (60, (1, 2), 15, 1200.0),
}


def store_records(
    seed: int = 0, scale: int = 1, id_offset: int = 0
) -> tuple[list[dict], dict[str, str]]:
    """1C-style sale lines of a small store with four planted customer groups, and the truth."""
    rng = np.random.default_rng(seed)
    records: list[dict] = []
    truth: dict[str, str] = {}
    customer = 1000 + id_offset
    order = 50_000 + id_offset * 100
    for group, (n, (lo, hi), recency, basket) in PLANTED.items():
        for _ in range(n * scale):
            customer += 1
            truth[str(customer)] = group
            n_orders = int(rng.integers(lo, hi + 1))
            last = END - np.timedelta64(int(rng.exponential(recency)) + 1, "D")
            span = 30 if group == "new" else 700
            days = np.sort(rng.integers(0, span, n_orders))[::-1]
            for offset in days:
                order += 1
                date = last - np.timedelta64(int(offset - days.min()), "D")
                for line in range(int(rng.integers(1, 4))):
                    amount = round(float(rng.lognormal(np.log(basket / 2), 0.3)), 2)
                    records.append(
                        {
                            "date": f"{date}T12:{line:02d}:00",
                            "order_id": order,
                            "sale_id": order * 10 + line,
                            "site_id": 1,
                            "quantity": 1,
                            "sum": amount,
                            "address": "г. Москва, ул. Тверская, д. 1",
                            "StockCode": int(rng.integers(1, 60)),
                            "CustomerID": customer,
                        }
                    )
    return records, truth


def write_json(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records, _ = store_records()
    return write_json(tmp_path_factory.mktemp("store") / "export.json", records)


@pytest.fixture(scope="session")
def make_cfg() -> Callable[..., DictConfig]:
    def make(*overrides: str, config_name: str = "config") -> DictConfig:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))

    return make


def train_and_register(tmp: Path, make_cfg, seed: int = 3) -> tuple[str, Path]:
    """A real model (pca + kmeans + xgboost on a tiny planted store, no plots) logged with its
    metrics to a fresh SQLite store in `tmp` and registered as version 1 of MODEL_NAME; returns the
    tracking URI and the export."""
    from src.pipeline import prepare_data, run_pipeline
    from src.tracking.pyfunc import log_segmenter

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    export = write_json(tmp / "export.json", store_records(seed=seed)[0])
    cfg = make_cfg(f"data.path={export}", f"tracking.uri={uri}", *RFM_KMEANS)
    data = prepare_data(cfg, with_figures=False)
    result = run_pipeline(cfg, data)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # MLflow's default artifact root is ./mlruns
        mp.setenv("MLFLOW_EXPERIMENT_ID", "")  # set_experiment exports it; undone on exit
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("tests")
        with mlflow.start_run():
            mlflow.log_metrics(result.metrics)
            model_uri = log_segmenter(
                result.segmenter, data.example, "segmenter-pca-kmeans-xgboost"
            )
        mlflow.register_model(model_uri, MODEL_NAME)
    return uri, export
