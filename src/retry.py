"""Retry with backoff on transient store errors: a database or MLflow tracking server that
restarts (up to ~30 s) must cost a sweep some waiting, not its trials or its workers."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from src.secrets import mask_secrets

log = logging.getLogger(__name__)
DEADLINE_SECONDS = 90.0  # a restart of 30 s, plus reconnecting and MLflow's own HTTP retries
FIRST_WAIT_SECONDS = 0.5
MAX_WAIT_SECONDS = 8.0

P = ParamSpec("P")
T = TypeVar("T")


def _transient_types() -> tuple[type[BaseException], ...]:
    import optuna
    import requests
    import sqlalchemy.exc

    types: list[type[BaseException]] = [
        ConnectionError,  # refused, reset, aborted
        TimeoutError,
        sqlalchemy.exc.OperationalError,  # server gone, connection dropped, database locked
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.DisconnectionError,
        optuna.exceptions.StorageInternalError,  # Optuna's wrapper of the errors above
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,  # MLflow's HTTP retries ran out (5xx while it restarts)
    ]
    try:
        import psycopg

        types.append(psycopg.OperationalError)
    except ImportError:  # the postgres extra is not installed
        pass
    return tuple(types)


def is_transient(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised from, means "the store is unreachable right now"
    (MLflow and Optuna wrap the driver's error in their own)."""
    transient = _transient_types()
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, transient):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def retry(call: Callable[[], T], what: str, deadline_seconds: float = DEADLINE_SECONDS) -> T:
    """`call()`, again after 0.5, 1, 2, 4, 8, 8 ... s while it fails transiently, until
    `deadline_seconds` have passed; then, or on any other error, the error is raised."""
    start, wait = time.monotonic(), FIRST_WAIT_SECONDS
    while True:
        try:
            return call()
        except Exception as err:
            if not is_transient(err) or time.monotonic() - start + wait > deadline_seconds:
                raise
            log.warning("%s: %s; retrying in %.1f s", what, mask_secrets(str(err))[:300], wait)
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_SECONDS)


def retried(what: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of `retry`."""

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return retry(lambda: function(*args, **kwargs), what)

        return wrapper

    return decorate
