"""Lifetime-value features: the feature table, the checks of features.columns and clv.horizon_days,
and a fitted ValueModel giving a fresh export the values the training run computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.errors import UserError
from src.features.rfm import compute_rfm
from src.features.value import (
    check_columns,
    check_horizon,
    feature_table,
    fit_value_model,
    needs_value,
)


def transactions(seed: int = 0, customers: int = 300, repeat: bool = True) -> pd.DataFrame:
    """Sale lines over two years: each customer buys on a Poisson number of distinct days."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01")
    rows = []
    for c in range(customers):
        first = int(rng.integers(0, 600))
        days = [first]
        if repeat:
            n = int(rng.poisson(rng.gamma(1.0, 4.0)))
            days += sorted(int(d) for d in rng.integers(first + 1, 730, n)) if first < 729 else []
        for d in days:
            rows.append((f"c{c:04d}", start + np.timedelta64(d, "D"), float(rng.gamma(3, 700))))
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    frame["order_id"] = [f"o{i}" for i in range(len(frame))]
    frame["date"] = frame["date"].astype("datetime64[ns]")
    return frame


def test_feature_table_takes_value_columns_by_customer_and_keeps_rfm_order():
    rfm = pd.DataFrame(
        {"recency": [1.0, 2.0, 3.0], "frequency": [4, 5, 6], "monetary": [7.0, 8.0, 9.0]},
        index=pd.Index(["a", "b", "c"], name="customer_id"),
    )
    value = pd.DataFrame(
        {"expected_value": [30.0, 10.0, 20.0], "p_alive": [0.3, 0.1, 0.2]},
        index=pd.Index(["c", "a", "b"], name="customer_id"),
    )
    table = feature_table(rfm, value, ["expected_value", "p_alive", "recency", "frequency"])
    assert list(table.columns) == ["expected_value", "p_alive", "recency", "frequency"]
    assert list(table.index) == ["a", "b", "c"]
    assert table["expected_value"].tolist() == [10.0, 20.0, 30.0]
    assert table["p_alive"].tolist() == [0.1, 0.2, 0.3]
    assert feature_table(rfm, None, ["recency", "monetary"]).equals(rfm[["recency", "monetary"]])
    with pytest.raises(ValueError, match="need the lifetime-value table"):
        feature_table(rfm, None, ["p_alive"])
    with pytest.raises(ValueError, match="does not cover every customer"):
        feature_table(rfm, value.iloc[:2], ["p_alive"])


def test_columns_and_horizon_are_checked_with_the_setting_named():
    assert check_columns(["expected_value", "recency"], ["tenure"]) == (
        "expected_value",
        "recency",
        "tenure",
    )
    assert needs_value(["recency", "p_alive"]) and not needs_value(["recency", "tenure"])
    with pytest.raises(UserError, match=r"features.columns: unknown column\(s\) \['clv'\]"):
        check_columns(["recency", "clv"], [])
    with pytest.raises(UserError, match="features.columns is empty"):
        check_columns([], [])
    with pytest.raises(UserError, match=r"features.columns: \['recency'\] listed more than once"):
        check_columns(["recency", "recency"], [])
    assert check_horizon(30) == 30.0
    for bad in (0, -5, "soon", None):
        with pytest.raises(UserError, match="clv.horizon_days"):
            check_horizon(bad)


def test_the_fitted_model_gives_a_fresh_export_the_training_values():
    lines = transactions()
    snapshot = pd.Timestamp("2026-01-01")
    model, value = fit_value_model(lines, snapshot, 90)
    assert value.index.equals(compute_rfm(lines, snapshot=snapshot).index.sort_values())
    assert ((value["p_alive"] > 0) & (value["p_alive"] <= 1)).all()
    assert (value["expected_value"] >= 0).all()
    # A longer horizon: more expected purchases, never fewer.
    longer = fit_value_model(lines, snapshot, 180)[1]
    assert (longer["expected_purchases"] >= value["expected_purchases"] - 1e-12).all()
    assert longer["expected_purchases"].sum() > value["expected_purchases"].sum()
    # A fresh export with a few of the same customers: the shipped parameters, not a refit.
    few = lines[lines["customer_id"].isin(["c0003", "c0100", "c0200"])]
    fresh = model.predict(few, snapshot)
    pd.testing.assert_frame_equal(fresh, value.loc[fresh.index])


def test_a_store_of_one_time_buyers_cannot_be_fitted():
    with pytest.raises(UserError, match="none of the 50 customers has a repeat purchase"):
        fit_value_model(transactions(customers=50, repeat=False), None, 90)
