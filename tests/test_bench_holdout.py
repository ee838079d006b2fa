"""The hold-out benchmark reads CDNOW's text format as an export the loader understands."""

import pandas as pd

from src.bench.holdout import cdnow_export
from src.data.load import read_export, to_canonical


def test_cdnow_lines_become_an_export_with_one_order_per_customer_and_day(tmp_path):
    text = (
        " customer_id  date number_of_cds  dollar_value\n"
        " 00001 19970101  1   11.77\n"
        " 00002 19970112  1   12.00\n"
        " 00002 19970112  5   77.00\n"
        " 00002 19980630  2   20.76\n"
    )
    (tmp_path / "CDNOW_master.txt").write_text(text)
    export = cdnow_export(tmp_path / "CDNOW_master.txt")
    assert export.columns.tolist() == ["CustomerID", "date", "quantity", "sum"]
    assert export["CustomerID"].tolist() == ["00001", "00002", "00002", "00002"]
    assert export["date"].tolist() == ["1997-01-01", "1997-01-12", "1997-01-12", "1998-06-30"]
    path = tmp_path / "cdnow.csv"
    export.to_csv(path, index=False)
    table, _ = to_canonical(read_export(path), source=str(path))
    assert table["amount"].tolist() == [11.77, 12.0, 77.0, 20.76]
    assert table["date"].tolist() == list(
        pd.to_datetime(["1997-01-01", "1997-01-12", "1997-01-12", "1998-06-30"])
    )
    assert table.groupby("customer_id")["order_id"].nunique().tolist() == [1, 2]
