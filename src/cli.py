"""Shared behaviour of the command-line entry points.

Every mistake a user can make ends the same way: one line `error: ...` on stderr, exit status 2,
no traceback. That covers the project's UserError, Hydra's own refusals of the command line
(unknown key or option, bad override syntax) and an output pipe closed early
(`python -m src.run | head -1`). Programming errors still end in a traceback (status 1).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, NoReturn

from src.errors import UserError
from src.secrets import mask_secrets

USER_ERROR_STATUS = 2
# Libraries whose INFO lines (database migrations, connection pools, study creation) would bury
# the command's own progress; `verbose=true` lets them through.
LIBRARY_LOGGERS = ("mlflow", "alembic", "optuna", "urllib3", "httpx", "sqlalchemy", "git")
BROKEN_PIPE = "the output was closed before the command finished (broken pipe); it stopped there"


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a UserError's message (no traceback) and exit with status 2; the same for a closed
    output pipe."""
    try:
        yield
    except UserError as err:
        logging.getLogger("src").debug("user error", exc_info=True)
        fail(str(err))
    except BrokenPipeError:
        fail(BROKEN_PIPE, stdout_closed=True)


def fail(message: str, stdout_closed: bool = False) -> NoReturn:
    """Print `error: message` on stderr and exit with status 2."""
    if stdout_closed:
        _discard_stdout()
    with suppress(OSError):  # stderr may be a closed pipe too
        print(f"error: {mask_secrets(message)}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_STATUS)


def run_command(main: Callable[[], Any]) -> None:
    """Run `main`, a function decorated with `hydra.main`, as a command.

    Hydra reports the errors of its command line (unknown key or option, bad syntax) in several
    lines and exits 1; here they are one line and exit 2, like every other user error. Told to
    raise them (HYDRA_FULL_ERROR), Hydra raises them before the task function starts; an
    exception from inside the task function is a programming error and keeps its traceback.
    """
    task = getattr(main, "__wrapped__", main)
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except BrokenPipeError:  # --help or --cfg into a closed pipe
        fail(BROKEN_PIPE, stdout_closed=True)
    except Exception as err:
        if _raised_in(task, err.__traceback__):
            raise
        fail(one_line(err))
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
    skip_collection_at_exit()


def quiet_libraries(verbose: bool) -> None:
    """Show only the warnings and errors of `LIBRARY_LOGGERS` unless `verbose`. MLflow sets its
    own level when imported, from MLFLOW_LOGGING_LEVEL: set here, it also reaches the processes
    the command starts (workers, the tracking companion). A level the user exported is kept."""
    level = "INFO" if verbose else "WARNING"
    if verbose:
        os.environ["MLFLOW_LOGGING_LEVEL"] = level
    else:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", level)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(
            os.environ["MLFLOW_LOGGING_LEVEL"] if name == "mlflow" else level
        )


def one_line(err: BaseException) -> str:
    """Hydra's multi-line message as one line: option listings joined by commas, the config
    search path and OmegaConf's detail lines left out, the cause's first line added."""
    parts: list[str] = []
    listing = False
    for line in str(err).splitlines():
        text = line.strip()
        if text.startswith("Config search path"):
            break
        if not text:
            continue
        if line[:1].isspace():  # an indented line: an option of a listing, or a detail
            if listing:
                parts[-1] += (" " if parts[-1].endswith(":") else ", ") + text
            continue
        listing = text.endswith(":")
        parts.append(text.rstrip("."))
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        parts.append(str(cause).strip().splitlines()[0].rstrip("."))
    return "; ".join(parts) or type(err).__name__


def _raised_in(function: Callable[..., Any], tb: TracebackType | None) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code is getattr(function, "__code__", None):
            return True
        tb = tb.tb_next
    return False


def _discard_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush at exit does not
    fail again on the closed pipe (and print a traceback of its own)."""
    with suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())


class ConsoleHandler(logging.StreamHandler):
    """The console log handler of the commands (conf/config.yaml, hydra.job_logging): a closed
    output pipe stops the command instead of printing a logging traceback for every line."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            raise  # noqa: PLE0704 - re-raises the error being handled by emit()
        super().handleError(record)


def skip_collection_at_exit() -> None:
    """Call when a command's work is done. At exit the interpreter frees the objects of every
    module it imported (over 3,000 for a sweep) and its garbage collector traverses them: about
    1 s of a command's wall time, spent after its last line of output. Frozen objects are left
    out of that traversal; atexit handlers and flushing still run as usual."""
    gc.freeze()
