"""Tests for src/data/synthetic.py: determinism, behavioural groups, seasonality, planted dirt, and
that the project's loader and cleaner take the export apart the way it was put together."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.data import synthetic
from src.data.clean import clean_transactions
from src.data.load import read_export, to_canonical
from src.data.synthetic import (
    GENERATOR_VERSION,
    GROUPS,
    HISTORY_END,
    DirtRates,
    default_sample_path,
    generate,
    truth_path,
    write_export,
)
from src.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
N, SEED = 2000, 11  # the shared sample: ~25k lines, generated in a fraction of a second
SHARES = {
    "new": 0.15,
    "loyal_high_value": 0.10,
    "regular": 0.30,
    "lapsing": 0.20,
    "one_off_lost": 0.22,
    "wholesale": 0.03,
}
TEST_ID = re.compile(r"(?i)^\s*(test|тест)")
END = pd.Timestamp(HISTORY_END) + pd.Timedelta(days=1)  # snapshot: midnight after the last day


# ----------------------------------------------------------------------------------- helpers
def customer_key(value: object) -> str | None:
    """CustomerID as the loader normalises it (123 and "123" are one customer)."""
    return None if value is None else str(value)


def number(value: object) -> float:
    """A JSON number or a 1C string ("1 234,50") as a float."""
    if isinstance(value, str):
        return float(value.replace("\u00a0", "").replace(",", "."))
    return float(value)


def parse_date(text: str) -> datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%d.%m.%Y %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    return None


def load(path: Path) -> pd.DataFrame:
    return to_canonical(read_export(path), source=str(path))[0]  # 1C names, recognised


def rfm(clean: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    per = clean.groupby("customer_id").agg(
        last=("date", "max"), frequency=("order_id", "nunique"), monetary=("amount", "sum")
    )
    per["recency"] = (END - per["last"]).dt.days
    return per.join(truth.set_index("customer_id"), how="inner")


@pytest.fixture(scope="module")
def sample() -> tuple[list[dict], pd.DataFrame]:
    return generate(N, SEED)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_export(tmp_path_factory.mktemp("export") / "store.json.gz", N, SEED)


@pytest.fixture(scope="module")
def cleaned(export: Path):
    return clean_transactions(load(export), None)


# ------------------------------------------------------------------------------- determinism
def test_same_seed_gives_same_bytes_and_other_seed_other_data(tmp_path: Path):
    first = write_export(tmp_path / "a" / "x.json.gz", 300, 3)
    second = write_export(tmp_path / "b" / "x.json.gz", 300, 3)
    other = write_export(tmp_path / "c" / "x.json.gz", 300, 4)
    assert first.read_bytes() == second.read_bytes()
    assert truth_path(first).read_bytes() == truth_path(second).read_bytes()
    assert first.read_bytes()[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    assert first.read_bytes() != other.read_bytes()
    assert generate(300, 3)[0] != generate(300, 4)[0]


def test_written_file_is_bom_json_equal_to_generate(tmp_path: Path):
    records, truth = generate(400, 9)
    plain = write_export(tmp_path / "x.json", 400, 9)
    zipped = write_export(tmp_path / "x.json.gz", 400, 9)
    data = plain.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf[")
    assert "г. ".encode() in data  # Cyrillic written as UTF-8, not \u escapes
    assert json.loads(data.decode("utf-8-sig")) == records
    assert gzip.decompress(zipped.read_bytes()) == data
    sidecar = pd.read_csv(truth_path(plain), dtype=str)
    assert list(sidecar.columns) == ["customer_id", "group"]
    assert sidecar.values.tolist() == truth.values.tolist()


def test_truth_path_names():
    assert truth_path(Path("/d/store.json.gz")) == Path("/d/store.truth.csv")
    assert truth_path(Path("/d/store.json")) == Path("/d/store.truth.csv")
    assert truth_path("rel/a.b.json.gz") == Path("rel/a.b.truth.csv")


def test_bad_arguments_are_refused():
    with pytest.raises(UserError, match="data.synthetic.customers"):
        generate(0, 1)
    with pytest.raises(ValueError, match="returns"):
        DirtRates(returns=1.5)


# ----------------------------------------------------------------------------------- schema
def test_records_follow_the_1c_schema(sample):
    records, _ = sample
    assert all(list(r) == list(synthetic.KEYS) for r in records[:1000])
    sale_ids = Counter(r["sale_id"] for r in records)
    assert max(sale_ids.values()) == 2  # unique, except lines exported twice
    orders: dict[int, set] = {}
    for r in records:
        orders.setdefault(r["order_id"], set()).add(
            (customer_key(r["CustomerID"]), r["address"], r["site_id"])
        )
    assert all(len(v) == 1 for v in orders.values())  # one customer, address, site per order
    lines_per_order = Counter(r["order_id"] for r in records)
    assert 1.3 < np.mean(list(lines_per_order.values())) < 4.0
    # sum = quantity x price: one unit price per (site_id, StockCode), except typos and gifts
    unit: dict[tuple, Counter] = {}
    for r in records:
        qty, amount = number(r["quantity"]), number(r["sum"])
        unit.setdefault((r["site_id"], r["StockCode"]), Counter())[round(amount / qty, 2)] += 1
    prices = np.array([c.most_common(1)[0][0] for c in unit.values()])
    assert 900 < np.median(prices) < 2200  # log-normal around 1500 rubles
    assert re.fullmatch(r"г\. [А-ЯЁ][а-яё-]+.*, д\. \d+.*", records[0]["address"])


def test_customers_keep_one_or_two_addresses(sample):
    records, _ = sample
    addresses: dict[str, set] = {}
    for r in records:
        if r["CustomerID"] is not None and not TEST_ID.match(str(r["CustomerID"])):
            addresses.setdefault(customer_key(r["CustomerID"]), set()).add(r["address"])
    counts = Counter(len(v) for v in addresses.values())
    assert set(counts) <= {1, 2}
    assert counts[2] > 0.05 * len(addresses)


def test_product_popularity_is_skewed(sample):
    records, _ = sample
    lines = Counter((r["site_id"], r["StockCode"]) for r in records)
    counts = np.sort(np.array(list(lines.values())))[::-1]
    top = counts[: max(1, len(counts) // 20)].sum() / counts.sum()
    assert top > 0.3  # the top 5% of goods sell a third of the lines
    assert {r["site_id"] for r in records} == {1, 2, 3}


# ------------------------------------------------------------------------------------ groups
def test_sidecar_lists_exactly_the_customers_of_the_export(sample):
    records, truth = sample
    ids = {customer_key(r["CustomerID"]) for r in records} - {None}
    real = {i for i in ids if not TEST_ID.match(i)}
    assert real == set(truth["customer_id"])
    assert truth["customer_id"].is_unique
    assert truth["customer_id"].str.fullmatch(r"\d+").all()
    assert set(truth["group"]) == set(GROUPS)


def test_group_shares_as_configured(sample):
    _, truth = sample
    shares = truth["group"].value_counts(normalize=True)
    for group, share in SHARES.items():
        assert shares[group] == pytest.approx(share, abs=0.01)


def test_groups_differ_in_recency_frequency_monetary(cleaned, sample):
    clean, _ = cleaned
    table = rfm(clean, sample[1])
    median = table.groupby("group")[["recency", "frequency", "monetary"]].median()
    mean = table.groupby("group")["monetary"].mean()
    f, r = median["frequency"], median["recency"]
    assert f["loyal_high_value"] > f["regular"] > f["one_off_lost"] == 1
    assert (table.loc[table.group == "one_off_lost", "frequency"] == 1).all()
    assert r.idxmin() == "new" and table.loc[table.group == "new", "recency"].max() <= 92
    assert r.idxmax() == "one_off_lost"
    assert table.loc[table.group == "one_off_lost", "recency"].min() >= 365
    lapsing = table.loc[table.group == "lapsing", "recency"]
    assert lapsing.quantile(0.9) <= 460 and lapsing.min() >= 183  # stopped 6-15 months ago
    assert r["regular"] < 150 < r["lapsing"]
    assert mean.idxmax() == "wholesale" and mean["wholesale"] > 4 * mean["loyal_high_value"]
    m = median["monetary"]
    assert m["loyal_high_value"] > m["regular"] > m["one_off_lost"]


def test_groups_are_largely_recoverable_from_log_rfm(cleaned, sample):
    """Nearest group centroid in standardised log-RFM: most customers sit nearest their own
    group (a clustering can find them), but not all (regulars shade into their neighbours)."""
    table = rfm(cleaned[0], sample[1])
    x = np.log1p(table[["recency", "frequency", "monetary"]].to_numpy(dtype=float))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    truth = table["group"].to_numpy()
    centroids = np.array([x[truth == g].mean(axis=0) for g in GROUPS])
    nearest = np.array(GROUPS)[((x[:, None, :] - centroids) ** 2).sum(axis=2).argmin(axis=1)]
    assert 0.65 < (nearest == truth).mean() < 0.95
    recall = pd.Series(nearest == truth).groupby(truth).mean()
    assert recall.drop("regular").min() > 0.7 and recall["regular"] > 0.3


# ------------------------------------------------------------------------------- seasonality
def test_november_december_peak_and_weekday_pattern(cleaned):
    clean, _ = cleaned
    daily = clean.set_index("date")["amount"].resample("D").sum()
    peak = daily[daily.index.month.isin([11, 12])].mean()
    assert peak > 1.2 * daily.mean()
    orders = clean.drop_duplicates("order_id").set_index("date")["order_id"].resample("D").count()
    weekday = orders.groupby(orders.index.day_of_week).mean()
    assert weekday[[0, 1, 2, 3]].mean() > 1.2 * weekday[[5, 6]].mean()


def test_history_ends_on_the_fixed_date(sample):
    records, _ = sample
    dates = [parse_date(r["date"]) for r in records]
    valid = [d for d in dates if d is not None and d.year != 2031]
    assert max(valid).date() == HISTORY_END
    assert min(valid).date() >= datetime(2023, 7, 1).date()
    assert max(valid) < datetime.now()


# -------------------------------------------------------------------------------------- dirt
def typo_rows(records: list[dict]) -> set[int]:
    """Lines whose unit price is 50x the cheapest line of the same good (extra zeros typed).
    A typo on a good bought only once cannot be told apart and is not counted."""
    unit = pd.DataFrame(
        {
            "good": [(r["site_id"], r["StockCode"]) for r in records],
            "price": [number(r["sum"]) / number(r["quantity"]) for r in records],
        }
    )
    unit = unit[unit["price"] > 0]
    cheapest = unit.groupby("good")["price"].transform("min")
    return set(unit.index[unit["price"] > 50 * cheapest])


def dirt_counts(records: list[dict]) -> Counter:
    """Each planted kind of dirt, counted straight from the raw records."""
    out: Counter = Counter()
    previous = None
    for r in records:
        cid, text = r["CustomerID"], r["date"]
        out["null_id"] += cid is None
        out["test"] += isinstance(cid, str) and bool(TEST_ID.match(cid))
        out["string_id"] += isinstance(cid, str) and cid.isdigit()
        out["number_id"] += isinstance(cid, int)
        out["duplicate"] += r == previous
        previous = r
        amount, qty = number(r["sum"]), number(r["quantity"])
        out["negative"] += amount < 0 and qty < 0
        out["zero"] += amount == 0
        out["string_sum"] += isinstance(r["sum"], str)
        out["string_qty"] += isinstance(r["quantity"], str)
        out["dotted"] += bool(re.fullmatch(r"\d\d\.\d\d\.\d{4} \d{1,2}:\d\d:\d\d", text))
        date = parse_date(text)
        out["bad_date"] += date is None
        out["future"] += date is not None and date.year == 2031
    out["typo"] = len(typo_rows(records))
    out["lines"] = len(records)
    return out


def test_dirt_is_planted_at_the_configured_rates(sample):
    records, _ = sample
    c = dirt_counts(records)
    n = c["lines"]
    rates = DirtRates()
    assert c["null_id"] == pytest.approx(rates.missing_customer * n, rel=0.2)
    assert c["duplicate"] == pytest.approx(rates.duplicates * n, rel=0.2)
    assert c["negative"] == pytest.approx(rates.returns * n, rel=0.2)
    assert c["zero"] == pytest.approx(rates.zero_sum * n, rel=0.25)
    assert c["test"] == pytest.approx(rates.test_lines * n, rel=0.35)
    assert c["bad_date"] == pytest.approx(rates.malformed_dates * n, abs=5)
    assert c["bad_date"] > 0 and c["future"] > 0 and c["typo"] > 0
    assert c["future"] == pytest.approx(rates.future_dates * n, abs=5)
    assert c["typo"] == pytest.approx(rates.outliers * n, abs=5)
    assert c["string_sum"] == pytest.approx(rates.string_numbers * n, rel=0.15)
    assert c["string_qty"] == pytest.approx(rates.string_numbers * n, rel=0.15)
    assert c["dotted"] == pytest.approx(rates.dotted_dates * n, rel=0.1)
    real = c["string_id"] + c["number_id"]
    assert c["string_id"] == pytest.approx(rates.string_customer_ids * real, rel=0.1)
    text_sums = [r["sum"] for r in records if isinstance(r["sum"], str)]
    assert any(re.fullmatch(r"-?\d{1,3}(\u00a0\d{3})+,\d\d", s) for s in text_sums)
    tests = {r["CustomerID"] for r in records if isinstance(r["CustomerID"], str)}
    assert {"TEST-001", "тест_менеджер"} <= tests


def test_returns_copy_an_earlier_line_of_the_same_customer(sample):
    records, _ = sample
    bought: dict[tuple, list] = {}
    for r in records:
        if number(r["sum"]) > 0 and r["CustomerID"] is not None:
            key = (customer_key(r["CustomerID"]), r["StockCode"])
            bought.setdefault(key, []).append((parse_date(r["date"]), number(r["quantity"])))
    returns = [r for r in records if number(r["sum"]) < 0]
    assert returns
    for r in returns:
        when = parse_date(r["date"])
        earlier = bought[(customer_key(r["CustomerID"]), r["StockCode"])]
        assert any(d is not None and d <= when and q >= -number(r["quantity"]) for d, q in earlier)


def test_clean_rates_give_tidy_records():
    records, truth = generate(300, 2, DirtRates.clean())
    c = dirt_counts(records)
    for kind in ("null_id", "test", "string_id", "duplicate", "negative", "zero", "typo"):
        assert c[kind] == 0, kind
    for kind in ("string_sum", "string_qty", "dotted", "bad_date", "future"):
        assert c[kind] == 0, kind
    assert {str(r["CustomerID"]) for r in records} == set(truth["customer_id"])


def test_loader_and_cleaner_remove_the_planted_dirt(export: Path, cleaned):
    raw = json.loads(gzip.decompress(export.read_bytes()).decode("utf-8-sig"))
    c = dirt_counts(raw)
    clean, report = cleaned
    print(report.to_table())
    step = report.step
    assert report.rows_raw == len(raw)
    assert step("invalid_values").rows_removed == c["bad_date"]
    assert step("missing_customer").rows_removed == c["null_id"]
    assert step("test_accounts").rows_removed == c["test"]
    assert step("duplicates").rows_removed == c["duplicate"]
    assert step("date_window").detail["after_end"] == c["future"]
    assert step("returns").detail["return_lines"] == c["negative"]
    assert step("returns").detail["returns_unmatched"] == 0
    # zero-sum gifts plus the purchases the returns cancelled in full
    assert c["zero"] < step("non_positive").rows_removed < c["zero"] + c["negative"]
    # Every line the fence drops is a planted typo; a x100 typo on a cheap line may stay under it.
    kept_without_fence, _ = clean_transactions(load(export), {"line_outliers": {"enabled": False}})
    dropped = set(kept_without_fence.index) - set(clean.index)
    typos = typo_rows(raw)
    assert dropped <= typos
    assert len(dropped) >= 0.5 * len(typos)
    assert clean["customer_id"].notna().all()
    assert not clean["customer_id"].str.match(TEST_ID.pattern).any()
    assert clean["date"].max() < END and (clean["amount"] > 0).all()
    assert clean["customer_id"].nunique() >= 0.99 * N


# ---------------------------------------------------------------------------------- cache, CLI
def test_default_sample_path_generates_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CUSTOMER_SEGMENTATION_CACHE", str(tmp_path / "cache"))
    path = default_sample_path(n_customers=60, seed=2)
    assert path.parent == tmp_path / "cache"
    assert "n60" in path.name and "seed2" in path.name and f"v{GENERATOR_VERSION}" in path.name
    assert path.exists() and truth_path(path).exists()

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although the file exists")

    monkeypatch.setattr(synthetic, "write_export", boom)
    assert default_sample_path(n_customers=60, seed=2) == path
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_cli_writes_export_and_prints_summary(tmp_path: Path):
    out = tmp_path / "cli.json.gz"
    result = subprocess.run(
        [sys.executable, "-m", "src.data.synthetic", "--customers", "40", "--seed", "5"]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    assert "customers: 40" in result.stdout
    lines = int(re.search(r"lines: (\d+)", result.stdout).group(1))
    assert lines == len(json.loads(gzip.decompress(out.read_bytes()).decode("utf-8-sig")))
    for group in GROUPS:
        assert f"{group}: " in result.stdout
    assert len(pd.read_csv(truth_path(out))) == 40
    assert out.read_bytes() == write_export(tmp_path / "again.json.gz", 40, 5).read_bytes()
