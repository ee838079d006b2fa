"""The output side of `src.predict` without a model: which paths it refuses, and how it writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from src.errors import UserError
from src.predict import check_targets, output_file, write_atomically


def writer(text: str):
    return lambda path: Path(path).write_text(text)


def test_output_names_a_file_or_a_directory_to_hold_segments_csv(tmp_path):
    assert output_file(str(tmp_path / "out.csv")) == tmp_path / "out.csv"
    assert output_file(f"{tmp_path / 'new'}/") == tmp_path / "new" / "segments.csv"
    assert output_file(str(tmp_path)) == tmp_path / "segments.csv"


def test_an_input_reached_another_way_is_still_refused(tmp_path):
    export = tmp_path / "export.csv"
    export.write_text("x\n")
    (tmp_path / "link.csv").symlink_to(export)
    os.link(export, tmp_path / "hard.csv")
    for name in ("link.csv", "hard.csv", "./export.csv"):
        with pytest.raises(UserError, match="is the input file"):
            check_targets([tmp_path / name], [export], overwrite=True)


def test_a_folder_that_cannot_exist_is_refused_before_work(tmp_path):
    (tmp_path / "file").write_text("x\n")
    with pytest.raises(UserError, match="is not a directory"):
        check_targets([tmp_path / "file" / "out.csv"], [], overwrite=False)
    check_targets([tmp_path / "a" / "b" / "out.csv"], [], overwrite=False)  # created when written


def test_without_overwrite_a_file_that_appeared_meanwhile_is_kept(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    second.write_text("theirs\n")  # written by another process after the check
    with pytest.raises(UserError, match="another process wrote this file meanwhile"):
        write_atomically({first: writer("ours a\n"), second: writer("ours b\n")}, overwrite=False)
    assert second.read_text() == "theirs\n"
    assert not first.exists()  # all or nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv"]  # no temp files


def test_overwrite_replaces_in_one_step(tmp_path):
    target = tmp_path / "a.csv"
    target.write_text("old\n")
    write_atomically({target: writer("new\n")}, overwrite=True)
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_a_failed_write_leaves_nothing(tmp_path):
    def broken(path: Path) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically({tmp_path / "a.csv": writer("a\n"), tmp_path / "b.csv": broken}, False)
    assert list(tmp_path.iterdir()) == []
