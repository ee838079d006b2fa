"""Write a run's outputs to a directory, all or nothing."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from src.pipeline import PreparedData, RunResult  # noqa: E402
from src.secrets import mask_secrets  # noqa: E402

PLOT_DPI = 110


def write_run_outputs(
    out_dir: Path, data: PreparedData, result: RunResult, config_yaml: str, with_plots: bool = True
) -> Path:
    """Write segments.csv, profile.csv, cleaning_report.json, config.yaml and plots/*.png (the
    run's own plots only `with_plots`: drawing them is the costly part).

    Files go to a temporary sibling directory first and are moved into place only when every one
    of them was written, so a failure never leaves half the outputs behind.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        result.segments.to_csv(staging / "segments.csv", index=False)
        result.profile.to_csv(staging / "profile.csv", index=False)
        (staging / "cleaning_report.json").write_text(
            json.dumps(data.cleaning.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
        (staging / "config.yaml").write_text(mask_secrets(config_yaml), encoding="utf-8")
        save_figures(data.figures | (result.figures() if with_plots else {}), staging / "plots")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def save_figures(figures: dict[str, Figure], directory: Path) -> None:
    """Save each figure as `<name>.png` in `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        # Our figures use constrained layout, which keeps every label inside the canvas;
        # bbox_inches="tight" would only re-render each one to measure it (30% of saving).
        figure.savefig(directory / f"{name}.png", dpi=PLOT_DPI)
