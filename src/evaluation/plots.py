"""Figures for the run report: each function returns a matplotlib Figure; the caller saves or logs it.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot, so nothing leaks
into global state and everything works headless. They are meant to be read by a marketer at a
glance: titles say what is shown, axes carry units (the store's currency from `data.currency`,
days, orders), numbers have thousands
separators, skewed axes are logarithmic and say so, and every segment keeps one colour across all
figures (``segment_colors``; noise, id -1, is always grey).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from src.currency import Currency, currency
from src.data.schema import AMOUNT, CUSTOMER_ID, DATE, FREQUENCY, MONETARY, ORDER_ID, RECENCY

NOISE = -1
NOISE_COLOR: tuple[float, float, float] = (0.62, 0.62, 0.62)
CUSTOMER_BAR = "#C9C9C9"  # the neutral "share of customers" bar next to each segment's revenue
FIGSIZE = (8.0, 5.0)
DPI = 110
TITLE_SIZE = 12.5
SUBTITLE_SIZE = 9.5

# tab10 without its grey, then tab20's light variants without theirs: 18 distinct colours, assigned
# by segment id (not by position in a list), so segment 3 is the same colour in every figure.
_TAB10 = [to_rgb(c) for i, c in enumerate(colormaps["tab10"].colors) if i != 7]
_TAB20_LIGHT = [to_rgb(c) for i, c in enumerate(colormaps["tab20"].colors) if i % 2 and i != 15]
PALETTE: tuple[tuple[float, float, float], ...] = tuple(_TAB10 + _TAB20_LIGHT)

# Matplotlib 3.10 replaced boxplot(vert=False) with orientation="horizontal".
_HORIZONTAL_BOX: dict[str, Any] = (
    {"orientation": "horizontal"}
    if "orientation" in inspect.signature(Axes.boxplot).parameters
    else {"vert": False}
)

RUB = currency(None)  # the default store's currency; every money-showing figure takes `money`


def feature_label(feature: str, money: Currency = RUB) -> str:
    """Axis label of an RFM feature with its unit: "Monetary, £ spent"."""
    labels = {
        RECENCY: "Recency, days since last order",
        FREQUENCY: "Frequency, orders",
        MONETARY: f"Monetary, {money.symbol} spent",
        "expected_value": f"Expected spend next period, {money.symbol}",
        "p_alive": "P(alive), probability still buying",
    }
    return labels.get(feature, feature)


def _feature_tick(feature: str, money: Currency) -> str:
    ticks = {
        RECENCY: "recency\n(days since\nlast order)",
        FREQUENCY: "frequency\n(orders)",
        MONETARY: f"monetary\n({money.symbol} spent)",
        "expected_value": f"expected value\n({money.symbol}, next\nperiod)",
        "p_alive": "P(alive)",
    }
    return ticks.get(feature, str(feature))


# ------------------------------------------------------------------------------------------ helpers
def segment_colors(segment_ids: Iterable[int]) -> dict[int, tuple]:
    """A fixed RGB colour per segment id (the same id gets the same colour in every figure);
    noise (-1, or any negative id) is grey."""
    out: dict[int, tuple] = {}
    for raw in segment_ids:
        sid = int(raw)
        out[sid] = NOISE_COLOR if sid < 0 else PALETTE[sid % len(PALETTE)]
    return out


def _figure(width: float = FIGSIZE[0], height: float = FIGSIZE[1]) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _titles(target: Figure | Axes, title: str, subtitle: str | None = None) -> None:
    """Bold title with an optional smaller grey line under it (facts that help reading)."""
    if isinstance(target, Figure):
        if subtitle:
            # one suptitle, so constrained layout reserves room for both lines; bold via mathtext
            target.suptitle(f"$\\bf{{{_mathtext_escape(title)}}}$\n{subtitle}",
                            fontsize=TITLE_SIZE - 1, linespacing=1.6)  # fmt: skip
        else:
            target.suptitle(title, fontsize=TITLE_SIZE, fontweight="bold")
        return
    target.figure.suptitle(title, fontsize=TITLE_SIZE, fontweight="bold")
    if subtitle:
        target.set_title(subtitle, fontsize=SUBTITLE_SIZE, color="0.35", loc="left")


def _mathtext_escape(text: str) -> str:
    """Escape text for use inside $\\bf{...}$ (spaces and mathtext specials)."""
    out = text
    for char in ("\\", "{", "}", "$", "%", "_", "#", "&", "^"):
        out = out.replace(char, "\\" + char)
    for char in (",", ";", ":", "-", "+", "="):  # braces stop mathtext adding spacing around them
        out = out.replace(char, "{" + char + "}")
    return out.replace(" ", "\\ ").replace("'", "’")  # mathtext draws ' as a prime


def _message_figure(title: str, message: str) -> Figure:
    """A figure that says why there is nothing to draw (instead of raising in a report)."""
    fig = _figure(8, 3)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, wrap=True,
            transform=ax.transAxes)  # fmt: skip
    fig.suptitle(title, fontsize=TITLE_SIZE, fontweight="bold")
    return fig


def _number(value: float, decimals: int = 0) -> str:
    """Thousands-separated number: 1,234,567."""
    return f"{value:,.{decimals}f}"


def _short(value: float) -> str:
    """Compact number for tick labels: 950, 1,000, 25,000, 1.5M, 2bn."""
    v = abs(value)
    sign = "-" if value < 0 else ""
    if v >= 1e9:
        return f"{sign}{v / 1e9:,.3g}bn"
    if v >= 1e6:
        return f"{sign}{v / 1e6:,.3g}M"
    if v >= 1 or v == 0:
        return f"{sign}{v:,.0f}"
    return f"{sign}{v:.2g}"


def _thousands(axis: Any, decimals: int = 0) -> None:
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.{decimals}f}"))


def _log_ticks(axis: Any, lo: float, hi: float, max_ticks: int = 8) -> None:
    """Readable log-axis ticks (1-2-5, 1-3 or whole decades, whichever fits in `max_ticks`)
    labelled as plain numbers, never as powers of ten."""
    lo = max(lo, 1e-9)
    hi = max(hi, lo * 1.01)
    exponents = range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
    ticks: list[float] = []
    for subs in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0**e for e in exponents for m in subs if lo <= m * 10.0**e <= hi]
        if len(ticks) <= max_ticks:
            break
    while len(ticks) > max_ticks:
        ticks = ticks[::2]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _short(v)))
    axis.set_minor_locator(NullLocator())


def _is_skewed(values: np.ndarray) -> bool:
    """Worth a log axis: strictly positive, spread over at least a decade, long right tail."""
    values = values[np.isfinite(values)]
    if len(values) < 3 or values.min() <= 0:
        return False
    spread = np.log10(values.max() / values.min())
    return bool(spread >= 1.0 and pd.Series(values).skew() > 1.0)


def _segment_label(sid: int, names: Mapping[int, str]) -> str:
    if sid < 0:
        return "noise (no segment)"
    return f"{sid} · {names.get(sid, f'segment {sid}')}"


def _order_values(transactions: pd.DataFrame) -> pd.Series:
    """Sum of amount per order; without order ids, one order per customer per day."""
    if ORDER_ID in transactions.columns and transactions[ORDER_ID].notna().any():
        key = transactions[ORDER_ID].astype(str)
        return transactions.groupby(key, sort=False)[AMOUNT].sum()
    key = [transactions[CUSTOMER_ID].astype(str), pd.to_datetime(transactions[DATE]).dt.normalize()]
    return transactions.groupby(key, sort=False)[AMOUNT].sum()


def _sample_index(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _scatter_alpha(n: int) -> float:
    """Nearly opaque for a few thousand points, see-through (but still visible) for 20,000."""
    return float(np.clip(np.sqrt(4000.0 / max(n, 1)), 0.3, 0.85))


# ----------------------------------------------------------------------------- exploratory figures
def monthly_revenue(transactions: pd.DataFrame, money: Currency = RUB) -> Figure:
    """Revenue (bars) and orders (line, right axis) per calendar month: trend and seasonality."""
    title = "Revenue and orders per month"
    if transactions.empty:
        return _message_figure(title, "No transactions to show.")
    frame = pd.DataFrame(
        {
            "month": pd.to_datetime(transactions[DATE]).dt.to_period("M"),
            "amount": transactions[AMOUNT].astype(float),
        }
    )
    if ORDER_ID in transactions.columns and transactions[ORDER_ID].notna().any():
        frame["order"] = transactions[ORDER_ID].astype(str).to_numpy()
    else:
        frame["order"] = (
            transactions[CUSTOMER_ID].astype(str)
            + "|"
            + pd.to_datetime(transactions[DATE]).dt.strftime("%Y-%m-%d")
        ).to_numpy()
    frame = frame.dropna(subset=["month"])
    grouped = frame.groupby("month").agg(revenue=("amount", "sum"), orders=("order", "nunique"))
    full = pd.period_range(grouped.index.min(), grouped.index.max(), freq="M")
    grouped = grouped.reindex(full, fill_value=0)
    months = grouped.index.to_timestamp()

    divisor, unit = money.unit(float(grouped["revenue"].abs().max()))
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    x = np.arange(len(grouped))
    ax.bar(x, grouped["revenue"] / divisor, width=0.8, color="#4C78A8", label="Revenue (left axis)")
    ax.set_ylabel(f"Revenue, {unit}")
    _thousands(ax.yaxis, decimals=1 if grouped["revenue"].max() / divisor < 10 else 0)
    ax.set_xlim(-0.7, len(x) - 0.3)

    twin = ax.twinx()
    twin.plot(x, grouped["orders"], color="#E45756", marker="o", markersize=3.5, linewidth=1.8,
              label="Orders (right axis)")  # fmt: skip
    twin.set_ylabel("Orders per month")
    twin.set_ylim(0, max(1.0, float(grouped["orders"].max())) * 1.15)
    ax.set_ylim(0, max(1e-9, float(grouped["revenue"].max() / divisor)) * 1.15)
    _thousands(twin.yaxis)
    twin.yaxis.set_major_locator(MaxNLocator(6, integer=True))

    # one tick per month when few, otherwise quarters; the year printed under each January
    step = 1 if len(x) <= 14 else 3
    ticks = [i for i, m in enumerate(months) if (m.month - 1) % step == 0 or i == 0]
    labels = [
        f"{m:%b}\n{m:%Y}" if (m.month == 1 or i == ticks[0]) else f"{m:%b}"
        for i, m in ((i, months[i]) for i in ticks)
    ]
    ax.set_xticks(ticks, labels, fontsize=8.5)
    ax.set_xlabel("Month")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)

    handles = [
        Patch(color="#4C78A8", label="Revenue (left axis)"),
        Line2D([], [], color="#E45756", marker="o", label="Orders (right axis)"),
    ]
    ax.legend(handles=handles, loc="upper left", frameon=False)
    total = float(grouped["revenue"].sum())
    _titles(
        ax,
        title,
        f"{months[0]:%b %Y} – {months[-1]:%b %Y}: {money.compact(total)} from "
        f"{_number(grouped['orders'].sum())} orders",
    )
    return fig


def order_value_distribution(transactions: pd.DataFrame, money: Currency = RUB) -> Figure:
    """How much an order is worth: histogram on a log axis with the median and 95th percentile."""
    title = "How much customers spend per order"
    values = _order_values(transactions).to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    if len(positive) == 0:
        return _message_figure(title, "No orders with a positive value to show.")
    fig = _figure()
    ax = fig.add_subplot()
    # the axis spans the middle 99.8% of orders, so a few stray values do not squash the rest
    lo, hi = np.quantile(positive, [0.001, 0.999]) if len(positive) >= 1000 else (
        positive.min(), positive.max())  # fmt: skip
    lo, hi = float(lo) / 1.15, float(hi) * 1.15
    bins = np.geomspace(lo, hi, 50)
    outside = int(((positive < lo) | (positive > hi)).sum())
    ax.hist(positive, bins=bins, color="#4C78A8", edgecolor="white", linewidth=0.4)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    _log_ticks(ax.xaxis, lo, hi)
    median, p95 = np.median(positive), np.quantile(positive, 0.95)
    ax.axvline(median, color="#E45756", linestyle="--", linewidth=1.8,
               label=f"median: {money.compact(median)}")  # fmt: skip
    ax.axvline(p95, color="#F58518", linestyle=":", linewidth=2.0,
               label=f"95% of orders below {money.compact(p95)}")  # fmt: skip
    ax.set_xlabel(f"Order value, {money.symbol} (log scale)")
    ax.set_ylabel("Orders")
    _thousands(ax.yaxis)
    ax.legend(loc="best", framealpha=0.95)  # the lines pass behind it, not through the text
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    dropped = len(values) - len(positive)
    note = f"{_number(len(positive))} orders, mean {money.compact(positive.mean())}"
    if outside:
        note += f"; {_number(outside)} extreme orders beyond the axis"
    if dropped:
        note += f"; {_number(dropped)} orders with value ≤ {money.amount(0)} not shown"
    _titles(ax, title, note)
    return fig


def orders_per_customer(rfm: pd.DataFrame) -> Figure:
    """Customers by number of orders (1 ... 9, 10+): how many ever came back."""
    title = "Customers by number of orders"
    freq = rfm[FREQUENCY].to_numpy(dtype=float)
    freq = freq[np.isfinite(freq)]
    if len(freq) == 0:
        return _message_figure(title, "No customers to show.")
    buckets = np.clip(np.round(freq).astype(int), 1, 10)
    counts = np.array([(buckets == k).sum() for k in range(1, 11)])
    labels = [str(k) for k in range(1, 10)] + ["10+"]
    fig = _figure()
    ax = fig.add_subplot()
    bars = ax.bar(labels, counts, color="#4C78A8")
    shares = counts / counts.sum()
    ax.bar_label(bars, labels=[f"{_number(c)}\n{s:.1%}" if c else "" for c, s in
                               zip(counts, shares, strict=True)], fontsize=8, padding=2)  # fmt: skip
    ax.set_ylim(0, counts.max() * 1.2)
    ax.set_xlabel("Orders per customer")
    ax.set_ylabel("Customers")
    _thousands(ax.yaxis)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    _titles(
        ax,
        title,
        f"{_number(len(freq))} customers; {shares[0]:.0%} ordered once, "
        f"{shares[1:].sum():.0%} came back",
    )
    return fig


def rfm_pairwise(
    rfm: pd.DataFrame, max_points: int = 5000, seed: int = 0, money: Currency = RUB
) -> Figure:
    """Scatter matrix of recency, frequency and monetary (histograms on the diagonal)."""
    features = [c for c in (RECENCY, FREQUENCY, MONETARY) if c in rfm.columns]
    title = "Recency, frequency and monetary value per customer"
    if rfm.empty or not features:
        return _message_figure(title, "No customers to show.")
    picked = rfm.iloc[_sample_index(len(rfm), max_points, seed)]
    data = {c: picked[c].to_numpy(dtype=float) for c in features}
    logs = {c: _is_skewed(rfm[c].to_numpy(dtype=float)) for c in features}
    limits = {}
    for c in features:
        v = data[c][np.isfinite(data[c])]
        lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
        if logs[c]:
            limits[c] = (lo / 1.3, hi * 1.3)
        else:
            pad = (hi - lo) * 0.04 or 1.0
            limits[c] = (lo - pad, hi + pad)

    k = len(features)
    fig = _figure(8.5, 8)
    axes = np.atleast_2d(fig.subplots(k, k, sharex="col", sharey="row", squeeze=False))
    alpha = _scatter_alpha(len(picked))
    for i, row in enumerate(features):
        for j, col in enumerate(features):
            ax = axes[i, j]
            if logs[col]:
                ax.set_xscale("log")
            if logs[row]:
                ax.set_yscale("log")
            ax.set_xlim(*limits[col])
            ax.set_ylim(*limits[row])
            if i == j:
                # histogram on a twin axis, so this cell's y ticks still read as the row variable
                twin = ax.twinx()
                values = data[col][np.isfinite(data[col])]
                _histogram(twin, values, limits[col], logs[col])
                twin.set_yticks([])
            else:
                ax.scatter(data[col], data[row], s=4, alpha=alpha, color="#4C78A8",
                           linewidths=0, rasterized=True)  # fmt: skip
            ax.grid(alpha=0.25)
            if i == k - 1:
                ax.set_xlabel(_axis_name(col, logs[col], money), fontsize=9)
            if j == 0:
                ax.set_ylabel(_axis_name(row, logs[row], money), fontsize=9)
            ax.tick_params(labelsize=8)
    for c_idx, c in enumerate(features):
        for ax in axes[:, c_idx]:
            if logs[c]:
                _log_ticks(ax.xaxis, *limits[c], max_ticks=4)
            else:
                _thousands(ax.xaxis)
                ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        for ax in axes[c_idx, :]:
            if logs[c]:
                _log_ticks(ax.yaxis, *limits[c], max_ticks=6)
            else:
                _thousands(ax.yaxis)
                ax.yaxis.set_major_locator(MaxNLocator(6, integer=True))
    sample = (
        f"all {_number(len(rfm))} customers"
        if len(picked) == len(rfm)
        else f"random sample of {_number(len(picked))} of {_number(len(rfm))} customers"
    )
    _titles(fig, title, f"One dot per customer; {sample}")
    return fig


def _is_count(values: np.ndarray) -> bool:
    """Whole numbers over a short range (orders per customer): one bar per value reads best."""
    return bool(len(values) and np.array_equal(values, np.round(values)) and np.ptp(values) <= 60)


def _bins(values: np.ndarray, limits: tuple[float, float], log: bool) -> np.ndarray | int:
    """Histogram bins: log-spaced on a log axis, one per whole number for small counts."""
    if _is_count(values) and not log:
        return np.arange(values.min() - 0.5, values.max() + 1.5)
    return np.geomspace(*limits, 40) if log else 40


def _histogram(ax: Axes, values: np.ndarray, limits: tuple[float, float], log: bool) -> None:
    """A histogram; whole-number values on a log axis get one equally wide bar per value."""
    if log and _is_count(values) and values.min() >= 1:
        ks, counts = np.unique(values, return_counts=True)
        ax.bar(ks / 1.12, counts, width=ks * 1.12 - ks / 1.12, align="edge", color="#4C78A8",
               alpha=0.85)  # fmt: skip
        return
    ax.hist(values, bins=_bins(values, limits, log), color="#4C78A8", alpha=0.85)


def _display_cut(raw: np.ndarray) -> tuple[float, str]:
    """Where a raw histogram's axis ends: at the 99th percentile when the tail is long, at the
    95th when even that leaves most customers in one bar (wholesale buyers), else nowhere."""
    if len(raw) < 3 or pd.Series(raw).skew() <= 1.0:
        return np.inf, ""
    cut = float(np.quantile(raw, 0.99))
    if pd.Series(raw[raw <= cut]).skew() > 2.0:
        return float(np.quantile(raw, 0.95)), "5%"
    return cut, "1%"


def _axis_name(feature: str, log: bool, money: Currency) -> str:
    base = {
        RECENCY: "Recency, days",
        FREQUENCY: "Frequency, orders",
        MONETARY: f"Monetary, {money.symbol}",
    }
    name = base.get(feature, feature)
    return f"{name}\n(log scale)" if log else name


def rfm_distributions(
    rfm: pd.DataFrame, transformed: pd.DataFrame, money: Currency = RUB
) -> Figure:
    """Each feature before (raw units) and after the transform: what the clusterer actually sees."""
    features = [c for c in (RECENCY, FREQUENCY, MONETARY) if c in rfm.columns]
    title = "RFM features before and after the transform"
    if rfm.empty or not features:
        return _message_figure(title, "No customers to show.")
    fig = _figure(9, 7.5)
    axes = fig.subplots(len(features), 2, squeeze=False)
    for i, feature in enumerate(features):
        raw = rfm[feature].to_numpy(dtype=float)
        raw = raw[np.isfinite(raw)]
        if feature in transformed.columns:
            after = transformed[feature].to_numpy(dtype=float)
        else:
            after = np.asarray(transformed, dtype=float)[:, min(i, transformed.shape[1] - 1)]
        after = after[np.isfinite(after)]

        left, right = axes[i]
        # a long right tail would squash everything into one bar: cut the axis at the 99th pct
        cut, top = _display_cut(raw)
        beyond = int((raw > cut).sum())
        shown = raw[raw <= cut]
        left.hist(shown, bins=_bins(shown, (0.0, 1.0), False), color="#4C78A8")
        unit = {RECENCY: "days", FREQUENCY: "orders", MONETARY: money.symbol}.get(feature, "")
        left.set_xlabel(feature_label(feature, money), fontsize=9)
        _thousands(left.xaxis)
        if beyond:
            left.text(0.98, 0.95, f"{_number(beyond)} customers above\n{_short(cut)} {unit} "
                      f"not shown (top {top})", transform=left.transAxes, ha="right", va="top",
                      fontsize=8, color="0.35")  # fmt: skip
        right.hist(after, bins=40, color="#54A24B")
        right.set_xlabel(f"{feature.capitalize()}, transformed (model units)", fontsize=9)
        for ax in (left, right):
            ax.set_ylabel("Customers", fontsize=9)
            _thousands(ax.yaxis)
            ax.tick_params(labelsize=8)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
        if i == 0:
            left.set_title("Raw values", fontsize=10.5)
            right.set_title("After the transform (what the clustering sees)", fontsize=10.5)
    _titles(fig, title, f"{_number(len(rfm))} customers; one row per feature")
    return fig


def cleaning_waterfall(report: Mapping[str, Any]) -> Figure:
    """What each cleaning step took, from the raw export to the clean table, side by side in
    lines (left) and in money (right, the report's currency); each bar is labelled with its
    change."""
    money = currency(report.get("currency"))
    rows_raw, rows_clean = int(report["rows_raw"]), int(report["rows_clean"])
    amount_raw, amount_clean = float(report["amount_raw"]), float(report["amount_clean"])
    title = (
        f"Cleaning: {_number(rows_raw)} raw lines → {_number(rows_clean)} clean lines, "
        f"{money.compact(amount_raw)} → {money.compact(amount_clean)}"
    )
    labels, kinds = ["raw export"], ["total"]
    lines = _Waterfall([(0.0, rows_raw)], [_number(rows_raw)])
    amounts = _Waterfall([(0.0, amount_raw)], [money.compact(amount_raw)])
    rows_now, amount_now = float(rows_raw), amount_raw
    for step in report.get("steps", []):
        name = str(step["name"]).replace("_", " ")
        if not step.get("enabled", True):
            labels.append(f"{name} (off)")
            kinds.append("off")
            lines.add((rows_now, rows_now), "off")
            amounts.add((amount_now, amount_now), "off")
            continue
        removed, modified = int(step["rows_removed"]), int(step.get("rows_modified", 0))
        rows_now, before = float(step["rows_out"]), float(step["rows_in"])
        amount_in, amount_now = float(step["amount_in"]), float(step["amount_out"])
        note = f"−{_number(removed)}" if removed else "0"
        labels.append(name)
        kinds.append("step")
        lines.add(
            (rows_now, before), note + (f" · {_number(modified)} changed" if modified else "")
        )
        amounts.add((amount_now, amount_in), money.compact(amount_now - amount_in, signed=True))
    labels.append("clean")
    kinds.append("total")
    lines.add((0.0, rows_clean), _number(rows_clean))
    amounts.add((0.0, amount_clean), money.compact(amount_clean))

    fig = _figure(12, max(4.0, 1.8 + 0.42 * len(labels)))
    ax_lines, ax_money = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(labels))[::-1]
    lines.draw(ax_lines, y, kinds, 1.0, "Lines left")
    divisor, unit = money.unit(max(amount_raw, amount_clean, 1.0))
    amounts.draw(ax_money, y, kinds, divisor, f"Amount left, {unit}")
    ax_lines.set_yticks(y, labels, fontsize=9)
    for tick, kind in zip(ax_lines.get_yticklabels(), kinds, strict=True):
        if kind == "off":
            tick.set_color("0.5")
        if kind == "total":
            tick.set_fontweight("bold")
    ax_lines.set_ylim(-0.6, len(labels) - 0.4)
    legend = [
        Patch(color=_WATERFALL_COLORS["total"], label="in the table"),
        Patch(color=_WATERFALL_COLORS["step"], label="taken out by the step"),
    ]
    if any(a > b for a, b in amounts.spans[1:-1] + lines.spans[1:-1]):
        legend.append(Patch(color=_WATERFALL_COLORS["gain"], label="added by the step"))
    fig.legend(handles=legend, loc="outside lower center", ncol=3, frameon=False, fontsize=8.5)
    removed = rows_raw - rows_clean
    share = f" ({removed / rows_raw:.1%})" if rows_raw else ""
    subtitle = (
        f"{_number(removed)} lines{share} removed, amount "
        f"{money.compact(amount_clean - amount_raw, signed=True)}; labels: each step's change"
    )
    _titles(ax_lines, title, subtitle)
    return fig


def _tick(value: float) -> str:
    """1,500 / 42 / 42.5: grouped, one decimal only where there is one."""
    return f"{value:,.1f}".removesuffix(".0")


_WATERFALL_COLORS = {"total": "#4C78A8", "step": "#E45756", "gain": "#54A24B", "off": "#BBBBBB"}


class _Waterfall:
    """One panel of the cleaning waterfall: per row, the span (low, high) of its bar and its
    label; a step's bar runs from what it left to what it received."""

    def __init__(self, spans: list[tuple[float, float]], notes: list[str]) -> None:
        self.spans, self.notes = list(spans), list(notes)

    def add(self, span: tuple[float, float], note: str) -> None:
        self.spans.append(span)
        self.notes.append(note)

    def draw(self, ax: Axes, y: np.ndarray, kinds: list[str], divisor: float, xlabel: str) -> None:
        top = max(hi for _, hi in self.spans)
        # the lowest level a step leaves (the clean total's bar starts at 0, its level is its end)
        lowest = min([self.spans[-1][1]] + [min(lo, hi) for lo, hi in self.spans[1:-1]])
        # Zoom the axis when the steps take little (< 20%), or their bars would be slivers.
        start = 0.0
        if top > 0 and lowest > 0.8 * top:
            start = float(np.floor(max(0.0, lowest - 0.15 * (top - lowest) - 0.01 * top)))
        room = (top - start) or 1.0
        for yi, (a, b), kind, note in zip(y, self.spans, kinds, self.notes, strict=True):
            lo, hi = max(min(a, b), start), max(a, b)
            color = _WATERFALL_COLORS["gain" if kind == "step" and a > b else kind]
            width = hi - lo if hi - lo > 0 or kind != "step" else room * 0.003  # a visible tick
            ax.barh(yi, width, left=lo, color=color, height=0.62)
            ax.text(max(a, b) + room * 0.015, yi, "off" if kind == "off" else note, va="center",
                    ha="left", fontsize=8.5, color="0.45" if kind == "off" else "0.1")  # fmt: skip
        ax.set_xlim(start, top + 0.45 * room)  # the labels right of the bars stay inside
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _tick(v / divisor)))
        shifted = f" (axis starts at {_tick(start / divisor)}, not 0)" if start > 0 else ""
        ax.set_xlabel(xlabel + shifted)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)


