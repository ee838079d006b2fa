"""A corpus of nasty exports, each generated here, each with its exact outcome: which customers
come out of loading and cleaning, how many lines which rule dropped, or the error and its message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.data.clean import CleaningReport, clean_transactions
from src.data.load import LoadSettings, load_transactions, read_export
from src.errors import UserError

HEADER = "CustomerID,date,sum,order_id"
# The outlier fences are the cleaning's business (tests/data/test_clean.py); on these few lines
# they would only blur which rule dropped what.
RULES = {"line_outliers": {"enabled": False}, "customer_outliers": {"enabled": False}}


def write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes("\n".join(lines).encode(encoding) + b"\n")
    return path


def outcome(path: Path, **settings) -> tuple[list[str], CleaningReport]:
    """Customers left after loading and cleaning, and the report (load section set)."""
    table, loaded = load_transactions(path, LoadSettings(**settings))
    clean, report = clean_transactions(table, RULES)
    report.load = loaded.to_dict()
    return sorted(clean["customer_id"].unique()), report


def removed(report: CleaningReport, step: str) -> int:
    return report.step(step).rows_removed


# --------------------------------------------------------------------------------- dates (item 1)


def test_1c_placeholder_and_pre_1900_dates_are_unreadable_values(tmp_path):
    rows = [f"{c},05.03.2024 10:00:00,100,A{c}" for c in range(1, 41)]
    rows += [
        "41,01.01.0001 0:00:00,100,B1",  # 1C's empty date
        "42,31.12.9999 0:00:00,100,B2",  # 1C's "no end"
        "43,1899-12-31,100,B3",
    ]
    customers, report = outcome(write(tmp_path / "e.csv", [HEADER, *rows]), max_bad_share=0.1)
    assert customers == sorted(str(c) for c in range(1, 41))
    assert removed(report, "invalid_values") == 3
    assert report.step("invalid_values").detail == {"bad_date": 3, "bad_amount": 0}
    assert report.to_dict()["load"]["unreadable"] == {
        "dates": 3,
        "dates_out_of_range": 3,
        "amounts": 0,
    }


def test_placeholder_dates_count_against_max_bad_share(tmp_path):
    rows = [f"{c},05.03.2024,100,A{c}" for c in range(1, 10)] + ["10,01.01.0001 0:00:00,5,B"]
    with pytest.raises(UserError) as err:
        outcome(write(tmp_path / "e.csv", [HEADER, *rows]))
    message = str(err.value)
    assert "e.csv: column 'date' (date): 1 of 10 values (10.0%)" in message
    assert "more than data.max_bad_share=0.05" in message
    assert "9: '01.01.0001 0:00:00'" in message


def test_zoned_iso_dates_are_converted_to_the_dominant_offset(tmp_path):
    rows = [
        "1,2024-03-05T10:00:00+03:00,100,A",
        "2,2024-03-05T23:30:00+03:00,100,B",
        "3,2024-03-05T21:30:00Z,100,C",  # 00:30 on the 6th in Moscow
        "4,2024-03-05T12:00:00,100,D",  # no zone: taken as +03:00 already
    ]
    table, loaded = load_transactions(write(tmp_path / "e.csv", [HEADER, *rows]))
    assert table["date"].tolist() == [
        pd.Timestamp("2024-03-05 10:00"),
        pd.Timestamp("2024-03-05 23:30"),
        pd.Timestamp("2024-03-06 00:30"),
        pd.Timestamp("2024-03-05 12:00"),
    ]
    assert loaded.timezone == {
        "zone": "+03:00",
        "chosen_by": "the export's most common offset",
        "zoned_lines": 3,
        "converted_lines": 1,
        "naive_lines_taken_as_zone": 1,
        "setting": "data.timezone",
    }


def test_data_timezone_sets_the_zone(tmp_path):
    rows = ["1,2024-03-05T10:00:00+03:00,100,A", "2,2024-07-01 12:00:00Z,100,B"]
    path = write(tmp_path / "e.csv", [HEADER, *rows])
    table, loaded = load_transactions(path, LoadSettings(timezone="Europe/Berlin"))
    # winter: UTC+1, summer: UTC+2
    assert table["date"].tolist() == [
        pd.Timestamp("2024-03-05 08:00"),
        pd.Timestamp("2024-07-01 14:00"),
    ]
    assert loaded.timezone["zone"] == "Europe/Berlin"
    assert loaded.timezone["converted_lines"] == 2
    with pytest.raises(UserError, match=r"data\.timezone='Mars/Olympus': not a time zone"):
        LoadSettings(timezone="Mars/Olympus")


def test_parquet_zoned_column_keeps_its_zone_or_takes_data_timezone(tmp_path):
    stamps = pd.to_datetime(["2024-03-05 10:00", "2024-03-05 23:30"]).tz_localize("Europe/Moscow")
    path = tmp_path / "e.parquet"
    pd.DataFrame({"CustomerID": [1, 2], "date": stamps, "sum": [5.0, 6.0]}).to_parquet(path)
    table, loaded = load_transactions(path)
    assert table["date"].tolist() == [
        pd.Timestamp("2024-03-05 10:00"),
        pd.Timestamp("2024-03-05 23:30"),
    ]
    assert loaded.timezone["zone"] == "Europe/Moscow"
    table, loaded = load_transactions(path, LoadSettings(timezone="UTC"))
    assert table["date"].tolist() == [
        pd.Timestamp("2024-03-05 07:00"),
        pd.Timestamp("2024-03-05 20:30"),
    ]
    assert loaded.timezone["converted_lines"] == 2


# ------------------------------------------------------------------------------ encoding (item 2)


def test_cp1251_file_is_read_whole_and_its_test_accounts_filtered(tmp_path):
    rows = [
        "Клиент;Дата;Сумма;Заказ",
        "Иванов;05.03.2024;1 200,50;З-1",
        "Тестовый;05.03.2024;10;З-2",
    ]
    path = write(tmp_path / "e.csv", rows, encoding="cp1251")
    customers, report = outcome(path)
    assert customers == ["Иванов"]
    assert removed(report, "test_accounts") == 1
    assert report.load["encoding"] == "cp1251"
    assert report.load["columns"] == {
        "customer_id": "Клиент",
        "date": "Дата",
        "amount": "Сумма",
        "order_id": "Заказ",
    }


def test_utf8_with_bom_is_utf8(tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "CustomerID,date,sum\nПётр,2024-03-05,5\n".encode())
    customers, report = outcome(path)
    assert customers == ["Пётр"]
    assert report.load["encoding"] == "utf-8-sig"


def test_utf8_file_with_one_cp1251_line_is_refused_naming_the_byte(tmp_path):
    good = "CustomerID,date,sum\nПётр,2024-03-05,5\n".encode()
    path = tmp_path / "e.csv"
    path.write_bytes(good + "Иван,2024-03-05,7\n".encode("cp1251"))
    with pytest.raises(UserError) as err:
        read_export(path)
    assert str(err.value).startswith(
        f"{path}: mixed encodings: UTF-8 text (UTF-8 Cyrillic at byte 20), but byte 0xc8 at byte "
        f"{len(good)} (line 3) is not UTF-8 (Windows-1251?)"
    )


def test_cp1251_line_before_the_first_utf8_letters_is_still_refused(tmp_path):
    head = b"CustomerID,date,sum\n1,2024-03-05,5\n"
    path = tmp_path / "e.csv"
    path.write_bytes(
        head
        + "Иван,2024-03-05,7\nПётр,2024-03-05,5\n".encode("cp1251")[:19]
        + "Пётр,2024-03-05,5\n".encode()
    )
    with pytest.raises(
        UserError,
        match=rf"mixed encodings: UTF-8 text \(UTF-8 Cyrillic at byte {len(head) + 19}\), but byte 0xc8 at byte {len(head)} \(line 3\)",
    ):
        read_export(path)


def test_bytes_neither_utf8_nor_cp1251_are_refused_naming_the_offset(tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes(b"CustomerID,date,sum\n1,2024-03-05,5\x98\n")
    with pytest.raises(UserError, match=r"byte 0x98 at byte offset 34 is not valid in either"):
        read_export(path)


# ------------------------------------------------------------------------------- columns (item 3)


def test_headers_in_another_case_and_spacing_are_recognised(tmp_path):
    path = write(tmp_path / "e.csv", ["Date, Sum ,customerid", "2024-03-05,5,1", "2024-03-06,7,2"])
    customers, report = outcome(path)
    assert customers == ["1", "2"]
    assert report.load["columns"] == {
        "customer_id": "customerid",
        "date": "Date",
        "amount": " Sum ",
    }


def test_invoice_line_exports_build_the_amount_from_quantity_and_unit_price(tmp_path):
    rows = [
        "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID,Country",
        "536365,85123A,6,12/1/2010 8:26,2.55,17850,United Kingdom",
        "536365,71053,2,12/1/2010 8:26,3.39,17850,United Kingdom",
        "536366,22633,6,12/1/2010 8:28,1.85,,United Kingdom",
    ]
    table, loaded = load_transactions(write(tmp_path / "e.csv", rows), LoadSettings(dayfirst=False))
    np.testing.assert_allclose(table["amount"], [15.3, 6.78, 11.1])
    assert table["order_id"].tolist() == ["536365", "536365", "536366"]
    assert loaded.columns == {
        "customer_id": "CustomerID",
        "date": "InvoiceDate",
        "order_id": "InvoiceNo",
        "quantity": "Quantity",
        "product_id": "StockCode",
        "price": "UnitPrice",
    }


def test_two_columns_for_one_role_name_both(tmp_path):
    path = write(tmp_path / "e.csv", ["CustomerID,date,sum,Sum", "1,2024-03-05,5,6"])
    with pytest.raises(UserError) as err:
        outcome(path)
    assert (
        "two columns for amount: 'sum' and 'Sum'; pick one with data.columns.amount=<column>"
        in str(err.value)
    )
    customers, report = outcome(path, columns={"amount": "Sum"})
    assert report.amount_clean == 6.0


@pytest.mark.slow
def test_cli_exits_2_naming_both_columns_without_a_traceback(tmp_path):
    path = write(tmp_path / "e.csv", ["customerid,Date,sum,Sum", "1,2024-03-05,5,6"])
    done = subprocess.run(
        [sys.executable, "-m", "src.run", f"data.path={path}", "tracking=none"],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "two columns for amount: 'sum' and 'Sum'" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_missing_role_in_one_message(tmp_path):
    path = write(tmp_path / "e.csv", ["client,when,total_rub", "1,2024-03-05,5"])
    with pytest.raises(UserError) as err:
        outcome(path)
    assert str(err.value) == (
        f"{path}: no column found for customer_id (e.g. CustomerID, ClientID, Клиент), "
        "date (e.g. date, InvoiceDate, OrderDate), amount (a line sum such as sum or Сумма, or "
        "quantity and price); map it with data.columns.customer_id=<column> "
        "data.columns.date=<column> data.columns.amount=<column>; the file has columns "
        "['client', 'when', 'total_rub']"
    )
    customers, _ = outcome(
        path, columns={"customer_id": "client", "date": "WHEN", "amount": "total_rub"}
    )
    assert customers == ["1"]


@pytest.mark.parametrize("placeholder", ["(blank)", "N/A", "n/a", "-", "", "  "])
def test_placeholder_customer_ids_are_missing_customers(tmp_path, placeholder):
    rows = [f"{c},2024-03-05,100,A{c}" for c in (1, 2)] + [
        f"{placeholder},2024-03-05,9,B{i}" for i in range(5)
    ]
    customers, report = outcome(write(tmp_path / "e.csv", [HEADER, *rows]))
    assert customers == ["1", "2"]  # not one giant "(blank)" customer
    assert removed(report, "missing_customer") == 5
    expected = 0 if not placeholder.strip() else 5
    assert report.load["missing_ids"]["customer_lines"] == expected


def test_missing_ids_are_configurable(tmp_path):
    rows = [HEADER, "1,2024-03-05,100,A", "UNKNOWN,2024-03-05,100,B", "(blank),2024-03-05,1,C"]
    customers, report = outcome(write(tmp_path / "e.csv", rows), missing_ids=("unknown",))
    assert customers == ["(blank)", "1"]
    assert removed(report, "missing_customer") == 1


# -------------------------------------------------------------------------------- values (item 4)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_infinite_and_nan_amounts_are_unreadable_in_every_format(tmp_path, fmt):
    sums = [100.0, float("inf"), float("-inf"), float("nan")] + [50.0] * 36
    frame = pd.DataFrame(
        {"CustomerID": [str(i) for i in range(40)], "date": "2024-03-05", "sum": sums}
    )
    path = tmp_path / f"e.{fmt}"
    if fmt == "csv":
        frame.assign(sum=["100", "Infinity", "-inf", "NaN"] + ["50"] * 36).to_csv(path, index=False)
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dict("records")))  # writes Infinity and NaN literals
        assert "Infinity" in path.read_text()
    else:
        frame.to_parquet(path)
    customers, report = outcome(path, max_bad_share=0.1)
    assert customers == sorted(["0", *(str(i) for i in range(4, 40))])
    assert report.step("invalid_values").detail == {"bad_date": 0, "bad_amount": 3}
    json.dumps(report.to_dict(), allow_nan=False)  # strict JSON


def test_customer_ids_are_stripped_and_leading_zeros_optional(tmp_path):
    rows = [HEADER, " 000123 ,2024-03-05,10,A", "123,2024-03-06,20,B", "0,2024-03-06,5,C"]
    path = write(tmp_path / "e.csv", rows)
    assert outcome(path)[0] == ["0", "000123", "123"]
    customers, report = outcome(path, ids_ignore_leading_zeros=True)
    assert customers == ["0", "123"]
    assert report.amount_clean == 35.0


def test_blank_order_ids_are_one_order_per_customer_per_day(tmp_path):
    rows = [
        HEADER,
        "1,2024-03-05 10:00,10,",
        "1,2024-03-05 18:00,20,",
        "1,2024-03-06 10:00,30,-",
        "2,2024-03-05 10:00,40,",
        "2,2024-03-05 10:00,50,Z-9",
    ]
    table, loaded = load_transactions(write(tmp_path / "e.csv", rows))
    assert table["order_id"].tolist() == [
        "1|2024-03-05",
        "1|2024-03-05",
        "1|2024-03-06",
        "2|2024-03-05",
        "Z-9",
    ]
    assert loaded.order_ids == {
        "column": "order_id",
        "lines_without": 4,
        "grouped_as": "one order per customer per day",
    }


# --------------------------------------------------------------------------------- Excel (item 10)


def _workbook(path: Path) -> Path:
    pytest.importorskip("openpyxl")
    pytest.importorskip("python_calamine")
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame({"note": ["summary sheet"]}).to_excel(writer, sheet_name="Итоги", index=False)
        pd.DataFrame(
            {
                "Клиент": [1001, 1002, "(blank)"],
                "Дата": [pd.Timestamp("2024-03-05 10:00"), "06.03.2024 11:00:00", "2024-03-07"],
                "Сумма": [1200.5, "1 000,00", 5],
            }
        ).to_excel(writer, sheet_name="Продажи", index=False)
    return path


def test_excel_first_sheet_by_default_and_data_sheet_by_name_or_position(tmp_path):
    path = _workbook(tmp_path / "e.xlsx")
    with pytest.raises(UserError, match=r"no column found for customer_id"):
        load_transactions(path)  # the first sheet is a summary
    for sheet in ("Продажи", 1, "1"):
        table, loaded = load_transactions(path, sheet=sheet)
        assert table["customer_id"].tolist()[:2] == ["1001", "1002"]
        assert pd.isna(table["customer_id"].iloc[2])
        assert table["date"].tolist() == [
            pd.Timestamp("2024-03-05 10:00"),
            pd.Timestamp("2024-03-06 11:00"),
            pd.Timestamp("2024-03-07"),
        ]
        assert table["amount"].tolist() == [1200.5, 1000.0, 5.0]
        assert loaded.to_dict()["sheet"] == "Продажи"
        assert loaded.format == "excel"
    with pytest.raises(
        UserError, match=r"data\.sheet='Sales': no such sheet in .*\['Итоги', 'Продажи'\]"
    ):
        load_transactions(path, sheet="Sales")
    with pytest.raises(UserError, match=r"data\.sheet=5: .* has 2 sheet\(s\)"):
        load_transactions(path, sheet=5)


def test_not_a_workbook(tmp_path):
    pytest.importorskip("python_calamine")
    path = tmp_path / "e.xlsx"
    path.write_bytes(b"CustomerID,date,sum\n1,2024-03-05,5\n")
    with pytest.raises(UserError, match=r"e\.xlsx: not a readable Excel workbook"):
        read_export(path)
