"""`python -m src.run [group=option ...] [key=value ...]`: one tracked segmentation run."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.cli import exit_on_user_error
from src.models.factory import GROUPS
from src.outputs import write_run_outputs
from src.pipeline import RunResult, prepare_data, run_pipeline
from src.report import print_summary

log = logging.getLogger(__name__)


def execute(cfg: DictConfig, picked: Mapping[str, str], out_dir: Path) -> RunResult:
    """Run the pipeline once, write its outputs to `out_dir`, and track it unless tracking=none."""
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if not cfg.tracking.enabled:
        data = prepare_data(cfg)
        result = run_pipeline(cfg, data)
        write_run_outputs(out_dir, data, result, config_yaml)
        print_summary(data, result, out_dir, tracking=None)
        return result

    import mlflow

    from src.tracking import runs

    runs.configure(cfg.tracking)
    with runs.tracked_run(picked, run_kind="single") as run:
        data = prepare_data(cfg)
        mlflow.set_tag("data_digest", data.digest)
        result = run_pipeline(cfg, data)
        write_run_outputs(out_dir, data, result, config_yaml)
        start = time.perf_counter()
        model_uri = runs.log_result(cfg, data, result, out_dir)
        if cfg.tracking.register:
            version = mlflow.register_model(model_uri, str(cfg.tracking.model_name))
            log.info("registered %s version %s", version.name, version.version)
        mlflow.log_metric("time/tracking_s", round(time.perf_counter() - start, 4))
    print_summary(data, result, out_dir, tracking=(cfg.tracking, run.info))
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        runtime = HydraConfig.get().runtime
        picked = {group: runtime.choices[group] for group in GROUPS}
        execute(cfg, picked, Path(runtime.output_dir) / "results")


if __name__ == "__main__":
    main()
