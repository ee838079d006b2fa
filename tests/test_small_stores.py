"""Small and odd stores, generated in code: too few customers, a whale, a one-day store, a pound
store. Each asserts the exact outcome: the user error and its numbers, or distinct names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.currency import currency
from src.errors import UserError
from src.pipeline import minimum_customers, prepare_data, run_pipeline
from src.report import segment_table
from tests.conftest import RFM_KMEANS, store_records, write_json

ROOT = Path(__file__).resolve().parents[1]
DAY = np.datetime64("2025-12-31")
RECENCY_WORDS = ("Lost", "Hibernating", "At risk", "sleep", "recen", "Laps", "New")
# k-means on log-RFM gives a whale a cluster of its own (value tiers, the default, keep every
# tier at 2% of the customers or more)
KMEANS = RFM_KMEANS


def tiny_store(n_customers: int, seed: int = 0, one_day: bool = False) -> list[dict]:
    """1C-style lines of `n_customers` customers with 1-6 orders each; `one_day`: every order on
    the same day (recency is the same for everyone)."""
    rng = np.random.default_rng(seed)
    records = []
    order = 70_000
    for customer in range(1, n_customers + 1):
        for _ in range(int(rng.integers(1, 7))):
            order += 1
            day = DAY if one_day else DAY - np.timedelta64(int(rng.integers(0, 700)), "D")
            records.append(
                {
                    "date": f"{day}T{int(rng.integers(8, 20)):02d}:00:00",
                    "order_id": order,
                    "sale_id": order * 10,
                    "site_id": 1,
                    "quantity": 1,
                    "sum": round(float(rng.lognormal(np.log(2000), 0.8)), 2),
                    "address": "г. Москва",
                    "StockCode": int(rng.integers(1, 40)),
                    "CustomerID": 5000 + customer,
                }
            )
    return records


def with_whale(records: list[dict], orders: int = 300, amount: float = 50_000.0) -> list[dict]:
    """`records` plus one wholesale customer: `orders` orders of `amount` each, none a typo."""
    whale = []
    for i in range(orders):
        line = dict(records[i % len(records)])
        line.update(CustomerID=999_999, order_id=900_000 + i, sale_id=9_000_000 + i, sum=amount)
        whale.append(line)
    return records + whale


def distinct_wordy_names(names) -> bool:
    names = list(names)
    return len(set(names)) == len(names) and not any(re.search(r"\d", n) for n in names)


# ------------------------------------------------------------------------------ too few customers
@pytest.mark.parametrize(
    ("overrides", "minimum", "reason"),
    [
        ((), 20, "clusterer.n_clusters=5 segments"),
        (("clusterer.n_clusters=3", "classifier.test_size=0.5"), 6, "classifier.test_size=0.5"),
        (("clusterer=gmm", "clusterer.n_components=8"), 32, "clusterer.n_components=8"),
        (("reducer=tsne",), 31, "reducer.perplexity=30"),
        (("classifier=knn",), 20, "clusterer.n_clusters=5"),
        (("classifier=knn", "classifier.n_neighbors=30"), 40, "classifier.n_neighbors=30"),
        (("clusterer=dbscan",), 50, "two clusters of clusterer.min_samples=25"),
        (("clusterer=hdbscan",), 200, "two clusters of clusterer.min_cluster_size=100"),
    ],
)
def test_minimum_customers_follows_the_configuration(make_cfg, overrides, minimum, reason):
    needed, why = minimum_customers(make_cfg(*overrides))
    assert needed == minimum
    assert reason in why


@pytest.mark.parametrize("n_customers", [1, 2])
def test_a_store_of_one_or_two_customers_exits_2_naming_the_count_and_the_minimum(
    tmp_path, n_customers
):
    export = write_json(tmp_path / "tiny.json", tiny_store(n_customers))
    done = subprocess.run(
        [sys.executable, "-m", "src.run", f"hydra.run.dir={tmp_path}/out", f"data.path={export}",
         "tracking=none"],
        cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    noun = "customer" if n_customers == 1 else "customers"
    assert (
        f"error: {export}: {n_customers} {noun} after cleaning, but this run needs at least 20 "
        "(clusterer.n_clusters=5 segments, each in the classifier's hold-out "
        "(classifier.test_size=0.25) and its training part)"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_one_customer_short_of_the_minimum_is_refused_and_the_minimum_runs(make_cfg, tmp_path):
    few = write_json(tmp_path / "few.json", tiny_store(19))
    cfg = make_cfg(f"data.path={few}", "tracking=none")
    with pytest.raises(
        UserError, match=r"19 customers after cleaning, but this run needs at least 20"
    ):
        run_pipeline(cfg, prepare_data(cfg, with_figures=False))
    enough = write_json(tmp_path / "enough.json", tiny_store(20))
    cfg = make_cfg(f"data.path={enough}", "tracking=none")
    result = run_pipeline(cfg, prepare_data(cfg, with_figures=False))
    assert len(result.segments) == 20 and result.profile["size"].sum() == 20
    assert distinct_wordy_names(result.profile["segment_name"])


# ------------------------------------------------------------------------------------- odd stores
def test_a_whale_gets_its_own_segment_and_does_not_block_the_run(make_cfg, tmp_path):
    export = write_json(tmp_path / "whale.json", with_whale(store_records()[0]))
    cfg = make_cfg(f"data.path={export}", "tracking=none", *KMEANS)
    data = prepare_data(cfg, with_figures=False)
    assert data.rfm.loc["999999", "frequency"] == 300  # not capped away by cleaning
    result = run_pipeline(cfg, data)
    whale = result.segments.set_index("customer_id").loc["999999"]
    assert whale["segment_id"] == 0  # ids go by mean spend: the whale's segment comes first
    assert result.profile.loc[0, "size"] == 1
    assert distinct_wordy_names(result.profile["segment_name"])
    assert "segment 0 (a single customer each) trained on but left out of the classifier's " \
        "hold-out" in " ".join(result.notes)  # fmt: skip
    assert 0.0 < result.metrics["classifier/accuracy"] <= 1.0
    assert result.segmenter.classifier.predict(np.zeros((1, 3))).shape == (1,)
    result.figures()  # the confusion matrix has a row without hold-out customers


def test_a_whale_that_leaves_everyone_else_in_one_cluster_is_clustered_without(make_cfg, tmp_path):
    # 30 ordinary customers and a whale, two segments: k-means gives the whale one cluster and the
    # 30 the other (97% in one cluster: degenerate); without the whale the 30 split in two
    export = write_json(tmp_path / "whale.json", with_whale(tiny_store(30)))
    cfg = make_cfg(f"data.path={export}", "tracking=none", "clusterer.n_clusters=2", *KMEANS)
    result = run_pipeline(cfg, prepare_data(cfg, with_figures=False))
    segments = result.segments.set_index("customer_id")
    assert segments.loc["999999", "assigned_by"] == "classifier"
    assert segments.loc["999999", "segment_id"] == 0  # the higher-spend segment
    assert (segments.drop(index="999999")["assigned_by"] == "clusterer").all()
    assert sorted(result.profile["size"]) == [11, 20]
    assert distinct_wordy_names(result.profile["segment_name"])
    assert (
        "1 customer(s) in clusters of their own (999999) left every other customer in one "
        "cluster: clustered without them, the classifier assigns them"
    ) in result.notes


def test_a_one_day_store_gets_distinct_names_that_do_not_speak_of_recency(make_cfg, tmp_path):
    export = write_json(tmp_path / "one_day.json", tiny_store(80, seed=4, one_day=True))
    cfg = make_cfg(f"data.path={export}", "tracking=none")
    data = prepare_data(cfg, with_figures=False)
    assert data.rfm["recency"].nunique() == 1
    result = run_pipeline(cfg, data)
    names = result.profile["segment_name"].tolist()
    assert len(names) == 5 and distinct_wordy_names(names)
    assert not [n for n in names if any(word in n for word in RECENCY_WORDS)], names
    # One purchase day each: no repeat purchases, so no lifetime value; the default value tiers
    # cut past spend instead, and say so.
    assert data.value is None and "repeat purchase" in data.value_error
    assert any(
        note.startswith("segmented on ['monetary', 'recency', 'frequency'], all logged "
                        "(features.fallback_columns), instead of ['expected_value', 'p_alive'")
        for note in result.notes
    ), result.notes  # fmt: skip
    assert result.segmenter.features == ("monetary", "recency", "frequency")
    assert result.segmenter.value_model is None
    spend = data.rfm["monetary"].groupby(result.segments.set_index("customer_id")["segment_id"])
    assert spend.min().is_monotonic_decreasing  # tier 0 holds the biggest spenders
    refused = make_cfg(f"data.path={export}", "tracking=none", "features.fallback_columns=null")
    with pytest.raises(UserError, match="needs the lifetime-value models.*repeat purchase"):
        prepare_data(refused, with_figures=False)


def test_a_pound_store_from_the_online_retail_preset_speaks_pounds(make_cfg, tmp_path):
    rng = np.random.default_rng(1)
    lines = pd.DataFrame(
        {
            "Invoice": [f"5{i // 2:05d}" for i in range(400)],
            "StockCode": rng.integers(10_000, 10_050, 400).astype(str),
            "Quantity": rng.integers(1, 6, 400),
            "InvoiceDate": [
                f"2011-{1 + (i // 2) % 12:02d}-{1 + (i // 2) % 28:02d} 10:{i % 60:02d}:00"
                for i in range(400)
            ],
            "Price": np.round(rng.lognormal(1.5, 0.6, 400), 2),
            "Customer ID": [f"{12_000 + (i // 2) % 40}.0" for i in range(400)],
            "Country": "United Kingdom",
        }
    )
    export = tmp_path / "online_retail.csv"
    lines.to_csv(export, index=False)
    cfg = make_cfg("data=online_retail", f"data.path={export}", "tracking=none")
    assert cfg.data.currency == "GBP"
    data = prepare_data(cfg, with_figures=True)
    report = json.loads(json.dumps(data.cleaning.to_dict()))
    assert report["currency"] == "GBP"
    assert {"amount_raw", "amount_clean"} <= set(report) and "rubles_raw" not in report
    assert "£ change" in data.cleaning.to_table()
    waterfall = data.figures["eda_cleaning_waterfall"]
    assert "£" in waterfall.axes[0].get_title(loc="left")
    result = run_pipeline(cfg, data)
    table = segment_table(result.profile, currency(cfg.data.currency))
    assert "M mean, £" in table.splitlines()[0] and "₽" not in table
