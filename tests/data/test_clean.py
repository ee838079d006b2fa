import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from src.data.clean import (
    DEFAULT_RULES,
    STEP_ORDER,
    CleaningReport,
    clean_transactions,
    freeze_thresholds,
    resolve_rules,
)
from src.errors import UserError

TODAY = pd.Timestamp("2024-06-30 15:00")
CONF = Path(__file__).resolve().parents[2] / "conf" / "clean" / "default.yaml"


def frame(rows: list[tuple], columns=("customer_id", "date", "amount", "product_id", "quantity")):
    """Canonical transaction table from tuples, with the loader's dtypes."""
    data = pd.DataFrame(rows, columns=list(columns))
    out = pd.DataFrame(
        {
            "customer_id": data["customer_id"].astype("str").where(data["customer_id"].notna()),
            "date": pd.to_datetime(data["date"], format="mixed"),
            "amount": data["amount"].astype("float64"),
        }
    )
    if "product_id" in columns:
        out["product_id"] = data["product_id"].astype("str")
    if "quantity" in columns:
        out["quantity"] = data["quantity"].astype("float64")
    return out


def only(*names: str, **blocks) -> dict:
    """Rules with every step off except `names`; `blocks` override a step's settings."""
    rules = {name: {"enabled": name in names} for name in STEP_ORDER}
    for name, block in blocks.items():
        rules[name] |= block
    return rules


def run(data: pd.DataFrame, rules: dict) -> tuple[pd.DataFrame, CleaningReport]:
    return clean_transactions(data, rules, today=TODAY)


# ------------------------------------------------------------------------------- single rules
def test_invalid_values_drops_nat_dates_and_nan_amounts():
    data = frame(
        [
            ("c1", "2024-01-01", 100.0, "A", 1.0),
            ("c1", None, 200.0, "A", 1.0),
            ("c2", "2024-01-02", np.nan, "A", 1.0),
        ]
    )
    out, report = run(data, only("invalid_values"))
    assert out["amount"].tolist() == [100.0]
    assert report.step("invalid_values").detail == {"bad_date": 1, "bad_amount": 1}
    assert report.amount_raw == 300.0  # the NaN amount counts as 0


def test_missing_customer_drops_lines_without_id():
    data = frame([("c1", "2024-01-01", 100.0, "A", 1.0), (None, "2024-01-01", 50.0, "A", 1.0)])
    out, report = run(data, only("missing_customer"))
    assert out["customer_id"].tolist() == ["c1"]
    assert report.step("missing_customer").rows_removed == 1


def test_test_accounts_by_latin_and_cyrillic_pattern_and_exact_id():
    ids = ["TEST-001", "  test", "тест_менеджер", "ТЕСТ-2", "42", "c1", "contest", "Тестов"]
    data = frame([(c, "2024-01-01", 10.0, "A", 1.0) for c in ids])
    out, report = run(data, only("test_accounts", test_accounts={"ids": [42]}))
    # "Тестов" is caught by the pattern too: the default pattern is a prefix match, on purpose
    assert out["customer_id"].tolist() == ["c1", "contest"]
    detail = report.step("test_accounts").detail
    assert detail["by_id"] == 1 and detail["by_pattern"] == 5 and detail["accounts"] == 6


def test_test_accounts_pattern_can_be_switched_off():
    data = frame([("TEST-1", "2024-01-01", 10.0, "A", 1.0), ("7", "2024-01-01", 10.0, "A", 1.0)])
    out, _ = run(data, only("test_accounts", test_accounts={"pattern": None, "ids": ["7"]}))
    assert out["customer_id"].tolist() == ["TEST-1"]


def test_duplicates_drops_exact_repeats_only():
    data = frame(
        [
            ("c1", "2024-01-01 10:00", 100.0, "A", 1.0),
            ("c1", "2024-01-01 10:00", 100.0, "A", 1.0),
            ("c1", "2024-01-01 10:00", 100.0, "A", 2.0),  # differs in quantity: kept
        ]
    )
    out, report = run(data, only("duplicates"))
    assert out["quantity"].tolist() == [1.0, 2.0]
    assert list(out.index) == [0, 2]  # survivors keep their labels
    assert report.step("duplicates").rows_removed == 1


