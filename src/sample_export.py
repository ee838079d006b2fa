"""`python -m src.sample_export out=PATH [customers=N] [seed=S] [overwrite=true]`: write a
sample 1C:ERP export of the synthetic store (conf/sample_export.yaml)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from src.cli import exit_on_user_error, run_command
from src.data.synthetic import truth_path, write_export
from src.errors import UserError


def sample_export(out: Path, customers: int, seed: int, overwrite: bool) -> Path:
    """Write the export to `out` (and its truth sidecar); refuse to replace an existing file
    unless `overwrite`."""
    if customers < 1:
        raise UserError(f"customers={customers}: need at least 1")
    if not out.name.endswith((".json", ".json.gz")):
        raise UserError(f"out={out}: name the export .json or .json.gz")
    existing = [p for p in (out, truth_path(out)) if p.exists()]
    if existing and not overwrite:
        raise UserError(
            f"out={out}: {', '.join(map(str, existing))} exists already; pick another name or "
            "add overwrite=true"
        )
    return write_export(out, customers, seed)


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample_export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        if OmegaConf.is_missing(cfg, "out"):
            raise UserError("out=PATH is required: where to write the export (.json or .json.gz)")
        out = sample_export(Path(str(cfg.out)), int(cfg.customers), int(cfg.seed), cfg.overwrite)
        print(
            f"wrote {out} (sample 1C export, {int(cfg.customers):,} customers) and {truth_path(out)}"
        )


if __name__ == "__main__":
    run_command(main)