# --------------------------------------------------------------------------------- segment figures
def snake_plot(
    transformed: pd.DataFrame, labels: np.ndarray, names: Mapping[int, str], money: Currency = RUB
) -> Figure:
    """Mean of each standardised feature per segment: how the segments differ, at a glance."""
    labels = np.asarray(labels).astype(int)
    frame = pd.DataFrame(np.asarray(transformed, dtype=float), columns=list(transformed.columns))
    if len(frame) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(frame)} rows of features")
    means = frame.groupby(labels).mean()
    counts = pd.Series(labels).value_counts()
    colors = segment_colors(means.index)
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    x = np.arange(frame.shape[1])
    for sid, row in means.iterrows():
        sid = int(sid)
        ax.plot(x, row.to_numpy(), marker="o", linewidth=2.2, markersize=6, color=colors[sid],
                linestyle="--" if sid < 0 else "-",
                label=f"{_segment_label(sid, names)} ({_number(counts[sid])})")  # fmt: skip
    ax.axhline(0, color="0.3", linewidth=1.0, linestyle=":", label="0 = all customers' average")
    ax.set_xticks(x, [_feature_tick(c, money) for c in frame.columns], fontsize=9)
    ax.set_xlim(-0.25, x[-1] + 0.25)
    ax.set_ylabel("Segment mean (standardised: 0 = average,\n±1 = one standard deviation)")
    ax.grid(alpha=0.3)
    ax.legend(title="segment (customers)", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False, fontsize=8.5, title_fontsize=9)  # fmt: skip
    note = "Higher recency = longer since the last order (worse)" if RECENCY in frame else None
    _titles(ax, "How the segments differ: mean of each feature per segment", note)
    return fig


