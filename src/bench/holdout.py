"""``python -m src.bench holdout``: do the segments predict value? Issue 17's target, measured.

For each data set and each run configuration (Hydra overrides of ``python -m src.run``; the
default configuration when none are given) the run is fitted on a calibration window and judged
on the hold-out window after it: the eta-squared of future spend and of future orders by segment,
the smallest segment's share of customers, and the three baselines with as many groups (value
ranking, KMeans on log-RFM, RFM quintiles; ``src.evaluation.validation``). The target: spend at
least the value ranking's, orders at least KMeans's, every segment at least 2% of customers.

Data sets (calibration / hold-out split by date):
- ``synthetic``: the embedded synthetic store; the last 90 days are the hold-out
  (``validation.holdout_days=90``, as in the experiments).
- ``cdnow``: CDNOW's purchase log (Fader & Hardie; 23,570 customers who first bought in Q1 1997,
  every purchase to June 1998), as shipped inside the ``lifetimes`` package (dev extra); nothing
  is downloaded. The last 273 days (1997-10-01 to 1998-06-30) are the hold-out: the literature's
  39 + 39 weeks split, so calibration is January-September 1997 and the hold-out long enough
  for customers who buy a few times a year.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shlex
import tempfile
import time
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.pipeline import prepare_data, run_pipeline

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
DATASETS = ("synthetic", "cdnow")
HOLDOUT_DAYS = {"synthetic": 90, "cdnow": 273}
TARGET_SHARE = 0.02


def add_holdout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", nargs="+", choices=DATASETS, default=list(DATASETS),
        help="data sets (synthetic cdnow)",
    )  # fmt: skip
    parser.add_argument(
        "--run", action="append", dest="runs", metavar="OVERRIDES",
        help="one run configuration: Hydra overrides of python -m src.run in one quoted string, "
        "e.g. --run 'features=value'; repeat for more; default: the default configuration",
    )  # fmt: skip


def bench_holdout(args: argparse.Namespace) -> int:
    runs = args.runs or [""]
    logging.getLogger("src").setLevel(logging.WARNING)  # the runs' stage lines would bury the table
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-holdout-") as tmp:
        for dataset in args.data:
            data_overrides = _data_overrides(dataset, Path(tmp))
            if data_overrides is None:
                continue
            for run in runs:
                rows.append(_measure(dataset, data_overrides, run))
    if not rows:
        return 1
    print(to_markdown(pd.DataFrame(rows)))
    return 0


def _data_overrides(dataset: str, folder: Path) -> list[str] | None:
    days = f"validation.holdout_days={HOLDOUT_DAYS[dataset]}"
    if dataset == "synthetic":
        return [days]
    source = cdnow_path()
    if source is None:
        print("cdnow: the lifetimes package is not installed, and with it CDNOW_master.txt: "
              "pip install -e '.[dev]' (skipped)")  # fmt: skip
        return None
    export = folder / "cdnow.csv"
    cdnow_export(source).to_csv(export, index=False)
    return [f"data.path={export}", "data.currency=USD", days]


def cdnow_path() -> Path | None:
    """CDNOW_master.txt inside the installed lifetimes package (found, not imported)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"
    return path if path.exists() else None


def cdnow_export(path: Path) -> pd.DataFrame:
    """CDNOW's lines (customer id, date YYYYMMDD, number of CDs, dollars) as an export the loader
    reads: CustomerID, date (ISO), quantity, sum; no order id, so one order per customer per day."""
    raw = pd.read_csv(
        path, sep=r"\s+", header=None, skiprows=_header_lines(path),
        names=["CustomerID", "date", "quantity", "sum"], dtype={"CustomerID": str, "date": str},
    )  # fmt: skip
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d").dt.strftime("%Y-%m-%d")
    return raw


def _header_lines(path: Path) -> int:
    with path.open() as handle:
        first = handle.readline().split()
    return 0 if first and first[0].isdigit() else 1


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _measure(dataset: str, data_overrides: list[str], run: str) -> dict[str, object]:
    overrides = ["tracking=none", *data_overrides, *shlex.split(run)]
    cfg = _compose(overrides)
    start = time.perf_counter()
    data = prepare_data(cfg, with_figures=False)
    result = run_pipeline(cfg, data)
    m = result.metrics
    smallest = float(result.profile["customer_share"].min())
    met = (
        m["holdout/eta2_spend"] >= m["holdout/value_rank/eta2_spend"]
        and m["holdout/eta2_orders"] >= m["holdout/kmeans/eta2_orders"]
        and smallest >= TARGET_SHARE
    )
    return {
        "data": f"{dataset} ({len(data.rfm):,} customers, hold-out from {data.cutoff.date()})",
        "run": run or "default",
        "k": len(result.profile),
        "eta2 spend": m["holdout/eta2_spend"],
        "eta2 orders": m["holdout/eta2_orders"],
        "smallest segment": smallest,
        "stability ARI": m.get("cluster/stability_ari", float("nan")),
        "F1 macro": m.get("classifier/f1_macro", float("nan")),
        "value rank spend": m["holdout/value_rank/eta2_spend"],
        "value rank orders": m["holdout/value_rank/eta2_orders"],
        "KMeans spend": m["holdout/kmeans/eta2_spend"],
        "KMeans orders": m["holdout/kmeans/eta2_orders"],
        "quintile spend": m["holdout/quintile/eta2_spend"],
        "quintile orders": m["holdout/quintile/eta2_orders"],
        "target met": "yes" if met else "no",
        "seconds": round(time.perf_counter() - start, 1),
    }


def to_markdown(table: pd.DataFrame) -> str:
    def cell(column: str, value: object) -> str:
        if column == "smallest segment":
            return f"{value:.1%}"
        if isinstance(value, float) and column != "seconds":
            return f"{value:.4f}"  # targets are met or missed in the third decimal
        return str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        cells = [cell(c, v) for c, v in zip(table.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
