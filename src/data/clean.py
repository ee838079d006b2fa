"""Cleaning: the canonical transaction table in, the lines worth segmenting on out, plus a report.

Each rule is a named step with its own settings block (``conf/clean/default.yaml``), applied in the
fixed order of ``STEP_ORDER``. Every step records what it removed or changed, in lines and in
the store's currency (`data.currency`), so a marketer can see where the export's money went (``CleaningReport``). Optional columns
of the canonical table may be absent; every rule works without them.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from src.currency import DEFAULT as DEFAULT_CURRENCY
from src.currency import Currency, currency
from src.data.schema import AMOUNT, CUSTOMER_ID, DATE, PRODUCT_ID, QUANTITY
from src.errors import UserError

STEP_ORDER = (
    "invalid_values",
    "missing_customer",
    "test_accounts",
    "duplicates",
    "date_window",
    "returns",
    "non_positive",
    "line_outliers",
    "customer_outliers",
)

# Mirrors conf/clean/default.yaml (a test keeps them equal); a step missing from `rules` gets these.
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "invalid_values": {"enabled": True},
    "missing_customer": {"enabled": True},
    "test_accounts": {"enabled": True, "ids": [], "pattern": r"(?i)^\s*(test|тест)"},
    "duplicates": {"enabled": True},
    "date_window": {"enabled": True, "start": "1970-01-01", "end": None, "last_days": None},
    "returns": {"enabled": True, "mode": "net"},
    "non_positive": {"enabled": True},
    "line_outliers": {
        "enabled": True,
        "method": "iqr",
        "q": 0.9995,
        "k": 3.0,
        "action": "drop",
        "threshold": None,
    },
    "customer_outliers": {
        "enabled": True,
        "method": "iqr",
        "q": 0.9995,
        "k": 5.0,
        "action": "cap",
        "threshold": None,
    },
}

RETURN_MODES = ("net", "drop", "keep")
OUTLIER_METHODS = ("quantile", "iqr")
OUTLIER_ACTIONS = ("cap", "drop", "none")
_EXAMPLES = 10  # customer ids listed in a step's detail, for the audit trail


# ----------------------------------------------------------------------------------------- report
@dataclass
class StepRecord:
    """What one cleaning step did. rows_out = rows_in - rows_removed."""

    name: str
    description: str
    enabled: bool
    rows_in: int
    rows_out: int
    rows_removed: int
    rows_modified: int
    amount_in: float
    amount_out: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "enabled": bool(self.enabled),
            "rows_in": int(self.rows_in),
            "rows_out": int(self.rows_out),
            "rows_removed": int(self.rows_removed),
            "rows_modified": int(self.rows_modified),
            "amount_in": _money(self.amount_in),
            "amount_out": _money(self.amount_out),
            "amount_change": _money(self.amount_out - self.amount_in),
            "detail": _plain(self.detail),
        }


@dataclass
class CleaningReport:
    """The raw export's size and every step's record, in the order the steps ran. Amounts are in
    `currency` (an ISO 4217 code, `data.currency`)."""

    rows_raw: int
    amount_raw: float
    currency: str = DEFAULT_CURRENCY
    steps: list[StepRecord] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)  # the loader's LoadReport.to_dict()

    @property
    def rows_clean(self) -> int:
        return self.steps[-1].rows_out if self.steps else self.rows_raw

    @property
    def amount_clean(self) -> float:
        return self.steps[-1].amount_out if self.steps else self.amount_raw

    def step(self, name: str) -> StepRecord:
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (plain ints, floats, strings; no NaN), for cleaning_report.json."""
        return {
            "rows_raw": int(self.rows_raw),
            "rows_clean": int(self.rows_clean),
            "currency": self.currency,
            "amount_raw": _money(self.amount_raw),
            "amount_clean": _money(self.amount_clean),
            "steps": [record.to_dict() for record in self.steps],
        } | ({"load": _plain(self.load)} if self.load else {})

    def to_table(self) -> str:
        """Aligned plain-text table for the console, one line per step, thousands separated."""
        money = currency(self.currency)
        header = (
            "step", "lines removed", "lines changed", "lines left",
            f"{money.symbol} change", f"{money.symbol} left", "",
        )  # fmt: skip
        rows = [("raw export", "", "", f"{self.rows_raw:,}", "", money.number(self.amount_raw), "")]
        for r in self.steps:
            rows.append(
                (
                    r.name,
                    f"{r.rows_removed:,}",
                    f"{r.rows_modified:,}",
                    f"{r.rows_out:,}",
                    money.number(r.amount_out - r.amount_in, signed=True),
                    money.number(r.amount_out),
                    r.description,
                )
            )
        rows.append(
            (
                "clean",
                f"{sum(r.rows_removed for r in self.steps):,}",
                f"{sum(r.rows_modified for r in self.steps):,}",
                f"{self.rows_clean:,}",
                money.number(self.amount_clean - self.amount_raw, signed=True),
                money.number(self.amount_clean),
                "",
            )
        )
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(row: tuple[str, ...]) -> str:
            cells = [row[0].ljust(widths[0])]
            cells += [
                cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1], strict=True)
            ]
            cells.append(row[-1])
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(header))
        return "\n".join(
            [line(header), rule, line(rows[0]), *map(line, rows[1:-1]), rule, line(rows[-1])]
        )


