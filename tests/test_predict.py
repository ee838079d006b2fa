"""`python -m src.predict`: the user's path run -> register -> promote -> segment a fresh export,
the migration matrix on two exports where we know who moved, and every error with its message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from src.errors import UserError
from src.evaluation.migration import GONE, NEW, biggest_movements, migration_matrix
from src.predict import migration_paths, predict
from tests.conftest import END, store_records, write_json

NAME = "customer-segmentation"
ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = "2026-01-01"


def clean_env() -> dict[str, str]:
    """This process's environment without the MLflow run/experiment another test may have left."""
    leaked = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    return {k: v for k, v in os.environ.items() if k not in leaked}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_cfg) -> dict:
    """src.run on store A with tracking.register=true, then src.promote version=1; a second
    registered model 'unpromoted' holds the same model without any alias."""
    from src.promote import execute as promote
    from src.run import execute as run_once

    tmp = tmp_path_factory.mktemp("predict")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    records, truth = store_records(seed=0)
    export = write_json(tmp / "a.json", records)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # MLflow's default artifact root is ./mlruns
        mp.setenv("MLFLOW_EXPERIMENT_ID", "")  # set_experiment exports it; undone on exit
        cfg = make_cfg(f"data.path={export}", f"tracking.uri={uri}", "tracking.register=true")
        picked = {"reducer": "pca", "clusterer": "kmeans", "classifier": "xgboost"}
        result = run_once(cfg, picked, datetime.now())
        promote(make_cfg(f"tracking.uri={uri}", "version=1", config_name="promote"))
        client = MlflowClient(uri)
        client.create_registered_model("unpromoted")
        client.create_model_version("unpromoted", client.get_model_version(NAME, "1").source)
    return {"uri": uri, "tmp": tmp, "records": records, "truth": truth, "segments": result.segments}


@pytest.fixture
def run(trained, make_cfg, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])

    def segment(*overrides: str) -> pd.DataFrame:
        return predict(
            make_cfg(f"tracking.uri={trained['uri']}", *overrides, config_name="predict")
        )

    return segment


def segment_shares(segments: pd.DataFrame, truth: dict[str, str]) -> pd.DataFrame:
    """Per planted group (rows), the share of its customers in each segment (columns)."""
    groups = segments["customer_id"].astype(str).map(truth)
    return pd.crosstab(groups, segments["segment_name"], normalize="index")


def test_segments_an_export_the_model_never_saw(trained, run, tmp_path, capsys):
    records, truth = store_records(seed=1, id_offset=5000)  # other customers, other lines
    export = write_json(tmp_path / "fresh.json", records)
    out = tmp_path / "segments.csv"
    returned = run(f"input={export}", f"output={out}")
    written = pd.read_csv(out, dtype={"customer_id": str})
    assert list(written.columns) == ["customer_id", "segment_id", "segment_name"]
    assert set(written["customer_id"]) == set(truth)  # one row per customer, every customer
    assert written["customer_id"].is_unique
    assert not set(written["customer_id"]) & set(trained["truth"])
    pd.testing.assert_frame_equal(written, returned.astype({"segment_id": "int64"}))
    training = trained["segments"]
    names = dict(zip(training["segment_id"], training["segment_name"], strict=False))
    assert all(
        names[i] == n for i, n in zip(written["segment_id"], written["segment_name"], strict=True)
    )
    # The same planted behaviour spreads over the segments as in training: value tiers cut
    # through a behaviour (lapsed customers: 39 Hibernating, 33 Need attention in training), so
    # the shares are compared, not the modal segment (total variation distance, 0 to 1).
    fresh = segment_shares(written, truth)
    fresh, seen = fresh.align(segment_shares(training, trained["truth"]), fill_value=0.0)
    distance = (fresh - seen).abs().sum(axis=1) / 2
    assert (distance < 0.15).all(), distance
    printed = capsys.readouterr().out
    assert "customer-segmentation version 1 (alias production)" in printed
    for name, count in written["segment_name"].value_counts().items():
        assert any(name in line and f" {count} " in line for line in printed.splitlines())


