import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from src.errors import UserError
from src.features.rfm import (
    EXTRAS,
    check_log_columns,
    compute_rfm,
    default_snapshot,
    make_transformer,
)

DAY = pd.Timedelta(days=1)


def lines(rows: list[tuple]) -> pd.DataFrame:
    """A canonical table from (customer_id, date, amount, order_id, product_id) tuples."""
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount", "order_id", "product_id"])
    return frame.astype(
        {
            "customer_id": "str",
            "date": "datetime64[ns]",
            "amount": "float64",
            "order_id": "str",
            "product_id": "str",
        }
    )


def store() -> pd.DataFrame:
    """Three customers, several orders of several lines, one line after 2024-03-10."""
    return lines(
        [
            ("c1", "2024-03-01 10:00", 100.0, "A", "p1"),
            ("c1", "2024-03-05 15:30", 30.0, "B", "p1"),
            ("c1", "2024-03-01 10:00", 50.0, "A", "p2"),  # order A's lines are not adjacent
            ("c2", "2024-03-09 09:00", 200.0, "C", "p1"),
            ("c2", "2024-03-09 18:00", 20.0, "D", None),  # second order on the same day
            ("c10", "2024-02-20 00:00", 5.5, "E", "p3"),
            ("c10", "2024-03-10 12:00", 1000.0, "F", "p3"),  # on/after a 2024-03-10 snapshot
        ]
    )


def test_default_snapshot_is_midnight_after_last_day():
    assert default_snapshot(store()) == pd.Timestamp("2024-03-11")


def test_rfm_hand_computed_with_default_snapshot():
    rfm = compute_rfm(store())
    assert list(rfm.index) == ["c1", "c10", "c2"]  # sorted as strings
    assert rfm.index.name == "customer_id"
    assert list(rfm.columns) == ["recency", "frequency", "monetary"]
    # c1: last 03-05 15:30 -> 5 days 8.5 h; c10: 03-10 12:00 -> 0.5 day; c2: 03-09 18:00 -> 1.25
    assert rfm["recency"].tolist() == [5.0, 0.0, 1.0]
    assert rfm["frequency"].tolist() == [2, 2, 2]
    assert rfm["monetary"].tolist() == pytest.approx([180.0, 1005.5, 220.0])
    assert rfm.dtypes.to_dict() == {
        "recency": np.dtype("float64"),
        "frequency": np.dtype("int64"),
        "monetary": np.dtype("float64"),
    }


def test_lines_on_or_after_snapshot_are_ignored():
    rfm = compute_rfm(store(), snapshot=pd.Timestamp("2024-03-10"))
    assert rfm.loc["c10"].tolist() == [19.0, 1.0, 5.5]  # 02-20 -> 03-10 (leap year), order F gone
    assert rfm.loc["c1", "recency"] == 4.0
    assert rfm.loc["c2", "recency"] == 0.0
    exactly = compute_rfm(store(), snapshot=pd.Timestamp("2024-03-10 12:00"))
    assert exactly.loc["c10", "frequency"] == 1  # a line dated exactly at the snapshot is out


def test_customer_with_lines_only_after_snapshot_is_absent():
    rfm = compute_rfm(store(), snapshot=pd.Timestamp("2024-03-06"))
    assert list(rfm.index) == ["c1", "c10"]


def test_extras_hand_computed_in_requested_order():
    extras = ("days_between_orders", "n_products", "avg_order_value", "tenure")
    rfm = compute_rfm(store(), extras=extras)
    assert list(rfm.columns) == ["recency", "frequency", "monetary", *extras]
    assert rfm["tenure"].tolist() == [9.0, 20.0, 1.0]
    assert rfm["avg_order_value"].tolist() == pytest.approx([90.0, 502.75, 110.0])
    assert rfm["n_products"].tolist() == [2, 1, 1]  # c2's line without a product is not one
    # c1: 03-01 -> 03-05; c10: 02-20 -> 03-10; c2 bought on one day only: max(tenure, 1)
    assert rfm["days_between_orders"].tolist() == [4.0, 19.0, 1.0]
    later = compute_rfm(store(), snapshot=pd.Timestamp("2024-03-20"), extras=extras)
    assert later.loc["c2", "days_between_orders"] == 10.0  # tenure: 03-09 09:00 -> 03-20


