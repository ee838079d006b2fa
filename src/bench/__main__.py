"""Command-line benchmarks: ``python -m src.bench data`` and ``python -m src.bench load``.

- ``data``: ``compute_rfm`` vs DuckDB on the same in-memory canonical table (the same aggregation:
  last date, distinct orders and total per customer), best of 3 each, in one process.
- ``load``: ``read_export`` + ``to_canonical`` on a 1C-like JSON export written to a temp dir.
- ``excel``: the .xlsx reader with python-calamine and with openpyxl on one written workbook.

- ``run`` / ``sweep``: whole commands' wall times (``cli_runs.py``); ``predict``: a 1M-line export
  through a trained model (``predict.py``); ``clv``: lifetime-value fit times (``clv.py``);
  ``holdout``: the segments' hold-out eta-squared beside three baselines (``holdout.py``).
- ``ui-screenshots``: README's screenshots of MLflow's UI, taken in headless chromium
  (``mlflow_ui.py``).

Subcommands are registered in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.bench.cli_runs import add_run, add_sweep, bench_run, bench_sweep  # noqa: E402
from src.bench.clv import add_clv, bench_clv  # noqa: E402
from src.bench.holdout import add_holdout, bench_holdout  # noqa: E402
from src.bench.mlflow_ui import add_ui_screenshots, run_ui_screenshots  # noqa: E402
from src.bench.team import add_team, bench_team  # noqa: E402

REPEATS = 3
_START = np.datetime64("2022-01-01T00:00:00", "s")
_SPAN_S = 2 * 365 * 86_400  # two years of history


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def best_of(func: Callable[[], Any], repeats: int = REPEATS) -> tuple[float, Any]:
    """Fastest wall time of `repeats` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ids(values: np.ndarray, prefix: str | None = None) -> pd.Series:
    """Integer codes as pandas strings ("123", or "<prefix>000123" when `prefix` is given),
    formatting each distinct value once."""
    uniques, codes = np.unique(values, return_inverse=True)
    text = uniques.astype(str).astype(object)
    if prefix is not None:
        text = np.char.add(prefix, np.char.zfill(uniques.astype(str), 9)).astype(object)
    return pd.Series(pd.array(text, dtype="str").take(codes))


def synthetic_lines(
    n_lines: int, seed: int = 0, shuffle: bool = False, text_ids: bool = False
) -> pd.DataFrame:
    """A canonical transaction table like a cleaned 1C export (see ``src.data.schema``).

    n/10 customers with skewed activity, ~4 lines per order, the lines of an order adjacent
    and in date order as 1C exports them (``shuffle`` scatters them: the worst case for
    ``compute_rfm``'s run detection). Ids are numeric strings, as the loader produces them from
    1C's numbers; ``text_ids`` makes them 1C document codes ("ЦБ-000123456", "ЗК-001000001"),
    which ``compute_rfm`` must hash rather than parse.
    """
    rng = np.random.default_rng(seed)
    n_customers = max(n_lines // 10, 1)
    lines_per_order = rng.integers(1, 8, size=n_lines)  # mean 4
    order_of_line = np.repeat(np.arange(n_lines), lines_per_order)[:n_lines]
    n_orders = int(order_of_line[-1]) + 1
    # Zipf-like activity: a few customers place many orders.
    weights = 1.0 / np.arange(1, n_customers + 1) ** 0.6
    customer_of_order = rng.choice(n_customers, size=n_orders, p=weights / weights.sum())
    first = min(n_customers, n_orders)  # every customer places at least one order
    customer_of_order[rng.choice(n_orders, size=first, replace=False)] = np.arange(first)
    order_time = np.sort(rng.integers(0, _SPAN_S, size=n_orders))
    customer_codes = rng.permutation(n_customers)[customer_of_order] + 100_000  # id != rank
    frame = pd.DataFrame(
        {
            "customer_id": _ids(customer_codes[order_of_line], "ЦБ-" if text_ids else None),
            "date": (_START + order_time[order_of_line]).astype("datetime64[ns]"),
            "amount": np.round(rng.lognormal(6.5, 1.0, size=n_lines), 2),
            "order_id": _ids(order_of_line + 1_000_000, "ЗК-" if text_ids else None),
            "product_id": _ids(rng.integers(0, 20_000, size=n_lines)),
        }
    )
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame


def _records_1c(n_lines: int, seed: int = 0) -> list[dict[str, Any]]:
    """1C:ERP-style JSON records: mixed date forms, Russian number strings, numeric ids."""
    frame = synthetic_lines(n_lines, seed)
    rng = np.random.default_rng(seed + 1)
    stamps = frame["date"].to_numpy()
    iso = pd.DatetimeIndex(stamps).strftime("%Y-%m-%dT%H:%M:%S").to_numpy(dtype=object)
    russian = pd.DatetimeIndex(stamps).strftime("%d.%m.%Y %H:%M:%S").to_numpy(dtype=object)
    day_only = pd.DatetimeIndex(stamps).strftime("%d.%m.%Y").to_numpy(dtype=object)
    form = rng.integers(0, 10, size=n_lines)  # 60% ISO, 30% dd.mm.yyyy H:MM:SS, 10% dd.mm.yyyy
    dates = np.where(form < 6, iso, np.where(form < 9, russian, day_only))
    amounts = frame["amount"].to_numpy()
    as_text = rng.random(n_lines) < 0.3
    sums = amounts.astype(object)
    sums[as_text] = [f"{a:,.2f}".replace(",", " ").replace(".", ",") for a in amounts[as_text]]
    columns = {
        "date": dates,
        "order_id": frame["order_id"].astype(int).to_numpy().tolist(),
        "sale_id": (np.arange(n_lines) + 10_000_000).tolist(),
        "site_id": rng.integers(1, 4, size=n_lines).tolist(),
        "quantity": rng.integers(1, 6, size=n_lines).tolist(),
        "sum": sums,
        "address": np.array(["г. Москва, ул. Ленина, д. 1", "г. Казань, ул. Баумана, д. 7"])[
            rng.integers(0, 2, size=n_lines)
        ].tolist(),
        "StockCode": frame["product_id"].to_numpy(dtype=object),
        "CustomerID": frame["customer_id"].astype(int).to_numpy().tolist(),
    }
    keys = list(columns)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]


