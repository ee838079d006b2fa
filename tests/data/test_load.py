"""Tests for src/data/load.py: formats, 1C quirks, column mapping and user-facing errors."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.data.load import (
    LoadSettings,
    load_transactions,
    normalise_ids,
    parse_dates,
    parse_ru_numbers,
    read_export,
    sniff_delimiter,
    to_canonical,
)
from src.errors import UserError


def load(path: Path, fmt: str = "auto", **settings) -> pd.DataFrame:
    """The canonical table of `path` read with LoadSettings(**settings)."""
    return load_transactions(path, LoadSettings(**settings), fmt=fmt)[0]


ADDRESS_MSK = "г. Москва, ул. Ленина, д. 5, кв. «12»"
ADDRESS_SPB = "Санкт-Петербург, Невский пр., 100"

# A small 1C export with every quirk: mixed date forms, numbers as JSON numbers and Russian
# strings, CustomerID as int, float and (padded) string, a missing id, Cyrillic text.
RECORDS: list[dict] = [
    {
        "date": "2024-03-05T14:02:11",
        "order_id": "A-1",
        "sale_id": 1,
        "site_id": 3,
        "quantity": 2,
        "sum": "1 234,50",
        "address": ADDRESS_MSK,
        "StockCode": "85123A",
        "CustomerID": 1234,
    },
    {
        "date": "05.03.2024 14:02:11",
        "order_id": "A-1",
        "sale_id": 2,
        "site_id": 3,
        "quantity": 1,
        "sum": 99.9,
        "address": ADDRESS_MSK,
        "StockCode": "22423",
        "CustomerID": "1234",
    },
    {
        "date": "5.03.2024 9:02:11",
        "order_id": "A-2",
        "sale_id": 3,
        "site_id": 3,
        "quantity": 1,
        "sum": "1\u00a0000,00",
        "address": ADDRESS_SPB,
        "StockCode": 85048,
        "CustomerID": 1234.0,
    },
    {
        "date": "05.03.2024",
        "order_id": "B-7",
        "sale_id": 4,
        "site_id": 3,
        "quantity": -1,
        "sum": "-12,5",
        "address": ADDRESS_SPB,
        "StockCode": "22423",
        "CustomerID": " 77 ",
    },
    {
        "date": "2024-03-06 10:00:00",
        "order_id": "C-1",
        "sale_id": 5,
        "site_id": 4,
        "quantity": 3,
        "sum": "1234.50",
        "address": "",
        "StockCode": "22423",
        "CustomerID": None,
    },
    {
        "date": "2024-03-07",
        "order_id": "D-1",
        "sale_id": 6,
        "site_id": 4,
        "quantity": 1,
        "sum": "1\u202f234",
        "address": ADDRESS_MSK,
        "StockCode": "22423",
        "CustomerID": "тест_менеджер",
    },
]
EXPECTED_IDS = ["1234", "1234", "1234", "77", None, "тест_менеджер"]
EXPECTED_DATES = pd.to_datetime(
    [
        "2024-03-05 14:02:11",
        "2024-03-05 14:02:11",
        "2024-03-05 09:02:11",
        "2024-03-05 00:00:00",
        "2024-03-06 10:00:00",
        "2024-03-07 00:00:00",
    ]
)
EXPECTED_AMOUNTS = [1234.5, 99.9, 1000.0, -12.5, 1234.5, 1234.0]
EXPECTED_ADDRESSES = [ADDRESS_MSK, ADDRESS_MSK, ADDRESS_SPB, ADDRESS_SPB, None, ADDRESS_MSK]

ONLINE_RETAIL_COLUMNS = {
    "customer_id": "Customer ID",
    "date": "InvoiceDate",
    "amount": None,
    "order_id": "Invoice",
    "sale_id": None,
    "quantity": "Quantity",
    "product_id": "StockCode",
    "site_id": None,
    "address": "Country",
    "price": "Price",
}


# ---------------------------------------------------------------------------------------------
# Writers (tests build every file in tmp_path)
# ---------------------------------------------------------------------------------------------


def _write(path: Path, data: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_json(path: Path, records: list[dict], gz: bool = False, bom: bool = False) -> Path:
    text = json.dumps(records, ensure_ascii=False, indent=1)
    return _write(path, text.encode("utf-8-sig" if bom else "utf-8"), gz)


def write_jsonl(path: Path, records: list[dict], gz: bool = False) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return _write(path, text.encode("utf-8"), gz)


def _as_cell(value: object) -> str:
    return "" if value is None else str(value)


def write_csv(
    path: Path,
    records: list[dict],
    sep: str = ";",
    gz: bool = False,
    encoding: str = "utf-8",
) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(records[0]), delimiter=sep, lineterminator="\r\n"
    )
    writer.writeheader()
    writer.writerows({k: _as_cell(v) for k, v in r.items()} for r in records)
    return _write(path, buffer.getvalue().encode(encoding), gz)


def write_parquet(path: Path, records: list[dict], gz: bool = False) -> Path:
    # Parquet columns have one type: store the 1C values as text, as an export tool would.
    frame = pd.DataFrame(
        {k: [None if r[k] is None else str(r[k]) for r in records] for k in records[0]}
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return _write(path, buffer.getvalue(), gz)


def assert_canonical_values(df: pd.DataFrame) -> None:
    assert len(df) == len(RECORDS)
    assert [None if pd.isna(v) else v for v in df["customer_id"]] == EXPECTED_IDS
    pd.testing.assert_series_equal(
        df["date"], pd.Series(EXPECTED_DATES, name="date").astype("datetime64[ns]")
    )
    np.testing.assert_allclose(df["amount"].to_numpy(), EXPECTED_AMOUNTS)
    assert [None if pd.isna(v) else v for v in df["address"]] == EXPECTED_ADDRESSES
    assert df["order_id"].tolist() == ["A-1", "A-1", "A-2", "B-7", "C-1", "D-1"]
    assert df["sale_id"].tolist() == ["1", "2", "3", "4", "5", "6"]
    assert df["site_id"].tolist() == ["3", "3", "3", "3", "4", "4"]
    assert df["product_id"].tolist() == ["85123A", "22423", "85048", "22423", "22423", "22423"]
    np.testing.assert_allclose(df["quantity"].to_numpy(), [2, 1, 1, -1, 3, 1])
    assert df["date"].dtype == "datetime64[ns]"
    assert df["amount"].dtype == "float64"
    assert df["quantity"].dtype == "float64"
    for column in ("customer_id", "order_id", "sale_id", "site_id", "product_id", "address"):
        assert pd.api.types.is_string_dtype(df[column]), column
    assert list(df.columns) == [
        "customer_id",
        "date",
        "amount",
        "order_id",
        "sale_id",
        "quantity",
        "product_id",
        "site_id",
        "address",
    ]


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------

WRITERS = {
    "json": lambda p, gz: write_json(p / "export.json", RECORDS, gz=gz),
    "json-bom": lambda p, gz: write_json(p / "export.json", RECORDS, gz=gz, bom=True),
    "jsonl": lambda p, gz: write_jsonl(p / "export.jsonl", RECORDS, gz=gz),
    "ndjson": lambda p, gz: write_jsonl(p / "export.ndjson", RECORDS, gz=gz),
    "csv-semicolon": lambda p, gz: write_csv(p / "export.csv", RECORDS, sep=";", gz=gz),
    "csv-comma": lambda p, gz: write_csv(p / "export.csv", RECORDS, sep=",", gz=gz),
    "csv-bom": lambda p, gz: write_csv(p / "export.csv", RECORDS, gz=gz, encoding="utf-8-sig"),
    # Russian Excel saves Windows-1251, which has NBSP but no narrow NBSP.
    "csv-cp1251": lambda p, gz: write_csv(
        p / "export.csv",
        [{**r, "sum": str(r["sum"]).replace("\u202f", "\u00a0")} for r in RECORDS],
        gz=gz,
        encoding="cp1251",
    ),
    "parquet": lambda p, gz: write_parquet(p / "export.parquet", RECORDS, gz=gz),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_format_loads_the_same_table(tmp_path: Path, kind: str, gz: bool) -> None:
    path = WRITERS[kind](tmp_path, gz)
    assert path.name.endswith(".gz") == gz
    assert_canonical_values(load(path))


def test_json_keeps_numbers_and_strings_raw(tmp_path: Path) -> None:
    raw = read_export(write_json(tmp_path / "export.json", RECORDS))
    assert raw["sum"].tolist()[:2] == ["1 234,50", 99.9]
    assert raw["CustomerID"].tolist()[:3] == [1234, "1234", 1234.0]


@pytest.mark.parametrize(
    ("fmt", "writer"),
    [
        ("json", write_json),
        ("jsonl", write_jsonl),
        ("csv", write_csv),
        ("parquet", write_parquet),
    ],
)
def test_fmt_overrides_the_extension(tmp_path: Path, fmt: str, writer) -> None:
    path = writer(tmp_path / "export.dat", RECORDS)
    assert_canonical_values(load(path, fmt=fmt))


def test_gzip_is_recognised_by_content(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(gzip.compress(json.dumps(RECORDS, ensure_ascii=False).encode()))
    assert_canonical_values(load(path))


def test_csv_with_comma_delimiter_keeps_quoted_russian_numbers(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        'CustomerID,date,sum\n1,05.03.2024,"1 234,50"\n2,06.03.2024,"-7,25"\n', encoding="utf-8"
    )
    df = load(path)
    assert df["amount"].tolist() == [1234.5, -7.25]
    assert df["customer_id"].tolist() == ["1", "2"]


def test_sniff_delimiter() -> None:
    assert sniff_delimiter("CustomerID;date;sum") == ";"
    assert sniff_delimiter("CustomerID,date,sum") == ","
    assert sniff_delimiter("CustomerID\tdate\tsum") == "\t"
    assert sniff_delimiter("CustomerID") == ","


def test_parquet_with_native_types(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "CustomerID": [1234, 77],
            "date": pd.to_datetime(["2024-03-05 14:02:11", "2024-03-06 00:00:00"]),
            "sum": [1234.5, -12.5],
        }
    )
    path = tmp_path / "export.parquet"
    frame.to_parquet(path)
    df = load(path)
    assert df["customer_id"].tolist() == ["1234", "77"]
    assert df["date"].tolist() == [
        pd.Timestamp("2024-03-05 14:02:11"),
        pd.Timestamp("2024-03-06"),
    ]
    assert df["amount"].tolist() == [1234.5, -12.5]
    assert list(df.columns) == ["customer_id", "date", "amount", "order_id"]


# ---------------------------------------------------------------------------------------------
# Value parsers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-05T14:02:11", "2024-03-05 14:02:11"),
        ("2024-03-05 14:02:11", "2024-03-05 14:02:11"),
        ("2024-03-05", "2024-03-05 00:00:00"),
        ("2024-03-05T14:02:11.250", "2024-03-05 14:02:11.250"),
        ("05.03.2024 14:02:11", "2024-03-05 14:02:11"),
        ("5.03.2024 9:02:11", "2024-03-05 09:02:11"),
        ("5.3.2024 9:02", "2024-03-05 09:02:00"),
        ("05.03.2024", "2024-03-05 00:00:00"),
        (" 05.03.2024 ", "2024-03-05 00:00:00"),
        ("05/03/2024 14:02", "2024-03-05 14:02:00"),
    ],
)
def test_parse_dates_each_form(raw: str, expected: str) -> None:
    parsed = parse_dates(pd.Series([raw], dtype=object))
    assert parsed.dtype == "datetime64[ns]"
    assert parsed.iloc[0] == pd.Timestamp(expected)


def test_parse_dates_mixed_forms_and_bad_values_in_one_column() -> None:
    raw = pd.Series(
        [
            "2024-03-05T14:02:11",
            "06.03.2024 10:00:00",
            "31.02.2024",  # right shape, impossible date
            "2024-03-07",
            "вчера",
            None,
            "",
            "7.3.2024",
            "2024-13-01",
        ],
        index=[10, 11, 12, 13, 14, 15, 16, 17, 18],
        dtype=object,
    )
    parsed = parse_dates(raw)
    expected = pd.Series(
        pd.to_datetime(
            [
                "2024-03-05 14:02:11",
                "2024-03-06 10:00:00",
                None,
                "2024-03-07",
                None,
                None,
                None,
                "2024-03-07",
                None,
            ],
            format="ISO8601",
        ),
        index=raw.index,
    ).astype("datetime64[ns]")
    pd.testing.assert_series_equal(parsed, expected)


def test_parse_dates_dayfirst_false_reads_month_first() -> None:
    raw = pd.Series(["12/1/2009 7:45", "03.05.2024", "2009-12-01 07:45:00"], dtype=object)
    assert parse_dates(raw, dayfirst=False).tolist() == [
        pd.Timestamp("2009-12-01 07:45"),
        pd.Timestamp("2024-03-05"),
        pd.Timestamp("2009-12-01 07:45"),
    ]
    assert parse_dates(raw, dayfirst=True).iloc[1] == pd.Timestamp("2024-05-03")


def test_parse_dates_passes_datetimes_through_keeping_wall_time() -> None:
    naive = pd.Series(pd.to_datetime(["2024-03-05 14:02:11"]))
    aware = naive.dt.tz_localize("Europe/Moscow")
    assert parse_dates(naive).iloc[0] == pd.Timestamp("2024-03-05 14:02:11")
    assert parse_dates(aware).iloc[0] == pd.Timestamp("2024-03-05 14:02:11")
    assert parse_dates(aware).dtype == "datetime64[ns]"


def test_parse_dates_many_repeated_values_map_back_in_order() -> None:
    forms = ["2024-03-05T14:02:11", "06.03.2024", "bad", None]
    raw = pd.Series(forms * 500, dtype=object)
    parsed = parse_dates(raw)
    assert parsed.iloc[4:8].tolist() == parsed.iloc[:4].tolist()
    assert parsed.iloc[-4] == pd.Timestamp("2024-03-05 14:02:11")
    assert parsed.iloc[-3] == pd.Timestamp("2024-03-06")
    assert parsed.isna().sum() == 1000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1 234,50", 1234.5),
        ("1\u00a0234,50", 1234.5),
        ("1\u202f234,50", 1234.5),
        ("12 345 678,9", 12345678.9),
        ("-12,5", -12.5),
        ("\u221212,5", -12.5),
        ("1234.50", 1234.5),
        ("1 234", 1234.0),
        (" 7 ", 7.0),
        ("1.234,50", 1234.5),
        ("1,234.50", 1234.5),
        (5, 5.0),
        (2.25, 2.25),
        ("", None),
        (None, None),
        ("abc", None),
        ("12,5 руб", None),
        ("inf", None),
        ("1e3", 1000.0),
    ],
)
def test_parse_ru_numbers(raw: object, expected: float | None) -> None:
    parsed = parse_ru_numbers(pd.Series([raw, "0"], dtype=object))
    assert parsed.dtype == "float64"
    assert parsed.iloc[1] == 0.0
    if expected is None:
        assert np.isnan(parsed.iloc[0])
    else:
        assert parsed.iloc[0] == pytest.approx(expected)


def test_parse_ru_numbers_numeric_and_text_dtypes() -> None:
    ints = pd.Series([1, -2, 3], index=[5, 6, 7])
    pd.testing.assert_series_equal(parse_ru_numbers(ints), ints.astype("float64"))
    text = pd.Series(["1 234,5", None, "2"], dtype="str")
    assert parse_ru_numbers(text).tolist()[0::2] == [1234.5, 2.0]
    assert np.isnan(parse_ru_numbers(text).iloc[1])


def test_normalise_ids() -> None:
    raw = pd.Series(
        [
            1234,
            1234.0,
            "1234",
            " 1234 ",
            "1234.0",
            "007",
            "A-12 ",
            "тест_менеджер",
            "",
            None,
            np.nan,
        ],
        dtype=object,
    )
    ids = normalise_ids(raw)
    assert pd.api.types.is_string_dtype(ids)
    assert ids.iloc[:8].tolist() == [
        "1234",
        "1234",
        "1234",
        "1234",
        "1234",
        "007",
        "A-12",
        "тест_менеджер",
    ]
    assert ids.iloc[8:].isna().all()


def test_normalise_ids_from_float_column_with_missing() -> None:
    ids = normalise_ids(pd.Series([13085.0, np.nan, 12346.0]))
    assert ids.iloc[0] == "13085"
    assert pd.isna(ids.iloc[1])
    assert ids.iloc[2] == "12346"


# ---------------------------------------------------------------------------------------------
# Column mapping
# ---------------------------------------------------------------------------------------------


def test_another_stores_columns_amount_is_quantity_times_price(tmp_path: Path) -> None:
    path = tmp_path / "online_retail_II.csv"
    path.write_text(
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
        "489434,85048,LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom\n"
        "489434,79323P,PINK LIGHT,12,12/1/2009 7:45,6.75,13085.0,United Kingdom\n"
        "C489449,22087,PAPER,-12,12/1/2009 10:33,2.95,16321.0,Australia\n"
        "489450,22087,PAPER,3,12/2/2009 10:33,2.95,,France\n",
        encoding="utf-8",
    )
    df = load(path, columns={"address": "Country"}, dayfirst=False)  # the rest by name
    assert list(df.columns) == [
        "customer_id",
        "date",
        "amount",
        "order_id",
        "quantity",
        "product_id",
        "address",
    ]
    np.testing.assert_allclose(df["amount"], [83.4, 81.0, -35.4, 8.85])
    assert df["order_id"].tolist() == ["489434", "489434", "C489449", "489450"]
    assert df["customer_id"].tolist()[:3] == ["13085", "13085", "16321"]
    assert pd.isna(df["customer_id"].iloc[3])
    assert df["date"].tolist() == [
        pd.Timestamp("2009-12-01 07:45"),
        pd.Timestamp("2009-12-01 07:45"),
        pd.Timestamp("2009-12-01 10:33"),
        pd.Timestamp("2009-12-02 10:33"),
    ]
    assert df["address"].tolist() == ["United Kingdom", "United Kingdom", "Australia", "France"]


def test_optional_columns_absent_or_unmapped_are_left_out(tmp_path: Path) -> None:
    records = [{k: v for k, v in r.items() if k not in ("site_id", "address")} for r in RECORDS]
    path = write_json(tmp_path / "export.json", records)
    records = [{k: v for k, v in r.items() if k != "sale_id"} for r in records]
    df = load(write_json(path, records))
    assert list(df.columns) == [
        "customer_id",
        "date",
        "amount",
        "order_id",
        "quantity",
        "product_id",
    ]


def test_column_names_match_ignoring_case_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("customerid ; Date ;SUM\n1;05.03.2024;10\n", encoding="utf-8")
    df = load(path)
    assert df["customer_id"].tolist() == ["1"]
    assert df["amount"].tolist() == [10.0]


def test_order_fallback_one_order_per_customer_per_day(tmp_path: Path) -> None:
    records = [
        {"CustomerID": 1234, "date": "2024-03-05T14:02:11", "sum": 10},
        {"CustomerID": "1234", "date": "05.03.2024 18:00:00", "sum": 20},
        {"CustomerID": 1234, "date": "06.03.2024", "sum": 30},
        {"CustomerID": 77, "date": "2024-03-05", "sum": 40},
        {"CustomerID": None, "date": "2024-03-05", "sum": 50},
    ]
    df = load(write_json(tmp_path / "export.json", records))
    assert df["order_id"].tolist()[:4] == [
        "1234|2024-03-05",
        "1234|2024-03-05",
        "1234|2024-03-06",
        "77|2024-03-05",
    ]
    assert pd.isna(df["order_id"].iloc[4])
    assert pd.api.types.is_string_dtype(df["order_id"])


def test_empty_order_ids_are_filled_with_the_fallback(tmp_path: Path) -> None:
    records = [
        {"CustomerID": 1, "date": "2024-03-05", "sum": 10, "order_id": "A-1"},
        {"CustomerID": 1, "date": "2024-03-06", "sum": 10, "order_id": ""},
    ]
    df = load(write_json(tmp_path / "export.json", records))
    assert df["order_id"].tolist() == ["A-1", "1|2024-03-06"]


def test_to_canonical_works_on_a_frame_and_never_mutates_it() -> None:
    raw = pd.DataFrame(RECORDS, dtype=object, index=range(100, 106))
    before = raw.copy()
    df, _ = to_canonical(raw)
    assert_canonical_values(df)
    assert list(df.index) == list(range(6))
    pd.testing.assert_frame_equal(raw, before)


# ---------------------------------------------------------------------------------------------
# Bad values: below the share they become NaT/NaN, above it the load stops
# ---------------------------------------------------------------------------------------------


def _records_with(n: int, bad: dict[int, dict]) -> list[dict]:
    records = [{"CustomerID": i, "date": "05.03.2024", "sum": "100,5"} for i in range(n)]
    for row, values in bad.items():
        records[row] = {**records[row], **values}
    return records


def test_below_threshold_bad_values_become_nat_and_nan(tmp_path: Path) -> None:
    records = _records_with(40, {3: {"date": "вчера"}, 7: {"sum": "много"}, 9: {"sum": ""}})
    df = load(write_json(tmp_path / "export.json", records), max_bad_share=0.05)
    assert len(df) == 40
    assert df["date"].isna().tolist() == [i == 3 for i in range(40)]
    assert df["amount"].isna().tolist() == [i in (7, 9) for i in range(40)]
    assert df["amount"].iloc[0] == 100.5


def test_too_many_bad_dates_names_column_count_share_and_rows(tmp_path: Path) -> None:
    records = _records_with(
        10, {2: {"date": "вчера"}, 5: {"date": "31.02.2024"}, 7: {"date": None}}
    )
    path = write_json(tmp_path / "export.json", records)
    with pytest.raises(UserError) as err:
        load(path)
    message = str(err.value)
    assert str(path) in message
    assert "'date' (date)" in message
    assert "3 of 10" in message
    assert "30.0%" in message
    assert "1 empty, 2 unparseable" in message
    assert "data.max_bad_share=0.05" in message
    assert "2: 'вчера', 5: '31.02.2024', 7: None" in message


def test_too_many_bad_amounts_lists_only_the_first_five(tmp_path: Path) -> None:
    bad_rows = [1, 2, 4, 6, 8, 9]
    records = _records_with(12, {i: {"sum": f"x{i}"} for i in bad_rows})
    path = write_jsonl(tmp_path / "export.jsonl", records)
    with pytest.raises(UserError) as err:
        load(path, max_bad_share=0.2)
    message = str(err.value)
    assert "export.jsonl" in message
    assert "'sum' (amount)" in message
    assert "6 of 12" in message
    assert "50.0%" in message
    assert "data.max_bad_share=0.2" in message
    assert "1: 'x1', 2: 'x2', 4: 'x4', 6: 'x6', 8: 'x8'" in message
    assert "9: 'x9'" not in message


def test_bad_share_uses_the_price_column_when_amount_is_derived(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    path.write_text(
        "Customer ID;InvoiceDate;Invoice;Quantity;Price;StockCode;Country\n"
        "1;2009-12-01;A;2;oops;X;UK\n2;2009-12-01;B;2;1,5;X;UK\n",
        encoding="utf-8",
    )
    with pytest.raises(UserError, match=r"retail\.csv: column 'Price' \(price\): 1 of 2"):
        load(path, columns=ONLINE_RETAIL_COLUMNS)
    df = load(path, columns=ONLINE_RETAIL_COLUMNS, max_bad_share=0.5)
    assert np.isnan(df["amount"].iloc[0])
    assert df["amount"].iloc[1] == 3.0


def test_missing_customer_ids_are_not_an_error(tmp_path: Path) -> None:
    records = _records_with(4, {i: {"CustomerID": None} for i in range(3)})
    df = load(write_json(tmp_path / "export.json", records))
    assert df["customer_id"].isna().sum() == 3
    assert df["customer_id"].iloc[3] == "3"


# ---------------------------------------------------------------------------------------------
# Bad files and settings
# ---------------------------------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.json: file not found"):
        load(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("export.json", b"", "empty file (0 bytes)"),
        ("export.json", b"  \n", "empty file"),
        ("export.json", b"[]", "no records"),
        ("export.jsonl", b"\n\n", "empty file"),
        ("export.csv", b"CustomerID;date;sum\n", "no records"),
        ("export.json.gz", gzip.compress(b""), "empty file (0 bytes after gunzip)"),
    ],
)
def test_empty_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load(path)
    assert name in str(err.value)
    assert expected in str(err.value)


def test_not_json_reports_the_parser_position(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text('[\n  {"CustomerID": 1, "date": "2024-03-05",\n  "sum" 5}\n]', encoding="utf-8")
    with pytest.raises(UserError) as err:
        load(path)
    message = str(err.value)
    assert "export.json: not valid JSON" in message
    assert "line 3 column 9" in message


def test_json_lines_named_json_gets_a_hint(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "export.json", RECORDS[:2])
    with pytest.raises(UserError, match="data.format=jsonl"):
        load(path)
    assert_canonical_values(load(write_jsonl(tmp_path / "e.jsonl", RECORDS)))


def test_bad_json_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text('{"CustomerID": 1}\n\n{"CustomerID": 2,}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"export\.jsonl: not valid JSON Lines: line 3"):
        load(path)


def test_jsonl_with_blank_lines_and_crlf(tmp_path: Path) -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in RECORDS]
    path = tmp_path / "export.jsonl"
    path.write_bytes(("\r\n".join(lines[:3]) + "\r\n\r\n" + "\n".join(lines[3:])).encode())
    assert_canonical_values(load(path))


def test_json_object_instead_of_array_lists_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"count": 6, "data": RECORDS}), encoding="utf-8")
    with pytest.raises(UserError) as err:
        load(path)
    message = str(err.value)
    assert "export.json: expected a JSON array of records" in message
    assert "['count', 'data']" in message
    assert "under 'data'" in message


def test_json_array_of_non_records(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(UserError, match=r"export\.json: .*record 0 is a int"):
        load(path)


def test_required_column_missing_names_role_setting_and_file_columns(tmp_path: Path) -> None:
    records = [{k: v for k, v in r.items() if k != "CustomerID"} for r in RECORDS]
    path = write_json(tmp_path / "export.json", records)
    with pytest.raises(UserError) as err:
        load(path)
    message = str(err.value)
    assert "export.json: no column found for customer_id (e.g. CustomerID" in message
    assert "data.columns.customer_id=" in message
    assert "'StockCode'" in message and "'sum'" in message


def test_amount_from_quantity_and_price_needs_both(tmp_path: Path) -> None:
    records = [{k: v for k, v in r.items() if k not in ("sum", "quantity")} for r in RECORDS]
    path = write_json(tmp_path / "export.json", [r | {"Price": 2} for r in records])
    with pytest.raises(UserError) as err:
        load(path)
    assert "no column found for quantity" in str(err.value)
    assert "data.columns.quantity=<column>" in str(err.value)


def test_override_must_name_a_column(tmp_path: Path) -> None:
    path = write_json(tmp_path / "export.json", RECORDS)
    with pytest.raises(UserError) as err:
        load(path, columns={"price": "Price"})
    assert "data.columns.price='Price' is not a column of the file" in str(err.value)


def test_unknown_role_in_mapping(tmp_path: Path) -> None:
    path = write_json(tmp_path / "export.json", RECORDS)
    with pytest.raises(UserError, match=r"data\.columns: unknown role\(s\) \['custmer_id'\]"):
        load(path, columns={"custmer_id": "CustomerID"})


def test_unknown_extension_and_unknown_format(tmp_path: Path) -> None:
    path = write_json(tmp_path / "export.xml", RECORDS)
    with pytest.raises(UserError, match=r"export\.xml: cannot tell the format.*data\.format"):
        load(path)
    with pytest.raises(UserError, match=r"data\.format=xml: unknown format"):
        load(path, fmt="xml")


def test_bad_max_bad_share(tmp_path: Path) -> None:
    path = write_json(tmp_path / "export.json", RECORDS)
    with pytest.raises(UserError, match=r"data\.max_bad_share=1\.5"):
        load(path, max_bad_share=1.5)


def test_damaged_gzip_and_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "export.json.gz"
    path.write_bytes(gzip.compress(json.dumps(RECORDS).encode())[:40])
    with pytest.raises(UserError, match=r"export\.json\.gz: damaged gzip file"):
        load(path)
    path = tmp_path / "export.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(UserError, match=r"export\.parquet: not a readable Parquet file"):
        load(path)


def test_to_canonical_errors_name_the_source() -> None:
    raw = pd.DataFrame({"CustomerID": [1], "sum": [5]})
    with pytest.raises(UserError, match=r"model input: no column found for date"):
        to_canonical(raw, source="model input")


def test_nested_json_values_do_not_crash_the_parsers(tmp_path: Path) -> None:
    records = [
        {"CustomerID": {"id": 1}, "date": "2024-03-05", "sum": 10},
        {"CustomerID": 2, "date": "2024-03-05", "sum": 20},
    ]
    df = load(write_json(tmp_path / "export.json", records))
    assert df["customer_id"].tolist() == ["{'id': 1}", "2"]
    assert df["amount"].tolist() == [10.0, 20.0]
