"""Probabilistic lifetime value per customer: MBG/NBD purchases and Gamma-Gamma spend.

The models are fitted by maximum likelihood directly on the published likelihoods, with numpy and
scipy only (``experiments/clv_library.md`` compares this with lifetimes and pymc-marketing):

- MBG/NBD (Batislam, Denizel & Filiztekin 2007, the "modified" BG/NBD of Fader, Hardie & Lee
  2005; lifetimes' ModifiedBetaGeoFitter): while alive, a customer buys as a Poisson process with
  rate lambda ~ Gamma(r, alpha); right after their first purchase and after each repeat purchase
  they drop out with probability p ~ Beta(a, b). Unlike BG/NBD, which cannot lose a customer
  before their first repeat purchase (P(alive) = 1 for every one-time buyer), a one-time buyer's
  P(alive) falls with the time since their purchase. The likelihood of (x, t_x, T) has a closed
  form in gamma functions; the conditional expectation of future purchases needs Gauss's 2F1.
- Gamma-Gamma (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"): order values are
  Gamma(p, nu) with nu ~ Gamma(q, v), independent of the purchase process.

Time is in days throughout. A "purchase" is a day with at least one line (orders of one customer
on the same day are one purchase), as in the papers and in lifetimes: the model's clock cannot
tell apart two orders placed minutes apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1
from threadpoolctl import threadpool_limits

from src.data.schema import AMOUNT, CUSTOMER_ID, DATE
from src.errors import UserError
from src.features.rfm import default_snapshot

FREQUENCY = "frequency"  # repeat purchases: purchase days after the first
RECENCY = "recency"  # days from the first to the last purchase day
AGE = "T"  # days from the first purchase day to the last day before the snapshot
MONETARY = "monetary"  # mean spend of the repeat purchase days (0 without repeat purchases)
SUMMARY = (FREQUENCY, RECENCY, AGE, MONETARY)

DEFAULT_HORIZON_DAYS = 90
_DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class MbgNbd:
    """Fitted MBG/NBD parameters: purchase rate ~ Gamma(r, alpha) (alpha in days), dropout
    probability per purchase (the first one included) ~ Beta(a, b); `log_likelihood` summed over
    `n_customers`."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma parameters: order value ~ Gamma(p, nu), nu ~ Gamma(q, v) (v in the
    store's currency); fitted on the `n_customers` with repeat purchases of positive value."""

    p: float
    q: float
    v: float
    log_likelihood: float
    n_customers: int


# --------------------------------------------------------------------------------------------
# Per-customer summary
# --------------------------------------------------------------------------------------------


def rfm_summary(transactions: pd.DataFrame, snapshot: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per customer (index ``customer_id``, sorted): frequency, recency, T, monetary.

    Lines dated at or after `snapshot` are ignored; the observation ends on the last day before
    it, so a midnight snapshot of 1997-10-01 gives T up to 1997-09-30 as in the CDNOW papers.
    Spend per purchase day is the sum of its lines' amounts (net of returns left by cleaning).
    `snapshot` defaults to ``default_snapshot`` (midnight after the last line), as for RFM.
    """
    missing = [c for c in (CUSTOMER_ID, DATE, AMOUNT) if c not in transactions.columns]
    if missing:
        raise UserError(f"transactions: missing column(s) {missing} for the lifetime-value summary")
    snapshot = default_snapshot(transactions) if snapshot is None else pd.Timestamp(snapshot)
    dates = transactions[DATE].to_numpy(dtype="datetime64[ns]")
    keep = ~np.isnat(dates) & (dates < snapshot.to_datetime64())
    if not keep.any():
        raise UserError(f"column {DATE!r}: no lines before the snapshot {snapshot}")
    end_day = (snapshot - pd.Timedelta(1, "ns")).floor("D").to_datetime64()
    codes, customers = pd.factorize(transactions[CUSTOMER_ID].to_numpy()[keep], sort=True)
    days = dates[keep].astype("datetime64[D]").astype(np.int64)
    amounts = transactions[AMOUNT].to_numpy(dtype="float64")[keep]
    # One entry per (customer, day), ordered by customer then day.
    span = int(days.max() - days.min()) + 1
    keys, inverse = np.unique(codes * span + (days - days.min()), return_inverse=True)
    day_spend = np.bincount(inverse.ravel(), weights=amounts, minlength=len(keys))
    owner, day = keys // span, keys % span + days.min()
    n = len(customers)
    n_days = np.bincount(owner, minlength=n)
    starts = np.concatenate([[0], np.cumsum(n_days)[:-1]])
    first, last = day[starts], day[starts + n_days - 1]
    first_spend = day_spend[starts]
    total = np.bincount(owner, weights=day_spend, minlength=n)
    frequency = (n_days - 1).astype("float64")
    repeat_spend = total - first_spend
    monetary = np.divide(repeat_spend, frequency, out=np.zeros(n), where=frequency > 0)
    end = end_day.astype("datetime64[D]").astype(np.int64)
    return pd.DataFrame(
        {
            FREQUENCY: frequency,
            RECENCY: (last - first).astype("float64"),
            AGE: (end - first).astype("float64"),
            MONETARY: monetary,
        },
        index=pd.Index(customers, name=CUSTOMER_ID),
    )


# --------------------------------------------------------------------------------------------
# MBG/NBD
# --------------------------------------------------------------------------------------------


def mbgnbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer log-likelihood of (x, t_x, T) under (r, alpha, a, b): Batislam et al. 2007
    (lifetimes' ModifiedBetaGeoFitter), the sum of "alive at T" and "dropped after the last
    purchase at t_x", the second also for customers without repeat purchases."""
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x + 1) - betaln(a, b)
    return common + np.logaddexp(*_alive_and_dropped(params, x, t_x, T))


