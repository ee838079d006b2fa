"""Lifetime-value features per customer, and the feature table the clusterer and classifier see.

``fit_value_model`` fits MBG/NBD and Gamma-Gamma (``src.features.clv``) once on the training
transactions; the fitted ``ValueModel`` ships with the deployed segmenter, so a fresh export's
customers get their expected value and P(alive) from the same parameters. ``feature_table`` puts
the chosen columns (``features.columns`` plus ``features.extras``) side by side: RFM columns from
``compute_rfm``, lifetime-value columns from ``ValueModel.predict``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from src.data.schema import RFM
from src.errors import UserError
from src.features.clv import (
    GammaGamma,
    MbgNbd,
    customer_value,
    fit_gamma_gamma,
    fit_mbgnbd,
    rfm_summary,
)

EXPECTED_VALUE = "expected_value"  # expected spend over the next clv.horizon_days (currency)
EXPECTED_PURCHASES = "expected_purchases"  # expected purchase days over the horizon
P_ALIVE = "p_alive"  # probability the customer still buys (MBG/NBD)
VALUE_COLUMNS = (EXPECTED_VALUE, EXPECTED_PURCHASES, P_ALIVE)
COLUMNS = RFM + VALUE_COLUMNS


@dataclass(frozen=True)
class ValueModel:
    """Fitted MBG/NBD and Gamma-Gamma parameters and the horizon the value is measured over."""

    mbgnbd: MbgNbd
    gamma_gamma: GammaGamma
    horizon_days: float

    def predict(
        self, transactions: pd.DataFrame, snapshot: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Per customer of `transactions` (index customer_id): p_alive, expected_purchases,
        expected_spend (per purchase) and expected_value over the horizon, seen at `snapshot`."""
        return self.value(rfm_summary(transactions, snapshot))

    def value(self, summary: pd.DataFrame) -> pd.DataFrame:
        """``predict`` for a summary from ``rfm_summary``."""
        value = customer_value(summary, self.mbgnbd, self.gamma_gamma, self.horizon_days)
        if not np.isfinite(value.to_numpy(dtype=float)).all():
            raise UserError(
                "lifetime value: non-finite expected value for some customers "
                f"(clv.horizon_days={self.horizon_days:g})"
            )
        return value


def fit_value_model(
    transactions: pd.DataFrame, snapshot: pd.Timestamp | None, horizon_days: float
) -> tuple[ValueModel, pd.DataFrame]:
    """Fit both models on `transactions` before `snapshot`; the model and its training customers'
    values. UserError when the data cannot identify a model (too few repeat buyers, no spread)."""
    summary = rfm_summary(transactions, snapshot)
    model = ValueModel(fit_mbgnbd(summary), fit_gamma_gamma(summary), check_horizon(horizon_days))
    return model, model.value(summary)


def check_horizon(horizon_days: object) -> float:
    """`clv.horizon_days` as a positive number of days."""
    try:
        days = float(horizon_days)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        days = float("nan")
    if not (np.isfinite(days) and days > 0):
        raise UserError(f"clv.horizon_days={horizon_days}: must be a positive number of days")
    return days


def check_columns(columns: Iterable[str], extras: Iterable[str]) -> tuple[str, ...]:
    """The feature columns: `features.columns` (validated) then `features.extras`."""
    chosen = tuple(str(c) for c in columns)
    if not chosen:
        raise UserError(f"features.columns is empty: list some of {list(COLUMNS)}")
    unknown = [c for c in chosen if c not in COLUMNS]
    if unknown:
        raise UserError(f"features.columns: unknown column(s) {unknown}; allowed: {list(COLUMNS)}")
    repeated = sorted({c for c in chosen if chosen.count(c) > 1})
    if repeated:
        raise UserError(f"features.columns: {repeated} listed more than once")
    return chosen + tuple(str(e) for e in extras)  # compute_rfm checks the extras


def check_fallback(fallback: object) -> tuple[str, ...] | None:
    """`features.fallback_columns`: the RFM columns a run segments on instead when the store
    cannot identify the lifetime-value models; None (null) refuses such a store."""
    if fallback is None:
        return None
    if isinstance(fallback, str) or not isinstance(fallback, Iterable):
        raise UserError(f"features.fallback_columns={fallback}: a list of {list(RFM)}, or null")
    chosen = tuple(str(c) for c in fallback)
    wrong = [c for c in chosen if c not in RFM]
    if not chosen or wrong or len(set(chosen)) < len(chosen):
        raise UserError(
            f"features.fallback_columns={list(chosen)}: list each of {list(RFM)} at most once "
            "(the columns that need no lifetime value), or null"
        )
    return chosen


def needs_value(columns: Iterable[str]) -> bool:
    return any(c in VALUE_COLUMNS for c in columns)


def feature_table(
    rfm: pd.DataFrame, value: pd.DataFrame | None, columns: Iterable[str]
) -> pd.DataFrame:
    """The `columns` of each customer of `rfm` (same index and order), RFM and extras from
    `rfm`, lifetime-value columns from `value` (which must cover the same customers)."""
    columns = list(columns)
    wanted = [c for c in columns if c in VALUE_COLUMNS]
    if not wanted:
        return rfm[columns]
    if value is None:
        raise ValueError(f"feature columns {wanted} need the lifetime-value table")
    aligned = value[wanted].reindex(rfm.index)
    if aligned.isna().any().any():
        raise ValueError("the lifetime-value table does not cover every customer of the RFM table")
    return pd.concat([rfm.drop(columns=wanted, errors="ignore"), aligned], axis=1)[columns]
