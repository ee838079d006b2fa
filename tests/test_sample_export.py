"""`python -m src.sample_export`: the sample 1C export the README's examples use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