def embedding_scatter(
    points: np.ndarray,
    labels: np.ndarray,
    names: Mapping[int, str],
    title: str,
    max_points: int = 20_000,
    seed: int = 0,
) -> Figure:
    """Customers in a 2-D view coloured by segment; noise small and grey underneath."""
    points = np.asarray(points, dtype=float)
    labels = np.asarray(labels).astype(int)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"expected (n, 2) points and n labels, got {points.shape}, {labels.shape}")
    counts = pd.Series(labels).value_counts()
    idx = _sample_index(len(points), max_points, seed)
    shown_pts, shown_lab = points[idx], labels[idx]
    ids = sorted(counts.index.astype(int))
    colors = segment_colors(ids)
    alpha = _scatter_alpha(len(idx))
    size = float(np.clip(80_000 / max(len(idx), 1), 5, 30))
    fig = _figure(9, 6)
    ax = fig.add_subplot()
    for sid in sorted(ids, key=lambda s: (s >= 0, s)):  # noise first, underneath
        mask = shown_lab == sid
        noise = sid < 0
        ax.scatter(shown_pts[mask, 0], shown_pts[mask, 1], s=size * (0.4 if noise else 1.0),
                   color=colors[sid], alpha=alpha * (0.6 if noise else 1.0), linewidths=0,
                   rasterized=True)  # fmt: skip
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=7,
            color=colors[sid],
            label=f"{_segment_label(sid, names)} ({_number(counts[sid])})",
        )  # fmt: skip
        for sid in sorted(ids, key=lambda s: (s < 0, s))
    ]
    ax.legend(handles=handles, title="segment (customers)", loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5, title_fontsize=9)  # fmt: skip
    ax.set_xlabel("dimension 1 (no units)")
    ax.set_ylabel("dimension 2 (no units)")
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.2)
    sample = (
        f"all {_number(len(points))} customers"
        if len(idx) == len(points)
        else f"random sample of {_number(len(idx))} of {_number(len(points))} customers"
    )
    _titles(ax, title, f"One dot per customer, coloured by segment; {sample}")
    return fig


