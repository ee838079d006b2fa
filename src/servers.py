"""Run an MLflow server (`mlflow server`, `mlflow ui`) in the foreground and stop all of it.

MLflow 3's server is a process tree: the `mlflow` command, uvicorn and its workers, and a job
runner with its huey consumers (15 processes for `mlflow ui` on MLflow 3.17). Ctrl-C in its
terminal reaches them all, but `kill <pid>` left the consumers running for 30-50 s on our
2-core machine, and closing the terminal (SIGHUP) left uvicorn and its workers serving the port
for good. So the server starts in its own process group, and Ctrl-C, SIGTERM or SIGHUP to this
process stops that whole group (SIGKILL for what lingers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from src.errors import UserError

STOP_SECONDS = 20
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # and SIGINT, which Python raises itself


def serve(
    command: Sequence[str], url: str, ready: str, startup_seconds: float, env: Mapping[str, str]
) -> None:
    """Start `command`, wait until `url`/health answers, print `ready`, then wait for the server
    to exit or for Ctrl-C / SIGTERM / SIGHUP, and stop its whole process group."""
    for number in STOP_SIGNALS:  # `kill` or a closed terminal stops it as Ctrl-C does,
        if signal.getsignal(number) != signal.SIG_IGN:  # unless started to ignore it (nohup)
            signal.signal(number, _interrupt)
    # Its own process group: we receive Ctrl-C in this terminal and stop its processes as one.
    server = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
    try:
        wait_until_up(url, server, startup_seconds)
        print(ready, flush=True)
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for number in (signal.SIGINT, *STOP_SIGNALS):
            signal.signal(number, signal.SIG_IGN)  # a second Ctrl-C or kill must not cut this
        stop(server)
    print("mlflow server stopped", flush=True)


def wait_until_up(url: str, server: subprocess.Popen, startup_seconds: float) -> None:
    deadline = time.monotonic() + startup_seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise UserError(f"mlflow server exited with status {server.returncode}; see above")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise UserError(f"mlflow server did not answer at {url} within {startup_seconds:.0f} s")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn, its workers, the job runner and its
    consumers), SIGKILL if any of them lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        server.poll()  # reaps the leader once it exits
        if not group_running(server.pid):
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs. Zombies do not count: a container's init
    may never reap the orphans, and they hold nothing."""
    proc = Path("/proc")
    if not proc.is_dir():  # macOS: no /proc; a signal 0 reaches zombies too, which is fine there
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            return True
    return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
