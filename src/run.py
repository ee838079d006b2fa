"""`python -m src.run [group=option ...] [key=value ...]`: one tracked segmentation run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.cli import exit_on_user_error, quiet_libraries, run_command
from src.models.factory import GROUPS
from src.outputs import remove_stale_partials, run_folder, write_run_outputs
from src.pipeline import RunResult, prepare_data, require_customers, run_pipeline
from src.preflight import check_run
from src.report import print_summary

log = logging.getLogger(__name__)


def execute(cfg: DictConfig, picked: Mapping[str, str], started: datetime) -> RunResult:
    """Run the pipeline once, write its outputs to a folder of its own under `cfg.outputs_dir`,
    and track it unless tracking=none."""
    root = Path(str(cfg.outputs_dir))
    remove_stale_partials(root)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if not cfg.tracking.enabled:
        data = prepare_data(cfg)
        result = run_pipeline(cfg, data)
        out_dir = write_run_outputs(run_folder(root, started, None), data, result, config_yaml)
        print_summary(data, result, out_dir, tracking=None)
        return result

    from src.tracking.companion import companion_run
    from src.tracking.runs import run_record

    # MLflow is imported and its store opened by a companion process while the data are
    # prepared; the run is created only for data that were accepted.
    with companion_run(cfg.tracking, picked) as run:
        data = prepare_data(cfg)
        require_customers(cfg, len(data.rfm), data.source)  # a store too small creates no run
        run.start({"data_digest": data.digest})
        result = run_pipeline(cfg, data)
        run_id = run.check()  # the run exists before any output is written
        record = run_record(cfg, picked, data, result, out_dir=None)
        run.log(record)  # params, dataset and model are logged while the plots are drawn
        out_dir = run_folder(root, started, run_id)
        write_run_outputs(out_dir, data, result, config_yaml)
        drawn = {k: v for k, v in result.metrics.items() if k not in record.metrics}
        register_as = str(cfg.tracking.model_name) if cfg.tracking.register else None
        logged = run.finish(str(out_dir), drawn, register_as)
    if logged.version:
        log.info("registered %s version %s", register_as, logged.version)
    print_summary(data, result, out_dir, tracking=(cfg.tracking, logged.run_id))
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    started = datetime.now()
    with exit_on_user_error():
        quiet_libraries(bool(cfg.verbose))
        choices = HydraConfig.get().runtime.choices
        check_run(cfg)  # before any run, folder or file exists
        execute(cfg, {group: choices[group] for group in (*GROUPS, "features")}, started)


if __name__ == "__main__":
    run_command(main)