def test_date_window_keeps_every_year_from_1970_through_today_by_default():
    data = frame(
        [
            ("c1", "1969-12-31 23:59", 1.0, "A", 1.0),
            ("c1", "1970-01-01 00:00", 2.0, "A", 1.0),
            ("c1", "1997-03-05", 3.0, "A", 1.0),  # an archived store's old years are kept
            ("c1", "2024-06-30 23:00", 4.0, "A", 1.0),  # later today: still today, kept
            ("c1", "2024-07-01 00:00", 5.0, "A", 1.0),  # tomorrow: an export error
            ("c1", "2031-01-01", 6.0, "A", 1.0),
        ]
    )
    out, report = run(data, only("date_window"))
    assert out["amount"].tolist() == [2.0, 3.0, 4.0]
    detail = report.step("date_window").detail
    assert detail == {
        "start": "1970-01-01",
        "end": "2024-06-30",
        "end_from": "today",
        "before_start": 1,
        "after_end": 2,
    }


def test_date_window_last_days_counts_back_from_the_exports_last_date_in_the_window():
    data = frame(
        [
            ("c1", "2023-12-31 23:59", 1.0, "A", 1.0),  # older than the last 30 days: removed
            ("c1", "2024-01-01 00:00", 2.0, "A", 1.0),  # first kept day (31.01 minus 29 days)
            ("c1", "2024-01-31 18:00", 3.0, "A", 1.0),  # the export's last real date
            ("c1", "2030-05-05", 4.0, "A", 1.0),  # future: removed, and does not anchor the bound
        ]
    )
    out, report = run(data, only("date_window", date_window={"last_days": 31}))
    assert out["amount"].tolist() == [2.0, 3.0]
    record = report.step("date_window")
    assert record.detail == {
        "start": "1970-01-01",
        "end": "2024-06-30",
        "end_from": "today",
        "before_start": 0,
        "after_end": 1,
        "last_days": 31,
        "last_date": "2024-01-31",
        "relative_start": "2024-01-01",
        "before_relative_start": 1,
    }
    assert "only the last 31 days up to the export's last date kept (from 01.01.2024)" in (
        record.description
    )


@pytest.mark.parametrize("value", [0, -3, 2.5, "week", True])
def test_date_window_last_days_must_be_a_whole_number_of_days(value):
    with pytest.raises(UserError, match=r"clean\.date_window\.last_days="):
        resolve_rules({"date_window": {"last_days": value}})


def test_date_window_explicit_end_and_start_include_their_whole_days():
    data = frame(
        [
            ("c1", "2024-01-31 23:59", 1.0, "A", 1.0),
            ("c1", "2024-02-01 08:00", 2.0, "A", 1.0),
            ("c1", "2024-02-29 22:00", 3.0, "A", 1.0),
            ("c1", "2024-03-01 00:00", 4.0, "A", 1.0),
        ]
    )
    rules = only("date_window", date_window={"start": "2024-02-01", "end": "2024-02-29"})
    out, _ = run(data, rules)
    assert out["amount"].tolist() == [2.0, 3.0]


def test_date_window_defaults_to_the_wall_clock_when_today_is_not_given():
    tomorrow = pd.Timestamp.now().normalize() + pd.Timedelta(days=1)
    data = frame([("c1", "2024-01-01", 1.0, "A", 1.0), ("c1", tomorrow, 2.0, "A", 1.0)])
    out, _ = clean_transactions(data, only("date_window"))
    assert out["amount"].tolist() == [1.0]


