from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime

from src.errors import UserError
from src.features.clv import (
    GammaGamma,
    MbgNbd,
    customer_value,
    expected_purchases,
    expected_spend,
    fit_gamma_gamma,
    fit_mbgnbd,
    gamma_gamma_gradient,
    gamma_gamma_log_likelihood,
    mbgnbd_gradient,
    mbgnbd_log_likelihood,
    p_alive,
    rfm_summary,
    segment_value,
    simulate_summary,
)

# Daily-scale truths, roughly a small online shop: a purchase every ~2 months while alive.
TRUE_MBGNBD = MbgNbd(r=0.6, alpha=40.0, a=0.8, b=3.0, log_likelihood=np.nan, n_customers=0)
TRUE_GG = GammaGamma(p=5.0, q=4.0, v=600.0, log_likelihood=np.nan, n_customers=0)


def lines(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    return frame.astype({"customer_id": "str", "date": "datetime64[ns]", "amount": "float64"})


def test_summary_counts_purchase_days_and_ignores_lines_from_the_snapshot_on():
    table = lines(
        [
            ("b", "2024-03-01 10:00", 100.0),
            ("b", "2024-03-01 18:00", 50.0),  # same day: one purchase of 150
            ("b", "2024-03-05 09:00", 30.0),
            ("b", "2024-03-08 09:00", 90.0),
            ("a", "2024-03-09 12:00", 70.0),  # one purchase only
            ("z", "2024-03-02 12:00", 10.0),
            ("z", "2024-03-04 12:00", 20.0),
            ("z", "2024-03-04 13:00", -20.0),  # returned the same day: repeat spend nets to 0
            ("b", "2024-03-10 00:00", 999.0),  # at the snapshot: ignored
        ]
    )
    summary = rfm_summary(table, pd.Timestamp("2024-03-10"))
    assert summary.index.tolist() == ["a", "b", "z"]
    assert summary.to_dict("index") == {
        "a": {"frequency": 0.0, "recency": 0.0, "T": 0.0, "monetary": 0.0},
        "b": {"frequency": 2.0, "recency": 7.0, "T": 8.0, "monetary": 60.0},
        "z": {"frequency": 1.0, "recency": 2.0, "T": 7.0, "monetary": 0.0},
    }


def test_summary_default_snapshot_is_midnight_after_the_last_line():
    table = lines([("a", "2024-03-01 10:00", 5.0), ("a", "2024-03-04 23:00", 7.0)])
    assert rfm_summary(table).loc["a", ["recency", "T"]].tolist() == [3.0, 3.0]


def test_summary_names_the_missing_column():
    with pytest.raises(UserError, match="amount"):
        rfm_summary(lines([("a", "2024-03-01", 1.0)]).drop(columns="amount"), None)


def test_fits_recover_the_parameters_the_data_was_drawn_from():
    summary = simulate_summary(30_000, TRUE_MBGNBD, TRUE_GG, max_age_days=730, seed=3)
    mbgnbd, gg = fit_mbgnbd(summary), fit_gamma_gamma(summary)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(mbgnbd, name) == pytest.approx(getattr(TRUE_MBGNBD, name), rel=0.15), name
    for name in ("p", "q", "v"):
        assert getattr(gg, name) == pytest.approx(getattr(TRUE_GG, name), rel=0.15), name
    assert mbgnbd.n_customers == 30_000
    assert gg.n_customers == int((summary["frequency"] > 0).sum())


def test_gradients_match_finite_differences():
    summary = simulate_summary(50, TRUE_MBGNBD, TRUE_GG, max_age_days=365, seed=4)
    x, t_x, T, m = (summary[c].to_numpy() for c in ("frequency", "recency", "T", "monetary"))
    repeat = x > 0
    cases = [
        (mbgnbd_log_likelihood, mbgnbd_gradient, np.array([0.6, 40.0, 0.8, 3.0]), (x, t_x, T)),
        (
            gamma_gamma_log_likelihood,
            gamma_gamma_gradient,
            np.array([5.0, 4.0, 600.0]),
            (x[repeat], m[repeat]),
        ),
    ]
    for likelihood, gradient, params, data in cases:
        total = lambda p, f=likelihood, d=data: f(p, *d).sum()  # noqa: E731
        numeric = approx_fprime(params, total, 1e-6 * params)
        np.testing.assert_allclose(gradient(params, *data).sum(axis=1), numeric, rtol=1e-4)


def test_fit_is_deterministic():
    summary = simulate_summary(3_000, TRUE_MBGNBD, TRUE_GG, max_age_days=365, seed=1)
    assert fit_mbgnbd(summary) == fit_mbgnbd(summary)
    assert fit_gamma_gamma(summary) == fit_gamma_gamma(summary)


def _simulate_future(n: int, days: float, horizon: float, seed: int):
    """Customers of age `days` under TRUE_MBGNBD, followed for `horizon` more days: their summary,
    purchases in the horizon, and whether each was still alive at `days`."""
    rng = np.random.default_rng(seed)
    t = TRUE_MBGNBD
    rate = rng.gamma(t.r, 1.0 / t.alpha, size=n)
    # The dropout comes right after the first purchase or a repeat purchase: 0, 1, ... repeats.
    lifetime_purchases = rng.geometric(rng.beta(t.a, t.b, size=n)) - 1
    arrivals = rng.poisson(rate * (days + horizon))
    owner = np.repeat(np.arange(n), arrivals)
    times = rng.uniform(0, days + horizon, size=owner.size)
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(arrivals) - arrivals, arrivals)
    kept = rank < lifetime_purchases[owner]  # no purchase after the dropout
    owner, times = owner[kept], times[kept]
    past = times <= days
    x = np.bincount(owner[past], minlength=n)
    t_x = np.zeros(n)
    np.maximum.at(t_x, owner[past], times[past])
    future = np.bincount(owner[~past], minlength=n)
    summary = pd.DataFrame(
        {"frequency": x.astype(float), "recency": t_x, "T": np.full(n, days), "monetary": 1.0}
    )
    return summary, future, lifetime_purchases > x


