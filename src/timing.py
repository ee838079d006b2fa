"""Wall-clock timing of pipeline stages, reported as `time/<stage>_s` metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Stopwatch:
    """Times named stages; a stage run twice accumulates."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("%-10s ...", name)
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        log.info("%-10s done in %.2f s", name, elapsed)

    def as_metrics(self) -> dict[str, float]:
        return {f"time/{name}_s": round(sec, 4) for name, sec in self.seconds.items()}
