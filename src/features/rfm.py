"""Per-customer RFM features from the canonical transaction table, and their fitted transform.

``compute_rfm`` turns clean sale lines into one row per customer: recency (days since the last
purchase), frequency (distinct orders), monetary (rubles), plus optional extras. Lines dated on or
after the snapshot are ignored, so a hold-out validation can pass a cutoff snapshot and get the
features customers had at that moment.

Speed matters (exports have millions of lines), so nothing here groups by strings in pandas:
1. Exports list the lines of one order next to each other, so consecutive lines with the same
   (customer_id, order_id) are collapsed into runs first by comparing each line with the previous
   one (cheap), and only one line per run is hashed. When lines are shuffled (few runs), every
   line is hashed instead; the result is the same either way.
2. Strings are hashed once, by Arrow's dictionary encoding, into dense integer codes.
3. Everything after that is numpy on integer codes: ``reduceat`` within runs, ``bincount`` /
   ``maximum.at`` per customer, and an owner check for distinct orders (an order id normally
   belongs to one customer; only if it does not are (customer, order) pairs deduplicated).
``python -m src.bench data`` compares this with DuckDB on the same aggregation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)

from src.data.schema import (
    AMOUNT,
    CUSTOMER_ID,
    DATE,
    FREQUENCY,
    MONETARY,
    ORDER_ID,
    PRODUCT_ID,
    RECENCY,
)
from src.errors import UserError

TENURE = "tenure"  # days from the first purchase to the snapshot
AVG_ORDER_VALUE = "avg_order_value"  # monetary / frequency, rubles
N_PRODUCTS = "n_products"  # distinct product_id bought (needs the product column)
DAYS_BETWEEN_ORDERS = "days_between_orders"  # mean gap between distinct purchase days
EXTRAS = (TENURE, AVG_ORDER_VALUE, N_PRODUCTS, DAYS_BETWEEN_ORDERS)

SCALERS = ("standard", "robust", "quantile", "yeo-johnson", "box-cox", "none")
TRANSFORM_KEYS = frozenset({"log", "scaler"})

_DAY_NS = 86_400 * 10**9
_NAT = np.iinfo(np.int64).min
# Above this share of runs per line, run detection saves too little: hash every line instead.
_MAX_RUN_SHARE = 0.6
_POWERS_OF_TEN = np.array([10**k for k in range(20)], dtype=np.uint64)  # 1 .. 10**19


# --------------------------------------------------------------------------------------------
# RFM table
# --------------------------------------------------------------------------------------------


def default_snapshot(transactions: pd.DataFrame) -> pd.Timestamp:
    """Midnight of the day after the last transaction: the newest customers get recency 0."""
    _require(transactions, (DATE,))
    return pd.Timestamp(_default_snapshot_ns(_dates_ns(transactions[DATE])))


def compute_rfm(
    transactions: pd.DataFrame,
    snapshot: pd.Timestamp | None = None,
    extras: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One row per customer (index ``customer_id``, sorted): recency, frequency, monetary, extras.

    - recency: whole days (float) from the customer's last line to `snapshot`, floored, so a
      purchase on the day before a midnight snapshot has recency 0.
    - frequency: distinct order_id (int64). Without an order_id column, or where it is empty, one
      order per customer per calendar day (as the loader's fallback does).
    - monetary: sum of amount (float64 rubles); a missing amount counts as 0.
    - extras, in the order asked (``EXTRAS``): tenure (whole days from the first line to
      `snapshot`), avg_order_value (monetary / frequency), n_products (distinct non-empty
      product_id), days_between_orders (mean gap in days between the customer's distinct
      purchase days = (last day - first day) / (days - 1); for a customer who bought on one day
      only, max(tenure, 1): no repeat purchase within tenure days means the gap is at least that).

    `snapshot` defaults to ``default_snapshot(transactions)``. Lines dated at or after it are
    ignored, as are lines without a customer or a date. The input is never modified.
    """
    extras = _check_extras(extras, transactions.columns)
    _require(transactions, (CUSTOMER_ID, DATE, AMOUNT))
    dates = _dates_ns(transactions[DATE])
    snap = _snapshot_ns(snapshot, dates)

    keep = (dates != _NAT) & (dates < snap)
    keep &= ~transactions[CUSTOMER_ID].isna().to_numpy()
    if not keep.any():
        where = "" if snapshot is None else f" before features.snapshot_date={snapshot}"
        raise UserError(
            f"no transactions with a customer_id and a date{where}: cannot build RFM features "
            f"({len(transactions)} lines in)"
        )
    rows = None if keep.all() else keep
    if rows is not None:
        dates = dates[rows]
    amount = transactions[AMOUNT].to_numpy(dtype="float64", na_value=np.nan)
    amount = amount if rows is None else amount[rows]
    if np.isnan(amount).any():
        amount = np.nan_to_num(amount, nan=0.0)
    customers = _arrow(transactions[CUSTOMER_ID], rows)
    orders = _arrow(transactions[ORDER_ID], rows) if ORDER_ID in transactions.columns else None
    days = dates // _DAY_NS  # calendar day number (floor: correct before 1970 too)

    # 1. Runs of consecutive lines sharing customer and order (and day, for day-based orders).
    starts = _run_starts(customers, orders, None if orders is not None else days)
    compressed = len(starts) <= _MAX_RUN_SHARE * len(dates)
    if compressed:
        run_customers = customers.take(pa.array(starts))
        run_orders = orders.take(pa.array(starts)) if orders is not None else None
        run_last = np.maximum.reduceat(dates, starts)
        run_first = np.minimum.reduceat(dates, starts)
        run_amount = np.add.reduceat(amount, starts)
        run_day = run_first // _DAY_NS  # a run has one day whenever the day is a run key
    else:
        starts = np.arange(len(dates))
        run_customers, run_orders = customers, orders
        run_last = run_first = dates
        run_amount, run_day = amount, days

    # 2. Dense integer codes: numeric ids are parsed, other strings hashed once by Arrow.
    cust_codes, cust_names = _encode(run_customers)
    n_customers = len(cust_names)
    day0 = int(days.min())
    if run_orders is not None and run_orders.null_count == 0 and _strictly_monotonic(run_orders):
        frequency = np.bincount(cust_codes, minlength=n_customers)  # every run a distinct order
    else:
        if run_orders is not None:
            order_codes, order_names = _encode(run_orders)
            empty = order_codes < 0
            if empty.any():  # empty order id: one order per customer per day, after real ids
                order_codes[empty] = len(order_names) + (run_day[empty] - day0)
        else:
            order_codes = run_day - day0
        frequency = _distinct_per_owner(cust_codes, order_codes, n_customers)

    # 3. Per-customer reductions on integer codes.
    last = np.full(n_customers, _NAT, dtype=np.int64)
    np.maximum.at(last, cust_codes, run_last)
    columns: dict[str, np.ndarray] = {
        RECENCY: ((snap - last) // _DAY_NS).astype("float64"),
        FREQUENCY: frequency.astype(np.int64),
        MONETARY: np.bincount(cust_codes, weights=run_amount, minlength=n_customers),
    }
    if extras:
        first = np.full(n_customers, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, cust_codes, run_first)
        tenure = ((snap - first) // _DAY_NS).astype("float64")
        row_customers = np.repeat(cust_codes, np.diff(np.append(starts, len(dates))))
        for name in extras:
            if name == TENURE:
                columns[name] = tenure
            elif name == AVG_ORDER_VALUE:
                columns[name] = columns[MONETARY] / columns[FREQUENCY]
            elif name == N_PRODUCTS:
                product_codes, _ = _encode(_arrow(transactions[PRODUCT_ID], rows))
                known = product_codes >= 0
                columns[name] = _distinct_per_owner(
                    row_customers[known], product_codes[known], n_customers
                )
            elif name == DAYS_BETWEEN_ORDERS:
                n_days = _distinct_per_owner(row_customers, days - day0, n_customers)
                span = (last // _DAY_NS - first // _DAY_NS).astype("float64")
                single = n_days < 2
                gap = np.where(single, np.maximum(tenure, 1.0), span / np.maximum(n_days - 1, 1))
                columns[name] = gap

    # Sorted by customer id as strings; the ids come out as pandas strings.
    order = _string_order(cust_names)
    names = cust_names.take(pa.array(order))
    if not pa.types.is_string(names.type):
        names = names.cast(pa.string())  # numeric ids: the contract says strings
    index = pd.Index(names.to_pandas(), name=CUSTOMER_ID)
    out = pd.DataFrame({k: v[order] for k, v in columns.items()}, index=index)
    return out.astype({FREQUENCY: "int64", MONETARY: "float64", RECENCY: "float64"})


def _require(transactions: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in transactions.columns]
    if missing:
        raise UserError(
            f"transactions lack the column(s) {missing} needed for RFM features; they have "
            f"{[str(c) for c in transactions.columns]} (map them with data.columns.<role>)"
        )


def _check_extras(extras: Iterable[str] | str, columns: pd.Index) -> tuple[str, ...]:
    """The extras as a tuple, validated: known names, no repeats, their columns present."""
    extras = (extras,) if isinstance(extras, str) else tuple(str(e) for e in extras)
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise UserError(
            f"features.extras: unknown extra feature(s) {unknown}; allowed: {list(EXTRAS)}"
        )
    repeated = sorted({e for e in extras if extras.count(e) > 1})
    if repeated:
        raise UserError(f"features.extras: {repeated} listed more than once")
    if N_PRODUCTS in extras and PRODUCT_ID not in columns:
        raise UserError(
            f"features.extras: {N_PRODUCTS} needs the column {PRODUCT_ID!r}, which the "
            f"transactions lack (map it with data.columns.{PRODUCT_ID}=<column>, e.g. StockCode)"
        )
    return extras


def _dates_ns(series: pd.Series) -> np.ndarray:
    """Dates as int64 nanoseconds (naive wall-clock time); NaT -> int64 min."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_localize(None)
    if not pd.api.types.is_datetime64_any_dtype(series):
        raise UserError(
            f"column {DATE!r} has dtype {series.dtype}, expected datetimes; load the export "
            f"with src.data.load so dates are parsed"
        )
    return series.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _default_snapshot_ns(dates: np.ndarray) -> int:
    valid = dates[dates != _NAT]
    if len(valid) == 0:
        raise UserError(f"column {DATE!r}: no valid dates, cannot set the RFM snapshot date")
    return (int(valid.max()) // _DAY_NS + 1) * _DAY_NS


def _snapshot_ns(snapshot: Any, dates: np.ndarray) -> int:
    if snapshot is None:
        return _default_snapshot_ns(dates)
    try:
        stamp = pd.Timestamp(snapshot)
    except (TypeError, ValueError) as err:
        raise UserError(f"features.snapshot_date={snapshot}: not a date") from err
    if pd.isna(stamp):
        raise UserError(f"features.snapshot_date={snapshot}: not a date")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_localize(None)
    return int(stamp.as_unit("ns").value)


def _arrow(series: pd.Series, rows: np.ndarray | None) -> pa.Array:
    """The column as one Arrow array (zero-copy for pandas' Arrow-backed strings)."""
    try:
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python types in an object column
        array = pa.array(series.astype("str"), from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if rows is None else array.filter(pa.array(rows))


def _run_starts(
    customers: pa.Array, orders: pa.Array | None, days: np.ndarray | None
) -> np.ndarray:
    """Positions where (customer, order[, day]) differs from the previous line's."""
    n = len(customers)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    if n > 1:
        for array in (customers, orders):
            if array is not None:
                differs = pc.not_equal(array.slice(1), array.slice(0, n - 1)).fill_null(True)
                change[1:] |= differs.to_numpy(zero_copy_only=False)
        if days is not None:
            change[1:] |= days[1:] != days[:-1]
    return np.flatnonzero(change)


def _encode(array: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Dense int64 codes (-1 for null) and the distinct values, in order of first appearance.

    Ids that are all plain non-negative integers ("12346", never "012") are parsed and coded as
    int64: several times faster than hashing strings. The distinct values are then int64 too.
    """
    numbers = _plain_integers(array)
    if numbers is not None:
        codes, uniques = pd.factorize(numbers, size_hint=len(numbers))
        return codes.astype(np.int64, copy=False), pa.array(uniques)
    if pa.types.is_large_string(array.type) and len(array) < 2**31:
        array = array.cast(pa.string())  # 32-bit offsets hash markedly faster
    encoded = pc.dictionary_encode(array)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary


def _plain_integers(array: pa.Array) -> np.ndarray | None:
    """The values as int64 if each is a non-negative integer written plainly, else None."""
    if array.null_count or len(array) == 0:
        return None
    if pa.types.is_integer(array.type):
        numbers = array.cast(pa.int64()).to_numpy()
        return numbers if numbers.min() >= 0 else None
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    try:
        pc.cast(array.slice(0, 1000), pa.int64())  # a failing cast scans everything: probe first
        parsed = pc.cast(array, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # "012", "+12", " 12" parse too but are other ids than "12": require an exact round trip.
    if not pc.all(pc.equal(parsed.cast(array.type), array)).as_py():
        return None
    numbers = parsed.to_numpy()
    return numbers if numbers.min() >= 0 else None


def _strictly_monotonic(array: pa.Array) -> bool:
    """Whether values strictly rise or strictly fall: then all of them are distinct.

    Exports list orders in date order and order numbers grow with the date, so this cheap check
    usually proves that each run is a different order without hashing the order ids.
    """
    if len(array) < 2:
        return True
    later, earlier = array.slice(1), array.slice(0, len(array) - 1)
    return bool(
        pc.all(pc.greater(later, earlier)).as_py() or pc.all(pc.less(later, earlier)).as_py()
    )


def _string_order(names: pa.Array) -> np.ndarray:
    """Positions that sort `names` as strings (code-point order, as pandas sorts str).

    Non-negative int64 names (from ``_plain_integers``) are sorted by their decimal text without
    formatting it: scaled to 19 digits they compare like the text, ties broken by length
    ("1" < "10" < "100" < "2").
    """
    if pa.types.is_integer(names.type):
        values = names.to_numpy().astype(np.uint64)
        digits = np.searchsorted(_POWERS_OF_TEN, values, side="right")  # 0 -> 1 digit
        digits = np.maximum(digits, 1)
        scaled = values * _POWERS_OF_TEN[19 - digits]
        return np.lexsort((digits, scaled))
    if not (pa.types.is_string(names.type) or pa.types.is_large_string(names.type)):
        names = names.cast(pa.string())
    return pc.sort_indices(names).to_numpy()


def _distinct_per_owner(owners: np.ndarray, items: np.ndarray, n_owners: int) -> np.ndarray:
    """Number of distinct `items` (codes >= 0) per owner code, as int64."""
    if len(items) == 0:
        return np.zeros(n_owners, dtype=np.int64)
    n_items = int(items.max()) + 1
    owner_of = np.full(n_items, -1, dtype=np.int64)
    owner_of[items] = owners
    if np.array_equal(owner_of[items], owners):  # each item has one owner: count the items
        return np.bincount(owner_of[owner_of >= 0], minlength=n_owners).astype(np.int64)
    pairs = pd.unique(owners.astype(np.int64) * n_items + items)
    return np.bincount(pairs // n_items, minlength=n_owners).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Transform
# --------------------------------------------------------------------------------------------


def log1p_clipped(X: Any) -> np.ndarray:
    """log(1 + max(x, 0)) per value: RFM columns are counts, days and rubles, all right-skewed.

    Negative values (monetary of a customer whose returns exceed purchases, possible only with
    ``clean.returns.mode=keep``) are clipped to 0 first, as log1p is undefined below -1.
    """
    return np.log1p(np.clip(np.asarray(X, dtype="float64"), 0.0, None))


def log1p_columns(X: Any, columns: tuple[str, ...]) -> np.ndarray:
    """``log1p_clipped`` on the named `columns` of the DataFrame X, the others as they are (the
    column order is kept)."""
    values = np.asarray(X, dtype="float64").copy()
    names = list(X.columns)
    for i, name in enumerate(names):
        if name in columns:
            values[:, i] = log1p_clipped(values[:, i])
    return values


def check_log_columns(log: Any, columns: Iterable[str]) -> None:
    """`features.transform.log` as a list must name feature columns."""
    if isinstance(log, bool | np.bool_ | str) or not isinstance(log, Iterable):
        return  # make_transformer judges the other forms
    unknown = [str(name) for name in log if str(name) not in set(columns)]
    if unknown:
        raise UserError(
            f"features.transform.log: {unknown} not among the feature columns {list(columns)}"
        )


def as_float_array(X: Any) -> np.ndarray:
    """The values as a float ndarray (the no-log step), so every pipeline returns numpy."""
    return np.asarray(X, dtype="float64")


def plus_one(X: Any) -> np.ndarray:
    """x + 1 (Box-Cox needs strictly positive values)."""
    return np.asarray(X, dtype=float) + 1.0


def make_transformer(spec: Mapping[str, Any], seed: int) -> Pipeline:
    """The unfitted transform of the RFM table, from ``cfg.features.transform``.

    `log` (default true): ``log1p_clipped`` on every column (recency, frequency, monetary and the
    extras are all non-negative and right-skewed); a list of column names logs only those (the
    transform is then fitted on a DataFrame with those columns). `scaler` (default standard): ``standard``,
    ``robust`` (median/IQR, for heavy tails), ``yeo-johnson`` / ``box-cox`` (power transforms), ``quantile`` (rank-based, to a normal
    distribution, seeded) or ``none``. Picklable (module-level functions only); fitted on a
    DataFrame it keeps the input column names (``get_feature_names_out``) and outputs numpy.
    """
    spec = dict(spec or {})
    unknown = sorted(set(spec) - TRANSFORM_KEYS)
    if unknown:
        raise UserError(
            f"features.transform: unknown key(s) {unknown}; known: {sorted(TRANSFORM_KEYS)}"
        )
    log = spec.get("log", True)
    if not isinstance(log, bool | np.bool_):
        if not isinstance(log, Sequence) or isinstance(log, str):
            raise UserError(
                f"features.transform.log={log}: must be true, false or a list of feature columns"
            )
        log = tuple(str(name) for name in log)
    scaler_name = str(spec.get("scaler", "standard")).lower()
    scalers: dict[str, Any] = {
        "standard": StandardScaler,
        "robust": RobustScaler,
        "quantile": lambda: QuantileTransformer(output_distribution="normal", random_state=seed),
        # Power transforms fit a per-column exponent that makes each column as normal as it can
        # (and standardise it). Box-Cox needs strictly positive input: the log step's log1p of
        # zero recency is 0, so it is shifted by one first.
        "yeo-johnson": lambda: PowerTransformer(method="yeo-johnson"),
        "box-cox": lambda: Pipeline(
            [
                ("positive", FunctionTransformer(plus_one, feature_names_out="one-to-one")),
                ("power", PowerTransformer(method="box-cox")),
            ]
        ),
        "none": lambda: "passthrough",
    }
    if scaler_name not in scalers:
        raise UserError(
            f"features.transform.scaler={spec.get('scaler')}: unknown scaler; use one of "
            f"{', '.join(SCALERS)}"
        )
    if isinstance(log, tuple):
        first = FunctionTransformer(
            log1p_columns, kw_args={"columns": log}, feature_names_out="one-to-one"
        )
    else:
        first = FunctionTransformer(
            log1p_clipped if log else as_float_array, feature_names_out="one-to-one"
        )
    return Pipeline([("log" if log else "values", first), ("scale", scalers[scaler_name]())])