def test_mean_gap_between_distinct_days():
    frame = lines(
        [
            ("a", "2024-01-01", 1.0, "1", "x"),
            ("a", "2024-01-01 20:00", 1.0, "2", "x"),
            ("a", "2024-01-03", 1.0, "3", "x"),
            ("a", "2024-01-10", 1.0, "4", "x"),
        ]
    )
    rfm = compute_rfm(frame, extras=("days_between_orders",))
    assert rfm.loc["a", "days_between_orders"] == pytest.approx(4.5)  # gaps 2 and 7


def test_without_order_column_one_order_per_customer_per_day():
    rfm = compute_rfm(store().drop(columns="order_id"))
    assert rfm["frequency"].tolist() == [2, 2, 1]  # c2's two orders share a day


def test_missing_order_ids_fall_back_to_customer_day():
    frame = store()
    frame.loc[frame["order_id"].isin(["C", "D"]), "order_id"] = None
    frame.loc[frame["order_id"] == "E", "order_id"] = None
    rfm = compute_rfm(frame)
    assert rfm["frequency"].tolist() == [2, 2, 1]


def test_row_order_does_not_matter():
    frame = store()
    expected = compute_rfm(frame, extras=EXTRAS)
    for seed in range(5):
        shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        pd.testing.assert_frame_equal(compute_rfm(shuffled, extras=EXTRAS), expected)


def test_numeric_ids_stay_distinct_strings_sorted_as_text():
    frame = lines(
        [
            ("9", "2024-01-01", 1.0, "100", "x"),
            ("10", "2024-01-02", 2.0, "101", "x"),
            ("100", "2024-01-03", 3.0, "102", "x"),
            ("007", "2024-01-04", 4.0, "103", "x"),
            ("7", "2024-01-05", 5.0, "104", "x"),
            ("9", "2024-01-06", 6.0, "105", "x"),
        ]
    )
    rfm = compute_rfm(frame)
    assert list(rfm.index) == ["007", "10", "100", "7", "9"]
    assert rfm["monetary"].tolist() == [4.0, 2.0, 3.0, 5.0, 7.0]
    assert rfm["frequency"].tolist() == [1, 1, 1, 1, 2]


def test_order_id_shared_by_two_customers_counts_for_both():
    frame = lines(
        [
            ("a", "2024-01-01", 1.0, "X", "p"),
            ("b", "2024-01-01", 1.0, "X", "p"),
            ("a", "2024-01-02", 1.0, "Y", "p"),
        ]
    )
    assert compute_rfm(frame)["frequency"].tolist() == [2, 1]


def test_input_is_not_mutated():
    frame = store()
    before = frame.copy(deep=True)
    compute_rfm(frame, snapshot=pd.Timestamp("2024-03-10"), extras=EXTRAS)
    pd.testing.assert_frame_equal(frame, before)


def test_unknown_extra_names_setting_and_allowed_values():
    with pytest.raises(
        UserError, match=r"features\.extras.*'loyalty'.*tenure.*days_between_orders"
    ):
        compute_rfm(store(), extras=("tenure", "loyalty"))


def test_n_products_without_product_column_is_a_user_error():
    with pytest.raises(UserError, match=r"features\.extras.*product_id"):
        compute_rfm(store().drop(columns="product_id"), extras=("n_products",))


def test_missing_required_column_is_a_user_error():
    with pytest.raises(UserError, match="amount"):
        compute_rfm(store().drop(columns="amount"))


def test_nothing_before_snapshot_is_a_user_error():
    with pytest.raises(UserError, match=r"features\.snapshot_date=2020-01-01"):
        compute_rfm(store(), snapshot=pd.Timestamp("2020-01-01"))