# ------------------------------------------------------------------------------------ returns
def net(data: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    return run(data, only("returns"))


def test_return_is_netted_against_the_earlier_purchase_of_the_same_product():
    data = frame(
        [
            ("c1", "2024-01-01", 1000.0, "A", 5.0),
            ("c1", "2024-01-02", 300.0, "B", 1.0),
            ("c1", "2024-01-10", -400.0, "A", -2.0),
        ]
    )
    out, report = net(data)
    assert out["amount"].tolist() == [600.0, 300.0]
    assert out["quantity"].tolist() == [3.0, 1.0]
    record = report.step("returns")
    assert (record.rows_removed, record.rows_modified) == (1, 1)
    assert record.amount_out == 900.0
    assert record.detail["returns_matched"] == 1 and record.detail["returns_unmatched"] == 0


def test_several_returns_accumulate_on_one_purchase():
    data = frame(
        [
            ("c1", "2024-01-01", 1000.0, "A", 10.0),
            ("c1", "2024-01-03", -100.0, "A", -1.0),
            ("c1", "2024-01-05", -200.0, "A", 2.0),  # positive return quantity: still taken off
        ]
    )
    out, report = net(data)
    assert out["amount"].tolist() == [700.0]
    assert out["quantity"].tolist() == [7.0]
    assert report.step("returns").detail["purchases_netted"] == 1


def test_return_goes_to_the_latest_purchase_at_or_before_it():
    data = frame(
        [
            ("c1", "2024-01-01", 1000.0, "A", 1.0),
            ("c1", "2024-01-05 10:00", 500.0, "A", 1.0),
            ("c1", "2024-01-05 10:00", -50.0, "A", -1.0),  # same moment counts as "before"
            ("c1", "2024-01-09", 800.0, "A", 1.0),  # after the return: not a candidate
        ]
    )
    out, _ = net(data)
    assert out["amount"].tolist() == [1000.0, 450.0, 800.0]


def test_unmatched_returns_are_removed_and_counted():
    data = frame(
        [
            ("c1", "2024-01-01", -70.0, "A", -1.0),  # before any purchase
            ("c1", "2024-01-02", 1000.0, "A", 1.0),
            ("c1", "2024-01-03", -30.0, "B", -1.0),  # another product
            ("c2", "2024-01-04", -20.0, "A", -1.0),  # another customer
        ]
    )
    out, report = net(data)
    assert out["amount"].tolist() == [1000.0]
    detail = report.step("returns").detail
    assert detail["returns_unmatched"] == 3 and detail["returns_matched"] == 0
    assert detail["amount_unmatched"] == 120.0
    assert report.step("returns").rows_modified == 0


def test_return_larger_than_purchase_leaves_it_non_positive_and_non_positive_drops_it():
    data = frame([("c1", "2024-01-01", 100.0, "A", 1.0), ("c1", "2024-01-02", -150.0, "A", -1.0)])
    out, _ = net(data)
    assert out["amount"].tolist() == [-50.0]
    out, report = run(data, only("returns", "non_positive"))
    assert out.empty
    assert report.step("non_positive").detail == {"zero": 0, "negative": 1}


def test_netting_without_product_or_quantity_columns_uses_the_customer_latest_purchase():
    data = frame(
        [
            ("c1", "2024-01-01", 1000.0),
            ("c1", "2024-01-02", 300.0),
            ("c1", "2024-01-10", -100.0),
            ("c2", "2024-01-01", 50.0),
        ],
        columns=("customer_id", "date", "amount"),
    )
    out, report = net(data)
    assert out["amount"].tolist() == [1000.0, 200.0, 50.0]
    assert list(out.columns) == ["customer_id", "date", "amount"]
    assert report.step("returns").detail["matched_by"] == ["customer_id"]


def test_missing_product_id_matches_only_other_missing_product_ids():
    data = frame(
        [
            ("c1", "2024-01-01", 1000.0, "A", 1.0),
            ("c1", "2024-01-02", 500.0, None, 1.0),
            ("c1", "2024-01-03", -100.0, None, -1.0),
        ]
    )
    data["product_id"] = data["product_id"].where(data.index != 1).where(data.index != 2)
    out, _ = net(data)
    assert out["amount"].tolist() == [1000.0, 400.0]


def test_returns_drop_and_keep_modes():
    data = frame([("c1", "2024-01-01", 1000.0, "A", 1.0), ("c1", "2024-01-02", -400.0, "A", -1.0)])
    dropped, report = run(data, only("returns", returns={"mode": "drop"}))
    assert dropped["amount"].tolist() == [1000.0]
    assert report.step("returns").rows_modified == 0
    kept, report = run(data, only("returns", returns={"mode": "keep"}))
    assert kept["amount"].tolist() == [1000.0, -400.0]
    assert report.step("returns").rows_removed == 0


def test_non_positive_drops_zero_and_negative_lines():
    data = frame(
        [
            ("c1", "2024-01-01", 10.0, "A", 1.0),
            ("c1", "2024-01-01", 0.0, "A", 1.0),
            ("c1", "2024-01-01", -5.0, "A", 1.0),
        ]
    )
    out, _ = run(data, only("non_positive"))
    assert out["amount"].tolist() == [10.0]


# ----------------------------------------------------------------------------------- outliers
def lines(amounts: list[float]) -> pd.DataFrame:
    return frame([(f"c{i}", "2024-01-01", a, "A", 2.0) for i, a in enumerate(amounts)])


def test_line_outliers_quantile_cap_clips_amount_and_leaves_quantity():
    data = lines([1.0, 2.0, 3.0, 4.0, 100.0])
    rules = only("line_outliers", line_outliers={"method": "quantile", "q": 0.75, "action": "cap"})
    out, report = run(data, rules)
    assert out["amount"].tolist() == [1.0, 2.0, 3.0, 4.0, 4.0]
    assert out["quantity"].tolist() == [2.0] * 5
    record = report.step("line_outliers")
    assert record.rows_modified == 1 and record.rows_removed == 0
    assert record.detail["threshold"] == 4.0 and record.detail["amount_above_threshold"] == 96.0


def test_line_outliers_quantile_drop():
    data = lines([1.0, 2.0, 3.0, 4.0, 100.0])
    rules = only("line_outliers", line_outliers={"method": "quantile", "q": 0.75, "action": "drop"})
    out, _ = run(data, rules)
    assert out["amount"].tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(("k", "expected_fence"), [(1.0, 3200.0), (3.0, 51200.0)])
def test_line_outliers_iqr_fence_is_on_log_amounts(k, expected_fence):
    # logs: quartiles are ln 200 and ln 800 -> fence = 800 * 4**k
    data = lines([100.0, 200.0, 400.0, 800.0, 1e7])
    out, report = run(data, only("line_outliers", line_outliers={"method": "iqr", "k": k}))
    assert report.step("line_outliers").detail["threshold"] == pytest.approx(expected_fence)
    assert out["amount"].tolist() == [100.0, 200.0, 400.0, 800.0]  # default action: drop


def test_line_outliers_iqr_cap_and_none():
    data = lines([100.0, 200.0, 400.0, 800.0, 1e7])
    capped, _ = run(data, only("line_outliers", line_outliers={"k": 1.0, "action": "cap"}))
    assert capped["amount"].tolist() == pytest.approx([100.0, 200.0, 400.0, 800.0, 3200.0])
    flagged, report = run(data, only("line_outliers", line_outliers={"k": 1.0, "action": "none"}))
    assert flagged["amount"].tolist() == data["amount"].tolist()
    assert report.step("line_outliers").detail["lines_above"] == 1


def test_line_outliers_fixed_threshold_overrides_method():
    data = lines([100.0, 200.0, 400.0, 800.0, 1e7])
    out, _ = run(data, only("line_outliers", line_outliers={"threshold": 300.0}))
    assert out["amount"].tolist() == [100.0, 200.0]


def spenders() -> pd.DataFrame:
    # totals: a 100, b 200, c 300, d 400, e 10000 (in two lines: 4000 + 6000)
    return frame(
        [
            ("a", "2024-01-01", 100.0, "A", 1.0),
            ("b", "2024-01-01", 200.0, "A", 1.0),
            ("c", "2024-01-01", 300.0, "A", 1.0),
            ("d", "2024-01-01", 400.0, "A", 1.0),
            ("e", "2024-01-01", 4000.0, "A", 1.0),
            ("e", "2024-01-02", 6000.0, "B", 3.0),
        ]
    )


def test_customer_outliers_quantile_cap_scales_lines_to_the_fence():
    rules = only(
        "customer_outliers", customer_outliers={"method": "quantile", "q": 0.75, "action": "cap"}
    )
    out, report = run(spenders(), rules)
    assert out["amount"].tolist() == pytest.approx([100.0, 200.0, 300.0, 400.0, 160.0, 240.0])
    assert out["quantity"].tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 3.0]
    record = report.step("customer_outliers")
    assert record.rows_modified == 2 and record.rows_removed == 0
    assert record.detail["customers_above"] == 1 and record.detail["examples"] == ["e"]
    assert record.amount_out == pytest.approx(1400.0)


