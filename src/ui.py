"""`python -m src.ui`: the MLflow UI on this project's tracking store; Ctrl-C stops all of it.

The store is the one every command uses: `--backend-store-uri`, else $MLFLOW_TRACKING_URI, else
`sqlite:///mlflow.db` in the working directory. It runs `mlflow ui` in its own process group
and stops that whole group on Ctrl-C, SIGTERM or a closed terminal (src.servers says why plain
`mlflow ui` does not).

    python -m src.ui                  # http://127.0.0.1:5000
    python -m src.ui --port 5050
"""

from __future__ import annotations

import argparse
import os
import sys

from src.cli import exit_on_user_error
from src.errors import UserError
from src.secrets import mask_secrets
from src.servers import serve
from src.stores import SQLITE_PREFIX, normalise_url, scheme, sqlite_path

DEFAULT_STORE = f"{SQLITE_PREFIX}mlflow.db"
DEFAULT_EXPERIMENT = "customer-segmentation"  # conf/tracking/mlflow.yaml's tracking.experiment
STARTUP_SECONDS = 120
# A UI for one person on their own machine: one uvicorn worker (`--workers 1`; the default is 4)
# and no job runner, whose 7 huey consumers run MLflow's GenAI jobs (trace scoring, prompt
# optimisation) that this project never submits. 2 processes instead of 15: on our busy 2-core
# machine it answers in about 10 s instead of 30-40 s.
LIGHT = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.ui", description=__doc__)
    parser.add_argument(
        "--backend-store-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE,
        help="the tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help="the experiment whose runs table it links to (default: %(default)s)",
    )
    return parser.parse_args(argv)


def ui_command(args: argparse.Namespace, store: str) -> list[str]:
    """`mlflow ui`'s command line; the store URI (perhaps with a password) goes in the
    environment (MLFLOW_BACKEND_STORE_URI), where `ps` does not show it to other users."""
    command = [sys.executable, "-m", "mlflow", "ui", "--host", args.host, "--port", str(args.port),
               "--workers", "1"]  # fmt: skip
    from src.tracking.runs import ARTIFACTS_BESIDE_SQLITE  # imports MLflow: not for an error

    database = sqlite_path(store)
    if database is not None:  # where the commands put a SQLite store's artifacts
        artifacts = database.resolve().parent / ARTIFACTS_BESIDE_SQLITE
        command += ["--artifacts-destination", str(artifacts)]
    return command


def experiment_id(store: str, name: str) -> str | None:
    """The id of experiment `name` in the store (None if it has none yet): the UI's runs table of
    an experiment is addressed by id, and MLflow's UI opens on its GenAI overview without the
    link's workflowType (src.tracking.ui_view)."""
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(tracking_uri=store).get_experiment_by_name(name)
    return None if experiment is None else str(experiment.experiment_id)


def checked_store(uri: str) -> str:
    """The store to open; a missing SQLite file or a tracking server is a user error (`mlflow
    ui` would create an empty database, or serve a UI for a store that has one already)."""
    if scheme(uri) in ("http", "https"):
        raise UserError(
            f"{mask_secrets(uri)} is a tracking server: it serves the UI itself, open it in a "
            "browser (or pass --backend-store-uri)"
        )
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        raise UserError(
            f"{uri}: no such file in {os.getcwd()}; run this where you ran python -m src.run "
            "(the store is created there), or pass --backend-store-uri"
        )
    return normalise_url(uri)


def main(argv: list[str] | None = None) -> None:
    with exit_on_user_error():
        args = parse_args(argv)
        store = checked_store(args.backend_store_uri)
        url = f"http://{args.host}:{args.port}"
        ready = f"MLflow UI on {mask_secrets(store)}: {url}  (Ctrl-C stops it)"
        experiment = experiment_id(store, args.experiment)
        if experiment is not None:
            from src.tracking.ui_view import runs_table_url  # imports MLflow: not for an error

            ready += f"\n{args.experiment}, runs to compare: {runs_table_url(url, experiment)}"
        serve(
            ui_command(args, store),
            url,
            ready,
            STARTUP_SECONDS,
            env=os.environ | {"MLFLOW_BACKEND_STORE_URI": store, **LIGHT},
        )


if __name__ == "__main__":
    main()