# ------------------------------------------------------------------------ property: vs groupby


def reference_rfm(frame: pd.DataFrame, snapshot: pd.Timestamp | None) -> pd.DataFrame:
    """The plain pandas groupby the fast implementation must agree with."""
    snapshot = frame["date"].max().normalize() + DAY if snapshot is None else snapshot
    frame = frame[frame["date"] < snapshot]
    day = frame["date"].dt.floor("D")
    fallback = frame["customer_id"] + "|" + day.dt.strftime("%Y-%m-%d")
    frame = frame.assign(order_id=frame["order_id"].fillna(fallback), day=day)
    groups = frame.groupby("customer_id", sort=True)
    last, first = groups["date"].max(), groups["date"].min()
    out = pd.DataFrame(
        {
            "recency": ((snapshot - last) // DAY).astype("float64"),
            "frequency": groups["order_id"].nunique().astype("int64"),
            "monetary": groups["amount"].sum().astype("float64"),
        }
    )
    tenure = ((snapshot - first) // DAY).astype("float64")
    n_days = groups["day"].nunique()
    span = (groups["day"].max() - groups["day"].min()) / DAY
    out["tenure"] = tenure
    out["avg_order_value"] = out["monetary"] / out["frequency"]
    out["n_products"] = groups["product_id"].nunique().astype("int64")
    out["days_between_orders"] = np.where(
        n_days > 1, span / (n_days - 1).clip(lower=1), np.maximum(tenure, 1.0)
    )
    return out


customer_ids = st.sampled_from(
    [
        ["a", "b", "c", "d", "e"],
        ["1", "2", "10", "11", "100"],
        ["01", "1", "ЦБ-7", "Тест", "x y"],
    ]
)


start = pd.Timestamp("2024-01-01")
line_fields = st.tuples(
    st.integers(0, 4),  # customer (index into the id set)
    st.integers(0, 60 * 24 * 30),  # minutes after `start`
    st.integers(-10_000, 100_000),  # kopecks
    st.sampled_from([None, "1", "2", "3", "10", "o7", "o8"]),  # order id
    st.sampled_from([None, "p1", "p2", "p3"]),  # product id
)


@st.composite
def tables(draw):
    ids = draw(customer_ids)
    rows = [
        (ids[c], start + pd.Timedelta(minutes=m), k / 100, o, p)
        for c, m, k, o, p in draw(st.lists(line_fields, min_size=1, max_size=40))
    ]
    frame = lines(rows)
    if draw(st.booleans()):  # grouped like an export: runs of the same order
        frame = frame.sort_values(["order_id", "customer_id"], kind="stable").reset_index(drop=True)
    snapshot = draw(st.one_of(st.none(), st.integers(1, 31).map(lambda d: start + d * DAY)))
    return frame, snapshot


@settings(max_examples=100, deadline=None)
@given(tables())
def test_matches_pandas_groupby(case):
    frame, snapshot = case
    expected = reference_rfm(frame, snapshot)
    if expected.empty:
        with pytest.raises(UserError):
            compute_rfm(frame, snapshot=snapshot, extras=EXTRAS)
        return
    got = compute_rfm(frame, snapshot=snapshot, extras=EXTRAS)
    assert list(got.index) == list(expected.index)
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True),
        expected[list(got.columns)].reset_index(drop=True),
        check_exact=False,
        rtol=1e-9,
        atol=1e-6,
    )


# ------------------------------------------------------------------------------------ transform


def rfm_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "recency": rng.integers(0, 400, 200).astype(float),
            "frequency": rng.geometric(0.3, 200).astype("int64"),
            "monetary": rng.lognormal(7, 1.5, 200),
        },
        index=pd.Index([f"c{i}" for i in range(200)], name="customer_id"),
    )


def test_log_standard_gives_unit_columns_of_log_values():
    rfm = rfm_table()
    X = make_transformer({"log": True, "scaler": "standard"}, seed=0).fit_transform(rfm)
    assert isinstance(X, np.ndarray)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X.std(axis=0), 1.0, atol=1e-12)
    logged = np.log1p(rfm.to_numpy())
    np.testing.assert_allclose(X, (logged - logged.mean(axis=0)) / logged.std(axis=0))


