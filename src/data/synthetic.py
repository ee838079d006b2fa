"""The embedded sample store: a deterministic, realistic 1C:ERP sale-line export of an online shop.

Customers come from latent behavioural groups (``GROUPS``), each a buy-till-you-die process in the
BG/NBD spirit: a purchase rate drawn from a gamma, purchases as a Poisson process whose intensity
follows the shop's calendar (weekday and New-Year seasonality), and a per-purchase dropout
probability drawn from a beta (or, for "lapsing", a fixed stop date 6-15 months before the end).
So the groups differ in recency, frequency and monetary value the way real segments do, with
realistic overlap, and the truth sidecar (``truth_path``) lets tests and experiments measure how
well a clustering recovers them.

The export then gets the dirt real 1C exports have, at the rates of ``DirtRates``: guest lines
without a customer, lines exported twice, returns, zero-sum gifts, typo amounts, test accounts,
unreadable and future dates, and 1C's formatting quirks (Russian number strings, dotted dates,
customer ids as strings). Everything is drawn from one seeded generator with vectorised numpy, so
the same (n_customers, seed) gives the same bytes and 100k customers take seconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import tempfile
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from src.errors import UserError

GENERATOR_VERSION = 1  # bump when the output for a given (n, seed) changes: the cache key uses it

HISTORY_END = date(2026, 6, 30)  # fixed, so the data never moves and is never future-dated
HISTORY_START = date(2023, 7, 1)  # three years of history, HISTORY_END inclusive
GROUPS: tuple[str, ...] = (
    "new",
    "loyal_high_value",
    "regular",
    "lapsing",
    "one_off_lost",
    "wholesale",
)
KEYS = (
    "date",
    "order_id",
    "sale_id",
    "site_id",
    "quantity",
    "sum",
    "address",
    "StockCode",
    "CustomerID",
)

_DAYS = (HISTORY_END - HISTORY_START).days + 1
_START = np.datetime64(HISTORY_START.isoformat(), "s")
_END_TS = _DAYS * 86_400 - 1  # last second of HISTORY_END, in seconds since HISTORY_START
_NBSP = "\u00a0"
_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f\u2028\u2029]')  # what JSON must or may escape
_ORDER_ID_BASE = 300_001
_SALE_ID_BASE = 1_000_001
_CACHE_ENV = "CUSTOMER_SEGMENTATION_CACHE"


# --------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class DirtRates:
    """How dirty the export is. Shares are of the clean customer lines (before dirt is added).

    Quirk shares (`dotted_dates`, `string_numbers`, `string_customer_ids`) are of all lines; the
    loader absorbs them. All shares must lie in [0, 1).
    """

    missing_customer: float = 0.01  # guest lines with CustomerID null
    duplicates: float = 0.005  # lines exported twice (byte-identical records)
    returns: float = 0.015  # negative copies of an earlier line of the same customer
    zero_sum: float = 0.003  # zero-sum lines (gifts) added to existing orders
    outliers: float = 0.0005  # a line's sum multiplied by 100-1000 (extra zeros typed)
    test_lines: float = 0.002  # lines of internal test accounts
    test_accounts: tuple[str, ...] = ("TEST-001", "TEST-002", "тест_менеджер")
    malformed_dates: float = 0.0005  # "not a date", "31.02.2024", ...
    future_dates: float = 0.0005  # a line dated in 2031
    string_numbers: float = 0.05  # sums / quantities written as "1 234,50" (NBSP, decimal comma)
    dotted_dates: float = 0.10  # "05.03.2025 9:22:10" instead of ISO
    string_customer_ids: float = 0.10  # "123456" instead of 123456 (same customer)

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "test_accounts":
                if not all(isinstance(v, str) and v for v in value):
                    raise ValueError(f"DirtRates.test_accounts: non-empty strings, got {value!r}")
            elif not 0.0 <= float(value) < 1.0:
                raise ValueError(f"DirtRates.{item.name}={value}: expected a share in [0, 1)")

    @classmethod
    def clean(cls) -> DirtRates:
        """No dirt and no format quirks at all: every record as tidy as JSON allows."""
        zero = {f.name: 0.0 for f in fields(cls) if f.name != "test_accounts"}
        return cls(**zero, test_accounts=())


@dataclass(frozen=True)
class _Group:
    """One latent behavioural group: how its customers arrive, buy, leave and fill baskets."""

    share: float
    first_ago: tuple[float, float]  # first purchase this many days before the end (max, min)
    orders_per_year: float  # mean of the gamma-distributed purchase rate (0: single purchase)
    rate_shape: float  # gamma shape: smaller = more spread between customers
    dropout: tuple[float, float] | None  # beta(a, b) of the per-purchase dropout probability
    stop_ago: tuple[float, float] | None  # stopped buying this many days before the end (lapsing)
    lines_mean: float  # mean lines per order (geometric)
    qty_p: float | None  # geometric p of units per line; None = wholesale log-normal lots
    price_tilt: float  # product weights x price**tilt: >0 prefers dearer goods
    max_price: float | None  # only goods up to this price (wholesale buys consumables)


# fmt: off
_SPECS: dict[str, _Group] = {
    # first purchase in the last 3 months; a few come back soon, many drop after one order
    "new": _Group(
        share=0.15, first_ago=(92, 0), orders_per_year=5.0, rate_shape=2.0, dropout=(1.0, 9.0),
        stop_ago=None, lines_mean=2.0, qty_p=0.8, price_tilt=0.0, max_price=None,
    ),
    # frequent, rarely leave, bigger baskets of dearer goods
    "loyal_high_value": _Group(
        share=0.10, first_ago=(_DAYS, 365), orders_per_year=9.0, rate_shape=6.0,
        dropout=(1.0, 150.0), stop_ago=None, lines_mean=2.0, qty_p=0.6, price_tilt=0.4,
        max_price=None,
    ),
    "regular": _Group(
        share=0.30, first_ago=(_DAYS, 150), orders_per_year=3.2, rate_shape=8.0,
        dropout=(1.0, 100.0), stop_ago=None, lines_mean=1.6, qty_p=0.8, price_tilt=0.0,
        max_price=None,
    ),
    # bought like regulars, then stopped 6-15 months before the end (their last order is there)
    "lapsing": _Group(
        share=0.20, first_ago=(_DAYS, 240), orders_per_year=3.0, rate_shape=6.0, dropout=None,
        stop_ago=(183, 456), lines_mean=1.6, qty_p=0.8, price_tilt=0.0, max_price=None,
    ),
    # one order, more than a year ago
    "one_off_lost": _Group(
        share=0.22, first_ago=(_DAYS, 365), orders_per_year=0.0, rate_shape=1.0, dropout=None,
        stop_ago=None, lines_mean=1.6, qty_p=0.85, price_tilt=-0.1, max_price=None,
    ),
    # few, steady, lots of tens of units of cheap consumables
    "wholesale": _Group(
        share=0.03, first_ago=(_DAYS, 180), orders_per_year=4.0, rate_shape=4.0,
        dropout=(1.0, 150.0), stop_ago=None, lines_mean=3.0, qty_p=None, price_tilt=0.0,
        max_price=1200.0,
    ),
}
# fmt: on
assert tuple(_SPECS) == GROUPS

_VETERAN_SHARE = 0.5  # long-standing groups: share who already bought before HISTORY_START
_SITES = np.array([1, 2, 3])
_SITE_SHARES = np.array([0.65, 0.25, 0.10])
_N_PRODUCTS = 4000
_WEEKLY = np.array([1.15, 1.15, 1.10, 1.05, 0.95, 0.80, 0.80])  # Mon..Sun: office-hours shop
_HOURLY = np.array(
    [0.3, 0.15, 0.1, 0.05, 0.05, 0.1, 0.3, 0.6, 1.0, 1.4, 1.7, 1.8]
    + [1.8, 1.7, 1.6, 1.5, 1.5, 1.6, 1.8, 2.0, 2.1, 1.9, 1.4, 0.8]
)
_BAD_DATES = (
    "not a date",
    "31.02.2024",
    "31.02.2024 12:00:00",
    "00.00.0000 0:00:00",
    "2024-02-30T10:15:00",
)
_FUTURE_YEAR = 2031

_CITIES = (
    ("Москва", 30),
    ("Санкт-Петербург", 12),
    ("Новосибирск", 4),
    ("Екатеринбург", 4),
    ("Казань", 3.5),
    ("Нижний Новгород", 3),
    ("Челябинск", 2.5),
    ("Самара", 2.5),
    ("Омск", 2),
    ("Ростов-на-Дону", 2.5),
    ("Уфа", 2),
    ("Красноярск", 2),
    ("Воронеж", 2),
    ("Пермь", 2),
    ("Волгоград", 2),
    ("Краснодар", 3),
    ("Тюмень", 1.5),
    ("Ижевск", 1),
    ("Иркутск", 1),
    ("Ярославль", 1),
    ("Владивосток", 1),
    ("Тула", 1),
    ("Калининград", 1),
    ("Сочи", 1),
    ("Подольск", 1.5),
    ("Химки", 1.5),
    ("Мытищи", 1),
    ("Балашиха", 1.5),
    ("Красногорск", 1),
)
_STREETS = (
    "ул. Ленина",
    "ул. Мира",
    "ул. Советская",
    "ул. Гагарина",
    "ул. Пушкина",
    "ул. Садовая",
    "ул. Молодёжная",
    "ул. Школьная",
    "ул. Лесная",
    "ул. Центральная",
    "ул. Новая",
    "ул. Набережная",
    "ул. Октябрьская",
    "ул. Первомайская",
    "ул. Зелёная",
    "ул. Строителей",
    "ул. Чехова",
    "ул. Кирова",
    "ул. Южная",
    "ул. Комсомольская",
    "пр-т Мира",
    "пр-т Победы",
    "Ленинский пр-т",
    "пр-т Ветеранов",
    "пер. Почтовый",
    "пер. Тихий",
    "б-р Космонавтов",
    "Цветной б-р",
    "ш. Энтузиастов",
    "Каширское ш.",
    "наб. Фонтанки",
    "ул. Профсоюзная",
)
_TEST_ADDRESS = "г. Москва, ул. Тестовая, д. 1, офис 1С"


# --------------------------------------------------------------------------------------- calendar
@dataclass(frozen=True)
class _Calendar:
    """Daily purchase intensity (mean 1) and its cumulative sum, for the inhomogeneous Poisson."""

    weight: np.ndarray  # (_DAYS,)
    cum: np.ndarray  # (_DAYS + 1,), cum[0] = 0

    def at(self, t: np.ndarray) -> np.ndarray:
        """Cumulative intensity at continuous times `t` (days since HISTORY_START)."""
        day = np.clip(np.floor(t).astype(np.int64), 0, _DAYS - 1)
        return self.cum[day] + self.weight[day] * (t - day)

    def inverse(self, u: np.ndarray) -> np.ndarray:
        """Times whose cumulative intensity is `u`: uniform u gives seasonal times."""
        day = np.clip(np.searchsorted(self.cum, u, side="right") - 1, 0, _DAYS - 1)
        frac = np.clip((u - self.cum[day]) / self.weight[day], 0.0, 1.0 - 1e-9)
        return day + frac


def _bump(doy: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((doy - centre) / width) ** 2)


def yearly_profile(doy: np.ndarray) -> np.ndarray:
    """Relative demand by day of year: 11.11 and Black Friday sales, the New-Year gift peak in
    December, dead January holidays, a summer lull, 23 February and 8 March gifts."""
    doy = np.asarray(doy, dtype=float)
    profile = (
        1.0
        + 0.30 * ((doy >= 305) & (doy <= 358))
        + 0.35 * _bump(doy, 315, 3)
        + 0.40 * _bump(doy, 331, 4)
        + 0.80 * _bump(doy, 352, 9)
        - 0.10 * _bump(doy, 205, 25)
        + 0.15 * _bump(doy, 52, 3)
        + 0.30 * _bump(doy, 64, 3)
    )
    return np.where(doy <= 8, 0.55, profile)


def _calendar() -> _Calendar:
    days = np.arange(_DAYS)
    dates = pd.DatetimeIndex(np.datetime64(HISTORY_START.isoformat(), "D") + days)
    growth = 1.0 + 0.2 * days / _DAYS  # the shop grows a little
    weight = (
        _WEEKLY[dates.day_of_week.to_numpy()]
        * yearly_profile(dates.day_of_year.to_numpy())
        * growth
    )
    weight = weight / weight.mean()
    return _Calendar(weight, np.concatenate([[0.0], np.cumsum(weight)]))


# ----------------------------------------------------------------------------- catalog, customers
@dataclass(frozen=True)
class _Catalog:
    site: np.ndarray  # site index 0..2 of each (site_id, StockCode) pair
    code: np.ndarray  # StockCode strings (object)
    price: np.ndarray  # rubles
    popularity: np.ndarray  # Zipf weights


def _pretty_prices(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shop prices: 1499, 249, 89; one good in ten has a kopeck price (a supplier's price list)."""
    step = np.where(raw >= 1000, 100.0, 10.0)
    price = np.maximum(np.round(raw / step) * step - 1, 19.0)
    exact = rng.random(raw.size) < 0.1
    return np.where(exact, np.round(np.maximum(raw, 19.0), 2), price)