def mbgnbd_gradient(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer gradient of ``mbgnbd_log_likelihood`` in (r, alpha, a, b): shape (4, n)."""
    r, alpha, a, b = params
    still_alive, dropped = _alive_and_dropped(params, x, t_x, T)
    w_dropped = np.exp(dropped - np.logaddexp(still_alive, dropped))  # share of the second term
    w_alive = 1.0 - w_dropped
    return np.stack(
        [
            digamma(r + x) - digamma(r) + np.log(alpha)
            - w_alive * np.log(alpha + T) - w_dropped * np.log(alpha + t_x),
            r / alpha - (r + x) * (w_alive / (alpha + T) + w_dropped / (alpha + t_x)),
            digamma(a + b) - digamma(a + b + x + 1) + w_dropped / a,
            digamma(b + x + 1) - digamma(a + b + x + 1) - digamma(b) + digamma(a + b)
            - w_dropped / (b + x),
        ]
    )  # fmt: skip


def _alive_and_dropped(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two log terms of the likelihood besides the common factor: still alive at T, and
    dropped out right after the last purchase, at t_x (0 for one-time buyers)."""
    r, alpha, a, b = params
    still_alive = -(r + x) * np.log(alpha + T)
    dropped = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + t_x)
    return still_alive, dropped


def fit_mbgnbd(summary: pd.DataFrame) -> MbgNbd:
    """Maximum-likelihood MBG/NBD parameters for `summary` (from ``rfm_summary``).

    Deterministic: the optimiser starts from r = a = b = 1 and alpha = the mean age T, on log
    parameters (L-BFGS-B). Raises UserError when the data cannot identify the model (no customer
    with a repeat purchase) or the optimiser does not converge.
    """
    x, t_x, T = (_column(summary, c) for c in (FREQUENCY, RECENCY, AGE))
    if not (x > 0).any():
        raise UserError(
            f"lifetime value: none of the {len(x):,} customers has a repeat purchase, "
            "so the MBG/NBD purchase model cannot be fitted"
        )
    if (t_x > T).any() or (T < 0).any():
        raise UserError("lifetime value: summary has recency > T or negative T (snapshot?)")
    # Identical (x, t_x, T) rows share one likelihood term: weight them instead of repeating.
    rows, weights = np.unique(np.stack([x, t_x, T]), axis=1, return_counts=True)
    start = np.log([1.0, max(float(T.mean()), 1.0), 1.0, 1.0])

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        value = weights @ mbgnbd_log_likelihood(params, *rows)
        gradient = mbgnbd_gradient(params, *rows) @ weights * params  # chain rule: d/d log
        return -float(value) / len(x), -gradient / len(x)

    fitted = _minimise(objective, start, "MBG/NBD", len(x))
    r, alpha, a, b = np.exp(fitted.x)
    return MbgNbd(float(r), float(alpha), float(a), float(b), -fitted.fun * len(x), len(x))


def p_alive(summary: pd.DataFrame, model: MbgNbd) -> pd.Series:
    """Probability that each customer is still active at the end of the observation (Batislam
    et al. 2007, appendix eq. 5); for one-time buyers too, falling with the time since their
    purchase."""
    x, t_x, T = (_column(summary, c) for c in (FREQUENCY, RECENCY, AGE))
    odds = _dropout_odds(model, x, t_x, T)
    return pd.Series(1.0 / (1.0 + odds), index=summary.index, name="p_alive")


