"""REST serving: the real `mlflow models serve -m models:/customer-segmentation@production`
(subprocess on a free loopback port) answers /invocations with segments and rejects a malformed
request with a 4xx and a message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from src.servers import stop
from src.tracking import registry
from tests.conftest import train_and_register

NAME = "customer-segmentation"
STARTUP_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def clean_env() -> dict[str, str]:
    """This process's environment without the MLflow run/experiment another test may have left."""
    leaked = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    return {k: v for k, v in os.environ.items() if k not in leaked}


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_cfg):
    tmp = tmp_path_factory.mktemp("serve")
    uri, export = train_and_register(tmp, make_cfg)
    registry.move_production(MlflowClient(uri), NAME, "1")
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # uvicorn is started by name
    env = clean_env() | {
        "MLFLOW_TRACKING_URI": uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    log = (tmp / "server.log").open("w")
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m",
               f"models:/{NAME}@production", "-h", "127.0.0.1", "-p", str(port),
               "--env-manager", "local"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"server exited {process.returncode}:\n{(tmp / 'server.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no /ping within {STARTUP_TIMEOUT_S} s:\n{(tmp / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield {"url": f"{base}/invocations", "uri": uri, "export": export}
    finally:
        stop(process)  # the whole process group
        log.close()


@pytest.mark.slow
def test_serves_segments_for_raw_transactions(server):
    records = json.loads(Path(server["export"]).read_text(encoding="utf-8"))
    customers = sorted({r["CustomerID"] for r in records})[::60]  # 5 of 300
    lines = [r for r in records if r["CustomerID"] in customers]
    body = {"dataframe_records": lines, "params": {"snapshot_date": "2026-01-01"}}
    status, answer = post(server["url"], json.dumps(body, ensure_ascii=False).encode())
    assert status == 200, answer
    served = pd.DataFrame(answer["predictions"])
    assert list(served.columns) == ["customer_id", "segment_id", "segment_name"]
    assert sorted(served["customer_id"]) == sorted(str(c) for c in customers)
    # the same answer as the registered model loaded in this process
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@production")
    local = model.predict(pd.DataFrame(lines), params={"snapshot_date": "2026-01-01"})
    assert served.to_dict("records") == local.astype({"segment_id": int}).to_dict("records")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"dataframe_records": [{"CustomerID": 1, "amount": 5}]}',
            "missing inputs ['date', 'sum']",
        ),
        (b"this is not json", "valid JSON"),
        (b'{"rows": []}', "dataframe_records"),
    ],
)
def test_a_malformed_request_gets_a_4xx_with_a_message(server, body, message):
    status, answer = post(server["url"], body)
    assert 400 <= status < 500
    assert message in answer["message"]
    # and the server is still up
    with urllib.request.urlopen(server["url"].replace("invocations", "ping"), timeout=5) as ping:
        assert ping.status == 200