def test_renamed_headers_map_by_case_aliases_and_overrides(trained, run, tmp_path):
    """The model remembers its training mapping (CustomerID, date, sum); a fresh export with
    other headers is matched ignoring case, by alias, or by data.columns.* overrides."""
    records = trained["records"][:300]
    expected = run(
        f"input={write_json(tmp_path / 'a.json', records)}", f"output={tmp_path / 'a.csv'}"
    )
    renamed = _renamed(
        _renamed(_renamed(records, "CustomerID", "customer id"), "date", "Дата"), "sum", "rub"
    )
    export = write_json(tmp_path / "b.json", renamed)
    with pytest.raises(UserError, match=r"no column found for amount"):
        run(f"input={export}", f"output={tmp_path / 'b.csv'}")
    got = run(f"input={export}", f"output={tmp_path / 'b.csv'}", "data.columns.amount=RUB")
    pd.testing.assert_frame_equal(got, expected)


def test_snapshot_date_moves_everyone_later(trained, run, tmp_path):
    export = write_json(tmp_path / "a.json", trained["records"])
    now = run(f"input={export}", f"output={tmp_path / 'now.csv'}", f"snapshot_date={SNAPSHOT}")
    later = run(f"input={export}", f"output={tmp_path / 'later.csv'}", "snapshot_date=2029-01-01")
    # Three more years of silence: nobody's expected value grows, so (tiers ordered from the most
    # valuable, segment 0) customers move down the pyramid, most of them to its last segment.
    moved = (
        later.set_index("customer_id")["segment_id"] - now.set_index("customer_id")["segment_id"]
    )
    assert (moved >= 0).mean() > 0.95 and moved.mean() > 1
    bottom = now["segment_id"].max()
    assert (later["segment_id"] == bottom).mean() > 0.5 > 0.1 > (now["segment_id"] == bottom).mean()


def _orders(customer: str, n: int, basket: float, start: int) -> list[dict]:
    """`n` recent one-line orders (the last 30 days before END) of `customer`."""
    days = np.linspace(2, 28, n).astype(int)
    return [
        {"date": f"{END - np.timedelta64(int(d), 'D')}T10:00:00", "order_id": start + i,
         "sale_id": (start + i) * 10, "site_id": 1, "quantity": 1, "sum": basket,
         "address": "г. Москва", "StockCode": 1, "CustomerID": int(customer)}
        for i, d in enumerate(days)
    ]  # fmt: skip


def test_migration_between_two_exports_where_we_know_who_moved(trained, run, tmp_path, capsys):
    records, truth = trained["records"], trained["truth"]
    regular = [c for c, g in truth.items() if g == "regular"]
    gone, revived = set(regular[:10]), [c for c, g in truth.items() if g == "lapsed"][:12]
    new_records, new_truth = store_records(seed=2, id_offset=9000)
    newcomers = set(list(new_truth)[:15])
    later = (
        [r for r in records if str(r["CustomerID"]) not in gone]
        + [r for r in new_records if str(r["CustomerID"]) in newcomers]
        + [r for i, c in enumerate(revived) for r in _orders(c, 12, 9000.0, 900_000 + 100 * i)]
    )
    first = write_json(tmp_path / "january.json", records)
    second = write_json(tmp_path / "february.json", later)
    old = tmp_path / "january.csv"
    before = run(f"input={first}", f"output={old}", f"snapshot_date={SNAPSHOT}")
    capsys.readouterr()
    out = tmp_path / "february.csv"
    after = run(f"input={second}", f"output={out}", f"previous={old}", f"snapshot_date={SNAPSHOT}")

    matrix_path, plot_path = migration_paths(out)
    assert (matrix_path.name, plot_path.name) == (
        "february.migration.csv",
        "february.migration.png",
    )
    matrix = pd.read_csv(matrix_path, index_col=0)
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    was = before.set_index("customer_id")["segment_name"]
    now = after.set_index("customer_id")["segment_name"]
    assert matrix.loc[NEW].sum() == len(newcomers)
    assert matrix[GONE].drop(NEW).to_dict() == {
        s: int((was[sorted(gone)] == s).sum()) for s in matrix.index if s != NEW
    }
    # revived lapsed customers: 12 recent 9,000 ₽ orders move every one of them up
    moves = pd.Series([f"{was[c]} -> {now[c]}" for c in revived]).value_counts()
    assert all(was[c] != now[c] for c in revived)
    for move, count in moves.items():
        origin, target = move.split(" -> ")
        assert matrix.loc[origin, target] == count
    # everyone else kept the same lines and the same snapshot: the same segment
    stayed = len(was) - len(gone) - len(revived)
    assert sum(matrix.loc[s, s] for s in matrix.index if s in matrix.columns) == stayed
    assert matrix.to_numpy().sum() == len(was) + len(newcomers)
    printed = capsys.readouterr().out
    top = moves.index[0]
    assert f"  {top}: {moves.iloc[0]} customers" in printed