def test_customer_outliers_iqr_drop_removes_all_their_lines():
    # log totals: quartiles ln 200 and ln 400 -> fence = 400 * 2**k = 800 with k = 1
    rules = only("customer_outliers", customer_outliers={"k": 1.0, "action": "drop"})
    out, report = run(spenders(), rules)
    assert out["customer_id"].tolist() == ["a", "b", "c", "d"]
    assert report.step("customer_outliers").detail["threshold"] == pytest.approx(800.0)
    assert report.step("customer_outliers").rows_removed == 2


def test_customer_outliers_iqr_cap():
    rules = only("customer_outliers", customer_outliers={"k": 1.0, "action": "cap"})
    out, _ = run(spenders(), rules)
    assert out.groupby("customer_id")["amount"].sum()["e"] == pytest.approx(800.0)


def test_defaults_drop_typo_lines_but_keep_wholesale_customers():
    """A seeded store: 400 retail customers, 20 wholesale ones (baskets ~15x bigger), and three
    lines with extra zeros typed in. The defaults must remove exactly the typos.

    A x100 typo on a cheap retail line can land among genuine wholesale lines (here 1,574 ₽ x 100 =
    157k ₽ while the biggest wholesale line is 196k ₽): no line-level rule can tell those apart, so
    the planted typos are x300 and more."""
    rng = np.random.default_rng(7)
    rows = []
    for c in range(420):
        wholesale = c >= 400
        n = int(rng.integers(8, 20) if wholesale else rng.integers(1, 8))
        scale = 15.0 if wholesale else 1.0
        for amount in np.exp(rng.normal(np.log(1500 * scale), 0.8, n)):
            rows.append(
                (f"{'w' if wholesale else 'r'}{c}", "2024-03-01", round(amount, 2), "A", 1.0)
            )
    data = frame(rows)
    typo_rows = [5, 200, 700]
    typo = data.loc[typo_rows, "amount"] * np.array([300.0, 500.0, 1000.0])
    data.loc[typo_rows, "amount"] = typo
    out, report = run(data, DEFAULT_RULES)
    assert set(data.index) - set(out.index) == set(typo_rows)
    assert report.step("customer_outliers").detail["customers_above"] == 0
    assert out["amount"].equals(data["amount"].drop(typo_rows))