def test_expectations_match_what_simulated_customers_do_next():
    summary, future, alive = _simulate_future(40_000, days=365.0, horizon=90.0, seed=7)
    predicted = expected_purchases(summary, TRUE_MBGNBD, horizon_days=90)
    assert predicted.sum() == pytest.approx(future.sum(), rel=0.03)
    buyers = summary["frequency"] >= 3  # a conditional expectation, not just the average
    assert predicted[buyers].sum() == pytest.approx(future[buyers.to_numpy()].sum(), rel=0.05)
    probability = p_alive(summary, TRUE_MBGNBD)
    assert probability.mean() == pytest.approx(alive.mean(), abs=0.01)
    one_time = (summary["frequency"] == 0).to_numpy()
    assert probability[one_time].mean() == pytest.approx(alive[one_time].mean(), abs=0.015)


def test_p_alive_falls_with_the_time_since_the_last_purchase():
    summary = pd.DataFrame(
        {"frequency": [3.0, 3.0, 3.0], "recency": [100.0, 100.0, 100.0], "T": [100, 200, 400]}
    )
    assert p_alive(summary, TRUE_MBGNBD).is_monotonic_decreasing
    assert p_alive(summary, TRUE_MBGNBD).iloc[0] > p_alive(summary, TRUE_MBGNBD).iloc[-1]
    longer = expected_purchases(summary, TRUE_MBGNBD, 180)
    assert (longer > expected_purchases(summary, TRUE_MBGNBD, 90)).all()


def test_p_alive_of_a_one_time_buyer_falls_with_the_time_since_their_purchase():
    summary = pd.DataFrame({"frequency": 0.0, "recency": 0.0, "T": [0.0, 30.0, 180.0, 365.0]})
    probability = p_alive(summary, TRUE_MBGNBD)
    t = TRUE_MBGNBD
    # Just after the purchase: alive unless they dropped out at it, 1 - E[p] = b / (a + b).
    assert probability.iloc[0] == pytest.approx(t.b / (t.a + t.b))
    assert (probability.diff().iloc[1:] < 0).all()
    assert probability.iloc[-1] < 0.5
    assert (expected_purchases(summary, TRUE_MBGNBD, 90).diff().iloc[1:] < 0).all()


def test_expected_spend_shrinks_towards_the_population_mean():
    summary = pd.DataFrame({"frequency": [0.0, 1.0, 50.0], "monetary": [0.0, 5000.0, 5000.0]})
    spend = expected_spend(summary, TRUE_GG)
    population = TRUE_GG.p * TRUE_GG.v / (TRUE_GG.q - 1)  # 1000
    assert spend.iloc[0] == pytest.approx(population)
    assert population < spend.iloc[1] < spend.iloc[2] < 5000.0


def test_gamma_gamma_skips_customers_without_positive_repeat_spend():
    summary = simulate_summary(2_000, TRUE_MBGNBD, TRUE_GG, max_age_days=730, seed=2)
    with_zeros = pd.concat(
        [summary, pd.DataFrame({"frequency": [2.0, 0.0], "recency": 5.0, "T": 9.0, "monetary": 0})]
    )
    assert fit_gamma_gamma(with_zeros) == fit_gamma_gamma(summary)


def test_one_time_buyers_only_is_a_user_error():
    summary = pd.DataFrame({"frequency": [0.0] * 5, "recency": 0.0, "T": 30.0, "monetary": 0.0})
    with pytest.raises(UserError, match="repeat purchase"):
        fit_mbgnbd(summary)
    with pytest.raises(UserError, match="Gamma-Gamma"):
        fit_gamma_gamma(summary)


def test_a_fit_that_does_not_converge_is_a_user_error():
    # Everyone buys daily and nobody ever lapses: the dropout probability runs off to 0.
    summary = pd.DataFrame(
        {"frequency": [100.0, 200.0, 300.0], "recency": [100, 200, 300], "T": [100, 200, 300]}
    )
    with pytest.raises(UserError, match="MBG/NBD fit on 3 customers did not converge"):
        fit_mbgnbd(summary)


