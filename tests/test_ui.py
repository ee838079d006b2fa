"""`python -m src.ui`: the MLflow UI on the working directory's store answers, and Ctrl-C
(SIGINT), SIGTERM or a closed terminal (SIGHUP) leaves no process of it behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    leaked = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
    return {k: v for k, v in os.environ.items() if k not in leaked} | {"PYTHONPATH": str(ROOT)}


def ui(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "src.ui", *args], cwd=cwd, env=env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def processes_in_group(pgid: int) -> list[str]:
    """The live (not zombie) processes of group `pgid`, as `ps` lists them."""
    listing = subprocess.run(
        ["ps", "-eo", "pgid=,stat=,pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split(None, 3) for line in listing.splitlines()]
    return [" ".join(r) for r in rows if len(r) == 4 and int(r[0]) == pgid and r[1][0] != "Z"]


def server_group(ui_pid: int) -> int:
    """The process group of the `mlflow ui` that src.ui started (its own, not src.ui's)."""
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(ui_pid)], capture_output=True, text=True
    ).stdout.split()
    assert len(children) == 1, children
    return os.getpgid(int(children[0]))


def until_ready(process: subprocess.Popen) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"src.ui exited {process.wait()}:\n{''.join(lines)[-3000:]}")
        lines.append(line)
        if line.startswith("MLflow UI on"):
            return lines
    pytest.fail(f"src.ui not ready within {STARTUP_S} s:\n{''.join(lines)[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP])
def test_the_ui_answers_and_stopping_it_leaves_no_process(tmp_path, stop):
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment("customer-segmentation")
    port = free_port()
    process = ui(tmp_path, "--port", str(port))
    group = None
    try:
        lines = until_ready(process)
        assert f"http://127.0.0.1:{port}" in lines[-1]
        link = process.stdout.readline()  # the runs table in the "Compare runs" view
        experiment = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name(
            "customer-segmentation"
        )
        assert link.strip().endswith(
            f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs"
            "?workflowType=machine_learning&viewStateShareKey=compare-runs"
        )
        group = server_group(process.pid)
        assert group != os.getpgid(process.pid)  # its own group: stopped as one
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
        with urllib.request.urlopen(f"{url}?experiment_name=customer-segmentation") as response:
            assert json.load(response)["experiment"]["name"] == "customer-segmentation"
        process.send_signal(stop)  # Ctrl-C in its terminal; a closed terminal
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0, out[-3000:]
        assert "mlflow server stopped" in out
        assert processes_in_group(group) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if group is not None and processes_in_group(group):
            os.killpg(group, signal.SIGKILL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "sqlite:///mlflow.db: no such file"),
        (("--backend-store-uri", "http://127.0.0.1:5000"), "is a tracking server"),
    ],
)
def test_a_missing_store_or_a_tracking_server_is_refused(tmp_path, args, message):
    done = subprocess.run(
        [sys.executable, "-m", "src.ui", *args], cwd=tmp_path, env=env(), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # not created empty
