"""Where the jobs of a stage run: in worker processes, or inline in this process (the same loop).

A parallel full read runs one job per key-range chunk in a pool of worker processes; every other
run executes the same jobs inline. Both honour a stop request at a batch boundary (``check_stop``)
and report each finished job through ``on_done``.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from multiprocessing.synchronize import Event
from typing import Any, Protocol, TypeVar

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.engine.manifest import RunOptions
from sync_pipelines.errors import RunCancelled, SyncError

T = TypeVar("T")


class _StopFlag(Protocol):
    def is_set(self) -> bool: ...


_stop: _StopFlag | None = None
"""This process's stop request: the pool's shared event in a worker, the run's own flag inline."""


def _init_worker(stop: Event, environ: dict[str, str]) -> None:
    """Runs first in every worker: the stop flag, and the parent's environment (``${VAR}`` secrets)."""
    global _stop
    _stop = stop
    os.environ.clear()
    os.environ.update(environ)


def check_stop(config: SyncConfig, where: str) -> None:
    """Raise :class:`RunCancelled` when the run was asked to stop (call it at batch boundaries only).

    Raises:
        RunCancelled: a stop was requested; the batches committed so far stay committed.
    """
    if _stop is not None and _stop.is_set():
        raise RunCancelled(f"sync {config.name}: stopped {where}; earlier batches are committed")


def _context() -> BaseContext:
    """A fork server with the engine preloaded (fast worker starts), else spawn; never a bare fork."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["sync_pipelines.engine.chunks"])
        return context
    return multiprocessing.get_context("spawn")


def start_workers_early() -> None:
    """Start the fork server in the background (about a second of imports), while this process plans the chunks."""
    context = _context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        threading.Thread(target=forkserver.ensure_running, name="sync-forkserver", daemon=True).start()


def run_pool(
    config: SyncConfig,
    options: RunOptions,
    workers: int,
    task: Callable[..., T],
    jobs: Sequence[tuple[Any, ...]],
    on_done: Callable[[int, T], object] | None = None,
) -> list[T]:
    """Run ``task(*job)`` for every job in up to ``workers`` processes; results in job order.

    ``workers`` of 1 runs the jobs inline, one by one, in this process. ``options.stop_requested``
    and the first failure both ask every worker to stop at its next batch boundary; the first
    failure is raised once all of them have ended.
    """
    if not jobs:
        return []
    if workers < 2:
        return run_inline(options, task, jobs, on_done)
    if multiprocessing.current_process().daemon:
        # A daemonic process (e.g. a prefork pool's worker) may not start processes: same tasks, one by one.
        options.logger.warning("%s: running the chunks one by one (this process may not start workers)", config.name)
        return run_inline(options, task, jobs, on_done)
    context = _context()
    stop = context.Event()
    if options.stop_requested.is_set():
        stop.set()
    results: dict[int, T] = {}
    first_error: BaseException | None = None
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(stop, dict(os.environ)),
    ) as pool:
        try:
            futures: dict[Future[T], int] = {pool.submit(task, *job): i for i, job in enumerate(jobs)}
            pending: set[Future[T]] = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if error is None:
                        results[futures[future]] = future.result()
                        if on_done is not None:
                            on_done(futures[future], results[futures[future]])
                    elif first_error is None:
                        first_error = error
                        stop.set()
                if options.stop_requested.is_set():
                    stop.set()
        except BaseException:
            # Interrupted here (e.g. the run is terminated): the workers stop at their next batch boundary.
            stop.set()
            raise
    if isinstance(first_error, BrokenProcessPool):
        raise SyncError(f"sync {config.name}: a worker process ended abruptly ({first_error}); re-run to resume")
    if first_error is not None:
        raise first_error
    return [results[i] for i in range(len(jobs))]


def run_inline(
    options: RunOptions,
    task: Callable[..., T],
    jobs: Sequence[tuple[Any, ...]],
    on_done: Callable[[int, T], object] | None = None,
) -> list[T]:
    """The inline executor: ``task(*job)`` for every job in this process, with the run's own stop flag."""
    global _stop
    previous, _stop = _stop, options.stop_requested
    try:
        results = []
        for i, job in enumerate(jobs):
            results.append(task(*job))
            if on_done is not None:
                on_done(i, results[-1])
        return results
    finally:
        _stop = previous


__all__ = ["check_stop", "run_inline", "run_pool", "start_workers_early"]