# --------------------------------------------------------------------------------------------
# data: compute_rfm vs DuckDB
# --------------------------------------------------------------------------------------------


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lines", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000],
        help="sale lines, one measurement per size (100,000 1,000,000 5,000,000)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shuffle", action="store_true", help="scatter the lines of each order (worst case)"
    )
    parser.add_argument(
        "--text-ids", action="store_true", help="non-numeric ids like ЦБ-000123456 (worst case)"
    )


def _run_data(args: argparse.Namespace) -> int:
    results = [_data_at(lines, args) for lines in args.lines]
    return 0 if all(results) else 1


def _data_at(lines: int, args: argparse.Namespace) -> bool:
    """Clean and RFM throughput at `lines` lines, and RFM against DuckDB; True if both agree."""
    from src.data.clean import clean_transactions
    from src.features.rfm import compute_rfm, default_snapshot

    start = time.perf_counter()
    frame = synthetic_lines(lines, args.seed, args.shuffle, args.text_ids)
    transactions = frame[["customer_id", "date", "amount", "order_id"]]
    built = time.perf_counter() - start
    print(
        f"data: {len(frame):,} lines, {frame['customer_id'].nunique():,} customers, "
        f"{frame['order_id'].nunique():,} orders{' (shuffled)' if args.shuffle else ''}"
        f"{' (text ids)' if args.text_ids else ''}, "
        f"built in {built:.1f} s"
    )
    cleaning, _ = best_of(lambda: clean_transactions(frame, None), repeats=1)
    print(
        f"clean        {cleaning:8.3f} s  {len(frame) / cleaning:>12,.0f} lines/s (all default rules)"
    )
    ours, rfm = best_of(lambda: compute_rfm(transactions))
    print(f"compute_rfm  {ours:8.3f} s  {len(frame) / ours:>12,.0f} lines/s (best of {REPEATS})")
    try:
        import duckdb
    except ImportError:
        print("duckdb      not installed: pip install -e '.[dev]' to compare (skipped)")
        print(f"peak RSS     {peak_rss_mib():8.0f} MiB")
        return True
    con = duckdb.connect()
    con.register("df", transactions)
    query = (
        "SELECT customer_id, max(date) AS last, count(DISTINCT order_id) AS frequency, "
        "sum(amount) AS monetary FROM df GROUP BY customer_id"
    )
    theirs, duck = best_of(lambda: con.sql(query).df())
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"duckdb       {theirs:8.3f} s  (best of {REPEATS}, {threads} threads)")
    print(f"ratio ours/duckdb {ours / theirs:.2f}")
    duck = duck.set_index("customer_id").sort_index()
    snapshot = default_snapshot(transactions)
    recency = (snapshot - pd.to_datetime(duck["last"])).dt.floor("D").dt.days.to_numpy()
    same = (
        duck.index.equals(rfm.index.astype(duck.index.dtype))
        and np.array_equal(recency, rfm["recency"].to_numpy())
        and np.array_equal(duck["frequency"].to_numpy(), rfm["frequency"].to_numpy())
        and np.allclose(duck["monetary"].to_numpy(), rfm["monetary"].to_numpy())
    )
    print(f"same result  {same}")
    print(f"peak RSS     {peak_rss_mib():8.0f} MiB")
    print()
    return bool(same)


# --------------------------------------------------------------------------------------------
# load: read_export + to_canonical on a 1C-like JSON file
# --------------------------------------------------------------------------------------------


def _add_load(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=1_000_000, help="sale lines (1,000,000)")
    parser.add_argument("--seed", type=int, default=0)


