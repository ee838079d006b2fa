"""`python -m src.sample_export out=PATH [until=YYYY-MM-DD] [customers=N] [seed=S]
[overwrite=true]`: write a sample 1C:ERP export of the synthetic store (conf/sample_export.yaml);
`until` cuts it at a day, so two cuts are the same store's exports a month apart."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from src.cli import exit_on_user_error, run_command
from src.data.synthetic import HISTORY_END, HISTORY_START, truth_path, write_export
from src.errors import UserError


def sample_export(
    out: Path, customers: int, seed: int, overwrite: bool, until: date | None = None
) -> Path:
    """Write the export to `out` (and its truth sidecar), up to the day `until` if given; refuse
    to replace an existing file unless `overwrite`."""
    if customers < 1:
        raise UserError(f"customers={customers}: need at least 1")
    if until is not None and not HISTORY_START <= until <= HISTORY_END:
        raise UserError(
            f"until={until}: the sample store's history runs from {HISTORY_START} to {HISTORY_END}"
        )
    if not out.name.endswith((".json", ".json.gz")):
        raise UserError(f"out={out}: name the export .json or .json.gz")
    existing = [p for p in (out, truth_path(out)) if p.exists()]
    if existing and not overwrite:
        raise UserError(
            f"out={out}: {', '.join(map(str, existing))} exists already; pick another name or "
            "add overwrite=true"
        )
    return write_export(out, customers, seed, until=until)


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample_export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        if OmegaConf.is_missing(cfg, "out"):
            raise UserError("out=PATH is required: where to write the export (.json or .json.gz)")
        until = parse_day(cfg.until)
        out = sample_export(
            Path(str(cfg.out)), int(cfg.customers), int(cfg.seed), cfg.overwrite, until
        )
        print(
            f"wrote {out} (sample 1C export, {int(cfg.customers):,} customers, sales up to "
            f"{until or HISTORY_END}) and {truth_path(out)}"
        )


def parse_day(value: object) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise UserError(f"until={value}: give a day as YYYY-MM-DD, e.g. until=2026-01-31") from None


if __name__ == "__main__":
    run_command(main)
