"""`python -m src.team_servers`: a team's MLflow tracking server on PostgreSQL, in one command.

Creates the MLflow and Optuna databases on the PostgreSQL server if they are missing, starts
`mlflow server` on the MLflow database with an artifact destination and port, waits until it
answers, prints what each team member sets, and stops the server cleanly on Ctrl-C, SIGTERM or
a closed terminal (src.servers).
For a real deployment (a server others reach, restarts, backups) see deploy/compose.yaml.

    python -m src.team_servers --database postgresql://postgres:PASSWORD@127.0.0.1:5432 \\
        --artifacts /srv/mlflow-artifacts --port 5000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from src.cli import exit_on_user_error
from src.errors import UserError
from src.secrets import mask_secrets
from src.servers import serve
from src.stores import STUDY_DB_SUFFIX, ensure_database, normalise_url, with_database

STARTUP_SECONDS = 180  # a fresh database: MLflow creates and migrates its tables first


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.team_servers", description=__doc__)
    parser.add_argument(
        "--database",
        default=os.environ.get("TEAM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432"),
        help="the PostgreSQL server, postgresql://user:password@host:port "
        "(default: $TEAM_DATABASE_URL or postgresql://postgres@127.0.0.1:5432)",
    )
    parser.add_argument("--mlflow-db", default="mlflow", help="MLflow's database (default: mlflow)")
    parser.add_argument(
        "--artifacts", default="mlflow-artifacts", help="artifact destination (folder or URI)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5000)
    return parser.parse_args(argv)


def server_command(args: argparse.Namespace, artifacts: str) -> list[str]:
    """`mlflow server`'s command line; the backend URI (with its password) goes in the environment
    (MLFLOW_BACKEND_STORE_URI), where `ps` does not show it to other users."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--artifacts-destination", artifacts,
        "--host", args.host, "--port", str(args.port),
        "--workers", "2",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    with exit_on_user_error():
        args = parse_args(argv)
        server_url = normalise_url(args.database)
        if not server_url.startswith("postgresql+psycopg://"):
            raise UserError(f"--database={mask_secrets(args.database)}: use postgresql://...")
        mlflow_db = with_database(server_url, args.mlflow_db)
        optuna_db = with_database(server_url, args.mlflow_db + STUDY_DB_SUFFIX)
        for url in (mlflow_db, optuna_db):
            if ensure_database(url):
                print(f"created database {mask_secrets(url)}", flush=True)
        artifacts = args.artifacts
        if "://" not in artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            artifacts = str(Path(artifacts).resolve())
        tracking = f"http://{args.host}:{args.port}"
        ready = (
            f"\nMLflow tracking server on {mask_secrets(mlflow_db)}, artifacts in {artifacts}\n"
            "Every team member runs sweeps with (*** = the database password):\n"
            f"  export MLFLOW_TRACKING_URI={tracking}\n"
            f"  python -m src.sweep sweep.storage={mask_secrets(optuna_db)} "
            "sweep.study_name=<shared name>\n"
            "Ctrl-C stops the server."
        )
        serve(
            server_command(args, artifacts),
            tracking,
            ready,
            STARTUP_SECONDS,
            env=os.environ | {"MLFLOW_BACKEND_STORE_URI": mlflow_db},
        )


if __name__ == "__main__":
    main()
