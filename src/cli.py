"""Shared behaviour of the command-line entry points."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from src.errors import UserError

USER_ERROR_STATUS = 2


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a UserError's message (no traceback) and exit with status 2."""
    try:
        yield
    except UserError as err:
        logging.getLogger("src").debug("user error", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