# ------------------------------------------------------------------------ switches and schema
def messy() -> pd.DataFrame:
    return frame(
        [
            ("c1", "2024-01-01", 1000.0, "A", 2.0),
            ("c1", "2024-01-01", 1000.0, "A", 2.0),
            ("c1", "2024-01-05", -400.0, "A", -1.0),
            ("c2", None, 100.0, "A", 1.0),
            ("c2", "2024-02-01", np.nan, "A", 1.0),
            (None, "2024-02-01", 10.0, "A", 1.0),
            ("TEST-9", "2024-02-01", 10.0, "A", 1.0),
            ("c3", "2035-01-01", 10.0, "A", 1.0),
            ("c3", "2024-02-02", 0.0, "B", 1.0),
            ("c3", "2024-02-03", 250.0, "B", 1.0),
            ("c4", "2024-02-04", -30.0, "B", -1.0),
        ]
    )


def test_all_rules_disabled_change_nothing():
    data = messy()
    out, report = run(data, {name: {"enabled": False} for name in STEP_ORDER})
    pd.testing.assert_frame_equal(out, data)
    assert all(not r.enabled and r.rows_removed == 0 and r.rows_modified == 0 for r in report.steps)


@pytest.mark.parametrize("name", STEP_ORDER)
def test_each_rule_can_be_switched_off_alone(name):
    data = messy()
    rules = {step: {} for step in STEP_ORDER} | {name: {"enabled": False}}
    _, report = run(data, rules)
    record = report.step(name)
    assert not record.enabled and record.rows_in == record.rows_out
    assert record.amount_in == record.amount_out


