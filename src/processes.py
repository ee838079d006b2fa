"""How the commands start their helper processes (a sweep's workers, a run's MLflow companion)."""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.context import BaseContext


def helper_context() -> BaseContext:
    """Fork on Linux: the child starts with the imports this process already did (3 s of a
    sweep's start-up) instead of redoing them. Callers start their helpers before they open a
    database connection or run a thread pool, which a forked child could not use. Spawn
    elsewhere: macOS's system libraries are not fork-safe, and Windows cannot fork."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