def _run_load(args: argparse.Namespace) -> int:
    from src.data.load import read_export, to_canonical

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        path = Path(tmp) / "export.json"
        start = time.perf_counter()
        path.write_text(json.dumps(_records_1c(args.lines, args.seed), ensure_ascii=False))
        size_mib = path.stat().st_size / 2**20
        print(
            f"load: {args.lines:,} lines, {size_mib:.0f} MiB JSON, written in "
            f"{time.perf_counter() - start:.1f} s"
        )
        start = time.perf_counter()
        raw = read_export(path)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        table, _ = to_canonical(raw, source=str(path))
        canon_s = time.perf_counter() - start
    total = read_s + canon_s
    bad = int(table["date"].isna().sum() + table["amount"].isna().sum())
    print(f"read_export  {read_s:8.2f} s")
    print(f"to_canonical {canon_s:8.2f} s  ({bad} unparsed dates/amounts)")
    print(f"total        {total:8.2f} s  {args.lines / total:,.0f} lines/s")
    print(f"peak RSS     {peak_rss_mib():8.0f} MiB")
    return 0


# --------------------------------------------------------------------------------------------
# excel: python-calamine vs openpyxl reading the same .xlsx export
# --------------------------------------------------------------------------------------------


def _add_excel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=100_000, help="sale lines (100,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many reads (2)")


def _run_excel(args: argparse.Namespace) -> int:
    """Write a 1C-like export as .xlsx (openpyxl), then time ``read_excel`` with each engine."""
    from src.data.load import EXCEL_ENGINE, EXCEL_PACKAGES, read_excel

    missing = [p for p in ("python_calamine", "openpyxl") if not _importable(p)]
    if missing:
        print(f"excel: needs python-calamine and openpyxl: pip install -e '.[dev]' ({missing})")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-excel-") as tmp:
        path = Path(tmp) / "export.xlsx"
        start = time.perf_counter()
        pd.DataFrame(_records_1c(args.lines, args.seed)).to_excel(
            path, index=False, engine="openpyxl"
        )
        data = path.read_bytes()
        print(
            f"excel: {args.lines:,} lines, {len(data) / 2**20:.1f} MiB .xlsx, written in "
            f"{time.perf_counter() - start:.1f} s"
        )
        times = {}
        for engine in EXCEL_PACKAGES:
            times[engine], frame = best_of(
                lambda e=engine: read_excel(data, path, None, e), args.repeats
            )
            print(
                f"{engine:10s} {times[engine]:8.2f} s  {args.lines / times[engine]:>10,.0f} lines/s  ({len(frame):,} rows, best of {args.repeats})"
            )
    fastest = min(times, key=times.__getitem__)
    print(
        f"fastest      {fastest} ({max(times.values()) / min(times.values()):.1f}x); the loader uses {EXCEL_ENGINE}"
    )
    return 0


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _add_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=1_000_000, help="sale lines (1,000,000)")
    parser.add_argument(
        "--no-enforcement", action="store_true",
        help="skip timing MLflow's own predict (with its cell-by-cell input check) for comparison",
    )  # fmt: skip


def _run_predict(args: argparse.Namespace) -> int:
    from src.bench.predict import bench_predict

    bench_predict(args.lines, with_enforcement=not args.no_enforcement)
    return 0


COMMANDS: dict[str, tuple[str, Callable[..., None], Callable[[argparse.Namespace], int]]] = {
    "data": ("compute_rfm vs DuckDB on a synthetic canonical table", _add_data, _run_data),
    "load": ("read_export + to_canonical on a 1C-like JSON export", _add_load, _run_load),
    "excel": ("python-calamine vs openpyxl reading one .xlsx export", _add_excel, _run_excel),
    "run": ("wall time of whole python -m src.run commands vs the targets", add_run, bench_run),
    "sweep": ("a sweep's trials per minute with one and two workers", add_sweep, bench_sweep),
    "team": (
        "trials per minute, 1 and 2 workers, PostgreSQL vs SQLite stores",
        add_team,
        bench_team,
    ),
    "predict": (
        "segment a 1C export with a trained pyfunc, as src.predict does",
        _add_predict,
        _run_predict,
    ),
    "clv": ("MBG/NBD + Gamma-Gamma fit times, 10k/100k customers", add_clv, bench_clv),
    "holdout": (
        "segments vs value ranking, KMeans, RFM quintiles on future spend and orders",
        add_holdout,
        bench_holdout,
    ),
    "ui-screenshots": (
        "a sweep in MLflow's UI in headless chromium, saved as docs/*.png",
        add_ui_screenshots,
        run_ui_screenshots,
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.bench", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add, run) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add(sub)
        sub.set_defaults(run=run)
    args = parser.parse_args(argv)
    lines = getattr(args, "lines", 1)
    if min(lines if isinstance(lines, list) else [lines]) < 1:
        parser.error("--lines must be at least 1")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