def test_migration_matrix_counts_by_hand():
    previous = pd.DataFrame(
        {"customer_id": ["1", "2", "3", "4"], "segment_id": [0, 1, 1, 2],
         "segment_name": ["Champions", "Loyal", "Loyal", "Lost"]}
    )  # fmt: skip
    current = pd.DataFrame(
        {"customer_id": ["1", "2", "3", "5"], "segment_id": [0, 1, 3, 1],
         "segment_name": ["Champions", "Loyal", "At risk", "Loyal"]}
    )  # fmt: skip
    matrix = migration_matrix(previous, current)
    assert list(matrix.index) == ["Champions", "Loyal", "Lost", "At risk", NEW]
    assert list(matrix.columns) == ["Champions", "Loyal", "Lost", "At risk", GONE]
    expected = {("Champions", "Champions"): 1, ("Loyal", "Loyal"): 1, ("Loyal", "At risk"): 1,
                ("Lost", GONE): 1, (NEW, "Loyal"): 1}  # fmt: skip
    for row in matrix.index:
        for col in matrix.columns:
            assert matrix.loc[row, col] == expected.get((row, col), 0), (row, col)
    moved = biggest_movements(matrix)
    assert moved[["from", "to", "customers"]].values.tolist() == [
        [NEW, "Loyal", 1],
        ["Lost", GONE, 1],
        ["Loyal", "At risk", 1],
    ]
    assert moved["share_of_from"].tolist() == [1.0, 1.0, 0.5]
    assert previous["customer_id"].tolist() == ["1", "2", "3", "4"]  # inputs untouched


def test_migration_matrix_rejects_duplicate_customers():
    frame = pd.DataFrame({"customer_id": ["1", "1"], "segment_name": ["A", "B"]})
    with pytest.raises(
        UserError, match=r"previous segments: 1 customer id\(s\) appear more than once, e.g. 1"
    ):
        migration_matrix(frame, frame.iloc[:1])


@pytest.fixture
def export_a(trained, tmp_path) -> Path:
    return write_json(tmp_path / "a.json", trained["records"][:300])


def _renamed(records: list[dict], old: str, new: str) -> list[dict]:
    return [{(new if k == old else k): v for k, v in r.items()} for r in records]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no production", r"no version of 'unpromoted' has alias 'production'; promote one with: python -m src.promote version=N"),
        ("missing column", r"x.json: no column found for amount .* map it with data.columns.amount=<column>; the file has columns \['date', .*'rub'"),
        ("only test accounts", r"only.json: no transactions left after cleaning"),
        ("no such input", r"nothing.json: file not found"),
        ("previous lacks a column", r"previous=.*old.csv: missing column\(s\) segment_name"),
        ("bad snapshot", r"snapshot_date=someday: not a date"),
        ("no output", r"both input=PATH .* and output=PATH .* are required"),
    ],
)  # fmt: skip
def test_errors_name_the_problem_and_write_nothing(trained, run, export_a, tmp_path, case, message):
    out = tmp_path / "segments.csv"
    out.write_text("kept\n")  # an earlier result must survive a failed run, even overwritable
    args = [f"input={export_a}", f"output={out}", "overwrite=true"]
    if case == "no production":
        args.append("model_name=unpromoted")
    elif case == "missing column":
        args[0] = (
            f"input={write_json(tmp_path / 'x.json', _renamed(trained['records'][:50], 'sum', 'rub'))}"
        )
    elif case == "only test accounts":
        rows = [r | {"CustomerID": "test-1"} for r in trained["records"][:20]]
        args[0] = f"input={write_json(tmp_path / 'only.json', rows)}"
    elif case == "no such input":
        args[0] = f"input={tmp_path / 'nothing.json'}"
    elif case == "previous lacks a column":
        (tmp_path / "old.csv").write_text("customer_id,segment_id\n1001,0\n")
        args.append(f"previous={tmp_path / 'old.csv'}")
    elif case == "bad snapshot":
        args.append("snapshot_date=someday")
    elif case == "no output":
        args = args[:1]
    with pytest.raises(UserError, match=message):
        run(*args)
    assert out.read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temps
    assert not migration_paths(out)[0].exists()


