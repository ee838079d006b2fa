import io
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import silhouette_samples

from src.currency import currency
from src.evaluation import plots

NAMES = {0: "Champions", 1: "Lost", 2: "New"}


# ------------------------------------------------------------------------------------------- data
def transactions(n_customers: int = 60, seed: int = 0) -> pd.DataFrame:
    """Lines of orders over Jan-Jun 2023, March left empty on purpose."""
    rng = np.random.default_rng(seed)
    rows = []
    order = 0
    months = [1, 2, 4, 5, 6]
    for c in range(n_customers):
        for _ in range(rng.integers(1, 4)):
            order += 1
            day = pd.Timestamp(2023, int(rng.choice(months)), int(rng.integers(1, 28)))
            for _ in range(rng.integers(1, 3)):
                rows.append((f"c{c}", day, float(rng.lognormal(7.5, 0.6)), f"o{order}"))
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount", "order_id"])


def rfm_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "recency": rng.integers(0, 700, n).astype(float),
            "frequency": np.minimum(rng.geometric(0.5, n), 25).astype(float),
            "monetary": rng.lognormal(8, 1.2, n),
        },
        index=pd.Index([f"c{i}" for i in range(n)], name="customer_id"),
    )


def blobs(n_per: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    X = np.vstack([c + rng.normal(0, 0.5, (n_per, 3)) for c in centres])
    labels = np.repeat(np.arange(3), n_per)
    return X, labels


def report_dict() -> dict:
    steps = [
        ("invalid_values", True, 1000, 990, 0, 500_000.0, 495_000.0),
        ("missing_customer", True, 990, 950, 0, 495_000.0, 480_000.0),
        ("date_window", False, 950, 950, 0, 480_000.0, 480_000.0),
        ("returns", True, 950, 930, 15, 480_000.0, 470_000.0),
        ("customer_outliers", True, 930, 930, 3, 470_000.0, 400_000.0),
    ]
    return {
        "rows_raw": 1000,
        "rows_clean": 930,
        "amount_raw": 500_000.0,
        "amount_clean": 400_000.0,
        "steps": [
            {
                "name": name,
                "description": "not applied (disabled)" if not on else f"{name} applied",
                "enabled": on,
                "rows_in": rin,
                "rows_out": rout,
                "rows_removed": rin - rout,
                "rows_modified": mod,
                "amount_in": sin,
                "amount_out": sout,
                "amount_change": sout - sin,
                "detail": {},
            }
            for name, on, rin, rout, mod, sin, sout in steps
        ],
    }


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


def bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def render(fig: Figure) -> bytes:
    """Draw to PNG, failing on any matplotlib warning (missing glyphs, layout trouble) and on
    anything drawn outside the canvas (outputs are saved without bbox_inches="tight")."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(buffer, format="png", dpi=30)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        drawn = fig.get_tightbbox(canvas.get_renderer())  # inches
    width, height = fig.get_size_inches()
    slack = 0.02
    assert drawn.x0 >= -slack and drawn.y0 >= -slack, f"cut off at the left/bottom: {drawn}"
    assert drawn.x1 <= width + slack and drawn.y1 <= height + slack, f"cut off: {drawn}"
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "a plot function opened a pyplot figure"
    plt.close("all")


# ---------------------------------------------------------------------------------------- colours
def test_segment_colors_depend_on_the_id_only_and_noise_is_grey():
    some = plots.segment_colors([2, 0])
    more = plots.segment_colors([-1, 0, 1, 2, 3])
    assert some[2] == more[2] and some[0] == more[0]
    assert more[-1] == plots.NOISE_COLOR
    first = plots.segment_colors(range(18))
    assert len(set(first.values())) == 18
    assert plots.NOISE_COLOR not in first.values()


# ------------------------------------------------------------------------------------ exploratory
def test_monthly_revenue_has_one_bar_per_month_including_empty_ones():
    tx = transactions()
    fig = plots.monthly_revenue(tx)
    ax, twin = fig.axes
    heights = [b.get_height() for b in bars(ax)]
    assert len(heights) == 6  # Jan..Jun, March empty
    assert heights[2] == 0
    unit = 1e3 if "thousand" in ax.get_ylabel() else 1.0
    assert "₽" in ax.get_ylabel()
    assert sum(heights) * unit == pytest.approx(tx["amount"].sum())
    orders = twin.lines[0].get_ydata()
    assert list(orders) == [tx[tx["date"].dt.month == m]["order_id"].nunique() for m in range(1, 7)]
    assert "month" in fig.texts[0].get_text().lower() or "month" in fig._suptitle.get_text()
    render(fig)


def test_monthly_revenue_on_no_transactions_says_so():
    fig = plots.monthly_revenue(transactions().iloc[:0])
    assert any("No transactions" in t for t in texts(fig))


def test_order_value_distribution_marks_the_median_order():
    tx = transactions()
    fig = plots.order_value_distribution(tx)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert "log scale" in ax.get_xlabel() and "₽" in ax.get_xlabel()
    median = tx.groupby("order_id")["amount"].sum().median()
    xs = [line.get_xdata()[0] for line in ax.lines]
    assert median == pytest.approx(xs[0])
    assert sum(b.get_height() for b in bars(ax)) == tx["order_id"].nunique()
    render(fig)


def test_orders_per_customer_buckets_ten_and_more():
    rfm = pd.DataFrame({"frequency": [1, 1, 1, 2, 3, 10, 14, 30]}, dtype=float)
    fig = plots.orders_per_customer(rfm)
    ax = fig.axes[0]
    heights = [b.get_height() for b in bars(ax)]
    assert heights == [3, 1, 1, 0, 0, 0, 0, 0, 0, 3]
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "10+"
    render(fig)


def test_rfm_pairwise_samples_at_most_the_limit_and_logs_skewed_axes():
    rfm = rfm_table(n=400)
    fig = plots.rfm_pairwise(rfm, max_points=150, seed=1)
    main = [ax for ax in fig.axes if ax.get_ylabel() or ax.get_xlabel() or ax.collections]
    scatters = [c for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scatters) == 6  # off-diagonal cells
    assert all(len(c.get_offsets()) == 150 for c in scatters)
    assert len(fig.axes) == 12  # 9 cells + 3 twin axes holding the diagonal histograms
    monetary_row = [ax for ax in main if "Monetary" in ax.get_ylabel()]
    assert monetary_row and monetary_row[0].get_yscale() == "log"
    recency_row = [ax for ax in main if "Recency" in ax.get_ylabel()]
    assert recency_row[0].get_yscale() == "linear"
    assert "150 of 400" in fig._suptitle.get_text()
    # the same seed draws the same sample
    again = plots.rfm_pairwise(rfm, max_points=150, seed=1)
    again_scatters = [c for ax in again.axes for c in ax.collections]
    np.testing.assert_array_equal(scatters[0].get_offsets(), again_scatters[0].get_offsets())


def test_rfm_distributions_shows_every_customer_before_and_after():
    rfm = rfm_table(n=200)
    transformed = (np.log1p(rfm) - np.log1p(rfm).mean()) / np.log1p(rfm).std()
    fig = plots.rfm_distributions(rfm, transformed)
    assert len(fig.axes) == 6
    right_counts = [sum(b.get_height() for b in bars(ax)) for ax in fig.axes[1::2]]
    assert right_counts == [200, 200, 200]
    # recency is not skewed: every customer shown, no note
    assert sum(b.get_height() for b in bars(fig.axes[0])) == 200 and not fig.axes[0].texts
    # monetary is skewed: the axis ends at a high percentile and the note counts the rest
    left = fig.axes[4]
    shown = sum(b.get_height() for b in bars(left))
    (note,) = [t.get_text() for t in left.texts]
    hidden = int(note.split(" ")[0])
    assert shown + hidden == 200
    top = 0.95 if "top 5%" in note else 0.99
    assert shown == (rfm["monetary"] <= rfm["monetary"].quantile(top)).sum()
    assert hidden == pytest.approx(200 * (1 - top), abs=1)


def test_cleaning_waterfall_has_a_bar_per_enabled_step_and_the_totals():
    report = report_dict()
    fig = plots.cleaning_waterfall(report)
    ax = fig.axes[0]
    enabled = sum(step["enabled"] for step in report["steps"])
    coloured = [b for b in bars(ax) if b.get_width() > 0]
    assert len(coloured) == enabled + 2  # raw export and clean totals
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "raw export" and labels[-1] == "clean"
    assert "date window (off)" in labels
    notes = [t.get_text() for t in ax.texts]
    assert "−40" in notes and "−20 · 15 changed" in notes and "off" in notes
    assert ax.get_xlabel().startswith("Lines left")
    money = fig.axes[1]  # the same steps in money, the amount each took out
    money_notes = [t.get_text() for t in money.texts]
    assert "−15\u00a0000 ₽" in money_notes  # RUB: the report names no currency
    assert money_notes[0] == "500\u00a0000 ₽" and "−10\u00a0000 ₽" in money_notes
    assert money.get_xlabel() == "Amount left, ₽ thousand"
    assert "1,000 raw lines" in fig._suptitle.get_text()
    render(fig)


def test_money_figures_speak_the_stores_currency():
    """A pound store: every axis, legend and note that shows money shows £ and never ₽."""
    gbp = currency("GBP")
    tx = transactions()
    rfm = pd.DataFrame(
        {"recency": [1.0, 30, 200, 5], "frequency": [9.0, 3, 1, 2], "monetary": [9e3, 800, 50, 4e4]}
    )
    holdout = pd.DataFrame({"segment_id": [0, 0, 1], "future_spend": [100.0, 2500.0, 0.0]})
    figures = {
        "revenue": plots.monthly_revenue(tx, gbp),
        "order_value": plots.order_value_distribution(tx, gbp),
        "pairwise": plots.rfm_pairwise(rfm, money=gbp),
        "distributions": plots.rfm_distributions(rfm, rfm, gbp),
        "waterfall": plots.cleaning_waterfall(report_dict() | {"currency": "GBP"}),
        "snake": plots.snake_plot(rfm, np.array([0, 0, 1, 1]), NAMES, gbp),
        "importance": plots.feature_importance_plot(list(rfm), np.array([0.1, 0.2, 0.3]), "t", gbp),
        "future": plots.future_spend_by_segment(holdout, "segment_id", NAMES, "t", gbp),
    }
    for name, fig in figures.items():
        shown = " ".join(texts(fig) + [t.get_text() for ax in fig.axes for t in ax.texts])
        shown += " ".join(ax.get_xlabel() + ax.get_ylabel() for ax in fig.axes)
        shown += " ".join(t.get_text() for ax in fig.axes for t in ax.get_xticklabels())
        shown += " ".join(t.get_text() for ax in fig.axes for t in ax.get_yticklabels())
        assert "£" in shown and "₽" not in shown, name
        render(fig)
    waterfall_notes = [t.get_text() for t in figures["waterfall"].axes[1].texts]
    assert waterfall_notes[0] == "£500,000" and "−£15,000" in waterfall_notes
    assert figures["revenue"].axes[0].get_ylabel() == "Revenue, £ thousand"
    future_notes = [t.get_text() for t in figures["future"].axes[0].texts]
    assert future_notes[0] == "100% bought again\navg £1,300 per customer"


# ---------------------------------------------------------------------------------------- segments
def test_snake_plot_draws_segment_means_in_the_segment_colours():
    X, labels = blobs()
    transformed = pd.DataFrame(X, columns=["recency", "frequency", "monetary"])
    fig = plots.snake_plot(transformed, labels, NAMES)
    ax = fig.axes[0]
    lines = [line for line in ax.lines if line.get_label().startswith(("0 ·", "1 ·", "2 ·"))]
    assert len(lines) == 3
    for line in lines:
        sid = int(line.get_label().split(" ")[0])
        np.testing.assert_allclose(line.get_ydata(), X[labels == sid].mean(axis=0))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "1 · Lost (40)" in legend

    emb = plots.embedding_scatter(X[:, :2], labels, NAMES, "Embedding")
    handles = emb.axes[0].get_legend().legend_handles
    snake_colours = {line.get_label().split(" ")[0]: to_rgb(line.get_color()) for line in lines}
    for handle in handles:
        sid = handle.get_label().split(" ")[0]
        assert to_rgb(handle.get_color()) == snake_colours[sid]
    render(fig)


def test_embedding_scatter_samples_and_keeps_noise_grey():
    X, labels = blobs(n_per=100)
    labels = labels.copy()
    labels[::10] = -1
    fig = plots.embedding_scatter(X[:, :2], labels, NAMES, "Customers", max_points=120, seed=3)
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 120
    noise = ax.collections[0]  # drawn first, underneath
    assert tuple(noise.get_facecolor()[0][:3]) == pytest.approx(plots.NOISE_COLOR)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-1] == "noise (no segment) (30)"
    assert legend[0] == "0 · Champions (90)"
    assert "120 of 300" in ax.get_title(loc="left")
    render(fig)


@pytest.mark.parametrize(
    "columns",
    [
        ("size", "customer_share", "revenue_share"),
        ("n_customers", "share_customers", "share_revenue"),
    ],
)
def test_segment_bars_show_both_shares_per_segment(columns):
    size, cust, rev = columns
    profile = pd.DataFrame(
        {
            "segment_id": [0, 1, 2],
            "segment_name": ["Champions", "Lost", "New"],
            size: [100, 700, 200],
            cust: [0.1, 0.7, 0.2],
            rev: [0.5, 0.2, 0.3],
        }
    )
    fig = plots.segment_bars(profile)
    ax = fig.axes[0]
    widths = sorted(round(b.get_width(), 6) for b in bars(ax))
    assert widths == [10, 20, 20, 30, 50, 70]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1].startswith("0 · Champions")  # most revenue on top
    assert "50.0% of revenue" in [t.get_text() for t in ax.texts]
    render(fig)


def test_silhouette_plot_marks_the_mean_of_the_sample():
    X, labels = blobs()
    labels = labels.copy()
    labels[:5] = -1
    fig = plots.silhouette_plot(X, labels, NAMES, sample_size=50, seed=0)
    ax = fig.axes[0]
    knives = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(knives) == 3
    keep = labels != -1
    idx = np.sort(np.random.default_rng(0).choice(keep.sum(), size=50, replace=False))
    expected = silhouette_samples(X[keep][idx], labels[keep][idx]).mean()
    mean_line = next(line for line in ax.lines if line.get_linestyle() == "--")
    assert mean_line.get_xdata()[0] == pytest.approx(expected)
    assert "5 noise customers left out" in ax.get_title(loc="left")
    render(fig)


def test_silhouette_plot_with_one_cluster_returns_a_message():
    X, _ = blobs()
    labels = np.zeros(len(X), dtype=int)
    labels[:10] = -1
    fig = plots.silhouette_plot(X, labels, NAMES)
    assert isinstance(fig, Figure)
    assert any("at least 2 segments" in t for t in texts(fig))
    assert not any(c for ax in fig.axes for c in ax.collections)


def test_confusion_matrix_annotations_count_every_holdout_customer():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    y_pred = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    fig = plots.confusion_matrix_plot(y_true, y_pred, ["Champions", "Lost", "New"])
    ax = fig.axes[0]
    counts = [int(t.get_text().split("\n")[0].replace(",", "")) for t in ax.texts]
    assert sum(counts) == len(y_true)
    assert counts[:3] == [2, 1, 0]
    assert "2\n67%" in [t.get_text() for t in ax.texts]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0 · Champions", "1 · Lost", "2 · New"]
    assert "hold-out" in fig._suptitle.get_text()
    assert "accuracy 80.0%" in ax.get_title(loc="left")


def test_feature_importance_puts_the_largest_on_top():
    fig = plots.feature_importance_plot(
        ["recency", "frequency", "monetary"], np.array([0.2, 0.05, 0.4]), "Permutation importance"
    )
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1].startswith("Monetary") and labels[0].startswith("Frequency")
    assert sorted(b.get_width() for b in bars(ax)) == [0.05, 0.2, 0.4]
    assert fig._suptitle.get_text() == "Permutation importance"


def test_future_spend_annotates_the_share_who_bought_again():
    holdout = pd.DataFrame(
        {
            "segment_id": [0, 0, 0, 0, 1, 1, 1, 2, 2],
            "future_spend": [100.0, 2500.0, 0.0, 900.0, 0.0, 0.0, 40.0, 0.0, 0.0],
        }
    )
    fig = plots.future_spend_by_segment(holdout, "segment_id", NAMES, "Spend after the snapshot")
    ax = fig.axes[0]
    notes = [t.get_text() for t in ax.texts]
    assert notes[0].startswith("75% bought again") and "875 ₽" in notes[0]
    assert notes[1].startswith("33% bought again")
    assert notes[2].startswith("0% bought again")
    assert ax.get_xscale() == "log"
    assert fig._suptitle.get_text() == "Spend after the snapshot"
    render(fig)


def test_migration_heatmap_counts_every_customer():
    matrix = pd.DataFrame(
        [[5, 3, 0], [10, 2, 1], [0, 4, 6]],
        index=["(new)", "Champions", "Lost"],
        columns=["Champions", "Lost", "(gone)"],
    )
    fig = plots.migration_heatmap(matrix)
    ax = fig.axes[0]
    counts = [int(t.get_text().split("\n")[0].replace(",", "")) for t in ax.texts]
    assert sum(counts) == 31
    assert fig._suptitle.get_text() == "How customers moved between segments"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["(new)", "Champions", "Lost"]
    assert "(gone)" in [t.get_text() for t in ax.get_xticklabels()]
    render(fig)


def test_leaderboard_bars_has_one_bar_per_feasible_combination():
    board = pd.DataFrame(
        {
            "combination": ["pca-kmeans-xgboost", "none-gmm-xgboost", "pca-dbscan-knn"],
            "trials": [3, 2, 2],
            "feasible": [3, 1, 0],
            "cluster/silhouette": [0.45, 0.41, np.nan],
            "n_segments": [4, 5, np.nan],
            "f1_macro": [0.98, 0.97, np.nan],
        }
    )
    fig = plots.leaderboard_bars(board, "cluster/silhouette")
    ax = fig.axes[0]
    widths = sorted(round(p.get_width(), 2) for p in ax.patches)
    assert widths == [0.41, 0.45]
    assert any("no feasible trial (2 tried)" in t.get_text() for t in ax.texts)
    by_height = {t.get_position()[1]: t.get_text() for t in ax.get_yticklabels()}
    assert [by_height[y] for y in sorted(by_height, reverse=True)] == board["combination"].tolist()


def test_leaderboard_bars_read_f1_from_its_objective_column_when_it_is_one():
    """A sweep on [cluster/silhouette, classifier/f1_macro] shows F1 once, as an objective."""
    board = pd.DataFrame(
        {
            "combination": ["pca-kmeans-xgboost"],
            "trials": [2],
            "feasible": [2],
            "cluster/silhouette": [0.45],
            "classifier/f1_macro": [0.97],
            "n_segments": [4],
        }
    )
    fig = plots.leaderboard_bars(board, "cluster/silhouette")
    assert any("F1 0.97" in t.get_text() for t in fig.axes[0].texts)
