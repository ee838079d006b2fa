"""Where a team's stores live, and a lock held in them.

- Database URLs: `postgresql://` and `postgresql+psycopg://` both mean psycopg 3 (extra
  `.[postgres]`); `normalise_url` names the driver for SQLAlchemy, Optuna and MLflow.
- The Optuna storage that belongs to an MLflow store (`study_storage`): beside a SQLite
  `mlflow.db` it is `mlflow.optuna.db`; on a PostgreSQL server the database `<db>_optuna` of
  the same server; for any other store (an http tracking server) it must be given.
- `store_lock`: an exclusive lock shared by every process that uses the store, on any machine:
  a PostgreSQL advisory lock on the server, or a lock file beside a SQLite file.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from src.errors import UserError
from src.retry import retry
from src.secrets import mask_secrets

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
POSTGRES_DRIVER = "postgresql+psycopg"
SQLITE_PREFIX = "sqlite:///"
STUDY_DB_SUFFIX = "_optuna"


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_postgres(url: str) -> bool:
    return scheme(url) in POSTGRES_SCHEMES


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` -> `postgresql+psycopg://`; other URLs unchanged."""
    if is_postgres(url):
        return POSTGRES_DRIVER + url[len(scheme(url)) :]
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///` URL (None for other URLs and in-memory databases)."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    path = unquote(url[len(SQLITE_PREFIX) :]).split("?", 1)[0]
    return None if not path or path == ":memory:" else Path(path)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def study_storage(setting: str | None, tracking_uri: str | None) -> str:
    """`sweep.storage` if set, else the Optuna storage beside the MLflow store `tracking_uri`
    (None: tracking off, a SQLite file `optuna.db` in the working directory)."""
    if setting:
        return normalise_url(str(setting))
    if tracking_uri is None:
        return f"{SQLITE_PREFIX}{Path('optuna.db').resolve()}"
    database = sqlite_path(tracking_uri)
    if database is not None:
        return f"{SQLITE_PREFIX}{database.resolve().with_suffix('.optuna.db')}"
    if is_postgres(tracking_uri) and database_name(tracking_uri):
        study_db = database_name(tracking_uri) + STUDY_DB_SUFFIX
        return normalise_url(with_database(tracking_uri, study_db))
    raise UserError(
        f"sweep.storage is not set and cannot be derived from tracking.uri="
        f"{mask_secrets(tracking_uri)}: set sweep.storage to the team's study database, e.g. "
        "sweep.storage=postgresql://user:password@host:5432/mlflow_optuna "
        "(`python -m src.team_servers` prints it)"
    )


def store_identity(uri: str) -> str:
    """A tracking URI as recorded on a study: absolute for SQLite, password masked."""
    database = sqlite_path(uri)
    if database is not None:
        return f"{SQLITE_PREFIX}{database.resolve()}"
    return mask_secrets(normalise_url(uri))


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg/libpq take it (no driver in the scheme)."""
    return "postgresql" + url[len(scheme(url)) :]


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database of `url` if it does not exist (connecting to the server's
    `postgres` database); returns whether it was created. Other URLs: nothing to do."""
    if not is_postgres(url):
        return False
    import psycopg
    from psycopg import sql

    name = database_name(url)
    admin = libpq_url(with_database(url, "postgres"))

    def create() -> bool:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists:
                return False
            try:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:  # another worker created it meanwhile
                return False
            return True

    try:
        return retry(create, f"creating database {name}")
    except psycopg.Error as err:
        raise UserError(f"{mask_secrets(url)}: cannot create database '{name}': {err}") from err


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def store_lock(url: str, name: str) -> Iterator[None]:
    """Hold the exclusive lock `name` of the store `url` while the block runs. Every process
    using that store, on this or another machine, waits for it: PostgreSQL's advisory lock (held
    by a connection of its own, released if this process dies), or an flock on
    `<file>.lock` beside a SQLite database. Other stores (an http tracking server) serialise
    their own writes: no lock."""
    if is_postgres(url):
        import psycopg

        key = _lock_key(name)

        def acquire() -> psycopg.Connection:
            connection = psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10)
            try:
                connection.execute("SELECT pg_advisory_lock(%s)", (key,))
            except BaseException:
                connection.close()
                raise
            return connection

        connection = retry(acquire, f"taking the lock '{name}'")
        try:
            yield
        finally:
            # A connection lost meanwhile (the server restarted) released the lock with it.
            with suppress(psycopg.Error):
                connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
            connection.close()
        return
    database = sqlite_path(url)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with database.with_name(database.name + ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