def _money(value: float) -> float:
    return round(float(value), 2)


def _plain(value: Any) -> Any:
    """numpy scalars, Timestamps and NaN -> plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or isinstance(value, int | str):
        return value
    return str(value)


def _amount(frame: pd.DataFrame) -> float:
    """Sum of amount; NaN amounts count as 0."""
    return float(frame[AMOUNT].sum()) if len(frame) else 0.0


# ---------------------------------------------------------------------------------------- settings
def resolve_rules(rules: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """`rules` laid over DEFAULT_RULES and checked; errors name the setting (clean.<step>.<key>)."""
    rules = rules or {}
    unknown = sorted(set(rules) - set(STEP_ORDER))
    if unknown:
        raise UserError(
            f"clean.{unknown[0]}: unknown cleaning rule; known rules: {', '.join(STEP_ORDER)}"
        )
    resolved: dict[str, dict[str, Any]] = {}
    for name in STEP_ORDER:
        block = rules.get(name)
        block = {} if block is None else block
        if not isinstance(block, Mapping):
            raise UserError(f"clean.{name}: expected a block of settings, got {block!r}")
        extra = sorted(set(block) - set(DEFAULT_RULES[name]))
        if extra:
            raise UserError(
                f"clean.{name}.{extra[0]}: unknown setting; known: {', '.join(DEFAULT_RULES[name])}"
            )
        resolved[name] = copy.deepcopy(DEFAULT_RULES[name]) | dict(block)
        if not isinstance(resolved[name]["enabled"], bool | np.bool_):
            raise UserError(
                f"clean.{name}.enabled={resolved[name]['enabled']!r}: expected true or false"
            )
    _check_choice(resolved, "returns", "mode", RETURN_MODES)
    for name in ("line_outliers", "customer_outliers"):
        cfg = resolved[name]
        _check_choice(resolved, name, "method", OUTLIER_METHODS)
        _check_choice(resolved, name, "action", OUTLIER_ACTIONS)
        if not 0.0 < _number(cfg, name, "q") <= 1.0:
            raise UserError(f"clean.{name}.q={cfg['q']}: expected a share in (0, 1]")
        if _number(cfg, name, "k") < 0:
            raise UserError(f"clean.{name}.k={cfg['k']}: expected a non-negative number")
        if cfg["threshold"] is not None and _number(cfg, name, "threshold") <= 0:
            raise UserError(
                f"clean.{name}.threshold={cfg['threshold']}: expected an amount > 0 "
                "(in data.currency)"
            )
    last_days = resolved["date_window"]["last_days"]
    if last_days is not None and (
        isinstance(last_days, bool | str)
        or not float(_number(resolved["date_window"], "date_window", "last_days")).is_integer()
        or float(last_days) < 1
    ):
        raise UserError(
            f"clean.date_window.last_days={last_days!r}: expected a whole number of days >= 1, "
            "or null for no bound relative to the export's last date"
        )
    cfg = resolved["test_accounts"]
    if cfg["pattern"]:
        try:
            re.compile(str(cfg["pattern"]))
        except re.error as err:
            raise UserError(f"clean.test_accounts.pattern={cfg['pattern']!r}: {err}") from err
    return resolved


def _check_choice(resolved: dict, name: str, key: str, choices: tuple[str, ...]) -> None:
    if resolved[name][key] not in choices:
        raise UserError(
            f"clean.{name}.{key}={resolved[name][key]}: expected one of {', '.join(choices)}"
        )


def _number(cfg: Mapping, name: str, key: str) -> float:
    try:
        return float(cfg[key])
    except (TypeError, ValueError) as err:
        raise UserError(f"clean.{name}.{key}={cfg[key]!r}: expected a number") from err


def _timestamp(value: Any, setting: str) -> pd.Timestamp | None:
    if value in (None, ""):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise UserError(f"{setting}={value!r}: not a date (expected e.g. 2024-01-31)") from err
    if pd.isna(stamp):
        raise UserError(f"{setting}={value!r}: not a date (expected e.g. 2024-01-31)")
    return stamp.tz_localize(None) if stamp.tz is not None else stamp


# ------------------------------------------------------------------------------------------- steps
@dataclass(frozen=True)
class _Outcome:
    frame: pd.DataFrame
    description: str
    rows_modified: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


def _invalid_values(frame: pd.DataFrame, cfg: Mapping) -> _Outcome:
    bad_date = frame[DATE].isna().to_numpy()
    bad_amount = frame[AMOUNT].isna().to_numpy()
    return _Outcome(
        frame[~(bad_date | bad_amount)],
        "lines with an unreadable date or amount removed",
        detail={"bad_date": int(bad_date.sum()), "bad_amount": int(bad_amount.sum())},
    )


def _missing_customer(frame: pd.DataFrame, cfg: Mapping) -> _Outcome:
    ids = frame[CUSTOMER_ID]
    missing = ids.isna().to_numpy(dtype=bool)
    if pd.api.types.is_string_dtype(ids):
        missing = missing | (ids.str.strip() == "").fillna(False).to_numpy(dtype=bool)
    return _Outcome(frame[~missing], "lines without a customer id (guest sales) removed")


def _test_accounts(frame: pd.DataFrame, cfg: Mapping) -> _Outcome:
    ids = _as_text(frame[CUSTOMER_ID])
    listed = {str(value) for value in (cfg["ids"] or [])}
    by_id = ids.isin(listed).fillna(False).to_numpy(dtype=bool)
    by_pattern = np.zeros(len(frame), dtype=bool)
    if cfg["pattern"]:
        with warnings.catch_warnings():  # "has match groups": we only need a yes/no
            warnings.simplefilter("ignore", UserWarning)
            matched = ids.str.contains(str(cfg["pattern"]), regex=True, na=False)
        by_pattern = matched.to_numpy(dtype=bool)
    test = by_id | by_pattern
    accounts = pd.unique(ids[test].dropna())
    return _Outcome(
        frame[~test],
        "lines of internal test accounts removed",
        detail={
            "accounts": len(accounts),
            "by_id": int(by_id.sum()),
            "by_pattern": int(by_pattern.sum()),
            "examples": [str(a) for a in accounts[:_EXAMPLES]],
        },
    )


def _as_text(ids: pd.Series) -> pd.Series:
    return ids if pd.api.types.is_string_dtype(ids) else ids.astype("string")


def _duplicates(frame: pd.DataFrame, cfg: Mapping) -> _Outcome:
    repeated = frame.duplicated(keep="first").to_numpy(dtype=bool)
    return _Outcome(
        frame[~repeated],
        "exact duplicate lines (exported twice) removed",
        detail={"columns_compared": [str(c) for c in frame.columns]},
    )


def _date_window(frame: pd.DataFrame, cfg: Mapping, today: pd.Timestamp) -> _Outcome:
    """Keep lines from `start` through the whole day of `end` (or of today: no future sales), and
    with `last_days`, only the last that many days up to the latest date left in that window."""
    start = _timestamp(cfg["start"], "clean.date_window.start")
    end = _timestamp(cfg["end"], "clean.date_window.end") or today
    stop = end.normalize() + pd.Timedelta(days=1)
    dates = frame[DATE]
    early = (dates < start).fillna(False).to_numpy(dtype=bool) if start is not None else None
    early = np.zeros(len(frame), dtype=bool) if early is None else early
    late = (dates >= stop).fillna(False).to_numpy(dtype=bool)
    detail: dict[str, Any] = {
        "start": None if start is None else start.date().isoformat(),
        "end": end.date().isoformat(),
        "end_from": "today" if cfg["end"] in (None, "") else "setting",
        "before_start": int(early.sum()),
        "after_end": int(late.sum()),
    }
    since = f"before {start:%d.%m.%Y} or " if start is not None else ""
    description = f"lines dated {since}after {end:%d.%m.%Y} (export errors) removed"
    remove = early | late
    if cfg["last_days"] is not None:
        days = int(cfg["last_days"])
        in_window = dates[~remove]
        last = in_window.max() if len(in_window) else None
        first_kept = None if last is None else last.normalize() - pd.Timedelta(days=days - 1)
        older = np.zeros(len(frame), dtype=bool)
        if first_kept is not None:
            older = ((dates < first_kept).fillna(False).to_numpy(dtype=bool)) & ~remove
        remove = remove | older
        detail |= {
            "last_days": days,
            "last_date": None if last is None else last.date().isoformat(),
            "relative_start": None if first_kept is None else first_kept.date().isoformat(),
            "before_relative_start": int(older.sum()),
        }
        if first_kept is not None:
            description += (
                f"; only the last {days} days up to the export's last date kept "
                f"(from {first_kept:%d.%m.%Y})"
            )
    return _Outcome(frame[~remove], description, detail=detail)


def _returns(frame: pd.DataFrame, cfg: Mapping) -> _Outcome:
    amount = frame[AMOUNT].to_numpy(dtype=float)
    is_return = amount < 0
    detail: dict[str, Any] = {
        "mode": cfg["mode"],
        "return_lines": int(is_return.sum()),
        "return_amount": float(-amount[is_return].sum()),
    }
    if cfg["mode"] == "keep":
        return _Outcome(frame, "return lines kept as negative amounts", detail=detail)
    if cfg["mode"] == "drop":
        return _Outcome(
            frame[~is_return], "return lines removed; purchases kept at full value", detail=detail
        )
    return _net_returns(frame, amount, is_return, detail)


def _net_returns(
    frame: pd.DataFrame, amount: np.ndarray, is_return: np.ndarray, detail: dict[str, Any]
) -> _Outcome:
    """Match each return to the customer's latest purchase (of the same product, when known)
    dated at or before it, and take the returned amount and units off that purchase."""
    by = [CUSTOMER_ID] + ([PRODUCT_ID] if PRODUCT_ID in frame.columns else [])
    keys = pd.DataFrame(
        {"_pos": np.arange(len(frame)), DATE: frame[DATE].to_numpy()}
        | {col: _match_key(frame[col]) for col in by}
    )
    usable = (keys[DATE].notna() & frame[CUSTOMER_ID].notna().to_numpy()).to_numpy(dtype=bool)
    purchases = keys[(amount > 0) & usable].rename(columns={"_pos": "_purchase"})
    returns = keys[is_return & usable]
    matched = pd.merge_asof(
        returns.sort_values(DATE, kind="stable"),
        purchases.sort_values(DATE, kind="stable"),
        on=DATE,
        by=by,
        direction="backward",
        allow_exact_matches=True,
    ).dropna(subset=["_purchase"])
    target = matched["_purchase"].to_numpy(dtype=np.int64)
    source = matched["_pos"].to_numpy(dtype=np.int64)

    netted_amount = amount.copy()
    delta = pd.Series(amount[source]).groupby(target).sum()  # several returns accumulate
    netted_amount[delta.index.to_numpy()] += delta.to_numpy()
    changes: dict[str, np.ndarray] = {AMOUNT: netted_amount}
    if QUANTITY in frame.columns:
        quantity = frame[QUANTITY].to_numpy(dtype=float)
        returned_units = pd.Series(np.nan_to_num(np.abs(quantity[source]))).groupby(target).sum()
        netted_quantity = quantity.copy()
        netted_quantity[returned_units.index.to_numpy()] -= returned_units.to_numpy()
        changes[QUANTITY] = netted_quantity

    matched_mask = np.zeros(len(frame), dtype=bool)
    matched_mask[source] = True
    unmatched = is_return & ~matched_mask
    netted = frame.assign(**changes)[~is_return]
    what = "the same product" if PRODUCT_ID in by else "an item"
    return _Outcome(
        netted,
        f"returns netted against the customer's earlier purchase of {what}; unmatched returns removed",
        rows_modified=int(delta.size),
        detail=detail
        | {
            "matched_by": by,
            "returns_matched": int(source.size),
            "returns_unmatched": int(unmatched.sum()),
            "amount_unmatched": float(-amount[unmatched].sum()),
            "purchases_netted": int(delta.size),
        },
    )


def _match_key(column: pd.Series) -> pd.Series:
    """Text keys for merge_asof's `by`: a missing product id matches only other missing ones."""
    return _as_text(column).fillna("\x00missing").reset_index(drop=True)