def segment_bars(profile: pd.DataFrame) -> Figure:
    """Share of customers vs share of revenue per segment: who brings in the money; with lifetime
    value (a `value_share` column) also the share of expected spend: who will."""
    customers = _first_column(profile, ("customer_share", "share_customers"))
    revenue = _first_column(profile, ("revenue_share", "share_revenue"))
    sizes = _first_column(profile, ("size", "n_customers"), required=False)
    with_value = "value_share" in profile.columns
    ids = profile["segment_id"].astype(int).to_numpy()
    names = (
        dict(zip(ids, profile["segment_name"].astype(str), strict=True))
        if "segment_name" in profile.columns
        else {}
    )
    frame = pd.DataFrame(
        {
            "sid": ids,
            "customers": profile[customers].to_numpy(dtype=float),
            "revenue": profile[revenue].to_numpy(dtype=float),
            "value": profile["value_share"].to_numpy(dtype=float) if with_value else np.nan,
            "size": profile[sizes].to_numpy(dtype=float) if sizes else np.nan,
        }
    ).sort_values(["revenue", "sid"], ascending=[True, False], na_position="first")
    colors = segment_colors(frame["sid"])
    fig = _figure(9, max(3.5, 1.4 + (0.85 if with_value else 0.62) * len(frame)))
    ax = fig.add_subplot()
    y = np.arange(len(frame))
    h = 0.27 if with_value else 0.38
    top_offset = h if with_value else h / 2
    cust_bars = ax.barh(y + top_offset, frame["customers"] * 100, height=h,
                        color=CUSTOMER_BAR)  # fmt: skip
    rev_bars = ax.barh(y + top_offset - h, frame["revenue"] * 100, height=h,
                       color=[colors[s] for s in frame["sid"]])  # fmt: skip
    ax.bar_label(cust_bars, labels=[f"{v:.1%} of customers" for v in frame["customers"]],
                 padding=3, fontsize=8, color="0.3")  # fmt: skip
    ax.bar_label(rev_bars, labels=[f"{v:.1%} of revenue" for v in frame["revenue"]],
                 padding=3, fontsize=8, fontweight="bold")  # fmt: skip
    if with_value:
        value_bars = ax.barh(y - h, frame["value"] * 100, height=h, color="white",
                             edgecolor=[colors[s] for s in frame["sid"]], hatch="////",
                             linewidth=1.2)  # fmt: skip
        ax.bar_label(value_bars, labels=[f"{v:.1%} of expected spend" for v in frame["value"]],
                     padding=3, fontsize=8)  # fmt: skip
    labels = [
        _segment_label(int(s), names) + (f"\n{_number(n)} customers" if np.isfinite(n) else "")
        for s, n in zip(frame["sid"], frame["size"], strict=True)
    ]
    ax.set_yticks(y, labels, fontsize=9)
    top = float(np.nanmax(np.r_[frame["customers"], frame["revenue"], frame["value"], 0.01])) * 100
    ax.set_xlim(0, top * (1.45 if with_value else 1.35))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}%"))
    ax.set_xlabel(
        "Share of all customers / revenue" + (" / expected spend" if with_value else "") + ", %"
    )
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    colour = colors[int(frame["sid"].iloc[-1])]
    legend = [
        Patch(facecolor=CUSTOMER_BAR, label="share of customers (grey)"),
        Patch(facecolor=colour, label="share of revenue (segment colour)"),
    ]
    if with_value:
        legend.append(
            Patch(facecolor="white", edgecolor=colour, hatch="////",
                  label="share of expected spend, next period (hatched)")
        )  # fmt: skip
    fig.legend(handles=legend, loc="outside lower center", ncol=len(legend), frameon=False,
               fontsize=8.5)  # fmt: skip
    # on the figure, not the axes: long segment names push the axes right, and a subtitle
    # starting at the axes would run off the figure
    title = "Each segment's share of customers and of revenue"
    note = ("Sorted by share of revenue; a segment with more revenue than customers is worth more "
            "than average")  # fmt: skip
    if with_value:
        title = "Each segment's share of customers, of revenue and of expected spend"
    _titles(fig, title, note)
    return fig


