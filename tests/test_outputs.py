"""Run folders: unique names, written whole, partial folders of killed runs removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

import pandas as pd
import pytest

from src.outputs import STALE_PARTIAL_SECONDS, remove_stale_partials, run_folder, write_csv

STARTED = datetime(2026, 3, 5, 14, 2, 11)


def test_run_folders_are_unique_within_a_second(tmp_path):
    tracked = run_folder(tmp_path, STARTED, "0123456789abcdef")
    assert tracked == tmp_path / "2026-03-05" / "14-02-11-01234567"
    untracked = {run_folder(tmp_path, STARTED, None) for _ in range(50)}
    assert len(untracked) == 50
    assert all(f.parent.name == "2026-03-05" and f.name.startswith("14-02-11-") for f in untracked)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_partial_folders_of_gone_or_old_runs_are_removed(tmp_path):
    day = tmp_path / "2026-03-05"
    gone = day / f".14-02-11-aaaaaaaa.{dead_pid()}.partial"
    running = day / f".14-02-12-bbbbbbbb.{os.getpid()}.partial"
    old = day / f".14-02-13-cccccccc.{os.getpid()}.partial"
    finished = day / "14-02-14-dddddddd"
    for folder in (gone, running, old, finished):
        (folder / "plots").mkdir(parents=True)
    hour_ago = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(old, (hour_ago, hour_ago))
    assert sorted(remove_stale_partials(tmp_path)) == sorted([gone, old])
    assert running.exists() and finished.exists()


def test_no_outputs_folder_yet_is_fine(tmp_path):
    assert remove_stale_partials(tmp_path / "outputs") == []


def test_a_folder_is_never_written_over(tmp_path):
    from src.outputs import write_run_outputs

    existing = tmp_path / "14-02-11-01234567"
    existing.mkdir()
    with pytest.raises(FileExistsError):
        write_run_outputs(existing, data=None, result=None, config_yaml="")  # type: ignore[arg-type]


def test_csvs_carry_numbers_rounded_to_what_they_mean(tmp_path):
    profile = pd.DataFrame(
        {
            "segment_id": [0, 1],
            "size": [3, 7],
            "customer_share": [0.3, 0.7],
            "revenue_share": [0.123456789, 0.876543211],
            "recency_mean": [12.3456, 200.0],
            "monetary_mean": [1234.56789, 98765.4321],
            "silhouette": [0.4123456, 0.5],
        }
    )
    write_csv(profile, tmp_path / "profile.csv")
    lines = (tmp_path / "profile.csv").read_text().splitlines()
    assert lines[1:] == ["0,3,0.3,0.1235,12.35,1234.57,0.4123", "1,7,0.7,0.8765,200.0,98765.43,0.5"]