def test_cli_without_production_exits_2_and_leaves_no_files(trained, export_a, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = clean_env() | {"MLFLOW_TRACKING_URI": trained["uri"], "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "src.predict", f"input={export_a}", "output=segments.csv",
         "model_name=unpromoted"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: model=models:/unpromoted@production: no version")
    assert "python -m src.promote version=N" in done.stderr
    assert list(work.iterdir()) == []  # no segments.csv, no outputs/, no log file


def test_an_existing_output_is_replaced_only_with_overwrite(trained, run, export_a, tmp_path):
    out = tmp_path / "segments.csv"
    out.write_text("kept\n")
    with pytest.raises(UserError, match=r"segments.csv: exists already; pass overwrite=true"):
        run(f"input={export_a}", f"output={out}")
    assert out.read_text() == "kept\n"
    segments = run(f"input={export_a}", f"output={out}", "overwrite=true")
    assert len(pd.read_csv(out)) == len(segments) > 0


def test_output_is_never_an_input_nor_a_non_regular_file(trained, run, export_a, tmp_path):
    before = export_a.read_bytes()
    with pytest.raises(UserError, match=r"is the input file"):
        run(f"input={export_a}", f"output={export_a}", "overwrite=true")
    old = tmp_path / "old.csv"
    old.write_text("customer_id,segment_name\n1001,Lost\n")
    with pytest.raises(UserError, match=r"old.csv: is the input file"):
        run(f"input={export_a}", f"output={old}", f"previous={old}", "overwrite=true")
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(UserError, match=r"pipe.csv: exists and is not a regular file"):
        run(f"input={export_a}", f"output={tmp_path / 'pipe.csv'}", "overwrite=true")
    assert export_a.read_bytes() == before
    assert old.read_text() == "customer_id,segment_name\n1001,Lost\n"


def test_output_directory_gets_segments_csv(trained, run, export_a, tmp_path):
    folder = tmp_path / "monthly"
    segments = run(f"input={export_a}", f"output={folder}/")
    assert len(pd.read_csv(folder / "segments.csv")) == len(segments)
    with pytest.raises(UserError, match=r"monthly/segments.csv: exists already"):
        run(f"input={export_a}", f"output={folder}")  # an existing directory: the same file


def test_migration_files_are_not_overwritten_either(trained, run, export_a, tmp_path):
    old = tmp_path / "old.csv"
    run(f"input={export_a}", f"output={old}")
    out = tmp_path / "new.csv"
    matrix_path, _ = migration_paths(out)
    matrix_path.write_text("kept\n")
    with pytest.raises(UserError, match=r"new.migration.csv: exists already"):
        run(f"input={export_a}", f"output={out}", f"previous={old}")
    assert matrix_path.read_text() == "kept\n" and not out.exists()


def test_a_model_saved_by_another_version_of_the_project_is_refused_by_name(tmp_path):
    # A model pickles the project's classes by reference: one naming a class this version no
    # longer has (a module renamed, BG/NBD's BgNbd before MBG/NBD) cannot be unpickled.
    import mlflow

    from src.predict import load_model

    release = tmp_path / "release"
    release.mkdir()
    (release / "old_release.py").write_text("class BgNbd:\n    r = 0.5\n")
    sys.path.insert(0, str(release))
    try:
        import old_release

        class Holder(mlflow.pyfunc.PythonModel):
            def __init__(self, part):
                self.part = part

            def predict(self, context, model_input):
                return model_input

        saved = tmp_path / "model"
        mlflow.pyfunc.save_model(
            saved, python_model=Holder(old_release.BgNbd()), pip_requirements=[]
        )
    finally:
        sys.path.remove(str(release))
        sys.modules.pop("old_release", None)
    with pytest.raises(UserError, match=r"saved by another version of this project \(Module"):
        load_model(str(saved))
