import sqlite3

from src.sqlite_wal import use_wal


def journal_mode(path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]


def test_sqlite_files_switch_to_wal_once_and_stay(tmp_path, monkeypatch):
    absolute = tmp_path / "store.db"
    sqlite3.connect(absolute).close()
    assert journal_mode(absolute) == "delete"
    use_wal(f"sqlite:///{absolute}")  # sqlite:////abs/path
    assert journal_mode(absolute) == "wal"
    monkeypatch.chdir(tmp_path)
    sqlite3.connect("relative.db").close()
    use_wal("sqlite:///relative.db")
    assert journal_mode(tmp_path / "relative.db") == "wal"


def test_other_urls_are_left_alone(tmp_path):
    use_wal("postgresql://user:pw@localhost/db")
    use_wal("sqlite:///:memory:")
    use_wal(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")  # cannot open: an optimisation only
    assert list(tmp_path.iterdir()) == []