def test_bad_horizon_is_a_user_error():
    summary = pd.DataFrame({"frequency": [1.0], "recency": [1.0], "T": [2.0]})
    with pytest.raises(UserError, match="horizon_days=0"):
        expected_purchases(summary, TRUE_MBGNBD, 0)


# --------------------------------------------------------------------------------------------
# CDNOW: agreement with lifetimes (its dev-only reference), Gamma-Gamma's published parameters
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_weeks() -> pd.DataFrame:
    """The CDNOW 1/10 sample (2,357 customers) that lifetimes ships, summarised at 1997-09-30,
    in weeks as in Fader, Hardie & Lee (2005)."""
    lifetimes = pytest.importorskip("lifetimes")
    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    raw = pd.read_csv(
        path, sep=r"\s+", header=None, names=["master", "customer_id", "date", "cds", "amount"],
        dtype={"customer_id": str, "date": str},
    )  # fmt: skip
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    summary = rfm_summary(raw, pd.Timestamp("1997-10-01"))
    summary[["recency", "T"]] /= 7.0
    return summary


def test_cdnow_gamma_gamma_reproduces_the_published_parameters(cdnow_weeks):
    assert len(cdnow_weeks) == 2357
    gg = fit_gamma_gamma(cdnow_weeks)
    assert (round(gg.p, 2), round(gg.q, 2), round(gg.v, 2)) == (6.25, 3.74, 15.44)


def test_cdnow_agrees_with_lifetimes(cdnow_weeks):
    lifetimes = pytest.importorskip("lifetimes")
    x, t_x, T = (cdnow_weeks[c] for c in ("frequency", "recency", "T"))
    theirs = lifetimes.ModifiedBetaGeoFitter().fit(x, t_x, T)
    ours = fit_mbgnbd(cdnow_weeks)
    their_params = theirs.params_[["r", "alpha", "a", "b"]].to_numpy()
    for name, value in zip(("r", "alpha", "a", "b"), their_params, strict=True):
        assert getattr(ours, name) == pytest.approx(value, rel=1e-3), name
    # lifetimes fits on rescaled times: its log-likelihood, per customer, at its parameters here.
    their_log_likelihood = -len(x) * theirs._negative_log_likelihood(
        np.log(their_params), x.to_numpy(), t_x.to_numpy(), T.to_numpy(), np.ones(len(x)), 0.0
    )
    assert ours.log_likelihood == pytest.approx(their_log_likelihood, abs=1e-3)
    assert ours.log_likelihood >= their_log_likelihood - 1e-5  # not stopped short of the optimum
    np.testing.assert_allclose(
        p_alive(cdnow_weeks, ours), theirs.conditional_probability_alive(x, t_x, T), rtol=1e-3
    )
    np.testing.assert_allclose(
        expected_purchases(cdnow_weeks, ours, 39),
        theirs.conditional_expected_number_of_purchases_up_to_time(39, x, t_x, T),
        rtol=1e-3,
    )
    repeat = cdnow_weeks[cdnow_weeks["frequency"] > 0]
    gg_theirs = lifetimes.GammaGammaFitter().fit(repeat["frequency"], repeat["monetary"])
    gg = fit_gamma_gamma(cdnow_weeks)
    for name in ("p", "q", "v"):
        assert getattr(gg, name) == pytest.approx(gg_theirs.params_[name], rel=1e-3), name
    np.testing.assert_allclose(
        expected_spend(repeat, gg),
        gg_theirs.conditional_expected_average_profit(repeat["frequency"], repeat["monetary"]),
        rtol=1e-3,
    )


def test_segment_value_sums_customer_value_by_segment():
    summary = pd.DataFrame(
        {"frequency": [0.0, 4.0, 4.0], "recency": [0.0, 300.0, 50.0], "T": [365.0] * 3,
         "monetary": [0.0, 900.0, 900.0]},
        index=pd.Index(["new", "active", "lapsed"], name="customer_id"),
    )  # fmt: skip
    value = customer_value(summary, TRUE_MBGNBD, TRUE_GG, horizon_days=90)
    assert value["expected_value"].tolist() == pytest.approx(
        (value["expected_purchases"] * value["expected_spend"]).tolist()
    )
    assert value.loc["active", "p_alive"] > value.loc["lapsed", "p_alive"]
    labels = pd.Series([1, 0, 1], index=["active", "lapsed", "new"], name="segment_id")
    table = segment_value(value, labels)
    assert table.index.tolist() == [0, 1] and table.index.name == "segment_id"
    assert table["customers"].tolist() == [1, 2]
    one = value.loc[["active", "new"]]
    assert table.loc[1, "expected_value"] == pytest.approx(one["expected_value"].sum())
    assert table.loc[1, "p_alive"] == pytest.approx(one["p_alive"].mean())
    assert table.loc[1, "expected_value_per_customer"] == pytest.approx(
        one["expected_value"].mean()
    )
    assert table["value_share"].sum() == pytest.approx(1.0)
    assert table.loc[1, "value_share"] > table.loc[0, "value_share"]