def test_negative_monetary_is_clipped_before_log():
    rfm = pd.DataFrame({"recency": [1.0, 3.0], "frequency": [1, 2], "monetary": [-50.0, 99.0]})
    X = make_transformer({"log": True, "scaler": "none"}, seed=0).fit_transform(rfm)
    np.testing.assert_allclose(X[:, 2], [0.0, np.log(100.0)])


def test_log_list_logs_only_the_named_columns_in_place():
    table = pd.DataFrame(
        {"expected_value": [10.0, 1000.0], "recency": [3.0, 30.0], "frequency": [1, 9]}
    )
    spec = OmegaConf.create({"log": ["recency", "frequency"], "scaler": "none"})
    X = make_transformer(spec, seed=0).fit_transform(table)
    np.testing.assert_allclose(X[:, 0], [10.0, 1000.0])  # money stays money
    np.testing.assert_allclose(X[:, 1:], np.log1p([[3.0, 1.0], [30.0, 9.0]]))


def test_log_list_must_name_feature_columns():
    check_log_columns(["recency"], ["expected_value", "recency"])
    check_log_columns(True, ["recency"])
    with pytest.raises(UserError, match=r"features\.transform\.log: \['monetry'\] not among"):
        check_log_columns(["monetry"], ["recency", "frequency", "monetary"])


def test_no_log_no_scaler_is_identity():
    rfm = rfm_table()
    X = make_transformer({"log": False, "scaler": "none"}, seed=0).fit_transform(rfm)
    np.testing.assert_array_equal(np.asarray(X, dtype=float), rfm.to_numpy(dtype=float))


@pytest.mark.parametrize(
    "scaler", ["standard", "robust", "quantile", "yeo-johnson", "box-cox", "none"]
)
@pytest.mark.filterwarnings("ignore:n_quantiles:UserWarning")
def test_pickle_round_trip_keeps_output_and_names(scaler):
    rfm = rfm_table()
    fitted = make_transformer(OmegaConf.create({"log": True, "scaler": scaler}), seed=3).fit(rfm)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(rfm), fitted.transform(rfm))
    assert list(restored.get_feature_names_out()) == list(rfm.columns)


def test_robust_centres_on_median():
    X = make_transformer({"log": False, "scaler": "robust"}, seed=0).fit_transform(rfm_table())
    np.testing.assert_allclose(np.median(X, axis=0), 0.0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:n_quantiles:UserWarning")
def test_quantile_is_seeded_and_near_normal():
    rfm = rfm_table()
    first = make_transformer({"log": True, "scaler": "quantile"}, seed=7).fit_transform(rfm)
    again = make_transformer({"log": True, "scaler": "quantile"}, seed=7).fit_transform(rfm)
    np.testing.assert_array_equal(first, again)
    assert abs(float(np.median(first[:, 2]))) < 0.05


def test_unknown_scaler_names_setting():
    with pytest.raises(UserError, match=r"features\.transform\.scaler=minmax.*standard, robust"):
        make_transformer({"log": True, "scaler": "minmax"}, seed=0)


def test_non_boolean_log_is_a_user_error():
    with pytest.raises(UserError, match=r"features\.transform\.log"):
        make_transformer({"log": "yes", "scaler": "standard"}, seed=0)


@pytest.mark.parametrize("scaler", ["yeo-johnson", "box-cox"])
def test_power_transforms_standardise_each_column(scaler):
    X = make_transformer({"log": True, "scaler": scaler}, seed=0).fit_transform(rfm_table())
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(X.std(axis=0), 1.0, atol=1e-6)


def test_unknown_transform_key_is_named():
    with pytest.raises(UserError, match=r"features.transform: unknown key\(s\) \['scalar'\]"):
        make_transformer({"log": True, "scalar": "robust"}, seed=0)