def test_defaults_on_messy_frame_and_input_not_mutated():
    data = messy()
    before = data.copy(deep=True)
    out, report = run(data, DEFAULT_RULES)
    pd.testing.assert_frame_equal(data, before)
    # c1: duplicate dropped, 1000 - 400 = 600; c3: the 250 line; everything else is dirt
    assert out["customer_id"].tolist() == ["c1", "c3"]
    assert out["amount"].tolist() == [600.0, 250.0]
    assert out["quantity"].tolist() == [1.0, 1.0]
    removed = {r.name: r.rows_removed for r in report.steps}
    assert removed == {
        "invalid_values": 2,
        "missing_customer": 1,
        "test_accounts": 1,
        "duplicates": 1,
        "date_window": 1,
        "returns": 2,
        "non_positive": 1,
        "line_outliers": 0,
        "customer_outliers": 0,
    }
    assert report.step("returns").detail["returns_unmatched"] == 1


def test_only_required_columns_run_through_every_rule():
    data = messy()[["customer_id", "date", "amount"]]
    out, report = run(data, DEFAULT_RULES)
    assert list(out.columns) == ["customer_id", "date", "amount"]
    assert out["amount"].tolist() == [600.0, 250.0]
    assert report.rows_clean == 2


def test_empty_frame_runs_through_every_rule():
    out, report = run(messy().iloc[:0], DEFAULT_RULES)
    assert out.empty and report.rows_raw == 0 and report.rows_clean == 0
    json.dumps(report.to_dict(), allow_nan=False)


def test_missing_required_column_is_a_user_error():
    with pytest.raises(UserError, match="amount"):
        run(messy().drop(columns="amount"), DEFAULT_RULES)


# -------------------------------------------------------------------------------------- report
def test_report_arithmetic_adds_up():
    data = messy()
    _, report = run(data, DEFAULT_RULES)
    assert [r.name for r in report.steps] == list(STEP_ORDER)
    assert report.rows_raw == len(data) == report.steps[0].rows_in
    assert report.amount_raw == pytest.approx(1000 + 1000 - 400 + 100 + 10 + 10 + 10 + 250 - 30)
    for previous, record in zip(report.steps, report.steps[1:], strict=False):
        assert record.rows_in == previous.rows_out
        assert record.amount_in == pytest.approx(previous.amount_out)
    for record in report.steps:
        assert record.rows_out == record.rows_in - record.rows_removed
    assert report.rows_clean == report.steps[-1].rows_out == 2
    assert report.amount_clean == pytest.approx(850.0)


def test_report_to_dict_is_plain_json():
    _, report = run(messy(), DEFAULT_RULES)
    as_dict = report.to_dict()
    text = json.dumps(as_dict, allow_nan=False)
    again = json.loads(text)
    assert again == as_dict
    assert (again["rows_raw"], again["rows_clean"]) == (11, 2)
    assert again["amount_clean"] == 850.0
    assert again["steps"][5]["name"] == "returns"
    assert again["steps"][5]["detail"]["returns_unmatched"] == 1


def test_report_table_is_aligned_with_thousands_separators():
    data = frame([(f"c{i}", "2024-01-01", 1234.5, "A", 1.0) for i in range(1200)])
    _, report = run(data, DEFAULT_RULES)
    table = report.to_table()
    assert "1,200" in table and "1\u00a0481\u00a0400" in table  # rubles grouped as Russians do
    assert table.splitlines()[0].endswith("₽ change     ₽ left")
    assert "returns netted against the customer's earlier purchase of the same product" in table
    lines_ = table.splitlines()
    assert len(lines_) == 1 + 1 + 1 + len(STEP_ORDER) + 1 + 1  # header, rules, raw, steps, total
    # right-aligned numeric columns: "lines left" ends at the same position on every row
    ends = {line.index("1,200") + len("1,200") for line in lines_ if "1,200" in line}
    assert len(ends) == 1