def _first_column(profile: pd.DataFrame, options: Sequence[str], required: bool = True):
    for name in options:
        if name in profile.columns:
            return name
    if required:
        raise ValueError(f"segment profile lacks a column {' or '.join(options)}")
    return None


def silhouette_plot(
    X: np.ndarray,
    labels: np.ndarray,
    names: Mapping[int, str],
    sample_size: int = 3000,
    seed: int = 0,
) -> Figure:
    """Classic silhouette 'knife' plot on a seeded sample, noise left out."""
    from sklearn.metrics import silhouette_samples

    title = "How well each customer fits its segment (silhouette)"
    X = np.asarray(X, dtype=float)
    labels = np.asarray(labels).astype(int)
    keep = labels != NOISE
    X, labels = X[keep], labels[keep]
    if len(np.unique(labels)) < 2:
        return _message_figure(
            title,
            "Silhouette needs at least 2 segments (noise excluded);\n"
            f"this clustering has {len(np.unique(labels))}.",
        )
    idx = _sample_index(len(X), sample_size, seed)
    Xs, ls = X[idx], labels[idx]
    present = np.unique(ls)
    if len(present) < 2 or len(present) >= len(ls):
        return _message_figure(title, "Too few customers in the sample to compute a silhouette.")
    values = silhouette_samples(Xs, ls)
    mean = float(values.mean())
    colors = segment_colors(present)

    fig = _figure(9, max(5.0, 2.5 + 0.35 * len(present)))
    ax = fig.add_subplot()
    gap = max(10, len(ls) // 60)
    lower = gap
    centres, ticklabels = [], []
    for sid in present:
        vals = np.sort(values[ls == sid])
        upper = lower + len(vals)
        ax.fill_betweenx(np.arange(lower, upper), 0, vals, color=colors[sid], alpha=0.85,
                         linewidth=0)  # fmt: skip
        centres.append((lower + upper) / 2)
        ticklabels.append(f"{_segment_label(int(sid), names)}\nmean {vals.mean():.2f}")
        lower = upper + gap
    ax.axvline(mean, color="0.15", linestyle="--", linewidth=1.5,
               label=f"mean silhouette: {mean:.2f}")  # fmt: skip
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_yticks(centres, ticklabels, fontsize=8.5)
    ax.set_ylim(0, lower)
    ax.invert_yaxis()
    lo = min(-0.1, float(values.min()) - 0.05)
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("Silhouette coefficient (−1 to 1; higher = clearly in its segment, "
                  "below 0 = closer to another segment)")  # fmt: skip
    fig.legend(loc="outside lower center", frameon=False, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    noise = int((~keep).sum())
    sample = (
        f"all {_number(len(X))} customers"
        if len(idx) == len(X)
        else f"random sample of {_number(len(idx))} of {_number(len(X))} customers"
    )
    note = f"{sample}; each sliver is one customer" + (
        f"; {_number(noise)} noise customers left out" if noise else ""
    )
    _titles(ax, title, note)
    return fig


def _heatmap(
    fig: Figure,
    ax: Axes,
    counts: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    colorbar_label: str,
) -> None:
    """Row-normalised colours, each cell annotated with its count and row share."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    n_rows, n_cols = counts.shape
    size = 9 if max(n_rows, n_cols) <= 6 else 8 if max(n_rows, n_cols) <= 9 else 7
    for i in range(n_rows):
        for j in range(n_cols):
            count = counts[i, j]
            share = "<1%" if 0 < shares[i, j] < 0.005 else f"{shares[i, j]:.0%}"
            text = f"{_number(count)}\n{share}" if count else "0"
            color = "white" if shares[i, j] > 0.55 else ("0.1" if count else "0.6")
            ax.text(j, i, text, ha="center", va="center", fontsize=size, color=color)
    ax.set_xticks(np.arange(n_cols), col_labels, rotation=35, ha="right", rotation_mode="anchor",
                  fontsize=9)  # fmt: skip
    ax.set_yticks(np.arange(n_rows), row_labels, fontsize=9)
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label(colorbar_label, fontsize=9)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0%}"))


def confusion_matrix_plot(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> Figure:
    """Where the classifier puts each segment's hold-out customers (rows sum to 100%)."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    ids = sorted(set(range(len(names))) | set(y_true.tolist()) | set(y_pred.tolist()))
    lookup = {i: names[i] for i in range(len(names))}
    position = {sid: k for k, sid in enumerate(ids)}
    counts = np.zeros((len(ids), len(ids)))
    np.add.at(counts, ([position[v] for v in y_true], [position[v] for v in y_pred]), 1)
    labels = [_segment_label(sid, lookup) for sid in ids]
    side = float(np.clip(3.5 + 0.7 * len(ids), 6.5, 12))
    fig = _figure(side + 1.8, side)
    ax = fig.add_subplot()
    _heatmap(fig, ax, counts, labels, labels, "Share of the true segment's customers")
    ax.set_xlabel("Predicted segment")
    ax.set_ylabel("True segment (from the clustering)")
    accuracy = float(np.trace(counts) / counts.sum()) if counts.sum() else float("nan")
    _titles(
        ax,
        "Segment classifier on its hold-out set: true vs predicted",
        f"{_number(len(y_true))} hold-out customers; accuracy {accuracy:.1%}; "
        "cells: customers and % of the row",
    )
    return fig


def feature_importance_plot(
    features: Sequence[str], importances: np.ndarray, title: str, money: Currency = RUB
) -> Figure:
    """Which features the classifier relies on, largest at the top."""
    values = np.asarray(importances, dtype=float)
    if len(values) != len(features):
        raise ValueError(f"{len(values)} importances for {len(features)} features")
    order = np.argsort(values, kind="stable")  # ascending: barh draws the largest at the top
    fig = _figure(8, max(3.2, 1.6 + 0.5 * len(features)))
    ax = fig.add_subplot()
    y = np.arange(len(order))
    bars = ax.barh(y, values[order], color=["#4C78A8" if v >= 0 else "#E45756" for v in
                                            values[order]], height=0.6)  # fmt: skip
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in values[order]], padding=3, fontsize=9)
    ax.set_yticks(y, [feature_label(str(features[i]), money) for i in order],
                  fontsize=9.5)  # fmt: skip
    span = max(float(np.abs(values).max()) if len(values) else 1.0, 1e-9)
    ax.set_xlim(min(0.0, float(values.min(initial=0)) * 1.3), span * 1.25)
    ax.axvline(0, color="0.4", linewidth=0.8)
    ax.set_xlabel("Importance (higher = the classifier relies on it more)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    _titles(ax, title)
    return fig


def future_spend_by_segment(
    holdout: pd.DataFrame,
    label_column: str,
    names: Mapping[int, str],
    title: str,
    money: Currency = RUB,
) -> Figure:
    """Spend in the hold-out period per segment: boxes of what returning customers spent (log
    axis), with the share who bought again and the average per customer beside each box."""
    for column in ("future_spend", label_column):
        if column not in holdout.columns:
            raise ValueError(f"hold-out table lacks column {column!r}")
    spend = holdout["future_spend"].to_numpy(dtype=float)
    spend = np.where(np.isfinite(spend), spend, 0.0)
    labels = holdout[label_column].to_numpy().astype(int)
    ids = sorted(np.unique(labels).tolist())
    if not ids:
        return _message_figure(title, "No hold-out customers to show.")
    colors = segment_colors(ids)
    fig = _figure(9.5, max(4.0, 1.8 + 0.6 * len(ids)))
    ax = fig.add_subplot()
    positions = np.arange(len(ids))[::-1]
    buyers_all = spend[spend > 0]
    for pos, sid in zip(positions, ids, strict=True):
        values = spend[labels == sid]
        buyers = values[values > 0]
        if len(buyers):
            box = ax.boxplot(buyers, positions=[pos], **_HORIZONTAL_BOX, widths=0.55, patch_artist=True,
                             showfliers=True, whis=(5, 95),
                             flierprops={"markersize": 2, "alpha": 0.3,
                                         "markeredgecolor": colors[sid]},
                             medianprops={"color": "0.1", "linewidth": 1.6})  # fmt: skip
            for patch in box["boxes"]:
                patch.set_facecolor(colors[sid])
                patch.set_alpha(0.75)
        share = float((values > 0).mean()) if len(values) else 0.0
        ax.text(1.01, pos, f"{share:.0%} bought again\navg {money.compact(values.mean())} per customer",
                transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=8.5)  # fmt: skip
    ax.set_yticks(
        positions,
        [
            f"{_segment_label(sid, names)}\n{_number((labels == sid).sum())} customers"
            for sid in ids
        ],
        fontsize=9,
    )
    ax.set_ylim(-0.7, len(ids) - 0.3)
    if len(buyers_all):
        lo, hi = float(buyers_all.min()) / 1.5, float(buyers_all.max()) * 1.5
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        _log_ticks(ax.xaxis, lo, hi)
    else:
        ax.set_xticks([])
        ax.text(0.5, 0.5, "Nobody bought again in the hold-out period", transform=ax.transAxes,
                ha="center", va="center", fontsize=11)  # fmt: skip
    ax.set_xlabel(f"Spend of customers who bought again, {money.symbol} (log scale; box = middle half, "
                  "whiskers = 5th–95th percentile)", fontsize=9)  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    _titles(ax, title, f"{_number(len(spend))} customers, {(spend > 0).mean():.0%} bought again "
            "in the hold-out period; right: average over all the segment's customers")  # fmt: skip
    return fig


def migration_heatmap(matrix: pd.DataFrame) -> Figure:
    """From-segment x to-segment customer counts; '(new)' and '(gone)' rows/columns included."""
    title = "How customers moved between segments"
    counts = matrix.to_numpy(dtype=float)
    if counts.size == 0:
        return _message_figure(title, "No customers to show.")
    rows, cols = [str(r) for r in matrix.index], [str(c) for c in matrix.columns]
    side = float(np.clip(3.5 + 0.7 * max(len(rows), len(cols)), 6.5, 12))
    fig = _figure(side + 1.8, side)
    ax = fig.add_subplot()
    _heatmap(fig, ax, counts, rows, cols, "Share of the from-segment's customers")
    ax.set_xlabel("Segment later (to)")
    ax.set_ylabel("Segment before (from)")
    stayed = sum(counts[i, cols.index(r)] for i, r in enumerate(rows) if r in cols)
    total = counts.sum()
    _titles(
        ax,
        title,
        f"{_number(total)} customers; {stayed / total:.0%} stayed in the same segment; "
        "cells: customers and % of the row"
        if total
        else "no customers",
    )
    return fig


# ------------------------------------------------------------------------------------------- sweeps
def leaderboard_bars(board: pd.DataFrame, metric: str) -> Figure:
    """The best feasible value of `metric` per reducer-clusterer-classifier combination a sweep
    tried (one bar each, best on top), annotated with segments, F1 and trial counts."""
    if board.empty or metric not in board:
        return _message_figure("Best trial per combination", "No feasible trial yet.")
    rows = board.reset_index(drop=True)
    fig = _figure(9, max(3.0, 0.45 * len(rows) + 1.6))
    ax = fig.add_subplot()
    values = rows[metric].to_numpy(dtype=float)
    positions = np.arange(len(rows))[::-1]
    feasible = ~np.isnan(values)
    ax.barh(positions[feasible], values[feasible], color=PALETTE[0], height=0.6)
    ax.set_yticks(positions, rows["combination"], fontsize=9)
    span = np.nanmax(np.abs(values)) if feasible.any() else 1.0
    for y, (_, row), value in zip(positions, rows.iterrows(), values, strict=True):
        if np.isnan(value):
            note = f"no feasible trial ({int(row['trials'])} tried)"
            ax.text(0, y, "  " + note, va="center", fontsize=8, color="0.4")
            continue
        # F1 is among the objectives' columns when it is one of them (the board shows it once)
        f1 = row["f1_macro"] if "f1_macro" in row else row["classifier/f1_macro"]
        note = (
            f" {value:.3f}  ·  {int(row['n_segments'])} segments  ·  F1 {f1:.2f}  ·  "
            f"{int(row['feasible'])}/{int(row['trials'])} feasible"
        )
        ax.text(max(value, 0), y, note, va="center", fontsize=8)
    ax.set_xlim(min(0.0, np.nanmin(values) * 1.1) if feasible.any() else 0, span * 1.9)
    ax.set_xlabel(f"best {metric} among feasible trials")
    ax.grid(axis="x", alpha=0.3)
    _titles(
        fig,
        "Best trial per combination",
        "reducer-clusterer-classifier; infeasible trials excluded",
    )
    return fig