def _catalog(rng: np.random.Generator) -> _Catalog:
    n = _N_PRODUCTS
    site = rng.choice(len(_SITES), size=n, p=_SITE_SHARES)
    codes = rng.choice(900_000, size=n, replace=False) + 100_000
    # A quarter of the smaller sites' goods are the main site's items under the same code.
    main = np.flatnonzero(site == 0)
    shared = np.flatnonzero((site != 0) & (rng.random(n) < 0.25))
    codes[shared] = codes[rng.choice(main, size=shared.size, replace=False)]
    price = _pretty_prices(rng.lognormal(np.log(1500.0), 0.8, size=n), rng)
    popularity = (rng.permutation(n) + 1.0) ** -0.7
    code = np.array([f"ЦБ-{c:06d}" for c in codes.tolist()], dtype=object)
    return _Catalog(site, code, price, popularity)


def _addresses(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` Russian delivery addresses: city, street, house (sometimes a building), flat."""
    weights = np.array([w for _, w in _CITIES], dtype=float)
    city = rng.choice(len(_CITIES), size=n, p=weights / weights.sum())
    street = rng.integers(len(_STREETS), size=n)
    house = np.minimum(rng.geometric(0.04, size=n), 250)
    building = np.where(rng.random(n) < 0.15, rng.integers(1, 6, size=n), 0)
    flat = np.where(rng.random(n) < 0.85, rng.integers(1, 400, size=n), 0)
    cities = [name for name, _ in _CITIES]
    out = [
        f"г. {cities[c]}, {_STREETS[s]}, д. {h}{f'к{b}' if b else ''}{f', кв. {f}' if f else ''}"
        for c, s, h, b, f in zip(
            city.tolist(),
            street.tolist(),
            house.tolist(),
            building.tolist(),
            flat.tolist(),
            strict=True,
        )
    ]
    return np.array(out, dtype=object)


def _group_counts(n: int) -> np.ndarray:
    """Exact group sizes closest to the shares (largest remainder)."""
    shares = np.array([_SPECS[g].share for g in GROUPS])
    raw = shares / shares.sum() * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


# ---------------------------------------------------------------------------------- purchases
def _uniform_seasonal(
    rng: np.random.Generator, cal: _Calendar, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """One seasonal time in [lo, hi) per element."""
    a, b = cal.at(lo), cal.at(hi)
    return cal.inverse(a + rng.random(a.size) * (b - a))


def _purchase_days(
    rng: np.random.Generator, cal: _Calendar, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(customer index, time in days) of every order: first purchase, repeats, lapsing's last."""
    n = group.size
    earliest = np.array([min(_SPECS[g].first_ago[0], _DAYS) for g in GROUPS])[group]
    latest = np.array([_SPECS[g].first_ago[1] for g in GROUPS])[group]
    stop = np.zeros(n)
    lapsing = group == GROUPS.index("lapsing")
    stop_min, stop_max = _SPECS["lapsing"].stop_ago or (0, 0)
    stop[lapsing] = rng.uniform(stop_min, stop_max, size=int(lapsing.sum()))
    end = _DAYS - stop  # alive until here
    mean_rate = np.array([_SPECS[g].orders_per_year for g in GROUPS])[group] / 365.25
    shape = np.array([_SPECS[g].rate_shape for g in GROUPS])[group]
    rate = rng.gamma(shape, mean_rate / shape)

    lo, hi = _DAYS - earliest, np.maximum(_DAYS - latest - stop, 1.0)
    first = _uniform_seasonal(rng, cal, lo, hi)
    # Customers from before the export window: first seen at their first purchase after its start
    # (an exponential wait in calendar-intensity time), so early months are not empty.
    veteran = (lo <= 0) & (rate > 0) & (rng.random(n) < _VETERAN_SHARE)
    wait = cal.inverse(rng.exponential(1.0, size=n) / np.where(rate > 0, rate, 1.0))
    first = np.where(veteran & (wait < hi), wait, first)
    # MBG/NBD: after each purchase, the first included, the customer leaves with probability
    # p ~ beta(a, b), so the number of repeat purchases before leaving is geometric(p) - 1.
    beta_a = np.array([(_SPECS[g].dropout or (1.0, np.inf))[0] for g in GROUPS])[group]
    beta_b = np.array([(_SPECS[g].dropout or (1.0, np.inf))[1] for g in GROUPS])[group]
    finite = np.isfinite(beta_b)
    p = np.zeros(n)
    p[finite] = rng.beta(beta_a[finite], beta_b[finite])
    allowed = np.full(n, np.iinfo(np.int64).max // 4)
    allowed[finite] = rng.geometric(np.maximum(p[finite], 1e-9)) - 1  # repeat purchases allowed

    w_first, w_end = cal.at(first), cal.at(end)
    repeats = rng.poisson(rate * np.maximum(w_end - w_first, 0.0))
    owner = np.repeat(np.arange(n), repeats)
    u = w_first[owner] + rng.random(owner.size) * (w_end - w_first)[owner]
    times = cal.inverse(u)
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    starts = np.concatenate([[0], np.cumsum(repeats)[:-1]])
    rank = np.arange(owner.size) - starts[owner]
    keep = rank < allowed[owner]
    last = np.flatnonzero(lapsing)  # lapsing customers' final order, right before they stop
    last_time = np.minimum(end[last] - rng.uniform(0, 1, size=last.size), _DAYS - 1e-6)
    customers = np.concatenate([np.arange(n), owner[keep], last])
    days = np.concatenate([first, times[keep], np.maximum(last_time, first[last])])
    return customers, days


def _timestamps(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """Seconds since HISTORY_START: the day of `days`, a shop-hours time of day."""
    hour = rng.choice(24, size=days.size, p=_HOURLY / _HOURLY.sum())
    seconds = hour * 3600 + rng.integers(0, 3600, size=days.size)
    return np.floor(days).astype(np.int64) * 86_400 + seconds


def _pick_products(
    rng: np.random.Generator,
    catalog: _Catalog,
    site: np.ndarray,
    tilt: float,
    max_price: float | None,
) -> np.ndarray:
    """Products for lines on `site` (one site index per line), Zipf popularity x price tilt."""
    out = np.empty(site.size, dtype=np.int64)
    for s in range(len(_SITES)):
        lines = np.flatnonzero(site == s)
        if lines.size == 0:
            continue
        goods = np.flatnonzero(catalog.site == s)
        weight = catalog.popularity[goods] * catalog.price[goods] ** tilt
        if max_price is not None:
            weight = np.where(catalog.price[goods] <= max_price, weight, 0.0)
        out[lines] = rng.choice(goods, size=lines.size, p=weight / weight.sum())
    return out


def _lines_of_orders(
    rng: np.random.Generator, catalog: _Catalog, order_group: np.ndarray, order_site: np.ndarray
) -> dict[str, np.ndarray]:
    """Lines for orders of known groups: line count, product, quantity, sum."""
    lines_mean = np.array([_SPECS[g].lines_mean for g in GROUPS])[order_group]
    n_lines = np.minimum(rng.geometric(1.0 / lines_mean), 60)
    order = np.repeat(np.arange(order_group.size), n_lines)
    group, site = order_group[order], order_site[order]
    product = np.empty(order.size, dtype=np.int64)
    qty = np.empty(order.size, dtype=np.int64)
    for g, name in enumerate(GROUPS):
        mine = np.flatnonzero(group == g)
        if mine.size == 0:
            continue
        spec = _SPECS[name]
        product[mine] = _pick_products(rng, catalog, site[mine], spec.price_tilt, spec.max_price)
        if spec.qty_p is None:  # wholesale lots
            lots = rng.lognormal(np.log(60.0), 0.5, size=mine.size)
            qty[mine] = np.clip(np.round(lots), 10, 120).astype(np.int64)
        else:
            qty[mine] = np.minimum(rng.geometric(spec.qty_p, size=mine.size), 20)
    amount = np.round(qty * catalog.price[product], 2)
    return {"order": order, "product": product, "qty": qty, "amount": amount}


# --------------------------------------------------------------------------------------- assembly
_COLUMNS = ("cust", "ts", "shown", "bad", "order", "product", "qty", "amount", "addr", "kind")
_KIND = {"base": 0, "return": 1, "zero": 2, "guest": 3, "test": 4}


def _concat(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {c: np.concatenate([p[c] for p in parts]) for c in _COLUMNS}


def _take(lines: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {c: v[rows] for c, v in lines.items()}


def _make_lines(
    cust: np.ndarray,
    ts: np.ndarray,
    order: np.ndarray,
    items: dict[str, np.ndarray],
    addr: np.ndarray,
    kind: str,
) -> dict[str, np.ndarray]:
    n = items["order"].size
    return {
        "cust": cust[items["order"]],
        "ts": ts[items["order"]],
        "shown": ts[items["order"]],
        "bad": np.full(n, -1, dtype=np.int64),
        "order": order[items["order"]],
        "product": items["product"],
        "qty": items["qty"],
        "amount": items["amount"],
        "addr": addr[items["order"]],
        "kind": np.full(n, _KIND[kind], dtype=np.int8),
    }


def _anonymous_orders(
    rng: np.random.Generator,
    cal: _Calendar,
    catalog: _Catalog,
    n_lines: int,
    buyers: np.ndarray,
    addr: np.ndarray,
    first_order: int,
    kind: str,
) -> dict[str, np.ndarray]:
    """About `n_lines` lines of orders by guests or test accounts (`buyers` ids, `addr` indices
    drawn per order), like a regular customer's baskets on a random seasonal day."""
    if n_lines <= 0 or buyers.size == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return _make_lines(nothing, nothing, nothing, _empty_items(), nothing, kind)
    n_orders = int(np.ceil(1.3 * n_lines / _SPECS["regular"].lines_mean)) + 5  # then cut
    group = np.full(n_orders, GROUPS.index("regular"))
    site = rng.choice(len(_SITES), size=n_orders, p=_SITE_SHARES)
    items = _lines_of_orders(rng, catalog, group, site)
    items = {k: v[:n_lines] for k, v in items.items()}
    days = _uniform_seasonal(rng, cal, np.zeros(n_orders), np.full(n_orders, float(_DAYS)))
    ts = _timestamps(rng, days)
    who = buyers[rng.integers(buyers.size, size=n_orders)]
    where = addr[rng.integers(addr.size, size=n_orders)]
    return _make_lines(who, ts, first_order + np.arange(n_orders), items, where, kind)


def _empty_items() -> dict[str, np.ndarray]:
    return {
        "order": np.zeros(0, dtype=np.int64),
        "product": np.zeros(0, dtype=np.int64),
        "qty": np.zeros(0, dtype=np.int64),
        "amount": np.zeros(0),
    }


@dataclass(frozen=True)
class _Store:
    """Everything drawn, before formatting: line arrays plus the lookup tables they index."""

    lines: dict[str, np.ndarray]
    catalog: _Catalog
    addresses: np.ndarray
    customer_ids: np.ndarray  # numeric ids of the real customers
    group: np.ndarray  # group index of each real customer
    test_ids: tuple[str, ...]


def _simulate(n_customers: int, seed: int, dirt: DirtRates) -> _Store:
    rng = np.random.default_rng(seed)
    cal = _calendar()
    catalog = _catalog(rng)

    counts = _group_counts(n_customers)
    group = rng.permutation(np.repeat(np.arange(len(GROUPS)), counts))
    span = max(900_000, 10 * n_customers)
    customer_ids = rng.choice(span, size=n_customers, replace=False) + 100_000
    home_site = rng.choice(len(_SITES), size=n_customers, p=_SITE_SHARES)
    n_addr = np.where(rng.random(n_customers) < 0.3, 2, 1)
    addr_start = np.concatenate([[0], np.cumsum(n_addr)[:-1]])
    addresses = _addresses(rng, int(n_addr.sum()))

    # Orders of the real customers, then their lines.
    cust, days = _purchase_days(rng, cal, group)
    ts = _timestamps(rng, days)
    second = (n_addr[cust] == 2) & (rng.random(cust.size) < 0.25)
    order_addr = addr_start[cust] + second
    items = _lines_of_orders(rng, catalog, group[cust], home_site[cust])
    base = _make_lines(cust, ts, np.arange(cust.size), items, order_addr, "base")
    n_base = base["ts"].size
    next_order = cust.size

    # Dirt. Victims of returns, typos, bad dates and duplicates are disjoint base lines.
    victims = rng.permutation(n_base)
    taken = 0

    def victims_for(rate: float) -> np.ndarray:
        nonlocal taken
        k = min(int(round(rate * n_base)), n_base - taken)
        rows = victims[taken : taken + k]
        taken += k
        return np.sort(rows)

    returned = victims_for(dirt.returns)
    typos = victims_for(dirt.outliers)
    malformed = victims_for(dirt.malformed_dates)
    future = victims_for(dirt.future_dates)
    duplicated = victims_for(dirt.duplicates)

    # Returns: a later negative copy (all units, or some of several) in its own return document.
    ret = _take(base, returned)
    units = ret["qty"]
    some = np.where(rng.random(units.size) < 0.3, rng.integers(1, np.maximum(units, 1) + 1), units)
    price = catalog.price[ret["product"]]
    delay = rng.integers(86_400, 30 * 86_400, size=units.size)
    ret_ts = np.maximum(ret["ts"], np.minimum(ret["ts"] + delay, _END_TS))
    ret |= {
        "qty": -some,
        "amount": -np.round(some * price, 2),
        "ts": ret_ts,
        "shown": ret_ts,
        "order": next_order + np.arange(units.size),
        "kind": np.full(units.size, _KIND["return"], dtype=np.int8),
    }
    next_order += units.size

    # Zero-sum gift lines inside existing orders.
    hosts = _take(base, np.sort(rng.integers(n_base, size=int(round(dirt.zero_sum * n_base)))))
    gift_site = catalog.site[hosts["product"]]
    zero = hosts | {
        "product": _pick_products(rng, catalog, gift_site, -1.0, 500.0),
        "qty": np.ones(gift_site.size, dtype=np.int64),
        "amount": np.zeros(gift_site.size),
        "kind": np.full(gift_site.size, _KIND["zero"], dtype=np.int8),
    }

    # Guests (no customer id) and internal test accounts.
    guest_addr = np.arange(addresses.size, addresses.size + 500)
    addresses = np.concatenate(
        [addresses, _addresses(rng, 500), np.array([_TEST_ADDRESS], dtype=object)]
    )
    guests = _anonymous_orders(
        rng,
        cal,
        catalog,
        int(round(dirt.missing_customer * n_base)),
        np.array([-1]),
        guest_addr,
        next_order,
        "guest",
    )
    next_order = int(guests["order"].max()) + 1 if guests["order"].size else next_order
    test_ids = tuple(dirt.test_accounts)
    n_test = int(round(dirt.test_lines * n_base))
    if test_ids and dirt.test_lines > 0:
        n_test = max(n_test, len(test_ids))
    tests = _anonymous_orders(
        rng,
        cal,
        catalog,
        n_test,
        -2 - np.arange(len(test_ids)),
        np.array([addresses.size - 1]),
        next_order,
        "test",
    )

    # Typos and dates on the base lines themselves.
    base["amount"][typos] = np.round(base["amount"][typos] * 10 ** rng.uniform(2, 3, typos.size), 2)
    base["bad"][malformed] = rng.integers(len(_BAD_DATES), size=malformed.size)
    base["shown"][future] = _in_year(base["ts"][future], _FUTURE_YEAR)

    lines = _concat(base, ret, zero, guests, tests)
    dup_flag = np.zeros(lines["ts"].size, dtype=bool)
    dup_flag[duplicated] = True  # base lines come first in the concatenation
    lines["dup"] = dup_flag
    return _Store(lines, catalog, addresses, customer_ids, group, test_ids)


def _in_year(ts: np.ndarray, year: int) -> np.ndarray:
    """The same calendar moment in `year` (29 February -> 28th), as seconds since the start."""
    start = datetime.combine(HISTORY_START, datetime.min.time())
    out = []
    for value in ts.tolist():
        moment = start + timedelta(seconds=value)
        day = min(moment.day, 28) if moment.month == 2 else moment.day
        out.append(int((moment.replace(year=year, day=day) - start).total_seconds()))
    return np.array(out, dtype=np.int64)


# ------------------------------------------------------------------------------------ formatting
def _ru_number(value: float, decimals: int) -> str:
    """1C's display form: NBSP thousands separator, decimal comma ("1 234,50")."""
    return f"{value:,.{decimals}f}".replace(",", _NBSP).replace(".", ",")


def _dotted(iso: str) -> str:
    """ "2025-03-05T09:22:10" -> "05.03.2025 9:22:10" (1C's dd.mm.yyyy H:MM:SS)."""
    return f"{iso[8:10]}.{iso[5:7]}.{iso[:4]} {int(iso[11:13])}:{iso[14:19]}"


@dataclass(frozen=True)
class _Columns:
    """The export in file order, kept as arrays; records and JSON text are made per chunk.

    Text forms are fixed here (`*_text`: the 1C string of a value, None where it is written as a
    JSON number), so `records` and `json_lines` agree exactly and a chunked writer stays lean.
    """

    date: np.ndarray  # str (object)
    order_id: np.ndarray
    sale_id: np.ndarray
    site_id: np.ndarray
    qty: np.ndarray
    qty_text: np.ndarray  # object: str or None
    amount: np.ndarray
    amount_text: np.ndarray
    address: np.ndarray  # index into address_table
    product: np.ndarray  # index into code_table
    customer: np.ndarray  # object: int, str (number as text or a test account) or None (guest)
    customer_number: np.ndarray  # int64 id where `customer` is an int
    ts: np.ndarray  # when the sale happened (seconds since HISTORY_START), whatever `date` shows
    address_table: np.ndarray
    code_table: np.ndarray

    def __len__(self) -> int:
        return int(self.date.size)

    def until(self, last_day: date) -> _Columns:
        """The lines sold up to the end of `last_day`: the export as 1C would have written it
        that evening (the same lines, ids and quirks as the whole history's, in the same order)."""
        keep = self.ts < ((last_day - HISTORY_START).days + 1) * 86_400
        per_row = {
            f.name: getattr(self, f.name)[keep]
            for f in fields(self)
            if f.name not in ("address_table", "code_table")
        }
        return replace(self, **per_row)

    def _mixed(self, numbers: np.ndarray, text: np.ndarray, sl: slice) -> np.ndarray:
        out = numbers[sl].astype(object)
        has_text = np.flatnonzero(text[sl] != None)  # noqa: E711 (element-wise on objects)
        out[has_text] = text[sl][has_text]
        return out

    def records(self, start: int = 0, stop: int | None = None) -> list[dict]:
        sl = slice(start, stop)
        columns = (
            self.date[sl],
            self.order_id[sl].astype(object),
            self.sale_id[sl].astype(object),
            self.site_id[sl].astype(object),
            self._mixed(self.qty, self.qty_text, sl),
            self._mixed(self.amount, self.amount_text, sl),
            self.address_table[self.address[sl]],
            self.code_table[self.product[sl]],
            self.customer[sl],
        )
        lists = [c.tolist() for c in columns]
        return [dict(zip(KEYS, row, strict=True)) for row in zip(*lists, strict=True)]

    @cached_property
    def _address_tokens(self) -> np.ndarray:
        return _quoted(self.address_table)

    @cached_property
    def _code_tokens(self) -> np.ndarray:
        return _quoted(self.code_table)

    def json_lines(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Each record as one line of JSON (ensure_ascii=False), equal to json.dumps of it."""
        sl = slice(start, stop)
        rows = zip(
            ['"' + d + '"' for d in self.date[sl].tolist()],  # dates need no escaping
            map(str, self.order_id[sl].tolist()),
            map(str, self.sale_id[sl].tolist()),
            map(str, self.site_id[sl].tolist()),
            _tokens(self.qty[sl], self.qty_text[sl]),
            _tokens(self.amount[sl], self.amount_text[sl]),
            self._address_tokens[self.address[sl]].tolist(),
            self._code_tokens[self.product[sl]].tolist(),
            _tokens(self.customer_number[sl], self.customer[sl], numbers_are_set=False),
            strict=True,
        )
        return [
            f'{{"date": {a}, "order_id": {b}, "sale_id": {c}, "site_id": {d}, "quantity": {e}, '
            f'"sum": {f}, "address": {g}, "StockCode": {h}, "CustomerID": {i}}}'
            for a, b, c, d, e, f, g, h, i in rows
        ]


def _tokens(numbers: np.ndarray, other: np.ndarray, numbers_are_set: bool = True) -> list[str]:
    """JSON text of a column of numbers where `other` overrides some rows: a string, or (when
    `numbers_are_set` is False, i.e. `other` holds every value) any non-int value incl. None."""
    out = list(map(repr, numbers.tolist()))  # repr(int / float) is what json.dumps writes
    if numbers_are_set:
        rows = np.flatnonzero(other != None)  # noqa: E711 (element-wise on objects)
    else:
        rows = np.flatnonzero([type(v) is not int for v in other.tolist()])
    for i in rows.tolist():
        out[i] = _json_string(other[i]) if isinstance(other[i], str) else _token(other[i])
    return out


def _json_string(text: str) -> str:
    """json.dumps(text, ensure_ascii=False), fast when nothing needs escaping."""
    return json.dumps(text, ensure_ascii=False) if _ESCAPE.search(text) else '"' + text + '"'


def _token(value: object) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def _quoted(texts: np.ndarray) -> np.ndarray:
    return np.array([_json_string(t) for t in texts.tolist()], dtype=object)


def _columns(store: _Store, dirt: DirtRates, rng: np.random.Generator) -> _Columns:
    """Order the lines by date (as 1C writes), number orders and sales, apply the format quirks."""
    lines = store.lines
    order = np.lexsort((np.arange(lines["ts"].size), lines["order"], lines["ts"]))
    lines = _take(lines, order)
    n = lines["ts"].size
    order_id = pd.factorize(lines["order"])[0] + _ORDER_ID_BASE
    sale_id = np.arange(n) + _SALE_ID_BASE

    date = np.datetime_as_string(_START + lines["shown"], unit="s").astype(object)
    dotted = np.flatnonzero(rng.random(n) < dirt.dotted_dates)
    date[dotted] = [_dotted(s) for s in date[dotted].tolist()]
    bad = np.flatnonzero(lines["bad"] >= 0)
    date[bad] = [_BAD_DATES[i] for i in lines["bad"][bad].tolist()]

    def as_text(raw: np.ndarray, decimals: int) -> np.ndarray:
        text = np.full(n, None, dtype=object)
        pick = np.flatnonzero(rng.random(n) < dirt.string_numbers)
        text[pick] = [_ru_number(v, decimals) for v in raw[pick].tolist()]
        return text

    qty_text = as_text(lines["qty"], 0)
    amount_text = as_text(lines["amount"], 2)

    cust = lines["cust"]
    real = np.flatnonzero(cust >= 0)
    customer = np.full(n, None, dtype=object)
    customer[real] = store.customer_ids[cust[real]].astype(object)
    quoted = real[rng.random(real.size) < dirt.string_customer_ids]
    customer[quoted] = [str(v) for v in customer[quoted].tolist()]
    test = np.flatnonzero(cust <= -2)
    customer[test] = np.array(store.test_ids, dtype=object)[-2 - cust[test]]
    number = np.where(cust >= 0, store.customer_ids[np.maximum(cust, 0)], 0)

    # Lines exported twice: byte-identical copies right after the original.
    rows = np.sort(np.concatenate([np.arange(n), np.flatnonzero(lines["dup"])]), kind="stable")
    return _Columns(
        date=date[rows],
        order_id=order_id[rows],
        sale_id=sale_id[rows],
        site_id=_SITES[store.catalog.site[lines["product"]]][rows],
        qty=lines["qty"][rows],
        qty_text=qty_text[rows],
        amount=lines["amount"][rows],
        amount_text=amount_text[rows],
        address=lines["addr"][rows],
        product=lines["product"][rows],
        customer=customer[rows],
        customer_number=number[rows],
        ts=lines["ts"][rows],
        address_table=store.addresses,
        code_table=store.catalog.code,
    )


def _truth(store: _Store) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series(store.customer_ids.astype(str), dtype="str"),
            "group": pd.Series(np.array(GROUPS)[store.group], dtype="str"),
        }
    )


def _build(n_customers: int, seed: int, dirt: DirtRates | None) -> tuple[_Columns, pd.DataFrame]:
    if int(n_customers) < 1:
        raise UserError(f"data.synthetic.customers={n_customers}: need at least 1 customer")
    dirt = DirtRates() if dirt is None else dirt
    store = _simulate(int(n_customers), int(seed), dirt)
    format_rng = np.random.default_rng([int(seed), 1])  # formatting quirks: own stream
    return _columns(store, dirt, format_rng), _truth(store)


# -------------------------------------------------------------------------------------------- API
def generate(
    n_customers: int, seed: int, dirt: DirtRates | None = None
) -> tuple[list[dict], pd.DataFrame]:
    """The export's records (1C schema, file order) and the truth: customer_id, group.

    `dirt` None means the default ``DirtRates()``; ``DirtRates.clean()`` gives tidy records.
    truth.customer_id is the id as the loader normalises it (str of the number); guests and test
    accounts are not customers and are not in the truth.
    """
    columns, truth = _build(n_customers, seed, dirt)
    return columns.records(), truth


def truth_path(export_path: str | Path) -> Path:
    """The truth sidecar of an export: ``X.json.gz`` and ``X.json`` -> ``X.truth.csv``."""
    path = Path(export_path)
    name = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    stem = Path(name).stem if Path(name).suffix else name
    return path.with_name(f"{stem}.truth.csv")


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    lines: int
    customers: int
    group_counts: dict[str, int]


def write_export(
    path: str | Path,
    n_customers: int,
    seed: int,
    dirt: DirtRates | None = None,
    until: date | None = None,
) -> Path:
    """Write the export (JSON array, UTF-8 with BOM; gzip if the name ends in .gz) and its truth
    sidecar, each atomically. Same arguments -> same bytes (gzip mtime 0, no file name).
    `until`: only the lines sold up to that day (HISTORY_START..HISTORY_END), as an export taken
    then; None = the whole history. The truth lists every customer, bought yet or not."""
    return _export(path, n_customers, seed, dirt, until).path


def _export(
    path: str | Path,
    n_customers: int,
    seed: int,
    dirt: DirtRates | None,
    until: date | None = None,
) -> ExportSummary:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns, truth = _build(n_customers, seed, dirt)
    if until is not None:
        if not HISTORY_START <= until <= HISTORY_END:
            raise ValueError(f"until={until}: the history runs {HISTORY_START}..{HISTORY_END}")
        columns = columns.until(until)
    n_lines = len(columns)
    with _atomic(truth_path(path)) as handle:
        handle.write(truth.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    with _atomic(path) as handle:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=6
            ) as gz:
                _write_json(gz, columns)
        else:
            _write_json(handle, columns)
    counts = truth["group"].value_counts()
    return ExportSummary(path, n_lines, len(truth), {g: int(counts.get(g, 0)) for g in GROUPS})


def _write_json(handle: IO[bytes], columns: _Columns, chunk: int = 100_000) -> None:
    """A JSON array with one record per line, UTF-8 with a BOM (as 1C writes), in chunks."""
    handle.write(b"\xef\xbb\xbf[\n")
    for start in range(0, len(columns), chunk):
        text = ",\n".join(columns.json_lines(start, start + chunk))
        handle.write(((",\n" if start else "") + text).encode("utf-8"))
    handle.write(b"\n]\n")


class _atomic:
    """Write to a temp file in the target's directory, then os.replace: readers never see half a
    file, and concurrent writers of the same content simply replace each other."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> IO[bytes]:
        fd, name = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        self.tmp = Path(name)
        self.handle = os.fdopen(fd, "wb")
        return self.handle

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.handle.close()
        if exc_type is None:
            self.tmp.chmod(0o644)  # mkstemp makes 0600; an export is an ordinary file
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def cache_dir() -> Path:
    """$CUSTOMER_SEGMENTATION_CACHE, else ~/.cache/customer-segmentation."""
    env = os.environ.get(_CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "customer-segmentation"


def default_sample_path(n_customers: int = 5000, seed: int = 42) -> Path:
    """The embedded sample store's export, generated into the cache on first use."""
    path = cache_dir() / _cache_name(n_customers, seed)
    if path.exists() and truth_path(path).exists():
        return path
    return write_export(path, n_customers, seed)


def _cache_name(n_customers: int, seed: int) -> str:
    return f"synthetic-1c-v{GENERATOR_VERSION}-n{int(n_customers)}-seed{int(seed)}.json.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.data.synthetic",
        description="Write the synthetic 1C:ERP export of the sample online store and its truth CSV.",
    )
    parser.add_argument("--customers", type=int, default=5000, help="number of customers")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument(
        "--out", type=Path, default=None, help="export path (.json or .json.gz); default: the cache"
    )
    parser.add_argument(
        "--no-dirt", action="store_true", help="tidy records: no dirt, no 1C quirks"
    )
    args = parser.parse_args(argv)
    if args.customers < 1:
        parser.error("--customers: need at least 1")
    out = args.out or cache_dir() / _cache_name(args.customers, args.seed)
    summary = _export(out, args.customers, args.seed, DirtRates.clean() if args.no_dirt else None)
    print(summary.path)
    print(f"truth: {truth_path(summary.path)}")
    print(f"lines: {summary.lines}")
    print(f"customers: {summary.customers}")
    for group, count in summary.group_counts.items():
        print(f"  {group}: {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