def expected_purchases(
    summary: pd.DataFrame, model: MbgNbd, horizon_days: float = DEFAULT_HORIZON_DAYS
) -> pd.Series:
    """Expected purchases of each customer in the next `horizon_days` (Wagner & Hoppe 2008, the
    erratum to Batislam et al.; lifetimes' conditional expectation)."""
    if horizon_days <= 0:
        raise UserError(f"lifetime value horizon_days={horizon_days}: must be positive")
    x, t_x, T = (_column(summary, c) for c in (FREQUENCY, RECENCY, AGE))
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    t = float(horizon_days)
    ratio = ((alpha + T) / (alpha + T + t)) ** (r + x)
    series = hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + T + t))
    unconditional = (a + b + x) / (a - 1) * (1 - ratio * series)
    values = unconditional / (1 + _dropout_odds(model, x, t_x, T))
    if not np.isfinite(values).all():
        raise UserError(
            f"lifetime value: expected purchases are not finite for horizon_days={horizon_days} "
            f"(fitted a={a:.3g}; a = 1 makes the MBG/NBD expectation undefined)"
        )
    return pd.Series(values, index=summary.index, name="expected_purchases")


def _dropout_odds(model: MbgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(dropped) / P(alive) given the history."""
    params = np.array([model.r, model.alpha, model.a, model.b])
    still_alive, dropped = _alive_and_dropped(params, x, t_x, T)
    return np.exp(np.minimum(dropped - still_alive, 700.0))


# --------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------


def gamma_gamma_log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood of mean spend `m` over `x` purchases (Fader & Hardie 2013)."""
    p, q, v = params
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + x * m)
    )


