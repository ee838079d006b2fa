"""A single run's MLflow work, done by a companion process while the pipeline runs.

Importing MLflow and opening its SQL store is about 2.6 s of pure Python on a 2-core machine,
a sixth of a default run; in a thread it would fight the pipeline for the GIL. The companion,
started first, imports MLflow and opens the store on the other core while the pipeline loads and
cleans the export; it creates the run only when told to start (the data are prepared), so an
export that is refused leaves no run behind. The pipeline's process then only sends it the
finished run's record, or the failure.

The run behaves as if it were logged in-process: FAILED with the error as a tag when the pipeline
fails, is interrupted or its process dies after the start; ended FINISHED only after everything
is logged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

from src.errors import UserError
from src.processes import helper_context

STOP_SECONDS = 60  # how long the pipeline's process waits for the companion to end the run
PARENT_GONE = "the pipeline's process ended before the run was logged"


@dataclass(frozen=True)
class Logged:
    run_id: str
    model_uri: str | None
    version: str | None  # registered model version, with tracking.register=true


class CompanionRun:
    """The pipeline process's handle on the run the companion keeps."""

    def __init__(self, connection: Connection, tracking: DictConfig) -> None:
        self._connection = connection
        self._tracking = tracking

    def start(self, tags: Mapping[str, str]) -> None:
        """Have the companion create the run, with `tags` besides the contract's (the data are
        prepared: a run exists only for data that were accepted). Returns at once."""
        with suppress(OSError):  # a companion that failed to start says why at check()
            self._connection.send(("start", dict(tags)))

    def check(self) -> str:
        """The run's id, once the companion created it; raises if it could not open the store or
        create the run (a bad tracking.uri), so that nothing is written for a run that cannot be
        recorded."""
        return self._reply("started")

    def log(self, record: Any) -> None:
        """Send the finished pipeline's record (runs.RunRecord: params, dataset, metrics, model);
        the companion logs it while this process writes the outputs."""
        self._connection.send(("log", record))

    def finish(
        self, out_dir: str, metrics: Mapping[str, float], register_as: str | None = None
    ) -> Logged:
        """Log the written outputs and the metrics measured meanwhile, register the model as a new
        version of `register_as` if given, and end the run; returns once all is done."""
        self._connection.send(("finish", (out_dir, dict(metrics), register_as)))
        return self._reply("logged")

    def _reply(self, expected: str) -> Any:
        try:
            kind, body = self._connection.recv()
        except EOFError:
            raise UserError(
                f"tracking ({self._tracking.uri}): the MLflow process ended unexpectedly"
            ) from None
        if kind == "error":
            raise UserError(f"tracking ({self._tracking.uri}): {body}")
        if kind != expected:
            raise RuntimeError(f"companion answered {kind!r}, expected {expected!r}")
        return body


@contextmanager
def companion_run(
    tracking: DictConfig, picked: Mapping[str, str], run_kind: str = "single"
) -> Iterator[CompanionRun]:
    """Start the companion, which creates the run named and tagged by the contract when the block
    calls `start`; an exception in the block after that ends the run FAILED with that error (before
    it, no run is created), and is re-raised."""
    context = helper_context()
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_serve,
        args=(theirs, ours, OmegaConf.to_container(tracking, resolve=True), dict(picked), run_kind),
        name="mlflow-companion",
    )
    process.start()
    theirs.close()
    handle = CompanionRun(ours, tracking)
    try:
        yield handle
    except BaseException as err:
        with suppress(OSError):  # the companion may be gone already
            ours.send(("fail", f"{type(err).__name__}: {err}"))
        raise
    finally:
        ours.close()  # a run the block did not log ends FAILED (the companion sees end-of-file)
        process.join(timeout=STOP_SECONDS)
        if process.is_alive():
            process.kill()


def _serve(
    connection: Connection, parents_end: Connection, tracking: dict, picked: dict, run_kind: str
) -> None:
    """The companion: open the store, create the run when told to start, then log what it is
    sent."""
    # A forked companion holds a copy of the pipeline process's end of the pipe; closed, so that
    # the pipe reports end-of-file when that process dies.
    parents_end.close()
    # One OpenMP/BLAS thread: the companion only unpickles and writes the model, and a child forked
    # from a process that already ran OpenMP (xgboost) deadlocks in its first parallel region (GNU
    # libgomp keeps the parent's thread pool, which the child does not have). src.run forks it
    # first, so only a long-lived process that trained before (tests, notebooks) meets that.
    threadpool_limits(limits=1)
    try:
        import mlflow

        from src.tracking import runs

        runs.configure(OmegaConf.create(tracking))
        tags = _start_order(connection)
        if tags is None:  # the pipeline stopped before its data were ready: no run to record
            return
        with runs.tracked_run(picked, run_kind, tags=tags) as run:
            # The pipeline's process may have failed, or died, already: what it sent is still
            # to be read below.
            with suppress(OSError):
                connection.send(("started", run.info.run_id))
            _log_until_done(connection, run.info.run_id, mlflow, runs)
    except BaseException as err:  # noqa: BLE001 - reported to the pipeline's process instead
        with suppress(OSError):
            connection.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        connection.close()


def _start_order(connection: Connection) -> dict[str, str] | None:
    """The tags of the run to create, or None when the pipeline failed or ended before it."""
    try:
        kind, body = connection.recv()
    except EOFError:
        return None
    if kind == "fail":
        return None
    if kind != "start":
        raise RuntimeError(f"companion told {kind!r} before the run started")
    return body


def _log_until_done(connection: Connection, run_id: str, mlflow: Any, runs: Any) -> None:
    model_uri, seconds = None, 0.0
    while True:
        try:
            kind, body = connection.recv()
        except EOFError:
            raise RuntimeError(PARENT_GONE) from None
        if kind == "fail":
            mlflow.set_tag("error", body[:5000])
            mlflow.end_run(status="FAILED")
            return
        elif kind == "log":
            start = time.perf_counter()
            model_uri = runs.log_record(body)
            seconds += time.perf_counter() - start
        elif kind == "finish":
            out_dir, metrics, register_as = body
            start = time.perf_counter()
            runs.log_outputs(out_dir, metrics)
            version = None
            if register_as and model_uri:
                from src.tracking.registry import describe, register_version

                version = register_version(model_uri, register_as).version

                describe(mlflow.MlflowClient(), register_as, str(version))
            seconds += time.perf_counter() - start
            mlflow.log_metric("time/tracking_s", round(seconds, 4))  # the companion's logging
            mlflow.end_run()
            connection.send(("logged", Logged(run_id, model_uri, version)))
            return