def _non_positive(frame: pd.DataFrame, cfg: Mapping) -> _Outcome:
    amount = frame[AMOUNT].to_numpy(dtype=float)
    bad = amount <= 0
    return _Outcome(
        frame[~bad],
        "zero-value and fully returned lines removed",
        detail={"zero": int((amount == 0).sum()), "negative": int((amount < 0).sum())},
    )


def upper_fence(values: np.ndarray, method: str, q: float, k: float) -> float | None:
    """Largest plausible value: the q-quantile, or Q3 + k*IQR on the log scale (spend is roughly
    log-normal, so fences on amounts directly would flag ordinary big baskets). None when no
    positive values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return None
    if method == "quantile":
        return float(np.quantile(values, q))
    q1, q3 = np.quantile(np.log(values), [0.25, 0.75])
    return float(np.exp(q3 + k * (q3 - q1)))


def _fence(values: np.ndarray, cfg: Mapping) -> float | None:
    if cfg["threshold"] is not None:
        return float(cfg["threshold"])
    return upper_fence(values, cfg["method"], float(cfg["q"]), float(cfg["k"]))


def _fence_label(cfg: Mapping) -> str:
    if cfg["threshold"] is not None:
        return "fixed threshold"
    if cfg["method"] == "quantile":
        return f"{float(cfg['q']):.4%} quantile"
    return f"Q3 + {float(cfg['k']):g} IQR of log amounts"


def _no_outlier(what: str, cfg: Mapping, largest: float | None, money: Currency) -> str:
    """The step's description when nothing is above the fence: the fence itself is then no
    amount anyone would cap at (often billions), so it is named by its rule, with the largest
    value it was measured against."""
    fence = "the fixed threshold" if cfg["threshold"] is not None else _fence_label(cfg)
    seen = f" (the largest is {money.amount(largest)})" if largest is not None else ""
    return f"no {what} above the outlier fence, {fence}{seen}: none {_DONE[cfg['action']]}"


_DONE = {"cap": "capped", "drop": "removed", "none": "flagged"}


def _line_outliers(frame: pd.DataFrame, cfg: Mapping, money: Currency) -> _Outcome:
    amount = frame[AMOUNT].to_numpy(dtype=float)
    threshold = _fence(amount, cfg)
    above = amount > threshold if threshold is not None else np.zeros(len(frame), dtype=bool)
    detail = {
        "method": _fence_label(cfg),
        "action": cfg["action"],
        "threshold": threshold,
        "lines_above": int(above.sum()),
        "amount_above_threshold": float((amount[above] - threshold).sum()) if above.any() else 0.0,
        "largest_line": float(np.nanmax(amount)) if np.isfinite(amount).any() else None,
    }
    if not above.any():
        largest = detail["largest_line"]
        return _Outcome(frame, _no_outlier("single line", cfg, largest, money), detail=detail)
    limit = money.amount(threshold)
    if cfg["action"] == "drop":
        return _Outcome(
            frame[~above], f"single lines above {limit} (likely typos) removed", detail=detail
        )
    if cfg["action"] == "cap":
        return _Outcome(
            frame.assign(**{AMOUNT: np.where(above, threshold, amount)}),
            f"single lines above {limit} (likely typos) capped at {limit}",
            rows_modified=int(above.sum()),
            detail=detail,
        )
    return _Outcome(frame, f"single lines above {limit} counted, left as they are", detail=detail)


def _customer_outliers(frame: pd.DataFrame, cfg: Mapping, money: Currency) -> _Outcome:
    totals = frame.groupby(CUSTOMER_ID, dropna=True, observed=True, sort=False)[AMOUNT].sum()
    threshold = _fence(totals.to_numpy(dtype=float), cfg)
    flagged = totals[totals > threshold] if threshold is not None else totals.iloc[:0]
    line_total = frame[CUSTOMER_ID].map(flagged)  # NaN for everyone not flagged
    lines = line_total.notna().to_numpy(dtype=bool)
    detail = {
        "method": _fence_label(cfg),
        "action": cfg["action"],
        "threshold": threshold,
        "customers": int(totals.size),
        "customers_above": int(flagged.size),
        "lines_of_customers_above": int(lines.sum()),
        "amount_above_threshold": float((flagged - threshold).sum()) if flagged.size else 0.0,
        "examples": [str(c) for c in flagged.sort_values(ascending=False).index[:_EXAMPLES]],
    }
    if not flagged.size:
        largest = float(totals.max()) if totals.size else None
        return _Outcome(frame, _no_outlier("customer's total", cfg, largest, money), detail=detail)
    limit = money.amount(threshold)
    if cfg["action"] == "drop":
        return _Outcome(
            frame[~lines],
            f"all lines of customers whose total spend is above {limit} removed",
            detail=detail,
        )
    if cfg["action"] == "cap":
        factor = np.where(lines, threshold / line_total.to_numpy(dtype=float), 1.0)
        return _Outcome(
            frame.assign(**{AMOUNT: frame[AMOUNT].to_numpy(dtype=float) * factor}),
            f"customers whose total spend is above {limit} scaled down to {limit}",
            rows_modified=int(lines.sum()),
            detail=detail,
        )
    return _Outcome(
        frame,
        f"customers whose total spend is above {limit} counted, left as they are",
        detail=detail,
    )


Step = Callable[[pd.DataFrame, Mapping], _Outcome]
_STEPS: dict[str, Step] = {
    "invalid_values": _invalid_values,
    "missing_customer": _missing_customer,
    "test_accounts": _test_accounts,
    "duplicates": _duplicates,
    "date_window": _date_window,  # bound to `today` in clean_transactions
    "returns": _returns,
    "non_positive": _non_positive,
    "line_outliers": _line_outliers,  # bound to the currency in clean_transactions
    "customer_outliers": _customer_outliers,
}


# -------------------------------------------------------------------------------------------- API
def clean_transactions(
    frame: pd.DataFrame,
    rules: Mapping[str, Any] | None,
    today: pd.Timestamp | None = None,
    currency_code: str = DEFAULT_CURRENCY,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the cleaning rules in STEP_ORDER; return the clean lines and what each step did.

    `rules` is the plain-dict form of conf/clean/default.yaml (steps left out get the defaults).
    `today` is the wall clock for `date_window.end: null` (default: now); lines after it are
    export errors. `currency_code` (`data.currency`) names the amounts' currency in the report.
    The input is never mutated; surviving rows keep their index labels so they can
    be traced back to the export.
    """
    missing = [col for col in (CUSTOMER_ID, DATE, AMOUNT) if col not in frame.columns]
    if missing:
        raise UserError(f"transactions: required column '{missing[0]}' is missing before cleaning")
    config = resolve_rules(rules)
    now = _timestamp(today if today is not None else pd.Timestamp.now(), "today")
    money = currency(currency_code)
    steps = _STEPS | {
        "date_window": partial(_date_window, today=now),
        "line_outliers": partial(_line_outliers, money=money),
        "customer_outliers": partial(_customer_outliers, money=money),
    }

    report = CleaningReport(rows_raw=len(frame), amount_raw=_amount(frame), currency=money.code)
    current = frame
    for name in STEP_ORDER:
        cfg = config[name]
        rows_in, amount_in = len(current), _amount(current)
        if not cfg["enabled"]:
            report.steps.append(
                StepRecord(
                    name,
                    "not applied (disabled)",
                    False,
                    rows_in,
                    rows_in,
                    0,
                    0,
                    amount_in,
                    amount_in,
                )
            )
            continue
        outcome = steps[name](current, cfg)
        current = outcome.frame
        report.steps.append(
            StepRecord(
                name=name,
                description=outcome.description,
                enabled=True,
                rows_in=rows_in,
                rows_out=len(current),
                rows_removed=rows_in - len(current),
                rows_modified=outcome.rows_modified,
                amount_in=amount_in,
                amount_out=_amount(current),
                detail=outcome.detail,
            )
        )
    return current, report


def freeze_thresholds(rules: Mapping[str, Any], report: CleaningReport) -> dict[str, Any]:
    """`rules` with the outlier thresholds measured on the training export written in as fixed
    `threshold`s, so a small fresh export is judged by the training data's standard, not its own
    (a quantile of ten lines would cap the largest of them)."""
    frozen = copy.deepcopy(dict(rules))
    for name in ("line_outliers", "customer_outliers"):
        try:
            record = report.step(name)
        except KeyError:
            continue
        threshold = record.detail.get("threshold")
        if record.enabled and threshold is not None:
            frozen[name] = dict(frozen.get(name) or {}) | {"threshold": float(threshold)}
    return frozen