def gamma_gamma_gradient(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer gradient of ``gamma_gamma_log_likelihood`` in (p, q, v): shape (3, n)."""
    p, q, v = params
    px = p * x
    return np.stack(
        [
            x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - np.log(v + x * m)),
            digamma(px + q) - digamma(q) + np.log(v) - np.log(v + x * m),
            q / v - (px + q) / (v + x * m),
        ]
    )


def fit_gamma_gamma(summary: pd.DataFrame) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma parameters on the customers with repeat purchases of
    positive mean value (the model has no zero spend). Starts from p = q = 1, v = the mean
    spend; raises UserError when fewer than 2 customers qualify or the fit does not converge."""
    x, m = _column(summary, FREQUENCY), _column(summary, MONETARY)
    usable = (x > 0) & (m > 0)
    if usable.sum() < 2:
        raise UserError(
            f"lifetime value: {int(usable.sum())} customer(s) with repeat purchases of positive "
            "value; the Gamma-Gamma spend model needs at least 2"
        )
    x, m = x[usable], m[usable]
    start = np.log([1.0, 1.0, float(m.mean())])

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        value = gamma_gamma_log_likelihood(params, x, m).sum()
        gradient = gamma_gamma_gradient(params, x, m).sum(axis=1) * params  # d/d log
        return -float(value) / len(x), -gradient / len(x)

    fitted = _minimise(objective, start, "Gamma-Gamma", len(x))
    p, q, v = np.exp(fitted.x)
    return GammaGamma(float(p), float(q), float(v), -fitted.fun * len(x), len(x))


def expected_spend(summary: pd.DataFrame, model: GammaGamma) -> pd.Series:
    """Expected spend per future purchase: the posterior mean p (v + x m) / (p x + q - 1).
    Customers without repeat purchases get the population mean p v / (q - 1)."""
    if model.q <= 1:
        raise UserError(
            f"lifetime value: Gamma-Gamma q={model.q:.3g} <= 1 has no finite mean spend "
            "(a few huge orders dominate; check the cleaning's outlier rules)"
        )
    x, m = _column(summary, FREQUENCY), _column(summary, MONETARY)
    values = model.p * (model.v + x * m) / (model.p * x + model.q - 1)
    return pd.Series(values, index=summary.index, name="expected_spend")


# --------------------------------------------------------------------------------------------
# Value per customer and per segment
# --------------------------------------------------------------------------------------------


def customer_value(
    summary: pd.DataFrame,
    mbgnbd: MbgNbd,
    gamma_gamma: GammaGamma,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
) -> pd.DataFrame:
    """Per customer: p_alive, expected_purchases and expected_spend (per purchase) over the next
    `horizon_days`, and expected_value = their product (undiscounted, in the store's currency)."""
    value = pd.concat(
        [
            p_alive(summary, mbgnbd),
            expected_purchases(summary, mbgnbd, horizon_days),
            expected_spend(summary, gamma_gamma),
        ],
        axis=1,
    )
    value["expected_value"] = value["expected_purchases"] * value["expected_spend"]
    return value


def segment_value(value: pd.DataFrame, segment: pd.Series) -> pd.DataFrame:
    """Per segment (index: the labels of `segment`, aligned on customer_id): customers, and over
    the horizon of `value`: mean p_alive, mean expected purchases and spend per customer
    (expected_value_per_customer), the segment's expected_value (sum) and its value_share."""
    if not value.index.equals(segment.index):
        segment = segment.reindex(value.index)
        if segment.isna().any():
            raise ValueError("segment labels do not cover every customer in `value`")
    groups = value.groupby(segment.to_numpy())
    table = pd.DataFrame(
        {
            "customers": groups.size(),
            "p_alive": groups["p_alive"].mean(),
            "expected_purchases": groups["expected_purchases"].mean(),
            "expected_value_per_customer": groups["expected_value"].mean(),
            "expected_value": groups["expected_value"].sum(),
        }
    )
    table["value_share"] = table["expected_value"] / value["expected_value"].sum()
    table.index.name = segment.name
    return table


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _column(summary: pd.DataFrame, name: str) -> np.ndarray:
    if name not in summary.columns:
        raise UserError(f"lifetime-value summary: missing column {name!r} (see rfm_summary)")
    return summary[name].to_numpy(dtype="float64")


def _minimise(objective, start: np.ndarray, model: str, n: int):
    """L-BFGS-B on log parameters (`objective` returns the value and its gradient), bounded to exp(+-30) so no parameter over/underflows."""
    # One BLAS thread: L-BFGS-B's small matrix products only lose to thread start-up and spinning
    # (CDNOW's fit: 0.25 s with OpenBLAS's default threads on a busy 2-core machine, 0.015 s so).
    # ftol below scipy's 2.2e-9: MBG/NBD's likelihood is flat enough on CDNOW that the default
    # stops 2e-6 short of the optimum, 5e-4 away from lifetimes' parameters (3 more iterations).
    with threadpool_limits(limits=1):
        result = minimize(
            objective, start, jac=True, method="L-BFGS-B",
            bounds=[(-30.0, 30.0)] * len(start), options={"ftol": 1e-12},
        )  # fmt: skip
    at_bound = np.abs(result.x).max() > 29.0
    if not result.success or not np.isfinite(result.fun) or at_bound:
        raise UserError(
            f"lifetime value: the {model} fit on {n:,} customers did not converge "
            f"({result.message}; log-parameters {np.round(result.x, 2).tolist()})"
        )
    return result


# --------------------------------------------------------------------------------------------
# Simulation from known parameters (tests and ``python -m src.bench clv``)
# --------------------------------------------------------------------------------------------


def simulate_summary(
    n: int, mbgnbd: MbgNbd, gamma_gamma: GammaGamma, max_age_days: float, seed: int
) -> pd.DataFrame:
    """A summary of `n` customers drawn from the two models, ages uniform on (0, max_age_days].

    Repeat purchases follow a Poisson process until the dropout, which comes after a geometric
    number of them counted from 0 (a dropout right after the first purchase leaves none); given n
    arrivals in (0, T], the k-th arrival time is T * Beta(k, n - k + 1).
    """
    rng = np.random.default_rng(seed)
    T = rng.uniform(0.0, max_age_days, size=n) + 1e-9
    rate = rng.gamma(mbgnbd.r, 1.0 / mbgnbd.alpha, size=n)
    dropout = rng.beta(mbgnbd.a, mbgnbd.b, size=n)
    arrivals = rng.poisson(rate * T)
    lifetime_purchases = rng.geometric(np.clip(dropout, 1e-12, 1.0)) - 1
    x = np.minimum(arrivals, lifetime_purchases)
    t_x = np.zeros(n)
    bought = x > 0
    t_x[bought] = T[bought] * rng.beta(x[bought], arrivals[bought] - x[bought] + 1)
    nu = rng.gamma(gamma_gamma.q, 1.0 / gamma_gamma.v, size=n)
    monetary = np.zeros(n)
    monetary[bought] = rng.gamma(gamma_gamma.p * x[bought], 1.0 / nu[bought]) / x[bought]
    return pd.DataFrame(
        {FREQUENCY: x.astype("float64"), RECENCY: t_x, AGE: T, MONETARY: monetary},
        index=pd.RangeIndex(n, name=CUSTOMER_ID),
    )
