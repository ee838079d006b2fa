"""`python -m src.sample_export`: the sample 1C export the README's examples use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src.sample_export", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_writes_a_1c_export_and_refuses_to_overwrite_it(tmp_path):
    done = command("out=export_2026-02.json", "customers=30", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    export = tmp_path / "export_2026-02.json"
    records = json.loads(export.read_text(encoding="utf-8-sig"))
    assert {"date", "order_id", "sum", "CustomerID", "StockCode"} <= set(records[0])
    assert (tmp_path / "export_2026-02.truth.csv").exists()
    assert "wrote export_2026-02.json" in done.stdout

    before = export.read_bytes()
    again = command("out=export_2026-02.json", "customers=30", "seed=1", cwd=tmp_path)
    assert again.returncode == 2
    assert "exists already" in again.stderr and "overwrite=true" in again.stderr
    assert "Traceback" not in again.stderr
    assert export.read_bytes() == before

    replaced = command("out=export_2026-02.json", "customers=30", "seed=1", "overwrite=true",
                       cwd=tmp_path)  # fmt: skip
    assert replaced.returncode == 0 and export.read_bytes() != before


def test_without_out_it_says_what_is_needed(tmp_path):
    done = command(cwd=tmp_path)
    assert done.returncode == 2
    assert "out=PATH is required" in done.stderr and "Traceback" not in done.stderr


def test_until_cuts_the_same_store_at_a_day(tmp_path):
    """Two cuts are one store's exports taken on different days: the earlier one is the later
    one's first lines, and holds no sale after its day."""
    january = command("out=export_2026-01.json", "until=2026-01-31", "customers=40", cwd=tmp_path)
    assert january.returncode == 0, january.stderr
    assert "sales up to 2026-01-31" in january.stdout
    whole = command("out=export_all.json", "customers=40", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    cut = json.loads((tmp_path / "export_2026-01.json").read_text(encoding="utf-8-sig"))
    full = json.loads((tmp_path / "export_all.json").read_text(encoding="utf-8-sig"))
    assert 0 < len(cut) < len(full)
    assert cut == full[: len(cut)]
    dates = pd.to_datetime(
        pd.Series([r["date"] for r in full]), format="mixed", dayfirst=True, errors="coerce"
    )
    real = dates[dates <= "2026-06-30T23:59:59"]  # not the export's unreadable or future dates
    assert real[real.index < len(cut)].max() < pd.Timestamp("2026-02-01")
    assert real[real.index >= len(cut)].min() >= pd.Timestamp("2026-02-01")


def test_until_outside_the_history_or_not_a_day_is_refused(tmp_path):
    for value, message in (("2027-01-31", "history runs from 2023-07-01 to 2026-06-30"),
                           ("January", "give a day as YYYY-MM-DD")):  # fmt: skip
        done = command("out=x.json", f"until={value}", "customers=5", cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert f"until={value}" in done.stderr and message in done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "x.json").exists()