def test_report_states_its_currency_and_writes_amounts_in_it():
    data = frame([(f"c{i}", "2024-01-01", 100.0, "A", 1.0) for i in range(30)])
    data.loc[0, "amount"] = 1_000_000.0  # a typo line: removed by line_outliers
    _, report = clean_transactions(data, DEFAULT_RULES, today=TODAY, currency_code="gbp")
    as_json = report.to_dict()
    assert as_json["currency"] == "GBP"
    assert as_json["amount_raw"] == 1_002_900.0 and as_json["amount_clean"] == 2_900.0
    assert not [key for key in json.dumps(as_json).split('"') if "ruble" in key]
    assert set(as_json["steps"][0]) >= {"amount_in", "amount_out", "amount_change"}
    step = report.step("line_outliers")
    assert step.description == "single lines above £100 (likely typos) removed"
    assert step.detail["amount_above_threshold"] == 999_900.0
    table = report.to_table()
    assert (
        "£ change" in table and "1,002,900" in table and "−1,000,000" in table and "₽" not in table
    )


def test_unknown_currency_code_is_a_user_error_naming_the_setting():
    data = frame([("c1", "2024-01-01", 100.0, "A", 1.0)])
    with pytest.raises(UserError, match=r"data\.currency='pounds': expected a three-letter"):
        clean_transactions(data, None, today=TODAY, currency_code="pounds")


# ------------------------------------------------------------------------------------ settings
def test_yaml_defaults_equal_code_defaults():
    yaml_rules = OmegaConf.to_container(OmegaConf.load(CONF))
    assert yaml_rules == DEFAULT_RULES


def test_rules_left_out_get_the_defaults():
    assert resolve_rules({}) == DEFAULT_RULES
    assert resolve_rules({"returns": {"mode": "drop"}})["returns"] == {
        "enabled": True,
        "mode": "drop",
    }


@pytest.mark.parametrize(
    ("rules", "setting"),
    [
        ({"retuns": {}}, "clean.retuns"),
        ({"returns": {"mod": "net"}}, "clean.returns.mod"),
        ({"returns": {"mode": "subtract"}}, "clean.returns.mode"),
        ({"returns": False}, "clean.returns"),
        ({"returns": {"enabled": "no"}}, "clean.returns.enabled"),
        ({"line_outliers": {"method": "zscore"}}, "clean.line_outliers.method"),
        ({"customer_outliers": {"action": "clip"}}, "clean.customer_outliers.action"),
        ({"line_outliers": {"q": 1.5}}, "clean.line_outliers.q"),
        ({"line_outliers": {"k": "big"}}, "clean.line_outliers.k"),
        ({"test_accounts": {"pattern": "(test"}}, "clean.test_accounts.pattern"),
        ({"date_window": {"start": "soon"}}, "clean.date_window.start"),
    ],
)
def test_bad_settings_are_user_errors_naming_the_setting(rules, setting):
    with pytest.raises(UserError, match=rf"^{setting.replace('.', '[.]')}\b"):
        run(messy(), rules)


def test_freeze_thresholds_writes_measured_fences_into_the_rules():
    data = lines([100.0, 200.0, 400.0, 800.0, 1e7])
    rules = OmegaConf.to_container(OmegaConf.load(CONF))
    _, report = run(data, rules)
    frozen = freeze_thresholds(rules, report)
    assert frozen["line_outliers"]["threshold"] == pytest.approx(51200.0)
    assert (
        frozen["customer_outliers"]["threshold"]
        == report.step("customer_outliers").detail["threshold"]
    )
    assert rules["line_outliers"]["threshold"] is None  # input untouched
    # a two-line export judged by the frozen fence: the 60,000 line is a typo there too
    small = lines([100.0, 60000.0])
    out, _ = run(small, frozen)
    assert out["amount"].tolist() == [100.0]


def test_an_outlier_fence_nobody_reaches_is_named_by_its_rule_not_its_amount():
    # Spends spread over a decade: the customers' fence, Q3 + 5 IQR of log totals, lies far above
    # anyone (billions); written as an amount it would read as a cap of billions.
    data = frame([(f"c{i}", "2024-01-01", 10.0 * 1.3**i, "A", 1.0) for i in range(30)])
    _, report = clean_transactions(data, DEFAULT_RULES, today=TODAY, currency_code="gbp")
    step = report.step("customer_outliers")
    assert step.detail["threshold"] > 1e6 and step.detail["customers_above"] == 0
    assert step.description == (
        "no customer's total above the outlier fence, Q3 + 5 IQR of log amounts "
        "(the largest is £20,154): none capped"  # 10 x 1.3^29
    )
