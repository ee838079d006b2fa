"""Shared behaviour of the command-line entry points."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from src.errors import UserError
from src.secrets import mask_secrets

USER_ERROR_STATUS = 2


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a UserError's message (no traceback) and exit with status 2."""
    try:
        yield
    except UserError as err:
        logging.getLogger("src").debug("user error", exc_info=True)
        print(f"error: {mask_secrets(str(err))}", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)


def skip_collection_at_exit() -> None:
    """Call when a command's work is done. At exit the interpreter frees the objects of every
    module it imported (over 3,000 for a sweep) and its garbage collector traverses them: about
    1 s of a command's wall time, spent after its last line of output. Frozen objects are left
    out of that traversal; atexit handlers and flushing still run as usual."""
    gc.freeze()
