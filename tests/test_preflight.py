"""Checks before side effects: the export's head (every format), its columns, the settings."""

from __future__ import annotations

import gzip
import importlib.util
import json

import pandas as pd
import pytest

from src.errors import UserError
from src.preflight import HEAD_BYTES, check_export, check_run, check_sweep, export_head

RECORDS = [
    {"date": "05.03.2025 10:00:00", "order_id": i, "sum": "1 234,50", "CustomerID": 1000 + i}
    for i in range(5)
]


def write(path, kind: str, records=RECORDS) -> None:
    frame = pd.DataFrame(records)
    if kind == "json":
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    elif kind == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    elif kind == "csv":
        frame.to_csv(path, sep=";", index=False)
    else:
        frame.astype(str).to_parquet(path)


@pytest.mark.parametrize("kind", ["json", "jsonl", "csv", "parquet"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_the_head_has_the_files_columns(tmp_path, kind, gzipped):
    path = tmp_path / f"export.{kind}"
    write(path, kind)
    if gzipped:
        path = tmp_path / f"export.{kind}.gz"
        path.write_bytes(gzip.compress((tmp_path / f"export.{kind}").read_bytes()))
    head = export_head(path, kind)
    assert list(head.columns) == ["date", "order_id", "sum", "CustomerID"]
    assert 1 <= len(head) <= len(RECORDS)


def test_only_the_head_of_a_large_file_is_read(tmp_path):
    path = tmp_path / "big.csv"
    rows = [{"CustomerID": i, "date": "2025-01-01", "sum": 1} for i in range(20_000)]
    write(path, "csv", rows)
    assert path.stat().st_size > 2 * HEAD_BYTES
    head = export_head(path, "csv")
    assert list(head.columns) == ["CustomerID", "date", "sum"] and len(head) == 20


@pytest.mark.parametrize(
    ("kind", "content"),
    [("json", b'{"records": []}'), ("json", b"[1, 2]"), ("jsonl", b"not json\n"), ("json", b"[{")],
)
def test_a_head_it_cannot_judge_is_left_to_the_loader(tmp_path, kind, content):
    path = tmp_path / f"odd.{kind}"
    path.write_bytes(content)
    assert export_head(path, kind) is None


def test_a_cp1251_header_is_read(tmp_path):
    path = tmp_path / "ru.csv"
    path.write_bytes("Клиент;Дата;Сумма\n1;05.03.2025;10\n".encode("cp1251"))
    assert list(export_head(path, "csv").columns) == ["Клиент", "Дата", "Сумма"]


def test_missing_columns_are_refused_from_the_head(tmp_path, make_cfg):
    path = tmp_path / "export.jsonl"
    write(path, "jsonl", [{k: v for k, v in r.items() if k != "sum"} for r in RECORDS])
    cfg = make_cfg(f"data.path={path}")
    with pytest.raises(
        UserError, match=r"export.jsonl: no column found for amount .*data.columns.amount"
    ):
        check_export(cfg.data)


def test_bad_values_in_the_head_are_the_loaders_to_count(tmp_path, make_cfg):
    path = tmp_path / "export.json"
    write(path, "json", [r | {"date": "someday"} for r in RECORDS])
    check_export(make_cfg(f"data.path={path}").data)  # max_bad_share judges the whole file


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("reducer=umap", r"reducer=umap needs the optional package 'umap'"),
        ("+clusterer.n_clusterz=3", r"clusterer: ValueTiers rejected the settings"),
        ("validation.stability.fraction=1.5", r"validation.stability.fraction=1.5"),
        ("features.transform.scaler=minmax", r"features.transform.scaler=minmax"),
        ("clean.returns.mode=keepp", r"clean.returns.mode=keepp"),
        ("data.format=xlsx", r"data.format=xlsx: unknown format"),
    ],
)
def test_settings_are_refused_before_the_data_are_read(tmp_path, make_cfg, override, message):
    if override == "reducer=umap" and importlib.util.find_spec("umap") is not None:
        pytest.skip("umap-learn is installed")
    path = tmp_path / "export.json"
    write(path, "json")
    with pytest.raises(UserError, match=message):
        check_run(make_cfg(f"data.path={path}", override))


def test_an_outputs_dir_that_cannot_be_a_folder_is_refused(tmp_path, make_cfg):
    (tmp_path / "file").write_text("x\n")
    with pytest.raises(UserError, match=r"outputs_dir=.*file/outputs: .*file is not a directory"):
        check_run(make_cfg(f"outputs_dir={tmp_path / 'file' / 'outputs'}"))
    check_run(make_cfg(f"outputs_dir={tmp_path / 'new' / 'outputs'}"))  # created by the run


def test_the_head_is_decoded_by_the_loaders_rule(tmp_path, make_cfg):
    # UTF-16 (with its BOM) is an encoding the loader reads; the head used to be read as cp1251
    # and its garbled header refused as missing columns.
    path = tmp_path / "export.csv"
    path.write_bytes("CustomerID,date,sum\n1001,2025-03-05,100\n".encode("utf-16"))
    check_export(make_cfg(f"data.path={path}").data)
    path.write_bytes("CustomerID,date,betrag\n1001,2025-03-05,100\n".encode("utf-16"))
    with pytest.raises(UserError, match=r"no column found for amount"):
        check_export(make_cfg(f"data.path={path}").data)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["reducer=pca"], r"not a PCA component: use reducer=none"),
        (["features=rfm"], r"would tier recency of features\.columns"),
        (["features.transform.log=[monetary]"], r"\['monetary'\] not among"),
        (
            ["features.fallback_columns=[recency,monetary]"],
            r"would tier recency of features\.fallback_columns \['recency', 'monetary'\]",
        ),
        (["features.fallback_columns=[expected_value]"], r"features\.fallback_columns=\['exp"),
    ],
)
def test_value_tiers_settings_are_refused_before_the_data_are_read(
    tmp_path, make_cfg, overrides, message
):
    path = tmp_path / "export.json"
    write(path, "json")
    with pytest.raises(UserError, match=message):
        check_run(make_cfg(f"data.path={path}", *overrides))
    check_run(make_cfg(f"data.path={path}"))  # the default: value tiers of features=value


def test_a_sweep_pairing_value_tiers_with_a_reducer_is_refused(tmp_path, make_cfg):
    path = tmp_path / "export.json"
    write(path, "json")
    sweep = [f"data.path={path}", "sweep.clusterers=[value_tiers]", "sweep.features=[value]"]
    with pytest.raises(UserError, match=r"use reducer=none \(sweep\.reducers"):
        check_sweep(make_cfg(*sweep, "sweep.reducers=[none,pca]", config_name="sweep"))
    check_sweep(make_cfg(*sweep, "sweep.reducers=[none]", config_name="sweep"))
