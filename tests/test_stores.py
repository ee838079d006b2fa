"""Store URLs, the study storage beside an MLflow store, masking and retrying."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import sqlalchemy.exc
from mlflow.exceptions import MlflowException

from src.errors import UserError
from src.retry import is_transient, retry
from src.secrets import mask_log_records, mask_secrets
from src.stores import normalise_url, store_lock, study_storage


def test_both_postgresql_schemes_mean_psycopg_3():
    assert normalise_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_study_storage_lives_beside_the_mlflow_store(tmp_path):
    assert study_storage(None, f"sqlite:///{tmp_path}/team/mlflow.db") == (
        f"sqlite:///{tmp_path}/team/mlflow.optuna.db"
    )
    assert study_storage(None, "postgresql://u:pw@db.example:5432/mlflow") == (
        "postgresql+psycopg://u:pw@db.example:5432/mlflow_optuna"
    )
    assert study_storage("postgresql://u@h/s", "http://x:5000") == "postgresql+psycopg://u@h/s"


def test_an_http_tracking_server_needs_sweep_storage():
    with pytest.raises(
        UserError, match="sweep.storage is not set .* tracking.uri=http://u:\\*\\*\\*@"
    ):
        study_storage(None, "http://u:secret@mlflow:5000")


def test_passwords_in_uris_are_masked_in_text_and_log_records(caplog):
    text = "store postgresql+psycopg://team:s3cret@db:5432/mlflow, also http://a:b@h/x?password=z"
    masked = mask_secrets(text)
    assert "s3cret" not in masked and ":b@" not in masked and "password=z" not in masked
    assert "postgresql+psycopg://team:***@db:5432/mlflow" in masked
    assert (
        mask_secrets("sqlite:////tmp/a.db http://host:5000")
        == "sqlite:////tmp/a.db http://host:5000"
    )
    logging.getLogger().addHandler(caplog.handler)
    mask_log_records()
    logging.getLogger("src.test").warning("cannot reach %s", "postgresql://u:s3cret@h/db")
    assert "s3cret" not in caplog.text and "postgresql://u:***@h/db" in caplog.text


def test_retry_waits_out_transient_errors_and_raises_others():
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise MlflowException("API request failed") from ConnectionRefusedError("refused")
        return "ok"

    assert retry(flaky, "test") == "ok"
    assert len(calls) == 3 and calls[2] - calls[0] >= 1.4  # 0.5 s, then 1 s
    assert is_transient(sqlalchemy.exc.OperationalError("x", {}, Exception("gone")))
    with pytest.raises(ValueError):
        retry(lambda: (_ for _ in ()).throw(ValueError("bad")), "test")


def test_sqlite_store_lock_is_a_file_beside_the_database(tmp_path):
    with store_lock(f"sqlite:///{tmp_path}/mlflow.db", "x"):
        assert (tmp_path / "mlflow.db.lock").exists()


def test_postgres_store_lock_excludes_other_connections():
    psycopg = pytest.importorskip("psycopg")
    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    order = []

    def other():
        with store_lock(url, "test-lock"):
            order.append("other")

    with store_lock(url, "test-lock"):
        waiting = threading.Thread(target=other)
        waiting.start()
        time.sleep(0.5)
        order.append("holder")
    waiting.join()
    assert order == ["holder", "other"]
